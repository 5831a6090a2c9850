"""A provision tunnel peering with a stock WireGuard: Debian's wireguard-go, configured with
`wg` from wireguard-tools, in a namespace of its own. Both keys come from `wg genkey`, so
nothing here shares code with provision's handshake: if the bytes on the wire were not
WireGuard's exactly, there would be no handshake.

    provision (ns A, 192.0.2.1, wg0 198.51.100.1) ── veth ── wireguard-go (ns B, 192.0.2.2, NAME 198.51.100.2)
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import provision, wait_for, write_inventory
from .pair import first_reply_after, pings

WG_PORT = 51820
PROVISION_PORT = 51821
_names = itertools.count()

INVENTORY = """\
all:
  vars:
    ansible_connection: netns
  hosts:
    pv:
      ansible_host: {ns}
      tunnel_private_key_file: pv.key
      tunnel_public_key: {public}
      network:
        devices:
          - {name: wg0, type: tun, mtu: 1420, addresses: [198.51.100.1/24]}
        tunnels:
          - {name: wg, device: wg0, transport: udp, {role}, public_key: '{peer_public}'}
"""


def wg_key(path: Path) -> str:
    """A private key from `wg genkey` at `path` (0600); its public key from `wg pubkey`."""
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    path.write_text(private)
    path.chmod(0o600)
    return subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True).stdout.strip()


@dataclass
class WireGuardGo:
    ns: str
    name: str
    public: str
    process: subprocess.Popen[bytes]

    def wg(self, *args: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.ns, "wg", *args], capture_output=True, text=True,
                              check=True).stdout

    def latest_handshake(self) -> int:
        """Unix time of the peer's latest handshake as wireguard-go saw it (0: none yet)."""
        line = self.wg("show", self.name, "latest-handshakes").split()
        return int(line[1]) if len(line) == 2 else 0


@pytest.fixture
def pair(make_netns: Callable[[], str], tmp_path: Path) -> Iterator[tuple[str, WireGuardGo]]:
    """(provision's namespace, a running wireguard-go) on one veth link; wireguard-go stopped by
    pid and its control socket removed afterwards, whatever happened."""
    ns_pv, ns_wg = make_netns(), make_netns()
    subprocess.run(["ip", "link", "add", "v1", "netns", ns_pv, "type", "veth", "peer", "name", "v2", "netns", ns_wg],
                   check=True)
    for ns, dev, addr in ((ns_pv, "v1", "192.0.2.1/24"), (ns_wg, "v2", "192.0.2.2/24")):
        subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", dev], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
    name = f"wgt{os.getpid() % 100000}x{next(_names)}"[:15]
    sock = Path(f"/var/run/wireguard/{name}.sock")
    process = subprocess.Popen(["ip", "netns", "exec", ns_wg, "wireguard-go", "-f", name],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("wireguard-go's control socket", sock.exists, 10)
        public = wg_key(tmp_path / "wg.key")
        go = WireGuardGo(ns_wg, name, public, process)
        go.wg("set", name, "listen-port", str(WG_PORT), "private-key", str(tmp_path / "wg.key"))
        subprocess.run(["ip", "-n", ns_wg, "addr", "add", "198.51.100.2/24", "dev", name], check=True)
        subprocess.run(["ip", "-n", ns_wg, "link", "set", name, "up"], check=True)
        yield ns_pv, go
    finally:
        process.kill()
        process.wait()
        sock.unlink(missing_ok=True)


def apply(tmp_path: Path, ns: str, go: WireGuardGo, public: str, role: str, **env: str) -> tuple[Path, Path]:
    """provision's end (its key pv.key, made with `public`), applied: `role` is its tunnel's
    connect:/listen: entry; `env` is handed to provision apply, which hands it to the forwarder."""
    inv = write_inventory(tmp_path / "inventory.yaml", INVENTORY, ns=ns, public=public, role=role,
                          peer_public=go.public)
    state = tmp_path / "state"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # provision apply hands its environment to the forwarders it starts
    try:
        provision("apply", str(inv), state_dir=state, check_rc=0)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return inv, state


def status(inv: Path, state: Path) -> dict:
    return json.loads(provision("status", str(inv), "--json", state_dir=state, check_rc=0).out)["tunnels"][0]


def iperf(client_ns: str, server_ns: str, server: str, seconds: int) -> float:
    """Gbit/s of one TCP stream through the tunnel for `seconds`."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # listening, not a fixed sleep: a server slow to start lost the client its only try
        wait_for("iperf3 listening", lambda: subprocess.run(
            ["ip", "netns", "exec", server_ns, "ss", "-Hltn", "sport = :5201"], capture_output=True, text=True).stdout, 10)
        out = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c", server, "-t", str(seconds), "-J"],
                             capture_output=True, text=True, timeout=seconds + 30).stdout
    finally:
        srv.kill()
        srv.wait()
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def test_provision_and_wireguard_go_handshake_carry_traffic_rekey_and_recover(
        tmp_path: Path, pair: tuple[str, WireGuardGo]) -> None:
    ns, go = pair
    public = wg_key(tmp_path / "pv.key")
    go.wg("set", go.name, "peer", public, "allowed-ips", "198.51.100.1/32")  # it learns the endpoint
    inv, state = apply(tmp_path, ns, go, public, f"connect: '192.0.2.2:{WG_PORT}'", PROVISION_TUNNEL_REKEY_AFTER="4")
    wait_for("wireguard-go saw a handshake", go.latest_handshake, 10, show=lambda: go.wg("show", go.name))
    assert pings(ns, "198.51.100.2", 3), "provision -> wireguard-go"
    assert pings(go.ns, "198.51.100.1", 3), "wireguard-go -> provision"
    row = status(inv, state)
    assert row["state"] == "connected", row
    first = go.latest_handshake()
    handshakes = row.get("handshakes", 0)

    gbits = iperf(ns, go.ns, "198.51.100.2", 10)  # longer than the rekey time: it rekeys under load
    print(f"provision -> wireguard-go, one TCP stream, 10 s: {gbits:.2f} Gbit/s")
    assert gbits > 0.01
    wait_for("a rekey: a second handshake", lambda: go.latest_handshake() > first
             and status(inv, state).get("handshakes", 0) > handshakes, 10,
             show=lambda: (go.wg("show", go.name), status(inv, state)))

    pid = status(inv, state)["pid"]
    back = first_reply_after(ns, "198.51.100.2", lambda: os.kill(pid, signal.SIGKILL))
    print(f"provision's forwarder SIGKILLed: pings back after {back:.2f} s")
    assert back < 2.0, f"back after {back:.2f} s"
    assert status(inv, state)["pid"] != pid
    assert pings(go.ns, "198.51.100.1", 3)


def test_wireguard_go_connects_to_a_listening_provision(tmp_path: Path, pair: tuple[str, WireGuardGo]) -> None:
    """The other way round: provision only listens; wireguard-go knows its endpoint and starts."""
    ns, go = pair
    public = wg_key(tmp_path / "pv.key")
    inv, state = apply(tmp_path, ns, go, public, f"listen: '0.0.0.0:{PROVISION_PORT}'")
    go.wg("set", go.name, "peer", public, "endpoint", f"192.0.2.1:{PROVISION_PORT}", "allowed-ips",
          "198.51.100.1/32", "persistent-keepalive", "1")
    wait_for("wireguard-go saw a handshake", go.latest_handshake, 10, show=lambda: go.wg("show", go.name))
    assert pings(go.ns, "198.51.100.1", 3), "wireguard-go -> provision"
    assert pings(ns, "198.51.100.2", 3), "provision -> wireguard-go"
    row = status(inv, state)
    assert row["state"] == "connected" and row["peer"] == f"192.0.2.2:{WG_PORT}", row
