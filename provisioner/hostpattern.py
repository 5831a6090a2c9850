"""Host names as an inventory writes them: `web[01:05]`, `db-[a:c]`, `gw1:2222`, as Ansible expands them.

A range is `[BEGIN:END]` or `[BEGIN:END:STEP]`, numeric (a leading zero pads every name to the
width of BEGIN, which END must share) or one letter to one letter; several ranges in one
name multiply. A trailing `:PORT` (on an IPv6 address only inside brackets) becomes the
host's `ansible_port`.
"""

from __future__ import annotations

import re

BRACKETED_PORT = re.compile(r"^\[([^\]]+)\]:(\d+)$")
NAME_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])+):(\d+)$")
# string.ascii_letters, Ansible's letters: the string module costs every run 1.5-2 ms to import (its
# Template compiles a pattern), for this one constant
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def expand(pattern: str) -> tuple[list[str], int | None]:
    """(host names, port or None); raises ValueError for a range that cannot be expanded."""
    port = None
    m = BRACKETED_PORT.match(pattern) or NAME_PORT.match(pattern)
    if m:
        pattern, port = m.group(1), int(m.group(2))
    return (_ranges(pattern) if "[" in pattern else [pattern]), port


def _ranges(name: str) -> list[str]:
    head, sep, rest = name.partition("[")
    body, close, tail = rest.partition("]")
    if not sep or not close:
        return [name]
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError("a host range is [BEGIN:END] or [BEGIN:END:STEP]")
    begin, end = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ValueError("a host range needs an end")
    width = len(begin) if begin[0] == "0" and len(begin) > 1 else 0
    if width and width != len(end):
        raise ValueError("a host range padded with zeros needs BEGIN and END of the same width")
    try:
        if begin in LETTERS and end in LETTERS:
            i, j = LETTERS.index(begin), LETTERS.index(end)
            if i > j:
                raise ValueError("a host range needs BEGIN <= END")
            seq = list(LETTERS[i:j + 1:int(step)])
        else:
            seq = [str(k).zfill(width) for k in range(int(begin), int(end) + 1, int(step))]
    except ValueError as exc:
        raise ValueError(f"bad host range [{body}]: {exc}") from None
    out: list[str] = []
    for part in seq:
        out += _ranges(head + part + tail)
    return out
