"""files.py: the one atomic write, the one careful read, the one state directory check."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from provisioner import keys
from provisioner.files import FileError, StateDirError, atomic_write, private_directory, read_regular
from provisioner.tunnel import runtime


def test_atomic_write_replaces_a_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root's own file\n")
    target = tmp_path / "facts.json"
    target.symlink_to(victim)
    for guess in (f".{target.name}.tmp", f".{target.name}.{os.getpid()}.tmp"):  # names others could predict
        (tmp_path / guess).symlink_to(victim)
    atomic_write(target, b"new\n")
    assert victim.read_text() == "root's own file\n"
    assert not target.is_symlink() and target.read_bytes() == b"new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_atomic_write_leaves_the_old_file_and_no_temporary_when_it_fails(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    atomic_write(target, b"old", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644

    script = ("import resource, signal, sys; from provisioner.files import atomic_write, FileError\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
              "try: atomic_write(sys.argv[1], b'n' * 4096)\n"
              "except FileError as exc: print(exc.errno, exc)")
    p = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, check=True)
    assert p.stdout.startswith(f"{errno.EFBIG} ") and "File too large" in p.stdout, p.stdout + p.stderr
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]
    with pytest.raises(FileError, match="cannot write"):
        atomic_write(tmp_path / "no" / "such" / "dir", b"x")


def test_atomic_write_syncs_unless_told_the_file_is_not_worth_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    atomic_write(tmp_path / "record.json", b"kept")
    assert len(synced) == 2  # the file, then its directory
    synced.clear()
    atomic_write(tmp_path / "cache.json", b"only time", durable=False)
    assert synced == [] and (tmp_path / "cache.json").read_bytes() == b"only time"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", "record.json"]


def test_atomic_write_does_not_import_tempfile(tmp_path: Path) -> None:
    # tempfile (with random, and shutil) was 5 ms of an apply's start, for one mkstemp
    script = ("import sys; from provisioner.files import atomic_write\n"
              "atomic_write(sys.argv[1], b'x'); print('tempfile' in sys.modules, 'shutil' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "f")], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def test_read_regular_refuses_what_would_hang_or_mislead_instead_of_blocking(tmp_path: Path) -> None:
    """Issue 14, defect 5: a FIFO where a file is expected blocked the reader for ever."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result: list[object] = []

    def read() -> None:
        try:
            read_regular(fifo)
        except FileError as exc:
            result.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "read_regular blocked on a FIFO"
    assert "not a regular file (a FIFO)" in str(result[0])
    with pytest.raises(FileError, match="a character device"):
        read_regular("/dev/zero")
    with pytest.raises(FileError, match="a directory"):
        read_regular(tmp_path)
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(FileError, match="11 bytes; at most 10"):
        read_regular(tmp_path / "big", 10)
    (tmp_path / "link").symlink_to(tmp_path / "big")
    with pytest.raises(FileError, match="symbolic link"):
        read_regular(tmp_path / "link")
    assert read_regular(tmp_path / "link", follow_links=True) == b"x" * 11
    with pytest.raises(FileError, match="No such file") as missing:
        read_regular(tmp_path / "absent")
    assert missing.value.errno == 2


def test_the_state_directory_and_every_component_above_it_are_checked(tmp_path: Path) -> None:
    """Issue 14, defect 7: only the last component was checked, and links in the path were followed."""
    base = tmp_path / "base"
    made = private_directory(base / "state")
    assert made == base / "state" and stat.S_IMODE(made.stat().st_mode) == 0o700
    (tmp_path / "link").symlink_to(base)
    with pytest.raises(StateDirError, match="is a symbolic link"):
        private_directory(tmp_path / "link" / "state")
    os.chmod(base, 0o775)  # group-writable: the group could rename state away and put its own
    with pytest.raises(StateDirError, match=f"{base} may be written by group or others"):
        private_directory(base / "state")
    os.chmod(base, 0o1777)  # sticky, like /tmp: others cannot rename what is ours
    assert private_directory(base / "state") == base / "state"
    os.chmod(base, 0o755)
    os.chmod(base / "state", 0o770)
    with pytest.raises(StateDirError, match="may be written by other users"):
        private_directory(base / "state")
    os.chmod(base / "state", 0o700)
    os.chown(base / "state", 65534, 65534)
    with pytest.raises(StateDirError, match="owned by uid 65534"):
        private_directory(base / "state")


def test_validate_of_a_fifo_says_so_instead_of_hanging(tmp_path: Path) -> None:
    """Issue 14, defect 5: reading a FIFO where a file was expected hung `validate`."""
    fifo = tmp_path / "inventory.yaml"
    os.mkfifo(fifo)
    p = subprocess.run([sys.executable, "-m", "provisioner", "validate", str(fifo)], capture_output=True, text=True,
                       timeout=20, env={**os.environ, "PROVISION_STATE_DIR": str(tmp_path / "state")})
    assert p.returncode == 1 and "cannot read inventory: is not a regular file (a FIFO)" in p.stderr, p.stderr


def test_keygen_is_whole_or_not_at_all_through_the_one_atomic_write(tmp_path: Path) -> None:
    """keys.keygen wrote its key with one unchecked write() to a predictable temporary name:
    a short write (here a file size limit of 16 bytes) replaced the key with a truncated one,
    and a file planted at that name stopped keygen. Now it is files.atomic_write."""
    key = tmp_path / "tunnel.key"
    script = ("import resource, signal, sys; from provisioner import keys\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))\n"
              "try: keys.keygen(sys.argv[1], force=True)\n"
              "except keys.KeyFileError as exc: print(exc)")
    public = keys.keygen(key)
    before = key.read_bytes()
    p = subprocess.run([sys.executable, "-c", script, str(key)], capture_output=True, text=True, check=True)
    assert "cannot write it: File too large" in p.stdout, p.stdout + p.stderr
    assert key.read_bytes() == before and keys.public_key(keys.read_private(key)) == public
    assert sorted(os.listdir(tmp_path)) == ["tunnel.key"], "a temporary file was left behind"

    victim = tmp_path / "victim"
    victim.write_text("root's own file\n")
    (tmp_path / f".{key.name}.{os.getpid()}.tmp").symlink_to(victim)  # the name keygen used to write
    keys.keygen(key, force=True)
    assert victim.read_text() == "root's own file\n" and key.read_bytes() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(keys.read_private(key)) == keys.KEY_BYTES


def test_tunnel_run_state_is_written_and_read_through_the_files_module(tmp_path: Path) -> None:
    """runtime.write_json opened a predictable temporary name with open(…, "w"), which follows
    a link planted there, and never fsynced; read_json followed links and blocked on a FIFO
    (apply, status and the supervisor read tunnels.json, supervisor.json and stats.json)."""
    victim = tmp_path / "victim"
    victim.write_text("root's own file\n")
    spec = tmp_path / runtime.WANTED
    (tmp_path / f".{spec.name}.{os.getpid()}.tmp").symlink_to(victim)  # the name write_json used to open
    runtime.write_json(spec, {"name": "core"})
    assert victim.read_text() == "root's own file\n"
    assert runtime.read_json(spec) == {"name": "core"}

    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"pid": 1}')
    (tmp_path / runtime.SUPERVISOR).symlink_to(elsewhere)
    assert runtime.read_json(tmp_path / runtime.SUPERVISOR) is None, "read_json followed a link"

    fifo = tmp_path / runtime.STATS
    os.mkfifo(fifo, 0o600)
    outcome: list[object] = []
    reader = threading.Thread(target=lambda: outcome.append(runtime.read_json(fifo)), daemon=True)
    reader.start()
    reader.join(30)
    try:
        assert not reader.is_alive(), "read_json blocked on a FIFO"
        assert outcome == [None]
    finally:
        if reader.is_alive():  # let the old code's blocked open return, so the thread ends
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


DEEP = b"[" * 100_000 + b"]" * 100_000  # JSON, nested deeper than json.loads recurses


def _deep_cache_entry(state: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    from zlib import crc32

    from provisioner import cache

    slot = cache.slot(state, ["deep"])
    state.mkdir(mode=0o700, exist_ok=True)
    slot.path.write_bytes(json.dumps({"format": cache.FORMAT, "key": slot.key, "crc32": crc32(DEEP)}).encode()
                          + b"\n" + DEEP)
    slot.path.chmod(0o600)
    return cache.get(slot) is None


def _deep_registry(state: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    from provisioner import ownership

    path = ownership.registry_path(state, "m")
    path.parent.mkdir(parents=True)
    path.write_bytes(DEEP)
    return ownership.load_registry(state, "m") == {}


def _deep_saved_plan(state: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    from provisioner import saved
    from provisioner.errors import ProvisionError

    (state / "plan.json").write_bytes(DEEP)
    with pytest.raises(ProvisionError, match="not a usable saved plan"):
        saved.read(str(state / "plan.json"))
    return True


def _deep_pull_record(state: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    from provisioner.pull import record

    (state / "record.json").write_bytes(DEEP)
    with pytest.raises(FileError, match="is not a pull agent record"):
        record.load(state / "record.json")
    return True


def _deep_confirmation_note(state: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    from provisioner import confirm

    (state / "confirm").mkdir(mode=0o700)
    (state / "confirm" / f"x{confirm.PENDING}").write_bytes(DEEP)
    return confirm.confirm(state) == []


def _deep_tunnel_state(state: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    (state / runtime.STATS).write_bytes(DEEP)
    return runtime.read_json(state / runtime.STATS) is None


def _deep_container_answer(state: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    from provisioner.connection import docker
    from provisioner.errors import HostError
    from provisioner.inventory import Host

    class Container:  # what the Docker SDK's container gives: the answer of `provision` inside it
        def put_archive(self, path: str, data: bytes) -> None:
            pass

        def exec_run(self, command: list[str], demux: bool) -> tuple[int, tuple[bytes, bytes]]:
            return 0, (DEEP, b"")

    host = Host("c1", (), ("all",), {"ansible_connection": "docker", "ansible_host": "c1"})
    monkeypatch.setattr(docker, "_container", lambda h: Container())
    with pytest.raises(HostError, match="failed"):
        docker.run_inside(host, "inventory.yaml", ["plan"], {"c1": host})
    return True


@pytest.mark.parametrize("reader", [_deep_cache_entry, _deep_registry, _deep_saved_plan, _deep_pull_record,
                                    _deep_confirmation_note, _deep_tunnel_state, _deep_container_answer])
def test_json_nested_past_the_decoder_s_depth_is_refused_as_bad_json(tmp_path: Path, monkeypatch, reader) -> None:
    """json.loads raises RecursionError, not ValueError, for a document nested too deeply: a
    cache entry, an ownership registry, a saved plan, a pull record, a confirmation note, a
    tunnel's state file or a container's answer of 200 KB of brackets was a traceback (in the
    supervisor, which reads tunnel state, the end of it). Each is refused as any bad JSON is."""
    assert reader(tmp_path, monkeypatch)
