"""The progress line and phase times: what they say, and that the line redraws in place and sparingly."""

from __future__ import annotations

import io

from provisioner.reconcile import Phase, Stopwatch
from provisioner.render import ProgressLine, progress_text, seconds_text


def test_progress_text() -> None:
    assert progress_text("gw1", Phase.APPLY, 1200, 3000, 2.14) == "gw1: applying 1200/3000 changes (40%), 2.1 s"
    assert progress_text("gw1", Phase.OBSERVE, 0, 0, 0.0) == "gw1: reading the kernel, 0.0 s"
    assert progress_text("gw1", Phase.APPLY, 1, 1, 0.0) == "gw1: applying 1/1 change (100%), 0.0 s"


def test_the_line_is_redrawn_in_place_at_most_ten_times_a_second() -> None:
    out = io.StringIO()
    line = ProgressLine(out)
    for i in range(1000):
        line.update(f"step {i}")
    line.update("done", force=True)
    line.clear()
    text = out.getvalue()
    assert text.startswith("\r\033[Kstep 0") and text.endswith("\r\033[Kdone\r\033[K")
    assert text.count("\r\033[K") <= 4  # the first, the forced last, its clearing: the rest were throttled
    assert "\n" not in text


def test_clear_writes_nothing_when_nothing_is_shown() -> None:
    out = io.StringIO()
    ProgressLine(out).clear()
    assert out.getvalue() == ""


def test_stopwatch_adds_up_each_phase_in_order() -> None:
    clock = Stopwatch()
    with clock(Phase.OBSERVE):
        pass
    with clock(Phase.PLAN):
        pass
    with clock(Phase.OBSERVE):
        pass
    assert list(clock.seconds) == [Phase.OBSERVE, Phase.PLAN]
    assert seconds_text({Phase.OBSERVE: 0.051, Phase.PLAN: 0.02}) == "observe 0.05 s, plan 0.02 s"
