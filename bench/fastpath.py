"""`python bench/fastpath.py`: microseconds per packet to seal and to open a transport message,
compiled (_fastpath.c) against Python (fastpath.PySession), through Keypair as the carriers
call it; and a batch of units read from a descriptor and sealed (read_seal, which the UDP
carrier calls). CPU time (process_time), not wall time: the machine is shared. Median of BENCH_REPEAT (5) rounds, with the lowest and highest.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.tunnel import _fastpath  # type: ignore[attr-defined]  # noqa: E402
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


def read_seal(kind: str, size: int = 1420, batch: int = 64) -> list[float]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    unit = os.urandom(size)
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
                lengths, _, _ = s.read_seal(ours.fileno(), 0, batch, out, 0, 0, 0, 1420, READ_SIZE)
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


if __name__ == "__main__":
    main()
