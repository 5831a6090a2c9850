"""A transaction against a real kernel, in a fresh namespace: the tun devices of a run are created
on a thread of their own while the requests that follow are encoded (kernel/creations.py). A
creation the kernel refuses in the middle, or an exception while the devices are being made,
must leave `done` holding exactly what was made, so that the rollback removes all of it."""

from __future__ import annotations

import subprocess
import threading

import pytest

from provisioner.errors import KernelError
from provisioner.kernel import namespace
from provisioner.kernel.apply import Step, Transaction, Verb
from provisioner.kernel.netlink import Netlink
from provisioner.model import Address, Device, DeviceType

from .helpers import kernel

N = 40
DEVICES = [Device(f"t{i}", DeviceType.TAP) for i in range(N)]
STEPS = ([Step(Verb.CREATE_TUN, d) for d in DEVICES] + [Step(Verb.SET_LINK, d) for d in DEVICES]
         + [Step(Verb.ADD_ADDR, Address(d.name, f"198.51.100.{i + 1}/32")) for i, d in enumerate(DEVICES)])


def threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_a_creation_refused_midway_stops_the_run_and_the_rollback_removes_what_was_made(netns: str) -> None:
    # A tun device took the name t20 after the plan was made: the kernel refuses a tap of that
    # name (EINVAL); the devices before it are made, none after it, and no setting is sent.
    subprocess.run(["ip", "-n", netns, "tuntap", "add", "dev", "t20", "mode", "tun"], check=True)
    before = kernel(netns)
    with namespace.entered(netns), Netlink() as sock:
        tx = Transaction("h", sock)
        with pytest.raises(KernelError, match="device t20"):
            tx.run(STEPS)
        assert tx.done == STEPS[:20]
        assert "provision-create" not in threads()
        assert tx.rollback() == []
    assert kernel(netns) == before


def test_an_exception_while_devices_are_made_leaves_done_whole(netns: str) -> None:
    # A report that raises (stdout gone, Ctrl-C) ends the run; the thread is stopped after the
    # creation under way, and every device it made is in `done`, reported or not.
    before = kernel(netns)
    reported: list[Step] = []

    def on_step(step: Step) -> None:
        reported.append(step)
        if len(reported) == 5:
            raise BrokenPipeError("stdout is gone")

    with namespace.entered(netns), Netlink() as sock:
        tx = Transaction("h", sock)
        with pytest.raises(BrokenPipeError):
            tx.run(STEPS, on_step)
        made = [s for s in tx.done if s.verb is Verb.CREATE_TUN]
        assert made == STEPS[:len(made)] and len(made) >= 5
        assert set(kernel(netns)["links"]) - set(before["links"]) == {s.subject.name for s in made}
        assert "provision-create" not in threads()
        assert tx.rollback() == []
    assert kernel(netns) == before


def test_a_whole_run_makes_every_device_with_its_settings(netns: str) -> None:
    with namespace.entered(netns), Netlink() as sock:
        tx = Transaction("h", sock)
        tx.run(STEPS)
        assert tx.done == STEPS
    live = kernel(netns)
    assert all(live["links"][d.name]["up"] for d in DEVICES)
    assert {(f"t{i}", f"198.51.100.{i + 1}/32") for i in range(N)} <= live["addrs"]
