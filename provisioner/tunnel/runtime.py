"""Where a tunnel's processes keep their state, and how it is written and read.

    <state dir>/tunnels/<host>/<tunnel>/
        spec.json        the Tunnel to run; written by apply, read by supervisor and forwarder
        supervisor.lock  flocked by the live supervisor for its whole life: at most one runs
        supervisor.json  supervisor: pid, state (running/failed), restarts, last exit
        stats.json       forwarder: connection state, peer, counters, drops, last error
        forwarder.log    forwarder and supervisor log, bounded (rotated at LOG_BYTES)

Every file here is written by root (apply and the supervisor) in directories only root can
write: the forwarder runs unprivileged and sends its counters and log lines to the
supervisor through pipes. Every JSON file is replaced through files.atomic_write, so a
reader never sees half a file, even after a SIGKILL or a power cut, and is read through
files.read_regular, never from a FIFO or through a link.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from enum import StrEnum
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..files import FileError, atomic_write, read_regular
from ..model import RunState, Tunnel, tunnel_from_dict

SPEC, LOCK, SUPERVISOR, STATS, LOG = "spec.json", "supervisor.lock", "supervisor.json", "stats.json", "forwarder.log"
LOG_BYTES = 256 * 1024
STALE_AFTER = 5.0  # seconds without a report from a forwarder (it reports every second): it is stuck
DEVICE_GONE = 3  # a forwarder's exit status when its device was deleted under it


def host_dir(state_dir: Path, host: str) -> Path:
    return state_dir / "tunnels" / host.replace("/", "_")


def write_json(path: Path, data: Any) -> None:
    """Through the one atomic write: fsynced, and never through a link planted at a temporary name."""
    atomic_write(path, json.dumps(data).encode(), mode=0o644)


def read_json(path: Path) -> Any:
    """None when the file is missing, not (yet) valid JSON, or not a regular file: a FIFO or a
    link put here must neither block the reader nor lead it elsewhere."""
    try:
        return json.loads(read_regular(path))
    except (FileError, ValueError):
        return None


def supervisor_alive(run_dir: Path) -> bool:
    """True while some process holds the supervisor lock: a fact the kernel keeps, not a pid guess."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _run_dirs(state_dir: Path, host: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each tunnel directory of the host that has a spec, with the spec."""
    base = host_dir(state_dir, host)
    for run_dir in sorted(base.iterdir()) if base.is_dir() else ():
        spec = read_json(run_dir / SPEC)
        if spec is not None:
            yield run_dir, spec


def observe(state_dir: Path, host: str) -> tuple[Tunnel, ...]:
    """The tunnels set up on `host`, each with the state of its supervisor."""
    out = []
    for run_dir, spec in _run_dirs(state_dir, host):
        if not supervisor_alive(run_dir):
            state = RunState.STOPPED
        else:
            info = read_json(run_dir / SUPERVISOR) or {}
            state = RunState.FAILED if info.get("state") == RunState.FAILED else RunState.RUNNING
        try:
            out.append(tunnel_from_dict(spec, state))
        except (KeyError, ValueError):
            continue  # written by another version: the plan starts it afresh
    return tuple(out)


class Health(StrEnum):
    """What `status` says of a tunnel."""

    STARTING = "starting"  # the supervisor runs, its forwarder has not reported yet
    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNRESPONSIVE = "unresponsive"  # the forwarder stopped reporting (stopped, or stuck)
    FAILED = "failed"  # crashed repeatedly; the supervisor gave up until the next apply
    STOPPED = "stopped"


def health(alive: bool, sup: dict[str, Any], stats: dict[str, Any], now: float) -> Health:
    if not alive:
        return Health.STOPPED
    if sup.get("state") == RunState.FAILED:
        return Health.FAILED
    if not sup.get("forwarder_pid") or "state" not in stats:
        return Health.STARTING
    at = stats.get("at")
    if isinstance(at, int | float) and now - at > STALE_AFTER:
        return Health.UNRESPONSIVE
    return Health.CONNECTED if stats.get("state") == Health.CONNECTED else Health.CONNECTING


def status(state_dir: Path, host: str) -> list[dict[str, Any]]:
    """What `provision status` shows, per tunnel."""
    out = []
    now = time.time()
    for run_dir, spec in _run_dirs(state_dir, host):
        sup = read_json(run_dir / SUPERVISOR) or {}
        stats = read_json(run_dir / STATS) or {}
        if not isinstance(stats, dict):
            stats = {}
        alive = supervisor_alive(run_dir)
        state = health(alive, sup, stats, now)
        out.append({
            "host": host, "tunnel": spec["name"], "device": spec["device"], "transport": spec["transport"],
            "role": spec["role"], "endpoint": spec["endpoint"], "state": state.value,
            "encrypted": spec.get("private_key_file") is not None, "compress": bool(spec.get("compress")),
            "wireguard": spec.get("device_type") == "tun" and spec.get("transport") == "udp",
            "peer_key": spec.get("peer_public_key"), "handshakes": stats.get("handshakes", 0),
            "last_handshake": stats.get("last_handshake"), "since": stats.get("since"),
            "last_error_at": stats.get("last_error_at"),
            "user": spec.get("user"),
            "pid": sup.get("forwarder_pid") if alive else None, "restarts": sup.get("restarts", 0),
            "peer": stats.get("peer"), "rx_packets": stats.get("rx_packets", 0), "rx_bytes": stats.get("rx_bytes", 0),
            "tx_packets": stats.get("tx_packets", 0), "tx_bytes": stats.get("tx_bytes", 0),
            "drops": stats.get("drops", {}), "datapath": stats.get("datapath"),
            "last_error": (sup.get("last_error") if state == "failed" else None) or stats.get("last_error")
            or sup.get("last_error"),
        })
    return out


def die_with_parent(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (PR_SET_PDEATHSIG):
    a forwarder never outlives its supervisor, nor a sending process its forwarder."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def set_command_line(args: list[str]) -> None:
    """Rewrite what ps and /proc/PID/cmdline show for this process (as setproctitle does: in the
    memory the kernel reads them from). A forwarder forked from its supervisor shows itself as
    the program it would have been, so that ps, pgrep and people can tell the two apart. Only
    ever shorter than the original, so it stays inside the original arguments' memory."""
    import ctypes

    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
    except (OSError, IndexError, ValueError):
        return
    data = b"\0".join(a.encode() for a in args) + b"\0"
    if not 0 < len(data) <= end - start:
        return
    ctypes.memset(start, 0, end - start)
    ctypes.memmove(start, data, len(data))
