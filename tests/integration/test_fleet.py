"""`--forks N`: hosts in parallel worker processes. Same plans as one at a time, every host's
outcome in the recap, and a host that fails does not stop the others."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from .helpers import PROVISION, env_for, kernel, provision

HOST = """    h{n}:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {{name: tap0, type: tap, addresses: [192.0.2.{n}/24]}}
          - {{name: tun1, type: tun, mtu: 1400}}
        routes:
          - {{to: 198.51.100.0/24, via: {via}}}
"""


def fleet(path: Path, namespaces: list[str], broken: int | None = None) -> Path:
    hosts = "".join(HOST.format(n=i + 1, ns=ns, via="203.0.113.9" if i == broken else "192.0.2.254")
                    for i, ns in enumerate(namespaces))
    path.write_text("all:\n  hosts:\n" + hosts)
    return path


def test_forks_plan_like_one_at_a_time_and_a_failing_host_does_not_stop_the_others(
        make_netns: Callable[[], str], tmp_path: Path) -> None:
    namespaces = [make_netns() for _ in range(5)]
    state = tmp_path / "state"
    inv = fleet(tmp_path / "fleet.yaml", namespaces, broken=2)  # h3's gateway is unreachable

    one = json.loads(provision("plan", str(inv), "--json", state_dir=state, check_rc=0).out)
    many = json.loads(provision("plan", str(inv), "--json", "--forks", "4", state_dir=state, check_rc=0).out)
    assert many == one and [h["host"] for h in many["hosts"]] == ["h1", "h2", "h3", "h4", "h5"]

    r = provision("apply", str(inv), "--forks", "4", state_dir=state, check_rc=1)
    recap = r.out[r.out.index("RECAP"):].splitlines()[1:]
    assert [line.split()[0] for line in recap] == ["h1", "h2", "h3", "h4", "h5"], r.out  # inventory order
    for line in recap:
        assert ("failed=1" in line) == line.startswith("h3"), r.out
        assert ("changed=4" in line) == (not line.startswith("h3")), r.out
    assert "h3: FAILED: route 198.51.100.0/24 metric 0: kernel refused" in r.err
    for i, ns in enumerate(namespaces):
        links = kernel(ns)["links"]
        assert ("tap0" in links) == (i != 2), (i, links)  # h3 rolled back, the others applied

    fixed = fleet(tmp_path / "fixed.yaml", namespaces)
    r = provision("apply", str(fixed), "--forks", "8", state_dir=state, check_rc=0)
    assert "h3 : ok=4 changed=4 unreachable=0 failed=0" in r.out and r.out.count("no changes") == 4, r.out
    assert provision("plan", str(fixed), "--forks", "3", "--detailed-exitcode", state_dir=state).rc == 0
    r = provision("destroy", str(fixed), "--forks", "5", state_dir=state, check_rc=0)
    assert all("tap0" not in kernel(ns)["links"] for ns in namespaces)


def test_a_worker_killed_from_outside_fails_its_host_alone_and_the_hosts_it_held_go_to_another(
        make_netns: Callable[[], str], tmp_path: Path) -> None:
    """Under the old pool (concurrent.futures) a killed worker broke the pool: every host not
    finished by then was reported failed. Now only the host it was working on fails. h2's and
    h5's locks are held here, so that both are in work, waiting, when h2's worker is killed."""
    namespaces = [make_netns() for _ in range(5)]
    state = tmp_path / "state"
    inv = fleet(tmp_path / "fleet.yaml", namespaces)
    provision("apply", str(inv), state_dir=state, check_rc=0)
    locks = {n: state / "locks" / f"netns-{namespaces[n - 1]}.lock" for n in (2, 5)}
    held = {n: os.open(path, os.O_RDWR) for n, path in locks.items()}
    for fd in held.values():
        fcntl.flock(fd, fcntl.LOCK_EX)
    # PYTHONUNBUFFERED (this machine's shell sets it; CI's failure on record has its torn lines): a worker's
    # line and this process's ran into one another (test_cli.py)
    run = subprocess.Popen([*PROVISION, "plan", str(inv), "--forks", "2"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**env_for(state), "PYTHONUNBUFFERED": "1"})
    try:
        assert run.stdout is not None
        seen: list[str] = []
        while sum("waiting for the lock" in line for line in seen) < 2:
            seen.append(run.stdout.readline())
            # a text, not a tuple: pytest shortens a tuple's repr in the middle, where stderr says why
            assert seen[-1] and len(seen) < 8, f"stdout: {seen!r}\nstderr: {run.stderr.read() if run.stderr else ''}"
        children = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
        waiting = [int(c) for c in children if any(Path(f"/proc/{c}/fd/{f}").resolve() == locks[2].resolve()
                                                   for f in os.listdir(f"/proc/{c}/fd"))]
        assert len(waiting) == 1, children  # a worker of this run's, which we made wait: ours to kill
        os.kill(waiting[0], signal.SIGKILL)
        os.close(held.pop(5))
        out, err = run.communicate(timeout=60)
    finally:
        for fd in held.values():
            os.close(fd)
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 1, (out, err)
    assert "h2: FAILED: a worker process died (killed by signal 9) before this host was done" in err, err
    said = [line.split(":")[0] for line in seen + out.splitlines(keepends=True) if "no changes" in line]
    assert said == ["h1", "h3", "h4", "h5"], (seen, out, err)  # h3 was sent to the killed worker too


def test_forks_must_be_a_positive_number_and_a_usage_error_exits_1_not_2(tmp_path: Path) -> None:
    r = provision("plan", "x.yaml", "--forks", "0", state_dir=tmp_path / "state", check_rc=1)
    assert "argument --forks/-f: expected a whole number of at least 1, got '0'" in r.err and "Traceback" not in r.err


def test_each_line_of_a_fleet_is_one_write_where_python_is_unbuffered(make_netns: Callable[[], str],
                                                                       tmp_path: Path) -> None:
    """The workers and this process share stdout and stderr; under PYTHONUNBUFFERED print() wrote
    a line's text and its newline apart, and one process's line ran into another's. Every
    write of the run, the workers' too (strace -f), must end a line."""
    namespaces = [make_netns() for _ in range(3)]
    state = tmp_path / "state"
    inv = fleet(tmp_path / "fleet.yaml", namespaces)
    trace = tmp_path / "writes"
    r = subprocess.run(["strace", "-f", "-qq", "-s", "4096", "-e", "trace=write", "-o", str(trace), *PROVISION,
                        "apply", str(inv), "--forks", "2"], capture_output=True, text=True, timeout=60,
                       env={**env_for(state), "PYTHONUNBUFFERED": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    writes = [line for line in trace.read_text().splitlines() if re.search(r"write\([12], ", line)]
    assert len(writes) > 10, writes  # each change, the recap
    # (two processes writing at once: strace shows the first "<unfinished ...>", its end resumed later)
    torn = [line for line in writes if not re.search(r'\\n"(\.\.\.)?, \d+(\) += \d+| <unfinished \.\.\.>)$', line)]
    assert not torn, torn
