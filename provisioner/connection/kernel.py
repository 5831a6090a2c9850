"""The `local` and `netns` connections: this machine's kernel, in some network namespace.

For netns hosts the calling thread enters the namespace with setns(2) for the whole
session, so the netlink socket and every tun device are made there, with no proxy, and
the tunnel supervisors it starts (forked from this thread) live there too.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Collection
from contextlib import ExitStack
from pathlib import Path

from ..errors import KernelError, LockTimeout, UnreachableError
from ..files import FileError
from ..hints import TYPE_CHECKING
from ..kernel import namespace
from ..kernel.netlink import Netlink, NetlinkError
from ..kernel.observe import Reading, observe
from ..lock import host_lock
from ..model import Observed
from ..plan import Change, Kind, Moved, moved_by
from ..tunnel import runtime
from . import LOCAL, NETNS
from .identity import identity, state_name

if TYPE_CHECKING:
    from ..kernel.apply import Transaction


class KernelConnection:
    def __init__(self, host: str, netns: str | None, state_dir: Path, lock_wait: float,
                 notify: Callable[[str], None]):
        self.host, self.netns = host, netns
        # the lock and the tunnels' state belong to the machine, not to the name an inventory gives it
        self.key = state_name(identity(NETNS if netns is not None else LOCAL, netns or ""))
        self._state_dir, self._lock_wait, self._notify = state_dir, lock_wait, notify
        self._stack = ExitStack()
        self._sock: Netlink | None = None
        self._last: Reading | None = None

    def __enter__(self) -> KernelConnection:
        try:
            self._stack.enter_context(host_lock(self._state_dir, self.key, self.host, self._lock_wait, self._notify))
            self._stack.enter_context(namespace.entered(self.netns))
            self._sock = self._stack.enter_context(Netlink())
        except LockTimeout:  # a TimeoutError, so an OSError: but the host is fine, only busy
            self._stack.close()
            raise
        except FileError as exc:  # the state directory, not the host: full, or not ours
            self._stack.close()
            raise UnreachableError(self.host, f"state directory: {exc}") from exc
        except OSError as exc:
            self._stack.close()
            raise UnreachableError(self.host, _why(exc, self.netns)) from exc
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock = None
        self._stack.close()

    def observe(self, changes: Collection[Change] | None = None) -> Observed:
        """`changes`: re-read only what these changes can have moved since this connection's last
        observation (plan.moved_by; verification after an apply); None: everything. A change of
        routes alone re-reads only the routes on the devices it names before and after, when every
        route changed names its device (a gateway alone lets the kernel choose one)."""
        assert self._sock is not None, "use the connection as a context manager"
        since = self._last if changes is not None else None
        moved = moved_by(changes) if changes is not None else Moved(frozenset(Kind))
        kinds = moved.kinds
        devices = Kind.DEVICE in kinds
        addresses = Kind.ADDRESS in kinds
        if since is not None and Kind.TUNNEL not in kinds:
            tunnels = since.observed.tunnels
        else:
            tunnels = runtime.observe(self._state_dir, self.key)
        try:
            self._last = observe(self._sock, since, links=devices, addresses=addresses, routes=Kind.ROUTE in kinds,
                                 route_devices=moved.route_devices, tunnels=tunnels)
        except NetlinkError as exc:
            raise KernelError(self.host, "reading the kernel's state", exc.errno or errno.EIO) from exc
        return self._last.observed

    def transaction(self, tunnels: bool = True) -> Transaction:
        """`tunnels`: the steps include a tunnel's. Without, the tunnel code (and cryptography, 50-100
        ms to import) is not loaded: a transaction of devices, addresses and routes never calls it."""
        assert self._sock is not None, "use the connection as a context manager"
        from ..kernel.apply import Transaction  # here: a plan has no use for it (5 ms of its start)

        if not tunnels:
            return Transaction(self.host, self._sock)
        from ..tunnel.control import Tunnels

        return Transaction(self.host, self._sock, Tunnels(self._state_dir, self.key))

    def status(self) -> list[dict]:
        return [{**row, "host": self.host} for row in runtime.status(self._state_dir, self.key)]


def _why(exc: OSError, netns: str | None) -> str:
    if exc.errno == errno.EPERM:
        where = f"enter network namespace {netns!r}" if netns else "change the network"
        return f"not permitted to {where}: run as root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    return f"cannot reach the host: {exc.strerror or exc}"
