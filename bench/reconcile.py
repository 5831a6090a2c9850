"""`make bench`: provision against `ip -batch` on 1000 tap devices, in fresh namespaces.

Each figure is a whole `provision` process (start, imports, inventory, kernel), timed
from outside, median of several runs; peak memory is the process's max RSS (wait4).
Figures are noisy on a shared VM: compare within one run, which is what the ratios do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import medians, print_seconds

N = int(os.environ.get("BENCH_DEVICES", "1000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
PROVISION = [sys.executable, "-m", "provisioner"]
TARGETS = {  # from the issue: ratio limits
    "converge / ip -batch": 2.0,
    "no-op plan / ip -batch": 1.0,
    "one-change apply / no-op plan": 1.2,
}
MEMORY_LIMIT_MB = 150


def address(i: int) -> str:
    return f"10.{i // 250}.{i % 250}.1/32"


def route(i: int, gateway_metric: int = 0) -> str:
    return f"172.{16 + i // 250}.{i % 250}.0/24"


def inventory(ns: str, changed: bool = False) -> str:
    lines = ["all:", "  hosts:", "    bench:", "      ansible_connection: netns", f"      ansible_host: {ns}",
             "      network:", "        devices:"]
    lines += [f"          - {{name: bt{i}, type: tap, addresses: [{address(i)}]}}" for i in range(N)]
    lines.append("        routes:")
    for i in range(N):
        dev = f"bt{(i + 1) % N}" if (changed and i == N // 2) else f"bt{i}"
        lines.append(f"          - {{to: {route(i)}, dev: {dev}}}")
    return "\n".join(lines) + "\n"


def ip_batch() -> str:
    out = []
    for i in range(N):
        out += [f"tuntap add dev bt{i} mode tap", f"link set bt{i} up",
                f"addr add {address(i)} dev bt{i}", f"route add {route(i)} dev bt{i} proto 147"]
    return "\n".join(out) + "\n"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, output) of one whole process."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = p.stdout.read() if p.stdout else b""
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{out.decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, out.decode()


def netns(name: str) -> str:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the benchmark needs root (network namespaces)")
    work = Path(tempfile.mkdtemp(prefix="provision-bench-"))
    env = {**os.environ, "PROVISION_STATE_DIR": str(work / "state"), "NO_COLOR": "1"}
    (work / "batch.txt").write_text(ip_batch())
    inv, inv_changed = work / "bench.yaml", work / "bench-changed.yaml"
    results: dict[str, list[float]] = {k: [] for k in ("ip -batch", "converge", "no-op plan", "one-change apply")}
    memory = 0.0
    try:
        for round_ in range(REPEAT):
            ns_ip, ns_pv = netns("provision-bench-ip"), netns("provision-bench")
            inv.write_text(inventory(ns_pv))
            inv_changed.write_text(inventory(ns_pv, changed=True))
            results["ip -batch"].append(timed(["ip", "-n", ns_ip, "-batch", str(work / "batch.txt")])[0])
            t, mb, out = timed([*PROVISION, "apply", str(inv)], env)
            assert f"changed={3 * N}" in out, out[-500:]
            results["converge"].append(t)
            memory = max(memory, mb)
            t, mb, out = timed([*PROVISION, "plan", str(inv), "--detailed-exitcode"], env)
            assert "no changes" in out, out[-500:]
            results["no-op plan"].append(t)
            memory = max(memory, mb)
            t, mb, out = timed([*PROVISION, "apply", str(inv_changed)], env)
            assert "changed=1 " in out, out[-500:]
            results["one-change apply"].append(t)
            memory = max(memory, mb)
            for ns in (ns_ip, ns_pv):
                subprocess.run(["ip", "netns", "del", ns], check=True)
            print(f"round {round_ + 1}/{REPEAT}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in results.items()),
                  flush=True)
    finally:
        for ns in ("provision-bench-ip", "provision-bench"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    med = medians(results)
    print_seconds(f"{N} tap devices, each with one address and one route; median of {REPEAT} rounds", med)
    print(f"| peak memory (max RSS of a provision process) | {memory:.0f} MB |")
    ratios = {
        "converge / ip -batch": med["converge"] / med["ip -batch"],
        "no-op plan / ip -batch": med["no-op plan"] / med["ip -batch"],
        "one-change apply / no-op plan": med["one-change apply"] / med["no-op plan"],
    }
    print("\n| ratio | measured | target | |")
    print("|---|---|---|---|")
    ok = memory <= MEMORY_LIMIT_MB
    for k, v in ratios.items():
        good = v <= TARGETS[k]
        ok &= good
        print(f"| {k} | {v:.2f} | ≤ {TARGETS[k]} | {'met' if good else 'MISSED'} |")
    print(f"| peak memory | {memory:.0f} MB | ≤ {MEMORY_LIMIT_MB} MB | {'met' if memory <= MEMORY_LIMIT_MB else 'MISSED'} |")
    print("\nall targets met" if ok else "\nsome targets missed")


if __name__ == "__main__":
    main()
