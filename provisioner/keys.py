"""Tunnel keys, as WireGuard has them: a static X25519 key pair per host, and an optional
pre-shared key per tunnel.

A key file holds 32 bytes in base64 on one line: the format of `wg genkey` and `wg genpsk`,
so a key made by either tool works in the other. The private key stays on its host, in a file
only root (or the user running provision) may read; its public key is what the inventory
holds (`tunnel_public_key`). A pre-shared key (`psk_file`) is the same on both ends.

A key file is a secret that someone else may have put in our way, so reading one is done
as ssh reads a private key and more: never through a symbolic link, never blocking on a
FIFO, only a regular file of at most a few hundred bytes, with no access for group or
others and owned by root or by us. A secret others can read is no longer a secret, and one
they can write is theirs.

Secrets never leave this module except into a forwarder's memory. What the rest of
provision sees is a public key, or for a pre-shared key its id: a keyed hash, so that a
plan can say "the psk changed" and two ends can be checked to hold the same one.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import stat
from pathlib import Path

from .errors import ProvisionError
from .files import FileError, atomic_write

KEY_BYTES = 32
MAX_FILE_BYTES = 256  # a key file is 45 bytes; anything much larger is not one
DEFAULT_PRIVATE_KEY_FILE = "/etc/provision/tunnel.key"


class KeyFileError(ProvisionError):
    """A key file that cannot be used. Its message names the file, never what is in it.
    `missing`: it could not be opened here at all (absent, or not ours to read)."""

    def __init__(self, path: str | os.PathLike[str], message: str, missing: bool = False):
        self.path, self.missing = str(path), missing
        super().__init__(f"key file {self.path}: {message}")


def keygen(path: str | os.PathLike[str], force: bool = False) -> str:
    """Write a new X25519 private key with mode 0600; its public key (base64), for the inventory.
    An existing file is kept unless `force`, and then replaced atomically."""
    private = bytearray(os.urandom(KEY_BYTES))  # what secrets.token_bytes is
    private[0] &= 248  # clamped as `wg genkey` does (X25519 clamps anyway: the same key either way)
    private[31] = (private[31] & 127) | 64
    _write(Path(path), encode(bytes(private)).encode(), force)
    return public_key(bytes(private))


def write_public(path: str | os.PathLike[str], public: str) -> None:
    """The public key (base64) into a file anyone may read, for `tunnel_public_key_file`."""
    _write(Path(path), public.encode(), force=True, mode=0o644)


def pskgen(path: str | os.PathLike[str], force: bool = False) -> str:
    """Write a new random pre-shared key with mode 0600; its id."""
    psk = os.urandom(KEY_BYTES)
    _write(Path(path), encode(psk).encode(), force)
    return key_id(psk)


def _write(target: Path, text: bytes, force: bool, mode: int = 0o600) -> None:
    """So a reader sees the old key or the new one, never half of one: the one atomic write
    (files.atomic_write: a fresh temporary name, fsync, rename, directory fsync)."""
    if target.exists() and not force:
        raise KeyFileError(target, "already exists (use --force to replace it: that changes the key)")
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(target, f"cannot write it: {exc.strerror}") from None
    try:
        atomic_write(target, text + b"\n", mode=mode)
    except FileError as exc:
        raise KeyFileError(target, f"cannot write it: {os.strerror(exc.errno) if exc.errno else exc}") from None


def read_private(path: str | os.PathLike[str]) -> bytes:
    """This host's private key (32 bytes), after the checks in the module's docstring."""
    return _read(path, "a private key (write one with: provision keygen PATH)")


def read_psk(path: str | os.PathLike[str]) -> bytes:
    """A tunnel's pre-shared key (32 bytes), after the same checks."""
    return _read(path, "a pre-shared key (write one with: provision keygen --psk PATH)")


def read_public(path: str | os.PathLike[str]) -> str:
    """A public key (base64) from a file; not a secret, but still read as hostile input."""
    return encode(_read(path, "a public key (one line of base64, as provision keygen --public-file writes)",
                        secret=False))


def _read(path: str | os.PathLike[str], what: str, secret: bool = True) -> bytes:
    try:  # O_NONBLOCK: a FIFO put in our way must not hang us; O_NOFOLLOW: nor a link lead elsewhere
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyFileError(path, "is a symbolic link; name the file itself") from None
        hint = f" (it should be {what})" if exc.errno == errno.ENOENT else ""
        raise KeyFileError(path, (exc.strerror or "cannot be read") + hint,
                           missing=exc.errno in (errno.ENOENT, errno.EACCES, errno.ENOTDIR)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(path, "is not a regular file")
        if secret and st.st_mode & 0o077:
            raise KeyFileError(path, f"is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                                     f"run: chmod 600 {path}")
        if secret and st.st_uid not in (0, os.geteuid()):
            raise KeyFileError(path, f"is owned by uid {st.st_uid}, not by root or by this user")
        if st.st_size > MAX_FILE_BYTES:
            raise KeyFileError(path, f"is {st.st_size} bytes: not {what}")
        data = os.read(fd, MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    key = decode(data.decode("ascii", "replace").strip()) if len(data) <= MAX_FILE_BYTES else None
    if key is None:
        raise KeyFileError(path, f"is not {what}: {KEY_BYTES} bytes in base64 on one line")
    return key


def decode(text: str) -> bytes | None:
    """The 32 bytes a base64 key stands for, or None if it is not one."""
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


def encode(key: bytes) -> str:
    return base64.b64encode(key).decode()


def public_key(private: bytes) -> str:
    """The public key (base64) of a private key: what `wg pubkey` prints for it."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # 15 ms: only with tunnels

    return encode(X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw())


def key_id(key: bytes) -> str:
    """A public name for a pre-shared key: the same key gives the same id, and the id gives away nothing."""
    import hashlib  # here: only with tunnels (fingerprint.py)
    import hmac

    return hmac.new(key, b"provision key id v1", hashlib.sha256).hexdigest()[:16]
