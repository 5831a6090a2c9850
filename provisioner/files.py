"""Files that root reads and writes: one way to replace a file, one way to read one, and the
check that a state directory is ours alone.

Everything provision writes as root goes through `atomic_write`: a temporary file under a
fresh random name (O_EXCL and O_NOFOLLOW, as mkstemp makes it, so a link planted at a
predictable name is never followed) in the target's own directory, written, fsynced, renamed
over the target (rename replaces a symbolic link at the target, it never writes through one),
then the directory is fsynced so that the rename itself survives a power cut. A reader sees the
old file or the new one, never half; a full disk leaves the old one and no temporary behind.
What is only kept to save time (cache.py) skips the two fsyncs, not the rest.

Everything provision reads that someone else could have put there (inventories, records, key
files, snapshots) goes through `read_regular`: a FIFO would block a read for ever (while we
hold a lock), a device would read for ever, and a link would take us somewhere else, so the
file is opened without blocking and without following a final link, and fstat must say it is
a regular file of a sane size before one byte is read. JSON in it goes through `parse_json`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import ProvisionError
from .hints import Any

MAX_READ = 64 * 1024 * 1024  # no file provision reads is anywhere near this


class FileError(ProvisionError):
    """A file that cannot be read or written safely; the message names the file and why.
    `errno` is the system's reason when there is one (ENOSPC for a full disk)."""

    def __init__(self, path: str | os.PathLike[str], message: str, code: int | None = None):
        self.path, self.reason = str(path), message
        self.errno = code
        super().__init__(f"{self.path}: {message}")


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Replace `path` with `data`, whole or not at all (see the module's docstring). Not
    `durable`: no fsync, for a file that costs only time when a power cut loses it."""
    target = Path(path)
    try:
        fd, tmp = _temporary(target)
    except OSError as exc:
        raise FileError(target, f"cannot write: {exc.strerror}", exc.errno) from None
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise FileError(target, f"cannot write: {exc.strerror}", exc.errno) from None
        raise
    if durable:
        sync_directory(target.parent)


def _temporary(target: Path) -> tuple[int, Path]:
    """A new file (mode 0600) beside `target` under a fresh random name: tempfile.mkstemp's
    way, without importing tempfile (with random, and shutil, which nothing else imports: 5 ms
    of an apply's start)."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{os.urandom(6).hex()}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name")


def write_json(path: str | os.PathLike[str], data: Any, indent: int | None = 2, *, durable: bool = True) -> None:
    """A JSON document through atomic_write (saved plans, confirmation notes, ownership records).
    `indent=None`: one line, by json's C encoder (an indent takes its Python one, 10x slower)."""
    import json

    atomic_write(path, (json.dumps(data, indent=indent) + "\n").encode(), durable=durable)


def parse_json(data: bytes | str) -> Any:
    """json.loads, for what someone else could have written: a document nested deeper than the
    decoder recurses is a ValueError, as any other that is not JSON (json.loads raises
    RecursionError for it, which the readers of state files and records did not expect)."""
    import json

    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def sync_directory(directory: str | os.PathLike[str]) -> None:
    """fsync a directory: what makes a rename or a new entry in it durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike[str], max_size: int = MAX_READ, *, follow_links: bool = False) -> bytes:
    """The bytes of a regular file of at most `max_size` bytes; FileError for anything else
    (a FIFO, a device, a directory, a link unless `follow_links`: a file named by the person
    running the command may be a link; one found in a state directory or a checkout may not)."""
    fd = _opened(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileError(path, f"is not a regular file ({_kind(st.st_mode)})")
        if st.st_size > max_size:
            raise FileError(path, f"is {st.st_size} bytes; at most {max_size} expected")
        chunks, left = [], max_size + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise FileError(path, exc.strerror or "cannot be read", exc.errno) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_size:  # it grew while we read it
        raise FileError(path, f"is more than {max_size} bytes")
    return data


def _opened(path: str | os.PathLike[str], flags: int, mode: int = 0o600) -> int:
    """os.open, its failure a FileError: a link that O_NOFOLLOW met said as such."""
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and flags & os.O_NOFOLLOW:
            raise FileError(path, "is a symbolic link; refusing to follow it", exc.errno) from None
        raise FileError(path, exc.strerror or "cannot be opened", exc.errno) from None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return f"mode {stat.S_IFMT(mode):o}"


def private_directory(path: str | os.PathLike[str]) -> Path:
    """Create `path` (mode 0700) if needed, and check that nobody but root, or us, can change
    what is in it or where it leads. Every component from / down is checked, as sshd checks
    the way to an authorized_keys file: none may be a symbolic link, each must be owned by
    root or by us, and none may be writable by group or others, except a sticky directory such
    as /tmp, whose next component is then ours, so others can neither rename it nor remove it.
    Raises StateDirError saying which component is unsafe and why."""
    target = Path(os.path.abspath(path))
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(target, f"cannot create it: {exc.strerror}") from None
    me = os.geteuid()
    parts = target.parts
    previous: os.stat_result | None = None
    for i in range(1, len(parts) + 1):
        here = Path(*parts[:i])
        try:
            st = os.lstat(here)
        except OSError as exc:
            raise StateDirError(target, f"{here}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            raise StateDirError(target, f"{here} is a symbolic link (to {os.readlink(here)}); name the real "
                                        "directory")
        if not stat.S_ISDIR(st.st_mode):
            raise StateDirError(target, f"{here} is not a directory")
        if st.st_uid not in (0, me):
            raise StateDirError(target, f"{here} is owned by uid {st.st_uid}, not by root or by us")
        if previous is not None and previous.st_mode & 0o022 and not previous.st_mode & stat.S_ISVTX:
            raise StateDirError(target, f"{here.parent} may be written by group or others (mode "
                                        f"{stat.S_IMODE(previous.st_mode):04o}): they could replace {here.name}")
        previous = st
    if previous is not None and previous.st_mode & 0o022:
        raise StateDirError(target, f"may be written by other users (mode {stat.S_IMODE(previous.st_mode):04o}); "
                                    "use a private one (chmod 700)")
    return target


def private_subdirectory(parent: Path, *names: str) -> Path:
    """`parent/names...`, each level made (0700) where missing and checked as private_directory
    checks a component: a real directory (never a link), root's or ours, that nobody else may
    write. `parent` is a checked private directory: only the levels below it are looked at, one
    lstat each. What a state directory holds was put there by whoever could write it: a
    `tunnels` or `locks` that leads elsewhere would have root write, chmod and delete there."""
    here = parent
    for name in names:
        here = here / name
        try:
            st = os.lstat(here)  # before a mkdir: most levels are there (a fleet takes a lock a host)
        except FileNotFoundError:
            st = _made(here)
        except OSError as exc:
            raise FileError(here, exc.strerror or "cannot be read", exc.errno) from None
        if stat.S_ISLNK(st.st_mode):
            raise FileError(here, "is a symbolic link; refusing to follow it", errno.ELOOP)
        if not stat.S_ISDIR(st.st_mode):
            raise FileError(here, f"is not a directory ({_kind(st.st_mode)})", errno.ENOTDIR)
        _owned(here, st)
    return here


def _made(path: Path) -> os.stat_result:
    """A missing level of private_subdirectory made (0700), and what is there then: another
    process may have made it (or something else) in the meantime."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise FileError(path, f"cannot create it: {exc.strerror}", exc.errno) from None
    try:
        return os.lstat(path)
    except OSError as exc:
        raise FileError(path, exc.strerror or "cannot be read", exc.errno) from None


def open_private(path: str | os.PathLike[str], flags: int, mode: int = 0o600) -> int:
    """A descriptor of the regular file at `path`, opened with `flags` (O_CREAT to make it),
    for a file of a state directory that root writes to: never through a link, never blocking
    (a FIFO or a device planted there), and refused when it is not a regular file of root's or
    ours with one name, so that a hard link to a file elsewhere (/etc/shadow, on the same file
    system) is not written through."""
    fd = _opened(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileError(path, f"is not a regular file ({_kind(st.st_mode)})")
        if st.st_nlink != 1:
            raise FileError(path, f"has {st.st_nlink} names (a hard link); refusing to write to it")
        _owned(path, st)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _owned(path: str | os.PathLike[str], st: os.stat_result) -> None:
    if st.st_uid not in (0, os.geteuid()):
        raise FileError(path, f"is owned by uid {st.st_uid}, not by root or by us")
    if st.st_mode & 0o022:
        raise FileError(path, f"may be written by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


class StateDirError(ProvisionError):
    """A state directory that others could change: what it holds says what runs as root."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"cannot use state directory {path}: {reason}")
