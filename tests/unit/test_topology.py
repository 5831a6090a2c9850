"""`provision graph` and the Markdown plan's picture: a peer tunnel is one link between two hosts."""

from __future__ import annotations

from pathlib import Path

from provisioner.reconcile import Outcome, Status, load
from provisioner.render import graph_dot, graph_mermaid, plan_markdown
from provisioner.model import Observed
from provisioner.plan import make_plan
from provisioner.topology import topology

CORPUS = Path(__file__).resolve().parents[1] / "inventories"


def test_a_peer_tunnel_is_one_link_with_its_state() -> None:
    loaded = load(str(CORPUS / "13-readme-first" / "inventory.yaml"))
    topo = topology(loaded.desired, {("gw1", "lab"): "connected"})
    assert graph_mermaid(topo) == ('graph LR\n  n0["gw2: tap0"]\n  n1["gw1: tun9, tap0"]\n'
                                   '  n1 ---|"lab (tcp, connected)"| n0\n')
    dot = graph_dot(topo)
    assert 'n1 -- n0 [label="lab (tcp, connected)"];' in dot and dot.count(" -- ") == 1


def test_names_are_labels_never_ids(write) -> None:
    inv = write('all:\n  hosts:\n    "x\\"];evil":\n      ansible_connection: netns\n')
    topo = topology(load(inv).desired)
    assert graph_mermaid(topo) == 'graph LR\n  n0["x#quot;];evil"]\n'
    assert 'label="x\\"];evil"' in graph_dot(topo)


def test_the_markdown_plan_draws_the_tunnels_it_changes() -> None:
    loaded = load(str(CORPUS / "13-readme-first" / "inventory.yaml"))
    outcomes = [Outcome(h, Status.OK, make_plan(h, loaded.desired[h], Observed())) for h in ("gw1", "gw2")]
    text = plan_markdown(outcomes)
    assert "```mermaid\ngraph LR\n" in text
    assert ' ---|"+ lab (tcp)"| ' in text and text.count(' ---|"') == 1
