"""The WireGuard handshake (provisioner/tunnel/noise.py): both ends derive the same keys, and a
message with any byte changed is refused with a HandshakeError."""

from __future__ import annotations

import pytest

from provisioner.tunnel import noise
from provisioner.tunnel.noise import HandshakeError, Identity

PSK = bytes(range(32))
TIME = noise.tai64n(1_764_633_600.25)


@pytest.fixture(scope="module")
def pair() -> tuple[Identity, Identity]:
    return Identity.from_private(noise.generate_private()), Identity.from_private(noise.generate_private())


def handshake(initiator: Identity, responder: Identity, psk: bytes = PSK):
    msg1, state = noise.create_initiation(initiator, responder.public, psk, 0x11223344, TIME)
    init = noise.consume_initiation(responder, msg1)
    msg2, responder_keys = noise.create_response(responder, init, psk, 0x55667788)
    initiator_keys = noise.consume_response(initiator, state, psk, msg2)
    return msg1, msg2, init, state, initiator_keys, responder_keys


@pytest.mark.parametrize("direction", ["a-to-b", "b-to-a"])
def test_a_full_handshake_gives_both_ends_matching_keys(pair: tuple[Identity, Identity], direction: str) -> None:
    a, b = pair if direction == "a-to-b" else pair[::-1]
    msg1, msg2, init, _, ik, rk = handshake(a, b)
    assert len(msg1) == noise.INITIATION_LEN and len(msg2) == noise.RESPONSE_LEN
    assert msg1[0:4] == b"\x01\0\0\0" and msg2[0:4] == b"\x02\0\0\0"
    assert msg1[116:] == bytes(32) and msg2[60:] == bytes(32)  # macs are cookie.py's
    assert init.peer_public == a.public and init.timestamp == TIME and init.sender_index == 0x11223344
    assert ik.send == rk.receive and ik.receive == rk.send and ik.send != ik.receive
    assert (ik.local_index, ik.remote_index, ik.initiator) == (0x11223344, 0x55667788, True)
    assert (rk.local_index, rk.remote_index, rk.initiator) == (0x55667788, 0x11223344, False)


def test_every_handshake_has_fresh_keys(pair: tuple[Identity, Identity]) -> None:
    first, second = handshake(*pair)[4], handshake(*pair)[4]
    assert first.send != second.send and first.receive != second.receive


def test_a_different_psk_is_refused(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    msg1, state = noise.create_initiation(a, b.public, PSK, 1, TIME)
    msg2, _ = noise.create_response(b, noise.consume_initiation(b, msg1), bytes(32), 2)
    with pytest.raises(HandshakeError) as refused:
        noise.consume_response(a, state, PSK, msg2)
    assert refused.value.reason == noise.BAD_RESPONSE


def test_an_initiation_for_someone_else_is_refused(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    c = Identity.from_private(noise.generate_private())
    msg1, _ = noise.create_initiation(a, b.public, PSK, 1, TIME)
    with pytest.raises(HandshakeError):
        noise.consume_initiation(c, msg1)


def test_precomputed_static_secret_gives_the_same_message(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    eph = noise.generate_private()
    ss = noise.static_secret(a, b.public)
    plain = noise.create_initiation(a, b.public, PSK, 7, TIME, ephemeral_private=eph)[0]
    pre = noise.create_initiation(a, b.public, PSK, 7, TIME, precomputed_ss=ss, ephemeral_private=eph)[0]
    assert plain == pre
    init = noise.consume_initiation(b, pre, precomputed={a.public: noise.static_secret(b, a.public)})
    assert init.peer_public == a.public and init.timestamp == TIME


def test_with_precomputed_secrets_an_unknown_peer_is_refused(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    stranger = Identity.from_private(noise.generate_private())
    msg1, _ = noise.create_initiation(stranger, b.public, PSK, 1, TIME)
    assert noise.consume_initiation(b, msg1).peer_public == stranger.public  # not judged without the map
    with pytest.raises(HandshakeError) as refused:
        noise.consume_initiation(b, msg1, precomputed={a.public: noise.static_secret(b, a.public)})
    assert refused.value.reason == noise.UNKNOWN_PEER


def test_an_identity_refuses_a_public_key_that_is_not_its_own() -> None:
    with pytest.raises(ValueError):
        Identity(noise.generate_private(), noise.public_of(noise.generate_private()))
    with pytest.raises(ValueError):
        Identity.from_private(bytes(31))


@pytest.mark.parametrize("offset", range(noise.INITIATION_LEN - 32))  # up to mac1: macs are not the handshake's
def test_tampering_with_any_initiation_byte_is_refused(pair: tuple[Identity, Identity], offset: int) -> None:
    a, b = pair
    msg1, _ = noise.create_initiation(a, b.public, PSK, 1, TIME)
    msg1[offset] ^= 0x01
    if 4 <= offset < 8:  # the sender index is not authenticated by the handshake (mac1 covers it)
        assert noise.consume_initiation(b, msg1).sender_index != 1
        return
    with pytest.raises(HandshakeError):
        noise.consume_initiation(b, msg1)


@pytest.mark.parametrize("offset", range(noise.RESPONSE_LEN - 32))
def test_tampering_with_any_response_byte_is_refused(pair: tuple[Identity, Identity], offset: int) -> None:
    a, b = pair
    msg1, state = noise.create_initiation(a, b.public, PSK, 1, TIME)
    msg2, _ = noise.create_response(b, noise.consume_initiation(b, msg1), PSK, 2)
    msg2[offset] ^= 0x01
    if 4 <= offset < 8:  # the sender index: covered by mac1, not by the handshake
        assert noise.consume_response(a, state, PSK, msg2).remote_index != 2
        return
    with pytest.raises(HandshakeError):
        noise.consume_response(a, state, PSK, msg2)


@pytest.mark.parametrize("size", [0, 1, 4, 147, 149, 92, 1500])
def test_an_initiation_of_the_wrong_size_is_refused_before_parsing(pair: tuple[Identity, Identity], size: int) -> None:
    with pytest.raises(HandshakeError) as refused:
        noise.consume_initiation(pair[1], b"\x01" + bytes(size - 1) if size else b"")
    assert refused.value.reason == noise.BAD_SIZE


def test_a_low_order_ephemeral_is_refused(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    msg1, _ = noise.create_initiation(a, b.public, PSK, 1, TIME)
    msg1[8:40] = bytes(32)  # the point 0: every DH with it is all zero
    with pytest.raises(HandshakeError) as refused:
        noise.consume_initiation(b, msg1)
    assert refused.value.reason == noise.BAD_KEY


def test_a_low_order_peer_key_is_refused(pair: tuple[Identity, Identity]) -> None:
    with pytest.raises(HandshakeError):
        noise.create_initiation(pair[0], bytes(32), PSK, 1, TIME)


def test_tai64n_is_wireguards_label_and_orders_bytewise() -> None:
    assert noise.tai64n(0) == bytes.fromhex("400000000000000a00000000")
    stamp = noise.tai64n(1.5)
    assert stamp[:8] == (2**62 + 11).to_bytes(8, "big")
    assert int.from_bytes(stamp[8:], "big") == 0x1D00_0000  # 500 000 000 = 0x1DCD6500, its low 24 bits dropped
    assert noise.tai64n(1000.0) < noise.tai64n(1000.1) < noise.tai64n(1001.0)


def test_identity_from_private_and_public_of_agree() -> None:
    private = noise.generate_private()
    assert private[0] & 7 == 0 and private[31] & 0xC0 == 0x40
    assert Identity.from_private(private).public == noise.public_of(private)
    assert private.hex() not in repr(Identity.from_private(private))
