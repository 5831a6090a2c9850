"""Races: the pull agent (every 0.3 s), a manual `apply` and a `destroy` on one host at once,
again and again. No run hangs, each ends with a clean result or a clear lock message, and
whenever nobody holds the host's lock the kernel is exactly one of the three: the agent's
commit, the manual inventory, or nothing."""

from __future__ import annotations

import fcntl
import json
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..integration.helpers import PROVISION, env_for, wait_for
from ..integration.test_pull import Repo
from .world import FULL, inventory, report, spread, write

ROUNDS = 50 if FULL else 6
LOCKED = re.compile(r"another provision run \(pid \d+\) still holds the lock|another pull agent")
AGENT_RUN = re.compile(r"^provision pull: (ok|NOT OK):", re.M)


def shape(ns: str) -> tuple:
    """What tells the three states apart: the ch* links with their MTU and addresses."""
    links = json.loads(subprocess.run(["ip", "-n", ns, "-j", "addr", "show"], check=True,
                                      capture_output=True).stdout)
    return tuple(sorted((link["ifname"], link["mtu"], tuple(sorted(a["local"] for a in link.get("addr_info", ())
                                                                    if a["family"] == "inet")))
                        for link in links if link["ifname"].startswith("ch")))


def test_pull_apply_and_destroy_race(make_netns: Callable[[], str], tmp_path: Path) -> None:
    ns = make_netns()
    state = tmp_path / "state"
    manual = write(tmp_path / "manual.yaml", inventory(ns, 2, taps=60))
    repo = Repo(tmp_path / "net", ns)
    commit = repo.commit(inventory(ns, 1), "the agent's")
    log = tmp_path / "agent.log"  # a file: a pipe nobody reads would block the agent in a print, lock held
    agent = subprocess.Popen([*PROVISION, "pull", str(repo.path), "--branch", "main", "--host", "edge", "--netns", ns,
                              "--min-commit", commit, "--interval", "0.3", "--lock-timeout", "0.5"],
                             env=env_for(state), stdout=log.open("w"), stderr=subprocess.STDOUT)
    lock = state / "locks" / f"netns-{ns}.lock"  # the machine's lock, named by its identity
    shapes: dict[str, tuple] = {}
    try:
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while not lock.exists() or not shapes.get("agent"):  # the agent's commit applied once: its shape
            assert time.monotonic() < deadline and agent.poll() is None, "the agent did not start"
            time.sleep(0.2)
            with open(lock) if lock.exists() else open("/dev/null") as held:
                if lock.exists():
                    fcntl.flock(held, fcntl.LOCK_EX)
                    if shape(ns):
                        shapes["agent"] = shape(ns)
        rng = random.Random(7)
        durations, outcomes = [], {"clean": 0, "lock message": 0}
        for i in range(ROUNDS):
            runs = [(["apply", str(manual), "--take-over", "--lock-timeout", f"{rng.uniform(0, 2):.2f}"], "manual"),
                    (["destroy", str(manual), "--take-over", "--lock-timeout", f"{rng.uniform(0, 2):.2f}"],
                     "nothing")]
            rng.shuffle(runs)
            started = time.monotonic()
            procs = []
            for argv, _ in runs:
                procs.append(subprocess.Popen([*PROVISION, *argv], env=env_for(state), stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
                time.sleep(rng.uniform(0, 0.3))
            for p, (argv, _) in zip(procs, runs, strict=True):
                out, err = p.communicate(timeout=120)  # no deadlock: every run ends
                if p.returncode == 0:
                    outcomes["clean"] += 1
                    continue
                assert LOCKED.search(out + err), f"round {i}: {argv[0]} failed without a lock message:\n{out}\n{err}"
                outcomes["lock message"] += 1
            durations.append(time.monotonic() - started)
            with open(lock) as held:  # nobody else changes the host now
                fcntl.flock(held, fcntl.LOCK_EX)
                now = shape(ns)
                if "manual" not in shapes and len(now) == 60:
                    shapes["manual"] = now
                state_is = [name for name, s in {**shapes, "nothing": ()}.items() if s == now]
                assert len(state_is) == 1, f"round {i}: the kernel is none of the inventories: {now[:3]}…"
                seen[state_is[0]] = seen.get(state_is[0], 0) + 1
        assert agent.poll() is None, "the agent died"
        # and it goes on: a round took 1-2 s while destroy deleted its 60 links one by one, and the
        # agent ran more often than the rounds within them; as a group (0.5 s a round) it need not have
        wait_for(f"more than {ROUNDS} agent runs", lambda: len(AGENT_RUN.findall(log.read_text())) > ROUNDS, 60)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)
        tail = log.read_text()
    assert agent.returncode in (0, 1) and tail.rstrip().endswith("stopped"), tail[-2000:]
    agent_runs = len(AGENT_RUN.findall(tail))
    assert agent_runs > ROUNDS, "the agent kept running"
    report(f"races: pull agent (every 0.3 s) + `apply` + `destroy` at once, {ROUNDS} rounds", ROUNDS * 2 + agent_runs,
           f"no run hung; {outcomes['clean']} manual runs clean, {outcomes['lock message']} ended with the lock "
           f"message; {agent_runs} agent runs; between rounds the kernel was exactly one inventory "
           f"({', '.join(f'{k} {v}×' for k, v in sorted(seen.items()))})",
           f"round {spread(durations)}")
