"""Tools of an attacker on the tunnel's network: raw sockets that send whatever they like from
whatever source, and packet captures (AF_PACKET) that see what crosses a link or reaches a device.

Also a process of its own, so that a flood is not slowed by the test's threads (the GIL):
    python -m tests.integration.attacker flood NS FILE RATE SECONDS
sends the IP packets in FILE (each behind a 2-byte length) round robin from namespace NS, at RATE
packets a second for SECONDS, and prints how many it sent.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from provisioner.kernel import namespace

ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800
PACKET_OUTGOING = 4


def ip_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 + UDP packet with any source (UDP checksum 0: none; the kernel fills the IP one)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                       socket.inet_aton(src[0]), socket.inet_aton(dst[0])) + udp


@contextmanager
def raw_sender(ns: str) -> Iterator[Callable[[bytes], None]]:
    """send(ip_packet) from a raw socket in `ns` (IP_HDRINCL: our headers, our source)."""
    with namespace.entered(ns):
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)

    def send(packet: bytes) -> None:
        dst = socket.inet_ntoa(packet[16:20])
        while True:
            try:
                raw.sendto(packet, (dst, 0))
                return
            except BlockingIOError:  # ENOBUFS shows as this on some kernels: wait for room
                time.sleep(0.0005)
            except OSError as exc:
                if exc.errno != 105:  # ENOBUFS
                    raise
                time.sleep(0.0005)
    with raw:
        yield send


@dataclass(frozen=True)
class Seen:
    """One packet a capture saw: its link-layer protocol, direction and bytes (from the IP header,
    or from the network header of whatever protocol it is)."""

    protocol: int
    outgoing: bool
    data: bytes
    at: float

    def udp(self) -> tuple[tuple[str, int], tuple[str, int], bytes] | None:
        """(source, destination, payload) if an IPv4 UDP packet."""
        d = self.data
        if self.protocol != ETH_P_IP or len(d) < 28 or d[9] != socket.IPPROTO_UDP:
            return None
        ihl = (d[0] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", d, ihl)
        return (socket.inet_ntoa(d[12:16]), sport), (socket.inet_ntoa(d[16:20]), dport), d[ihl + 8:]


def _capture(ns: str, device: str, stop: threading.Event, out: list[Seen], ready: threading.Event) -> None:
    with namespace.entered(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
        sock.bind((device, ETH_P_ALL))
        sock.settimeout(0.05)
        ready.set()
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            out.append(Seen(addr[1], addr[2] == PACKET_OUTGOING, data, time.monotonic()))


@contextmanager
def capturing(ns: str, device: str) -> Iterator[list[Seen]]:
    """Every packet crossing `device` in `ns` while the block runs (the list fills as it goes)."""
    seen: list[Seen] = []
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=_capture, args=(ns, device, stop, seen, ready), daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield seen
    finally:
        time.sleep(0.1)
        stop.set()
        thread.join()


def save_packets(path: Path, packets: list[bytes]) -> Path:
    path.write_bytes(b"".join(struct.pack("!H", len(p)) + p for p in packets))
    return path


def load_packets(path: Path) -> list[bytes]:
    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        n = struct.unpack_from("!H", data, pos)[0]
        out.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    return out


@contextmanager
def flooding(ns: str, packets: Path, rate: int, seconds: float) -> Iterator[Callable[[], tuple[int, float]]]:
    """The flood, started in its own process; the block gets a function that waits for its end
    and gives the number of packets sent and the seconds it took. The process is killed if the
    block leaves early."""
    p = subprocess.Popen([sys.executable, "-m", "tests.integration.attacker", "flood", ns, str(packets), str(rate),
                          str(seconds)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        def result() -> tuple[int, float]:
            sent, took = p.communicate(timeout=seconds + 60)[0].split()
            return int(sent), float(took)

        yield result
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def _flood(ns: str, file: str, rate: int, seconds: float) -> tuple[int, float]:
    os.nice(5)  # a real attacker's CPU is not the victim's: the forwarder goes first here
    packets = load_packets(Path(file))
    sent, total, start = 0, int(rate * seconds), time.monotonic()
    with raw_sender(ns) as send:
        while sent < total:
            due = min(total, int((time.monotonic() - start) * rate))
            while sent < due:
                send(packets[sent % len(packets)])
                sent += 1
            time.sleep(0.001)
    return sent, time.monotonic() - start


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system time of every thread of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    if sys.argv[1:2] == ["flood"]:
        print(*_flood(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
