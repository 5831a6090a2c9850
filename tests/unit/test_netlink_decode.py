"""kernel/_rtattr.c against its Python models: pick (netlink._pick), messages (netlink._messages)
and link (netlink._link) give the same answer for every buffer, well formed or not, cut
anywhere, changed anywhere; and what the dump and the link reader make of what the kernel
never sends (a message shorter than its header, an error shorter than its code)."""

from __future__ import annotations

import errno
import random
import struct

import pytest

from provisioner.kernel import netlink as nl
from provisioner.kernel._rtattr import link, messages, pick  # built by make setup: its absence fails here, never skips


def attribute(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def buffers(rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(3000):
        head = bytes(rng.randrange(256) for _ in range(rng.choice((0, 4, 16))))
        body = b"".join(attribute(rng.randrange(0, 12) | rng.choice((0, 0x8000, 0x4000)),
                                  bytes(rng.randrange(256) for _ in range(rng.randrange(0, 12))))
                        for _ in range(rng.randrange(0, 8)))
        whole = head + body
        out.append(whole)
        out.append(whole[:rng.randrange(0, len(whole) + 1)])  # cut anywhere, a length running past the end
        out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))))  # noise
    return out


def test_the_compiled_walk_answers_as_its_model() -> None:
    assert nl.pick is pick
    rng = random.Random(15)
    for data in buffers(rng):
        offset = rng.choice((0, 0, 4, 16, 3, len(data), len(data) + 8))
        types = tuple(rng.randrange(0, 12) for _ in range(rng.randrange(0, 6)))
        assert pick(data, offset, types) == nl._pick(data, offset, types), (data.hex(), offset, types)
        assert pick(memoryview(data), offset, types) == nl._pick(memoryview(data), offset, types)


def test_what_both_refuse() -> None:
    for walk in (pick, nl._pick):
        with pytest.raises(ValueError):
            walk(b"", -1, (1,))
        with pytest.raises(TypeError):
            walk("text", 0, (1,))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pick(b"", 0, tuple(range(33)))  # more than any caller asks for


def test_the_first_of_a_type_and_the_nested_flag() -> None:
    data = attribute(3 | 0x8000, b"ab") + attribute(3, b"cd") + attribute(5, b"")
    for walk in (nl.pick, nl._pick):
        assert walk(data, 0, (3, 5, 7, 3)) == (b"ab", b"", None, b"ab")


def header(length: int, kind: int, flags: int = 0, seq: int = 7) -> bytes:
    return nl.HDR.pack(length, kind, flags, seq, 0)


def message(kind: int, payload: bytes, flags: int = 0, seq: int = 7) -> bytes:
    size = nl.HDR.size + len(payload)
    return header(size, kind, flags, seq) + payload + b"\0" * (-size % 4)


def link_message(rng: random.Random) -> bytes:
    """An RTM_NEWLINK payload as the kernel writes one, with a random choice of what is in it."""
    tun = b"".join(attribute(t, bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 4, 6)))))
                   for t in rng.sample(range(1, 9), rng.randrange(0, 8)))
    kind = rng.choice((b"tun\0", b"tun", b"veth\0", b"", b"t\xffn\0"))
    info = attribute(nl.IFLA_INFO_KIND, kind) * rng.randrange(0, 2) + attribute(nl.IFLA_INFO_DATA | 0x8000, tun)
    attrs = [attribute(nl.IFLA_IFNAME, rng.choice((b"bt0\0", b"x\0junk", b"\xc3(\0", b""))),
             attribute(nl.IFLA_MTU, struct.pack("=I", rng.randrange(1 << 32))[:rng.choice((4, 4, 2))]),
             attribute(nl.IFLA_ADDRESS, bytes(rng.randrange(256) for _ in range(6))),
             attribute(nl.IFLA_IFALIAS, rng.choice((b"provision\0", b"other\0"))),
             attribute(nl.IFLA_LINKINFO | 0x8000, info), attribute(30, bytes(40))]
    rng.shuffle(attrs)
    head = nl.IFINFO.pack(0, 1, rng.randrange(-5, 1 << 16), rng.randrange(1 << 32), 0)
    return head + b"".join(attrs[:rng.randrange(0, len(attrs) + 1)])


def changed(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def test_the_compiled_link_reader_answers_as_its_model() -> None:
    assert nl.link is link
    rng = random.Random(16)
    for _ in range(4000):
        msg = link_message(rng)
        for data in (msg, msg[:rng.randrange(0, len(msg) + 1)], changed(rng, msg)):
            assert link(data) == nl._link(data), data.hex()
    tun = attribute(nl.IFLA_TUN_TYPE, b"\x02") + attribute(nl.IFLA_TUN_OWNER, struct.pack("=I", 65534)) + \
        attribute(nl.IFLA_TUN_PI, b"\x01")
    msg = (nl.IFINFO.pack(0, 1, 9, 1, 0) + attribute(nl.IFLA_IFNAME, b"tp0\0") + attribute(nl.IFLA_MTU, struct.pack("=I", 1400))
           + attribute(nl.IFLA_LINKINFO, attribute(nl.IFLA_INFO_KIND, b"tun\0") + attribute(nl.IFLA_INFO_DATA, tun)))
    for read in (link, nl._link):
        assert read(msg) == (9, 1, "tp0", 1400, None, None, "tun", (2, 65534, None, 1, None, None))
        assert read(msg[:nl.IFINFO.size - 1]) is None  # shorter than its header: not a link


def test_the_compiled_split_answers_as_its_model() -> None:
    assert nl.messages is messages
    rng = random.Random(17)
    for _ in range(3000):
        parts = [message(rng.choice((16, 16, nl.NLMSG_ERROR, nl.NLMSG_DONE, 1)),
                         rng.choice((b"", struct.pack("=i", rng.choice((0, -1, -95, 3, -5000))), bytes(rng.randrange(30)))),
                         rng.choice((0, 0, nl.NLM_F_DUMP_INTR)), rng.choice((7, 7, 7, 8)))
                 for _ in range(rng.randrange(0, 6))]
        data = b"".join(parts)
        for buffer in (data, data[:rng.randrange(0, len(data) + 1)], changed(rng, data)):
            assert messages(buffer, 7) == nl._messages(buffer, 7), buffer.hex()
    done = message(16, b"a") + message(16, b"b", seq=8) + message(nl.NLMSG_DONE, b"\0" * 4) + message(16, b"c")
    for split in (messages, nl._messages):
        assert split(done, 7) == ([(16, b"a")], True, False, 0)
        assert split(header(8, 16), 7) == ([], False, False, errno.EBADMSG)  # claims less than its header
        assert split(message(nl.NLMSG_ERROR, struct.pack("=i", -95)), 7) == ([], False, False, 95)
        assert split(message(nl.NLMSG_ERROR, b"\xff"), 7) == ([], False, False, errno.EBADMSG)
        assert split(message(nl.NLMSG_ERROR, struct.pack("=i", 3)), 7) == ([], False, False, errno.EBADMSG)
        assert split(message(16, b"x", flags=nl.NLM_F_DUMP_INTR), 7) == ([(16, b"x")], False, True, 0)


class Replies:
    """A netlink socket's place in Netlink: hands out the buffers given, as recv would."""

    def __init__(self, *buffers: bytes) -> None:
        self.buffers = list(buffers)
        self.sent: list[bytes] = []

    def send(self, payload: bytes) -> int:
        self.sent.append(payload)
        return len(payload)

    def recv(self, size: int) -> bytes:
        return self.buffers.pop(0)


def netlink(*buffers: bytes) -> nl.Netlink:
    sock = nl.Netlink()
    sock.sock.close()
    sock.sock = Replies(*buffers)  # type: ignore[assignment]
    return sock


@pytest.mark.parametrize("compiled", [True, False])
def test_what_the_kernel_never_sends_is_refused_not_a_crash(compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error message too short to hold its code and a link message shorter than its header
    were read at fixed offsets without a check (struct.error, a traceback); now the dump raises
    NetlinkError(EBADMSG) and the observer steps over the link. A transaction's own walk over
    the acknowledgements stood still on a header claiming no length (a loop without end) and
    raised struct.error on an acknowledgement without its code, and made an error of a positive
    code a negative errno; now all three are EBADMSG, carrying the acknowledgements that came
    before (the last found by tests/fuzz's netlink_transact)."""
    from provisioner.kernel import observe

    if not compiled:
        monkeypatch.setattr(nl, "messages", nl._messages)
        monkeypatch.setattr(nl, "link", nl._link)
    with pytest.raises(nl.NetlinkError) as caught:
        netlink(message(nl.NLMSG_ERROR, b"\x01", seq=1)).dump(nl.RTM_GETLINK, b"")
    assert caught.value.errno == errno.EBADMSG
    short = message(nl.RTM_NEWLINK, b"\0" * 8, seq=1) + message(nl.NLMSG_DONE, b"\0" * 4, seq=1)
    assert observe._links(netlink(short)) == {}
    requests = [nl.Request(nl.RTM_NEWLINK, 0, b""), nl.Request(nl.RTM_NEWLINK, 0, b"")]
    ok = message(nl.NLMSG_ERROR, struct.pack("=i", 0) + header(16, nl.RTM_NEWLINK, seq=1), seq=1)
    for bad in (header(0, nl.RTM_NEWLINK, seq=9), header(0, nl.NLMSG_ERROR, seq=2),
                message(nl.NLMSG_ERROR, b"\x01", seq=2),
                message(nl.NLMSG_ERROR, struct.pack("=i", 17), seq=2),  # an error is negative (fuzzing)
                message(nl.NLMSG_ERROR, struct.pack("=i", -5000), seq=2)):  # and an errno, under 4096
        with pytest.raises(nl.NetlinkError) as caught:
            netlink(ok + bad).transact(requests)
        assert caught.value.errno == errno.EBADMSG
        assert caught.value.acks == (nl.Ack(0, ""),)


def sent_headers(payload: bytes) -> list[tuple[int, int, int, int, int]]:
    out, offset = [], 0
    while offset < len(payload):
        out.append(nl.HDR.unpack_from(payload, offset))
        offset += (out[-1][0] + 3) & ~3
    return out


def test_a_batch_asks_no_answer_of_each_request_and_ends_with_a_fence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each request was sent with NLM_F_ACK and its answer received on its own: 3000 answers made
    by the kernel and 3000 receives for a converge of 1000 devices. A request now asks for no
    answer (the kernel still sends one when it fails), and a NOOP after the batch asks for the
    one that says the batch is over: the requests no error names took effect, those an error
    names did not, with the kernel's reason; batches go in turn, each with its fence."""
    monkeypatch.setattr(nl, "BATCH", 3)
    requests = [nl.Request(nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL | nl.NLM_F_ACK, bytes([i]) * 8)
                for i in range(5)]
    refused = message(nl.NLMSG_ERROR, struct.pack("=i", -errno.EEXIST) + header(16, nl.RTM_NEWADDR, seq=2),
                      flags=0x100, seq=2)
    fence_1, fence_2 = (message(nl.NLMSG_ERROR, struct.pack("=i", 0) + header(16, nl.NLMSG_NOOP, seq=s),
                                flags=0x100, seq=s) for s in (4, 7))
    refused_2 = message(nl.NLMSG_ERROR, struct.pack("=i", -errno.ENODEV) + header(16, nl.RTM_NEWADDR, seq=6),
                        flags=0x100, seq=6)
    sock = netlink(refused, fence_1, refused_2, fence_2)
    assert sock.transact(requests) == [nl.ACKED, nl.Ack(errno.EEXIST, ""), nl.ACKED, nl.ACKED,
                                       nl.Ack(errno.ENODEV, "")]
    first, second = (sent_headers(p) for p in sock.sock.sent)  # type: ignore[attr-defined]
    assert [(kind, seq) for _, kind, _, seq, _ in first] == [(nl.RTM_NEWADDR, 1), (nl.RTM_NEWADDR, 2),
                                                              (nl.RTM_NEWADDR, 3), (nl.NLMSG_NOOP, 4)]
    assert [(kind, seq) for _, kind, _, seq, _ in second] == [(nl.RTM_NEWADDR, 5), (nl.RTM_NEWADDR, 6),
                                                               (nl.NLMSG_NOOP, 7)]
    for _, kind, flags, _, _ in first + second:
        wanted = nl.NLM_F_REQUEST | nl.NLM_F_ACK if kind == nl.NLMSG_NOOP else nl.NLM_F_REQUEST | nl.NLM_F_CREATE | nl.NLM_F_EXCL
        assert flags == wanted
    # a message that cannot be read after an error: what came before the error took effect
    with pytest.raises(nl.NetlinkError) as caught:
        netlink(refused + header(0, nl.NLMSG_ERROR, seq=3)).transact(requests[:3])
    assert caught.value.acks == (nl.ACKED, nl.Ack(errno.EEXIST, ""))


class Faltering(Replies):
    """A socket whose first blocking receive fails (ENOBUFS), with datagrams still queued."""

    def __init__(self, *buffers: bytes) -> None:
        super().__init__(*buffers)
        self.failed = False

    def recv(self, size: int, flags: int = 0) -> bytes:
        if not self.failed and not flags:
            self.failed = True
            raise OSError(errno.ENOBUFS, "No buffer space available")
        if not self.buffers:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return self.buffers.pop(0)


def test_a_failed_receive_reads_what_is_still_queued_before_it_gives_up() -> None:
    """A receive that fails leaves what the kernel queued: read without waiting, it may hold the
    batch's fence, and then the batch is known whole; without it, the requests no error named
    count as done but unheard (Ack.heard), with the socket's error, for a rollback to tell."""
    requests = [nl.Request(nl.RTM_NEWADDR, 0, b"\0" * 8)] * 3
    refused = message(nl.NLMSG_ERROR, struct.pack("=i", -errno.EEXIST) + header(16, nl.RTM_NEWADDR, seq=2),
                      flags=0x100, seq=2)
    fence = message(nl.NLMSG_ERROR, struct.pack("=i", 0) + header(16, nl.NLMSG_NOOP, seq=4), flags=0x100, seq=4)
    for whole in (True, False):
        sock = nl.Netlink()
        sock.sock.close()
        sock.sock = Faltering(refused, *([fence] if whole else []))  # type: ignore[assignment]
        if whole:
            assert sock.transact(requests) == [nl.ACKED, nl.Ack(errno.EEXIST, ""), nl.ACKED]
            continue
        with pytest.raises(nl.NetlinkError) as caught:
            sock.transact(requests)
        lost = nl.Ack(0, "netlink receive failed: No buffer space available", heard=False)
        assert caught.value.errno == errno.ENOBUFS
        assert caught.value.acks == (lost, nl.Ack(errno.EEXIST, ""), lost)
