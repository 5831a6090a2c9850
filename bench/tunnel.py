"""`make bench-tunnel`: the data plane against the bare link and socat, in one run.

Two network namespaces joined by a veth pair (192.0.2.1, 192.0.2.2). Over it, one at a
time: nothing (the limit), the classic socat TUN tunnel over TCP, socat over UDP
(UDP-DATAGRAM on both ends), and provision's tunnels over TCP and UDP, encrypted (the
default) and `insecure: true`, set up by the real `provision apply`. For each: the median of BENCH_ROUNDS (3) runs of one iperf3 TCP stream
for BENCH_SECONDS (10) each, the added ping
RTT (median of 20 pings, less the bare link's), and the CPU the tunnel's processes used
(both ends, as a share of one core). Figures are noisy on a shared VM: the targets are
ratios within this run.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
NS = ("provision-bench-a", "provision-bench-b")
UNDERLAY = ("192.0.2.1", "192.0.2.2")
INNER = ("198.51.100.1", "198.51.100.2")
PROVISION = [sys.executable, "-m", "provisioner"]
TICKS = os.sysconf("SC_CLK_TCK")
KIND = {True: "encrypted", False: "insecure: true"}

INVENTORY = """\
all:
  vars:
    ansible_connection: netns
  hosts:
    a:
      ansible_host: {a}
      tunnel_address: {ua}
{keys_a}      network:
        devices: [{{name: tap0, type: tap, vnet_hdr: true, addresses: [{ia}/24]}}]
        tunnels: [{{name: bench, device: tap0, peer: b, port: 40839, transport: {transport}, {security}}}]
    b:
      ansible_host: {b}
      tunnel_address: {ub}
{keys_b}      network:
        devices: [{{name: tap0, type: tap, vnet_hdr: true, addresses: [{ib}/24]}}]
        tunnels: [{{name: bench, device: tap0, peer: a, port: 40839, transport: {transport}, {security}}}]
"""


@dataclass
class Row:
    what: str
    gbits: float | None = None
    retransmits: int | None = None
    rtt_ms: float | None = None
    cpu: float | None = None  # share of one core, both ends together
    note: str = ""


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def setup() -> None:
    teardown()
    for ns in NS:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "bench-a", "netns", NS[0], "type", "veth", "peer", "name", "bench-b", "netns", NS[1])
    for ns, dev, addr in ((NS[0], "bench-a", UNDERLAY[0]), (NS[1], "bench-b", UNDERLAY[1])):
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")


def teardown() -> None:
    for ns in NS:
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            sh("kill", "-9", pid, check=False)
        sh("ip", "netns", "del", ns, check=False)


def ns_processes(pattern: str) -> list[int]:
    pids = [int(p) for ns in NS for p in sh("ip", "netns", "pids", ns, check=False).stdout.split()]
    return [p for p in pids if pattern in _cmdline(p)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total


def rtt(target: str) -> float:
    out = sh(*in_ns(NS[1], "ping", "-c", "20", "-i", "0.05", "-W", "1", target), check=False).stdout
    times = [float(t) for t in re.findall(r"time=([\d.]+)", out)]
    return statistics.median(times) if times else float("nan")


def iperf(target: str) -> tuple[float | None, int | None, str]:
    server = subprocess.Popen(in_ns(NS[0], "iperf3", "-s", "-1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        p = subprocess.run(in_ns(NS[1], "iperf3", "-c", target, "-t", str(SECONDS), "-J", "--connect-timeout", "3000"),
                           capture_output=True, text=True, timeout=SECONDS + 30)
        try:
            report = json.loads(p.stdout)
        except ValueError:
            return None, None, (p.stderr or p.stdout).strip()[:200]
        if "error" in report:
            return None, None, report["error"]
        end = report["end"]
        return end["sum_received"]["bits_per_second"] / 1e9, end["sum_sent"].get("retransmits"), ""
    except subprocess.TimeoutExpired:
        return None, None, "iperf3 did not finish"
    finally:
        server.kill()
        server.wait()


def measure(what: str, target: str, pattern: str | None, bare_rtt: float = 0.0) -> Row:
    """The median of ROUNDS iperf3 runs (by Gbit/s, with that run's retransmits); CPU over all."""
    pids = ns_processes(pattern) if pattern else []
    ticks, start = cpu_ticks(pids), time.monotonic()
    runs = [iperf(target) for _ in range(ROUNDS)]
    used = (cpu_ticks(pids) - ticks) / TICKS / (time.monotonic() - start) if pids else None
    done = sorted((r for r in runs if r[0] is not None), key=lambda r: r[0] or 0.0)
    gbits, retransmits, note = done[len(done) // 2] if len(done) == len(runs) else runs[-1]
    row = Row(what, gbits, retransmits, None, used, note)
    if gbits is not None:
        row.rtt_ms = rtt(target) - bare_rtt
    print(f"{what}: {f'{gbits:.2f} Gbit/s' if gbits is not None else note}", flush=True)
    return row


RECEIVER = """
import hashlib, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 5999)); s.listen(1)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while d := c.recv(1 << 20):
    h.update(d); n += len(d)
print(n, h.hexdigest())
"""
SENDER = """
import hashlib, os, socket, sys
c = socket.create_connection((sys.argv[1], 5999)); h = hashlib.sha256(); n = 0
for _ in range(256):
    d = os.urandom(1 << 20); h.update(d); c.sendall(d); n += len(d)
c.close(); print(n, h.hexdigest())
"""


def intact(target: str) -> bool:
    """256 MB of random bytes through the tunnel arrive bit for bit (iperf3 does not look)."""
    rx = subprocess.Popen(in_ns(NS[0], sys.executable, "-c", RECEIVER), stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    tx = subprocess.run(in_ns(NS[1], sys.executable, "-c", SENDER, target), capture_output=True, text=True, timeout=120)
    got = rx.communicate(timeout=120)[0]
    return tx.returncode == 0 and got.strip() == tx.stdout.strip() and got.startswith(str(256 << 20))


@contextmanager
def socat(kind: str) -> Iterator[Callable[[], str]]:
    """Both ends of a socat TUN tunnel; yields a function giving what socat printed."""
    tun = "TUN:{}/24,iff-no-pi,up,tun-type=tap"
    if kind == "tcp":
        ends = [f"tcp-l:40839,reuseaddr {tun.format(INNER[0])}", f"tcp:{UNDERLAY[0]}:40839 {tun.format(INNER[1])}"]
    else:
        ends = [f"UDP-DATAGRAM:{UNDERLAY[1]}:40839,bind={UNDERLAY[0]}:40839 {tun.format(INNER[0])}",
                f"UDP-DATAGRAM:{UNDERLAY[0]}:40839,bind={UNDERLAY[1]}:40839 {tun.format(INNER[1])}"]
    logs = [tempfile.TemporaryFile() for _ in NS]
    procs = []
    for ns, spec, log in zip(NS, ends, logs, strict=True):
        procs.append(subprocess.Popen(in_ns(ns, "socat", *spec.split()), stdout=log, stderr=log))
        time.sleep(0.3)
    time.sleep(0.5)

    def said() -> str:
        text = ""
        for log in logs:
            log.seek(0)
            text += log.read().decode(errors="replace")
        return text

    try:
        yield said
    finally:
        for p in procs:
            p.kill()
            p.wait()


@contextmanager
def provisioned(transport: str, secure: bool, work: Path) -> Iterator[None]:
    inv = work / f"bench-{transport}-{'secure' if secure else 'insecure'}.yaml"
    env = {**os.environ, "PROVISION_STATE_DIR": str(work / "state"), "NO_COLOR": "1"}
    host_keys = {}
    for host in ("a", "b"):  # each host's key pair, made once (provision keygen prints the public key line)
        private, public = work / f"bench-{host}.key", work / f"bench-{host}.pub"
        if secure and not (private.exists() and public.exists()):
            subprocess.run([*PROVISION, "keygen", "--force", str(private), "--public-file", str(public)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        host_keys[f"keys_{host}"] = (f"      tunnel_private_key_file: {private}\n"
                                     f"      tunnel_public_key_file: {public}\n") if secure else ""
    inv.write_text(INVENTORY.format(a=NS[0], b=NS[1], ua=UNDERLAY[0], ub=UNDERLAY[1], ia=INNER[0], ib=INNER[1],
                                    transport=transport, security="insecure: false" if secure else "insecure: true",
                                    **host_keys))
    subprocess.run([*PROVISION, "apply", str(inv)], check=True, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = json.loads(subprocess.run([*PROVISION, "status", str(inv), "--json"], capture_output=True, text=True,
                                         env=env).stdout)["tunnels"]
        if rows and all(r["state"] == "connected" for r in rows):
            break
        time.sleep(0.1)
    try:
        yield
    finally:
        subprocess.run([*PROVISION, "destroy", str(inv)], check=True, env=env, stdout=subprocess.DEVNULL)


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the benchmark needs root (network namespaces)")
    for tool in ("iperf3", "socat", "ping"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            raise SystemExit(f"{tool} is missing: `make setup` installs it")
    work = Path(tempfile.mkdtemp(prefix="provision-bench-tunnel-"))
    rows: list[Row] = []
    setup()
    try:
        bare = rtt(UNDERLAY[0])
        rows.append(measure("bare veth (the limit)", UNDERLAY[0], None))
        rows[-1].rtt_ms = 0.0
        with socat("tcp") as said:
            row = measure("socat TUN over TCP (the classic tunnel)", INNER[0], "socat", bare)
            error = re.search(r"E (write\(.*)", said())
            if error or row.gbits is None:
                row.note = "died: " + (error.group(1).strip() if error else row.note)
            else:
                row.note = "broken: no framing, so packets that TCP merges or splits are lost"
            rows.append(row)
        with socat("udp"):
            rows.append(measure("socat over UDP (UDP-DATAGRAM)", INNER[0], "socat", bare))
        for transport in ("tcp", "udp"):
            for secure in (True, False):
                with provisioned(transport, secure, work):
                    rows.append(measure(f"provision over {transport.upper()}, {KIND[secure]}", INNER[0],
                                        "provisioner.tunnel.forwarder", bare))
                    rows[-1].note = "256 MB arrived intact" if intact(INNER[0]) else "DATA CORRUPTED"
    finally:
        teardown()
    report(rows, bare)


def report(rows: list[Row], bare: float) -> None:
    print(f"\none iperf3 TCP stream for {SECONDS} s through each, median of {ROUNDS} runs; "
          f"bare-link ping RTT {bare:.3f} ms\n")
    print("| path | Gbit/s | retransmits | added ping RTT (ms) | tunnel CPU (cores) | note |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        gbits = f"{r.gbits:.2f}" if r.gbits is not None else "—"
        retrans = str(r.retransmits) if r.retransmits is not None else "—"
        added = f"{r.rtt_ms:.3f}" if r.rtt_ms is not None else "—"
        cpu = f"{r.cpu:.2f}" if r.cpu is not None else "—"
        print(f"| {r.what} | {gbits} | {retrans} | {added} | {cpu} | {r.note} |")
    by = {r.what: r for r in rows}
    veth = by["bare veth (the limit)"].gbits or float("nan")
    socat_udp = by["socat over UDP (UDP-DATAGRAM)"].gbits or float("nan")
    checks = []
    for secure, tcp_share in ((True, 0.25), (False, 0.40)):
        tcp, udp = (by[f"provision over {t}, {KIND[secure]}"] for t in ("TCP", "UDP"))
        checks += [(f"TCP, {KIND[secure]} / bare veth", (tcp.gbits or 0.0) / veth, tcp_share, "≥"),
                   (f"UDP, {KIND[secure]} / socat over UDP", (udp.gbits or 0.0) / socat_udp, 5.0, "≥")]
        if secure:
            checks += [(f"added ping RTT over {r.what.split(',')[0][-3:]}, encrypted (ms)", r.rtt_ms or 0.0, 0.5, "<")
                       for r in (tcp, udp)]
    print("\n| check | measured | target | |")
    print("|---|---|---|---|")
    for name, value, limit, op in checks:
        met = value >= limit if op == "≥" else value < limit
        print(f"| {name} | {value:.2f} | {op} {limit:g} | {'met' if met else 'MISSED'} |")


if __name__ == "__main__":
    main()
