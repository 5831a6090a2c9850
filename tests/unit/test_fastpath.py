"""The compiled per-packet path (_fastpath.c) against its Python model (fastpath.PySession): the
same bytes out, each opens the other's messages, the same answers to everything bent, the
same replay window; and the facade's choice between them."""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.tunnel import _fastpath, fastpath, vnet  # type: ignore[attr-defined]
from provisioner.tunnel.device import MAX_UNIT, READ_SIZE
from provisioner.tunnel.fastpath import FORGED, REPLAYED, PySession
from provisioner.tunnel.replay import ReplayWindow
from .inet import checksum as _checksum
from .runs import cut_alike

from .test_replay import TABLE, TEST_LIMIT

A, B = bytes(range(32)), bytes(range(100, 132))
SIZES = [0, 1, 15, 16, 17, 63, 1280, 1419, 1420, 1500, 9000, MAX_UNIT + 64]
IMPLS = {"compiled": _fastpath.Session, "python": PySession}


def pair(kind_a: str, kind_b: str, index: int = 0x01020304):
    """Two ends of a session: a seals with A and opens with B, b the other way round."""
    return IMPLS[kind_a](A, B, index), IMPLS[kind_b](B, A, 0x0A0B0C0D)


def sealed(s, counter: int, payload: bytes, pos: int = 0) -> bytes:
    out = memoryview(bytearray(pos + len(payload) + 32 + 7))
    end = s.seal_into(counter, payload, out, pos)
    assert end == pos + len(payload) + 32
    return bytes(out[pos:end])


@pytest.mark.parametrize("size", SIZES)
def test_both_seal_the_same_bytes(size: int) -> None:
    payload = random.Random(size).randbytes(size)
    for counter in (0, 1, 2**32 + 5, 2**64 - 2**13 - 2):
        c, p = _fastpath.Session(A, B, 0xDEADBEEF), PySession(A, B, 0xDEADBEEF)
        msg = sealed(c, counter, payload, pos=3)
        assert msg == sealed(p, counter, payload, pos=3)
        assert msg[:4] == b"\x04\0\0\0" and msg[4:8] == (0xDEADBEEF).to_bytes(4, "little")
        assert msg[8:16] == counter.to_bytes(8, "little")


@pytest.mark.parametrize("sealer", sorted(IMPLS))
@pytest.mark.parametrize("opener", sorted(IMPLS))
@pytest.mark.parametrize("size", SIZES)
def test_each_opens_the_others_messages(sealer: str, opener: str, size: int) -> None:
    a, b = pair(sealer, opener)
    payload = random.Random(size + 1).randbytes(size)
    msg = sealed(a, 7, payload)
    out = memoryview(bytearray(size + 5))
    assert b.open_into(msg, out) == size and bytes(out[:size]) == payload
    assert b.open_into(msg, out) == REPLAYED  # once only


@pytest.mark.parametrize("opener", sorted(IMPLS))
def test_what_is_bent_does_not_open_and_does_not_move_the_window(opener: str) -> None:
    a, b = pair("compiled", opener)
    payload = bytes(range(200))
    msg = sealed(a, 100, payload)
    out = memoryview(bytearray(len(msg)))
    wrong_tag = msg[:-1] + bytes([msg[-1] ^ 1])
    wrong_body = msg[:20] + bytes([msg[20] ^ 0x80]) + msg[21:]
    wrong_counter = msg[:8] + (101).to_bytes(8, "little") + msg[16:]
    wrong_index_is_not_checked_here = msg[:4] + b"\xff\xff\xff\xff" + msg[8:]  # the carrier's lookup does it
    truncated = msg[:-5]
    extended = msg + b"\0"
    for bent in (wrong_tag, wrong_body, wrong_counter, truncated, extended, msg[:32]):
        assert b.open_into(bent, out) == FORGED, bent.hex()
    assert b.open_into(wrong_index_is_not_checked_here, out) == len(payload)
    assert b.open_into(msg, out) == REPLAYED  # (the same counter, already taken)
    msg2 = sealed(a, 101, payload)  # the forged counter 101 did not mark 101 as seen
    assert b.open_into(msg2, out) == len(payload)


@pytest.mark.parametrize("kind", sorted(IMPLS))
def test_hostile_arguments_are_exceptions(kind: str) -> None:
    a, b = pair(kind, kind)
    out = memoryview(bytearray(64))
    with pytest.raises(ValueError):
        b.open_into(b"\x04" + bytes(30), out)  # shorter than header and tag
    with pytest.raises(ValueError):
        b.open_into(sealed(a, 0, bytes(100)), out)  # the payload does not fit out
    with pytest.raises(ValueError):
        a.seal_into(0, bytes(33), out, 0)  # 33 + 32 > 64
    with pytest.raises(ValueError):
        a.seal_into(0, b"", out, 40)
    with pytest.raises((ValueError, OverflowError)):
        a.seal_into(0, b"", out, -1)
    with pytest.raises(TypeError):
        a.seal_into(0, "text", out, 0)  # type: ignore[arg-type]
    with pytest.raises((TypeError, BufferError)):
        b.open_into(sealed(a, 1, b""), b"read-only" * 8)  # type: ignore[arg-type]


def test_the_compiled_one_refuses_what_the_model_cannot_express() -> None:
    s = _fastpath.Session(A, B, 1)
    buf = bytearray(200)
    with pytest.raises(OverflowError):
        s.seal_into(-1, b"", memoryview(buf), 0)
    with pytest.raises(OverflowError):
        s.seal_into(2**64, b"", memoryview(buf), 0)
    with pytest.raises(ValueError):  # shifted overlap: in place is allowed, this is not
        s.seal_into(0, memoryview(buf)[10:40], memoryview(buf), 0)
    view = memoryview(buf)
    view[16:46] = bytes(range(30))
    end = s.seal_into(0, view[16:46], view, 0)  # in place
    assert bytes(view[:end]) == sealed(PySession(A, B, 1), 0, bytes(range(30)))
    with pytest.raises(ValueError):
        _fastpath.Session(A[:31], B, 1)
    for index in (2**32, 2**64, 2**64 + 5, -1):  # never wrapped into a u32
        with pytest.raises(ValueError):
            _fastpath.Session(A, B, index)
        with pytest.raises(ValueError):
            PySession(A, B, index)
    with pytest.raises(TypeError):
        _fastpath.Session(A, B, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.seal_into(0, b"", view)  # type: ignore[call-arg]


@pytest.mark.parametrize("mtu", [0, 1420, 1500])
def test_seal_many_is_seal_into_of_padded_units(mtu: int) -> None:
    rng = random.Random(mtu)
    units = [rng.randbytes(n) for n in (0, 1, 15, 16, 100, 1419, 1420, 1421, 3000)]
    results = []
    for kind in sorted(IMPLS):
        out = memoryview(bytearray(20000))
        lengths, counter = IMPLS[kind](A, B, 9).seal_many(5, units, out, 2, mtu)
        results.append((lengths, counter, bytes(out)))
    assert results[0] == results[1]
    lengths, counter, out = results[0]
    assert counter == 5 + len(units)
    assert lengths == [32 + fastpath.padded(len(u), mtu) for u in units]
    _, b = pair("python", "python")
    pos = 2
    for unit, length in zip(units, lengths, strict=True):
        plain = memoryview(bytearray(length))
        size = b.open_into(out[pos:pos + length], plain)
        assert bytes(plain[:size]) == unit + bytes(size - len(unit))
        pos += length


def test_seal_many_stops_where_the_buffer_ends() -> None:
    for kind in sorted(IMPLS):
        out = memoryview(bytearray(32 * 3 + 2))
        assert IMPLS[kind](A, B, 9).seal_many(0, [b"", b"", b"abc", b""], out, 0, 0) == ([32, 32], 2)


@pytest.mark.parametrize("skip, lead, mtu", [(0, 0, 1420), (4, 0, 1420), (14, 0, 1420), (4, 1, 0), (0, 11, 0)])
def test_read_seal_reads_what_the_device_holds_and_seals_it_as_the_model_does(skip: int, lead: int,
                                                                               mtu: int) -> None:
    rng = random.Random(skip * 100 + lead)
    reads = [rng.randbytes(n) for n in (skip, skip + 1, skip + 20, skip + 1380, skip + 1420, 0, skip + 9000)]
    results = []
    for kind in sorted(IMPLS):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # one read, one message
        with ours, theirs:
            for r in reads:
                theirs.send(r)
            out = memoryview(bytearray(1 << 18))
            got = IMPLS[kind](A, B, 9).read_seal(ours.fileno(), 3, 64, out, 5, skip, lead, mtu, READ_SIZE, 0)
            again = IMPLS[kind](A, B, 9).read_seal(ours.fileno(), 0, 64, out[:0], 0, skip, lead, mtu, READ_SIZE, 0)
        results.append((got, bytes(out)))
        assert again == ([], 0, 0, 0)
    assert results[0] == results[1]
    (lengths, nbytes, counter, _), out = results[0]
    units = [bytes(lead) + r[skip:] for r in reads if len(r) > skip]
    assert counter == 3 + len(units) and lengths == [32 + fastpath.padded(len(u), mtu) for u in units]
    assert nbytes == sum(n - 32 for n in lengths)


def test_read_seal_stops_at_count_and_at_an_empty_device() -> None:
    for kind in sorted(IMPLS):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours, theirs:
            for _ in range(5):
                theirs.send(b"x" * 100)
            out = memoryview(bytearray(1 << 18))
            s = IMPLS[kind](A, B, 9)
            assert s.read_seal(ours.fileno(), 0, 3, out, 0, 0, 0, 0, READ_SIZE, 0)[2] == 3
            assert s.read_seal(ours.fileno(), 3, 64, out, 0, 0, 0, 0, READ_SIZE, 0)[2] == 5
            assert s.read_seal(ours.fileno(), 5, 64, out, 0, 0, 0, 0, READ_SIZE, 0) == ([], 0, 5, 0)
        with pytest.raises(OSError):  # a closed descriptor, before any unit: the error
            s.read_seal(ours.fileno() if ours.fileno() >= 0 else 10**6, 0, 1, out, 0, 0, 0, 0, READ_SIZE, 0)


# ------------------------------------------------------------------ TSO super-packets

def super_packet(version: int, payload: int, flags: int = vnet.TCP_ACK | vnet.TCP_PSH, gso: int = 1380,
                 options: bytes = b"", ecn: bool = False) -> bytes:
    """A TSO read from a tun: virtio header (NEEDS_CSUM, the pseudo-header's sum in the TCP
    checksum field, as the kernel leaves it) and a TCP packet of `payload` bytes."""
    data = random.Random(payload).randbytes(payload)
    tcp = bytearray(struct.pack("!HHIIBBHHH", 5201, 40000, 0xFFFFFF00, 7, (5 + len(options) // 4) << 4, flags, 500, 0,
                                0)) + options + data
    if version == 4:
        src, dst = bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0xFFFE, 0x4000, 64, 6, 0, src, dst))
        ip[10:12] = struct.pack("!H", _checksum(bytes(ip)))
        pseudo = src + dst
    else:
        src, dst = bytes(range(16)), bytes(range(16, 32))
        ip = bytearray(struct.pack("!IHBB16s16s", 0x60000000, len(tcp), 6, 64, src, dst))
        pseudo = src + dst
    partial = ~_checksum(pseudo + struct.pack("!HH", 6, len(tcp))) & 0xFFFF
    tcp[16:18] = struct.pack("!H", partial)
    kind = (vnet.GSO_TCPV4 if version == 4 else vnet.GSO_TCPV6) | (vnet.GSO_ECN if ecn else 0)
    return vnet.HDR.pack(vnet.F_NEEDS_CSUM, kind, 0, gso, len(ip), 16) + bytes(ip + tcp)


def wire_ok(packet: bytes) -> bool:
    """The packet's IPv4 header checksum and its TCP checksum verify."""
    if packet[0] >> 4 == 4:
        l4, pseudo = 20, packet[12:20]
        if _checksum(packet[:20]) != 0:
            return False
    else:
        l4, pseudo = 40, packet[8:40]
    tcp = packet[l4:]
    return _checksum(pseudo + struct.pack("!HH", 6, len(tcp)) + tcp) == 0


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("payload, gso, max_packet", [(1, 1380, 1420), (1380, 1380, 1420), (1381, 1380, 1420),
                                                       (64000, 1380, 1420), (5000, 1448, 1420), (3000, 500, 65535)])
def test_a_super_packet_is_cut_into_checksummed_packets_alike(version: int, payload: int, gso: int,
                                                               max_packet: int) -> None:
    unit = super_packet(version, payload, gso=gso)
    packets = _fastpath.wire_packets(unit, max_packet)
    assert packets == vnet.wire_packets(unit, max_packet)
    assert all(len(p) <= max_packet and wire_ok(p) for p in packets)
    l4 = 20 if version == 4 else 40
    assert b"".join(p[l4 + 20:] for p in packets) == unit[vnet.HDR_LEN + l4 + 20:]  # every byte, in order, once


def test_flags_ids_and_sequence_numbers_go_as_tso_sends_them() -> None:
    unit = super_packet(4, 4000, flags=vnet.TCP_ACK | vnet.TCP_PSH | vnet.TCP_FIN | vnet.TCP_CWR, ecn=True,
                        options=bytes([1, 1, 8, 10]) + bytes(8))
    packets = _fastpath.wire_packets(unit, 1420)
    assert packets == vnet.wire_packets(unit, 1420) and all(wire_ok(p) for p in packets)
    flags = [p[33] for p in packets]
    assert flags[0] == vnet.TCP_ACK | vnet.TCP_CWR and flags[-1] == vnet.TCP_ACK | vnet.TCP_PSH | vnet.TCP_FIN
    assert all(f == vnet.TCP_ACK for f in flags[1:-1])
    assert [int.from_bytes(p[4:6], "big") for p in packets] == [(0xFFFE + i) & 0xFFFF for i in range(len(packets))]
    seqs = [int.from_bytes(p[24:28], "big") for p in packets]
    assert seqs[1] == (0xFFFFFF00 + len(packets[0]) - 52) & 0xFFFFFFFF  # wraps around 2**32


def test_a_packet_with_only_its_checksum_left_to_do_is_finished() -> None:
    unit = bytearray(super_packet(4, 100))
    unit[1] = vnet.GSO_NONE
    (packet,) = _fastpath.wire_packets(bytes(unit), 1420)
    assert packet == vnet.wire_packets(bytes(unit), 1420)[0] and wire_ok(packet)
    unit[0] = 0  # nothing to do: as it came
    assert _fastpath.wire_packets(bytes(unit), 1420) == [bytes(unit[vnet.HDR_LEN:])]
    unit[0] = vnet.F_NEEDS_CSUM  # a field at an odd offset from the start (found by fastpath_segment):
    unit[6:10] = struct.pack("<HH", 21, 15)  # summed in place, as the kernel sums it
    assert _fastpath.wire_packets(bytes(unit), 1420) == vnet.wire_packets(bytes(unit), 1420)
    empty = bytes(vnet.HDR_LEN)  # a read of a header and no packet (also found by it): no packet
    assert _fastpath.wire_packets(empty, 1420) == vnet.wire_packets(empty, 1420) == []


@pytest.mark.parametrize("bend", ["short", "flags", "gso_type", "version", "length", "offset", "no payload",
                                  "no gso_size", "csum outside", "headers too long", "v4 as v6"])
def test_a_unit_that_cannot_be_cut_is_refused_alike(bend: str) -> None:
    unit = bytearray(super_packet(4, 3000))
    max_packet = 1420
    if bend == "short":
        unit = unit[:9]
    elif bend == "flags":
        unit[0] = 0x05
    elif bend == "gso_type":
        unit[1] = 3
    elif bend == "version":
        unit[10] = 0x55
    elif bend == "length":
        unit[12:14] = (100).to_bytes(2, "big")
    elif bend == "offset":
        unit[10 + 32] = 0xF0  # a data offset of 60 bytes, past a header of 20 + ... fine; then too far:
        unit = unit[:10 + 20 + 50]
        unit[12:14] = (70).to_bytes(2, "big")
    elif bend == "no payload":
        unit = unit[:10 + 40]
        unit[12:14] = (40).to_bytes(2, "big")
    elif bend == "no gso_size":
        unit[4:6] = b"\0\0"
    elif bend == "csum outside":
        unit[1] = vnet.GSO_NONE
        unit[6:8] = (4000).to_bytes(2, "little")
    elif bend == "headers too long":
        max_packet = 40
    elif bend == "v4 as v6":
        unit[1] = vnet.GSO_TCPV6
    with pytest.raises(ValueError):
        vnet.wire_packets(bytes(unit), max_packet)
    with pytest.raises(ValueError):
        _fastpath.wire_packets(bytes(unit), max_packet)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([1, 40, 60, 100, 1420, 65535]))
def test_any_bytes_are_cut_alike(data: bytes, max_packet: int) -> None:
    for unit in (data, super_packet(4, 200)[:len(data)] + data, super_packet(6, 300)[:40] + data):
        cut_alike(unit, max_packet)


def test_read_seal_cuts_tso_reads_and_keeps_what_does_not_fit() -> None:
    reads = [super_packet(4, 64000), super_packet(6, 20000), b"\x01" * 5, super_packet(4, 50)]
    results = []
    for kind in sorted(IMPLS):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        with ours, theirs:
            for r in reads:
                theirs.send(r)
            s = IMPLS[kind](A, B, 9)
            out = memoryview(bytearray(80000))  # the first read's packets fit, the second's do not
            first = s.read_seal(ours.fileno(), 0, 64, out, 0, 0, 0, 1420, READ_SIZE, 1420)
            out2 = memoryview(bytearray(80000))
            second = s.read_seal(ours.fileno(), first[2], 64, out2, 0, 0, 0, 1420, READ_SIZE, 1420)
        results.append((first, second, bytes(out), bytes(out2)))
    assert results[0] == results[1]
    first, second, out, out2 = results[0]
    expected = [vnet.wire_packets(r, 1420) for r in (reads[0], reads[1], reads[3])]
    assert first[0] == [32 + fastpath.padded(len(p), 1420) for p in expected[0]] and first[3] == 0
    assert second[0] == [32 + fastpath.padded(len(p), 1420) for p in expected[1] + expected[2]]
    assert second[3] == 1  # the 5 bytes that are no unit
    _, b = pair("python", "python")
    pos, plain = 0, memoryview(bytearray(2000))
    for packet, length in zip(expected[0], first[0], strict=True):
        size = b.open_into(out[pos:pos + length], plain)
        assert bytes(plain[:len(packet)]) == packet and size == fastpath.padded(len(packet), 1420)
        pos += length


def test_the_compiled_replay_window_runs_the_wireguard_go_table() -> None:
    window = _fastpath.ReplayWindow(limit=TEST_LIMIT)
    for number, (counter, expected) in enumerate(TABLE, 1):
        assert window.check(counter) is expected, f"check, case {number}"
        assert window.accept(counter) is expected, f"case {number}"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 20000), st.integers(0, 2**64 + 3)), max_size=200),
       st.sampled_from([2**64 - 2**13 - 1, 2**33, 10000]))
def test_the_compiled_replay_window_is_the_python_one(counters: list[int], limit: int) -> None:
    c, p = _fastpath.ReplayWindow(limit), ReplayWindow(limit)
    for counter in counters:
        assert c.check(counter) is p.check(counter)
        assert c.accept(counter) is p.accept(counter), counter


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2**64 - 1))
def test_any_bytes_open_alike(data: bytes, counter: int) -> None:
    """Arbitrary messages (and valid ones bent) get the same answer from both."""
    msg = sealed(PySession(B, A, 1), counter % 1000, data[:64])
    for candidate in (data, msg, msg[:len(data) % (len(msg) + 1)] + data):
        answers = []
        for kind in sorted(IMPLS):
            s = IMPLS[kind](A, B, 1)
            out = memoryview(bytearray(len(candidate)))
            try:
                answers.append((s.open_into(candidate, out), bytes(out)))
            except ValueError:
                answers.append(("ValueError", b""))
        assert answers[0] == answers[1]


def _datapath_in_child(env: dict[str, str], code: str = "") -> str:
    script = code + "from provisioner.tunnel import fastpath; print(fastpath.DATAPATH.value)"
    child_env = {k: v for k, v in os.environ.items() if k != fastpath.ENV} | env
    return subprocess.run([sys.executable, "-c", script], env=child_env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_compiled_path_is_chosen_when_it_is_built() -> None:
    assert _datapath_in_child({}) == fastpath.Datapath.COMPILED


def test_the_environment_forces_the_python_path() -> None:
    assert _datapath_in_child({fastpath.ENV: "python"}) == fastpath.Datapath.PYTHON


def test_without_the_extension_the_python_path_is_chosen() -> None:
    hide = "import sys; sys.modules['provisioner.tunnel._fastpath'] = None\n"  # import then raises ImportError
    assert _datapath_in_child({}, hide) == fastpath.Datapath.PYTHON


def test_a_keypair_works_on_the_path_in_use() -> None:
    from provisioner.tunnel.keypair import Keypair
    from provisioner.tunnel.noise import SessionKeys

    kind = fastpath.DATAPATH
    assert isinstance(Keypair(SessionKeys(A, B, 1, 2, True), 0.0).session,
                      _fastpath.Session if kind is fastpath.Datapath.COMPILED else PySession)


def test_the_stats_line_says_which_path_runs() -> None:
    from provisioner.tunnel.stats import Stats

    assert Stats("t").to_dict()["datapath"] == fastpath.DATAPATH.value
