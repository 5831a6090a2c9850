"""Tunnels between real network namespaces, through the real `provision` command.

Two namespaces joined by a veth pair stand for two hosts on a network; provision creates a
tun/tap device on each and the forwarders between them. The fixtures delete the namespaces
and kill every process in them (supervisors and forwarders included) whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from provisioner.connection.kernel import machine_key
from provisioner.tunnel import runtime
from provisioner.tunnel.drops import Drop
from provisioner.tunnel.tcp import MAX_MESSAGE

from .helpers import kernel, provision, wait_for
from .pair import INSECURE, SECURE, connected, hosts, inventory, pings, processes, status, up

__all__ = ["hosts"]  # a fixture

ROOT = Path(__file__).resolve().parents[2]

@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_tunnel_carries_packets_and_a_killed_forwarder_comes_back(tmp_path: Path, hosts: tuple[str, str],
                                                                    transport: str) -> None:
    state = tmp_path / "state"
    inv = inventory(tmp_path, hosts, transport)
    plan = provision("plan", str(inv), state_dir=state, check_rc=0).out
    assert f"+ tunnel core  ({transport} listen 0.0.0.0:40839 on tap0, peer gw2, encrypted, peer key " in plan
    assert f"+ tunnel core  ({transport} connect 192.0.2.1:40839 on tap0, peer gw1, encrypted, peer key " in plan
    assert "[start: not running]" in plan
    doc = json.loads(provision("plan", str(inv), "--json", state_dir=state, check_rc=0).out)
    Draft202012Validator(json.loads((ROOT / "schemas" / "plan.schema.json").read_text())).validate(doc)
    change = doc["hosts"][0]["plan"]["changes"][-1]
    assert (change["kind"], change["action"], change["after"]["role"]) == ("tunnel", "create", "listen")
    provision("apply", str(inv), state_dir=state, check_rc=0)
    wait_for("both ends connected", lambda: connected(inv, state), 30)
    assert pings(hosts[0], "198.51.100.2")
    assert "no changes, 3 resources in sync" in provision("plan", str(inv), state_dir=state, check_rc=0).out

    before = status(inv, state)["gw2"]
    killed = time.time()
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_for("a new forwarder", lambda: (r := status(inv, state)["gw2"])["pid"] not in (None, before["pid"])
                     and (r["started"] or 0) > killed and r, 30)
    # timed by when the new data plane began (its own `started`), not by this test's polls: each is
    # a `provision status`, a Python start that a loaded machine made longer than the restart itself
    assert after["started"] - killed < 2.0 and after["restarts"] == 1, after
    wait_for("ping across again", lambda: pings(hosts[0], "198.51.100.2", 1), 15)
    # why it restarted is in the host's log; `status` says the last error, which a handshake the
    # listener refused while it still held the killed end's connection can follow (seen in CI)
    log = (runtime.host_dir(state, machine_key(hosts[1])) / runtime.LOG).read_text()
    assert "data plane killed by signal 9" in log, log[-2000:]
    last = status(inv, state)["gw2"]
    assert "data plane killed by signal 9" in last["last_error"] or last["last_error_at"] > killed, last
    assert provision("plan", str(inv), "--detailed-exitcode", state_dir=state).rc == 0


def test_repeated_applies_run_one_forwarder_changes_restart_and_destroy_leaves_nothing(
        tmp_path: Path, hosts: tuple[str, str]) -> None:
    state = tmp_path / "state"
    inv = inventory(tmp_path, hosts)
    for _ in range(3):
        provision("apply", str(inv), state_dir=state, check_rc=0)
    for ns in hosts:
        running = processes(ns)
        assert sum("provisioner.tunnel.supervisor" in p for p in running) == 1, running
        assert sum("provisioner.tunnel.dataplane" in p for p in running) == 1, running
    old = status(inv, state)["gw1"]

    moved = inventory(tmp_path, hosts, port="40850")
    plan = provision("plan", str(moved), state_dir=state, check_rc=0).out
    assert "-/+ tunnel core  (endpoint: 0.0.0.0:40839 → 0.0.0.0:40850)  [restart: endpoint changed]" in plan
    provision("apply", str(moved), state_dir=state, check_rc=0)
    rows = wait_for("reconnected on the new port", lambda: connected(moved, state), 30)
    assert rows["gw1"]["endpoint"] == "0.0.0.0:40850" and rows["gw1"]["started"] != old["started"]
    assert rows["gw1"]["pid"] == old["pid"], "a changed tunnel is replaced within the data plane, not restarted"

    without = tmp_path / "without.yaml"
    without.write_text("".join(line for line in moved.read_text().splitlines(keepends=True)
                               if "tunnels:" not in line and "{name: core" not in line))
    out = provision("apply", str(without), state_dir=state, check_rc=0).out
    assert "gw1: - tunnel core" in out and "gw2: - tunnel core" in out
    assert not any("provisioner.tunnel" in p for ns in hosts for p in processes(ns))

    provision("apply", str(moved), state_dir=state, check_rc=0)
    out = provision("destroy", str(moved), state_dir=state, check_rc=0).out
    assert "gw1: - tunnel core" in out and "gw1: - device tap0" in out
    assert not any("provisioner.tunnel" in p for ns in hosts for p in processes(ns))
    assert list((state / "tunnels").glob("*/*")) == []


def test_a_tunnels_directory_that_is_a_link_is_refused_and_where_it_leads_is_left_alone(
        tmp_path: Path, hosts: tuple[str, str]) -> None:
    """Apply made <state>/tunnels/<host>/ with mkdir, chmod and rmtree, each through whatever link
    was there: `tunnels -> /usr` would have had root chmod /usr 0700 and delete the directories
    of /usr/<host>. Here it leads to a directory of the test's own."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "kept").mkdir(parents=True)
    elsewhere.chmod(0o755)
    (state / "tunnels").symlink_to(elsewhere)
    inv = inventory(tmp_path, hosts, "udp", security=INSECURE)
    r = provision("apply", str(inv), state_dir=state, check_rc=1)
    assert f"{state}/tunnels: is a symbolic link; refusing to follow it" in r.err, r.err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["kept"] and stat.S_IMODE(elsewhere.stat().st_mode) == 0o755
    assert not any("provisioner.tunnel" in p for ns in hosts for p in processes(ns))
    # a tunnel that could not be started fails the apply as a refused step does: what it made is undone
    assert "rolled back the" in r.err and not any("tap0" in kernel(ns)["links"] for ns in hosts), r.err


def test_a_supervisor_killed_outright_leaves_a_pid_that_is_never_signalled_as_if_it_were_still_it(
        tmp_path: Path, hosts: tuple[str, str]) -> None:
    """supervisor.json outlives a supervisor killed with SIGKILL, and its pid may since be another
    process's (this machine's pids wrap at 32 768). Apply signalled the recorded pid unchecked:
    a SIGHUP, which ends most processes, to whatever held it. Here it is a `sleep` of ours."""
    inv, state = up(tmp_path, hosts, "udp", security=INSECURE)
    records = sorted((state / "tunnels").glob("*/supervisor.json"))
    assert len(records) == 2, records
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        for record in records:
            pid = json.loads(record.read_text())["pid"]
            os.kill(pid, signal.SIGKILL)  # the supervisors are ours: this test's namespaces' only ones
            wait_for("the supervisor gone", lambda p=pid: not Path(f"/proc/{p}").exists(), 5)
            record.write_text(json.dumps({"pid": bystander.pid, "planes": [], "tunnels": {}}))
        out = provision("destroy", str(inv), state_dir=state, check_rc=0).out
        assert "gw1: - tunnel core" in out
        time.sleep(0.2)  # a signal sent is delivered at once; what it does, by then
        assert bystander.poll() is None, f"the process that took the pid ended: {bystander.returncode}"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_forwarder_that_keeps_crashing_is_failed_until_apply_repairs_it(tmp_path: Path,
                                                                           hosts: tuple[str, str]) -> None:
    state = tmp_path / "state"
    inv = inventory(tmp_path, hosts)
    provision("apply", str(inv), state_dir=state, check_rc=0)
    subprocess.run(["ip", "-n", hosts[1], "link", "del", "tap0"], check=True)  # its forwarder loses the device
    row = wait_for("failed", lambda: (r := status(inv, state)["gw2"])["state"] == "failed" and r, 30)
    assert row["restarts"] >= 5 and "device tap0 does not exist" in row["last_error"]
    text = provision("status", str(inv), state_dir=state, check_rc=0).out
    assert re.search(r"^gw2\s+core\s+failed\s", text, re.M) and "gw2/core: last error (at " in text
    plan = provision("plan", str(inv), state_dir=state, check_rc=0).out
    assert "+ device tap0" in plan
    assert "-/+ tunnel core" in plan and "state: failed → running" in plan
    provision("apply", str(inv), state_dir=state, check_rc=0)
    wait_for("connected again", lambda: connected(inv, state), 30)
    assert pings(hosts[0], "198.51.100.2")


def test_a_peer_that_vanishes_is_noticed_and_found_again(tmp_path: Path, hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts)
    subprocess.run(["ip", "-n", hosts[1], "link", "set", "u2", "down"], check=True)  # no FIN, no RST: silence
    t0 = time.time()
    row = wait_for("gw1 notices", lambda: (r := status(inv, state)["gw1"])["state"] == "connecting" and r, 30)
    assert row["since"] - t0 < 10.5, row  # when its data plane noticed, not when this test's polls saw it
    subprocess.run(["ip", "-n", hosts[1], "link", "set", "u2", "up"], check=True)
    wait_for("connected again", lambda: connected(inv, state), 30)
    assert pings(hosts[0], "198.51.100.2")
    assert status(inv, state)["gw1"]["restarts"] == 0, "reconnected inside the same forwarder"


def test_garbage_on_an_insecure_tunnel_is_counted_and_dropped(tmp_path: Path, hosts: tuple[str, str]) -> None:
    """Without a key anyone can join an insecure tunnel: what they send is still checked
    before the kernel sees it (an encrypted tunnel drops it sooner: test_secure_tunnels)."""
    inv, state = up(tmp_path, hosts, security=INSECURE)
    rows = status(inv, state)
    listener, peer = rows["gw1"], rows["gw2"]
    from provisioner.kernel import namespace

    os.kill(peer["pid"], signal.SIGSTOP)  # the real peer must not win its connection back mid-test

    bad_gso = struct.pack("<BBHHHH", 1, 3, 54, 1448, 34, 16) + bytes(100)  # UFO: not allowed
    bad_csum = struct.pack("<BBHHHH", 1, 0, 0, 0, 90, 16) + bytes(100)  # checksum beyond the packet
    with namespace.entered(hosts[1]):
        attacker = socket.create_connection(("192.0.2.1", 40839), timeout=5)
    with attacker:  # units in provision's framing: a flags byte, the virtio header, the frame
        for unit in (b"\0" + bad_gso, b"\0" + bad_csum, b"\2short-and-bad-flags"):
            attacker.sendall(struct.pack(">I", len(unit)) + unit)
        attacker.sendall(struct.pack(">I", MAX_MESSAGE + 1) + bytes(1000))
        drops = wait_for("drops counted", lambda: (d := status(inv, state)["gw1"]["drops"])
                         and sum(d.values()) >= 4 and d, 30)
    assert drops[Drop.BAD_VNET.value] == 2 and drops[Drop.BAD_INNER.value] == 1
    assert drops[Drop.BAD_FRAME.value] == 1
    assert status(inv, state)["gw1"]["pid"] == listener["pid"], "the forwarder did not crash"
    os.kill(peer["pid"], signal.SIGCONT)
    wait_for("the real peer is back", lambda: pings(hosts[0], "198.51.100.2", 1), 15)


RECEIVE = """
import hashlib, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 5999)); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256()
while d := c.recv(1 << 20):
    h.update(d)
print(h.hexdigest())
"""
SEND = """
import hashlib, os, socket, sys
c = socket.create_connection((sys.argv[1], 5999), timeout=20); h = hashlib.sha256()
for _ in range(32):
    d = os.urandom(1 << 20); h.update(d); c.sendall(d)
c.close(); print(h.hexdigest())
"""


def transfer_intact(receiver_ns: str, sender_ns: str, address: str) -> bool:
    """32 MB of random bytes over TCP through the tunnel arrive bit for bit."""
    rx = subprocess.Popen(["ip", "netns", "exec", receiver_ns, "python3", "-c", RECEIVE], stdout=subprocess.PIPE,
                          text=True)
    try:
        assert rx.stdout is not None and rx.stdout.readline().strip() == "ready"
        tx = subprocess.run(["ip", "netns", "exec", sender_ns, "python3", "-c", SEND, address], capture_output=True,
                            text=True, timeout=60)
        got = rx.communicate(timeout=60)[0].strip()
        return tx.returncode == 0 and got == tx.stdout.strip()
    finally:
        rx.kill()


@pytest.mark.parametrize(("flags", "transport", "security"), [
    ("type: tun, pi: true, multi_queue: true", "udp", SECURE),  # vnet_hdr by default, behind pi
    ("type: tun, pi: true, vnet_hdr: false", "udp", SECURE),
    ("type: tun, vnet_hdr: true", "tcp", SECURE + ", compress: true"),
    ("type: tun, vnet_hdr: true", "udp", INSECURE),
    ("type: tap, pi: true", "tcp", INSECURE),
    ("type: tap, vnet_hdr: false", "tcp", INSECURE),
])
def test_devices_with_other_flags_carry_packets_intact(tmp_path: Path, hosts: tuple[str, str], flags: str,
                                                       transport: str, security: str) -> None:
    """The forwarder opens the device with the flags it was made with (tun or tap, pi,
    vnet_hdr, multi_queue), and a bulk TCP flow through it, segmented and coalesced where
    there are offloads, arrives unchanged."""
    state = tmp_path / "state"
    inv = inventory(tmp_path, hosts, transport, security=security)
    inv.write_text(inv.read_text().replace("name: tap0, type: tap, vnet_hdr: true", f"name: dev0, {flags}")
                   .replace("device: tap0", "device: dev0"))
    provision("apply", str(inv), state_dir=state, check_rc=0)
    wait_for("both ends connected", lambda: connected(inv, state), 30)
    assert pings(hosts[0], "198.51.100.2")
    assert transfer_intact(hosts[1], hosts[0], "198.51.100.2")
    rows = status(inv, state)
    assert all(r["restarts"] == 0 for r in rows.values()), rows
    assert not any(reason for r in rows.values() for reason in r["drops"] if reason != Drop.NO_SESSION.value), rows
