"""Fast by default: a device a tunnel names gets vnet_hdr and a carrier-sized MTU unless the
inventory says otherwise, and the plan says which values are provision's choice."""

from __future__ import annotations

import json

import pytest

from provisioner.errors import InventoryError
from provisioner.model import Default, Device, DeviceType, Network, Observed
from provisioner.plan import Action, make_plan, plan_from_dict, plan_to_dict
from provisioner.reconcile import load
from provisioner.render import change_line

HOST = """\
all:
  hosts:
    h:
      ansible_connection: netns
      network:
        devices: [{{name: d0, {device}}}]
{tunnels}"""


def tunnel(transport: str) -> str:
    return f"        tunnels: [{{name: t, device: d0, connect: '192.0.2.2:7', transport: {transport}, insecure: true}}]\n"


def device_of(write, device: str, transport: str | None) -> Device:  # type: ignore[no-untyped-def]
    loaded = load(write(HOST.format(device=device, tunnels=tunnel(transport) if transport else "")))
    network = loaded.desired["h"]
    if network.tunnels:
        assert network.tunnels[0].vnet_hdr == network.devices[0].vnet_hdr, "the forwarder opens it as it is made"
    return network.devices[0]


V, U, UT, T = Default.TUNNEL_VNET_HDR, Default.UDP_MTU, Default.UDP_TAP_MTU, Default.TCP_MTU


@pytest.mark.parametrize("device, transport, vnet_hdr, mtu, defaults", [
    ("type: tun", "udp", True, 1420, {"vnet_hdr": V, "mtu": U}),
    ("type: tap", "udp", True, 1395, {"vnet_hdr": V, "mtu": UT}),
    ("type: tun", "tcp", True, 1500, {"vnet_hdr": V, "mtu": T}),
    ("type: tap", "tcp", True, 1500, {"vnet_hdr": V, "mtu": T}),
    ("type: tun, vnet_hdr: false", "udp", False, 1420, {"mtu": U}),
    ("type: tun, vnet_hdr: false, mtu: 1500", "udp", False, 1500, {}),
    ("type: tun, vnet_hdr: true", "tcp", True, 1500, {"mtu": T}),
    ("type: tap, mtu: 9000", "tcp", True, 9000, {"vnet_hdr": V}),
    ("type: tun, mtu: 1280", "udp", True, 1280, {"vnet_hdr": V}),
    ("type: tun", None, False, None, {}),  # no tunnel reads it: the kernel's defaults, as before
    ("type: tap, vnet_hdr: true", None, True, None, {}),
])
def test_a_tunnels_device_is_fast_unless_the_inventory_says_otherwise(
        write, device: str, transport: str | None, vnet_hdr: bool, mtu: int | None,  # type: ignore[no-untyped-def]
        defaults: dict[str, Default]) -> None:
    d = device_of(write, device, transport)
    assert (d.vnet_hdr, d.mtu, dict(d.defaults)) == (vnet_hdr, mtu, defaults)


PAIR = """\
all:
  vars: {{ansible_connection: netns}}
  hosts:
    gw1:
      tunnel_address: 192.0.2.1
      network:
        devices: [{{name: d0, type: tun{one}}}]
        tunnels: [{{name: core, device: d0, peer: gw2, port: 7, insecure: true}}]
    gw2:
      tunnel_address: 192.0.2.2
      network:
        devices: [{{name: d0, type: tun{two}}}]
        tunnels: [{{name: core, device: d0, peer: gw1, port: 7, insecure: true}}]
"""


@pytest.mark.parametrize("one, two, differ", [
    ("", "", False),
    ("", ", vnet_hdr: true", False),  # the default, said out loud, is the same device
    (", vnet_hdr: false", ", vnet_hdr: false", False),
    ("", ", vnet_hdr: false", True),  # offloaded super-packets from gw1 that gw2 cannot take
])
def test_both_ends_compare_their_devices_as_the_defaults_make_them(write, one: str, two: str,  # type: ignore[no-untyped-def]
                                                                   differ: bool) -> None:
    text = PAIR.format(one=one, two=two)
    if not differ:
        load(write(text))
        return
    with pytest.raises(InventoryError) as info:
        load(write(text))
    assert "the devices differ (type, pi, vnet_hdr): ('tun', False, True) here, ('tun', False, False) on gw2" \
        in str(info.value)


DEFAULTED = Device("d0", DeviceType.TUN, mtu=1420, vnet_hdr=True,
                   defaults=(("mtu", Default.UDP_MTU), ("vnet_hdr", Default.TUNNEL_VNET_HDR)))


def test_the_plan_says_which_values_are_defaults() -> None:
    plan = make_plan("h", Network(devices=(DEFAULTED,)), Observed())
    assert change_line(plan.changes[0], colour=False) == \
        "+ device d0  (tun, up, mtu 1420 (default for a UDP tunnel), vnet_hdr (default for a tunnel's device))"
    written = Device("d0", DeviceType.TUN, mtu=1420, vnet_hdr=True)
    assert "default" not in change_line(make_plan("h", Network(devices=(written,)), Observed()).changes[0], False)


def test_the_json_plan_carries_the_defaults_and_reads_back() -> None:
    plan = make_plan("h", Network(devices=(DEFAULTED,)), Observed())
    doc = json.loads(json.dumps(plan_to_dict(plan)))
    assert doc["changes"][0]["after"]["defaults"] == {"mtu": "default for a UDP tunnel",
                                                      "vnet_hdr": "default for a tunnel's device"}
    back = plan_from_dict(doc)
    assert back.changes[0].after.defaults == DEFAULTED.defaults  # type: ignore[union-attr]
    assert plan_to_dict(back) == plan_to_dict(plan)


def test_a_device_that_has_the_defaulted_values_is_in_sync() -> None:
    """The kernel holds the value, not where it came from: what apply made, plan finds in sync."""
    live = Device("d0", DeviceType.TUN, mtu=1420, vnet_hdr=True)
    assert make_plan("h", Network(devices=(DEFAULTED,)), Observed(devices=(live,), links=(("d0", "tun"),))).empty


def test_a_device_made_before_the_defaults_is_replaced_and_the_plan_says_why() -> None:
    """A tunnel's device made without vnet_hdr (before this default, or by hand) is made anew:
    the kernel fixes the flag when it creates the device."""
    live = Device("d0", DeviceType.TUN, mtu=1500)
    change = make_plan("h", Network(devices=(DEFAULTED,)), Observed(devices=(live,), links=(("d0", "tun"),))).changes[0]
    assert (change.action, change.reason) == (Action.REPLACE, "vnet_hdr cannot change in place")
    assert change_line(change, colour=False) == ("-/+ device d0  (mtu: 1500 → 1420 (default for a UDP tunnel); "
                                                 "vnet_hdr: False → True (default for a tunnel's device))")
