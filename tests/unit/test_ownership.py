"""Who owns what on one machine: hidden when foreign and unnamed, a take-over when named."""

from __future__ import annotations

from provisioner.model import Address, Device, DeviceType, Network, Observed, Route
from provisioner.ownership import (
    change_key,
    device_key,
    hide_foreign,
    mark_take_overs,
    recorded,
    route_key,
    take_overs,
)
from provisioner.plan import Action, make_plan

TAP0, TAP1 = Device("tap0", DeviceType.TAP), Device("tap1", DeviceType.TAP)
ROUTE = Route("203.0.113.0/24", dev="tap0")
LIVE = Observed(devices=(TAP0,), addresses=(Address("tap0", "198.51.100.1/24"),), routes=(ROUTE,))
THEIRS = {device_key("tap0"): "a.yaml", route_key(*ROUTE.key): "a.yaml"}


def plan(desired: Network, registry: dict[str, str], destroy: bool = False):  # type: ignore[no-untyped-def]
    mine = hide_foreign(LIVE, desired, registry, "b.yaml")
    return mark_take_overs(make_plan("h", desired, mine, destroy=destroy), registry, "b.yaml")


def test_what_another_inventory_made_is_not_removed() -> None:
    assert [c.key for c in plan(Network(devices=(TAP1,)), THEIRS).changes] == ["tap1"]
    assert plan(Network(), THEIRS, destroy=True).changes == ()
    # without a registry (made before it existed) it is anyone's, as before
    assert {c.action for c in plan(Network(), {}, destroy=True).changes} == {Action.DELETE}


def test_naming_it_is_a_take_over_even_for_its_addresses() -> None:
    taking = plan(Network(devices=(TAP0,)), THEIRS)  # same device, but without a's address
    assert [(c.kind, c.taken_from) for c in take_overs(taking)] == [("address", "a.yaml")]


def test_the_registry_after_an_apply() -> None:
    p = plan(Network(devices=(TAP1,)), {})
    assert recorded({}, "b.yaml", p.changes, Network(devices=(TAP1,)), False) == {device_key("tap1"): "b.yaml"}
    gone = plan(Network(), {device_key("tap0"): "b.yaml"}, destroy=True)
    assert device_key("tap0") not in recorded({device_key("tap0"): "b.yaml"}, "b.yaml", gone.changes, Network(),
                                              True)


def test_a_registry_of_this_inventory_alone_hides_nothing() -> None:
    mine = {device_key("tap0"): "b.yaml", route_key(*ROUTE.key): "b.yaml"}
    assert hide_foreign(LIVE, Network(), mine, "b.yaml") is LIVE  # nothing to look at, key by key
    creating = make_plan("h", Network(devices=(TAP0, TAP1)), Observed())
    for registry in ({}, mine):  # and nothing to take over: the plan as it is, no key made per change
        assert mark_take_overs(creating, registry, "b.yaml") is creating
    assert [c.taken_from for c in mark_take_overs(creating, {**mine, device_key("tap1"): "a.yaml"},
                                                  "b.yaml").changes] == ["", "a.yaml"]
    assert hide_foreign(LIVE, Network(), {**mine, device_key("tap0"): "a.yaml"}, "b.yaml").devices[0].managed is False


def _recorded_key_by_key(registry: dict[str, str], me: str, applied: tuple, desired: Network,
                         destroy: bool) -> dict[str, str]:
    """recorded as it was: every change's key looked at."""
    out = dict(registry)
    if not destroy:
        for d in desired.devices:
            out.setdefault(device_key(d.name), me)
        for r in desired.routes:
            out.setdefault(route_key(*r.key), me)
    for c in applied:
        key = change_key(c)
        if key is None or (c.kind == "address" and c.action is Action.DELETE):
            continue
        if c.action is Action.DELETE:
            out.pop(key, None)
        else:
            out[key] = me
    return out


def test_the_registry_after_an_apply_looks_only_at_deletions_when_no_other_inventory_owns_anything() -> None:
    tap2 = Device("tap2", DeviceType.TAP)
    desired = Network(devices=(TAP0, tap2), addresses=(Address("tap0", "198.51.100.2/24"),),
                      routes=(Route("203.0.113.0/24", dev="tap2"), Route("192.0.2.0/24", dev="tap0")))
    cases = [  # (registry before, destroy)
        ({}, False),  # nothing recorded yet
        ({device_key("tap0"): "b.yaml", route_key(*ROUTE.key): "b.yaml", device_key("tap9"): "b.yaml"}, False),
        ({device_key("tap0"): "a.yaml", route_key(*ROUTE.key): "b.yaml"}, False),  # a take-over
        ({device_key("tap0"): "b.yaml", route_key(*ROUTE.key): "b.yaml"}, True),
    ]
    for registry, destroy in cases:
        changes = make_plan("h", desired, LIVE, destroy=destroy).changes
        assert {c.action for c in changes} >= ({Action.DELETE} if destroy else {Action.CREATE, Action.UPDATE})
        assert recorded(registry, "b.yaml", changes, desired, destroy) == _recorded_key_by_key(
            registry, "b.yaml", changes, desired, destroy)


def test_a_registry_read_back_keeps_only_text_entries(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The registry is state-directory input: an entry whose owner is not text is dropped, a file
    that is no mapping is an empty registry, and one provision wrote comes back as it was."""
    import json

    from provisioner.ownership import load_registry, registry_path, save_registry

    save_registry(tmp_path, "m", THEIRS)
    assert load_registry(tmp_path, "m") == THEIRS
    path = registry_path(tmp_path, "m")
    for written, read in (({"device a": "x", "device b": 1, "device c": None, "device d": ["x"]}, {"device a": "x"}),
                          ({"device a": {"x": "y"}}, {}), ([["device a", "x"]], {}), ("x", {}), ({}, {})):
        path.write_text(json.dumps(written))
        assert load_registry(tmp_path, "m") == read, written


def test_the_registry_is_written_whole_without_an_fsync(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """What a power cut would lose of it the cut takes from the kernel too (ownership.save_registry):
    the two fsyncs were half a millisecond of every apply that changed a key, on a disk."""
    import os

    from provisioner.ownership import load_registry, registry_path, save_registry

    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    save_registry(tmp_path, "m", THEIRS)
    save_registry(tmp_path, "m", {**THEIRS, "device z": "mine"})
    assert synced == [] and load_registry(tmp_path, "m") == {**THEIRS, "device z": "mine"}
    assert [p.name for p in registry_path(tmp_path, "m").parent.iterdir()] == ["m.json"]  # no temporary left
