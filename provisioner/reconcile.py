"""The pipeline, one straight line per host: load → validate → observe → plan → apply → verify
→ keep, or roll back. Everything here is glue between the pure core and a connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from . import cache, schema
from .connection import LOCAL, NETNS, Connection, skip_reason
from .errors import (
    Diagnostic,
    HostError,
    InventoryError,
    KernelError,
    LockTimeout,
    ProvisionError,
    UnreachableError,
    VerificationError,
    collect,
)
from .inventory import Host, Inventory, Source, build, load_source, parse
from .kernel.apply import Step, schedule, steps_for
from .model import Network, Observed
from .plan import Change, Plan, make_plan
from .render import change_line
from .resolve import resolve
from .validate import check_devs_present, check_host, check_peers, network_of


@dataclass(frozen=True)
class Loaded:
    inventory: Inventory
    hosts: tuple[Host, ...]  # the selected ones
    desired: Mapping[str, Network]
    warnings: tuple[Diagnostic, ...] = ()
    from_cache: bool = False  # the verdict on the inventory came from cache.py


def load(file: str, limit: str | None = None, connection: str | None = None, act: bool = False,
         default_connection: str | None = None, cache_dir: Path | None = None) -> Loaded:
    """Raises InventoryError with every problem found in the file. `connection` overrides
    every host's ansible_connection (how `provision` runs itself inside a container);
    `default_connection` is for the hosts that have none (the pull agent, on the host itself).
    `act`: the command is about to change the selected hosts from here, so their key files and
    users must be there; otherwise (validate, plan --facts, destroy) what is missing is a warning.
    `cache_dir`: keep and reuse the verdict on an unchanged inventory there (cache.py)."""
    source = load_source(file)
    slot = cache.slot(cache_dir, [source.text]) if cache_dir is not None else None
    data = cache.get(slot) if slot is not None else None
    problems: list[Diagnostic] = []
    inventory = _built(source, data) if data is not None else None
    hit = inventory is not None
    if inventory is None:
        data, inventory, problems = _validated(source)
        if slot is not None and not problems:
            cache.put(slot, data)
    hosts = tuple(_reached(h, connection or h.connection or default_connection) for h in inventory.select(limit))
    acted_on = {h.name for h in hosts if skip_reason(h) is None} if act else set()
    here = {h.name for h in hosts if h.connection in (None, LOCAL, NETNS)}
    resolved, found = resolve(source, inventory.hosts, acted_on, quiet=act, here=here)
    problems = list(dict.fromkeys(problems + found))
    collect(problems)
    everyone = {h.name: h for h in inventory.hosts}
    desired = {h.name: network_of(h, everyone, source, resolved) for h in hosts}
    return Loaded(inventory, hosts, desired, tuple(d for d in problems if d.severity != "error"), from_cache=hit)


def _built(source: Source, data: Any) -> Inventory | None:
    """An inventory from cached data; None if the data is not even the shape of one."""
    try:
        return build(source, data)
    except (TypeError, ValueError, AttributeError, KeyError):
        return None


def _validated(source: Source) -> tuple[Any, Inventory, list[Diagnostic]]:
    """Parse, schema and the checks that need only the inventory: what cache.py keeps. Raises
    InventoryError with every error; returns the warnings."""
    data = parse(source)
    problems: list[Diagnostic] = schema.check(source, data)
    try:
        inventory = build(source, data)
        for host in inventory.hosts:
            problems += check_host(source, host)
        problems += check_peers(source, inventory.hosts)
    except (TypeError, ValueError, AttributeError, KeyError):
        if not problems:  # a shape the schema lets through but we cannot read: our bug
            raise
        collect(problems)  # the schema already said what is wrong with the shape
    problems = list(dict.fromkeys(problems))  # dedupe: a group's error is seen by each of its hosts
    collect(problems)
    return data, inventory, problems


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
    host: str
    status: Status
    plan: Plan | None = None
    applied: list[Change] = field(default_factory=list)
    error: str | None = None
    transient: bool = False  # failed for a reason outside the inventory (busy or unreachable): try again later
    seconds: dict[Phase, float] = field(default_factory=dict)  # how long each phase took


def plan_for(observed: Observed, host: Host, desired: Network, source: Source, destroy: bool) -> Plan:
    """Pure: the checks that need the live state (a route's dev must exist), then the diff."""
    if not destroy:
        missing = check_devs_present(source, host, (name for name, _ in observed.links))
        if missing:
            raise InventoryError(missing)
    return make_plan(host.name, desired, observed, destroy=destroy)


def apply_host(conn: Connection, host: Host, desired: Network, source: Source, destroy: bool,
               report: Callable[[Change], None], progress: Progress = no_progress) -> Outcome:
    """Apply, then read back and compare; any failure undoes this run's steps, in reverse."""
    clock = Stopwatch()
    progress(Phase.OBSERVE, 0, 0)
    with clock(Phase.OBSERVE):
        observed = conn.observe()
    progress(Phase.PLAN, 0, 0)
    with clock(Phase.PLAN):
        plan = plan_for(observed, host, desired, source, destroy)
    if plan.empty:
        return Outcome(host.name, Status.OK, plan, seconds=clock.seconds)
    with clock(Phase.APPLY):
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
        tx = conn.transaction()

        def undo(exc: KernelError) -> None:
            undone = len(tx.done)
            problems = tx.rollback()
            exc.details = (*exc.details, f"rolled back the {undone} step(s) already made in this run", *problems)

        try:
            tx.run(steps, on_step)
        except KernelError as exc:
            undo(exc)
            raise
    progress(Phase.VERIFY, 0, 0)
    with clock(Phase.VERIFY):
        try:
            after = make_plan(host.name, desired, conn.observe(), destroy=destroy)
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
    return Outcome(host.name, Status.CHANGED, plan, applied, seconds=clock.seconds)


def failure(host: str, exc: ProvisionError) -> Outcome:
    return Outcome(host, Status.FAILED, error=str(exc), transient=isinstance(exc, UnreachableError | LockTimeout))


def remote_outcome(host: Host, inventory_file: str, argv: list[str]) -> Outcome:
    """Run the command for `host` inside its container and bring the outcome back."""
    from .connection.docker import run_inside
    from .plan import plan_from_dict

    result = run_inside(host, inventory_file, argv)
    entry = next((h for h in result.get("hosts", ()) if h.get("host") == host.name), None)
    if entry is None:
        raise HostError(host.name, f"provision in the container said nothing about {host.name}")
    plan = plan_from_dict(entry["plan"]) if entry.get("plan") else None
    status = Status(entry["status"])
    applied = list(plan.changes) if plan is not None and status is Status.CHANGED else []
    return Outcome(host.name, status, plan, applied, entry.get("error") or entry.get("reason"))
