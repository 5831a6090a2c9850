"""The data plane's pure parts: virtio headers, segmentation and coalescing, TCP framing."""

from __future__ import annotations

import os
import struct

import pytest

from provisioner.tunnel import vnet
from provisioner.tunnel.tcp import MAX_MESSAGE, FrameError, FrameReader, frame
from provisioner.tunnel.vnet import HDR, BadPacket

MSS = 1448


def tcp_packet(payload: bytes, version: int = 4, seq: int = 1000, flags: int = vnet.TCP_ACK | vnet.TCP_PSH,
               tap: bool = False) -> bytes:
    """A TCP/IP packet as a TSO device hands it over: timestamps option, checksum partial."""
    tcp = bytearray(32)
    tcp[0:4] = struct.pack(">HH", 5201, 40000)
    tcp[4:8] = seq.to_bytes(4, "big")
    tcp[8:12] = (777).to_bytes(4, "big")
    tcp[12], tcp[13] = 8 << 4, flags
    tcp[14:16] = (502).to_bytes(2, "big")
    tcp[20:32] = b"\x01\x01\x08\x0a" + (11).to_bytes(4, "big") + (22).to_bytes(4, "big")
    if version == 4:
        ip = bytearray(20)
        ip[0], ip[8], ip[9] = 0x45, 64, 6
        ip[2:4] = (20 + 32 + len(payload)).to_bytes(2, "big")
        ip[4:6], ip[6] = (0x1234).to_bytes(2, "big"), 0x40
        ip[12:16], ip[16:20] = bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])
        ip[10:12] = vnet.ipv4_checksum(ip).to_bytes(2, "big")
    else:
        ip = bytearray(40)
        ip[0], ip[6], ip[7] = 0x60, 6, 64
        ip[4:6] = (32 + len(payload)).to_bytes(2, "big")
        ip[8:24], ip[24:40] = bytes.fromhex("fd00" + "00" * 13 + "01"), bytes.fromhex("fd00" + "00" * 13 + "02")
    eth = bytes(6) + bytes(6) + (b"\x08\x00" if version == 4 else b"\x86\xdd") if tap else b""
    return eth + bytes(ip) + bytes(tcp) + payload


def tso_header(pkt: bytes, version: int = 4, tap: bool = False) -> bytes:
    l4 = (14 if tap else 0) + (20 if version == 4 else 40)
    gso = vnet.GSO_TCPV4 if version == 4 else vnet.GSO_TCPV6
    return HDR.pack(vnet.F_NEEDS_CSUM, gso, len(pkt), MSS, l4, 16)  # hdr_len as the kernel says: headlen


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("tap", [False, True])
def test_segment_then_coalesce_gives_back_the_super_packet(version: int, tap: bool) -> None:
    payload = os.urandom(40_000)
    pkt = tcp_packet(payload, version, tap=tap)
    segments = vnet.segment(tso_header(pkt, version, tap), pkt, tap, max_packet=1400, prefix=b"\0")
    l3 = 14 if tap else 0
    headers = l3 + (20 if version == 4 else 40) + 32
    assert all(len(s) - 1 - vnet.HDR_LEN <= 1400 for s in segments)
    assert len({len(s) for s in segments[:-1]}) == 1, "all but the last are equal, as UDP_SEGMENT needs"
    # Each segment is a real packet: its own lengths, sequence number and id.
    seg = segments[1][1 + vnet.HDR_LEN:]
    assert int.from_bytes(seg[headers - 32 + 4:headers - 32 + 8], "big") == 1000 + (1400 - headers)
    if version == 4:
        assert vnet.ipv4_checksum(seg[l3:l3 + 20]) == 0, "IPv4 header checksum is valid"
        assert int.from_bytes(seg[l3 + 2:l3 + 4], "big") == len(seg) - l3
    written: list[bytes] = []
    coalescer = vnet.Coalescer(tap, lambda parts: written.append(b"".join(bytes(p) for p in parts)))
    buf = bytearray(b"".join(segments))
    view, size, off = memoryview(buf), len(segments[0]), 0
    while off < len(buf):
        end = min(off + size, len(buf))
        if not coalescer.continues(view, off + 1, end):  # each unit after its one-byte prefix
            coalescer.add(view[off + 1:end])
        off = end
    coalescer.flush()
    assert len(written) == 1, "the whole super-packet again, its shorter PSH segment included"
    assert written[0][vnet.HDR_LEN + headers - 32 + 13] == vnet.TCP_ACK | vnet.TCP_PSH
    assert written[0][vnet.HDR_LEN + headers:] == payload
    flags, gso, hdr_len, gso_size, csum_start, csum_offset = HDR.unpack(written[0][:vnet.HDR_LEN])
    assert (flags, gso, hdr_len, csum_start, csum_offset) == (
        vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4 if version == 4 else vnet.GSO_TCPV6, headers, headers - 32, 16)
    assert gso_size == 1400 - headers
    sanitized = vnet.sanitize(written[0][:vnet.HDR_LEN], written[0][vnet.HDR_LEN:], tap)
    assert sanitized == written[0][:vnet.HDR_LEN], "what we write passes our own checks"


def test_a_lost_segment_is_never_glued_over() -> None:
    payload = os.urandom(20_000)
    pkt = tcp_packet(payload, flags=vnet.TCP_ACK)
    segments = vnet.segment(tso_header(pkt), pkt, False, 1400)
    del segments[3]
    written: list[bytes] = []
    coalescer = vnet.Coalescer(False, lambda parts: written.append(b"".join(bytes(p) for p in parts)))
    for s in segments:
        view = memoryview(bytearray(s))
        if not coalescer.continues(view, 0, len(s)):
            coalescer.add(view)
    coalescer.flush()
    assert len(written) >= 2
    for w in written:  # every write is a true piece of the stream: its bytes are where its seq says
        seq = int.from_bytes(w[vnet.HDR_LEN + 24:vnet.HDR_LEN + 28], "big")
        body = w[vnet.HDR_LEN + 52:]
        assert body == payload[seq - 1000:seq - 1000 + len(body)]
    delivered = sum(len(w) - vnet.HDR_LEN - 52 for w in written)
    assert len(payload) - delivered == 1400 - 52, "exactly the lost segment is missing"


@pytest.mark.parametrize("hdr, packet, reason", [
    (HDR.pack(0x80, 0, 0, 0, 0, 0), None, "flags"),
    (HDR.pack(1, 0, 0, 0, 150, 16), None, "outside the packet"),
    (HDR.pack(1, 3, 52, 1448, 20, 16), None, "gso_type 0x3 is not allowed"),
    (HDR.pack(0, 1, 52, 1448, 20, 16), None, "without a partial checksum"),
    (HDR.pack(1, 4, 52, 1448, 20, 16), None, "does not match the IP version"),
    (HDR.pack(1, 1, 52, 1448, 20, 6), None, "not the TCP checksum"),
    (HDR.pack(1, 1, 52, 0, 20, 16), None, "no segment size"),
    (HDR.pack(1, 1, 52, 1448, 20, 16), tcp_packet(b"x" * 100)[:-1], "total length"),
])
def test_sanitize_refuses_what_the_kernel_must_not_see(hdr: bytes, packet: bytes | None, reason: str) -> None:
    with pytest.raises(BadPacket, match=reason):
        vnet.sanitize(hdr, packet if packet is not None else tcp_packet(b"x" * 100), tap=False)


def test_sanitize_recomputes_hdr_len() -> None:
    pkt = tcp_packet(b"x" * 3000)
    lying = HDR.pack(1, vnet.GSO_TCPV4, 9999, MSS, 20, 16)
    assert HDR.unpack(vnet.sanitize(lying, pkt, False))[2] == 52


def frames(chunks: list[bytes], size: int = 1 << 18) -> list[bytes]:
    reader, out = FrameReader(size), []
    for chunk in chunks:
        while chunk:
            space = reader.space()
            n = min(len(space), len(chunk))
            space[:n] = chunk[:n]
            chunk = chunk[n:]
            out += [bytes(v) for v in reader.frames(n)]
    return out


def stream_of(units: list[bytes]) -> bytes:
    return b"".join(b"".join(bytes(p) for p in frame(u)) for u in units)


def test_frames_survive_any_cut_of_the_stream() -> None:
    units = [os.urandom(n) for n in (1, 1500, 65_000, 40, 30_000, 9000)]
    stream = stream_of(units)
    for cut in (1, 3, 1000, 7777, 65_536):
        chunks = [stream[i:i + cut] for i in range(0, len(stream), cut)]
        assert frames(chunks) == units


@pytest.mark.parametrize("length", [0, MAX_MESSAGE + 1, 0xFFFFFFFF])
def test_a_frame_of_no_or_too_many_bytes_ends_the_stream_after_the_frames_before_it(length: int) -> None:
    reader = FrameReader()
    stream = stream_of([b"hello"]) + struct.pack(">I", length) + bytes(64)
    reader.space()[:len(stream)] = stream
    assert [bytes(f) for f in reader.frames(len(stream))] == [b"hello"]
    assert isinstance(reader.error, FrameError)
    with pytest.raises(FrameError):
        reader.frames(0)


def test_a_handshake_reader_takes_nothing_longer_than_an_initiation() -> None:
    reader = FrameReader(limit=148)
    assert len(reader.buf) < 1024, "a connection that has proven nothing holds little memory"
    space = reader.space()
    space[:4] = struct.pack(">I", 149)
    with pytest.raises(FrameError):
        reader.frames(4)
