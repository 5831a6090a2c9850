"""Fast by default, in the kernel: a tunnel's device written with no flags is made with the
virtio header and the MTU its carrier needs, carries packets intact, never fragments the UDP
carrier, and a second plan finds it in sync."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .helpers import provision, wait_for
from .pair import INSECURE, SECURE, connected, hosts, inventory, pings, status
from .test_tunnels import transfer_intact

__all__ = ["hosts"]  # a fixture

IFF_VNET_HDR = 0x4000
MTU = {("tun", "udp"): 1420, ("tap", "udp"): 1395, ("tun", "tcp"): 1500, ("tap", "tcp"): 1500}
WHY = {("tun", "udp"): "default for a UDP tunnel", ("tap", "udp"): "default for a tap over a UDP tunnel",
       ("tun", "tcp"): "default for a TCP tunnel", ("tap", "tcp"): "default for a TCP tunnel"}


def link(ns: str, name: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(["ip", "-n", ns, "-d", "-j", "link", "show", name], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


def tun_flags(ns: str, name: str) -> int:
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{name}/tun_flags"],
                          capture_output=True, text=True, check=True).stdout
    return int(text, 16)


def fragments_made(ns: str) -> int:
    """The namespace's IPv4 FragCreates: fragments its stack cut from packets it sent."""
    lines = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    names, values = (line.split()[1:] for line in lines if line.startswith("Ip:"))
    return int(values[names.index("FragCreates")])


@pytest.mark.parametrize("security", [SECURE, INSECURE], ids=["encrypted", "insecure"])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("kind", ["tun", "tap"])
def test_a_tunnels_device_without_flags_is_made_fast_and_stays_in_sync(
        tmp_path: Path, hosts: tuple[str, str], kind: str, transport: str, security: str) -> None:
    state = tmp_path / "state"
    inv = inventory(tmp_path, hosts, transport, security=security)
    inv.write_text(inv.read_text().replace("name: tap0, type: tap, vnet_hdr: true", f"name: tap0, type: {kind}"))
    mtu = MTU[kind, transport]
    plan = provision("plan", str(inv), state_dir=state, check_rc=0).out
    assert f"+ device tap0  ({kind}, up, mtu {mtu} ({WHY[kind, transport]}), vnet_hdr (default for a tunnel's device))" \
        in plan, plan

    provision("apply", str(inv), state_dir=state, check_rc=0)
    wait_for("both ends connected", lambda: connected(inv, state), 30)
    for ns in hosts:
        info = link(ns, "tap0")
        assert (info["mtu"], info["linkinfo"]["info_data"]["vnet_hdr"]) == (mtu, True), info
        assert tun_flags(ns, "tap0") & IFF_VNET_HDR
    before = [fragments_made(ns) for ns in hosts]
    assert pings(hosts[0], "198.51.100.2")
    # The largest packet the device takes, not to be fragmented on its way: through the
    # tunnel (-M do) and, as a datagram of the carrier, on the 1500-byte link.
    full = subprocess.run(["ip", "netns", "exec", hosts[0], "ping", "-c", "2", "-i", "0.2", "-W", "1", "-M", "do",
                           "-s", str(mtu - 28), "198.51.100.2"], capture_output=True, text=True)
    assert full.returncode == 0, full.stdout + full.stderr
    assert transfer_intact(hosts[1], hosts[0], "198.51.100.2")
    assert [fragments_made(ns) for ns in hosts] == before, "the carrier was IP-fragmented"
    rows = status(inv, state)
    assert all(r["restarts"] == 0 for r in rows.values()), rows
    assert provision("plan", str(inv), "--detailed-exitcode", state_dir=state).rc == 0


def test_explicit_values_are_obeyed(tmp_path: Path, hosts: tuple[str, str]) -> None:
    state = tmp_path / "state"
    inv = inventory(tmp_path, hosts, "udp")
    inv.write_text(inv.read_text().replace("name: tap0, type: tap, vnet_hdr: true",
                                           "name: tap0, type: tun, vnet_hdr: false, mtu: 1300"))
    provision("apply", str(inv), state_dir=state, check_rc=0)
    wait_for("both ends connected", lambda: connected(inv, state), 30)
    info = link(hosts[0], "tap0")
    assert (info["mtu"], info["linkinfo"]["info_data"]["vnet_hdr"]) == (1300, False), info
    assert not tun_flags(hosts[0], "tap0") & IFF_VNET_HDR
    assert pings(hosts[0], "198.51.100.2")
    assert provision("plan", str(inv), "--detailed-exitcode", state_dir=state).rc == 0
