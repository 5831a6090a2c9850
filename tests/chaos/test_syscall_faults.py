"""Failing syscalls: strace's fault injection fails the N-th netlink send of an apply of 300
resources, for every N. Each run converges or rolls back to a kernel state that `ip -d -j`
prints byte for byte as before, and the next apply converges.

A single failed send (ENOBUFS, EAGAIN, EINTR) is tried again and the apply converges; a run
of failures longer than the retries makes the apply fail and roll back (its undo is sent after
the run of failures). Before issue 14, one failed send escaped as an internal error and left
half of the apply in place (101 links of 300 resources)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..integration.helpers import Result, provision
from .world import FULL, dump, inventory, settled, report, spread, write

SEND = "sendto"  # what Python's socket.send is
RECEIVE = "recvfrom"  # what Python's socket.recv is


@dataclass
class Faults:
    """A namespace at inventory version 1 whose apply of version 2 makes `calls` calls of the
    syscall under test, and what the faulty applies of version 2 came to."""

    ns: str
    state: Path
    v1: Path
    v2: Path
    calls: int
    outcomes: dict[str, int] = field(default_factory=lambda: {"converged": 0, "rolled back": 0})
    seconds: list[float] = field(default_factory=list)

    def apply(self, syscall: str, code: str, when: str, what: str, failed: str) -> Result | None:
        """One apply of version 2 with the syscall failing with `code` at `when`: it converges, or
        fails saying `failed` and leaves the kernel byte for byte as it was; then the next apply
        converges and version 1 is put back. The failed run's result (None: it converged)."""
        before = settled(self.ns)
        started = time.monotonic()
        r = provision("apply", str(self.v2), state_dir=self.state,
                      prefix=("strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}",
                              "-e", f"inject={syscall}:error={code}:when={when}"))
        self.seconds.append(time.monotonic() - started)
        assert "internal error" not in r.err, f"{what}: {r.err}"
        if r.rc == 0:
            self.outcomes["converged"] += 1
        else:
            self.outcomes["rolled back"] += 1
            assert re.search(rf"FAILED: .*({failed})", r.err), f"{what}: {r.err}"
            assert dump(self.ns) == before, f"{what}: the kernel is not as it was before the run\n{r.out}{r.err}"
            provision("apply", str(self.v2), state_dir=self.state, check_rc=0)  # the next apply converges
        provision("apply", str(self.v1), state_dir=self.state, check_rc=0)
        return None if r.rc == 0 else r

    def runs(self) -> int:
        """How many ran; each way of ending came at least once."""
        assert self.outcomes["rolled back"] >= 1 and self.outcomes["converged"] >= 1, self.outcomes
        return sum(self.outcomes.values())


def faults(make_netns: Callable[[], str], tmp_path: Path, syscall: str, least: int) -> Faults:
    """Version 1 applied, and the calls of `syscall` that applying version 2 makes counted (at
    least `least`) with strace."""
    ns = make_netns()
    state = tmp_path / "state"
    v1 = write(tmp_path / "v1.yaml", inventory(ns, 1))
    v2 = write(tmp_path / "v2.yaml", inventory(ns, 2))
    provision("apply", str(v1), state_dir=state, check_rc=0)
    trace = tmp_path / "trace"
    provision("apply", str(v2), state_dir=state, check_rc=0,
              prefix=("strace", "-f", "-qq", "-e", f"trace={syscall}", "-o", str(trace)))
    calls = len(trace.read_text().splitlines())
    assert calls >= least, trace.read_text()
    provision("apply", str(v1), state_dir=state, check_rc=0)
    return Faults(ns, state, v1, v2, calls)


def test_every_failing_netlink_send_converges_or_rolls_back_byte_identically(
        make_netns: Callable[[], str], tmp_path: Path) -> None:
    world = faults(make_netns, tmp_path, SEND, 4)
    sends = world.calls
    cases = [("ENOBUFS", "burst"), ("EAGAIN", "one")] + ([("ENOBUFS", "one"), ("EAGAIN", "burst"),
                                                          ("EINTR", "one")] if FULL else [])
    for code, shape in cases:  # the short form (make test): a few N; make chaos: every N
        every = range(1, sends + 2) if FULL else (2, sends // 2 + 1, sends) if shape == "burst" else (sends // 2,)
        for n in every:
            when = f"{n}..{n + 5}" if shape == "burst" else str(n)  # a burst outlasts the retries
            failed = world.apply(SEND, code, when, f"{code} at send {when}",
                                 "No buffer space|Resource temporarily|Interrupted")
            if failed is not None:
                assert "rolled back" in failed.err or "changed=0" in failed.out, failed.out + failed.err
    runs = world.runs()
    report("netlink send fails (strace inject: ENOBUFS, EAGAIN, EINTR; one, or a burst of 6) at the N-th of "
           f"{sends} sends of a 300-resource apply, every N", runs,
           f"{world.outcomes['converged']} converged (the send was retried), {world.outcomes['rolled back']} failed "
           "with the errno and rolled back to a byte-identical `ip -d -j` dump; every next apply converged",
           f"faulty apply {spread(world.seconds)}")


def test_every_failing_netlink_receive_converges_or_rolls_back_byte_identically(
        make_netns: Callable[[], str], tmp_path: Path) -> None:
    """A receive that fails: ENOBUFS (the kernel dropped answers from a full receive buffer), or
    EAGAIN (no answer within netlink.RECEIVE_TIMEOUT: without that limit a lost answer was
    waited for, the host's lock held, for ever). It escaped as an internal error, with no
    rollback. Now a dump that cannot be read is the kernel's state unread (before any change:
    nothing done; in the verification: rolled back), and a batch whose answers cannot be read,
    whose requests the kernel all ran, counts those it did not refuse as done: the rollback
    undoes them, or the verification finds them there. Every N-th receive of a 300-resource
    apply, for ENOBUFS (make chaos: EAGAIN too)."""
    world = faults(make_netns, tmp_path, RECEIVE, 6)
    receives = world.calls
    for code in ("ENOBUFS", "EAGAIN") if FULL else ("ENOBUFS",):
        for n in range(1, receives + 1):
            world.apply(RECEIVE, code, str(n), f"{code} at receive {n} of {receives}",
                        "No buffer space|no answer from the kernel")
    runs = world.runs()
    report("netlink receive fails (strace inject: ENOBUFS" + (", EAGAIN" if FULL else "") + f") at the N-th of "
           f"{receives} receives of a 300-resource apply, every N", runs,
           f"{world.outcomes['converged']} converged (a batch's lost answers, its requests found done), "
           f"{world.outcomes['rolled back']} failed with the errno and rolled back to a byte-identical `ip -d -j` "
           "dump; every next apply converged", f"faulty apply {spread(world.seconds)}")


def test_strace_is_there() -> None:
    """The suite's tool: a missing strace fails the run, it never skips it."""
    assert subprocess.run(["strace", "-V"], capture_output=True).returncode == 0
