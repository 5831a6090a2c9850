"""`make bench-fleet`: one controller provisions 50 hosts (network namespaces), each with 20
tap devices, addresses and routes, with `--forks 1` and `--forks 8`, in one run.

Each figure is a whole `provision` process timed from outside (start, imports, the 50-host
inventory, every host), median of several rounds. Each round makes fresh namespaces, so a
converge starts from nothing. After each converge the fleet's no-op plan and one host's are
timed in turn, PLANS times; the fleet's ratio to one host is the median of each fleet plan over
the one-host plan right after it, the two timed in the same moment of the machine (the kernel
still freeing the namespaces a round deleted, say). Compare the ratios: they come from the same run.

Then the same on containers (docker hosts, BENCH_CONTAINERS of them, 0 to skip), where a
host's work is a `provision` run inside its container: what forks are for.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import medians, print_seconds, verdict

HOSTS = int(os.environ.get("BENCH_HOSTS", "50"))
DEVICES = int(os.environ.get("BENCH_DEVICES", "20"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
PLANS = int(os.environ.get("BENCH_PLANS", "3"))  # no-op plans of the fleet and of one host, in turn, a converge
FORKS = tuple(int(f) for f in os.environ.get("BENCH_FORKS", "1,8").split(","))
CONTAINERS = int(os.environ.get("BENCH_CONTAINERS", "8"))
PREFIX = os.environ.get("BENCH_PREFIX", "pfleet-")  # of the namespaces it makes (a test gives its own)
# the `provision` command, as people run it (and ../shared/bench-reconcile.sh): `python -m provisioner`
# costs 5-7 ms more of each run (runpy, importlib.util)
PROVISION = [str(Path(sys.executable).with_name("provision"))]


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


def docker_inventory(names: list[str]) -> str:
    lines = ["all:", "  hosts:"]
    for h, name in enumerate(names):
        lines += [f"    {name}:", "      ansible_connection: docker", f"      ansible_host: {name}",
                  "      network:", "        devices:"]
        lines += [f"          - {{name: ft{i}, type: tap, addresses: [10.{h}.{i}.1/24]}}" for i in range(5)]
    return "\n".join(lines) + "\n"


def containers(work: Path, env: dict[str, str]) -> dict[str, list[float]]:
    """Converge and no-op plan of CONTAINERS docker hosts, forks 1 and 8 (destroy between rounds)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.docker import provide

    client = provide.engine()
    image = provide.project_image(client, provide.base_image(client))
    names = [f"pfleet-c{i}" for i in range(CONTAINERS)]
    inv = work / "containers.yaml"
    inv.write_text(docker_inventory(names))
    net = client.networks.create("pfleet-bench", labels={"provision-bench": "1"})
    made = []
    results: dict[str, list[float]] = {}
    try:
        for name in names:
            made.append(client.containers.run(image, name=name, detach=True, network=net.name, init=True,
                                              cap_add=["NET_ADMIN"], devices=["/dev/net/tun"], tmpfs={"/run": ""},
                                              labels={"provision-bench": "1"}))
        for _ in range(REPEAT):
            for forks in FORKS:
                f = ["--forks", str(forks)]
                results.setdefault(f"converge, forks {forks}", []).append(
                    timed([*PROVISION, "apply", str(inv), *f], env, "changed=10 "))
                results.setdefault(f"no-op plan, forks {forks}", []).append(
                    timed([*PROVISION, "plan", str(inv), "--detailed-exitcode", *f], env, "no changes"))
                timed([*PROVISION, "destroy", str(inv), *f], env, "RECAP")
    finally:
        for c in made:
            c.remove(force=True)
        net.remove()
    return results


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
    try:
        fleet_ok = measure(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not fleet_ok:
        raise SystemExit(1)


def measure(work: Path) -> bool:
    """The figures, printed, in `work`; whether the fleet's ratios were met."""
    env = {**os.environ, "PROVISION_STATE_DIR": str(work / "state"), "NO_COLOR": "1"}
    fleet, one = work / "fleet.yaml", work / "one.yaml"
    fleet.write_text(inventory(HOSTS))
    one.write_text(inventory(1))
    results: dict[str, list[float]] = {}
    pairs: dict[int, list[float]] = {forks: [] for forks in FORKS}  # each fleet plan over the one-host plan after it
    per_host = 3 * DEVICES
    try:
        for round_ in range(REPEAT):
            for forks in FORKS:
                namespaces("add")
                f = ["--forks", str(forks)] if forks != 1 else []
                results.setdefault(f"converge, forks {forks}", []).append(
                    timed([*PROVISION, "apply", str(fleet), *f], env, f"changed={per_host} "))
                if round_ == 0 and forks == FORKS[0]:  # its first plan reads a text not seen before (cache.py)
                    timed([*PROVISION, "plan", str(one), "--detailed-exitcode"], env, "no changes")
                for _ in range(PLANS):
                    many = timed([*PROVISION, "plan", str(fleet), "--detailed-exitcode", *f], env, "no changes")
                    single = timed([*PROVISION, "plan", str(one), "--detailed-exitcode"], env, "no changes")
                    results.setdefault(f"no-op plan, forks {forks}", []).append(many)
                    results.setdefault("no-op plan, one host", []).append(single)
                    pairs[forks].append(many / single)
            print(f"round {round_ + 1}/{REPEAT}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items()),
                  flush=True)
    finally:
        namespaces("del")
    med = medians(results)
    print_seconds(f"{HOSTS} hosts (network namespaces), each {DEVICES} taps with an address and a route; "
                  f"median of {REPEAT} rounds ({PLANS} no-op plans each a converge), on {os.cpu_count()} cores", med)
    checks = [(name, med[a] / med[b], target) for name, a, b, target in (
        ("converge: forks 8 / forks 1", "converge, forks 8", "converge, forks 1", 0.6),
        ("no-op plan: forks 8 / forks 1", "no-op plan, forks 8", "no-op plan, forks 1", 0.6),
    ) if a in med and b in med]  # BENCH_FORKS=1: the ratios of what was measured
    checks += [(f"no-op plan: {HOSTS} hosts (forks {forks}) / one host", statistics.median(pairs[forks]), 2.0)
               for forks in sorted(FORKS, reverse=True)]  # issue 15: forks 1
    print("\n| ratio | measured | target | |")
    print("|---|---|---|---|")
    for name, value, target in checks:
        print(f"| {name} | {value:.2f} | ≤ {target:g} | {'met' if value <= target else '**missed**'} |")
    print()
    fleet_ok = verdict("bench-fleet", [(name, value, "≤", target) for name, value, target in checks])
    if CONTAINERS:
        try:
            found = containers(work, env)
        except Exception as exc:  # the engine or the image: the netns figures above stand alone
            print(f"\ncontainers skipped: {type(exc).__name__}: {exc}")
            return fleet_ok
        med = medians(found)
        print_seconds(f"{CONTAINERS} containers (docker hosts), each 5 taps with an address; "
                      f"median of {REPEAT} rounds", med)
        for what in ("converge", "no-op plan"):
            print(f"| {what}: forks 8 / forks 1 | {med[f'{what}, forks 8'] / med[f'{what}, forks 1']:.2f} |")
    return fleet_ok


if __name__ == "__main__":
    main()
