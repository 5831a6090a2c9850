"""kernel/namespace.py against the real kernel: the compiled setns (kernel/_setns.c) and its ctypes
fallback each move the calling thread into a fresh namespace and back, and a descriptor that is
not a namespace is refused with the kernel's reason."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

from provisioner.kernel import namespace
from provisioner.kernel._setns import setns as compiled  # built by make setup: its absence fails here

CALLS: dict[str, Callable[[int, int], None]] = {"compiled": compiled, "ctypes": namespace._ctypes_setns()}


def here() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_setns_moves_this_thread_in_and_out(netns: str, call: Callable[[int, int], None],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(namespace, "_call", call)
    home = here()
    target = os.stat(namespace.path_of(netns)).st_ino
    assert target != home
    with namespace.entered(netns):
        assert here() == target
    assert here() == home


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_descriptor_that_is_not_a_namespace_is_refused(call: Callable[[int, int], None],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(namespace, "_call", call)
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        with pytest.raises(namespace.NamespaceError) as info:
            namespace._setns(fd)
    finally:
        os.close(fd)
    assert info.value.errno == errno.EINVAL
    assert here() == os.stat("/proc/self/ns/net").st_ino


def test_a_namespace_entered_while_this_thread_s_own_cannot_be_opened_leaves_no_descriptor(
        netns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of descriptors (EMFILE) at the second open: the first one was left open, once for
    every host a fleet's run then tried (it enters each next host's namespace ahead)."""
    opened: list[int] = []
    real = os.open

    def open_(path: str, flags: int, *args: int) -> int:
        if path == "/proc/thread-self/ns/net":
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        fd = real(path, flags, *args)
        opened.append(fd)
        return fd

    monkeypatch.setattr(namespace.os, "open", open_)
    with pytest.raises(OSError):
        with namespace.entered(netns):
            pass
    monkeypatch.undo()
    assert opened
    for fd in opened:  # closed again (nothing else opened since)
        with pytest.raises(OSError):
            os.fstat(fd)
    assert here() == os.stat("/proc/self/ns/net").st_ino
