"""Running the real `provision` command, and reading the kernel with pyroute2 as an
independent oracle (it shares no code with provision's own netlink layer)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import NetNS

PROVISION = [sys.executable, "-m", "provisioner"]
OWNER_PROTOCOL = 147


@dataclass
class Result:
    rc: int
    out: str
    err: str


def persistent(state_dir: Path) -> Path:
    """The persistent state directory (/var/lib/provision on a host) that goes with a test's
    state directory (/run/provision): a sibling, so that wiping one, as a reboot wipes /run,
    keeps the other."""
    return state_dir.with_name(state_dir.name + "-lib")


def env_for(state_dir: Path) -> dict[str, str]:
    return {**os.environ, "PROVISION_STATE_DIR": str(state_dir), "PROVISION_PERSISTENT_DIR": str(persistent(state_dir)),
            "NO_COLOR": "1"}


def provision(*args: str, state_dir: Path, timeout: float = 60, check_rc: int | None = None,
              prefix: tuple[str, ...] = ()) -> Result:
    """`provision ARGS`, with `prefix` before it (e.g. `ip netns exec NS`)."""
    p = subprocess.run([*prefix, *PROVISION, *args], capture_output=True, text=True, timeout=timeout,
                       env=env_for(state_dir))
    result = Result(p.returncode, p.stdout, p.stderr)
    if check_rc is not None:
        assert p.returncode == check_rc, f"exit {p.returncode}, wanted {check_rc}\n{p.stdout}\n{p.stderr}"
    return result


def write_inventory(path: Path, text: str, **names: str) -> Path:
    for key, value in names.items():
        text = text.replace("{" + key + "}", value)
    path.write_text(text)
    return path


def _attr(msg, *names):  # type: ignore[no-untyped-def]
    for name in names:
        if msg is None:
            return None
        msg = msg.get_attr(name)
    return msg


def kernel(ns: str) -> dict:
    """Links, addresses and routes in `ns` as plain sets/dicts."""
    with NetNS(ns) as ip:
        links = {}
        names = {}
        for link in ip.get_links():
            name = link.get_attr("IFLA_IFNAME")
            names[link["index"]] = name
            links[name] = {
                "kind": _attr(link, "IFLA_LINKINFO", "IFLA_INFO_KIND"),
                "tun_type": _attr(link, "IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_TUN_TYPE"),
                "alias": link.get_attr("IFLA_IFALIAS"),
                "mtu": link.get_attr("IFLA_MTU"),
                "up": bool(link["flags"] & 1),
                "mac": link.get_attr("IFLA_ADDRESS"),
            }
        addrs = {(names[a["index"]], f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}") for a in ip.get_addr()
                 if not str(a.get_attr("IFA_ADDRESS")).startswith("fe80")}
        routes = set()
        for r in ip.get_routes():
            table = r.get_attr("RTA_TABLE") or r["table"]
            if table == 255 or r["proto"] == 2:
                continue
            dst = r.get_attr("RTA_DST")
            routes.add((table, f"{dst}/{r['dst_len']}" if dst else "default", r.get_attr("RTA_PRIORITY") or 0,
                        r.get_attr("RTA_GATEWAY"), names.get(r.get_attr("RTA_OIF")), r["proto"]))
    return {"links": links, "addrs": addrs, "routes": routes}


def wait_for(what: str, check: Callable[[], Any], timeout: float, show: Callable[[], Any] | None = None) -> Any:
    """check() until it is true; if it never is, fail saying what show() gives then."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}" + (f"\n{show()}" if show else ""))
        time.sleep(0.05)
