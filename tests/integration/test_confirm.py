"""Confirm or revert (issue 13, Why 5): changes that can cut a host off are refused unless
--force or --confirm-timeout; with --confirm-timeout, no `provision confirm` in time rolls them
back. One test really cuts the access (the route back to the session's address) and checks
that the revert gives it back."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import PROVISION, kernel, provision, wait_for, write_inventory

pytestmark = pytest.mark.kernel

DEFAULT_ROUTE = """\
all:
  hosts:
    gw1:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {name: tap0, type: tap, addresses: [198.51.100.1/24]}
        routes:
          - {to: default, dev: tap0}
"""


def test_a_default_route_change_is_refused_without_force(tmp_path: Path, netns: str) -> None:
    inv = write_inventory(tmp_path / "inv.yaml", DEFAULT_ROUTE, ns=netns)
    plan = provision("plan", str(inv), state_dir=tmp_path, check_rc=0)
    assert "! can cut the host off: the default route" in plan.out
    refused = provision("apply", str(inv), state_dir=tmp_path, check_rc=1)
    assert "refusing changes that can cut this host off" in refused.out + refused.err
    assert "tap0" not in kernel(netns)["links"]
    provision("apply", str(inv), "--force", state_dir=tmp_path, check_rc=0)
    assert any(r[1] == "default" for r in kernel(netns)["routes"])


def test_a_confirmed_apply_keeps_its_changes(tmp_path: Path, netns: str) -> None:
    inv = write_inventory(tmp_path / "inv.yaml", DEFAULT_ROUTE, ns=netns)
    env = {**os.environ, "PROVISION_STATE_DIR": str(tmp_path), "NO_COLOR": "1"}
    run = subprocess.Popen([*PROVISION, "apply", str(inv), "--confirm-timeout", "30"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the apply to wait for a confirmation", lambda: list((tmp_path / "confirm").glob("*.pending")),
                 timeout=20)
        confirmed = provision("confirm", state_dir=tmp_path, check_rc=0)
        assert "gw1: confirmed" in confirmed.out
        out, err = run.communicate(timeout=20)
    finally:
        run.kill()
    assert run.returncode == 0, out + err
    assert "tap0" in kernel(netns)["links"]
    provision("confirm", state_dir=tmp_path, check_rc=1)  # nothing waits any more


CUTS_ACCESS = """\
all:
  hosts:
    h:
      ansible_connection: local
      network:
        devices:
          - {name: tap0, type: tap, addresses: [203.0.113.1/24]}
        routes:
          - {to: 192.0.2.1/32, dev: tap0}   # the replies to the session's address go nowhere
"""


def ping(ns: str, address: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", address],
                          capture_output=True).returncode == 0


def test_a_change_that_cuts_the_access_is_rolled_back(make_netns: Callable[[], str], tmp_path: Path) -> None:
    controller, host = make_netns(), make_netns()
    subprocess.run(["ip", "link", "add", "c0", "netns", controller, "type", "veth", "peer", "name", "h0",
                    "netns", host], check=True)
    for ns, dev, address in ((controller, "c0", "192.0.2.1/24"), (host, "h0", "192.0.2.2/24")):
        subprocess.run(["ip", "-n", ns, "addr", "add", address, "dev", dev], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
    wait_for("the link", lambda: ping(controller, "192.0.2.2"), timeout=10)
    inv = write_inventory(tmp_path / "inv.yaml", CUTS_ACCESS)
    # provision runs on the host itself, reached (so it is told) over SSH from the controller's address
    env = {**os.environ, "PROVISION_STATE_DIR": str(tmp_path), "NO_COLOR": "1",
           "SSH_CONNECTION": "192.0.2.1 50000 192.0.2.2 22"}
    command = ["ip", "netns", "exec", host, *PROVISION, "apply", str(inv)]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "the route to this session's address 192.0.2.1" in refused.stdout + refused.stderr
    run = subprocess.Popen([*command, "--confirm-timeout", "10"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the apply to wait for a confirmation", lambda: list((tmp_path / "confirm").glob("*.pending")),
                 timeout=20)
        assert not ping(controller, "192.0.2.2")  # the access is really cut (checked well within the 10 s)
        started = time.monotonic()
        out, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 1, out + err
    assert "not confirmed within 10 s: rolled back" in out + err
    assert time.monotonic() - started < 20
    assert ping(controller, "192.0.2.2")  # and given back
    assert "tap0" not in kernel(host)["links"]


def test_a_confirmation_that_cannot_be_waited_for_is_refused_before_any_change(tmp_path: Path, netns: str) -> None:
    """Its notes' directory is checked when the apply is bound to wait: refused, it was found
    only after the risky changes were made, and they were kept unconfirmed."""
    inv = write_inventory(tmp_path / "inv.yaml", DEFAULT_ROUTE, ns=netns)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (tmp_path / "elsewhere").mkdir()
    (state / "confirm").symlink_to(tmp_path / "elsewhere")
    r = provision("apply", str(inv), "--confirm-timeout", "5", state_dir=state, check_rc=1)
    assert f"{state}/confirm: is a symbolic link; refusing to follow it" in r.err, r.err
    assert "tap0" not in kernel(netns)["links"] and list((tmp_path / "elsewhere").iterdir()) == []


def test_a_confirmation_that_fails_while_it_waits_rolls_the_changes_back(tmp_path: Path, netns: str) -> None:
    """An error of the wait itself (here the answer's name is a directory, which unlink refuses)
    escaped the rollback: the risky changes were kept, unconfirmed."""
    inv = write_inventory(tmp_path / "inv.yaml", DEFAULT_ROUTE, ns=netns)
    state = tmp_path / "state"
    (state / "confirm" / f"netns-{netns}.confirmed").mkdir(parents=True)
    state.chmod(0o700)
    (state / "confirm").chmod(0o700)
    r = provision("apply", str(inv), "--confirm-timeout", "5", state_dir=state, check_rc=1)
    assert "cannot wait for a confirmation" in r.err and "rolled back" in r.err, r.err
    assert "tap0" not in kernel(netns)["links"]
