"""Run the fuzz targets with atheris (libFuzzer, coverage-guided), each for a bounded time.

    python -m tests.fuzz.run --seconds 60            every target (what `make fuzz` does)
    python -m tests.fuzz.run --seconds 5 peer macs   some of them
    python -m tests.fuzz.run --seconds 60 --asan     every target, then those that reach the C
                                                     extensions (targets.NATIVE) again, against
                                                     builds of them with AddressSanitizer and UBSan

Under ASan the runtime is preloaded (Python is not built with it), and it brings coverage hooks
of its own that blind atheris's: libFuzzer there can mutate but not tell a new path. So the
sanitized pass starts from the corpus the guided pass of the same target grew (every input that
reached new code), replays all of it, then goes on mutating it for the same time.

Each target runs in its own process (libFuzzer owns the process and exits on a crash). A crash
is kept as tests/fuzz/crashes/TARGET/crash-SHA1, which tests/fuzz/test_fuzz.py replays on every
`make test` from then on: the fix makes it pass, and it stays as the regression test.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CRASHES = HERE / "crashes"
EXTENSIONS = {  # module: (source, libraries), as setup.py builds them
    "provisioner.tunnel._fastpath": (ROOT / "provisioner" / "tunnel" / "_fastpath.c", ["-lcrypto"]),
    "provisioner.kernel._rtattr": (ROOT / "provisioner" / "kernel" / "_rtattr.c", []),
    "provisioner.kernel._readahead": (ROOT / "provisioner" / "kernel" / "_readahead.c", ["-pthread"]),
}
ASAN_SO = "PROVISION_FUZZ_ASAN_SO"  # set in a child: a directory holding MODULE.so for each extension
WORK = "PROVISION_FUZZ_WORK"  # set in a child of `one`: the directory it may write in (targets.py too)


def build_asan(into: Path) -> Path:
    """A second copy of each extension with AddressSanitizer and UBSan (any UB aborts), warnings as
    errors as in setup.py; gcc's, since that is the compiler the machine has. Returns their directory."""
    for module, (source, libraries) in EXTENSIONS.items():
        subprocess.run(["gcc", "-shared", "-fPIC", "-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
                        "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
                        f"-I{sysconfig.get_paths()['include']}", str(source), *libraries,
                        "-o", str(into / f"{module}.so")], check=True)
    return into


def asan_env(so: Path) -> dict[str, str]:
    """The environment a child needs to run Python with the sanitized extension: the runtime
    preloaded (Python itself is not built with it), leaks not reported (Python keeps its objects
    at exit), and Python's allocator off so every buffer is its own malloc that ASan guards."""
    runtime = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True,
                             check=True).stdout.strip()
    return os.environ | {"LD_PRELOAD": runtime, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
                         "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1", "PYTHONMALLOC": "malloc",
                         ASAN_SO: str(so)}


def load_asan_extension() -> None:
    """In a child of --asan: the sanitized builds stand in for the extensions before anything imports them."""
    directory = os.environ.get(ASAN_SO)
    if not directory:
        return
    for name in EXTENSIONS:
        spec = importlib.util.spec_from_file_location(name, Path(directory) / f"{name}.so")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module


def fuzz_one(name: str, seconds: int, work: Path, keep: Path | None = None) -> None:
    """In this process: instrument provisioner, then hand the target to libFuzzer (never returns:
    libFuzzer ends the process with exit(), past every `finally`, so whatever it writes goes in
    `work`, which the parent made and deletes). The corpus is `keep` (left there for a later pass)
    or a directory in `work`."""
    import atheris

    load_asan_extension()

    with atheris.instrument_imports(include=["provisioner"]):
        from tests.fuzz import targets
    corpus = keep or work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    # the seeds, and every crash once found: under ASan (a fault the plain build survives, such
    # as memcpy given NULL for nothing) each is tried again at the start of every pass
    kept = [p.read_bytes() for p in sorted((CRASHES / name).glob("*")) if p.is_file()]
    for i, seed in enumerate([*targets.SEEDS.get(name, []), *kept]):
        (corpus / f"seed{i}").write_bytes(seed)
    (CRASHES / name).mkdir(parents=True, exist_ok=True)
    args = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
            f"-artifact_prefix={CRASHES / name}/", "-print_final_stats=1"]
    atheris.Setup(args, targets.TARGETS[name])
    atheris.Fuzz()


def one(argv: list[str], env: dict[str, str] | None = None, timeout: float | None = None) -> int:
    """`--one` as people and the tests run it: the target in a child process, given a directory
    of its own that is deleted when the child ends, however it ends (the corpus and the
    targets' scratch files, which libFuzzer's exit() would otherwise leave in /tmp)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as work:
        return subprocess.run([sys.executable, "-m", "tests.fuzz.run", *argv, "--work", work], cwd=ROOT,
                              env=(env or dict(os.environ)) | {WORK: work}, timeout=timeout).returncode


def run(names: list[str], seconds: int, env: dict[str, str] | None = None,
        corpora: Path | None = None) -> dict[str, int]:
    """Each target in a child process; its exit code (0: no crash within the time)."""
    out = {}
    for name in names:
        print(f"== fuzz {name} for {seconds} s{' (ASan)' if env else ''}", flush=True)
        keep = ["--corpus", str(corpora / name)] if corpora else []
        out[name] = one(["--one", name, "--seconds", str(seconds), *keep], env, timeout=seconds + 120)
    return out


def run_with_asan(names: list[str], native: list[str], seconds: int) -> dict[str, int]:
    """`names` guided, then those of them in `native` again under ASan, from the corpora grown."""
    with tempfile.TemporaryDirectory(prefix="fuzz-asan-") as tmp:
        corpora = Path(tmp) / "corpora"
        out = run(names, seconds, corpora=corpora)
        env = asan_env(build_asan(Path(tmp)))
        again = run([n for n in names if n in native], seconds, env, corpora)
        return out | {f"{n} (ASan)": rc for n, rc in again.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--asan", action="store_true", help="then the native targets, against a sanitized build")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("targets", nargs="*")
    args = parser.parse_args()
    if args.one and args.work is None:
        return one(sys.argv[1:])
    if args.one:
        fuzz_one(args.one, args.seconds, args.work, args.corpus)
        return 0
    from tests.fuzz.targets import NATIVE, TARGETS

    names = args.targets or list(TARGETS)
    results = run_with_asan(names, NATIVE, args.seconds) if args.asan else run(names, args.seconds)
    failed = {n: rc for n, rc in results.items() if rc}
    for name, rc in results.items():
        verdict = f"CRASH (exit {rc}): input kept in tests/fuzz/crashes/{name.split()[0]}/" if rc else "ok"
        print(f"{name:22} {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
