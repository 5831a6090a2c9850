"""Two inventories never touch each other (issue 13, Why 3): what provision keeps about a host
(its lock, its tunnels' state) is keyed by the machine (connection and target), not by the name
an inventory gives it. A second inventory with a host `gw1` in another namespace plans nothing
against the first's tunnel, and its destroy leaves it running."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner.connection.identity import Identity, state_name
from tests.integration.helpers import provision, write_inventory

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


@pytest.mark.parametrize("ident, name", [
    (Identity("local"), "local"),
    (Identity("netns", "gw1"), "netns-gw1"),
    (Identity("netns", "../../etc"), "netns-..%2F..%2Fetc"),
    (Identity("netns", "a%2Fb"), "netns-a%252Fb"),
    (Identity("docker", "web 1"), "docker-web%201"),
])
def test_state_names_are_safe_and_distinct(ident: Identity, name: str) -> None:
    assert state_name(ident) == name
