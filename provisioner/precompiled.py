"""The methods `@dataclass` writes and the programs `re` compiles, made once at install
instead of in every process.

`@dataclass` writes the source of each class's __init__, __repr__, __eq__, __hash__, ... and
compiles it with exec() while the module is imported. The .pyc files cannot keep that code,
since the text is only made at import: a no-op plan compiled some 200 such functions, 30 ms of
its 0.2 s, on every run. A regular expression is compiled by `re`'s compiler, written in
Python, into a program for the C matcher: the 20 patterns a no-op plan compiles (argparse's,
json's, gettext's 0.9 ms at its import, ours) were 2.3 ms of every run, and the parser of
edited texts (reparse.py) 1 ms more. `make bytecode` (part of `make setup`) runs this module,
which imports every module of provision once (and reads a command line with each command's
parser, and compiles each pattern of the generated validators), keeping the code of each text
dataclasses compiled and the program of each pattern `re` compiled, in the package's
__pycache__ beside the .pyc files. `install`, at the start of the process (command.py), then
hands dataclasses that code for each text it has, and puts each program, made into a pattern
by the C matcher's own constructor (which checks it), in `re`'s cache of compiled patterns:
the same text compiled the same way, so the same functions and patterns. A text or pattern it
has not (a class changed since, another Python) is compiled as before, and so is everything
when the file is missing or not trusted.

The file holds code, so it is trusted as the .pyc files beside it are, and no further: it and
its directory must belong to root or to the package directory's owner (who can change the
.py files themselves), be writable by no one else, be a regular file and a directory (never a
link), and the file must be under MAX_SIZE and made by this very Python (HEADER names
sys.hexversion). Anything else, and it is not read at all.
"""

from __future__ import annotations

import marshal
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from re import _compiler, _parser  # type: ignore[attr-defined]  # re's own compiler, in Python
from types import CodeType, ModuleType

import _sre


def _import_dataclasses() -> ModuleType:
    """dataclasses, with `inspect` imported only if it is used. dataclasses calls it for one
    thing, the docstring of a class that has none (inspect.signature), and importing inspect
    (with ast, dis, tokenize, linecache) was 30M instructions, 7% of a no-op plan, in every
    run. While dataclasses is imported its `inspect` is a stand-in that imports the real module
    at the first attribute asked of it; the stand-in is then taken out of sys.modules, so any
    other `import inspect` gets the real module."""
    if "dataclasses" in sys.modules or "inspect" in sys.modules:
        import dataclasses

        return dataclasses

    def real(name: str) -> object:
        import inspect

        return getattr(inspect, name)

    stand_in = ModuleType("inspect")
    stand_in.__getattr__ = real  # type: ignore[method-assign]  # PEP 562: asked for what it lacks
    sys.modules["inspect"] = stand_in
    try:
        import dataclasses
    finally:
        if sys.modules.get("inspect") is stand_in:
            del sys.modules["inspect"]
    return dataclasses


dataclasses = _import_dataclasses()

MAX_SIZE = 4 * 1024 * 1024  # some 300 texts and 50 programs make 0.4 MB
MAX_PATTERNS = 256  # re keeps 512 compiled patterns: the kept ones never push out one a run compiles
HEADER = f"provision precompiled 2 {sys.implementation.cache_tag} {sys.hexversion:x}\n".encode()
PACKAGE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(PACKAGE, "__pycache__", f"precompiled.{sys.implementation.cache_tag}.marshal")

Methods = dict[str, CodeType]  # the text dataclasses writes -> its code
# (pattern, flags as re.compile was given them) -> what re's compiler hands _sre.compile after
# the pattern: (flags, program, groups, group index, index group)
Programs = dict[tuple[str | bytes, int], tuple[int, list[int], int, dict[str, int], tuple[str | None, ...]]]


def _compiled(source: str) -> CodeType:
    """As exec() compiles a text that dataclasses hands it: no `from __future__` of ours leaks in."""
    return compile(source, "<string>", "exec", dont_inherit=True)


def install(path: str | None = None) -> int:
    """Make dataclasses use the kept code (at `path`, else CACHE) of the texts it compiles, and
    `re` the kept programs of its patterns; how many texts were kept."""
    codes, programs = load(path or CACHE)
    _cache_patterns(programs)
    if not codes:
        return 0

    def exec_kept(source: str, globals: dict | None = None, locals: Mapping | None = None) -> None:
        code = codes.get(source) if isinstance(source, str) else None
        exec(code if code is not None else _compiled(source), globals, locals)

    dataclasses.exec = exec_kept  # type: ignore[attr-defined]  # found before the builtin
    return len(codes)


def _cache_patterns(programs: Programs) -> None:
    """Each kept program made a pattern and put where re._compile looks first, under the key it
    would file its own compilation under. _sre.compile checks a program before it makes a
    pattern of it (a program it refuses is left to re's compiler)."""
    cache = getattr(re, "_cache", None)
    if not isinstance(cache, dict):  # another re: nothing kept is used
        return
    for (pattern, flags), program in programs.items():
        try:
            cache[type(pattern), pattern, flags] = _sre.compile(pattern, *program)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            continue


def program(pattern: str | bytes, flags: int) -> tuple[int, list[int], int, dict[str, int], tuple[str | None, ...]]:
    """What re._compiler.compile hands _sre.compile after the pattern, as plain values."""
    parsed = _parser.parse(pattern, flags)
    code = _compiler._code(parsed, flags)
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    return flags | parsed.state.flags, [int(op) for op in code], parsed.state.groups - 1, groupindex, tuple(indexgroup)


def load(path: str) -> tuple[Methods, Programs]:
    """The kept code by text and the kept programs by pattern; both empty if the file is missing,
    not trusted, or not this Python's. Read with os alone, as files.read_regular reads (no link,
    no FIFO, a size checked first): provision's own modules, whose classes this is for, are not
    imported yet."""
    try:
        owners = (0, os.stat(PACKAGE).st_uid)
        if not _trusted(os.lstat(os.path.dirname(path)), stat.S_ISDIR, owners):
            return {}, {}
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}, {}
    try:
        st = os.fstat(fd)
        if not _trusted(st, stat.S_ISREG, owners) or st.st_size > MAX_SIZE:
            return {}, {}
        data = os.read(fd, MAX_SIZE + 1)
    except OSError:
        return {}, {}
    finally:
        os.close(fd)
    if len(data) > MAX_SIZE or not data.startswith(HEADER):
        return {}, {}
    try:
        kept = marshal.loads(data[len(HEADER):])
    except (EOFError, ValueError, TypeError):
        return {}, {}
    if not (isinstance(kept, tuple) and len(kept) == 2 and isinstance(kept[0], dict) and isinstance(kept[1], dict)):
        return {}, {}
    codes = {k: v for k, v in kept[0].items() if isinstance(k, str) and isinstance(v, CodeType)}
    programs = {k: v for k, v in kept[1].items()
                if isinstance(k, tuple) and len(k) == 2 and isinstance(k[0], (str, bytes)) and type(k[1]) is int
                and isinstance(v, tuple) and len(v) == 5} if len(kept[1]) <= MAX_PATTERNS else {}
    return codes, programs


def _trusted(st: os.stat_result, kind: Callable[[int], bool], owners: tuple[int, ...]) -> bool:
    """Of one of `owners` (root, the package directory's owner), writable by no one else, of the
    kind wanted (a link is no directory and no regular file)."""
    return kind(st.st_mode) and st.st_uid in owners and not st.st_mode & 0o022


def record(path: str) -> tuple[int, int]:
    """Import every module of provision, keeping the code of each text dataclasses compiles and
    the program of each pattern compiled meanwhile, and write them to `path`; how many of each."""
    import importlib
    import pkgutil

    codes: dict[str, CodeType] = {}

    def exec_recorded(source: str, globals: dict | None = None, locals: Mapping | None = None) -> None:
        code = codes.setdefault(source, _compiled(source))
        exec(code, globals, locals)

    dataclasses.exec = exec_recorded  # type: ignore[attr-defined]
    try:
        for module in pkgutil.walk_packages([PACKAGE], "provisioner."):
            if module.name != "provisioner.__main__":  # which would run the command
                try:
                    importlib.import_module(module.name)
                except ImportError:  # a module whose optional library is not installed
                    continue
    finally:
        del dataclasses.exec  # type: ignore[attr-defined]
    _compile_what_runs_compile()
    programs: Programs = {}
    for (_, pattern, flags), compiled in list(re._cache.items())[:MAX_PATTERNS]:  # type: ignore[attr-defined]
        kept = program(pattern, flags)
        if _sre.compile(pattern, *kept) == compiled:  # the same flags, groups and program, or not kept
            programs[pattern, flags] = kept
    from .files import atomic_write

    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    atomic_write(path, HEADER + marshal.dumps((codes, programs)), mode=0o644, durable=False)
    return len(codes), len(programs)


def _compile_what_runs_compile() -> None:
    """The patterns compiled after the imports: argparse's, as it reads a command line (each
    command's parser reads one, and may say it is wrong), and the generated validators' (each
    compiled at its first use)."""
    import contextlib
    import importlib

    from .cli import COMMANDS, parser
    from .schema import SOURCES

    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
        for command in COMMANDS:
            try:
                parser(command).parse_args([command, "inventory.yaml"])
            except SystemExit:
                pass
    for name in SOURCES:
        module = importlib.import_module(f"provisioner.compiled_schemas.{name}")
        for pattern in getattr(module, "_PATTERN_SOURCES", {}):
            module.REGEX_PATTERNS[pattern]


if __name__ == "__main__":  # make bytecode; a path to write elsewhere (the tests)
    where = sys.argv[1] if len(sys.argv) > 1 else CACHE
    methods, patterns = record(where)
    print(f"{methods} dataclass methods and {patterns} patterns compiled into {where}")
