"""`provision pull` against a real git repository and a fresh namespace: adoption, drift
repair, every kind of bad commit (each leaves the kernel exactly as the last good commit left
it), signatures, SIGTERM between runs and SIGKILL in the middle of one."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import PROVISION, env_for, kernel, persistent, provision

GOOD = """all:
  hosts:
    edge:
      ansible_connection: netns
      ansible_host: {ns}
      network:
        devices:
          - {name: tap0, type: tap, addresses: [192.0.2.1/24]}
{more}        routes:
          - {to: 198.51.100.0/24, via: 192.0.2.254}
"""


def inventory(ns: str, address: str = "192.0.2.1/24", via: str = "192.0.2.254", taps: int = 0) -> str:
    more = "".join(f"          - {{name: pt{i}, type: tap}}\n" for i in range(taps))
    return GOOD.replace("{ns}", ns).replace("{more}", more).replace("192.0.2.1/24", address) \
        .replace("via: 192.0.2.254", f"via: {via}")


def network(ns: str) -> dict:
    """The kernel's state, less what a re-created device gets anew (a random MAC)."""
    state = kernel(ns)
    state["links"] = {name: {k: v for k, v in link.items() if k != "mac"} for name, link in state["links"].items()}
    return state


class Repo:
    def __init__(self, path: Path, ns: str):
        self.path, self.ns = path, ns  # ns: the namespace the agent is told (--netns) to keep
        path.mkdir()
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "ops@example.com")
        self.git("config", "user.name", "Ops")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.path), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    def commit(self, text: str, message: str, *extra: str, path: str = "inventory.yaml") -> str:
        (self.path / path).parent.mkdir(exist_ok=True)
        (self.path / path).write_text(text)
        self.git("add", path)
        self.git("commit", "-q", "--allow-empty", "-m", message, *extra)
        return self.git("rev-parse", "HEAD")


    def commit_staged(self, message: str) -> str:
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def root(self) -> str:
        return self.git("rev-list", "--max-parents=0", "HEAD").split()[-1]


@pytest.fixture
def repo(tmp_path: Path, netns: str) -> Repo:
    return Repo(tmp_path / "net", netns)


def agent_args(repo: Repo, pin: bool) -> list[str]:
    """This host is the test's namespace, and the first commit is the one pinned, as an
    operator installing the agent pins the commit they checked (there is no record yet)."""
    pin = pin and repo.path.exists()  # (not when a test has moved the repository away)
    return ["--netns", repo.ns, *(("--min-commit", repo.root()) if pin else ())]


def pull(repo: Repo, state: Path, *args: str, rc: int | None = None, repo_path: str | None = None,
         pin: bool = True) -> str:
    r = provision("pull", repo_path or str(repo.path), "--branch", "main", "--host", "edge",
                  *agent_args(repo, pin), *args, state_dir=state, check_rc=rc)
    return r.out + r.err


def record(state: Path, branch: str = "main") -> dict:
    (found,) = [r for r in (json.loads(p.read_text()) for p in persistent(state).glob("pull/*/agent.json"))
                if r["branch"] == branch]
    return found


def test_adopts_a_commit_then_repairs_drift_and_shows_it_in_status(repo: Repo, netns: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = repo.commit(inventory(netns), "edge: tap0")
    snapshot = tmp_path / "edge.json"
    out = pull(repo, state, "--facts-out", str(snapshot), rc=0)
    assert f"adopted {first[:12]}: 3 changes" in out
    (repo.path / "inventory.yaml").write_text(inventory(netns))  # CI plans the commit against the snapshot
    provision("plan", str(repo.path / "inventory.yaml"), "--facts", str(snapshot), "--detailed-exitcode",
              state_dir=state, check_rc=0)
    good = network(netns)
    assert ("tap0", "192.0.2.1/24") in good["addrs"]
    assert "in sync" in pull(repo, state, rc=0)  # nothing new, nothing drifted

    subprocess.run(["ip", "-n", netns, "link", "del", "tap0"], check=True)
    out = pull(repo, state, "--no-repair", rc=1)
    assert "drift from" in out and "3 changes not repaired" in out
    assert "tap0" not in kernel(netns)["links"]
    assert "repaired 3 drifted resources" in pull(repo, state, rc=0)
    assert network(netns) == good

    text = provision("status", state_dir=state, check_rc=0).out
    assert f"PULL AGENT for edge: {repo.path} (main)" in text and f"last good  {first}" in text
    (agent,) = json.loads(provision("status", "--json", state_dir=state, check_rc=0).out)["pull"]
    assert agent["good"] == agent["fetched"] == first and agent["last_run"]["ok"] and agent["runs"] == 4


def test_bad_commits_change_nothing_and_leave_the_host_on_its_last_good_commit(
        repo: Repo, netns: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    good_commit = repo.commit(inventory(netns), "good")
    pull(repo, state, rc=0)
    good = network(netns)

    def rejected(out: str, commit: str, *words: str) -> None:
        assert network(netns) == good, out
        assert record(state)["good"] == good_commit
        assert any(r["commit"] == commit for r in record(state)["rejected"]), record(state)
        for w in words:
            assert w in out, out

    # YAML error: rejected with the line, and not tried again by the next run
    broken = repo.commit("all:\n  hosts:\n    edge: {\n", "broken YAML")
    rejected(pull(repo, state, rc=1), broken, "YAML syntax error", f"{broken[:12]}:inventory.yaml:4")
    again = pull(repo, state, rc=1)
    assert "trying" not in again and "was rejected before" in again
    rejected(again, broken)
    # a route the kernel refuses: the apply is rolled back
    bad_route = repo.commit(inventory(netns, address="192.0.2.7/24", via="203.0.113.9"), "unreachable gateway")
    rejected(pull(repo, state, rc=1), bad_route, "kernel refused", "rolled back", f"on {good_commit[:12]}")
    # the repository cannot be reached
    repo.path.rename(tmp_path / "away")
    out = pull(repo, state, rc=1, repo_path=str(repo.path))
    assert "cannot fetch" in out and "does not appear to be a git repository" in out
    rejected(out, bad_route)
    (tmp_path / "away").rename(repo.path)
    # a branch that does not exist: told, nothing changed
    out = provision("pull", str(repo.path), "--branch", "nope", "--host", "edge", state_dir=state, check_rc=1).out
    assert "branch 'nope' does not exist" in out and network(netns) == good
    # a force-pushed branch: its new history does not contain the last good commit
    repo.git("checkout", "-q", "--orphan", "rewritten")
    rewritten = repo.commit(inventory(netns, address="192.0.2.9/24"), "history rewritten")
    repo.git("branch", "-q", "-M", "main")
    rejected(pull(repo, state, rc=1), rewritten, "the branch was rewritten", "--allow-reset")
    # ... which --allow-reset follows
    assert f"adopted {rewritten[:12]}" in pull(repo, state, "--allow-reset", rc=0)
    assert ("tap0", "192.0.2.9/24") in kernel(netns)["addrs"]


def test_only_commits_signed_by_an_allowed_key_are_applied(repo: Repo, netns: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    keys = {}
    for who in ("ops", "mallory"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who, "-f", str(tmp_path / who)],
                       check=True)
        keys[who] = (tmp_path / f"{who}.pub").read_text().strip()
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"ops@example.com {keys['ops']}\n")
    repo.git("config", "gpg.format", "ssh")
    verify = ("--verify-signatures", "--allowed-signers", str(signers))

    unsigned = repo.commit(inventory(netns), "unsigned")
    out = pull(repo, state, *verify, rc=1)
    assert f"commit {unsigned[:12]} is not signed by an allowed key: the commit is not signed" in out
    assert "tap0" not in kernel(netns)["links"]
    repo.git("config", "user.signingkey", str(tmp_path / "mallory.pub"))
    forged = repo.commit(inventory(netns), "signed by someone else", "-S")
    out = pull(repo, state, *verify, rc=1)
    assert f"commit {forged[:12]} is not signed by an allowed key" in out and "tap0" not in kernel(netns)["links"]
    repo.git("config", "user.signingkey", str(tmp_path / "ops.pub"))
    for_staging = repo.commit(inventory(netns), "signed by ops for staging", "-S",
                              "--trailer", "Provision-Branch: staging")
    out = pull(repo, state, *verify, rc=1)
    assert f"commit {for_staging[:12]} is signed for branch staging, not main" in out
    assert "tap0" not in kernel(netns)["links"]
    signed = repo.commit(inventory(netns), "signed by ops", "-S", "--trailer", "Provision-Branch: main")
    assert f"adopted {signed[:12]}" in pull(repo, state, *verify, rc=0)
    assert "tap0" in kernel(netns)["links"]


def _agent(repo: Repo, state: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*PROVISION, "pull", str(repo.path), "--branch", "main", "--host", "edge",
                             *agent_args(repo, True), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_for(state))


def _wait_line(p: subprocess.Popen[str], word: str) -> str:
    assert p.stdout is not None
    for line in p.stdout:
        if word in line:
            return line
    raise AssertionError(f"the agent ended without saying {word!r}")


def test_sigkill_in_the_middle_of_runs_leaves_a_whole_record_and_the_next_run_completes(
        repo: Repo, netns: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = repo.commit(inventory(netns), "small")
    pull(repo, state, rc=0)
    big = repo.commit(inventory(netns, taps=300), "300 more taps")
    interrupted = 0
    for delay in (0.0, 0.05, 0.15, 0.3):
        p = _agent(repo, state)
        _wait_line(p, "trying")  # the apply of 300 devices is under way
        time.sleep(delay)
        p.kill()
        p.wait()
        saved = record(state)  # whole JSON, never half a file
        assert saved["good"] in (first, big)
        interrupted += saved["good"] == first
        if saved["good"] == big:  # this kill came after the adoption: a next agent would have nothing to try
            break
    assert interrupted, "no kill landed before the adoption was recorded"
    out = pull(repo, state, rc=0)
    assert f"adopted {big[:12]}" in out or "in sync" in out, out
    assert record(state)["good"] == big
    assert len([link for link in kernel(netns)["links"] if link.startswith("pt")]) == 300
    assert not list(persistent(state).glob("pull/*/.agent.json.*")), "a temporary record was left behind"


def test_sigterm_lets_a_run_finish_and_stops_between_runs(repo: Repo, netns: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    big = repo.commit(inventory(netns, taps=300), "300 taps")
    p = _agent(repo, state, "--interval", "30")
    _wait_line(p, "trying")
    p.send_signal(signal.SIGTERM)  # mid-apply: the run finishes, then the agent stops
    rest = p.communicate(timeout=30)[0]
    assert p.returncode == 0, rest
    assert f"adopted {big[:12]}" in rest and rest.rstrip().endswith("stopped")
    assert len([link for link in kernel(netns)["links"] if link.startswith("pt")]) == 300
    p = _agent(repo, state, "--interval", "30")
    _wait_line(p, "in sync")
    started = time.monotonic()
    p.send_signal(signal.SIGTERM)  # while it waits for the next run
    p.communicate(timeout=10)
    assert p.returncode == 0 and time.monotonic() - started < 2


def test_the_agent_shares_the_apply_lock(repo: Repo, netns: str, tmp_path: Path) -> None:
    import fcntl

    state = tmp_path / "state"
    repo.commit(inventory(netns), "edge")
    (state / "locks").mkdir(parents=True, mode=0o700)
    with open(state / "locks" / f"netns-{netns}.lock", "w") as held:  # the machine's lock, not the name's
        fcntl.flock(held, fcntl.LOCK_EX)
        out = pull(repo, state, "--lock-timeout", "0.5", rc=1)
    assert "another provision run" in out and "tap0" not in kernel(netns)["links"]
    assert "adopted" in pull(repo, state, rc=0)


def test_the_shipped_systemd_units_verify(tmp_path: Path) -> None:
    """contrib/systemd as installed: the service pointed at this provision and the example
    environment file, checked by systemd's own verifier."""
    import shutil
    import sys

    root = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
    env = tmp_path / "pull.env"
    shutil.copy(root / "pull.env.example", env)
    provision_bin = Path(sys.executable).with_name("provision")
    service = (root / "provision-pull.service").read_text()
    assert "KillMode=process" in service and "RuntimeDirectoryPreserve=yes" in service
    (tmp_path / "provision-pull.service").write_text(
        service.replace("/etc/provision/pull.env", str(env)).replace("/usr/local/bin/provision", str(provision_bin)))
    shutil.copy(root / "provision-pull.timer", tmp_path)
    p = subprocess.run(["systemd-analyze", "verify", "provision-pull.service", "provision-pull.timer"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr


def test_a_commit_with_a_link_out_of_its_tree_is_rejected_not_followed(repo: Repo, netns: str,
                                                                       tmp_path: Path) -> None:
    """Only the inventory's directory is checked out: a link elsewhere in the repository does
    not matter, one beside the inventory rejects the commit."""
    state = tmp_path / "state"
    (repo.path / "elsewhere").symlink_to("/etc")
    repo.git("add", "elsewhere")
    good = repo.commit(inventory(netns), "good, with a link outside the inventory's directory", path="net/hosts.yaml")
    pull(repo, state, "--inventory", "net/hosts.yaml", rc=0)
    (repo.path / "net" / "escape").symlink_to("/etc")
    repo.git("add", "net/escape")
    bad = repo.commit(inventory(netns, address="192.0.2.5/24"), "a link to /etc beside the inventory",
                      path="net/hosts.yaml")
    out = pull(repo, state, "--inventory", "net/hosts.yaml", rc=1)
    assert f"rejected {bad[:12]}: commit {bad[:12]} cannot be checked out safely" in out, out
    assert ("tap0", "192.0.2.1/24") in kernel(netns)["addrs"]
    (saved,) = [json.loads(p.read_text()) for p in persistent(state).glob("pull/*/agent.json")]
    assert saved["good"] == good
