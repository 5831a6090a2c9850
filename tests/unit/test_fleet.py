"""fleet.py's scheduling, with real forked workers and a stand-in for a host's pipeline (what
each host does is reconcile.run_host's, tested with the kernel in tests/integration/test_fleet.py)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from provisioner import fleet
from provisioner.reconcile import Job, Outcome, Status


def hosts(n: int, connection: str = "netns") -> SimpleNamespace:
    return SimpleNamespace(hosts=tuple(SimpleNamespace(name=f"h{i}", connection=connection) for i in range(n)))


def run(loaded: SimpleNamespace, forks: int) -> list[Outcome]:
    return list(fleet.run(loaded, Job("inv.yaml"), forks, lambda h, c: None, lambda m: None))  # type: ignore[arg-type]


def raising_in_workers(error: BaseException) -> Callable[..., Outcome]:
    """A stand-in for a host's pipeline: the hosts this process runs are fine, a forked worker's
    raise `error`."""
    parent = os.getpid()

    def pipeline(loaded, host, job, report, notify):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            raise error
        return Outcome(host.name, Status.OK)

    return pipeline


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})


@pytest.mark.parametrize("connection", ["netns", "docker"])  # this process works too / only hands out
@pytest.mark.usefixtures("two_cpus")
def test_every_host_once_in_inventory_order_with_what_its_worker_found(monkeypatch: pytest.MonkeyPatch,
                                                                       connection: str) -> None:
    def pipeline(loaded, host, job, report, notify):  # type: ignore[no-untyped-def]
        return Outcome(host.name, Status.OK, error=f"pid {os.getpid()}")

    monkeypatch.setattr(fleet, "run_host", pipeline)
    outcomes = run(hosts(23, connection), 8)
    assert [o.host for o in outcomes] == [f"h{i}" for i in range(23)]
    pids = {o.error for o in outcomes}
    assert len(pids) == (2 if connection == "netns" else 8), pids  # CPU work: the CPUs; containers: --forks
    assert (f"pid {os.getpid()}" in pids) == (connection == "netns")


@pytest.mark.parametrize("connection", ["netns", "docker"])
@pytest.mark.usefixtures("two_cpus")
def test_a_worker_that_dies_fails_its_host_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 connection: str) -> None:
    """The first worker to begin a host dies (as one killed from outside): that host fails, the
    one it held next goes to another worker, a new worker is forked. (On its first host: had it
    to reach a later one, a worker slow to start left every host to this process, which works
    too, and no worker died.) Where this process only hands out (containers), the worker left
    holds its host until the successor has begun one: its stand-in hosts take no time, and it
    could otherwise do every host before the death is seen (CI saw it, the dying worker slow to
    end), leaving the successor none."""
    parent = os.getpid()
    begun = tmp_path / "begun"  # a file for each worker that has begun a host, named by its pid
    begun.mkdir()

    def pipeline(loaded, host, job, report, notify):  # type: ignore[no-untyped-def]
        if os.getpid() == parent:
            time.sleep(0.005)  # or this process, working too, could do every host before a worker answers
            return Outcome(host.name, Status.OK, error=f"pid {os.getpid()}")
        (begun / str(os.getpid())).touch()
        try:
            os.close(os.open(tmp_path / "died", os.O_CREAT | os.O_EXCL))
            os._exit(9)
        except FileExistsError:
            pass
        deadline = time.monotonic() + 30
        while connection == "docker" and len(os.listdir(begun)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)  # the one that died, this one, and its successor
        return Outcome(host.name, Status.OK, error=f"pid {os.getpid()}")

    monkeypatch.setattr(fleet, "run_host", pipeline)
    outcomes = run(hosts(20, connection), 2)
    assert [o.host for o in outcomes] == [f"h{i}" for i in range(20)]
    failed = [o for o in outcomes if o.status is Status.FAILED]
    assert len(failed) == 1 and failed[0].error == (f"{failed[0].host}: a worker process died (exited with 9) before "
                                                    "this host was done")
    assert len({o.error for o in outcomes if o.status is Status.OK}) >= 2  # and its successor did the rest


@pytest.mark.usefixtures("two_cpus")
def test_when_every_worker_dies_those_forked_in_their_place_do_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Containers' hosts: this process only hands out. Both workers die on their first host (h0
    and h1, one each: a worker holds one host at a time here); their successors must be handed
    the hosts left (unhanded, they would wait, and this process with them). By host, not by a
    count of deaths: a successor could begin before the second worker and die in its place."""

    def pipeline(loaded, host, job, report, notify):  # type: ignore[no-untyped-def]
        if host.name in ("h0", "h1"):
            os._exit(9)
        return Outcome(host.name, Status.OK)

    def too_long(signum, frame):  # type: ignore[no-untyped-def]
        raise TimeoutError("the run waits for workers that were never handed a host")

    monkeypatch.setattr(fleet, "run_host", pipeline)
    old = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(20)
    try:
        outcomes = run(hosts(10, "docker"), 2)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert [o.host for o in outcomes] == [f"h{i}" for i in range(10)]
    assert [o.host for o in outcomes if o.status is Status.FAILED] == ["h0", "h1"]


@pytest.mark.usefixtures("two_cpus")
def test_a_bug_in_a_worker_is_raised_here_with_the_worker_s_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet, "run_host", raising_in_workers(KeyError("a bug")))
    with pytest.raises(KeyError, match="a bug") as raised:
        run(hosts(6), 2)
    assert "in pipeline\n    raise error\n" in str(raised.value.__cause__)  # where it was raised, in the worker


def test_a_run_given_up_early_lets_no_worker_begin_another_host(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    """Three CPUs: this process and two workers, each worker sent two hosts. The caller stops
    after the first outcome; each worker may finish the host it is on, and must begin no other
    (under a stop that waited for one worker while the other went on, it began its second).
    The workers' hosts end only once the stop has begun (its first waitpid): timed hosts were
    at the mercy of a loaded machine, a worker that ended its host before the stop rightly
    beginning its second. Then the first worker's host lasts longer, so that a stop which waits
    for it with the second's pipes open lets the second answer and begin again."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    began, stopped = tmp_path / "began", tmp_path / "stopped"
    waitpid = os.waitpid

    def stopping(pid: int, options: int) -> tuple[int, int]:
        stopped.touch()
        return waitpid(pid, options)

    def pipeline(loaded, host, job, report, notify):  # type: ignore[no-untyped-def]
        with open(began, "a") as log:
            log.write(host.name + "\n")
        deadline = time.monotonic() + 30
        while host.name in ("h1", "h2") and not stopped.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep({"h0": 0.05, "h1": 0.3}.get(host.name, 0.0))
        return Outcome(host.name, Status.OK)

    monkeypatch.setattr(os, "waitpid", stopping)
    monkeypatch.setattr(fleet, "run_host", pipeline)
    outcomes = fleet.run(hosts(10), Job("inv.yaml"), 3, lambda h, c: None, lambda m: None)  # type: ignore[arg-type]
    assert next(outcomes).host == "h0"
    outcomes.close()
    assert sorted(began.read_text().split()) == ["h0", "h1", "h2"]  # h0 here, h1 and h2 in the two workers


def test_workers_are_no_more_than_the_cpus_unless_a_host_is_a_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """A namespace or local host is CPU work: more workers than CPUs only add forks (on 2 cores,
    --forks 8 planned 50 namespaces slower than --forks 1). A container's run is mostly waiting."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    local = hosts(50)
    assert fleet._workers(local, 8) == 2  # type: ignore[arg-type]
    assert fleet._workers(hosts(1), 8) == 1  # type: ignore[arg-type]
    mixed = SimpleNamespace(hosts=(*local.hosts, SimpleNamespace(name="c", connection="docker")))
    assert fleet._workers(mixed, 8) == 8  # type: ignore[arg-type]


def test_each_host_s_desired_state_is_made_when_first_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not by the load: a fleet forks after it, and each worker makes its own hosts' side by side."""
    from provisioner import reconcile

    made: list[str] = []
    real = reconcile.network_of

    def counted(host, *rest):  # type: ignore[no-untyped-def]
        made.append(host.name)
        return real(host, *rest)

    monkeypatch.setattr(reconcile, "network_of", counted)
    loaded = reconcile.load(str(Path(__file__).resolve().parents[1] / "inventories" / "13-readme-first"
                                / "inventory.yaml"))
    assert made == [] and sorted(loaded.desired) == ["gw1", "gw2"] and len(loaded.desired) == 2
    first = loaded.desired["gw1"]
    assert loaded.desired["gw1"] is first and made == ["gw1"]  # once
    assert [d.name for d in loaded.desired["gw2"].devices] == ["tap0"] and made == ["gw1", "gw2"]
    with pytest.raises(KeyError):
        loaded.desired["not selected"]


@pytest.mark.usefixtures("two_cpus")
def test_a_worker_stopped_by_what_no_host_catches_says_why(monkeypatch: pytest.MonkeyPatch,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
    """Its host fails as "a worker process died (exited with 1)"; without this line on stderr,
    what stopped it (a SystemExit, a GeneratorExit) was lost with the process."""
    monkeypatch.setattr(fleet, "run_host", raising_in_workers(SystemExit("stopped from within")))
    outcomes = run(hosts(2, "docker"), 2)
    assert {o.status for o in outcomes} == {Status.FAILED}
    assert "provision: a worker process stopped: SystemExit: stopped from within" in capfd.readouterr().err
