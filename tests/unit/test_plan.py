"""The diff: desired + observed -> ordered, typed changes. Tables of cases, no kernel."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from provisioner.errors import ConflictError
from provisioner.model import AbsentRoute, Address, Device, DeviceType, LinkState, Network, Observed, Route
from provisioner.plan import Action, Kind, Moved, make_plan, moved_by, plan_to_dict
from provisioner.kernel.apply import Verb, steps_for
from provisioner.render import change_line

TAP = Device("tap0", DeviceType.TAP, mtu=1400)
LIVE_TAP = Device("tap0", DeviceType.TAP, mtu=1400, mac="02:00:00:00:00:01")
ADDR = Address("tap0", "198.51.100.1/24")
ROUTE = Route("10.20.0.0/16", via="198.51.100.2", metric=100)
LIVE_ROUTE = replace(ROUTE, dev="tap0")
DESIRED = Network(devices=(TAP,), addresses=(ADDR,), routes=(ROUTE,))
CONVERGED = Observed(devices=(LIVE_TAP,), addresses=(ADDR,), routes=(LIVE_ROUTE,),
                     links=(("lo", ""), ("tap0", "tun")))


def summary(desired: Network, observed: Observed, **kw: bool) -> list[tuple[str, str, str]]:
    return [(str(c.action), str(c.kind), c.key) for c in make_plan("h", desired, observed, **kw).changes]


def test_from_nothing_everything_is_created_in_dependency_order() -> None:
    assert summary(DESIRED, Observed(links=(("lo", ""),))) == [
        ("create", "device", "tap0"),
        ("create", "address", "198.51.100.1/24 on tap0"),
        ("create", "route", "10.20.0.0/16 metric 100"),
    ]


def test_converged_state_plans_nothing() -> None:
    plan = make_plan("h", DESIRED, CONVERGED)
    assert plan.empty and plan.in_sync == 3


@pytest.mark.parametrize("live, action, reason", [
    (replace(LIVE_TAP, mtu=1500), Action.UPDATE, "mtu"),
    (replace(LIVE_TAP, state=LinkState.DOWN), Action.UPDATE, "state"),
    (replace(LIVE_TAP, managed=False), Action.UPDATE, "adopt"),
    (replace(LIVE_TAP, type=DeviceType.TUN, mac=None), Action.REPLACE, "type cannot change in place"),
    (replace(LIVE_TAP, pi=True), Action.REPLACE, "pi"),
    (replace(LIVE_TAP, vnet_hdr=True), Action.REPLACE, "vnet_hdr"),
    (replace(LIVE_TAP, multi_queue=True), Action.REPLACE, "multi_queue"),
])
def test_device_drift(live: Device, action: Action, reason: str) -> None:
    plan = make_plan("h", DESIRED, replace(CONVERGED, devices=(live,)))
    device = [c for c in plan.changes if c.kind is Kind.DEVICE]
    assert [c.action for c in device] == [action] and reason in device[0].reason


def test_attributes_left_out_are_not_managed() -> None:
    live = replace(LIVE_TAP, mac="02:aa:00:00:00:01", owner=1000)
    assert make_plan("h", DESIRED, replace(CONVERGED, devices=(live,))).empty


def test_replaced_device_gets_its_addresses_and_routes_again() -> None:
    live = replace(LIVE_TAP, pi=True)
    assert summary(DESIRED, replace(CONVERGED, devices=(live,))) == [
        ("replace", "device", "tap0"),
        ("create", "address", "198.51.100.1/24 on tap0"),
        ("create", "route", "10.20.0.0/16 metric 100"),
    ]


def test_addresses_on_managed_devices_are_fully_managed_but_link_local_stays() -> None:
    extra = (ADDR, Address("tap0", "192.0.2.7/32"), Address("tap0", "fe80::1/64"))
    assert summary(DESIRED, replace(CONVERGED, addresses=extra)) == [
        ("delete", "address", "192.0.2.7/32 on tap0"),
        ("update", "route", "10.20.0.0/16 metric 100")]  # re-asserted: see the next test


def test_routes_on_a_device_losing_an_address_are_re_asserted_and_restored_on_rollback() -> None:
    """IPv4 flushes a device's routes when its last address goes: the kernel, not the plan,
    would otherwise decide whether they survive an address change."""
    moved = replace(CONVERGED, addresses=(Address("tap0", "192.0.2.9/24"),))
    plan = make_plan("h", DESIRED, moved)
    (route,) = [c for c in plan.changes if c.kind is Kind.ROUTE]
    assert route.action is Action.UPDATE and route.before == route.after and "re-asserted" in route.reason
    assert "re-asserted" in change_line(route, colour=False)
    steps = dict((c.key, s) for c, s in steps_for(plan, moved))
    (delete,) = steps["192.0.2.9/24 on tap0"]
    assert [s.verb for s in delete.inverse()] == [Verb.ADD_ADDR, Verb.REPLACE_ROUTE]
    (reassert,) = steps[route.key]
    assert reassert.verb is Verb.REPLACE_ROUTE and reassert.inverse() == []


def test_route_drift_and_adoption() -> None:
    moved = replace(LIVE_ROUTE, via="198.51.100.3")
    plan = make_plan("h", DESIRED, replace(CONVERGED, routes=(moved,)))
    (change,) = plan.changes
    assert (change.action, change.fields_changed()) == (Action.UPDATE, ("via",))
    foreign = replace(LIVE_ROUTE, managed=False)
    (change,) = make_plan("h", DESIRED, replace(CONVERGED, routes=(foreign,))).changes
    assert change.action is Action.UPDATE and "adopt" in change.reason


def test_a_verification_compares_only_the_kinds_the_changes_can_have_moved() -> None:
    """After a change of routes alone the devices and addresses were in sync and were not read
    again: they are not compared (a drifted MTU read earlier would be the first plan's, not this)."""
    drifted = replace(CONVERGED, devices=(replace(LIVE_TAP, mtu=1500),),
                      routes=(replace(LIVE_ROUTE, via="198.51.100.3"),))
    (route,) = make_plan("h", DESIRED, drifted, moved=Moved(frozenset({Kind.ROUTE}))).changes
    assert route.kind is Kind.ROUTE
    assert {c.kind for c in make_plan("h", DESIRED, drifted).changes} == {Kind.DEVICE, Kind.ROUTE}
    assert make_plan("h", DESIRED, drifted, moved=Moved(frozenset({Kind.TUNNEL}))).empty
    device = make_plan("h", DESIRED, replace(CONVERGED, devices=(replace(LIVE_TAP, mtu=1500),))).changes
    assert moved_by(device) == Moved(frozenset({Kind.DEVICE, Kind.ADDRESS, Kind.ROUTE}))
    assert moved_by([route]) == Moved(frozenset({Kind.ROUTE}), frozenset({"tap0"}))
    address = make_plan("h", DESIRED, replace(CONVERGED, addresses=())).changes
    assert moved_by(address) == Moved(frozenset({Kind.ADDRESS, Kind.ROUTE}))
    new_gateway_only = Route("10.9.0.0/16", via="192.0.2.9")
    (created,) = make_plan("h", replace(DESIRED, routes=(ROUTE, new_gateway_only)), CONVERGED).changes
    assert moved_by([created]) == Moved(frozenset({Kind.ROUTE}))  # the kernel chooses its device: any


def test_a_verification_after_route_changes_compares_the_routes_on_the_devices_they_name() -> None:
    """Those routes, desired or live, with their namesakes (a gateway-only route that lives on a
    named device is matched, not taken for a leftover); a route elsewhere was not read again."""
    devices = tuple(Device(n, DeviceType.TAP) for n in ("a", "b", "c"))
    r1, r2 = Route("10.1.0.0/16", dev="a"), Route("10.2.0.0/16", dev="b")
    r3 = Route("10.3.0.0/16", via="192.0.2.9")  # the kernel put it on a
    desired = Network(devices=devices, routes=(r1, r2, r3))
    live = Observed(devices=devices, routes=(r1, r2, replace(r3, dev="a")))
    before = replace(live, routes=(replace(r1, dev="c"), r2, replace(r3, dev="a")))
    (change,) = make_plan("h", desired, before).changes  # r1 moves from c to a
    moved = moved_by([change])
    assert moved == Moved(frozenset({Kind.ROUTE}), frozenset({"a", "c"}))
    assert make_plan("h", desired, live, moved=moved).empty
    (missing,) = make_plan("h", desired, replace(live, routes=(r2, replace(r3, dev="a"))), moved=moved).changes
    assert (missing.action, missing.after) == (Action.CREATE, r1)
    drifted_elsewhere = replace(live, routes=(r1, replace(r2, via="192.0.2.1"), replace(r3, dev="a")))
    assert make_plan("h", desired, drifted_elsewhere, moved=moved).empty
    assert not make_plan("h", desired, drifted_elsewhere).empty


def test_owned_leftovers_are_removed_foreign_ones_untouched() -> None:
    observed = replace(
        CONVERGED,
        devices=(LIVE_TAP, Device("old0", DeviceType.TUN, mtu=1500),
                 Device("hand0", DeviceType.TAP, mtu=1500, managed=False)),
        addresses=(ADDR, Address("hand0", "192.0.2.1/24")),
        routes=(LIVE_ROUTE, Route("10.30.0.0/16", dev="old0"), Route("10.31.0.0/16", dev="hand0", managed=False)),
        links=CONVERGED.links + (("old0", "tun"), ("hand0", "tun")),
    )
    assert summary(DESIRED, observed) == [
        ("delete", "route", "10.30.0.0/16 metric 0"),
        ("delete", "device", "old0"),
    ]


def test_state_absent_removes_even_what_we_do_not_own() -> None:
    foreign_dev = Device("hand0", DeviceType.TAP, mtu=1500, managed=False)
    foreign_routes = (Route("10.99.0.0/16", dev="eth0", metric=5, managed=False),
                      Route("10.99.0.0/16", dev="eth0", metric=7, managed=False))
    desired = replace(DESIRED, absent_devices=("hand0", "never-there"),
                      absent_routes=(AbsentRoute("10.99.0.0/16"),))
    observed = replace(CONVERGED, devices=(LIVE_TAP, foreign_dev), routes=(LIVE_ROUTE, *foreign_routes),
                       links=CONVERGED.links + (("hand0", "tun"), ("eth0", "veth")))
    plan = make_plan("h", desired, observed)
    assert summary(desired, observed) == [
        ("delete", "route", "10.99.0.0/16 metric 5"),
        ("delete", "route", "10.99.0.0/16 metric 7"),
        ("delete", "device", "hand0"),
    ]
    assert plan.in_sync == 4  # tap0, its address, its route, and the absent device that is absent


@pytest.mark.parametrize("desired", [
    Network(devices=(Device("eth0", DeviceType.TAP),)),
    Network(absent_devices=("eth0",)),
])
def test_never_replaces_or_removes_another_kind_of_interface(desired: Network) -> None:
    with pytest.raises(ConflictError, match="eth0"):
        make_plan("h", desired, Observed(links=(("eth0", "veth"),)))


def test_destroy_removes_only_what_we_own() -> None:
    observed = replace(CONVERGED, devices=(LIVE_TAP, Device("hand0", DeviceType.TAP, managed=False)),
                       routes=(LIVE_ROUTE, Route("10.31.0.0/16", dev="hand0", managed=False)))
    assert summary(DESIRED, observed, destroy=True) == [
        ("delete", "route", "10.20.0.0/16 metric 100"),
        ("delete", "device", "tap0"),
    ]


def test_direct_routes_come_before_routes_through_a_gateway() -> None:
    desired = Network(routes=(Route("10.1.0.0/16", via="192.0.2.1"), Route("192.0.2.0/24", dev="lo"),
                              Route("fd00:9::/48", dev="lo", metric=1024)))
    keys = [c.key for c in make_plan("h", desired, Observed(links=(("lo", ""),))).changes]
    assert keys == ["192.0.2.0/24 metric 0", "fd00:9::/48 metric 1024", "10.1.0.0/16 metric 0"]


def test_going_down_flushes_owned_routes_first() -> None:
    desired = Network(devices=(replace(TAP, state=LinkState.DOWN),), addresses=(ADDR,))
    assert summary(desired, CONVERGED) == [
        ("delete", "route", "10.20.0.0/16 metric 100"),
        ("update", "device", "tap0"),
    ]


def test_plan_is_a_serialisable_value() -> None:
    plan = make_plan("h", DESIRED, Observed())
    doc = json.loads(json.dumps(plan_to_dict(plan)))
    assert doc["summary"] == {"create": 3, "update": 0, "replace": 0, "delete": 0}
    assert doc["changes"][0]["after"]["type"] == "tap"
    assert doc["observed_digest"] == Observed().digest()
    assert make_plan("h", DESIRED, Observed()) == plan  # a value: the same inputs give an equal plan


def test_the_in_sync_shortcut_agrees_with_the_subset_match() -> None:
    # plan._matches skips making the target device for the devices in sync: it must say exactly
    # what comparing the made target says, for every mix of written, left-out and differing fields.
    import itertools
    import random

    from provisioner.plan import _matches, _with_unmanaged_from

    rng = random.Random(15)
    values = {"state": [LinkState.UP, LinkState.DOWN], "mtu": [None, 1400, 1500], "mac": [None, "02:00:00:00:00:01"],
              "owner": [None, 0, 1000], "group": [None, 1000], "pi": [False, True], "vnet_hdr": [False, True],
              "multi_queue": [False, True], "managed": [False, True]}
    live_values = {k: [v for v in vs if v is not None] for k, vs in values.items()}
    for _, dtype in itertools.product(range(400), (DeviceType.TUN, DeviceType.TAP)):
        want = Device("d0", dtype, **{k: rng.choice(vs) for k, vs in values.items()})
        live = Device("d0", rng.choice((DeviceType.TUN, DeviceType.TAP)),
                      **{k: rng.choice(vs) for k, vs in live_values.items()})
        assert _matches(want, live) == (_with_unmanaged_from(want, live) == live), (want, live)
