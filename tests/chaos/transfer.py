"""A transfer through a tunnel, run inside a namespace: `receive ADDRESS PORT` prints the
bytes and sha256 of everything sent to it; `send ADDRESS PORT MEGABYTES SEED` sends that many
pseudo-random megabytes (and goes on, a megabyte at a time, until MIN_SECONDS have passed, if
given) and prints how many bytes, their sha256 and the seconds it took."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sys
import time


def receive(address: str, port: int) -> None:
    with socket.create_server((address, port)) as server:
        print("listening", flush=True)
        conn, _ = server.accept()
        digest, total = hashlib.sha256(), 0
        with conn:
            while chunk := conn.recv(1 << 20):
                digest.update(chunk)
                total += len(chunk)
    print(json.dumps({"bytes": total, "sha256": digest.hexdigest()}), flush=True)


def send(address: str, port: int, megabytes: int, seed: int, min_seconds: float = 0.0) -> None:
    rng, digest = random.Random(seed), hashlib.sha256()
    started = time.monotonic()
    sent = 0
    with socket.create_connection((address, port), timeout=60) as conn:
        conn.settimeout(None)
        while sent < megabytes << 20 or time.monotonic() - started < min_seconds:
            block = rng.randbytes(1 << 20)
            digest.update(block)
            conn.sendall(block)
            sent += len(block)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # the receiver closes when it has everything
    print(json.dumps({"bytes": sent, "sha256": digest.hexdigest(), "seconds": time.monotonic() - started}),
          flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "receive":
        receive(sys.argv[2], int(sys.argv[3]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
