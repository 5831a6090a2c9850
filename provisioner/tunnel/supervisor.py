"""Keeping a host's tunnels running after `provision apply` exits: one supervisor per host.

`python -m provisioner.tunnel.supervisor HOST_DIR`, started by apply in the host's network
namespace, in a session of its own, holds HOST_DIR/supervisor.lock for its whole life (the
kernel's fact that it runs: a second one exits at once). It is the privileged half of the
host's tunnels: for each tunnel it attaches to the device (and keeps that descriptor, so the
device keeps its carrier whatever happens to the data plane), binds the socket and reads the
keys, and hands all of it to the data plane (dataplane.py) over their channel (channel.py).

What to run is the spec.json of each tunnel directory under HOST_DIR, written by apply; on
SIGHUP the supervisor looks again and changes only what changed: a new tunnel is added, a
removed one removed, a changed one (port, peer, keys) removed and added. Every other tunnel
is not touched. What it did is in supervisor.json (per tunnel: the hash of the spec it runs,
its state, its last error), which apply waits on; the data plane's counters go to stats.json,
and its log, with the supervisor's own, to tunnels.log.

The data plane is a child forked from here (milliseconds, not a Python start-up), one per
`user:`/`group:` among the tunnels (one, unless tunnels name their own users). When it dies it
is forked again and given every tunnel afresh: after 0.1 s, doubling up to 5 s while it keeps
crashing; after 5 crashes within a minute it is given up as `failed` until the next apply.
A data plane gets SIGTERM if its supervisor dies (PR_SET_PDEATHSIG), so none is orphaned.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .. import keys, tuntap
from ..files import parse_json
from ..hints import Any
from ..model import DeviceType, Transport, Tunnel, tunnel_from_dict
from . import dataplane, fastpath, runtime, tcp, udp
from .channel import Channel, ChannelClosed, Message, Op
from .drops import Drop

CRASHES_BEFORE_FAILED = 5
CRASH_WINDOW = 60.0  # seconds
HEALTHY_AFTER = 10.0  # a data plane that ran this long resets the backoff
FIRST_DELAY, MAX_DELAY = 0.1, 5.0
STATS_EVERY = 1.0  # seconds between writes of stats.json, at most, while only counters change
URGENT_EVERY = 0.05  # and when some tunnel's state changed
IDLE_GRACE = 10.0  # seconds a supervisor started with nothing to run waits for apply's signal
MAX_LINE = 64 * 1024
F_SETPIPE_SZ = 1031
COUNTERS_PIPE = 1 << 20  # the default pipe-max-size: 2000 tunnels' lines
_DROPS = frozenset(d.value for d in Drop)

log = logging.getLogger("provision.supervisor")
plane_log = logging.getLogger("provision.data-plane-output")  # lines already formatted by the data plane

Identity = tuple[str | None, str | None]  # (user, group) a data plane runs as


class State(StrEnum):
    """Where one tunnel is, as supervisor.json says it."""

    STARTING = "starting"  # handed to the data plane, not yet confirmed
    RUNNING = "running"
    WAITING = "waiting"  # its data plane is being restarted
    FAILED = "failed"  # could not start, its device went away, or its data plane was given up


@dataclass
class Entry:
    """One tunnel, as the supervisor keeps it (its own bookkeeping: changed in place)."""

    name: str
    tunnel: Tunnel
    spec: dict[str, Any]
    hash: str
    state: State = State.STARTING
    error: str | None = None
    device_fd: int | None = None
    device_key: tuple[str, int] | None = None  # (name, flags) the descriptor was attached with
    offloads: bool = False
    removing: bool = False  # a REMOVE was sent: wait for REMOVED before anything else
    replacement: Entry | None = None  # what runs once the REMOVE is done
    ran: bool = False  # it has run: a failure now is retried (with backoff), not reported to apply
    restarts: int = 0
    crashes: list[float] = field(default_factory=list)
    retry_at: float | None = None

    @property
    def identity(self) -> Identity:
        return (self.tunnel.user, self.tunnel.group)


@dataclass
class Plane:
    """One data-plane process and what the supervisor knows of it."""

    identity: Identity
    pid: int = 0
    channel: Channel | None = None
    stdout: int = -1
    stderr: int = -1
    started: float = 0.0
    restarts: int = 0
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None
    failed: bool = False
    partial: dict[int, bytes] = field(default_factory=dict)  # a line not yet ended, per pipe


class Supervisor:
    def __init__(self, host_dir: Path):
        self.host_dir = host_dir
        self.entries: dict[str, Entry] = {}
        self.planes: dict[Identity, Plane] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        self.rescan_wanted = True
        self.signalled = False  # told to look at least once (until then, apply may still be writing)
        self.born = time.monotonic()
        self.stopping = False
        self.dirty = True
        self.stats_dirty = self.stats_urgent = False
        self.stats_written = 0.0
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ------------------------------------------------------------ what to run

    def rescan(self) -> None:
        """tunnels.json against what runs: only the difference is acted on."""
        self.rescan_wanted = False
        wanted: dict[str, Entry] = {}
        for name, spec in runtime.wanted(self.host_dir).items():
            digest = runtime.spec_hash(spec)
            old = self.entries.get(name)
            if old is not None and old.hash == digest and old.state is not State.FAILED:
                wanted[name] = old
                continue
            try:
                t = tunnel_from_dict(spec)
            except (ValueError, KeyError, TypeError):
                continue  # not ours to run (another version's): apply starts it afresh
            wanted[name] = Entry(name, t, spec, digest)
        for name in [n for n in self.entries if n not in wanted]:
            self.retire(self.entries[name], None)
        for name, entry in wanted.items():
            old = self.entries.get(name)
            if old is entry:
                continue
            if old is not None and old.hash == entry.hash and old.state is not State.FAILED:
                continue
            if old is not None:
                self.retire(old, entry)
            else:
                self.entries[name] = entry
                self.launch(entry)
        for plane in self.planes.values():  # an apply brings a given-up data plane back
            if plane.failed:
                plane.failed, plane.crashes, plane.restart_at = False, [], time.monotonic()
        self.dirty = True

    def retire(self, old: Entry, replacement: Entry | None) -> None:
        """Stop a tunnel (and start its replacement once its socket is closed). A tunnel with no
        replacement is gone at once: the data plane ends it in its own time (a TCP tunnel's
        threads may be in a connect of up to 5 s), and nothing waits for its port."""
        plane = self.planes.get(old.identity)
        if replacement is None and not old.removing:
            if old.state in (State.STARTING, State.RUNNING) and plane is not None and plane.channel is not None:
                try:
                    plane.channel.send(Op.REMOVE, old.name)
                except ChannelClosed:
                    pass
            self.finish_removal(old, None)
            return
        if old.state in (State.STARTING, State.RUNNING) and plane is not None and plane.channel is not None \
                and not old.removing:
            old.removing, old.replacement = True, replacement
            try:
                plane.channel.send(Op.REMOVE, old.name)
                return
            except ChannelClosed:
                pass
        if old.removing:
            old.replacement = replacement
            return
        self.finish_removal(old, replacement)

    def finish_removal(self, old: Entry, replacement: Entry | None) -> None:
        if replacement is None:
            if old.device_fd is not None:
                os.close(old.device_fd)
            self.entries.pop(old.name, None)
            self.stats.pop(old.name, None)
            self.stats_dirty = True
        else:  # the device stays attached (and keeps its carrier) unless its flags changed
            replacement.device_fd, replacement.device_key = old.device_fd, old.device_key
            replacement.offloads = old.offloads
            self.entries[old.name] = replacement
            self.launch(replacement)
        self.dirty = True

    def launch(self, e: Entry) -> None:
        """Hand the tunnel to its data plane (forked first if there is none)."""
        plane = self.planes.get(e.identity)
        if plane is None:
            self.fork(Plane(e.identity))  # which hands it every tunnel of its identity, this one too
            return
        if plane.channel is None:
            e.state = State.FAILED if plane.failed else State.WAITING
            return
        e.retry_at = None
        try:
            fds, body = self.grant(e)
        except GrantError as exc:
            self.tunnel_failed(e, str(exc))
            return
        try:
            plane.channel.send(Op.ADD, e.name, body, fds)
            e.state = State.STARTING  # (a data plane's crash stays its last error: status shows it)
        except (ChannelClosed, OSError):
            e.state = State.WAITING  # the data plane is dying: it gets this tunnel when forked again
        finally:
            for fd in fds[1:]:
                os.close(fd)  # the socket is the data plane's now; the device descriptor stays ours
        self.dirty = True

    def grant(self, e: Entry) -> tuple[tuple[int, ...], dict[str, Any]]:
        """What the data plane needs and cannot get itself: the device, the bound socket, the keys."""
        t = e.tunnel
        flags = tuntap.flags_for(t.device_type, t.pi, t.vnet_hdr, t.multi_queue)
        if e.device_key != (t.device, flags) or e.device_fd is None:
            if e.device_fd is not None:
                os.close(e.device_fd)
                e.device_fd = None
            try:
                e.device_fd, e.offloads = tuntap.attach(t.device, flags, offloads=wants_offloads(t))
            except tuntap.AttachError as exc:
                raise GrantError(f"forwarder not started: {exc}") from None
            e.device_key = (t.device, flags)
        body: dict[str, Any] = {"spec": e.spec, "offloads": e.offloads}
        last = self.stats.get(e.name, {})
        if isinstance(last.get("peer"), str):
            body["endpoint"] = last["peer"][:64]  # where the peer was: checked by the data plane
        body |= key_grant(e.spec)
        try:
            sock = udp.bind(t) if t.transport is Transport.UDP else tcp.bind(t)
        except OSError as exc:
            raise GrantError(f"cannot bind {t.endpoint}: {exc.strerror or exc}") from None
        dup = os.dup(e.device_fd)  # type: ignore[arg-type]
        if sock is None:
            return (dup,), body
        fd = sock.detach()
        return (dup, fd), body

    # ------------------------------------------------------------ data planes

    def fork(self, plane: Plane) -> None:
        ours, theirs = Channel.pair()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        try:  # room for every tunnel's counters at once (the data plane drops what does not fit)
            fcntl.fcntl(out_w, F_SETPIPE_SZ, COUNTERS_PIPE)
        except OSError:
            pass  # pipe-max-size is lower here: the data plane reports the rest in turn
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            code = 1
            try:
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                keep = theirs.fileno()
                os.set_inheritable(keep, False)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                for name in os.listdir("/proc/self/fd"):
                    if int(name) not in (0, 1, 2, keep):
                        try:
                            os.close(int(name))
                        except OSError:
                            pass
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                signal.set_wakeup_fd(-1)
                runtime.die_with_parent(signal.SIGTERM)
                runtime.set_command_line([sys.executable, "-m", "provisioner.tunnel.dataplane", str(self.host_dir)])
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                logging.root.handlers.clear()
                code = dataplane.main(keep, *plane.identity)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        theirs.close()
        for end in (out_w, err_w):
            os.close(end)
        ours.sock.setblocking(False)
        plane.pid, plane.channel, plane.stdout, plane.stderr = pid, ours, out_r, err_r
        self.planes[plane.identity] = plane
        plane.started, plane.restart_at = time.monotonic(), None
        plane.partial.clear()
        for e in self.entries.values():
            if e.identity == plane.identity and not e.removing and e.state is not State.FAILED:
                self.launch(e)
        self.dirty = True

    def reap(self) -> None:
        for plane in self.planes.values():
            if not plane.pid:
                continue
            try:
                pid, status = os.waitpid(plane.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = plane.pid, 0
            if pid == plane.pid:
                self.plane_died(plane, os.waitstatus_to_exitcode(status))

    def plane_died(self, plane: Plane, code: int) -> None:
        self.drain(plane)
        for fd in (plane.stdout, plane.stderr):
            os.close(fd)
        if plane.channel is not None:
            plane.channel.close()
        plane.pid, plane.channel, plane.stdout, plane.stderr = 0, None, -1, -1
        if self.stopping:
            return
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        now = time.monotonic()
        ran = now - plane.started
        plane.restarts += 1
        plane.crashes = [t for t in plane.crashes if now - t < CRASH_WINDOW] + [now]
        mine = [e for e in self.entries.values() if e.identity == plane.identity]
        for e in mine:
            if e.removing:  # nothing of it runs now: done with it
                e.removing = False
                self.finish_removal(e, e.replacement)
        if len(plane.crashes) >= CRASHES_BEFORE_FAILED:
            plane.failed = True
            why = f"data plane {how}; {len(plane.crashes)} crashes within {CRASH_WINDOW:.0f} s: given up until the next apply"
            log.error("%s", why)
            for e in self.entries.values():
                if e.identity == plane.identity:
                    e.state, e.error = State.FAILED, why
        else:
            delay = FIRST_DELAY if ran > HEALTHY_AFTER or len(plane.crashes) == 1 \
                else min(MAX_DELAY, FIRST_DELAY * 2 ** (len(plane.crashes) - 1))
            plane.restart_at = now + delay
            log.warning("data plane %s after %.1f s; restarting in %.1f s", how, ran, delay)
            for e in self.entries.values():
                if e.identity == plane.identity and e.state is not State.FAILED:
                    e.state, e.error = State.WAITING, f"data plane {how}"
        self.dirty = True

    # ------------------------------------------------------------ what the data plane says

    def on_message(self, plane: Plane, m: Message) -> None:
        for fd in m.fds:  # a data plane has no descriptor to give us
            os.close(fd)
        e = self.entries.get(m.name)
        if e is None or e.identity != plane.identity:
            return
        error = m.body.get("error")
        error = error[:500] if isinstance(error, str) else None
        if m.op is Op.REMOVED or (m.op is Op.FAILED and e.removing):
            if e.removing:
                e.removing = False
                self.finish_removal(e, e.replacement)
            return
        if m.op is Op.ADDED and e.state is State.STARTING:
            e.state, e.ran = State.RUNNING, True
        elif m.op is Op.FAILED:
            if error and "gone" in error and e.device_fd is not None:  # reattach: the old one is detached
                os.close(e.device_fd)
                e.device_fd = None
            self.tunnel_failed(e, error or "the data plane refused it")
        self.dirty = True

    def tunnel_failed(self, e: Entry, why: str) -> None:
        """One tunnel could not start or stopped (its device went away): it alone is retried with
        the data plane's backoff and `failed` rules; one that never ran fails at once (apply says why)."""
        log.warning("%s: %s", e.name, why)
        e.error = why
        self.dirty = True
        if not e.ran:
            e.state = State.FAILED
            return
        now = time.monotonic()
        e.restarts += 1
        e.crashes = [t for t in e.crashes if now - t < CRASH_WINDOW] + [now]
        if len(e.crashes) >= CRASHES_BEFORE_FAILED:
            e.state, e.retry_at = State.FAILED, None
            log.error("%s: %d failures within %.0f s: given up until the next apply", e.name, len(e.crashes),
                      CRASH_WINDOW)
            return
        e.state = State.WAITING
        e.retry_at = now + min(MAX_DELAY, FIRST_DELAY * 2 ** (len(e.crashes) - 1))

    def on_lines(self, plane: Plane, fd: int) -> bool:
        """Counters (stdout) or log lines (stderr); False at the end of the pipe."""
        try:
            data = os.read(fd, 1 << 16)
        except (BlockingIOError, InterruptedError):
            return True
        if not data:
            return False
        lines = (plane.partial.pop(fd, b"") + data).split(b"\n")
        tail = lines.pop()
        if len(tail) <= MAX_LINE:  # an endless line is dropped, not kept
            plane.partial[fd] = tail
        for line in lines:
            if fd == plane.stderr:
                plane_log.info("%s", line[:MAX_LINE].decode(errors="replace"))
                continue
            report = counters_of(line)
            e = self.entries.get(report["tunnel"]) if report is not None else None
            if report is not None and e is not None and e.identity == plane.identity and not e.removing:
                d = report
                last = self.stats.get(e.name, {})
                if any(last.get(k) != d.get(k) for k in ("state", "peer", "handshakes", "started")):
                    self.stats_urgent = True  # a change of state is written at once: status is never behind it
                self.stats[e.name] = d
                self.stats_dirty = True
        return True

    def drain(self, plane: Plane) -> None:
        for fd in (plane.stdout, plane.stderr):
            if fd >= 0:
                os.set_blocking(fd, False)
                while self.on_lines(plane, fd):
                    pass
        if plane.channel is not None:
            try:
                while (m := plane.channel.receive()) is not None:
                    self.on_message(plane, m)
            except ChannelClosed:
                pass

    # ------------------------------------------------------------ records

    def record(self) -> None:
        planes = {p.pid: p for p in self.planes.values()}
        tunnels = {}
        for e in self.entries.values():
            plane = self.planes.get(e.identity)
            tunnels[e.name] = {"spec": e.hash, "state": e.state.value, "last_error": e.error,
                               "pid": plane.pid if plane is not None and plane.pid else None,
                               "restarts": e.restarts + (plane.restarts if plane is not None else 0)}
        runtime.write_json(self.host_dir / runtime.SUPERVISOR, {
            "pid": os.getpid(), "planes": [{"pid": pid, "restarts": p.restarts, "failed": p.failed}
                                           for pid, p in planes.items() if pid],
            "tunnels": tunnels})
        self.dirty = False

    def write_stats(self, now: float) -> None:
        runtime.write_json(self.host_dir / runtime.STATS, self.stats)
        self.stats_dirty = self.stats_urgent = False
        self.stats_written = now

    # ------------------------------------------------------------ the loop

    def on_signal(self, sig: int, _: Any) -> None:
        if sig == signal.SIGHUP:
            self.rescan_wanted = self.signalled = True
        elif sig in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True

    def run(self) -> int:
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, self.on_signal)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.record()  # our pid, at once: apply signals it
        while not self.stopping:
            if self.rescan_wanted:
                self.rescan()
            self.reap()
            now = time.monotonic()
            if not self.entries and (self.signalled or now - self.born > IDLE_GRACE):
                break  # the host has no tunnel left: nothing to keep running
            for plane in self.planes.values():
                if plane.restart_at is not None and plane.restart_at <= now and not plane.failed:
                    self.fork(plane)
            for e in list(self.entries.values()):
                if e.retry_at is not None and e.retry_at <= now:
                    self.launch(e)
            if self.dirty:
                self.record()
            if self.stats_dirty and now - self.stats_written >= (URGENT_EVERY if self.stats_urgent else STATS_EVERY):
                self.write_stats(now)
            self.wait(now)
        for plane in self.planes.values():
            if plane.pid:
                try:
                    os.kill(plane.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for plane in self.planes.values():
            if plane.pid:
                try:
                    os.waitpid(plane.pid, 0)
                except ChildProcessError:
                    pass
        self.record()
        log.info("stopped")
        return 0

    def wait(self, now: float) -> None:
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        owners: dict[int, tuple[Plane, str]] = {}
        for plane in self.planes.values():
            if plane.channel is not None:
                owners[plane.channel.fileno()] = (plane, "channel")
                owners[plane.stdout] = (plane, "lines")
                owners[plane.stderr] = (plane, "lines")
        for fd in owners:
            poller.register(fd, select.POLLIN)
        timeout = 5.0
        restarts = [p.restart_at for p in self.planes.values() if p.restart_at is not None and not p.failed]
        restarts += [e.retry_at for e in self.entries.values() if e.retry_at is not None]
        if restarts:
            timeout = min(timeout, max(0.0, min(restarts) - now))
        if self.stats_dirty:
            every = URGENT_EVERY if self.stats_urgent else STATS_EVERY
            timeout = min(timeout, max(0.0, every - (now - self.stats_written)))
        try:
            events = poller.poll(timeout * 1000)
        except InterruptedError:
            return
        for fd, _ in events:
            if fd == self.wake_r:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
                continue
            plane, kind = owners[fd]
            if plane.channel is None:
                continue  # died while we looked at an earlier descriptor
            if kind == "lines":
                if not self.on_lines(plane, fd):
                    self.reap()
                continue
            try:
                for _ in range(256):
                    m = plane.channel.receive()
                    if m is None:
                        break
                    self.on_message(plane, m)
            except ChannelClosed:
                self.reap()


_COUNTS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "handshakes")
_TIMES = ("since", "started", "at", "last_error_at", "last_handshake")
_TEXTS = {"tunnel": 64, "state": 16, "peer": 64, "peer_key": 64, "last_error": 500, "datapath": 16}


def wants_offloads(t: Tunnel) -> bool:
    """TSO on where the data plane takes super-packets: over TCP as they are; over UDP, an
    encrypted tun (WireGuard's form) cuts them into packets as it seals them, on the compiled
    datapath (in Python, cutting costs more than the kernel's TSO saves)."""
    return t.transport is Transport.TCP or (
        t.device_type is DeviceType.TUN and t.secure and fastpath.DATAPATH is fastpath.Datapath.COMPILED)


def counters_of(line: bytes) -> dict[str, Any] | None:
    """One line of a data plane's counters, or None. The data plane is what the network talks to:
    its lines are bounded and parsed, and only the fields status shows are kept, each of its own
    type and size (a number is a number, a text is short, drops are counted by known reasons). Pure."""
    if len(line) > MAX_LINE:
        return None
    try:
        d = parse_json(line)
    except ValueError:
        return None
    if not isinstance(d, dict) or not isinstance(d.get("tunnel"), str):
        return None
    out: dict[str, Any] = {}
    for k in _COUNTS:
        v = d.get(k, 0)
        out[k] = v if type(v) is int and 0 <= v < 1 << 63 else 0
    for k in _TIMES:
        t = d.get(k)
        out[k] = float(t) if isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t < 1e11 else None
    for k, limit in _TEXTS.items():
        v = d.get(k)
        out[k] = v[:limit] if isinstance(v, str) else None
    drops = d.get("drops")
    out["drops"] = {k: v for k, v in drops.items() if k in _DROPS and type(v) is int and 0 <= v < 1 << 63} \
        if isinstance(drops, dict) else {}
    return out


def key_grant(spec: dict[str, Any]) -> dict[str, str]:
    """This host's private key and the tunnel's pre-shared key, if it has one (base64), as the
    data plane gets them: read here, as root, afresh for every grant (an old key is never
    accepted once a new one is given)."""
    out = {}
    try:
        if spec.get("private_key_file"):
            out["private_key"] = keys.encode(keys.read_private(spec["private_key_file"]))
            if spec.get("psk_file"):
                out["psk"] = keys.encode(keys.read_psk(spec["psk_file"]))
    except keys.KeyFileError as exc:
        raise GrantError(str(exc)) from None
    return out


class GrantError(Exception):
    """What a tunnel needs could not be had (device, socket, keys): that tunnel fails, no other."""


class _LogFormat(logging.Formatter):
    """The supervisor's own records get a prefix; the data plane's lines come with theirs."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == plane_log.name:
            return record.getMessage()
        return super().format(record)


class _PrivateLog(logging.handlers.RotatingFileHandler):
    """The log, opened as the state directory's files are (files.open_private): root appends the
    data plane's lines to it, so a link planted at its name must not lead them into another
    file, nor a FIFO block the supervisor."""

    def _open(self) -> Any:
        return os.fdopen(runtime.open_log(Path(self.baseFilename).parent), "a", encoding=self.encoding,
                         errors=self.errors)


def main(argv: list[str]) -> int:
    host_dir = Path(argv[0])
    lock = runtime.open_lock(host_dir)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another supervisor runs this host's tunnels: never two
    handler = _PrivateLog(host_dir / runtime.LOG, maxBytes=runtime.LOG_BYTES, backupCount=1)
    handler.setFormatter(_LogFormat("%(asctime)s supervisor[%(process)d] %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    return Supervisor(host_dir).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
