"""The per-packet path, compiled or in Python: one interface, two implementations, picked once.

`Session` is one keypair's transport work: seal a unit (or a batch of them, or whatever the
device holds) into WireGuard transport messages side by side in a buffer, and open one with
the replay window checked before the AEAD and moved only after it. The compiled one is the
C extension `_fastpath` (docs/fastpath.md); `PySession` below is its exact model, in Python
with `cryptography`, and the fallback.

Which one runs is decided at import: the extension if it imports, Python otherwise, and
Python whatever is built when PROVISION_DATAPATH=python (how the tests run the tunnel suite
on the fallback). `DATAPATH` says which, for `status`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from enum import StrEnum
from types import ModuleType
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from . import vnet
from .replay import REJECT_AFTER_MESSAGES, ReplayWindow

ENV = "PROVISION_DATAPATH"
HEADER = struct.Struct("<IIQ")
NONCE = struct.Struct("<4xQ")
HEADER_LEN = TAG_LEN = 16
MSG_TRANSPORT = 4
FORGED, REPLAYED = -1, -2  # what open_into says instead of a length
Buffer = bytes | bytearray | memoryview


class Datapath(StrEnum):
    COMPILED = "compiled"  # provisioner/tunnel/_fastpath.c, linked to libcrypto
    PYTHON = "python"  # PySession, with `cryptography`


class Session(Protocol):
    def seal_into(self, counter: int, payload: Buffer, out: memoryview, pos: int) -> int: ...

    def seal_many(self, counter: int, units: Sequence[Buffer], out: memoryview, pos: int,
                  mtu: int) -> tuple[list[int], int]: ...

    def read_seal(self, fd: int, counter: int, count: int, out: memoryview, pos: int, skip: int, lead: int,
                  mtu: int, read_size: int, segment: int) -> tuple[list[int], int, int, int]: ...

    def open_into(self, msg: Buffer, out: memoryview) -> int: ...


def padded(size: int, mtu: int) -> int:
    """WireGuard's padding: to a multiple of 16, never past the MTU (mtu 0: none, our own form)."""
    return min((size + 15) & ~15, max(size, mtu)) if mtu > 0 else size


class PySession:
    """The model of _fastpath.Session, and the fallback: same arguments, same bytes, same answers."""

    __slots__ = ("_seal_into", "_open_into", "_remote", "replay", "_pending")

    def __init__(self, send_key: bytes, receive_key: bytes, remote_index: int):
        self._seal_into = ChaCha20Poly1305(send_key).encrypt_into
        self._open_into = ChaCha20Poly1305(receive_key).decrypt_into
        if not 0 <= remote_index < 2**32:
            raise ValueError("an index is a u32")
        self._remote = remote_index
        self.replay = ReplayWindow()
        self._pending: bytes | None = None  # a TSO read that did not fit the last read_seal's buffer

    def seal_into(self, counter: int, payload: Buffer, out: memoryview, pos: int) -> int:
        """One transport message at out[pos:]; returns where it ends."""
        end = pos + HEADER_LEN + len(payload) + TAG_LEN
        if pos < 0 or end > len(out):
            raise ValueError("the message does not fit the buffer at pos")
        HEADER.pack_into(out, pos, MSG_TRANSPORT, self._remote, counter)
        self._seal_into(NONCE.pack(counter), payload, None, out[pos + HEADER_LEN:end])
        return end

    def seal_many(self, counter: int, units: Sequence[Buffer], out: memoryview, pos: int,
                  mtu: int) -> tuple[list[int], int]:
        """Each unit, padded, sealed side by side from pos; stops at the first that does not fit."""
        lengths = []
        for unit in units:
            if counter >= REJECT_AFTER_MESSAGES:
                break
            size = padded(len(unit), mtu)
            if len(out) - pos < HEADER_LEN + size + TAG_LEN:
                break
            if size != len(unit):
                unit = bytes(unit) + bytes(size - len(unit))
            end = self.seal_into(counter, unit, out, pos)
            lengths.append(end - pos)
            counter += 1
            pos = end
        return lengths, counter

    def read_seal(self, fd: int, counter: int, count: int, out: memoryview, pos: int, skip: int, lead: int,
                  mtu: int, read_size: int, segment: int) -> tuple[list[int], int, int, int]:
        """Up to `count` reads from the device without waiting, sealed in place at out[pos:]: each one
        unit (`skip` bytes of it dropped, `lead` zero bytes before it, padded for `mtu`), or with
        `segment`, a TSO read cut into packets of at most that size (vnet.wire_packets); one that
        cannot be cut is dropped, one that does not fit waits for the next call. Returns (lengths,
        bytes, next counter, dropped)."""
        lengths: list[int] = []
        nbytes = dropped = 0
        scratch = [memoryview(bytearray(skip))] if skip else []
        most = HEADER_LEN + lead + read_size + 15 + TAG_LEN
        for _ in range(count):
            if counter >= REJECT_AFTER_MESSAGES or (not segment and len(out) - pos < most):
                break
            unit = pos + HEADER_LEN
            if segment and self._pending is not None:
                read, self._pending = self._pending, None
            else:
                target = bytearray(read_size) if segment else out[unit + lead:unit + lead + read_size]
                try:
                    n = os.preadv(fd, [*scratch, target], -1, os.RWF_NOWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    if not lengths:
                        raise
                    break
                if n - skip <= 0:
                    continue
                read = bytes(target[:n - skip]) if segment else b""
                m = n - skip
            if not segment:
                plain = lead + m
                size = padded(plain, mtu)
                out[unit:unit + lead] = bytes(lead)
                out[unit + plain:unit + size] = bytes(size - plain)
                end = self.seal_into(counter, out[unit:unit + size], out, pos)
                lengths.append(end - pos)
                counter += 1
                nbytes += size
                pos = end
                continue
            try:
                packets = vnet.wire_packets(read, segment)
            except vnet.BadPacket:
                dropped += 1
                continue
            need = sum(HEADER_LEN + padded(len(p), mtu) + TAG_LEN for p in packets)
            if need > len(out) - pos or len(packets) > REJECT_AFTER_MESSAGES - counter:
                if not lengths and need > len(out) - pos:
                    dropped += 1
                    continue
                self._pending = read
                break
            for packet in packets:
                size = padded(len(packet), mtu)
                end = self.seal_into(counter, packet + bytes(size - len(packet)), out, pos)
                lengths.append(end - pos)
                counter += 1
                nbytes += size
                pos = end
        return lengths, nbytes, counter, dropped

    def open_into(self, msg: Buffer, out: memoryview) -> int:
        """The payload's length, decrypted into out; REPLAYED (seen, or too old for the window) or
        FORGED (does not authenticate). The caller checked the type and the receiver index."""
        size = len(msg) - HEADER_LEN - TAG_LEN
        if size < 0:
            raise ValueError("shorter than a transport message")
        if len(out) < size:
            raise ValueError("the payload does not fit the buffer")
        counter = HEADER.unpack_from(msg)[2]
        replay = self.replay
        if not replay.check(counter):
            return REPLAYED
        try:
            self._open_into(NONCE.pack(counter), msg[HEADER_LEN:], None, out[:size])
        except InvalidTag:
            return FORGED
        if not replay.accept(counter):
            return REPLAYED
        return size


def _load() -> ModuleType | None:
    if os.environ.get(ENV, "").lower() == Datapath.PYTHON:
        return None
    try:
        from . import _fastpath  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _fastpath


native = _load()
DATAPATH = Datapath.COMPILED if native is not None else Datapath.PYTHON


def wire_packets(unit: bytes | memoryview, max_packet: int) -> list[bytes]:
    """vnet.wire_packets, on the datapath in use (ValueError for a unit that cannot be cut)."""
    if native is not None:
        packets: list[bytes] = native.wire_packets(unit, max_packet)
        return packets
    return vnet.wire_packets(unit, max_packet)


def session(send_key: bytes, receive_key: bytes, remote_index: int) -> Session:
    """A keypair's Session, on the datapath in use."""
    if native is not None:
        s: Session = native.Session(send_key, receive_key, remote_index)
        return s
    return PySession(send_key, receive_key, remote_index)


__all__ = ["DATAPATH", "FORGED", "REPLAYED", "Datapath", "PySession", "Session", "padded", "session", "wire_packets"]
