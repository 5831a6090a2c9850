"""The real `provision` command against real network namespaces: the behaviour that must hold."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import OWNER_PROTOCOL, PROVISION, kernel, provision, write_inventory

INVENTORY = """\
all:
  vars:
    network:
      routes:
        - {to: 203.0.113.0/24, via: 198.51.100.2}
  children:
    edge:
      vars:
        network:
          devices:
            - {name: tun9, type: tun, mtu: 1380, addresses: [192.0.2.9/32]}
      hosts:
        gw1:
          ansible_connection: netns
          ansible_host: {ns}
          network:
            devices:
              - name: tap0
                type: tap
                mtu: 1400
                mac: "02:00:00:00:00:01"
                addresses: [198.51.100.1/24, "fd00:1::1/64"]
            routes:
              - {to: 10.20.0.0/16, via: 198.51.100.2, metric: 100}
              - {to: "fd00:20::/48", dev: tap0, table: 100}
              - {to: 10.99.0.0/16, state: absent}
"""

WANT_ROUTES = {
    (254, "10.20.0.0/16", 100, "198.51.100.2", "tap0", OWNER_PROTOCOL),
    (254, "203.0.113.0/24", 0, "198.51.100.2", "tap0", OWNER_PROTOCOL),
    (100, "fd00:20::/48", 1024, None, "tap0", OWNER_PROTOCOL),
}


@pytest.fixture
def inv(tmp_path: Path, netns: str) -> Path:
    return write_inventory(tmp_path / "inventory.yaml", INVENTORY, ns=netns)


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


def owned_routes(state: dict) -> set:
    return {r for r in state["routes"] if r[5] == OWNER_PROTOCOL}


def test_apply_converges_and_second_run_changes_nothing(inv: Path, netns: str, tmp_path: Path) -> None:
    first = provision("apply", str(inv), state_dir=tmp_path, check_rc=0)
    assert "gw1 : ok=9 changed=8 unreachable=0 failed=0 skipped=0" in first.out
    k = kernel(netns)
    assert k["links"]["tap0"] | {"up": True} == {"kind": "tun", "tun_type": 2, "alias": "provision", "mtu": 1400,
                                                 "up": True, "mac": "02:00:00:00:00:01"}
    assert k["links"]["tun9"]["tun_type"] == 1 and k["links"]["tun9"]["mtu"] == 1380
    assert {("tap0", "198.51.100.1/24"), ("tap0", "fd00:1::1/64"), ("tun9", "192.0.2.9/32")} <= k["addrs"]
    assert owned_routes(k) == WANT_ROUTES

    second = provision("apply", str(inv), state_dir=tmp_path, check_rc=0)
    assert "gw1: no changes" in second.out and "changed=0" in second.out
    provision("plan", str(inv), "--detailed-exitcode", state_dir=tmp_path, check_rc=0)
    assert kernel(netns) == k


def test_plan_detailed_exitcode_and_json(inv: Path, tmp_path: Path, netns: str) -> None:
    before = kernel(netns)
    check = provision("apply", str(inv), "--check", state_dir=tmp_path, check_rc=0).out
    assert "+ device tap0" in check and "gw1: 8 to create" in check
    assert kernel(netns) == before  # --check changes nothing
    text = provision("plan", str(inv), "--detailed-exitcode", state_dir=tmp_path, check_rc=2).out
    assert "+ device tap0" in text and "+ route 10.20.0.0/16 metric 100" in text
    doc = json.loads(provision("plan", str(inv), "--json", state_dir=tmp_path, check_rc=0).out)
    from jsonschema import Draft202012Validator

    schema = json.loads((Path(__file__).parents[2] / "schemas" / "plan.schema.json").read_text())
    Draft202012Validator(schema).validate(doc)
    assert doc["hosts"][0]["plan"]["summary"]["create"] == 8


def test_drift_is_shown_and_repaired(inv: Path, netns: str, tmp_path: Path) -> None:
    provision("apply", str(inv), state_dir=tmp_path, check_rc=0)
    converged = kernel(netns)
    ip(netns, "link", "set", "tap0", "mtu", "1300")
    ip(netns, "addr", "del", "192.0.2.9/32", "dev", "tun9")
    ip(netns, "route", "del", "10.20.0.0/16", "metric", "100")
    ip(netns, "route", "replace", "203.0.113.0/24", "via", "198.51.100.3")  # changed by hand: proto boot
    ip(netns, "link", "del", "tun9")
    plan = provision("plan", str(inv), "--detailed-exitcode", state_dir=tmp_path, check_rc=2).out
    assert "~ device tap0  (mtu: 1300 → 1400)" in plan
    assert "+ device tun9" in plan and "+ address 192.0.2.9/32 on tun9" in plan
    assert "+ route 10.20.0.0/16 metric 100" in plan
    assert "~ route 203.0.113.0/24 metric 0" in plan and "via: 198.51.100.3 → 198.51.100.2" in plan
    provision("apply", str(inv), state_dir=tmp_path, check_rc=0)
    assert kernel(netns) == converged
    provision("plan", str(inv), "--detailed-exitcode", state_dir=tmp_path, check_rc=0)


def test_removed_from_inventory_is_removed_unmanaged_is_untouched(inv: Path, netns: str, tmp_path: Path) -> None:
    ip(netns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
    ip(netns, "link", "set", "veth0", "up")
    ip(netns, "tuntap", "add", "dev", "handmade", "mode", "tap")
    ip(netns, "route", "add", "10.98.0.0/16", "dev", "veth0")
    ip(netns, "route", "add", "10.99.0.0/16", "dev", "veth0")  # named `state: absent`: removed
    before = kernel(netns)
    provision("apply", str(inv), state_dir=tmp_path, check_rc=0)
    after = kernel(netns)
    assert after["links"]["handmade"] == before["links"]["handmade"]
    assert (254, "10.98.0.0/16", 0, None, "veth0", 3) in after["routes"]
    assert not any(r[1] == "10.99.0.0/16" for r in after["routes"])

    smaller = inv.read_text().replace("              - {to: 10.20.0.0/16, via: 198.51.100.2, metric: 100}\n", "")
    smaller = smaller.replace("            - {name: tun9, type: tun, mtu: 1380, addresses: [192.0.2.9/32]}",
                              "            []")
    inv.write_text(smaller)
    out = provision("apply", str(inv), state_dir=tmp_path, check_rc=0).out
    assert "- device tun9" in out and "- route 10.20.0.0/16 metric 100" in out
    k = kernel(netns)
    assert "tun9" not in k["links"] and "handmade" in k["links"] and "veth0" in k["links"]

    provision("destroy", str(inv), state_dir=tmp_path, check_rc=0)
    k = kernel(netns)
    assert "tap0" not in k["links"] and not owned_routes(k)
    assert {"handmade", "veth0", "veth1", "lo"} == set(k["links"])
    assert (254, "10.98.0.0/16", 0, None, "veth0", 3) in k["routes"]


def test_bad_input_reports_every_problem_and_changes_nothing(tmp_path: Path, netns: str) -> None:
    bad = write_inventory(tmp_path / "bad.yaml", """\
all:
  hosts:
    gw1:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {name: tap0, type: tap, colour: blue}
          - {name: averyveryverylongname0, type: tap}
          - {name: tun1, type: tun, mac: "02:00:00:00:00:09", mtu: big}
          - {name: tap2, type: tap, addresses: [198.51.100.1/24]}
          - {name: tap3, type: tap, addresses: [198.51.100.1/24]}
        routes:
          - {to: 10.20.0.1/16, dev: tap0}
""", ns=netns)
    before = kernel(netns)
    result = provision("apply", str(bad), state_dir=tmp_path, check_rc=1)
    lines = result.err.splitlines()
    assert f"{bad}:8:37: all.hosts.gw1.network.devices[0].colour: unknown key 'colour'" in lines
    assert any(line.startswith(f"{bad}:9:") and "15" in line for line in lines)
    assert any(line.startswith(f"{bad}:10:") and ".mtu:" in line for line in lines)
    assert any(".devices[2].mac: a tun device has no MAC" in line for line in lines)
    assert any(".devices[4].addresses[0]: address 198.51.100.1 is also on device tap2" in line for line in lines)
    assert any(line.startswith(f"{bad}:14:") and "host bits set" in line for line in lines)
    assert "Traceback" not in result.err
    assert kernel(netns) == before

    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("all:\n  hosts:\n    gw1: {ansible_connection: netns\n")
    err = provision("plan", str(syntax), state_dir=tmp_path, check_rc=1).err
    assert err.startswith(f"{syntax}:4:1: YAML syntax error") and "Traceback" not in err


def test_kernel_refusal_mid_apply_rolls_back(inv: Path, netns: str, tmp_path: Path) -> None:
    provision("apply", str(inv), state_dir=tmp_path, check_rc=0)
    before = kernel(netns)
    text = inv.read_text().replace("mtu: 1400", "mtu: 1420").replace(
        "- {to: 10.20.0.0/16, via: 198.51.100.2, metric: 100}",
        "- {to: 10.20.0.0/16, via: 203.0.113.77, metric: 100}\n              - {to: 10.21.0.0/16, dev: tap0}")
    text = text.replace("- {name: tun9, type: tun, mtu: 1380,", "- {name: tun7, type: tun, mtu: 1380,")
    inv.write_text(text)
    result = provision("apply", str(inv), state_dir=tmp_path, check_rc=1)
    assert "route 10.20.0.0/16 metric 100: kernel refused: Nexthop has invalid gateway (ENETUNREACH)" in result.err
    assert "rolled back" in result.err
    assert kernel(netns) == before


IMPOSSIBLE_ROUTE = """\
all:
  hosts:
    gw1:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {name: tap5, type: tap, addresses: ["fd00:5::1/64"]}
        routes: ROUTES
"""


@pytest.mark.parametrize("device_first", [False, True], ids=["with-its-device", "route-alone"])
def test_verification_failure_rolls_back(tmp_path: Path, netns: str, device_first: bool) -> None:
    # The kernel accepts an IPv6 route with metric 0 but stores metric 1024: apply "succeeds",
    # the read-back differs, and everything this run did is undone. Verification reads back only
    # the kinds of resource the run changed: a run of the route alone reads the routes alone,
    # and must see it as well.
    inv = tmp_path / "inv.yaml"
    if device_first:
        write_inventory(inv, IMPOSSIBLE_ROUTE.replace("ROUTES", "[]"), ns=netns)
        provision("apply", str(inv), state_dir=tmp_path)
    before = kernel(netns)
    write_inventory(inv, IMPOSSIBLE_ROUTE.replace("ROUTES", '[{to: "fd00:55::/48", dev: tap5, metric: 0}]'), ns=netns)
    result = provision("apply", str(inv), state_dir=tmp_path, check_rc=1)
    assert "after apply the live state still differs" in result.err
    assert "+ route fd00:55::/48 metric 0" in result.err
    assert kernel(netns) == before


def test_concurrent_applies_take_turns(inv: Path, tmp_path: Path, netns: str) -> None:
    lock = tmp_path / "locks" / f"netns-{netns}.lock"  # the lock is the machine's (connection/identity.py)
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, b"4242", 0)
    try:
        busy = provision("apply", str(inv), "--lock-timeout", "0.5", state_dir=tmp_path, check_rc=1)
        assert "waiting for the lock held by pid 4242" in busy.out
        assert "still holds the lock" in busy.err
        # release the lock once the second run says it waits (a fixed delay raced a slow start under load)
        env = {**os.environ, "PROVISION_STATE_DIR": str(tmp_path), "NO_COLOR": "1"}
        waiting = subprocess.Popen([*PROVISION, "apply", str(inv), "--lock-timeout", "60"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env)
        assert waiting.stdout is not None
        first = waiting.stdout.readline()
        assert "waiting for the lock held by pid 4242" in first
        time.sleep(0.3)
        assert waiting.poll() is None, "it waits while the lock is held"
        os.close(fd)
        rest, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, err
        assert "changed=8" in rest
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def test_two_real_applies_at_once_do_not_interleave(inv: Path, tmp_path: Path, netns: str) -> None:
    env = {**os.environ, "PROVISION_STATE_DIR": str(tmp_path), "NO_COLOR": "1"}
    cmd = [*PROVISION, "apply", str(inv)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    changed = sorted(int(o.split("changed=")[1].split()[0]) for o, _ in outs)
    assert changed == [0, 8]  # one did the work, the other waited and found nothing to do


def test_facts_snapshot_plans_like_the_live_kernel(inv: Path, tmp_path: Path) -> None:
    provision("apply", str(inv), state_dir=tmp_path, check_rc=0)
    facts = tmp_path / "facts.json"
    facts.write_text(provision("facts", str(inv), "--json", state_dir=tmp_path, check_rc=0).out)
    provision("plan", str(inv), "--facts", str(facts), "--detailed-exitcode", state_dir=tmp_path, check_rc=0)
    changed = inv.read_text().replace("mtu: 1400", "mtu: 1500")
    inv.write_text(changed)
    live = provision("plan", str(inv), "--json", state_dir=tmp_path, check_rc=0).out
    offline = provision("plan", str(inv), "--json", "--facts", str(facts), state_dir=tmp_path, check_rc=0).out
    assert json.loads(live) == json.loads(offline)
    yaml_facts = provision("facts", str(inv), state_dir=tmp_path, check_rc=0).out
    assert "name: tap0" in yaml_facts and "provision_facts:" in yaml_facts
    starting = tmp_path / "starting.yaml"
    starting.write_text(yaml_facts)  # usable as a starting inventory: it validates, and plans clean
    provision("validate", str(starting), state_dir=tmp_path, check_rc=0)
    provision("plan", str(starting), "--detailed-exitcode", state_dir=tmp_path, check_rc=0)


def test_host_without_connection_is_skipped(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("all:\n  hosts:\n    far-away-host:\n      network:\n        devices: []\n")
    out = provision("apply", str(inv), state_dir=tmp_path, check_rc=0).out
    assert "far-away-host: skipped (no ansible_connection, and not this machine)" in out
    assert "far-away-host : ok=0 changed=0 unreachable=0 failed=0 skipped=1" in out


def test_missing_namespace_is_a_clear_error(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("all:\n  hosts:\n    ghost:\n      ansible_connection: netns\n      ansible_host: no-such-ns-pv\n")
    err = provision("plan", str(inv), state_dir=tmp_path, check_rc=1).err
    assert "no network namespace named 'no-such-ns-pv'" in err and "Traceback" not in err
    out = provision("apply", str(inv), state_dir=tmp_path, check_rc=1).out
    assert "ghost : ok=0 changed=0 unreachable=1 failed=0 skipped=0" in out  # as Ansible's recap counts it
