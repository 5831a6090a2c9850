"""What only the machine provision runs on can say about an inventory: the ids of the key
files its tunnels name, and the uids of the users they run as.

This is the one part of loading that reads more than the inventory, so it is kept apart
from the pure checks in validate.py: it turns files and the user database into plain
values (`Resolved`), and the rest of the pipeline stays a function of values.

A key file that cannot be read is an error only for a host about to be changed from here
(plan and apply against live hosts). `validate` and `plan --facts` run in CI, where the keys
rightly are not: there a missing key is a warning and its id unknown, as is a user name.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import keys
from .errors import Diagnostic
from .inventory import Host, Source


@dataclass(frozen=True)
class Resolved:
    key_ids: Mapping[str, str | None] = field(default_factory=dict)  # absolute key path -> id (None: unknown)
    users: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # user as written -> (uid, its gid)
    groups: Mapping[str, int] = field(default_factory=dict)  # group as written -> gid


def key_path(inventory_file: str, raw: str) -> str:
    """A key_file as written, made absolute: relative paths start at the inventory's directory."""
    return os.path.normpath(Path(inventory_file).resolve().parent / os.path.expanduser(raw))


def resolve(source: Source, hosts: Iterable[Host], strict: Iterable[str] = (), quiet: bool = False,
            here: Iterable[str] = ()) -> tuple[Resolved, list[Diagnostic]]:
    """`strict`: the hosts about to be changed from here; a key file of theirs that cannot be
    read is an error. For the others it is a warning, or nothing when `quiet` (an apply on one
    host of a fleet need not hold every other host's keys). `here`: the hosts whose user
    database is this machine's (local and netns ones)."""
    key_ids: dict[str, str | None] = {}
    users: dict[str, tuple[int, int]] = {}
    groups: dict[str, int] = {}
    out: list[Diagnostic] = []
    local, acting = set(here), set(strict)
    ends: dict[tuple, list[tuple[Host, tuple, str]]] = {}  # (tunnel, both hosts) -> (host, path, key path)
    for host in hosts:
        for entry in host.network.get("tunnels", ()):
            t, p = entry.value, entry.path
            name = str(t.get("name"))
            if "key_file" in t:
                path = key_path(source.file, str(t["key_file"]))
                if path not in key_ids or (host.name in acting and key_ids[path] is None):
                    key_ids[path] = _key_id(source, p + ("key_file",), name, path,
                                            "error" if host.name in acting else "quiet" if quiet else "warning", out)
                if "peer" in t:
                    pair_key = (name, *sorted((host.name, str(t["peer"]))))
                    ends.setdefault(pair_key, []).append((host, p, path))
            if host.name not in local:
                continue
            if "user" in t and str(t["user"]) not in users:
                _user(source, p + ("user",), name, str(t["user"]), host.name in acting, users, out)
            _device_owner(source, host, t, p, users, out)
            if "group" in t and str(t["group"]) not in groups:
                _group(source, p + ("group",), name, str(t["group"]), host.name in acting, groups, out)
    for (name, *_), pair in ends.items():
        ids = {key_ids[path] for _, _, path in pair}
        if len(pair) == 2 and None not in ids and len(ids) == 2:
            (a, pa, _), (b, _, _) = pair
            out.append(source.diagnostic(pa + ("key_file",), f"tunnel {name}: {a.name} and {b.name} hold different "
                                         "keys; the handshake would refuse them"))
    return Resolved(key_ids, users, groups), out


def _device_owner(source: Source, host: Host, t: Mapping, p: tuple, users: Mapping[str, tuple[int, int]],
                  out: list[Diagnostic]) -> None:
    """The tunnel's device is owned by the user its forwarder runs as: one that says otherwise is a mistake."""
    user = t.get("user")
    if user is None or str(user) not in users:
        return
    uid = users[str(user)][0]
    for e in host.network.get("devices", ()):
        owner = e.value.get("owner")
        if str(e.value.get("name")) == str(t.get("device")) and owner is not None and owner != uid:
            out.append(source.diagnostic(p + ("user",), f"tunnel {t.get('name')}: runs as {user} (uid {uid}) but "
                                         f"its device {t.get('device')} has owner: {owner}"))


def _key_id(source: Source, path: tuple, tunnel: str, file: str, missing_is: str,
            out: list[Diagnostic]) -> str | None:
    """The key's id; a file that is there but unsafe or malformed is always an error."""
    try:
        return keys.key_id(keys.read_key(file))
    except keys.KeyFileError as exc:
        severity = missing_is if exc.missing else "error"
        if severity != "quiet":
            why = str(exc) + ("; it must be there on the host" if severity == "warning" else "")
            out.append(source.diagnostic(path, f"tunnel {tunnel}: {why}", severity=severity))
        return None


def _user(source: Source, path: tuple, tunnel: str, user: str, strict: bool,
          users: dict[str, tuple[int, int]], out: list[Diagnostic]) -> None:
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        users[user] = (entry.pw_uid, entry.pw_gid)
    except KeyError:
        if user.isdigit():
            users[user] = (int(user), int(user))  # a uid need not have a name
        elif strict:
            out.append(source.diagnostic(path, f"tunnel {tunnel}: no user {user!r} on this host"))


def _group(source: Source, path: tuple, tunnel: str, group: str, strict: bool,
           groups: dict[str, int], out: list[Diagnostic]) -> None:
    try:
        groups[group] = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        if strict:
            out.append(source.diagnostic(path, f"tunnel {tunnel}: no group {group!r} on this host"))


def ids(resolved: Resolved, user: str | None, group: str | None) -> tuple[int | None, int | None]:
    """(owner, group) of the device of a tunnel that runs as `user`/`group`: None where the
    tunnel does not say, or the name is not known here."""
    uid = resolved.users[user][0] if user is not None and user in resolved.users else None
    gid = resolved.groups.get(group) if group is not None else None
    return uid, gid
