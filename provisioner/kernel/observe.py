"""The live kernel state as an `Observed` value, normalised so the diff is plain comparison.

Four dumps (links without statistics, addresses, IPv4 and IPv6 routes), decoding only the
attributes the plan reads. Kernel-made routes (proto kernel: connected and link-local
prefixes) and the local table are left out: nobody declares them and nothing here may touch
them.

Verification after an apply re-reads only the dumps the apply's changes can have moved
(`observe(since=...)`): the links dump is most of the cost, and a change of routes alone
cannot move a link. A change of routes alone re-reads only the routes on the devices it
names, each asked of the kernel by device (filtered dumps: under 1 ms for one route's device,
against 5-10 ms to read all 1000 routes of 1000 devices). What is not read again is the
observation the plan was made against."""

from __future__ import annotations

import ipaddress
from _socket import AF_INET, AF_INET6, AF_UNSPEC, inet_ntop  # socket's C half: netlink.py says why
from bisect import insort
from dataclasses import dataclass

from ..model import (
    ADDRESS_ORDER,
    DEVICE_ORDER,
    OWNER_ALIAS,
    OWNER_PROTOCOL,
    ROUTE_ORDER,
    Address,
    Device,
    DeviceType,
    LinkState,
    Observed,
    Route,
    Tunnel,
)
from . import netlink as nl

TUN_TYPES = {1: DeviceType.TUN, 2: DeviceType.TAP}
NO_OWNER = 0xFFFFFFFF
ADDRESS_ATTRS = (nl.IFA_LOCAL, nl.IFA_ADDRESS)
ROUTE_ATTRS = (nl.RTA_DST, nl.RTA_GATEWAY, nl.RTA_OIF, nl.RTA_PRIORITY, nl.RTA_TABLE)


def _routes_request(family: int, oif: int | None = None) -> bytes:
    return (nl.RTMSG.pack(family, 0, 0, 0, 0, 0, 0, nl.RTN_UNICAST, 0)
            + (b"" if oif is None else nl.u32(nl.RTA_OIF, oif)))


LINKS = (nl.RTM_GETLINK, nl.links_request())
ADDRESSES = (nl.RTM_GETADDR, nl.IFADDR.pack(AF_UNSPEC, 0, 0, 0, 0))
ROUTE_FAMILIES = (AF_INET, AF_INET6)
# The dumps of a whole observation, as `observe` asks for them: what a connection may ask for
# ahead of its turn (Netlink.read_ahead; connection/kernel.py's Ahead)
EVERYTHING = (LINKS, ADDRESSES, *((nl.RTM_GETROUTE, _routes_request(family)) for family in ROUTE_FAMILIES))


@dataclass(frozen=True)
class Reading:
    """One observation, and the interface indexes it named (what a partial re-read needs)."""

    observed: Observed
    names: dict[int, str]  # every interface's index -> name
    tun_indexes: frozenset[int]  # the tun/tap devices among them


def observe(sock: nl.Netlink, since: Reading | None = None, links: bool = True, addresses: bool = True,
            routes: bool = True, route_devices: frozenset[str] | None = None,
            tunnels: tuple[Tunnel, ...] = ()) -> Reading:
    """The whole state, or (with `since`) only the dumps asked for, the rest taken from `since`.
    Without a links dump the interface names are `since`'s: only for a caller that moved no link.
    `route_devices` (with `since`, and no links or addresses dump): the routes are read again only
    on these devices; only for a caller that moved no route on another. `tunnels`: what the caller
    read of the host's forwarders (not the kernel's to say). The observation is made once, from
    its parts, not copied per dump: a fleet's no-op plan observes every host."""
    if since is None or links:
        found = _links(sock)
        names = {index: name for index, (name, _, _) in found.items()}
        tun_indexes = frozenset(index for index, (_, _, dev) in found.items() if dev is not None)
        devices = tuple(sorted((dev for _, _, dev in found.values() if dev is not None), key=DEVICE_ORDER))
        link_kinds = tuple(sorted((name, kind) for name, kind, _ in found.values()))
        addresses = routes = True  # new indexes: what names them is read again too
    else:
        names, tun_indexes = since.names, since.tun_indexes
        devices, link_kinds = since.observed.devices, since.observed.links
    if since is None or addresses:
        found_addresses = _addresses(sock, names, tun_indexes)
    else:
        found_addresses = since.observed.addresses
    if since is not None and routes and not links and not addresses and route_devices is not None:
        found_routes = _routes_again(sock, names, since.observed.routes, route_devices)
    elif since is None or routes:
        found_routes = _routes(sock, names)
    else:
        found_routes = since.observed.routes
    observed = Observed(devices=devices, addresses=found_addresses, routes=found_routes, links=link_kinds,
                        tunnels=tunnels)
    return Reading(observed, names, tun_indexes)


def _links(sock: nl.Netlink) -> dict[int, tuple[str, str, Device | None]]:
    out: dict[int, tuple[str, str, Device | None]] = {}
    for kind, msg in sock.dump(*LINKS):
        fields = nl.link(msg) if kind == nl.RTM_NEWLINK else None
        if fields is None:
            continue
        index, flags, name, mtu, mac, alias, link_kind, tun = fields
        device = None
        if tun is not None:
            tun_type, owner, group, pi, vnet_hdr, multi_queue = tun
            dtype = TUN_TYPES.get(tun_type)
            if dtype is not None:
                device = Device(
                    name=name,
                    type=dtype,
                    state=LinkState.UP if flags & nl.IFF_UP else LinkState.DOWN,
                    mtu=mtu,
                    mac=(mac or b"").hex(":") if dtype is DeviceType.TAP else None,
                    owner=None if owner in (None, NO_OWNER) else owner,
                    group=None if group in (None, NO_OWNER) else group,
                    pi=bool(pi),
                    vnet_hdr=bool(vnet_hdr),
                    multi_queue=bool(multi_queue),
                    managed=alias == OWNER_ALIAS,
                )
        out[index] = (name, link_kind, device)
    return out


def _addresses(sock: nl.Netlink, names: dict[int, str], wanted: frozenset[int]) -> tuple[Address, ...]:
    out = []
    for kind, msg in sock.dump(*ADDRESSES):
        if kind != nl.RTM_NEWADDR:
            continue
        family, prefixlen, _, _, index = nl.IFADDR.unpack_from(msg)
        if index not in wanted:
            continue
        local, address = nl.pick(msg, nl.IFADDR.size, ADDRESS_ATTRS)
        raw = local or address
        if raw is None:
            continue
        out.append(Address(names[index], f"{_ip_text(family, raw)}/{prefixlen}"))
    return tuple(sorted(out, key=ADDRESS_ORDER))


def _routes_again(sock: nl.Netlink, names: dict[int, str], last: tuple[Route, ...],
                  devices: frozenset[str]) -> tuple[Route, ...]:
    """`last` (sorted) with the routes on `devices` read again, each put in its place: sorting
    them all again cost 3 ms at 10 000 routes for the one or two a change moved."""
    out = [r for r in last if r.dev not in devices]
    for index, name in names.items():
        if name in devices:
            for r in _routes(sock, names, index):
                insort(out, r, key=ROUTE_ORDER)  # after its equals, as a stable sort would put it
    return tuple(out)


def _routes(sock: nl.Netlink, names: dict[int, str], oif: int | None = None) -> tuple[Route, ...]:
    """Every route, or only those through interface `oif`. The kernel filters (which needs the
    socket's strict checking; without it the kernel sends all, and the checks here keep it
    right): unicast routes only, so not the local table's entry for every address, half of the
    messages at one address per device (a dump of 1000 routes: 4.8 ms to 1.9 ms). One dump per
    family: asked of every family at once, a family whose dump takes no such filter (MPLS's,
    by the kernel's source) would fail the whole dump."""
    out = []
    for asked in ROUTE_FAMILIES:
        for kind, msg in sock.dump(nl.RTM_GETROUTE, _routes_request(asked, oif)):
            if kind != nl.RTM_NEWROUTE:
                continue
            family, dst_len, src_len, _, table, protocol, _, rtype, _ = nl.RTMSG.unpack_from(msg)
            if (protocol == nl.RTPROT_KERNEL or rtype != nl.RTN_UNICAST or src_len
                    or family not in (AF_INET, AF_INET6)):
                continue
            dst, gateway, raw_oif, raw_metric, raw_table = nl.pick(msg, nl.RTMSG.size, ROUTE_ATTRS)
            route_oif, metric, table = nl.u32_of(raw_oif, 0), nl.u32_of(raw_metric, 0), nl.u32_of(raw_table, table)
            if table == nl.RT_TABLE_LOCAL or (oif is not None and route_oif != oif):
                continue
            width = 4 if family == AF_INET else 16
            out.append(Route(
                to=f"{_ip_text(family, dst or bytes(width))}/{dst_len}", table=table, metric=metric,
                via=_ip_text(family, gateway) if gateway else None,
                dev=names.get(route_oif), managed=protocol == OWNER_PROTOCOL,
            ))
    return tuple(sorted(out, key=ROUTE_ORDER))


def _ip_text(family: int, raw: bytes) -> str:
    """The canonical text of an address (as ipaddress prints it). IPv4 through inet_ntop (C, a
    tenth of the cost); IPv6 through ipaddress, whose text for IPv4-mapped addresses differs."""
    if family == AF_INET and len(raw) == 4:
        return inet_ntop(AF_INET, raw)
    return str(ipaddress.ip_address(raw))
