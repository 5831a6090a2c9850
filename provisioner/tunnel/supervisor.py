"""Keeping forwarders running after `provision apply` exits.

The design: one small supervisor process per tunnel (`python -m provisioner.tunnel.supervisor
RUN_DIR`), started by apply in the host's network namespace, in a session of its own. It
runs the forwarder as its child and restarts it when it dies: after 0.1 s, doubling up to
5 s while it keeps crashing; after 5 crashes within a minute it gives up and shows `failed`
until the next apply restarts it. The forwarder gets SIGTERM if its supervisor dies
(PR_SET_PDEATHSIG), so a forwarder is never left orphaned. The supervisor is the tunnel's
privileged half: it attaches to the device and reads the key, and hands both to each
forwarder it starts (which drops root before it hears the network); it writes the
forwarder's counters and log lines, which arrive through pipes.

No daemon to install, no control socket: the reconcile observes a supervisor through the
flock it holds on `supervisor.lock` (a fact the kernel keeps, unlike a pid file), starts
one per tunnel that should run, stops one with SIGTERM, and asks one to restart its
forwarder with new keys with SIGHUP (the device stays attached meanwhile). The lock also makes a second supervisor for the same tunnel exit at once, so
repeated applies never duplicate one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import logging.handlers
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from .. import keys
from ..errors import ForwarderError
from ..kernel import tun
from ..model import DeviceType, RunState, Transport, Tunnel, tunnel_from_dict, tunnel_to_dict
from . import fastpath, forwarder, privileges, runtime

CRASHES_BEFORE_FAILED = 5
CRASH_WINDOW = 60.0  # seconds
HEALTHY_AFTER = 10.0  # a forwarder that ran this long resets the backoff
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0

MAX_LINE = 64 * 1024

log = logging.getLogger("provision.supervisor")
forwarder_log = logging.getLogger("provision.forwarder-output")  # lines already formatted by the forwarder


# ---------------------------------------------------------------- used by apply


class Forwarders:
    """The forwarders of one host, as apply starts and stops them (each step has an inverse)."""

    def __init__(self, state_dir: Path, host: str):
        self.host = host
        self.base = runtime.host_dir(state_dir, host)

    def _error(self, t: Tunnel, message: str) -> ForwarderError:
        return ForwarderError(self.host, message, resource=f"tunnel {t.name}")

    def start(self, t: Tunnel) -> None:
        if t.user is None:  # the forwarder runs as the default user: it must exist before it drops to it
            try:
                privileges.ensure_default_user()
            except privileges.PrivilegeError as exc:
                raise self._error(t, str(exc)) from None
        run_dir = self.base / t.name
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.base.parent, 0o700)
        if runtime.supervisor_alive(run_dir):
            raise self._error(t, "a supervisor for this tunnel is already running")
        for stale in (runtime.SUPERVISOR, runtime.STATS):
            (run_dir / stale).unlink(missing_ok=True)
        runtime.write_json(run_dir / runtime.SPEC, tunnel_to_dict(t))
        subprocess.Popen([sys.executable, "-m", "provisioner.tunnel.supervisor", str(run_dir)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True, env=_child_env())
        self._await_forwarder(t, None, f"the supervisor did not start within {START_TIMEOUT:.0f} s "
                                       f"(see {run_dir / runtime.LOG})")

    def rekey(self, t: Tunnel) -> None:
        """New keys for a running forwarder: the supervisor restarts it with them (see
        Supervisor.on_sighup) and keeps the device attached, so the tunnel is down for one handshake."""
        run_dir = self.base / t.name
        info = runtime.read_json(run_dir / runtime.SUPERVISOR) or {}
        pid, old = int(info.get("pid") or 0), info.get("forwarder_pid")
        if not pid or not runtime.supervisor_alive(run_dir):
            raise self._error(t, "its supervisor is not running")
        runtime.write_json(run_dir / runtime.SPEC, tunnel_to_dict(t))
        _kill(pid, signal.SIGHUP)
        self._await_forwarder(t, old, f"the forwarder was not restarted with the new key within {START_TIMEOUT:.0f} s")

    def _await_forwarder(self, t: Tunnel, old: int | None, late: str) -> None:
        """Until the supervisor records a running forwarder other than `old`; raises its recorded
        reason if it records one and no forwarder, or `late` after START_TIMEOUT."""
        run_dir = self.base / t.name
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            info = runtime.read_json(run_dir / runtime.SUPERVISOR) or {}
            pid = info.get("forwarder_pid")
            if pid and pid != old and runtime.supervisor_alive(run_dir):
                return
            if info.get("last_error") and not pid:
                raise self._error(t, info["last_error"])
            time.sleep(0.02)
        raise self._error(t, late)

    def stop(self, t: Tunnel) -> None:
        run_dir = self.base / t.name
        info = runtime.read_json(run_dir / runtime.SUPERVISOR) or {}
        if runtime.supervisor_alive(run_dir):
            pid = int(info.get("pid") or 0)
            if pid:
                _kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while runtime.supervisor_alive(run_dir) and time.monotonic() < deadline:
                time.sleep(0.02)
            if runtime.supervisor_alive(run_dir):
                for p in (pid, int(info.get("forwarder_pid") or 0)):
                    if p:
                        _kill(p, signal.SIGKILL)
                time.sleep(0.1)
                if runtime.supervisor_alive(run_dir):
                    raise self._error(t, f"the supervisor (pid {pid}) did not stop")
        shutil.rmtree(run_dir, ignore_errors=True)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _child_env() -> dict[str, str]:
    """The child must import this very provisioner package, wherever it was run from."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# ---------------------------------------------------------------- the supervisor process


class Supervisor:
    """Runs one forwarder, and hands it the device and its keys.

    The forwarder never holds root while it talks to the network, so the supervisor attaches
    to the device once (and keeps its descriptor, so the device keeps its carrier across
    forwarder restarts) and reads the key files, and gives both to each forwarder it starts,
    on its stdin. On SIGHUP (new keys) it restarts the forwarder, which reads them afresh: an
    old key is never accepted once a new one is given.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.stopping = False
        self.reloading = False
        self.child: Child | None = None
        self.restarts = 0
        self.crashes: list[float] = []
        self.last_error: str | None = None
        self.device_fd: int | None = None
        self.offloads = False

    def record(self, state: RunState) -> None:
        runtime.write_json(self.run_dir / runtime.SUPERVISOR, {
            "pid": os.getpid(), "forwarder_pid": self.child.pid if self.child else None, "state": str(state),
            "restarts": self.restarts, "last_error": self.last_error})

    def keep_stats(self, pipe: IO[bytes]) -> None:
        """The forwarder's counters, a JSON line a second, into stats.json. The forwarder runs
        unprivileged and writes no files: what it says is bounded and parsed, never trusted."""
        for line in iter(lambda: pipe.readline(MAX_LINE), b""):
            try:
                stats = json.loads(line)
            except ValueError:
                continue
            if isinstance(stats, dict):
                runtime.write_json(self.run_dir / runtime.STATS, stats)

    def keep_log(self, pipe: IO[bytes]) -> None:
        """The forwarder's log lines (and a crash's traceback) into the bounded log."""
        for line in iter(lambda: pipe.readline(MAX_LINE), b""):
            forwarder_log.info("%s", line.decode(errors="replace").rstrip("\n"))

    def grant(self, fd: int) -> bytes:
        """The JSON line a new forwarder reads on its stdin (forwarder.Grant): the device's
        descriptor, this host's private key and the tunnel's pre-shared key if it has one
        (base64); or why it cannot have them."""
        spec = runtime.read_json(self.run_dir / runtime.SPEC) or {}
        grant: dict[str, Any] = {"device_fd": fd, "offloads": self.offloads}
        last = runtime.read_json(self.run_dir / runtime.STATS)
        if isinstance(last, dict) and isinstance(last.get("peer"), str):
            grant["endpoint"] = last["peer"][:64]  # where the peer was: checked by the forwarder
        try:
            if spec.get("private_key_file"):
                grant["private_key"] = keys.encode(keys.read_private(spec["private_key_file"]))
                if spec.get("psk_file"):
                    grant["psk"] = keys.encode(keys.read_psk(spec["psk_file"]))
        except keys.KeyFileError as exc:
            return json.dumps({"error": str(exc)}).encode() + b"\n"
        return json.dumps(grant).encode() + b"\n"

    def on_sighup(self, *_: Any) -> None:
        """A new spec with new keys: restart the forwarder (it is given them afresh)."""
        self.reloading = True
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    def on_sigterm(self, *_: Any) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    def device(self) -> int:
        """Our descriptor on the device, attached once and handed to every forwarder we start."""
        if self.device_fd is None:
            spec = tunnel_from_dict(runtime.read_json(self.run_dir / runtime.SPEC) or {})
            flags = tun.flags_for(spec.device_type, spec.pi, spec.vnet_hdr, spec.multi_queue)
            # TSO on where the forwarder takes super-packets: over TCP as they are; over UDP, an
            # encrypted tun (WireGuard's form) cuts them into packets as it seals them, on the
            # compiled datapath (in Python, cutting costs more than the kernel's TSO saves).
            offloads = spec.transport is Transport.TCP or (
                spec.device_type is DeviceType.TUN and spec.secure and fastpath.DATAPATH is fastpath.Datapath.COMPILED)
            self.device_fd, self.offloads = tun.attach(spec.device, flags, offloads=offloads)
        return self.device_fd

    def forget_device(self) -> None:
        if self.device_fd is not None:
            os.close(self.device_fd)
            self.device_fd = None

    def run(self) -> int:
        delay = 0.1
        while not self.stopping:
            started = time.monotonic()
            self.reloading = False
            try:
                fd = self.device()
            except (tun.AttachError, KeyError, ValueError) as exc:
                self.child, self.last_error = None, f"forwarder not started: {exc}"
                self.record(RunState.RUNNING)  # apply's start() reads the reason from here
            else:
                code = self.run_forwarder(fd)
                if self.stopping:
                    break
                if self.reloading:  # asked for (new keys): not a crash, and no waiting
                    log.info("restarting the forwarder with new keys")
                    continue
                stats = runtime.read_json(self.run_dir / runtime.STATS) or {}
                how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
                self.last_error = f"forwarder {how}" + (f": {stats['last_error']}" if stats.get("last_error") else "")
                if code == runtime.DEVICE_GONE:
                    self.forget_device()
            ran = time.monotonic() - started
            log.warning("%s after %.1f s; restarting", self.last_error, ran)
            self.restarts += 1
            now = time.monotonic()
            self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW] + [now]
            if len(self.crashes) >= CRASHES_BEFORE_FAILED:
                self.child = None
                self.record(RunState.FAILED)
                log.error("%d crashes within %.0f s: giving up until the next apply", len(self.crashes),
                          CRASH_WINDOW)
                while not self.stopping:
                    signal.pause()
                break
            delay = 0.1 if ran > HEALTHY_AFTER else min(delay * 2, 5.0) if self.restarts > 1 else 0.1
            time.sleep(delay)
        log.info("stopped")
        return 0

    def run_forwarder(self, fd: int) -> int:
        """One forwarder, from start to exit; its exit status (negative: the signal)."""
        grant = self.grant(fd)  # (it reads where the last forwarder's peer was, from its counters)
        (self.run_dir / runtime.STATS).unlink(missing_ok=True)  # the last forwarder's counters are not this one's
        self.child = child = Child(self.run_dir, fd)
        assert child.stdin is not None and child.stdout is not None and child.stderr is not None
        try:
            child.stdin.write(grant)
            child.stdin.close()
        except OSError:
            pass  # it died already: its status says why
        pumps = [threading.Thread(target=self.keep_stats, args=(child.stdout,), daemon=True),
                 threading.Thread(target=self.keep_log, args=(child.stderr,), daemon=True)]
        for pump in pumps:
            pump.start()
        self.record(RunState.RUNNING)
        code = child.wait()
        for pump in pumps:  # the pipes end with the forwarder (and its sending process)
            pump.join(timeout=1.0)
        return code


class Child:
    """A forwarder forked from its supervisor, which has imported the forwarder's modules already:
    a restart costs a fork (milliseconds), not a Python start-up (0.3 s on an idle host, several
    seconds on a busy one). The child keeps nothing of the supervisor's but the device: every
    other descriptor is closed and logging starts afresh before forwarder.main runs; it drops
    root there, as it did when it was a program of its own."""

    def __init__(self, run_dir: Path, device_fd: int):
        r0, w0 = os.pipe()
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            code = 1
            try:
                os.dup2(r0, 0)
                os.dup2(w1, 1)
                os.dup2(w2, 2)
                for name in os.listdir("/proc/self/fd"):
                    if int(name) not in (0, 1, 2, device_fd):
                        try:
                            os.close(int(name))
                        except OSError:
                            pass
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                runtime.die_with_parent(signal.SIGTERM)
                runtime.set_command_line([sys.executable, "-m", "provisioner.tunnel.forwarder", str(run_dir)])
                sys.stdin = open(0, closefd=False)  # noqa: SIM115
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                logging.root.handlers.clear()
                code = forwarder.main([str(run_dir)])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        for end in (r0, w1, w2):
            os.close(end)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = os.fdopen(w0, "wb")
        self.stdout = os.fdopen(r1, "rb")
        self.stderr = os.fdopen(r2, "rb")

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self) -> int:
        while True:
            code = self._reap(0)
            if code is not None:
                return code

    def terminate(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


class _LogFormat(logging.Formatter):
    """The supervisor's own records get a prefix; the forwarder's lines come with theirs."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == forwarder_log.name:
            return record.getMessage()
        return super().format(record)


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0])
    lock = os.open(run_dir / runtime.LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another supervisor runs this tunnel: never two
    handler = logging.handlers.RotatingFileHandler(run_dir / runtime.LOG, maxBytes=runtime.LOG_BYTES, backupCount=1)
    handler.setFormatter(_LogFormat("%(asctime)s supervisor[%(process)d] %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    supervisor = Supervisor(run_dir)
    signal.signal(signal.SIGTERM, supervisor.on_sigterm)
    signal.signal(signal.SIGHUP, supervisor.on_sighup)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
