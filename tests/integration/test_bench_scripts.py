"""The benchmarks as `make bench-fleet` runs them, at a tiny size: they leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, _delete_namespace


def test_the_fleet_benchmark_leaves_no_directory_and_no_namespace(tmp_path: Path) -> None:
    """bench/fleet.py made its work directory (the inventories, a state directory with its
    cache) and never removed it: 18 of them in /tmp after a day of `make bench-fleet`."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    prefix = f"pbt{os.getpid() % 100000}-"
    env = os.environ | {"TMPDIR": str(tmp), "BENCH_HOSTS": "2", "BENCH_DEVICES": "2", "BENCH_REPEAT": "1",
                        "BENCH_CONTAINERS": "0", "BENCH_PREFIX": prefix}
    try:
        p = subprocess.run([sys.executable, str(ROOT / "bench" / "fleet.py")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
        assert "| ratio | measured | target |" in p.stdout, p.stdout + p.stderr  # it ran (its ratios may miss)
        assert not list(tmp.iterdir()), f"left {sorted(x.name for x in tmp.iterdir())}"
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert prefix not in namespaces, namespaces
    finally:
        for h in range(2):
            _delete_namespace(f"{prefix}{h:02d}")
