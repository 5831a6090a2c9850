"""The Ansible collection, for real: ansible-core on this machine (the controller) runs
examples/ansible/site.yml over its built-in ssh connection, with a key made for the test, to
three containers running sshd, each with provision installed. A first run changes every host,
a second is all ok, `--check --diff` shows the plan and changes nothing, and a host that fails
does not stop the others."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.docker.archive import put
from tests.integration.helpers import PROVISION
from tests.integration.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK_DIR = ROOT / "examples" / "ansible"
NAMES = ["pv-ans1", "pv-ans2", "pv-ans3"]


def inventory(ips: dict[str, str], private_key: Path, mtu: int = 1500, broken: bool = False) -> dict:
    """pv-ans1 has its tunnel public key inline, pv-ans2 in a file beside the inventory (which the
    action reads on the controller); their private keys are in the targets' key_dir."""
    def host(name: str, n: int) -> dict:
        h = {"ansible_host": ips[name], "tunnel_address": ips[name],
             "network": {"devices": [{"name": "tap0", "type": "tap", "mtu": mtu if n == 1 else 1500,
                                      "addresses": [f"198.51.100.{n}/24"]}]}}
        if n in (1, 2):
            h["tunnel_private_key_file"] = f"keys/{name}.key"
            if n == 1:
                h["tunnel_public_key"] = (private_key.parent / f"{name}.pub").read_text().strip()
            else:
                h["tunnel_public_key_file"] = f"{name}.pub"
            h["network"]["tunnels"] = [{"name": "core", "device": "tap0", "peer": NAMES[2 - n], "port": 40900}]
        else:
            via = "203.0.113.99" if broken else "198.51.100.254"  # 203.0.113.99: no route to it
            h["network"]["routes"] = [{"to": "192.0.2.0/24", "via": via}]
        return h

    return {"all": {
        "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(private_key),
                 "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                 "ansible_python_interpreter": "/usr/bin/python3"},
        "children": {"edge": {"hosts": {name: host(name, i + 1) for i, name in enumerate(NAMES)}}}}}


def recap(out: str) -> dict[str, dict[str, int]]:
    rows = {}
    for name, counts in re.findall(r"^(pv-ans\d)\s*:\s*(.*)$", out, re.M):
        rows[name] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    assert set(rows) == set(NAMES), out
    return rows


@pytest.fixture
def fleet(containers, tmp_path: Path):  # type: ignore[no-untyped-def]
    made = containers(NAMES)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    ips = {}
    for name, c in made.items():
        subprocess.run([*PROVISION, "keygen", str(tmp_path / f"{name}.key"), "--public-file",
                        str(tmp_path / f"{name}.pub")], check=True, capture_output=True)
        put(c, {"/root/.ssh/authorized_keys": (tmp_path / "id.pub").read_bytes(),
                f"/etc/provision/keys/{name}.key": (tmp_path / f"{name}.key").read_bytes()},
            mode=0o600, dirs=["/root/.ssh", "/etc/provision", "/etc/provision/keys"], dir_mode=0o700)
        code, out = c.exec_run(["sh", "-c", "ssh-keygen -A >/dev/null && mkdir -p /run/sshd && /usr/sbin/sshd"])
        assert code == 0, out
        c.reload()
        ips[name] = next(iter(c.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    return made, ips, tmp_path / "id"


def playbook(tmp_path: Path, inv: dict, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "inventory.yaml"
    with open(path, "w") as f:
        YAML().dump(inv, f)
    bin_dir = Path(PROVISION[0]).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOK_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}  # the action merges the network with provision, here
    return subprocess.run([str(bin_dir / "ansible-playbook"), "-i", str(path), "site.yml", *args],
                          cwd=PLAYBOOK_DIR, capture_output=True, text=True, env=env, timeout=300)


def sh(container, command: str) -> str:  # type: ignore[no-untyped-def]
    return container.exec_run(["sh", "-c", command])[1].decode()


def test_a_fleet_over_ssh_with_the_collection(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    made, ips, key = fleet
    c1, c2, c3 = (made[n] for n in NAMES)

    first = playbook(tmp_path, inventory(ips, key))
    assert first.returncode == 0, first.stdout + first.stderr
    assert all(r["changed"] == 1 and r["failed"] == 0 for r in recap(first.stdout).values()), first.stdout
    assert "198.51.100.3/24" in sh(c3, "ip -br addr show tap0")
    assert "192.0.2.0/24 via 198.51.100.254" in sh(c3, "ip route")
    wait_for("a ping through the tunnel the peers' variables made", lambda: c1.exec_run(
        ["ping", "-c", "1", "-W", "1", "198.51.100.2"])[0] == 0, 15, lambda: sh(c1, "provision status"))

    second = playbook(tmp_path, inventory(ips, key))
    assert second.returncode == 0, second.stdout
    assert all(r["changed"] == 0 and r["ok"] == 1 for r in recap(second.stdout).values()), second.stdout

    check = playbook(tmp_path, inventory(ips, key, mtu=1400), "--check", "--diff")
    assert check.returncode == 0, check.stdout
    rows = recap(check.stdout)
    assert rows["pv-ans1"]["changed"] == 1 and rows["pv-ans2"]["changed"] == 0, check.stdout
    assert "~ device tap0  [mtu]" in check.stdout and "1 to update" in check.stdout, check.stdout
    assert "mtu 1500" in sh(c1, "ip link show tap0")  # check mode changed nothing

    broken = playbook(tmp_path, inventory(ips, key, mtu=1400, broken=True), "--diff")
    assert broken.returncode == 2, broken.stdout  # a host failed
    rows = recap(broken.stdout)
    assert rows["pv-ans3"]["failed"] == 1 and "kernel refused" in broken.stdout, broken.stdout
    assert rows["pv-ans1"]["changed"] == 1 and rows["pv-ans1"]["failed"] == 0, broken.stdout
    assert rows["pv-ans2"]["ok"] == 1 and rows["pv-ans2"]["failed"] == 0, broken.stdout
    assert "mtu 1400" in sh(c1, "ip link show tap0")  # the others went on
    assert "192.0.2.0/24 via 198.51.100.254" in sh(c3, "ip route")  # the failed host was rolled back
