"""Facts round-trip, and the kernel steps of a plan with their inverses (pure parts only)."""

from __future__ import annotations

import json
from dataclasses import replace

from provisioner.facts import host_vars, observed_from_vars
from provisioner.kernel.apply import PHASES, Step, Verb, schedule, steps_for
from provisioner.model import Address, Device, DeviceType, LinkState, Network, Observed, Route
from provisioner.plan import make_plan

OBSERVED = Observed(
    devices=(
        Device("tap0", DeviceType.TAP, mtu=1400, mac="02:00:00:00:00:01", owner=0),
        Device("tun1", DeviceType.TUN, state=LinkState.DOWN, mtu=1500, pi=True, vnet_hdr=True,
               multi_queue=True, group=5, managed=False),
    ),
    addresses=(Address("tap0", "198.51.100.1/24"), Address("tap0", "fd00:1::1/64"), Address("tap0", "fe80::1/64")),
    routes=tuple(sorted((Route("10.20.0.0/16", via="198.51.100.2", dev="tap0", metric=100),
                         Route("fd00:20::/48", table=100, metric=1024, dev="tap0"),
                         Route("0.0.0.0/0", via="192.0.2.1", dev="eth0", managed=False)),
                        key=lambda r: r.key)),  # observe() sorts by key
    links=(("eth0", "veth"), ("lo", ""), ("tap0", "tun"), ("tun1", "tun")),
)


def test_facts_round_trip_through_json() -> None:
    vars_ = json.loads(json.dumps(host_vars(OBSERVED, {"ansible_connection": "netns"})))
    back = observed_from_vars(vars_)
    assert back == OBSERVED and back.digest() == OBSERVED.digest()
    assert vars_["network"]["devices"][0] == {
        "name": "tap0", "type": "tap", "state": "up", "mtu": 1400, "mac": "02:00:00:00:00:01", "owner": 0,
        "addresses": ["198.51.100.1/24", "fd00:1::1/64"]}


def test_deleting_a_device_can_be_undone_whole() -> None:
    plan = make_plan("h", Network(), OBSERVED)  # tap0 and its routes are ours and no longer wanted
    steps = schedule(steps_for(plan, OBSERVED))
    assert [s.verb for s in steps] == [Verb.DEL_ROUTE, Verb.DEL_ROUTE, Verb.DELETE_LINK]
    undo = steps[-1].inverse()
    assert [s.verb for s in undo] == [Verb.CREATE_TUN, Verb.SET_LINK, Verb.ADD_ADDR, Verb.ADD_ADDR]
    assert undo[0].subject == OBSERVED.devices[0]
    # its routes come back from their own inverses, after the device (rollback runs in reverse)
    assert [s.inverse()[0].verb for s in steps[:2]] == [Verb.ADD_ROUTE, Verb.ADD_ROUTE]


def test_steps_run_in_phases() -> None:
    desired = Network(devices=(Device("a0", DeviceType.TAP), Device("b0", DeviceType.TAP)),
                      addresses=(Address("a0", "192.0.2.1/32"),),
                      routes=(Route("10.0.0.0/8", dev="b0"),))
    plan = make_plan("h", desired, Observed())
    verbs = [s.verb for s in schedule(steps_for(plan, Observed()))]
    assert verbs == [Verb.CREATE_TUN, Verb.CREATE_TUN, Verb.SET_LINK, Verb.SET_LINK, Verb.ADD_ADDR, Verb.ADD_ROUTE]
    assert verbs == sorted(verbs, key=PHASES.index)


def test_updates_restore_what_they_overwrote() -> None:
    before = OBSERVED.devices[0]
    after = replace(before, mtu=1500)
    (inverse,) = Step(Verb.SET_LINK, after, before).inverse()
    assert (inverse.subject, inverse.prior) == (before, after)
    route = OBSERVED.routes[0]
    (inverse,) = Step(Verb.REPLACE_ROUTE, replace(route, via="198.51.100.9"), route).inverse()
    assert inverse.subject == route


class _Counted(tuple):  # type: ignore[type-arg]
    """A tuple that counts the items read from it."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        for item in super().__iter__():
            self.reads += 1
            yield item


def _counted(items: tuple) -> _Counted:  # type: ignore[type-arg]
    out = _Counted(items)
    out.reads = 0
    return out


def test_the_steps_of_deleting_many_devices_read_the_state_once() -> None:
    # Each device deleted looked through every observed address and route for what it takes
    # with it: a destroy of 10 000 devices spent 11 s of CPU here, more than the kernel's
    # deletion of them all (2.6 s as one group); 200 devices read 80 000 items.
    n = 200
    observed = Observed(devices=tuple(Device(f"t{i}", DeviceType.TAP) for i in range(n)),
                        addresses=_counted(tuple(Address(f"t{i}", f"10.0.{i // 250}.{i % 250}/32") for i in range(n))),
                        routes=_counted(tuple(Route(f"172.16.{i}.0/24", dev=f"t{i}") for i in range(n))))
    plan = make_plan("h", Network(), observed)
    observed.addresses.reads = observed.routes.reads = 0  # type: ignore[attr-defined]
    steps = schedule(steps_for(plan, observed))
    assert observed.addresses.reads + observed.routes.reads <= 4 * n  # type: ignore[attr-defined]
    deletions = [s for s in steps if s.verb is Verb.DELETE_LINK]
    assert len(deletions) == n
    assert all(s.restores == (Address(s.subject.name, f"10.0.0.{i}/32"),) for i, s in enumerate(deletions))


def test_the_steps_of_a_change_that_takes_nothing_with_it_read_no_observed_state() -> None:
    # A one-change apply (a route moved to another device) indexed all 1000 observed routes and
    # addresses by device, which only a deleted device or address needs.
    n = 200
    devices = tuple(Device(f"t{i}", DeviceType.TAP) for i in range(n))
    addresses = tuple(Address(f"t{i}", f"10.0.{i // 250}.{i % 250}/32") for i in range(n))
    routes = tuple(Route(f"172.16.{i}.0/24", dev=f"t{i}") for i in range(n))
    observed = Observed(devices=devices, addresses=_counted(addresses), routes=_counted(routes))
    moved = replace(routes[0], dev="t1")
    plan = make_plan("h", Network(devices=devices, addresses=addresses, routes=(moved, *routes[1:])), observed)
    observed.addresses.reads = observed.routes.reads = 0  # type: ignore[attr-defined]
    steps = schedule(steps_for(plan, observed))
    assert [(s.verb, s.subject) for s in steps] == [(Verb.REPLACE_ROUTE, moved)]
    assert observed.addresses.reads + observed.routes.reads == 0  # type: ignore[attr-defined]
