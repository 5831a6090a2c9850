"""Ansible's INI inventory format, read into the shape of a YAML inventory.

The rules are Ansible's (`ansible.plugins.inventory.ini`): lines before any section are
hosts of `ungrouped`; `[g]` lists hosts (`name [key=value ...]`, ranges like `web[01:05]`,
`name:port`), `[g:children]` child groups, `[g:vars]` one `key=value` a line; a value is a
Python literal if it reads as one (`ast.literal_eval`), else the text; `#` and `;` start
comments. A group named in `[g:children]` or `[g:vars]` must be declared somewhere.

The result is the mapping a YAML inventory would have (`{group: {hosts, children, vars}}`,
host names already expanded, a `:port` as `ansible_port`) plus the 1-based (line, column) of
every path in it, so the rest of loading, the schema and every diagnostic treat both forms
alike.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass

from .errors import Diagnostic, InventoryError, Path
from .hints import Any
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
    lines: list[_HostLine] = []
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
            lines.append(_host_line(file, group, line, n, col))
            body(group, n)
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
    _hosts(data, positions, lines)
    return data, positions


@dataclass(frozen=True)
class _HostLine:
    """One host line of an INI group, kept in file order: Ansible applies the variables line by
    line, so a later line of any group can override an earlier one (_hosts)."""

    group: str
    names: tuple[str, ...]
    variables: dict[str, Any]  # ansible_port first, when the line gives one
    where: dict[str, tuple[int, int]]  # key -> (line, column); "" -> the host name's


def _hosts(data: dict[str, Any], positions: dict[Path, tuple[int, int]], lines: list[_HostLine]) -> None:
    """Ansible sets a host's variables line by line, in file order, whatever the group: so each host
    gets, in every group that lists it, the variables as the whole file leaves them."""
    final: dict[str, dict[str, Any]] = {}
    set_at: dict[tuple[str, str], tuple[int, int]] = {}
    for hl in lines:
        for name in hl.names:
            final.setdefault(name, {}).update(hl.variables)
            set_at.update({(name, key): hl.where[key] for key in hl.variables})
    for hl in lines:
        hosts = data[hl.group].setdefault("hosts", {})
        for name in hl.names:
            hosts[name] = final[name] or None
            positions.setdefault((hl.group, "hosts", name), hl.where[""])
            for key in final[name]:
                positions[(hl.group, "hosts", name, key)] = set_at[(name, key)]

def _host_line(file: str, group: str, line: str, n: int, col: int) -> _HostLine:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError([Diagnostic((), f"cannot read host line {line!r}: {exc}", file, n, col)]) from None
    pattern = tokens[0]
    try:
        names, port = expand(pattern)
    except ValueError as exc:
        raise InventoryError([Diagnostic((), f"host {pattern!r}: {exc}", file, n, col)]) from None
    variables: dict[str, Any] = {} if port is None else {"ansible_port": port}
    where: dict[str, tuple[int, int]] = {"": (n, col), "ansible_port": (n, col)}
    for token in tokens[1:]:
        if "=" not in token:
            raise InventoryError([Diagnostic((), f"expected key=value after the host, got {token!r}", file, n,
                                             col + line.find(token))])
        key, value = token.split("=", 1)
        variables[key] = _value(value)
        where[key] = (n, col + max(line.find(key + "="), 0))
    return _HostLine(group, tuple(names), variables, where)


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
