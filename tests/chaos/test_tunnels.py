"""Tunnels on a bad network: random loss on the carrier link (both directions), or an outage
of 2 s every 10 s; a transfer through the tunnel must arrive whole (sha256), with throughput
and, for outages, reconnect times reported.

The faults are nftables rules on each end's ingress (`numgen random mod 100 < N drop`, or
`drop`): this machine's kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set; `tc qdisc
add … netem` says "Specified qdisc kind is unknown"), so delay and reordering are not measured
here (docs/chaos.md). And peer
churn: the peer's namespace deleted and re-created while a pull agent keeps it, the tunnel
back each time within the agent's interval plus 2 s with no apply by hand.

The pair of hosts and its inventory come from tests/integration/pair.py (called, not copied),
so these cases follow the tunnel protocol and key format wherever that goes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ..integration import pair
from ..integration.helpers import PROVISION, env_for, provision, wait_for
from ..integration.test_pull import Repo
from .world import FULL, report, spread

MEGABYTES = 64 if FULL else 8
CONDITIONS = {"loss 1 %": "loss 1", "loss 5 %": "loss 5", "outage 2 s every 10 s": "outage"}
SHORT = ("loss 1 %",)
TRANSFER = str(Path(__file__).with_name("transfer.py"))


def carrier(hosts: tuple[str, str], rule: str) -> None:
    """The carrier link, as both ends receive it: `rule` is an nftables statement ("" for a
    clean link). An nftables table replaces netem, which this kernel lacks."""
    for ns, dev in zip(hosts, ("u1", "u2"), strict=True):
        script = (f"table netdev chaos {{\n chain carrier {{\n  type filter hook ingress device \"{dev}\" priority 0;\n"
                  f"  {rule}\n }}\n}}\n")
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "netdev", "chaos"], capture_output=True)
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, check=True)


def loss(percent: int) -> str:
    return f"numgen random mod 100 < {percent} drop"


def transfer(hosts: tuple[str, str], megabytes: int, seed: int, min_seconds: float = 0) -> tuple[dict, dict]:
    receiver = subprocess.Popen(["ip", "netns", "exec", hosts[1], sys.executable, TRANSFER, "receive",
                                 "198.51.100.2", "5201"], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "listening"
        sent = subprocess.run(["ip", "netns", "exec", hosts[0], sys.executable, TRANSFER, "send", "198.51.100.2",
                               "5201", str(megabytes), str(seed), str(min_seconds)], capture_output=True, text=True,
                              timeout=900)
        assert sent.returncode == 0, sent.stderr
        got = json.loads(receiver.communicate(timeout=60)[0])
    finally:
        receiver.kill()
    return json.loads(sent.stdout), got


class Outages(threading.Thread):
    """2 s of 100 % loss every 10 s on the carrier (the first after 3 s), while a ping
    through the tunnel (every 0.1 s) times how long after each outage packets cross again."""

    def __init__(self, hosts: tuple[str, str]):
        super().__init__(daemon=True)
        self.hosts, self.stop, self.ends = hosts, threading.Event(), []
        self.ping = subprocess.Popen(["ip", "netns", "exec", hosts[0], "ping", "-D", "-n", "-i", "0.1", "-W", "1",
                                      "198.51.100.2"], stdout=subprocess.PIPE, text=True)

    def run(self) -> None:
        pause = 3.0
        while not self.stop.wait(pause):
            pause = 8.0
            carrier(self.hosts, "drop")
            time.sleep(2)
            carrier(self.hosts, "")
            self.ends.append(time.time())

    def reconnects(self) -> list[float]:
        self.stop.set()
        self.join()
        self.ping.terminate()
        replies = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", self.ping.communicate()[0], re.M)]
        return [min((t for t in replies if t >= end), default=float("inf")) - end for end in self.ends]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_transfer_through_a_tunnel_on_a_bad_network_arrives_whole(
        transport: str, hosts: tuple[str, str], tmp_path: Path) -> None:
    pair.up(tmp_path, hosts, transport)
    rows = []
    for n, (name, spec) in enumerate(CONDITIONS.items()):
        if not FULL and name not in SHORT:
            continue
        outages = None
        if spec == "outage":
            carrier(hosts, "")
            outages = Outages(hosts)
            outages.start()
        else:
            carrier(hosts, loss(int(spec.split()[1])))
        sent, got = transfer(hosts, MEGABYTES, seed=n, min_seconds=25 if outages else 0)  # 3 outages at least
        reconnect = outages.reconnects() if outages else []
        assert got == {"bytes": sent["bytes"], "sha256": sent["sha256"]}, (name, sent, got)
        mbit = sent["bytes"] * 8 / sent["seconds"] / 1e6
        rows.append((name, mbit, sent["seconds"], reconnect, sent["bytes"] >> 20))
        assert not outages or len(reconnect) >= 2, f"{name}: the transfer outlasted {len(reconnect)} outages"
        assert all(r < 10 for r in reconnect), f"{name}: reconnect times {reconnect}"
    for name, mbit, seconds, reconnect, sent_mb in rows:
        extra = f"; back {spread(reconnect)} after each outage" if reconnect else ""
        report(f"{transport.upper()} tunnel, carrier {name} (both ways)", 1,
               f"{sent_mb} MB arrived intact (sha256)", f"{mbit:.0f} Mbit/s ({seconds:.1f} s){extra}")


def test_peer_churn_under_the_pull_agent(hosts: tuple[str, str], tmp_path: Path) -> None:
    """gw2 is kept by a pull agent; its namespace is deleted and made again (with its end of
    the carrier link), and the tunnel must come back through the agent alone."""
    interval = 2.0
    rounds = 20 if FULL else 3  # a median of three: one round may miss an agent run, as in the full form
    inv = pair.inventory(tmp_path, hosts, "udp")
    state = tmp_path / "state"
    provision("apply", str(inv), "--limit", "gw1", state_dir=state, check_rc=0)
    repo = Repo(tmp_path / "net", hosts[1])
    text = inv.read_text()
    for host in ("gw1", "gw2"):  # the commit names the keys' place: absolute, out of the checkout, as in GitOps
        text = text.replace(f"tunnel_private_key_file: {host}.key", f"tunnel_private_key_file: {tmp_path / host}.key")
    assert str(tmp_path / "gw2.key") in text
    # A re-created tap gets a new random MAC, and gw1 keeps sending to the old one until its
    # neighbour entry expires (≈ 30 s, measured: docs/chaos.md); a fixed MAC, as an operator
    # would pin it, takes that out of what is measured here.
    text = text.replace("addresses: [198.51.100.2/24]", "mac: '02:00:00:00:00:02', addresses: [198.51.100.2/24]")
    assert "02:00:00:00:00:02" in text
    first = repo.commit(text, "the pair")
    log = tmp_path / "agent.log"
    agent = subprocess.Popen([*PROVISION, "pull", str(repo.path), "--branch", "main", "--host", "gw2",
                              "--netns", hosts[1], "--min-commit", first, "--interval", str(interval)],
                             env=env_for(state), stdout=log.open("w"), stderr=subprocess.STDOUT)
    backs = []
    try:
        wait_for("the tunnel up through the agent", lambda: pair.pings(hosts[0], "198.51.100.2", 1), 30,
                 log.read_text)
        for _ in range(rounds):
            for pid in subprocess.run(["ip", "netns", "pids", hosts[1]], capture_output=True, text=True).stdout.split():
                if int(pid) != agent.pid:  # the agent visits the namespace on each run; it is not the host's own
                    subprocess.run(["kill", "-9", pid])
            subprocess.run(["ip", "-n", hosts[1], "link", "del", "u2"], check=True)  # now, not when the netns goes
            subprocess.run(["ip", "netns", "del", hosts[1]], check=True)
            subprocess.run(["ip", "netns", "add", hosts[1]], check=True)
            subprocess.run(["ip", "-n", hosts[1], "link", "set", "lo", "up"], check=True)
            wait_for("the old carrier gone", lambda: subprocess.run(["ip", "-n", hosts[0], "link", "show", "u1"],
                                                                   capture_output=True).returncode != 0, 30)
            subprocess.run(["ip", "link", "add", "u1", "netns", hosts[0], "type", "veth", "peer", "name", "u2",
                            "netns", hosts[1]], check=True)
            for ns, dev, addr in ((hosts[0], "u1", "192.0.2.1/24"), (hosts[1], "u2", "192.0.2.2/24")):
                subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", dev], check=True)
                subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
            made = time.monotonic()
            wait_for("the tunnel back", lambda: pair.pings(hosts[0], "198.51.100.2", 1), interval + 30,
                     lambda: log.read_text() + f"(the agent: {'running' if agent.poll() is None else agent.returncode})")
            backs.append(time.monotonic() - made)
    finally:
        agent.terminate()
        agent.wait(timeout=60)
    backs.sort()
    assert backs[len(backs) // 2] <= interval + 2, f"back after {backs} s (agent every {interval} s)"
    assert backs[-1] <= 2 * interval + 4, f"back after {backs} s: a round missed more than one agent run"
    late = sum(b > interval + 2 for b in backs)
    report(f"peer churn: the peer's namespace deleted and re-created {rounds} times, kept by a pull agent "
           f"(every {interval:g} s)", rounds, f"the tunnel came back every time through the agent alone; {late} of {rounds} rounds took longer than "
           f"the interval + 2 s",
           f"back after {spread(backs)}")
