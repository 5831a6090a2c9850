"""Loading an Ansible YAML inventory and merging each host's `network` variable.

The file is read twice only when something is wrong: a fast C-backed safe load for the
normal path, and a round-trip load (which keeps line and column of every node, and is
five times slower) to place the diagnostics. Merged entries remember the path they came
from, so a semantic error about a merged device still points at the line that wrote it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

from .errors import Diagnostic, InventoryError, Path

ALL = "all"
NETWORK = "network"


@dataclass(frozen=True)
class Source:
    """The text of an inventory, and a way to find where a path in it was written."""

    file: str
    text: str

    @cached_property
    def _positioned(self) -> Any:
        from ruamel.yaml import YAML

        try:
            return YAML(typ="rt").load(self.text)
        except Exception:  # the fast loader accepted it; positions are a courtesy
            return None

    def locate(self, path: Path, at_key: bool = False) -> tuple[int | None, int | None]:
        """1-based (line, column) of the node at `path`, or of its deepest existing parent."""
        node = self._positioned
        if node is None:
            return None, None
        line, col = _node_position(node)
        for i, part in enumerate(path):
            at = at_key and i == len(path) - 1
            lc: Any = getattr(node, "lc", None)
            if lc is None:
                break
            if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                line, col = lc.item(part)
            elif isinstance(node, dict) and part in node:
                line, col = lc.key(part) if at else lc.value(part)
            else:
                break
            node = node[part]
        return (line + 1 if line is not None else None), (col + 1 if col is not None else None)

    def diagnostic(self, path: Path, message: str, at_key: bool = False, severity: str = "error") -> Diagnostic:
        line, col = self.locate(path, at_key)
        return Diagnostic(path, message, self.file, line, col, severity)


def _node_position(node: Any) -> tuple[int | None, int | None]:
    lc = getattr(node, "lc", None)
    return (lc.line, lc.col) if lc is not None else (None, None)


def load_source(file: str) -> Source:
    """The file named on the command line (it may be a link: the person running us chose it),
    refused if it is not a regular file (a FIFO would hang us)."""
    from .files import FileError, read_regular

    try:
        return Source(file, read_regular(file, follow_links=True).decode("utf-8"))
    except FileError as exc:
        reason = str(exc).removeprefix(f"{file}: ")
        raise InventoryError([Diagnostic((), f"cannot read inventory: {reason}", file)]) from exc
    except UnicodeDecodeError as exc:
        raise InventoryError([Diagnostic((), f"not UTF-8 text: {exc.reason}", file)]) from exc


def parse(source: Source) -> Any:
    """The document as plain Python data; a YAML syntax error becomes a located Diagnostic."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=False)
    yaml.Resolver = _resolver()
    try:
        data = yaml.load(source.text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise InventoryError(
            [Diagnostic((), f"YAML syntax error: {problem}", source.file,
                        mark.line + 1 if mark else None, mark.column + 1 if mark else None)]
        ) from exc
    except YAMLError as exc:
        raise InventoryError([Diagnostic((), f"YAML error: {exc}", source.file)]) from exc
    if data is None:
        data = {}
    return data


@cache
def _resolver() -> type:
    """ruamel's resolver looks the YAML version up twice per scalar, through an attribute that
    never exists under the C parser (an exception each time): a quarter of the load time. The
    version cannot change within a document here (the C parser keeps no %YAML directive), so
    look it up once per document."""
    from ruamel.yaml.resolver import VersionedResolver

    class OnceResolver(VersionedResolver):
        _once: Any

        @property
        def versioned_resolver(self) -> Any:
            try:
                return self._once
            except AttributeError:
                self._once = VersionedResolver.versioned_resolver.fget(self)  # type: ignore[attr-defined]
                return self._once

    return OnceResolver


# ---------------------------------------------------------------- hosts and groups


@dataclass(frozen=True)
class Entry:
    """One merged list item (a device, a route) and where in the file it was written."""

    value: Mapping[str, Any]
    path: Path


@dataclass(frozen=True)
class Host:
    """A host as the inventory describes it: its merged variables and merged network."""

    name: str
    path: Path  # where the host is first declared
    groups: tuple[str, ...]
    vars: Mapping[str, Any]
    network: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
    layers: tuple[tuple[Mapping[str, Any], Path], ...] = ()  # the raw variables merged, in order

    @property
    def connection(self) -> str | None:
        value = self.vars.get("ansible_connection")
        return str(value) if value is not None else None

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host") or self.name)


@dataclass(frozen=True)
class Inventory:
    source: Source
    hosts: tuple[Host, ...]
    groups: Mapping[str, frozenset[str]]  # group name -> the hosts in it, children included

    def select(self, limit: str | None) -> tuple[Host, ...]:
        """Ansible-like patterns: names, groups, globs, `a,b` or `a:b`, `!x` to exclude, `&x` to intersect."""
        if not limit or limit == ALL:
            return self.hosts
        names = [h.name for h in self.hosts]
        terms = _split_pattern(limit)
        only_exclusions = all(t[:1] in ("!", "&") for t in terms)
        chosen: set[str] = set(names) if only_exclusions else set()
        for term in terms:
            op, term = (term[0], term[1:]) if term[:1] in ("!", "&") else ("", term)
            matched = self._match(term, names)
            if op == "!":
                chosen -= matched
            elif op == "&":
                chosen &= matched
            else:
                chosen |= matched
        if not chosen:
            raise InventoryError([Diagnostic((), f"--limit {limit!r} matches no host", self.source.file)])
        return tuple(h for h in self.hosts if h.name in chosen)

    def _match(self, term: str, names: Sequence[str]) -> set[str]:
        if term in self.groups:
            return set(self.groups[term])
        if term in names:
            return {term}
        hits = {n for n in names if fnmatch.fnmatchcase(n, term)}
        for group, members in self.groups.items():
            if fnmatch.fnmatchcase(group, term):
                hits |= members
        return hits


def _split_pattern(limit: str) -> list[str]:
    parts: list[str] = []
    for chunk in limit.split(","):
        # ':' separates terms too, as in Ansible, unless the term looks like an IPv6 address
        if ":" in chunk and not _is_ip(chunk):
            parts.extend(chunk.split(":"))
        else:
            parts.append(chunk)
    return [p.strip() for p in parts if p.strip()]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.lstrip("!&"))
        return True
    except ValueError:
        return False


@dataclass
class _Group:
    name: str
    path: Path
    vars: list[tuple[Mapping[str, Any], Path]] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    depth: int = 0


def build(source: Source, data: Any) -> Inventory:
    """Walk the (already schema-valid) document into hosts with merged variables."""
    groups: dict[str, _Group] = {ALL: _Group(ALL, (ALL,))}
    host_defs: dict[str, list[tuple[Mapping[str, Any], Path]]] = {}

    def walk(name: str, body: Any, path: Path) -> None:
        group = groups.setdefault(name, _Group(name, path))
        if not isinstance(body, Mapping):
            return
        if isinstance(body.get("vars"), Mapping):
            group.vars.append((body["vars"], path + ("vars",)))
        for host, hvars in (body.get("hosts") or {}).items():
            host = str(host)
            group.hosts.append(host)
            host_defs.setdefault(host, []).append((hvars or {}, path + ("hosts", host)))
        for child, cbody in (body.get("children") or {}).items():
            child = str(child)
            group.children.append(child)
            walk(child, cbody, path + ("children", child))

    if isinstance(data, Mapping):
        for top, body in data.items():
            top = str(top)
            if top != ALL:
                groups[ALL].children.append(top)
            walk(top, body, (top,))

    _set_depths(groups)
    members = {name: frozenset(_members(name, groups, set())) for name in groups}
    members[ALL] = frozenset(host_defs)
    hosts = []
    for name, defs in host_defs.items():
        in_groups = sorted((g for g in groups.values() if name in members[g.name]),
                           key=lambda g: (g.depth, g.name))
        layers = [layer for g in in_groups for layer in g.vars] + defs
        hosts.append(_merge_host(name, defs[0][1], tuple(g.name for g in in_groups), layers))
    return Inventory(source, tuple(hosts), members)


def _set_depths(groups: dict[str, _Group]) -> None:
    """Depth is the longest path from `all`, as Ansible orders group variables."""
    def visit(name: str, depth: int, seen: frozenset[str]) -> None:
        group = groups[name]
        group.depth = max(group.depth, depth)
        for child in group.children:
            if child not in seen:
                visit(child, depth + 1, seen | {child})
    visit(ALL, 0, frozenset({ALL}))


def _members(name: str, groups: dict[str, _Group], seen: set[str]) -> Iterator[str]:
    if name in seen:
        return
    seen.add(name)
    group = groups[name]
    yield from group.hosts
    for child in group.children:
        yield from _members(child, groups, seen)


def route_key(route: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(table, to, metric) with the defaults filled in, so spellings of one route merge."""
    from .model import MAIN_TABLE, canonical_network, default_metric

    to = route.get("to")
    try:
        to = canonical_network(str(to))
    except ValueError:
        pass
    metric = route.get("metric")
    if metric is None and route.get("state") != "absent" and isinstance(to, str):
        metric = default_metric(to)
    return (route.get("table", MAIN_TABLE), to, metric)


# How list-valued keys of `network` merge: by what key, later entries replacing earlier ones.
MERGE_KEYS = {
    "devices": lambda item: item.get("name"),
    "routes": route_key,
    "tunnels": lambda item: item.get("name"),
}


def _merge_host(name: str, path: Path, groups: tuple[str, ...],
                layers: Sequence[tuple[Mapping[str, Any], Path]]) -> Host:
    merged_vars: dict[str, Any] = {}
    network: dict[str, dict[Any, Entry]] = {}
    for layer, lpath in layers:
        for key, value in layer.items():
            if key != NETWORK:
                merged_vars[key] = value
        net = layer.get(NETWORK)
        if not isinstance(net, Mapping):
            continue
        for list_key, key_of in MERGE_KEYS.items():
            for i, item in enumerate(net.get(list_key) or ()):
                if isinstance(item, Mapping):
                    entries = network.setdefault(list_key, {})
                    k = key_of(item)
                    entries.pop(k, None)  # re-insert: a replaced entry takes the later position
                    entries[k] = Entry(item, lpath + (NETWORK, list_key, i))
    return Host(name, path, groups, merged_vars,
                {k: tuple(v.values()) for k, v in network.items()}, tuple(layers))


def this_machine() -> set[str]:
    """Names under which a host without ansible_connection is this machine (as ansible-pull)."""
    name = socket.gethostname()
    return {"localhost", name, name.split(".")[0]}
