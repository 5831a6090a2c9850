"""Tunnels in the pure core: the inventory contract, peer resolution, the plan of forwarders."""

from __future__ import annotations

import pwd
from dataclasses import replace

import pytest

from provisioner import keys
from provisioner.errors import InventoryError
from provisioner.facts import host_vars, observed_from_vars
from provisioner.model import Device, DeviceType, Network, Observed, Role, RunState, Transport, Tunnel
from provisioner.plan import REKEY, Action, Kind, make_plan, plan_from_dict, plan_to_dict
from provisioner.reconcile import load

PAIR = """
all:
  vars: {{ansible_connection: netns}}
  hosts:
    gw1:
      tunnel_address: 192.0.2.1
      network:
        devices: [{{name: tap0, type: tap, vnet_hdr: true}}]
        tunnels: [{{name: core, device: tap0, peer: gw2, port: 40839, key_file: core.key{one}}}]
    gw2:
      tunnel_address: {address}
      network:
        devices: [{{name: tap0, type: {type2}, vnet_hdr: true}}]
        tunnels: [{{name: {name2}, device: tap0, peer: {peer2}, port: {port2}, key_file: core.key{two}}}]
"""


def pair(**kw: str) -> str:
    values = {"one": "", "address": "192.0.2.2", "type2": "tap", "name2": "core", "peer2": "gw1", "port2": "40839",
              "two": ""} | kw
    return PAIR.format(**values)


def test_peer_tunnels_resolve_to_a_listener_and_a_connector(write) -> None:
    loaded = load(write(pair()))
    gw1, gw2 = loaded.desired["gw1"].tunnels[0], loaded.desired["gw2"].tunnels[0]
    assert (gw1.role, gw1.endpoint, gw1.peer) == (Role.LISTEN, "0.0.0.0:40839", "gw2"), "gw1 sorts first: it listens"
    assert (gw2.role, gw2.endpoint, gw2.peer) == (Role.CONNECT, "192.0.2.1:40839", "gw1")
    assert (gw2.device_type, gw2.vnet_hdr, gw2.transport) == (DeviceType.TAP, True, Transport.TCP)


def test_ipv6_tunnel_addresses_are_bracketed(write) -> None:
    text = pair().replace("tunnel_address: 192.0.2.1", "tunnel_address: 'fd00::1'")
    loaded = load(write(text))
    assert loaded.desired["gw1"].tunnels[0].endpoint == "[::]:40839"
    assert loaded.desired["gw2"].tunnels[0].endpoint == "[fd00::1]:40839"


def problems(write, text: str) -> list[str]:
    path = write(text)
    with pytest.raises(InventoryError) as info:
        load(path)
    return [str(d).removeprefix(path + ":") for d in info.value.diagnostics]


@pytest.mark.parametrize("kw, expected", [
    ({"peer2": "gw3"}, "tunnel core: gw2's tunnel core has peer gw3, not peer gw1"),
    ({"name2": "other"}, "tunnel core: gw2 declares no tunnel named core"),
    ({"port2": "40840"}, "tunnel core: port 40839 here, 40840 on gw2"),
    ({"two": ", transport: udp"}, "tunnel core: transport tcp here, udp on gw2"),
    ({"type2": "tun"}, "tunnel core: the devices differ (type, pi, vnet_hdr): ('tap', False, True) here, "
                       "('tun', False, True) on gw2"),
    ({"one": ", listen: '0.0.0.0:1'"}, "tunnel core: give exactly one of peer, listen or connect (found peer, listen)"),
])
def test_both_ends_of_a_peer_tunnel_must_agree(write, kw: dict[str, str], expected: str) -> None:
    assert any(expected in p for p in problems(write, pair(**kw))), problems(write, pair(**kw))


def test_a_peer_that_is_not_a_host(write) -> None:
    text = pair().replace("peer: gw2", "peer: gw9")
    assert "9:52: all.hosts.gw1.network.tunnels[0].peer: tunnel core: peer gw9 is not a host of this inventory" \
        in problems(write, text)


def test_a_netns_listener_needs_a_tunnel_address(write) -> None:
    text = pair().replace("      tunnel_address: 192.0.2.1\n", "")
    assert any("gw1 listens (its name sorts first) but is a netns host without tunnel_address" in p
               for p in problems(write, text))


HOST = "all:\n  hosts:\n    h:\n      ansible_connection: netns\n      network:\n"


@pytest.mark.parametrize("body, expected", [
    ("        tunnels: [{name: t, device: tap9, listen: '0.0.0.0:1'}]\n",
     "tunnel t: device tap9 is not a tun/tap device declared on h"),
    ("        devices: [{name: tap0, type: tap}]\n        tunnels: [{name: t, device: tap0}]\n",
     "tunnel t: give exactly one of peer, listen or connect"),
    ("        devices: [{name: tap0, type: tap}]\n        tunnels: [{name: t, device: tap0, listen: 'any:1'}]\n",
     "tunnel t: 'any' is not an IP address"),
    ("        devices: [{name: tap0, type: tap}]\n        tunnels: [{name: t, device: tap0, connect: 'gw:99999'}]\n",
     "tunnel t: 'gw:99999' is not HOST:PORT"),
    ("        devices: [{name: tap0, type: tap}]\n        tunnels: [{name: t, device: tap0, connect: 'fd00::1:5'}]\n",
     "write an IPv6 address in brackets"),
    ("        devices: [{name: tap0, type: tap}]\n"
     "        tunnels: [{name: t, device: tap0, connect: 'gw:1', port: 5}]\n",
     "tunnel t: port goes with peer:"),
    ("        devices: [{name: a, type: tap}, {name: b, type: tap}]\n        tunnels:\n"
     "          - {name: t, device: a, listen: '0.0.0.0:7'}\n          - {name: u, device: b, listen: '0.0.0.0:7'}\n",
     "tunnel u: tcp port 7 is already listened on by tunnel t"),
    ("        devices: [{name: a, type: tap}]\n        tunnels:\n"
     "          - {name: t, device: a, listen: '0.0.0.0:7'}\n          - {name: u, device: a, connect: 'x:7'}\n",
     "tunnel u: device a already carries tunnel t"),
    ("        devices: [{name: a, type: tap}]\n        tunnels:\n"
     "          - {name: t, device: a, listen: '0.0.0.0:7'}\n          - {name: t, device: a, listen: '0.0.0.0:8'}\n",
     "duplicate name 't'"),
    ("        devices: [{name: a, type: tap}]\n        tunnels: [{name: 'no spaces', device: a, connect: 'x:7'}]\n",
     "does not match"),
])
def test_a_hosts_own_tunnel_rules(write, body: str, expected: str) -> None:
    found = problems(write, HOST + body)
    assert any(expected in p for p in found), found


TUN = Tunnel("core", "tap0", Transport.TCP, Role.CONNECT, "192.0.2.1:40839", "gw1", DeviceType.TAP, vnet_hdr=True)
DEV = Device("tap0", DeviceType.TAP, vnet_hdr=True)
WANT = Network(devices=(DEV,), tunnels=(TUN,))
LIVE = Observed(devices=(DEV,), links=(("tap0", "tun"),), tunnels=(TUN,))


def tunnel_changes(desired: Network, observed: Observed, **kw: bool) -> list[tuple[str, str, str]]:
    return [(str(c.action), c.key, c.reason) for c in make_plan("h", desired, observed, **kw).changes
            if c.kind is Kind.TUNNEL]


@pytest.mark.parametrize("observed, expected", [
    (replace(LIVE, tunnels=()), [("create", "core", "start: not running")]),
    (LIVE, []),
    (replace(LIVE, tunnels=(replace(TUN, endpoint="192.0.2.9:40839"),)),
     [("replace", "core", "restart: endpoint changed")]),
    (replace(LIVE, tunnels=(replace(TUN, state=RunState.FAILED),)),
     [("replace", "core", "restart: the forwarder kept crashing (see provision status)")]),
    (replace(LIVE, tunnels=(replace(TUN, state=RunState.STOPPED),)),
     [("replace", "core", "restart: its supervisor is not running")]),
    (replace(LIVE, devices=(replace(DEV, vnet_hdr=False),)), [("replace", "core", "restart: device tap0 is replaced")]),
    (replace(LIVE, tunnels=(TUN, replace(TUN, name="old"))), [("delete", "old", "stop: no longer in the inventory")]),
])
def test_the_plan_starts_restarts_and_stops_forwarders(observed: Observed, expected: list) -> None:
    assert tunnel_changes(WANT, observed) == expected


def test_forwarders_stop_first_and_start_last() -> None:
    plan = make_plan("h", WANT, Observed(tunnels=(replace(TUN, name="old"),)))
    kinds = [(str(c.action), str(c.kind)) for c in plan.changes]
    assert kinds == [("delete", "tunnel"), ("create", "device"), ("create", "tunnel")]
    assert tunnel_changes(WANT, LIVE, destroy=True) == [("delete", "core", "destroy")]


def test_a_plan_survives_its_json_form() -> None:
    observed = replace(LIVE, tunnels=(replace(TUN, state=RunState.FAILED), replace(TUN, name="old")),
                       devices=(replace(DEV, mtu=1400),))
    plan = make_plan("h", replace(WANT, devices=(replace(DEV, mtu=1300),)), observed)
    assert {c.action for c in plan.changes} == {Action.UPDATE, Action.REPLACE, Action.DELETE}
    assert plan_from_dict(plan_to_dict(plan)) == plan


def test_facts_keep_tunnels_for_plans_against_snapshots() -> None:
    observed = replace(LIVE, tunnels=(replace(TUN, state=RunState.FAILED),))
    vars_ = host_vars(observed, {"ansible_connection": "netns"})
    assert vars_["network"]["tunnels"] == [{"name": "core", "device": "tap0", "transport": "tcp",
                                            "connect": "192.0.2.1:40839", "insecure": True}]
    assert observed_from_vars(vars_).tunnels == observed.tunnels


# ------------------------------------------------------------------ keys and least privilege

@pytest.mark.parametrize("body, expected", [
    ("        devices: [{name: a, type: tap}]\n        tunnels: [{name: t, device: a, connect: 'x:7'}]\n",
     "tunnel t: no key_file; a tunnel is encrypted and authenticated unless it says insecure: true "
     "(make a key with: provision keygen PATH)"),
    ("        devices: [{name: a, type: tap}]\n"
     "        tunnels: [{name: t, device: a, connect: 'x:7', insecure: true, key_file: k}]\n",
     "tunnel t: insecure: true and key_file contradict each other"),
    ("        devices: [{name: a, type: tap}]\n"
     "        tunnels: [{name: t, device: a, connect: 'x:7', insecure: true, group: adm}]\n",
     "tunnel t: group goes with user:"),
])
def test_a_tunnel_is_secure_unless_it_says_otherwise(write, body: str, expected: str) -> None:
    found = problems(write, HOST + body)
    assert any(expected in p for p in found), found


def test_an_insecure_tunnel_loads_with_a_warning_at_its_line(write) -> None:
    loaded = load(write(pair(one=", insecure: true", two=", insecure: true").replace(", key_file: core.key", "")))
    assert [(w.line, w.severity) for w in loaded.warnings] == [(9, "warning"), (14, "warning")]
    assert "tunnel core is insecure: its packets cross the network in plaintext" in str(loaded.warnings[0])
    assert not loaded.desired["gw1"].tunnels[0].secure


def test_both_ends_must_agree_on_insecure(write) -> None:
    text = pair(two=", insecure: true").replace("port: {port2}, key_file: core.key", "")
    text = text.replace("port: 40839, key_file: core.key, insecure: true", "port: 40839, insecure: true")
    assert any("insecure: False here, True on gw2" in p for p in problems(write, text))


def test_key_files_are_read_here_and_only_their_ids_travel(write, tmp_path) -> None:
    key_id = keys.keygen(tmp_path / "core.key")
    loaded = load(write(pair()))
    t = loaded.desired["gw2"].tunnels[0]
    assert (t.key_file, t.key_id) == (str(tmp_path / "core.key"), key_id)
    assert loaded.warnings == ()


def test_the_two_ends_of_a_tunnel_must_hold_the_same_key(write, tmp_path) -> None:
    keys.keygen(tmp_path / "core.key")
    keys.keygen(tmp_path / "other.key")
    text = pair().replace("port: 40839, key_file: core.key}]\n    gw2", "port: 40839, key_file: other.key}]\n    gw2")
    assert any("gw1 and gw2 hold different keys" in p for p in problems(write, text))


def test_a_key_file_others_can_read_is_an_error_everywhere(write, tmp_path) -> None:
    keys.keygen(tmp_path / "core.key")
    (tmp_path / "core.key").chmod(0o640)
    assert any("accessible by group or others (mode 0640)" in p for p in problems(write, pair()))


def test_a_missing_key_is_an_error_only_for_hosts_about_to_be_changed(write) -> None:
    path = write(pair())
    assert [w.severity for w in load(path).warnings] == ["warning"]  # validate, plan --facts: CI has no keys
    with pytest.raises(InventoryError, match="No such file or directory"):
        load(path, limit="gw1", act=True)


def test_the_device_of_a_tunnel_that_runs_as_a_user_is_owned_by_it(write) -> None:
    text = HOST + ("        devices: [{name: a, type: tap}]\n"
                   "        tunnels: [{name: t, device: a, connect: 'x:7', insecure: true, user: nobody}]\n")
    loaded = load(write(text), act=True)
    nobody = pwd.getpwnam("nobody").pw_uid
    assert loaded.desired["h"].devices[0].owner == nobody
    assert loaded.desired["h"].tunnels[0].user == "nobody"
    clash = text.replace("{name: a, type: tap}", "{name: a, type: tap, owner: 0}")
    assert any("runs as nobody (uid 65534) but its device a has owner: 0" in p for p in problems(write, clash))
    with pytest.raises(InventoryError, match="no user 'no-such-user' on this host"):
        load(write(text.replace("user: nobody", "user: no-such-user")), act=True)


def test_a_rotated_key_restarts_the_forwarder_and_an_unknown_one_does_not() -> None:
    live = replace(LIVE, tunnels=(replace(TUN, key_file="/k", key_id="0123456789abcdef"),))
    rotated = replace(WANT, tunnels=(replace(TUN, key_file="/k", key_id="fedcba9876543210"),))
    assert tunnel_changes(rotated, live) == [("replace", "core", REKEY)]
    unknown = replace(WANT, tunnels=(replace(TUN, key_file="/k", key_id=None),))  # plan --facts: no key here
    assert tunnel_changes(unknown, live) == []
