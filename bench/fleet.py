"""`make bench-fleet`: one controller provisions 50 hosts (network namespaces), each with 20
tap devices, addresses and routes, with `--forks 1` and `--forks 8`, in one run.

Each figure is a whole `provision` process timed from outside (start, imports, the 50-host
inventory, every host), median of several rounds. Each round makes fresh namespaces, so a
converge starts from nothing. Compare the ratios: they come from the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOSTS = int(os.environ.get("BENCH_HOSTS", "50"))
DEVICES = int(os.environ.get("BENCH_DEVICES", "20"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
FORKS = tuple(int(f) for f in os.environ.get("BENCH_FORKS", "1,8").split(","))
PREFIX = "pfleet-"
PROVISION = [sys.executable, "-m", "provisioner"]


def inventory(hosts: int) -> str:
    lines = ["all:", "  hosts:"]
    for h in range(hosts):
        lines += [f"    fleet{h:02d}:", "      ansible_connection: netns", f"      ansible_host: {PREFIX}{h:02d}",
                  "      network:", "        devices:"]
        lines += [f"          - {{name: ft{i}, type: tap, addresses: [10.{h}.{i}.1/24]}}" for i in range(DEVICES)]
        lines.append("        routes:")
        lines += [f"          - {{to: 172.{16 + h // 50}.{(h % 50) * 5 + i // 4}.{(i % 4) * 64}/26, via: 10.{h}.{i}.2}}"
                  for i in range(DEVICES)]
    return "\n".join(lines) + "\n"


def timed(cmd: list[str], env: dict[str, str], expect: str) -> float:
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if p.returncode not in (0, 2) or expect not in p.stdout:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    return elapsed


def namespaces(action: str) -> None:
    for h in range(HOSTS):
        subprocess.run(["ip", "netns", "del", f"{PREFIX}{h:02d}"], capture_output=True)
        if action == "add":
            subprocess.run(["ip", "netns", "add", f"{PREFIX}{h:02d}"], check=True)


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the benchmark needs root (network namespaces)")
    work = Path(tempfile.mkdtemp(prefix="provision-bench-fleet-"))
    env = {**os.environ, "PROVISION_STATE_DIR": str(work / "state"), "NO_COLOR": "1"}
    fleet, one = work / "fleet.yaml", work / "one.yaml"
    fleet.write_text(inventory(HOSTS))
    one.write_text(inventory(1))
    results: dict[str, list[float]] = {}
    per_host = 3 * DEVICES
    try:
        for round_ in range(REPEAT):
            for forks in FORKS:
                namespaces("add")
                f = ["--forks", str(forks)] if forks != 1 else []
                results.setdefault(f"converge, forks {forks}", []).append(
                    timed([*PROVISION, "apply", str(fleet), *f], env, f"changed={per_host} "))
                results.setdefault(f"no-op plan, forks {forks}", []).append(
                    timed([*PROVISION, "plan", str(fleet), "--detailed-exitcode", *f], env, "no changes"))
            results.setdefault("no-op plan, one host", []).append(
                timed([*PROVISION, "plan", str(one), "--detailed-exitcode"], env, "no changes"))
            print(f"round {round_ + 1}/{REPEAT}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items()),
                  flush=True)
    finally:
        namespaces("del")
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n{HOSTS} hosts (network namespaces), each {DEVICES} taps with an address and a route; "
          f"median of {REPEAT} rounds, on {os.cpu_count()} cores\n")
    print("| what | seconds |")
    print("|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} |")
    checks = [
        ("converge: forks 8 / forks 1", med["converge, forks 8"] / med["converge, forks 1"], 0.6),
        ("no-op plan: forks 8 / forks 1", med["no-op plan, forks 8"] / med["no-op plan, forks 1"], 0.6),
        (f"no-op plan: {HOSTS} hosts (forks 8) / one host", med["no-op plan, forks 8"] / med["no-op plan, one host"],
         25.0),
        (f"no-op plan: {HOSTS} hosts (forks 1) / one host", med["no-op plan, forks 1"] / med["no-op plan, one host"],
         25.0),
    ]
    print("\n| ratio | measured | target | |")
    print("|---|---|---|---|")
    for name, value, target in checks:
        print(f"| {name} | {value:.2f} | ≤ {target:g} | {'met' if value <= target else '**missed**'} |")


if __name__ == "__main__":
    main()
