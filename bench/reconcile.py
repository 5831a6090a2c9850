"""`make bench`: provision against `ip -batch` on 1000 tap devices, in fresh namespaces.
`make bench-check` (CI): the same at 1000 devices, ratios only, against the targets plus a margin.

Each figure is a whole `provision` process (start, imports, inventory, kernel), timed from
outside, median of several rounds; peak memory is the process's max RSS (wait4). Every round
starts from nothing: fresh namespaces and a fresh state directory, so the converge and the
one-change apply read an inventory they have not seen (no cache), and the no-op plan reads
the one the converge just validated (the cache of cache.py), as in use. After the converge a
round times CHANGES pairs in turn: a no-op plan, then a one-change apply of an edit not seen
before (each moves another route to another device), put back untimed. The one-change ratio is
the median of each apply's time over the no-op plan's just before it: the two are timed in the
same second, where the medians of each alone came from different minutes whenever the machine
changed speed within a run (a run whose no-op plans took 57-93 ms read 1.27 from its medians).
Each converge, `ip -batch`'s and provision's, starts from the same kernel: one that holds
nothing of the other's, right after N devices were freed at once (deleted as one link group,
their namespace with them) and a pause for the kernel to finish. What the kernel freed or still
holds moves a converge by a third at 10 000 devices (it reuses freed memory, or allocates and
clears new pages): docs/performance.md, the twenty-first round.
Figures are noisy on a shared VM: compare within one run, which is what the ratios do, each
the median of its rounds.

BENCH_DEVICES (1000), BENCH_REPEAT (5), BENCH_CHANGES (3); BENCH_LARGE=10000 also runs at that size (with
BENCH_LARGE_REPEAT rounds, 1) and checks that each figure grows at most linearly.
`--check MARGIN` (a fraction): only the ratios against GUARD and one PASS/FAIL line, exit 1 on FAIL.
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

N = int(os.environ.get("BENCH_DEVICES", "1000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
CHANGES = int(os.environ.get("BENCH_CHANGES", "3"))  # (no-op plan, one-change apply) pairs a round
LARGE = int(os.environ.get("BENCH_LARGE", "0"))
LARGE_REPEAT = int(os.environ.get("BENCH_LARGE_REPEAT", "1"))
# the `provision` command, as people run it (and ../shared/bench-reconcile.sh): `python -m provisioner`
# costs 5-7 ms more of each run (runpy, importlib.util)
PROVISION = [str(Path(sys.executable).with_name("provision"))]
TARGETS = {  # from issue 15: ratio limits, each within one run
    "converge / ip -batch": 1.5,
    "no-op plan / ip -batch": 0.5,
    "one-change apply / no-op plan": 1.1,
    "destroy / ip -batch delete": 1.5,
}
# The regression guard (make bench-check, in CI): not the targets, which this code does not all
# meet yet (docs/performance.md), but what it reaches on the 2-core CI machine; a ratio fails only
# when it passes its limit here by more than the margin (BENCH_MARGIN, 0.5 in CI), so at 3.75, 1.5
# and 2.25. The limits must hold in both states this machine's kernel is found in: on a freshly
# booted machine `ip -batch` takes 0.13-0.3 s and the no-op plan is 0.6-1.2 of it (medians of 5
# rounds, 2026-12-02 20:15-20:35); on a boot some hours old it took 0.5-0.6 s and the same
# code's no-op plan was 0.3-0.5 of it. The limits of the fourth round (2.0, 0.6, 1.5)
# came from the slow state and failed 9 of 29 runs in the fast one. The slide that issue 15 found
# (no-op plan 2.3x) fails here from the fast state, not from the slow one: docs/performance.md.
GUARD = {  # the worst of 24 fast-state runs (docs/performance.md): 2.96, 1.20, 1.29
    "converge / ip -batch": 2.5,
    "no-op plan / ip -batch": 1.0,
    "one-change apply / no-op plan": 1.5,
    # CPU time, against the interpreter starting and importing the standard library a no-op plan
    # imports (PYTHON_START): both move with the machine's speed and little with the kernel's
    # state, so a slide of provision's own work fails here in either. 2.12-2.54 in ten runs
    # across both states in the eighth round (limit 2.2); 1.72-2.23 in ten runs in a row once the
    # dataclasses' methods were compiled at install (the tenth round), so 1.9: it fails at 2.85,
    # 1.28-1.66 times what this code measures (docs/performance.md).
    "no-op plan / python start (CPU)": 1.9,
}
# The standard-library modules a no-op plan imported in the eleventh round (sys.modules after one,
# top-level names). Kept as the yardstick it was calibrated with: since the twelfth round a plan
# imports dataclasses without inspect (and so without ast, dis, linecache, opcode, string, token,
# tokenize), which this still imports, so the fourth ratio came down (docs/performance.md).
PYTHON_START = [sys.executable, "-c", "import argparse, array, ast, base64, binascii, collections, contextlib, copy, "
                "dataclasses, dis, enum, errno, fcntl, fnmatch, functools, gc, gettext, grp, hashlib, hmac, "
                "importlib, inspect, ipaddress, itertools, json, keyword, linecache, locale, math, opcode, "
                "operator, pathlib, pwd, re, reprlib, select, selectors, socket, string, struct, token, tokenize, "
                "types, typing, urllib.parse, warnings, weakref"]
MEMORY_LIMIT_MB = 100
LINEAR = 11  # a figure at 10x the devices may cost at most 11x
NS_IP, NS_PV = "provision-bench-ip", "provision-bench"
GROUP = 4021  # the link group a round's devices are deleted as, at once (freed)


def address(i: int) -> str:
    return f"10.{i // 250 % 250}.{i % 250}.1/32" if i < 62500 else f"fd00:1::{i:x}/128"


def route(i: int) -> str:
    return f"172.{16 + i // 250 % 250}.{i % 250}.0/24" if i < 62500 else f"fd00:2:{i:x}::/64"


def inventory(n: int, ns: str, moved: int | None = None) -> str:
    """`moved`: the index of a route moved to the next device (a one-change edit)."""
    lines = ["all:", "  hosts:", "    bench:", "      ansible_connection: netns", f"      ansible_host: {ns}",
             "      network:", "        devices:"]
    lines += [f"          - {{name: bt{i}, type: tap, addresses: [{address(i)}]}}" for i in range(n)]
    lines.append("        routes:")
    for i in range(n):
        dev = f"bt{(i + 1) % n}" if i == moved else f"bt{i}"
        lines.append(f"          - {{to: {route(i)}, dev: {dev}}}")
    return "\n".join(lines) + "\n"


def ip_batch(n: int) -> str:
    out = []
    for i in range(n):
        out += [f"tuntap add dev bt{i} mode tap", f"link set bt{i} up",
                f"addr add {address(i)} dev bt{i}", f"route add {route(i)} dev bt{i} proto 147"]
    return "\n".join(out) + "\n"


def ip_batch_delete(n: int) -> str:
    return "".join(f"link del bt{i}\n" for i in range(n))


def timed(cmd: list[str], env: dict[str, str] | None = None, expect: str = "") -> tuple[float, float, float]:
    """(seconds, peak RSS in MB, CPU seconds) of one whole process, which must succeed and say `expect`."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    out = p.stdout.read() if p.stdout else b""
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    text = out.decode(errors="replace")
    if code not in (0, 2) or expect not in text:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}), wanted {expect!r}:\n{text[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def netns(name: str) -> str:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


def freed(ns: str, n: int, work: Path) -> None:
    """The namespace's devices deleted at once, as one link group (the way provision's destroy
    deletes them), then the namespace, and time for the kernel to finish. Each converge starts
    here, the same for both tools: one that began with the other tool's 10 000 devices still
    held took 3.3-3.7 s instead of 2.3-2.8 s (the kernel allocated new memory where it would have
    reused what it had freed); a namespace deleted with its devices is freed in the background,
    holding the lock every link change takes (an `ip -batch` that ran beside it took 0.77-1.0 s
    instead of 0.5); 1 s per 1000 devices lets the kernel finish (measured)."""
    subprocess.run(["ip", "-n", ns, "-force", "-batch", str(work / "group.txt")], capture_output=True)
    subprocess.run(["ip", "-n", ns, "link", "del", "group", str(GROUP)], capture_output=True)
    subprocess.run(["ip", "netns", "del", ns], check=True)
    time.sleep(max(1.0, n / 1000))


def fresh_start(n: int, work: Path) -> None:
    """The state later rounds start from, for the first: N devices made and freed at once."""
    netns(NS_IP)
    subprocess.run(["ip", "-n", NS_IP, "-batch", str(work / "batch.txt")], check=True, capture_output=True)
    freed(NS_IP, n, work)


def rounds(n: int, repeat: int, work: Path, say: bool,
           destroy: bool = True) -> tuple[dict[str, float], float, float]:
    """Medians of each figure over `repeat` rounds at `n` devices, CHANGES of the no-op plan and
    of the one-change apply a round (and of the CPU time of the no-op plan and of PYTHON_START,
    as "... CPU"); the median of each one-change apply over the no-op plan just before it; the
    peak RSS. Without `destroy` the two deletions are left out (CI: a tap's deletion waits for
    an RCU grace period, so on a loaded machine they are most of a round)."""
    (work / "batch.txt").write_text(ip_batch(n))
    (work / "delete.txt").write_text(ip_batch_delete(n))
    (work / "group.txt").write_text("".join(f"link set bt{i} group {GROUP}\n" for i in range(n)))
    inv = work / "bench.yaml"
    inv.write_text(inventory(n, NS_PV))
    edits = [work / f"bench-changed-{k}.yaml" for k in range(CHANGES)]
    for k, edit in enumerate(edits):
        edit.write_text(inventory(n, NS_PV, moved=(n // 2 + k) % n))
    names = ("ip -batch", "converge", "no-op plan", "one-change apply") + (
        ("ip -batch delete", "destroy") if destroy else ())
    results: dict[str, list[float]] = {k: [] for k in (*names, "no-op plan CPU", "python start CPU")}
    pairs: list[float] = []  # each one-change apply over the no-op plan just before it
    memory = 0.0
    for round_ in range(repeat):
        state = work / "state"
        shutil.rmtree(state, ignore_errors=True)
        env = {**os.environ, "PROVISION_STATE_DIR": str(state), "NO_COLOR": "1"}
        if round_ == 0:  # the state every later round starts from (the last round's devices freed at once)
            fresh_start(n, work)
        netns(NS_IP), netns(NS_PV)
        ip_steps = [("ip -batch", ["ip", "-n", NS_IP, "-batch", str(work / "batch.txt")], "")]
        if destroy:  # deleted one by one, as ip does; then made again, to be freed at once below
            ip_steps += [("ip -batch delete", ["ip", "-n", NS_IP, "-batch", str(work / "delete.txt")], ""),
                         ("", ["ip", "-n", NS_IP, "-batch", str(work / "batch.txt")], "")]
        provision_steps = [("converge", [*PROVISION, "apply", str(inv)], f"changed={3 * n}")]
        for edit in edits:
            provision_steps += [("no-op plan", [*PROVISION, "plan", str(inv), "--detailed-exitcode"], "no changes"),
                                ("one-change apply", [*PROVISION, "apply", str(edit)], "changed=1 "),
                                ("", [*PROVISION, "apply", str(inv)], "changed=1 ")]  # put back
        provision_steps += [("destroy", [*PROVISION, "destroy", str(inv)], " failed=0")] if destroy else []
        for tool, ns in ((ip_steps, NS_IP), (provision_steps, NS_PV)):  # one after the other, apart
            for what, cmd, expect in tool:
                seconds, mb, cpu = timed(cmd, env, expect)
                if not what:  # not measured
                    continue
                results[what].append(seconds)
                if what == "one-change apply":
                    pairs.append(seconds / results["no-op plan"][-1])
                if cmd[0] != "ip":
                    memory = max(memory, mb)
                if what == "no-op plan":
                    results["no-op plan CPU"].append(cpu)
                    results["python start CPU"].append(timed(PYTHON_START, env)[2])  # right after: the same state
            freed(ns, n, work)
        if say:
            print(f"{n} devices, round {round_ + 1}/{repeat}: "
                  + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in results.items()), flush=True)
    return medians(results), statistics.median(pairs), memory


def ratios(med: dict[str, float], pairs: float) -> dict[str, float]:
    """`pairs`: the median of each one-change apply over the no-op plan just before it."""
    out = {
        "converge / ip -batch": med["converge"] / med["ip -batch"],
        "no-op plan / ip -batch": med["no-op plan"] / med["ip -batch"],
        "one-change apply / no-op plan": pairs,
        "no-op plan / python start (CPU)": med["no-op plan CPU"] / med["python start CPU"],
    }
    if "destroy" in med:
        out["destroy / ip -batch delete"] = med["destroy"] / med["ip -batch delete"]
    return out


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the benchmark needs root (network namespaces)")
    margin = float(sys.argv[sys.argv.index("--check") + 1]) if "--check" in sys.argv else None
    work = Path(tempfile.mkdtemp(prefix="provision-bench-"))
    try:
        med, pairs, memory = rounds(N, REPEAT, work, say=margin is None, destroy=margin is None)
        large = rounds(LARGE, LARGE_REPEAT, work, say=True) if LARGE and margin is None else None
    finally:
        for ns in (NS_IP, NS_PV):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    measured = ratios(med, pairs)
    checks = [(k, v, "≤", TARGETS[k]) for k, v in measured.items() if k in TARGETS]
    if margin is not None:  # CI: ratios only (memory is checked by make bench)
        guarded = [(f"{k} (target {TARGETS[k]:g})" if k in TARGETS else k, v, "≤", GUARD[k])
                   for k, v in measured.items()]
        # the state the kernel was in (see GUARD): what the ratios are to
        ok = verdict(f"bench-check, {N} devices, median of {REPEAT} rounds ({CHANGES} no-op plans and one-change "
                     f"applies each), ip -batch {med['ip -batch']:.2f} s",
                     guarded, margin)
        raise SystemExit(0 if ok else 1)
    print_seconds(f"{N} tap devices, each with one address and one route; median of {REPEAT} rounds "
                  f"({CHANGES} no-op plans and one-change applies each)", med)
    print(f"| peak memory (max RSS of a provision process) | {memory:.0f} MB |")
    print(f"\none-change apply / no-op plan: {pairs:.2f}, the median of each apply over the no-op plan just before "
          f"it ({med['one-change apply'] / med['no-op plan']:.2f} from the medians above)")
    key = "no-op plan / python start (CPU)"
    print(f"\n{key}: {measured[key]:.2f} (not a target: make bench-check's guard, ≤ {GUARD[key]:g} with its margin)")
    checks.append((f"peak memory at {N} (MB)", memory, "≤", MEMORY_LIMIT_MB))
    if large is not None:
        lmed, lpairs, lmemory = large
        print_seconds(f"{LARGE} tap devices; median of {LARGE_REPEAT} rounds", lmed)
        print(f"| peak memory (max RSS of a provision process) | {lmemory:.0f} MB |")
        scale = LARGE / N
        checks += [(f"{k} at {LARGE}", v, "≤", TARGETS[k]) for k, v in ratios(lmed, lpairs).items() if k in TARGETS]
        checks += [(f"{k} at {LARGE} / at {N}", lmed[k] / med[k], "≤", LINEAR * scale / 10)
                   for k in ("converge", "no-op plan", "one-change apply", "destroy")]
    print("\n| check | measured | target | |")
    print("|---|---|---|---|")
    for what, value, op, target in checks:
        print(f"| {what} | {value:.2f} | {op} {target:g} | {'met' if value <= target else 'MISSED'} |")
    print()
    if not verdict("bench-reconcile", checks):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
