"""Tunnel keys: the pre-shared secret both ends of a tunnel hold, one file each.

A key file holds 32 random bytes in base64 on one line, as `provision keygen` writes it
(the format WireGuard uses for its keys). Like ssh with a private key, provision refuses a
key file that group or others can read or write, or that someone other than root or us
owns: a secret that others can read is no longer a secret, and one they can write is theirs.

The key never leaves this module except into a forwarder's memory. What the rest of
provision sees is the key's id: a keyed hash of it, so that a plan can say "the key
changed" and two ends can be checked to hold the same key, without the key itself.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from .errors import ProvisionError

KEY_BYTES = 32


class KeyFileError(ProvisionError):
    """A key file that cannot be used. Its message names the file, never what is in it.
    `missing`: it could not be opened here at all (absent, or not ours to read)."""

    def __init__(self, path: str | os.PathLike[str], message: str, missing: bool = False):
        self.path, self.missing = str(path), missing
        super().__init__(f"key file {self.path}: {message}")


def keygen(path: str | os.PathLike[str], force: bool = False) -> str:
    """Write a new random key with mode 0600; its id. An existing file is kept unless `force`,
    and then replaced atomically, so a reader sees the old key or the new one, never half."""
    target = Path(path)
    if target.exists() and not force:
        raise KeyFileError(target, "already exists (use --force to replace it: that rotates the key)")
    key = secrets.token_bytes(KEY_BYTES)
    text = base64.b64encode(key) + b"\n"
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        raise KeyFileError(target, f"cannot write it: {exc.strerror}") from None
    return key_id(key)


def read_key(path: str | os.PathLike[str]) -> bytes:
    """The key in the file, after the checks ssh makes of a private key."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # a symlink is followed: its target is checked
    except OSError as exc:
        hint = " (make one with: provision keygen PATH)" if exc.errno == errno.ENOENT else ""
        raise KeyFileError(path, (exc.strerror or "cannot be read") + hint,
                           missing=exc.errno in (errno.ENOENT, errno.EACCES, errno.ENOTDIR)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(path, "is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(path, f"is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                                     f"run: chmod 600 {path}")
        if st.st_uid not in (0, os.geteuid()):
            raise KeyFileError(path, f"is owned by uid {st.st_uid}, not by root or by this user")
        data = os.read(fd, 256)
    finally:
        os.close(fd)
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyFileError(path, f"is not a provision key ({KEY_BYTES} bytes in base64 on one line; "
                                 "write one with: provision keygen PATH)")
    return key


def key_id(key: bytes) -> str:
    """A public name for a key: the same key gives the same id, and the id gives away nothing."""
    return hmac.new(key, b"provision key id v1", hashlib.sha256).hexdigest()[:16]
