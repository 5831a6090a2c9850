"""A transaction against a real kernel, in a fresh namespace: the tun devices of a run are created
on a thread of their own while the requests that follow are encoded (kernel/creations.py), by
kernel/_tuntap.c a chunk at a time or by its fallback one by one (each test of them runs both). A
creation the kernel refuses in the middle, or an exception while the devices are being made,
must leave `done` holding exactly what was made, so that the rollback removes all of it. Link
deletions in a row go as one link group, which must reach the transaction's devices alone."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import select
import socket
import struct
import subprocess
import threading
import time

import pytest

from provisioner.errors import KernelError
from provisioner.kernel import creations, namespace
from provisioner.kernel import netlink as nl
from provisioner.kernel.apply import _ENCODERS, Step, Transaction, Verb
from provisioner.kernel.netlink import Netlink
from provisioner.model import Address, Device, DeviceType

from .helpers import kernel, wait_for

N = 40
DEVICES = [Device(f"t{i}", DeviceType.TAP) for i in range(N)]
STEPS = ([Step(Verb.CREATE_TUN, d) for d in DEVICES] + [Step(Verb.SET_LINK, d) for d in DEVICES]
         + [Step(Verb.ADD_ADDR, Address(d.name, f"198.51.100.{i + 1}/32")) for i, d in enumerate(DEVICES)])


def threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


@pytest.fixture(params=["compiled", "python"])
def maker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Who makes the devices: kernel/_tuntap.c, or tuntap.create where that is not built."""
    if request.param == "python":
        monkeypatch.setattr(creations, "_create_chunk", None)
    else:
        assert creations._create_chunk is not None  # built by make setup: its absence fails here
    return str(request.param)


def test_a_creation_refused_midway_stops_the_run_and_the_rollback_removes_what_was_made(netns: str, maker: str) -> None:
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


def test_an_exception_while_devices_are_made_leaves_done_whole(netns: str, maker: str) -> None:
    # A report that raises (stdout gone, Ctrl-C) ends the run; the thread is stopped after the
    # creation (or the compiled maker's chunk) under way, and every device it made is in `done`,
    # reported or not.
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


def test_a_whole_run_makes_every_device_with_its_settings(netns: str, maker: str) -> None:
    with namespace.entered(netns), Netlink() as sock:
        tx = Transaction("h", sock)
        tx.run(STEPS)
        assert tx.done == STEPS
    live = kernel(netns)
    assert all(live["links"][d.name]["up"] for d in DEVICES)
    assert {(f"t{i}", f"198.51.100.{i + 1}/32") for i in range(N)} <= live["addrs"]


DELETIONS = [Step(Verb.DELETE_LINK, d) for d in DEVICES]


def groups(netns: str) -> dict[str, str]:
    """Every link's group as `ip` names it ("default" for 0)."""
    links = json.loads(subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True, text=True,
                                      check=True).stdout)
    return {link["ifname"]: str(link.get("group")) for link in links}


def foreign_links(netns: str) -> None:
    """Links provision did not make: a veth pair, one end in group 7, and a tap of `ip tuntap`."""
    subprocess.run(["ip", "-n", netns, "link", "add", "fx0", "type", "veth", "peer", "name", "fx2"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "fx0", "group", "7"], check=True)
    subprocess.run(["ip", "-n", netns, "tuntap", "add", "dev", "fx1", "mode", "tap"], check=True)


def test_link_deletions_go_as_one_group_and_spare_every_other_link(netns: str) -> None:
    # One by one, each deletion waited for its own RCU grace periods: 18 s for 1000 taps. As
    # a group, the kernel's notice of each deletion names the group they were given, one for all.
    foreign_links(netns)
    with namespace.entered(netns), Netlink() as sock:
        Transaction("h", sock).run(STEPS)
    before = kernel(netns)
    monitor = subprocess.Popen(["ip", "-n", netns, "monitor", "link"], stdout=subprocess.PIPE, bufsize=0)
    try:
        wait_for("the monitor to listen", lambda: any(_noticed(netns, monitor, f"probe{i}", 1) for i in range(3)), 15)
        with namespace.entered(netns), Netlink() as sock:
            tx = Transaction("h", sock)
            tx.run(DELETIONS)
            assert tx.done == DELETIONS
        seen = _noticed(netns, monitor, "probe9", 15)
    finally:
        monitor.kill()
        monitor.wait()
    assert seen is not None
    deleted = {m.group(1): m.group(2) for m in re.finditer(r"^Deleted \d+: (t\d+): .* group (\S+)", seen, re.M)}
    assert set(deleted) == {d.name for d in DEVICES}
    assert len(set(deleted.values())) == 1 and "default" not in deleted.values()
    after = kernel(netns)
    assert after["links"] == {k: v for k, v in before["links"].items() if k not in deleted}
    assert groups(netns) == {"lo": "default", "fx0": "7", "fx1": "default", "fx2": "default"}


def _noticed(netns: str, monitor: subprocess.Popen[bytes], probe: str, timeout: float) -> str | None:
    """What the monitor prints up to the deletion of a probe link made now (once that is seen,
    everything before it has been), or None if it does not come within `timeout`."""
    subprocess.run(["ip", "-n", netns, "tuntap", "add", "dev", probe, "mode", "tap"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "del", probe], check=True)
    assert monitor.stdout is not None
    out, deadline = b"", time.monotonic() + timeout
    while not re.search(rf"^Deleted \d+: {probe}:".encode(), out, re.M):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([monitor.stdout], [], [], left)[0]:
            return None
        chunk = os.read(monitor.stdout.fileno(), 1 << 16)
        if not chunk:
            return None
        out += chunk
    return out.decode(errors="replace")


def test_a_group_the_kernel_refuses_to_delete_leaves_every_device_as_it_was(netns: str,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # A group with a link the kernel cannot delete (the loopback) is refused whole (EOPNOTSUPP):
    # the devices get their group back, nothing took effect, and the failure is the run's. (The
    # number is forced on a group in use, which the dump of groups would otherwise have refused.)
    from provisioner.kernel import apply

    with namespace.entered(netns), Netlink() as sock:
        Transaction("h", sock).run(STEPS)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "group", "123456789"], check=True)
    before, before_groups = kernel(netns), groups(netns)
    monkeypatch.setattr(apply, "_random_group", lambda: 123456789)
    monkeypatch.setattr(apply, "_link_groups", lambda sock: {})
    with namespace.entered(netns), Netlink() as sock:
        tx = Transaction("h", sock)
        with pytest.raises(KernelError, match="device t0") as raised:
            tx.run(DELETIONS)
        assert raised.value.code == errno.EOPNOTSUPP
        assert tx.done == []
    assert kernel(netns) == before and groups(netns) == before_groups


def test_with_no_free_group_number_links_are_deleted_one_by_one(netns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner.kernel import apply

    foreign_links(netns)
    with namespace.entered(netns), Netlink() as sock:
        Transaction("h", sock).run(STEPS)
    monkeypatch.setattr(apply, "_random_group", lambda: 7)  # fx0's, every try
    with namespace.entered(netns), Netlink() as sock:
        tx = Transaction("h", sock)
        tx.run(DELETIONS[:5])
        assert tx.done == DELETIONS[:5]
    assert groups(netns)["fx0"] == "7" and not {"t0", "t1", "t2", "t3", "t4"} & set(groups(netns))
    assert {"t5", "fx1", "fx2"} <= set(groups(netns))


def test_a_device_gone_before_the_deletion_fails_alone(netns: str) -> None:
    # As with deletions one by one: the kernel's refusal is that step's, the others take effect.
    with namespace.entered(netns), Netlink() as sock:
        Transaction("h", sock).run(STEPS)
    subprocess.run(["ip", "-n", netns, "link", "del", "t3"], check=True)
    with namespace.entered(netns), Netlink() as sock:
        tx = Transaction("h", sock)
        with pytest.raises(KernelError, match="device t3"):
            tx.run(DELETIONS[:6])
        assert tx.done == DELETIONS[:3] + DELETIONS[4:6]
    assert not {"t0", "t1", "t2", "t3", "t4", "t5"} & set(groups(netns))


def test_what_a_rollback_could_not_undo_is_told_in_words(netns: str) -> None:
    """A device gone before the rollback (deleted by someone else) cannot be deleted again: the
    kernel says ENODEV with no message of its own, which was shown as a bare 'could not undo
    device t0: 19'."""
    with namespace.entered(netns), Netlink() as sock:
        tx = Transaction("h", sock)
        tx.run(STEPS[:1])
        subprocess.run(["ip", "-n", netns, "link", "del", "t0"], check=True)
        assert tx.rollback() == ["could not undo device t0: No such device (ENODEV)"]


def test_the_kernel_s_refusals_name_exactly_the_requests_that_did_not_take_effect(netns: str) -> None:
    """A batch's requests ask for no answer, and the kernel sends one only for a request it
    refuses; a NOOP after each batch asks for the answer that ends it (netlink.transact). 600
    addresses go in three batches: the refusals (an address there already, the first of the
    second batch a copy of the last of the first, the last on a device that does not exist)
    are told for those requests alone, with the kernel's reasons, and every other address is
    what pyroute2 then finds on the device."""
    subprocess.run(["ip", "-n", netns, "tuntap", "add", "dev", "t0", "mode", "tap"], check=True)
    subprocess.run(["ip", "-n", netns, "addr", "add", "fd00:23::7/128", "dev", "t0"], check=True)
    cidrs = [f"{ipaddress.IPv6Address(0xFD000023 << 96 | i)}/128" for i in range(600)]
    cidrs[256] = cidrs[255]
    with namespace.entered(netns), Netlink() as sock:
        encode = _ENCODERS[Verb.ADD_ADDR]
        tx = Transaction("h", sock)
        requests = [encode(tx, Address("t0", c)) for c in cidrs]
        head = nl.IFADDR.pack(socket.AF_INET6, 128, 0, 0, 0x7FFFFFFF)  # an index no device has
        requests[599] = nl.Request(requests[599].type, requests[599].flags, head + requests[599].body[nl.IFADDR.size:])
        acks = sock.transact(requests)
    refused = {i: ack.error for i, ack in enumerate(acks) if ack.error}
    assert refused == {7: errno.EEXIST, 256: errno.EEXIST, 599: errno.ENODEV}
    assert len(acks) == 600
    assert {a for a in kernel(netns)["addrs"] if a[0] == "t0"} == {("t0", c) for c in cidrs[:599]}


def test_only_the_kernel_can_answer_on_the_socket(netns: str) -> None:
    """A batch's requests ask for no answer, so one forged "batch over" from another netlink
    socket (any process with CAP_NET_ADMIN in the namespace can send to ours) would pass every
    refusal in it for done. The socket is connected to the kernel: what another sends is refused,
    and the refusal of the batch that follows is the kernel's."""
    with namespace.entered(netns), Netlink() as sock:
        port = sock.sock.getsockname()[0]
        forged = nl.HDR.pack(36, nl.NLMSG_ERROR, 0, sock.seq + 2, 0) + struct.pack("=i", 0) + nl.HDR.pack(16, 1, 5, 2, 0)
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_ROUTE) as other:
            other.bind((0, 0))
            with pytest.raises(ConnectionRefusedError):
                other.sendto(forged, (port, 0))
        nowhere = nl.IFADDR.pack(socket.AF_INET6, 128, 0, 0, 0x7FFFFFFF) + nl.attr(nl.IFA_LOCAL, bytes(15) + b"\1")
        (ack,) = sock.transact([nl.Request(nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL, nowhere)])
    assert ack.error == errno.ENODEV  # the kernel's refusal, not the forged "batch over" taken for it


def test_an_answer_that_never_comes_is_waited_for_a_while_not_for_ever(netns: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel queues a send's answers before the send returns: a receive that waits is for an
    answer lost (dropped from a full buffer), and was waited for, the host's lock held, for ever.
    Now a receive waits netlink.RECEIVE_TIMEOUT at most (1 s here) and fails as the socket's
    error; the batch it could not hear about counts as done (the kernel ran it), for a rollback."""
    monkeypatch.setattr(nl, "RECEIVE_TIMEOUT", 1)
    monkeypatch.setattr(nl, "send", lambda sock, payload: None)  # the batch, and its fence, lost
    caught: list[BaseException] = []

    def run() -> None:
        with namespace.entered(netns), Netlink() as sock:
            try:
                sock.transact([nl.Request(nl.RTM_NEWLINK, 0, nl.IFINFO.pack(0, 0, 0, 0, 0))] * 3)
            except BaseException as exc:  # noqa: BLE001 - what the test looks at
                caught.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "still waiting for an answer that will not come"
    assert 0.9 < time.monotonic() - started < 9.5  # it gave up after its timeout, and never hung
    (exc,) = caught
    assert isinstance(exc, nl.NetlinkError) and exc.errno == errno.EAGAIN, exc
    assert "no answer from the kernel within 1 s" in str(exc)
    assert exc.acks == (nl.Ack(0, "no answer from the kernel within 1 s", heard=False),) * 3  # done, unheard


def test_a_rollback_whose_answers_are_lost_says_it_could_not_confirm_them(netns: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A rollback's batch whose answers were lost counted as undone, and the run said "rolled
    back" with nothing to add. Now each undo the kernel never answered for is told: "could not
    confirm the undo of ...", with the socket's error (the requests here never reach the
    kernel at all, which the transaction cannot tell from answers lost)."""
    monkeypatch.setattr(nl, "RECEIVE_TIMEOUT", 1)  # set on the socket as it is made
    with namespace.entered(netns), Netlink() as sock:
        tx = Transaction("h", sock)
        tx.run(STEPS[:2] + STEPS[N:N + 2])  # two devices, each set up
        monkeypatch.setattr(nl, "send", lambda sock, payload: None)  # sent into the void: no answer comes
        started = time.monotonic()
        problems = tx.rollback()
    assert time.monotonic() - started < 8
    assert problems and all(p.startswith("could not") for p in problems), problems
    assert any(p.startswith("could not confirm the undo of device t0: the kernel's answer was lost (no answer from the "
                            "kernel within 1 s)") for p in problems), problems
