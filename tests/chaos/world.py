"""What every chaos case needs: inventories of a few hundred resources for a namespace, the
kernel's own account of it (`ip -d -j`, compared byte for byte), and the figures table."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

FULL = os.environ.get("PROVISION_CHAOS") == "full"  # `make chaos`; `make test` runs the short form
RESULTS_ENV = "PROVISION_CHAOS_RESULTS"


def inventory(ns: str, version: int, taps: int | None = None) -> str:
    """Version 1: 50 taps (MTU 1500, one address, one route each); version 2: 100 taps with
    another MTU, other addresses and other routes: 300 resources, most of them changes."""
    n = taps if taps is not None else (50 if version == 1 else 100)
    mtu, net, metric = (1500, "198.51.100", 10) if version == 1 else (1400, "203.0.113", 20)
    lines = ["all:", "  hosts:", "    edge:", "      ansible_connection: netns", f"      ansible_host: {ns}",
             "      network:", "        devices:"]
    lines += [f"          - {{name: ch{i}, type: tap, mtu: {mtu}, addresses: [{net}.{i + 1}/32]}}" for i in range(n)]
    lines.append("        routes:")
    lines += [f"          - {{to: 192.0.2.{i}/32, dev: ch{i}, metric: {metric}}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def dump(ns: str) -> bytes:
    """The namespace as the kernel tells it (links with details, addresses, every route table)."""
    out = b""
    for what in (["-d", "-j", "link", "show"], ["-d", "-j", "addr", "show"], ["-d", "-j", "route", "show", "table", "all"],
                 ["-6", "-d", "-j", "route", "show", "table", "all"]):
        out += subprocess.run(["ip", "-n", ns, *what], check=True, capture_output=True).stdout
    return out


def settled(ns: str, quiet: float = 0.3, timeout: float = 10.0) -> bytes:
    """The dump once the kernel has finished its own follow-up of a change (a new tap turns
    NO-CARRIER a moment later, from the link watch): unchanged for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = dump(ns)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = dump(ns)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the kernel state of {ns} kept changing for {timeout} s")


def unowned_links(ns: str) -> list[str]:
    """Links other than lo that do not carry provision's owner alias: made by a run that died
    before it could say they are ours, and so never removed by the next one."""
    links = json.loads(subprocess.run(["ip", "-n", ns, "-j", "link", "show"], check=True,
                                      capture_output=True).stdout)
    return [link["ifname"] for link in links if link["ifname"] != "lo" and link.get("ifalias") != "provision"]


@dataclass(frozen=True)
class Figure:
    fault: str
    runs: int
    happened: str
    figure: str


FIGURES: list[Figure] = []


def report(fault: str, runs: int, happened: str, figure: str) -> None:
    """One row of docs/chaos.md's table "fault → what happened"."""
    row = Figure(fault, runs, happened, figure)
    FIGURES.append(row)
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(row)) + "\n")


def table(rows: list[Figure]) -> str:
    out = ["| fault | runs | what happened | figure |", "|---|---|---|---|"]
    out += [f"| {r.fault} | {r.runs} | {r.happened} | {r.figure} |" for r in rows]
    return "\n".join(out)


def spread(values: list[float]) -> str:
    """median (min–max), in seconds"""
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[len(ordered) // 2]:.2f} s ({ordered[0]:.2f}–{ordered[-1]:.2f})"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
