"""One command across the selected hosts, N at a time (`--forks`, as Ansible's forks).

This module only schedules: the pipeline for one host is reconcile.run_host. Each host is
independent once the inventory is valid: its own connection, lock, plan and transaction. So
hosts run in forked worker processes (the GIL would serialise threads, and a netns host enters
its namespace for the whole run); a worker inherits the loaded inventory by the fork, is handed
hosts by their index as it answers and sends back only each host's Outcome. Where hosts are CPU
work (namespaces, this machine), this process is one of the workers. A host that fails is that
host's failure alone: the others go on and the recap reports it. A worker killed from outside
fails the host it was working on; another worker is forked for the hosts it held.

The workers are plain forks with a pipe each way, not multiprocessing's pool: importing that
pool (multiprocessing, concurrent.futures, logging, threading) cost 20 ms of a run, and its
threads and queues made `--forks 2` plan 50 namespaces slower than one worker did.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .connection import DOCKER
from .plan import Change
from .reconcile import Job, Loaded, Outcome, Phase, Status, run_host

Report = Callable[[str, Change], None]  # (host, change) as each change takes effect
Notify = Callable[[str], None]  # a line for a person: waiting for a lock
HostProgress = Callable[[str, Phase, int, int], None]  # (host, phase, done, total): a line on a terminal

_LENGTH = 4  # a result's length, big-endian, before its pickle; a task is a host's index, as wide


def run(loaded: Loaded, job: Job, forks: int, report: Report, notify: Notify,
        progress: HostProgress | None = None) -> Iterator[Outcome]:
    """Each selected host's Outcome, in inventory order, as soon as it and those before it are done.
    `progress` is told of each host's phases when hosts are worked on one at a time (forked
    workers would draw over each other)."""
    hosts = loaded.hosts
    workers = _workers(loaded, forks)
    if workers <= 1:
        for host in hosts:
            yield run_host(loaded, host, job, report, notify, progress)
        return
    _warm(loaded, job)
    if _waits(loaded):  # this process only hands out hosts and reads what comes back
        yield from _Pool(loaded, job, report, notify, range(len(hosts)), workers).outcomes()
    else:  # CPU work: this process is one of the workers
        yield from _Pool(loaded, job, report, notify, range(len(hosts)), workers - 1, here=True).outcomes()


def _waits(loaded: Loaded) -> bool:
    """A container host's run is mostly waiting for its container, not CPU work here."""
    return any(h.connection == DOCKER for h in loaded.hosts)


def _workers(loaded: Loaded, forks: int) -> int:
    """`forks`, but no more than the hosts, nor (unless a host is a container, whose run is mostly
    waiting for it) than the CPUs: a host here is CPU work, and more workers than CPUs only add
    forks and pages copied on write."""
    workers = min(forks, len(loaded.hosts))
    if not _waits(loaded):
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
        if _waits(loaded):
            from .connection import docker  # noqa: F401
    gc.freeze()


@dataclass
class _Worker:
    """A forked worker as the parent sees it: where to send it hosts, where its results come."""

    pid: int
    tasks: int  # write end: hosts' indexes; closed, the worker exits once it has done those sent
    results: int  # read end: length-prefixed pickled Outcomes, in the order the hosts were sent
    handed: deque[int] = field(default_factory=deque)  # sent and not answered yet, the first in work
    received: bytearray = field(default_factory=bytearray)


class _Pool:
    """Hosts handed out to the forked workers as they answer, each worker one host ahead when
    hosts are CPU work (it never waits for this process to hand it the next), and with `here`
    taken by this process too, between reading answers; outcomes given back in inventory order."""

    def __init__(self, loaded: Loaded, job: Job, report: Report, notify: Notify, indexes: range,
                 workers: int, here: bool = False) -> None:
        import pickle  # noqa: F401  (here, once: not by each worker, 3 ms of its start)
        import select

        self.loaded, self.job, self.report, self.notify = loaded, job, report, notify
        self.indexes, self.todo = indexes, deque(indexes)
        self.size = min(workers, len(indexes))
        self.here = here
        self.ahead = 1 if _waits(loaded) else 2  # hosts a worker holds (a container's may take long)
        self.workers: dict[int, _Worker] = {}  # by the fd its results come on
        self.poll = select.poll()

    def outcomes(self) -> Iterator[Outcome]:
        done: dict[int, Outcome] = {}
        try:
            first = self.todo.popleft() if self.here and self.todo else None  # ours: two hosts, both at once
            for _ in range(self.size):
                self._start()
            if first is not None:
                done[first] = self._run(first)
            for index in self.indexes:
                while index not in done:
                    ours = self.here and bool(self.todo)
                    for fd, _ in self.poll.poll(0 if ours else None):  # with a host to do here: no wait
                        self._read(self.workers[fd], done)
                    if ours and self.todo:
                        host = self.todo.popleft()
                        done[host] = self._run(host)
                yield done.pop(index)
        finally:
            for worker in list(self.workers.values()):
                self._stop(worker)

    def _run(self, index: int) -> Outcome:
        return run_host(self.loaded, self.loaded.hosts[index], self.job, self.report, self.notify)

    def _read(self, worker: _Worker, done: dict[int, Outcome]) -> None:
        import pickle

        chunk = os.read(worker.results, 1 << 16)
        if not chunk:  # it exited: done, or killed from outside (then its host failed, not the others)
            if worker.handed:
                lost = worker.handed.popleft()
                done[lost] = _died(self.loaded, lost)
                self.todo.extendleft(reversed(worker.handed))  # sent, never begun: another worker's
            self._stop(worker)
            if self.todo:
                self._start()
            return
        worker.received += chunk
        while len(worker.received) >= _LENGTH:
            size = int.from_bytes(worker.received[:_LENGTH], "big")
            if len(worker.received) < _LENGTH + size:
                break
            # our own fork's answer, over a pipe only it and we hold: not outside input
            result = pickle.loads(worker.received[_LENGTH:_LENGTH + size])
            del worker.received[:_LENGTH + size]
            if isinstance(result, BaseException):
                raise result  # our bug, raised as if the host had run here
            done[worker.handed.popleft()] = result
        self._hand(worker)

    def _start(self) -> None:
        tasks_r, tasks_w = os.pipe2(os.O_CLOEXEC)
        results_r, results_w = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()  # or the worker would print what is still in our buffers again
        pid = os.fork()
        if pid == 0:
            for other in self.workers.values():  # or a worker's end of the pipes outlives it
                if other.tasks >= 0:
                    os.close(other.tasks)
                os.close(other.results)
            os.close(tasks_w)
            os.close(results_r)
            _serve(self.loaded, self.job, self.report, self.notify, tasks_r, results_w)
        os.close(tasks_r)
        os.close(results_w)
        worker = _Worker(pid, tasks_w, results_r)
        self.workers[results_r] = worker
        self.poll.register(results_r)
        self._hand(worker)

    def _hand(self, worker: _Worker) -> None:
        """Hosts to this worker up to `ahead`; with none left, our end of its tasks pipe, closed."""
        if worker.tasks < 0:
            return
        sent: list[int] = []
        while self.todo and len(worker.handed) + len(sent) < self.ahead:
            sent.append(self.todo.popleft())
        alive = True
        if sent:
            try:
                os.write(worker.tasks, b"".join(index.to_bytes(_LENGTH, "big") for index in sent))
                worker.handed.extend(sent)
            except BrokenPipeError:  # it died since its last answer (its end is read next): another's
                self.todo.extendleft(reversed(sent))
                alive = False
        if not self.todo or not alive:
            os.close(worker.tasks)
            worker.tasks = -1

    def _stop(self, worker: _Worker) -> None:
        """Close our ends (a worker still busy finishes what it was sent, then finds no more) and
        reap it."""
        self.poll.unregister(worker.results)
        del self.workers[worker.results]
        if worker.tasks >= 0:
            os.close(worker.tasks)
        os.close(worker.results)
        os.waitpid(worker.pid, 0)


def _died(loaded: Loaded, index: int) -> Outcome:
    name = loaded.hosts[index].name
    return Outcome(name, Status.FAILED, error=f"{name}: a worker process died before this host was done")


def _serve(loaded: Loaded, job: Job, report: Report, notify: Notify, tasks: int, results: int) -> None:
    """A worker: each host it is handed, run and answered, until the tasks pipe is closed. Never
    returns: it leaves by os._exit, so nothing of the parent's (atexit, buffers, the caller's
    `finally`) runs twice."""
    import pickle

    code = 0
    try:
        while True:
            task = os.read(tasks, _LENGTH)
            if len(task) != _LENGTH:  # closed: no more hosts
                break
            index = int.from_bytes(task, "big")
            try:
                result: object = run_host(loaded, loaded.hosts[index], job, report, notify)
            except Exception as exc:  # not an expected failure (those are Outcomes): a bug
                result = exc
            try:
                data = pickle.dumps(result)
            except Exception as exc:  # an exception that cannot be pickled: its text goes
                data = pickle.dumps(RuntimeError(f"{type(result).__name__}: {result} ({exc})"))
            os.write(results, len(data).to_bytes(_LENGTH, "big"))
            view = memoryview(data)
            while view:
                view = view[os.write(results, view):]
    except BaseException:  # interrupted, or the parent is gone (a broken pipe)
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
