"""Which inventory owns what provision made on a machine, so separate inventories never touch each other.

The kernel's marks (a device's alias, a route's protocol) say "provision made this", not
which inventory did. So each machine's state keeps a small registry, `owners/<machine>.json`:
resource key -> the inventory that made it. An inventory is named by its directory (the
directory itself for a directory of sources), as Ansible ties `group_vars/` and `host_vars/`
to it: versions of one inventory kept side by side are one inventory, and `--owner` names it
otherwise (the pull agent names its repository). Pure here, but for reading and writing that
file:

- what another inventory owns and this one does not name is hidden from the plan: never
  deleted, restarted or stopped by this inventory's apply or destroy;
- what another inventory owns and this one names may be changed only with `--take-over`,
  and the plan says so (`take over from INVENTORY`);
- after an apply, what this inventory made or manages is recorded as its own, and what it
  deleted is forgotten. A resource with no entry (made before the registry existed) is
  anyone's, as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from itertools import starmap
from operator import attrgetter
from pathlib import Path

from .model import ROUTE_ORDER, Network, Observed
from .plan import Action, Change, Kind, Plan

Registry = Mapping[str, str]  # resource key -> owning inventory


def default_owner(inventory: str) -> str:
    """The directory an inventory lives in (itself, for a directory of sources), absolute."""
    path = os.path.abspath(inventory)
    return path if os.path.isdir(path) else os.path.dirname(path)


# A resource's key in the registry. str.format's bound methods, so that the keys of a whole
# desired state are made by map() in C (3000 at 1000 devices: 0.5 ms as a function call each).
device_key: Callable[[str], str] = "device {}".format
route_key: Callable[[int, str, int], str] = "route {} {} {}".format  # table, to, metric
tunnel_key: Callable[[str], str] = "tunnel {}".format
_NAME = attrgetter("name")


def _desired_keys(desired: Network) -> set[str]:
    return {*map(device_key, map(_NAME, desired.devices)), *starmap(route_key, map(ROUTE_ORDER, desired.routes)),
            *map(tunnel_key, map(_NAME, desired.tunnels))}


def alone(registry: Registry, me: str) -> bool:
    """Nothing in the registry is another inventory's (the usual machine): nothing to hide or take
    over. The owners as a set, made in C: a look entry by entry was 2 ms at 10 000 devices."""
    return set(registry.values()) <= {me}


def hide_foreign(observed: Observed, desired: Network, registry: Registry, me: str) -> Observed:
    """The live state as this inventory may act on it: what another inventory owns and this one
    does not name is not ours (devices and routes unmanaged, tunnels unseen)."""
    if alone(registry, me):  # the usual machine, with one inventory: 5 ms less
        return observed
    named = _desired_keys(desired)

    def foreign(key: str) -> bool:
        return registry.get(key, me) != me and key not in named

    return replace(
        observed,
        devices=tuple(replace(d, managed=False) if d.managed and foreign(device_key(d.name)) else d
                      for d in observed.devices),
        routes=tuple(replace(r, managed=False) if r.managed and foreign(route_key(*r.key)) else r
                     for r in observed.routes),
        tunnels=tuple(t for t in observed.tunnels if not foreign(tunnel_key(t.name))))


def change_key(c: Change) -> str | None:
    value = c.after if c.after is not None else c.before
    if c.kind is Kind.DEVICE:
        return device_key(c.key)
    if c.kind is Kind.TUNNEL:
        return tunnel_key(c.key)
    if c.kind is Kind.ROUTE and value is not None:
        return route_key(*value.key)  # type: ignore[union-attr]
    if c.kind is Kind.ADDRESS and value is not None:
        return device_key(value.device)  # type: ignore[union-attr]  # an address is its device's
    return None


def mark_take_overs(plan: Plan, registry: Registry, me: str) -> Plan:
    """Each change to what another inventory owns says whose it is."""
    if alone(registry, me):  # one inventory on the machine: 5 ms of a 1000-device converge
        return plan

    def marked(c: Change) -> Change:
        key = change_key(c)
        owner = registry.get(key, me) if key else me
        if owner == me:
            return c
        return replace(c, taken_from=owner)
    return replace(plan, changes=tuple(marked(c) for c in plan.changes))


def take_overs(plan: Plan) -> list[Change]:
    return [c for c in plan.changes if c.taken_from]


def recorded(registry: Registry, me: str, applied: Iterable[Change], desired: Network,
             destroy: bool) -> dict[str, str]:
    """The registry after an apply: this inventory's resources are its own, what it deleted is gone.
    A change that deletes nothing leaves a resource of the desired state, whose key is this
    inventory's from the first step on unless another inventory held it (a take-over): with no
    other owner in the registry only the deletions are looked at, not a key per change (3000 in a
    converge of 1000 devices)."""
    out = dict(registry)
    if not destroy:
        out.update(dict.fromkeys(_desired_keys(desired) - out.keys(), me))
    others = destroy or not alone(out, me)
    for c in applied:
        if c.action is not Action.DELETE and not others:
            continue
        changed = change_key(c)
        if changed is None or (c.kind is Kind.ADDRESS and c.action is Action.DELETE):
            continue
        if c.action is Action.DELETE:
            out.pop(changed, None)
        else:
            out[changed] = me
    return out


def registry_path(state_dir: Path, machine: str) -> Path:
    return state_dir / "owners" / f"{machine}.json"


def load_registry(state_dir: Path, machine: str) -> dict[str, str]:
    """A missing or unreadable registry is an empty one: everything provision made is anyone's."""
    from .files import FileError, parse_json, read_regular

    try:  # state: never through a link, never a FIFO
        data = parse_json(read_regular(registry_path(state_dir, machine)))
    except (OSError, FileError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # JSON's keys are text; a registry whose values are all text (every one provision writes) is
    # taken as it is, its types looked at in C: an entry at a time was 0.4 ms at 1000 devices
    if not data or set(map(type, data.values())) == {str}:
        return data
    return {k: v for k, v in data.items() if isinstance(v, str)}


def save_registry(state_dir: Path, machine: str, registry: Mapping[str, str]) -> None:
    """Written whole or not at all, but not made durable (no fsync): the registry says who made
    what is in the kernel now, and what a power cut would lose of it the cut takes from the kernel
    too (devices, routes and forwarders live until the machine stops). Its two fsyncs were half a
    millisecond of each apply that changed a key, on a state directory on disk."""
    from .files import private_subdirectory, write_json

    path = registry_path(state_dir, machine)
    private_subdirectory(state_dir, path.parent.name)  # written into as root: never where a link leads
    write_json(path, dict(sorted(registry.items())), indent=None, durable=False)  # 3000 entries: 1 ms, not 10
