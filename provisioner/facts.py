"""Live state in the inventory's own format, and back.

`provision facts` prints an inventory: each host's `network` is what the kernel has, so it
can start an inventory, and a `provision_facts` variable keeps what the diff also needs
(which devices and routes we own, the names of the other interfaces), so the same file is
a `--facts` snapshot that CI can plan against without root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .hints import Any
from .model import (
    MAIN_TABLE,
    ROUTE_ORDER,
    Address,
    Device,
    DeviceType,
    LinkState,
    Observed,
    Route,
    RunState,
    Tunnel,
    tunnel_from_dict,
    tunnel_to_dict,
)

FACTS_VAR = "provision_facts"
CONNECTION_VARS = ("ansible_connection", "ansible_host")  # kept in a snapshot: how the host is reached


def reached_by(vars_: Mapping[str, Any]) -> dict[str, Any]:
    return {k: vars_[k] for k in CONNECTION_VARS if k in vars_}


def device_to_dict(d: Device, addresses: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": d.name, "type": str(d.type), "state": str(d.state)}
    if d.mtu is not None:
        out["mtu"] = d.mtu
    if d.mac is not None:
        out["mac"] = d.mac
    for f in ("owner", "group"):
        if getattr(d, f) is not None:
            out[f] = getattr(d, f)
    for f in ("pi", "vnet_hdr", "multi_queue"):
        if getattr(d, f):
            out[f] = True
    if addresses:
        out["addresses"] = addresses
    return out


def route_to_dict(r: Route) -> dict[str, Any]:
    out: dict[str, Any] = {"to": r.to}
    if r.via is not None:
        out["via"] = r.via
    if r.dev is not None:
        out["dev"] = r.dev
    out["metric"] = r.metric
    if r.table != MAIN_TABLE:
        out["table"] = r.table
    return out


def host_vars(observed: Observed, connection: Mapping[str, Any],
              host_key: tuple[str, str] | None = None) -> dict[str, Any]:
    """`host_key`: (the private key file, its public key), when the host has one (see host_key)."""
    by_device: dict[str, list[str]] = {}
    for a in observed.addresses:
        if not a.is_link_local_v6:
            by_device.setdefault(a.device, []).append(a.cidr)
    out: dict[str, Any] = dict(connection)
    if host_key is not None:
        out["tunnel_private_key_file"], out["tunnel_public_key"] = host_key
    out["network"] = {
        "devices": [device_to_dict(d, by_device.get(d.name, [])) for d in observed.devices],
        "routes": [route_to_dict(r) for r in observed.routes],
    }
    if observed.tunnels:  # in the explicit form: the peer's name is not a fact of this host
        out["network"]["tunnels"] = [_tunnel_vars(t) for t in observed.tunnels]
    out[FACTS_VAR] = {
        "owned_devices": [d.name for d in observed.devices if d.managed],
        "owned_routes": [route_to_dict(r) for r in observed.routes if r.managed],
        "link_local": [a.cidr + " " + a.device for a in observed.addresses if a.is_link_local_v6],
        "links": {name: kind for name, kind in observed.links},
        "tunnels": [{**tunnel_to_dict(t), "state": str(t.state)} for t in observed.tunnels],
    }
    return out


def _tunnel_vars(t: Tunnel) -> dict[str, Any]:
    """A running tunnel as an inventory entry: public keys and where the psk is, never a secret."""
    out: dict[str, Any] = {"name": t.name, "device": t.device, "transport": str(t.transport), str(t.role): t.endpoint}
    if not t.secure:
        out["insecure"] = True
    elif t.peer_public_key is not None:
        out["public_key"] = t.peer_public_key
    if t.psk_file:
        out["psk_file"] = t.psk_file
    out.update({k: v for k, v in (("compress", t.compress), ("user", t.user), ("group", t.group)) if v})
    return out


def host_key(observed: Observed, configured: str | None = None) -> tuple[str, str] | None:
    """(file, public key) of the private key this host's forwarders use: the one running tunnels
    were given, else `configured` (the inventory's), else the default; None if there is none
    here (or it is not fit to use: `validate` and `apply` say why)."""
    from . import keys

    running = [t.private_key_file for t in observed.tunnels if t.private_key_file]
    path = running[0] if running else configured or keys.DEFAULT_PRIVATE_KEY_FILE
    try:
        return path, keys.public_key(keys.read_private(path))
    except keys.KeyFileError:
        return None


def observed_from_vars(vars_: Mapping[str, Any]) -> Observed:
    """Inverse of host_vars; raises KeyError/ValueError/TypeError on a file that is not facts."""
    net = vars_.get("network") or {}
    meta = vars_[FACTS_VAR]
    owned = set(meta.get("owned_devices") or ())
    owned_routes = {(r.get("table", MAIN_TABLE), r["to"], r["metric"]) for r in meta.get("owned_routes") or ()}
    devices, addresses = [], []
    for d in net.get("devices") or ():
        devices.append(Device(
            name=d["name"], type=DeviceType(d["type"]), state=LinkState(d.get("state", "up")),
            mtu=d.get("mtu"), mac=d.get("mac"), owner=d.get("owner"), group=d.get("group"),
            pi=bool(d.get("pi")), vnet_hdr=bool(d.get("vnet_hdr")), multi_queue=bool(d.get("multi_queue")),
            managed=d["name"] in owned,
        ))
        addresses += [Address(d["name"], a) for a in d.get("addresses") or ()]
    for text in meta.get("link_local") or ():
        cidr, device = text.split(" ", 1)
        addresses.append(Address(device, cidr))
    routes = []
    for r in net.get("routes") or ():
        route = Route(to=r["to"], table=r.get("table", MAIN_TABLE), metric=r["metric"],
                      via=r.get("via"), dev=r.get("dev"))
        routes.append(Route(**{**route.__dict__, "managed": route.key in owned_routes}))
    links = tuple(sorted((str(k), str(v)) for k, v in (meta.get("links") or {}).items()))
    tunnels = tuple(sorted(tunnel_from_dict(t, RunState(t.get("state", RunState.RUNNING)))
                           for t in meta.get("tunnels") or ()))
    return Observed(tuple(sorted(devices)), tuple(sorted(addresses)),
                    tuple(sorted(routes, key=ROUTE_ORDER)), links, tunnels)


def load_snapshots(paths: Sequence[str]) -> dict[str, Observed]:
    """Host name → Observed, from `provision facts` snapshots: files (YAML or JSON), or
    directories of them (`*.json`, `*.yaml`, `*.yml`), as CI keeps one file per host."""
    from .errors import Diagnostic, InventoryError
    from .source import load_source, parse

    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith((".json", ".yaml", ".yml")))
        else:
            files.append(path)
    out: dict[str, Observed] = {}
    for file in files:
        data = parse(load_source(file))
        try:
            for name, vars_ in ((data.get("all") or {}).get("hosts") or {}).items():
                out[str(name)] = observed_from_vars(vars_ or {})
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InventoryError([Diagnostic((), f"not a `provision facts` snapshot ({FACTS_VAR} missing or "
                                                 f"malformed: {exc})", file)]) from exc
    return out
