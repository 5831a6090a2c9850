"""One command across the selected hosts, N at a time (`--forks`, as Ansible's forks).

This module only schedules: the pipeline for one host is reconcile.run_host. Each host is
independent once the inventory is valid: its own connection, lock, plan and transaction. So hosts run in forked worker processes (the GIL would serialise threads, and
a netns host enters its namespace for the whole run); a worker inherits the loaded inventory
by the fork and sends back only the host's Outcome. A host that fails is that host's
failure alone: the others go on and the recap reports it. (A worker killed from outside
breaks the pool: the hosts not finished by then are reported failed, none is left out.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

from .connection import DOCKER
from .plan import Change
from .reconcile import Job, Loaded, Outcome, Phase, Status, run_host

Report = Callable[[str, Change], None]  # (host, change) as each change takes effect
Notify = Callable[[str], None]  # a line for a person: waiting for a lock
HostProgress = Callable[[str, Phase, int, int], None]  # (host, phase, done, total): a line on a terminal


def run(loaded: Loaded, job: Job, forks: int, report: Report, notify: Notify,
        progress: HostProgress | None = None) -> Iterator[Outcome]:
    """Each selected host's Outcome, in inventory order, as soon as it and those before it are done.
    `progress` is told of each host's phases when hosts are worked on one at a time (forked
    workers would draw over each other)."""
    hosts = loaded.hosts
    if forks <= 1 or len(hosts) <= 1:
        for host in hosts:
            yield run_host(loaded, host, job, report, notify, progress)
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
        with ProcessPoolExecutor(_workers(loaded, forks), multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_run_inherited, i) for i in range(len(hosts))]
            for host, future in zip(hosts, futures, strict=True):
                try:
                    yield future.result()
                except BrokenProcessPool:
                    yield Outcome(host.name, Status.FAILED, error=f"{host.name}: a worker process died before "
                                                                  "this host was done")
    finally:
        _inherited = None


def _workers(loaded: Loaded, forks: int) -> int:
    """`forks`, but no more than the hosts, nor (unless a host is a container, whose run is mostly
    waiting for it) than the CPUs: a host here is CPU work, and 8 workers on 2 cores made a no-op
    plan of 50 namespaces slower than one worker did (0.44 s against 0.32 s), by the forks alone."""
    import os

    workers = min(forks, len(loaded.hosts))
    if not any(h.connection == DOCKER for h in loaded.hosts):
        workers = min(workers, os.cpu_count() or 1)
    return workers


def _warm(loaded: Loaded, job: Job) -> None:
    """Import, once and before forking, what every worker would otherwise import for itself:
    the connections' modules are imported lazily, on first use. And freeze the heap, so the
    workers' garbage collector does not copy every page it scans."""
    import gc

    if job.snapshots is None:
        from .connection import kernel  # noqa: F401  (and through it the kernel and tunnel modules)
        if job.apply:
            from .kernel import apply  # noqa: F401  (a transaction's, imported where a plan has no use for it)
        if any(h.connection == DOCKER for h in loaded.hosts):
            from .connection import docker  # noqa: F401
    gc.freeze()


_inherited: tuple[Loaded, Job, Report, Notify] | None = None  # what forked workers read (never pickled)


def _run_inherited(index: int) -> Outcome:
    assert _inherited is not None
    loaded, job, report, notify = _inherited
    return run_host(loaded, loaded.hosts[index], job, report, notify)
