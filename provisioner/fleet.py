"""One command across the selected hosts, N at a time (`--forks`, as Ansible's forks).

Each host is independent once the inventory is valid: its own connection, lock, plan and
transaction. So hosts run in forked worker processes (the GIL would serialise threads, and
a netns host enters its namespace for the whole run); a worker inherits the loaded inventory
by the fork and sends back only the host's Outcome. A host that fails is that host's
failure alone: the others go on and the recap reports it. (A worker killed from outside
breaks the pool: the hosts not finished by then are reported failed, none is left out.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .connection import DOCKER, LOCAL, Connection, connect, skip_reason
from .disruption import session_address
from .errors import HostError, InventoryError, ProvisionError
from .inventory import Host
from .model import Observed
from .plan import Change, Plan
from .reconcile import Loaded, Outcome, Safety, Status, apply_host, failure, plan_for, remote_outcome

Report = Callable[[str, Change], None]  # (host, change) as each change takes effect
Notify = Callable[[str], None]  # a line for a person: waiting for a lock


@dataclass(frozen=True)
class Job:
    """What to do on every host. Planning against `snapshots` needs no state directory."""

    inventory_file: str
    apply: bool = False
    destroy: bool = False
    state_dir: Path | None = None
    snapshots: Mapping[str, Observed] | None = None
    snapshots_from: str = ""  # where the snapshots came from, for messages
    skip_unsnapshotted: bool = False  # a directory of snapshots: plan the hosts it has, skip the others
    lock_timeout: float = 60.0
    check: Callable[[Plan], None] | None = None  # may refuse a host's plan before it is applied (saved plans)
    force: bool = False  # apply changes that can cut a host off without a confirmation
    confirm_timeout: float | None = None  # keep each host's changes only if `provision confirm` comes in time

    def remote_argv(self) -> list[str]:
        """The same command, to run inside a container for one host."""
        if self.destroy and self.apply:
            return ["destroy", "--lock-timeout", str(self.lock_timeout)]
        if self.apply:
            safety = ["--force"] if self.force else []
            if self.confirm_timeout is not None:  # then `provision confirm` is run in the container
                safety += ["--confirm-timeout", str(self.confirm_timeout)]
            return ["apply", "--lock-timeout", str(self.lock_timeout), *safety]
        return ["plan", "--destroy"] if self.destroy else ["plan"]


def run(loaded: Loaded, job: Job, forks: int, report: Report, notify: Notify) -> Iterator[Outcome]:
    """Each selected host's Outcome, in inventory order, as soon as it and those before it are done."""
    hosts = loaded.hosts
    if forks <= 1 or len(hosts) <= 1:
        for host in hosts:
            yield run_host(loaded, host, job, report, notify)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    global _inherited
    _inherited = (loaded, job, report, notify)
    _warm(loaded, job)
    sys.stdout.flush()
    sys.stderr.flush()  # or the workers would print what is still in our buffers again
    try:
        with ProcessPoolExecutor(min(forks, len(hosts)), multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_run_inherited, i) for i in range(len(hosts))]
            for host, future in zip(hosts, futures, strict=True):
                try:
                    yield future.result()
                except BrokenProcessPool:
                    yield Outcome(host.name, Status.FAILED, error=f"{host.name}: a worker process died before "
                                                                  "this host was done")
    finally:
        _inherited = None


def _warm(loaded: Loaded, job: Job) -> None:
    """Import, once and before forking, what every worker would otherwise import for itself:
    the connections' modules are imported lazily, on first use. And freeze the heap, so the
    workers' garbage collector does not copy every page it scans."""
    import gc

    if job.snapshots is None:
        from .connection import kernel  # noqa: F401  (and through it the kernel and tunnel modules)
        if any(h.connection == DOCKER for h in loaded.hosts):
            from .connection import docker  # noqa: F401
    gc.freeze()


_inherited: tuple[Loaded, Job, Report, Notify] | None = None  # what forked workers read (never pickled)


def _run_inherited(index: int) -> Outcome:
    assert _inherited is not None
    loaded, job, report, notify = _inherited
    return run_host(loaded, loaded.hosts[index], job, report, notify)


def run_host(loaded: Loaded, host: Host, job: Job, report: Report, notify: Notify) -> Outcome:
    """The pipeline for one host; every expected error becomes a failed Outcome."""
    desired, source = loaded.desired[host.name], loaded.inventory.source
    reason = None if job.snapshots is not None else skip_reason(host)
    if reason:
        return Outcome(host.name, Status.SKIPPED, error=reason)
    try:
        if job.snapshots is not None:
            if host.name not in job.snapshots:
                if job.skip_unsnapshotted:
                    return Outcome(host.name, Status.SKIPPED, error=f"no facts snapshot in {job.snapshots_from}")
                raise HostError(host.name, f"no facts for this host in {job.snapshots_from}")
            return Outcome(host.name, Status.OK, plan_for(job.snapshots[host.name], host, desired, source,
                                                          job.destroy))
        if host.connection == DOCKER:
            return remote_outcome(host, job.inventory_file, job.remote_argv(), loaded.everyone)
        assert job.state_dir is not None
        session = session_address() if host.connection in (None, LOCAL) else None
        with connect(host, job.state_dir, job.lock_timeout, notify) as conn:
            if job.apply:
                return apply_host(conn, host, desired, source, job.destroy, lambda c: report(host.name, c),
                                  job.check, _safety(job, conn, host, notify), session)
            return Outcome(host.name, Status.OK, plan_for(conn.observe(), host, desired, source, job.destroy,
                                                          session))
    except InventoryError as exc:
        return Outcome(host.name, Status.FAILED, error=str(exc))
    except ProvisionError as exc:
        return failure(host.name, exc)


def _safety(job: Job, conn: Connection, host: Host, notify: Notify) -> Safety:
    if job.confirm_timeout is None:
        return Safety(force=job.force)
    from . import confirm

    assert job.state_dir is not None
    timeout, state_dir = job.confirm_timeout, job.state_dir
    return Safety(job.force, lambda: confirm.wait(state_dir, conn.key, host.name, timeout, notify), timeout)
