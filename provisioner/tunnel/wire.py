"""What travels between two forwarders. Pure: framing, the hello, and their bounds.

Over TCP every unit (one read from the device: optional packet-information header, optional
virtio header, the packet) is one frame: a 4-byte big-endian word, the frame type in its top
byte and the length in the other three, then the bytes. A stream never carries a partial or
merged packet to the device, whatever TCP does to the byte boundaries.

Over UDP every unit is one datagram: one type byte, then the bytes.

Both ends first exchange a HELLO saying how their device is opened; units only make sense
between devices of the same type with the same pi and vnet_hdr flags, so a mismatch is
refused there, not discovered as garbage in the kernel.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass

DATA, HELLO, KEEPALIVE = 0, 1, 2
FRAME = struct.Struct(">I")
FRAME_LEN = FRAME.size
MAX_UNIT = 65535 + 4 + 10 + 18  # an IP packet of 64 KB, pi, virtio header, Ethernet + VLAN
MAX_FRAME = 1 << 24  # what the length field can say; more than MAX_UNIT is skipped, not trusted
PROTOCOL = 1
KEEPALIVE_INTERVAL = 2.0  # seconds
DEAD_AFTER = 8.0  # seconds without a byte from the peer: it is gone (the issue asks for < 10 s)


class ProtocolError(ValueError):
    """The peer is not speaking our protocol, or not with a compatible device."""


@dataclass(frozen=True)
class Hello:
    device_type: str
    pi: bool
    vnet_hdr: bool
    version: int = PROTOCOL

    def encode(self) -> bytes:
        return json.dumps({"provision": self.version, "type": self.device_type, "pi": self.pi,
                           "vnet_hdr": self.vnet_hdr}, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Hello:
        try:
            d = json.loads(bytes(data))
            return cls(str(d["type"]), bool(d["pi"]), bool(d["vnet_hdr"]), int(d["provision"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError("the peer's hello is not provision's") from exc

    def check_peer(self, peer: Hello) -> None:
        if peer.version != self.version:
            raise ProtocolError(f"peer speaks tunnel protocol {peer.version}, this side {self.version}")
        ours = (self.device_type, self.pi, self.vnet_hdr)
        theirs = (peer.device_type, peer.pi, peer.vnet_hdr)
        if ours != theirs:
            raise ProtocolError(f"the peer's device differs (type, pi, vnet_hdr): ours {ours}, theirs {theirs}")


def frame_header(kind: int, length: int) -> bytes:
    return FRAME.pack(kind << 24 | length)


class FrameReader:
    """Cuts a TCP byte stream into frames without copying whole frames.

    Feed it what `recv_into(space())` filled; it yields (type, view) for every complete
    frame, and (type, None) for a frame longer than MAX_UNIT, whose bytes it skips: that is
    a counted drop, and the stream stays in step. A partial frame is moved to the front of
    the buffer only when the room after it could not hold a whole frame, so most bytes are
    never copied twice.
    """

    def __init__(self, size: int = 1 << 18):
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.start = 0  # the first byte not yet consumed
        self.filled = 0  # the end of the bytes received
        self._skip = 0  # bytes of an oversized frame still to discard

    def space(self) -> memoryview:
        if len(self.buf) - self.filled < MAX_UNIT + FRAME_LEN:
            rest = self.filled - self.start
            self.buf[:rest] = self.buf[self.start:self.filled]
            self.start, self.filled = 0, rest
        return self.view[self.filled:]

    def frames(self, n: int) -> Iterator[tuple[int, memoryview | None]]:
        """After `n` more bytes were written into `space()`. Views are valid until the next call."""
        self.filled += n
        view, pos, end = self.view, self.start, self.filled
        if self._skip:
            dropped = min(self._skip, end - pos)
            self._skip -= dropped
            pos += dropped
        while end - pos >= FRAME_LEN:
            word = FRAME.unpack_from(view, pos)[0]
            kind, length = word >> 24, word & 0xFFFFFF
            if length > MAX_UNIT:
                yield kind, None
                available = end - pos - FRAME_LEN
                if length > available:
                    self._skip = length - available
                    pos = end
                    break
                pos += FRAME_LEN + length
                continue
            if end - pos - FRAME_LEN < length:
                break
            yield kind, view[pos + FRAME_LEN:pos + FRAME_LEN + length]
            pos += FRAME_LEN + length
        if pos == end:
            self.start = self.filled = 0
        else:
            self.start = pos
