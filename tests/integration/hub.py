"""A hub with many tunnels, for the hub tests and `make bench-hub`.

One hub namespace (provision, its tunnels listening) and a spoke namespace per tunnel on a
bridge in the hub: 192.0.2.1 the hub, 192.0.2.10+ (then 198.51.100.x, 203.0.113.x) the spokes.
Each spoke is Debian's wireguard-go with one peer, the hub: each tunnel needs a peer key of its
own (two tunnels between the same keys are refused), so a spoke is a WireGuard peer outside the
inventory (`public_key:`), the hub's tunnels of default flags (`type: tun`, nothing else), tunnel
i on port 41000+i, fd00:100:i::1/64 on the hub side and ::2 on the spoke's. Namespaces and
wireguard-go processes are made here and removed here, by pid, whatever happens.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner import keys
from provisioner.connection.identity import identity, state_name
from provisioner.tunnel import runtime

BASE_PORT = 41000
_counter = itertools.count()


@dataclass
class Spoke:
    ns: str
    address: str
    name: str  # wireguard-go's interface (its control socket is /var/run/wireguard/NAME.sock)
    public: str
    process: subprocess.Popen[bytes] | None  # None: a key only, no peer runs (a hub's cost alone)

    def wg(self, *args: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.ns, "wg", *args], capture_output=True, text=True,
                              check=True).stdout


@dataclass
class Hub:
    root: Path
    hub: str
    spokes: list[Spoke]
    ports: dict[int, int] = field(default_factory=dict)  # tunnel → port, where it is not the default

    @property
    def tunnels(self) -> int:
        return len(self.spokes)

    @property
    def state(self) -> Path:
        return self.root / "state"

    def port(self, i: int) -> int:
        return self.ports.get(i, BASE_PORT + i)

    def inventory(self, tunnels: int | None = None) -> Path:
        """The hub's inventory with its first `tunnels` tunnels (all by default); the spokes follow
        (each is pointed at its tunnel's port)."""
        key = self.root / "hub.key"
        public = keys.keygen(key) if not key.exists() else keys.public_key(keys.read_private(key))
        count = self.tunnels if tunnels is None else tunnels
        lines = ["all:", "  hosts:", "    hub:", "      ansible_connection: netns", f"      ansible_host: {self.hub}",
                 f"      tunnel_private_key_file: {key}", f"      tunnel_public_key: {public}",
                 "      network:", "        devices:"]
        lines += [f"          - {{name: t{i}, type: tun, addresses: ['fd00:100:{i:x}::1/64']}}" for i in range(count)]
        lines.append("        tunnels:" if count else "        tunnels: []")
        lines += [f"          - {{name: t{i}, device: t{i}, transport: udp, listen: '0.0.0.0:{self.port(i)}', "
                  f"public_key: '{self.spokes[i].public}'}}" for i in range(count)]
        path = self.root / "hub.yaml"
        path.write_text("\n".join(lines) + "\n")
        for i, spoke in enumerate(self.spokes):
            if spoke.process is None:
                continue
            spoke.wg("set", spoke.name, "peer", public, "endpoint", f"192.0.2.1:{self.port(i)}",
                     "allowed-ips", "::/0", "persistent-keepalive", "2")  # as docs/tunnels.md says
        return path

    def status(self, ns: str | None = None) -> dict[str, dict[str, Any]]:
        """The hub's (or a spoke's) tunnels as `status` reads them, by tunnel name: from the
        state files in this process (a `provision status` per poll would cost more than it measures)."""
        key = state_name(identity("netns", ns or self.hub))
        return {row["tunnel"]: row for row in runtime.status(self.state, key)}

    def all_connected(self) -> bool:
        rows = self.status()
        return len(rows) == self.tunnels and all(r["state"] == "connected" for r in rows.values())

    def pings(self) -> list[int]:
        """The tunnels whose spoke end does not answer a ping from the hub (all sent at once)."""
        procs = {i: subprocess.Popen(["ip", "netns", "exec", self.hub, "ping", "-6", "-c", "1", "-W", "3",
                                      f"fd00:100:{i:x}::2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in range(self.tunnels)}
        return [i for i, p in procs.items() if p.wait() != 0]

    def processes(self, ns: str | None = None) -> list[int]:
        """The pids of provision's processes in a namespace."""
        pids = subprocess.run(["ip", "netns", "pids", ns or self.hub], capture_output=True, text=True).stdout.split()
        out = []
        for pid in pids:
            try:
                if b"provisioner" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(int(pid))
            except FileNotFoundError:
                pass
        return out

    def data_plane(self) -> int:
        """The hub's data-plane process (0 while there is none)."""
        record = runtime.read_dict(runtime.host_dir(self.state, state_name(identity("netns", self.hub)))
                                   / runtime.SUPERVISOR)
        planes = record.get("planes") or [{"pid": 0}]
        return int(planes[0]["pid"])


def _netns(prefix: str) -> str:
    name = f"{prefix}{os.getpid() % 100000}x{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return name


def _delete(ns: str) -> None:
    for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _spoke_address(k: int) -> str:
    block, host = divmod(k, 240)
    return (f"192.0.2.{10 + host}", f"198.51.100.{10 + host}", f"203.0.113.{10 + host}")[block]


@contextmanager
def hub(root: Path, tunnels: int, prefix: str = "phub", spokes: bool = True) -> Iterator[Hub]:
    """The hub; with `spokes` False, its tunnels' peers are keys only (nothing answers)."""
    if tunnels > 720:
        raise ValueError("at most 720 spokes fit the documentation ranges")
    made: list[str] = []
    outer: list[Spoke] = []
    try:
        center = _netns(prefix)
        made.append(center)
        run = ["ip", "-n", center]
        subprocess.run([*run, "link", "add", "br0", "type", "bridge"], check=True)
        for net in ("192.0.2.1/24", "198.51.100.1/24", "203.0.113.1/24"):
            subprocess.run([*run, "addr", "add", net, "dev", "br0"], check=True)
        subprocess.run([*run, "link", "set", "br0", "up"], check=True)
        root.mkdir(parents=True, exist_ok=True)
        for k in range(tunnels if not spokes else 0):
            public = keys.keygen(root / f"spoke{k}.key")
            outer.append(Spoke("", _spoke_address(k), "", public, None))
        for k in range(tunnels if spokes else 0):
            ns = _netns(prefix)
            made.append(ns)
            address = _spoke_address(k)
            subprocess.run(["ip", "link", "add", f"s{k}", "netns", center, "type", "veth", "peer", "name", "u0",
                            "netns", ns], check=True)
            subprocess.run([*run, "link", "set", f"s{k}", "master", "br0", "up"], check=True)
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "u0"], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "u0", "up"], check=True)
            gateway = address.rsplit(".", 1)[0] + ".1"
            if not address.startswith("192.0.2."):
                subprocess.run(["ip", "-n", ns, "route", "add", "192.0.2.0/24", "via", gateway], check=True)
            name = f"wgh{os.getpid() % 10000}x{next(_counter)}"[:15]
            process = subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", name],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            outer.append(Spoke(ns, address, name, "", process))
            wait("wireguard-go's control socket", Path(f"/var/run/wireguard/{name}.sock").exists, 10, 0.01)
            private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
            (root / f"spoke{k}.key").write_text(private)
            (root / f"spoke{k}.key").chmod(0o600)
            outer[-1].public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True,
                                               check=True).stdout.strip()
            outer[-1].wg("set", name, "private-key", str(root / f"spoke{k}.key"))
            subprocess.run(["ip", "-n", ns, "addr", "add", f"fd00:100:{k:x}::2/64", "dev", name], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", name, "mtu", "1420", "up"], check=True)
        yield Hub(root, center, outer)
    finally:
        for spoke in outer:
            if spoke.process is None:
                continue
            spoke.process.kill()
            spoke.process.wait()
            Path(f"/var/run/wireguard/{spoke.name}.sock").unlink(missing_ok=True)
        for ns in made:
            _delete(ns)


def wait(what: str, check: Any, timeout: float, every: float = 0.05) -> float:
    """Seconds until check() is true; AssertionError after timeout."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)
    return time.monotonic() - t0
