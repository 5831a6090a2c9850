"""Running inside a network namespace without a proxy process.

setns(2) moves only the calling thread; every socket or tun device made while inside
belongs to the target namespace and keeps it after the thread comes back. That is ~0.1 ms,
against ~7 ms per request through pyroute2's NetNS proxy process.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
NETNS_DIRS = ("/run/netns", "/var/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceError(OSError):
    pass


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise NamespaceError(code, os.strerror(code))


def path_of(name: str) -> str:
    for directory in NETNS_DIRS:
        candidate = os.path.join(directory, name)
        if os.path.exists(candidate):
            return candidate
    raise NamespaceError(errno.ENOENT, f"no network namespace named {name!r} (see `ip netns list`)")


@contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Inside network namespace `name` for the duration (None: stay where we are)."""
    if name is None:
        yield
        return
    target = os.open(path_of(name), os.O_RDONLY | os.O_CLOEXEC)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
