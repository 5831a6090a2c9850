"""What CI reads: `plan --format markdown` against a directory of facts snapshots, without
root or a kernel (the command runs in-process on snapshot files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.facts import host_vars
from provisioner.model import Address, Device, DeviceType, Observed
from provisioner.plan import Action, Change, Kind, Plan
from provisioner.reconcile import Outcome, Status
from provisioner.render import plan_markdown

INVENTORY = """all:
  hosts:
    gw1:
      network:
        devices:
          - {name: tap0, type: tap, mtu: 1400, addresses: [192.0.2.1/24]}
    gw2:
      network:
        devices:
          - {name: tap0, type: tap}
    gw3:
      network: {}
"""


def snapshot(directory: Path, host: str, mtu: int) -> None:
    observed = Observed(devices=(Device("tap0", DeviceType.TAP, mtu=mtu),), addresses=(Address("tap0", "192.0.2.1/24"),),
                        links=(("lo", ""), ("tap0", "tun")))
    doc = {"all": {"hosts": {host: host_vars(observed, {})}}}
    (directory / f"{host}.json").write_text(json.dumps(doc))


def test_markdown_plan_of_a_directory_of_snapshots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    facts = tmp_path / "facts"
    facts.mkdir()
    snapshot(facts, "gw1", 1400)  # in sync
    snapshot(facts, "gw2", 1500)  # its address is not in the inventory: to delete
    code = main(["plan", str(tmp_path / "inventory.yaml"), "--facts", str(facts), "--format", "markdown",
                 "--detailed-exitcode"])
    out = capsys.readouterr().out
    assert code == 2
    assert out.startswith("### provision plan: 1 host with changes, 1 without, 1 skipped\n")
    assert "#### `gw1`: no changes (2 in sync)" in out
    assert "| `-` | address `192.0.2.1/24 on tap0` | [not in the inventory" in out
    assert f"#### `gw3`: skipped (no facts snapshot in {facts})" in out
    # a single file, not a directory: a host without a snapshot is an error, not a skip
    code = main(["plan", str(tmp_path / "inventory.yaml"), "--facts", str(facts / "gw1.json"), "--limit", "gw1,gw3"])
    assert code == 1 and "gw3: FAILED: no facts for this host" in capsys.readouterr().err


def test_markdown_cells_cannot_break_the_table_and_failures_are_shown() -> None:
    change = Change(Action.CREATE, Kind.ROUTE, "10.0.0.0/8 | evil\nrow", None, None, "not present")
    outcomes = [Outcome("a", Status.OK, Plan("a", (change,), "d", 0)),
                Outcome("b", Status.FAILED, error="b: kernel refused: No such device (ENODEV)")]
    text = plan_markdown(outcomes)
    assert "### provision plan: 1 host with changes, 0 without, **1 failed**" in text
    assert "route `10.0.0.0/8 \\| evil row`" in text
    assert "#### ❌ `b`: failed\n\n```\nb: kernel refused: No such device (ENODEV)\n```" in text
