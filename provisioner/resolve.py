"""What only the machine provision runs on can say about an inventory: the public keys kept
in files, the ids of pre-shared keys, whether a host's private key matches its public key,
and the uids of the users forwarders run as.

This is the one part of loading that reads more than the inventory, so it is kept apart
from the pure checks in validate.py: it turns files and the user database into plain
values (`Resolved`), and the rest of the pipeline stays a function of values.

A key file that cannot be read is an error only for a host about to be changed from here
(plan and apply against live hosts). `validate` and `plan --facts` run in CI, where the keys
rightly are not: there a missing key is a warning and what it would say unknown, as is a
user name. A private key is read only for a host about to be changed, and only to check it
against the host's tunnel_public_key: nothing of it is kept.
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
from .hints import Any
from .inventory import Host
from .source import Sources


@dataclass(frozen=True)
class Resolved:
    """What the inventory names outside itself (public key files, pre-shared keys, users and
    groups), read once for every host: the desired state is then a pure function of it."""

    public_keys: Mapping[str, str | None] = field(default_factory=dict)  # host -> key from tunnel_public_key_file
    psk_ids: Mapping[str, str | None] = field(default_factory=dict)  # absolute psk path -> id (None: unknown)
    users: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # user as written -> (uid, its gid)
    groups: Mapping[str, int] = field(default_factory=dict)  # group as written -> gid


def key_path(inventory_file: str, raw: str) -> str:
    """A key file as written, made absolute: relative paths start at the inventory's directory
    (the inventory itself, when it is a directory of sources)."""
    inventory = Path(inventory_file).resolve()
    return os.path.normpath((inventory if inventory.is_dir() else inventory.parent) / os.path.expanduser(raw))


def private_key_path(inventory_file: str, host: Host) -> str:
    """Where the host's private key is: its tunnel_private_key_file, or the default."""
    raw = host.vars.get("tunnel_private_key_file")
    return key_path(inventory_file, str(raw)) if raw is not None else keys.DEFAULT_PRIVATE_KEY_FILE


def public_key_of(host: Host, resolved: Resolved) -> str | None:
    """The host's public key as the inventory says it (inline, or in its file); None: not known here."""
    inline = host.vars.get("tunnel_public_key")
    return str(inline) if inline is not None else resolved.public_keys.get(host.name)


def _secure(host: Host) -> list[tuple[Mapping[str, Any], tuple]]:
    return [(e.value, e.path) for e in host.network.get("tunnels", ()) if e.value.get("insecure") is not True]


def resolve(source: Sources, hosts: Iterable[Host], strict: Iterable[str] = (), quiet: bool = False,
            here: Iterable[str] = ()) -> tuple[Resolved, list[Diagnostic]]:
    """`strict`: the hosts about to be changed from here; a key file of theirs (or a public key
    file of a peer of theirs) that cannot be read is an error. For the others it is a warning,
    or nothing when `quiet` (an apply on one host of a fleet need not hold every other host's
    keys). `here`: the hosts whose user database is this machine's (local and netns ones)."""
    hosts = list(hosts)
    public_keys: dict[str, str | None] = {}
    psk_ids: dict[str, str | None] = {}
    users: dict[str, tuple[int, int]] = {}
    groups: dict[str, int] = {}
    out: list[Diagnostic] = []
    local, acting = set(here), set(strict)
    needed = acting | {str(t["peer"]) for h in hosts if h.name in acting for t, _ in _secure(h) if "peer" in t}

    def severity(host: str) -> str:
        return "error" if host in needed else "quiet" if quiet else "warning"

    for host in hosts:
        if "tunnel_public_key_file" in host.vars and "tunnel_public_key" not in host.vars:
            public_keys[host.name] = _public_file(source, host, severity(host.name), out)
    ends: dict[tuple, list[tuple[Host, tuple, str | None]]] = {}  # (tunnel, both hosts) -> (host, path, psk path)
    for host in hosts:
        if host.name in acting and _secure(host):
            _check_private(source, host, public_key_of(host, Resolved(public_keys)), host.name in local, out)
        for t, p in _secure(host):
            name = str(t.get("name"))
            path = key_path(source.file, str(t["psk_file"])) if "psk_file" in t else None
            if path is not None and (path not in psk_ids or (host.name in acting and psk_ids[path] is None)):
                psk_ids[path] = _psk_id(source, p + ("psk_file",), name, path,
                                        "error" if host.name in acting else "quiet" if quiet else "warning", out)
            if "peer" in t:
                ends.setdefault((name, *sorted((host.name, str(t["peer"])))), []).append((host, p, path))
        for entry in host.network.get("tunnels", ()):
            t, p = entry.value, entry.path
            name = str(t.get("name"))
            if host.name not in local:
                continue
            if "user" in t and str(t["user"]) not in users:
                _user(source, p + ("user",), name, str(t["user"]), host.name in acting, users, out)
            _device_owner(source, host, t, p, users, out)
            if "group" in t and str(t["group"]) not in groups:
                _group(source, p + ("group",), name, str(t["group"]), host.name in acting, groups, out)
    for (name, *_), pair in ends.items():
        ids = {psk_ids[path] if path else "" for _, _, path in pair}
        if len(pair) == 2 and None not in ids and len(ids) == 2:
            (a, pa, _), (b, _, _) = pair
            out.append(source.diagnostic(pa + ("psk_file",), f"tunnel {name}: {a.name} and {b.name} hold different "
                                         "pre-shared keys; the handshake would refuse them"))
    return Resolved(public_keys, psk_ids, users, groups), out


def _public_file(source: Sources, host: Host, severity: str, out: list[Diagnostic]) -> str | None:
    path = key_path(source.file, str(host.vars["tunnel_public_key_file"]))
    try:
        return keys.read_public(path)
    except keys.KeyFileError as exc:
        level = severity if exc.missing else "error"
        if level != "quiet":
            out.append(source.diagnostic(var_path(host, "tunnel_public_key_file"), f"host {host.name}: {exc}",
                                         severity=level))
        return None


def _check_private(source: Sources, host: Host, public: str | None, here: bool, out: list[Diagnostic]) -> None:
    """The host's private key is there and is the one its tunnel_public_key says. A docker
    host's default key is inside its container: the provision run there checks it."""
    given = "tunnel_private_key_file" in host.vars
    if not here and not given:
        return
    path = private_key_path(source.file, host)
    where = var_path(host, "tunnel_private_key_file") if given else host.path
    try:
        private = keys.read_private(path)
    except keys.KeyFileError as exc:
        hint = "" if given else " (the default tunnel_private_key_file)"
        out.append(source.diagnostic(where, f"host {host.name}: {exc}{hint}"))
        return
    actual = keys.public_key(private)
    if public is not None and actual != public:
        out.append(source.diagnostic(var_path(host, "tunnel_public_key"),
                                     f"host {host.name}: tunnel_public_key is {public} but the private key in "
                                     f"{path} has the public key {actual}; one of the two is not this host's"))


def var_path(host: Host, name: str) -> tuple:
    """Where the host variable `name` is written: the last layer that sets it."""
    for layer, path in reversed(host.layers):
        if name in layer:
            return path + (name,)
    return host.path


def _device_owner(source: Sources, host: Host, t: Mapping, p: tuple, users: Mapping[str, tuple[int, int]],
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


def _psk_id(source: Sources, path: tuple, tunnel: str, file: str, missing_is: str,
            out: list[Diagnostic]) -> str | None:
    """The pre-shared key's id; a file that is there but unsafe or malformed is always an error."""
    try:
        return keys.key_id(keys.read_psk(file))
    except keys.KeyFileError as exc:
        severity = missing_is if exc.missing else "error"
        if severity != "quiet":
            why = str(exc) + ("; it must be there on the host" if severity == "warning" else "")
            out.append(source.diagnostic(path, f"tunnel {tunnel}: {why}", severity=severity))
        return None


def _user(source: Sources, path: tuple, tunnel: str, user: str, strict: bool,
          users: dict[str, tuple[int, int]], out: list[Diagnostic]) -> None:
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        users[user] = (entry.pw_uid, entry.pw_gid)
        if entry.pw_uid == 0 and user not in ("root", "0"):  # those two validate refuses already
            out.append(source.diagnostic(path, f"tunnel {tunnel}: user {user} is uid 0 here; a forwarder never "
                                               "runs as root"))
    except KeyError:
        if user.isdigit():
            users[user] = (int(user), int(user))  # a uid need not have a name
        elif strict:
            out.append(source.diagnostic(path, f"tunnel {tunnel}: no user {user!r} on this host"))


def _group(source: Sources, path: tuple, tunnel: str, group: str, strict: bool,
           groups: dict[str, int], out: list[Diagnostic]) -> None:
    try:
        groups[group] = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        if groups[group] == 0 and group not in ("root", "0"):
            out.append(source.diagnostic(path, f"tunnel {tunnel}: group {group} is gid 0 here; a forwarder never "
                                               "runs with root's group"))
    except KeyError:
        if strict:
            out.append(source.diagnostic(path, f"tunnel {tunnel}: no group {group!r} on this host"))


def ids(resolved: Resolved, user: str | None, group: str | None) -> tuple[int | None, int | None]:
    """(owner, group) of the device of a tunnel that runs as `user`/`group`: None where the
    tunnel does not say, or the name is not known here."""
    uid = resolved.users[user][0] if user is not None and user in resolved.users else None
    gid = resolved.groups.get(group) if group is not None else None
    return uid, gid
