"""The pipeline, one straight line per host: load → validate → observe → plan → apply → verify
→ keep, or roll back. Everything here is glue between the pure core and a connection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from . import loader
from .desired import network_of
from .connection import LOCAL, NETNS, Connection, skip_reason
from .disruption import mark
from .errors import (
    ConflictError,
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
from .inventory import Host, Inventory
from .kernel.apply import Step, schedule, steps_for
from .model import Network, Observed
from .plan import Change, Plan, make_plan
from .render import change_line
from .resolve import resolve
from .source import Sources
from .validate import check_devs_present, check_host, check_peers


@dataclass(frozen=True)
class Loaded:
    inventory: Inventory
    hosts: tuple[Host, ...]  # the selected ones
    desired: Mapping[str, Network]
    warnings: tuple[Diagnostic, ...] = ()

    @property
    def everyone(self) -> dict[str, Host]:
        """Every host of the inventory by name, the selected or not (peers are looked up here)."""
        return {h.name: h for h in self.inventory.hosts}


def load(file: str, limit: str | None = None, connection: str | None = None, act: bool = False,
         default_connection: str | None = None) -> Loaded:
    """Raises InventoryError with every problem found in the file. `connection` overrides
    every host's ansible_connection (how `provision` runs itself inside a container);
    `default_connection` is for the hosts that have none (the pull agent, on the host itself).
    `act`: the command is about to change the selected hosts from here, so their key files and
    users must be there; otherwise (validate, plan --facts, destroy) what is missing is a warning."""
    inventory, problems = loader.load(file)
    source = inventory.source
    try:
        for host in inventory.hosts:
            problems += check_host(source, host)
        problems += check_peers(source, inventory.hosts)
    except (TypeError, ValueError, AttributeError, KeyError):
        if not problems:  # a shape the schema lets through but we cannot read: our bug
            raise
        collect(problems)  # the schema already said what is wrong with the shape
    collect(dict.fromkeys(problems))  # dedupe: a group's error is seen by each of its hosts
    hosts = tuple(_reached(h, connection or h.connection or default_connection) for h in inventory.select(limit))
    acted_on = {h.name for h in hosts if skip_reason(h) is None} if act else set()
    here = {h.name for h in hosts if h.connection in (None, LOCAL, NETNS)}
    resolved, found = resolve(source, inventory.hosts, acted_on, quiet=act, here=here)
    problems = list(dict.fromkeys(problems + found))
    collect(problems)
    everyone = {h.name: h for h in inventory.hosts}
    desired = {h.name: network_of(h, everyone, source, resolved) for h in hosts}
    return Loaded(inventory, hosts, desired, tuple(d for d in problems if d.severity != "error"))


def _reached(host: Host, connection: str | None) -> Host:
    if connection == host.connection:
        return host
    return replace(host, vars={**host.vars, "ansible_connection": connection})


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
    unreachable: bool = False  # failed because the host could not be reached (the RECAP counts it apart)


def plan_for(observed: Observed, host: Host, desired: Network, source: Sources, destroy: bool,
             session: str | None = None) -> Plan:
    """Pure: the checks that need the live state (a route's dev must exist), then the diff, each
    change marked when it can cut off the host (`session`: the address a local host is reached from)."""
    if not destroy:
        missing = check_devs_present(source, host, (name for name, _ in observed.links))
        if missing:
            raise InventoryError(missing)
    return mark(make_plan(host.name, desired, observed, destroy=destroy), observed, session)


@dataclass(frozen=True)
class Safety:
    """What apply may do with changes that can cut a host off (disruption.py)."""

    force: bool = False  # apply them as any other
    confirm: Callable[[], bool] | None = None  # after apply, wait for `provision confirm`; False: roll back
    confirm_timeout: float = 0.0


def apply_host(conn: Connection, host: Host, desired: Network, source: Sources, destroy: bool,
               report: Callable[[Change], None], check: Callable[[Plan], None] | None = None,
               safety: Safety = Safety(), session: str | None = None) -> Outcome:
    """Apply, then read back and compare; any failure undoes this run's steps, in reverse.
    `check` may refuse the plan before anything is changed (a saved plan that is stale);
    disruptive changes need `safety` (--force, or --confirm-timeout: kept only if confirmed)."""
    observed = conn.observe()
    plan = plan_for(observed, host, desired, source, destroy, session)
    if check is not None:
        check(plan)
    risky = [c for c in plan.changes if c.disruptive]
    if risky and not safety.force and safety.confirm is None:
        raise ConflictError(host.name, "refusing changes that can cut this host off; apply with --confirm-timeout "
                            "SECONDS (rolled back unless `provision confirm` comes from a new session) or --force",
                            details=[f"{change_line(c, colour=False)}  <- {c.disruptive}" for c in risky])
    if plan.empty:
        return Outcome(host.name, Status.OK, plan)
    per_change = steps_for(plan, observed)
    steps: list[Step] = schedule(per_change)
    last_step = {id(ss[-1]): c for c, ss in per_change if ss}
    applied: list[Change] = []

    def on_step(step: Step) -> None:
        change = last_step.get(id(step))
        if change is not None:
            applied.append(change)
            report(change)

    tx = conn.transaction()
    try:
        tx.run(steps, on_step)
    except KernelError as exc:
        undone = len(tx.done)
        problems = tx.rollback()
        exc.details = (*exc.details, f"rolled back the {undone} step(s) already made in this run", *problems)
        raise
    after = make_plan(host.name, desired, conn.observe(), destroy=destroy)
    if not after.empty:
        undone = len(tx.done)
        problems = tx.rollback()
        raise VerificationError(
            host.name, "after apply the live state still differs from the inventory; rolled back",
            details=[change_line(c, colour=False) for c in after.changes]
            + [f"rolled back {undone} step(s)", *problems])
    if safety.confirm is not None and not safety.confirm():
        undone = len(tx.done)
        problems = tx.rollback()
        raise HostError(host.name, f"not confirmed within {safety.confirm_timeout:g} s: rolled back {undone} "
                        "step(s)", details=problems)
    return Outcome(host.name, Status.CHANGED, plan, applied)


def failure(host: str, exc: ProvisionError) -> Outcome:
    return Outcome(host, Status.FAILED, error=str(exc), transient=isinstance(exc, UnreachableError | LockTimeout),
                   unreachable=isinstance(exc, UnreachableError))


def remote_outcome(host: Host, inventory_file: str, argv: list[str], everyone: Mapping[str, Host]) -> Outcome:
    """Run the command for `host` inside its container and bring the outcome back."""
    from .connection.docker import run_inside
    from .plan import plan_from_dict

    result = run_inside(host, inventory_file, argv, everyone)
    entry = next((h for h in result.get("hosts", ()) if h.get("host") == host.name), None)
    if entry is None:
        raise HostError(host.name, f"provision in the container said nothing about {host.name}")
    plan = plan_from_dict(entry["plan"]) if entry.get("plan") else None
    status = Status(entry["status"])
    applied = list(plan.changes) if plan is not None and status is Status.CHANGED else []
    return Outcome(host.name, status, plan, applied, entry.get("error") or entry.get("reason"))
