"""What the data plane reports of each tunnel to the supervisor, once a second and at every change
of state: one bounded JSON line on stdout, with the tunnel's name.

Its size does not depend on anything a peer sends: the drop reasons are a closed set, the
error texts are ours, the peer is an address we format.
"""

from __future__ import annotations

import json
import logging
import os
import time
from enum import StrEnum

from ..hints import Any
from .drops import Drops
from .fastpath import DATAPATH

log = logging.getLogger("provision.forwarder")
QUIET_EVERY = 4.0  # seconds between reports of a tunnel whose counters did not move


class LinkState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"


class Stats:
    def __init__(self, tunnel: str) -> None:
        self.tunnel = tunnel
        self.state = LinkState.CONNECTING
        self.peer: str | None = None
        self.since = self.started = time.time()
        self.rx_packets = self.rx_bytes = self.tx_packets = self.tx_bytes = 0
        self.drops = Drops()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.handshakes = 0
        self.last_handshake: float | None = None
        self.peer_key: str | None = None
        self._logged = 0.0
        self._reported: tuple[tuple[int, int, int, str | None], float] = ((-1, -1, -1, None), 0.0)

    def error(self, text: str) -> None:
        """Kept for status; logged when it is new, and at most once a second whatever it says."""
        now = time.time()
        if text != self.last_error and now - self._logged >= 1.0:
            self._logged = now
            log.warning("%s", text)
        self.last_error, self.last_error_at = text, now

    def set_state(self, state: LinkState, peer: str | None) -> None:
        """A change is reported at once, not at the next second: `status` is never behind a change."""
        if state is not self.state or peer != self.peer:
            if state is LinkState.CONNECTED:
                log.info("connected to %s", peer)
            elif self.state is LinkState.CONNECTED:
                log.info("lost the peer %s", self.peer)
            self.state, self.peer, self.since = state, peer, time.time()
            self.report()

    def sessions(self, handshakes: int, last: float | None) -> None:
        """The peer's count of sessions made; a new one is reported at once, like a new state."""
        if handshakes != self.handshakes:
            self.handshakes, self.last_handshake = handshakes, last
            self.report()

    def to_dict(self) -> dict[str, Any]:
        return {"tunnel": self.tunnel, "state": self.state.value, "peer": self.peer, "since": self.since, "started": self.started, "at": time.time(),
                "rx_packets": self.rx_packets, "rx_bytes": self.rx_bytes,
                "tx_packets": self.tx_packets, "tx_bytes": self.tx_bytes,
                "drops": self.drops.to_dict(), "last_error": self.last_error, "last_error_at": self.last_error_at,
                "handshakes": self.handshakes, "last_handshake": self.last_handshake, "peer_key": self.peer_key,
                "datapath": DATAPATH.value}

    def line(self) -> bytes:
        self._reported = (self._counts(), time.monotonic())
        return json.dumps(self.to_dict()).encode() + b"\n"

    def _counts(self) -> tuple[int, int, int, str | None]:
        return self.rx_packets, self.tx_packets, sum(self.drops.counts.values()), self.last_error

    def due(self, now: float) -> bool:
        """Whether the periodic report should carry this tunnel now: when its counters moved since
        the last one (status is at most a second behind traffic), or after QUIET_EVERY regardless
        (so a stuck data plane shows as `unresponsive`, runtime.STALE_AFTER)."""
        counts, at = self._reported
        return counts != self._counts() or now - at >= QUIET_EVERY

    def report(self) -> None:
        """One line to the supervisor, which keeps it in stats.json."""
        write_out(self.line())


def write_out(line: bytes) -> bool:
    """One line of counters to the supervisor (stdout, its pipe, which the data plane keeps
    non-blocking: a supervisor that does not read must never stall the tunnels). A line is at
    most a few hundred bytes, under PIPE_BUF, so it goes whole or not at all; False when the
    pipe is full (the line is dropped: another comes in 2 s)."""
    try:
        os.write(1, line)
    except BlockingIOError:
        return False
    except OSError:
        pass  # the supervisor is gone; PR_SET_PDEATHSIG ends us
    return True
