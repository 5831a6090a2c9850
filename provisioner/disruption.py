"""Which changes of a plan can cut the host off from whoever is changing it. Pure.

A change is disruptive when it touches the default route, or what the connection to the
host uses: for a `local` host reached over SSH (`SSH_CONNECTION`, as the Ansible collection's
module runs), the route to the session's address, the device that route leaves by, and an
address whose subnet holds the session's address (its connected route carries the replies).
A new route that would capture the session's address counts too. `apply` refuses disruptive
changes unless it is told `--confirm-timeout` (changes are reverted unless confirmed from a
new session) or `--force`, as `netplan try` and nmstate's checkpoints do.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import replace

from .model import Address, Observed, Route
from .plan import Change, Kind, Plan

DEFAULT_ROUTES = ("0.0.0.0/0", "::/0")


def session_address(environ: Mapping[str, str] = os.environ) -> str | None:
    """The address this session comes from (`SSH_CONNECTION`: client address, port, server address, port)."""
    parts = environ.get("SSH_CONNECTION", "").split()
    if not parts:
        return None
    try:
        return str(ipaddress.ip_address(parts[0]))
    except ValueError:
        return None


def mark(plan: Plan, observed: Observed, session: str | None) -> Plan:
    """The plan, each change that can cut the host off saying why."""
    device = _session_device(observed, session) if session else None
    changes = tuple(replace(c, disruptive=why) if (why := _why(c, session, device)) else c for c in plan.changes)
    if all(new is old for new, old in zip(changes, plan.changes, strict=True)):
        return plan  # nothing here can cut the host off: the plan as it is, not a copy per host
    return replace(plan, changes=changes)


def _why(c: Change, session: str | None, device: str | None) -> str:
    """Why `c` can cut the host off, or "". Without a session only a route can (the default one):
    nothing else is looked at then (3000 changes in a 1000-device converge)."""
    if c.kind is Kind.ROUTE:
        routes = [v for v in (c.before, c.after) if isinstance(v, Route)]
        if any(r.to in DEFAULT_ROUTES for r in routes):
            return "the default route"
        if session and any(_holds(r.to, session) for r in routes):
            return f"the route to this session's address {session}"
        if device and any(r.dev == device for r in routes):
            return f"a route by {device}, the device this session uses"
    elif c.kind is Kind.ADDRESS and session:
        if any(isinstance(a, Address) and _holds(str(ipaddress.ip_interface(a.cidr).network), session)
               for a in (c.before, c.after)):
            return f"an address on the subnet of this session's address {session}"
    elif c.kind is Kind.DEVICE and device and c.key == device:
        return f"{device}, the device this session uses"
    return ""


def _session_device(observed: Observed, session: str) -> str | None:
    """The device the replies to `session` leave by: the longest matching route or connected subnet."""
    best: tuple[int, str] | None = None
    for r in observed.routes:
        if r.dev and _holds(r.to, session):
            prefix = ipaddress.ip_network(r.to).prefixlen
            best = max(best or (prefix, r.dev), (prefix, r.dev))
    for a in observed.addresses:
        network = ipaddress.ip_interface(a.cidr).network
        if _holds(str(network), session):
            best = max(best or (network.prefixlen, a.device), (network.prefixlen, a.device))
    return best[1] if best else None


def _holds(network: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network)
    except (ValueError, TypeError):
        return False
