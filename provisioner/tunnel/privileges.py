"""Giving up what a forwarder no longer needs, once its device and socket are open.

A forwarder reads packets from the network, so it is the part of provision an attacker
talks to. Everything that needs privilege happens before it hears a byte: its supervisor
reads the key and attaches to the device (CAP_NET_ADMIN) and hands both over; the forwarder
binds its port (a low one needs CAP_NET_BIND_SERVICE). Then it drops, for good:

- every capability, from the bounding and ambient sets as well (nothing can be regained);
- root: it becomes the tunnel's `user:`/`group:`, or the system user `provision-tunnel`
  (which apply creates when it is missing) when the tunnel names none. Not `nobody`: every
  other daemon that runs as nobody could signal a forwarder running as nobody (SIGSTOP froze
  one while `status` still said connected). uid 0 and gid 0 are refused, by name or number.
  Changing uid also makes the process non-dumpable, so other processes of that user cannot
  ptrace it or read its memory (where the session keys are);
- no_new_privs, so no setuid program it could be tricked into running brings any back.

It writes no files afterwards: its log and counters go to its supervisor through pipes.
"""

from __future__ import annotations

import ctypes
import grp
import os
import pwd
import signal
import subprocess
import time

PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
DEFAULT_USER = "provision-tunnel"  # and its group of the same name
USERADD = ("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
           "--shell", "/usr/sbin/nologin", "--comment", "provision tunnel forwarders", DEFAULT_USER)
USERADD_TIMEOUT = 10.0  # seconds: useradd fails at once (exit 10) while another holds /etc/passwd's lock


class PrivilegeError(RuntimeError):
    """The forwarder could not become who it should be; it must not run as more."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def ids_of(user: str | None, group: str | None) -> tuple[int, int]:
    """(uid, gid) for a user and group given by name or number; DEFAULT_USER when no user.
    Never root: a forwarder is what the network talks to."""
    if user is None:
        try:
            entry = pwd.getpwnam(DEFAULT_USER)
        except KeyError:
            raise PrivilegeError(f"no user {DEFAULT_USER} on this host (apply creates it)") from None
        uid, gid = entry.pw_uid, entry.pw_gid
    else:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
            uid, gid = entry.pw_uid, entry.pw_gid
        except KeyError:
            if not user.isdigit():
                raise PrivilegeError(f"no user {user!r} on this host") from None
            uid = gid = int(user)
        if group is not None:
            try:
                gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
            except KeyError:
                raise PrivilegeError(f"no group {group!r} on this host") from None
    if uid == 0:
        raise PrivilegeError(f"user {user or DEFAULT_USER} is root (uid 0): a forwarder never runs as root")
    if gid == 0:
        raise PrivilegeError(f"group {group or user or DEFAULT_USER} is root's (gid 0): a forwarder never "
                             "runs with it")
    return uid, gid


def ensure_default_user() -> None:
    """Create DEFAULT_USER (a system user and group, no home, no shell) unless it exists.
    Several applies on one machine (netns hosts share /etc/passwd) may race: useradd then
    fails, for a lock or because the user now exists, and looking again settles it."""
    deadline = time.monotonic() + USERADD_TIMEOUT
    while True:
        try:
            pwd.getpwnam(DEFAULT_USER)
            return
        except KeyError:
            pass
        try:
            done = subprocess.run(USERADD, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise PrivilegeError(f"cannot create user {DEFAULT_USER}: {exc.strerror} (is useradd installed?)") \
                from None
        if done.returncode == 0 or time.monotonic() > deadline:
            try:
                pwd.getpwnam(DEFAULT_USER)
                return
            except KeyError:
                why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
                raise PrivilegeError(f"cannot create user {DEFAULT_USER}: {why[0]}") from None
        time.sleep(0.05)


def drop(user: str | None, group: str | None, death_signal: int = signal.SIGTERM) -> tuple[int, int]:
    """Become (uid, gid) with no capabilities at all; raises PrivilegeError if any remain."""
    uid, gid = ids_of(user, group)
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise PrivilegeError(f"capset: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise PrivilegeError(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
    # A change of uid clears the parent-death signal: ask again, and mind a parent already gone.
    from . import runtime

    runtime.die_with_parent(death_signal)
    if os.getppid() != parent:
        os.kill(os.getpid(), death_signal)
    left = held()
    if any(left.values()) or os.getuid() != uid or os.getgid() != gid:
        raise PrivilegeError(f"still holding capabilities after the drop: {left}")
    return uid, gid


def held() -> dict[str, int]:
    """The capability sets of this process, from the kernel's own account of it."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:")):
                key, value = line.split(":")
                out[key] = int(value, 16)
    return out
