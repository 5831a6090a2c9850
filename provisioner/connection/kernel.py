"""The `local` and `netns` connections: this machine's kernel, in some network namespace.

For netns hosts the calling thread enters the namespace with setns(2) for the whole
session, so the netlink socket and every tun device are made there, with no proxy, and
the tunnel supervisors it starts (forked from this thread) live there too.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Collection, Sequence
from contextlib import ExitStack
from pathlib import Path

from ..errors import KernelError, LockTimeout, UnreachableError
from ..files import FileError
from ..hints import TYPE_CHECKING
from ..kernel import namespace
from ..kernel.netlink import Netlink, NetlinkError
from ..kernel.observe import EVERYTHING, Reading, observe
from ..lock import free_host_lock, host_lock
from ..model import Observed
from ..plan import Change, Kind, Moved, moved_by
from ..tunnel import runtime
from . import LOCAL, NETNS
from .identity import identity, state_name

if TYPE_CHECKING:
    from ..kernel.apply import Transaction


def machine_key(netns: str | None) -> str:
    """The lock and the tunnels' state belong to the machine, not to the name an inventory gives it."""
    return state_name(identity(NETNS if netns is not None else LOCAL, netns or ""))


class Ahead:
    """The next host's lock, and its kernel state read on a thread of its own, taken while this
    process works on the host before it: a plan of many namespaces here, one host at a time,
    reads each host's four dumps (0.2 ms of the kernel's work for 20 devices, a third of the
    host's time) on the CPU the planning does not use. Only the host right after the one being
    worked on, only a netns host (made in its namespace, the socket stays there), and only if its
    lock is free at that moment: else it is taken in its turn, waiting as always. What is read is
    read under that host's lock, as its own turn would read it."""

    def __init__(self, state_dir: Path, order: Sequence[tuple[str, str | None]]) -> None:
        """`order`: (key, netns) of each host, in the order they are worked on."""
        self._state_dir = state_dir
        self._after = {key: (next_key, netns) for (key, _), (next_key, netns) in zip(order, order[1:], strict=False)
                       if netns is not None}
        self._held: dict[str, tuple[ExitStack, Netlink]] = {}

    def begin_after(self, key: str) -> None:
        """Take the lock of the host after `key`'s and ask for its dumps, if it can be at once."""
        after = self._after.get(key)
        if after is None or after[0] in self._held:
            return
        stack = ExitStack()
        try:
            stack.enter_context(free_host_lock(self._state_dir, after[0]))
            with namespace.entered(after[1]):
                sock = stack.enter_context(Netlink())
            sock.read_ahead(EVERYTHING)
        except (OSError, FileError):  # busy, or not reachable: its own turn says so, or waits
            stack.close()
            return
        self._held[after[0]] = (stack, sock)

    def take(self, key: str) -> tuple[ExitStack, Netlink] | None:
        """The lock and the socket (its dumps asked for) of host `key`, if they were taken ahead."""
        return self._held.pop(key, None)

    def close(self) -> None:
        for stack, _ in self._held.values():
            stack.close()
        self._held.clear()


class KernelConnection:
    def __init__(self, host: str, netns: str | None, state_dir: Path, lock_wait: float,
                 notify: Callable[[str], None], ahead: Ahead | None = None):
        self.host, self.netns = host, netns
        self.key = machine_key(netns)
        self._state_dir, self._lock_wait, self._notify, self._ahead = state_dir, lock_wait, notify, ahead
        self._stack = ExitStack()
        self._sock: Netlink | None = None
        self._last: Reading | None = None
        self.read_ahead = False  # its lock and its first observation were taken ahead (Ahead)

    def __enter__(self) -> KernelConnection:
        try:
            held = self._ahead.take(self.key) if self._ahead is not None else None
            if held is not None:
                self._stack.enter_context(held[0])  # the lock, and the socket closed before it
                self._stack.enter_context(namespace.entered(self.netns))
                self._sock, self.read_ahead = held[1], True
            else:
                self._stack.enter_context(host_lock(self._state_dir, self.key, self.host, self._lock_wait,
                                                    self._notify))
                self._stack.enter_context(namespace.entered(self.netns))
                self._sock = self._stack.enter_context(Netlink())
            if self._ahead is not None:
                self._ahead.begin_after(self.key)
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
