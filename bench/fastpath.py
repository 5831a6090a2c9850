"""`python bench/fastpath.py`: microseconds per packet to seal and to open a transport message,
compiled (_fastpath.c) against Python (fastpath.PySession), through Keypair as the carriers
call it; and a batch of units read from a descriptor and sealed (read_seal, which the UDP
carrier calls), also from TSO reads cut into packets. CPU time (process_time), not wall time: the machine is shared. Median of BENCH_REPEAT (5) rounds, with the lowest and highest.
"""

from __future__ import annotations

import os
import socket
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.tunnel import _fastpath, vnet  # type: ignore[attr-defined]  # noqa: E402
from provisioner.tunnel.device import READ_SIZE  # noqa: E402
from provisioner.tunnel.fastpath import PySession  # noqa: E402

REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
SIZES = (64, 1420, 65535)
A, B = bytes(range(32)), bytes(range(32, 64))
IMPLS = {"python": PySession, "compiled": _fastpath.Session}


def per_call(fn, n: int) -> float:
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n * 1e6


def spread(samples: list[float]) -> str:
    return f"{statistics.median(samples):7.2f} ({min(samples):.2f}-{max(samples):.2f})"


def seal_open(kind: str, size: int) -> tuple[list[float], list[float]]:
    n = 20000 if size < 10000 else 2000
    payload = os.urandom(size)
    out = memoryview(bytearray(size + 64))
    plain = memoryview(bytearray(size + 64))
    seals, opens = [], []
    for _ in range(REPEAT):
        sealer, opener = IMPLS[kind](A, B, 1), IMPLS[kind](B, A, 2)
        counter = iter(range(10**9))
        seals.append(per_call(lambda s=sealer, c=counter: s.seal_into(next(c), payload, out, 0), n))
        msgs = []
        for i in range(n):
            buf = memoryview(bytearray(size + 32))
            sealer.seal_into(i, payload, buf, 0)
            msgs.append(buf)
        it = iter(msgs)
        opens.append(per_call(lambda o=opener, m=it: o.open_into(next(m), plain), n))
    return seals, opens


def super_packet(payload: int) -> bytes:
    """A TSO read of a tun: virtio header (NEEDS_CSUM, TCPv4, gso_size 1380) and IPv4/TCP."""
    tcp = struct.pack("!HHIIBBHHH", 5201, 40000, 1, 7, 5 << 4, 0x10, 500, 0, 0) + os.urandom(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, bytes(4), bytes(4))
    return vnet.HDR.pack(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 40, 1380, 20, 16) + ip + tcp


def read_seal(kind: str, size: int = 1420, batch: int = 64, tso: bool = False) -> list[float]:
    """µs per sealed packet: `batch` reads of `size`-byte units, or (tso) 2 reads of 64 KB
    super-packets cut into packets, read from a socket pair and sealed in one call."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    unit = super_packet(64000) if tso else os.urandom(size)
    batch = 2 if tso else batch
    out = memoryview(bytearray(1 << 18))
    s = IMPLS[kind](A, B, 1)
    samples = []
    with ours, theirs:
        for _ in range(REPEAT):
            spent, units = 0.0, 0
            for _ in range(100):
                for _ in range(batch):
                    theirs.send(unit)
                t = time.process_time()
                lengths, _, _, _ = s.read_seal(ours.fileno(), 0, batch, out, 0, 0, 0, 1420, READ_SIZE,
                                               1420 if tso else 0)
                spent += time.process_time() - t
                units += len(lengths)
            samples.append(spent / units * 1e6)
    return samples


def main() -> None:
    print(f"µs per packet, median of {REPEAT} (lowest-highest)")
    print("| operation | bytes | python | compiled | ratio |")
    print("|---|---|---|---|---|")
    for size in SIZES:
        py, c = seal_open("python", size), seal_open("compiled", size)
        for i, what in enumerate(("seal", "open")):
            print(f"| {what} | {size} | {spread(py[i])} | {spread(c[i])} | "
                  f"{statistics.median(py[i]) / statistics.median(c[i]):.1f}× |")
    py, c = read_seal("python"), read_seal("compiled")
    print(f"| read + seal (batch of 64) | 1420 | {spread(py)} | {spread(c)} | "
          f"{statistics.median(py) / statistics.median(c):.1f}× |")
    py, c = read_seal("python", tso=True), read_seal("compiled", tso=True)
    print(f"| read a 64 KB TSO read, cut, seal (per packet) | 1420 | {spread(py)} | {spread(c)} | "
          f"{statistics.median(py) / statistics.median(c):.1f}× |")


if __name__ == "__main__":
    main()
