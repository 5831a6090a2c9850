"""The values a plan makes by the thousand write their own __init__ (model.py says why): each must
take exactly its class's fields, in order, with their defaults, and make the value @dataclass's
own __init__ would make."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from provisioner.inventory import Entry
from provisioner.model import Address, Device, DeviceType, LinkState, Route

WRITTEN = [Device, Address, Route, Entry]


@pytest.mark.parametrize("cls", WRITTEN, ids=lambda c: c.__name__)
def test_a_written_init_takes_the_fields_in_order_with_their_defaults(cls: type) -> None:
    fields = [f for f in dataclasses.fields(cls) if f.init]
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in parameters] == [f.name for f in fields]
    for p, f in zip(parameters, fields, strict=True):
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert p.default == (inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default), f.name
        assert f.default_factory is dataclasses.MISSING, f.name  # a factory would need a call per value


SAMPLES = {
    Device: [dict(name="t0", type=DeviceType.TAP),
             dict(name="t1", type=DeviceType.TUN, state=LinkState.DOWN, mtu=1400, mac="02:00:00:00:00:01", owner=5,
                  group=6, pi=True, vnet_hdr=True, multi_queue=True, managed=False, defaults=(("mtu", "x"),))],
    Address: [dict(device="t0", cidr="192.0.2.1/24")],
    Route: [dict(to="192.0.2.0/24"), dict(to="fd00::/64", table=7, metric=5, via="fd00::1", dev="t0", managed=False)],
    Entry: [dict(value={"name": "t0"}, path=("all", "hosts", "h", "network", "devices", 0))],
}


@pytest.mark.parametrize("cls", WRITTEN, ids=lambda c: c.__name__)
def test_a_written_init_makes_the_value_the_dataclass_describes(cls: type) -> None:
    """Every field set to what was given or its default, by keyword or by position; the value
    printed, compared, hashed and replaced as a dataclass's; and still frozen."""
    fields = dataclasses.fields(cls)
    for given in SAMPLES[cls]:
        mine = cls(**given)
        expected = {f.name: given.get(f.name, f.default) for f in fields}
        assert vars(mine) == expected
        assert repr(mine) == f"{cls.__name__}(" + ", ".join(f"{f.name}={expected[f.name]!r}" for f in fields if f.repr) + ")"
        assert cls(*expected.values()) == mine
        if cls is not Entry:  # an Entry holds a dict: equal, not hashable
            assert hash(cls(**given)) == hash(mine)
        assert dataclasses.replace(mine) == mine and dataclasses.replace(mine, **{fields[0].name: "x"}) != mine
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(mine, fields[0].name, "changed")
