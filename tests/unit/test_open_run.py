"""Session.open_run, the UDP receive turn in C, against its Python model (PySession.open_run): the
same device writes, byte for byte and write for write, and the same counts, for runs of every
kind a peer can send (TCP flows glued into super-packets, other packets, keepalives, padding)
and every kind it should not (bent, replayed, wrongly addressed datagrams, no IP inside); and
the model against device.Gro, the per-datagram path it replaces, on well-formed traffic."""

from __future__ import annotations

import os
import random
import socket
import struct

import pytest

from provisioner.tunnel import _fastpath, fastpath, vnet  # type: ignore[attr-defined]
from provisioner.tunnel.device import Device, Gro
from provisioner.tunnel.fastpath import PySession
from .inet import checksum as _csum
from .runs import device_pair, drained, open_runs

A, B = bytes(range(32)), bytes(range(100, 132))
INDEX = 0x11223344
IMPLS = {"compiled": _fastpath.Session, "python": PySession}


def tcp_packet(version: int, seq: int, payload: bytes, ip_id: int = 0, flags: int = vnet.TCP_ACK,
               options: bytes = b"", src: int = 1) -> bytes:
    """A fully checksummed TCP/IP packet, as a WireGuard peer's kernel sends it."""
    tcp = struct.pack("!HHIIBBHHH", 40000 + src, 5201, seq & 0xFFFFFFFF, 1, (5 + len(options) // 4) << 4, flags,
                      501, 0, 0) + options
    if version == 4:
        s, d = bytes([10, 0, 0, src]), bytes([10, 0, 0, 9])
        pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    else:
        s, d = bytes(15) + bytes([src]), bytes(15) + b"\x09"
        pseudo = s + d + struct.pack("!IxxxB", len(tcp) + len(payload), 6)
    check = _csum(pseudo + tcp + payload)
    tcp = tcp[:16] + check.to_bytes(2, "big") + tcp[18:]
    if version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), ip_id & 0xFFFF, 0x4000, 64, 6, 0,
                         s, d)
        ip = ip[:10] + _csum(ip).to_bytes(2, "big") + ip[12:]
    else:
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(tcp) + len(payload), 6, 64, s, d)
    return ip + tcp + payload


def udp_packet(size: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + size, 0, 0, 64, 17, 0, bytes(4), bytes(4)) + bytes(size)


def flow(version: int, count: int, seg: int = 1360, tail: int = 0, push: bool = True, src: int = 1,
         options: bytes = b"") -> list[bytes]:
    """`count` equal segments of one flow in order, then a shorter one (PSH) if `tail`."""
    out = [tcp_packet(version, 1000 + i * seg, bytes([i]) * seg, ip_id=7 + i, options=options, src=src)
           for i in range(count)]
    if tail:
        flags = vnet.TCP_ACK | (vnet.TCP_PSH if push else 0)
        out.append(tcp_packet(version, 1000 + count * seg, b"t" * tail, ip_id=7 + count, flags=flags,
                              options=options, src=src))
    return out


def padded(packet: bytes, mtu: int = 1420) -> bytes:
    return packet + bytes(fastpath.padded(len(packet), mtu) - len(packet))


class Sender:
    def __init__(self, index: int = INDEX):
        self.s = PySession(A, B, index)
        self.counter = 0

    def seal(self, payload: bytes, counter: int | None = None) -> bytes:
        if counter is None:
            counter, self.counter = self.counter, self.counter + 1
        out = memoryview(bytearray(len(payload) + 32))
        self.s.seal_into(counter, payload, out, 0)
        return bytes(out)


def gro_runs(datagrams: list[bytes]) -> list[list[bytes]]:
    """The datagrams as UDP_GRO hands them over: runs of equal size, a shorter one ending a run."""
    runs: list[list[bytes]] = []
    for d in datagrams:
        if runs and len(runs[-1][0]) == len(runs[-1][-1]) and len(d) <= len(runs[-1][0]) and len(runs[-1]) < 64:
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs


def receive(kind: str, datagrams: list[bytes], vnet_hdr: bool = True, session=None):
    """open_run over each UDP_GRO run of the datagrams, in a receive buffer with bytes on either
    side; (the answers summed, the device's writes)."""
    s = session if session is not None else IMPLS[kind](B, A, 0)
    a, b = device_pair()
    total = [0] * 5
    try:
        for run in gro_runs(datagrams):
            buf = bytearray(5) + b"".join(run) + bytearray(3)
            answer = s.open_run(buf, 5, len(buf) - 3, len(run[0]), INDEX, a.fileno(), vnet_hdr,
                                memoryview(bytearray(len(buf))))
            total = [x + y for x, y in zip(total, answer, strict=True)]
        writes = drained(b)
    finally:
        a.close()
        b.close()
    return tuple(total), writes


def both(datagrams: list[bytes], **kw):
    c = receive("compiled", datagrams, **kw)
    p = receive("python", datagrams, **kw)
    assert c == p
    return c


def sealed(packets: list[bytes], sender: Sender | None = None) -> list[bytes]:
    sender = sender or Sender()
    return [sender.seal(padded(p)) for p in packets]


@pytest.mark.parametrize("version", [4, 6])
def test_a_flow_is_glued_into_one_super_packet(version: int) -> None:
    packets = flow(version, 20, tail=100)
    ds = sealed(packets)
    (consumed, n, nbytes, bad, refused), writes = both(ds)
    assert (consumed, n, bad, refused) == (21, 21, 0, 0)
    assert nbytes == sum(len(padded(p)) for p in packets)
    assert len(writes) == 1
    flags, gso, hdr_len, gso_size, start, offset = vnet.HDR.unpack_from(writes[0])
    l4 = 20 if version == 4 else 40
    assert (flags, gso, hdr_len, gso_size, start, offset) == (
        vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4 if version == 4 else vnet.GSO_TCPV6, l4 + 20, 1360, l4, 16)
    body = writes[0][10:]
    assert body[l4 + 20:] == b"".join(p[l4 + 20:] for p in packets)
    vnet.sanitize(writes[0][:10], body, False)  # what the kernel would be handed checks out


@pytest.mark.parametrize("version", [4, 6])
def test_the_model_writes_what_the_per_datagram_gro_wrote(version: int) -> None:
    """On traffic a kernel sends, open_run's writes are device.Gro's (the path it replaces)."""
    packets = (flow(version, 3) + [udp_packet(100)] + flow(version, 70, tail=11, src=2)
               + flow(version, 2, tail=5, push=False, src=3) + [tcp_packet(version, 5, b"x", flags=vnet.TCP_ACK | vnet.TCP_FIN)]
               + flow(version, 4, options=b"\x01\x01\x08\x0a" + bytes(8), src=4))
    ds = sealed(packets)
    (consumed, *_), writes = both(ds)
    assert consumed == len(packets)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        gro = Gro(Device(a.fileno(), tap=False, pi=False, vnet_hdr=True, wireguard=True, compress=False))
        for run in gro_runs(ds):  # open_run writes out what it glued at the end of each receive
            for d in run:
                q = padded(packets[ds.index(d)])
                buf, at = gro.room(len(q))
                buf[at:at + len(q)] = q
                assert gro.take(buf, at, len(q)) is None
            gro.flush()
        old = drained(b)
    finally:
        a.close()
        b.close()
    assert writes == old


def test_without_vnet_hdr_each_packet_is_one_write_of_itself() -> None:
    packets = flow(4, 3) + [udp_packet(7)]
    ds = sealed(packets)
    answer, writes = both(ds, vnet_hdr=False)
    assert answer[:2] == (4, 4) and writes == packets


def test_keepalives_and_what_is_not_ip_are_consumed_and_counted() -> None:
    sender = Sender()
    ds = [sender.seal(b""), sender.seal(b"\x45" + bytes(15)), sender.seal(b"\x00" * 48), sender.seal(padded(udp_packet(3)))]
    answer, writes = both(ds)
    assert answer == (4, 1, len(padded(udp_packet(3))), 2, 0)
    assert writes == [bytes(10) + udp_packet(3)]


@pytest.mark.parametrize("bend", ["forged", "replayed", "index", "type", "short"])
def test_the_run_stops_at_a_datagram_python_must_see(bend: str) -> None:
    packets = flow(4, 6)
    ds = sealed(packets)
    if bend == "forged":
        ds[3] = ds[3][:40] + bytes([ds[3][40] ^ 1]) + ds[3][41:]
    elif bend == "replayed":
        ds[3] = ds[1]
    elif bend == "index":
        ds[3] = ds[3][:4] + b"\0\0\0\0" + ds[3][8:]
    elif bend == "type":
        ds[3] = b"\x05" + ds[3][1:]
    else:
        ds[5] = ds[5][:31]
    (consumed, n, *_), writes = both(ds)
    stop = 5 if bend == "short" else 3
    assert consumed == n == stop
    assert len(writes) == 1  # what was glued before the stop is written before Python goes on
    assert len(writes[0]) == 10 + 40 + stop * 1360


def test_a_replay_of_a_consumed_datagram_stops_the_next_call() -> None:
    packets = flow(4, 3)
    ds = sealed(packets)
    for kind in IMPLS:
        s = IMPLS[kind](B, A, 0)
        assert receive(kind, ds, session=s)[0][0] == 3
        assert receive(kind, ds, session=s)[0][:2] == (0, 0)


def test_out_of_order_segments_are_written_apart_and_alike() -> None:
    packets = flow(4, 8, tail=9)
    order = [0, 1, 3, 2, 4, 5, 7, 6, 8]
    ds = sealed([packets[i] for i in order])
    (consumed, *_), writes = both(ds)
    assert consumed == 9 and 1 < len(writes) < 9


def test_a_run_is_at_most_64_segments_and_64_kb() -> None:
    ds = sealed(flow(4, 100, seg=600))
    (consumed, *_), writes = both(ds)
    assert consumed == 100 and [vnet.HDR.unpack_from(w)[1] for w in writes] == [vnet.GSO_TCPV4] * 2
    assert len(writes[0]) == 10 + 40 + 64 * 600
    ds = sealed(flow(6, 60, seg=1400))
    (consumed, *_), writes = both(ds)
    assert all(len(w) - 10 <= 65535 + 40 for w in writes) and len(writes) == 2


def test_a_device_that_refuses_is_counted_alike() -> None:
    ds = sealed([udp_packet(10)] * 3)
    for kind in IMPLS:
        r, w = os.pipe()
        os.close(r)  # EPIPE on every write (SIGPIPE is ignored by Python)
        try:
            answer = IMPLS[kind](B, A, 0).open_run(b"".join(ds), 0, sum(map(len, ds)), len(ds[0]), INDEX, w, True,
                                                   memoryview(bytearray(1 << 16)))
        finally:
            os.close(w)
        assert answer == (3, 3, 3 * len(padded(udp_packet(10))), 0, 3)


@pytest.mark.parametrize("kind", sorted(IMPLS))
def test_hostile_arguments_are_exceptions(kind: str) -> None:
    s = IMPLS[kind](B, A, 0)
    buf, scratch = bytearray(100), memoryview(bytearray(100))
    for args in [(buf, 0, 101, 32, INDEX, 1, True, scratch), (buf, 50, 10, 32, INDEX, 1, True, scratch),
                 (buf, 0, 100, 0, INDEX, 1, True, scratch), (buf, 0, 100, 32, 2**32, 1, True, scratch),
                 (buf, 0, 100, 32, INDEX, -1, True, scratch), (buf, 0, 100, 32, INDEX, 1, True, scratch[:99])]:
        with pytest.raises(ValueError):
            s.open_run(*args)
    with pytest.raises(ValueError):
        _fastpath.Session(B, A, 0).open_run(buf, 0, 100, 32, INDEX, 1, True, memoryview(buf)[:100])


def random_run(rng: random.Random) -> tuple[list[bytes], int]:
    """Flows, interleaved and shuffled a little, other packets, keepalives, and bent datagrams."""
    sender = Sender()
    version = rng.choice([4, 6])
    packets: list[bytes] = []
    for f in range(rng.randint(1, 3)):
        packets += flow(version, rng.randint(0, 30), seg=rng.choice([500, 1000, 1340]),
                        tail=rng.choice([0, 0, 1, 77]), push=rng.random() < 0.5, src=f + 1)
    if rng.random() < 0.3:
        packets.insert(rng.randrange(len(packets) + 1), udp_packet(rng.randint(0, 1300)))
    for _ in range(rng.randint(0, 3)):
        if len(packets) > 1:
            i = rng.randrange(len(packets) - 1)
            packets[i], packets[i + 1] = packets[i + 1], packets[i]
    ds = []
    for p in packets:
        roll = rng.random()
        if roll < 0.03:
            ds.append(sender.seal(b""))
        elif roll < 0.05:
            ds.append(sender.seal(rng.randbytes(rng.randint(1, 60))))
        elif roll < 0.06 and ds:
            ds.append(rng.choice(ds))  # a replay
        elif roll < 0.07:
            d = bytearray(sender.seal(padded(p)))
            d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
            ds.append(bytes(d))
        else:
            ds.append(sender.seal(padded(p)))
    seg = max((len(d) for d in ds), default=64)
    return ds, seg


@pytest.mark.parametrize("seed", range(60))
def test_random_runs_give_the_same_writes_and_counts(seed: int) -> None:
    rng = random.Random(seed)
    ds, seg = random_run(rng)
    # equal-sized datagrams as UDP_GRO gives them: pad each to the run's size with a shorter last
    ds = [d if len(d) == seg or i == len(ds) - 1 else d + bytes(0) for i, d in enumerate(ds)]
    blob = b"".join(d.ljust(seg, b"\0") if i < len(ds) - 1 else d for i, d in enumerate(ds))
    c = receive_blob("compiled", blob, seg)
    p = receive_blob("python", blob, seg)
    assert c == p


def receive_blob(kind: str, blob: bytes, seg: int):
    """open_run over a raw receive buffer, then again from where it stopped (past one datagram), as
    the carrier goes on after a datagram Python handled: every call's answer, and all writes."""
    return open_runs(IMPLS[kind](B, A, 0), blob, seg, INDEX, True)
