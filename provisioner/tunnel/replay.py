"""WireGuard's sliding replay window (RFC 6479, as wireguard-go's replay/replay.go and Linux's
receive.c): a ring of 128 64-bit blocks. The newest counter seen sets the window's top; a
counter more than WINDOW_SIZE below it, or already seen, is refused, and so is any counter at or
above the limit (a sender stops long before it: REJECT_AFTER_MESSAGES).

Moving the window clears only the blocks it passes, so a jump costs at most 128 block writes and
every other packet O(1). Pure and not thread-safe: one receive path owns a window.
"""

from __future__ import annotations

REJECT_AFTER_MESSAGES = 2**64 - 2**13 - 1

_BLOCK_BITS_LOG = 6
_BLOCK_BITS = 1 << _BLOCK_BITS_LOG  # 64
_RING_BLOCKS = 128  # 8192 bits in all
_BLOCK_MASK = _RING_BLOCKS - 1
_BIT_MASK = _BLOCK_BITS - 1
WINDOW_SIZE = (_RING_BLOCKS - 1) * _BLOCK_BITS  # 8192 - 64 = 8128


class ReplayWindow:
    """The counters received under one key. check() before the AEAD (cheap, changes nothing),
    accept() after it verified: only an authentic packet may move the window."""

    __slots__ = ("_last", "_ring", "_limit")

    def __init__(self, limit: int = REJECT_AFTER_MESSAGES) -> None:
        self._last = 0
        self._ring = [0] * _RING_BLOCKS
        self._limit = limit

    def check(self, counter: int) -> bool:
        """True if `counter` would be accepted now."""
        if not 0 <= counter < self._limit:
            return False
        if counter > self._last:
            return True
        if self._last - counter > WINDOW_SIZE:
            return False
        return not (self._ring[(counter >> _BLOCK_BITS_LOG) & _BLOCK_MASK] >> (counter & _BIT_MASK)) & 1

    def accept(self, counter: int) -> bool:
        """Mark `counter` as received; False (and nothing changes) if it was seen or is too old."""
        if not 0 <= counter < self._limit:
            return False
        block = counter >> _BLOCK_BITS_LOG
        ring = self._ring
        if counter > self._last:
            current = self._last >> _BLOCK_BITS_LOG
            for i in range(current + 1, current + min(block - current, _RING_BLOCKS) + 1):
                ring[i & _BLOCK_MASK] = 0
            self._last = counter
        elif self._last - counter > WINDOW_SIZE:
            return False
        index = block & _BLOCK_MASK
        bit = 1 << (counter & _BIT_MASK)
        old = ring[index]
        if old & bit:
            return False
        ring[index] = old | bit
        return True
