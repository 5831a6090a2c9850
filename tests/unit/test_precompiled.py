"""The dataclass methods and regular expressions compiled once (precompiled.py): a command
compiles none of them, the classes and patterns are the same as without, and a kept file that is
not to be trusted is not read."""

from __future__ import annotations

import json
import marshal
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner import precompiled

INVENTORY = "all:\n  hosts:\n    h1:\n      network: {devices: [{name: t0, type: tap}]}\n"

# The console script's entry point (pyproject.toml), its kept methods at argv[2], counting the
# texts of dataclass methods that were compiled (the audit event exec() raises for a text).
COMMAND = """
import atexit, re, sys
module, function = re.search(r'^provision = "([\\w.]+):(\\w+)"', open(sys.argv[1]).read(), re.M).groups()
from provisioner import precompiled
precompiled.CACHE = sys.argv[2]
sys.argv = ["provision", "validate", sys.argv[3]]
compiled, patterns = [], []
sys.addaudithook(lambda event, args: event == "compile" and "__create_fn__" in str(args[0]) and compiled.append(args[0]))
compiler = re._compiler.compile
re._compiler.compile = lambda p, flags=0: (patterns.append(p), compiler(p, flags))[1]
atexit.register(lambda: print("texts compiled:", len(compiled), "patterns compiled:", len(patterns), file=sys.stderr))
getattr(__import__(module, fromlist=[function]), function)()
"""

# Every dataclass of provision's modules, each method as compiled: what a class is made of.
CLASSES = """
import dataclasses, importlib, json, pkgutil, re, sys
from provisioner import precompiled
kept = precompiled.install(sys.argv[1]) if sys.argv[1] != "-" else 0
out = {"kept texts": kept}
for m in pkgutil.walk_packages([precompiled.PACKAGE], "provisioner."):
    if m.name == "provisioner.__main__":
        continue
    module = importlib.import_module(m.name)
    for name, cls in vars(module).items():
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == m.name:
            for attr, f in sorted(vars(cls).items()):
                code = getattr(f, "__code__", None)
                if code is not None and code.co_filename == "<string>":
                    out[f"{m.name}.{name}.{attr}"] = [code.co_code.hex(), repr(code.co_consts), code.co_varnames,
                                                      repr(f.__annotations__),
                                                      re.sub(" at 0x[0-9a-f]+", "", repr(f.__defaults__))]
print(json.dumps(out))
"""


def _package() -> Path:
    return Path(precompiled.PACKAGE)


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Methods recorded as make bytecode records them, into a directory of the test's own."""
    path = tmp_path_factory.mktemp("pycache") / "methods.marshal"
    r = subprocess.run([sys.executable, "-m", "provisioner.precompiled", str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return path


def test_a_command_compiles_no_dataclass_method_once_they_are_kept(kept: Path, tmp_path: Path) -> None:
    """Every run compiled some 200 texts that @dataclass writes (30 ms of a 0.2 s no-op plan); with
    the methods kept at install, none."""
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    toml = _package().parent / "pyproject.toml"
    env = {**os.environ, "PROVISION_STATE_DIR": str(tmp_path / "state")}

    def compiled(cache: Path) -> tuple[int, int]:
        r = subprocess.run([sys.executable, "-c", COMMAND, str(toml), str(cache), "inv.yaml"], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        words = r.stderr.rsplit("texts compiled:", 1)[1].split()
        return int(words[0]), int(words[3])

    methods, patterns = compiled(tmp_path / "missing.marshal")  # as before: the file is all that changes
    assert methods > 100 and patterns > 10
    assert compiled(kept) == (0, 0)


def test_the_classes_are_the_ones_dataclasses_compiles_itself(kept: Path) -> None:
    def classes(*args: str) -> dict[str, list[str]]:
        r = subprocess.run([sys.executable, "-c", CLASSES, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    mine, theirs = classes(str(kept)), classes("-")
    assert mine.pop("kept texts") > 200 and theirs.pop("kept texts") == 0  # the kept code was used, or not
    assert len(theirs) > 200 and mine == theirs


def test_an_unkept_text_is_compiled_as_dataclasses_would(tmp_path: Path) -> None:
    """A class changed since install: its texts are compiled here, without this module's
    `from __future__ import annotations` (which would make every annotation of __init__ a string)."""
    script = ("import dataclasses, sys\nfrom provisioner import precompiled\n"
              "assert precompiled.install(sys.argv[1]) > 0\n"
              "@dataclasses.dataclass(frozen=True)\nclass Fresh:\n    x: int = 3\n"
              "print(Fresh.__init__.__annotations__, Fresh(), Fresh() == Fresh(4))")
    path = tmp_path / "m.marshal"
    path.write_bytes(precompiled.HEADER + marshal.dumps(({"def f(): pass": compile("1", "s", "exec")}, {})))
    r = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{'x': <class 'int'>, 'return': None} Fresh(x=3) False"


def _file(tmp_path: Path, data: bytes | None = None) -> Path:
    d = tmp_path / "__pycache__"
    d.mkdir(mode=0o755, exist_ok=True)
    path = d / "m.marshal"
    path.write_bytes(precompiled.HEADER + marshal.dumps(({"text": compile("1", "s", "exec")}, {}))
                     if data is None else data)
    path.chmod(0o644)
    return path


def test_a_trusted_file_is_read(tmp_path: Path) -> None:
    assert list(precompiled.load(str(_file(tmp_path)))[0]) == ["text"]


@pytest.mark.parametrize("data", [
    b"provision precompiled 2 cpython-39 30900f0\n" + marshal.dumps(({}, {})),  # another Python's
    b"",
    b"not ours at all",
    precompiled.HEADER + b"\xff\x00garbage",
    precompiled.HEADER + marshal.dumps(({"text": compile("1", "s", "exec")}, {}))[:-3],  # cut short
    precompiled.HEADER + marshal.dumps(["text"]),
    precompiled.HEADER + marshal.dumps({"text": compile("1", "s", "exec")}),  # the first form: methods alone
    precompiled.HEADER + marshal.dumps(({1: compile("1", "s", "exec")}, {("x", "0"): (0, [], 0, {}, ())})),
])
def test_a_file_not_of_this_python_or_not_whole_is_not_used(tmp_path: Path, data: bytes) -> None:
    assert precompiled.load(str(_file(tmp_path, data))) == ({}, {})


def test_a_file_someone_else_can_write_is_not_read(tmp_path: Path) -> None:
    path = _file(tmp_path)
    path.chmod(0o666)
    assert precompiled.load(str(path)) == ({}, {})
    path.chmod(0o644)
    path.parent.chmod(0o777)
    assert precompiled.load(str(path)) == ({}, {})


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_of_another_user_is_not_read(tmp_path: Path) -> None:
    path = _file(tmp_path)
    os.chown(path, 65534, 65534)
    assert precompiled.load(str(path)) == ({}, {})
    os.chown(path, 0, 0)
    os.chown(path.parent, 65534, 65534)
    assert precompiled.load(str(path)) == ({}, {})


def test_a_link_or_a_fifo_is_not_read(tmp_path: Path) -> None:
    real = _file(tmp_path)
    link = real.parent / "link.marshal"
    link.symlink_to(real)
    assert precompiled.load(str(link)) == ({}, {})
    fifo = real.parent / "fifo.marshal"
    os.mkfifo(fifo, 0o644)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert precompiled.load(str(fifo)) == ({}, {})  # and did not block on it
    other = tmp_path / "elsewhere"
    other.mkdir(mode=0o755)
    (other / "__pycache__").symlink_to(real.parent)
    assert precompiled.load(str(other / "__pycache__" / "m.marshal")) == ({}, {})


def test_a_missing_file_changes_nothing(tmp_path: Path) -> None:
    assert precompiled.load(str(tmp_path / "none" / "m.marshal")) == ({}, {})
    assert precompiled.install(str(tmp_path / "none" / "m.marshal")) == 0


def test_each_kept_pattern_is_the_one_re_compiles(kept: Path) -> None:
    """The same flags, groups and program: `==` of two patterns compares them all."""
    import _sre
    import re

    _, programs = precompiled.load(str(kept))
    assert len(programs) > 40
    for (pattern, flags), program in programs.items():
        assert _sre.compile(pattern, *program) == re._compiler.compile(pattern, flags), pattern  # type: ignore[attr-defined]


PATTERNS = """
import re, sys
from provisioner import precompiled
precompiled.install(sys.argv[1])
print(re.compile("(?P<x>a+)b").fullmatch("aab")["x"], bool(re.compile("[0-9]+").fullmatch("12")))
"""


def test_a_program_the_matcher_refuses_is_compiled_by_re_instead(tmp_path: Path) -> None:
    """A kept program is checked by _sre.compile before it becomes a pattern: one it refuses
    (here, a program of nonsense, and one of another pattern's groups) is left to re's compiler."""
    programs = {("(?P<x>a+)b", 0): (32, [999, 1, 2], 0, {}, (None,)),
                ("[0-9]+", 0): ("not flags", [], 0, {}, (None,))}
    path = _file(tmp_path, precompiled.HEADER + marshal.dumps(({}, programs)))
    assert precompiled.load(str(path))[1] == programs
    r = subprocess.run([sys.executable, "-c", PATTERNS, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["aa", "True"]
