"""The small things Ansible and Terraform users expect (issue 13, Why 6)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .helpers import PROVISION, provision, write_inventory

pytestmark = pytest.mark.kernel

INVENTORY = """\
all:
  hosts:
    gw1:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {name: tap0, type: tap}
"""


@pytest.fixture
def inv(tmp_path: Path, netns: str) -> Path:
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "gw1.yml").write_text("note: from host_vars\n")
    return write_inventory(tmp_path / "inventory.yaml", INVENTORY, ns=netns)


def test_apply_check_takes_detailed_exitcode(inv: Path, tmp_path: Path) -> None:
    provision("apply", str(inv), "--check", "--detailed-exitcode", state_dir=tmp_path, check_rc=2)
    provision("apply", str(inv), state_dir=tmp_path, check_rc=0)
    provision("apply", str(inv), "--check", "--detailed-exitcode", state_dir=tmp_path, check_rc=0)


def run(*args: str, env: dict[str, str] | None = None, state_dir: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    environ.update(PROVISION_STATE_DIR=str(state_dir), **(env or {}))
    return subprocess.run([*PROVISION, *args], capture_output=True, text=True, env=environ, timeout=60)


def test_colour_when_asked_even_when_piped(inv: Path, tmp_path: Path) -> None:
    assert "\033[" not in run("plan", str(inv), state_dir=tmp_path).stdout  # a pipe: plain
    assert "\033[32m+ device tap0" in run("--color", "always", "plan", str(inv), state_dir=tmp_path).stdout
    assert "\033[32m" in run("plan", str(inv), env={"FORCE_COLOR": "1"}, state_dir=tmp_path).stdout
    both = {"FORCE_COLOR": "1", "NO_COLOR": "1"}
    assert "\033[" not in run("plan", str(inv), env=both, state_dir=tmp_path).stdout
    assert "\033[" not in run("--color", "never", "plan", str(inv), env={"FORCE_COLOR": "1"},
                              state_dir=tmp_path).stdout


def test_verbose_names_the_files_read(inv: Path, tmp_path: Path) -> None:
    err = run("-v", "plan", str(inv), state_dir=tmp_path).stderr
    assert f"read {inv}" in err and "read " + str(tmp_path / "host_vars" / "gw1.yml") in err


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts(shell: str, tmp_path: Path) -> None:
    script = run("completion", shell, state_dir=tmp_path)
    assert script.returncode == 0 and "inventory" in script.stdout and "confirm" in script.stdout
    if shell == "bash":
        checked = subprocess.run(["bash", "-n"], input=script.stdout, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
