"""Every inventory of the corpus (tests/inventories/*) reads as `ansible-inventory --list` reads it:
the same hosts, the same groups with the same members, and every variable but `network` (which
provision merges across layers, docs/inventory.md) with the same value."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from provisioner.loader import load
from provisioner.inventory import NETWORK

CORPUS = Path(__file__).resolve().parents[1] / "inventories"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())


def inventory_of(case: Path) -> Path:
    """The one entry of a case named inventory* (a file of any form, or a directory)."""
    (found,) = [p for p in case.iterdir() if p.name.startswith("inventory")]
    return found


def ansible_inventory(path: Path) -> Any:
    """`ansible-inventory --list`, once per inventory for the whole session (it takes seconds)."""
    return json.loads(_ansible_inventory(path, "--list"))


@cache
def _ansible_inventory(path: Path, option: str) -> str:
    tmp = tempfile.mkdtemp(prefix="provision-ansible-home-")  # Ansible's scratch space, removed at exit
    atexit.register(shutil.rmtree, tmp, True)
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": tmp, "ANSIBLE_HOME": tmp, "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"}
    cli = Path(sys.executable).parent / "ansible-inventory"
    return subprocess.run([str(cli), "-i", str(path), option], capture_output=True, text=True, env=env,
                          check=True).stdout


def groups_of(listing: dict[str, Any]) -> dict[str, set[str]]:
    """group -> every host in it, children included, from ansible-inventory's --list."""
    def members(name: str, seen: set[str]) -> set[str]:
        if name in seen:
            return set()
        seen.add(name)
        body = listing.get(name, {})
        out = set(body.get("hosts", []))
        for child in body.get("children", []):
            out |= members(child, seen)
        return out
    return {g: members(g, set()) for g in listing if g != "_meta"}


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_variables_groups_and_hosts_are_ansibles(case: Path, tmp_path: Path) -> None:
    path = inventory_of(case)
    inventory, problems = load(str(path))
    assert [str(p) for p in problems if p.severity == "error"] == []
    theirs = ansible_inventory(path)
    hostvars = theirs["_meta"]["hostvars"]  # hosts without variables are left out of it
    listed = groups_of(theirs)
    assert {h.name for h in inventory.hosts} == listed["all"]
    for host in inventory.hosts:
        expected = {k: v for k, v in hostvars.get(host.name, {}).items() if k != NETWORK}
        assert dict(host.vars) == expected, host.name
    ours = {g: set(m) for g, m in inventory.groups.items() if m or g in listed}
    assert ours == {g: m for g, m in listed.items() if m or g in ours}


def test_group_order_is_ansibles_for_network_too() -> None:
    """The layers merge in the order Ansible applies variables: group_vars/ over the inventory's
    group vars, host_vars/ over the host's own."""
    inventory, _ = load(str(inventory_of(CORPUS / "11-network-layers")))
    hosts = {h.name: h for h in inventory.hosts}
    gw1 = {e.value["name"]: e.value for e in hosts["gw1"].network["devices"]}
    assert gw1["tap0"]["mtu"] == 1400  # the host's inline vars beat group_vars/edge/
    gw2 = {e.value["name"]: e.value for e in hosts["gw2"].network["devices"]}
    assert gw2["tap0"]["mtu"] == 1300 and "tun9" in gw2
    assert [e.value["to"] for e in hosts["gw2"].network["routes"]] == ["203.0.113.0/24", "192.0.2.0/24"]


def provision_inventory(path: Path, *args: str) -> str:
    cli = Path(sys.executable).parent / "provision"
    return subprocess.run([str(cli), "inventory", str(path), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_inventory_graph_and_list_are_ansibles(case: Path, tmp_path: Path) -> None:
    """`provision inventory --graph` prints what `ansible-inventory --graph` prints; --list has its
    groups, and the variables with `network` merged and each entry's origin."""
    path = inventory_of(case)
    assert provision_inventory(path, "--graph") == _ansible_inventory(path, "--graph")
    listing = json.loads(provision_inventory(path, "--list"))
    assert groups_of(listing)["all"] == groups_of(ansible_inventory(path))["all"]
    for host, origins in listing["_meta"]["origins"].items():
        network = listing["_meta"]["hostvars"][host].get(NETWORK, {})
        assert {k: len(v) for k, v in origins.items()} == {k: len(v) for k, v in network.items()}
        assert all(":" in where for where_list in origins.values() for where in where_list)
