"""Which host checks an edited inventory needs: where it differs from one that passed them only
in some routes, only the routes of those routes' keys are checked again.

check_host and check_peers read every item of every host: 2-3 ms of a one-change apply of a
1000-device inventory, the largest part of what it paid over a no-op plan (whose verdict
cache.py keeps). When the verdict of a load is kept, a note is kept beside it (`note`) for each
file reparse.py read from a kept parse: that parse (its key and id), the items put in place in
it since, and everything else the load read (loader.Inputs.without: every other file, listing
and name). Only a load that found no problem at all is kept, and only when what it read is what
its inputs were hashed from (loader.Inputs.read_alike: no file saved in between, none read that
the listing did not show), so a note says: the inventory made of this kept parse with these
items, and of everything else as it is here, passed every check.

A later load that reads a file from the same kept parse, with everything else as it was, finds
that note (`routes_to_check`). Its inventory and the noted one differ at most at the items
either put in place: the rest of that file is the kept parse's in both. When each item that
differs is now a route some host holds (the very object in a host's merged network: so the
item is in a list of routes, and was in the noted load), the two inventories' hosts have the
same variables, devices and tunnels. Their routes differ only in the keys (table, to, metric)
those items had or have: the merge's winner for any other key is the same item in both. What
check_host says of a route depends on the route and its host's devices alone, and check_peers
reads no route: so check_host need look only at each host's routes of those keys (and at what
it checks of the host as a whole), and check_peers at nothing.

Anything else (a device, a tunnel, an item no host holds now, no note, a note not as written)
and every host is checked whole, as before. A note is input like any cache entry (cache.get
checks its file and checksum; here its shape), and deleting the directory is always safe.
tests/unit/test_recheck.py holds loads with notes to loads without a cache, problem for
problem, over random edits; tests/fuzz/targets.py reads forged notes.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress
from operator import attrgetter
from pathlib import Path

from . import cache
from .hints import Any
from .inventory import MERGE_KEYS, Entry, Host
from .loader import Inputs
from .reparse import Edit
from .source import Source

NOTES = "checked"  # beside cache.py's verdicts, apart so neither crowds the other out
_ROUTE_KEY = MERGE_KEYS["routes"]
_VALUE = attrgetter("value")

Position = tuple[tuple[Any, ...], int]  # the path of a list in a file's data, and an index in it


def _slot(cache_dir: Path, others: list[str], kept: str, kept_id: str) -> cache.Slot:
    return cache.slot(cache_dir / NOTES, ["a clean load, from the kept parse", kept, kept_id, *others])


def note(cache_dir: Path, inputs: Inputs, kept: dict[str, cache.Reference]) -> None:
    """After a clean load whose verdict was kept: for each file read from a kept parse (`kept`,
    the verdict's references), that the load passed with the items put in place in it. The
    first such load is noted, not the latest: mostly the kept parse's own text (no item put in
    place), so each later edit is told apart from it by the lines it changed. A note of the
    latest would tell an edit apart from the edit before, which may differ in a line this one
    leaves as the kept parse has it (a metric added, then taken out: a whole check)."""
    for file, (key, ident, replaced) in kept.items():
        others = inputs.without(file)
        if others is not None:
            slot = _slot(cache_dir, others, key, ident)
            if _noted(cache.get(slot)) is None:
                cache.put(slot, {"replaced": replaced})


def routes_to_check(cache_dir: Path, inputs: Inputs, edits: dict[str, Edit], record: dict[str, Any],
                    documents: Iterable[Source], hosts: tuple[Host, ...]) -> dict[str, tuple[Entry, ...]] | None:
    """Each host's routes that check_host must look at again, where a noted clean load differs
    from this one only there; None: check every host whole. `edits`: the files reparse.py made
    from kept parses (Reparser.edits); `record`: each file's data as the loader used it."""
    if not inputs.read_alike(documents):  # what was read is not what the notes are keyed by
        return None
    for file, edit in edits.items():
        if record.get(file) is not edit.data:
            continue
        others = inputs.without(file)
        if others is None:
            continue
        noted = _noted(cache.get(_slot(cache_dir, others, edit.kept, edit.kept_id)))
        if noted is None:
            continue
        changed = _changed(edit, noted)
        return None if changed is None else _touched(changed, hosts)
    return None


def _touched(changed: list[tuple[Any, Any]], hosts: tuple[Host, ...]) -> dict[str, tuple[Entry, ...]] | None:
    """Each host's routes whose merge key a changed item had or has, in the host's order (its
    problems are said in it); None when an item is now no host's route: a device or a tunnel,
    or a route a layer above hides, of which nothing here tells that it is a route."""
    try:
        keys = {_ROUTE_KEY(item) for pair in changed for item in pair}
    except TypeError:  # a key of something unhashable (a noted item is input): no route's
        return None
    out: dict[str, tuple[Entry, ...]] = {}
    seen: set[int] = set()
    for host in hosts:
        routes = host.network.get("routes", ())
        mine = tuple(compress(routes, map(keys.__contains__, host.route_keys)))  # in C: 1000 routes in 20 us
        out[host.name] = mine
        seen.update(map(id, map(_VALUE, mine)))
    return out if {id(now) for _, now in changed} <= seen else None


def _noted(entry: Any) -> dict[Position, Any] | None:
    """The items a note says were put in place, by position; None if it is not a note as written."""
    replaced = entry.get("replaced") if isinstance(entry, dict) else None
    if not isinstance(replaced, list):
        return None
    out: dict[Position, Any] = {}
    for r in replaced:
        if not (isinstance(r, list) and len(r) == 3 and isinstance(r[0], list) and type(r[1]) is int
                and isinstance(r[2], dict)):
            return None
        try:
            out[(tuple(r[0]), r[1])] = r[2]
        except TypeError:  # a path holding something unhashable: no path a parse has
            return None
    return out


def _changed(edit: Edit, noted: dict[Position, Any]) -> list[tuple[Any, Any]] | None:
    """(the noted load's, this one's) of each item in which they differ; None where that cannot be
    told, or one of the two is not a mapping."""
    was = {(tuple(path), index): old for path, index, _, old in edit.replaced}
    out: list[tuple[Any, Any]] = []
    for position in was.keys() | noted.keys():
        path, index = position
        try:
            sequence = cache.at(edit.data, list(path))
        except ValueError:
            return None
        if not isinstance(sequence, list) or not 0 <= index < len(sequence):
            return None
        now = sequence[index]
        before = noted[position] if position in noted else was[position]
        if now == before:
            continue
        if not isinstance(now, dict) or not isinstance(before, dict):
            return None
        out.append((before, now))
    return out
