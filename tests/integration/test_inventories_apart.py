"""Two inventories never touch each other (issue 13, Why 3): what provision keeps about a host
(its lock, its tunnels' state) is keyed by the machine (connection and target), not by the name
an inventory gives it. A second inventory with a host `gw1` in another namespace plans nothing
against the first's tunnel, and its destroy leaves it running."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner.connection.identity import Identity, state_name
from tests.integration.helpers import kernel, provision, write_inventory

pytestmark = pytest.mark.kernel

WITH_TUNNEL = """\
all:
  hosts:
    gw1:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {name: tap0, type: tap, addresses: [198.51.100.1/24]}
        tunnels:
          - {name: lab, device: tap0, listen: "198.51.100.1:40871", insecure: true}
"""

EMPTY = """\
all:
  hosts:
    gw1:
      ansible_connection: netns
      ansible_host: {ns}
"""


def test_a_second_inventory_with_the_same_host_name_leaves_the_first_alone(
        make_netns: Callable[[], str], tmp_path: Path) -> None:
    first = write_inventory(tmp_path / "first.yaml", WITH_TUNNEL, ns=make_netns())
    second = write_inventory(tmp_path / "second.yaml", EMPTY, ns=make_netns())
    provision("apply", str(first), state_dir=tmp_path, check_rc=0)
    plan = provision("plan", str(second), "--detailed-exitcode", state_dir=tmp_path, check_rc=0)
    assert "tunnel" not in plan.out
    provision("destroy", str(second), state_dir=tmp_path, check_rc=0)
    status = provision("status", str(first), "--json", state_dir=tmp_path, check_rc=0).out
    assert '"state": "stopped"' not in status and '"tunnel": "lab"' in status
    provision("plan", str(first), "--detailed-exitcode", state_dir=tmp_path, check_rc=0)
    provision("destroy", str(first), state_dir=tmp_path, check_rc=0)


ONE_MACHINE_A = """\
all:
  hosts:
    gw1:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {name: tap0, type: tap, mtu: 1400, addresses: [198.51.100.1/24]}
        routes:
          - {to: 203.0.113.0/24, dev: tap0}
        tunnels:
          - {name: lab, device: tap0, listen: "198.51.100.1:40872", insecure: true}
"""

ONE_MACHINE_B = """\
all:
  hosts:
    edge:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {name: tap1, type: tap}
"""


def test_two_inventories_on_one_machine_keep_to_their_own(netns: str, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()  # an inventory is named by its directory (ownership.default_owner)
    a = write_inventory(tmp_path / "a" / "inventory.yaml", ONE_MACHINE_A, ns=netns)
    b = write_inventory(tmp_path / "b" / "inventory.yaml", ONE_MACHINE_B, ns=netns)
    provision("apply", str(a), state_dir=tmp_path, check_rc=0)
    plan = provision("plan", str(b), state_dir=tmp_path, check_rc=0).out
    assert "tap0" not in plan and "lab" not in plan and "203.0.113.0/24" not in plan, plan
    provision("apply", str(b), state_dir=tmp_path, check_rc=0)
    provision("destroy", str(b), state_dir=tmp_path, check_rc=0)
    links = kernel(netns)["links"]
    assert "tap0" in links and "tap1" not in links
    provision("plan", str(a), "--detailed-exitcode", state_dir=tmp_path, check_rc=0)  # a's tunnel still runs

    # b names a's device: changing it is a take-over, refused unless asked, and shown in the plan
    b.write_text(b.read_text().replace("{name: tap1, type: tap}", "{name: tap0, type: tap, mtu: 1300}"))
    shown = provision("plan", str(b), state_dir=tmp_path, check_rc=0).out
    assert f"take over from {a.parent}" in shown
    refused = provision("apply", str(b), state_dir=tmp_path, check_rc=1)
    assert "refusing to change what another inventory made" in refused.out + refused.err
    assert kernel(netns)["links"]["tap0"]["mtu"] == 1400
    provision("apply", str(b), "--take-over", state_dir=tmp_path, check_rc=0)
    assert kernel(netns)["links"]["tap0"]["mtu"] == 1300
    back = provision("plan", str(a), state_dir=tmp_path, check_rc=0).out
    assert f"take over from {b.parent}" in back  # now b's: a must ask to take it back
    provision("destroy", str(a), "--take-over", state_dir=tmp_path, check_rc=0)


def test_versions_of_one_inventory_side_by_side_are_one_inventory(netns: str, tmp_path: Path) -> None:
    a = write_inventory(tmp_path / "inventory.yaml", ONE_MACHINE_A, ns=netns)
    provision("apply", str(a), state_dir=tmp_path, check_rc=0)
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(a.read_text().replace("mtu: 1400", "mtu: 1300"))
    provision("apply", str(fixed), state_dir=tmp_path, check_rc=0)  # no take-over needed
    provision("destroy", str(fixed), state_dir=tmp_path, check_rc=0)
    assert "tap0" not in kernel(netns)["links"]


@pytest.mark.parametrize("ident, name", [
    (Identity("local"), "local"),
    (Identity("netns", "gw1"), "netns-gw1"),
    (Identity("netns", "../../etc"), "netns-..%2F..%2Fetc"),
    (Identity("netns", "a%2Fb"), "netns-a%252Fb"),
    (Identity("docker", "web 1"), "docker-web%201"),
])
def test_state_names_are_safe_and_distinct(ident: Identity, name: str) -> None:
    assert state_name(ident) == name


ROUTES = """\
all:
  hosts:
    gw1:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {name: tap0, type: tap}
          - {name: tap1, type: tap}
        routes:
          - {to: 192.0.2.0/24, dev: DEV}
"""


def test_the_record_of_who_made_what_is_written_only_when_it_changes(netns: str, tmp_path: Path) -> None:
    inventory = tmp_path / "routes.yaml"
    write_inventory(inventory, ROUTES.replace("DEV", "tap0"), ns=netns)
    provision("apply", str(inventory), state_dir=tmp_path, check_rc=0)
    (record,) = (tmp_path / "owners").glob("*.json")
    first = record.stat().st_ino
    write_inventory(inventory, ROUTES.replace("DEV", "tap1"), ns=netns)  # the same route, through another device
    assert "changed=1" in provision("apply", str(inventory), state_dir=tmp_path, check_rc=0).out
    assert record.stat().st_ino == first, "rewritten with nothing new in it"
    write_inventory(inventory, ROUTES.replace("DEV", "tap1").replace("192.0.2.0", "198.51.100.0"), ns=netns)
    provision("apply", str(inventory), state_dir=tmp_path, check_rc=0)
    assert record.stat().st_ino != first and "198.51.100.0/24" in record.read_text()
