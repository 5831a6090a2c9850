"""Saved plans (issue 13, Why 4): `plan --out FILE` then `apply FILE` applies exactly what was
reviewed, and refuses, exit 1 and nothing changed, when the live state or the inventory moved."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .helpers import kernel, provision, write_inventory

pytestmark = pytest.mark.kernel

INVENTORY = """\
all:
  vars:
    network:
      routes:
        - {to: 203.0.113.0/24, dev: tap0}
  hosts:
    gw1:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {name: tap0, type: tap, mtu: 1400, addresses: [198.51.100.1/24]}
"""


@pytest.fixture
def inv(tmp_path: Path, netns: str) -> Path:
    return write_inventory(tmp_path / "inventory.yaml", INVENTORY, ns=netns)


def test_apply_applies_the_saved_plan(inv: Path, tmp_path: Path, netns: str) -> None:
    saved = tmp_path / "plan.json"
    planned = provision("plan", str(inv), "--out", str(saved), state_dir=tmp_path, check_rc=0)
    assert "apply exactly it with: provision apply" in planned.out
    assert "tap0" not in kernel(netns)["links"]  # planning changed nothing
    applied = provision("apply", str(saved), state_dir=tmp_path, check_rc=0)
    assert "+ device tap0" in applied.out
    assert kernel(netns)["links"]["tap0"]["mtu"] == 1400
    provision("plan", str(inv), "--detailed-exitcode", state_dir=tmp_path, check_rc=0)
    again = provision("apply", str(saved), state_dir=tmp_path, check_rc=1)  # the state it was made on is gone
    assert "live state of gw1 has changed" in again.err


def test_a_changed_live_state_is_refused(inv: Path, tmp_path: Path, netns: str) -> None:
    saved = tmp_path / "plan.json"
    provision("plan", str(inv), "--out", str(saved), state_dir=tmp_path, check_rc=0)
    subprocess.run(["ip", "-n", netns, "tuntap", "add", "tap9", "mode", "tap"], check=True)
    refused = provision("apply", str(saved), state_dir=tmp_path, check_rc=1)
    assert "the live state of gw1 has changed since this plan was made" in refused.err
    assert "nothing was applied" in refused.err
    assert "tap0" not in kernel(netns)["links"]


@pytest.mark.parametrize("edit", ["inventory", "group_vars"])
def test_a_changed_inventory_is_refused(inv: Path, tmp_path: Path, netns: str, edit: str) -> None:
    saved = tmp_path / "plan.json"
    provision("plan", str(inv), "--out", str(saved), state_dir=tmp_path, check_rc=0)
    if edit == "inventory":
        inv.write_text(inv.read_text().replace("mtu: 1400", "mtu: 1300"))
    else:  # a vars file beside it is part of the inventory too
        (tmp_path / "group_vars").mkdir()
        (tmp_path / "group_vars" / "all.yml").write_text("comment: added after the plan\n")
    refused = provision("apply", str(saved), state_dir=tmp_path, check_rc=1)
    assert "has changed since this plan was made" in refused.err
    assert "tap0" not in kernel(netns)["links"]


def test_a_saved_destroy_plan(inv: Path, tmp_path: Path, netns: str) -> None:
    provision("apply", str(inv), state_dir=tmp_path, check_rc=0)
    saved = tmp_path / "destroy.json"
    provision("plan", str(inv), "--destroy", "--out", str(saved), state_dir=tmp_path, check_rc=0)
    provision("apply", str(saved), state_dir=tmp_path, check_rc=0)
    assert "tap0" not in kernel(netns)["links"]


def test_a_file_that_is_not_a_plan(tmp_path: Path) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text('{"kind": "provision-saved-plan", "format_version": 1, "hosts": 5}')
    refused = provision("apply", str(bad), state_dir=tmp_path, check_rc=1)
    assert "not a usable saved plan" in refused.err and "Traceback" not in refused.err
