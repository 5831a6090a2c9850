"""How a `provision` process ends (cli.run): without the interpreter freeing every object, but
with the exit handlers run, the output flushed, the exit code kept, and a living thread
waited for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUN = """
import atexit, sys, threading, time
atexit.register(lambda: print("exit handler ran"))
sys.argv = ["provision", *sys.argv[1:]]
if "--thread" in sys.argv:
    sys.argv.remove("--thread")
    threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished"))).start()
from provisioner.cli import run
print("buffered, not yet written", end="")
run()
"""


INVENTORY = "all:\n  hosts:\n    h1:\n      network: {devices: [{name: t0, type: tap}]}\n"


def provision(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
                                        "PROVISION_STATE_DIR": str(cwd / "state")})


def test_the_output_is_flushed_the_exit_handlers_run_and_the_exit_code_is_kept(tmp_path: Path) -> None:
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    ok = provision("validate", "inv.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("buffered, not yet written") and ok.stdout.rstrip().endswith("exit handler ran")
    bad = provision("validate", "nonexistent.yaml", cwd=tmp_path)
    assert bad.returncode == 1 and "cannot read inventory" in bad.stderr and "exit handler ran" in bad.stdout


def test_a_living_thread_is_waited_for(tmp_path: Path) -> None:
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    r = provision("validate", "inv.yaml", "--thread", cwd=tmp_path)
    assert r.returncode == 0 and "thread finished" in r.stdout and "exit handler ran" in r.stdout


def test_a_profiler_gets_to_write_its_figures(tmp_path: Path) -> None:
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    out = tmp_path / "run.prof"
    r = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "provisioner", "validate", "inv.yaml"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={**os.environ, "PROVISION_STATE_DIR": str(tmp_path / "state")})
    assert r.returncode == 0 and out.stat().st_size > 0, r.stderr


def test_the_module_and_the_console_script_end_through_run() -> None:
    import provisioner

    main = (Path(provisioner.__file__).parent / "__main__.py").read_text()
    assert "run()" in main
    toml = (Path(provisioner.__file__).parent.parent / "pyproject.toml").read_text()
    assert 'provision = "provisioner.cli:run"' in toml
