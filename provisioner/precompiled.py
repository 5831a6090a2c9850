"""The methods `@dataclass` writes, compiled once at install instead of in every process.

`@dataclass` writes the source of each class's __init__, __repr__, __eq__, __hash__, ... and
compiles it with exec() while the module is imported. The .pyc files cannot keep that code,
since the text is only made at import: a no-op plan compiled some 200 such functions, 30 ms of
its 0.2 s, on every run. `make bytecode` (part of `make setup`) runs this module, which imports
every module of provision once and keeps the code of each text dataclasses compiled, in the
package's __pycache__ beside the .pyc files. `install`, at the start of the process
(command.py), then hands dataclasses that code for each text it has: the same text compiled
the same way, so the same functions. A text it has not (a class changed since, another
Python) is compiled as before, and so is every text when the file is missing or not trusted.

The file holds code, so it is trusted as the .pyc files beside it are, and no further: it and
its directory must belong to root or to the package directory's owner (who can change the
.py files themselves), be writable by no one else, be a regular file and a directory (never a
link), and the file must be under MAX_SIZE and made by this very Python (HEADER names
sys.hexversion). Anything else, and it is not read at all.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys
from collections.abc import Callable, Mapping
from types import CodeType, ModuleType


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

MAX_SIZE = 4 * 1024 * 1024  # some 300 texts make 0.3 MB
HEADER = f"provision dataclass methods {sys.implementation.cache_tag} {sys.hexversion:x}\n".encode()
PACKAGE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(PACKAGE, "__pycache__", f"dataclass-methods.{sys.implementation.cache_tag}.marshal")


def _compiled(source: str) -> CodeType:
    """As exec() compiles a text that dataclasses hands it: no `from __future__` of ours leaks in."""
    return compile(source, "<string>", "exec", dont_inherit=True)


def install(path: str | None = None) -> int:
    """Make dataclasses use the kept code (at `path`, else CACHE) of the texts it compiles; how
    many texts were kept."""
    codes = load(path or CACHE)
    if not codes:
        return 0

    def exec_kept(source: str, globals: dict | None = None, locals: Mapping | None = None) -> None:
        code = codes.get(source) if isinstance(source, str) else None
        exec(code if code is not None else _compiled(source), globals, locals)

    dataclasses.exec = exec_kept  # type: ignore[attr-defined]  # found before the builtin
    return len(codes)


def load(path: str) -> dict[str, CodeType]:
    """The kept code by text; empty if the file is missing, not trusted, or not this Python's.
    Read with os alone, as files.read_regular reads (no link, no FIFO, a size checked first):
    provision's own modules, whose classes this is for, are not imported yet."""
    try:
        owners = (0, os.stat(PACKAGE).st_uid)
        if not _trusted(os.lstat(os.path.dirname(path)), stat.S_ISDIR, owners):
            return {}
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not _trusted(st, stat.S_ISREG, owners) or st.st_size > MAX_SIZE:
            return {}
        data = os.read(fd, MAX_SIZE + 1)
    except OSError:
        return {}
    finally:
        os.close(fd)
    if len(data) > MAX_SIZE or not data.startswith(HEADER):
        return {}
    try:
        codes = marshal.loads(data[len(HEADER):])
    except (EOFError, ValueError, TypeError):
        return {}
    if not isinstance(codes, dict):
        return {}
    return {k: v for k, v in codes.items() if isinstance(k, str) and isinstance(v, CodeType)}


def _trusted(st: os.stat_result, kind: Callable[[int], bool], owners: tuple[int, ...]) -> bool:
    """Of one of `owners` (root, the package directory's owner), writable by no one else, of the
    kind wanted (a link is no directory and no regular file)."""
    return kind(st.st_mode) and st.st_uid in owners and not st.st_mode & 0o022


def record(path: str) -> int:
    """Import every module of provision, keeping the code of each text dataclasses compiles,
    and write it to `path`; how many texts."""
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
    from .files import atomic_write

    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    atomic_write(path, HEADER + marshal.dumps(codes), mode=0o644, durable=False)
    return len(codes)


if __name__ == "__main__":  # make bytecode; a path to write elsewhere (the tests)
    where = sys.argv[1] if len(sys.argv) > 1 else CACHE
    print(f"{record(where)} dataclass methods compiled into {where}")
