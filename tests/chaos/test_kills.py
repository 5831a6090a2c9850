"""SIGKILL of `apply` and of `pull` at random points of a 300-resource change: the next run
converges, no device is left without provision's owner mark (one the next run could not
tell from someone else's), no process is left in the namespace, and the agent's record is
always whole JSON naming one of the two commits."""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..integration.helpers import PROVISION, env_for, persistent, provision
from ..integration.test_pull import Repo
from .world import FULL, inventory, report, spread, unowned_links, write

KILLS = 20 if FULL else 5


def _kill_after(argv: list[str], env: dict[str, str], delay: float) -> float:
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    time.sleep(delay)
    p.kill()
    p.wait()
    return time.monotonic() - started


def _ns_processes(ns: str) -> list[str]:
    return subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()


def test_sigkill_of_apply_at_random_points(make_netns: Callable[[], str], tmp_path: Path) -> None:
    ns = make_netns()
    state = tmp_path / "state"
    versions = [write(tmp_path / f"v{v}.yaml", inventory(ns, v)) for v in (1, 2)]
    started = time.monotonic()
    provision("apply", str(versions[0]), state_dir=state, check_rc=0)
    provision("apply", str(versions[1]), state_dir=state, check_rc=0)
    whole = (time.monotonic() - started) / 2  # one apply, startup included: the window to kill in
    rng = random.Random(14)
    recoveries, points = [], []
    for i in range(KILLS):
        target = versions[i % 2]
        point = rng.uniform(0.1, whole)
        points.append(point)
        _kill_after([*PROVISION, "apply", str(target)], env_for(state), point)
        left = unowned_links(ns)
        t0 = time.monotonic()
        r = provision("apply", str(target), state_dir=state)
        recoveries.append(time.monotonic() - t0)
        assert r.rc == 0, f"kill {i} at {point:.2f} s: the next apply failed\n{r.out}\n{r.err}"
        assert not unowned_links(ns), f"kill {i} at {point:.2f} s left links nobody owns: {left}"
        assert not _ns_processes(ns)
    report(f"SIGKILL of `apply` (300 resources) at {KILLS} random points in its {whole:.1f} s", KILLS,
           "every next apply converged; no link without the owner mark, no process left", 
           f"next apply {spread(recoveries)}")


def test_sigkill_of_pull_at_random_points(make_netns: Callable[[], str], tmp_path: Path) -> None:
    ns = make_netns()
    state = tmp_path / "state"
    repo = Repo(tmp_path / "net", ns)
    commits = [repo.commit(inventory(ns, 1), "v1")]
    agent = [*PROVISION, "pull", str(repo.path), "--branch", "main", "--host", "edge", "--netns", ns,
             "--min-commit", commits[0]]
    provision(*agent[3:], state_dir=state, check_rc=0)
    rng = random.Random(41)
    whole, recoveries, landed = 0.0, [], 0
    for i in range(KILLS):
        commits.append(repo.commit(inventory(ns, 2 if i % 2 == 0 else 1), f"change {i}"))
        if not whole:  # measure one whole run of the agent on a change, then kill the others
            t0 = time.monotonic()
            provision(*agent[3:], state_dir=state, check_rc=0)
            whole = time.monotonic() - t0
            continue
        _kill_after(agent, env_for(state), rng.uniform(0.1, whole))
        (path,) = persistent(state).glob("pull/*/agent.json")
        saved = json.loads(path.read_text())  # whole JSON, never half a file
        assert saved["good"] in commits, saved
        landed += saved["good"] != commits[-1]
        t0 = time.monotonic()
        r = provision(*agent[3:], state_dir=state)
        recoveries.append(time.monotonic() - t0)
        assert r.rc == 0 and json.loads(path.read_text())["good"] == commits[-1], r.out + r.err
        assert not unowned_links(ns) and not _ns_processes(ns)
    assert landed, "no kill landed before the adoption was recorded"
    report(f"SIGKILL of `pull` at {KILLS - 1} random points of a run adopting a 300-resource change "
           f"({whole:.1f} s)", KILLS - 1,
           f"the record was whole JSON every time ({landed} kills landed before the adoption was recorded); "
           "every next run adopted the commit; nothing left unowned", f"next run {spread(recoveries)}")
