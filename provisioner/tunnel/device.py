"""The device side of a forwarder: what is read from and written to the tun/tap, and what
travels for it inside a sealed message.

A read from the device is `[pi (4)] [virtio header (10)] packet`, with the optional headers
as the device was made. What travels:

- WireGuard's own form (`type: tun` over UDP): the IP packet alone, padded with zeros to a
  multiple of 16 (no further than the MTU) as WireGuard pads it; the receiver trims it to
  the IP header's length. So a stock WireGuard peer reads exactly what it expects.
- Our form (`type: tap`, or any tunnel over TCP): a flags byte (bit 0: lz4-compressed), the
  virtio header over TCP (10 bytes, zero from a device without one), then the packet or
  Ethernet frame. Over TCP one unit may be a 64 KB TSO super-packet (see vnet.py); over UDP
  the device's offloads are off, so every unit is one packet.

Everything decoded here came out of an authenticated message, and is still checked: a
virtio header as vnet.sanitize does, an IP packet's version and length, a compressed unit
against its size limit.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence

import lz4.block

from ..hints import TYPE_CHECKING
from . import fastpath, vnet
from .drops import Drop

if TYPE_CHECKING:
    from .keypair import Keypair

PI_LEN = 4
PI_IPV4, PI_IPV6, PI_NONE = struct.pack("!HH", 0, 0x0800), struct.pack("!HH", 0, 0x86DD), struct.pack("!HH", 0, 0)
NO_VNET = bytes(vnet.HDR_LEN)
NOTHING = b"\0"  # our form's keepalive: a flags byte and no unit (insecure tunnels send it)
COMPRESSED = 1
MAX_UNIT = 65535 + vnet.HDR_LEN + 18  # an IP packet of 64 KB, its virtio header, Ethernet + VLAN
READ_SIZE = MAX_UNIT + PI_LEN + 64


class DeviceGone(Exception):
    """The device was deleted under us (EBADFD)."""


class Device:
    """A descriptor the supervisor attached, and how units are cut from and put to it."""

    def __init__(self, fd: int, *, tap: bool, pi: bool, vnet_hdr: bool, wireguard: bool, compress: bool,
                 mtu: int = 1420, offloads: bool = False):
        self.fd, self.tap, self.pi, self.vnet_hdr = fd, tap, pi, vnet_hdr
        self.wireguard = wireguard  # WireGuard's own payload form (see the module docstring)
        self.compress = compress and not wireguard
        self.mtu = mtu
        # WireGuard's form from a device with TSO on: a read is a super-packet, cut into packets of
        # at most the MTU, fully checksummed, as they are read (vnet.wire_packets).
        self.segment = mtu if wireguard and vnet_hdr and offloads else 0

    def reader(self) -> UnitReader:
        return UnitReader(self)

    # ------------------------------------------------------------ writing

    def deliver(self, plain: bytes | memoryview) -> Drop | None:
        """Write what a peer sent (already authenticated); the reason if it is not written."""
        if self.wireguard:
            return self._deliver_ip(plain)
        if plain == NOTHING or not plain:
            return None
        if len(plain) < 1 + vnet.HDR_LEN:
            return Drop.BAD_INNER
        flags, head, packet = plain[0], plain[1:1 + vnet.HDR_LEN], plain[1 + vnet.HDR_LEN:]
        if flags & ~COMPRESSED:
            return Drop.BAD_INNER
        if flags & COMPRESSED:
            try:
                packet = lz4.block.decompress(packet, uncompressed_size=MAX_UNIT)
            except Exception:  # lz4 raises LZ4BlockError, a bare Exception subclass
                return Drop.DECOMPRESS_FAILED
        if self.vnet_hdr:
            try:
                head = vnet.sanitize(head, packet, self.tap)
            except vnet.BadPacket:
                return Drop.BAD_VNET
            parts: Sequence[bytes | memoryview] = (head, packet)
        elif head != NO_VNET and (head[0] & vnet.F_NEEDS_CSUM or head[1] != vnet.GSO_NONE):
            return Drop.UNSEGMENTABLE  # the sender's device offloads and ours cannot take it
        else:
            parts = (packet,)
        if self.pi:
            parts = (self._pi_for(packet), *parts)
        return self.write(parts)

    def _deliver_ip(self, plain: bytes | memoryview) -> Drop | None:
        n = len(plain)
        if n == 0:
            return None  # a keepalive
        version = plain[0] >> 4
        if version == 4 and n >= 20:
            length = plain[2] << 8 | plain[3]
        elif version == 6 and n >= 40:
            length = 40 + (plain[4] << 8 | plain[5])
        else:
            return Drop.BAD_INNER
        if length > n or length < 20:
            return Drop.BAD_INNER
        packet = plain[:length] if length != n else plain
        parts: tuple[bytes | memoryview, ...] = (packet,)
        if self.vnet_hdr:
            parts = (NO_VNET, packet)
        if self.pi:
            parts = (PI_IPV4 if version == 4 else PI_IPV6, *parts)
        return self.write(parts)

    def _pi_for(self, packet: bytes | memoryview) -> bytes:
        if self.tap or not packet:
            return PI_NONE
        return PI_IPV4 if packet[0] >> 4 == 4 else PI_IPV6 if packet[0] >> 4 == 6 else PI_NONE

    def write(self, parts: Sequence[bytes | memoryview]) -> Drop | None:
        try:
            os.writev(self.fd, parts)
        except BlockingIOError:
            return Drop.DEVICE_REFUSED
        except OSError as exc:
            if exc.errno == errno.EBADFD:
                raise DeviceGone(str(exc.strerror)) from None
            return Drop.DEVICE_REFUSED
        return None


class UnitReader:
    """A buffer, and the iovecs that lay one device read out as the payload to seal, with no copy:
    a `pi` header and (in WireGuard's form) the virtio header land in scratch space; in our form
    the unit lands after a flags byte and the virtio header (the device's own, or zeros)."""

    def __init__(self, device: Device):
        self.fd, self.wireguard, self.mtu = device.fd, device.wireguard, device.mtu
        self.compress = device.compress
        self.buf = bytearray(READ_SIZE + 1 + vnet.HDR_LEN + 16)
        self.view = memoryview(self.buf)
        scratch: list[memoryview] = []
        if device.pi:
            scratch.append(memoryview(bytearray(PI_LEN)))
        self.segment = device.segment
        if device.wireguard:
            if device.vnet_hdr and not device.segment:
                scratch.append(memoryview(bytearray(vnet.HDR_LEN)))
            self.start = 0
        else:
            self.start = 1 if device.vnet_hdr else 1 + vnet.HDR_LEN  # bytes 1..10 stay zero
        self.skipped = sum(len(x) for x in scratch)
        self.iov = [*scratch, self.view[self.start:self.start + READ_SIZE]]
        self.pad_to = self.mtu if self.wireguard else 0  # WireGuard's padding (fastpath.padded)

    def read_seal(self, kp: Keypair, count: int, out: memoryview, pos: int) -> tuple[list[int], int, int]:
        """Up to `count` reads, each laid out as read() gives it (or, with `segment`, cut into
        WireGuard's packets), sealed by `kp` side by side into out from pos, read and sealed in one
        call (compiled: no Python per unit): (the messages' lengths, the units' bytes, super-packets
        that could not be cut). Not for a compressing device (lz4 stays in read())."""
        try:
            return kp.read_seal(self.fd, count, out, pos, skip=self.skipped, lead=self.start, mtu=self.pad_to,
                                read_size=READ_SIZE, segment=self.segment)
        except OSError as exc:
            if exc.errno == errno.EBADFD:
                raise DeviceGone(str(exc.strerror)) from None
            raise

    def read_packets(self) -> list[bytes] | None:
        """With `segment`: the next read cut into WireGuard's packets (for the queue while there is
        no session); [] for one that cannot be cut; None when nothing is waiting."""
        unit = self.read()
        if unit is None or not unit:
            return None if unit is None else []
        try:
            return fastpath.wire_packets(unit, self.segment)
        except ValueError:
            return []

    def read(self, wait: bool = False) -> memoryview | bytes | None:
        """The next unit's payload (valid until the next read), or None when none is waiting.
        With `wait`, a read that waits for one (on a blocking descriptor: one system call where
        a poll and a read would be two); without, a read that never waits (RWF_NOWAIT)."""
        try:
            n = os.readv(self.fd, self.iov) if wait else os.preadv(self.fd, self.iov, -1, os.RWF_NOWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno == errno.EBADFD:
                raise DeviceGone(str(exc.strerror)) from None
            raise
        m = n - self.skipped
        if m <= 0:
            return b""
        if self.segment:  # the virtio header and the super-packet, for read_packets
            return self.view[:m]
        if self.wireguard:  # padded with zeros to a multiple of 16, as WireGuard pads
            padded = min((m + 15) & ~15, max(m, self.mtu))
            if padded != m:
                self.buf[m:padded] = bytes(padded - m)
            return self.view[:padded]
        end = self.start + m
        if self.compress and end - 1 - vnet.HDR_LEN > 64:  # the packet, never the header
            packed = lz4.block.compress(self.view[1 + vnet.HDR_LEN:end], store_size=False)
            if len(packed) < end - 1 - vnet.HDR_LEN:
                return b"\x01" + bytes(self.view[1:1 + vnet.HDR_LEN]) + packed
        return self.view[:end]


def device_mtu(name: str) -> int:
    try:
        with open(f"/sys/class/net/{name}/mtu") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1420


class Gro:
    """Userspace GRO for the UDP carrier, where every packet arrives in a datagram of its own:
    consecutive in-order segments of one TCP flow are written to the device as one super-packet
    (vnet.Coalescer), so the kernel takes 64 KB per write instead of 1.4 KB. Needs a device
    with vnet_hdr (and no pi).

    A packet arrives with its full TCP checksum, which differs from packet to packet; to glue
    segments the checksum field is set to the pseudo-header's partial sum and the packet marked
    NEEDS_CSUM, exactly as a TSO device hands a segment over: the kernel finishes the checksum
    if the packet leaves this host, and a local socket trusts it, as it trusts every write to a
    tun (the AEAD, not the TCP checksum, is what proves the bytes came from the peer intact).

    Each packet is decrypted to `room(size)`, which leaves the 10 bytes of its virtio header in
    front of it; the run being glued lives in that buffer, so a run continues from one receive
    into the next, and is written out when the buffer is full or nothing more is waiting.
    """

    def __init__(self, device: Device, buffer: memoryview | None = None):
        self.device = device
        self.l3 = vnet.ETH_LEN if device.tap else 0
        self.delivered = 0  # packets and bytes handed to the device (or to a run)
        self.bytes = 0
        self.drops: list[Drop] = []
        self.coalescer = vnet.Coalescer(device.tap, self._write)
        self.buffer = buffer if buffer is not None else memoryview(bytearray(1 << 18))
        self.pos = 0

    def _write(self, parts: Sequence[bytes | memoryview]) -> None:
        why = self.device.write(parts)
        if why is not None:
            self.drops.append(why)

    def room(self, size: int) -> tuple[memoryview, int]:
        """(buffer, offset) where `size` bytes of plaintext go, with a header's room before them."""
        buf = self.buffer
        if self.pos + vnet.HDR_LEN + size > len(buf):
            self.coalescer.flush()
            self.pos = 0
        at = self.pos + vnet.HDR_LEN
        self.pos = at + size
        return buf, at

    def take(self, buf: memoryview, at: int, size: int) -> Drop | None:
        """The plaintext at buf[at:at+size] (from room()), authenticated: to the device, glued to
        the run when it continues it."""
        device = self.device
        if device.wireguard:
            if size == 0:
                return None
            packet_len = _ip_length(buf[at:at + size])
            if packet_len is None:
                return Drop.BAD_INNER
            u = at - vnet.HDR_LEN
        else:  # our form: flags, virtio header, frame
            if size == 1 and buf[at] == 0:
                return None  # a keepalive
            if size < 1 + vnet.HDR_LEN or buf[at] != 0:  # compressed or odd: the plain way
                self.coalescer.flush()
                return device.deliver(buf[at:at + size])
            u, packet_len = at + 1, size - 1 - vnet.HDR_LEN
        end = u + vnet.HDR_LEN + packet_len
        self.delivered += 1
        self.bytes += packet_len
        try:
            if _as_segment(buf, u, self.l3):
                if not self.coalescer.continues(buf, u, end):
                    self.coalescer.add(buf[u:end])
            else:
                if device.wireguard:
                    vnet.HDR.pack_into(buf, u, 0, vnet.GSO_NONE, 0, 0, 0, 0)
                self.coalescer.add(buf[u:end])
        except vnet.BadPacket:
            self.delivered -= 1
            return Drop.BAD_VNET
        return None

    def flush(self) -> None:
        self.coalescer.flush()
        if not self.coalescer.pending:
            self.pos = 0


def _ip_length(packet: memoryview) -> int | None:
    """The IP packet's own length, if it is one that fits `packet` (WireGuard's padding after it)."""
    n = len(packet)
    version = packet[0] >> 4 if n else 0
    if version == 4 and n >= 20:
        length = packet[2] << 8 | packet[3]
    elif version == 6 and n >= 40:
        length = 40 + (packet[4] << 8 | packet[5])
    else:
        return None
    return length if 20 <= length <= n else None


_V4_ADDRS, _V6_ADDRS = struct.Struct("!4H"), struct.Struct("!16H")


def _as_segment(buf: memoryview, u: int, l3: int) -> bool:
    """Makes the packet behind the header room at buf[u] a TCP segment as a TSO device gives it
    (NEEDS_CSUM, the pseudo-header's sum in the checksum field), if it is a TCP packet with a
    payload and nothing unusual; False (and nothing written) for everything else."""
    p = u + vnet.HDR_LEN + l3
    if l3 and (buf[p - 2] << 8 | buf[p - 1]) not in (vnet.ETHERTYPE_IPV4, vnet.ETHERTYPE_IPV6):
        return False
    version = buf[p] >> 4
    if version == 4:
        ihl = (buf[p] & 0x0F) * 4
        if ihl != 20 or buf[p + 9] != vnet.IPPROTO_TCP or (buf[p + 6] & 0x3F) or buf[p + 7]:
            return False  # options or fragments: as it came
        tcp_len = (buf[p + 2] << 8 | buf[p + 3]) - 20
        pseudo = sum(_V4_ADDRS.unpack_from(buf, p + 12))
        l4 = p + 20
    elif version == 6:
        if buf[p + 6] != vnet.IPPROTO_TCP:
            return False
        tcp_len = buf[p + 4] << 8 | buf[p + 5]
        pseudo = sum(_V6_ADDRS.unpack_from(buf, p + 8))
        l4 = p + 40
    else:
        return False
    if tcp_len <= (buf[l4 + 12] >> 4) * 4:
        return False  # no payload: nothing to glue
    total = pseudo + vnet.IPPROTO_TCP + tcp_len
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    buf[l4 + 16] = total >> 8
    buf[l4 + 17] = total & 0xFF
    vnet.HDR.pack_into(buf, u, vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 0, 0, l4 - u - vnet.HDR_LEN, vnet.TCP_CSUM_OFFSET)
    return True
