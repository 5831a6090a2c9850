"""The inverse table of kernel steps: one rule per verb, each undoing exactly its step.

A rollback runs these inverses in reverse order, so a wrong or missing rule leaves a host
half-changed after a failed apply; the kernel side is exercised in tests/integration.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioner.errors import ForwarderError
from provisioner.files import FileError
from provisioner.kernel.apply import (
    _ENCODERS,
    INVERSES,
    PHASES,
    PROCESS_VERBS,
    Step,
    Transaction,
    TunnelProcesses,
    Verb,
    schedule,
    steps_for,
)
from provisioner.model import Address, Device, DeviceType, Network, Observed, Role, Route, Transport, Tunnel
from provisioner.plan import Action, Kind, make_plan

DEV = Device("tap0", DeviceType.TAP, mtu=1400)
DEV_1500 = replace(DEV, mtu=1500)
ADDR = Address("tap0", "198.51.100.1/24")
ADDR6 = Address("tap0", "fd00:1::1/64")
ROUTE = Route("10.20.0.0/16", via="198.51.100.2", dev="tap0", metric=100)
ROUTE_MOVED = replace(ROUTE, via="198.51.100.9")
ROUTE6 = Route("fd00:20::/48", dev="tap0", metric=1024)
TUN = Tunnel("core", "tap0", Transport.UDP, Role.CONNECT, "192.0.2.1:51820")
TUN_REKEYED = replace(TUN, public_key="a new key")

# Every verb with what its inverse must be: written out, not derived from the table under test.
CASES = [
    (Step(Verb.CREATE_TUN, DEV), [Step(Verb.DELETE_LINK, DEV)]),
    (Step(Verb.SET_LINK, DEV_1500, DEV), [Step(Verb.SET_LINK, DEV, DEV_1500)]),
    (Step(Verb.SET_LINK, DEV), []),  # a new device's first settings: deleting the device undoes them
    (Step(Verb.DELETE_LINK, DEV, restores=(ADDR, ROUTE, ADDR6, ROUTE6)),
     [Step(Verb.CREATE_TUN, DEV), Step(Verb.SET_LINK, DEV), Step(Verb.ADD_ADDR, ADDR), Step(Verb.ADD_ADDR, ADDR6),
      Step(Verb.ADD_ROUTE, ROUTE), Step(Verb.ADD_ROUTE, ROUTE6)]),
    (Step(Verb.DELETE_LINK, DEV), [Step(Verb.CREATE_TUN, DEV), Step(Verb.SET_LINK, DEV)]),
    (Step(Verb.ADD_ADDR, ADDR), [Step(Verb.DEL_ADDR, ADDR)]),
    (Step(Verb.DEL_ADDR, ADDR, restores=(ROUTE, ROUTE6)),
     [Step(Verb.ADD_ADDR, ADDR), Step(Verb.REPLACE_ROUTE, ROUTE), Step(Verb.REPLACE_ROUTE, ROUTE6)]),
    (Step(Verb.ADD_ROUTE, ROUTE), [Step(Verb.DEL_ROUTE, ROUTE)]),
    (Step(Verb.DEL_ROUTE, ROUTE), [Step(Verb.ADD_ROUTE, ROUTE)]),
    (Step(Verb.REPLACE_ROUTE, ROUTE_MOVED, ROUTE), [Step(Verb.REPLACE_ROUTE, ROUTE, ROUTE_MOVED)]),
    (Step(Verb.REPLACE_ROUTE, ROUTE, ROUTE), []),  # re-asserted: nothing changed
    (Step(Verb.REPLACE_ROUTE, ROUTE), []),
    (Step(Verb.START_FORWARDER, TUN), [Step(Verb.STOP_FORWARDER, TUN)]),
    (Step(Verb.STOP_FORWARDER, TUN), [Step(Verb.START_FORWARDER, TUN)]),
    (Step(Verb.REKEY_FORWARDER, TUN_REKEYED, TUN), [Step(Verb.REKEY_FORWARDER, TUN, TUN_REKEYED)]),
    (Step(Verb.REKEY_FORWARDER, TUN), []),
]


def test_every_verb_has_exactly_one_inverse_rule_and_a_phase() -> None:
    assert set(INVERSES) == set(Verb) and len(INVERSES) == len(Verb)
    assert {step.verb for step, _ in CASES} == set(Verb), "a case for every verb"
    one_of_each = [Step(v, TUN if v in PROCESS_VERBS else DEV) for v in Verb]
    assert {s.verb for s in schedule([(None, one_of_each)])} == set(Verb)  # type: ignore[list-item]
    # every verb is carried out one way: a netlink request, the tun ioctls, or the tunnel processes
    assert set(_ENCODERS) == set(Verb) - PROCESS_VERBS - {Verb.CREATE_TUN}
    assert set(PHASES) | {Verb.REPLACE_ROUTE, Verb.REKEY_FORWARDER} == set(Verb)


@pytest.mark.parametrize("step, expected", CASES, ids=lambda c: c.verb.value if isinstance(c, Step) else "")
def test_inverse_of(step: Step, expected: list[Step]) -> None:
    assert step.inverse() == expected


@pytest.mark.parametrize("step", [
    Step(Verb.SET_LINK, DEV_1500, DEV), Step(Verb.REPLACE_ROUTE, ROUTE_MOVED, ROUTE),
    Step(Verb.REKEY_FORWARDER, TUN_REKEYED, TUN), Step(Verb.ADD_ADDR, ADDR), Step(Verb.ADD_ROUTE, ROUTE),
    Step(Verb.DEL_ROUTE, ROUTE), Step(Verb.START_FORWARDER, TUN), Step(Verb.STOP_FORWARDER, TUN),
], ids=lambda s: s.verb.value)
def test_undoing_an_undo_gives_the_step_back(step: Step) -> None:
    (undo,) = step.inverse()
    assert undo.inverse() == [step]


def test_a_deleted_device_comes_back_with_its_addresses_and_the_routes_the_plan_keeps() -> None:
    """The kernel takes a link's addresses and routes with it; routes provision does not own
    (and so does not delete) must come back on rollback too, after the device."""
    foreign = Route("10.30.0.0/16", dev="tap0", metric=5, managed=False)
    live = Observed(devices=(DEV,), addresses=(ADDR, ADDR6, Address("tap0", "fe80::1/64")),
                    routes=tuple(sorted((ROUTE, foreign), key=lambda r: r.key)), links=(("tap0", "tun"),))
    plan = make_plan("h", Network(), live)
    assert [(c.kind, c.action) for c in plan.changes if c.kind is Kind.ROUTE] == [(Kind.ROUTE, Action.DELETE)]
    (delete,) = [s for _, steps in steps_for(plan, live) for s in steps if s.verb is Verb.DELETE_LINK]
    assert delete.inverse() == [Step(Verb.CREATE_TUN, DEV), Step(Verb.SET_LINK, DEV), Step(Verb.ADD_ADDR, ADDR),
                                Step(Verb.ADD_ADDR, ADDR6), Step(Verb.ADD_ROUTE, foreign)]


def test_verbs_print_as_before() -> None:
    """Steps are shown by these names (logs, errors): the enum must not change them."""
    assert [str(v) for v in Verb] == [
        "create-tun", "set-link", "delete-link", "add-addr", "del-addr", "add-route", "del-route", "replace-route",
        "start-forwarder", "stop-forwarder", "rekey-forwarder"]
    assert f"{Verb.DEL_ADDR}" == "del-addr" and Verb("add-route") is Verb.ADD_ROUTE


class Processes:
    """A TunnelProcesses that records its calls and whose supervisor refuses to run `refuse`
    (as a bad key or a port in use is found: when the steps are settled). No kernel is involved
    in process steps: the transaction only orders, settles and undoes them."""

    def __init__(self, refuse: str) -> None:
        self.refuse, self.calls = refuse, list[tuple[str, str, str | None]]()
        self.refused: dict[str, str] = {}

    def start(self, t: Tunnel) -> None:
        if t.name == self.refuse:
            self.refused[t.name] = "the supervisor did not start"
        self.calls.append(("start", t.name, t.public_key))

    def stop(self, t: Tunnel) -> None:
        self.calls.append(("stop", t.name, t.public_key))

    def rekey(self, t: Tunnel) -> None:
        self.calls.append(("rekey", t.name, t.public_key))

    def settle(self) -> dict[str, str]:
        self.calls.append(("settle", "", None))
        refused, self.refused = self.refused, {}
        return refused


def test_a_transaction_runs_and_undoes_tunnel_steps_through_the_protocol() -> None:
    other = replace(TUN, name="edge")
    processes = Processes(refuse="edge")
    tunnels: TunnelProcesses = processes
    tx = Transaction("h", sock=None, tunnels=tunnels)  # type: ignore[arg-type]  # no netlink step here
    steps = [Step(Verb.STOP_FORWARDER, TUN), Step(Verb.REKEY_FORWARDER, TUN_REKEYED, TUN),
             Step(Verb.START_FORWARDER, other)]
    with pytest.raises(ForwarderError, match="did not start"):
        tx.run(steps)
    assert tx.done == steps  # the refused start too: its spec was written, and its undo removes it
    assert tx.rollback() == []
    assert processes.calls == [("stop", "core", None), ("rekey", "core", "a new key"),  # the run,
                               ("start", "edge", None), ("settle", "", None),  # settled together
                               ("stop", "edge", None), ("rekey", "core", None), ("start", "core", None),
                               ("settle", "", None)]  # its undo, in reverse, settled together


class Unsettled(Processes):
    """A supervisor that cannot be told: the state directory full, or its lock refused."""

    def __init__(self, error: Exception) -> None:
        super().__init__(refuse="")
        self.error = error

    def settle(self) -> dict[str, str]:
        super().settle()
        raise self.error


@pytest.mark.parametrize("error", [FileError("/run/provision/tunnels/h/tunnels.json", "cannot write: No space left"),
                                   ForwarderError("h", "cannot start the tunnels' supervisor", resource="tunnels")])
def test_a_settle_that_raises_fails_its_steps_and_the_transaction_can_still_be_undone(error: Exception) -> None:
    """It raised past the transaction: not a step's failure, so the apply did not roll back what
    it had made before (the devices), and the undo itself raised the same way."""
    tx = Transaction("h", sock=None, tunnels=Unsettled(error))  # type: ignore[arg-type]  # no netlink step here
    with pytest.raises(ForwarderError, match="No space left|cannot start the tunnels' supervisor"):
        tx.run([Step(Verb.START_FORWARDER, TUN)])
    assert [p for p in tx.rollback() if p.startswith("could not undo tunnel core")], "the undo's failure, said"
