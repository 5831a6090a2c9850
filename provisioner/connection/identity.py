"""Which machine a host of an inventory is: its connection and target, not its name.

Two inventories may both call a host `gw1` and mean two namespaces; two may call one
namespace by two names. What provision keeps about a host (its lock, its tunnels' state)
belongs to the machine it changes, so it is keyed by the identity: `local`, `netns` and the
namespace's name, `docker` and the container's. Names come from inventories, so they are
hostile: `state_name` quotes every byte that is not plainly safe in a file name, which
keeps distinct identities apart and no name can climb out of the state directory.
"""

from __future__ import annotations

from dataclasses import dataclass

SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass(frozen=True)
class Identity:
    """What a lock and the tunnels' run state are keyed by: the machine a host reaches, not the
    name an inventory gives it (two inventories, one namespace, one lock)."""

    connection: str  # local | netns | docker
    target: str = ""  # the namespace or container; "" for this machine

    def __str__(self) -> str:
        return f"{self.connection}:{self.target}" if self.target else self.connection


def identity(connection: str | None, address: str) -> Identity:
    """`address` is the host's ansible_host (or name): the namespace or the container."""
    from . import LOCAL

    kind = connection or LOCAL
    return Identity(kind) if kind == LOCAL else Identity(kind, address)


def state_name(ident: Identity) -> str:
    """One file name per identity, and one identity per file name: `local`, `netns-gw1`,
    `netns-a%2Fb` (a `/` quoted)."""
    if not ident.target:
        return _quote(ident.connection)
    return f"{_quote(ident.connection)}-{_quote(ident.target)}"


def _quote(text: str) -> str:
    return "".join(chr(b) if b in SAFE and b != ord("%") else f"%{b:02X}" for b in text.encode())
