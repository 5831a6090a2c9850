"""A socket made and dumps read ahead on a thread of their own (kernel/_readahead.c through
netlink.Opening) and a fleet's next host taken ahead (connection/kernel.py's Ahead), against the
real kernel in fresh namespaces; the reader's walk of what it receives against a peer that sends
anything (a socket pair in place of the kernel)."""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner import fleet, reconcile
from provisioner.connection.kernel import Ahead, KernelConnection, machine_key
from provisioner.errors import LockTimeout, UnreachableError
from provisioner.kernel import namespace
from provisioner.kernel import netlink as nl
from provisioner.kernel._readahead import start, start_in  # built by make setup: its absence fails here, never skips
from provisioner.kernel.observe import EVERYTHING, observe
from provisioner.lock import free_host_lock
from provisioner.reconcile import Job, Status

from ..fuzz.targets import answer_ends


def message(kind: int, seq: int, payload: bytes = b"") -> bytes:
    return nl.HDR.pack(16 + len(payload), kind, 2, seq, 0) + payload + b"\0" * (-len(payload) % 4)


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


def furnished(ns: str, devices: int = 3) -> str:
    for i in range(devices):
        ip(ns, "tuntap", "add", "dev", f"tp{i}", "mode", "tap")
        ip(ns, "link", "set", f"tp{i}", "up")
        ip(ns, "addr", "add", f"192.0.2.{i + 1}/32", "dev", f"tp{i}")
        ip(ns, "route", "add", f"198.51.100.{i * 4}/30", "dev", f"tp{i}")
        ip(ns, "-6", "route", "add", f"fd00:{i + 1}::/64", "dev", f"tp{i}")
    return ns


def socket_in(ns: str) -> nl.Netlink:
    with namespace.entered(ns):
        return nl.Netlink()


def namespace_of(ns: str) -> int:
    with namespace.entered(ns):
        return namespace.current()


def made_ahead(ns: str) -> nl.Netlink:
    """A socket made in `ns` and its dumps read, on the reader's thread."""
    sock = nl.Opening(namespace.path_of(ns), EVERYTHING).socket(namespace_of(ns))
    assert sock is not None
    return sock


def faked(ns: str, read: Callable[[tuple[bytes, ...]], tuple[tuple[bytes, ...], ...]]) -> type:
    """A stand-in for start_in: a socket made here in `ns`, and what `read` makes of the requests
    as what the reader read (raising: the reading failed)."""

    class Reading:
        def __init__(self, path: str, requests: tuple[bytes, ...]) -> None:
            self.requests = requests
            with socket_in(ns) as made:
                self.fd = os.dup(made.sock.fileno())

        def opened(self) -> tuple[int, int]:
            return self.fd, namespace_of(ns)

        def result(self) -> tuple[tuple[bytes, ...], ...]:
            return read(self.requests)

        def wait(self) -> None:
            pass

    return Reading


def test_a_reading_asked_for_ahead_is_the_state_when_it_was_asked_for(netns: str) -> None:
    furnished(netns)
    with socket_in(netns) as plain:
        expected = observe(plain)
    outside = namespace.current()
    with made_ahead(netns) as sock:
        assert namespace.current() == outside, "the reader entered the namespace, not this thread"
        sock._settle()  # the reading has ended: what the kernel holds from now on is not in it
        ip(netns, "tuntap", "add", "dev", "late", "mode", "tap")
        assert observe(sock) == expected, "the dumps read ahead, not asked for again"
        assert "late" in [d.name for d in observe(sock).observed.devices], "then asked for in turn, on that socket"


def test_the_reader_s_socket_is_set_up_as_a_netlink_socket_made_here(netns: str) -> None:
    """start_in makes its socket in C: each option netlink.py's Netlink sets, the same."""
    options = [(socket.SOL_SOCKET, socket.SO_SNDBUF), (socket.SOL_SOCKET, socket.SO_RCVBUF),
               *((270, option) for option in (nl.NETLINK_EXT_ACK, nl.NETLINK_CAP_ACK, nl.NETLINK_GET_STRICT_CHK)),
               (socket.SOL_SOCKET, socket.SO_TYPE), (socket.SOL_SOCKET, socket.SO_PROTOCOL)]
    with socket_in(netns) as plain, made_ahead(netns) as ahead:
        for level, option in options:
            assert ahead.sock.getsockopt(level, option) == plain.sock.getsockopt(level, option), (level, option)
        timeout = (socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
        assert ahead.sock.getsockopt(*timeout) == plain.sock.getsockopt(*timeout) != bytes(16)
        assert ahead.sock.getpeername() == plain.sock.getpeername() == (0, 0), "connected to the kernel"
        assert ahead.sock.getsockname()[0] > 0, "bound"
        assert not os.get_inheritable(ahead.sock.fileno())


def test_a_change_made_through_the_socket_drops_what_was_read_ahead(netns: str) -> None:
    furnished(netns, 1)
    with made_ahead(netns) as sock:
        ip(netns, "tuntap", "add", "dev", "late", "mode", "tap")
        sock.transact([])  # a transaction: what was read before it is not the kernel's state after it
        assert "late" in [d.name for d in observe(sock).observed.devices]


def test_a_socket_never_handed_over_is_closed_with_its_reading(netns: str) -> None:
    furnished(netns)
    path, here = namespace.path_of(netns), namespace_of(netns)
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        nl.Opening(path, EVERYTHING)  # dropped at once: its reader waited for, its socket closed
        given_up = nl.Opening(path, EVERYTHING)
        given_up.close()
        assert len(os.listdir("/proc/self/fd")) == fds, "closed, not only when the reading goes away"
        assert nl.Opening(path, EVERYTHING).socket(here + 1) is None, "made in another namespace: closed"
        sock = nl.Opening(path, EVERYTHING).socket(here)
        assert sock is not None
        sock.close()
    assert len(os.listdir("/proc/self/fd")) == fds


def test_a_socket_is_handed_over_once() -> None:
    reading = start_in("/proc/thread-self/ns/net", (nl.dump_request(*EVERYTHING[0], 1),))
    fd, _ = reading.opened()
    os.close(fd)
    with pytest.raises(ValueError):
        reading.opened()
    with pytest.raises(ValueError):
        start(socket.socket(socket.AF_UNIX), ()).opened()


def test_a_reading_that_cannot_make_its_socket_leaves_the_turn_to_make_one(netns: str, tmp_path: Path) -> None:
    """Not a namespace, or no such file: the reader fails (and leaves nothing open); a host whose
    socket was not made ahead is read in its turn, as it would have been without."""
    fds = len(os.listdir("/proc/self/fd"))
    for path, code in (("/dev/null", 22), (str(tmp_path / "gone"), 2)):  # EINVAL from setns, ENOENT
        with pytest.raises(OSError) as failed:
            start_in(path, (message(18, 1),)).opened()
        assert failed.value.errno == code
        assert nl.Opening(path, EVERYTHING).socket(namespace.current()) is None
    assert len(os.listdir("/proc/self/fd")) == fds
    with pytest.raises(ValueError):
        start_in("a\0b", ())


def test_a_namespace_file_that_is_a_fifo_fails_the_reading_at_once(tmp_path: Path) -> None:
    """Opened without waiting: a FIFO in a namespace's place held the reader for good (and the
    thread waiting for it, which no signal reached), found in review. Run apart, so that the
    code before fails this test instead of hanging the suite."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = ("import sys; from provisioner.kernel._readahead import start_in\n"
            "try:\n    start_in(sys.argv[1], ()).opened()\nexcept OSError as exc:\n    print(exc.errno)")
    p = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=30)
    assert p.stdout.strip() == str(errno.EINVAL), p.stderr  # opened, then setns refuses what is no namespace


def test_a_name_that_is_no_namespace_s_is_refused_before_any_file_is_opened() -> None:
    for name in ("", ".", "..", "../../tmp/x", "/tmp/fifo", "a/b", "a\0b", "x" * 256):
        assert namespace.name_problem(name) is not None, name
        with pytest.raises(namespace.NamespaceError) as refused:
            namespace.path_of(name)
        assert refused.value.errno == errno.EINVAL
    assert namespace.name_problem("x" * 255) is None and namespace.name_problem("pfleet-00") is None


def test_a_wait_for_the_reader_gives_way_to_a_signal_s_handler() -> None:
    """Waiting for a reading (here on a peer that does not answer yet), the thread runs a signal's
    handler: Ctrl-C stops a run whose reader is held, where it waited with no way out. Run apart,
    so that the code before fails this test instead of hanging the suite."""
    code = """
import signal, socket
from provisioner.kernel import netlink as nl
from provisioner.kernel._readahead import start
request = nl.HDR.pack(16, 18, 2, 1, 0)
ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
reading = start(ours, (request,))
assert peer.recv(64) == request
class Stop(Exception):
    pass
def stop(signum, frame):
    raise Stop
signal.signal(signal.SIGALRM, stop)
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    reading.result()
except Stop:
    print("stopped")
end = nl.HDR.pack(16, 3, 2, 1, 0)
peer.send(end)
print("went on" if reading.result() == ((end,),) else "lost")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.stdout.split("\n")[:2] == ["stopped", "went on"], p.stdout + p.stderr


def test_a_socket_closed_under_its_reading_leaves_the_reader_its_own_descriptor() -> None:
    """start reads on a copy of the socket's descriptor: closed meanwhile, the number could be
    another file's by the time the reader used it (found in review)."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with peer:
        reading = start(ours, (message(18, 1),))
        ours.close()
        assert peer.recv(64) == message(18, 1)
        peer.send(message(3, 1))
        assert reading.result() == ((message(3, 1),),)


def test_the_reader_leaves_no_thread_in_a_namespace_it_read(netns: str) -> None:
    """After a reading in another namespace the reader goes back where the module was loaded: it
    keeps no host's namespace alive (a deleted one would live as long as this process)."""
    furnished(netns, 1)
    with made_ahead(netns) as sock:
        observe(sock)
    there = namespace_of(netns)
    tasks = [os.stat(f"/proc/self/task/{tid}/ns/net").st_ino for tid in os.listdir("/proc/self/task")]
    assert there not in tasks and len(tasks) > 1, "the reader runs, elsewhere"


@pytest.mark.parametrize("syscall", ["setsockopt", "bind", "connect"])
def test_a_socket_the_reader_made_and_could_not_set_up_is_closed(netns: str, syscall: str) -> None:
    """A failure after the socket was made (strace's fault injection): the reading fails with
    it, and the socket is not left open."""
    code = ("import os, sys\nfrom provisioner.kernel import netlink as nl, namespace\n"
            "from provisioner.kernel._readahead import start_in\n"
            "fds = len(os.listdir('/proc/self/fd'))\n"
            "reading = start_in(namespace.path_of(sys.argv[1]), (nl.dump_request(18, bytes(16), 1),))\n"
            "try:\n    reading.opened()\nexcept OSError as exc:\n    print(exc.errno)\n"
            "reading.wait()\nprint(len(os.listdir('/proc/self/fd')) - fds)")
    p = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}",
                        "-e", f"inject={syscall}:error=EACCES", sys.executable, "-c", code, netns],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == [str(errno.EACCES), "0"], p.stdout + p.stderr


def test_a_reading_that_fails_leaves_each_dump_to_be_asked_for_in_turn(netns: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    furnished(netns)
    with socket_in(netns) as plain:
        expected = observe(plain)
    closed = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
    closed.close()
    with pytest.raises(OSError) as failed:
        start(closed, (message(18, 1),)).result()
    assert failed.value.errno == 9  # EBADF

    def failed_reading(requests: tuple[bytes, ...]) -> tuple[tuple[bytes, ...], ...]:
        raise OSError(errno.EIO, "failed")

    monkeypatch.setattr(nl, "_start_in", faked(netns, failed_reading))  # a socket made, its reading failed
    with made_ahead(netns) as sock:
        assert observe(sock) == expected, "each dump is then the live one"


def test_a_dump_read_ahead_that_a_change_interrupted_anywhere_is_asked_for_again(
        netns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel marks only the first message after a change (NLM_F_DUMP_INTR), here in the first
    of two datagrams: the dump is asked for again. (Taken whole while only the flag of the
    datagram holding the end was looked at.)"""
    furnished(netns)
    with socket_in(netns) as plain:
        live = plain.dump(*EVERYTHING[0])

    def interrupted(requests: tuple[bytes, ...]) -> tuple[tuple[bytes, ...], ...]:
        seqs = [nl.HDR.unpack_from(r)[3] for r in requests]
        return tuple((nl.HDR.pack(20, 16, 0x2 | 0x10, seq, 0) + bytes(4), message(3, seq)) for seq in seqs)

    monkeypatch.setattr(nl, "_start_in", faked(netns, interrupted))
    with made_ahead(netns) as sock:
        assert sock.dump(*EVERYTHING[0]) == live


def test_a_reader_that_cannot_keep_an_answer_reads_it_to_its_end_and_asks_nothing_more() -> None:
    """Else the kernel would be left in the middle of a dump, and refuse the one asked for again
    in turn (EBUSY)."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, peer:
        reading = start(ours, (message(18, 1), message(22, 2)), 100)
        assert peer.recv(64) == message(18, 1)
        for _ in range(3):
            peer.send(message(16, 1, bytes(44)))  # 60 bytes each: the second is past 100
        peer.send(message(3, 1))
        with pytest.raises(OSError) as failed:
            reading.result()
        assert failed.value.errno == 7  # E2BIG
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(64)  # the second request was never sent
        peer.send(b"next")
        assert ours.recv(64) == b"next", "every datagram of the answer was read"


def test_without_the_compiled_reader_nothing_is_read_ahead(netns: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nl, "_start_in", None)
    monkeypatch.setattr(nl, "READ_AHEAD", False)
    inv = tmp_path / "two.yaml"
    inv.write_text("all:\n  hosts:\n" + "".join(
        f"    h{i}: {{ansible_connection: netns, ansible_host: {netns}}}\n" for i in range(2)))
    assert fleet._ahead(reconcile.load(str(inv)), Job(str(inv), state_dir=tmp_path)) is None


# --- the reader's walk of what it receives: a peer that answers anything -------------------

def test_the_reader_keeps_every_datagram_up_to_its_answer_s_end_whatever_they_hold() -> None:
    """Messages of other requests, of other types, cut short or claiming more than they hold:
    the reader stops at the first datagram that ends the answer, as its model says, and keeps
    each one whole, never one more (netlink.py's `messages` then reads them)."""
    rng = random.Random(1)
    for case in range(300):
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours, peer:
            seqs = [rng.randrange(1, 1 << 32) for _ in range(rng.randrange(1, 4))]
            requests = tuple(nl.HDR.pack(20, 18, 0x301, seq, 0) + b"\0" * 4 for seq in seqs)
            reading = start(ours, requests)
            sent: list[list[bytes]] = []
            for request, seq in zip(requests, seqs, strict=True):
                assert peer.recv(1 << 16) == request
                answer: list[bytes] = []
                while not answer or not answer_ends(answer[-1], seq):
                    pick = rng.random()
                    if pick < 0.5:
                        datagram = b"".join(message(16, rng.choice([seq, seq + 1]), os.urandom(rng.randrange(0, 40)))
                                            for _ in range(rng.randrange(1, 4)))
                    elif pick < 0.7:
                        datagram = os.urandom(rng.randrange(1, 64))
                    elif pick < 0.85:
                        datagram = message(16, seq) + message(rng.choice([2, 3]), rng.choice([seq, seq ^ 1]))
                    else:
                        datagram = message(3, seq)
                    peer.send(datagram)
                    answer.append(datagram)
                sent.append(answer)
            assert reading.result() == tuple(tuple(a) for a in sent), case


def test_a_reader_whose_peer_goes_away_says_why_and_never_hangs() -> None:
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        reading = start(ours, (message(18, 1), message(18, 2)))
        peer.recv(64)
        peer.send(message(16, 1))
        peer.close()  # an end of file: the answer ends there, the next request cannot be sent
        with pytest.raises(OSError) as failed:
            reading.result()
        assert failed.value.errno == 32  # EPIPE, and no SIGPIPE: the thread sends with MSG_NOSIGNAL


def test_one_reader_does_the_readings_in_turn_and_a_forked_child_gets_its_own(netns: str) -> None:
    """Readings wait for the one under way (here on a peer that has not answered yet). A process
    forked meanwhile has no reader: there they fail, and its next reading starts one of its own."""
    furnished(netns, 2)
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, peer:
        blocked = start(ours, (message(18, 1),))
        assert peer.recv(64) == message(18, 1)  # the reader waits for the answer now
        queued = nl.Opening(namespace.path_of(netns), EVERYTHING)
        pid = os.fork()
        if pid == 0:  # the child: whatever happens, it ends here, and says how by its exit status
            code = 1
            try:
                signal.alarm(10)  # a reading that waits for a reader the child does not have: killed
                failed = []
                for reading in (blocked, queued.reading):
                    try:
                        reading.result()
                    except OSError as exc:
                        failed.append(exc.errno)
                with made_ahead(netns) as sock:
                    names = [d.name for d in observe(sock).observed.devices]
                code = 0 if failed == [errno.ECANCELED] * 2 and names == ["tp0", "tp1"] else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        peer.send(message(3, 1))
        assert blocked.result() == ((message(3, 1),),)
        sock = queued.socket(namespace_of(netns))
        assert sock is not None
        with sock:
            assert [d.name for d in observe(sock).observed.devices] == ["tp0", "tp1"], "then the one queued"


# --- a fleet's next host, taken ahead --------------------------------------------------------

def held(state: Path, ns: str) -> bool:
    """Whether a namespace host's lock is held (by this process or another) right now."""
    try:
        with free_host_lock(state, machine_key(ns)):
            return False
    except BlockingIOError:
        return True


def spied(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each connection's lock and first reading were taken ahead, in order."""
    taken: list[bool] = []
    take = Ahead.take

    def spy(self: Ahead, host: str) -> object:
        got = take(self, host)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(Ahead, "take", spy)
    return taken


def test_the_next_host_s_lock_is_taken_and_its_state_read_while_this_one_is_worked_on(
        make_netns: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    namespaces = [furnished(make_netns(), n) for n in (1, 2, 3)]
    expected = []
    for ns in namespaces:
        with socket_in(ns) as plain:
            expected.append(observe(plain).observed)
    taken = spied(monkeypatch)
    ahead = Ahead(tmp_path, [(f"h{i}", ns) for i, ns in enumerate(namespaces)])
    try:
        for i, ns in enumerate(namespaces):
            with KernelConnection(f"h{i}", ns, tmp_path, 1.0, lambda _: None, ahead) as conn:
                assert conn.observe() == expected[i], "each host's own state, read under its own lock"
                assert [held(tmp_path, n) for n in namespaces] == [j in (i, i + 1) for j in range(3)]
        assert taken == [False, True, True] and not any(held(tmp_path, n) for n in namespaces)
    finally:
        ahead.close()


def test_a_next_host_whose_lock_is_busy_is_left_to_its_own_turn(make_netns: Callable[[], str],
                                                                 tmp_path: Path) -> None:
    namespaces = [furnished(make_netns(), n) for n in (1, 2)]
    ahead = Ahead(tmp_path, [("h0", namespaces[0]), ("h1", namespaces[1])])
    try:
        with free_host_lock(tmp_path, machine_key(namespaces[1])):  # another run holds the second host
            with KernelConnection("h0", namespaces[0], tmp_path, 1.0, lambda _: None, ahead):
                assert ahead.take("h1") is None, "not taken: it is not ours yet"
            told: list[str] = []
            with pytest.raises(LockTimeout):  # its own turn waits for it, and says so, as always
                with KernelConnection("h1", namespaces[1], tmp_path, 0.2, told.append, ahead):
                    pass
            assert told and "waiting for the lock" in told[0]
        with KernelConnection("h1", namespaces[1], tmp_path, 1.0, lambda _: None, ahead) as conn:
            assert [d.name for d in conn.observe().devices] == ["tp0", "tp1"]
    finally:
        ahead.close()


def test_only_the_host_right_after_is_taken_and_given_back_before_another_lock_is_waited_for(
        make_netns: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine named twice (x, y, x): each turn takes the host right after it, not a later one
    of the same name's. A host that never comes to connect (skipped, or failed before): what was
    taken for it is given back when the next one connects, before that one waits for its lock."""
    x, y, z = (furnished(make_netns(), 1) for _ in range(3))
    taken = spied(monkeypatch)
    ahead = Ahead(tmp_path, [("x1", x), ("y", y), ("x2", x), ("z", z)])
    try:
        for name, ns in (("x1", x), ("y", y), ("x2", x)):
            with KernelConnection(name, ns, tmp_path, 1.0, lambda _: None, ahead):
                pass
        assert taken == [False, True, True] and held(tmp_path, z), "z taken while x2 was worked on"
        ahead.close()
        ahead2 = Ahead(tmp_path, [("a", x), ("b", y), ("c", z)])
        with KernelConnection("a", x, tmp_path, 1.0, lambda _: None, ahead2):
            assert held(tmp_path, y)
        # b never comes (skipped): c connects, and y's lock is given back first
        with KernelConnection("c", z, tmp_path, 1.0, lambda _: None, ahead2) as conn:
            assert not held(tmp_path, y) and conn.observe().devices
        ahead2.close()
    finally:
        ahead.close()


def test_a_next_host_that_cannot_be_reached_is_left_to_say_why_in_its_own_turn(netns: str, tmp_path: Path) -> None:
    missing = f"{netns}-gone"  # no such namespace: entering it fails
    ahead = Ahead(tmp_path, [("a", netns), ("b", missing)])
    try:
        with KernelConnection("a", netns, tmp_path, 1.0, lambda _: None, ahead):
            assert not held(tmp_path, missing), "nothing kept of a host that could not be read"
        with pytest.raises(UnreachableError, match="no network namespace named"):
            with KernelConnection("b", missing, tmp_path, 1.0, lambda _: None, ahead):
                pass
    finally:
        ahead.close()


def test_a_namespace_made_anew_since_it_was_read_ahead_is_read_again(make_netns: Callable[[], str],
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = furnished(make_netns(), 1), furnished(make_netns(), 2)
    taken = spied(monkeypatch)
    ahead = Ahead(tmp_path, [("a", first), ("b", second)])
    try:
        with KernelConnection("a", first, tmp_path, 1.0, lambda _: None, ahead):
            pass  # b's lock and dumps taken ahead, in the namespace `second` names now
        subprocess.run(["ip", "netns", "del", second], check=True)
        subprocess.run(["ip", "netns", "add", second], check=True)
        ip(second, "tuntap", "add", "dev", "anew", "mode", "tap")
        with KernelConnection("b", second, tmp_path, 1.0, lambda _: None, ahead) as conn:
            assert [d.name for d in conn.observe().devices] == ["anew"], "the namespace it names now"
        assert taken == [False, True]
    finally:
        ahead.close()


def test_a_fleet_plan_reads_each_next_host_ahead_and_gives_back_what_it_holds_when_stopped(
        make_netns: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    namespaces = [furnished(make_netns(), n) for n in (1, 2, 3)]
    inv = tmp_path / "fleet.yaml"
    inv.write_text("all:\n  hosts:\n" + "".join(
        f"    h{i}:\n      ansible_connection: netns\n      ansible_host: {ns}\n      network:\n        devices:\n"
        + "".join(f"          - {{name: tp{j}, type: tap}}\n" for j in range(3))
        for i, ns in enumerate(namespaces)))
    loaded = reconcile.load(str(inv))
    job = Job(str(inv), state_dir=tmp_path)
    taken = spied(monkeypatch)
    outcomes = list(fleet.run(loaded, job, 1, lambda *a: None, lambda _: None))
    assert [o.status for o in outcomes] == [Status.OK] * 3 and taken == [False, True, True]
    with monkeypatch.context() as plain:
        plain.setattr(fleet, "_ahead", lambda loaded, job: None)
        in_turn = list(fleet.run(loaded, job, 1, lambda *a: None, lambda _: None))
    assert [o.plan for o in outcomes] == [o.plan for o in in_turn], "the same plans as each host read in its turn"
    assert len({len(o.plan.changes) for o in outcomes if o.plan}) == 3, "each host's own: three different plans"
    stopped = fleet.run(loaded, job, 1, lambda *a: None, lambda _: None)
    next(stopped)
    assert held(tmp_path, namespaces[1]), "the second host's lock, held ahead"
    stopped.close()
    assert not any(held(tmp_path, ns) for ns in namespaces)
    assert fleet._ahead(loaded, Job(str(inv), apply=True, state_dir=tmp_path)) is None, "an apply takes no lock ahead"
    monkeypatch.setattr(fleet.os, "sched_getaffinity", lambda pid: {0})
    assert fleet._ahead(loaded, job) is None, "one CPU: no other to read on"
