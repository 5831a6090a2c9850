"""WireGuard's handshake, Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, exactly as the WireGuard paper
(§5.4) and wireguard.com/protocol define it, so that the bytes are a stock WireGuard's.

Pure: bytes in, bytes out; no sockets, no clock (the caller passes the time), no per-peer policy.
`cryptography` does X25519 and ChaCha20-Poly1305, `hashlib` BLAKE2s; this module only puts them
together. mac1/mac2 and cookie replies live in cookie.py, the replay window in replay.py.

    Initiator I (static S_i, knows S_r)            Responder R (static S_r)
    C = HASH(CONSTRUCTION), H = HASH(C ‖ IDENTIFIER ‖ S_r)
    ── initiation (148 bytes) ──────────────────────────────────────────────────
    type 1 ‖ 0 0 0 ‖ sender I_i (LE) ‖ E_i ‖ AEAD(S_i) ‖ AEAD(TAI64N) ‖ mac1 ‖ mac2
        C = KDF1(C, E_i); H = HASH(H ‖ E_i)
        C, k = KDF2(C, DH(E_i, S_r));  static = AEAD(k, 0, S_i, H);  H = HASH(H ‖ static)
        C, k = KDF2(C, DH(S_i, S_r));  time = AEAD(k, 0, TAI64N, H); H = HASH(H ‖ time)
    ── response (92 bytes) ─────────────────────────────────────────────────────
    type 2 ‖ 0 0 0 ‖ sender I_r ‖ receiver I_i ‖ E_r ‖ AEAD(empty) ‖ mac1 ‖ mac2
        C = KDF1(C, E_r); H = HASH(H ‖ E_r); C = KDF1(C, DH(E_r, E_i)); C = KDF1(C, DH(E_r, S_i))
        C, τ, k = KDF3(C, psk); H = HASH(H ‖ τ); empty = AEAD(k, 0, ε, H); H = HASH(H ‖ empty)
    ── keys ────────────────────────────────────────────────────────────────────
        initiator (send, receive) = KDF2(C, ε) = responder (receive, send)

Every message is checked for its exact size and its 4-byte type word at fixed offsets before
anything else is read. An all-zero Diffie-Hellman result (a low-order point) is refused. A
refusal is a HandshakeError with a short fixed reason that never repeats what the peer sent.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

MSG_INITIATION, MSG_RESPONSE, MSG_COOKIE_REPLY, MSG_TRANSPORT = 1, 2, 3, 4
INITIATION_LEN, RESPONSE_LEN, COOKIE_REPLY_LEN = 148, 92, 64
TRANSPORT_HEADER_LEN, TRANSPORT_MIN_LEN = 16, 32  # header; header + an empty payload's 16-byte tag
KEY_LEN = 32
TAG_LEN = 16
TIMESTAMP_LEN = 12
MAC_LEN = 16

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"

# The first 4 bytes of each message: the type byte and three zero bytes (WireGuard reads them as
# one little-endian word, so a non-zero "reserved" byte makes it another type).
HEADER_INITIATION = struct.pack("<I", MSG_INITIATION)
HEADER_RESPONSE = struct.pack("<I", MSG_RESPONSE)
HEADER_COOKIE_REPLY = struct.pack("<I", MSG_COOKIE_REPLY)
HEADER_TRANSPORT = struct.pack("<I", MSG_TRANSPORT)

# Offsets inside an initiation ...
_I_SENDER, _I_EPHEMERAL, _I_STATIC, _I_TIMESTAMP, _I_MAC1 = 4, 8, 40, 88, 116
# ... and inside a response.
_R_SENDER, _R_RECEIVER, _R_EPHEMERAL, _R_EMPTY, _R_MAC1 = 4, 8, 12, 44, 60

_ZERO_NONCE = bytes(12)
_ZERO_KEY = bytes(KEY_LEN)
_INDEX = struct.Struct("<I")
_TAI64N = struct.Struct(">QI")
_TAI64_EPOCH = 2**62 + 10  # TAI64 label of 1970-01-01 00:00:00 TAI, plus the 10 s TAI-UTC offset of 1970
_WHITENER = 2**24 - 1  # WireGuard drops the low 24 bits of the nanoseconds: no fine clock leaks


class HandshakeError(ValueError):
    """A handshake message was refused. `reason` is one of a few fixed texts (never peer data),
    so that it can be counted and logged without letting a peer choose what is written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The reasons, fixed texts.
BAD_SIZE = "bad size"
BAD_TYPE = "bad type"
BAD_KEY = "bad public key"
BAD_STATIC = "static key does not decrypt"
BAD_TIMESTAMP = "timestamp does not decrypt"
BAD_RESPONSE = "response does not authenticate"
UNKNOWN_RECEIVER = "unknown receiver index"
UNKNOWN_PEER = "unknown peer"


def _hash(*parts: bytes | memoryview) -> bytes:
    h = hashlib.blake2s()
    for part in parts:
        h.update(part)
    return h.digest()


def _hmac(key: bytes, data: bytes | memoryview) -> bytes:
    return hmac.digest(key, data, hashlib.blake2s)  # the constructor: half the cost of the name


def kdf(key: bytes, data: bytes | memoryview, n: int) -> tuple[bytes, ...]:
    """WireGuard's KDF_n: HKDF with HMAC-BLAKE2s; τ0 = HMAC(key, data), τi = HMAC(τ0, τ(i-1) ‖ i)."""
    prk = _hmac(key, data)
    out: list[bytes] = []
    previous = b""
    for i in range(1, n + 1):
        previous = _hmac(prk, previous + bytes((i,)))
        out.append(previous)
    return tuple(out)


def _kdf1(key: bytes, data: bytes | memoryview) -> bytes:
    return _hmac(_hmac(key, data), b"\x01")


def _kdf2(key: bytes, data: bytes | memoryview) -> tuple[bytes, bytes]:
    prk = _hmac(key, data)
    t1 = _hmac(prk, b"\x01")
    return t1, _hmac(prk, t1 + b"\x02")


INITIAL_CHAIN_KEY = _hash(CONSTRUCTION)
INITIAL_HASH = _hash(INITIAL_CHAIN_KEY, IDENTIFIER)


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, plaintext, aad)


def _open(key: bytes, ciphertext: bytes, aad: bytes, reason: str) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, ciphertext, aad)
    except InvalidTag:
        raise HandshakeError(reason) from None


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    """X25519, refusing a low-order public key (an all-zero result) as WireGuard does."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # cryptography refuses an all-zero result itself
        raise HandshakeError(BAD_KEY) from None
    if hmac.compare_digest(shared, _ZERO_KEY):
        raise HandshakeError(BAD_KEY)
    return shared


def _private_key(private: bytes) -> X25519PrivateKey:
    if len(private) != KEY_LEN:
        raise ValueError(f"an X25519 private key is {KEY_LEN} bytes, not {len(private)}")
    return X25519PrivateKey.from_private_bytes(bytes(private))


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def generate_private() -> bytes:
    """A new private key, clamped as `wg genkey` writes it (X25519 clamps anyway: same public key)."""
    raw = bytearray(X25519PrivateKey.generate().private_bytes_raw())
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return bytes(raw)


def public_of(private: bytes) -> bytes:
    return _public_bytes(_private_key(private))


def tai64n(unix_seconds: float) -> bytes:
    """The 12-byte TAI64N label WireGuard puts in an initiation: big-endian, so that a later
    time compares greater bytewise; nanoseconds whitened as wireguard-go and Linux do."""
    seconds = math.floor(unix_seconds)
    nanoseconds = min(int((unix_seconds - seconds) * 1e9), 999_999_999) & ~_WHITENER
    return _TAI64N.pack(_TAI64_EPOCH + seconds, nanoseconds)


@dataclass(frozen=True)
class Identity:
    """Our static key pair, with what depends on it alone computed once."""

    private: bytes = field(repr=False)
    public: bytes
    key: X25519PrivateKey = field(init=False, repr=False, compare=False)
    responder_hash: bytes = field(init=False, repr=False, compare=False)  # H after mixing our public key

    def __post_init__(self) -> None:
        key = _private_key(self.private)
        if not hmac.compare_digest(_public_bytes(key), bytes(self.public)):
            raise ValueError("this public key is not the private key's")
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "responder_hash", _hash(INITIAL_HASH, self.public))

    @classmethod
    def from_private(cls, private: bytes) -> Identity:
        return cls(bytes(private), public_of(private))


def static_secret(me: Identity, peer_public: bytes) -> bytes:
    """DH(S_me, S_peer): the same for every handshake with that peer, so computed once per peer
    (the precomputed_ss arguments). Raises HandshakeError for a low-order peer key."""
    _check_key(peer_public)
    return _dh(me.key, peer_public)


def _check_key(public: bytes) -> None:
    if len(public) != KEY_LEN:
        raise ValueError(f"an X25519 public key is {KEY_LEN} bytes, not {len(public)}")


def _check_index(index: int) -> None:
    if not 0 <= index < 2**32:
        raise ValueError("an index is 32 bits")


@dataclass(frozen=True)
class InitiatorState:
    """What the initiator keeps between its initiation and the response."""

    ephemeral: X25519PrivateKey = field(repr=False, compare=False)
    chaining_key: bytes = field(repr=False)
    hash: bytes = field(repr=False)
    sender_index: int
    peer_public: bytes


@dataclass(frozen=True)
class ResponderState:
    """What the responder keeps from a consumed initiation to build its response."""

    chaining_key: bytes = field(repr=False)
    hash: bytes = field(repr=False)
    remote_ephemeral: bytes


@dataclass(frozen=True)
class Initiation:
    """A consumed initiation. Nothing here has been judged yet: the caller compares peer_public
    to its configured peers and timestamp to the greatest one seen from that peer."""

    peer_public: bytes
    sender_index: int
    timestamp: bytes
    state: ResponderState


@dataclass(frozen=True)
class SessionKeys:
    """A finished handshake: one ChaCha20-Poly1305 key per direction and both indices."""

    send: bytes = field(repr=False)
    receive: bytes = field(repr=False)
    local_index: int
    remote_index: int
    initiator: bool


def create_initiation(
    me: Identity,
    peer_public: bytes,
    psk: bytes,
    sender_index: int,
    timestamp: bytes,
    precomputed_ss: bytes | None = None,
    ephemeral_private: bytes | None = None,
) -> tuple[bytearray, InitiatorState]:
    """The 148-byte initiation with mac1 and mac2 zero (cookie.py fills them). `psk` enters the
    handshake only in the response (psk2); it is checked here so a bad one fails early."""
    _check_key(peer_public)
    if len(psk) != KEY_LEN or len(timestamp) != TIMESTAMP_LEN:
        raise ValueError("psk is 32 bytes and timestamp 12")
    _check_index(sender_index)
    ss = static_secret(me, peer_public) if precomputed_ss is None else precomputed_ss
    if len(ss) != KEY_LEN or hmac.compare_digest(ss, _ZERO_KEY):
        raise HandshakeError(BAD_KEY)
    ephemeral = X25519PrivateKey.generate() if ephemeral_private is None else _private_key(ephemeral_private)
    e_public = _public_bytes(ephemeral)

    h = _hash(INITIAL_HASH, peer_public)
    c = _kdf1(INITIAL_CHAIN_KEY, e_public)
    h = _hash(h, e_public)
    c, k = _kdf2(c, _dh(ephemeral, peer_public))
    static = _seal(k, me.public, h)
    h = _hash(h, static)
    c, k = _kdf2(c, ss)
    sealed_time = _seal(k, timestamp, h)
    h = _hash(h, sealed_time)

    msg = bytearray(INITIATION_LEN)
    msg[0:4] = HEADER_INITIATION
    _INDEX.pack_into(msg, _I_SENDER, sender_index)
    msg[_I_EPHEMERAL:_I_STATIC] = e_public
    msg[_I_STATIC:_I_TIMESTAMP] = static
    msg[_I_TIMESTAMP:_I_MAC1] = sealed_time
    return msg, InitiatorState(ephemeral, c, h, sender_index, bytes(peer_public))


def consume_initiation(
    me: Identity, msg: bytes | bytearray | memoryview, precomputed: Mapping[bytes, bytes] | None = None
) -> Initiation:
    """Decrypt an initiation sent to `me`. `precomputed`, when given, maps each configured peer's
    public key to static_secret(me, peer): one DH less per handshake, and an initiation from a
    static key not in it is refused (UNKNOWN_PEER) before any more work, as WireGuard does."""
    if len(msg) != INITIATION_LEN:
        raise HandshakeError(BAD_SIZE)
    data = bytes(msg)
    if data[0:4] != HEADER_INITIATION:
        raise HandshakeError(BAD_TYPE)
    (sender_index,) = _INDEX.unpack_from(data, _I_SENDER)
    e_remote = data[_I_EPHEMERAL:_I_STATIC]
    static = data[_I_STATIC:_I_TIMESTAMP]
    sealed_time = data[_I_TIMESTAMP:_I_MAC1]

    h = _hash(me.responder_hash, e_remote)
    c = _kdf1(INITIAL_CHAIN_KEY, e_remote)
    c, k = _kdf2(c, _dh(me.key, e_remote))
    peer_public = _open(k, static, h, BAD_STATIC)
    h = _hash(h, static)
    if precomputed is None:
        ss = _dh(me.key, peer_public)
    elif (known := precomputed.get(peer_public)) is not None:
        ss = known
    else:
        raise HandshakeError(UNKNOWN_PEER)
    c, k = _kdf2(c, ss)
    timestamp = _open(k, sealed_time, h, BAD_TIMESTAMP)
    h = _hash(h, sealed_time)
    return Initiation(peer_public, sender_index, timestamp, ResponderState(c, h, e_remote))


def create_response(
    me: Identity, init: Initiation, psk: bytes, sender_index: int, ephemeral_private: bytes | None = None
) -> tuple[bytearray, SessionKeys]:
    """The 92-byte response to a consumed (and accepted) initiation, macs zero, and the session."""
    if len(psk) != KEY_LEN:
        raise ValueError("psk is 32 bytes")
    _check_index(sender_index)
    ephemeral = X25519PrivateKey.generate() if ephemeral_private is None else _private_key(ephemeral_private)
    e_public = _public_bytes(ephemeral)
    state = init.state

    h = _hash(state.hash, e_public)
    c = _kdf1(state.chaining_key, e_public)
    c = _kdf1(c, _dh(ephemeral, state.remote_ephemeral))
    c = _kdf1(c, _dh(ephemeral, init.peer_public))
    c, tau, k = kdf(c, psk, 3)
    h = _hash(h, tau)
    empty = _seal(k, b"", h)

    msg = bytearray(RESPONSE_LEN)
    msg[0:4] = HEADER_RESPONSE
    _INDEX.pack_into(msg, _R_SENDER, sender_index)
    _INDEX.pack_into(msg, _R_RECEIVER, init.sender_index)
    msg[_R_EPHEMERAL:_R_EMPTY] = e_public
    msg[_R_EMPTY:_R_MAC1] = empty
    receive, send = _kdf2(c, b"")
    return msg, SessionKeys(send, receive, sender_index, init.sender_index, initiator=False)


def response_receiver(msg: bytes | bytearray | memoryview) -> int:
    """The receiver index of a response-sized message (to find the InitiatorState it answers)."""
    if len(msg) != RESPONSE_LEN:
        raise HandshakeError(BAD_SIZE)
    return int(_INDEX.unpack_from(msg, _R_RECEIVER)[0])


def consume_response(
    me: Identity, state: InitiatorState, psk: bytes, msg: bytes | bytearray | memoryview
) -> SessionKeys:
    """Check a response against our pending initiation and derive the session."""
    if len(msg) != RESPONSE_LEN:
        raise HandshakeError(BAD_SIZE)
    data = bytes(msg)
    if data[0:4] != HEADER_RESPONSE:
        raise HandshakeError(BAD_TYPE)
    sender_index, receiver_index = struct.unpack_from("<II", data, _R_SENDER)
    if receiver_index != state.sender_index:
        raise HandshakeError(UNKNOWN_RECEIVER)
    if len(psk) != KEY_LEN:
        raise ValueError("psk is 32 bytes")
    e_remote = data[_R_EPHEMERAL:_R_EMPTY]
    empty = data[_R_EMPTY:_R_MAC1]

    h = _hash(state.hash, e_remote)
    c = _kdf1(state.chaining_key, e_remote)
    c = _kdf1(c, _dh(state.ephemeral, e_remote))
    c = _kdf1(c, _dh(me.key, e_remote))
    c, tau, k = kdf(c, psk, 3)
    h = _hash(h, tau)
    _open(k, empty, h, BAD_RESPONSE)
    send, receive = _kdf2(c, b"")
    return SessionKeys(send, receive, state.sender_index, sender_index, initiator=True)
