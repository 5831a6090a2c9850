"""kernel/_tuntap.c, which makes a batch of tun/tap devices with the GIL released, against
tuntap.create (its Python model and fallback) on real namespaces, read back by pyroute2."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Callable

import pytest
from pyroute2 import NetNS

from provisioner import tuntap
from provisioner.kernel import namespace
from provisioner.kernel._tuntap import create  # built by make setup: its absence fails here, never skips
from provisioner.kernel.creations import _wanted
from provisioner.model import Device, DeviceType

DEVICES = [
    Device("ta0", DeviceType.TAP),
    Device("tu1", DeviceType.TUN, pi=True),
    Device("ta2", DeviceType.TAP, vnet_hdr=True),
    Device("tu3", DeviceType.TUN, multi_queue=True),
    Device("ta4", DeviceType.TAP, owner=1000, group=100),
    Device("x" * 15, DeviceType.TUN),
]
TUN = ("IFLA_TUN_TYPE", "IFLA_TUN_PI", "IFLA_TUN_VNET_HDR", "IFLA_TUN_MULTI_QUEUE", "IFLA_TUN_PERSIST",
       "IFLA_TUN_OWNER", "IFLA_TUN_GROUP")


def tun_links(ns: str) -> dict[str, tuple]:
    """Every tun/tap link's index and tun data, as pyroute2 reads them."""
    out = {}
    with NetNS(ns) as ip:
        for link in ip.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            if info is None or info.get_attr("IFLA_INFO_KIND") != "tun":
                continue
            data = info.get_attr("IFLA_INFO_DATA")
            out[link.get_attr("IFLA_IFNAME")] = (link["index"], tuple(data.get_attr(k) for k in TUN))
    return out


def test_the_compiled_maker_makes_what_tuntap_create_makes(make_netns: Callable[[], str]) -> None:
    compiled, python = make_netns(), make_netns()
    with namespace.entered(compiled):
        made = create([_wanted(d) for d in DEVICES], True)
    with namespace.entered(python):
        for d in DEVICES:
            tuntap.create(d)
    ours, theirs = tun_links(compiled), tun_links(python)
    assert {name: data for name, (_, data) in ours.items()} == {name: data for name, (_, data) in theirs.items()}
    assert set(ours) == {d.name for d in DEVICES}
    assert made == [(0, ours[d.name][0]) for d in DEVICES]  # each made, with the index the kernel gave it
    assert ours["ta4"][1][-2:] == (1000, 100)


def test_names_the_kernel_cannot_take_are_refused_without_a_call(netns: str) -> None:
    bad = [(b"", 2, -1, -1), (b"y" * 16, 2, -1, -1), (b"a\0b", 2, -1, -1), (b"x%d", 2, -1, -1)]
    with namespace.entered(netns):
        made = create(bad + [(b"ok0", 2 | 0x1000, -1, -1)], False)
        assert made == [(errno.EINVAL, 0)] * 4 + [(0, tun_links(netns)["ok0"][0])]
        assert create(bad, True) == [(errno.EINVAL, 0)]  # stop: the list ends at the first failure
        for name in ("", "y" * 16, "a\0b", "x%d"):  # the model refuses the same, before any call
            with pytest.raises(OSError) as refused:
                tuntap.create(Device(name, DeviceType.TAP))
            assert refused.value.errno == errno.EINVAL
    assert set(tun_links(netns)) == {"ok0"}  # no x0 made from a template


def test_a_name_taken_fails_that_device_alone_or_ends_the_batch(netns: str) -> None:
    subprocess.run(["ip", "-n", netns, "tuntap", "add", "dev", "t1", "mode", "tun"], check=True)
    wanted = [(f"t{i}".encode(), tuntap.IFF_TAP | tuntap.IFF_NO_PI, -1, -1) for i in range(3)]
    with namespace.entered(netns):
        stopped = create(wanted, True)
        assert [e for e, _ in stopped] == [0, errno.EINVAL]  # a tap cannot take a tun's name
        subprocess.run(["ip", "-n", netns, "link", "del", "t0"], check=True)
        going_on = create(wanted, False)
        assert [e for e, _ in going_on] == [0, errno.EINVAL, 0]
    assert set(tun_links(netns)) == {"t0", "t1", "t2"}


@pytest.mark.parametrize("devices, error", [
    ([b"t0"], TypeError), ([("t0", 2, -1, -1)], TypeError), ([(b"t0", 2, -1)], TypeError),
    ([(b"t0", 1 << 16, -1, -1)], ValueError), ([(b"t0", -1, -1, -1)], ValueError), (None, TypeError),
])
def test_a_malformed_batch_raises_and_makes_nothing(netns: str, devices: object, error: type) -> None:
    with namespace.entered(netns), pytest.raises(error):
        create(devices, True)
    assert tun_links(netns) == {}
