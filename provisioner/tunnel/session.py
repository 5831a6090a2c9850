"""A session between two forwarders: the handshake that makes one, and the sealing and
opening of every frame or datagram in it. Pure (no sockets, no clock); `cryptography` does
the cryptography, this module only puts its well-known parts together. The README's
"Tunnel protocol" section describes the construction for a reviewer.

Handshake, three messages, the same over TCP and UDP (I: the connecting end, R: the listener;
K: the pre-shared key from the tunnel's key file):

    I → R  INIT     Ni (32 random bytes) ‖ hello_I
    R → I  REPLY    Nr (32 random bytes) ‖ session id (4) ‖ tag_R (32) ‖ hello_R
    I → R  CONFIRM  tag_I (32)

    th  = SHA-256(INIT body ‖ REPLY body without tag_R)
    okm = HKDF-SHA-256(ikm=K, salt=Ni ‖ Nr, info="provision tunnel v2" ‖ th), 160 bytes
        = confirm key ‖ data I→R ‖ data R→I ‖ control I→R ‖ control R→I
    tag_R = HMAC-SHA-256(confirm key, "reply"),  tag_I = HMAC-SHA-256(confirm key, "confirm")

A hello names the keys its end holds by their public ids (keys.key_id), newest first; the
listener picks the newest both hold and names it in its REPLY. That is how a key rotation
works without downtime: for a while a forwarder holds the new key and the one before.

Both ends contribute fresh randomness, so every session has keys of its own, and a recorded
handshake replayed later derives keys nobody holds. Each end proves it holds K with a tag
over the whole transcript (hellos included, so they cannot be altered) before the other
accepts a single unit from it. Without K no tag verifies: the handshake is refused.

Records: AES-256-GCM, one key per direction; the 96-bit nonce is the session id (4 bytes,
0 over TCP) and a 64-bit counter that starts at 0 and never repeats within a key. Over TCP
the counter is implicit (the stream orders frames; a frame that does not verify ends the
connection) and the associated data is the 4-byte frame word. Over UDP each datagram carries
its header (type, session id, counter) in the clear as associated data, and a sliding replay
window (as in WireGuard and IPsec) drops a counter already seen or older than the window.
Data goes on the data keys, keepalives on the control keys: over UDP two processes send, and
each key has exactly one sender, so no nonce is ever used twice.

Compression (lz4) happens before encryption, per unit, only when both ends asked for it and
only when the unit shrinks; the frame type says which.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import lz4.block
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .wire import DATA, DATA_CONT, DATA_LZ4, ProtocolError, frame_header

PROTOCOL = 2
NONCE_BYTES, TAG_BYTES, AEAD_TAG = 32, 32, 16
INFO = b"provision tunnel v2"

DATAGRAM = struct.Struct(">B3xIQ")  # type, session id, counter: the UDP header, also the AEAD's AD
DATAGRAM_LEN = DATAGRAM.size
STREAM_NONCE = struct.Struct(">4xQ")
MAX_COUNTER = (1 << 64) - 1
REPLAY_WINDOW = 4096  # counters; WireGuard keeps 8192 - 64, IPsec 32 to 1024


class HandshakeError(ProtocolError):
    """The peer is not a provision forwarder with our key and a compatible device."""


def refusal(why: str) -> bytes:
    """What a listener tells an initiator it refuses: a hint for the other side's status, never
    trusted for anything else (it is not authenticated)."""
    return why.encode()[:200]


def refused(body: bytes | memoryview) -> HandshakeError:
    text = bytes(body[:200]).decode("ascii", errors="replace")
    return HandshakeError("the listener refused us: " + "".join(c if c.isprintable() else "?" for c in text))


class Rejected(ProtocolError):
    """A frame or datagram that must not reach the device; the message is the drop reason."""


@dataclass(frozen=True)
class Hello:
    """What each end says about itself in the handshake; both must agree on all but `compress`.
    `keys`: the ids (keys.key_id) of the pre-shared keys this end holds, newest first; in a
    REPLY, the one the listener chose. Ids are public: they name a key, they do not reveal it."""

    device_type: str
    pi: bool
    vnet_hdr: bool
    secure: bool = True
    compress: bool = False
    keys: tuple[str, ...] = ()
    version: int = PROTOCOL

    def encode(self) -> bytes:
        return json.dumps({"provision": self.version, "type": self.device_type, "pi": self.pi,
                           "vnet_hdr": self.vnet_hdr, "secure": self.secure, "compress": self.compress,
                           "keys": list(self.keys)}, sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Hello:
        try:
            d = json.loads(bytes(data))
            return cls(str(d["type"]), bool(d["pi"]), bool(d["vnet_hdr"]), bool(d.get("secure", False)),
                       bool(d.get("compress", False)), tuple(str(k) for k in d.get("keys", ())[:4]),
                       int(d["provision"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HandshakeError("the peer's hello is not provision's") from exc

    def check_peer(self, peer: Hello) -> None:
        if peer.version != self.version:
            raise HandshakeError(f"the peer speaks tunnel protocol {peer.version}, this side {self.version}")
        if peer.secure != self.secure:
            which = "has no key (insecure: true)" if not peer.secure else "has a key, this side is insecure"
            raise HandshakeError(f"the peer {which}; both ends must agree")
        ours = (self.device_type, self.pi, self.vnet_hdr)
        theirs = (peer.device_type, peer.pi, peer.vnet_hdr)
        if ours != theirs:
            raise HandshakeError(f"the peer's device differs (type, pi, vnet_hdr): ours {ours}, theirs {theirs}")


@dataclass(frozen=True, repr=False)
class Session:
    """The keys of one session, from one end's point of view (None: an insecure tunnel).
    `repr=False`: a session must never end up in a log line by accident."""

    id: int
    send: bytes | None
    receive: bytes | None
    send_control: bytes | None
    receive_control: bytes | None
    compress: bool
    key_id: str | None = None  # the pre-shared key it was made with

    def __repr__(self) -> str:
        return f"Session(id={self.id:#010x}, key={self.key_id}, compress={self.compress})"


def _derive(psk: bytes, init: bytes, reply_unsigned: bytes, ni: bytes, nr: bytes) -> list[bytes]:
    th = hashlib.sha256(init + reply_unsigned).digest()
    okm = HKDF(algorithm=hashes.SHA256(), length=160, salt=ni + nr, info=INFO + th).derive(psk)
    return [okm[i:i + 32] for i in range(0, 160, 32)]


def _tag(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, label, hashlib.sha256).digest()


def _session(sid: int, keys: list[bytes] | None, initiator: bool, compress: bool, key_id: str | None) -> Session:
    if keys is None:
        return Session(sid, None, None, None, None, compress)
    _, i2r, r2i, ci2r, cr2i = keys
    if initiator:
        return Session(sid, i2r, r2i, ci2r, cr2i, compress, key_id)
    return Session(sid, r2i, i2r, cr2i, ci2r, compress, key_id)


Keys = Mapping[str, bytes]  # key id -> pre-shared key, newest first; empty for an insecure tunnel


class Initiator:
    """The connecting end's half of the handshake. It offers every key it holds (during a key
    rotation, the new one and the one before), and the listener picks one both hold."""

    def __init__(self, hello: Hello, psks: Keys, random: Callable[[int], bytes] = os.urandom):
        self.hello, self.psks = replace(hello, keys=tuple(psks)), psks
        self.nonce = random(NONCE_BYTES)
        self.init = self.nonce + self.hello.encode()

    def on_reply(self, body: bytes | memoryview) -> tuple[bytes, Session]:
        """The CONFIRM body to send, and the session, from the listener's REPLY."""
        body = bytes(body)
        if len(body) < NONCE_BYTES + 4 + TAG_BYTES:
            raise HandshakeError("the peer's reply is too short")
        nr, sid = body[:NONCE_BYTES], int.from_bytes(body[NONCE_BYTES:NONCE_BYTES + 4], "big")
        tag_r = body[NONCE_BYTES + 4:NONCE_BYTES + 4 + TAG_BYTES]
        peer = Hello.decode(body[NONCE_BYTES + 4 + TAG_BYTES:])
        self.hello.check_peer(peer)
        compress = self.hello.compress and peer.compress
        if not self.hello.secure:
            return bytes(TAG_BYTES), _session(sid, None, True, compress, None)
        chosen = peer.keys[0] if len(peer.keys) == 1 else ""
        if chosen not in self.psks:
            raise HandshakeError("the peer does not hold this tunnel's key")
        unsigned = body[:NONCE_BYTES + 4] + body[NONCE_BYTES + 4 + TAG_BYTES:]
        keys = _derive(self.psks[chosen], self.init, unsigned, self.nonce, nr)
        if not hmac.compare_digest(tag_r, _tag(keys[0], b"reply")):
            raise HandshakeError("the peer does not hold this tunnel's key")
        return _tag(keys[0], b"confirm"), _session(sid, keys, True, compress, chosen)


@dataclass(frozen=True, repr=False)
class Pending:
    """A listener's half-made session: it becomes one only with the initiator's CONFIRM."""

    expected: bytes | None
    session: Session

    def on_confirm(self, body: bytes | memoryview) -> Session:
        if self.expected is not None and not hmac.compare_digest(bytes(body), self.expected):
            raise HandshakeError("the peer does not hold this tunnel's key")
        return self.session


class Responder:
    """The listening end's half of the handshake; it keeps no state between INITs."""

    def __init__(self, hello: Hello, psks: Keys, random: Callable[[int], bytes] = os.urandom):
        self.hello, self.psks, self.random = hello, psks, random

    def on_init(self, body: bytes | memoryview) -> tuple[bytes, Pending]:
        """The REPLY body to send, and what the CONFIRM must be."""
        init = bytes(body)
        if len(init) < NONCE_BYTES:
            raise HandshakeError("the peer's hello is too short")
        peer = Hello.decode(init[NONCE_BYTES:])
        self.hello.check_peer(peer)
        compress = self.hello.compress and peer.compress
        nr, sid = self.random(NONCE_BYTES), int.from_bytes(self.random(4), "big")
        head = nr + sid.to_bytes(4, "big")
        if not self.hello.secure:
            tail = self.hello.encode()
            return head + bytes(TAG_BYTES) + tail, Pending(None, _session(sid, None, False, compress, None))
        chosen = next((k for k in peer.keys if k in self.psks), None)  # the peer's newest that we hold
        if chosen is None:
            raise HandshakeError("the peer does not hold this tunnel's key")
        tail = replace(self.hello, keys=(chosen,)).encode()
        keys = _derive(self.psks[chosen], init, head + tail, init[:NONCE_BYTES], nr)
        reply = head + _tag(keys[0], b"reply") + tail
        return reply, Pending(_tag(keys[0], b"confirm"), _session(sid, keys, False, compress, chosen))


def _compress(unit: bytes | memoryview) -> bytes:
    return bytes(lz4.block.compress(unit, store_size=False))


def _decompress(data: bytes | memoryview, limit: int) -> bytes:
    try:
        return bytes(lz4.block.decompress(data, uncompressed_size=limit))
    except Exception as exc:  # lz4 raises LZ4BlockError, a bare Exception subclass
        raise Rejected("compressed unit does not decompress") from exc


def maybe_compress(unit: bytes | memoryview, compress: bool) -> tuple[int, bytes | memoryview]:
    """(DATA, unit), or (DATA_LZ4, smaller bytes) when compressing pays."""
    if compress and len(unit) > 64:
        packed = _compress(unit)
        if len(packed) < len(unit):
            return DATA_LZ4, packed
    return DATA, unit


class StreamSealer:
    """Seals the frames one end sends over TCP, in the order they enter the stream."""

    def __init__(self, key: bytes | None, compress: bool):
        self.aead = AESGCM(key) if key is not None else None
        self.compress = compress
        self.counter = 0

    @property
    def overhead(self) -> int:
        return AEAD_TAG if self.aead is not None else 0

    def seal(self, kind: int, unit: bytes | memoryview) -> tuple[bytes, bytes | memoryview]:
        """(4-byte frame word, body) for a DATA or KEEPALIVE unit."""
        if kind == DATA:
            kind, unit = maybe_compress(unit, self.compress)
        aead = self.aead
        if aead is None:
            return frame_header(kind, len(unit)), unit
        word = frame_header(kind, len(unit) + AEAD_TAG)
        nonce = STREAM_NONCE.pack(self.counter)
        self.counter += 1
        return word, aead.encrypt(nonce, unit, word)


class StreamOpener:
    """Opens the frames the peer sent over TCP; anything forged or out of order is fatal."""

    def __init__(self, key: bytes | None, compress: bool, limit: int):
        self.aead = AESGCM(key) if key is not None else None
        self.compress, self.limit = compress, limit
        self.counter = 0
        self.out = bytearray(limit + AEAD_TAG)

    def skip(self) -> None:
        """A frame the reader could not keep (too long) still used up its counter."""
        self.counter += 1

    def open(self, kind: int, body: memoryview) -> memoryview | bytes:
        aead = self.aead
        if aead is not None:
            n = len(body) - AEAD_TAG
            if n < 0:
                raise Rejected("frame shorter than its authentication tag")
            nonce = STREAM_NONCE.pack(self.counter)
            self.counter += 1
            out = memoryview(self.out)[:n]
            try:
                aead.decrypt_into(nonce, body, frame_header(kind, len(body)), out)
            except InvalidTag:
                raise Rejected("frame failed authentication") from None
            body = out
        if kind == DATA_LZ4:
            if not self.compress:
                raise Rejected("compressed frame on a tunnel without compression")
            return _decompress(body, self.limit)
        return body


_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1


class DatagramSealer:
    """Seals the datagrams one process sends on one key: header ‖ AEAD(unit)."""

    def __init__(self, key: bytes | None, session_id: int, compress: bool):
        self.aead = AESGCM(key) if key is not None else None
        self.key, self.id, self.compress = key, session_id, compress
        self.counter = 0
        self.overhead = DATAGRAM_LEN + (AEAD_TAG if self.aead is not None else 0)

    def seal_into(self, kind: int, unit: bytes | memoryview, out: memoryview) -> int:
        """Writes the datagram at the start of `out`; its length. `kind` is DATA or KEEPALIVE."""
        if kind == DATA and self.compress:
            kind, unit = maybe_compress(unit, True)
        counter = self.counter
        if counter >= MAX_COUNTER:
            raise OverflowError("session exhausted its counters")  # 2^64 datagrams: never, in practice
        self.counter = counter + 1
        DATAGRAM.pack_into(out, 0, kind, self.id, counter)
        header = out[:DATAGRAM_LEN]
        n = len(unit)
        if self.aead is None:
            out[DATAGRAM_LEN:DATAGRAM_LEN + n] = unit
            return DATAGRAM_LEN + n
        end = DATAGRAM_LEN + n + AEAD_TAG
        self.aead.encrypt_into(bytes(header[4:]), unit, bytes(header), out[DATAGRAM_LEN:end])
        return end

    def seal_all(self, units: list[bytes], out: memoryview) -> list[int]:
        """Datagrams for the segments of one super-packet, end to end in `out`; their lengths.
        The first is DATA, the others DATA_CONT, so the receiver can glue them back without
        checking each one's headers. The fast path (per datagram: one pack, one AEAD call)."""
        aead = self.aead
        if self.compress:
            lengths, pos = [], 0
            for unit in units:
                n = self.seal_into(DATA, unit, out[pos:])
                lengths.append(n)
                pos += n
            return lengths
        pack, sid, counter = DATAGRAM.pack, self.id, self.counter
        lengths, pos = [], 0
        kind = DATA
        if aead is None:
            for unit in units:
                end = pos + DATAGRAM_LEN + len(unit)
                out[pos:end] = pack(kind, sid, counter) + unit
                counter += 1
                kind = DATA_CONT
                lengths.append(end - pos)
                pos = end
        else:
            encrypt = aead.encrypt_into
            for unit in units:
                header = pack(kind, sid, counter)
                counter += 1
                kind = DATA_CONT
                body = pos + DATAGRAM_LEN
                end = body + len(unit) + AEAD_TAG
                out[pos:body] = header
                encrypt(header[4:], unit, header, out[body:end])
                lengths.append(end - pos)
                pos = end
        if counter >= MAX_COUNTER:
            raise OverflowError("session exhausted its counters")
        self.counter = counter
        return lengths

    def seal(self, kind: int, unit: bytes | memoryview = b"") -> bytes:
        out = bytearray(len(unit) + self.overhead)
        return bytes(out[:self.seal_into(kind, unit, memoryview(out))])


class DatagramOpener:
    """Opens the datagrams of one session and key, with their replay window: bit i of `seen`
    says whether counter `top - i` was taken. A counter is checked against the window before
    decrypting (cheap refusals) and marked only after the datagram verified, so a forged one
    cannot move the window. Written for speed: this runs once per datagram received."""

    def __init__(self, key: bytes | None, session_id: int, compress: bool, limit: int):
        self.aead = AESGCM(key) if key is not None else None
        self.id, self.compress, self.limit = session_id, compress, limit
        self.top = -1
        self.seen = 0
        self.kind = self.counter = 0  # of the datagram opened last

    def open_into(self, datagram: memoryview, out: memoryview) -> memoryview | bytes:
        """The unit in `datagram` (decrypted into `out`, which must be large enough); or Rejected."""
        if len(datagram) < DATAGRAM_LEN:
            raise Rejected("datagram shorter than its header")
        kind, sid, counter = _unpack_header(datagram)
        if sid != self.id:
            raise Rejected("datagram of another session")
        self.kind, self.counter = kind, counter
        top = self.top
        if counter <= top:
            behind = top - counter
            if behind >= REPLAY_WINDOW:
                raise Rejected("older than the replay window")
            if self.seen >> behind & 1:
                raise Rejected("replayed")
        aead = self.aead
        if aead is not None:
            n = len(datagram) - DATAGRAM_LEN - AEAD_TAG
            if n < 0:
                raise Rejected("datagram shorter than its authentication tag")
            header = datagram[:DATAGRAM_LEN].tobytes()
            body = out[:n]
            try:
                aead.decrypt_into(header[4:], datagram[DATAGRAM_LEN:], header, body)
            except InvalidTag:
                raise Rejected("datagram failed authentication") from None
        else:
            body = datagram[DATAGRAM_LEN:]
        if counter > top:
            shift = counter - top
            self.seen = ((self.seen << shift) | 1) & _WINDOW_MASK if shift < REPLAY_WINDOW else 1
            self.top = counter
        else:
            self.seen |= 1 << (top - counter)
        if kind == DATA_LZ4:
            if not self.compress:
                raise Rejected("compressed datagram on a tunnel without compression")
            return _decompress(body, self.limit)
        return body


_unpack_header = DATAGRAM.unpack_from
