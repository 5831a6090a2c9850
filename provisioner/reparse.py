"""Parsing an edited YAML file from the parse of its previous text, when the edit allows it.

A one-change apply reads an inventory it has not seen (a new text, so cache.py misses) and
paid the whole YAML parse for it: about half of its load, and more than the rest of the
apply. Inventories are mostly long block sequences of one-line flow mappings (`- {name: t1,
type: tap}`); an edit usually changes a few such lines and nothing else. So the last parse of
each text is kept (as cache.py keeps entries: JSON, checked, safe to delete) with where each
such item was written, under the text's outline (`outline`: its number of lines, and the
lines that cannot be items). When a new text of that outline has the same lines but for
some of those items (`patched` checks every line that differs), and neither the
old nor the new line can mean anything beyond itself (ITEM: no anchor, alias, tag, comment,
quote or nested mapping), only those lines are parsed and put in place. Anything else is a
full parse.

Why it is sound: the text before a changed line is the same in both, so the parser reaches
it in the same state (a block sequence's item at that column); a flow mapping that starts and
ends on that line is parsed by flow rules alone, which do not depend on where it stands; and
the text after it is the same again. A document with any `&` or `*` keeps no items, since
an alias would share what the patch replaces. The result is what a full parse gives, which
tests/unit/test_reparse.py checks edit by edit.

A text with no parse of its shape kept is parsed the same way (`first_parse`): its shape, where
every such item is `{}`, parses in a sixth of the time, and each item is then put in place as
an edit of the shape. Most items are of a few plain forms (`plain_item`), read without a YAML
parser; more than MAX_ALONE others, and the whole text is parsed instead. Most shapes are plain
too (`plain_shape`: block mappings of words and plain scalars, sequences of items), read without
one as well: then a text seen for the first time is read without importing ruamel at all.

The kept parse also says which schema it passed. The schema then needs to see only the items
put in place, when each is in a network's list of devices, routes or tunnels: the schema
reaches those lists through properties alone and sets nothing across their items, so a
document that differs from a valid one only there is valid exactly when each new item is
(schema.item_is_valid). Anything else, or a new item that fails, is judged whole, for the
located messages.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from dataclasses import dataclass
from itertools import compress, count
from operator import itemgetter, ne
from pathlib import Path

from . import cache, schema
from .errors import Diagnostic, InventoryError
from .hints import Any
from .source import MAX_DEPTH, Source, parse_nodes

# A one-line flow mapping item and nothing else: printable ASCII without anchors, aliases, tags,
# comments, quotes, nested mappings, block scalars, directives, complex keys or merge keys.
ITEM = re.compile(r"( *)- (\{[ $()+,\-./0-9:;=A-Z\[\]^_a-z~]*\}) *\r?")
# What YAML 1.1 (and ruamel) also reads as a line break, where str.split("\n") sees none: a CR
# alone, NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR. One of them anywhere (a comment pasted from a
# web page ends in U+2028) and the two number lines apart: a text that holds one keeps no runs and
# is never patched, so an edit can never be put in the place of its neighbour.
ODD_BREAK = re.compile("\r(?!\n)|[\x85\u2028\u2029]")
MAX_ALONE = 64  # more edited lines than this that ruamel must parse one by one: a full parse is cheaper
# What is read here without ruamel stays within what ruamel reads alike; past these, ruamel decides
# (and refuses what YAML does not allow): a key (YAML reads an implicit key of at most 1024
# characters), the digits of an integer (Python reads at most 4300 into an int, fewer if so set).
MAX_KEY = 1000
MAX_DIGITS = 100
# Texts shorter than this are not kept (they are still read by first_parse): their parse costs
# under 30 ms, and a kept parse takes 2.5 times the text's room in the state directory (a tmpfs,
# beside the locks and the records).
KEEP_FROM = 32 * 1024
# An edit of a few items leaves the kept parse as it is: the next text is patched from it as well,
# its lines a few more, and the write it saves (a 1000-device parse is 230 KB of JSON, 5-7 ms to
# make, check and write) was a sixth of what a one-change apply adds to a plan. Past this many
# items put in place, the new parse is kept instead.
REKEEP_AFTER = 16
# [path of the sequence, [[first line, column, count] of each stretch of its items on lines one
# after another]] (JSON: no tuples). A pair per item was a tenth of a kept parse, and a quarter of
# the time to read one back (0.25 ms at 1000 devices); items mostly stand on consecutive lines.
Run = list[Any]
# an item put in place: the path of its list, its index, the item, and the item it took the place of
Replaced = tuple[list[Any], int, Any, Any]


@dataclass
class _Parsed:
    """A parse made by Reparser.parse, waiting for its verdict (Reparser.check) to be kept."""

    slot: cache.Slot
    text: str
    data: Any
    runs: list[Run]
    judged: str | None  # the schema the parse it was patched from passed; None: not known to pass
    replaced: list[Replaced]  # each item patched in
    exact: bool  # made of JSON's own types alone (Reparser.exact)
    kept_id: str | None  # the id of the kept parse it was patched from; None: a first parse


@dataclass(frozen=True)
class Edit:
    """A file's parse made from a kept parse with items put in place, as judged: what recheck.py
    compares with the note of a clean load made from the same kept parse."""

    kept: str  # the key of the kept parse
    kept_id: str  # and its id
    data: Any  # the parse, as the loader was given it
    replaced: list[Replaced]


class Reparser:
    """`source.parse` and `schema.check` that start from the last parse of a text of the same
    shape kept under `directory` (where cache.py keeps its verdicts). `parse` reads only the
    edited lines where it can; `check` judges only the items an edit put in place when the kept
    parse passed the same schema and every such item is in a network's list, where an item is
    judged alone (schema.network_list_at), and else the whole document. The new parse is kept
    with its verdict, in one write, once judged, under an id of its own; not when it is the kept
    one with no more than REKEEP_AFTER items put in place, and passed. Either way the loader's
    verdict (cache.put_verdict) refers to the kept parse by that id, with the items put in place
    since (`references`), instead of copying it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.parses = directory / cache.PARSES
        self._waiting: dict[str, _Parsed] = {}
        # file -> (its parse, the reference a verdict gives instead of that parse: cache.put_verdict)
        self._kept: dict[str, tuple[Any, cache.Reference]] = {}
        # file -> its parse, when that is made of JSON's own types alone (dicts with text keys,
        # lists, text, integers, None): a kept parse read back from JSON, and what plain_shape and
        # plain_item read, are nothing else; ruamel's may be (a date, a key read as a boolean). Such
        # data goes into the cache without the check that it comes back from JSON unchanged (the
        # caller holds its record to these very objects: a loader may parse a file and keep
        # something else, an INI reading).
        self.exact: dict[str, Any] = {}
        self.edits: dict[str, Edit] = {}  # file -> its parse made from a kept one, when it passed the schema

    def parse(self, source: Source) -> Any:
        if len(source.text) < KEEP_FROM:  # not kept; still read without ruamel where it is plain
            data, _, exact = first_parse(source, shape(source.text))
            self._mark(source.file, data, exact)
            return data
        s = cache.slot(self.parses, ["last parse of a text outlined", outline(source.text)])
        found = cache.get_with_text(s)
        kept = {**found[0], "text": found[1]} if found is not None and isinstance(found[0], dict) else None
        patch = patched(kept, source.text) if kept is not None else None
        if patch is not None:
            assert isinstance(kept, dict)
            data, replaced, exact = patch  # the kept data came back from JSON (cache.get)
            judged = kept.get("valid") if isinstance(kept.get("valid"), str) else None
            ident = kept.get("id") if isinstance(kept.get("id"), str) else None
            self._waiting[source.file] = _Parsed(s, source.text, data, kept["runs"], judged, replaced, exact, ident)
        else:
            data, runs, exact = first_parse(source, shape(source.text))
            self._waiting[source.file] = _Parsed(s, source.text, data, runs, None, [], exact, None)
        self._mark(source.file, data, exact)
        return data

    def _mark(self, file: str, data: Any, exact: bool) -> None:
        if exact:
            self.exact[file] = data
        else:
            self.exact.pop(file, None)

    def all_exact(self, record: dict[str, Any]) -> bool:
        """Whether every file's data in a loader's record is a parse made here of JSON's types alone."""
        return all(file in self.exact and self.exact[file] is data for file, data in record.items())

    def references(self, record: dict[str, Any]) -> dict[str, cache.Reference]:
        """For each file in a loader's record whose data is a parse judged here and kept (as it is,
        or with the items put in place since), what a verdict keeps instead of the data."""
        return {file: self._kept[file][1] for file, data in record.items()
                if file in self._kept and self._kept[file][0] is data}

    def check(self, source: Source, data: Any, name: str = schema.INVENTORY) -> list[Diagnostic]:
        parsed = self._waiting.pop(source.file, None)
        if parsed is None or parsed.data is not data or parsed.text != source.text:
            return schema.check(source, data, name)
        if parsed.judged == name and all(schema.item_is_valid(name, path, item) for path, _, item, _ in parsed.replaced):
            problems: list[Diagnostic] = []
        else:
            problems = schema.check(source, data, name)
        if parsed.kept_id is not None and not problems:
            self.edits[source.file] = Edit(parsed.slot.key, parsed.kept_id, data, parsed.replaced)
        if parsed.judged != name or problems or len(parsed.replaced) > REKEEP_AFTER:  # else kept as it is
            try:
                self.directory.mkdir(mode=0o700, exist_ok=True)
            except OSError:
                return problems  # no state directory yet: the verdict is not kept either
            ident = os.urandom(8).hex()  # another parse kept under this key later is another id
            if cache.put(parsed.slot, {"data": parsed.data, "runs": parsed.runs, "valid": None if problems else name,
                                       "id": ident}, exact=parsed.exact, text=parsed.text):
                self._kept[source.file] = (data, [parsed.slot.key, ident, []])
        elif parsed.kept_id is not None:
            since = [[path, index, item] for path, index, item, _ in parsed.replaced]
            self._kept[source.file] = (data, [parsed.slot.key, parsed.kept_id, since])
        return problems


def first_parse(source: Source, form: str) -> tuple[Any, list[Run], bool]:
    """The parse of a text with no parse of its shape kept, its runs, and whether it is made of
    JSON's own types alone (Reparser.exact): the shape (`form`: its items written `{}`) parsed, a
    sixth of the time, then each item put in place as an edit of the shape (`patched`); or, for
    a text with anchors or aliases, or an edit that cannot be made, the whole text (which also
    reports a syntax error, where it is)."""
    if "&" not in source.text and "*" not in source.text:
        plain = plain_shape(form)
        if plain is not None:
            data, runs = plain
        else:
            try:
                data, node = parse_nodes(Source(source.file, form))
            except InventoryError:
                data = None
            runs = runs_of(form, node) if data is not None else []
        if data is not None:
            made = patched({"text": form, "data": data, "runs": runs}, source.text)
            if made is not None:
                return made[0], runs, plain is not None and made[2]
    data, node = parse_nodes(source)
    return data, runs_of(source.text, node), False


# The lines of a plain shape: a key and a plain scalar or nothing, an item placeholder, a comment.
_SHAPE_KEY = re.compile(rf"( *)([A-Za-z_][A-Za-z0-9_.-]{{0,{MAX_KEY - 1}}}):(?: +([!-\"$-~][!-~]*))? *")  # printable ASCII
_SHAPE_ITEM = re.compile(r"( *)- \{\} *")
_SHAPE_SKIP = re.compile(r" *(?:#[\t -~]*)?")  # YAML refuses control characters, in a comment too


def plain_shape(form: str) -> tuple[dict[str, Any], list[Run]] | None:
    """The parse of a shape (`form`) and its runs, read without a YAML parser when the shape is
    of the plain kind a generated or hand-written inventory has: nested block mappings whose keys
    are words, whose values are plain scalars of certain YAML 1.1 meaning (`_scalar`) or blocks,
    and block sequences of `{}` (the items; each sequence a run). Whole-line comments and a first
    `---` are passed over. Anything else (a quote, a flow collection, a tab, an `&` or `*`
    anywhere, a control character, a duplicate key, a key YAML 1.1 reads as a boolean, an
    indentation that opens no block) is None, and ruamel parses the shape: importing ruamel and
    parsing a 1000-device shape with it was 40 ms of a converge's load. tests/unit/test_reparse.py
    and the plain_shape fuzz target hold this to ruamel's parse."""
    if "&" in form or "*" in form:  # no runs where an anchor may be (runs_of), even in a comment
        return None
    root: dict[str, Any] = {}
    runs: list[Run] = []
    blocks: list[_Block] = [_Block(0, root, [])]  # the open blocks, innermost last
    opening: tuple[_Block, str] | None = None  # a `key:` with nothing after it: its value opens next
    for number, line in enumerate(form.split("\n")):
        if _SHAPE_SKIP.fullmatch(line) or (line == "---" and number == 0):
            continue
        item = _SHAPE_ITEM.fullmatch(line)
        pair = None if item else _SHAPE_KEY.fullmatch(line)
        if pair is None and item is None:
            return None
        indent = len(pair[1] if pair else item[1])  # type: ignore[index]
        if opening is not None:
            parent, key = opening
            opening = None
            path = [*parent.path, key]
            if item is not None and indent >= parent.indent:  # a sequence may sit at its key's indent
                parent.container[key] = []
                blocks.append(_Block(indent, parent.container[key], path, []))
                runs.append([path, blocks[-1].items])
            elif pair is not None and indent > parent.indent:
                parent.container[key] = {}
                blocks.append(_Block(indent, parent.container[key], path))
            if len(blocks) + 2 > MAX_DEPTH:  # with an item, and a list in it: deeper than a parse allows
                return None
        while blocks[-1].indent > indent or (pair and blocks[-1].items is not None and blocks[-1].indent == indent):
            blocks.pop()  # the root's indent is 0 and it is a mapping: it is never popped
        block = blocks[-1]
        if block.indent != indent:
            return None
        if item is not None:
            if block.items is None:
                return None
            block.items.append([number, indent + 2])
            block.container.append({})
            continue
        assert pair is not None
        key, raw = pair[2], pair[3]
        if key in block.container or key.lower() in _NOT_TEXT:
            return None
        if raw is None:
            block.container[key] = None  # unless a block follows
            opening = (block, key)
            continue
        value = _scalar(raw)
        if value is None:
            return None
        block.container[key] = value
    return (root, [[path, stretches(items)] for path, items in runs]) if root else None


@dataclass
class _Block:
    """plain_shape's open mapping (`items` None) or sequence (`items`: its run's positions)."""

    indent: int
    container: Any
    path: list[Any]
    items: list[list[int]] | None = None


def outline(text: str) -> str:
    """What the kept parse of a text's earlier version is found by: its number of lines and each
    line in which no item can be (none with `- {`). The shape would do, but it matches ITEM on
    every line (0.73 ms for 1000 devices, where this is a substring test a line: 0.14 ms), and
    the key need not be exact: patched() checks every line that differs, so a parse found by a
    looser key is at worst one that is not used."""
    lines = text.split("\n")
    return f"{len(lines)}\n" + "\n".join([line for line in lines if "- {" not in line])


def shape(text: str) -> str:
    """The text with every item line (ITEM) reduced to its indentation: texts of one shape differ
    only in such lines, so the last parse of one may be patched into the parse of another,
    whatever file either came from."""
    return "\n".join(m[1] + "- {}" if (m := ITEM.fullmatch(line)) else line for line in text.split("\n"))


def odd_breaks(text: str) -> bool:
    """Whether `text` holds an ODD_BREAK. The search is 1.3 ms for a 1000-device inventory; a text
    with no CR and of ASCII alone (a flag the interpreter keeps on every string) holds none."""
    return ("\r" in text or not text.isascii()) and ODD_BREAK.search(text) is not None


def runs_of(text: str, node: Any) -> list[Run]:
    """Every block sequence whose items are all one-line flow mappings, each on a line of its own.
    No runs in a text with an anchor or alias, or a line break only YAML counts (odd_breaks): runs
    are numbered by ruamel's lines, and patched() finds them by str.split's."""
    out: list[Run] = []
    if "&" not in text and "*" not in text and not odd_breaks(text):
        _walk(node, [], out)
    return out


def _walk(n: Any, path: list[str | int], out: list[Run]) -> None:
    """runs_of's walk: a function of its own, as a recursive closure is a reference cycle that
    would keep `out` (and the runs in it) until a collection."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    if isinstance(n, MappingNode):
        for k, v in n.value:
            if getattr(k, "tag", "") == "tag:yaml.org,2002:str" and isinstance(k.value, str):
                _walk(v, [*path, k.value], out)
    elif isinstance(n, SequenceNode):
        items = n.value
        if (not n.flow_style and items
                and all(isinstance(i, MappingNode) and i.flow_style and i.start_mark.line == i.end_mark.line
                        for i in items)
                and len({i.start_mark.line for i in items}) == len(items)):
            out.append([[*path], stretches([[i.start_mark.line, i.start_mark.column] for i in items])])
            return
        for index, item in enumerate(items):
            _walk(item, [*path, index], out)


def patched(kept: dict[str, Any], text: str) -> tuple[Any, list[Replaced], bool] | None:
    """The parse of `text` made from `kept` (the last parse: its text, data and runs), with each
    item put in place, and whether plain_item read every one of them; None when the edit is not
    one this can do. `kept` is input: any shape it does not have is None."""
    old_text, data, runs = kept.get("text"), kept.get("data"), kept.get("runs")
    if not isinstance(old_text, str) or not isinstance(runs, list):
        return None
    if old_text == text:
        return data, [], True
    if odd_breaks(old_text) or odd_breaks(text):
        return None
    old, new = old_text.split("\n"), text.split("\n")
    if len(old) != len(new):
        return None
    changed = list(compress(count(), map(ne, old, new)))  # the lines compared in C: 0.05 ms of 2000, not 0.16
    located = _located(runs, data)
    if located is None:
        return None
    firsts = [stretch[0] for stretch in located]
    replaced = []
    alone = 0
    for line in changed:
        k = bisect_right(firsts, line) - 1
        if k < 0 or line > located[k][1]:
            return None
        first, _, column, path, sequence, start = located[k]
        index = start + line - first
        a, b = ITEM.fullmatch(old[line]), ITEM.fullmatch(new[line])
        if a is None or b is None or len(a[1]) + 2 != column or a[1] != b[1]:
            return None
        item = plain_item(b[2])
        if item is None:
            alone += 1
            if alone > MAX_ALONE:
                return None
            try:
                item, _ = parse_nodes(Source("", b[2]))
            except Exception:  # noqa: BLE001 - a line that does not parse alone: the full parse says why, and where
                return None
        if not isinstance(item, dict):
            return None
        replaced.append((path, index, item, sequence[index]))
        sequence[index] = item
    return data, replaced, alone == 0


# A stretch of a run's items as patched() looks it up: its first and last line, its column, the
# path of the run's list, the list in the data, the index of the stretch's first item in it.
_Stretch = tuple[int, int, int, list[Any], list[Any], int]


def _located(runs: list[Any], data: Any) -> list[_Stretch] | None:
    """Every stretch of every run, in the order of their lines, or None when the kept runs are not
    a parse's (kept data is input): a run's stretches in order and apart, none empty, its list in
    the data and as long as they say, no two stretches on one line, and no item so deep that the
    document it is put in would be deeper than a parse allows (source.MAX_DEPTH: the run's list,
    the item, a list in the item). patched() finds each edited line's item in it by bisection,
    once: a search run by run cost (edited lines × runs), 13 s for the first parse of an inventory of
    8000 hosts, each with lists of its own."""
    out: list[_Stretch] = []
    try:
        for path, stretched in runs:
            if not isinstance(path, list) or len(path) + 3 > MAX_DEPTH:
                return None
            sequence = cache.at(data, path)
            end, count = -1, 0
            for first, column, n in stretched:
                if not (type(first) is int and type(column) is int and type(n) is int and first > end and n > 0):
                    return None
                out.append((first, first + n - 1, column, path, sequence, count))
                end, count = first + n - 1, count + n
            if not isinstance(sequence, list) or len(sequence) != count:
                return None
    except (TypeError, ValueError, IndexError):
        return None
    out.sort(key=itemgetter(0))
    if any(a[1] >= b[0] for a, b in zip(out, out[1:], strict=False)):
        return None
    return out


def stretches(positions: list[list[int]]) -> list[list[int]]:
    """[[line, column] of each item, in order] as [[first line, column, count], ...]: a stretch
    for each series of items on lines one after another at one column."""
    out: list[list[int]] = []
    for line, column in positions:
        if out and out[-1][1] == column and out[-1][0] + out[-1][2] == line:
            out[-1][2] += 1
        else:
            out.append([line, column, 1])
    return out


# The items an edit writes are nearly always of a few forms: `{name: t1, type: tap, mtu: 1400}`,
# `{to: 192.0.2.0/24, dev: t1}`. Parsing such a line needs no YAML parser, and importing ruamel
# for it was 15-20 ms of a one-change apply's 0.4 s. plain_item reads only those forms, and
# gives None (ruamel parses the line) for anything else: a scalar whose YAML 1.1 meaning is not
# plainly text or a decimal integer (yes, 0755, 1_000, 1.5, ~), a `:` in a scalar (an error in a
# flow collection, `fd00::1/64` included), other spacing, a trailing comma, an empty value, a
# repeated key. tests/unit/test_reparse.py holds it to ruamel's parse.
_KEY = rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_KEY - 1}}}"
_VALUE = r"(?:\[[^\[\]]*\]|[^ ,:\[\]{}]+)"  # a flat flow sequence, or a scalar without `:` (YAML 1.1 has
# none in a plain scalar in a flow collection: `fd00::1/64` must be quoted there)
_PLAIN = re.compile(rf"\{{ *(?:{_KEY}: +{_VALUE} *(?:, *{_KEY}: +{_VALUE} *)*)?\}}")
_PAIR = re.compile(rf"({_KEY}): +({_VALUE})")
_SCALAR = re.compile(r"[^ ,:\[\]{}]+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_DECIMAL = re.compile(rf"-?(?:0|[1-9][0-9]{{0,{MAX_DIGITS - 1}}})")
_NOT_TEXT = frozenset(("y", "n", "yes", "no", "true", "false", "on", "off", "null"))  # YAML 1.1, any case


def plain_item(flow: str) -> dict[str, Any] | None:
    """`flow` (a `{...}` that ITEM matched) as a dict, or None when it is not of the plain forms."""
    if not _PLAIN.fullmatch(flow):
        return None
    out: dict[str, Any] = {}
    for key, raw in _PAIR.findall(flow):  # the pairs _PLAIN matched, in order
        if key in out or key.lower() in _NOT_TEXT:
            return None
        if raw[0] == "[":
            inner = raw[1:-1]
            value: Any = [_scalar(part.strip()) for part in inner.split(",")] if inner.strip() else []
            if None in value:
                return None
        else:
            value = _scalar(raw)
            if value is None:
                return None
        out[key] = value
    return out


def _scalar(text: str) -> str | int | None:
    """A plain scalar whose YAML 1.1 meaning is certain: text with a `/` (no YAML 1.1 type but a
    string has one), a word that is no boolean or null, a decimal integer; None otherwise."""
    if not _SCALAR.fullmatch(text):
        return None
    if "/" in text and text[0].isalnum():
        return text
    if _WORD.fullmatch(text):
        return None if text.lower() in _NOT_TEXT else text
    if _DECIMAL.fullmatch(text):
        return int(text)
    return None

