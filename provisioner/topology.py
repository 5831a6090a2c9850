"""The picture of an inventory: hosts, their devices, and the tunnels between them. Pure.

A tunnel written with `peer:` on both ends is one link between two hosts; one written with
`listen:`/`connect:` is a link to its endpoint. `provision graph` draws it (render.py: DOT
or Mermaid), with each tunnel's state when the machine running provision can see it, and the
Markdown plan draws the tunnels a plan changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .model import Network, Tunnel


@dataclass(frozen=True)
class Link:
    """One tunnel as a line between two ends, for `provision graph`."""

    name: str  # the tunnel's
    a: str  # a host
    b: str  # a host, or an endpoint ("connect 192.0.2.1:4000", "listen 0.0.0.0:4000")
    b_is_host: bool
    transport: str
    devices: tuple[str, ...]  # the device at each host end
    state: str | None = None  # as `provision status` says it (None: not seen from here)
    change: str = ""  # with a plan: the action's symbol


@dataclass(frozen=True)
class Topology:
    """The hosts' devices and the tunnels between them, for `provision graph`."""

    devices: Mapping[str, tuple[str, ...]]  # host -> its devices
    links: tuple[Link, ...]


def topology(desired: Mapping[str, Network], states: Mapping[tuple[str, str], str] | None = None) -> Topology:
    """`states`: (host, tunnel) -> state, for the tunnels that could be seen."""
    states = states or {}
    links: dict[tuple[str, ...], Link] = {}
    for host, network in desired.items():
        for t in network.tunnels:
            key, link = _link(host, t, states.get((host, t.name)))
            if key in links:  # the other end of a peer tunnel: one link, its device added
                other = links[key]
                links[key] = Link(other.name, other.a, other.b, True, other.transport,
                                  (*other.devices, t.device), other.state or link.state)
            else:
                links[key] = link
    return Topology({h: tuple(d.name for d in n.devices) for h, n in desired.items()}, tuple(links.values()))


def changed_links(changes: Iterable[tuple[str, Tunnel, str]]) -> Topology:
    """The tunnels a plan changes: (host, tunnel, action symbol) each."""
    links: dict[tuple[str, ...], Link] = {}
    hosts: dict[str, tuple[str, ...]] = {}
    for host, t, symbol in changes:
        key, link = _link(host, t, None)
        links.setdefault(key, Link(link.name, link.a, link.b, link.b_is_host, link.transport, link.devices,
                                   None, symbol))
        hosts.setdefault(host, ())
        if link.b_is_host:
            hosts.setdefault(link.b, ())
    return Topology(hosts, tuple(links.values()))


def _link(host: str, t: Tunnel, state: str | None) -> tuple[tuple[str, ...], Link]:
    if t.peer is not None:
        a, b = sorted((host, t.peer))
        return ("peer", t.name, a, b), Link(t.name, a, b, True, str(t.transport), (t.device,), state)
    end = f"{t.role} {t.endpoint}"
    return ("end", host, t.name), Link(t.name, host, end, False, str(t.transport), (t.device,), state)
