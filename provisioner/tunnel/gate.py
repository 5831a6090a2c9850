"""What an unauthenticated handshake message must pass before it costs a Diffie-Hellman.

Anyone who can reach a tunnel's port can send handshake messages, and each one that gets
through costs four X25519 operations. So, in this order, each step cheap next to the one
after it (as wireguard-go's device/receive.go and ratelimiter/ do):

1. its type and size, at fixed offsets (the carrier did that);
2. mac1, a keyed BLAKE2s of the message under our public key: proves the sender knows whom
   it talks to, and costs one hash;
3. while we are under load (more than UNDER_LOAD handshake messages in the last second),
   mac2 too: a MAC under a cookie that only a sender who received our cookie reply at its
   source address holds. Without one, the sender gets a cookie reply (at most
   COOKIE_REPLIES_PER_SECOND in all), and its message goes no further;
4. a token bucket per source address (WireGuard's 20 a second, burst 5; an IPv6 source by its
   /64, as Linux's ratelimiter keys it), in a table of bounded size.

The peer's own address (where its last authenticated message came from: `trusted`) is never
counted with the rest: a flood of spoofed sources that keeps us under load uses up the shared
budgets for cookie replies (COOKIE_REPLIES_PER_SECOND, a bound on the CPU they cost) and for
Diffie-Hellman work (DH_PER_SECOND), never the peer's. Every table here is bounded, so no
sequence of packets can grow the process.
"""

from __future__ import annotations

from .cookie import CookieChecker
from .drops import Drop

UNDER_LOAD = 16  # handshake messages a second that put us under load (one peer needs one every few seconds)
UNDER_LOAD_FOR = 1.0  # seconds we stay under load after it passes (WireGuard's underLoadAfterTime)
PER_SOURCE_RATE, PER_SOURCE_BURST = 20.0, 5.0
DH_PER_SECOND = 100.0  # handshakes from everyone but the peer's own address
COOKIE_REPLIES_PER_SECOND = 1000.0  # likewise: 70 µs each here, so at most 7 % of a core
MAX_SOURCES = 4096  # entries in the per-source table; past it, unknown sources wait for the next sweep


class Bucket:
    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Gate:
    def __init__(self, checker: CookieChecker, now: float):
        self.checker = checker
        self._window_start, self._in_window = now, 0
        self._load_until = 0.0
        self._sources: dict[bytes, Bucket] = {}
        self._swept = now
        self._dh = Bucket(DH_PER_SECOND, DH_PER_SECOND, now)
        self._cookies = Bucket(COOKIE_REPLIES_PER_SECOND, COOKIE_REPLIES_PER_SECOND, now)
        self.trusted = b""  # the address (no port) of the peer's last authenticated message

    def under_load(self, now: float) -> bool:
        return now < self._load_until

    def admit(self, msg: bytes | memoryview, source: bytes, now: float) -> Drop | bytes | None:
        """None: go on with the handshake. A Drop: drop it for that reason. Bytes: drop it, and
        send these (a cookie reply) back to the source."""
        if not self.checker.mac1_ok(msg):
            return Drop.BAD_MAC1
        if now - self._window_start >= 1.0:
            self._window_start, self._in_window = now, 0
        self._in_window += 1
        if self._in_window > UNDER_LOAD:
            self._load_until = now + UNDER_LOAD_FOR
        address = source[:-2]
        if len(address) == 16:
            address = address[:8]  # an IPv6 source by its /64: one host owns many addresses
        ours = address == self.trusted
        if now < self._load_until and not self.checker.mac2_ok(msg, source, now):
            if ours or self._cookies.take(now):
                return self.checker.reply(msg, source, now)
            return Drop.BAD_MAC2
        if not self._source_ok(address, now) or not (ours or self._dh.take(now)):
            return Drop.RATE_LIMITED
        return None

    def trust(self, source: bytes) -> None:
        """The peer's authenticated message came from `source`: its address gets its own budgets."""
        address = source[:-2]
        self.trusted = address[:8] if len(address) == 16 else address

    def _source_ok(self, address: bytes, now: float) -> bool:
        if now - self._swept >= 1.0:  # forget sources whose bucket is full again
            self._swept = now
            full = PER_SOURCE_BURST / PER_SOURCE_RATE
            self._sources = {k: b for k, b in self._sources.items() if now - b.at < full}
        bucket = self._sources.get(address)
        if bucket is None:
            if len(self._sources) >= MAX_SOURCES:
                return False
            bucket = self._sources[address] = Bucket(PER_SOURCE_RATE, PER_SOURCE_BURST, now)
        return bucket.take(now)
