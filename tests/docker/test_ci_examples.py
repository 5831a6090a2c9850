"""The CI examples, run for real: the exact commands of examples/ci's GitHub Actions and GitLab
CI workflows, as a non-root user in a container with provision installed (as a CI runner
has it), against facts snapshots that `provision facts` took of real namespaces. Checked for
each workflow: no change, changes pending, and an invalid inventory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.docker.archive import put
from tests.integration.helpers import provision

ROOT = Path(__file__).resolve().parents[2]
WORK = "/home/ci/repo"
NOBODY = 65534

INVENTORY = """all:
  hosts:
    gw1:
      ansible_connection: netns
      ansible_host: {ns1}
      network:
        devices:
          - {name: tap0, type: tap, mtu: 1400, addresses: [192.0.2.1/24]}
        routes:
          - {to: 198.51.100.0/24, via: 192.0.2.254}
    gw2:
      ansible_connection: netns
      ansible_host: {ns2}
      network:
        devices:
          - {name: tun0, type: tun, addresses: [203.0.113.1/24]}
"""


def workflows() -> dict[str, tuple[str, dict[str, str], str]]:
    """name → (the plan script exactly as written, its environment, where it writes the exit code)."""
    yaml = YAML(typ="safe")
    gh = yaml.load((ROOT / "examples/ci/github-actions.yml").read_text())["jobs"]["plan"]
    (step,) = [s for s in gh["steps"] if s.get("id") == "plan"]
    gl = yaml.load((ROOT / "examples/ci/gitlab-ci.yml").read_text())["provision-plan"]
    return {
        "github": (step["run"], {**gh["env"], "GITHUB_OUTPUT": f"{WORK}/github_output"}, "github_output"),
        "gitlab": ("\n".join(gl["script"]), dict(gl["variables"]), "plan.env"),
    }


@pytest.fixture
def snapshots(make_netns: Callable[[], str], tmp_path: Path) -> dict[str, str]:
    """facts/gw1.json and facts/gw2.json, of two namespaces provisioned by the real apply."""
    ns1, ns2 = make_netns(), make_netns()
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY.replace("{ns1}", ns1).replace("{ns2}", ns2))
    state = tmp_path / "state"
    provision("apply", str(inventory), state_dir=state, check_rc=0)
    out = {"inventory.yaml": inventory.read_text()}
    for host in ("gw1", "gw2"):
        out[f"facts/{host}.json"] = provision("facts", str(inventory), "--limit", host, "--json",
                                               state_dir=state, check_rc=0).out
    return out


@pytest.mark.parametrize("workflow", ["github", "gitlab"])
def test_the_example_workflow_as_a_non_root_user(workflow: str, snapshots: dict[str, str], containers) -> None:  # type: ignore[no-untyped-def]
    script, env, exit_file = workflows()[workflow]
    (container,) = containers(["provision-ci"]).values()
    clean = snapshots["inventory.yaml"]

    def run(inventory: str) -> tuple[int, str, str, str]:
        files = {f"{WORK}/{name}": text.encode() for name, text in {**snapshots, "inventory.yaml": inventory}.items()}
        put(container, files, mode=0o644, dirs=["/home/ci", WORK, f"{WORK}/facts"], owner=NOBODY)
        container.exec_run(["rm", "-f", f"{WORK}/plan.md", f"{WORK}/{exit_file}"])
        code, out = container.exec_run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                                       user=f"{NOBODY}:{NOBODY}", workdir=WORK, environment=env)
        cat = lambda f: container.exec_run(["cat", f"{WORK}/{f}"])[1].decode()  # noqa: E731
        return code, out.decode(), cat("plan.md"), cat(exit_file)

    assert container.exec_run(["id", "-u"], user=f"{NOBODY}:{NOBODY}")[1].decode().strip() == str(NOBODY)
    code, out, plan, exits = run(clean)
    assert code == 0, out
    assert "exitcode=0" in exits.lower().replace("plan_", ""), exits
    assert "### provision plan: 0 hosts with changes, 2 without" in plan
    assert "#### `gw1`: no changes (3 in sync)" in plan and "#### `gw2`: no changes" in plan

    changed = clean.replace("mtu: 1400", "mtu: 1380").replace("{name: tun0, type: tun, addresses: [203.0.113.1/24]}",
                                                                "{name: tun0, type: tun}")
    code, out, plan, exits = run(changed)
    assert code == 0, out  # pending changes are not a failure of the job
    assert "exitcode=2" in exits.lower().replace("plan_", ""), exits
    assert "### provision plan: 2 hosts with changes, 0 without" in plan
    assert "| `~` | device `tap0` | mtu: 1400 → 1380 |" in plan
    assert "| `-` | address `203.0.113.1/24 on tun0` |" in plan

    invalid = clean.replace("type: tun,", "type: tunnel,")
    code, out, plan, exits = run(invalid)
    assert code == 1, out
    assert "exitcode=1" in exits.lower().replace("plan_", ""), exits
    assert "### provision plan: failed" in plan
    assert 'inventory.yaml:16:32: all.hosts.gw2.network.devices[0].type: "tunnel" is not one of' in plan, plan

