"""Apply's side of a host's tunnels: what the transaction calls to start, change and stop them.

Apply never talks to the data plane. It changes the host's tunnels.json ({name: spec}) and
tells the host's supervisor to look (SIGHUP), starting the supervisor first if none runs;
then `settle()` waits until supervisor.json says each of those tunnels runs exactly the spec
written (by its hash) or is gone, or says why not. Steps are noted one by one and written and
settled together: an apply of 500 tunnels is one write and one look by the supervisor. A
supervisor that has to be started is started at the first step, so its start-up (a Python
start) overlaps the rest of the apply.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ..errors import ForwarderError
from ..files import FileError, private_subdirectory
from ..hints import Any
from ..model import Tunnel, tunnel_to_dict
from . import privileges, runtime

START_TIMEOUT = 10.0  # the supervisor's start-up (a Python start, seconds on a busy host), then the tunnels
SETTLE_TIMEOUT = 10.0
POLL = 0.005


class Tunnels:
    """The tunnels of one host, as a transaction starts and stops them (each step has an inverse)."""

    def __init__(self, state_dir: Path, host: str):
        self.host = host
        self.base = runtime.host_dir(state_dir, host)
        self.desired: dict[str, dict[str, Any]] | None = None  # tunnels.json as this apply leaves it
        self.pending: dict[str, str | None] = {}  # tunnel → the spec hash it must run (None: gone)
        self.spawned: subprocess.Popen[bytes] | None = None

    def _error(self, name: str, message: str) -> ForwarderError:
        return ForwarderError(self.host, message, resource=f"tunnel {name}")

    def _wanted(self) -> dict[str, dict[str, Any]]:
        if self.desired is None:
            self.desired = runtime.wanted(self.base)
        return self.desired

    def start(self, t: Tunnel) -> None:
        if t.user is None:  # the data plane runs as the default user: it must exist before it drops to it
            try:
                privileges.ensure_default_user()
            except privileges.PrivilegeError as exc:
                raise self._error(t.name, str(exc)) from None
        spec = tunnel_to_dict(t)
        self._wanted()[t.name] = spec
        self.pending[t.name] = runtime.spec_hash(spec)
        if self.spawned is None and not runtime.supervisor_alive(self.base):
            self._spawn()  # now: its start-up overlaps the rest of the apply

    def rekey(self, t: Tunnel) -> None:
        """New keys: the supervisor replaces the tunnel in the data plane with them (the device
        stays attached), so the tunnel is down for one handshake; no other tunnel notices."""
        self.start(t)

    def stop(self, t: Tunnel) -> None:
        self._wanted().pop(t.name, None)
        self.pending[t.name] = None

    def settle(self) -> dict[str, str]:
        """Write what is wanted, tell the supervisor, and wait for it: {tunnel: why} for each
        pending one that did not come to run (or to stop) as written."""
        if not self.pending:
            return {}
        pending, self.pending = self.pending, {}
        self._made()
        runtime.write_json(self.base / runtime.WANTED, self._wanted())
        spawns = 1 if self.spawned is not None else 0
        self._await_start()
        if not runtime.supervisor_alive(self.base):
            if any(h is not None for h in pending.values()):
                self._spawn()
                self._await_start()
                spawns += 1
        self._poke()
        deadline = time.monotonic() + SETTLE_TIMEOUT
        poked = time.monotonic()
        failures: dict[str, str] = {}
        while pending and time.monotonic() < deadline:
            records = runtime.tunnel_records(self.base)
            for name, want in list(pending.items()):
                record = records.get(name)
                if want is None:
                    if record is None:
                        del pending[name]
                    continue
                if record is None or record.get("spec") != want:
                    continue
                state = record.get("state")
                if state == "running":
                    del pending[name]
                elif state == "failed":
                    failures[name] = str(record.get("last_error") or "it failed")
                    del pending[name]
            if pending:
                if not runtime.supervisor_alive(self.base):  # it ends when the host has no tunnel left
                    for name in [n for n, want in pending.items() if want is None]:
                        del pending[name]
                    if not pending:
                        break
                    if spawns >= 2:
                        for name in pending:
                            failures[name] = f"the supervisor died (see {self.base / runtime.LOG})"
                        pending.clear()
                        break
                    self._spawn()  # it was on its way out (its last tunnel stopped) as we wrote
                    self._await_start()
                    self._poke()
                    spawns += 1
                if time.monotonic() - poked > 0.1:  # a signal sent before it could hear: again
                    self._poke()
                    poked = time.monotonic()
                time.sleep(POLL)
        for name, want in pending.items():
            failures.setdefault(name, f"not {'started' if want else 'stopped'} within {SETTLE_TIMEOUT:.0f} s "
                                      f"(see {self.base / runtime.LOG})")
        if not self._wanted():  # no tunnel left: the supervisor ends, and its files go
            while runtime.supervisor_alive(self.base) and time.monotonic() < deadline:
                time.sleep(POLL)
            if not runtime.supervisor_alive(self.base):
                shutil.rmtree(self.base, ignore_errors=True)
        return failures

    def _poke(self) -> None:
        runtime.signal_supervisor(self.base, signal.SIGHUP)

    def _made(self) -> None:
        """The host's directory, made where missing; refused where it, or `tunnels` above it, is a
        link: apply writes, deletes and starts root's supervisor in it."""
        try:
            private_subdirectory(self.base.parent.parent, self.base.parent.name, self.base.name)
        except FileError as exc:
            raise ForwarderError(self.host, str(exc), resource="tunnels") from None

    def _spawn(self) -> None:
        self._made()
        try:  # what the supervisor opens first, refused here and saying why (its stderr goes nowhere)
            for open_file in (runtime.open_lock, runtime.open_log):
                os.close(open_file(self.base))
        except FileError as exc:
            raise ForwarderError(self.host, f"cannot start the tunnels' supervisor: {exc}", resource="tunnels") \
                from None
        self._stop_older_layout()
        for stale in (runtime.SUPERVISOR, runtime.STATS):
            (self.base / stale).unlink(missing_ok=True)
        self.spawned = subprocess.Popen(runtime.supervisor_command(self.base),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                                        env=_child_env())

    def _stop_older_layout(self) -> None:
        """Before 0.12 each tunnel had a supervisor of its own, in HOST/TUNNEL/: stop them (they
        hold the devices the new supervisor attaches to) and remove what they kept."""
        for run_dir in [d for d in self.base.iterdir() if d.is_dir() and not d.is_symlink()]:
            if runtime.supervisor_alive(run_dir):
                runtime.signal_supervisor(run_dir, signal.SIGTERM)
                deadline = time.monotonic() + SETTLE_TIMEOUT
                while runtime.supervisor_alive(run_dir) and time.monotonic() < deadline:
                    time.sleep(POLL)
            shutil.rmtree(run_dir, ignore_errors=True)

    def _await_start(self) -> None:
        """Until the supervisor started last holds its lock (or has exited: a second one exits at
        once, and so does one whose host has no tunnel)."""
        if self.spawned is None:
            return
        deadline = time.monotonic() + START_TIMEOUT
        while not runtime.supervisor_alive(self.base) and self.spawned.poll() is None:
            if time.monotonic() > deadline:
                raise ForwarderError(self.host, f"the tunnel supervisor did not start within {START_TIMEOUT:.0f} s "
                                                f"(see {self.base / runtime.LOG})", resource="tunnels")
            time.sleep(POLL)
        self.spawned.poll()  # reaped if it is done, so it leaves no zombie


def _child_env() -> dict[str, str]:
    """The supervisor must import this very provisioner package, wherever it was run from."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
