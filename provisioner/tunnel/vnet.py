"""The virtio_net_hdr in front of every packet of a tun/tap opened with IFF_VNET_HDR. Pure.

With TSO turned on (TUNSETOFFLOAD), one read from the device is a TCP "super-packet" of up
to 64 KB plus this 10-byte header saying how the kernel should cut it; that is what makes a
userspace forwarder fast. Three things are done with it here:

- `sanitize`: a header that came over the network is checked before the kernel sees it, as
  wireguard-go does: known flags and gso types only, checksum offsets inside the packet,
  the packet really is the TCP/IP the header claims, and `hdr_len` recomputed by us.
- `Coalescer`: the receiving side glues consecutive segments of one TCP flow back into a
  super-packet, so the device takes 64 KB per write instead of 1.4 KB (userspace GRO; see
  device.Gro for how WireGuard's fully checksummed packets are fed to it).
- `segment`: a super-packet cut into the packets the kernel would have sent, each marked
  "checksum partial". No carrier sends these: WireGuard's wire wants every packet fully
  checksummed, so the UDP carrier reads the device with its offloads off. It stays as the
  exact model of TSO that the coalescer's tests are checked against.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence

HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
HDR_LEN = HDR.size
F_NEEDS_CSUM, F_DATA_VALID = 1, 2
GSO_NONE, GSO_TCPV4, GSO_TCPV6 = 0, 1, 4
GSO_ECN = 0x80
TCP_CSUM_OFFSET = 16
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR = 1, 2, 4, 8, 16, 32, 64, 128
ETH_LEN = 14
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
IPPROTO_TCP = 6
MAX_IP_PACKET = 65535
MAX_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS, and a sane bound for one coalesced write


class BadPacket(ValueError):
    """A unit from the network that must not reach the device; the message names why."""


def l3_offset(pkt: bytes | memoryview, tap: bool) -> int:
    """Where the IP header starts: 0 on a tun, after the Ethernet header on a tap."""
    if not tap:
        return 0
    if len(pkt) < ETH_LEN:
        raise BadPacket("frame shorter than an Ethernet header")
    ethertype = (pkt[12] << 8) | pkt[13]
    if ethertype not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        raise BadPacket(f"offloaded frame with ethertype {ethertype:#06x}, not IP")
    return ETH_LEN


def tcp_offsets(pkt: bytes | memoryview, l3: int) -> tuple[int, int, int]:
    """(ip version, start of TCP header, end of TCP header) of a TCP/IP packet, checked."""
    n = len(pkt)
    if n < l3 + 20:
        raise BadPacket("packet shorter than an IP header")
    version = pkt[l3] >> 4
    if version == 4:
        ihl = (pkt[l3] & 0x0F) * 4
        if ihl < 20 or pkt[l3 + 9] != IPPROTO_TCP:
            raise BadPacket("offloaded IPv4 packet that is not TCP")
        if (pkt[l3 + 2] << 8 | pkt[l3 + 3]) != n - l3:
            raise BadPacket("IPv4 total length does not match the packet")
        l4 = l3 + ihl
    elif version == 6:
        if n < l3 + 40 or pkt[l3 + 6] != IPPROTO_TCP:  # extension headers are not offloaded here
            raise BadPacket("offloaded IPv6 packet that is not TCP")
        if (pkt[l3 + 4] << 8 | pkt[l3 + 5]) != n - l3 - 40:
            raise BadPacket("IPv6 payload length does not match the packet")
        l4 = l3 + 40
    else:
        raise BadPacket(f"IP version {version}")
    if n < l4 + 20:
        raise BadPacket("packet shorter than its TCP header")
    end = l4 + (pkt[l4 + 12] >> 4) * 4
    if end < l4 + 20 or end > n:
        raise BadPacket("TCP data offset outside the packet")
    return version, l4, end


def sanitize(hdr: bytes | memoryview, pkt: bytes | memoryview, tap: bool) -> bytes:
    """The header to hand the kernel with `pkt`, or BadPacket. Never trusts the sender's hdr_len."""
    flags, gso_type, _, gso_size, csum_start, csum_offset = HDR.unpack(hdr)
    n = len(pkt)
    if flags & ~(F_NEEDS_CSUM | F_DATA_VALID):
        raise BadPacket(f"virtio header flags {flags:#x}")
    if flags & F_NEEDS_CSUM and csum_start + csum_offset + 2 > n:
        raise BadPacket("checksum offsets point outside the packet")
    base = gso_type & ~GSO_ECN
    if gso_type == GSO_NONE:
        return HDR.pack(flags, GSO_NONE, 0, 0, csum_start, csum_offset)
    if base not in (GSO_TCPV4, GSO_TCPV6):
        raise BadPacket(f"gso_type {gso_type:#x} is not allowed")
    if not flags & F_NEEDS_CSUM:
        raise BadPacket("segmentation offload without a partial checksum")
    version, l4, end = tcp_offsets(pkt, l3_offset(pkt, tap))
    if (base == GSO_TCPV4) != (version == 4):
        raise BadPacket("gso_type does not match the IP version")
    if csum_start != l4 or csum_offset != TCP_CSUM_OFFSET:
        raise BadPacket("checksum offsets are not the TCP checksum")
    if gso_size == 0 or end >= n:
        raise BadPacket("segmentation offload with no segment size or no payload")
    return HDR.pack(flags, gso_type, end, gso_size, csum_start, csum_offset)


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _ones_sum(data: bytes | bytearray | memoryview) -> int:
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def ipv4_checksum(header: bytes | bytearray | memoryview) -> int:
    """Of an IPv4 header whose checksum field is zero."""
    return ~_fold(_ones_sum(header)) & 0xFFFF


@functools.lru_cache(maxsize=64)
def _struct(fmt: str) -> struct.Struct:
    return struct.Struct(fmt)


class _Headers:
    """Builds the headers of consecutive segments of one TCP flow, fast.

    Only the IP length, IP id, IPv4 header checksum, sequence number, flags and the partial
    TCP checksum differ between the segments of a flow; the rest is copied from `template`
    (the first packet's headers, from L2 to the end of TCP), after a fixed `prefix`. For a
    run of equal segments only the id, checksum and sequence number change: `run()` gives
    a Struct and the fixed pieces for those, so each header is one `pack` in a hot loop.
    """

    def __init__(self, template: bytes | memoryview, l3: int, l4: int, version: int, prefix: bytes = b""):
        t = bytes(template)
        self.t, self.prefix, self.l3, self.l4, self.v4 = t, prefix, l3, l4, version == 4
        self.pseudo = _ones_sum(t[l3 + 12:l3 + 20] if version == 4 else t[l3 + 8:l3 + 40]) + IPPROTO_TCP
        self.ip_base = _ones_sum(t[l3:l3 + 2] + t[l3 + 6:l3 + 10] + t[l3 + 12:l4]) if self.v4 else 0
        self.size = len(prefix) + len(t)

    def run(self, ip_len: int, flags: int) -> tuple[struct.Struct, tuple[bytes, ...]]:
        """For headers of `ip_len` with `flags`: v4 pack(a, id, b, csum, c, seq, d); v6 pack(a, seq, d)."""
        t, l3, l4 = self.t, self.l3, self.l4
        tcp_len = ip_len - (l4 - l3)
        check = _fold(self.pseudo + tcp_len)  # "checksum partial", as the kernel leaves it with NEEDS_CSUM
        pieces: tuple[bytes, ...]
        d = t[l4 + 8:l4 + 13] + bytes([flags]) + t[l4 + 14:l4 + 16] + check.to_bytes(2, "big") + t[l4 + 18:]
        if self.v4:
            pieces = (self.prefix + t[:l3 + 2] + ip_len.to_bytes(2, "big"), t[l3 + 6:l3 + 10], t[l3 + 12:l4 + 4], d)
            fmt = f">{len(pieces[0])}sH4sH{len(pieces[2])}sI{len(d)}s"
        else:
            pieces = (self.prefix + t[:l3 + 4] + tcp_len.to_bytes(2, "big") + t[l3 + 6:l4 + 4], d)
            fmt = f">{len(pieces[0])}sI{len(d)}s"
        return _struct(fmt), pieces

    def make(self, ip_len: int, ip_id: int, seq: int, flags: int) -> bytes:
        st, p = self.run(ip_len, flags)
        if self.v4:
            return st.pack(p[0], ip_id, p[1], self.ip_csum(ip_len, ip_id), p[2], seq, p[3])
        return st.pack(p[0], seq, p[1])

    def ip_csum(self, ip_len: int, ip_id: int) -> int:
        return ~_fold(self.ip_base + ip_len + ip_id) & 0xFFFF


def segment(hdr: bytes | memoryview, pkt: bytes | memoryview, tap: bool, max_packet: int = 65535,
            prefix: bytes = b"") -> list[bytes]:
    """A super-packet from our own device cut into real packets, each `prefix + header + packet`,
    the virtio header saying gso none.

    No packet is longer than `max_packet`, so each fits the path to the peer in one datagram:
    segments are cut smaller than the kernel's gso_size when the tunnel's own overhead needs it.
    Every segment keeps NEEDS_CSUM: the TCP checksum is finished by whoever delivers it
    (the receiving kernel trusts a partial checksum from a tun write), as with real TSO.
    """
    gso_size = HDR.unpack(hdr)[3]
    if not gso_size:
        raise BadPacket("segmentation offload with no segment size")
    l3 = l3_offset(pkt, tap)
    version, l4, hdr_len = tcp_offsets(pkt, l3)  # the kernel's hdr_len is only a hint: recompute it
    gso_size = min(gso_size, max_packet - hdr_len)
    if gso_size < 1:
        raise BadPacket("headers too long to segment")
    headers = _Headers(pkt[:hdr_len], l3, l4, version, prefix + HDR.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, l4,
                                                                         TCP_CSUM_OFFSET))
    seq = int.from_bytes(pkt[l4 + 4:l4 + 8], "big")
    tcp_flags = pkt[l4 + 13]
    ip_id = int.from_bytes(pkt[l3 + 4:l3 + 6], "big") if version == 4 else 0
    payload_len = len(pkt) - hdr_len
    count = -(-payload_len // gso_size)
    out = []
    if count > 2:  # the middle segments are equal but for id, checksum and seq: one pack each
        st, p = headers.run(hdr_len - l3 + gso_size, tcp_flags & ~(TCP_FIN | TCP_PSH | TCP_CWR))
        pack, start = st.pack, hdr_len
        if version == 4:
            a, b, c, d = p
            base = headers.ip_base + hdr_len - l3 + gso_size
            for i in range(1, count - 1):
                off = start + i * gso_size
                ident = (ip_id + i) & 0xFFFF
                x = base + ident
                x = (x & 0xFFFF) + (x >> 16)
                csum = ~((x & 0xFFFF) + (x >> 16)) & 0xFFFF
                out.append(pack(a, ident, b, csum, c, (seq + off - start) & 0xFFFFFFFF, d) + pkt[off:off + gso_size])
        else:
            a, d = p
            for i in range(1, count - 1):
                off = start + i * gso_size
                out.append(pack(a, (seq + off - start) & 0xFFFFFFFF, d) + pkt[off:off + gso_size])
    first_flags = tcp_flags & ~(TCP_FIN | TCP_PSH) if count > 1 else tcp_flags
    head = headers.make(hdr_len - l3 + min(gso_size, payload_len), ip_id, seq, first_flags)
    out.insert(0, head + pkt[hdr_len:hdr_len + gso_size])
    if count > 1:
        last = (count - 1) * gso_size
        tail = headers.make(hdr_len - l3 + payload_len - last, (ip_id + count - 1) & 0xFFFF,
                            (seq + last) & 0xFFFFFFFF, tcp_flags & ~TCP_CWR)
        out.append(tail + pkt[hdr_len + last:])
    return out


def finish_checksum(pkt: bytearray, start: int, offset: int) -> None:
    """What a device does for a NEEDS_CSUM packet: the ones' complement sum from `start` to the
    end (the field at start + offset holds the pseudo-header's partial sum) stored complemented
    in that field; a sum of zero is sent as 0xFFFF, as Linux's skb_checksum_help does."""
    at = start + offset
    if start < 0 or at + 2 > len(pkt) or offset < 0:
        raise BadPacket("checksum offsets point outside the packet")
    value = ~_fold(_ones_sum(pkt[start:])) & 0xFFFF
    pkt[at:at + 2] = (value or 0xFFFF).to_bytes(2, "big")


def wire_packets(unit: bytes | memoryview, max_packet: int = 65535) -> list[bytes]:
    """A read from a tun with vnet_hdr and offloads on (virtio header + IP packet) as the fully
    checksummed IP packets WireGuard's wire carries, none longer than `max_packet`: a TSO
    super-packet cut as `segment` cuts it, then every checksum finished. The model of
    _fastpath.wire_packets, which the UDP carrier's compiled read path uses."""
    if len(unit) < HDR_LEN:
        raise BadPacket("shorter than a virtio header")
    flags, gso_type, _, _, start, offset = HDR.unpack_from(unit)
    pkt = unit[HDR_LEN:]
    if flags & ~(F_NEEDS_CSUM | F_DATA_VALID):
        raise BadPacket(f"virtio header flags {flags:#x}")
    if gso_type == GSO_NONE:
        out = bytearray(pkt)
        if flags & F_NEEDS_CSUM:
            finish_checksum(out, start, offset)
        return [bytes(out)] if out else []
    base = gso_type & ~GSO_ECN
    if base not in (GSO_TCPV4, GSO_TCPV6) or not flags & F_NEEDS_CSUM:
        raise BadPacket(f"gso_type {gso_type:#x} is not allowed")
    version, l4, end = tcp_offsets(pkt, 0)
    if (base == GSO_TCPV4) != (version == 4):
        raise BadPacket("gso_type does not match the IP version")
    if end >= len(pkt):
        raise BadPacket("segmentation offload with no payload")
    packets = []
    for cut in segment(unit[:HDR_LEN], pkt, False, max_packet):
        p = bytearray(cut[HDR_LEN:])
        finish_checksum(p, l4, TCP_CSUM_OFFSET)
        packets.append(bytes(p))
    return packets


class Coalescer:
    """Userspace GRO for units (`virtio header + packet`) that arrive one datagram each.

    Consecutive, in-order, equal-sized segments of one TCP flow with nothing but ACK set
    are written as one super-packet; everything else is written as it came. After the first
    segment of a run the next one's bytes up to its payload are predicted exactly, so the
    common case (`continues`) costs one comparison and one pack. `write(parts)` gets the
    pieces of one writev.
    """

    def __init__(self, tap: bool, write: Callable[[Sequence[bytes | memoryview]], None]):
        self.tap = tap
        self._write = write
        self._first: memoryview | None = None  # the first unit of the run
        self._payloads: list[memoryview] = []
        self._headers: _Headers | None = None
        self._expect = b""  # the exact bytes before the payload of the run's next datagram
        self._hl = 0  # their length
        self._unit_len = 0  # and the whole unit's
        self._bytes = 0  # IP length of the run so far
        self._seg = 0  # payload per segment
        self._pack: Callable[..., bytes] = struct.pack
        self._pieces: tuple[bytes, ...] = ()
        self._ip_id = self._seq = self._first_id = self._first_seq = self._base = 0
        self._flags = TCP_ACK  # of the run's last segment

    @property
    def pending(self) -> bool:
        return self._first is not None

    def holds(self, buffer: bytearray) -> bool:
        """True if the run so far lives (partly) in `buffer`: flush before refilling it."""
        return self._first is not None and self._first.obj is buffer

    def continues(self, view: memoryview, start: int, end: int) -> bool:
        """Takes the datagram view[start:end] if it is the exact next segment of the run."""
        hl = self._hl
        if end - start != self._unit_len:
            return self._tail(view, start, end)
        if view[start:start + hl] != self._expect:
            return False  # (with no run, _unit_len is 0)
        self._payloads.append(view[start + hl:end])
        self._bytes += self._seg
        self._step()
        return True

    def _tail(self, view: memoryview, start: int, end: int) -> bool:
        """A shorter segment, with or without PSH, ends the run: the last one of a super-packet."""
        hl, size = self._hl, end - start - self._hl
        if self._first is None or not 0 < size < self._seg:
            return False
        headers = self._headers
        assert headers is not None
        ip_len = len(headers.t) - headers.l3 + size
        for flags in (TCP_ACK | TCP_PSH, TCP_ACK):
            if view[start:start + hl] == headers.make(ip_len, self._ip_id, self._seq, flags):
                self._payloads.append(view[start + hl:end])
                self._bytes += size
                self._flags = flags
                self.flush()
                return True
        return False

    def _step(self) -> None:
        """Predict the next segment of the run; or flush it when one write can take no more."""
        if len(self._payloads) >= MAX_SEGMENTS or self._bytes + self._seg > MAX_IP_PACKET:
            self.flush()
            return
        self._ip_id = ip_id = (self._ip_id + 1) & 0xFFFF
        self._seq = seq = (self._seq + self._seg) & 0xFFFFFFFF
        p = self._pieces
        if len(p) == 4:
            x = self._base + ip_id
            x = (x & 0xFFFF) + (x >> 16)
            self._expect = self._pack(p[0], ip_id, p[1], ~((x & 0xFFFF) + (x >> 16)) & 0xFFFF, p[2], seq, p[3])
        else:
            self._expect = self._pack(p[0], seq, p[1])

    def add(self, unit: memoryview) -> None:
        """A unit that does not continue the run. Raises BadPacket for one that
        must not reach the device. `unit` must be writable: its virtio header is replaced by
        the sanitized one. (A unit `continues` takes is the checked one's exact continuation.)"""
        self.flush()
        unit[:HDR_LEN] = sanitize(unit[:HDR_LEN], unit[HDR_LEN:], self.tap)
        flags, gso_type, _, _, csum_start, csum_offset = HDR.unpack(unit[:HDR_LEN])
        pkt = unit[HDR_LEN:]
        try:
            if gso_type != GSO_NONE or not flags & F_NEEDS_CSUM or csum_offset != TCP_CSUM_OFFSET:
                raise BadPacket("not a segment")
            l3 = l3_offset(pkt, self.tap)
            version, l4, end = tcp_offsets(pkt, l3)
        except BadPacket:
            self._write((unit,))
            return
        size, tcp_flags = len(pkt) - end, pkt[l4 + 13]
        if csum_start != l4 or size == 0 or tcp_flags != TCP_ACK:  # PSH, FIN, SYN, ...: deliver as it is
            self._write((unit,))
            return
        headers = _Headers(pkt[:end], l3, l4, version, bytes(unit[:HDR_LEN]))
        self._first, self._headers, self._payloads, self._seg = unit, headers, [pkt[end:]], size
        self._bytes = end - l3 + size
        self._unit_len = len(unit)
        st, self._pieces = headers.run(self._bytes, tcp_flags)
        self._flags = tcp_flags
        self._pack, self._base = st.pack, headers.ip_base + self._bytes
        self._ip_id = self._first_id = int.from_bytes(pkt[l3 + 4:l3 + 6], "big") if version == 4 else 0
        self._seq = self._first_seq = int.from_bytes(pkt[l4 + 4:l4 + 8], "big")
        self._hl = self._unit_len - size
        self._step()

    def flush(self) -> None:
        first = self._first
        if first is None:
            return
        self._first, self._unit_len = None, 0
        if len(self._payloads) == 1:
            self._write((first,))
            return
        headers = self._headers
        assert headers is not None
        h = headers.make(self._bytes, self._first_id, self._first_seq, self._flags)
        gso = GSO_TCPV4 if headers.v4 else GSO_TCPV6
        vnet = HDR.pack(F_NEEDS_CSUM, gso, self.end_of_headers, self._seg, headers.l4, TCP_CSUM_OFFSET)
        self._write((vnet, h[len(headers.prefix):], *self._payloads))

    @property
    def end_of_headers(self) -> int:
        assert self._headers is not None
        return len(self._headers.t)
