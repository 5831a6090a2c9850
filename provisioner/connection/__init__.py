"""How provision reaches a host: one small interface, one module per kind of connection.

A connection is a context manager (entering it takes the host's lock and gets inside the
host) that can `observe()` the live state and open a `transaction()` to change it. The core
(merge, validate, plan) never assumes it runs on the target; `local` and `netns` live in
`kernel.py`. A `docker` host is different in kind: the whole command runs inside the
container (`docker.py`), because its forwarders must live there after we are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

from ..errors import UnreachableError
from ..hints import TYPE_CHECKING, Protocol
from ..inventory import Host, this_machine
from ..model import Observed
from ..plan import Change

if TYPE_CHECKING:
    from .kernel import Ahead

LOCAL = "local"
NETNS = "netns"
DOCKER = "docker"


class Transaction(Protocol):
    done: list  # the steps that took effect, in order

    def run(self, steps: list, on_step: Callable) -> None: ...
    def rollback(self) -> list[str]: ...


class Connection(Protocol):
    host: str
    key: str  # the machine's state name (identity.state_name): its lock, tunnels and confirmations

    def __enter__(self) -> Connection: ...
    def __exit__(self, *exc: object) -> None: ...
    def observe(self, changes: Collection[Change] | None = None) -> Observed: ...
    def transaction(self, tunnels: bool = True) -> Transaction: ...


def skip_reason(host: Host) -> str | None:
    """Why a host is not ours to touch from here, as ansible-pull decides it; None if it is."""
    if host.connection is None and host.name not in this_machine():
        return "no ansible_connection, and not this machine"
    return None


def namespace_of(host: Host) -> str | None:
    """The network namespace a netns host is reached in (its ansible_host); None for another kind."""
    return host.address if host.connection == NETNS else None


def connect(host: Host, state_dir: Path, lock_wait: float, notify: Callable[[str], None],
            ahead: Ahead | None = None) -> Connection:
    """`ahead`: the hosts are worked on one after another here, each one's lock and first reading
    taken while the host before it is worked on (kernel.Ahead)."""
    from .kernel import KernelConnection

    kind = host.connection or LOCAL
    if kind == LOCAL:
        return KernelConnection(host.name, None, state_dir, lock_wait, notify, ahead)
    if kind == NETNS:
        return KernelConnection(host.name, namespace_of(host), state_dir, lock_wait, notify, ahead)
    if kind == DOCKER:
        raise UnreachableError(host.name, "a docker host is provisioned inside its container (run_inside)")
    raise UnreachableError(host.name, f"ansible_connection {kind!r} is not supported (local, netns, docker)")
