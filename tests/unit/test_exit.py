"""How a `provision` process starts (command.run: the collector off before anything is imported)
and ends (cli.run: without the interpreter freeing every object, but with the exit handlers
run, the output flushed, the exit code kept, and a living thread waited for)."""

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
    assert "from .command import run" in main and "run()" in main
    toml = (Path(provisioner.__file__).parent.parent / "pyproject.toml").read_text()
    assert 'provision = "provisioner.command:run"' in toml


COLLECTOR = """
import atexit, gc, re, sys
module, function = re.search(r'^provision = "([\\w.]+):(\\w+)"', open(sys.argv[1]).read(), re.M).groups()
sys.argv = ["provision", "validate", sys.argv[2]]
passes = []
atexit.register(lambda: print("collector passes:", len(passes), file=sys.stderr))
gc.collect()
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info["generation"]))
getattr(__import__(module, fromlist=[function]), function)()
"""


def test_the_collector_is_off_before_the_command_imports_anything(tmp_path: Path) -> None:
    """Importing the command made 17 passes of the collector (5 ms of a no-op plan) that freed
    nothing, before cli.run could turn it off: the console script's entry point turns it off first."""
    import compileall

    import provisioner

    package = Path(provisioner.__file__).parent
    compileall.compile_dir(package, quiet=1)  # as make setup does: compiling a module's source makes passes too
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    toml = package.parent / "pyproject.toml"
    r = subprocess.run([sys.executable, "-c", COLLECTOR, str(toml), "inv.yaml"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, env={**os.environ, "PROVISION_STATE_DIR": str(tmp_path / "state")})
    assert r.returncode == 0, r.stderr
    assert "collector passes: 0" in r.stderr, r.stderr
