"""The fuzz targets in `make test`: every kept crash replayed, every seed passed, and a short
coverage-guided pass of each target (FUZZ_SECONDS, default 3 s; `make fuzz` runs longer)."""

from __future__ import annotations

import os
import subprocess
import sys
import pytest

from .run import CRASHES, ROOT, asan_env, build_asan
from .targets import NATIVE, SEEDS, TARGETS

SHORT = int(os.environ.get("FUZZ_SECONDS", "3"))


def test_every_crash_the_fuzzer_once_found_is_handled() -> None:
    for path in sorted(p for p in CRASHES.glob("*/*") if p.is_file()):
        try:
            TARGETS[path.parent.name](path.read_bytes())
        except BaseException as exc:
            raise AssertionError(f"{path.relative_to(ROOT)} crashes {path.parent.name} again") from exc


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_seeds_pass(name: str) -> None:
    assert SEEDS[name], "every target starts from at least one valid input"
    for seed in SEEDS[name]:
        TARGETS[name](seed)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_short_fuzzing_pass_finds_no_crash(name: str) -> None:
    before = set(CRASHES.glob(f"{name}/*"))
    p = subprocess.run([sys.executable, "-m", "tests.fuzz.run", "--one", name, "--seconds", str(SHORT)], cwd=ROOT,
                       capture_output=True, text=True, timeout=SHORT + 120)
    found = sorted(set(CRASHES.glob(f"{name}/*")) - before)
    assert p.returncode == 0 and not found, f"{name} crashed; input kept in {found}\n{p.stderr[-4000:]}"


def test_a_short_pass_against_the_sanitized_extension_finds_no_crash(tmp_path) -> None:
    """The extension's own targets, SHORT seconds each, against its ASan/UBSan build (`make fuzz`
    runs every native target, longer, from the corpora a guided pass grew)."""
    env = asan_env(build_asan(tmp_path))
    for name in ("fastpath_open", "fastpath_seal", "fastpath_segment", "fastpath_run", "netlink_pick",
                 "netlink_messages", "netlink_link", "netlink_read_ahead"):
        assert name in NATIVE
        before = set(CRASHES.glob(f"{name}/*"))
        p = subprocess.run([sys.executable, "-m", "tests.fuzz.run", "--one", name, "--seconds", str(SHORT)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=SHORT + 120)
        found = sorted(set(CRASHES.glob(f"{name}/*")) - before)
        assert p.returncode == 0 and not found, f"{name} crashed under ASan; {found}\n{p.stderr[-4000:]}"
        assert "Coverage symbols are being provided by a library other than libFuzzer" in p.stderr, \
            "not the sanitized runtime"


def test_an_empty_datagram_does_not_end_the_udp_receive_loop() -> None:
    """Found by the fuzzer (crashes/udp_receive/crash-da39a3…, the empty input): a zero-length
    datagram made the receive loop step through it by 0 bytes (range() raised outside the
    per-datagram catch-all) and the forwarder exited; five, and the supervisor gave up."""
    TARGETS["udp_receive"](b"")


def test_a_fuzzing_pass_leaves_nothing_in_the_temporary_directory(tmp_path) -> None:
    """libFuzzer ends its process with exit(), past every `finally`: each pass used to leave its
    corpus (fuzz-NAME-*) and the inventory target's directory (provision-fuzz-*) in /tmp, 336 of
    them after a day of `make test`."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = os.environ | {"TMPDIR": str(tmp)}
    for name in ("netlink_pick", "inventory"):
        p = subprocess.run([sys.executable, "-m", "tests.fuzz.run", "--one", name, "--seconds", "1"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        assert not list(tmp.iterdir()), f"{name} left {sorted(x.name for x in tmp.iterdir())}"
