"""Why a forwarder dropped something, counted and logged without letting the sender decide how much.

The reasons are a closed set: a peer (or anyone who can reach the port) cannot make a new
counter, a new log line or a bigger stats line by choosing what to send. Counters are plain
ints (bounded by construction: one per reason), and each reason is logged at most once per
LOG_EVERY seconds however many packets it drops.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum

LOG_EVERY = 10.0  # seconds between log lines for one reason

log = logging.getLogger("provision.forwarder")


class Drop(StrEnum):
    # from the network, before any state is touched
    MALFORMED = "malformed message (type or size)"
    BAD_MAC1 = "handshake message with a bad mac1"
    BAD_MAC2 = "handshake message without a valid cookie while under load"
    RATE_LIMITED = "handshake message over the rate limit"
    # handshakes
    HANDSHAKE_REFUSED = "handshake that does not verify"
    UNKNOWN_PEER = "handshake from a key that is not the tunnel's peer"
    REPLAYED_INITIATION = "initiation with a timestamp not newer than the last"
    UNEXPECTED_RESPONSE = "response or cookie reply to no handshake of ours"
    # transport
    UNKNOWN_INDEX = "data for no session we hold"
    REPLAYED = "data replayed or too old for the window"
    DECRYPT_FAILED = "data that does not authenticate"
    EXPIRED = "data on an expired session"
    BAD_INNER = "decrypted packet that is not a valid IP packet"
    BAD_FRAME = "frame larger than the limit"
    BAD_VNET = "virtio header that does not check out"
    DECOMPRESS_FAILED = "compressed unit that does not decompress"
    # local
    NO_SESSION = "no session with the peer yet"
    SEND_FAILED = "send to the peer failed"
    DEVICE_REFUSED = "device refused the write"
    UNSEGMENTABLE = "super-packet the peer's device cannot take"
    INTERNAL = "internal error (logged)"


class Drops:
    """Counters by reason, and a log line per reason at most every LOG_EVERY seconds."""

    def __init__(self) -> None:
        self.counts: dict[Drop, int] = dict.fromkeys(Drop, 0)
        self._logged: dict[Drop, float] = {}

    def __call__(self, reason: Drop, count: int = 1) -> None:
        self.counts[reason] += count
        now = time.monotonic()
        if now - self._logged.get(reason, -LOG_EVERY) >= LOG_EVERY:
            self._logged[reason] = now
            log.warning("dropped: %s (%d so far)", reason.value, self.counts[reason])

    def to_dict(self) -> dict[str, int]:
        return {reason.value: n for reason, n in self.counts.items() if n}
