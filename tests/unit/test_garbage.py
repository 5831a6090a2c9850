"""A `provision` command runs with the cyclic garbage collector off (cli.run): it may, because
a run makes no reference cycles that grow with the inventory. Loading used to: the loader's
recursive closure held the reader, and with it every document read (40 000 objects for 10 000
devices), and reparse's held the runs it found; with the collector off they stayed to the end."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from provisioner.reconcile import load


def inventory(n: int) -> str:
    lines = ["all:", "  children:", "    edge:", "      hosts:", "        h:", "          network:",
             "            devices:"]
    lines += [f"              - {{name: t{i}, type: tap, addresses: [10.{i // 250}.{i % 250}.1/32]}}" for i in range(n)]
    lines.append("            routes:")
    lines += [f"              - {{to: 172.{16 + i // 250}.{i % 250}.0/24, dev: t{i}}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def cycles_left_by_a_load(path: Path, cache_dir: Path) -> int:
    gc.collect()
    gc.disable()
    try:
        load(str(path), cache_dir=cache_dir)
        return gc.collect()
    finally:
        gc.enable()


def test_a_load_leaves_no_cycles_that_grow_with_the_inventory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    for n in (100, 2000):
        path = tmp_path / f"inv{n}.yaml"
        path.write_text(inventory(n))
        first = cycles_left_by_a_load(path, state / "cache")  # parsed, judged, kept
        again = cycles_left_by_a_load(path, state / "cache")  # from the cache
        assert first < 100 and again < 100, (n, first, again)


PROBE = """
import contextlib, gc, sys
import provisioner.cli as cli
import provisioner.pull.agent as agent

def look(*args):
    print("collector", "on" if gc.isenabled() else "off")
    return 0

class Agent:
    def __init__(self, *args): pass
    def locked(self): return contextlib.nullcontext()

cli.cmd_validate = look
agent.Agent, agent.loop = Agent, look
sys.argv = ["provision", *sys.argv[1:]]
cli.run()
"""


def test_a_command_runs_without_the_collector_and_the_pull_agent_with_it(tmp_path: Path) -> None:
    def collector(*args: str) -> str:
        out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=tmp_path,
                             timeout=60, env={**os.environ, "PROVISION_STATE_DIR": str(tmp_path / "state")})
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert collector("validate", "x.yaml") == "collector off"
    assert collector("pull", str(tmp_path / "repo")) == "collector on"  # it runs until it is stopped
