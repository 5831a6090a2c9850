"""The pipeline, one straight line per host: load → validate → observe → plan → apply → verify
→ (confirm) → keep, or roll back. Everything here is glue between the pure core and a host's
runner (runner.py); `run_host` is the whole of it for one host, which fleet.py only schedules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from . import cache, loader
from .connection import LOCAL, NETNS, Connection, skip_reason
from .desired import network_of
from .disruption import mark
from .errors import (
    ConflictError,
    Diagnostic,
    ForwarderError,
    HostError,
    InventoryError,
    KernelError,
    LockTimeout,
    ProvisionError,
    UnreachableError,
    VerificationError,
    collect,
)
from .hints import TYPE_CHECKING, Any
from .inventory import Host, Inventory
from .model import Network, Observed, Tunnel
from .plan import Change, Moved, Plan, make_plan, moved_by
from .render import change_line
from .resolve import Resolved, resolve
from .source import Sources
from .validate import check_devs_present, check_host, check_peers

if TYPE_CHECKING:
    from .connection.kernel import Ahead


@dataclass(frozen=True)
class Loaded:
    """An inventory loaded and judged, with the desired state of each selected host: what every
    command starts from, whatever it does next."""

    inventory: Inventory
    hosts: tuple[Host, ...]  # the selected ones
    desired: Mapping[str, Network]
    warnings: tuple[Diagnostic, ...] = ()
    from_cache: bool = False  # the verdict on the inventory came from cache.py

    @cached_property
    def everyone(self) -> dict[str, Host]:
        """Every host of the inventory by name, the selected or not (peers are looked up here).
        Made once: every host's run asks for it."""
        return {h.name: h for h in self.inventory.hosts}


def load(file: str, limit: str | None = None, connection: str | None = None, act: bool = False,
         default_connection: str | None = None, cache_dir: Path | None = None) -> Loaded:
    """Raises InventoryError with every problem found in the file. `connection` overrides
    every host's ansible_connection (how `provision` runs itself inside a container);
    `default_connection` is for the hosts that have none (the pull agent, on the host itself).
    `act`: the command is about to change the selected hosts from here, so their key files and
    users must be there; otherwise (validate, plan --facts, destroy) what is missing is a warning.
    `cache_dir`: keep and reuse the verdict on an unchanged inventory there (cache.py), keyed by
    every file and listing the load may read (loader.inputs)."""
    inputs = slot = kept = None
    if cache_dir is not None:
        inputs = loader.inputs(file)
        slot = cache.slot(cache_dir, inputs.texts)
        kept = cache.get_verdict(slot)
    inventory = _from_cache(file, kept) if kept is not None else None
    hit = inventory is not None
    problems: list[Diagnostic] = []
    if inventory is None:
        record: dict[str, Any] = {}
        inventory, problems, references, exact = _validated(file, record, cache_dir, inputs)
        if slot is not None and inputs is not None and not problems and inputs.read_alike(inventory.source.documents):
            cache.put_verdict(slot, record, references, exact)
            if references:
                from . import recheck

                recheck.note(slot.directory, inputs, references)
    source = inventory.source
    hosts = tuple(_reached(h, connection or h.connection or default_connection) for h in inventory.select(limit))
    acted_on = {h.name for h in hosts if skip_reason(h) is None} if act else set()
    here = {h.name for h in hosts if h.connection in (None, LOCAL, NETNS)}
    resolved, found = resolve(source, inventory.hosts, acted_on, quiet=act, here=here)
    problems = list(dict.fromkeys(problems + found))
    collect(problems)
    desired = _Desired({h.name: h for h in hosts}, {h.name: h for h in inventory.hosts}, source, resolved)
    return Loaded(inventory, hosts, desired, tuple(d for d in problems if d.severity != "error"), from_cache=hit)


class _Desired(Mapping[str, Network]):
    """Each selected host's desired state, made the first time it is asked for. A fleet's
    forked workers then each make their own hosts' side by side, where this process made all
    of them before forking (0.1 ms a host of 20 devices). Pure: the same value whenever made."""

    def __init__(self, hosts: dict[str, Host], everyone: dict[str, Host], source: Sources,
                 resolved: Resolved) -> None:
        self._hosts, self._everyone, self._source, self._resolved = hosts, everyone, source, resolved
        self._made: dict[str, Network] = {}

    def __getitem__(self, name: str) -> Network:
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = network_of(self._hosts[name], self._everyone, self._source, self._resolved)
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self._hosts)

    def __len__(self) -> int:
        return len(self._hosts)


def _from_cache(file: str, parsed: dict[str, Any]) -> Inventory | None:
    """The inventory from the documents a clean load kept; None if they are not even its shape
    (then it is parsed and judged again)."""
    try:
        inventory, problems = loader.load(file, parsed)
    except (TypeError, ValueError, AttributeError, KeyError, InventoryError):
        return None
    return inventory if not problems else None


def _validated(file: str, record: dict[str, Any], cache_dir: Path | None = None, inputs: loader.Inputs | None = None
               ) -> tuple[Inventory, list[Diagnostic], dict[str, cache.Reference], bool]:
    """Parse, schema and the checks that need only the inventory: what cache.py keeps. Raises
    InventoryError with every error; returns the warnings, the references to kept parses a
    verdict holds instead of files' data in `record` (reparse.Reparser.references), and whether
    every file's data is made of JSON's own types alone (reparse.Reparser.exact). With
    `cache_dir`, each YAML file is parsed and judged from its last parse and verdict where the
    edit allows (reparse.py), and where the edit changed only routes of an inventory that passed,
    only those routes are checked again (recheck.py; `inputs`: what the load may read)."""
    routes_only = None
    if cache_dir is None:
        inventory, problems = loader.load(file, record=record)
        references: dict[str, cache.Reference] = {}
        exact = False
    else:
        from . import reparse  # only for a text not seen before: 0.7 ms of a no-op plan's start

        last = reparse.Reparser(cache_dir)
        inventory, problems = loader.load(file, record=record, yaml=last.parse, check=last.check)
        references, exact = last.references(record), last.all_exact(record)
        if last.edits and inputs is not None and not problems:
            from . import recheck

            routes_only = recheck.routes_to_check(cache_dir, inputs, last.edits, record, inventory.source.documents,
                                                  inventory.hosts)
    source = inventory.source
    try:
        for host in inventory.hosts:
            problems += check_host(source, host, routes_only[host.name] if routes_only is not None else None)
        if routes_only is None:  # else no tunnel, device or variable changed: recheck.py
            problems += check_peers(source, inventory.hosts)
    except (TypeError, ValueError, AttributeError, KeyError):
        if not problems:  # a shape the schema lets through but we cannot read: our bug
            raise
        collect(problems)  # the schema already said what is wrong with the shape
    problems = list(dict.fromkeys(problems))  # dedupe: a group's error is seen by each of its hosts
    collect(problems)
    return inventory, problems, references, exact


def _reached(host: Host, connection: str | None) -> Host:
    if connection == host.connection:
        return host
    return replace(host, vars={**host.vars, "ansible_connection": connection})


class Phase(StrEnum):
    """The stages of one host's run, as timed for `-v` and named on the progress line."""

    OBSERVE = "observe"
    PLAN = "plan"
    APPLY = "apply"
    VERIFY = "verify"


Progress = Callable[[Phase, int, int], None]  # (phase, done, total) while a host is worked on


def no_progress(phase: Phase, done: int, total: int) -> None:
    pass


@dataclass
class Stopwatch:
    """Seconds spent in each phase (a phase entered twice adds up)."""

    seconds: dict[Phase, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, phase: Phase) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


class Status(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Outcome:
    """How one host's run ended: what the recap line, the JSON output and the exit code are made
    from."""

    host: str
    status: Status
    plan: Plan | None = None
    applied: list[Change] = field(default_factory=list)
    error: str | None = None
    transient: bool = False  # failed for a reason outside the inventory (busy or unreachable): try again later
    seconds: dict[Phase, float] = field(default_factory=dict)  # how long each phase took
    unreachable: bool = False  # failed because the host could not be reached (the RECAP counts it apart)


@dataclass(frozen=True)
class Owners:
    """Which inventory owns what on this machine (ownership.py), and what this run may do about it."""

    registry: Mapping[str, str]
    me: str  # this inventory
    take_over: bool = False  # may change what another inventory owns
    save: Callable[[Mapping[str, str]], None] = lambda registry: None


def plan_for(observed: Observed, host: Host, desired: Network, source: Sources, destroy: bool,
             session: str | None = None, owners: Owners | None = None) -> Plan:
    """Pure: the checks that need the live state (a route's dev must exist), then the diff, each
    change marked when it can cut off the host (`session`: the address a local host is reached from)
    or takes over what another inventory owns."""
    if not destroy:
        missing = check_devs_present(source, host, (name for name, _ in observed.links))
        if missing:
            raise InventoryError(missing)
    return mark(_diff(host, desired, observed, destroy, owners), observed, session)


def observe_and_plan(conn: Connection, clock: Stopwatch, progress: Progress, host: Host, desired: Network,
                     source: Sources, destroy: bool, session: str | None, owners: Owners | None
                     ) -> tuple[Observed, Plan]:
    """The first two phases of both plan and apply, each timed and told to `progress`."""
    progress(Phase.OBSERVE, 0, 0)
    with clock(Phase.OBSERVE):
        observed = conn.observe()
    progress(Phase.PLAN, 0, 0)
    with clock(Phase.PLAN):
        plan = plan_for(observed, host, desired, source, destroy, session, owners)
    return observed, plan


def _diff(host: Host, desired: Network, observed: Observed, destroy: bool, owners: Owners | None,
          moved: Moved | None = None) -> Plan:
    if owners is None:
        return make_plan(host.name, desired, observed, destroy=destroy, moved=moved)
    from .ownership import hide_foreign, mark_take_overs

    mine = hide_foreign(observed, desired, owners.registry, owners.me)
    return mark_take_overs(make_plan(host.name, desired, mine, destroy=destroy, moved=moved), owners.registry,
                           owners.me)


@dataclass(frozen=True)
class Safety:
    """What apply may do with changes that can cut a host off (disruption.py)."""

    force: bool = False  # apply them as any other
    confirm_timeout: float | None = None  # keep the changes only if `provision confirm` comes in time
    confirm: Callable[[], bool] | None = None  # the wait, bound to the host by its runner; False: roll back

    def bound(self, state_dir: Path, key: str, host: str, notify: Callable[[str], None]) -> Safety:
        from . import confirm

        timeout = self.confirm_timeout or 0.0
        confirm.notes_directory(state_dir)  # one that cannot be used is refused now, before any change
        return replace(self, confirm=lambda: confirm.wait(state_dir, key, host, timeout, notify))


def apply_host(conn: Connection, host: Host, desired: Network, source: Sources, destroy: bool,
               report: Callable[[Change], None], check: Callable[[Plan], None] | None = None,
               safety: Safety = Safety(), session: str | None = None, owners: Owners | None = None,
               progress: Progress = no_progress) -> Outcome:
    """Apply, then read back and compare; any failure undoes this run's steps, in reverse.
    `check` may refuse the plan before anything is changed (a saved plan that is stale);
    disruptive changes need `safety` (--force, or --confirm-timeout: kept only if confirmed).
    Each phase is timed (-v) and told to `progress` (the progress line)."""
    clock = Stopwatch()
    observed, plan = observe_and_plan(conn, clock, progress, host, desired, source, destroy, session, owners)
    if check is not None:
        check(plan)
    if owners is not None and not owners.take_over:
        from .ownership import take_overs

        theirs = take_overs(plan)
        if theirs:
            raise ConflictError(host.name, "refusing to change what another inventory made on this machine; "
                                "apply with --take-over to make it this inventory's",
                                details=[change_line(c, colour=False) for c in theirs])
    risky = [c for c in plan.changes if c.disruptive]
    if risky and not safety.force and safety.confirm_timeout is None:
        raise ConflictError(host.name, "refusing changes that can cut this host off; apply with --confirm-timeout "
                            "SECONDS (rolled back unless `provision confirm` comes from a new session) or --force",
                            details=[f"{change_line(c, colour=False)}  <- {c.disruptive}" for c in risky])
    if plan.empty:
        if owners is not None:
            from .ownership import recorded

            owners.save(recorded(owners.registry, owners.me, (), desired, destroy))
        return Outcome(host.name, Status.OK, plan, seconds=clock.seconds)
    with clock(Phase.APPLY):
        from .kernel.apply import Step, schedule, steps_for  # not for a plan: 5 ms of its start

        per_change = steps_for(plan, observed)
        steps: list[Step] = schedule(per_change)
        last_step = {id(ss[-1]): c for c, ss in per_change if ss}
        applied: list[Change] = []
        total = len(plan.changes)

        def on_step(step: Step) -> None:
            change = last_step.get(id(step))
            if change is not None:
                applied.append(change)
                report(change)
                progress(Phase.APPLY, len(applied), total)

        progress(Phase.APPLY, 0, total)
        tx = conn.transaction(tunnels=any(isinstance(s.subject, Tunnel) for s in steps))

        def undo(exc: HostError) -> None:
            undone = len(tx.done)
            problems = tx.rollback()
            exc.details = (*exc.details, f"rolled back the {undone} step(s) already made in this run", *problems)

        try:
            tx.run(steps, on_step)
        except (KernelError, ForwarderError) as exc:  # a tunnel that would not start is undone as a refused step
            undo(exc)
            raise
    progress(Phase.VERIFY, 0, 0)
    with clock(Phase.VERIFY):
        try:
            after = _diff(host, desired, conn.observe(plan.changes), destroy, owners, moved_by(plan.changes))
        except KernelError as exc:  # the state could not be read back: undone as a refused step is
            undo(exc)
            raise
    if not after.empty:
        undone = len(tx.done)
        problems = tx.rollback()
        raise VerificationError(
            host.name, "after apply the live state still differs from the inventory; rolled back",
            details=[change_line(c, colour=False) for c in after.changes]
            + [f"rolled back {undone} step(s)", *problems])
    if safety.confirm_timeout is not None:
        why = f"not confirmed within {safety.confirm_timeout:g} s"
        try:
            confirmed = safety.confirm is not None and safety.confirm()
        except (ProvisionError, OSError) as exc:  # no note could be left for `provision confirm`: none can come
            confirmed, why = False, f"cannot wait for a confirmation ({exc})"
        if not confirmed:
            undone = len(tx.done)
            problems = tx.rollback()
            raise HostError(host.name, f"{why}: rolled back {undone} step(s)", details=problems)
    if owners is not None:
        from .ownership import recorded

        owners.save(recorded(owners.registry, owners.me, plan.changes, desired, destroy))
    return Outcome(host.name, Status.CHANGED, plan, applied, seconds=clock.seconds)


def failure(host: str, exc: ProvisionError) -> Outcome:
    return Outcome(host, Status.FAILED, error=str(exc), transient=isinstance(exc, UnreachableError | LockTimeout),
                   unreachable=isinstance(exc, UnreachableError))


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
    safety: Safety = Safety()
    owner: str = ""  # this inventory, as ownership.py records it ("": its directory, ownership.default_owner)
    take_over: bool = False  # may change what another inventory made


def run_host(loaded: Loaded, host: Host, job: Job, report: Callable[[str, Change], None],
             notify: Callable[[str], None], progress: Callable[[str, Phase, int, int], None] | None = None,
             ahead: Ahead | None = None) -> Outcome:
    """The whole pipeline for one host, through its runner; every expected error becomes a failed Outcome.
    `progress` is told of the host's phases (the progress line); `ahead`, of the hosts run one
    after another here (fleet.py: connection.kernel.Ahead)."""
    from .ownership import default_owner
    from .runner import Reach, runner_for

    reason = None if job.snapshots is not None else skip_reason(host)
    if reason:
        return Outcome(host.name, Status.SKIPPED, error=reason)
    if job.snapshots is not None and host.name not in job.snapshots:
        if job.skip_unsnapshotted:
            return Outcome(host.name, Status.SKIPPED, error=f"no facts snapshot in {job.snapshots_from}")
        return failure(host.name, HostError(host.name, f"no facts for this host in {job.snapshots_from}"))
    desired = loaded.desired[host.name]
    reach = Reach(job.inventory_file, loaded.inventory.source, loaded.everyone, job.state_dir, job.lock_timeout,
                  notify, job.owner or default_owner(job.inventory_file), job.take_over, ahead)
    try:
        runner = runner_for(host, reach, job.snapshots)
        told: Progress = no_progress if progress is None else (
            lambda phase, done, total: progress(host.name, phase, done, total))
        if job.apply:
            return runner.apply(desired, job.destroy, lambda c: report(host.name, c), job.check, job.safety, told)
        return runner.plan(desired, job.destroy, told)
    except InventoryError as exc:
        return Outcome(host.name, Status.FAILED, error=str(exc))
    except ProvisionError as exc:
        return failure(host.name, exc)
