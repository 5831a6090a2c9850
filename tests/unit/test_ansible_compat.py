"""The inventory is a real Ansible inventory: Ansible's own parser reads the bundled ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = sorted((ROOT / "inventories").glob("*.yaml"))


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_ansible_inventory_parses_it(inventory: Path, tmp_path: Path) -> None:
    from provisioner.reconcile import load

    ours = load(str(inventory)).inventory
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path), "ANSIBLE_HOME": str(tmp_path)}
    cli = Path(sys.executable).parent / "ansible-inventory"
    out = subprocess.run([str(cli), "-i", str(inventory), "--list"], capture_output=True, text=True,
                         env=env, check=True).stdout
    theirs = json.loads(out)
    assert set(theirs["_meta"]["hostvars"]) == {h.name for h in ours.hosts}
    for host in ours.hosts:
        hostvars = theirs["_meta"]["hostvars"][host.name]
        assert hostvars.get("ansible_connection") == host.connection
        assert hostvars.get("ansible_host") == host.vars.get("ansible_host")
    for group, members in ours.groups.items():
        if group != "all" and group in theirs:
            listed = set(theirs[group].get("hosts", []))
            for child in theirs[group].get("children", []):
                listed |= set(theirs.get(child, {}).get("hosts", []))
            assert listed == set(members)
