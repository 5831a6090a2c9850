"""Who a forwarder runs as (issue 11, item 6 of the defects): never root, and by default a
system user of its own that provision creates, so that no other daemon's user can signal it.

On the old main every forwarder ran as `nobody`, and a `SIGSTOP` from any other `nobody`
process froze one while `status` still said connected; `user: root` was accepted.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from provisioner.tunnel.privileges import DEFAULT_USER

from .helpers import provision
from .pair import INSECURE, hosts, inventory, status, up

__all__ = ["hosts"]  # a fixture


def _ids(pid: int) -> tuple[list[str], list[str]]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return fields["Uid"].split(), fields["Gid"].split()


def test_forwarders_run_as_their_own_user_that_nobody_cannot_signal(tmp_path: Path, hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts, "udp")  # WireGuard keys (the identity is the same without)
    entry = pwd.getpwnam(DEFAULT_USER)  # apply created it (if this machine did not have it yet)
    assert entry.pw_uid != 0 and entry.pw_gid != 0 and entry.pw_shell == "/usr/sbin/nologin"
    for row in status(inv, state).values():
        uids, gids = _ids(row["pid"])
        assert uids == [str(entry.pw_uid)] * 4 and gids == [str(entry.pw_gid)] * 4, (uids, gids)
        # `kill -STOP` as nobody (a different user) is refused by the kernel: EPERM, and it keeps running.
        tried = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "kill", "-STOP",
                                str(row["pid"])], capture_output=True, text=True)
        assert tried.returncode != 0 and "Operation not permitted" in tried.stderr, tried
        state_letter = Path(f"/proc/{row['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state_letter != "T", "the forwarder was stopped"
        os.kill(row["pid"], 0)


def test_root_is_refused_for_user_and_group(tmp_path: Path, hosts: tuple[str, str]) -> None:
    for extra, expected in ((", user: root", "user: root is root"), (", user: 0", "user: 0 is root"),
                            (", user: nobody, group: root", "group: root is root")):
        inv = inventory(tmp_path, hosts, "udp", security=INSECURE + extra)
        out = provision("apply", str(inv), state_dir=tmp_path / "state", check_rc=1)
        assert "a forwarder never runs as root" in out.err and expected in out.err, out.err
