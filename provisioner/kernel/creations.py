"""Tun devices created in order on a thread of their own, reported as they are made.

A creation is three ioctls and a close that wait in the kernel (the rtnl lock; an RCU grace
period when the descriptor closes): 0.1-0.2 s for 1000 taps, in which the thread that applies a
plan encodes and reports what the devices made so far allow (apply.Transaction._create). The
thread is started in the calling thread's network namespace (a new thread shares its
creator's), where the devices are made.

kernel/_tuntap.c makes them CHUNK at a time with the GIL released for the whole chunk, and
reads back each one's interface index. Made one by one from Python (tuntap.create, the
fallback), every ioctl gave the GIL up and waited to take it back from the thread encoding:
1000 taps took 165-210 ms in a converge, where the same calls in a loop alone take 110-150 ms.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence

from .. import tuntap
from ..hints import TYPE_CHECKING

try:
    from ._tuntap import create as _create_chunk
except ImportError:  # a checkout or wheel built without it: one by one, in Python
    _create_chunk = None

if TYPE_CHECKING:
    from ..model import Device
    from .apply import Step

Made = tuple["Step", OSError | None, int]  # a creation step, why it failed (None: made), its ifindex (0: unknown)
CHUNK = 64  # devices per call of _tuntap.create: the reader encodes one chunk's requests while the next is made


class Creations:
    """Iterate to learn of each creation in order; `close` stops the thread after the creation
    (or the chunk) under way and returns the steps that were made but not yet reported."""

    def __init__(self, steps: Sequence[Step], stop_at_failure: bool) -> None:
        self._steps, self._stop_at_failure = steps, stop_at_failure
        self._made: queue.SimpleQueue[Made | BaseException | None] = queue.SimpleQueue()
        self._halt = threading.Event()
        self._ended = False  # the thread's last word (None) has been read
        self._thread = threading.Thread(target=self._create, name="provision-create", daemon=True)
        self._thread.start()

    def _create(self) -> None:
        try:
            if _create_chunk is not None:
                self._create_chunks()
                return
            for step in self._steps:
                if self._halt.is_set():
                    break
                error = self._create_one(step)
                if error is not None:
                    self._made.put((step, error, 0))
                    if self._stop_at_failure:
                        break
        except BaseException as exc:  # not the kernel's refusal: our bug, raised where it is reported
            self._made.put(exc)
        finally:
            self._made.put(None)

    def _create_chunks(self) -> None:
        """Each chunk reported whole once it is made: one wake-up of the reader, not one a device."""
        assert _create_chunk is not None
        for start in range(0, len(self._steps), CHUNK):
            if self._halt.is_set():
                return
            chunk = self._steps[start:start + CHUNK]
            results = _create_chunk([_wanted(s.subject) for s in chunk], self._stop_at_failure)  # type: ignore[arg-type]
            for step, (error, index) in zip(chunk, results, strict=False):  # shorter: it stopped at a failure
                self._made.put((step, OSError(error, os.strerror(error)) if error else None, index))
                if error and self._stop_at_failure:
                    return

    def _create_one(self, step: Step) -> OSError | None:
        """Reports the device as soon as it is persistent, before its descriptor closes: the
        close waits for an RCU grace period, in which the reader can handle the report without
        holding the GIL this thread wants next."""
        told: list[Step] = []

        def made() -> None:
            self._made.put((step, None, 0))
            told.append(step)

        try:
            tuntap.create(step.subject, made)  # type: ignore[arg-type]
        except OSError as exc:
            return None if told else exc  # the close alone failed: the device is made
        return None

    def __iter__(self) -> Iterator[Made]:
        while not self._ended:
            item = self._made.get()
            if item is None:
                self._ended = True
            elif isinstance(item, BaseException):
                self._halt.set()
                raise item
            else:
                yield item

    def close(self) -> list[Step]:
        self._halt.set()
        left: list[Step] = []
        while not self._ended:
            item = self._made.get()
            if item is None:
                self._ended = True
            elif isinstance(item, tuple) and item[1] is None:
                left.append(item[0])
        self._thread.join()
        return left


def _wanted(device: Device) -> tuple[bytes, int, int, int]:
    """What _tuntap.create makes of a device: tuntap.create's ioctls, as numbers."""
    return (device.name.encode(), tuntap.flags_of(device), -1 if device.owner is None else device.owner,
            -1 if device.group is None else device.group)
