"""A full disk: the state directories on a 64 KiB tmpfs, filled up. `apply` and `pull` stop
with a clear error before they change anything, leave no half-written file, and the kernel
is as it was; with room again, the next run converges."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..integration.helpers import persistent, provision
from ..integration.test_pull import Repo
from .world import dump, inventory, settled, report, write


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs for the state directory, and in it a 4 MiB one for the persistent
    directory (the agent's clone needs more than 64 KiB); unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)], check=True)
    lib = persistent(mount / "state")
    try:
        lib.mkdir(mode=0o700)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(lib)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(lib)], capture_output=True)
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(*mounts: Path) -> None:
    for mount in mounts:
        with open(mount / "filler", "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass


def free(*mounts: Path) -> None:
    for mount in mounts:
        (mount / "filler").unlink()


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "filler")


def test_a_full_state_directory(make_netns: Callable[[], str], tiny: Path, tmp_path: Path) -> None:
    ns = make_netns()
    state = tiny / "state"
    v1 = write(tmp_path / "v1.yaml", inventory(ns, 1))
    v2 = write(tmp_path / "v2.yaml", inventory(ns, 2))
    repo = Repo(tmp_path / "net", ns)
    first = repo.commit(inventory(ns, 1), "v1")
    agent = ("pull", str(repo.path), "--branch", "main", "--host", "edge", "--netns", ns, "--min-commit", first)
    provision(*agent, state_dir=state, check_rc=0)  # with room: the record, the clone, the host lock
    second = repo.commit(inventory(ns, 2), "v2")
    before, record_path = settled(ns), next(persistent(state).glob("pull/*/agent.json"))
    record_before, kept = record_path.read_bytes(), files(tiny)
    fill(tiny, persistent(state))

    r = provision("pull", *agent[1:], state_dir=state)
    assert r.rc == 1 and "No space left on device" in r.err and "internal error" not in r.err, r.out + r.err
    assert dump(ns) == before and record_path.read_bytes() == record_before and files(tiny) == kept
    pull_error = r.err.strip().splitlines()[-1]

    for lock in (state / "locks").glob("*.lock"):  # the machine's lock file (named by its identity), to make
        lock.unlink()  # again on a full disk
    fill(tiny)  # (what the old one held is taken too)
    r = provision("apply", str(v2), state_dir=state)
    assert r.rc == 1 and "cannot take the lock: No space left on device" in r.err, r.out + r.err
    assert dump(ns) == before and "internal error" not in r.err
    apply_error = r.err.strip().splitlines()[-1]

    free(tiny, persistent(state))
    out = provision("pull", *agent[1:], state_dir=state, check_rc=0).out
    assert f"adopted {second[:12]}" in out and json.loads(record_path.read_text())["good"] == second
    provision("apply", str(v1), "--take-over", state_dir=state, check_rc=0)  # the agent's, by hand
    report("full disk: the state directory on a full 64 KiB tmpfs (the persistent one on a full 4 MiB tmpfs)", 2,
           "apply and pull stopped before changing anything; kernel dump and record byte-identical, no temporary "
           "file left; with room again the next pull adopted the commit",
           f"pull: `{pull_error}`; apply: `{apply_error}`".replace(str(tiny), "…"))
