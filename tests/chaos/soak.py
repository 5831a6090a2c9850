"""`make soak` (not in `make test`): four tunnels (TCP, UDP, TCP, UDP) carrying iperf3 and
ping for 30 minutes ($PROVISION_SOAK_SECONDS); every 10 s each forwarder's RSS, open file
descriptors and CPU are sampled (with the processes it forked). After a 2-minute warm-up
RSS must stay within ±5 MB and the descriptors flat. Prints text sparklines and writes the
samples as CSV ($PROVISION_SOAK_CSV). Named soak.py, so only `make soak` collects it.

The pairs come from tests/integration/pair.py (its inventory and `up`), one pair per tunnel."""

from __future__ import annotations

import csv
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..integration import pair

SECONDS = float(os.environ.get("PROVISION_SOAK_SECONDS", "1800"))
EVERY = 10.0
WARM_UP = min(120.0, SECONDS / 4)
TRANSPORTS = ("tcp", "udp", "tcp", "udp")
BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], lo: float, hi: float, width: int = 60) -> str:
    """`values` in `width` buckets (their means), drawn against the fixed range lo..hi, so a
    flat series looks flat whatever its noise."""
    n = max(1, -(-len(values) // width))
    means = [sum(values[i:i + n]) / len(values[i:i + n]) for i in range(0, len(values), n)]
    scale = (len(BARS) - 1) / (hi - lo) if hi > lo else 0.0
    return "".join(BARS[max(0, min(len(BARS) - 1, round((v - lo) * scale)))] for v in means)


def summary(rows: list[dict], seconds: float) -> list[str]:
    """One line per forwarder: RSS (sparkline over median ± 5 MB), descriptors, CPU."""
    out = []
    for key in sorted({(r["tunnel"], r["host"]) for r in rows}):
        mine = [r for r in rows if (r["tunnel"], r["host"]) == key]
        rss = [float(r["rss_mb"]) for r in mine]
        warm = sorted(float(r["rss_mb"]) for r in mine if float(r["t"]) >= WARM_UP)
        mid = warm[len(warm) // 2]
        fds = [int(r["fds"]) for r in mine]
        cpu = float(mine[-1]["cpu_s"]) - float(mine[0]["cpu_s"])
        out.append(f"{key[0]} {key[1]}: RSS {mid:.1f} MB, after warm-up {warm[0]:.1f}–{warm[-1]:.1f} "
                   f"{sparkline(rss, mid - 5, mid + 5)} (scale ±5 MB); fds {min(fds)}–{max(fds)}; "
                   f"CPU {cpu:.1f} s ({100 * cpu / seconds:.1f} % of a core)")
    return out


def tree(pid: int) -> list[int]:
    """The process and the ones it forked (a UDP forwarder forks its sender)."""
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += tree(int(child))
    return out


def sample(pid: int) -> tuple[float, int, float]:
    """(RSS in MB, open descriptors, CPU seconds) of the forwarder and its children."""
    rss, fds, cpu = 0.0, 0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024
            fds += len(os.listdir(f"/proc/{p}/fd"))
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, StopIteration):
            continue
    return rss, fds, cpu


def test_soak(make_netns: Callable[[], str], tmp_path: Path) -> None:
    tunnels, loads = [], []
    for i, transport in enumerate(TRANSPORTS):
        hosts = pair.link(make_netns(), make_netns())
        place = tmp_path / f"t{i}"
        place.mkdir()
        inv, state = pair.up(place, hosts, transport)
        pids = {host: row["pid"] for host, row in pair.status(inv, state).items()}
        tunnels.append((f"{transport}{i}", inv, state, pids))
        loads.append(subprocess.Popen(["ip", "netns", "exec", hosts[1], "iperf3", "-s", "-1"],
                                      stdout=subprocess.DEVNULL))
        time.sleep(0.3)
        loads.append(subprocess.Popen(["ip", "netns", "exec", hosts[0], "iperf3", "-c", "198.51.100.2", "-b", "20M",
                                       "-t", str(int(SECONDS)), "-i", "0"], stdout=subprocess.DEVNULL))
        loads.append(subprocess.Popen(["ip", "netns", "exec", hosts[0], "ping", "-q", "-i", "1", "198.51.100.2"],
                                      stdout=subprocess.DEVNULL))
    rows: list[dict] = []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < SECONDS:
            for name, _inv, _state, pids in tunnels:
                for host, pid in pids.items():
                    rss, fds, cpu = sample(pid)
                    rows.append({"t": round(elapsed), "tunnel": name, "host": host, "pid": pid,
                                 "rss_mb": round(rss, 2), "fds": fds, "cpu_s": round(cpu, 2)})
            time.sleep(EVERY - (time.monotonic() - started) % EVERY)
    finally:
        for p in loads:
            p.terminate()
    out = Path(os.environ.get("PROVISION_SOAK_CSV", tmp_path / "soak.csv"))
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nsoak: {SECONDS:g} s, a sample every {EVERY:g} s; samples in {out}")
    print("\n".join(summary(rows, SECONDS)))
    problems = []
    for name, _, _, pids in tunnels:
        for host in pids:
            mine = [r for r in rows if r["tunnel"] == name and r["host"] == host]
            warm = [r["rss_mb"] for r in mine if r["t"] >= WARM_UP]
            if max(warm) - min(warm) > 10:
                problems.append(f"{name} {host}: RSS moved {max(warm) - min(warm):.1f} MB after warm-up")
            if len({r["pid"] for r in mine}) != 1 or mine[-1]["fds"] == 0:
                problems.append(f"{name} {host}: the forwarder did not live through the soak")
    assert not problems, problems


if __name__ == "__main__":  # python -m tests.chaos.soak SAMPLES.csv: the summary again
    import sys

    with open(sys.argv[1], newline="") as f:
        saved = list(csv.DictReader(f))
    print("\n".join(summary(saved, float(saved[-1]["t"]) + EVERY)))
