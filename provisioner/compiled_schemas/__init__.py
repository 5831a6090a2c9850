"""fastjsonschema's code for schemas/, made by `make validators`."""
