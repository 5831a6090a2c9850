"""Feedback on long runs: a progress line on a terminal (and nowhere else), phase times with -v,
and the cache of validated inventories seen from the command line."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
from pathlib import Path

from .helpers import PROVISION, provision, write_inventory

DEVICES = 300


def inventory(ns: str, n: int = DEVICES) -> str:
    lines = ["all:", "  hosts:", "    h:", "      ansible_connection: netns", f"      ansible_host: {ns}",
             "      network:", "        devices:"]
    lines += [f"          - {{name: lr{i}, type: tap, addresses: [10.{i // 250}.{i % 250}.1/32]}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def on_a_terminal(*args: str, state_dir: Path) -> tuple[int, str, str]:
    """Run provision with stderr on a pseudo-terminal and stdout piped: (rc, stdout, terminal)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PROVISION_STATE_DIR": str(state_dir), "NO_COLOR": "1", "COLUMNS": "100"}
    p = subprocess.Popen([*PROVISION, *args], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: no writer is left
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    out, _ = p.communicate(timeout=120)
    reader.join(timeout=5)
    os.close(master)
    return p.returncode, out.decode(), b"".join(seen).decode(errors="replace")


def test_a_long_apply_shows_a_progress_line_on_a_terminal_only(tmp_path: Path, netns: str) -> None:
    inv = write_inventory(tmp_path / "inv.yaml", inventory(netns))
    state = tmp_path / "state"
    rc, out, terminal = on_a_terminal("apply", str(inv), state_dir=state)
    assert rc == 0, out + terminal
    assert f"changed={2 * DEVICES}" in out
    assert f"h: applying {2 * DEVICES}/{2 * DEVICES} changes (100%)" in terminal
    assert terminal.endswith("\r\033[K"), "the line is cleared before the recap"
    assert "\r" not in out and "applying" not in out, "nothing extra on the piped output"
    piped = provision("destroy", str(inv), state_dir=state, check_rc=0)
    assert "\r" not in piped.out + piped.err and "applying" not in piped.out + piped.err
    rc, out, terminal = on_a_terminal("apply", str(inv), "--json", state_dir=state)
    assert rc == 0 and "applying" not in terminal and "\r" not in out


def test_verbose_recap_says_how_long_each_phase_took(tmp_path: Path, netns: str) -> None:
    inv = write_inventory(tmp_path / "inv.yaml", inventory(netns, 3))
    state = tmp_path / "state"
    out = provision("apply", "-v", str(inv), state_dir=state, check_rc=0).out
    recap = next(line for line in out.splitlines() if line.startswith("h : ok="))
    for phase in ("observe", "plan", "apply", "verify"):
        assert f"{phase} " in recap and " s" in recap, recap
    assert "load " in out and "(parsed and validated)" in out
    quiet = provision("apply", str(inv), state_dir=state, check_rc=0).out
    assert "observe" not in quiet and "load " not in quiet


def test_an_unchanged_inventory_is_judged_once(tmp_path: Path, netns: str) -> None:
    inv = write_inventory(tmp_path / "inv.yaml", inventory(netns, 3))
    state = tmp_path / "state"
    assert "(parsed and validated)" in provision("plan", "-v", str(inv), state_dir=state, check_rc=0).out
    assert "(cached verdict)" in provision("plan", "-v", str(inv), state_dir=state, check_rc=0).out
    inv.write_text(inventory(netns, 4))
    assert "(parsed and validated)" in provision("plan", "-v", str(inv), state_dir=state, check_rc=0).out
    inv.write_text(inventory(netns, 4).replace("type: tap", "type: tunnel", 1))
    bad = provision("plan", str(inv), state_dir=state, check_rc=1)
    assert "is not one of" in bad.err
