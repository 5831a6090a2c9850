"""The state directory and the per-host apply lock.

Two runs on one host must not interleave their steps; an flock on a file in the state
directory serialises them and is released by the kernel if a run dies, so a crash never
leaves a stale lock behind. The file records the holder's pid for the waiting message.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from .errors import LockTimeout
from .files import FileError, StateDirError, open_private, private_directory, private_subdirectory
from .hints import TypeGuard

DEFAULT_STATE_DIR = "/run/provision"  # what should vanish with a reboot: locks, tunnels' run state
STATE_DIR_ENV = "PROVISION_STATE_DIR"
DEFAULT_PERSISTENT_DIR = "/var/lib/provision"  # what must survive one: the pull agent's record (systemd StateDirectory=)
PERSISTENT_DIR_ENV = "PROVISION_PERSISTENT_DIR"


def state_dir(override: str | None = None) -> Path:
    """--state-dir, else $PROVISION_STATE_DIR, else /run/provision; created private (0700).
    One that others may change is refused: its tunnel specs say what runs as root."""
    return _private(override or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR, "--state-dir", STATE_DIR_ENV)


def persistent_dir(override: str | None = None) -> Path:
    """--persistent-dir, else $PROVISION_PERSISTENT_DIR, else /var/lib/provision: what must
    outlive a reboot (the pull agent's anti-rollback record), checked as the state directory is."""
    return _private(override or os.environ.get(PERSISTENT_DIR_ENV) or DEFAULT_PERSISTENT_DIR, "--persistent-dir",
                    PERSISTENT_DIR_ENV)


def _private(path: str, option: str, env: str) -> Path:
    try:
        return private_directory(path)
    except StateDirError as exc:
        raise StateDirError(exc.path, f"{exc.reason}; run as root, or choose another with {option} or ${env}") \
            from None


@contextmanager
def host_lock(directory: Path, key: str, host: str, wait: float, notify: Callable[[str], None]) -> Iterator[None]:
    """`key` names the machine (connection.identity.state_name: a safe file name), so two
    inventories that reach one namespace under two names still take one lock; `host` is
    the name the messages use."""

    def busy(fd: int, holder: str) -> None:
        notify(f"{host}: waiting for the lock held by pid {holder} (another provision run on this host)")
        deadline = time.monotonic() + wait
        while not _try(fd):
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{host}: another provision run (pid {holder}) still holds the lock "
                                  f"after {wait:g} s; try again later or raise --lock-timeout")
            time.sleep(0.05)

    with pid_lock(_lock_file(directory, key), busy):
        yield


def free_host_lock(directory: Path, key: str) -> AbstractContextManager[None]:
    """host_lock's lock, if no one holds it now; else BlockingIOError at once, and nothing said:
    for a lock taken ahead of its turn (connection/kernel.py's Ahead), which is taken in its turn,
    waiting as always, when it was busy."""
    return pid_lock(_lock_file(directory, key), None)


def _lock_file(directory: Path, key: str) -> Path:
    return private_subdirectory(directory, "locks") / f"{key.replace('/', '_').lstrip('.') or '_'}.lock"


@contextmanager
def pid_lock(path: Path, busy: Callable[[int, str], None] | None) -> Iterator[None]:
    """An flock on `path`, which then holds our pid. When another process has it, `busy(fd, its
    pid)` decides: wait until `_try(fd)` succeeds, or raise; with no `busy`, BlockingIOError at once.
    The kernel drops the lock with its holder."""
    try:
        fd = open_private(path, os.O_RDWR | os.O_CREAT)  # its pid is written into it: never through a link
    except FileError as exc:
        raise FileError(path, f"cannot take the lock: {exc.reason}", exc.errno) from None
    try:
        if not _try(fd):
            if busy is None:
                raise BlockingIOError(errno.EWOULDBLOCK, f"{path} is held")
            busy(fd, _holder(fd))
        try:  # one fixed-width write, never a truncate first: a reader never sees the file empty
            os.pwrite(fd, str(os.getpid()).ljust(PID_WIDTH).encode(), 0)
        except OSError as exc:  # a full disk: say so before anything is changed
            raise FileError(path, f"cannot take the lock: {exc.strerror}", exc.errno) from None
        yield
    finally:
        os.close(fd)


PID_WIDTH = 16
PID_MAX = 1 << 22  # the kernel's largest pid_max


def is_pid(value: object) -> TypeGuard[int]:
    """A pid read back from a file of the state directory (whoever could write it chose it):
    a whole number the kernel could give a process other than init. 2**40 made os.kill raise
    OverflowError, and 1 or less names init, a process group or every process."""
    return type(value) is int and 1 < value <= PID_MAX


def _holder(fd: int) -> str:
    """The pid the lock's holder wrote; it writes it just after it takes the lock, so a moment's
    wait when there is none yet."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.005)
    return "?"


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
