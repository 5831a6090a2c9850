"""Loading and merging: the order of layers, keys of merge, host selection."""

from __future__ import annotations

import pytest

from provisioner.errors import InventoryError
from provisioner.model import AbsentRoute, Route
from provisioner.reconcile import load

LAYERED = """\
all:
  vars:
    ansible_connection: netns
    network:
      devices:
        - {name: t0, type: tun, mtu: 1000}
      routes:
        - {to: 10.0.0.0/8, dev: t0}
        - {to: 10.1.0.0/16, dev: t0, metric: 5}
  children:
    outer:
      vars:
        network:
          devices:
            - {name: t0, type: tap}
            - {name: t1, type: tun}
      children:
        inner:
          vars:
            network:
              devices:
                - {name: t1, type: tun, mtu: 1300}
              routes:
                - {to: 10.0.0.0/8, via: 192.0.2.1, metric: 0}
          hosts:
            h1:
              network:
                devices:
                  - {name: t2, type: tun}
                  - {name: t1, state: absent}
            h2:
    other:
      hosts:
        h2:
          ansible_host: ns-h2
        h3:
          ansible_connection: local
          network:
            routes:
              - {to: 10.1.0.0/16, state: absent}
"""


def test_layers_merge_outer_to_inner_by_key(write) -> None:
    loaded = load(write(LAYERED))
    h1 = loaded.desired["h1"]
    assert [d.name for d in h1.devices] == ["t0", "t2"]
    assert h1.absent_devices == ("t1",)  # the host's absent entry replaced the groups' t1
    t0 = h1.devices[0]
    assert (t0.type, t0.mtu) == ("tap", None)  # outer replaced all's t0 whole: no mtu left
    routes = {r.key: r for r in h1.routes}
    assert routes[(254, "10.0.0.0/8", 0)] == Route("10.0.0.0/8", via="192.0.2.1")  # replaced: same key
    assert routes[(254, "10.1.0.0/16", 5)].dev == "t0"


def test_group_order_and_other_vars(write) -> None:
    loaded = load(write(LAYERED))
    hosts = {h.name: h for h in loaded.hosts}
    assert hosts["h1"].groups == ("all", "outer", "inner")
    assert hosts["h2"].groups == ("all", "other", "outer", "inner")
    assert hosts["h2"].address == "ns-h2" and hosts["h2"].connection == "netns"
    assert hosts["h3"].connection == "local"
    h2 = loaded.desired["h2"]
    assert {d.name: (d.type, d.mtu) for d in h2.devices} == {"t0": ("tap", None), "t1": ("tun", 1300)}
    assert loaded.desired["h3"].absent_routes == (AbsentRoute("10.1.0.0/16"),)


def test_top_level_groups_are_children_of_all(write) -> None:
    loaded = load(write("edge:\n  hosts:\n    e1:\n      ansible_connection: local\n"))
    assert [h.name for h in loaded.hosts] == ["e1"]
    assert loaded.inventory.groups["edge"] == {"e1"}


@pytest.mark.parametrize("pattern, hosts", [
    (None, {"h1", "h2", "h3"}),
    ("all", {"h1", "h2", "h3"}),
    ("h1", {"h1"}),
    ("inner", {"h1", "h2"}),
    ("outer,h3", {"h1", "h2", "h3"}),
    ("outer:h3", {"h1", "h2", "h3"}),
    ("outer,!h2", {"h1"}),
    ("!h2", {"h1", "h3"}),
    ("outer,&other", {"h2"}),
    ("h*", {"h1", "h2", "h3"}),
    ("oth*", {"h2", "h3"}),
])
def test_limit_patterns(write, pattern, hosts) -> None:
    assert {h.name for h in load(write(LAYERED), pattern).hosts} == hosts


def test_limit_matching_nothing_is_an_error(write) -> None:
    with pytest.raises(InventoryError, match="matches no host"):
        load(write(LAYERED), "nope")


def test_empty_file_is_an_empty_inventory(write) -> None:
    assert load(write("")).hosts == ()
