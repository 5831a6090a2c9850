"""Confirm or revert: an apply that waits for `provision confirm` from a new session.

`apply --confirm-timeout S` applies and verifies each host, then leaves a note in
`<state dir>/confirm/<machine>.pending` and waits: `provision confirm`, run from a session
opened after the change (so it proves the host can still be reached), answers each pending
note with a `.confirmed` one. No answer in S seconds: the apply rolls its steps back, tunnel
forwarders included, and fails. A note is keyed by the machine (connection/identity.py), and
holds the pid that waits, so a confirm never answers a run that is gone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from .files import FileError, parse_json, private_subdirectory, read_regular, write_json
from .lock import is_pid

PENDING, CONFIRMED = ".pending", ".confirmed"
POLL = 0.1


def notes_directory(state_dir: Path) -> Path:
    """Where the notes are: a real directory of the state directory's, never where a link leads."""
    return private_subdirectory(state_dir, "confirm")


def wait(state_dir: Path, key: str, host: str, timeout: float, notify: Callable[[str], None]) -> bool:
    """True when confirmed within `timeout` seconds."""
    base = notes_directory(state_dir)
    pending, confirmed = base / (key + PENDING), base / (key + CONFIRMED)
    confirmed.unlink(missing_ok=True)  # an answer to an earlier run is no answer to this one
    write_json(pending, {"host": host, "pid": os.getpid(), "deadline": time.time() + timeout})
    notify(f"{host}: applied; run `provision confirm` from a new session within {timeout:g} s to keep it, "
           "or it is rolled back")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if confirmed.exists():
                return True
            time.sleep(POLL)
        return confirmed.exists()
    finally:
        pending.unlink(missing_ok=True)
        confirmed.unlink(missing_ok=True)


def confirm(state_dir: Path) -> list[str]:
    """Answer every apply that waits; the hosts answered."""
    answered = []
    base = notes_directory(state_dir)
    for note in sorted(base.glob("*" + PENDING)):
        try:
            data = parse_json(read_regular(note))  # a note is state: never through a link, never a FIFO
            pid, host = data["pid"], str(data["host"])
            if not is_pid(pid):
                continue
            os.kill(pid, 0)  # the run that waits is still there
        except (OSError, FileError, ValueError, KeyError, TypeError):
            continue
        write_json(base / (note.name.removesuffix(PENDING) + CONFIRMED), {"by": os.getpid()})
        answered.append(host)
    return answered
