"""How units travel between two forwarders. Pure: framing, frame types, and their bounds.

Over TCP every unit (one read from the device: optional packet-information header, optional
virtio header, the packet) is one frame: a 4-byte big-endian word, the frame type in its top
byte and the length in the other three, then the bytes. A stream never carries a partial or
merged packet to the device, whatever TCP does to the byte boundaries.

Over UDP every unit is one datagram, behind a 16-byte header (see session.py).

What is inside a frame or datagram (the handshake, and the sealed units) is session.py's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

# Frame and datagram types (the top byte of a TCP frame word, the first byte of a datagram).
DATA, INIT, KEEPALIVE, CONFIRM, DATA_LZ4, REPLY, UNKNOWN_SESSION, REFUSED = 0, 1, 2, 3, 4, 5, 6, 7
DATA_CONT = 8  # UDP: a segment of the same super-packet as the datagram before it (see vnet.Coalescer.append)
CLOSE = 9  # UDP: the sender's forwarder is stopping; sealed like a keepalive, so only the peer can end a session
FRAME = struct.Struct(">I")
FRAME_LEN = FRAME.size
MAX_UNIT = 65535 + 4 + 10 + 18  # an IP packet of 64 KB, pi, virtio header, Ethernet + VLAN
MAX_BODY = MAX_UNIT + 16  # a sealed unit: with its authentication tag
MAX_FRAME = 1 << 24  # what the length field can say; more than MAX_BODY is skipped, not trusted
KEEPALIVE_INTERVAL = 2.0  # seconds
DEAD_AFTER = 8.0  # seconds without a byte from the peer: it is gone (the issue asks for < 10 s)


class ProtocolError(ValueError):
    """The peer is not speaking our protocol, or not with a compatible device or key."""


def frame_header(kind: int, length: int) -> bytes:
    return FRAME.pack(kind << 24 | length)


class FrameReader:
    """Cuts a TCP byte stream into frames without copying whole frames.

    Feed it what `recv_into(space())` filled; it yields (type, view) for every complete
    frame, and (type, None) for a frame longer than MAX_BODY, whose bytes it skips: that is
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
        if len(self.buf) - self.filled < MAX_BODY + FRAME_LEN:
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
            if length > MAX_BODY:
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
