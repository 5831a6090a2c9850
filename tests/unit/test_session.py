"""The tunnel's cryptography, as values: handshake, sealed frames and datagrams, the replay
window, compression, and key files. Nothing here touches a socket or the kernel."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from provisioner import keys
from provisioner.tunnel import session, wire
from provisioner.tunnel.session import (
    DatagramOpener,
    DatagramSealer,
    HandshakeError,
    Hello,
    Initiator,
    Rejected,
    Responder,
    StreamOpener,
    StreamSealer,
)

K1, K2 = bytes(range(32)), bytes(range(1, 33))
HELLO = Hello("tap", False, True)


def held(*psks: bytes | None) -> dict[str, bytes]:
    """Keys as a forwarder holds them: by id, newest first."""
    return {keys.key_id(k): k for k in psks if k is not None}


def handshake(ki: bytes | None = K1, kr: bytes | None = K1, hi: Hello = HELLO, hr: Hello = HELLO):
    initiator, responder = Initiator(hi, held(ki)), Responder(hr, held(kr))
    reply, pending = responder.on_init(initiator.init)
    confirm, mine = initiator.on_reply(reply)
    return mine, pending.on_confirm(confirm)


def test_both_ends_derive_one_session_with_a_key_per_direction() -> None:
    i, r = handshake()
    assert i.id == r.id
    assert (i.send, i.send_control) == (r.receive, r.receive_control)
    assert (i.receive, i.receive_control) == (r.send, r.send_control)
    assert len({i.send, i.receive, i.send_control, i.receive_control}) == 4
    assert i.send not in (K1, None)


def test_every_handshake_makes_new_keys() -> None:
    assert handshake()[0].send != handshake()[0].send


def test_a_peer_without_the_key_is_refused_by_either_end() -> None:
    with pytest.raises(HandshakeError, match="does not hold this tunnel's key"):
        handshake(K1, K2)  # the initiator checks the listener's tag first
    initiator, responder = Initiator(HELLO, held(K1)), Responder(HELLO, held(K1))
    reply, pending = responder.on_init(initiator.init)
    with pytest.raises(HandshakeError, match="does not hold"):
        pending.on_confirm(os.urandom(32))  # an initiator that names the key but cannot make the tag


def test_a_recorded_handshake_replayed_later_does_not_verify() -> None:
    initiator, responder = Initiator(HELLO, held(K1)), Responder(HELLO, held(K1))
    reply, _ = responder.on_init(initiator.init)
    confirm, _ = initiator.on_reply(reply)
    _, later = responder.on_init(initiator.init)  # the attacker replays INIT, then the old CONFIRM
    with pytest.raises(HandshakeError):
        later.on_confirm(confirm)


def test_an_altered_hello_breaks_the_tag() -> None:
    initiator, responder = Initiator(HELLO, held(K1)), Responder(Hello("tap", False, True, compress=True), held(K1))
    reply, _ = responder.on_init(initiator.init)
    forged = reply.replace(b'"compress": true', b'"compress": false')
    assert forged != reply
    with pytest.raises(HandshakeError, match="does not hold"):
        initiator.on_reply(forged)


@pytest.mark.parametrize("theirs, message", [
    (Hello("tun", False, True), "device differs"),
    (Hello("tap", False, True, secure=False), "has no key"),
])
def test_an_incompatible_peer_is_refused(theirs: Hello, message: str) -> None:
    with pytest.raises(HandshakeError, match=message):
        Responder(HELLO, held(K1)).on_init(Initiator(theirs, held(K1)).init)


def test_garbage_is_not_a_hello() -> None:
    with pytest.raises(HandshakeError):
        Responder(HELLO, held(K1)).on_init(b"GET / HTTP/1.1\r\n" * 4)
    with pytest.raises(HandshakeError):
        Initiator(HELLO, held(K1)).on_reply(b"short")


def test_during_a_rotation_the_newest_key_both_hold_is_used() -> None:
    both = Initiator(HELLO, held(K2, K1)), Responder(HELLO, held(K1))
    reply, pending = both[1].on_init(both[0].init)
    confirm, mine = both[0].on_reply(reply)
    assert pending.on_confirm(confirm).key_id == mine.key_id == keys.key_id(K1), "the end not yet rotated: old key"
    initiator, responder = Initiator(HELLO, held(K2, K1)), Responder(HELLO, held(K2, K1))
    assert responder.on_init(initiator.init)[1].session.key_id == keys.key_id(K2), "both rotated: new key"
    with pytest.raises(HandshakeError, match="does not hold"):
        Responder(HELLO, held(K1)).on_init(Initiator(HELLO, held(K2)).init)


def test_compression_is_used_only_when_both_ask() -> None:
    with_it = Hello("tap", False, True, compress=True)
    assert handshake(hi=with_it, hr=with_it)[0].compress
    assert not handshake(hi=with_it)[0].compress


def test_insecure_sessions_carry_units_in_the_clear() -> None:
    i, r = handshake(None, None, Hello("tap", False, True, secure=False), Hello("tap", False, True, secure=False))
    assert i.send is None and r.receive is None
    word, body = StreamSealer(i.send, False).seal(wire.DATA, b"plain")
    assert body == b"plain"


def test_a_session_never_shows_its_keys() -> None:
    i, _ = handshake()
    assert i.send is not None and i.send.hex() not in repr(i) and str(i.send) not in repr(i)


# ------------------------------------------------------------------ TCP frames

def stream_pair(compress: bool = False) -> tuple[StreamSealer, StreamOpener]:
    i, r = handshake()
    return StreamSealer(i.send, compress), StreamOpener(r.receive, compress, wire.MAX_UNIT)


def test_frames_open_in_order() -> None:
    sealer, opener = stream_pair()
    for unit in (b"one", os.urandom(65_000), b""):
        word, body = sealer.seal(wire.DATA, unit)
        kind = int.from_bytes(word, "big") >> 24
        assert len(body) == len(unit) + 16
        assert bytes(opener.open(kind, memoryview(body))) == unit


@pytest.mark.parametrize("attack", ["flip", "truncate", "reorder", "replay", "retype"])
def test_a_forged_or_misplaced_frame_is_rejected(attack: str) -> None:
    sealer, opener = stream_pair()
    frames = [sealer.seal(wire.DATA, f"unit {n}".encode()) for n in range(2)]
    (w0, b0), (w1, b1) = frames
    body, kind = bytearray(b0), wire.DATA
    if attack == "flip":
        body[3] ^= 1
    elif attack == "truncate":
        body = body[:10]
    elif attack == "reorder":
        body = bytearray(b1)
    elif attack == "retype":
        kind = wire.KEEPALIVE  # the type is in the associated data
    elif attack == "replay":
        opener.open(wire.DATA, memoryview(b0))
    with pytest.raises(Rejected):
        opener.open(kind, memoryview(bytes(body)))


def test_units_that_shrink_are_compressed_the_rest_are_not() -> None:
    sealer, opener = stream_pair(compress=True)
    text = b"provision " * 1000
    word, body = sealer.seal(wire.DATA, text)
    assert int.from_bytes(word, "big") >> 24 == wire.DATA_LZ4 and len(body) < 1000
    assert bytes(opener.open(wire.DATA_LZ4, memoryview(body))) == text
    noise = os.urandom(1400)
    word, body = sealer.seal(wire.DATA, noise)
    assert int.from_bytes(word, "big") >> 24 == wire.DATA
    assert bytes(opener.open(wire.DATA, memoryview(body))) == noise


# ------------------------------------------------------------------ UDP datagrams

def datagram_pair() -> tuple[DatagramSealer, DatagramOpener]:
    i, r = handshake()
    return DatagramSealer(i.send, i.id, False), DatagramOpener(r.receive, r.id, False, wire.MAX_UNIT)


def open_(opener: DatagramOpener, d: bytes) -> bytes:
    return bytes(opener.open_into(memoryview(d), memoryview(bytearray(len(d)))))


def test_datagrams_open_in_any_order_within_the_window_but_once() -> None:
    sealer, opener = datagram_pair()
    sent = [sealer.seal(wire.DATA, f"unit {n}".encode()) for n in range(100)]
    for n in [*range(50, 100), *range(0, 50)]:  # late ones still inside the window
        assert open_(opener, sent[n]) == f"unit {n}".encode()
    with pytest.raises(Rejected, match="replayed"):
        open_(opener, sent[7])


def test_a_datagram_older_than_the_window_is_dropped() -> None:
    sealer, opener = datagram_pair()
    old = sealer.seal(wire.DATA, b"old")
    sealer.counter = session.REPLAY_WINDOW + 5
    open_(opener, sealer.seal(wire.DATA, b"new"))
    with pytest.raises(Rejected, match="older than the replay window"):
        open_(opener, old)


def test_a_forged_datagram_does_not_move_the_window() -> None:
    sealer, opener = datagram_pair()
    first = sealer.seal(wire.DATA, b"first")
    forged = bytearray(sealer.seal(wire.DATA, b"x"))
    forged[8:16] = (10 ** 9).to_bytes(8, "big")  # a far-future counter, without the key
    with pytest.raises(Rejected, match="failed authentication"):
        open_(opener, bytes(forged))
    assert open_(opener, first) == b"first"


@pytest.mark.parametrize("cut, reason", [(3, "shorter than its header"), (20, "shorter than its authentication tag"),
                                         (40, "failed authentication")])
def test_a_truncated_datagram_is_dropped(cut: int, reason: str) -> None:
    sealer, opener = datagram_pair()
    with pytest.raises(Rejected, match=reason):
        open_(opener, sealer.seal(wire.DATA, b"a unit of some length")[:cut])


def test_a_datagram_of_another_session_is_dropped() -> None:
    sealer, _ = datagram_pair()
    _, other = datagram_pair()
    with pytest.raises(Rejected, match="another session"):
        open_(other, sealer.seal(wire.DATA, b"x"))


# ------------------------------------------------------------------ key files

def test_keygen_writes_a_private_random_key_and_keeps_an_existing_one(tmp_path) -> None:
    path = tmp_path / "keys" / "lab.key"
    key_id = keys.keygen(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = keys.read_key(path)
    assert len(key) == 32 and keys.key_id(key) == key_id and key.hex() not in key_id
    with pytest.raises(keys.KeyFileError, match="already exists"):
        keys.keygen(path)
    assert keys.keygen(path, force=True) != key_id


def test_a_key_file_others_can_read_is_refused(tmp_path) -> None:
    path = tmp_path / "lab.key"
    keys.keygen(path)
    path.chmod(0o644)
    with pytest.raises(keys.KeyFileError, match=r"accessible by group or others \(mode 0644\).*chmod 600"):
        keys.read_key(path)


@pytest.mark.parametrize("content", [b"", b"not base64 at all!", base64.b64encode(bytes(16)) + b"\n"])
def test_a_file_that_is_not_a_key_is_refused_without_showing_it(tmp_path, content: bytes) -> None:
    path = tmp_path / "lab.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(keys.KeyFileError) as info:
        keys.read_key(path)
    assert "not a provision key" in str(info.value)
    assert not content or content.decode().strip() not in str(info.value)
