"""What the receive-path tests and the fuzz target all do: step a carrier through a receive buffer
as udp.py does, and read back what the device was written. One copy, so the unit tests and the
fuzzer hold both implementations to the same procedure."""

from __future__ import annotations

import socket
from typing import Any

from provisioner.tunnel import _fastpath, vnet  # type: ignore[attr-defined]


def drained(sock: socket.socket) -> list[bytes]:
    """Every message waiting on `sock` (the device's side of a SEQPACKET pair), without blocking."""
    sock.setblocking(False)
    out = []
    while True:
        try:
            out.append(sock.recv(1 << 17))
        except BlockingIOError:
            return out


def device_pair() -> tuple[socket.socket, socket.socket]:
    """(the end open_run writes, the end the test reads): a SEQPACKET pair keeps each write whole."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    return a, b


def open_runs(session: Any, blob: bytes, seg: int, index: int, vnet_hdr: bool) -> tuple[list[Any], list[bytes]]:
    """open_run over a raw receive buffer, then again from where it stopped (past one datagram), as
    the carrier goes on after a datagram Python handled: every call's answer, and all writes."""
    a, b = device_pair()
    answers: list[Any] = []
    try:
        off = 0
        while off < len(blob):
            answer = session.open_run(blob, off, len(blob), seg, index, a.fileno(), vnet_hdr,
                                      memoryview(bytearray(len(blob))))
            answers.append(answer)
            off += (answer[0] + 1) * seg
        return answers, drained(b)
    finally:
        a.close()
        b.close()


def cut_alike(unit: bytes, max_packet: int) -> object:
    """vnet.wire_packets and _fastpath.wire_packets on the same read: the same packets, or both
    ValueError (returned as the class)."""
    results: list[object] = []
    for cut in (vnet.wire_packets, _fastpath.wire_packets):
        try:
            results.append(cut(unit, max_packet))
        except ValueError:
            results.append(ValueError)
    assert results[0] == results[1], (unit.hex(), max_packet)
    return results[0]
