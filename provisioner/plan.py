"""desired + observed -> an ordered list of typed changes. Pure: no kernel, no I/O.

Ownership rules, in one place:
- what the inventory names (a device by name, a route by table/to/metric) is made to
  match it, and is marked ours (a device we did not create is adopted, visibly);
- what we own (our alias, our route protocol) and the inventory no longer names is removed;
- what we do not own and the inventory does not name is never touched, unless named
  with `state: absent`.

Tunnels are resources too: a forwarder that should run is started, one whose tunnel changed
(or whose device is replaced, or that crashed for good) is restarted, one no longer named is
stopped. Forwarders we did not start are not ours to know about.

The order of `changes` is the order of execution: removals first (forwarders, routes,
addresses, devices), then creations and updates (devices, addresses, routes, forwarders)
so that every step finds what it depends on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from functools import cached_property
from operator import attrgetter

from .errors import ConflictError
from .hints import Any
from .model import (
    ROUTE_ORDER,
    Address,
    Default,
    Device,
    DeviceType,
    LinkState,
    Network,
    Observed,
    Route,
    RunState,
    Tunnel,
    tunnel_from_dict,
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
    TUNNEL = "tunnel"  # the tunnel's forwarder: create = start, replace = restart, delete = stop


Resource = Device | Address | Route | Tunnel


@dataclass(frozen=True)
class Change:
    """One resource to create, update or delete, with the state before and after: what a plan
    shows, what apply turns into steps, and what a saved plan keeps."""

    action: Action
    kind: Kind
    key: str
    before: Resource | None
    after: Resource | None
    reason: str
    disruptive: str = ""  # why it can cut the host off (disruption.py); "" when it cannot
    taken_from: str = ""  # the inventory that owns it now, when this change takes it over (ownership.py)

    def fields_changed(self) -> tuple[str, ...]:
        if self.before is None or self.after is None:
            return ()
        return tuple(f.name for f in fields(self.after)
                     if f.compare and getattr(self.before, f.name) != getattr(self.after, f.name))


@dataclass(frozen=True)
class Plan:
    """One host's changes and the state they were made against: a saved plan is applied only
    while that state (its digest) still holds."""

    host: str
    changes: tuple[Change, ...]
    against: Observed | str = field(repr=False, compare=False)  # the state it was made against, or (JSON) its digest
    in_sync: int = 0  # resources the inventory names that already match

    @cached_property
    def observed_digest(self) -> str:
        """Hashing the state costs as much as a third of the diff (3000 resources), and only a saved
        or printed plan needs it: taken when asked."""
        return self.against if isinstance(self.against, str) else self.against.digest()

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


def make_plan(host: str, desired: Network, observed: Observed, *, destroy: bool = False,
              moved: Moved | None = None) -> Plan:
    """The changes that turn `observed` into `desired`. With destroy, remove all we own. With
    `moved` (moved_by of the changes a verification follows), only what those changes can have
    moved is compared: the rest was in sync in the plan they came from, and was not read again."""
    if destroy:
        desired = Network()
    compared = frozenset(Kind) if moved is None else moved.kinds
    if moved is not None and moved.route_devices is not None:
        desired, observed = _routes_on(moved.route_devices, desired, observed)
    devices = _plan_devices(host, desired, observed, destroy) if Kind.DEVICE in compared else _Part()
    addresses = _plan_addresses(desired, observed, devices) if Kind.ADDRESS in compared else _Part()
    routes = (_plan_routes(desired, observed, devices, destroy, addresses.readdressed)
              if Kind.ROUTE in compared else _Part())
    tunnels = _plan_tunnels(desired, observed, devices, destroy) if Kind.TUNNEL in compared else _Part()
    # Removals run first: a route is deleted before the device it uses, an address before its device.
    changes = (*tunnels.removals, *routes.removals, *addresses.removals, *devices.removals,
               *sorted(devices.changes, key=lambda c: _DEVICE_ORDER.index(c.action)),
               *addresses.changes, *routes.changes, *tunnels.changes)
    in_sync = devices.in_sync + addresses.in_sync + routes.in_sync + tunnels.in_sync
    return Plan(host, changes, observed, in_sync)


@dataclass(frozen=True)
class Moved:
    """What applied changes can have moved in the kernel: what a verification reads again
    (connection/kernel.py) and compares again (make_plan)."""

    kinds: frozenset[Kind]
    # With changes of routes alone (no device or address changed), each naming its device before
    # and after: only the routes on these devices can have moved. None: any route can have.
    route_devices: frozenset[str] | None = None


def moved_by(changes: Iterable[Change]) -> Moved:
    """A device's change can take its addresses and routes with it, an address's a route (a
    route's preferred source); a route's change moves that route alone, on the devices it names
    (a gateway alone lets the kernel choose the device: then any route can have moved)."""
    changes = tuple(changes)
    kinds = {c.kind for c in changes}
    if Kind.DEVICE in kinds:
        kinds |= {Kind.ADDRESS, Kind.ROUTE}
    if Kind.ADDRESS in kinds:
        kinds.add(Kind.ROUTE)
    route_devices = None
    if Kind.ROUTE in kinds and Kind.ADDRESS not in kinds:
        named = {getattr(r, "dev", None) for c in changes if c.kind is Kind.ROUTE for r in (c.before, c.after)
                 if r is not None}
        route_devices = frozenset(d for d in named if d is not None) if None not in named else None
    return Moved(frozenset(kinds), route_devices)


def _routes_on(devices: frozenset[str], desired: Network, observed: Observed) -> tuple[Network, Observed]:
    """Only the routes on `devices`, desired or live, each with its namesake on the other side.
    Any other route was in sync in the plan (a change names its devices), and neither its
    desired nor its live form has changed since: comparing it again gives the same answer (2 ms
    of 1000 routes, against 0.5 ms for those on two devices)."""
    named = [r for r in (*desired.routes, *observed.routes) if r.dev in devices]
    keys = {r.key for r in named}
    tos = {r.to for r in named}  # a route elsewhere is a namesake only with one of these destinations: an
    # attribute read, where its key is a tuple made per route (10 000 routes on each side, at 10 000 devices)
    return (replace(desired, routes=tuple(r for r in desired.routes
                                          if r.dev in devices or (r.to in tos and r.key in keys))),
            replace(observed, routes=tuple(r for r in observed.routes
                                           if r.dev in devices or (r.to in tos and r.key in keys))))


_DEVICE_ORDER = (Action.REPLACE, Action.CREATE, Action.UPDATE)
_NO_LONGER = "owned by provision, no longer in the inventory"


@dataclass
class _Part:
    """The changes for one kind of resource: removals go first, the rest after devices."""

    removals: list[Change] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    in_sync: int = 0
    gone: set[str] = field(default_factory=set)  # devices deleted or replaced: addresses and routes go too
    down: set[str] = field(default_factory=set)  # devices going down: the kernel flushes their routes
    readdressed: set[str] = field(default_factory=set)  # devices losing an address: their routes may go too


def _plan_devices(host: str, desired: Network, observed: Observed, destroy: bool) -> _Part:
    out = _Part()
    live_devices = {d.name: d for d in observed.devices}
    link_kinds = dict(observed.links)
    wanted = {d.name for d in desired.devices}
    for want in desired.devices:
        live = live_devices.get(want.name)
        if live is None:
            kind = link_kinds.get(want.name)
            if kind is not None:
                raise ConflictError(host, f"{want.name} exists as a {kind or 'plain'} interface, not a tun/tap device; "
                                          "provision will not replace a device it does not manage",
                                    resource=f"device {want.name}")
            out.changes.append(Change(Action.CREATE, Kind.DEVICE, want.name, None, want, "not present"))
            continue
        if _matches(want, live):
            out.in_sync += 1
            continue
        target = _with_unmanaged_from(want, live)
        fixed = [f for f in Device.FIXED if getattr(target, f) != getattr(live, f)]
        if fixed:
            out.gone.add(want.name)
            out.changes.append(Change(Action.REPLACE, Kind.DEVICE, want.name, live, target,
                                      f"{', '.join(fixed)} cannot change in place"))
        elif target != live:
            why = [f for f in Device.MUTABLE if getattr(target, f) != getattr(live, f)]
            if not live.managed:
                why.append("adopt: not yet owned by provision")
            out.changes.append(Change(Action.UPDATE, Kind.DEVICE, want.name, live, target, ", ".join(why)))
            if target.state == LinkState.DOWN and live.state == LinkState.UP:
                out.down.add(want.name)
        else:
            out.in_sync += 1
    for name in sorted(set(desired.absent_devices)):
        live = live_devices.get(name)
        if live is not None:
            out.gone.add(name)
            out.removals.append(Change(Action.DELETE, Kind.DEVICE, name, live, None, "state: absent"))
        elif name in link_kinds:
            raise ConflictError(host, f"{name} is a {link_kinds[name] or 'plain'} interface; provision removes "
                                      "only tun/tap devices", resource=f"device {name}")
        else:
            out.in_sync += 1
    for leftover in observed.devices:
        if leftover.managed and leftover.name not in wanted and leftover.name not in desired.absent_devices:
            out.gone.add(leftover.name)
            out.removals.append(Change(Action.DELETE, Kind.DEVICE, leftover.name, leftover, None,
                                       "destroy" if destroy else _NO_LONGER))
    return out


def _plan_addresses(desired: Network, observed: Observed, devices: _Part) -> _Part:
    """Fully managed on the devices the inventory names (kernel-made IPv6 link-local aside).
    Compared as each device's set of address texts: a set of Address values hashes and compares
    each through generated Python methods, nearly twice the time (a fleet's plan has thousands)."""
    out = _Part()
    live_names = {d.name for d in observed.devices}
    live: dict[str, set[str]] = {}
    for a in observed.addresses:
        live.setdefault(a.device, set()).add(a.cidr)
    wanted: dict[str, set[str]] = {d.name: set() for d in desired.devices}
    for a in desired.addresses:
        wanted[a.device].add(a.cidr)
    for name, want in sorted(wanted.items()):
        fresh = name in devices.gone or name not in live_names
        have = set() if fresh else live.get(name, set())
        if want == have:  # most devices: nothing to add or remove
            out.in_sync += len(want)
            continue
        for cidr in sorted(want - have):
            out.changes.append(Change(Action.CREATE, Kind.ADDRESS, f"{cidr} on {name}", None, Address(name, cidr),
                                      "new device" if fresh else "not present"))
        for cidr in sorted(have - want):
            gone = Address(name, cidr)
            if not gone.is_link_local_v6:
                out.readdressed.add(name)
                out.removals.append(Change(Action.DELETE, Kind.ADDRESS, f"{cidr} on {name}", gone, None,
                                           "not in the inventory (addresses on managed devices are managed)"))
        out.in_sync += len(want & have)
    return out


def _plan_routes(desired: Network, observed: Observed, devices: _Part, destroy: bool,
                 readdressed: set[str]) -> _Part:
    """`readdressed`: devices that lose an address. The kernel may take their routes with it
    (IPv4 flushes them all when the last address goes), so those in sync are re-asserted
    (a replace) after the address changes instead of being trusted."""
    out = _Part()
    live_routes = dict(zip(map(ROUTE_ORDER, observed.routes), observed.routes, strict=True))  # by Route.key, in C
    vanishing = devices.gone | devices.down
    wanted_keys = set()
    by_key = sorted(desired.routes, key=ROUTE_ORDER)
    for want in [r for r in by_key if r.via is None] + [r for r in by_key if r.via is not None]:  # direct first
        key = ROUTE_ORDER(want)
        wanted_keys.add(key)
        live = live_routes.get(key)
        if live is not None and live.dev in vanishing:
            live = None  # the kernel takes it away with its device
        if live is None:
            out.changes.append(Change(Action.CREATE, Kind.ROUTE, route_key_text(want), None, want, "not present"))
            continue
        if want.dev is not None:
            target = want
        elif (want.via, want.managed) == (live.via, live.managed):
            target = live  # what the replace below would make, without making it (most are in sync)
        else:
            target = replace(want, dev=live.dev)  # a gateway alone: the kernel's choice of device stands
        if target is not live and target != live:
            why = [f for f in ("via", "dev") if getattr(target, f) != getattr(live, f)]
            if not live.managed:
                why.append("adopt: not yet owned by provision")
            out.changes.append(Change(Action.UPDATE, Kind.ROUTE, route_key_text(want), live, target, ", ".join(why)))
        elif live.dev in readdressed and not destroy:
            out.changes.append(Change(Action.UPDATE, Kind.ROUTE, route_key_text(want), live, target,
                                      f"re-asserted: {live.dev} loses an address, which can take the route"))
        else:
            out.in_sync += 1
    for other in sorted(observed.routes, key=ROUTE_ORDER):
        if ROUTE_ORDER(other) in wanted_keys:
            continue
        named_absent = any(a.matches(other.key) for a in desired.absent_routes)
        if named_absent or other.managed:
            reason = "state: absent" if named_absent else ("destroy" if destroy else _NO_LONGER)
            out.removals.append(Change(Action.DELETE, Kind.ROUTE, route_key_text(other), other, None, reason))
    out.in_sync += sum(1 for a in desired.absent_routes if not any(a.matches(k) for k in live_routes))
    return out


def _plan_tunnels(desired: Network, observed: Observed, devices: _Part, destroy: bool) -> _Part:
    out = _Part()
    live = {t.name: t for t in observed.tunnels}
    for want in desired.tunnels:
        have = live.get(want.name)
        if have is None:
            out.changes.append(Change(Action.CREATE, Kind.TUNNEL, want.name, None, want, "start: not running"))
            continue
        unknown = {f: getattr(have, f) for f in UNKNOWABLE if getattr(want, f) is None and want.secure}
        want = replace(want, **unknown)  # not readable here (a plan --facts in CI): assume it is the same
        changed = _spec_changes(have, want)
        if changed:
            why = "restart: " + ", ".join(dict.fromkeys(KEY_FIELDS.get(f, f) for f in changed)) + " changed"
        elif have.state is RunState.FAILED:
            why = "restart: the forwarder kept crashing (see provision status)"
        elif have.state is not RunState.RUNNING:
            why = "restart: its supervisor is not running"
        elif want.device in devices.gone:
            why = f"restart: device {want.device} is replaced"
        else:
            out.in_sync += 1
            continue
        out.changes.append(Change(Action.REPLACE, Kind.TUNNEL, want.name, have, want, why))
    wanted = {t.name for t in desired.tunnels}
    for have in observed.tunnels:
        if have.name not in wanted:
            out.removals.append(Change(Action.DELETE, Kind.TUNNEL, have.name, have, None,
                                       "destroy" if destroy else "stop: no longer in the inventory"))
    return out


# The key fields of a tunnel, and how a plan names a change of each.
KEY_FIELDS = {"private_key_file": "key", "public_key": "key", "peer_public_key": "peer key", "psk_file": "psk",
              "psk_id": "psk"}
UNKNOWABLE = ("public_key", "peer_public_key", "psk_id")  # None in a desired tunnel: a file not readable here


def is_rekey(c: Change) -> bool:
    """Only keys change on a running forwarder: its supervisor restarts the forwarder with the
    new ones and keeps the device attached (no stop and start of the supervisor)."""
    return isinstance(c.before, Tunnel) and isinstance(c.after, Tunnel) and _rekeys(c.before, c.after)


def _rekeys(have: Tunnel, want: Tunnel) -> bool:
    changed = _spec_changes(have, want)
    return bool(changed) and set(changed) <= KEY_FIELDS.keys() and have.state is RunState.RUNNING


def _spec_changes(have: Tunnel, want: Tunnel) -> list[str]:
    return [f for f in Tunnel.SPEC if getattr(want, f) != getattr(have, f)]


_UNMANAGED = ("mtu", "mac", "owner", "group")  # None in a desired device: the live value is kept
_COMPARED = tuple(f.name for f in fields(Device) if f.compare)
_MANAGED_OF = attrgetter(*(f for f in _COMPARED if f not in _UNMANAGED))
_GIVEN = tuple(f for f in _UNMANAGED if f in _COMPARED)
_UNMANAGED_OF = attrgetter(*_GIVEN)
_NONE_GIVEN = (None,) * len(_GIVEN)


def _with_unmanaged_from(want: Device, live: Device) -> Device:
    """Attributes the inventory leaves out keep their live values (a subset match, like nmstate)."""
    keep = {f: getattr(live, f) for f in _UNMANAGED if getattr(want, f) is None}
    return replace(want, **keep)


def _matches(want: Device, live: Device) -> bool:
    """`_with_unmanaged_from(want, live) == live`, without making the device (most are in sync):
    the managed attributes compared as one tuple, then each unmanaged one the inventory gives
    (most inventories give none of them: then nothing more to compare)."""
    if _MANAGED_OF(want) != _MANAGED_OF(live):
        return False
    given = _UNMANAGED_OF(want)
    return given == _NONE_GIVEN or all(w is None or w == v for w, v in zip(given, _UNMANAGED_OF(live), strict=True))


def to_dict(value: Resource | None) -> dict[str, Any] | None:
    """A resource as JSON-ready data, without our internal `managed` marker on desired values."""
    if value is None:
        return None
    out: dict[str, Any] = {}
    for f in fields(value):
        v = getattr(value, f.name)
        out[f.name] = str(v) if isinstance(v, StrEnum) else v
    if isinstance(value, Device):
        out["defaults"] = {name: str(why) for name, why in value.defaults}
    return out


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "host": plan.host,
        "observed_digest": plan.observed_digest,
        "in_sync": plan.in_sync,
        "summary": {str(a): n for a, n in plan.counts().items()},
        "changes": [
            {"action": str(c.action), "kind": str(c.kind), "key": c.key, "reason": c.reason,
             "before": to_dict(c.before), "after": to_dict(c.after),
             **({"disruptive": c.disruptive} if c.disruptive else {}),
             **({"taken_from": c.taken_from} if c.taken_from else {})}
            for c in plan.changes
        ],
    }



def plan_from_dict(d: dict[str, Any]) -> Plan:
    """Inverse of plan_to_dict: how a plan made inside a container comes back to the controller."""
    changes = tuple(
        Change(Action(c["action"]), Kind(c["kind"]), c["key"], _resource(Kind(c["kind"]), c["before"]),
               _resource(Kind(c["kind"]), c["after"]), c["reason"], str(c.get("disruptive", "")),
               str(c.get("taken_from", "")))
        for c in d["changes"])
    return Plan(d["host"], changes, d["observed_digest"], int(d["in_sync"]))


def _resource(kind: Kind, d: dict[str, Any] | None) -> Resource | None:
    if d is None:
        return None
    if kind is Kind.DEVICE:
        return Device(**{**d, "type": DeviceType(d["type"]), "state": LinkState(d["state"]),
                         "defaults": tuple((name, Default(why)) for name, why in (d.get("defaults") or {}).items())})
    if kind is Kind.ADDRESS:
        return Address(**d)
    if kind is Kind.ROUTE:
        return Route(**d)
    return tunnel_from_dict(d, RunState(d.get("state", RunState.RUNNING)))
