"""`--forks N`: hosts in parallel worker processes. Same plans as one at a time, every host's
outcome in the recap, and a host that fails does not stop the others."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .helpers import kernel, provision

HOST = """    h{n}:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {{name: tap0, type: tap, addresses: [192.0.2.{n}/24]}}
          - {{name: tun1, type: tun, mtu: 1400}}
        routes:
          - {{to: 198.51.100.0/24, via: {via}}}
"""


def fleet(path: Path, namespaces: list[str], broken: int | None = None) -> Path:
    hosts = "".join(HOST.format(n=i + 1, ns=ns, via="203.0.113.9" if i == broken else "192.0.2.254")
                    for i, ns in enumerate(namespaces))
    path.write_text("all:\n  hosts:\n" + hosts)
    return path


def test_forks_plan_like_one_at_a_time_and_a_failing_host_does_not_stop_the_others(
        make_netns: Callable[[], str], tmp_path: Path) -> None:
    namespaces = [make_netns() for _ in range(5)]
    state = tmp_path / "state"
    inv = fleet(tmp_path / "fleet.yaml", namespaces, broken=2)  # h3's gateway is unreachable

    one = json.loads(provision("plan", str(inv), "--json", state_dir=state, check_rc=0).out)
    many = json.loads(provision("plan", str(inv), "--json", "--forks", "4", state_dir=state, check_rc=0).out)
    assert many == one and [h["host"] for h in many["hosts"]] == ["h1", "h2", "h3", "h4", "h5"]

    r = provision("apply", str(inv), "--forks", "4", state_dir=state, check_rc=1)
    recap = r.out[r.out.index("RECAP"):].splitlines()[1:]
    assert [line.split()[0] for line in recap] == ["h1", "h2", "h3", "h4", "h5"], r.out  # inventory order
    for line in recap:
        assert ("failed=1" in line) == line.startswith("h3"), r.out
        assert ("changed=4" in line) == (not line.startswith("h3")), r.out
    assert "h3: FAILED: route 198.51.100.0/24 metric 0: kernel refused" in r.err
    for i, ns in enumerate(namespaces):
        links = kernel(ns)["links"]
        assert ("tap0" in links) == (i != 2), (i, links)  # h3 rolled back, the others applied

    fixed = fleet(tmp_path / "fixed.yaml", namespaces)
    r = provision("apply", str(fixed), "--forks", "8", state_dir=state, check_rc=0)
    assert "h3 : ok=4 changed=4 unreachable=0 failed=0" in r.out and r.out.count("no changes") == 4, r.out
    assert provision("plan", str(fixed), "--forks", "3", "--detailed-exitcode", state_dir=state).rc == 0
    r = provision("destroy", str(fixed), "--forks", "5", state_dir=state, check_rc=0)
    assert all("tap0" not in kernel(ns)["links"] for ns in namespaces)


def test_forks_must_be_a_positive_number_and_a_usage_error_exits_1_not_2(tmp_path: Path) -> None:
    r = provision("plan", "x.yaml", "--forks", "0", state_dir=tmp_path / "state", check_rc=1)
    assert "argument --forks/-f: expected a whole number of at least 1, got '0'" in r.err and "Traceback" not in r.err


def test_workers_are_no_more_than_the_cpus_unless_a_host_is_a_container(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A namespace or local host is CPU work: more workers than CPUs only add forks (on 2 cores,
    --forks 8 planned 50 namespaces slower than --forks 1). A container's run is mostly waiting."""
    import os
    from types import SimpleNamespace

    from provisioner import fleet

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    local = SimpleNamespace(hosts=[SimpleNamespace(connection="netns")] * 50)
    assert fleet._workers(local, 8) == 2  # type: ignore[arg-type]
    assert fleet._workers(SimpleNamespace(hosts=local.hosts[:1]), 8) == 1  # type: ignore[arg-type]
    mixed = SimpleNamespace(hosts=[*local.hosts, SimpleNamespace(connection="docker")])
    assert fleet._workers(mixed, 8) == 8  # type: ignore[arg-type]
