"""A session's keys: sealing and opening transport messages (type 4), with their counters.

    transport message = type 4 (u32 LE, so 3 zero bytes) | receiver index (u32 LE)
                        | counter (u64 LE) | ChaCha20-Poly1305(key, nonce = 0^4 ‖ counter, payload)

The counter never repeats for a key: it only goes up, and a keypair refuses to seal once it
reaches REJECT_AFTER_MESSAGES. The receive side checks the replay window before decrypting
and moves it only after the message authenticated, so a forged message cannot move it.
"""

from __future__ import annotations

import struct

from . import fastpath
from .fastpath import FORGED, REPLAYED
from .noise import TRANSPORT_MIN_LEN, SessionKeys
from .timers import REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME

HEADER = struct.Struct("<IIQ")
TAG_LEN = 16


class Expired(Exception):
    """This keypair may not seal any more (too old, or its counter is spent)."""


class Keypair:
    __slots__ = ("local_index", "remote_index", "initiator", "created", "send_counter", "session", "confirmed")

    def __init__(self, keys: SessionKeys, now: float):
        self.local_index, self.remote_index, self.initiator = keys.local_index, keys.remote_index, keys.initiator
        self.created = now
        self.send_counter = 0
        # The AEAD and the replay window, compiled or in Python (fastpath.py picks).
        self.session = fastpath.session(keys.send, keys.receive, keys.remote_index)
        # The responder may not send on a keypair until the initiator has used it: that is how it
        # knows the initiator derived the same keys (WireGuard's "next" keypair).
        self.confirmed = keys.initiator

    def seal(self, payload: bytes | memoryview) -> bytes:
        out = memoryview(bytearray(TRANSPORT_MIN_LEN + len(payload)))
        self.seal_into(payload, out, 0)
        return bytes(out)

    def seal_into(self, payload: bytes | memoryview, buf: memoryview, pos: int) -> int:
        """The transport message for `payload` written into buf at pos, without a copy of its own;
        returns where it ends."""
        n = self.send_counter
        if n >= REJECT_AFTER_MESSAGES:
            raise Expired
        self.send_counter = n + 1
        return self.session.seal_into(n, payload, buf, pos)

    def read_seal(self, fd: int, count: int, out: memoryview, pos: int, *, skip: int, lead: int, mtu: int,
                  read_size: int, segment: int = 0) -> tuple[list[int], int, int]:
        """Up to `count` reads from the device, without waiting, sealed side by side into out from
        pos (fastpath.Session.read_seal says how a unit is laid out, and how `segment` cuts a
        super-packet): (the messages' lengths, the units' bytes, reads that could not be cut)."""
        n = self.send_counter
        count = min(count, REJECT_AFTER_MESSAGES - n)
        if count <= 0:
            raise Expired
        lengths, nbytes, self.send_counter, dropped = self.session.read_seal(fd, n, count, out, pos, skip, lead, mtu,
                                                                             read_size, segment)
        return lengths, nbytes, dropped

    def open_into(self, msg: bytes | memoryview, out: memoryview) -> int:
        """open(), decrypting into `out`: the payload's length, or REPLAYED (seen, or too old for
        the window) or FORGED (does not authenticate)."""
        return self.session.open_into(msg, out)

    def open(self, msg: bytes | memoryview) -> bytes | None:
        """The payload of a transport message addressed to this keypair (its type, size and index
        already checked); None if it is replayed, too old, or does not authenticate."""
        out = memoryview(bytearray(max(0, len(msg) - TRANSPORT_MIN_LEN)))
        size = self.open_into(msg, out)
        return bytes(out[:size]) if size >= 0 else None

    def usable(self, now: float) -> bool:
        return now - self.created < REJECT_AFTER_TIME and self.send_counter < REJECT_AFTER_MESSAGES

    def wants_rekey(self, now: float) -> bool:
        """WireGuard's rule on sending: the initiator of a session rekeys it after REKEY_AFTER_TIME
        or REKEY_AFTER_MESSAGES (either end after the message limit)."""
        return (self.initiator and now - self.created >= REKEY_AFTER_TIME) or self.send_counter >= REKEY_AFTER_MESSAGES


__all__ = ["FORGED", "HEADER", "REPLAYED", "Expired", "Keypair", "TRANSPORT_MIN_LEN"]
