"""A session's keys: sealing and opening transport messages (type 4), with their counters.

    transport message = type 4 (u32 LE, so 3 zero bytes) | receiver index (u32 LE)
                        | counter (u64 LE) | ChaCha20-Poly1305(key, nonce = 0^4 ‖ counter, payload)

The counter never repeats for a key: it only goes up, and a keypair refuses to seal once it
reaches REJECT_AFTER_MESSAGES. The receive side checks the replay window before decrypting
and moves it only after the message authenticated, so a forged message cannot move it.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .noise import MSG_TRANSPORT, TRANSPORT_HEADER_LEN, TRANSPORT_MIN_LEN, SessionKeys
from .replay import ReplayWindow
from .timers import REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME

HEADER = struct.Struct("<IIQ")
NONCE = struct.Struct("<4xQ")
ZERO4 = b"\0\0\0\0"
TAG_LEN = 16
FORGED, REPLAYED = -1, -2  # what open_into says instead of a length


class Expired(Exception):
    """This keypair may not seal any more (too old, or its counter is spent)."""


class Keypair:
    __slots__ = ("local_index", "remote_index", "initiator", "created", "send_counter", "replay",
                 "_seal", "_open", "_seal_into", "_open_into", "_prefix", "confirmed")

    def __init__(self, keys: SessionKeys, now: float):
        self.local_index, self.remote_index, self.initiator = keys.local_index, keys.remote_index, keys.initiator
        self.created = now
        self.send_counter = 0
        self.replay = ReplayWindow()
        sealer, opener = ChaCha20Poly1305(keys.send), ChaCha20Poly1305(keys.receive)
        self._seal, self._seal_into = sealer.encrypt, sealer.encrypt_into
        self._open, self._open_into = opener.decrypt, opener.decrypt_into
        self._prefix = struct.pack("<II", MSG_TRANSPORT, keys.remote_index)
        # The responder may not send on a keypair until the initiator has used it: that is how it
        # knows the initiator derived the same keys (WireGuard's "next" keypair).
        self.confirmed = keys.initiator

    def seal(self, payload: bytes | memoryview) -> bytes:
        n = self.send_counter
        if n >= REJECT_AFTER_MESSAGES:
            raise Expired
        self.send_counter = n + 1
        c = n.to_bytes(8, "little")
        return self._prefix + c + self._seal(ZERO4 + c, payload, None)

    def seal_into(self, payload: bytes | memoryview, buf: memoryview, pos: int) -> int:
        """The transport message for `payload` written into buf at pos, without a copy of its own;
        returns where it ends. The hot path: one struct pack and one AEAD call."""
        n = self.send_counter
        if n >= REJECT_AFTER_MESSAGES:
            raise Expired
        self.send_counter = n + 1
        HEADER.pack_into(buf, pos, MSG_TRANSPORT, self.remote_index, n)
        end = pos + TRANSPORT_HEADER_LEN + len(payload) + TAG_LEN
        self._seal_into(NONCE.pack(n), payload, None, buf[pos + TRANSPORT_HEADER_LEN:end])
        return end

    def open_into(self, msg: bytes | memoryview, out: memoryview) -> int:
        """open(), decrypting into `out`: the payload's length, or REPLAYED (seen, or too old for
        the window) or FORGED (does not authenticate)."""
        counter = HEADER.unpack_from(msg)[2]
        replay = self.replay
        if not replay.check(counter):
            return REPLAYED
        size = len(msg) - TRANSPORT_HEADER_LEN - TAG_LEN
        try:
            self._open_into(NONCE.pack(counter), msg[TRANSPORT_HEADER_LEN:], None, out[:size])
        except InvalidTag:
            return FORGED
        if not replay.accept(counter):
            return REPLAYED
        return size

    def open(self, msg: bytes | memoryview) -> bytes | None:
        """The payload of a transport message addressed to this keypair (its type, size and index
        already checked); None if it is replayed, too old, or does not authenticate."""
        c = bytes(msg[8:16])
        counter = int.from_bytes(c, "little")
        replay = self.replay
        if not replay.check(counter):
            return None
        try:
            plain = self._open(ZERO4 + c, msg[TRANSPORT_HEADER_LEN:], None)
        except InvalidTag:
            return None
        if not replay.accept(counter):
            return None
        return plain

    def usable(self, now: float) -> bool:
        return now - self.created < REJECT_AFTER_TIME and self.send_counter < REJECT_AFTER_MESSAGES

    def wants_rekey(self, now: float) -> bool:
        """WireGuard's rule on sending: the initiator of a session rekeys it after REKEY_AFTER_TIME
        or REKEY_AFTER_MESSAGES (either end after the message limit)."""
        return (self.initiator and now - self.created >= REKEY_AFTER_TIME) or self.send_counter >= REKEY_AFTER_MESSAGES


__all__ = ["FORGED", "HEADER", "REPLAYED", "Expired", "Keypair", "TRANSPORT_MIN_LEN"]
