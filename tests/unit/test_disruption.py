"""Which changes can cut a host off: a table of plan changes and sessions."""

from __future__ import annotations

import pytest

from provisioner.disruption import mark, session_address
from provisioner.model import Address, Device, DeviceType, Observed, Route
from provisioner.plan import Action, Change, Kind, Plan

TAP = Device("tap0", DeviceType.TAP)
LIVE = Observed(devices=(TAP, Device("eth9", DeviceType.TAP)),
                addresses=(Address("eth9", "192.0.2.2/24"),),
                routes=(Route("198.51.100.0/24", via="192.0.2.254", dev="eth9"),))


def change(kind: Kind, key: str, after: object, action: Action = Action.CREATE) -> Change:
    return Change(action, kind, key, None if action is Action.CREATE else after, after, "")  # type: ignore[arg-type]


@pytest.mark.parametrize("c, session, why", [
    (change(Kind.ROUTE, "0.0.0.0/0", Route("0.0.0.0/0", dev="tap0")), None, "the default route"),
    (change(Kind.ROUTE, "::/0", Route("::/0", dev="tap0"), Action.DELETE), None, "the default route"),
    (change(Kind.ROUTE, "203.0.113.0/24", Route("203.0.113.0/24", dev="tap0")), None, ""),
    (change(Kind.ROUTE, "198.51.100.7/32", Route("198.51.100.7/32", dev="tap0")), "198.51.100.7",
     "the route to this session's address 198.51.100.7"),
    (change(Kind.ROUTE, "203.0.113.0/24", Route("203.0.113.0/24", dev="eth9"), Action.DELETE), "198.51.100.7",
     "a route by eth9, the device this session uses"),
    (change(Kind.ADDRESS, "192.0.2.3/24 on tap0", Address("tap0", "192.0.2.3/24")), "192.0.2.50",
     "an address on the subnet of this session's address 192.0.2.50"),
    (change(Kind.DEVICE, "eth9", Device("eth9", DeviceType.TAP), Action.REPLACE), "192.0.2.50",
     "eth9, the device this session uses"),
    (change(Kind.DEVICE, "tap0", TAP, Action.DELETE), "192.0.2.50", ""),
])
def test_disruptive(c: Change, session: str | None, why: str) -> None:
    (marked,) = mark(Plan("h", (c,), "", 0), LIVE, session).changes
    assert marked.disruptive == why


def test_the_session_comes_from_ssh_connection() -> None:
    assert session_address({"SSH_CONNECTION": "192.0.2.1 50000 192.0.2.2 22"}) == "192.0.2.1"
    assert session_address({"SSH_CONNECTION": "not-an-address 1 2 3"}) is None
    assert session_address({}) is None
