"""WireGuard's timer constants (whitepaper §6.1–6.4) and the few of our own, in one place.

A reader looking for "when does a session rekey" or "when is a peer dead" finds it here; the
decisions themselves are pure functions of these numbers and the times peer.py records.
"""

from __future__ import annotations

import os
import random

REKEY_AFTER_MESSAGES = 1 << 60
REJECT_AFTER_MESSAGES = (1 << 64) - (1 << 13) - 1
REKEY_AFTER_TIME = float(os.environ.get("PROVISION_TUNNEL_REKEY_AFTER") or 120.0)  # the variable: tests only
REJECT_AFTER_TIME = 180.0
REKEY_ATTEMPT_TIME = 90.0
REKEY_TIMEOUT = 5.0
KEEPALIVE_TIMEOUT = 10.0
# Ours. Both ends of a provision tunnel send a keepalive after KEEPALIVE_INTERVAL of sending
# nothing, so that `status` can tell a live peer from a gone one (DEAD_AFTER without a word);
# a stock WireGuard peer should set PersistentKeepalive for the same.
KEEPALIVE_INTERVAL = 2.0
DEAD_AFTER = 4 * KEEPALIVE_INTERVAL  # four keepalives missed: the peer is gone (WireGuard's own limit,
# KEEPALIVE_TIMEOUT + REKEY_TIMEOUT, is for peers that send no keepalives of their own)
FIRST_RETRY = 0.1  # an initiation that gets no response is sent again every 0.1 s for FAST_RETRIES tries (2 s),
# then doubling to REKEY_TIMEOUT: the peer is most likely restarting (0.1-0.3 s; both ends at once for a new
# key), so the tunnel is back as soon as the peer is. 10 a second stays under the peer's limit of 20 per source.
FAST_RETRIES = 20
MIN_INITIATION_INTERVAL = 1 / 50  # WireGuard refuses initiations from one peer faster than this


_JITTER = random.Random()


def retry_after(attempt: int) -> float:
    """Seconds until an unanswered initiation is sent again, with WireGuard's jitter of up to 1/3 s."""
    base = FIRST_RETRY if attempt < FAST_RETRIES else min(REKEY_TIMEOUT, FIRST_RETRY * 2 ** (attempt - FAST_RETRIES + 1))
    return base + _JITTER.uniform(0.0, min(base, 1.0) / 3)
