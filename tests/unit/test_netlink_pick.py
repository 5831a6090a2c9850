"""kernel/_rtattr.c's pick against its Python model (netlink._pick): the same answer for every
buffer, well formed or not, cut anywhere, for any types asked (twice, absent, with the nested
flag set on the attribute)."""

from __future__ import annotations

import random
import struct

import pytest

from provisioner.kernel import netlink as nl
from provisioner.kernel._rtattr import pick  # built by make setup: its absence fails here, never skips


def attribute(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def buffers(rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(3000):
        head = bytes(rng.randrange(256) for _ in range(rng.choice((0, 4, 16))))
        body = b"".join(attribute(rng.randrange(0, 12) | rng.choice((0, 0x8000, 0x4000)),
                                  bytes(rng.randrange(256) for _ in range(rng.randrange(0, 12))))
                        for _ in range(rng.randrange(0, 8)))
        whole = head + body
        out.append(whole)
        out.append(whole[:rng.randrange(0, len(whole) + 1)])  # cut anywhere, a length running past the end
        out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))))  # noise
    return out


def test_the_compiled_walk_answers_as_its_model() -> None:
    assert nl.pick is pick
    rng = random.Random(15)
    for data in buffers(rng):
        offset = rng.choice((0, 0, 4, 16, 3, len(data), len(data) + 8))
        types = tuple(rng.randrange(0, 12) for _ in range(rng.randrange(0, 6)))
        assert pick(data, offset, types) == nl._pick(data, offset, types), (data.hex(), offset, types)
        assert pick(memoryview(data), offset, types) == nl._pick(memoryview(data), offset, types)


def test_what_both_refuse() -> None:
    for walk in (pick, nl._pick):
        with pytest.raises(ValueError):
            walk(b"", -1, (1,))
        with pytest.raises(TypeError):
            walk("text", 0, (1,))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pick(b"", 0, tuple(range(33)))  # more than any caller asks for


def test_the_first_of_a_type_and_the_nested_flag() -> None:
    data = attribute(3 | 0x8000, b"ab") + attribute(3, b"cd") + attribute(5, b"")
    for walk in (nl.pick, nl._pick):
        assert walk(data, 0, (3, 5, 7, 3)) == (b"ab", b"", None, b"ab")
