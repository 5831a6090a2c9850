"""A host's merged `network`, as the desired state: the frozen model plan.py diffs against the live one.

Pure: call it only after validate found no errors (it trusts the shapes). `hosts` (all of the
inventory) resolves `peer:` tunnels; `source` and `resolved` their key files and users.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace

from . import defaults
from .hints import Any
from .inventory import Host
from .model import (
    ADDRESS_ORDER,
    MAIN_TABLE,
    AbsentRoute,
    Address,
    Default,
    Device,
    DeviceType,
    LinkState,
    Network,
    Role,
    Route,
    Transport,
    Tunnel,
    canonical_address,
    canonical_interface,
    canonical_network,
    default_metric,
)
from .resolve import Resolved, ids, key_path, private_key_path, public_key_of
from .source import Sources
from .validate import ABSENT, listens, tunnel_address


def network_of(host: Host, hosts: Mapping[str, Host] | None = None, source: Sources | None = None,
               resolved: Resolved | None = None) -> Network:
    """The desired state, normalised; call only after check_host and check_peers found no errors.
    `hosts` (all of the inventory) resolves `peer:` tunnels; `source` and `resolved` their key
    files and users."""
    resolved = resolved or Resolved()
    run_as = {str(e.value["device"]): ids(resolved, _text(e.value.get("user")), _text(e.value.get("group")))
              for e in host.network.get("tunnels", ())}
    devices: list[Device] = []
    addresses: list[Address] = []
    absent_devices: list[str] = []
    carriers = defaults.carriers(e.value for e in host.network.get("tunnels", ()))
    for entry in host.network.get("devices", ()):  # per item, as cheaply as it reads: thousands of them
        d = entry.value
        if d.get("state") == ABSENT:
            absent_devices.append(str(d["name"]))
            continue
        device = _device(d, carriers.get(str(d["name"])) if carriers else None)
        if run_as:
            uid, gid = run_as.get(device.name, (None, None))
            if device.owner is None and uid is not None:
                device = replace(device, owner=uid)
            if device.group is None and gid is not None:
                device = replace(device, group=gid)
        devices.append(device)
        for a in d.get("addresses") or ():
            addresses.append(Address(device.name, canonical_interface(a)))
    routes: list[Route] = []
    absent_routes: list[AbsentRoute] = []
    for entry in host.network.get("routes", ()):
        r = entry.value
        to = canonical_network(str(r["to"]))
        table = r.get("table")
        table = MAIN_TABLE if table is None else int(table)
        if r.get("state") == ABSENT:
            absent_routes.append(AbsentRoute(to, table, r.get("metric")))
            continue
        metric, via, dev = r.get("metric"), r.get("via"), r.get("dev")
        routes.append(Route(to, table, default_metric(to) if metric is None else int(metric),
                            None if via is None else canonical_address(str(via)),
                            None if dev is None else str(dev)))
    by_name = {d.name: d for d in devices}
    tunnels = tuple(sorted(_tunnel(host, e.value, by_name[str(e.value["device"])], hosts or {}, source, resolved)
                           for e in host.network.get("tunnels", ())))
    return Network(tuple(devices), tuple(sorted(addresses, key=ADDRESS_ORDER)), tuple(routes),
                   tuple(absent_devices), tuple(absent_routes), tunnels)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _tunnel(host: Host, t: Mapping[str, Any], device: Device, hosts: Mapping[str, Host], source: Sources | None,
            resolved: Resolved) -> Tunnel:
    """With peer: the host whose name sorts first listens on all addresses; the other connects."""
    transport = Transport(t.get("transport", Transport.TCP))
    peer = t.get("peer")
    if peer is None:
        role = Role.LISTEN if "listen" in t else Role.CONNECT
        endpoint = str(t[role.value])
    elif listens(host.name, str(peer)):
        role = Role.LISTEN
        own = tunnel_address(host)
        endpoint = f"[::]:{t['port']}" if _is_ipv6(own) else f"0.0.0.0:{t['port']}"
    else:
        role = Role.CONNECT
        address = tunnel_address(hosts[str(peer)])
        endpoint = f"[{address}]:{t['port']}" if ":" in address else f"{address}:{t['port']}"
    secure = t.get("insecure") is not True
    inventory_file = source.file if source is not None else ""
    private = private_key_path(inventory_file, host) if secure else None
    psk_file = key_path(inventory_file, str(t["psk_file"])) if secure and "psk_file" in t else None
    if not secure:
        peer_key = None
    elif peer is not None:
        peer_key = public_key_of(hosts[str(peer)], resolved) if str(peer) in hosts else None
    else:
        peer_key = _text(t.get("public_key"))
    return Tunnel(name=str(t["name"]), device=device.name, transport=transport, role=role, endpoint=endpoint,
                  peer=str(peer) if peer is not None else None, device_type=device.type, pi=device.pi,
                  vnet_hdr=device.vnet_hdr, multi_queue=device.multi_queue, private_key_file=private,
                  public_key=public_key_of(host, resolved) if secure else None, peer_public_key=peer_key,
                  psk_file=psk_file, psk_id=resolved.psk_ids.get(psk_file) if psk_file else None,
                  compress=bool(t.get("compress")), user=_text(t.get("user")), group=_text(t.get("group")))


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


# by value, as the inventory writes them: DeviceType(value) is an enum lookup per call, a fifth of
# making a desired device (2000 of them in a 1000-device plan)
_TYPES = {t.value: t for t in DeviceType}
_STATES = {s.value: s for s in LinkState}


def _device(d: Mapping[str, Any], carrier: Transport | None) -> Device:
    """`carrier`: the transport of the tunnel that names this device, which picks the defaults
    of what the inventory leaves out (defaults.py)."""
    mac = d.get("mac")
    vnet_hdr, vnet_why = defaults.vnet_hdr(d, carrier)
    mtu, mtu_why = defaults.mtu(d, carrier)
    chosen: tuple[tuple[str, Default], ...] = ()
    if mtu_why is not None or vnet_why is not None:
        chosen = tuple((name, why) for name, why in (("mtu", mtu_why), ("vnet_hdr", vnet_why)) if why is not None)
    return Device(
        name=str(d["name"]),
        type=_TYPES[d["type"]],
        state=_STATES[d.get("state", LinkState.UP)],
        mtu=mtu,
        mac=mac.lower() if isinstance(mac, str) else None,
        owner=d.get("owner"),
        group=d.get("group"),
        pi=bool(d.get("pi", False)),
        vnet_hdr=vnet_hdr,
        multi_queue=bool(d.get("multi_queue", False)),
        defaults=chosen,
    )
