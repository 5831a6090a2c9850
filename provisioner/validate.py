"""Semantic checks on a host's merged network, and its conversion to a desired `Network`.

The schema has already said the shapes are right; here are the rules that need more
than one field, or the whole host, to check. Every problem is collected, none raised.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import Diagnostic
from .inventory import Host, Source
from .model import (
    MAIN_TABLE,
    AbsentRoute,
    Address,
    Device,
    DeviceType,
    LinkState,
    Network,
    Route,
    canonical_interface,
    canonical_network,
    default_metric,
)

IFNAMSIZ = 16  # the kernel's limit, including the terminating NUL
ABSENT = "absent"
CONNECTIONS = ("local", "netns")
LOCAL_TABLE = 255


def interface_name_problem(name: str) -> str | None:
    """The kernel's dev_valid_name(), in words."""
    if len(name.encode()) >= IFNAMSIZ:
        return f"interface name {name!r} is {len(name.encode())} bytes; the kernel allows at most {IFNAMSIZ - 1}"
    if name in (".", ".."):
        return f"interface name {name!r} is not allowed"
    bad = sorted({c for c in name if c.isspace() or c in "/:"})
    if bad:
        return f"interface name {name!r} contains {', '.join(repr(c) for c in bad)}"
    return None


def check_host(source: Source, host: Host) -> list[Diagnostic]:
    out: list[Diagnostic] = []

    def err(path: tuple, msg: str) -> None:
        out.append(source.diagnostic(path, msg))

    connection = host.connection
    if connection is not None and connection not in CONNECTIONS:
        err(host.path, f"host {host.name}: ansible_connection {connection!r} is not supported "
                       f"(supported: {', '.join(CONNECTIONS)})")
    devices = host.network.get("devices", ())
    routes = host.network.get("routes", ())
    _duplicates(source, host, out)

    owner_of_ip: dict[Any, str] = {}
    declared: dict[str, Mapping[str, Any]] = {}
    for entry in devices:
        d, p = entry.value, entry.path
        name = str(d.get("name"))
        declared[name] = d
        problem = interface_name_problem(name)
        if problem:
            err(p + ("name",), problem)
        if d.get("state") == ABSENT:
            continue
        if d.get("type") == DeviceType.TUN and "mac" in d:
            err(p + ("mac",), "a tun device has no MAC address (mac is for tap devices)")
        mac = d.get("mac")
        if isinstance(mac, str) and len(mac) == 17 and int(mac[:2], 16) & 1:
            err(p + ("mac",), f"{mac} is a multicast address; a device needs a unicast MAC")
        for i, text in enumerate(d.get("addresses") or ()):
            try:
                iface = ipaddress.ip_interface(text)
            except ValueError:
                err(p + ("addresses", i), f"{text!r} is not an ADDRESS/PREFIX")
                continue
            other = owner_of_ip.get(iface.ip)
            if other is not None:
                what = "twice on this device" if other == name else f"also on device {other}"
                err(p + ("addresses", i), f"address {iface.ip} is {what}")
            owner_of_ip[iface.ip] = name

    for entry in routes:
        r, p = entry.value, entry.path
        family = None
        try:
            family = ipaddress.ip_network(canonical_network(str(r.get("to")))).version
        except ValueError as exc:
            err(p + ("to",), f"{r.get('to')!r} is not a network in CIDR form ({_reason(exc)})")
        if r.get("table") == LOCAL_TABLE:
            err(p + ("table",), "table 255 (local) belongs to the kernel")
        if r.get("state") == ABSENT:
            continue
        via = r.get("via")
        if via is not None:
            try:
                gw = ipaddress.ip_address(via)
                if family and gw.version != family:
                    err(p + ("via",), f"gateway {via} is IPv{gw.version} but the route is IPv{family}")
            except ValueError:
                err(p + ("via",), f"{via!r} is not an IP address")
        dev = r.get("dev")
        if via is None and dev is None:
            err(p, "a route needs `via`, `dev` or both")
        if dev is not None:
            target = declared.get(str(dev))
            if target is not None and target.get("state") == ABSENT:
                err(p + ("dev",), f"device {dev} is declared absent")
            elif target is not None and target.get("state") == LinkState.DOWN:
                err(p + ("dev",), f"device {dev} is declared down; the kernel keeps no route on a down device")
    return out


def check_devs_present(source: Source, host: Host, links: Iterable[str]) -> list[Diagnostic]:
    """A route's `dev` must be declared, or be present on the live host."""
    present = set(links) | {str(e.value.get("name")) for e in host.network.get("devices", ())}
    return [
        source.diagnostic(e.path + ("dev",), f"device {e.value['dev']} is neither declared nor present on {host.name}")
        for e in host.network.get("routes", ())
        if e.value.get("state") != ABSENT and e.value.get("dev") is not None and str(e.value["dev"]) not in present
    ]


def _duplicates(source: Source, host: Host, out: list[Diagnostic]) -> None:
    """The same key twice within one list is a mistake; across layers it is an override."""
    from .inventory import MERGE_KEYS, NETWORK

    for layer, layer_path in host.layers:
        net = layer.get(NETWORK)
        if not isinstance(net, Mapping):
            continue
        for list_key, key_of in MERGE_KEYS.items():
            seen: dict[Any, int] = {}
            for i, item in enumerate(net.get(list_key) or ()):
                k = key_of(item)
                if k in seen:
                    what = f"name {k!r}" if list_key == "devices" else f"route {_route_words(k)}"
                    path = layer_path + (NETWORK, list_key, i)
                    out.append(source.diagnostic(path, f"duplicate {what} (first at index {seen[k]})"))
                seen.setdefault(k, i)


def _route_words(key: tuple) -> str:
    table, to, metric = key
    return f"to {to}" + (f" table {table}" if table != MAIN_TABLE else "") + (f" metric {metric}" if metric else "")


def _reason(exc: ValueError) -> str:
    text = str(exc)
    return "host bits set" if "host bits" in text else text


def network_of(host: Host) -> Network:
    """The desired state, normalised; call only after check_host found no errors."""
    devices: list[Device] = []
    addresses: list[Address] = []
    absent_devices: list[str] = []
    for entry in host.network.get("devices", ()):
        d = entry.value
        if d.get("state") == ABSENT:
            absent_devices.append(str(d["name"]))
            continue
        devices.append(_device(d))
        addresses.extend(Address(str(d["name"]), canonical_interface(a)) for a in d.get("addresses") or ())
    routes: list[Route] = []
    absent_routes: list[AbsentRoute] = []
    for entry in host.network.get("routes", ()):
        r = entry.value
        to = canonical_network(str(r["to"]))
        table = int(r.get("table", MAIN_TABLE))
        if r.get("state") == ABSENT:
            absent_routes.append(AbsentRoute(to, table, r.get("metric")))
            continue
        via = r.get("via")
        routes.append(Route(
            to=to, table=table, metric=int(r.get("metric", default_metric(to))),
            via=str(ipaddress.ip_address(via)) if via is not None else None,
            dev=str(r["dev"]) if r.get("dev") is not None else None,
        ))
    return Network(tuple(devices), tuple(sorted(addresses)), tuple(routes),
                   tuple(absent_devices), tuple(absent_routes))


def _device(d: Mapping[str, Any]) -> Device:
    mac = d.get("mac")
    return Device(
        name=str(d["name"]),
        type=DeviceType(d["type"]),
        state=LinkState(d.get("state", LinkState.UP)),
        mtu=d.get("mtu"),
        mac=mac.lower() if isinstance(mac, str) else None,
        owner=d.get("owner"),
        group=d.get("group"),
        pi=bool(d.get("pi", False)),
        vnet_hdr=bool(d.get("vnet_hdr", False)),
        multi_queue=bool(d.get("multi_queue", False)),
    )

