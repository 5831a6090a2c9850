"""desired + observed -> an ordered list of typed changes. Pure: no kernel, no I/O.

Ownership rules, in one place:
- what the inventory names (a device by name, a route by table/to/metric) is made to
  match it, and is marked ours (a device we did not create is adopted, visibly);
- what we own (our alias, our route protocol) and the inventory no longer names is removed;
- what we do not own and the inventory does not name is never touched, unless named
  with `state: absent`.

The order of `changes` is the order of execution: removals first (routes, addresses,
devices), then creations and updates (devices, addresses, routes) so that every step
finds what it depends on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from .errors import ConflictError
from .model import (
    Address,
    Device,
    LinkState,
    Network,
    Observed,
    Route,
)


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"  # delete, then create: the kernel cannot change it in place
    DELETE = "delete"


class Kind(StrEnum):
    DEVICE = "device"
    ADDRESS = "address"
    ROUTE = "route"


Resource = Device | Address | Route


@dataclass(frozen=True)
class Change:
    action: Action
    kind: Kind
    key: str
    before: Resource | None
    after: Resource | None
    reason: str

    def fields_changed(self) -> tuple[str, ...]:
        if self.before is None or self.after is None:
            return ()
        return tuple(f.name for f in fields(self.after)
                     if getattr(self.before, f.name) != getattr(self.after, f.name))


@dataclass(frozen=True)
class Plan:
    host: str
    changes: tuple[Change, ...]
    observed_digest: str  # the state this plan was made against
    in_sync: int  # resources the inventory names that already match

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[Action, int]:
        out = {a: 0 for a in Action}
        for c in self.changes:
            out[c.action] += 1
        return out


def route_key_text(r: Route) -> str:
    text = r.to
    if r.table != 254:
        text += f" table {r.table}"
    return text + f" metric {r.metric}"


def make_plan(host: str, desired: Network, observed: Observed, *, destroy: bool = False) -> Plan:
    """The changes that turn `observed` into `desired`. With destroy, remove all we own."""
    if destroy:
        desired = Network()
    live_devices = {d.name: d for d in observed.devices}
    link_kinds = dict(observed.links)
    removals: list[Change] = []
    device_changes: list[Change] = []
    in_sync = 0

    # --- devices
    gone: set[str] = set()  # devices deleted or replaced: their addresses and routes go with them
    down: set[str] = set()  # devices going down: the kernel flushes their routes, keeps addresses
    wanted = {d.name for d in desired.devices}
    for want in desired.devices:
        live = live_devices.get(want.name)
        if live is None:
            kind = link_kinds.get(want.name)
            if kind is not None:
                raise ConflictError(host, f"{want.name} exists as a {kind or 'plain'} interface, not a tun/tap device; "
                                          "provision will not replace a device it does not manage",
                                    resource=f"device {want.name}")
            device_changes.append(Change(Action.CREATE, Kind.DEVICE, want.name, None, want, "not present"))
            continue
        target = _with_unmanaged_from(want, live)
        fixed = [f for f in Device.FIXED if getattr(target, f) != getattr(live, f)]
        if fixed:
            gone.add(want.name)
            device_changes.append(Change(Action.REPLACE, Kind.DEVICE, want.name, live, target,
                                         f"{', '.join(fixed)} cannot change in place"))
        elif target != live:
            why = [f for f in Device.MUTABLE if getattr(target, f) != getattr(live, f)]
            if not live.managed:
                why.append("adopt: not yet owned by provision")
            device_changes.append(Change(Action.UPDATE, Kind.DEVICE, want.name, live, target, ", ".join(why)))
            if target.state == LinkState.DOWN and live.state == LinkState.UP:
                down.add(want.name)
        else:
            in_sync += 1
    for name in sorted(set(desired.absent_devices)):
        live = live_devices.get(name)
        if live is not None:
            gone.add(name)
            removals.append(Change(Action.DELETE, Kind.DEVICE, name, live, None, "state: absent"))
        elif name in link_kinds:
            raise ConflictError(host, f"{name} is a {link_kinds[name] or 'plain'} interface; provision removes "
                                      "only tun/tap devices", resource=f"device {name}")
        else:
            in_sync += 1
    for live in observed.devices:
        if live.managed and live.name not in wanted and live.name not in desired.absent_devices:
            gone.add(live.name)
            removals.append(Change(Action.DELETE, Kind.DEVICE, live.name, live, None,
                                   "destroy" if destroy else "owned by provision, no longer in the inventory"))

    # --- addresses: fully managed on the devices the inventory names
    addr_removals, addr_adds = [], []
    live_addrs: dict[str, set[Address]] = {}
    for a in observed.addresses:
        live_addrs.setdefault(a.device, set()).add(a)
    want_addrs: dict[str, set[Address]] = {name: set() for name in wanted}
    for a in desired.addresses:
        want_addrs[a.device].add(a)
    for name, want in sorted(want_addrs.items()):
        have = set() if name in gone or name not in live_devices else live_addrs.get(name, set())
        for a in sorted(want - have):
            addr_adds.append(Change(Action.CREATE, Kind.ADDRESS, f"{a.cidr} on {a.device}", None, a,
                                    "new device" if name not in live_devices or name in gone else "not present"))
        for a in sorted(have - want):
            if not a.is_link_local_v6:
                addr_removals.append(Change(Action.DELETE, Kind.ADDRESS, f"{a.cidr} on {a.device}", a, None,
                                            "not in the inventory (addresses on managed devices are managed)"))
        in_sync += len(want & have)

    # --- routes
    route_removals, route_adds = [], []
    live_routes = {r.key: r for r in observed.routes}
    wanted_keys = set()
    for want in sorted(desired.routes, key=lambda r: (r.via is not None, r.key)):
        wanted_keys.add(want.key)
        live = live_routes.get(want.key)
        if live is not None and live.dev in gone | down:
            live = None  # the kernel takes it away with its device
        if live is None:
            route_adds.append(Change(Action.CREATE, Kind.ROUTE, route_key_text(want), None, want, "not present"))
            continue
        target = want if want.dev is not None else _replace(want, dev=live.dev)
        if target != live:
            why = [f for f in ("via", "dev") if getattr(target, f) != getattr(live, f)]
            if not live.managed:
                why.append("adopt: not yet owned by provision")
            route_adds.append(Change(Action.UPDATE, Kind.ROUTE, route_key_text(want), live, target, ", ".join(why)))
        else:
            in_sync += 1
    for live in sorted(observed.routes, key=lambda r: r.key):
        if live.key in wanted_keys:
            continue
        absent = any(a.matches(live.key) for a in desired.absent_routes)
        if absent or live.managed:
            reason = "state: absent" if absent else (
                "destroy" if destroy else "owned by provision, no longer in the inventory")
            route_removals.append(Change(Action.DELETE, Kind.ROUTE, route_key_text(live), live, None, reason))
    for absent in desired.absent_routes:
        if not any(absent.matches(k) for k in live_routes):
            in_sync += 1

    # Removals run first: a route is deleted before the device it uses, an address before its device.
    device_changes.sort(key=lambda c: [Action.REPLACE, Action.CREATE, Action.UPDATE].index(c.action))
    changes = (*route_removals, *addr_removals, *removals, *device_changes, *addr_adds, *route_adds)
    return Plan(host, changes, observed.digest(), in_sync)


def _with_unmanaged_from(want: Device, live: Device) -> Device:
    """Attributes the inventory leaves out keep their live values (a subset match, like nmstate)."""
    keep = {f: getattr(live, f) for f in ("mtu", "mac", "owner", "group") if getattr(want, f) is None}
    return _replace(want, **keep)


def _replace(obj: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(obj, **changes)


def to_dict(value: Resource | None) -> dict[str, Any] | None:
    """A resource as JSON-ready data, without our internal `managed` marker on desired values."""
    if value is None:
        return None
    out: dict[str, Any] = {}
    for f in fields(value):
        v = getattr(value, f.name)
        out[f.name] = str(v) if isinstance(v, StrEnum) else v
    return out


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "host": plan.host,
        "observed_digest": plan.observed_digest,
        "in_sync": plan.in_sync,
        "summary": {str(a): n for a, n in plan.counts().items()},
        "changes": [
            {"action": str(c.action), "kind": str(c.kind), "key": c.key, "reason": c.reason,
             "before": to_dict(c.before), "after": to_dict(c.after)}
            for c in plan.changes
        ],
    }

