"""A transfer through a tunnel, run inside a namespace: `receive ADDRESS PORT` prints the
bytes and sha256 of everything sent to it; `send ADDRESS PORT MEGABYTES SEED` sends that many
pseudo-random megabytes and prints their sha256 and the seconds it took."""

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


def send(address: str, port: int, megabytes: int, seed: int) -> None:
    rng, digest = random.Random(seed), hashlib.sha256()
    started = time.monotonic()
    with socket.create_connection((address, port), timeout=60) as conn:
        conn.settimeout(None)
        for _ in range(megabytes):
            block = rng.randbytes(1 << 20)
            digest.update(block)
            conn.sendall(block)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # the receiver closes when it has everything
    print(json.dumps({"bytes": megabytes << 20, "sha256": digest.hexdigest(),
                      "seconds": time.monotonic() - started}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "receive":
        receive(sys.argv[2], int(sys.argv[3]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
