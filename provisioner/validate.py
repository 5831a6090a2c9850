"""Semantic checks on a host's merged network (desired.py then turns it into a desired `Network`).

The schema has already said the shapes are right; here are the rules that need more
than one field, or the whole host, to check. Every problem is collected, none raised.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from operator import attrgetter, methodcaller

from . import defaults
from .errors import Diagnostic
from .hints import Any
from .inventory import Entry, Host
from .resolve import var_path
from .model import (
    IFNAMSIZ,
    MAIN_TABLE,
    DeviceType,
    LinkState,
    Transport,
    canonical_interface,
    canonical_network,
    split_endpoint,
)
from .source import Sources

ABSENT = "absent"
CONNECTIONS = ("local", "netns", "docker")
LOCAL_TABLE = 255
ROOT_NAMES = ("root", "0")  # as user: or group:; resolve also refuses a name that means uid/gid 0 on the host
KEY_FILE_MIGRATION = ("key_file is the old shared-key form. Tunnels now use WireGuard keys: give each host "
                      "tunnel_private_key_file (provision keygen PATH writes one and prints its public key) and "
                      "tunnel_public_key; to keep the old key as an extra pre-shared key, rename key_file to psk_file.")


def interface_name_problem(name: str) -> str | None:
    """The kernel's dev_valid_name(), in words."""
    if len(name.encode()) >= IFNAMSIZ:
        return f"interface name {name!r} is {len(name.encode())} bytes; the kernel allows at most {IFNAMSIZ - 1}"
    if name in (".", ".."):
        return f"interface name {name!r} is not allowed"
    bad = _NAME_BAD.findall(name)
    if bad:
        return f"interface name {name!r} contains {', '.join(repr(c) for c in sorted(set(bad)))}"
    if "%" in name:  # dev_valid_name() lets it through, then the kernel reads the name as a template
        return (f"interface name {name!r} contains '%': the kernel would make a name of its own from it "
                "(x%d becomes x0), which provision could not find again")
    return None


# what dev_valid_name() refuses in a name: whitespace (\s is str.isspace(), every code point:
# tests/unit/test_validation.py), '/' and ':'. One search in C, not a set made per name.
_NAME_BAD = re.compile(r"[\s/:]")
# A name interface_name_problem has nothing to say of: 1-15 printable ASCII characters but
# space, '%', '/' and ':', and not '.' or '..'. One match in C; only the others are looked at.
_NAME_FINE = re.compile(r"(?!\.\.?\Z)[!-$&-.0-9;-~]{1,15}").fullmatch
_VALUE, _GET_NAME = attrgetter("value"), methodcaller("get", "name")


HOST_NAME_BYTES = 200  # a file name is at most 255 bytes; room for what provision adds to it


def host_name_problem(name: str) -> str | None:
    """A host's name becomes a directory or file name in the state directory (its lock, its
    tunnels): `..`, `/` or a control character there would put root's files, or a stop's
    rmtree, somewhere else. Ansible itself has no such names in practice."""
    if name in ("", ".", ".."):
        return f"host name {name!r} is not allowed (it is not a file name)"
    if len(name.encode()) > HOST_NAME_BYTES:
        return f"host name is {len(name.encode())} bytes; at most {HOST_NAME_BYTES}"
    bad = sorted({c for c in name if c == "/" or not c.isprintable() or c.isspace()})
    if bad:
        return f"host name {name!r} contains {', '.join(repr(c) for c in bad)}"
    if name.startswith(("-", ".")):
        return f"host name {name!r} starts with {name[0]!r}"
    return None


def check_host(source: Sources, host: Host, routes_only: tuple[Entry, ...] | None = None) -> list[Diagnostic]:
    """`routes_only`: the host's routes to check, where it differs from a host that passed only in
    those (recheck.py says when that is known); of the rest, only what is checked of the host as
    a whole is checked again."""
    out: list[Diagnostic] = []

    def err(path: tuple, msg: str) -> None:
        out.append(source.diagnostic(path, msg))

    problem = host_name_problem(host.name)
    if problem:
        err(host.path, problem)

    connection = host.connection
    if connection is not None and connection not in CONNECTIONS:
        err(host.path, f"host {host.name}: ansible_connection {connection!r} is not supported "
                       f"(supported: {', '.join(CONNECTIONS)})")
    if connection == "netns":
        from .kernel.namespace import name_problem  # here: a plan against snapshots reaches no namespace

        problem = name_problem(host.address)
        if problem:
            err(var_path(host, "ansible_host"), f"host {host.name}: ansible_host {problem}")
    devices = host.network.get("devices", ())
    routes = host.network.get("routes", ())
    declared: dict[str, Mapping[str, Any]] = {}
    if routes_only is not None:  # the devices passed: here only what a route is checked against
        values = tuple(map(_VALUE, devices))
        declared = dict(zip(map(str, map(_GET_NAME, values)), values, strict=True))  # in C
        devices, routes = (), routes_only
    for path, key, first in host.repeated:
        what = f"route {_route_words(key)}" if path[-2] == "routes" else f"name {key!r}"
        err(path, f"duplicate {what} (first at index {first})")

    owner_of_ip: dict[Any, str] = {}
    for entry in devices:  # the common case tested first, and cheaply: this loop and the next run per item
        d = entry.value
        name = d.get("name")
        name = name if type(name) is str else str(name)
        declared[name] = d
        if not _NAME_FINE(name):
            problem = interface_name_problem(name)
            if problem:
                err(entry.path + ("name",), problem)
        if d.get("state") == ABSENT:
            continue
        if "mac" in d:
            mac = d["mac"]
            if d.get("type") == DeviceType.TUN:
                err(entry.path + ("mac",), "a tun device has no MAC address (mac is for tap devices)")
            if isinstance(mac, str) and len(mac) == 17 and int(mac[:2], 16) & 1:
                err(entry.path + ("mac",), f"{mac} is a multicast address; a device needs a unicast MAC")
        for i, text in enumerate(d.get("addresses") or ()):
            try:
                ip = canonical_interface(text if type(text) is str else str(text)).partition("/")[0]  # one spelling
            except ValueError:
                err(entry.path + ("addresses", i), f"{text!r} is not an ADDRESS/PREFIX")
                continue
            other = owner_of_ip.get(ip)
            if other is not None:
                what = "twice on this device" if other == name else f"also on device {other}"
                err(entry.path + ("addresses", i), f"address {ip} is {what}")
            owner_of_ip[ip] = name

    for entry in routes:
        r = entry.value
        to = r.get("to")
        family = None
        try:
            family = 6 if ":" in canonical_network(to if type(to) is str else str(to)) else 4
        except ValueError as exc:
            err(entry.path + ("to",), f"{to!r} is not a network in CIDR form ({_reason(exc)})")
        if r.get("table") == LOCAL_TABLE:
            err(entry.path + ("table",), "table 255 (local) belongs to the kernel")
        if r.get("state") == ABSENT:
            continue
        via, dev = r.get("via"), r.get("dev")
        if via is not None:
            try:
                gw = ipaddress.ip_address(via)
                if family and gw.version != family:
                    err(entry.path + ("via",), f"gateway {via} is IPv{gw.version} but the route is IPv{family}")
            except ValueError:
                err(entry.path + ("via",), f"{via!r} is not an IP address")
        if dev is None:
            if via is None:
                err(entry.path, "a route needs `via`, `dev` or both")
            continue
        target = declared.get(dev if type(dev) is str else str(dev))
        if target is None:
            continue
        if via is not None:
            problem = _gateway_off_subnets(str(via), target)
            if problem:
                err(entry.path + ("via",), problem)
        state = target.get("state")
        if state == ABSENT:
            err(entry.path + ("dev",), f"device {dev} is declared absent")
        elif state == LinkState.DOWN:
            err(entry.path + ("dev",), f"device {dev} is declared down; the kernel keeps no route on a down device")
    if routes_only is None:
        _check_tunnels(host, declared, err,
                       lambda path, msg: out.append(source.diagnostic(path, msg, severity="warning")))
    _check_host_keys(host, err)
    return out


def _check_host_keys(host: Host, err: Any) -> None:
    """A host with an encrypted tunnel says what its public key is: its peers need it, and
    apply checks it against the private key on the host."""
    where = var_path(host, "tunnel_public_key")
    if "tunnel_public_key" in host.vars and "tunnel_public_key_file" in host.vars:
        err(where, f"host {host.name}: tunnel_public_key and tunnel_public_key_file both given; keep one")
    secure = [str(e.value.get("name")) for e in host.network.get("tunnels", ()) if e.value.get("insecure") is not True]
    if secure and "tunnel_public_key" not in host.vars and "tunnel_public_key_file" not in host.vars:
        err(host.path, f"host {host.name}: tunnel {secure[0]} is encrypted but the host has no tunnel_public_key "
                       "(provision keygen PATH writes a private key and prints its public key; give the host "
                       "both: tunnel_private_key_file: PATH and tunnel_public_key: KEY)")


def _gateway_off_subnets(via: str, device: Mapping[str, Any]) -> str | None:
    """A gateway must be on a subnet of the device the route leaves by, when the inventory gives
    that device its addresses (else the kernel refuses the route: ENETUNREACH)."""
    if device.get("state") == ABSENT:
        return None
    try:
        gw = ipaddress.ip_address(via)
        subnets = [ipaddress.ip_interface(a).network for a in device.get("addresses") or ()]
    except ValueError:
        return None  # said elsewhere
    same_family = [n for n in subnets if n.version == gw.version]
    if not same_family or any(gw in n for n in same_family):
        return None
    shown = ", ".join(str(n) for n in same_family)
    return (f"gateway {via} is on none of {device.get('name')}'s subnets ({shown}); the kernel would refuse the "
            "route (ENETUNREACH)")


def _check_tunnels(host: Host, declared: Mapping[str, Mapping[str, Any]], err: Any, warn: Any) -> None:
    """The rules one host can check alone; check_peers checks the pairs."""
    used_devices: dict[str, str] = {}
    listening: dict[tuple[str, int], str] = {}
    peers: dict[str, str] = {}  # the other end (host, or public key) of each encrypted tunnel -> tunnel
    for entry in host.network.get("tunnels", ()):
        t, p = entry.value, entry.path
        name = str(t.get("name"))
        other = str(t["peer"]) if "peer" in t else str(t["public_key"]) if "public_key" in t else None
        if other is not None and t.get("insecure") is not True:
            if other in peers:  # WireGuard's rule: one peer per pair of keys
                err(p, f"tunnel {name}: tunnel {peers[other]} already joins {host.name} to this peer with the same "
                       "keys; a handshake recorded on one would be taken by the other. Carry both over one tunnel, "
                       "or give one of them another host key")
            peers.setdefault(other, name)
        forms = [k for k in ("peer", "listen", "connect") if k in t]
        if len(forms) != 1:
            err(p, f"tunnel {name}: give exactly one of peer, listen or connect"
                   + (f" (found {', '.join(forms)})" if forms else ""))
        device = str(t.get("device"))
        target = declared.get(device)
        if target is None or target.get("state") == ABSENT:
            err(p + ("device",), f"tunnel {name}: device {device} is not a tun/tap device declared on {host.name}")
        elif device in used_devices:
            err(p + ("device",), f"tunnel {name}: device {device} already carries tunnel {used_devices[device]}; "
                                 "one device, one forwarder")
        used_devices.setdefault(device, name)
        _check_tunnel_keys(name, t, p, err, warn)
        if "group" in t and "user" not in t:
            err(p + ("group",), f"tunnel {name}: group goes with user:")
        for field in ("user", "group"):
            if field in t and str(t[field]) in ROOT_NAMES:
                from .tunnel.privileges import DEFAULT_USER  # with ctypes and subprocess: only here

                err(p + (field,), f"tunnel {name}: {field}: {t[field]} is root; a forwarder never runs as root "
                                  f"(leave {field} out: it runs as {DEFAULT_USER}, a system user provision creates)")
        if "peer" in t and "port" not in t:
            err(p, f"tunnel {name}: a tunnel with peer: needs port:")
        if "port" in t and "peer" not in t:
            err(p + ("port",), f"tunnel {name}: port goes with peer:; with listen/connect write ADDRESS:PORT")
        for form in ("listen", "connect"):
            if form not in t:
                continue
            try:
                address, port = split_endpoint(str(t[form]))
                if form == "listen":
                    ipaddress.ip_address(address)
            except ValueError as exc:
                why = str(exc) if "PORT" in str(exc) or "bracket" in str(exc) else f"{address!r} is not an IP address"
                err(p + (form,), f"tunnel {name}: {why}")
                continue
            if form == "listen":
                _listen_once(listening, (str(t.get("transport", "tcp")), port), name, p + (form,), err)
        if "peer" in t and "port" in t and listens(host.name, str(t["peer"])):
            _listen_once(listening, (str(t.get("transport", "tcp")), int(t["port"])), name, p + ("port",), err)


def _check_tunnel_keys(name: str, t: Mapping[str, Any], p: tuple, err: Any, warn: Any) -> None:
    if "key_file" in t:
        err(p + ("key_file",), f"tunnel {name}: {KEY_FILE_MIGRATION}")
    if t.get("insecure") is True:
        given = [k for k in ("public_key", "psk_file") if k in t]
        if given:
            err(p + ("insecure",), f"tunnel {name}: insecure: true and {given[0]} contradict each other; keep one")
        warn(p + ("insecure",), f"tunnel {name} is insecure: its packets cross the network in plaintext, "
                                "and anyone who can reach its port can read and inject them")
        return
    if "peer" in t and "public_key" in t:
        err(p + ("public_key",), f"tunnel {name}: public_key goes with listen/connect; with peer: the key is "
                                 f"the tunnel_public_key of host {t['peer']}")
    elif "peer" not in t and "public_key" not in t and "key_file" not in t:
        err(p, f"tunnel {name}: no public_key: give the other end's public key (base64), or insecure: true")


def _listen_once(listening: dict[tuple[str, int], str], key: tuple[str, int], name: str, path: tuple,
                 err: Any) -> None:
    if key in listening:
        err(path, f"tunnel {name}: {key[0]} port {key[1]} is already listened on by tunnel {listening[key]}")
    listening.setdefault(key, name)


def listens(host: str, peer: str) -> bool:
    """Of two peers, the one whose name sorts first listens: a rule both ends compute alike."""
    return host < peer


def tunnel_address(host: Host) -> str:
    return str(host.vars.get("tunnel_address") or host.vars.get("ansible_host") or host.name)


def check_peers(source: Sources, hosts: Iterable[Host]) -> list[Diagnostic]:
    """Both ends of every `peer:` tunnel agree: the peer exists, names us back, same transport,
    port and kind of device, and the listening end can be reached."""
    by_name = {h.name: h for h in hosts}
    out = []
    for host in by_name.values():
        for entry in host.network.get("tunnels", ()):
            t, p = entry.value, entry.path
            if "peer" not in t:
                continue
            name, peer_name = str(t.get("name")), str(t["peer"])

            def err(path: tuple, msg: str, name: str = name) -> None:
                out.append(source.diagnostic(path, f"tunnel {name}: {msg}"))

            peer = by_name.get(peer_name)
            if peer_name == host.name:
                err(p + ("peer",), "a host cannot be its own peer")
                continue
            if peer is None:
                err(p + ("peer",), f"peer {peer_name} is not a host of this inventory")
                continue
            theirs = next((e.value for e in peer.network.get("tunnels", ()) if str(e.value.get("name")) == name), None)
            if theirs is None:
                err(p + ("peer",), f"{peer_name} declares no tunnel named {name}")
                continue
            if str(theirs.get("peer")) != host.name:
                back = f"peer {theirs['peer']}" if "peer" in theirs else "listen/connect"
                err(p + ("peer",), f"{peer_name}'s tunnel {name} has {back}, not peer {host.name}")
                continue
            if bool(t.get("insecure")) != bool(theirs.get("insecure")):
                err(p, f"insecure: {bool(t.get('insecure'))} here, {bool(theirs.get('insecure'))} on {peer_name}")
            if not t.get("insecure") and ("psk_file" in t) != ("psk_file" in theirs):
                err(p, f"psk_file {'here but not' if 'psk_file' in t else 'on ' + peer_name + ' but not here'}"
                       f"{' on ' + peer_name if 'psk_file' in t else ''}: both ends hold the same pre-shared key, "
                       "or neither does")
            if t.get("transport", "tcp") != theirs.get("transport", "tcp"):
                err(p, f"transport {t.get('transport', 'tcp')} here, {theirs.get('transport', 'tcp')} on {peer_name}")
            if t.get("port") != theirs.get("port") and "port" in t and "port" in theirs:
                err(p + ("port",), f"port {t.get('port')} here, {theirs.get('port')} on {peer_name}")
            mine, other = _device_flags(host, t), _device_flags(peer, theirs)
            if mine and other and mine != other:
                err(p + ("device",), f"the devices differ (type, pi, vnet_hdr): {mine} here, {other} on "
                                     f"{peer_name}; the forwarders would refuse each other (a tunnel's "
                                     "device has vnet_hdr: true unless the inventory says false)")
            if not listens(host.name, peer_name) and peer.connection == "netns" \
                    and "tunnel_address" not in peer.vars:
                err(p + ("peer",), f"{peer_name} listens (its name sorts first) but is a netns host without "
                                   "tunnel_address: set it to an address this host can reach")
    return out


def _device_flags(host: Host, t: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """(type, pi, vnet_hdr) of the device tunnel `t` names, vnet_hdr as the defaults make it."""
    for e in host.network.get("devices", ()):
        d = e.value
        if str(d.get("name")) == str(t.get("device")) and d.get("state") != ABSENT:
            vnet_hdr, _ = defaults.vnet_hdr(d, Transport(t.get("transport", Transport.TCP)))
            return (d.get("type"), bool(d.get("pi", False)), vnet_hdr)
    return None


def check_devs_present(source: Sources, host: Host, links: Iterable[str]) -> list[Diagnostic]:
    """A route's `dev` must be declared, or be present on the live host."""
    present = set(links) | {str(e.value.get("name")) for e in host.network.get("devices", ())}
    return [
        source.diagnostic(e.path + ("dev",), f"device {e.value['dev']} is neither declared nor present on {host.name}")
        for e in host.network.get("routes", ())
        if e.value.get("state") != ABSENT and e.value.get("dev") is not None and str(e.value["dev"]) not in present
    ]


def _route_words(key: tuple) -> str:
    table, to, metric = key
    return f"to {to}" + (f" table {table}" if table != MAIN_TABLE else "") + (f" metric {metric}" if metric else "")


def _reason(exc: ValueError) -> str:
    text = str(exc)
    return "host bits set" if "host bits" in text else text
