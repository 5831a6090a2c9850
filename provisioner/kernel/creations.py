"""Tun devices created in order on a thread of their own, reported one by one as they are made.

A creation is three ioctls and a close that wait in the kernel (the rtnl lock; an RCU grace
period when the descriptor closes) with the GIL released: 0.3 s for 1000 taps, in which the
thread that applies a plan encodes and reports what the devices made so far allow
(apply.Transaction._create). The thread is started in the calling thread's network namespace
(a new thread shares its creator's), where the devices are made.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .. import tuntap

if TYPE_CHECKING:
    from .apply import Step

Made = tuple["Step", OSError | None]  # a creation step, and why it failed (None: made)


class Creations:
    """Iterate to learn of each creation in order; `close` stops the thread after the creation
    under way and returns the steps that were made but not yet reported."""

    def __init__(self, steps: Sequence[Step], stop_at_failure: bool) -> None:
        self._steps, self._stop_at_failure = steps, stop_at_failure
        self._made: queue.SimpleQueue[Made | BaseException | None] = queue.SimpleQueue()
        self._halt = threading.Event()
        self._ended = False  # the thread's last word (None) has been read
        self._thread = threading.Thread(target=self._create, name="provision-create", daemon=True)
        self._thread.start()

    def _create(self) -> None:
        try:
            for step in self._steps:
                if self._halt.is_set():
                    break
                error = self._create_one(step)
                if error is not None:
                    self._made.put((step, error))
                    if self._stop_at_failure:
                        break
        except BaseException as exc:  # not the kernel's refusal: our bug, raised where it is reported
            self._made.put(exc)
        finally:
            self._made.put(None)

    def _create_one(self, step: Step) -> OSError | None:
        """Reports the device as soon as it is persistent, before its descriptor closes: the
        close waits for an RCU grace period, in which the reader can handle the report without
        holding the GIL this thread wants next."""
        told: list[Step] = []

        def made() -> None:
            self._made.put((step, None))
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
