"""Where a host's tunnels keep their state, and how it is written and read.

    <state dir>/tunnels/<host>/
        supervisor.lock   flocked by the host's live supervisor for its whole life: at most one runs
        supervisor.json   supervisor: its pid, the data planes, and per tunnel the hash of the spec
                          it runs, its state (starting, running, waiting, failed) and last error
        stats.json        per tunnel, the data plane's last report: state, peer, counters, drops
        tunnels.log       the supervisor's and the data plane's log, bounded (rotated at LOG_BYTES)
        tunnels.json      the tunnels to run, {name: spec}: written by apply (once per apply), read
                          by the supervisor when signalled

Every file here is written by root (apply and the supervisor) in directories only root can
write: the data plane runs unprivileged and sends its counters and log lines to the
supervisor through pipes. Every JSON file is replaced through files.atomic_write, so a
reader never sees half a file, even after a SIGKILL or a power cut, and is read through
files.read_regular, never from a FIFO or through a link.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path

from ..files import FileError, atomic_write, open_private, parse_json, read_regular
from ..hints import Any
from ..lock import is_pid
from ..model import RunState, Tunnel, tunnel_from_dict

WANTED, LOCK, SUPERVISOR, STATS, LOG = "tunnels.json", "supervisor.lock", "supervisor.json", "stats.json", "tunnels.log"
LOG_BYTES = 1024 * 1024
STALE_AFTER = 8.0  # seconds without a report of a tunnel (a quiet one is reported every 4 s, kept within 1 s): stuck


def host_dir(state_dir: Path, host: str) -> Path:
    return state_dir / "tunnels" / host.replace("/", "_")


def spec_hash(spec: dict[str, Any]) -> str:
    """How apply and the supervisor agree on which spec of a tunnel runs."""
    import hashlib  # here: only with tunnels (fingerprint.py)

    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def wanted(base: Path) -> dict[str, dict[str, Any]]:
    """The host's tunnels.json: {name: spec}, the well-formed entries only (a file of another
    version, or one put here by someone else, must not crash the reader)."""
    d = read_dict(base / WANTED)
    return {k: v for k, v in d.items() if isinstance(v, dict) and v.get("name") == k and len(k) <= 64}


def write_json(path: Path, data: Any) -> None:
    """Through the one atomic write: fsynced, and never through a link planted at a temporary name."""
    atomic_write(path, json.dumps(data).encode(), mode=0o644)


def read_json(path: Path) -> Any:
    """None when the file is missing, not (yet) valid JSON, or not a regular file: a FIFO or a
    link put here must neither block the reader nor lead it elsewhere."""
    try:
        return parse_json(read_regular(path))
    except (FileError, ValueError):
        return None


def read_dict(path: Path) -> dict[str, Any]:
    d = read_json(path)
    return d if isinstance(d, dict) else {}


def supervisor_alive(base: Path) -> bool:
    """True while some process holds the host's supervisor lock: a fact the kernel keeps, not a pid guess."""
    try:
        fd = os.open(base / LOCK, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
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


SUPERVISOR_MODULE = "provisioner.tunnel.supervisor"


def supervisor_command(base: Path) -> list[str]:
    """How control.py starts a host's supervisor, and so how signal_supervisor knows one."""
    return [sys.executable, "-m", SUPERVISOR_MODULE, str(base)]


def signal_supervisor(base: Path, sig: int) -> bool:
    """Send `sig` to the supervisor by the pid it recorded, once that pid is known to be this
    host's supervisor (its command line names this directory); True when sent. The record
    outlives a supervisor killed outright, and the pid may since be any other process's, which
    a SIGHUP would end (this machine wraps at 32 768), or another host's supervisor's. A pidfd
    holds the process checked, so one that takes the pid between the check and the signal is
    never sent it; where there are no pidfds (a kernel before 5.3, a seccomp filter) the check
    is made just before a kill."""
    pid = read_dict(base / SUPERVISOR).get("pid")
    if not is_pid(pid):
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:  # gone
        return False
    except (OSError, AttributeError):  # no pidfds here (AttributeError: a Python built without them)
        pidfd = -1
    try:
        if not _supervises(pid, base):
            return False
        if pidfd < 0:
            os.kill(pid, sig)
        else:
            import signal

            signal.pidfd_send_signal(pidfd, sig)
        return True
    except OSError:  # it ended meanwhile
        return False
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _supervises(pid: int, base: Path) -> bool:
    """The process was started by supervisor_command for `base`: the same directory, whichever
    way its command line spelt it (an older version's may be relative to its working directory)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        args = f.read(8192).split(b"\0")
    if args[1:3] != [b"-m", SUPERVISOR_MODULE.encode()] or len(args) < 4 or not args[3]:
        return False
    return os.path.samefile(os.path.join(f"/proc/{pid}/cwd", os.fsdecode(args[3])), base)


def open_lock(base: Path) -> int:
    """supervisor.lock, as the supervisor opens it to hold it (and apply, before starting one,
    to say why it cannot be: the supervisor's own stderr goes nowhere)."""
    return open_private(base / LOCK, os.O_RDWR | os.O_CREAT, 0o600)


def open_log(base: Path) -> int:
    """tunnels.log, for appending: root writes the data plane's lines into it."""
    return open_private(base / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def tunnel_records(base: Path) -> dict[str, dict[str, Any]]:
    tunnels = read_dict(base / SUPERVISOR).get("tunnels")
    return {k: v for k, v in tunnels.items() if isinstance(v, dict)} if isinstance(tunnels, dict) else {}


def observe(state_dir: Path, host: str) -> tuple[Tunnel, ...]:
    """The tunnels set up on `host`, each with its state: running only while the supervisor
    lives and runs exactly the spec apply wrote."""
    base = host_dir(state_dir, host)
    specs = wanted(base)
    if not specs:  # most hosts: no tunnels, and no supervisor lock to try
        return ()
    alive = supervisor_alive(base)
    records = tunnel_records(base) if alive else {}
    out = []
    for name, spec in sorted(specs.items()):
        record = records.get(name, {})
        if not alive or record.get("spec") != spec_hash(spec):
            state = RunState.STOPPED
        else:
            state = RunState.FAILED if record.get("state") == RunState.FAILED else RunState.RUNNING
        try:
            out.append(tunnel_from_dict(spec, state))
        except (KeyError, ValueError):
            continue  # written by another version: the plan starts it afresh
    return tuple(out)


class Health(StrEnum):
    """What `status` says of a tunnel."""

    STARTING = "starting"  # the supervisor runs it, the data plane has not reported it yet
    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNRESPONSIVE = "unresponsive"  # the data plane stopped reporting it (stopped, or stuck)
    FAILED = "failed"  # could not start, or crashed repeatedly: given up until the next apply
    STOPPED = "stopped"


def health(alive: bool, record: dict[str, Any], stats: dict[str, Any], now: float) -> Health:
    if not alive or not record:
        return Health.STOPPED
    if record.get("state") == RunState.FAILED:
        return Health.FAILED
    if record.get("state") != RunState.RUNNING or "state" not in stats:
        return Health.STARTING
    at = stats.get("at")
    if isinstance(at, int | float) and now - at > STALE_AFTER:
        return Health.UNRESPONSIVE
    return Health.CONNECTED if stats.get("state") == Health.CONNECTED else Health.CONNECTING


def status(state_dir: Path, host: str) -> list[dict[str, Any]]:
    """What `provision status` shows, per tunnel."""
    base = host_dir(state_dir, host)
    alive = supervisor_alive(base)
    records = tunnel_records(base)
    all_stats = read_dict(base / STATS)
    out = []
    now = time.time()
    for name, spec in sorted(wanted(base).items()):
        record = records.get(name, {})
        stats = all_stats.get(name)
        stats = stats if isinstance(stats, dict) else {}
        state = health(alive, record, stats, now)
        out.append({
            "host": host, "tunnel": spec["name"], "device": spec["device"], "transport": spec["transport"],
            "role": spec["role"], "endpoint": spec["endpoint"], "state": state.value,
            "encrypted": spec.get("private_key_file") is not None, "compress": bool(spec.get("compress")),
            "wireguard": spec.get("device_type") == "tun" and spec.get("transport") == "udp",
            "peer_key": spec.get("peer_public_key"), "handshakes": stats.get("handshakes", 0),
            "last_handshake": stats.get("last_handshake"), "since": stats.get("since"),
            "started": stats.get("started"), "at": stats.get("at"), "last_error_at": stats.get("last_error_at"),
            "user": spec.get("user"), "datapath": stats.get("datapath"),
            "pid": record.get("pid") if alive else None, "restarts": record.get("restarts", 0),
            "peer": stats.get("peer"), "rx_packets": stats.get("rx_packets", 0), "rx_bytes": stats.get("rx_bytes", 0),
            "tx_packets": stats.get("tx_packets", 0), "tx_bytes": stats.get("tx_bytes", 0),
            "drops": stats.get("drops", {}),
            "last_error": (record.get("last_error") if state == "failed" else None) or stats.get("last_error")
            or record.get("last_error"),
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
