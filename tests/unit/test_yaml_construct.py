"""The fast YAML build (source._build, source._resolver) against ruamel's own resolver and
constructor (`parse_nodes(..., fast=False)`): for every document, the same data (values and
types: `True` is not `1`), the same sharing of objects (aliases, cycles), the same node tree
(tags, values, marks), the same warnings, and the same error, message and cause."""

from __future__ import annotations

import math
import random
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from provisioner import source
from provisioner.errors import InventoryError
from provisioner.source import Source, parse_nodes

CORPUS = [
    "",
    "# only a comment\n",
    "---\n...\n",
    "a\n",
    "a: 1\nb: [x, y, {c: d}]\nc: {e: [1, 2], f: {}}\nd: []\n",
    "- a\n- - b\n  - c\n- {d: e}\n- e: f\n  g: h\n",
    # every YAML 1.1 scalar form
    "[0, 7, -7, +7, 0755, -0755, 0o17, 0x1F, -0x1f, 0b101, 1_000, 0_7, 1:20, -1:20, 190:20:30, 09, 08.5]\n",
    "[yes, Yes, YES, no, No, NO, on, On, ON, off, Off, OFF, y, Y, n, N, true, True, TRUE, false, False, FALSE]\n",
    "[~, null, Null, NULL, '', , 'null', \"~\"]\n",
    "[1.0, -1.5, +1.5, 1., .5, 1_000.5, 6.8523015e+5, 685.230_15e+03, 1e3, 1E3, 190:20:30.15, .inf, -.Inf, +.INF]\n",
    "[.nan, .NaN, .NAN]\n",
    "a: .nan\nb: .nan\n",
    "[2001-12-14, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10 -5, 2001-12-15T02:59:43.1Z, 2002-12-14 21:59:43]\n",
    "[2001-12-14 21:59:43.1234567, 2001-12-14 21:59:43.9999996]\n",
    "a: !!binary aGVsbG8gd29ybGQ=\nb: !!binary |\n  aGVs\n  bG8=\n",
    "[!!str 123, !!str yes, !!str ~, !!int '7', !!int 0755, !!float '1', !!bool 'on', !!null '', !!timestamp 2001-12-14]\n",
    "[! 123, ! yes, '123', \"yes\", '0755']\n",
    "a: |\n  literal\n  text\nb: >\n  folded\n  text\nc: \"esc\\taped\\u00e9\"\n",
    "ключ: значение\n'quoted key': 1\n\"dq key\": 2\n",
    # non-string keys
    "1: a\ntrue: b\nnull: c\n~: d\n1.5: e\n0755: f\n2001-12-14: g\nyes: h\n",
    "{1: a, 2: b, 1.5: c, no: d}\n",
    "? [a, b]\n: c\n",
    "? {a: b}\n: c\n",
    "{[1, 2]: a}\n",
    "=: a\n",
    "a: =\n",
    "[=]\n",
    # merge keys
    "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n",
    "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n",
    "c:\n  <<: {x: 1}\n  <<: {y: 2}\n",
    "c:\n  <<: 1\n",
    "c:\n  <<: [1]\n",
    "- <<\n",
    "a: <<\n",
    # anchors and aliases
    "a: &x [1, 2]\nb: *x\nc: *x\n",
    "a: &x {k: v}\nb: [*x, *x]\n",
    "a: &s some text\nb: *s\n",
    "a: &i 1000\nb: *i\nc: &f 1.5\nd: *f\ne: &t 2001-12-14\nf: *t\n",
    "a: &n ~\nb: *n\n",
    "&r [*r]\n",
    "&r {a: *r}\n",
    "a: &r\n  b: *r\n  c: [*r]\n",
    "a: &k key\n*k : v\n",
    "a: *undefined\n",
    "a: &x 1\nb: &x 2\n",
    "a: &x 1\nb: &x 2\nc: *x\n",
    # duplicate keys
    "a: 1\na: 2\n",
    "{a: 1, a: 2}\n",
    "1: a\ntrue: b\n",
    "0: a\nfalse: b\n",
    "1: a\n1.0: b\n",
    "~: a\nnull: b\n",
    ".nan: a\n.nan: b\n",
    "x:\n  a: 1\n  b: 2\n  a: 3\n",
    "- {a: 1, b: 2}\n- {a: 1, a: 2}\n",
    "a: !!bool maybe\nb: 1\nb: 2\n",
    "a: 1\na: 2\nb: !!int x\n",
    # ruamel builds nested collections after their parent's scalars: its first error is not a walk's
    "a: {b: !!timestamp bad}\nc: !!int x\n",
    "a: {b: 1, b: 2}\nc: !!int x\n",
    "- [!!binary é]\n- !!bool maybe\n",
    # other tags
    "!!set {a, b, c}\n",
    "!!set {a, a}\n",
    "!!omap [a: 1, b: 2]\n",
    "!!omap [a: 1, a: 2]\n",
    "!!pairs [a: 1, a: 2]\n",
    "!!map {a: 1}\n",
    "!!seq [a]\n",
    "a: !!str {b: c}\n",
    "a: !!map x\n",
    "a: !!seq x\n",
    "a: !foo bar\n",
    "a: !foo {b: c}\n",
    "a: !!python/name:os.system ''\n",
    "%TAG !e! tag:example.com,2000:\n---\na: !e!thing x\n",
    "a: !!int x\n",
    "a: !!float x\n",
    "a: !!bool maybe\n",
    "a: !!binary '%%%'\n",
    "a: !!binary é\n",
    "a: !!timestamp yesterday\n",
    "a: !!null x\n",
    "a: !!value x\n",
    # float forms that warn (an exponent with no dot)
    "[1e3, 2e4]\na: !!float 5e1\n",
    "a: 1e3\nb: 1\nb: 2\n",
    # bad YAML: the parser's error, unchanged
    "a: [1, 2\n",
    "a: b: c\n",
    "- a\nb: c\n",
    "a: 1\n---\nb: 2\n",
    "\t- a\n",
    "a: '\n",
    "%YAML 1.2\n---\na: 0755\n",
    "%YAML 1.1\n---\na: 0755\n",
    # nesting
    "a:\n  b:\n    c:\n      - d: [e, {f: [g, {h: i}]}]\n        j: k\n",
    "[" * 60 + "x" + "]" * 60 + "\n",
    "a:" + "".join(f"\n{'  ' * (i + 1)}k{i}:" for i in range(90)) + " v\n",
    # deeper than source.MAX_DEPTH is refused, where ruamel alone builds it: test_loader.py
]


def _tree(node: Any, seen: dict[int, int]) -> Any:
    """The node tree as plain data, with marks; a node met again is its first number (aliases, cycles)."""
    if node is None:
        return None
    if id(node) in seen:
        return ("again", seen[id(node)])
    seen[id(node)] = len(seen)
    marks = tuple((m.line, m.column, m.index) if m is not None else None for m in (node.start_mark, node.end_mark))
    head = (type(node).__name__, node.tag, node.anchor, marks, getattr(node, "style", None),
            getattr(node, "flow_style", None), getattr(node, "merge", None) is not None)
    if isinstance(node.value, str):
        return (*head, node.value)
    if node.value and isinstance(node.value[0], tuple):
        return (*head, [(_tree(k, seen), _tree(v, seen)) for k, v in node.value])
    return (*head, [_tree(n, seen) for n in node.value])


def _outcome(text: str, fast: bool) -> tuple[Any, ...]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data, node = parse_nodes(Source("t.yaml", text), fast=fast)
        except InventoryError as exc:
            cause = exc.__cause__
            result: tuple[Any, ...] = ("error", exc.diagnostics, type(cause), str(cause))
        except Exception as exc:  # ruamel lets some through (a KeyError for `!!bool maybe`): the same, then
            result = ("raised", type(exc), str(exc))
        else:
            result = ("ok", data, node)
    return (*result, [(w.category, str(w.message)) for w in caught])


def _check(text: str) -> None:
    fast, oracle = _outcome(text, True), _outcome(text, False)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # to compare the deepest documents (_build gives them up to ruamel)
    try:
        _compare(text, fast, oracle)
    finally:
        sys.setrecursionlimit(limit)


def _compare(text: str, fast: tuple[Any, ...], oracle: tuple[Any, ...]) -> None:
    assert fast[0] == oracle[0], (text, fast, oracle)
    assert fast[-1] == oracle[-1], ("warnings", text)
    if fast[0] != "ok":
        assert fast == oracle, text
        return
    _same(fast[1], oracle[1], {}, set(), "")
    assert _tree(fast[2], {}) == _tree(oracle[2], {}), ("node tree", text)


def _same(a: Any, b: Any, pairs: dict[int, int], active: set[int], path: str) -> None:
    """a and b equal, of the same types all through, and sharing objects alike (each object of a
    stands for one object of b, and the other way round); a cycle is compared once."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} {a!r} != {type(b).__name__} {b!r}"
    if a is None or isinstance(a, bool):
        return
    if pairs.setdefault(id(a), id(b)) != id(b) or pairs.setdefault(~id(b), id(a)) != id(a):
        raise AssertionError(f"{path}: shared differently")
    if isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
        return
    if not isinstance(a, (dict, list)):
        assert a == b, f"{path}: {a!r} != {b!r}"
        return
    if id(a) in active:  # a cycle, being compared already
        return
    active.add(id(a))
    assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
    if isinstance(a, dict):
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
            _same(ka, kb, pairs, active, f"{path}/key {ka!r}")
            _same(va, vb, pairs, active, f"{path}/{ka!r}")
    else:
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, pairs, active, f"{path}[{i}]")
    active.discard(id(a))


@pytest.mark.parametrize("text", CORPUS)
def test_corpus(text: str) -> None:
    _check(text)


def test_the_fast_build_serves_the_plain_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a fallback in disguise: an ordinary inventory is built by _build alone."""
    built = []
    real = source._build
    monkeypatch.setattr(source, "_build", lambda root, c: built.append(real(root, c)) or built[-1])
    text = "all:\n  hosts:\n    h:\n      network:\n        devices:\n          - {name: t0, type: tap, mtu: 1400}\n"
    _check(text)
    assert built and built[0]["all"]["hosts"]["h"]["network"]["devices"][0]["mtu"] == 1400


def test_shared_scalars_stay_shared() -> None:
    data, _ = parse_nodes(Source("t.yaml", "a: &i 100000\nb: *i\nc: &l [1]\nd: *l\n"))
    assert data["a"] is data["b"] and data["c"] is data["d"]


def test_cycles_stay_cycles() -> None:
    data, _ = parse_nodes(Source("t.yaml", "a: &r\n  b: *r\n"))
    assert data["a"]["b"] is data["a"]


# Random documents: a seeded mix of the forms above, block and flow, with anchors, aliases,
# duplicate keys and tags now and then.
SCALARS = ["a", "tp1", "10.0.0.1/32", "tap", "yes", "No", "on", "OFF", "y", "n", "~", "null", "''", "'quoted'",
           '"dq"', "0", "7", "-7", "0755", "0o17", "0x1F", "0b101", "1_000",
           "3.14", "1e3", "1.5e3", ".inf", "-.Inf", ".nan", "2001-12-14",
           "!!str 123", "!!int '7'", "!!float 1", "!!binary aGVsbG8=", "'0755'", "\"yes\"", "!!timestamp 2002-01-01", "é", "1.0"]
COLONS = ["1:20", "-1:30", "190:20:30.15", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5"]  # block only
BAD = ["!!bool maybe", "!foo x", "=", "<<", "!!int x", "!!set {a}"]  # each fails to build
KEYS = ["name", "type", "mtu", "to", "dev", "1", "true", "null", "~", "0755", "1.5", "2001-12-14", "'a b'",
        "yes", "'yes'", "=", "0x1"]


class _Doc:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.anchors: list[str] = []

    def _prefix(self) -> str:
        if self.rng.random() < 0.08:
            name = f"a{len(self.anchors)}"
            self.anchors.append(name)
            return f"&{name} "
        return ""

    def _alias(self) -> str | None:
        if self.anchors and self.rng.random() < 0.08:
            return "*" + self.rng.choice(self.anchors)
        return None

    def _keys(self, n: int) -> list[str]:
        keys = [self.rng.choice(KEYS) if self.rng.random() < 0.3 else f"k{i}" for i in range(n)]
        if self.rng.random() > 0.05:  # most mappings have no duplicate key
            keys = list(dict.fromkeys(keys))
        return keys

    def flow(self, depth: int, colons: bool = False) -> str:
        """A node in flow style; `colons`: it may be a scalar with a `:` (which libyaml refuses in a
        flow collection)."""
        alias = self._alias()
        if alias:
            return alias
        kind = self.rng.random()
        if depth <= 0 or kind < 0.5:
            pool = BAD if self.rng.random() < 0.01 else COLONS if colons and self.rng.random() < 0.2 else SCALARS
            return self._prefix() + self.rng.choice(pool)
        prefix = self._prefix()
        n = self.rng.randint(0, 4)
        if kind < 0.75:
            return prefix + "[" + ", ".join(self.flow(depth - 1) for _ in range(n)) + "]"
        if self.rng.random() < 0.05:
            return prefix + "{<<: " + self.flow(depth - 1) + "}"
        return prefix + "{" + ", ".join(f"{k}: {self.flow(depth - 1)}" for k in self._keys(n)) + "}"

    def block(self, depth: int, indent: int) -> list[str]:
        """Lines of a block collection at `indent`."""
        pad = " " * indent
        lines = []
        n = self.rng.randint(1, 4)
        if self.rng.random() < 0.5:
            for _ in range(n):
                lines += self._entry(f"{pad}-", depth, indent + 2)
        else:
            for key in self._keys(n):
                lines += self._entry(f"{pad}{key}:", depth, indent + 2)
        return lines

    def _entry(self, head: str, depth: int, indent: int) -> list[str]:
        if depth > 0 and self.rng.random() < 0.4:
            alias = self._alias()
            if alias:
                return [f"{head} {alias}"]
            return [f"{head} {self._prefix()}".rstrip()] + self.block(depth - 1, indent)
        return [f"{head} {self.flow(depth - 1, colons=True)}"]


def _random_document(seed: int) -> str:
    rng = random.Random(seed)
    doc = _Doc(rng)
    if rng.random() < 0.2:
        return doc.flow(4) + "\n"
    return "\n".join(doc.block(4, 0)) + "\n"


@pytest.mark.parametrize("chunk", range(8))
def test_random_documents(chunk: int) -> None:
    for seed in range(chunk * 50, chunk * 50 + 50):
        text = _random_document(seed)
        try:
            _check(text)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}:\n{text}") from exc


def test_random_documents_are_varied() -> None:
    """The random corpus reaches both builds: most documents fast, some through ruamel's."""
    outcomes = {"ok": 0, "error": 0, "raised": 0}
    for seed in range(400):
        outcomes[_outcome(_random_document(seed), True)[0]] += 1
    assert outcomes["ok"] > 100 and outcomes["error"] > 20, outcomes


ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(p for d in ("inventories", "tests/inventories", "examples", "contrib") for p in (ROOT / d).rglob("*.y*ml"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_of_the_repository(path: Path) -> None:
    _check(path.read_text())
