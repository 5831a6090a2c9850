"""Key files (keys.py) and who a forwarder may run as (privileges.ids_of): the parts of a
tunnel's identity that are read from this machine."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import threading

import pytest

from provisioner import keys
from provisioner.tunnel import privileges


def test_keygen_writes_a_private_key_and_returns_its_public_key(tmp_path) -> None:
    path = tmp_path / "keys" / "gw1.key"
    public = keys.keygen(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private = keys.read_private(path)
    assert len(private) == 32 and keys.public_key(private) == public and keys.encode(private) not in public
    assert private[0] & 7 == 0 and private[31] & 0xC0 == 0x40, "clamped as wg genkey does"
    with pytest.raises(keys.KeyFileError, match="already exists"):
        keys.keygen(path)
    assert keys.keygen(path, force=True) != public


def test_a_key_from_wg_genkey_gives_what_wg_pubkey_says(tmp_path) -> None:
    """The file formats are WireGuard's: a key made by `wg` works here, and the other way round."""
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    expected = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True).stdout
    path = tmp_path / "wg.key"
    path.write_text(private)
    path.chmod(0o600)
    assert keys.public_key(keys.read_private(path)) == expected.strip()
    ours = tmp_path / "ours.key"
    public = keys.keygen(ours)
    assert subprocess.run(["wg", "pubkey"], input=ours.read_text(), capture_output=True, text=True,
                          check=True).stdout.strip() == public


def test_a_public_key_file_round_trips_and_anyone_may_read_it(tmp_path) -> None:
    public = keys.keygen(tmp_path / "h.key")
    keys.write_public(tmp_path / "h.pub", public)
    assert stat.S_IMODE((tmp_path / "h.pub").stat().st_mode) == 0o644
    assert keys.read_public(tmp_path / "h.pub") == public


def test_pskgen_writes_a_psk_and_returns_its_id(tmp_path) -> None:
    path = tmp_path / "core.psk"
    psk_id = keys.pskgen(path)
    psk = keys.read_psk(path)
    assert keys.key_id(psk) == psk_id and psk.hex() not in psk_id and keys.encode(psk) not in psk_id


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_others_can_read_or_write_is_refused(tmp_path, mode: int) -> None:
    path = tmp_path / "gw1.key"
    keys.keygen(path)
    path.chmod(mode)
    with pytest.raises(keys.KeyFileError, match=rf"accessible by group or others \(mode {mode:04o}\).*chmod 600"):
        keys.read_private(path)


def test_a_key_file_owned_by_someone_else_is_refused(tmp_path) -> None:
    path = tmp_path / "gw1.key"
    keys.keygen(path)
    os.chown(path, 65534, 65534)
    with pytest.raises(keys.KeyFileError, match="owned by uid 65534, not by root or by this user"):
        keys.read_psk(path)


def test_a_symbolic_link_is_not_followed(tmp_path) -> None:
    keys.keygen(tmp_path / "real.key")
    (tmp_path / "link.key").symlink_to(tmp_path / "real.key")
    with pytest.raises(keys.KeyFileError, match="is a symbolic link; name the file itself"):
        keys.read_private(tmp_path / "link.key")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path) -> None:
    path = tmp_path / "fifo.key"
    os.mkfifo(path, 0o600)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _catch(outcome, keys.read_private, path), daemon=True)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], keys.KeyFileError) and "not a regular file" in str(outcome[0])


def _catch(out: list[BaseException], read, path) -> None:  # type: ignore[no-untyped-def]
    try:
        read(path)
    except BaseException as exc:  # noqa: BLE001 - the test looks at what it was
        out.append(exc)


def test_a_large_file_is_refused_unread(tmp_path) -> None:
    path = tmp_path / "big.key"
    path.write_bytes(b"A" * (keys.MAX_FILE_BYTES + 1))
    path.chmod(0o600)
    with pytest.raises(keys.KeyFileError, match=f"is {keys.MAX_FILE_BYTES + 1} bytes"):
        keys.read_psk(path)


@pytest.mark.parametrize("content", [b"", b"not base64 at all!", base64.b64encode(bytes(16)) + b"\n",
                                     base64.b64encode(bytes(33)) + b"\n", b"\xff\xfe\x00binary"])
def test_a_file_that_is_not_a_key_is_refused_without_showing_it(tmp_path, content: bytes) -> None:
    path = tmp_path / "lab.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(keys.KeyFileError) as info:
        keys.read_private(path)
    assert "is not a private key" in str(info.value) and "32 bytes in base64 on one line" in str(info.value)
    assert not content.strip() or content.decode(errors="replace").strip() not in str(info.value)


def test_a_missing_key_file_says_how_to_make_one(tmp_path) -> None:
    with pytest.raises(keys.KeyFileError, match=r"No such file.*provision keygen PATH") as info:
        keys.read_private(tmp_path / "none.key")
    assert info.value.missing
    with pytest.raises(keys.KeyFileError, match=r"provision keygen --psk PATH"):
        keys.read_psk(tmp_path / "none.psk")


@pytest.mark.parametrize("user, group, expected", [
    ("root", None, "user root is root \\(uid 0\\)"),
    ("0", None, "user 0 is root \\(uid 0\\)"),
    ("nobody", "root", "group root is root's \\(gid 0\\)"),
    ("nobody", "0", "group 0 is root's \\(gid 0\\)"),
    ("65534", "0", "group 0 is root's"),
])
def test_a_forwarder_never_runs_as_root(user: str, group: str | None, expected: str) -> None:
    with pytest.raises(privileges.PrivilegeError, match=expected):
        privileges.ids_of(user, group)


def test_the_default_user_is_provision_tunnel_and_missing_it_is_an_error(monkeypatch) -> None:
    assert privileges.DEFAULT_USER == "provision-tunnel"
    monkeypatch.setattr(privileges, "DEFAULT_USER", "provision-no-such-user")
    with pytest.raises(privileges.PrivilegeError, match="no user provision-no-such-user on this host"):
        privileges.ids_of(None, None)
    assert privileges.ids_of("nobody", None)[0] == 65534


def test_the_supervisor_grants_the_data_plane_its_private_key_and_psk(tmp_path) -> None:
    """What the data plane is handed with a tunnel: this host's private key and the psk (base64)."""
    from provisioner.tunnel.supervisor import GrantError, key_grant

    public = keys.keygen(tmp_path / "h.key")
    keys.pskgen(tmp_path / "t.psk")
    spec = {"private_key_file": str(tmp_path / "h.key"), "psk_file": str(tmp_path / "t.psk")}
    grant = key_grant(spec)
    assert set(grant) == {"private_key", "psk"}
    assert keys.public_key(base64.b64decode(grant["private_key"])) == public
    assert base64.b64decode(grant["psk"]) == keys.read_psk(tmp_path / "t.psk")
    assert "psk" not in key_grant({**spec, "psk_file": None})
    assert key_grant({"private_key_file": None}) == {}  # insecure: the device only
    (tmp_path / "h.key").chmod(0o644)
    with pytest.raises(GrantError, match="accessible by group or others"):
        key_grant(spec)
