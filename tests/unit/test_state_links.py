"""What root does inside the state directories, when whoever could write them planted links,
hard links and odd values there: it never acts where they lead (files.private_subdirectory,
files.open_private, and the checks of the values records hold).

Each case failed on the code before: root wrote its pid over a hard-linked file, wrote a
registry and a confirmation into a linked directory, emptied a linked `trees`, unlinked lock
files under a linked `refs`, crashed on a huge pid, and took any text for a commit id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from provisioner import confirm, ownership
from provisioner.errors import ForwarderError
from provisioner.files import FileError
from provisioner.lock import host_lock
from provisioner.pull.agent import Agent, Options
from provisioner.pull.git import Repository
from provisioner.pull.record import Record
from provisioner.tunnel import runtime


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory elsewhere, with what root must leave alone: a file and a subdirectory."""
    place = tmp_path / "elsewhere"
    (place / "kept").mkdir(parents=True)
    (place / "secret").write_text("root:$6$not-yours\n")
    return place


def _untouched(place: Path) -> None:
    assert (place / "kept").is_dir() and (place / "secret").read_text() == "root:$6$not-yours\n"
    assert sorted(p.name for p in place.iterdir()) == ["kept", "secret"], list(place.iterdir())


def test_a_lock_file_hard_linked_elsewhere_is_not_written_through(tmp_path: Path, victim: Path) -> None:
    state = tmp_path / "state"
    (state / "locks").mkdir(parents=True, mode=0o700)
    os.link(victim / "secret", state / "locks" / "netns-x.lock")
    with pytest.raises(FileError, match="hard link"):
        with host_lock(state, "netns-x", "x", 0, print):
            pass
    assert (victim / "secret").read_text() == "root:$6$not-yours\n"


@pytest.mark.parametrize("directory", ["locks", "owners", "confirm"])
def test_a_linked_directory_of_the_state_directory_is_refused(tmp_path: Path, victim: Path, directory: str) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / directory).symlink_to(victim)
    with pytest.raises(FileError, match="symbolic link"):
        if directory == "locks":
            with host_lock(state, "netns-x", "x", 0, print):
                pass
        elif directory == "owners":
            ownership.save_registry(state, "netns-x", {"link tap0": "me"})
        else:
            confirm.wait(state, "netns-x", "x", 0.0, print)
    _untouched(victim)


def test_a_confirmation_note_with_a_pid_out_of_range_is_skipped_not_a_crash(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "confirm").mkdir(parents=True, mode=0o700)
    for key, pid in (("a", 2 ** 70), ("b", True), ("c", "1"), ("d", os.getpid())):
        (state / "confirm" / f"{key}{confirm.PENDING}").write_text(json.dumps({"host": key, "pid": pid}))
    assert confirm.confirm(state) == ["d"]


def _agent(persistent: Path) -> Agent:
    return Agent(Options("file:///nowhere", "main", "inv.yaml", "h", persistent / "run", persistent), lambda s: None)


def test_the_pull_agent_never_empties_where_a_linked_trees_leads(tmp_path: Path, victim: Path) -> None:
    agent = _agent(tmp_path)
    agent.dir.mkdir(parents=True, mode=0o700)
    (agent.dir / "trees").symlink_to(victim)
    agent._prune(Record("r", "main", "inv.yaml", "h"))
    _untouched(victim)


def test_the_pull_agent_s_own_directory_may_not_be_a_link(tmp_path: Path, victim: Path) -> None:
    agent = _agent(tmp_path)
    agent.dir.parent.mkdir(parents=True, mode=0o700)
    agent.dir.symlink_to(victim)
    with pytest.raises(FileError, match="symbolic link"):
        with agent.locked():
            pass
    _untouched(victim)


def test_git_s_stale_locks_are_removed_only_inside_the_repository(tmp_path: Path, victim: Path) -> None:
    repo = tmp_path / "repo.git"
    repo.mkdir(mode=0o700)
    (repo / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "refs").symlink_to(victim)
    (victim / "kept" / "dpkg.lock").write_text("")
    with pytest.raises(FileError, match="symbolic link"):
        Repository(repo).ensure()
    assert (victim / "kept" / "dpkg.lock").exists()


@pytest.mark.parametrize("good", ["--output=/etc/shadow", "/tmp/x", "../../..", "a" * 39, "A" * 40, 7])
def test_a_pull_record_s_commits_must_be_commit_ids(tmp_path: Path, good: object) -> None:
    """`good` becomes a path (the trees) and an argument of git (`git archive --output=F`
    truncates F, even when the command then fails)."""
    record = {"repo": "r", "branch": "main", "inventory": "inv.yaml", "host": "h", "good": good}
    with pytest.raises(ValueError):
        Record.from_dict(record)
    agent = _agent(tmp_path)
    agent.dir.mkdir(parents=True, mode=0o700)
    (agent.dir / "agent.json").write_text(json.dumps(record))
    with pytest.raises(FileError, match="is not a pull agent record"):
        agent.record()


def test_a_pull_record_of_another_shape_is_an_error_not_a_crash(tmp_path: Path) -> None:
    good = "0123456789abcdef" * 2 + "01234567"
    assert Record.from_dict({"repo": "r", "branch": "main", "inventory": "i", "host": "h", "good": good}).good == good
    for extra in ({"surprise": 1}, {"rejected": [{"commit": good}]}, {"last_run": {"at": "now"}}, {"runs": "1"}):
        with pytest.raises(ValueError):
            Record.from_dict({"repo": "r", "branch": "main", "inventory": "i", "host": "h", **extra})


@pytest.fixture
def stand_in(tmp_path: Path):
    """A process started as supervisor_command starts a supervisor (`python -m
    provisioner.tunnel.supervisor BASE`), from a stand-in package that only sleeps, so that the
    signal it gets, or not, is what is seen: a SIGHUP ends it. It runs in `tmp_path`, which `-m`
    puts first on its path."""
    package = tmp_path / "provisioner" / "tunnel"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "supervisor.py").write_text(textwrap.dedent("""
        import sys, time
        print("up", flush=True)
        time.sleep(30)
    """))
    made: list[subprocess.Popen[str]] = []

    def start(base: Path) -> subprocess.Popen[str]:
        p = subprocess.Popen([sys.executable, "-m", runtime.SUPERVISOR_MODULE, str(base)], text=True,
                             stdout=subprocess.PIPE, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
        made.append(p)
        assert p.stdout is not None and p.stdout.readline() == "up\n"
        return p

    yield start
    for p in made:
        p.kill()
        p.wait()


def _record(base: Path, pid: object) -> None:
    base.mkdir(parents=True, exist_ok=True)
    (base / runtime.SUPERVISOR).write_text(json.dumps({"pid": pid}))


def test_the_supervisor_is_signalled_only_by_its_own_pid_and_directory(tmp_path: Path, stand_in) -> None:
    mine, other = tmp_path / "tunnels" / "netns-a", tmp_path / "tunnels" / "netns-b"
    theirs = stand_in(other)
    _record(mine, theirs.pid)  # a's supervisor died; b's took its pid
    assert not runtime.signal_supervisor(mine, 1)
    time.sleep(0.1)
    assert theirs.poll() is None

    sleeper = subprocess.Popen(["sleep", "30"])  # any other process that took the pid
    try:
        _record(mine, sleeper.pid)
        assert not runtime.signal_supervisor(mine, 1)
        time.sleep(0.1)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()

    for pid in (2 ** 40, -1, 0, 1, True, "1", None):
        _record(mine, pid)
        assert not runtime.signal_supervisor(mine, 1)

    own = stand_in(mine)
    _record(mine, own.pid)
    assert runtime.signal_supervisor(mine, 1)
    assert own.wait(30) == -1  # the stand-in has no handler: the SIGHUP ended it


def test_a_supervisor_started_with_a_relative_directory_is_still_known(tmp_path: Path, stand_in) -> None:
    """An older version started it with the state directory as given, relative to its working directory."""
    base = tmp_path / "tunnels" / "netns-a"
    base.mkdir(parents=True)
    own = stand_in(Path("tunnels/netns-a"))  # it runs in tmp_path
    _record(base, own.pid)
    assert runtime.signal_supervisor(base, 1)
    assert own.wait(30) == -1


@pytest.mark.parametrize("planted", ["symlink", "hard link", "fifo"])
def test_the_supervisor_refuses_a_log_planted_in_its_directory(tmp_path: Path, victim: Path, planted: str) -> None:
    """Root appends the data plane's lines to tunnels.log: through a link they would go into
    another file; a FIFO there blocked the supervisor for good, holding the host's lock (so no
    other could start). It now ends at once, and an apply says the supervisor died."""
    base = tmp_path / "tunnels" / "netns-a"
    base.mkdir(parents=True, mode=0o700)
    log = base / runtime.LOG
    if planted == "symlink":
        log.symlink_to(victim / "secret")
    elif planted == "hard link":
        os.link(victim / "secret", log)
    else:
        os.mkfifo(log)
    p = subprocess.Popen([sys.executable, "-m", "provisioner.tunnel.supervisor", str(base)], stderr=subprocess.PIPE,
                         text=True)
    try:
        _, err = p.communicate(timeout=30)  # it ends at once; a loaded machine may take seconds to start it
    finally:
        p.kill()
        p.wait()
    assert p.returncode != 0 and f"{log}: " in err, err
    _untouched(victim)


def test_nothing_planted_in_the_agent_s_repository_runs_as_root(tmp_path: Path) -> None:
    """A hook (reference-transaction runs on every fetch) or a configuration (an ssh command, a
    credential helper) planted in the agent's clone ran as root on the next fetch."""
    source = tmp_path / "source"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(source)], check=True)
    subprocess.run(["git", "-C", str(source), "commit", "-q", "--allow-empty", "-m", "one"], check=True, env=env)
    clone = Repository(tmp_path / "repo.git")
    clone.ensure()
    marker = tmp_path / "ran"
    hook = clone.path / "hooks" / "reference-transaction"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    with open(clone.path / "config", "a") as f:
        f.write(f"[core]\n\tfsmonitor = touch {marker}.fsmonitor\n[alias]\n\tfetch = !touch {marker}.alias\n")
    clone.ensure()
    assert len(clone.fetch(str(source), "main")) == 40
    assert not list(tmp_path.glob("ran*"))


def test_apply_says_why_it_cannot_start_a_supervisor_where_one_would_die_unheard(tmp_path: Path,
                                                                               victim: Path) -> None:
    """A lock or log the supervisor refuses ends it at once, its traceback in a stderr nobody
    reads: apply checks them first, and says which and why."""
    from provisioner.tunnel.control import Tunnels

    tunnels = Tunnels(tmp_path / "state", "netns-a")
    tunnels.base.mkdir(parents=True)
    (tunnels.base / runtime.LOG).symlink_to(victim / "secret")
    with pytest.raises(ForwarderError, match="cannot start the tunnels' supervisor: .*tunnels.log: is a symbolic link"):
        tunnels._spawn()
    assert tunnels.spawned is None
    _untouched(victim)


def _source_repository(path: Path, *init: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}
    subprocess.run(["git", "init", "-q", *init, "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "--allow-empty", "-m", "one"], check=True, env=env)


def test_git_writes_nothing_where_a_link_planted_in_the_clone_leads(tmp_path: Path, victim: Path) -> None:
    """FETCH_HEAD through a link truncated its target on every fetch; refs/provision through one
    put the refs there."""
    _source_repository(tmp_path / "source")
    clone = Repository(tmp_path / "repo.git")
    clone.ensure()
    (clone.path / "FETCH_HEAD").symlink_to(victim / "secret")
    (clone.path / "logs").symlink_to(victim)
    clone.fetch(str(tmp_path / "source"), "main")
    _untouched(victim)
    (clone.path / "refs" / "provision").rename(tmp_path / "moved")
    (clone.path / "refs" / "provision").symlink_to(victim)
    with pytest.raises(FileError, match="provision: is a symbolic link"):
        clone.ensure()
    _untouched(victim)


def test_the_clone_keeps_the_formats_git_chose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its config is put back to what git init wrote, formats included: a SHA-256 clone whose
    config lost its objectformat could fetch nothing more."""
    _source_repository(tmp_path / "source", "--object-format=sha256")
    monkeypatch.setenv("GIT_DEFAULT_HASH", "sha256")
    clone = Repository(tmp_path / "repo.git")
    clone.ensure()
    clone.ensure()
    assert len(clone.fetch(str(tmp_path / "source"), "main")) == 64


def test_the_clone_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        clone = Repository(tmp_path / "repo.git")
        clone.ensure()
        clone.ensure()
    finally:
        os.umask(old)


@pytest.mark.parametrize("found, kept", [
    ("[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n", ""),
    ("[core]\n\trepositoryformatversion = 1\n\tfilemode = true\n\tbare = true\n[extensions]\n\tobjectformat = sha256\n",
     "[extensions]\n\tobjectformat = sha256\n"),
    ("[core]\n\tsshCommand = touch /x\n\trepositoryformatversion = 1\n[credential]\n\thelper = !touch /y\n"
     "[extensions]\n\tobjectformat = sha256\n\tworktreeconfig = true\n\trefstorage = reftable\n[x]\nobjectformat = sha1\n",
     "[extensions]\n\tobjectformat = sha256\n\trefstorage = reftable\n"),
])
def test_only_the_formats_of_a_found_config_are_kept(found: str, kept: str) -> None:
    from provisioner.pull.git import _trusted_config

    version = "1" if kept else "0"
    assert _trusted_config(found) == (f"[core]\n\trepositoryformatversion = {version}\n\tfilemode = true\n"
                                      f"\tbare = true\n{kept}")


def test_git_writes_no_object_where_a_linked_object_directory_leads(tmp_path: Path, victim: Path) -> None:
    """A fetch of a few objects writes them loose into objects/XX/, made if missing: a link
    planted at each name had root write them where it led."""
    _source_repository(tmp_path / "source")
    clone = Repository(tmp_path / "repo.git")
    clone.ensure()
    for i in range(256):
        (clone.path / "objects" / f"{i:02x}").symlink_to(victim / "kept")
    clone.ensure()
    clone.fetch(str(tmp_path / "source"), "main")
    _untouched(victim)
    assert list((victim / "kept").iterdir()) == []


def test_the_clone_is_private_whatever_git_s_own_configuration_says(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """core.sharedRepository=group (from /etc/gitconfig, say) made git's directories group-writable
    whatever the umask, and the checks refused the clone on every run."""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.sharedRepository")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "group")
    _source_repository(tmp_path / "source")
    clone = Repository(tmp_path / "repo.git")
    clone.ensure()
    clone.fetch(str(tmp_path / "source"), "main")
    clone.ensure()


def test_what_git_left_in_the_way_is_removed_whatever_it_is(tmp_path: Path) -> None:
    """A FIFO where the new clone is made, a directory where a lock file was: each stopped every run."""
    os.mkfifo(tmp_path / "repo.git.new")
    clone = Repository(tmp_path / "repo.git")
    clone.ensure()
    (clone.path / "packed-refs.lock").mkdir()
    clone.ensure()
    assert not (clone.path / "packed-refs.lock").exists()
