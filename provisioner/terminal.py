"""The terminal's width, for argparse's help and the progress line.

shutil.get_terminal_size is the usual way, but importing shutil pulls in bz2 and lzma: 3-4 ms
of every command's start, since argparse makes a help formatter (which asks for the width) for
every argument it adds. This is the same lookup without that import.
"""

from __future__ import annotations

import os
import sys


def columns() -> int:
    """$COLUMNS if set, else the width of the terminal on standard output, else 80 (as shutil)."""
    try:
        width = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        width = 0
    if width <= 0 and sys.__stdout__ is not None:
        try:
            width = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (ValueError, OSError):  # not a terminal, or closed
            width = 0
    return width or 80
