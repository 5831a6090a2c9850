"""One interface to a host, whatever reaches it: plan, apply, facts, status.

    KernelRunner     local and netns hosts: this machine's kernel (connection/kernel.py), here
    ContainerRunner  docker hosts: the same command, run by the container's own provision
    SnapshotRunner   a `provision facts` snapshot: plans only (CI), nothing to change

`runner_for` is the one place that chooses by the kind of host; every caller (the fleet, the
pull agent, `status`, `facts`, `validate`) asks the runner and never branches on the
connection. The pipeline itself (plan_for, apply_host) is reconcile.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .connection import DOCKER, connect
from .connection.identity import identity, state_name
from .errors import HostError
from .hints import TYPE_CHECKING, Any, Protocol
from .inventory import Host
from .model import Network, Observed
from .plan import Change, Plan
from .reconcile import (Outcome, Owners, Progress, Safety, Status, Stopwatch, apply_host, no_progress,
                        observe_and_plan, plan_for)
from .source import Sources

if TYPE_CHECKING:
    from .connection.kernel import Ahead

Report = Callable[[Change], None]
Notify = Callable[[str], None]


class Runner(Protocol):
    @property
    def host(self) -> Host: ...

    def plan(self, desired: Network, destroy: bool, progress: Progress = no_progress) -> Outcome: ...
    def apply(self, desired: Network, destroy: bool, report: Report, check: Callable[[Plan], None] | None,
              safety: Safety, progress: Progress = no_progress) -> Outcome: ...
    def facts(self) -> dict[str, Any]: ...  # the host's variables in a `provision facts` snapshot
    def status(self) -> list[dict[str, Any]]: ...  # `provision status` rows


@dataclass(frozen=True)
class Reach:
    """What a runner needs besides the host: where the inventory is, who the other hosts are,
    where this machine keeps its state, how long to wait for a lock, whom to tell."""

    inventory_file: str
    source: Sources
    everyone: Mapping[str, Host]
    state_dir: Path | None = None
    lock_timeout: float = 60.0
    notify: Notify = lambda message: None
    owner: str = ""  # this inventory (ownership.py)
    take_over: bool = False
    ahead: Ahead | None = None  # a fleet's next host read while this one is worked on (connection/kernel.py)


def runner_for(host: Host, reach: Reach, snapshots: Mapping[str, Observed] | None = None) -> Runner:
    if snapshots is not None:
        if host.name not in snapshots:
            raise HostError(host.name, "no facts snapshot for this host")
        return SnapshotRunner(host, reach, snapshots[host.name])
    if host.connection == DOCKER:
        return ContainerRunner(host, reach)
    return KernelRunner(host, reach)


@dataclass(frozen=True)
class KernelRunner:
    """A local or netns host: this machine's kernel, through connection/kernel.py."""

    host: Host
    reach: Reach

    @property
    def session(self) -> str | None:
        """The address this machine is reached from, when it is the host (disruption.py)."""
        from .connection import LOCAL
        from .disruption import session_address

        return session_address() if self.host.connection in (None, LOCAL) else None

    def _connect(self) -> Any:
        if self.reach.state_dir is None:
            raise HostError(self.host.name, "no state directory to reach the host with")
        return connect(self.host, self.reach.state_dir, self.reach.lock_timeout, self.reach.notify, self.reach.ahead)

    def _owners(self, key: str) -> Owners | None:
        """The machine's registry of which inventory made what (ownership.py)."""
        from .ownership import load_registry, save_registry

        state_dir = self.reach.state_dir
        if state_dir is None or not self.reach.owner:
            return None
        loaded = load_registry(state_dir, key)

        def save(registry: Mapping[str, str]) -> None:
            if registry != loaded:  # as it was (a change to what was already this inventory's): no write
                save_registry(state_dir, key, registry)

        return Owners(loaded, self.reach.owner, self.reach.take_over, save)

    def plan(self, desired: Network, destroy: bool, progress: Progress = no_progress) -> Outcome:
        with self._connect() as conn:
            clock = Stopwatch()
            _, plan = observe_and_plan(conn, clock, progress, self.host, desired, self.reach.source, destroy,
                                       self.session, self._owners(conn.key))
            return Outcome(self.host.name, Status.OK, plan, seconds=clock.seconds)

    def apply(self, desired: Network, destroy: bool, report: Report, check: Callable[[Plan], None] | None,
              safety: Safety, progress: Progress = no_progress) -> Outcome:
        with self._connect() as conn:
            if safety.confirm_timeout is not None:
                assert self.reach.state_dir is not None
                safety = safety.bound(self.reach.state_dir, conn.key, self.host.name, self.reach.notify)
            return apply_host(conn, self.host, desired, self.reach.source, destroy, report, check, safety,
                              self.session, self._owners(conn.key), progress)

    def facts(self) -> dict[str, Any]:
        from .facts import host_key, host_vars, reached_by
        from .resolve import private_key_path

        with self._connect() as conn:
            observed = conn.observe()
        configured = (private_key_path(self.reach.inventory_file, self.host)
                      if "tunnel_private_key_file" in self.host.vars else None)
        return host_vars(observed, reached_by(self.host.vars), host_key(observed, configured))

    def status(self) -> list[dict[str, Any]]:
        from .tunnel import runtime

        if self.reach.state_dir is None:
            return []
        key = state_name(identity(self.host.connection, self.host.address))
        return [{**row, "host": self.host.name} for row in runtime.status(self.reach.state_dir, key)]


@dataclass(frozen=True)
class ContainerRunner:
    """The container's own provision does the work (its forwarders must outlive us there):
    it is given the host's merged variables and answers in JSON."""

    host: Host
    reach: Reach

    def _inside(self, argv: list[str]) -> dict[str, Any]:
        from .connection.docker import run_inside

        return run_inside(self.host, self.reach.inventory_file, argv, self.reach.everyone)

    def _outcome(self, argv: list[str]) -> Outcome:
        from .plan import plan_from_dict

        result = self._inside(argv)
        entry = next((h for h in result.get("hosts", ()) if h.get("host") == self.host.name), None)
        if entry is None:
            raise HostError(self.host.name, f"provision in the container said nothing about {self.host.name}")
        plan = plan_from_dict(entry["plan"]) if entry.get("plan") else None
        status = Status(entry["status"])
        applied = list(plan.changes) if plan is not None and status is Status.CHANGED else []
        return Outcome(self.host.name, status, plan, applied, entry.get("error") or entry.get("reason"))

    def _owner_argv(self, changing: bool) -> list[str]:
        owner = ["--owner", self.reach.owner] if self.reach.owner else []
        return owner + (["--take-over"] if changing and self.reach.take_over else [])

    def plan(self, desired: Network, destroy: bool, progress: Progress = no_progress) -> Outcome:
        return self._outcome((["plan", "--destroy"] if destroy else ["plan"]) + self._owner_argv(False))

    def apply(self, desired: Network, destroy: bool, report: Report, check: Callable[[Plan], None] | None,
              safety: Safety, progress: Progress = no_progress) -> Outcome:
        argv = ["destroy" if destroy else "apply", "--lock-timeout", str(self.reach.lock_timeout),
                *self._owner_argv(True)]
        if not destroy:
            argv += ["--force"] if safety.force else []
            if safety.confirm_timeout is not None:  # then `provision confirm` is run in the container
                argv += ["--confirm-timeout", str(safety.confirm_timeout)]
        outcome = self._outcome(argv)
        for change in outcome.applied:  # changes made inside a container are told afterwards
            report(change)
        return outcome

    def facts(self) -> dict[str, Any]:
        from .facts import CONNECTION_VARS, reached_by

        inside = self._inside(["facts"])["all"]["hosts"][self.host.name]
        return {**reached_by(self.host.vars), **{k: v for k, v in inside.items() if k not in CONNECTION_VARS}}

    def status(self) -> list[dict[str, Any]]:
        return list(self._inside(["status"]).get("tunnels", []))


@dataclass(frozen=True)
class SnapshotRunner:
    """A host known only by a `provision facts` snapshot (CI): it can be planned against, not
    changed."""

    host: Host
    reach: Reach
    observed: Observed

    def plan(self, desired: Network, destroy: bool, progress: Progress = no_progress) -> Outcome:
        return Outcome(self.host.name, Status.OK, plan_for(self.observed, self.host, desired, self.reach.source,
                                                           destroy))

    def apply(self, desired: Network, destroy: bool, report: Report, check: Callable[[Plan], None] | None,
              safety: Safety, progress: Progress = no_progress) -> Outcome:
        raise HostError(self.host.name, "a facts snapshot can be planned against, not applied")

    def facts(self) -> dict[str, Any]:
        from .facts import host_vars, reached_by

        return host_vars(self.observed, reached_by(self.host.vars))

    def status(self) -> list[dict[str, Any]]:
        return []
