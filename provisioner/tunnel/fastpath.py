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

import errno
import os
import struct
from collections.abc import Sequence
from enum import StrEnum
from types import ModuleType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..hints import Protocol
from . import vnet
from .drops import Drop
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

    def open_run(self, buf: Buffer, start: int, end: int, seg: int, index: int, fd: int, vnet_hdr: bool,
                 scratch: memoryview) -> tuple[int, int, int, int, int]: ...


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

    def open_run(self, buf: Buffer, start: int, end: int, seg: int, index: int, fd: int, vnet_hdr: bool,
                 scratch: memoryview) -> tuple[int, int, int, int, int]:
        """The UDP receive turn for one session: the datagrams of buf[start:end] (each `seg` long,
        the last maybe shorter) opened in order while each is a transport message for `index` that
        authenticates and is not replayed, and their IP packets written to the device `fd` (with
        `vnet_hdr`, consecutive segments of one TCP flow glued into one super-packet: `_Run`).
        Returns (datagrams consumed, packets written, their plaintext bytes, plaintexts that are no
        IP packet, writes the device refused); the caller handles buf[start + consumed datagrams:]
        one by one, and updates the peer once for the run (the consumed ones all authenticated)."""
        if seg < 1 or not 0 <= start <= end <= len(buf) or not 0 <= index < 2**32 or fd < 0:
            raise ValueError("bad arguments to open_run")
        if len(scratch) < end - start:
            raise ValueError("scratch must hold the run's plaintexts")
        head = HEADER.pack(MSG_TRANSPORT, index, 0)[:8]
        run = _Run(fd, vnet_hdr)
        consumed = packets = nbytes = bad_inner = pos = 0
        off = start
        view = memoryview(buf)
        try:
            while off < end:
                dl = min(seg, end - off)
                if dl < HEADER_LEN + TAG_LEN or view[off:off + 8] != head:
                    break
                size = self.open_into(view[off:off + dl], scratch[pos:])
                if size < 0:
                    break
                consumed += 1
                off += dl
                if size == 0:
                    continue  # a keepalive
                length = _ip_length(scratch, pos, size)
                if not length:
                    bad_inner += 1
                    continue
                packets += 1
                nbytes += size
                run.take(scratch[pos:pos + length])
                pos += size
        finally:
            run.flush()
        return consumed, packets, nbytes, bad_inner, run.refused


RUN_DROPS = (Drop.BAD_INNER, Drop.DEVICE_REFUSED)  # open_run's counts after the first three, in order
_TCP_ACK, _TCP_PSH = vnet.TCP_ACK, vnet.TCP_PSH


def _ip_length(buf: memoryview, pos: int, n: int) -> int:
    """The IP packet's own length if buf[pos:pos+n] holds one (WireGuard's padding after it), else 0."""
    version = buf[pos] >> 4
    if version == 4 and n >= 20:
        length = buf[pos + 2] << 8 | buf[pos + 3]
    elif version == 6 and n >= 40:
        length = 40 + (buf[pos + 4] << 8 | buf[pos + 5])
    else:
        return 0
    return length if 20 <= length <= n else 0


class _Run:
    """open_run's device side, the model of run_t in _fastpath.c: each packet written as it is
    (zero virtio header), or, if it is a TCP segment with a payload and nothing unusual, marked
    NEEDS_CSUM with the pseudo-header's sum in its checksum field (as a TSO device hands it
    over), and glued to the run when its headers are exactly the run's next segment's
    (vnet.Coalescer's rule: ACK only, equal sizes, a shorter one with or without PSH ends it)."""

    def __init__(self, fd: int, vnet_hdr: bool):
        self.fd, self.vnet_hdr, self.refused = fd, vnet_hdr, 0
        self.first: Buffer = b""  # the run's first packet
        self.parts: list[Buffer] = []  # and each payload of the run
        self.v4 = False
        self.hl = self.l4 = self.seg = self.len0 = self.bytes = 0
        self.head = b""
        self.expect = b""
        self.pseudo = self.ip_base = self.id0 = self.id = self.seq0 = self.seq = 0
        self.flags = _TCP_ACK

    def write(self, parts: Sequence[Buffer]) -> None:
        try:
            os.writev(self.fd, parts)
        except OSError as exc:
            if exc.errno == errno.EBADFD:
                raise
            self.refused += 1

    def take(self, p: memoryview) -> None:
        n = len(p)
        if not self.vnet_hdr:
            self.write((p,))
            return
        seg = _as_segment(p)
        if seg is None:
            self.flush()
            self.write((_NO_VNET, p))
            return
        l4, end, pseudo = seg
        if self.parts:
            hl = self.hl
            if n == self.len0 and p[:hl] == self.expect:
                self._append(p[hl:])
                self._step()
                return
            if n != self.len0 and n > hl and n - hl < self.seg:
                for flags in (_TCP_ACK | _TCP_PSH, _TCP_ACK):
                    if p[:hl] == self.headers(n, self.id, self.seq, flags):
                        self._append(p[hl:])
                        self.flags = flags
                        self.flush()
                        return
        self.flush()
        if p[l4 + 13] != _TCP_ACK:  # PSH, FIN, SYN, ...: as it is, checksum partial
            self.write((vnet.HDR.pack(vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 0, 0, l4, vnet.TCP_CSUM_OFFSET), p))
            return
        self.v4 = p[0] >> 4 == 4
        self.hl, self.l4, self.seg, self.len0, self.bytes = end, l4, n - end, n, end
        self.head = bytes(p[:end])
        self.pseudo = pseudo
        self.ip_base = _sum(p[0:2]) + _sum(p[6:10]) + _sum(p[12:20]) if self.v4 else 0
        self.id = self.id0 = (p[4] << 8 | p[5]) if self.v4 else 0
        self.seq = self.seq0 = int.from_bytes(p[l4 + 4:l4 + 8], "big")
        self.flags = _TCP_ACK
        self.first, self.parts = p, [p[end:]]
        self.bytes += n - end
        self._step()

    def _append(self, payload: memoryview) -> None:
        self.parts.append(payload)
        self.bytes += len(payload)

    def _step(self) -> None:
        if len(self.parts) >= vnet.MAX_SEGMENTS or self.bytes + self.seg > vnet.MAX_IP_PACKET:
            self.flush()
            return
        self.id = (self.id + 1) & 0xFFFF if self.v4 else 0
        self.seq = (self.seq + self.seg) & 0xFFFFFFFF
        self.expect = self.headers(self.len0, self.id, self.seq, _TCP_ACK)

    def headers(self, ip_len: int, ip_id: int, seq: int, flags: int) -> bytes:
        """vnet._Headers.make: the run's headers for this IP length, id, sequence number, flags."""
        h = bytearray(self.head)
        l4 = self.l4
        if self.v4:
            h[2:6] = _BE16x2.pack(ip_len, ip_id)
            h[10:12] = (~_fold(self.ip_base + ip_len + ip_id) & 0xFFFF).to_bytes(2, "big")
        else:
            h[4:6] = (ip_len - 40).to_bytes(2, "big")
        h[l4 + 4:l4 + 8] = seq.to_bytes(4, "big")
        h[l4 + 13] = flags
        h[l4 + 16:l4 + 18] = _fold(self.pseudo + ip_len - l4).to_bytes(2, "big")
        return bytes(h)

    def flush(self) -> None:
        parts = self.parts
        if not parts:
            return
        self.parts = []
        if len(parts) == 1:
            self.write((vnet.HDR.pack(vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 0, 0, self.l4, vnet.TCP_CSUM_OFFSET),
                        self.first))
            return
        gso = vnet.GSO_TCPV4 if self.v4 else vnet.GSO_TCPV6
        head = vnet.HDR.pack(vnet.F_NEEDS_CSUM, gso, self.hl, self.seg, self.l4, vnet.TCP_CSUM_OFFSET)
        self.write((head, self.headers(self.bytes, self.id0, self.seq0, self.flags), *parts))


_NO_VNET = bytes(vnet.HDR_LEN)
_BE16x2 = struct.Struct(">HH")


def _sum(data: Buffer) -> int:
    return sum(struct.unpack(f">{len(data) // 2}H", data))


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _as_segment(p: memoryview) -> tuple[int, int, int] | None:
    """If p (an IP packet of exactly its own length) is a TCP segment that may be glued: (where its
    TCP header starts, where it ends, the pseudo-header's sum), its checksum field set to that
    sum plus the TCP length (NEEDS_CSUM's form); None, and nothing written, for everything else."""
    n = len(p)
    if p[0] >> 4 == 4:
        if p[0] & 0x0F != 5 or p[9] != vnet.IPPROTO_TCP or p[6] & 0x3F or p[7]:
            return None  # options or fragments: as it came
        l4, pseudo = 20, _sum(p[12:20])
    else:
        if p[6] != vnet.IPPROTO_TCP:
            return None
        l4, pseudo = 40, _sum(p[8:40])
    if n < l4 + 20:
        return None
    end = l4 + (p[l4 + 12] >> 4) * 4
    if end < l4 + 20 or end >= n:
        return None  # no payload, or a data offset outside the packet
    pseudo += vnet.IPPROTO_TCP
    p[l4 + 16:l4 + 18] = _fold(pseudo + n - l4).to_bytes(2, "big")
    return l4, end, pseudo


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


__all__ = ["DATAPATH", "FORGED", "REPLAYED", "RUN_DROPS", "Datapath", "PySession", "Session", "padded", "session", "wire_packets"]
