"""One inventory, one plan: the Ansible collection (`ansible-playbook --check --diff`) and `provision plan`
plan the same changes for every host of every inventory of the corpus.

Both plan against the same `provision facts` snapshot: each host already has what the
inventory asks, owned by provision. So the CLI's plan holds only what a snapshot cannot have
(tunnels), and a collection that merged `network` Ansible's way (replaced whole) would plan to
delete what the layers it dropped had made (Why 2 of issue 13: `tun9` and the `all` route).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from provisioner.facts import host_vars
from provisioner.model import Network, Observed
from provisioner.reconcile import load
from tests.unit.test_inventory_corpus import CASES, inventory_of

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - provision.network.apply:
        facts: "{{ snapshot }}"
      register: planned
    - ansible.builtin.copy:
        content: "{{ planned.plan | to_json }}"
        dest: "{{ out }}/{{ inventory_hostname }}.json"
      delegate_to: localhost
      check_mode: false
"""


def made(desired: Network) -> Observed:
    """The live state of a host that already has its desired devices, addresses and routes."""
    return Observed(tuple(replace(d, managed=True) for d in desired.devices), desired.addresses,
                    tuple(replace(r, managed=True) for r in desired.routes),
                    tuple((d.name, "tun") for d in desired.devices), ())


def changes(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["action"], c["kind"], c["key"]) for c in plan.get("changes", [])]


@pytest.mark.parametrize("case", [c for c in CASES if "network" in "".join(
    p.read_text() for p in c.rglob("*") if p.is_file())], ids=lambda p: p.name)
def test_the_collection_plans_what_the_cli_plans(case: Path, tmp_path: Path) -> None:
    inventory = inventory_of(case)
    loaded = load(str(inventory))
    snapshot = tmp_path / "facts.json"
    snapshot.write_text(json.dumps({"all": {"hosts": {
        h.name: host_vars(made(loaded.desired[h.name]), {}) for h in loaded.hosts}}}))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
           "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "contrib" / "ansible"),
           "ANSIBLE_HOST_KEY_CHECKING": "false", "ANSIBLE_NOCOLOR": "1"}
    cli = json.loads(subprocess.run([str(BIN / "provision"), "plan", str(inventory), "--facts", str(snapshot),
                                     "--json"], capture_output=True, text=True, env=env, check=True).stdout)
    ours = {h["host"]: changes(h["plan"]) for h in cli["hosts"]}
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    (tmp_path / "out").mkdir()
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(tmp_path / "site.yml"),
                          "--check", "--diff", "-e", "ansible_connection=local",
                          "-e", f"ansible_python_interpreter={sys.executable}",
                          "-e", f"snapshot={snapshot}", "-e", f"out={tmp_path / 'out'}"],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    theirs = {p.stem: changes(json.loads(p.read_text())) for p in (tmp_path / "out").glob("*.json")}
    assert theirs == ours
    assert all(action != "delete" for plan in ours.values() for action, _, _ in plan)
