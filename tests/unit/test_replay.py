"""The replay window, with the cases of wireguard-go's replay_test.go (ported there from Linux)."""

from __future__ import annotations

import pytest

from provisioner.tunnel.replay import REJECT_AFTER_MESSAGES, WINDOW_SIZE, ReplayWindow

# replay_test.go runs its table with a limit of its own, close to 2**64, to test the top end.
TEST_LIMIT = 2**64 - 2**4 - 1
T_LIM = WINDOW_SIZE + 1

TABLE = [
    (0, True), (1, True), (1, False), (9, True), (8, True), (7, True), (7, False),
    (T_LIM, True), (T_LIM - 1, True), (T_LIM - 1, False), (T_LIM - 2, True), (2, True), (2, False),
    (T_LIM + 16, True), (3, False), (T_LIM + 16, False), (T_LIM * 4, True),
    (T_LIM * 4 - (T_LIM - 1), True), (10, False), (T_LIM * 4 - T_LIM, False),
    (T_LIM * 4 - (T_LIM + 1), False), (T_LIM * 4 - (T_LIM - 2), True), (T_LIM * 4 + 1 - T_LIM, False),
    (0, False), (TEST_LIMIT, False), (TEST_LIMIT - 1, True), (TEST_LIMIT, False), (TEST_LIMIT - 1, False),
    (TEST_LIMIT - 2, True), (TEST_LIMIT + 1, False), (TEST_LIMIT + 2, False), (TEST_LIMIT - 2, False),
    (TEST_LIMIT - 3, True), (0, False),
]  # fmt: skip


def test_the_wireguard_go_table_in_order() -> None:
    window = ReplayWindow(limit=TEST_LIMIT)
    for number, (counter, expected) in enumerate(TABLE, 1):
        assert window.check(counter) is expected, f"check, case {number}"
        assert window.accept(counter) is expected, f"case {number}"


def _accepts_all(window: ReplayWindow, counters: range) -> bool:
    return all(window.accept(i) for i in counters)


def test_bulk_1_a_full_window_then_zero() -> None:
    w = ReplayWindow()
    assert _accepts_all(w, range(1, WINDOW_SIZE + 1))
    assert w.accept(0) and not w.accept(0)


def test_bulk_2_one_past_the_window_drops_zero() -> None:
    w = ReplayWindow()
    assert _accepts_all(w, range(2, WINDOW_SIZE + 2))
    assert w.accept(1) and not w.accept(0)


def test_bulk_3_and_4_descending() -> None:
    w = ReplayWindow()
    assert _accepts_all(w, range(WINDOW_SIZE + 1, 0, -1))
    w = ReplayWindow()
    assert _accepts_all(w, range(WINDOW_SIZE + 2, 1, -1))
    assert not w.accept(0)


def test_bulk_5_and_6_descending_then_moving_up() -> None:
    w = ReplayWindow()
    assert _accepts_all(w, range(WINDOW_SIZE, 0, -1))
    assert w.accept(WINDOW_SIZE + 1) and not w.accept(0)
    w = ReplayWindow()
    assert _accepts_all(w, range(WINDOW_SIZE, 0, -1))
    assert w.accept(0) and w.accept(WINDOW_SIZE + 1)


def test_check_changes_nothing() -> None:
    w = ReplayWindow()
    assert w.check(5) and w.check(5)
    assert w.accept(5)
    assert not w.check(5)
    assert w.check(4)


@pytest.mark.parametrize("counter", [-1, REJECT_AFTER_MESSAGES, 2**64, 2**70])
def test_out_of_range_counters_are_refused(counter: int) -> None:
    w = ReplayWindow()
    assert not w.check(counter)
    assert not w.accept(counter)
    assert w.accept(0)  # and the window did not move


def test_a_jump_far_ahead_forgets_the_old_bits() -> None:
    w = ReplayWindow()
    assert w.accept(100)
    assert w.accept(100 + 64 * 1000)  # the ring wrapped many times
    assert not w.accept(100)  # far too old now
    assert w.accept(100 + 64 * 1000 - 64 * 126)  # inside the window, a cleared block
