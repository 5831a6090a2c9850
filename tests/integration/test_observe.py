"""The kernel read (kernel/observe.py) through a real connection, in a fresh namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioner.connection.kernel import KernelConnection
from provisioner.model import Address, Device, DeviceType, Route
from provisioner.plan import Action, Change, Kind, Resource


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


def change(kind: Kind, before: Resource | None, after: Resource | None) -> Change:
    return Change(Action.CREATE if before is None else Action.UPDATE, kind, "", before, after, "")


def test_a_verification_read_takes_fresh_only_what_the_change_can_have_moved(tmp_path: Path, netns: str) -> None:
    ip(netns, "tuntap", "add", "dev", "tp0", "mode", "tap")
    ip(netns, "link", "set", "tp0", "up")
    with KernelConnection("h", netns, tmp_path, 5.0, lambda _: None) as conn:
        first = conn.observe()
        assert [d.name for d in first.devices] == ["tp0"]
        ip(netns, "tuntap", "add", "dev", "tp1", "mode", "tap")
        ip(netns, "route", "add", "192.0.2.0/24", "dev", "tp0")
        routes_only = conn.observe([change(Kind.ROUTE, None, Route("192.0.2.0/24"))])
        assert [d.name for d in routes_only.devices] == ["tp0"], "no links dump for a route change"
        assert [(r.to, r.dev) for r in routes_only.routes] == [("192.0.2.0/24", "tp0")]
        ip(netns, "addr", "add", "198.51.100.1/24", "dev", "tp0")
        addresses = conn.observe([change(Kind.ADDRESS, None, Address("tp0", "198.51.100.1/24"))])
        assert [a.cidr for a in addresses.addresses] == ["198.51.100.1/24"]
        assert [d.name for d in addresses.devices] == ["tp0"]
        everything = conn.observe([change(Kind.DEVICE, None, Device("tp1", DeviceType.TAP))])
        assert [d.name for d in everything.devices] == ["tp0", "tp1"]
        assert everything == conn.observe()


def test_a_route_change_that_names_its_devices_reads_again_only_the_routes_on_them(tmp_path: Path, netns: str) -> None:
    """Routes on other devices are not read again (a route added there behind provision's back
    stays unseen until the next whole read); a change naming no device reads every route."""
    for dev in ("tp0", "tp1", "tp2"):
        ip(netns, "tuntap", "add", "dev", dev, "mode", "tap")
        ip(netns, "link", "set", dev, "up")
    ip(netns, "route", "add", "192.0.2.0/24", "dev", "tp0")
    ip(netns, "-6", "route", "add", "fd00:1::/64", "dev", "tp0")
    with KernelConnection("h", netns, tmp_path, 5.0, lambda _: None) as conn:
        conn.observe()
        ip(netns, "route", "replace", "192.0.2.0/24", "dev", "tp1")
        ip(netns, "route", "add", "198.51.100.0/24", "dev", "tp2")
        moved = change(Kind.ROUTE, Route("192.0.2.0/24", dev="tp0", managed=False), Route("192.0.2.0/24", dev="tp1"))
        after = conn.observe([moved])
        routes = [(r.to, r.dev) for r in after.routes if not r.to.startswith("fe80")]
        assert routes == [("192.0.2.0/24", "tp1"), ("fd00:1::/64", "tp0")], routes
        assert after.routes == tuple(sorted(after.routes, key=lambda r: r.key))
        anywhere = change(Kind.ROUTE, None, Route("203.0.113.0/24", via="192.0.2.1"))
        everything = conn.observe([anywhere])
        assert ("198.51.100.0/24", "tp2") in [(r.to, r.dev) for r in everything.routes]
        assert everything == conn.observe()


def test_the_compiled_and_the_python_walk_read_the_same_state(tmp_path: Path, netns: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Devices of every kind of flag and owner, addresses of both families, routes through a
    device, through a gateway and in another table: one observation through kernel/_rtattr.c,
    one through its Python models (netlink._messages, _link and _pick)."""
    from provisioner.kernel import netlink

    ip(netns, "tuntap", "add", "dev", "tp0", "mode", "tap", "user", "65534", "group", "65534")
    ip(netns, "tuntap", "add", "dev", "tn0", "mode", "tun", "pi", "vnet_hdr", "multi_queue")
    ip(netns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    for dev in ("tp0", "tn0", "v0"):
        ip(netns, "link", "set", dev, "up")
    ip(netns, "link", "set", "tp0", "alias", "provision")
    ip(netns, "addr", "add", "198.51.100.1/24", "dev", "tp0")
    ip(netns, "addr", "add", "fd00:5::1/64", "dev", "tn0")
    ip(netns, "route", "add", "192.0.2.0/24", "via", "198.51.100.2", "metric", "7")
    ip(netns, "route", "add", "203.0.113.0/24", "dev", "tn0", "table", "100")
    ip(netns, "-6", "route", "add", "fd00:6::/64", "dev", "tn0", "proto", "147")
    with KernelConnection("h", netns, tmp_path, 5.0, lambda _: None) as conn:
        compiled = conn.observe()
        for name in ("messages", "link", "pick"):
            monkeypatch.setattr(netlink, name, getattr(netlink, f"_{name}"))
        modelled = conn.observe()
    assert compiled == modelled
    assert {d.name: (d.owner, d.pi, d.vnet_hdr, d.multi_queue, d.managed) for d in compiled.devices} == {
        "tp0": (65534, False, False, False, True), "tn0": (None, True, True, True, False)}
    assert {(r.to, r.table, r.metric, r.via, r.dev, r.managed) for r in compiled.routes} >= {
        ("192.0.2.0/24", 254, 7, "198.51.100.2", "tp0", False), ("203.0.113.0/24", 100, 0, None, "tn0", False),
        ("fd00:6::/64", 254, 1024, None, "tn0", True)}


def test_the_routes_read_through_the_kernels_filter_are_pyroute2s_unicast_routes(tmp_path: Path,
                                                                                 netns: str) -> None:
    """The route dumps ask the kernel for unicast routes only, one family at a time: what comes
    back is every unicast route outside the local table not made by the kernel, as pyroute2
    reads them, with blackhole, local, broadcast and multicast routes left out."""
    from pyroute2 import NetNS

    ip(netns, "tuntap", "add", "dev", "tp0", "mode", "tap")
    ip(netns, "link", "set", "tp0", "up")
    ip(netns, "addr", "add", "198.51.100.1/24", "dev", "tp0")  # local and broadcast routes in table local
    ip(netns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    ip(netns, "link", "set", "v0", "up")
    ip(netns, "link", "set", "v1", "up")
    ip(netns, "addr", "add", "fd00:5::1/64", "dev", "v0", "nodad")  # and a multicast route in table local
    ip(netns, "route", "add", "192.0.2.0/24", "via", "198.51.100.2", "metric", "7")
    ip(netns, "route", "add", "203.0.113.0/24", "dev", "tp0", "table", "100", "proto", "147")
    ip(netns, "route", "add", "blackhole", "203.0.113.128/25")
    ip(netns, "-6", "route", "add", "fd00:6::/64", "dev", "tp0", "proto", "147")
    ip(netns, "-6", "route", "add", "fd00:7::/64", "via", "fd00:5::2", "dev", "v0")
    with KernelConnection("h", netns, tmp_path, 5.0, lambda _: None) as conn:
        ours = {(r.table, r.to, r.metric, r.via, r.dev, r.managed) for r in conn.observe().routes}
    with NetNS(netns) as nl:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in nl.get_links()}
        theirs = set()
        for r in nl.get_routes():
            table = r.get_attr("RTA_TABLE") or r["table"]
            if r["type"] != 1 or r["proto"] == 2 or table == 255:
                continue
            dst = r.get_attr("RTA_DST") or ("0.0.0.0" if r["family"] == 2 else "::")
            theirs.add((table, f"{dst}/{r['dst_len']}", r.get_attr("RTA_PRIORITY") or 0, r.get_attr("RTA_GATEWAY"),
                        names.get(r.get_attr("RTA_OIF")), r["proto"] == 147))
    assert ours == theirs
    assert {t[1] for t in ours} == {"192.0.2.0/24", "203.0.113.0/24", "fd00:6::/64", "fd00:7::/64"}
