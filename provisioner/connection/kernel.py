"""The `local` and `netns` connections: this machine's kernel, in some network namespace.

For netns hosts the calling thread enters the namespace with setns(2) for the whole
session, so the netlink socket and every tun device are made there, with no proxy, and
the tunnel supervisors it starts (forked from this thread) live there too.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Collection, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from ..errors import KernelError, LockTimeout, UnreachableError
from ..files import FileError
from ..hints import TYPE_CHECKING
from ..kernel import namespace
from ..kernel.netlink import Netlink, NetlinkError, Opening
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


@dataclass(frozen=True)
class _Held:
    """A host's lock, and its socket being made and read, taken ahead of its turn."""

    host: str
    stack: ExitStack  # the lock, and the opening (ended first)
    opening: Opening  # in the namespace the host's name gave then


class Ahead:
    """The next host's lock, and its kernel state read on a thread of its own, taken while this
    process works on the host before it: a plan of many namespaces here, one host at a time,
    reads each host's four dumps (0.2 ms of the kernel's work for 20 devices, a third of the
    host's time) on the CPU the planning does not use. That thread makes the socket too, in the
    host's namespace (netlink.Opening), so this one does not enter it ahead. Only a netns host
    right after the host being worked on, and only if its lock is free at that moment: else it
    is taken in its turn, waiting as always. What is read is read under that host's lock, as its
    own turn would read it. One host at most is held ahead, and given back before any other lock
    is waited for."""

    def __init__(self, state_dir: Path, order: Sequence[tuple[str, str | None]]) -> None:
        """`order`: each host's name and, for a netns host, its namespace, in the order they are
        worked on (a host of another kind is never read ahead, nor the one after it)."""
        self._state_dir = state_dir
        self._after = {host: (following, netns) for (host, _), (following, netns) in pairwise(order)
                       if netns is not None}
        self._held: _Held | None = None

    def begin_after(self, host: str) -> None:
        """Take the lock of the host after `host` and ask for its dumps, if that can be done at once."""
        after = self._after.get(host)
        if after is None:
            return
        stack = ExitStack()
        held = None
        try:
            held = self._begin(*after, stack)
        finally:
            if held is None:
                stack.close()
        self._held = held

    def _begin(self, host: str, netns: str, stack: ExitStack) -> _Held | None:
        """None where it cannot be done at once: the host's own turn waits for it, or says why. A
        namespace that is there but cannot be read (entered, a socket made) is found in the turn,
        which then reads it itself, and says why if it cannot either."""
        try:
            stack.enter_context(free_host_lock(self._state_dir, machine_key(netns)))
            return _Held(host, stack, stack.enter_context(Opening(namespace.path_of(netns), EVERYTHING)))
        except (OSError, FileError):  # busy, the state directory's, no such namespace, or no thread
            return None

    def take(self, host: str) -> _Held | None:
        """What was taken ahead for `host`. What was held for another (a host that never came to
        connect: skipped, or failed before) is given back, so that no lock is held while another
        is waited for."""
        held = self._held
        if held is not None and held.host == host:
            self._held = None
            return held
        self.close()
        return None

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.stack.close()


class KernelConnection:
    def __init__(self, host: str, netns: str | None, state_dir: Path, lock_wait: float,
                 notify: Callable[[str], None], ahead: Ahead | None = None):
        self.host, self.netns = host, netns
        self.key = machine_key(netns)
        self._state_dir, self._lock_wait, self._notify, self._ahead = state_dir, lock_wait, notify, ahead
        self._stack = ExitStack()
        self._sock: Netlink | None = None
        self._last: Reading | None = None

    def __enter__(self) -> KernelConnection:
        try:
            held = self._ahead.take(self.host) if self._ahead is not None else None
            if held is not None:
                self._stack.enter_context(held.stack)  # the lock, and the socket closed before it
            else:
                self._stack.enter_context(host_lock(self._state_dir, self.key, self.host, self._lock_wait,
                                                    self._notify))
            self._stack.enter_context(namespace.entered(self.netns))
            made = held.opening.socket(namespace.current()) if held is not None else None
            # not taken ahead, or it could not be read then, or the namespace was made anew since: read in turn
            self._sock = self._stack.enter_context(made if made is not None else Netlink())
            if self._ahead is not None:
                self._ahead.begin_after(self.host)
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
            raise KernelError(self.host, "reading the kernel's state", exc.errno or errno.EIO, exc.strerror or "",
                              refused=False) from exc
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
