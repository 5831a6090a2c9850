"""The retry schedule of an unanswered initiation (timers.retry_after)."""

from __future__ import annotations

from provisioner.tunnel import timers
from provisioner.tunnel.gate import PER_SOURCE_RATE


def test_initiations_are_retried_fast_for_2_s_then_back_off_to_rekey_timeout() -> None:
    """Both ends of a key change restart at once: the connecting end's first initiations meet
    the old listener (whose mac1 key they no longer match) or none. Doubling from 0.1 s, the
    next try came 0.8-1.6 s after the new listener was up: a key change cost more than a reconnect."""
    waits = [timers.retry_after(a) for a in range(40)]
    fast = waits[:timers.FAST_RETRIES]
    assert all(timers.FIRST_RETRY <= w <= timers.FIRST_RETRY * 4 / 3 for w in fast), fast
    assert 1.5 <= sum(fast) <= 3.0
    assert 1 / timers.FIRST_RETRY < PER_SOURCE_RATE, "the peer's per-source limit takes every retry"
    later = waits[timers.FAST_RETRIES:]
    assert later[0] >= 2 * timers.FIRST_RETRY
    assert all(timers.REKEY_TIMEOUT <= w <= timers.REKEY_TIMEOUT + 1 / 3 for w in later[8:]), later
