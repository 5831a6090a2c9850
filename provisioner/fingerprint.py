"""The hash of what provision compares only with its own records: the cache's keys (cache.py),
the schema a generated validator was made from (schema.py).

BLAKE2b of 32 bytes, from the interpreter's own module, the class `hashlib.blake2b` is:
`import hashlib` first loads OpenSSL's libcrypto, 11M instructions (2-3 ms) of every run, where
hashing all that a no-op plan hashes (0.5 MB) takes 0.8 ms. SHA-256 without OpenSSL (`_sha256`,
renamed in 3.12) hashed at less than half BLAKE2b's speed here. What outlives a version of
provision keeps SHA-256, with hashlib imported where it is used: a saved plan's digest of its
inventory, a pre-shared key's id, the hash of the spec a running forwarder was started with.
"""

from __future__ import annotations

try:
    from _blake2 import blake2b
except ImportError:  # the module named otherwise in another interpreter: hashlib finds it
    from hashlib import blake2b


def hasher(data: bytes = b"") -> blake2b:
    """32 bytes, as long as SHA-256's: a key's hex digest names a cache file."""
    return blake2b(data, digest_size=32)
