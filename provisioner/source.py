"""The files an inventory is made of, and a way to say where in them something was written.

An inventory is one or more documents: inventory files (YAML or INI), and the
`group_vars/` and `host_vars/` files beside them. A place in the inventory is a `Path` whose
first element is the index of its document in `Sources`; the rest is the path inside that
document. So every diagnostic, whatever file form it came from, says FILE:LINE:COLUMN.

YAML is read the way Ansible reads it: YAML 1.1 (`yes` is true, `0755` is octal, as with
PyYAML). The fast C-backed safe load serves the normal path; a round-trip load (which keeps
line and column of every node, and is five times slower) runs only to place a diagnostic.
INI files give their positions as they are parsed (ini.py), so they carry them from the start.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property

from .errors import Diagnostic, InventoryError, Path
from .hints import Any

YAML_VERSION = (1, 1)  # as Ansible (PyYAML) reads inventories and vars files


@dataclass(frozen=True)
class Source:
    """The text of one file, and a way to find where a path in it was written."""

    file: str
    text: str
    positions: Mapping[Path, tuple[int, int]] | None = field(default=None, compare=False)  # 1-based, given (INI)

    @cached_property
    def _positioned(self) -> Any:
        from ruamel.yaml import YAML

        try:
            yaml = YAML(typ="rt")
            yaml.version = YAML_VERSION
            return yaml.load(self.text)
        except Exception:  # the fast loader accepted it; positions are a courtesy
            return None

    def locate(self, path: Path, at_key: bool = False) -> tuple[int | None, int | None]:
        """1-based (line, column) of the node at `path`, or of its deepest existing parent."""
        if self.positions is not None:
            for end in range(len(path), -1, -1):
                if path[:end] in self.positions:
                    return self.positions[path[:end]]
            return None, None
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


@dataclass(frozen=True)
class Sources:
    """Every document of one inventory; `file` is the inventory as given (a file or a directory)."""

    file: str
    documents: tuple[Source, ...] = ()

    def diagnostic(self, path: Path, message: str, at_key: bool = False, severity: str = "error") -> Diagnostic:
        if not path or not isinstance(path[0], int) or not 0 <= path[0] < len(self.documents):
            return Diagnostic(path, message, self.file, None, None, severity)
        return self.documents[path[0]].diagnostic(path[1:], message, at_key, severity)

    def where(self, path: Path) -> str:
        """FILE:LINE of a place, as `provision inventory` shows where an entry came from."""
        d = self.diagnostic(path, "")
        return f"{d.file}:{d.line}" if d.line is not None else d.file


def _node_position(node: Any) -> tuple[int | None, int | None]:
    lc = getattr(node, "lc", None)
    return (lc.line, lc.col) if lc is not None else (None, None)


def load_source(file: str) -> Source:
    """A file of the inventory (it may be a link: the person running us chose it), refused if it
    is not a regular file (a FIFO would hang us)."""
    from .files import FileError, read_regular

    if os.path.isdir(file):
        raise InventoryError([Diagnostic((), "is a directory, expected a file", file)])
    try:
        return Source(file, read_regular(file, follow_links=True).decode("utf-8"))
    except FileError as exc:
        reason = str(exc).removeprefix(f"{file}: ")
        raise InventoryError([Diagnostic((), f"cannot read inventory: {reason}", file)]) from exc
    except UnicodeDecodeError as exc:
        raise InventoryError([Diagnostic((), f"not UTF-8 text: {exc.reason}", file)]) from exc


def parse(source: Source) -> Any:
    """The document as plain Python data; a YAML syntax error becomes a located Diagnostic."""
    return parse_nodes(source)[0]


def parse_nodes(source: Source, fast: bool = True) -> tuple[Any, Any]:
    """The document as plain Python data, and the node tree it was built from (None for an empty
    document), whose nodes know the line and column they were written at (reparse.py).

    `fast=False` is ruamel's own resolver and constructor alone: the oracle the tests hold the
    fast ones to (tests/unit/test_yaml_construct.py)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    from ruamel.yaml.resolver import VersionedResolver

    yaml = YAML(typ="safe", pure=False)
    yaml.version = YAML_VERSION
    yaml.Resolver = _resolver() if fast else VersionedResolver
    kept: list[Any] = []
    yaml.Constructor = _keeping(kept, fast, source.file)
    collecting = gc.isenabled()
    gc.disable()  # the node tree is 50 objects a line, all alive: each collection walked it all (half
    try:  # the parse of 10 000 devices). Whatever is cyclic garbage is broken below or collected after
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
    except TypeError as exc:  # ruamel makes a list key a tuple, then hashes it: a mapping in it raises
        if "unhashable" not in str(exc):
            raise
        at = _collection_key(kept[0]) if kept else None
        mark = at.start_mark if at is not None else None
        raise InventoryError([Diagnostic(
            (), "a mapping key holds a mapping: a key must be a scalar (Ansible's are names)", source.file,
            mark.line + 1 if mark else None, mark.column + 1 if mark else None)]) from exc
    finally:
        # The loader refers to itself, and the classes made for this load (ours, ruamel's) to `kept`:
        # cycles, so the loader and the node tree (50 000 objects for 1000 devices) waited for a full
        # garbage collection, 35 MB more at 10 000 devices. Broken here, they go when unused.
        node = kept[0] if kept else None
        for loader in kept[1:]:
            loader.__dict__.clear()
        kept.clear()
        if collecting:
            gc.enable()
    if data is None:
        data = {}
    return data, node


MAX_EXPANSION = 10  # values a document may stand for, per node written (plus MIN_EXPANSION)
MIN_EXPANSION = 100_000
MAX_DEPTH = 100  # collections inside collections: an inventory needs ten, Python's recursion limit is 1000


def _check_structure(root: Any, file: str) -> None:
    """Refuse a document that stands for far more values than it writes, or nests deeper than
    MAX_DEPTH. A "billion laughs" (nine lines of nine aliases each: 387 million strings) is shared
    by the parse, but whatever walks the data (the schema, the cache, the merge) walked every one:
    `provision validate` of one never ended, and a pull agent following a hostile repository would
    hang on it. A list nested 20 000 deep was an internal error (Python's recursion limit).
    Counted on the node tree, each node once (a cycle counts once round); only for a document
    _build gave up on, since what it builds has no shared collections and its depth is checked."""
    size: dict[int, int] = {}  # values a node stands for, once known
    depth: dict[int, int] = {}  # collections down to its deepest, itself included
    seen: set[int] = set()  # nodes met (a node met again while open is a cycle: it counts 1)
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            children = _children(node)
            size[id(node)] = 1 + sum(size.get(id(c), 1) for c in children)
            depth[id(node)] = (node.id != "scalar") + max((depth.get(id(c), 1) for c in children), default=0)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node) if id(c) not in seen)
    limit = MIN_EXPANSION + MAX_EXPANSION * len(seen)
    if size[id(root)] > limit:
        raise InventoryError([Diagnostic(
            (), f"its aliases stand for {size[id(root)]:,} values, more than {limit:,} (ten for each of the "
            f"{len(seen):,} written): refused, as a YAML \"billion laughs\" would exhaust the machine", file, 1, 1)])
    if depth[id(root)] > MAX_DEPTH:
        raise InventoryError([Diagnostic((), f"nested {depth[id(root)]} levels deep, more than {MAX_DEPTH}",
                                         file, 1, 1)])


def _collection_key(root: Any) -> Any:
    """The first mapping key, in the node tree, that is itself a collection (None: there is none)."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.id == "mapping":
            for key, _ in node.value:
                if key.id != "scalar":
                    return key
        stack.extend(reversed(_children(node)))
    return None


def _children(node: Any) -> list[Any]:
    if node.id == "mapping":
        return [n for pair in node.value for n in pair]
    if node.id == "sequence":
        return list(node.value)
    return []


def _keeping(kept: list[Any], fast: bool, file: str) -> type:
    """The safe constructor, keeping the root node of the document it builds in `kept`, then itself
    (the loader, whose references parse_nodes breaks). `fast`: it tries _build first, and builds
    the document itself only where _build gives up."""
    from ruamel.yaml.constructor import SafeConstructor

    class Keeping(SafeConstructor):
        def construct_document(self, node: Any) -> Any:
            kept.extend((node, self))
            if fast:
                try:
                    return _build(node, self)
                except _Irregular:
                    pass
                except _TooDeep as exc:
                    mark = exc.node.start_mark
                    raise InventoryError([Diagnostic((), f"nested more than {MAX_DEPTH} levels deep", file,
                                                     mark.line + 1, mark.column + 1)]) from None
                _check_structure(node, file)  # aliases (shared collections) are built by ruamel alone
            return super().construct_document(node)

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            """ruamel's, with what its constructors raise for a value they cannot make (a date
            that is no date, `2001-02-30`; an integer of more digits than Python reads) said where
            it is written: they raise ValueError, which no caller of a parse expects."""
            try:
                return super().construct_object(node, deep)
            except InventoryError:  # said already, where the value is (and an InventoryError is a ValueError)
                raise
            except (ValueError, OverflowError) as exc:
                mark = node.start_mark
                raise InventoryError([Diagnostic((), f"a value YAML cannot read: {str(exc)[:200]}", file,
                                                 mark.line + 1, mark.column + 1)]) from None

    return Keeping


class _Irregular(Exception):
    """_build met something it cannot be sure to build as ruamel's constructor would."""


class _TooDeep(Exception):
    """_build went MAX_DEPTH collections down: `node` is the first one past it."""

    def __init__(self, node: Any):
        super().__init__()
        self.node = node


_YAML_TAG = "tag:yaml.org,2002:"
_SCALARS = frozenset(_YAML_TAG + t for t in ("str", "null", "bool", "int", "float", "binary", "timestamp"))


def _build(root: Any, constructor: Any) -> Any:
    """The document as ruamel's SafeConstructor builds it, for what inventories are made of: maps,
    lists and scalars that are not tagged otherwise than by the resolver. Two thirds of ruamel's
    build is its machinery per node (a tag property that formats a string, a dispatch by tag, a
    generator per collection), which this walk does without; each scalar but a plain string is
    still made by ruamel's own constructor for its tag (YAML 1.1: `0755`, `yes`, `1:20`). Anything
    else raises _Irregular, and ruamel builds the whole document anew, so merge keys, aliases
    (shared objects, cycles), duplicate keys, other tags and every error are ruamel's alone."""
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import BaseResolver

    # The resolver gives these very objects to the nodes it resolves (an explicit tag is a new one):
    # a plain or quoted string, and a map or list with no tag but `!`.
    text, seq, mapping = (BaseResolver.DEFAULT_SCALAR_TAG, BaseResolver.DEFAULT_SEQUENCE_TAG,
                          BaseResolver.DEFAULT_MAPPING_TAG)
    constructors = constructor.yaml_constructors
    seen: set[int] = set()  # every node built but plain strings (the same str either way): one met twice is an alias

    def scalar(node: Any) -> Any:
        if type(node) is not ScalarNode or id(node) in seen:
            raise _Irregular
        seen.add(id(node))
        tag = node.tag
        # a float with an exponent may warn (MantissaNoDotYAML1_1Warning): once, from ruamel's build
        if tag not in _SCALARS or (tag == _YAML_TAG + "float" and "e" in node.value.lower()):
            raise _Irregular
        try:
            return constructors[tag](constructor, node)
        except Exception as exc:  # ruamel's build raises it again, or the error it meets first
            raise _Irregular from exc

    def build(node: Any, depth: int) -> Any:
        tag = node.ctag
        if tag is text:
            return node.value
        if depth > MAX_DEPTH and (tag is mapping or tag is seq):
            raise _TooDeep(node)
        if tag is mapping:
            if id(node) in seen:
                raise _Irregular
            seen.add(id(node))
            items = node.value
            out = {}
            for key, value in items:
                out[key.value if key.ctag is text else scalar(key)] = build(value, depth + 1)
            if len(out) != len(items):  # a duplicate key (or `1` and `true`, equal keys)
                raise _Irregular
            return out
        if tag is seq:
            if id(node) in seen:
                raise _Irregular
            seen.add(id(node))
            return [build(item, depth + 1) for item in node.value]
        return scalar(node)

    return build(root, 1)


@cache
def _resolver() -> type:
    """ruamel's resolver, called by the C parser for every scalar, looks the YAML version up twice
    per call, through an attribute that never exists under the C parser (an exception each time),
    and reaches each pattern through a lazy proxy (a Python call per pattern tried). The version
    cannot change within a document here (the C parser keeps no %YAML directive), so the patterns
    for it are taken once per document, as plain `match` methods in ruamel's order: the resolver's
    time halves (0.03 s to 0.015 s for 1000 devices). Only an implicit scalar is resolved here, and
    only without path resolvers; the result is ruamel's (tests/unit/test_yaml_construct.py)."""
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import VersionedResolver
    from ruamel.yaml.tag import Tag

    class OnceResolver(VersionedResolver):
        _matchers: dict[Any, list[tuple[str, Any]]]

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is not ScalarNode or not implicit[0] or self.yaml_path_resolvers:
                return super().resolve(kind, value, implicit)
            try:
                matchers = self._matchers
            except AttributeError:
                matchers = self._matchers = self._compile()
            for tag, match in matchers.get(value[:1], matchers[None]):  # value[:1]: "" for ""
                if match(value):
                    return Tag(suffix=tag)
            return self.DEFAULT_SCALAR_TAG

        def _compile(self) -> dict[Any, list[tuple[str, Any]]]:
            """ruamel's patterns for a first character, then those for any (key None), in its order."""
            table = self.versioned_resolver
            anywhere = table.get(None, [])
            return {first: [(tag, regexp.match) for tag, regexp in (patterns if first is None else patterns + anywhere)]
                    for first, patterns in {**table, None: anywhere}.items()}

    return OnceResolver
