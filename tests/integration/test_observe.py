"""The kernel read (kernel/observe.py) through a real connection, in a fresh namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

from provisioner.connection.kernel import KernelConnection
from provisioner.plan import Kind


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


def test_a_verification_read_takes_fresh_only_what_the_change_can_have_moved(tmp_path: Path, netns: str) -> None:
    ip(netns, "tuntap", "add", "dev", "tp0", "mode", "tap")
    ip(netns, "link", "set", "tp0", "up")
    with KernelConnection("h", netns, tmp_path, 5.0, lambda _: None) as conn:
        first = conn.observe()
        assert [d.name for d in first.devices] == ["tp0"]
        ip(netns, "tuntap", "add", "dev", "tp1", "mode", "tap")
        ip(netns, "route", "add", "192.0.2.0/24", "dev", "tp0")
        routes_only = conn.observe({Kind.ROUTE})
        assert [d.name for d in routes_only.devices] == ["tp0"], "no links dump for a route change"
        assert [(r.to, r.dev) for r in routes_only.routes] == [("192.0.2.0/24", "tp0")]
        ip(netns, "addr", "add", "198.51.100.1/24", "dev", "tp0")
        addresses = conn.observe({Kind.ADDRESS})
        assert [a.cidr for a in addresses.addresses] == ["198.51.100.1/24"]
        assert [d.name for d in addresses.devices] == ["tp0"]
        everything = conn.observe({Kind.DEVICE})
        assert [d.name for d in everything.devices] == ["tp0", "tp1"]
        assert everything == conn.observe()
