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

from . import vnet
from .drops import Drop

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
                 mtu: int = 1420):
        self.fd, self.tap, self.pi, self.vnet_hdr = fd, tap, pi, vnet_hdr
        self.wireguard = wireguard  # WireGuard's own payload form (see the module docstring)
        self.compress = compress and not wireguard
        self.mtu = mtu
        self.skip = (PI_LEN if pi else 0) + (vnet.HDR_LEN if vnet_hdr else 0)  # bytes before the packet in a read
        self.carries_vnet = vnet_hdr and not wireguard  # our form over TCP keeps the virtio header

    # ------------------------------------------------------------ reading

    def read(self, buf: bytearray) -> int:
        """One unit into buf; 0 when none is waiting (a non-blocking descriptor)."""
        try:
            return os.readv(self.fd, [buf])
        except BlockingIOError:
            return 0
        except InterruptedError:
            return 0
        except OSError as exc:
            if exc.errno == errno.EBADFD:
                raise DeviceGone(str(exc.strerror)) from None
            raise

    def payload(self, view: memoryview) -> bytes | memoryview:
        """What to seal for a unit just read (`view` = the whole read)."""
        if self.wireguard:
            packet = view[self.skip:]
            n = len(packet)
            padded = min((n + 15) & ~15, max(n, self.mtu))
            return bytes(packet) + bytes(padded - n) if padded != n else packet
        body = view[PI_LEN:] if self.pi else view
        if self.vnet_hdr:
            head, packet = bytes(body[:vnet.HDR_LEN]), body[vnet.HDR_LEN:]
        else:
            head, packet = NO_VNET, body
        if self.compress and len(packet) > 64:  # the packet, never the header
            packed = lz4.block.compress(packet, store_size=False)
            if len(packed) < len(packet):
                return b"\x01" + head + packed
        return b"\x00" + head + packet

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


def device_mtu(name: str) -> int:
    try:
        with open(f"/sys/class/net/{name}/mtu") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1420
