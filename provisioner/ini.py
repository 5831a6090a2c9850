"""Ansible's INI inventory format, read into the shape of a YAML inventory.

The rules are Ansible's (`ansible.plugins.inventory.ini`): lines before any section are
hosts of `ungrouped`; `[g]` lists hosts (`name [key=value ...]`, ranges like `web[01:05]`,
`name:port`), `[g:children]` child groups, `[g:vars]` one `key=value` a line; a value is a
Python literal if it reads as one (`ast.literal_eval`), else the text; `#` and `;` start
comments. A group named in `[g:children]` or `[g:vars]` must be declared somewhere.

The result is the mapping a YAML inventory would have (`{group: {hosts, children, vars}}`)
plus the 1-based (line, column) of every path in it, so the rest of loading, the schema
and every diagnostic treat both forms alike.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from .errors import Diagnostic, InventoryError, Path
from .hostpattern import expand

SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$")
GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
COMMENT = ("#", ";")
UNGROUPED = "ungrouped"


def parse_ini(file: str, text: str) -> tuple[dict[str, Any], dict[Path, tuple[int, int]]]:
    data: dict[str, Any] = {}
    positions: dict[Path, tuple[int, int]] = {}
    declared: set[str] = set()
    pending: dict[str, tuple[int, str]] = {}  # group named before it is declared -> (line, why)
    group, state = UNGROUPED, "hosts"

    def fail(line: int, column: int, message: str) -> None:
        raise InventoryError([Diagnostic((), message, file, line, column)])

    def body(name: str, line: int) -> dict[str, Any]:
        if name not in data:
            data[name] = {}
            positions[(name,)] = (line, 1)
        return data[name]

    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        col = len(raw) - len(raw.lstrip()) + 1
        if not line or line[0] in COMMENT:
            continue
        m = SECTION.match(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                fail(n, col, f"section [{group}:{state}] has unknown type {state!r} (hosts, children or vars)")
            body(group, n)
            if state != "vars":
                declared.add(group)
            continue
        if line.startswith("[") and line.endswith("]"):
            fail(n, col, f"invalid section {line!r}: no spaces, and only [GROUP], [GROUP:children] or [GROUP:vars]")
        if state == "hosts":
            _host_line(file, data, positions, body(group, n), group, line, n, col)
        elif state == "vars":
            if "=" not in line:
                fail(n, col, f"expected key=value, got {line!r}")
            key, value = (part.strip() for part in line.split("=", 1))
            vars_ = body(group, n).setdefault("vars", {})
            vars_[key] = _value(value)
            positions[(group, "vars", key)] = (n, col)
            pending.setdefault(group, (n, f"section [{group}:vars] is for group {group!r}, declared nowhere"))
        else:
            named = GROUP_NAME.match(line)
            if named is None:
                raise InventoryError([Diagnostic((), f"expected a group name, got {line!r}", file, n, col)])
            child = named.group(1)
            body(group, n).setdefault("children", {})[child] = None
            positions[(group, "children", child)] = (n, col)
            pending.setdefault(child, (n, f"section [{group}:children] includes group {child!r}, declared nowhere"))
    for name, (n, why) in pending.items():
        if name not in declared and name != "all":
            fail(n, 1, why)
    return data, positions


def _host_line(file: str, data: dict[str, Any], positions: dict[Path, tuple[int, int]], group: dict[str, Any],
               group_name: str, line: str, n: int, col: int) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError([Diagnostic((), f"cannot read host line {line!r}: {exc}", file, n, col)]) from None
    pattern = tokens[0]
    try:
        expand(pattern)
    except ValueError as exc:
        raise InventoryError([Diagnostic((), f"host {pattern!r}: {exc}", file, n, col)]) from None
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        if "=" not in token:
            raise InventoryError([Diagnostic((), f"expected key=value after the host, got {token!r}", file, n,
                                             col + line.find(token))])
        key, value = token.split("=", 1)
        variables[key] = _value(value)
        positions[(group_name, "hosts", pattern, key)] = (n, col + max(line.find(key + "="), 0))
    hosts = group.setdefault("hosts", {})
    hosts[pattern] = {**(hosts.get(pattern) or {}), **variables} or None
    positions.setdefault((group_name, "hosts", pattern), (n, col))


def _value(text: str) -> Any:
    """A Python literal if the text is one, as Ansible's INI plugin reads values; else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if value is Ellipsis or isinstance(value, complex | bytes):
        return text
    if isinstance(value, tuple):
        return list(value)  # Ansible's JSON has no tuples
    return value
