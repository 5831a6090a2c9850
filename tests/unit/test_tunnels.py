"""Tunnels in the pure core: the inventory contract, peer resolution, the plan of forwarders."""

from __future__ import annotations

import pwd
from dataclasses import replace

import pytest

from provisioner import keys
from provisioner.errors import InventoryError
from provisioner.facts import host_vars, observed_from_vars
from provisioner.model import Device, DeviceType, Network, Observed, Role, RunState, Transport, Tunnel
from provisioner.kernel.apply import Verb, steps_for
from provisioner.plan import Action, Kind, is_rekey, make_plan, plan_from_dict, plan_to_dict
from provisioner.reconcile import load

PRIVATE1, PRIVATE2 = bytes([1]) * 32, bytes([2]) * 32  # fixed keys: a test reads the same every time
PUBLIC1, PUBLIC2 = keys.public_key(PRIVATE1), keys.public_key(PRIVATE2)

PAIR = """
all:
  vars: {{ansible_connection: netns}}
  hosts:
    gw1:
      tunnel_address: 192.0.2.1
      tunnel_private_key_file: gw1.key
      tunnel_public_key: {public1}
      network:
        devices: [{{name: tap0, type: tap, vnet_hdr: true}}]
        tunnels: [{{name: core, device: tap0, peer: gw2, port: 40839{one}}}]
    gw2:
      tunnel_address: {address}
      tunnel_private_key_file: gw2.key
      tunnel_public_key: {public2}
      network:
        devices: [{{name: tap0, type: {type2}, vnet_hdr: true}}]
        tunnels: [{{name: {name2}, device: tap0, peer: {peer2}, port: {port2}{two}}}]
"""


def pair(**kw: str) -> str:
    values = {"one": "", "address": "192.0.2.2", "type2": "tap", "name2": "core", "peer2": "gw1", "port2": "40839",
              "two": "", "public1": PUBLIC1, "public2": PUBLIC2} | kw
    return PAIR.format(**values)


def put_key(path, key: bytes, mode: int = 0o600) -> None:  # type: ignore[no-untyped-def]
    """A key file as provision keygen writes one, with this key."""
    path.write_text(keys.encode(key) + "\n")
    path.chmod(mode)


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
    assert "11:52: all.hosts.gw1.network.tunnels[0].peer: tunnel core: peer gw9 is not a host of this inventory" \
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

LISTEN = "        devices: [{name: a, type: tap}]\n        tunnels: [{name: t, device: a, listen: '0.0.0.0:7'%s}]\n"
HOST_KEY = f"      tunnel_public_key: {PUBLIC1}\n"
HOST_WITH_KEY = HOST.replace("      network:\n", HOST_KEY + "      network:\n")


@pytest.mark.parametrize("host, extra, expected", [
    (HOST_WITH_KEY, "", "tunnel t: no public_key: give the other end's public key (base64), or insecure: true"),
    (HOST_WITH_KEY, ", public_key: not-a-key", "public_key: 'not-a-key' is not a public key (32 bytes in base64"),
    (HOST_WITH_KEY, f", public_key: {PUBLIC2}, insecure: true", "tunnel t: insecure: true and public_key contradict"),
    (HOST_WITH_KEY, ", psk_file: k.psk, insecure: true", "tunnel t: insecure: true and psk_file contradict"),
    (HOST, f", public_key: {PUBLIC2}", "host h: tunnel t is encrypted but the host has no tunnel_public_key"),
    (HOST_WITH_KEY, ", insecure: true, group: adm", "tunnel t: group goes with user:"),
    (HOST_WITH_KEY, ", insecure: true, user: root", "tunnel t: user: root is root; a forwarder never runs as root"),
    (HOST_WITH_KEY, ", insecure: true, user: 0", "tunnel t: user: 0 is root"),
    (HOST_WITH_KEY, ", insecure: true, user: nobody, group: root", "tunnel t: group: root is root"),
    (HOST_WITH_KEY, ", insecure: true, user: nobody, group: 0", "tunnel t: group: 0 is root"),
    (HOST_WITH_KEY.replace(PUBLIC1, PUBLIC1[:-2] + "B="), f", public_key: {PUBLIC2}",
     "tunnel_public_key: '" + PUBLIC1[:-2] + "B=' is not a public key"),
])
def test_a_tunnel_is_encrypted_unless_it_says_otherwise(write, host: str, extra: str, expected: str) -> None:
    found = problems(write, host + LISTEN % extra)
    assert any(expected in p for p in found), found


def test_a_tunnel_to_a_host_outside_the_inventory_names_its_public_key(write) -> None:
    loaded = load(write(HOST_WITH_KEY + LISTEN % f", public_key: {PUBLIC2}"))
    t = loaded.desired["h"].tunnels[0]
    assert (t.public_key, t.peer_public_key, t.private_key_file) == (PUBLIC1, PUBLIC2, keys.DEFAULT_PRIVATE_KEY_FILE)
    assert t.secure and t.psk_file is None


def test_peer_tunnels_take_the_public_keys_from_the_hosts(write, tmp_path) -> None:
    loaded = load(write(pair()))
    gw1, gw2 = loaded.desired["gw1"].tunnels[0], loaded.desired["gw2"].tunnels[0]
    assert (gw1.public_key, gw1.peer_public_key) == (PUBLIC1, PUBLIC2)
    assert (gw2.public_key, gw2.peer_public_key) == (PUBLIC2, PUBLIC1)
    assert gw1.private_key_file == str(tmp_path / "gw1.key"), "relative to the inventory"
    assert loaded.warnings == (), "no private key is read for validate"


def test_a_public_key_may_be_kept_in_a_file(write, tmp_path) -> None:
    keys.write_public(tmp_path / "gw2.pub", PUBLIC2)
    text = pair().replace(f"tunnel_public_key: {PUBLIC2}", "tunnel_public_key_file: gw2.pub")
    assert load(write(text)).desired["gw1"].tunnels[0].peer_public_key == PUBLIC2
    (tmp_path / "gw2.pub").unlink()
    assert [w.severity for w in load(write(text)).warnings] == ["warning"], "CI without the file: a warning"
    with pytest.raises(InventoryError, match="gw2.pub: No such file"):
        load(write(text), limit="gw1", act=True)  # gw1 is about to be changed and needs gw2's key
    both = text.replace("tunnel_public_key_file: gw2.pub", f"tunnel_public_key_file: gw2.pub\n      "
                                                           f"tunnel_public_key: {PUBLIC2}")
    assert any("tunnel_public_key and tunnel_public_key_file both given" in p for p in problems(write, both))


def test_the_private_key_of_a_host_about_to_be_changed_must_match_its_public_key(write, tmp_path) -> None:
    path = write(pair())
    with pytest.raises(InventoryError, match=r"gw1.key: No such file"):
        load(path, limit="gw1", act=True)
    put_key(tmp_path / "gw1.key", PRIVATE1)
    assert load(path, limit="gw1", act=True).desired["gw1"].tunnels[0].public_key == PUBLIC1
    put_key(tmp_path / "gw1.key", PRIVATE2)
    with pytest.raises(InventoryError) as info:
        load(path, limit="gw1", act=True)
    assert f"host gw1: tunnel_public_key is {PUBLIC1} but the private key in {tmp_path / 'gw1.key'} has the " \
           f"public key {PUBLIC2}; one of the two is not this host's" in str(info.value)
    assert load(path).warnings == (), "validate reads no private key: CI has none"


def test_an_insecure_tunnel_loads_with_a_warning_at_its_line(write) -> None:
    loaded = load(write(pair(one=", insecure: true", two=", insecure: true")))
    assert [(w.line, w.severity) for w in loaded.warnings] == [(11, "warning"), (18, "warning")]
    assert "tunnel core is insecure: its packets cross the network in plaintext" in str(loaded.warnings[0])
    assert not loaded.desired["gw1"].tunnels[0].secure
    assert loaded.desired["gw1"].tunnels[0].peer_public_key is None


def test_both_ends_must_agree_on_insecure(write) -> None:
    assert any("insecure: False here, True on gw2" in p for p in problems(write, pair(two=", insecure: true")))


def test_psk_files_are_read_here_and_only_their_ids_travel(write, tmp_path) -> None:
    psk_id = keys.pskgen(tmp_path / "core.psk")
    loaded = load(write(pair(one=", psk_file: core.psk", two=", psk_file: core.psk")))
    t = loaded.desired["gw2"].tunnels[0]
    assert (t.psk_file, t.psk_id) == (str(tmp_path / "core.psk"), psk_id)
    assert loaded.warnings == ()


def test_an_old_key_file_is_a_valid_psk(write, tmp_path) -> None:
    """The migration keeps the old key as the pre-shared key by renaming key_file to psk_file."""
    old = b"provision keygen wrote 32 bytes."
    put_key(tmp_path / "core.key", old)
    loaded = load(write(pair(one=", psk_file: core.key", two=", psk_file: core.key")))
    assert loaded.desired["gw1"].tunnels[0].psk_id == keys.key_id(old)


def test_both_ends_of_a_tunnel_hold_the_same_psk_or_none(write, tmp_path) -> None:
    keys.pskgen(tmp_path / "core.psk")
    keys.pskgen(tmp_path / "other.psk")
    found = problems(write, pair(one=", psk_file: core.psk", two=", psk_file: other.psk"))
    assert any("gw1 and gw2 hold different pre-shared keys" in p for p in found), found
    found = problems(write, pair(one=", psk_file: core.psk"))
    assert any("tunnel core: psk_file here but not on gw2" in p for p in found), found


def test_a_psk_others_can_read_is_an_error_everywhere(write, tmp_path) -> None:
    keys.pskgen(tmp_path / "core.psk")
    (tmp_path / "core.psk").chmod(0o640)
    found = problems(write, pair(one=", psk_file: core.psk", two=", psk_file: core.psk"))
    assert any("accessible by group or others (mode 0640)" in p for p in found), found


def test_a_missing_psk_is_an_error_only_for_hosts_about_to_be_changed(write, tmp_path) -> None:
    path = write(pair(one=", psk_file: core.psk", two=", psk_file: core.psk"))
    put_key(tmp_path / "gw1.key", PRIVATE1)
    assert [w.severity for w in load(path).warnings] == ["warning"]  # validate, plan --facts: CI has no keys
    with pytest.raises(InventoryError, match="core.psk: No such file or directory"):
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


SECURE_TUN = replace(TUN, private_key_file="/k", public_key=PUBLIC1, peer_public_key=PUBLIC2, psk_file="/p",
                     psk_id="0123456789abcdef")


@pytest.mark.parametrize("changes, reason", [
    ({"peer_public_key": PUBLIC1}, "restart: peer key changed"),
    ({"public_key": PUBLIC2, "private_key_file": "/k2"}, "restart: key changed"),
    ({"psk_id": "fedcba9876543210"}, "restart: psk changed"),
    ({"psk_file": None, "psk_id": None}, "restart: psk changed"),
    ({"peer_public_key": PUBLIC1, "endpoint": "192.0.2.9:1"}, "restart: endpoint, peer key changed"),
])
def test_a_key_change_restarts_the_forwarder(changes: dict, reason: str) -> None:
    live = replace(LIVE, tunnels=(SECURE_TUN,))
    want = replace(WANT, tunnels=(replace(SECURE_TUN, **changes),))
    assert tunnel_changes(want, live) == [("replace", "core", reason)]
    plan = make_plan("h", want, live)
    only_keys = "endpoint" not in changes
    assert is_rekey(plan.changes[0]) == only_keys, "only keys: the supervisor restarts the forwarder in place"
    verbs = [s.verb for _, steps in steps_for(plan, live) for s in steps]
    assert verbs == ([Verb.REKEY_FORWARDER] if only_keys else [Verb.STOP_FORWARDER, Verb.START_FORWARDER])


def test_what_cannot_be_read_here_is_assumed_unchanged() -> None:
    live = replace(LIVE, tunnels=(SECURE_TUN,))
    unknown = replace(WANT, tunnels=(replace(SECURE_TUN, psk_id=None, peer_public_key=None),))  # plan --facts
    assert tunnel_changes(unknown, live) == []


def test_a_plan_shows_public_keys_short_and_never_a_secret() -> None:
    from provisioner.render import change_line

    live = replace(LIVE, tunnels=(SECURE_TUN,))
    want = replace(WANT, tunnels=(replace(SECURE_TUN, peer_public_key=PUBLIC1, psk_id="fedcba9876543210"),))
    line = change_line(make_plan("h", want, live).changes[0], colour=False)
    assert f"peer_public_key: {PUBLIC2[:8]}… → {PUBLIC1[:8]}…" in line and "psk: changed" in line, line
    assert "0123456789abcdef" not in line and PUBLIC1 not in line
    created = change_line(make_plan("h", want, replace(LIVE, tunnels=())).changes[0], colour=False)
    assert f"encrypted, peer key {PUBLIC1[:8]}…, psk" in created, created


def test_facts_give_the_public_keys_and_never_a_secret() -> None:
    observed = replace(LIVE, tunnels=(SECURE_TUN,))
    vars_ = host_vars(observed, {}, ("/k", PUBLIC1))
    assert (vars_["tunnel_public_key"], vars_["tunnel_private_key_file"]) == (PUBLIC1, "/k")
    assert vars_["network"]["tunnels"] == [{"name": "core", "device": "tap0", "transport": "tcp",
                                            "connect": "192.0.2.1:40839", "public_key": PUBLIC2, "psk_file": "/p"}]
    assert observed_from_vars(vars_).tunnels == observed.tunnels


def test_facts_read_the_public_key_from_the_private_key_in_use(tmp_path) -> None:
    from provisioner.facts import host_key

    put_key(tmp_path / "h.key", PRIVATE1)
    running = Observed(tunnels=(replace(SECURE_TUN, private_key_file=str(tmp_path / "h.key")),))
    assert host_key(running) == (str(tmp_path / "h.key"), PUBLIC1)
    assert host_key(Observed(), str(tmp_path / "h.key")) == (str(tmp_path / "h.key"), PUBLIC1)
    assert host_key(Observed(), str(tmp_path / "none.key")) is None


def test_a_docker_host_is_given_its_private_key_its_psks_and_the_public_key_files_it_reads(write, tmp_path) -> None:
    """The provision run inside the container reads the inventory there: every key file it
    names for that host must come along (a peer's private key never does)."""
    from provisioner.connection.docker import INBOX, _key_files
    from provisioner.loader import load as load_inventory

    text = pair(one=", psk_file: core.psk", two=", psk_file: core.psk").replace("netns", "docker")
    text = text.replace(f"tunnel_public_key: {PUBLIC2}", "tunnel_public_key_file: gw2.pub")
    path = write(text)
    inventory, _ = load_inventory(path)
    everyone = {h.name: h for h in inventory.hosts}
    files = {inside: (outside, read.__name__) for inside, outside, read in _key_files(everyone["gw1"], path, everyone)}
    assert files == {f"{INBOX}/gw1.key": (str(tmp_path / "gw1.key"), "read_private"),
                     f"{INBOX}/core.psk": (str(tmp_path / "core.psk"), "read_psk"),
                     f"{INBOX}/gw2.pub": (str(tmp_path / "gw2.pub"), "_read_public")}


def test_two_encrypted_tunnels_between_the_same_keys_are_refused(write) -> None:
    """A handshake recorded on one would be fresh on the other (each has its own timestamps):
    WireGuard's one peer per pair of keys. Found by the attacker's review of the protocol."""
    text = pair().replace("tunnels: [{name: core, device: tap0, peer: gw2, port: 40839}]",
                          "tunnels: [{name: core, device: tap0, peer: gw2, port: 40839},"
                          " {name: more, device: tap1, peer: gw2, port: 40840}]")
    text = text.replace("devices: [{name: tap0, type: tap, vnet_hdr: true}]\n        tunnels: [{name: core",
                        "devices: [{name: tap0, type: tap, vnet_hdr: true}, {name: tap1, type: tap}]\n"
                        "        tunnels: [{name: core", 1)
    with pytest.raises(InventoryError, match="tunnel more: tunnel core already joins gw1 to this peer"):
        load(write(text))
