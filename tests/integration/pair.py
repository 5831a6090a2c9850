"""Two hosts joined by a tunnel, for the tunnel tests: two namespaces on one veth link
(192.0.2.1 and 192.0.2.2), the inventory that joins them, and how to look at the result."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from provisioner import keys

from .helpers import provision, wait_for, write_inventory

PAIR = """\
all:
  vars:
    ansible_connection: netns
  hosts:
    gw1:
      ansible_host: {ns1}
      tunnel_address: 192.0.2.1
      tunnel_private_key_file: gw1.key
      tunnel_public_key: {public1}
      network:
        devices:
          - {name: tap0, type: tap, vnet_hdr: true, addresses: [198.51.100.1/24]}
        tunnels:
          - {name: core, device: tap0, peer: gw2, port: {port}, transport: {transport}, {security}}
    gw2:
      ansible_host: {ns2}
      tunnel_address: 192.0.2.2
      tunnel_private_key_file: gw2.key
      tunnel_public_key: {public2}
      network:
        devices:
          - {name: tap0, type: tap, vnet_hdr: true, addresses: [198.51.100.2/24]}
        tunnels:
          - {name: core, device: tap0, peer: gw1, port: {port}, transport: {transport}, {security}}
"""
SECURE = "insecure: false"  # the default, said out loud: WireGuard keys, gw1.key and gw2.key beside the inventory
PSK = "psk_file: core.psk"  # with SECURE, a pre-shared key too (made beside the inventory)
INSECURE = "insecure: true"


@pytest.fixture
def hosts(make_netns: Callable[[], str]) -> tuple[str, str]:
    """Two namespaces on one link: 192.0.2.1 and 192.0.2.2."""
    return link(make_netns(), make_netns())


def link(ns1: str, ns2: str) -> tuple[str, str]:
    """Joins two namespaces with a veth pair: u1 192.0.2.1/24 and u2 192.0.2.2/24."""
    subprocess.run(["ip", "link", "add", "u1", "netns", ns1, "type", "veth", "peer", "name", "u2", "netns", ns2],
                   check=True)
    for ns, dev, addr in ((ns1, "u1", "192.0.2.1/24"), (ns2, "u2", "192.0.2.2/24")):
        subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", dev], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
    return ns1, ns2


def inventory(tmp_path: Path, hosts: tuple[str, str], transport: str = "tcp", port: str = "40839",
              security: str = SECURE) -> Path:
    """The pair's inventory. Each host's key pair (gw1.key, gw2.key) is made beside it unless
    there, and so is core.psk when `security` names it."""
    if PSK in security and not (tmp_path / "core.psk").exists():
        keys.pskgen(tmp_path / "core.psk")
    return write_inventory(tmp_path / "inventory.yaml", PAIR, ns1=hosts[0], ns2=hosts[1], transport=transport,
                           port=port, security=security, public1=key_pair(tmp_path / "gw1.key"),
                           public2=key_pair(tmp_path / "gw2.key"))


def key_pair(private: Path) -> str:
    """The public key of the private key file `private`, made first if it is not there."""
    if private.exists():
        return keys.public_key(keys.read_private(private))
    return keys.keygen(private)


def up(tmp_path: Path, hosts: tuple[str, str], transport: str = "tcp", security: str = SECURE) -> tuple[Path, Path]:
    """The pair applied and connected: (inventory, state directory)."""
    state = tmp_path / "state"
    inv = inventory(tmp_path, hosts, transport, security=security)
    provision("apply", str(inv), state_dir=state, check_rc=0)
    wait_for("both ends connected", lambda: connected(inv, state), 30)
    return inv, state


def status(inv: Path, state: Path) -> dict[str, dict[str, Any]]:
    out = provision("status", str(inv), "--json", state_dir=state, check_rc=0).out
    return {row["host"]: row for row in json.loads(out)["tunnels"]}


def pings(ns: str, address: str, count: int = 3) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1", address],
                          capture_output=True).returncode == 0


def processes(ns: str) -> list[str]:
    """The command lines of every process inside a namespace."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    out = []
    for pid in pids:
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except FileNotFoundError:
            pass
    return out


def connected(inv: Path, state: Path) -> dict[str, dict[str, Any]] | None:
    rows = status(inv, state)
    return rows if rows and all(r["state"] == "connected" for r in rows.values()) else None


def device_rx(ns: str, device: str) -> int:
    """Packets the device has taken from its forwarder (a tun/tap write counts as received)."""
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", device], capture_output=True, text=True,
                         check=True).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


@contextmanager
def pinging(ns: str, address: str) -> Iterator[list[float]]:
    """A ping every 20 ms from `ns` while the block runs (after a 0.5 s start); yields the list
    that fills with the wall-clock times of the replies, for the tests that time an outage."""
    replies: list[float] = []
    pinger = subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-D", "-i", "0.02", "-W", "1", address],
                              stdout=subprocess.PIPE, text=True)
    reader = threading.Thread(target=lambda: replies.extend(
        float(line[1:line.index("]")]) for line in pinger.stdout or () if "bytes from" in line))
    reader.start()
    try:
        time.sleep(0.5)
        yield replies
    finally:
        pinger.send_signal(signal.SIGINT)
        pinger.wait()
        reader.join()


def first_reply_after(ns: str, address: str, action: Callable[[], object], limit: float = 5.0) -> float:
    """Seconds from `action()` to the first ping reply after it (one ping every 20 ms)."""
    with pinging(ns, address) as replies:
        at = time.time()
        action()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and not any(r > at + 0.03 for r in list(replies)):
            time.sleep(0.05)
    after = [r for r in replies if r > at + 0.03]
    return after[0] - at if after else float("inf")


def longest_silence(ns: str, address: str, during: Callable[[], object]) -> float:
    """Seconds of the longest gap between ping replies (one ping every 20 ms) while `during` runs."""
    with pinging(ns, address) as replies:
        during()
        time.sleep(1.0)
    assert len(replies) > 10, "pings were answered"
    return max(b - a for a, b in zip(replies, replies[1:], strict=False))
