"""WireGuard's mac1/mac2 and cookie replies (paper §5.4.4, §5.4.7; wireguard-go cookie.go):
what lets a responder under load make an initiator prove it owns its source address before it
spends a Diffie-Hellman on it.

    mac1 = MAC(HASH("mac1----" ‖ S_receiver), msg up to mac1)      always; proves the sender knows
                                                                   our public key: one BLAKE2s
    cookie = MAC(R_m, source IP ‖ port)                             R_m random, renewed every 120 s
    mac2 = MAC(cookie, msg up to mac2)                              only while a cookie is held
    reply = type 3 ‖ 0 0 0 ‖ receiver ‖ nonce (24) ‖ XAEAD(HASH("cookie--" ‖ S_responder), nonce,
            cookie, aad = mac1 of the message answered)

MAC is keyed BLAKE2s with a 16-byte output. XChaCha20-Poly1305 is HChaCha20 (below, from one
ChaCha20 block) followed by `cryptography`'s ChaCha20-Poly1305 with the subkey and the nonce's
last 8 bytes (draft-irtf-cfrg-xchacha §2.3).

Pure: the time is passed in (`now`, seconds on a monotonic clock), randomness is a parameter.
Every check looks at the size and the type word first; compares are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from provisioner.tunnel.noise import (
    COOKIE_REPLY_LEN,
    HEADER_COOKIE_REPLY,
    HEADER_INITIATION,
    HEADER_RESPONSE,
    INITIATION_LEN,
    KEY_LEN,
    MAC_LEN,
    RESPONSE_LEN,
)

LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"
COOKIE_REFRESH_TIME = 120.0  # seconds: the secret's life at the checker, a cookie's at the generator
COOKIE_NONCE_LEN = 24
_SECRET_LEN = 32
_NEVER = float("-inf")

Message = bytes | bytearray | memoryview


def mac1_key(public: bytes) -> bytes:
    """HASH(LABEL_MAC1 ‖ S): the key of mac1 on messages sent to the owner of S."""
    return hashlib.blake2s(LABEL_MAC1 + bytes(public)).digest()


def cookie_key(public: bytes) -> bytes:
    """HASH(LABEL_COOKIE ‖ S): the key of cookie replies sent by the owner of S."""
    return hashlib.blake2s(LABEL_COOKIE + bytes(public)).digest()


def _mac(key: bytes, data: Message) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=MAC_LEN).digest()


def _mac1_offset(msg: Message) -> int | None:
    """Where mac1 starts in a handshake message, or None if msg is not one (size and type only)."""
    size = len(msg)
    if size == INITIATION_LEN and msg[0:4] == HEADER_INITIATION:
        return INITIATION_LEN - 2 * MAC_LEN
    if size == RESPONSE_LEN and msg[0:4] == HEADER_RESPONSE:
        return RESPONSE_LEN - 2 * MAC_LEN
    return None


def _fresh(since: float, now: float) -> bool:
    return 0 <= now - since <= COOKIE_REFRESH_TIME


# ---- XChaCha20-Poly1305 ---------------------------------------------------------------------

_MASK32 = 0xFFFFFFFF
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
_ZERO_BLOCK = bytes(64)


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 (draft-irtf-cfrg-xchacha §2.2): the 20 ChaCha rounds over (constants, key, 16-byte
    nonce), words 0-3 and 12-15 out, without ChaCha20's final addition of the input. ChaCha20 with
    the 16 bytes as its counter ‖ nonce computes exactly that block plus the input, so one C call
    and a subtraction of the known input words (constants, nonce) give it: ≈ 10x faster than the
    rounds in Python, and a cookie reply is what we send while under load."""
    if len(key) != KEY_LEN or len(nonce16) != 16:
        raise ValueError("HChaCha20 takes a 32-byte key and a 16-byte nonce")
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(_ZERO_BLOCK)
    words = struct.unpack("<16I", block)
    nonce = struct.unpack("<4I", nonce16)
    return struct.pack(
        "<8I",
        *((words[i] - _SIGMA[i]) & _MASK32 for i in range(4)),
        *((words[12 + i] - nonce[i]) & _MASK32 for i in range(4)),
    )


def _xaead(key: bytes, nonce: bytes) -> tuple[ChaCha20Poly1305, bytes]:
    if len(nonce) != COOKIE_NONCE_LEN:
        raise ValueError("XChaCha20-Poly1305 takes a 24-byte nonce")
    return ChaCha20Poly1305(hchacha20(key, nonce[:16])), b"\0\0\0\0" + bytes(nonce[16:])


def xchacha20poly1305_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    aead, short_nonce = _xaead(key, nonce)
    return aead.encrypt(short_nonce, plaintext, aad)


def xchacha20poly1305_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
    """The plaintext, or None if it does not authenticate."""
    aead, short_nonce = _xaead(key, nonce)
    try:
        return aead.decrypt(short_nonce, ciphertext, aad)
    except InvalidTag:
        return None


# ---- our side: checking what we receive ------------------------------------------------------


class CookieChecker:
    """One per local identity: checks mac1/mac2 on handshake messages sent to us and makes cookie
    replies. Its secret is renewed (lazily, when a reply needs it) every COOKIE_REFRESH_TIME."""

    def __init__(self, my_public: bytes, random: Callable[[int], bytes] = os.urandom) -> None:
        self._mac1_key = mac1_key(my_public)
        self._cookie_key = cookie_key(my_public)
        self._random = random
        self._secret = b""
        self._secret_set = _NEVER

    def mac1_ok(self, msg: Message) -> bool:
        """The one check every unauthenticated handshake message costs."""
        at = _mac1_offset(msg)
        if at is None:
            return False
        return hmac.compare_digest(_mac(self._mac1_key, msg[:at]), bytes(msg[at : at + MAC_LEN]))

    def mac2_ok(self, msg: Message, source: bytes, now: float) -> bool:
        """True if msg carries the cookie we would give `source` (IP bytes ‖ port bytes) now."""
        at = _mac1_offset(msg)
        if at is None or not _fresh(self._secret_set, now):
            return False
        at += MAC_LEN
        cookie = _mac(self._secret, source)
        return hmac.compare_digest(_mac(cookie, msg[:at]), bytes(msg[at : at + MAC_LEN]))

    def reply(self, msg: Message, source: bytes, now: float) -> bytes:
        """The 64-byte cookie reply to msg (a handshake message whose mac1 was checked)."""
        at = _mac1_offset(msg)
        if at is None:
            raise ValueError("a cookie reply answers an initiation or a response")
        if not _fresh(self._secret_set, now):
            self._secret = self._random(_SECRET_LEN)
            self._secret_set = now
        cookie = _mac(self._secret, source)
        nonce = self._random(COOKIE_NONCE_LEN)
        sealed = xchacha20poly1305_seal(self._cookie_key, nonce, cookie, bytes(msg[at : at + MAC_LEN]))
        # msg's sender index (offset 4 in both messages) becomes the reply's receiver index
        return HEADER_COOKIE_REPLY + bytes(msg[4:8]) + nonce + sealed


# ---- per peer: what we send to it ------------------------------------------------------------


class CookieGenerator:
    """One per peer: puts mac1 (and mac2 while we hold a fresh cookie from the peer) on the
    handshake messages we send it, and takes cookie replies to the last one we sent."""

    def __init__(self, peer_public: bytes) -> None:
        self._mac1_key = mac1_key(peer_public)
        self._cookie_key = cookie_key(peer_public)
        self._last_mac1: bytes | None = None
        self._last_sender = b""
        self._cookie = b""
        self._cookie_set = _NEVER

    def add_macs(self, msg: bytearray, now: float) -> None:
        at = _mac1_offset(msg)
        if at is None:
            raise ValueError("macs go on an initiation or a response")
        mac1 = _mac(self._mac1_key, memoryview(msg)[:at])
        msg[at : at + MAC_LEN] = mac1
        self._last_mac1 = mac1
        self._last_sender = bytes(msg[4:8])
        at += MAC_LEN
        if _fresh(self._cookie_set, now):
            msg[at : at + MAC_LEN] = _mac(self._cookie, memoryview(msg)[:at])
        else:
            msg[at : at + MAC_LEN] = bytes(MAC_LEN)

    def consume_reply(self, msg: Message, now: float) -> bool:
        """Take the cookie from a reply to the last message we sent; False if msg is not one."""
        if len(msg) != COOKIE_REPLY_LEN or msg[0:4] != HEADER_COOKIE_REPLY or self._last_mac1 is None:
            return False
        if not hmac.compare_digest(bytes(msg[4:8]), self._last_sender):
            return False
        cookie = xchacha20poly1305_open(self._cookie_key, bytes(msg[8:32]), bytes(msg[32:64]), self._last_mac1)
        if cookie is None:
            return False
        self._cookie = cookie
        self._cookie_set = now
        self._last_mac1 = None  # one reply per message sent, as Linux does
        return True
