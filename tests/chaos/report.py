"""`make chaos`'s table: the rows the suite wrote to $PROVISION_CHAOS_RESULTS, as Markdown
(the table in docs/chaos.md is this output)."""

from __future__ import annotations

import json
import sys

from .world import Figure, table


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        rows = [Figure(**json.loads(line)) for line in f if line.strip()]
    print(table(rows))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
