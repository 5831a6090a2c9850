"""Run the fuzz targets with atheris (libFuzzer, coverage-guided), each for a bounded time.

    python -m tests.fuzz.run --seconds 60            every target (what `make fuzz` does)
    python -m tests.fuzz.run --seconds 5 peer macs   some of them

Each target runs in its own process (libFuzzer owns the process and exits on a crash). A crash
is kept as tests/fuzz/crashes/TARGET/crash-SHA1, which tests/fuzz/test_fuzz.py replays on every
`make test` from then on: the fix makes it pass, and it stays as the regression test.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CRASHES = HERE / "crashes"


def fuzz_one(name: str, seconds: int) -> None:
    """In this process: instrument provisioner, then hand the target to libFuzzer (never returns)."""
    import atheris

    with atheris.instrument_imports(include=["provisioner"]):
        from tests.fuzz import targets
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    for i, seed in enumerate(targets.SEEDS.get(name, [])):
        (corpus / f"seed{i}").write_bytes(seed)
    (CRASHES / name).mkdir(parents=True, exist_ok=True)
    args = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
            f"-artifact_prefix={CRASHES / name}/", "-print_final_stats=1"]
    try:
        atheris.Setup(args, targets.TARGETS[name])
        atheris.Fuzz()
    finally:
        shutil.rmtree(corpus, ignore_errors=True)


def run(names: list[str], seconds: int) -> dict[str, int]:
    """Each target in a child process; its exit code (0: no crash within the time)."""
    out = {}
    for name in names:
        print(f"== fuzz {name} for {seconds} s", flush=True)
        p = subprocess.run([sys.executable, "-m", "tests.fuzz.run", "--one", name, "--seconds", str(seconds)],
                           cwd=ROOT, timeout=seconds + 120)
        out[name] = p.returncode
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("targets", nargs="*")
    args = parser.parse_args()
    if args.one:
        fuzz_one(args.one, args.seconds)
        return 0
    from tests.fuzz.targets import TARGETS

    results = run(args.targets or list(TARGETS), args.seconds)
    failed = {n: rc for n, rc in results.items() if rc}
    for name, rc in results.items():
        verdict = f"CRASH (exit {rc}): input kept in tests/fuzz/crashes/{name}/" if rc else "ok"
        print(f"{name:15} {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
