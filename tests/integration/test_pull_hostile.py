"""`provision pull` against a hostile repository and an unlucky host (issue 14): each test
reproduces one attack or accident that worked before, and checks that it no longer does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from provisioner.pull.git import Repository

from .helpers import kernel, persistent, provision
from .test_pull import Repo, inventory, pull, record


@pytest.fixture
def repo(tmp_path: Path, netns: str) -> Repo:
    return Repo(tmp_path / "net", netns)


def test_a_reboot_does_not_let_an_older_commit_back(repo: Repo, netns: str, tmp_path: Path) -> None:
    """Defect 1: the record lived in /run; after a reboot (its state gone) the agent adopted an
    older commit that the branch was reset to, and the host went back to it."""
    state = tmp_path / "state"
    old = repo.commit(inventory(netns), "old")
    pull(repo, state, rc=0)
    new = repo.commit(inventory(netns, address="192.0.2.2/24"), "new")
    assert f"adopted {new[:12]}" in pull(repo, state, rc=0)
    shutil.rmtree(state)  # the reboot: /run is empty again
    repo.git("reset", "-q", "--hard", old)  # the attacker resets the branch to an older (signed) commit
    out = pull(repo, state, rc=1)
    assert f"refused {old[:12]}" in out and "the branch was rewritten" in out, out
    assert ("tap0", "192.0.2.2/24") in kernel(netns)["addrs"]
    assert record(state)["good"] == new

    shutil.rmtree(persistent(state))  # a lost record, and nothing pinned: nothing is adopted
    out = pull(repo, state, rc=1, pin=False)
    assert "no record of a last good commit" in out and "--min-commit" in out, out
    assert ("tap0", "192.0.2.2/24") in kernel(netns)["addrs"]


def test_links_in_the_tree_are_refused_even_when_they_look_inside(repo: Repo, netns: str, tmp_path: Path) -> None:
    """Defect 2: `z -> .` and `inventory.yaml -> z/z/…/../../…/secret` passed the lexical check
    (and tar's data filter), and the agent showed a root-only file in its record and status."""
    state = tmp_path / "state"
    repo.commit(inventory(netns), "good")
    pull(repo, state, rc=0)
    secret = tmp_path / "secret"
    secret.write_text("all: TOP-SECRET-4711\n")
    secret.chmod(0o600)
    depth = len(persistent(state).parts) + 6  # pull/<id>/trees/<commit>/, and to spare
    (repo.path / "inventory.yaml").unlink()
    (repo.path / "z").symlink_to(".")
    (repo.path / "inventory.yaml").symlink_to("z/" * depth + "../" * depth + str(secret).lstrip("/"))
    repo.git("add", "-A")
    bad = repo.commit_staged("reads a file outside the repository")
    out = pull(repo, state, rc=1)
    assert f"rejected {bad[:12]}" in out and "is a link" in out, out
    status = provision("status", "--json", state_dir=state, check_rc=0).out
    for shown in (out, json.dumps(record(state)), status):
        assert "TOP-SECRET" not in shown


def test_the_commit_does_not_choose_where_root_acts(repo: Repo, netns: str, make_netns, tmp_path: Path) -> None:
    """Defect 3: a commit's ansible_connection/ansible_host made the agent apply into another
    namespace. The agent runs in its host's network; the commit names another namespace."""
    state = tmp_path / "state"
    other = make_netns()
    repo.commit(inventory(other), "points the agent at another namespace")
    out = provision("pull", str(repo.path), "--branch", "main", "--host", "edge", "--min-commit", repo.root(),
                    state_dir=state, prefix=("ip", "netns", "exec", netns)).out
    assert "adopted" in out, out
    assert "tap0" in kernel(netns)["links"], "applied here, on the agent's own host"
    assert "tap0" not in kernel(other)["links"], "the namespace the commit named is untouched"


def test_facts_out_never_writes_through_a_planted_link(repo: Repo, netns: str, tmp_path: Path) -> None:
    """Defect 4: --facts-out wrote a predictable temporary name and followed links there."""
    state = tmp_path / "state"
    repo.commit(inventory(netns), "edge")
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    out_dir = tmp_path / "facts"
    out_dir.mkdir()
    (out_dir / ".edge.json.tmp").symlink_to(victim)  # the name the agent used to write first
    pull(repo, state, "--facts-out", str(out_dir / "edge.json"), rc=0)
    assert victim.read_text() == "root's file\n"
    assert "edge" in json.loads((out_dir / "edge.json").read_text())["all"]["hosts"]


def test_a_checkout_is_the_committed_bytes_whatever_gitattributes_say(tmp_path: Path) -> None:
    """Defect 6: `git archive` honoured the commit's .gitattributes (export-subst was expanded)
    and ran a filter driver from the global git configuration."""
    home = tmp_path / "home"
    home.mkdir()
    marker = tmp_path / "filter-ran"
    (home / ".gitconfig").write_text(f'[filter "evil"]\n\tsmudge = sh -c "touch {marker}; cat"\n')
    src = tmp_path / "src"
    src.mkdir()
    env = {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}

    def git(*args: str, cwd: Path = src) -> str:
        return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout

    git("init", "-q", "-b", "main")
    (src / ".gitattributes").write_text("inventory.yaml export-subst filter=evil ident\n")
    text = "# $Format:%H$ $Id$\nall: {}\n"
    (src / "inventory.yaml").write_text(text)
    git("add", "-A")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "attributes")
    commit = git("rev-parse", "HEAD").strip()
    bare = Repository(tmp_path / "bare.git")
    bare.ensure()
    import os

    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(home)  # the agent's own environment has the global config
    try:
        bare.fetch(str(src), "main")
        tree = bare.extract(commit, tmp_path / "tree")
    finally:
        if saved is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = saved
    assert (tree / "inventory.yaml").read_text() == text
    assert not marker.exists(), "a filter driver ran"


def test_a_value_yaml_cannot_read_is_a_rejected_commit_not_a_dead_agent(repo: Repo, netns: str, tmp_path: Path) -> None:
    """Found by an attacker's-eye review: ruamel raises ValueError for a date that is no date (or an
    integer of more digits than Python reads). It escaped the agent, which died on that commit
    before recording it, and so died again at every restart, never repairing the host."""
    state = tmp_path / "state"
    good_commit = repo.commit(inventory(netns), "good")
    pull(repo, state, rc=0)
    good = kernel(netns)
    bad = repo.commit(inventory(netns).replace("      network:\n", "      built: 2001-02-30\n      network:\n"),
                      "a date that is no date")
    out = pull(repo, state, rc=1)
    assert f"{bad[:12]}:inventory.yaml:6:" in out and "a value YAML cannot read" in out, out
    assert "Traceback" not in out and "internal error" not in out, out
    assert record(state)["good"] == good_commit
    assert any(r["commit"] == bad for r in record(state)["rejected"]), record(state)
    assert "was rejected before" in pull(repo, state, rc=1)
    assert kernel(netns) == good
