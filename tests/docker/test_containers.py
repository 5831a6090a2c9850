"""The bundled example inventories, applied to real containers from this machine.

For each: `provision apply` from the controller provisions every container (the reconcile
runs inside each), packets cross every tunnel, a 10 s saturating iperf3 flow completes with
the forwarders up, a forwarder killed with SIGKILL is back within 2 s, a peer container that
is restarted is provisioned again and found again by the other end, and nothing is left.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from docker.models.containers import Container

from provisioner.reconcile import load

from ..integration.helpers import Result, wait_for
from .conftest import session_dir, session_processes
from ..integration.helpers import provision as run_provision

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = ["docker-l2-tcp.yaml", "docker-l3-udp.yaml", "docker-hub.yaml"]


@dataclass(frozen=True)
class Pair:
    tunnel: str
    listener: str  # inventory host names
    connector: str
    listener_ip: str  # their addresses inside the tunnel
    connector_ip: str


def pairs(inventory: Path) -> tuple[dict[str, str], list[Pair]]:
    """Container of each host, and every tunnel with the address of each end on its device."""
    loaded = load(str(inventory))
    containers = {h.name: h.address for h in loaded.hosts}

    def ip_on(host: str, device: str) -> str:
        cidr = next(a.cidr for a in loaded.desired[host].addresses if a.device == device)
        return str(ipaddress.ip_interface(cidr).ip)

    out = []
    for host, net in loaded.desired.items():
        for t in net.tunnels:
            if t.role == "listen" and t.peer:
                theirs = next(x for x in loaded.desired[t.peer].tunnels if x.name == t.name)
                out.append(Pair(t.name, host, t.peer, ip_on(host, t.device), ip_on(t.peer, theirs.device)))
    return containers, out


def provision(*args: str, rc: int | None = 0) -> Result:
    """The controller's `provision` (its own state directory is not used for docker hosts)."""
    return run_provision(*args, state_dir=session_dir(), check_rc=rc)


def status_rows(inventory: Path) -> list[dict[str, Any]]:
    return list(json.loads(provision("status", str(inventory), "--json").out)["tunnels"])


def status(inventory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["host"], r["tunnel"]): r for r in status_rows(inventory)}


def pings(c: Container, address: str, count: int = 3) -> bool:
    return c.exec_run(["ping", "-c", str(count), "-i", "0.2", "-W", "1", address]).exit_code == 0


def listening(c: Container, port: int = 5201) -> bool:
    found = c.exec_run(["ss", "-Hltn", f"sport = :{port}"])
    return found.exit_code == 0 and bool(found.output.strip())


def all_connected(inventory: Path) -> dict[tuple[str, str], dict[str, Any]] | None:
    rows = status(inventory)
    return rows if rows and all(r["state"] == "connected" for r in rows.values()) else None


def wait_connected(inventory: Path, what: str, timeout: float) -> dict[tuple[str, str], dict[str, Any]]:
    """Every tunnel connected within timeout; if not, the failure shows every tunnel's status."""
    return wait_for(what, lambda: all_connected(inventory), timeout,
                    lambda: json.dumps(status_rows(inventory), indent=1))


@pytest.mark.parametrize("name", INVENTORIES)
def test_example_inventory_on_containers(name: str, containers: Callable[[list[str]], dict[str, Container]]) -> None:
    inventory = ROOT / "inventories" / name
    names, tunnels = pairs(inventory)
    box = containers(list(names.values()))
    by_host = {host: box[c] for host, c in names.items()}

    provision("apply", str(inventory), "--forks", "3")  # the containers in parallel
    assert provision("plan", str(inventory), "--detailed-exitcode", "--forks", "3").rc == 0
    wait_connected(inventory, "every tunnel connected", 15)
    for p in tunnels:
        assert pings(by_host[p.listener], p.connector_ip), f"{p.tunnel}: {p.listener} → {p.connector}"
        assert pings(by_host[p.connector], p.listener_ip), f"{p.tunnel}: {p.connector} → {p.listener}"

    # A saturating TCP flow for 10 s through each tunnel, with the forwarders up all along.
    before = status(inventory)
    for p in tunnels:
        server = by_host[p.connector]
        server.exec_run(["iperf3", "-s", "-1", "-D"])  # it goes to the background before it listens:
        wait_for("iperf3 listening", partial(listening, server), 10)
        run = by_host[p.listener].exec_run(["iperf3", "-c", p.connector_ip, "-t", "10", "-J"])
        report = json.loads(run.output)
        assert run.exit_code == 0 and "error" not in report, report.get("error")
        received = report["end"]["sum_received"]
        assert received["seconds"] >= 9.5 and received["bytes"] > 0, received
        print(f"{name} {p.tunnel}: {received['bits_per_second'] / 1e9:.2f} Gbit/s, "
              f"{report['end']['sum_sent'].get('retransmits')} retransmits")
    after = wait_connected(inventory, "still connected", 10)
    for key, row in after.items():
        assert row["pid"] == before[key]["pid"] and row["restarts"] == 0, f"{key} restarted during the flow"
        assert row["rx_bytes"] + row["tx_bytes"] > 10_000_000, row

    # SIGKILL a forwarder: running again within 2 s, and packets cross again.
    victim = tunnels[0]
    host = by_host[victim.connector]
    key = (victim.connector, victim.tunnel)
    old = status(inventory)[key]["pid"]
    killed = time.time()  # the container's clock is this kernel's
    host.exec_run(["kill", "-9", str(old)])
    row = wait_for("a new forwarder process", lambda: (r := status(inventory)[key])["pid"] not in (None, old)
                   and (r["started"] or 0) > killed and r, 30)
    # timed by the new data plane's own start, not by these polls (each a `provision status` in the container)
    assert row["started"] - killed < 2.0, row
    wait_for("ping after the restart", lambda: pings(by_host[victim.listener], victim.connector_ip, 1), 15)

    # Restart the peer container: its devices and forwarders are gone until apply runs again;
    # the other end keeps its forwarder and finds the peer again.
    survivor = status(inventory)[(victim.listener, victim.tunnel)]
    host.restart(timeout=1)
    assert provision("plan", str(inventory), "--limit", victim.connector, "--detailed-exitcode", rc=None).rc == 2
    provision("apply", str(inventory))
    wait_for("ping after the peer's restart", lambda: pings(by_host[victim.listener], victim.connector_ip, 1), 20)
    rows = wait_connected(inventory, "every tunnel connected again", 15)
    assert rows[(victim.listener, victim.tunnel)]["pid"] == survivor["pid"], "the surviving end reconnected itself"

    out = provision("destroy", str(inventory), "--forks", "3").out
    assert "- tunnel" in out
    for c in box.values():
        assert not _forwarder_pids(c), "destroy stops every forwarder"
    assert not session_processes(), "no process of this test's provision runs on the controller"


def _forwarder_pids(c: Container) -> list[int]:
    out = c.exec_run(["pgrep", "-f", "provisioner.tunnel.dataplane"]).output.decode()
    return [int(x) for x in out.split()]
