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
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .connection import DOCKER
from .hints import TYPE_CHECKING, Any, NoReturn
from .plan import Change
from .reconcile import Job, Loaded, Outcome, Phase, Status, run_host

if TYPE_CHECKING:
    from .connection.kernel import Ahead

Report = Callable[[str, Change], None]  # (host, change) as each change takes effect
Notify = Callable[[str], None]  # a line for a person: waiting for a lock
HostProgress = Callable[[str, Phase, int, int], None]  # (host, phase, done, total): a line on a terminal

# The pipes' two messages: a host's index, to a worker; an answer's length, before its pickle
_INDEX = struct.Struct(">I")
_SIZE = struct.Struct(">I")


def run(loaded: Loaded, job: Job, forks: int, report: Report, notify: Notify,
        progress: HostProgress | None = None) -> Iterator[Outcome]:
    """Each selected host's Outcome, in inventory order, as soon as it and those before it are done.
    `progress` is told of each host's phases when hosts are worked on one at a time (forked
    workers would draw over each other)."""
    hosts = loaded.hosts
    workers = _workers(loaded, forks)
    if workers <= 1:
        for host in hosts:  # in one go, before the first host: each made between two hosts' runs
            loaded.desired[host.name]  # (their caches cold after the kernel's work), 50 took 1-2 ms more
        ahead = _ahead(loaded, job)
        try:
            for host in hosts:
                yield run_host(loaded, host, job, report, notify, progress, ahead)
        finally:
            if ahead is not None:
                ahead.close()
        return
    _warm(loaded, job)
    yield from _Pool(loaded, job, report, notify, workers).outcomes()


def _ahead(loaded: Loaded, job: Job) -> Ahead | None:
    """Hosts planned one after another here read the next one's kernel state on another thread
    while one is planned (connection.kernel.Ahead), where there is another CPU for it. Not an
    apply: it would hold the next host's lock for as long as this one's apply runs, which may
    wait minutes for a confirmation."""
    if (job.apply or job.snapshots is not None or job.state_dir is None or len(loaded.hosts) < 2
            or len(os.sched_getaffinity(0)) < 2):
        return None
    from .kernel.netlink import READ_AHEAD

    if not READ_AHEAD:
        return None
    from .connection import namespace_of
    from .connection.kernel import Ahead

    return Ahead(job.state_dir, [(h.name, namespace_of(h)) for h in loaded.hosts])


def _waits(loaded: Loaded) -> bool:
    """A container host's run is mostly waiting for its container, not CPU work here."""
    return any(h.connection == DOCKER for h in loaded.hosts)


def _workers(loaded: Loaded, forks: int) -> int:
    """`forks`, but no more than the hosts, nor (unless a host is a container, whose run is mostly
    waiting for it) than the CPUs this process may use: a host here is CPU work, and more
    workers than CPUs only add forks and pages copied on write."""
    workers = min(forks, len(loaded.hosts))
    if not _waits(loaded):
        workers = min(workers, len(os.sched_getaffinity(0)))
    return workers


def _warm(loaded: Loaded, job: Job) -> None:
    """Import, once and before forking, what every worker would otherwise import for itself:
    the connections' modules are imported lazily, on first use, and pickle (3 ms of a worker's
    start). And freeze the heap, so the workers' garbage collector does not copy every page it
    scans."""
    import gc
    import pickle  # noqa: F401

    from . import ownership, runner  # noqa: F401  (every host's run asks them first)

    if job.snapshots is None:
        from .connection import kernel  # noqa: F401  (and through it the kernel and tunnel modules)
        if job.apply:
            from .kernel import apply  # noqa: F401  (a transaction's, imported where a plan has no use for it)
        if _waits(loaded):
            from .connection import docker  # noqa: F401
    gc.freeze()


@dataclass
class _Worker:
    """A forked worker as this process sees it: where to send it hosts, where its answers come."""

    pid: int
    tasks: int  # write end: hosts' indexes; closed, the worker exits once it has done those sent
    answers: int  # read end: each answer's size, then its pickle, in the order the hosts were sent
    handed: deque[int] = field(default_factory=deque)  # sent and not answered yet (the first: begun, or next)
    received: bytearray = field(default_factory=bytearray)


class _Pool:
    """The hosts, handed to forked workers as they answer. Where hosts are CPU work this process
    is one of the workers too: it takes the first host itself (so two hosts on two CPUs run at
    once) and the next whenever no answer is waiting, and each worker holds one host beyond the
    one in work, so that it seldom waits for this process (busy with a host of its own) to be
    handed the next. A container's host may take long: then one at a time, and this process
    only hands out and reads."""

    def __init__(self, loaded: Loaded, job: Job, report: Report, notify: Notify, workers: int) -> None:
        import select

        self.loaded, self.job, self.report, self.notify = loaded, job, report, notify
        self.todo = deque(range(len(loaded.hosts)))
        self.works_here = not _waits(loaded)
        self.forked = workers - 1 if self.works_here else workers
        self.ahead = 2 if self.works_here else 1
        self.workers: dict[int, _Worker] = {}  # by the fd its answers come on
        self.poll = select.poll()

    def outcomes(self) -> Iterator[Outcome]:
        """In inventory order: an Outcome waits in `done` until those before it are given."""
        done: dict[int, Outcome] = {}
        try:
            mine = self.todo.popleft() if self.works_here else None
            for _ in range(min(self.forked, len(self.todo))):
                self._start()
            if not self.workers:  # none could be forked: this process does every host
                self.works_here = True
            for limit in range(1, self.ahead + 1):  # one each first, then one more each
                for worker in list(self.workers.values()):
                    self._hand(worker, limit)
            if mine is not None:
                done[mine] = self._run(mine)
            for index in range(len(self.loaded.hosts)):
                while index not in done:
                    free_here = self.works_here and bool(self.todo)
                    for fd, _ in self.poll.poll(0 if free_here else None):  # with a host to take: no wait
                        self._read(self.workers[fd], done)
                    if free_here and self.todo:
                        mine = self.todo.popleft()
                        done[mine] = self._run(mine)
                yield done.pop(index)
        finally:  # every worker's ends closed first: a busy one fails to answer, and begins nothing more
            workers = list(self.workers.values())
            for worker in workers:
                self._close(worker)
            for worker in workers:
                os.waitpid(worker.pid, 0)

    def _run(self, index: int) -> Outcome:
        return run_host(self.loaded, self.loaded.hosts[index], self.job, self.report, self.notify)

    def _read(self, worker: _Worker, done: dict[int, Outcome]) -> None:
        import pickle

        chunk = os.read(worker.answers, 1 << 16)
        if not chunk:  # it exited: done, or killed from outside (then its host failed, not the others)
            self._close(worker)
            _, status = os.waitpid(worker.pid, 0)
            if worker.handed:
                lost = worker.handed.popleft()
                done[lost] = _died(self.loaded.hosts[lost].name, status)
                self.todo.extendleft(reversed(worker.handed))  # sent, never begun: another worker's
            if self.todo:
                successor = self._start()
                if successor is None:
                    self.works_here = True  # none could be forked in its place: this process does the rest
                else:
                    self._hand(successor)
            return
        worker.received += chunk
        while len(worker.received) >= _SIZE.size:
            (size,) = _SIZE.unpack_from(worker.received)
            if len(worker.received) < _SIZE.size + size:
                break
            # our own fork's answer, over a pipe only it and we hold: not outside input
            answer = pickle.loads(worker.received[_SIZE.size:_SIZE.size + size])
            del worker.received[:_SIZE.size + size]
            if isinstance(answer, _Bug):
                raise answer.error from answer  # as if the host had run here, with the worker's traceback
            done[worker.handed.popleft()] = answer
        self._hand(worker)

    def _start(self) -> _Worker | None:
        """Fork a worker (None if the system would not: too many processes or open files)."""
        import select

        made: list[int] = []
        try:
            tasks_r, tasks_w = os.pipe2(os.O_CLOEXEC)
            made += (tasks_r, tasks_w)
            answers_r, answers_w = os.pipe2(os.O_CLOEXEC)
            made += (answers_r, answers_w)
            sys.stdout.flush()
            sys.stderr.flush()  # or the worker would print what is still in our buffers again
            pid = os.fork()
        except OSError:
            for fd in made:
                os.close(fd)
            return None
        if pid == 0:
            try:  # whatever happens here ends here: never back in the caller's code, in a second process
                for other in list(self.workers.values()):  # or a worker's end of the pipes outlives it
                    self._close(other)
                os.close(tasks_w)
                os.close(answers_r)
                _serve(self.loaded, self.job, self.report, self.notify, tasks_r, answers_w)
            finally:
                os._exit(1)
        os.close(tasks_r)
        os.close(answers_w)
        worker = _Worker(pid, tasks_w, answers_r)
        self.workers[answers_r] = worker
        self.poll.register(answers_r, select.POLLIN)
        return worker

    def _hand(self, worker: _Worker, limit: int | None = None) -> None:
        """Hosts to this worker until it holds `limit` (`ahead`); with none left, our end of its
        tasks pipe, closed."""
        if worker.tasks < 0:
            return
        sent: list[int] = []
        while self.todo and len(worker.handed) + len(sent) < (limit or self.ahead):
            sent.append(self.todo.popleft())
        alive = True
        if sent:
            try:
                os.write(worker.tasks, b"".join(_INDEX.pack(index) for index in sent))
                worker.handed.extend(sent)
            except BrokenPipeError:  # it died since its last answer (its end is read next): another's
                self.todo.extendleft(reversed(sent))
                alive = False
        if not self.todo or not alive:
            os.close(worker.tasks)
            worker.tasks = -1

    def _close(self, worker: _Worker) -> None:
        """Our ends of its pipes: it exits when it has no host left, or fails to answer one."""
        if worker.answers in self.workers:
            self.poll.unregister(worker.answers)
            del self.workers[worker.answers]
        if worker.tasks >= 0:
            os.close(worker.tasks)
            worker.tasks = -1
        if worker.answers >= 0:
            os.close(worker.answers)
            worker.answers = -1


def _died(host: str, status: int) -> Outcome:
    code = os.waitstatus_to_exitcode(status)
    how = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
    return Outcome(host, Status.FAILED, error=f"{host}: a worker process died ({how}) before this host was done")


class _Bug(Exception):
    """A worker's unexpected exception, with the traceback it had there (pickled, it would lose
    it). Raised as the cause of that exception, as concurrent.futures shows a worker's."""

    def __init__(self, error: BaseException, text: str) -> None:
        super().__init__(text)
        self.error, self.text = error, text

    def __reduce__(self) -> tuple[Any, ...]:
        return _Bug, (self.error, self.text)

    def __str__(self) -> str:
        return f"in a worker process:\n{self.text}"


def _serve(loaded: Loaded, job: Job, report: Report, notify: Notify, tasks: int, answers: int) -> NoReturn:
    """A worker: each host it is handed, run and answered, until the tasks pipe is closed. It
    leaves by os._exit, so nothing of the parent's (atexit, buffers, the caller's `finally`)
    runs twice."""
    import pickle
    import traceback

    code = 0
    try:
        while len(task := os.read(tasks, _INDEX.size)) == _INDEX.size:  # else closed: no more hosts
            (index,) = _INDEX.unpack(task)
            try:
                answer: object = run_host(loaded, loaded.hosts[index], job, report, notify)
            except Exception as exc:  # not an expected failure (those are Outcomes): a bug
                answer = _Bug(exc, traceback.format_exc())
            try:
                data = pickle.dumps(answer)
                if isinstance(answer, _Bug):  # an exception whose arguments do not rebuild it: its text instead
                    pickle.loads(data)  # (an Outcome, our own dataclasses, always does: not read back)
            except Exception:
                error = answer.error if isinstance(answer, _Bug) else answer
                data = pickle.dumps(_Bug(RuntimeError(f"{type(error).__name__}: {error}"),
                                         answer.text if isinstance(answer, _Bug) else ""))
            view = memoryview(_SIZE.pack(len(data)) + data)
            while view:
                view = view[os.write(answers, view):]
    except BaseException as exc:  # interrupted, or the parent is gone (a broken pipe)
        code = 1
        if not isinstance(exc, KeyboardInterrupt | BrokenPipeError):  # else the parent's host fails unexplained
            print(f"provision: a worker process stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
