"""One tunnel's WireGuard state: the handshake in progress, the keypairs, the cookie, the timers.

Events in, messages out, no I/O: a carrier (udp.py, tcp.py) hands it what arrived and sends
what it returns. The rules are WireGuard's (whitepaper §5 and §6), in one place:

- Keypairs: `current` seals; `previous` still opens (messages in flight across a rekey);
  `next` is the responder's new keypair, which it may not seal with until the initiator has
  used it (the first message on it "confirms" it and makes it current).
- An initiation is accepted only from the tunnel's peer key, with a TAI64N timestamp newer
  than every one accepted before (a recorded initiation replayed is refused), and no more
  often than every MIN_INITIATION_INTERVAL.
- A response is accepted only for our handshake in progress, and only once: consuming it
  ends that handshake, so a recorded response replayed finds none.
- The initiator of a session rekeys it after REKEY_AFTER_TIME; no keypair opens or seals
  after REJECT_AFTER_TIME; an unanswered initiation is sent again (timers.retry_after),
  for REKEY_ATTEMPT_TIME at most unless this end keeps the tunnel up (it knows the endpoint).
- Keepalives: an empty transport message after KEEPALIVE_INTERVAL of sending nothing.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Callable

from . import noise
from .cookie import CookieGenerator
from .drops import Drop
from .gate import Gate
from .keypair import REPLAYED, Keypair
from .noise import HandshakeError, Identity, InitiatorState
from .timers import (
    DEAD_AFTER,
    KEEPALIVE_INTERVAL,
    KEEPALIVE_TIMEOUT,
    MIN_INITIATION_INTERVAL,
    REJECT_AFTER_TIME,
    REKEY_ATTEMPT_TIME,
    REKEY_TIMEOUT,
    retry_after,
)

INDEX = struct.Struct("<I")
log = logging.getLogger("provision.forwarder")


class Peer:
    def __init__(self, me: Identity, peer_public: bytes, psk: bytes | None, now: float, *, keep_up: bool,
                 random: Callable[[int], bytes] = os.urandom, cookie_checker: object | None = None):
        from .cookie import CookieChecker

        self.me, self.peer_public, self.psk = me, peer_public, psk or bytes(32)
        self.random = random
        self.gate = Gate(cookie_checker if isinstance(cookie_checker, CookieChecker)
                         else CookieChecker(me.public), now)
        self.cookies = CookieGenerator(peer_public)
        self.static = noise.static_secret(me, peer_public)  # DH(S_me, S_peer), the same for every handshake
        self.keypairs: dict[int, Keypair] = {}
        self.current: Keypair | None = None
        self.previous: Keypair | None = None
        self.next: Keypair | None = None
        self.pending: InitiatorState | None = None
        self.pending_index = 0
        self.attempt = 0
        self.first_attempt = 0.0
        self.keep_up = keep_up  # this end knows where the peer is and keeps a session with it
        self.retry_at = now if keep_up else float("inf")
        self.last_timestamp = b""
        self.last_initiation = -float("inf")
        self.last_heard = -float("inf")
        self.last_sent = -float("inf")
        self.handshakes = 0
        self.last_handshake: float | None = None  # wall clock, for status

    # ------------------------------------------------------------ state for status and carriers

    def connected(self, now: float) -> bool:
        kp = self.current
        return kp is not None and now - kp.created < REJECT_AFTER_TIME and now - self.last_heard < DEAD_AFTER

    def sender(self, now: float) -> Keypair | None:
        """The keypair to seal with now, or None (the carrier queues and a handshake is due)."""
        kp = self.current
        if kp is None or not kp.usable(now):
            if self.next is None:  # a session the peer began is on its way: it confirms it, not us
                self.want_session(now)
            return None
        if kp.wants_rekey(now) and self.pending is None:
            self.retry_at = min(self.retry_at, now)
        return kp

    def want_session(self, now: float) -> None:
        """Something to send and no session: a handshake as soon as the retry schedule allows."""
        if self.pending is None:
            self.retry_at = min(self.retry_at, now)

    # ------------------------------------------------------------ timers

    def due(self, now: float) -> list[bytes]:
        """Messages the timers want sent to the peer's endpoint now: an initiation, a keepalive."""
        out: list[bytes] = []
        self._expire(now)
        kp = self.current
        if kp is not None and kp.initiator and self.pending is None \
                and now - kp.created >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT:
            self.retry_at = min(self.retry_at, now)
        if self.keep_up and kp is not None and now - self.last_heard > DEAD_AFTER and self.pending is None:
            self.retry_at = min(self.retry_at, now)  # WireGuard's "sent, and heard nothing back"
        if now >= self.retry_at:
            if self.pending is not None and not self.keep_up and now - self.first_attempt > REKEY_ATTEMPT_TIME:
                self.pending, self.retry_at = None, float("inf")  # give up until there is something to send
            else:
                out.append(self.initiation(now))
        kp = self.current
        if kp is not None and kp.confirmed and now - self.last_sent >= KEEPALIVE_INTERVAL and kp.usable(now):
            out.append(kp.seal(b""))
            self.last_sent = now
        return out

    def next_event(self, now: float) -> float:
        """Seconds until due() may have something to say (at most KEEPALIVE_INTERVAL): an idle
        forwarder wakes a few times a second, never in a loop."""
        wait = min(self.retry_at - now, KEEPALIVE_INTERVAL)
        kp = self.current
        if kp is not None and kp.confirmed:
            wait = min(wait, KEEPALIVE_INTERVAL - (now - self.last_sent))
        return max(0.01, wait)

    def _expire(self, now: float) -> None:
        for name in ("previous", "current", "next"):
            kp = getattr(self, name)
            if kp is not None and now - kp.created >= REJECT_AFTER_TIME:
                setattr(self, name, None)
                self.keypairs.pop(kp.local_index, None)

    # ------------------------------------------------------------ handshake

    def _new_index(self) -> int:
        while True:
            index = INDEX.unpack(self.random(4))[0]
            if index not in self.keypairs and index != self.pending_index:
                return index

    def initiation(self, now: float) -> bytes:
        """A new handshake initiation (each retry is a new one, with a new ephemeral key and timestamp)."""
        if self.pending is None:
            self.attempt, self.first_attempt = 0, now
        else:
            self.attempt += 1
        self.pending_index = self._new_index()
        msg, self.pending = noise.create_initiation(self.me, self.peer_public, self.psk, self.pending_index,
                                                    noise.tai64n(time.time()), precomputed_ss=self.static)
        self.cookies.add_macs(msg, now)
        self.retry_at = now + retry_after(self.attempt)
        return bytes(msg)

    def on_handshake(self, msg: bytes | memoryview, source: bytes, now: float) -> tuple[Drop | None, bytes | None]:
        """A handshake message (type, size checked). Returns (why it was dropped, or None if it was
        taken; a message to send back to its source, or None). A taken message authenticates its
        source: the carrier makes it the peer's endpoint."""
        kind = msg[0]
        if kind == noise.MSG_COOKIE_REPLY:
            if self.pending is None or INDEX.unpack_from(msg, 4)[0] != self.pending_index:
                return Drop.UNEXPECTED_RESPONSE, None
            return (None if self.cookies.consume_reply(msg, now) else Drop.HANDSHAKE_REFUSED), None
        if kind == noise.MSG_RESPONSE and (self.pending is None or INDEX.unpack_from(msg, 8)[0] != self.pending_index):
            return Drop.UNEXPECTED_RESPONSE, None  # before the gate: it costs nothing, and no DH budget
        verdict = self.gate.admit(msg, source, now)
        if isinstance(verdict, Drop):
            return verdict, None
        if verdict is not None:
            return Drop.BAD_MAC2, verdict  # under load: a cookie reply, and no handshake
        try:
            why, reply = self._on_initiation(msg, now) if kind == noise.MSG_INITIATION else self._on_response(msg, now)
        except HandshakeError:
            return Drop.HANDSHAKE_REFUSED, None
        if why is None:
            self.gate.trust(source)
        return why, reply

    def _on_initiation(self, msg: bytes | memoryview, now: float) -> tuple[Drop | None, bytes | None]:
        try:  # a key other than the peer's costs one DH, not two
            init = noise.consume_initiation(self.me, msg, {self.peer_public: self.static})
        except HandshakeError as exc:
            return (Drop.UNKNOWN_PEER if exc.reason == noise.UNKNOWN_PEER else Drop.HANDSHAKE_REFUSED), None
        if init.peer_public != self.peer_public:
            return Drop.UNKNOWN_PEER, None
        if init.timestamp <= self.last_timestamp:
            return Drop.REPLAYED_INITIATION, None
        if now - self.last_initiation < MIN_INITIATION_INTERVAL:
            return Drop.RATE_LIMITED, None
        self.last_timestamp, self.last_initiation = init.timestamp, now
        response, keys = noise.create_response(self.me, init, self.psk, self._new_index())
        self.cookies.add_macs(response, now)
        if self.next is not None:
            self.keypairs.pop(self.next.local_index, None)
        self.next = Keypair(keys, now)
        self.keypairs[keys.local_index] = self.next
        if self.pending is None:
            self.retry_at = float("inf")  # what we had to send waits for this session, not a second one
        self.last_heard = now
        return None, bytes(response)

    def _on_response(self, msg: bytes | memoryview, now: float) -> tuple[Drop | None, bytes | None]:
        assert self.pending is not None
        keys = noise.consume_response(self.me, self.pending, self.psk, msg)
        self.pending, self.pending_index, self.retry_at = None, 0, float("inf")
        self._install(Keypair(keys, now))
        self.last_heard = now
        kp = self.current
        assert kp is not None
        self.last_sent = now
        return None, kp.seal(b"")  # a keepalive confirms the session to the responder at once

    def _install(self, kp: Keypair) -> None:
        """A confirmed keypair becomes current; the current one becomes previous."""
        if self.previous is not None:
            self.keypairs.pop(self.previous.local_index, None)
        self.previous, self.current = self.current, kp
        kp.confirmed = True
        self.keypairs[kp.local_index] = kp
        self.handshakes += 1
        self.last_handshake = time.time()
        log.info("session %d made, as the %s", self.handshakes, "initiator" if kp.initiator else "responder")

    # ------------------------------------------------------------ transport

    def keypair_for(self, msg: bytes | memoryview, now: float) -> Keypair | Drop:
        """The keypair a transport message (type and size checked) is addressed to, or why none is."""
        kp = self.keypairs.get(INDEX.unpack_from(msg, 4)[0])
        if kp is None:
            return Drop.UNKNOWN_INDEX
        if now - kp.created >= REJECT_AFTER_TIME:
            return Drop.EXPIRED
        return kp

    def open_with(self, kp: Keypair, msg: bytes | memoryview, out: memoryview, now: float) -> int | Drop:
        """The payload decrypted into `out`: its length, or why it is dropped. An authenticated
        message is heard (and confirms a `next` keypair)."""
        size = kp.open_into(msg, out)
        if size < 0:
            return Drop.REPLAYED if size == REPLAYED else Drop.DECRYPT_FAILED
        self.heard(kp, now)
        return size

    def open(self, msg: bytes | memoryview, now: float) -> bytes | Drop:
        """The payload of a transport message (type and size checked), or why it is dropped."""
        kp = self.keypair_for(msg, now)
        if isinstance(kp, Drop):
            return kp
        out = memoryview(bytearray(len(msg)))
        size = self.open_with(kp, msg, out, now)
        return size if isinstance(size, Drop) else bytes(out[:size])

    def heard(self, kp: Keypair, now: float) -> None:
        """An authenticated transport message on `kp`: the first one on `next` confirms it."""
        self.last_heard = now
        if kp is self.next:
            self.next = None
            self._install(kp)
