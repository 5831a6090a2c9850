"""The inventory as provision sees it: hosts, their groups, their variables, their merged `network`.

`network` has one meaning everywhere (the CLI, the pull agent, the Ansible collection, which
asks provision for it): the host's layers, in Ansible's order of precedence (loader.py), are
merged key by key: `devices` and `tunnels` by name, `routes` by (table, to, metric), a
higher layer's entry replacing a lower one's whole. So a route written for `all` and a
device written for one host both apply to that host. Every other variable is Ansible's:
the highest layer's value replaces the others whole.

Merged entries remember the path they came from, so a semantic error about a merged device
still points at the line (in whichever file) that wrote it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from _socket import gethostname  # socket's C half: kernel/netlink.py says why
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import Diagnostic, InventoryError, Path
from .hints import Any
from .model import MAIN_TABLE, canonical_network, default_metric
from .source import Sources

ALL = "all"
UNGROUPED = "ungrouped"
NETWORK = "network"


# ---------------------------------------------------------------- hosts and groups


@dataclass(frozen=True)
class Entry:
    """One merged list item (a device, a route) and where in the file it was written."""

    value: Mapping[str, Any]
    path: Path

    def __init__(self, value: Mapping[str, Any], path: Path) -> None:
        held = self.__dict__  # the fields, set once: model.py says why (above Device)
        held["value"], held["path"] = value, path


@dataclass(frozen=True)
class Host:
    """A host as the inventory describes it: its merged variables and merged network."""

    name: str
    path: Path  # where the host is first declared
    groups: tuple[str, ...]
    vars: Mapping[str, Any]
    network: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
    layers: tuple[tuple[Mapping[str, Any], Path], ...] = ()  # the raw variables merged, in order
    # (path, key, index of the first) of each list item whose key an earlier item of the same list
    # in the same layer has: a mistake (validate.py says so), where across layers it is an override
    repeated: tuple[tuple[Path, Any, int], ...] = ()
    route_keys: tuple[Any, ...] = ()  # the merge key of each of network["routes"], in its order (recheck.py)

    @property
    def connection(self) -> str | None:
        value = self.vars.get("ansible_connection")
        return str(value) if value is not None else None

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host") or self.name)


@dataclass(frozen=True)
class Inventory:
    """The whole inventory as read and merged: every host (selected or not, as peers are looked
    up among all), the groups by their members, and the sources every location points into."""

    source: Sources
    hosts: tuple[Host, ...]
    groups: Mapping[str, frozenset[str]]  # group name -> the hosts in it, children included
    children: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> its child groups
    direct: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> the hosts listed in it

    def select(self, limit: str | None) -> tuple[Host, ...]:
        """Ansible-like patterns: names, groups, globs, `a,b` or `a:b`, `!x` to exclude, `&x` to intersect."""
        if not limit or limit == ALL:
            return self.hosts
        names = [h.name for h in self.hosts]
        terms = _split_pattern(limit)
        only_exclusions = all(t[:1] in ("!", "&") for t in terms)
        chosen: set[str] = set(names) if only_exclusions else set()
        for term in terms:
            op, term = (term[0], term[1:]) if term[:1] in ("!", "&") else ("", term)
            matched = self._match(term, names)
            if op == "!":
                chosen -= matched
            elif op == "&":
                chosen &= matched
            else:
                chosen |= matched
        if not chosen:
            raise InventoryError([Diagnostic((), f"--limit {limit!r} matches no host", self.source.file)])
        return tuple(h for h in self.hosts if h.name in chosen)

    def _match(self, term: str, names: Sequence[str]) -> set[str]:
        if term in self.groups:
            return set(self.groups[term])
        if term in names:
            return {term}
        hits = {n for n in names if fnmatch.fnmatchcase(n, term)}
        for group, members in self.groups.items():
            if fnmatch.fnmatchcase(group, term):
                hits |= members
        return hits


def _split_pattern(limit: str) -> list[str]:
    parts: list[str] = []
    for chunk in limit.split(","):
        # ':' separates terms too, as in Ansible, unless the term looks like an IPv6 address
        if ":" in chunk and not _is_ip(chunk):
            parts.extend(chunk.split(":"))
        else:
            parts.append(chunk)
    return [p.strip() for p in parts if p.strip()]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.lstrip("!&"))
        return True
    except ValueError:
        return False


def route_key(route: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(table, to, metric) with the defaults filled in, so spellings of one route merge."""
    to = route.get("to")
    try:
        to = canonical_network(str(to))
    except ValueError:
        pass
    metric = route.get("metric")
    if metric is None and route.get("state") != "absent" and isinstance(to, str):
        metric = default_metric(to)
    return (route.get("table", MAIN_TABLE), to, metric)


# How list-valued keys of `network` merge: by what key, later entries replacing earlier ones.
MERGE_KEYS = {
    "devices": lambda item: item.get("name"),
    "routes": route_key,
    "tunnels": lambda item: item.get("name"),
}


def merge_host(name: str, path: Path, groups: tuple[str, ...],
               layers: Sequence[tuple[Mapping[str, Any], Path]]) -> Host:
    """Every variable but `network`: the highest layer's value, whole (as Ansible). `network`:
    merged, lists by key (MERGE_KEYS), a later entry replacing an earlier one of the same key."""
    merged_vars: dict[str, Any] = {}
    network: dict[str, dict[Any, Entry]] = {}
    repeated: list[tuple[Path, Any, int]] = []
    first: dict[tuple[Path, Any], int] = {}  # (list, key) -> index of its first item, once repeated
    for layer, lpath in layers:
        for key, value in layer.items():
            if key != NETWORK:
                merged_vars[key] = value
        net = layer.get(NETWORK)
        if not isinstance(net, Mapping):
            continue
        for list_key, key_of in MERGE_KEYS.items():
            items = net.get(list_key)
            here = lpath + (NETWORK, list_key)
            for i, item in enumerate(items if isinstance(items, list) else ()):  # else the schema said why
                if isinstance(item, dict) or isinstance(item, Mapping):  # parsed items are dicts: no ABC check
                    entries = network.setdefault(list_key, {})
                    k = key_of(item)
                    old = entries.pop(k, None)  # re-insert: a replaced entry takes the later position
                    if old is not None and old.path[:-1] == here:  # the same list: found here, not looked for
                        repeated.append((here + (i,), k, first.setdefault((here, k), int(old.path[-1]))))
                    entries[k] = Entry(item, here + (i,))
    return Host(name, path, groups, merged_vars, {k: tuple(v.values()) for k, v in network.items()}, tuple(layers),
                tuple(repeated), tuple(network.get("routes", ())))


def this_machine() -> set[str]:
    """Names under which a host without ansible_connection is this machine (as ansible-pull)."""
    name = gethostname()
    return {"localhost", name, name.split(".")[0]}



def flatten(host: Host, everyone: Mapping[str, Host]) -> dict[str, Any]:
    """A one-file YAML inventory that means, for `host`, what the whole inventory means: its
    variables with its `network` already merged, and of each peer its tunnels name what they
    need of it (the tunnel back, its device, its addresses). What a container's own provision
    and the Ansible collection's module are given, so that they read no layers of their own."""
    hosts = {host.name: _with_network(host.vars, host.network)}
    peers = {str(e.value["peer"]) for e in host.network.get("tunnels", ()) if "peer" in e.value}
    for name in sorted(peers & set(everyone)):
        peer = everyone[name]
        back = tuple(e for e in peer.network.get("tunnels", ()) if str(e.value.get("peer")) == host.name)
        devices = {str(e.value.get("device")) for e in back}
        network = {"tunnels": back, "devices": tuple(e for e in peer.network.get("devices", ())
                                                      if str(e.value.get("name")) in devices)}
        hosts[name] = _with_network(peer.vars, network)
    return {ALL: {"hosts": hosts}}


def _with_network(vars_: Mapping[str, Any], network: Mapping[str, tuple[Entry, ...]]) -> dict[str, Any]:
    merged = {key: [dict(e.value) for e in entries] for key, entries in network.items() if entries}
    return {**vars_, **({NETWORK: merged} if merged else {})}
