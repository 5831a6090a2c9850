"""Reading an inventory as Ansible reads it: which files, in what order, and whose variables win.

An inventory is a file (YAML or INI) or a directory of them (read in name order, skipping
what Ansible skips: hidden files, `host_vars/`, `group_vars/`, backups and the like). Beside
it (in it, for a directory) `group_vars/NAME` and `host_vars/NAME` are read as Ansible's
host_group_vars plugin does: `NAME` with no extension, `.yml`, `.yaml` or `.json`, the first
that exists; a directory of that name gives every file in it, recursively, in name order.

A host's variables are layers, lowest first, in Ansible's default VARIABLE_PRECEDENCE:
the `all` group's inventory vars; its other groups' inventory vars, ordered by depth (the
longest path from `all`), then `ansible_group_priority`, then name; `group_vars/all`;
`group_vars/` of its other groups in that order; the host's own inventory vars (each
definition, in the order written); `host_vars/HOST`. Every other variable is replaced by a
higher layer, as Ansible does; `network` is merged across them (inventory.merge_host).

This module only reads and orders; inventory.py holds the model and the merge rule, and
desired.py turns a host's merged network into the desired state.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from . import schema
from .errors import Diagnostic, InventoryError, Path
from .hints import Any
from .hostpattern import expand
from .inventory import ALL, UNGROUPED, Inventory, merge_host
from .source import Source, Sources, load_source, parse

VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")  # Ansible's YAML_FILENAME_EXTENSIONS, no extension first
YAML_EXTENSIONS = (".yml", ".yaml", ".json")
IGNORED = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$|"
                     r"(\.pyc|\.pyo|\.swp|\.bak|~|\.rpm|\.md|\.txt|\.rst|\.orig|\.cfg|\.retry)$")
PRIORITY = "ansible_group_priority"


Check = Callable[[Source, Any, str], list[Diagnostic]]  # schema.check's shape


def load(path: str, parsed: Mapping[str, Any] | None = None, record: dict[str, Any] | None = None,
         yaml: Callable[[Source], Any] = parse, check: Check = schema.check) -> tuple[Inventory, list[Diagnostic]]:
    """The inventory at `path` and every problem found in its shape (schema); raises
    InventoryError only when a file cannot be read or parsed at all. `parsed`: each file's data
    from an earlier load of the same inputs that found no problem (cache.py), used instead of
    parsing it again, and not judged by the schema again; `record` is given each file's data as
    it is read, for the cache. `yaml` parses a YAML file and `check` judges it by a schema
    (reparse.Reparser's: from the last parse and verdict of its shape)."""
    reader = _Reader(path, parsed, record, yaml, check)
    files = _inventory_files(path)
    for file in files:
        reader.read_inventory(file)
    return reader.build(), reader.problems


def _inventory_files(path: str) -> list[str]:
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise InventoryError([Diagnostic((), "cannot read inventory: No such file or directory", path)])
        return [path]
    out: list[str] = []
    for name in sorted(os.listdir(path)):
        if IGNORED.search(name):
            continue
        full = os.path.join(path, name)
        out += _inventory_files(full) if os.path.isdir(full) else [full]
    if not out:
        raise InventoryError([Diagnostic((), "an inventory directory with no inventory file in it", path)])
    return out


@dataclass(frozen=True)
class Inputs:
    """What a load of `path` may read, as text for cache.slot (`texts`): every inventory file and
    the whole `group_vars/` and `host_vars/` trees beside it, names, listings and contents (more
    than one load reads: which vars files it reads depends on the names in the inventory)."""

    path: str
    texts: list[str]
    at: dict[str, int] = field(default_factory=dict)  # file (normalised) -> where its content is in `texts`

    def read_alike(self, documents: Iterable[Source]) -> bool:
        """Whether every document a load read is one of these files, with these very bytes: only
        then does a verdict or a note keyed by them speak of what the load judged. A file that
        changed between the two reads (saved, or pulled, in between), or one the load read that
        the listing did not show (a directory that can be entered but not listed), is not."""
        for document in documents:
            i = self.at.get(os.path.normpath(document.file))
            if i is None:
                return False
            read, hashed = document.text, self.texts[i]  # decoded as UTF-8, and as Latin-1
            if read.isascii() and hashed.isascii():  # alike either way: compared as they are, not copied
                if read != hashed:
                    return False
            elif read.encode() != hashed.encode("latin-1"):
                return False
        return True

    def without(self, file: str) -> list[str] | None:
        """`texts` with `file`'s content left out: what says that everything else a load reads is as
        it was (recheck.py). When `file` is the one inventory file, its name is left out as well,
        all but its directory: a copy of it beside it (`inventory-changed.yml`) is read alike, since
        its name means nothing to a load but where its vars are (the directory) and which parser
        reads it (its extension: recheck.py's notes are of parses reparse.py made, YAML's alone).
        What stands in their place begins with a NUL, which no name holds."""
        i = self.at.get(os.path.normpath(file))
        if i is None:
            return None
        out = list(self.texts)
        out[i] = "\0the file edited"
        if file == self.path and i == 1:
            out[0] = "\0the inventory file in " + (os.path.dirname(file) or ".")
        return out


def inputs(path: str) -> Inputs:
    try:
        files = _inventory_files(path)
    except InventoryError:
        return Inputs(path, [f"unreadable inventory {path}"])
    out: list[str] = []
    at: dict[str, int] = {}
    for file in files:
        at[os.path.normpath(file)] = len(out) + 1
        out += [file, _content(file)]
    base = path if os.path.isdir(path) else os.path.dirname(path) or "."
    for kind in ("group_vars", "host_vars"):
        for directory, dirs, names in os.walk(os.path.join(base, kind), followlinks=True):
            dirs.sort()
            out.append("listing " + directory + "\0" + "\0".join(sorted(dirs + names)))
            for name in sorted(names):
                full = os.path.join(directory, name)
                at[os.path.normpath(full)] = len(out) + 1
                out += [full, _content(full)]
    return Inputs(path, out, at)


def _content(file: str) -> str:
    from .files import FileError, read_regular

    try:
        return read_regular(file, follow_links=True).decode("latin-1")  # every byte, as text
    except FileError as exc:
        return f"unreadable: {exc}"


def vars_files(base: str, kind: str, name: str, present: Container[str] | None = None) -> list[str]:
    """Ansible's DataLoader.find_vars_files for `base/kind/name`; none for a name that is not a
    file name (`..`, `a/b`): the names come from the inventory, and must not lead out of `kind/`.
    `present`: the names `base/kind` lists (`listing`), where only those are looked at."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        return []
    stem = os.path.normpath(os.path.join(base, kind, name))
    for ext in VARS_EXTENSIONS:
        if present is not None and name + ext not in present:
            continue
        candidate = stem + ext
        if os.path.isdir(candidate):
            return list(_dir_vars_files(candidate))
        if os.path.exists(candidate):
            return [candidate]
    return []


def listing(base: str, kind: str) -> frozenset[str] | None:
    """The names in `base/kind` (none where it is missing or no directory), or None where it
    cannot be listed (then each name is looked for). Listed once per load: a host's vars files
    were eight lookups (four names, each asked whether a directory, then whether there), for
    each of a fleet's hosts, in a directory mostly missing."""
    try:
        return frozenset(os.listdir(os.path.join(base, kind)))
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    except OSError:
        return None


def _dir_vars_files(directory: str) -> Iterator[str]:
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or name.endswith("~"):
            continue
        full, ext = os.path.join(directory, name), os.path.splitext(name)[1]
        if os.path.isdir(full) and not ext:
            yield from _dir_vars_files(full)
        elif os.path.isfile(full) and (not ext or ext in YAML_EXTENSIONS):
            yield full


@dataclass
class _Group:
    """A group while the files are read: mutable, since a group's variables, hosts and children
    can come from several files; depth and priority give Ansible's order of precedence."""

    name: str
    path: Path
    vars: list[tuple[Mapping[str, Any], Path]] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    depth: int = 0
    priority: int = 1


class _Reader:
    """Accumulates documents, groups and host definitions as the files are read."""

    def __init__(self, path: str, parsed: Mapping[str, Any] | None = None, record: dict[str, Any] | None = None,
                 yaml: Callable[[Source], Any] = parse, check: Check = schema.check):
        self.path = path
        self.yaml = yaml
        self.check = check
        self.parsed = parsed
        self.record = record
        self.base = path if os.path.isdir(path) else os.path.dirname(path) or "."
        self.documents: list[Source] = []
        self.problems: list[Diagnostic] = []
        self.groups: dict[str, _Group] = {ALL: _Group(ALL, ())}
        self.host_defs: dict[str, list[tuple[Mapping[str, Any], Path]]] = {}
        self.parents: dict[str, set[str]] = {}
        self.listings: dict[str, frozenset[str] | None] = {}  # group_vars, host_vars: listing()

    def _add(self, source: Source) -> int:
        self.documents.append(source)
        return len(self.documents) - 1

    def _cached(self, file: str) -> tuple[bool, Any]:
        if self.parsed is not None and file in self.parsed:
            return True, self.parsed[file]
        return False, None

    def _keep(self, file: str, data: Any) -> None:
        if self.record is not None:
            self.record[file] = data

    def read_inventory(self, file: str) -> None:
        source = load_source(file)
        hit, data = self._cached(file)
        if not hit:
            data, source = self._parse_inventory(file, source)
            self.problems += self.check(source, data, schema.INVENTORY)
        self._keep(file, data)
        index = self._add(source)
        if isinstance(data, Mapping):
            for top, body in data.items():
                self._walk(str(top), body, (index, top), None)

    def _parse_inventory(self, file: str, source: Source) -> tuple[Any, Source]:
        ext = os.path.splitext(file)[1]
        data: Any = None
        if ext in YAML_EXTENSIONS:
            data = self.yaml(source)
        elif ext != ".ini":
            try:  # as Ansible: the YAML plugin is tried before the INI one
                data = self.yaml(source)
            except InventoryError:
                data = None
            if not isinstance(data, Mapping) or not data:
                data = None
        if data is None:
            from .ini import parse_ini  # an INI inventory only

            data, positions = parse_ini(file, source.text)
            source = Source(file, source.text, positions)
        return data, source

    def _walk(self, name: str, body: Any, path: Path, parent: str | None) -> None:
        group = self.groups.setdefault(name, _Group(name, path))
        if parent is not None and name not in self.groups[parent].children:
            self.groups[parent].children.append(name)
            self.parents.setdefault(name, set()).add(parent)
        if not isinstance(body, Mapping):
            return
        vars_ = body.get("vars")
        if isinstance(vars_, Mapping):
            if PRIORITY in vars_:  # orders the group, and is no variable (as Ansible's Group.set_variable)
                try:
                    group.priority = int(vars_[PRIORITY])
                except (TypeError, ValueError):
                    self.problems.append(self._diagnostic(path + ("vars", PRIORITY), "expected a whole number"))
                vars_ = {k: v for k, v in vars_.items() if k != PRIORITY}
            group.vars.append((vars_, path + ("vars",)))
        hosts = body.get("hosts")
        for pattern, hvars in (hosts.items() if isinstance(hosts, Mapping) else ()):
            try:
                names, port = expand(str(pattern))
            except ValueError as exc:
                self.problems.append(self._diagnostic(path + ("hosts", pattern), f"host {pattern}: {exc}", True))
                continue
            layer: Mapping[str, Any] = hvars if isinstance(hvars, Mapping) else {}
            if port is not None:
                layer = {"ansible_port": port, **layer}
            for host in names:
                if host not in group.hosts:
                    group.hosts.append(host)
                self.host_defs.setdefault(host, []).append((layer, path + ("hosts", pattern)))
        children = body.get("children")
        for child, cbody in (children.items() if isinstance(children, Mapping) else ()):
            self._walk(str(child), cbody, path + ("children", child), name)

    def _diagnostic(self, path: Path, message: str, at_key: bool = False) -> Diagnostic:
        return Sources(self.path, tuple(self.documents)).diagnostic(path, message, at_key)

    def _vars_layers(self, kind: str, name: str) -> list[tuple[Mapping[str, Any], Path]]:
        layers: list[tuple[Mapping[str, Any], Path]] = []
        if kind not in self.listings:
            self.listings[kind] = listing(self.base, kind)
        for file in vars_files(self.base, kind, name, self.listings[kind]):
            source = load_source(file)
            hit, data = self._cached(file)
            if not hit:
                data = self.yaml(source)
            self._keep(file, data)
            index = self._add(source)  # every file read is a document, an empty one too (Inputs.read_alike)
            if data == {}:
                continue  # an empty file, as Ansible, adds nothing
            if not isinstance(data, Mapping):
                self.problems.append(source.diagnostic((), f"{kind} file: expected a mapping of variables"))
                continue
            if not hit:
                self.problems += self.check(source, data, schema.VARS)
            layers.append((data, (index,)))
        return layers

    def build(self) -> Inventory:
        groups, host_defs = self.groups, self.host_defs
        for name in groups:
            if name != ALL and not self.parents.get(name):
                groups[ALL].children.append(name)
        self._ungrouped()
        self._set_depths()
        members = {name: frozenset(self._members(name, set())) for name in groups}
        members[ALL] = frozenset(host_defs)
        group_files = {name: self._vars_layers("group_vars", name) for name in groups}
        hosts = []
        for name, defs in host_defs.items():
            mine = sorted((g for g in groups.values() if g.name != ALL and name in members[g.name]),
                          key=lambda g: (g.depth, g.priority, g.name))
            layers = ([*groups[ALL].vars] + [v for g in mine for v in g.vars]
                      + group_files[ALL] + [v for g in mine for v in group_files[g.name]]
                      + defs + self._vars_layers("host_vars", name))
            hosts.append(merge_host(name, defs[0][1], (ALL, *(g.name for g in mine)), layers))
        return Inventory(Sources(self.path, tuple(self.documents)), tuple(hosts), members,
                         {g.name: tuple(g.children) for g in groups.values()},
                         {g.name: tuple(g.hosts) for g in groups.values()})

    def _ungrouped(self) -> None:
        """As Ansible: a host in no group but `all` is in `ungrouped`, and only such hosts are."""
        ungrouped = self.groups.setdefault(UNGROUPED, _Group(UNGROUPED, ()))
        if UNGROUPED not in self.groups[ALL].children:
            self.groups[ALL].children.insert(0, UNGROUPED)  # Ansible makes it first, before any file is read
        in_some = {h for g in self.groups.values() if g.name not in (ALL, UNGROUPED) for h in self._members(g.name, set())}
        ungrouped.hosts = [h for h in self.host_defs if h not in in_some]

    def _set_depths(self, name: str = ALL, depth: int = 0, trail: tuple[str, ...] = (ALL,)) -> None:
        """Depth is the longest path from `all`, as Ansible orders group variables; a cycle is an
        error. (A method, not a recursive closure: that is a reference cycle, which held this
        reader and every document it read until a collection.)"""
        group = self.groups[name]
        group.depth = max(group.depth, depth)
        for child in group.children:
            if child in trail:
                self.problems.append(self._diagnostic(self.groups[child].path, f"group {child} is its own "
                                                      f"ancestor: {' > '.join((*trail, child))}", True))
                continue
            self._set_depths(child, depth + 1, (*trail, child))

    def _members(self, name: str, seen: set[str]) -> Iterator[str]:
        if name in seen:
            return
        seen.add(name)
        group = self.groups[name]
        yield from group.hosts
        for child in group.children:
            yield from self._members(child, seen)
