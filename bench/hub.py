"""`make bench-hub`: what a hub of many encrypted UDP tunnels costs on the hub, against
wireguard-go serving as many peers, in one run.

The hub is tests/integration/hub.py's: a namespace with N tunnels of default flags, each to
a wireguard-go spoke in a namespace of its own (the spokes are the hub's peers, not measured).
For each size (BENCH_HUB_SIZES, default "50,500"; the largest runs without spokes when it is
above BENCH_HUB_SPOKES_UP_TO, default 100, since N wireguard-go processes cost more than the
hub does):

- apply from nothing, and a no-op apply (whole `provision` processes, timed from outside);
- total RSS and PSS of every provision process on the hub, once every tunnel is connected;
- idle CPU of those processes over BENCH_HUB_IDLE seconds (default 10), as % of one core;
- how long after a SIGKILL of the data plane every tunnel is connected again;
- beside it: one wireguard-go in the hub's namespace configured with the same N peers (RSS).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import verdict  # noqa: E402

from tests.integration.hub import Hub, hub, wait  # noqa: E402

SIZES = [int(n) for n in os.environ.get("BENCH_HUB_SIZES", "50,500").split(",")]
SPOKES_UP_TO = int(os.environ.get("BENCH_HUB_SPOKES_UP_TO", "100"))
IDLE = float(os.environ.get("BENCH_HUB_IDLE", "10"))
PROVISION = [sys.executable, "-m", "provisioner"]
TICKS = os.sysconf("SC_CLK_TCK")


def timed(*args: str, state: Path) -> float:
    env = {**os.environ, "PROVISION_STATE_DIR": str(state), "PROVISION_PERSISTENT_DIR": str(state / "persistent"),
           "NO_COLOR": "1"}
    t0 = time.monotonic()
    p = subprocess.run([*PROVISION, *args], capture_output=True, text=True, env=env, timeout=600)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"provision {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return took


def memory(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) in MB, summed over `pids`."""
    rss = pss = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss / 1024, pss / 1024


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def wireguard_go_with_peers(h: Hub) -> float:
    """RSS (MB) of one wireguard-go in the hub's namespace with the same peers."""
    name = f"wgb{os.getpid() % 10000}"
    sock = Path(f"/var/run/wireguard/{name}.sock")
    process = subprocess.Popen(["ip", "netns", "exec", h.hub, "wireguard-go", "-f", name],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait("wireguard-go's control socket", sock.exists, 10, 0.01)
        key = h.root / "wgb.key"
        key.write_text(subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout)
        key.chmod(0o600)
        args = ["set", name, "listen-port", "40999", "private-key", str(key)]
        for i, spoke in enumerate(h.spokes):
            args += ["peer", spoke.public, "allowed-ips", f"fd00:100:{i:x}::2/128"]
        subprocess.run(["ip", "netns", "exec", h.hub, "wg", *args], check=True)
        time.sleep(1.0)
        # wireguard-go re-executes itself as a daemon unless -f: the process we started is it
        rss, _ = memory([process.pid])
        return rss
    finally:
        process.kill()
        process.wait()
        sock.unlink(missing_ok=True)


def measure(n: int, work: Path) -> dict[str, float]:
    spokes = n <= SPOKES_UP_TO
    with hub(work / f"hub{n}", n, spokes=spokes) as h:
        inv = h.inventory()
        out: dict[str, float] = {"apply from nothing s": timed("apply", str(inv), state=h.state)}
        if spokes:
            wait(f"{n} tunnels connected", h.all_connected, 120, 0.2)
        else:
            wait(f"{n} tunnels running", lambda: len(h.status()) == n
                 and all(r["state"] == "connecting" for r in h.status().values()), 120, 0.2)
        out["no-op apply s"] = timed("apply", str(inv), state=h.state)
        time.sleep(2.0)
        pids = h.processes()
        out["processes"] = len(pids)
        out["RSS MB"], out["PSS MB"] = memory(pids)
        before = cpu_seconds(pids)
        time.sleep(IDLE)
        out["idle CPU %"] = 100 * (cpu_seconds(pids) - before) / IDLE
        if spokes:
            plane = h.data_plane()
            t0 = time.monotonic()
            os.kill(plane, signal.SIGKILL)
            wall = time.time()
            wait("a new data plane", lambda: h.data_plane() not in (0, plane), 10, 0.01)
            wait("every tunnel back", lambda: all(r["state"] == "connected" and (r["started"] or 0) >= wall - 0.05
                                                  for r in h.status().values()), 30, 0.02)
            out["back after SIGKILL s"] = time.monotonic() - t0
        out["wireguard-go RSS MB"] = wireguard_go_with_peers(h)
        timed("destroy", str(inv), state=h.state)
    return out


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the benchmark needs root (network namespaces)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="provision-bench-hub-"))
    try:
        results = {n: measure(n, work) for n in SIZES}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = list(next(iter(results.values())))
    keys += [k for r in results.values() for k in r if k not in keys]
    print("\n| hub of N encrypted UDP tunnels | " + " | ".join(f"N = {n}" for n in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{results[n][k]:.2f}" if k in results[n] else "—" for n in SIZES) + " |")
    checks = []
    if 50 in results:
        r = results[50]
        checks += [("RSS@50 MB", r["RSS MB"], "≤", 150), ("idle CPU@50 %", r["idle CPU %"], "≤", 1),
                   ("apply@50 s", r["apply from nothing s"], "≤", 2), ("no-op@50 s", r["no-op apply s"], "≤", 0.5)]
        if "back after SIGKILL s" in r:
            checks.append(("back@50 s", r["back after SIGKILL s"], "<", 2))
    if 500 in results:
        r = results[500]
        checks += [("RSS@500 MB", r["RSS MB"], "≤", 400), ("apply@500 s", r["apply from nothing s"], "≤", 10)]
    verdict("bench-hub", checks)


if __name__ == "__main__":
    main()
