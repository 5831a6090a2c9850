"""`provision pull`: keep this host on the inventory at the tip of a git branch (ansible-pull style).

Each run: fetch the branch; decide about its commit (`record.decide`); adopt it only if its
inventory validates and its apply succeeds, verification included (the apply's own rollback
leaves the host as it was when it does not); otherwise record the rejection and repair drift
from the last good commit, which is also what a run with nothing new does. Everything the
agent knows is one JSON record, rewritten atomically at the end of each run, so a run killed
at any point is simply done again by the next one. Host changes go through the same pipeline,
and the same per-host lock, as `provision apply`.

A commit says what to apply, never where, nor as whom: the host is always this one (or the
network namespace the agent's own --netns names), whatever the commit's ansible_connection
and ansible_host say. The record, the private clone and the checked-out trees live in the
persistent state directory: the record is what refuses a rollback, and must survive a reboot.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from ..connection import LOCAL, NETNS
from ..errors import InventoryError, ProvisionError
from ..files import FileError, atomic_write, private_subdirectory
from ..hints import Any
from ..inventory import Host
from ..lock import pid_lock
from ..reconcile import Job, Loaded, Outcome, Status, run_host
from ..source import Sources
from . import record as rec
from .git import GitError, Repository

STATE = "agent.json"


@dataclass(frozen=True)
class Options:
    """What `provision pull` was started with: fixed for the agent's life, so every run of the
    loop judges a commit by the same rules."""

    repo: str
    branch: str | None  # None: the repository's default branch
    inventory: str  # the inventory's path inside the repository
    host: str
    state_dir: Path  # what vanishes with a reboot: the host lock, the tunnels' run state
    persistent_dir: Path  # what must not: the record, the clone, the trees
    netns: str | None = None  # set: the host is this network namespace (from the agent's command line)
    min_commit: str | None = None  # with no record: adopt only commits descending from this one
    allowed_signers: str | None = None  # set: only commits signed by one of these keys are applied
    repair: bool = True
    allow_reset: bool = False
    retry: bool = False
    lock_timeout: float = 60.0
    facts_out: str | None = None


class Agent:
    def __init__(self, options: Options, say: Callable[[str], None]):
        self.o, self.say = options, say
        slug = hashlib.sha256("\0".join((options.repo, options.branch or "", options.inventory, options.host))
                              .encode()).hexdigest()[:12]
        self.dir = options.persistent_dir / "pull" / slug
        self.repo = Repository(self.dir / "repo.git")
        self._host: Host | None = None  # as the last inventory read describes it: for --facts-out

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One agent per repository, branch, inventory and host at a time."""
        def busy(fd: int, holder: str) -> None:
            raise ProvisionError(f"another pull agent (pid {holder}) is running for this repository and host")

        private_subdirectory(self.o.persistent_dir, "pull", self.dir.name)
        with pid_lock(self.dir / "agent.lock", busy):
            yield

    def record(self) -> rec.Record:
        path = self.dir / STATE
        saved = rec.load(path)
        if not saved:
            return rec.Record(self.o.repo, self.o.branch or "HEAD", self.o.inventory, self.o.host)
        try:
            return rec.Record.from_dict(saved)
        except (ValueError, TypeError) as exc:  # not a fresh record: that would lift the rollback protection
            raise FileError(path, f"is not a pull agent record ({exc}); move it away to start afresh") from None

    def run_once(self) -> rec.Run:
        """One fetch → decide → adopt or repair; the record is saved whatever happens."""
        started, clock = _now(), time.monotonic()
        for leftover in self.dir.glob(f".{STATE}.*"):  # a save cut short by a kill
            leftover.unlink(missing_ok=True)
        record = self.record()
        rec.save(record, self.dir / STATE)  # a record that cannot be written (a full disk): stop before applying
        ok, result = False, ""
        try:
            record, ok, result = self._run(record, started)
        except ProvisionError as exc:
            result = f"error: {exc}"
        if self.o.facts_out and self._host is not None:
            try:
                self._write_facts(self._host)
            except ProvisionError as exc:
                ok, result = False, f"{result}; --facts-out not written: {exc}"
        run = rec.Run(started, round(time.monotonic() - clock, 3), ok, result)
        rec.save(replace(record, last_run=run, runs=record.runs + 1), self.dir / STATE)
        self._prune(record)
        self.say(f"{'ok' if ok else 'NOT OK'}: {result}")
        return run

    def _run(self, record: rec.Record, now: str) -> tuple[rec.Record, bool, str]:
        self.repo.ensure()
        try:
            commit = self.repo.fetch(self.o.repo, self.o.branch)
        except GitError as exc:
            return record, False, f"{exc}; {self._stay(record)[1]}"
        record = replace(record, fetched=commit)
        base = record.good or self.o.min_commit
        signature = self._signature(record, commit)
        decision = rec.decide(
            record, commit,
            fast_forward=base is not None and self.repo.is_ancestor(base, commit),
            signature=signature, retry=self.o.retry, allow_reset=self.o.allow_reset, floor=self.o.min_commit,
            signed_for=self.repo.branch_trailers(commit, rec.BRANCH_TRAILER) if signature else ())
        if decision.verdict is rec.Verdict.ADOPT:
            self.say(f"trying {commit[:12]} ({self.repo.subject(commit)})")
            outcome = self._reconcile(commit, apply=True)
            if outcome.status is not Status.FAILED:
                self.repo.keep_good(commit)
                n = len(outcome.applied)
                return record.adopt(commit, now), True, f"adopted {commit[:12]}: {n} change{'s' * (n != 1)}"
            reason = outcome.error or "failed"
            if outcome.transient:  # not the commit's fault: the next run tries it again
                return record, False, f"could not apply {commit[:12]} now: {reason}"
            record = record.reject(commit, reason, now)
            self.say(f"rejected {commit[:12]}: {reason}")
            return record, False, f"rejected {commit[:12]}; {self._stay(record)[1]}"
        if decision.verdict is rec.Verdict.REFUSE:
            record = record.reject(commit, decision.reason, now, refused=True)
            self.say(f"refused: {decision.reason}")
            return record, False, f"refused {commit[:12]}; {self._stay(record)[1]}"
        in_sync, stay = self._stay(record)
        if commit == record.good:
            return record, in_sync, stay
        return record, False, f"{decision.reason}; {stay}"

    def _signature(self, record: rec.Record, commit: str) -> tuple[bool, str] | None:
        if self.o.allowed_signers is None or commit == record.good:
            return None
        return self.repo.verify_signature(commit, self.o.allowed_signers)

    def _stay(self, record: rec.Record) -> tuple[bool, str]:
        """Keep the host on the last good commit: repair drift, or only report it. Returns
        whether the host is in sync with that commit afterwards, and what was done."""
        if record.good is None:
            return False, "no good commit yet: the host is left as it is"
        good = record.good[:12]
        try:
            outcome = self._reconcile(record.good, apply=self.o.repair)
        except ProvisionError as exc:
            outcome = Outcome(self.o.host, Status.FAILED, error=str(exc))
        if outcome.status is Status.FAILED:
            return False, f"error repairing from {good}: {outcome.error}"
        if self.o.repair:
            n = len(outcome.applied)
            return True, f"on {good}" + (f", repaired {n} drifted resource{'s' * (n != 1)}" if n else ", in sync")
        pending = len(outcome.plan.changes) if outcome.plan else 0
        if pending:
            return False, f"drift from {good}: {pending} change{'s' * (pending != 1)} not repaired (--no-repair)"
        return True, f"on {good}, in sync"

    def _reconcile(self, commit: str, apply: bool) -> Outcome:
        """The commit's inventory, for this host, through the same pipeline as `provision apply`."""
        try:
            tree = self.repo.extract(commit, private_subdirectory(self.dir, "trees") / commit,
                                     os.path.dirname(self.o.inventory) or ".")
        except GitError as exc:  # the commit itself is at fault (a link out of the tree)
            return Outcome(self.o.host, Status.FAILED, error=str(exc))
        file = tree / self.o.inventory
        try:
            loaded = self._load(file, apply)
        except InventoryError as exc:
            return Outcome(self.o.host, Status.FAILED,
                           error=str(exc).replace(f"{tree}/", f"{commit[:12]}:") + "\n(the inventory is not valid)")
        job = Job(str(file), apply=apply, state_dir=self.o.state_dir, lock_timeout=self.o.lock_timeout,
                  owner=f"pull {self.o.repo} {os.path.dirname(self.o.inventory) or '.'}")  # whichever commit's tree
        outcome = run_host(loaded, loaded.hosts[0], job, lambda host, change: self.say(f"{host}: {_change(change)}"),
                           self.say)
        self._host = loaded.hosts[0]
        if outcome.status is Status.SKIPPED:
            return replace(outcome, status=Status.FAILED, error=f"{self.o.host}: skipped ({outcome.error})")
        return outcome

    def _load(self, file: Path, act: bool) -> Loaded:
        """The commit's inventory for this host, reached the way the agent was told to, never the
        way the commit says (it would choose where root acts, or where the key files go)."""
        from ..reconcile import load

        if not file.is_file():
            from ..errors import Diagnostic

            raise InventoryError([Diagnostic((), "no such file in the commit", str(file))])
        loaded = load(str(file), self.o.host, NETNS if self.o.netns else LOCAL, act)
        if self.o.netns is None:
            return loaded
        here = tuple(replace(h, vars={**h.vars, "ansible_host": self.o.netns}) for h in loaded.hosts)
        return replace(loaded, hosts=here)

    def _write_facts(self, host: Host) -> None:
        """This host's `provision facts` snapshot, for CI to plan pull requests against: once
        a run, after whatever the run changed."""
        import json

        from ..runner import Reach, runner_for

        reach = Reach(self.o.inventory, Sources(self.o.inventory), {host.name: host}, self.o.state_dir,
                      self.o.lock_timeout, self.say)
        doc = {"all": {"hosts": {host.name: runner_for(host, reach).facts()}}}
        atomic_write(self.o.facts_out or "", (json.dumps(doc, indent=2) + "\n").encode(), mode=0o644)

    def _prune(self, record: rec.Record) -> None:
        """Trees of commits other than the good one and the latest are not needed again."""
        keep = {record.good, record.fetched}
        try:
            trees = private_subdirectory(self.dir, "trees")  # never a link's target's entries
        except FileError:  # the run that extracted into it said why
            return
        for tree in trees.iterdir():
            if tree.name not in keep:  # and trees a kill left half-extracted
                shutil.rmtree(tree, ignore_errors=True)


def _change(change: Any) -> str:
    from ..render import change_line

    return change_line(change, colour=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def loop(agent: Agent, interval: float | None) -> int:
    """Run every `interval` seconds (once, with None) until SIGTERM or SIGINT, which end it
    between runs: a run in progress finishes, so an apply is never cut in half by a stop."""
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    last: rec.Run | None = None
    while not stopping:
        last = agent.run_once()
        if interval is None:
            break
        deadline = time.monotonic() + interval
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    if interval is not None:
        agent.say("stopped")
    return 0 if last is None or last.ok else 1


def records(persistent_dir: Path) -> list[dict[str, Any]]:
    """Every agent's record under the persistent state directory, for `provision status`."""
    base = persistent_dir / "pull"
    out = []
    for path in sorted(base.glob(f"*/{STATE}")) if base.is_dir() else ():
        saved = rec.load(path)
        if saved:
            out.append(saved)
    return out
