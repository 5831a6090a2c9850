"""noise.py against an independent Noise implementation: `noiseprotocol` (PyPI, a test dependency
only), running Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s with WireGuard's identifier as the Noise
prologue. In WireGuard H = HASH(HASH(CONSTRUCTION) ‖ IDENTIFIER): exactly Noise's InitializeSymmetric
(the name is longer than 32 bytes, so h = HASH(name), ck = h) followed by MixHash(prologue).

The handshake payloads are the message bodies between the header and the macs: the initiation's
bytes 8..116 (e, sealed s, sealed timestamp) and the response's 12..60 (e, sealed empty). With the
same static, ephemeral and pre-shared keys both sides must write the same bytes, read each other's,
and end with the same transport keys."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from noise.connection import Keypair, NoiseConnection

from provisioner.tunnel import noise
from provisioner.tunnel.noise import Identity

NAME = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
TIME = noise.tai64n(1_764_633_600.5)

# noiseprotocol warns that a fixed ephemeral key is for tests only: that is what this is.
pytestmark = pytest.mark.filterwarnings("ignore:One of ephemeral keypairs is already set")


def reference(initiator: bool, static_private: bytes, ephemeral_private: bytes, psk: bytes,
              remote_public: bytes | None = None) -> NoiseConnection:
    conn = NoiseConnection.from_name(NAME)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_prologue(noise.IDENTIFIER)
    conn.set_psks(psk)
    conn.set_keypair_from_private_bytes(Keypair.STATIC, static_private)
    conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral_private)
    if remote_public is not None:
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_public)
    conn.start_handshake()
    return conn


def first_sealed(key: bytes, payload: bytes) -> bytes:
    """What a transport key seals first (counter 0), as noiseprotocol's CipherState does."""
    return ChaCha20Poly1305(key).encrypt(bytes(12), payload, None)


@pytest.mark.parametrize("psk", [bytes(32), bytes(range(32, 64))], ids=["no-psk", "psk"])
@pytest.mark.parametrize("trial", range(3))
def test_our_initiator_and_the_reference_responder_write_the_same_bytes(psk: bytes, trial: int) -> None:
    i_priv, r_priv, ie_priv, re_priv = (noise.generate_private() for _ in range(4))
    me, them = Identity.from_private(i_priv), Identity.from_private(r_priv)

    msg1, state = noise.create_initiation(me, them.public, psk, 42, TIME, ephemeral_private=ie_priv)
    ref_initiator = reference(True, i_priv, ie_priv, psk, remote_public=them.public)
    assert bytes(ref_initiator.write_message(TIME)) == bytes(msg1[8:116])

    ref_responder = reference(False, r_priv, re_priv, psk)
    assert bytes(ref_responder.read_message(bytes(msg1[8:116]))) == TIME
    ref_msg2 = bytes(ref_responder.write_message(b""))

    init = noise.consume_initiation(them, msg1)
    msg2, responder_keys = noise.create_response(them, init, psk, 43, ephemeral_private=re_priv)
    assert bytes(msg2[12:60]) == ref_msg2

    assert bytes(ref_initiator.read_message(ref_msg2)) == b""
    keys = noise.consume_response(me, state, psk, msg2)
    for conn, ours in ((ref_initiator, keys), (ref_responder, responder_keys)):
        assert conn.handshake_finished
        payload = f"trial {trial}".encode()
        assert conn.encrypt(payload) == first_sealed(ours.send, payload)
        assert conn.decrypt(first_sealed(ours.receive, payload)) == payload


def test_the_reference_initiator_is_understood_by_our_responder() -> None:
    i_priv, r_priv, ie_priv = (noise.generate_private() for _ in range(3))
    psk = bytes(range(32))
    them = Identity.from_private(r_priv)
    ref = reference(True, i_priv, ie_priv, psk, remote_public=them.public)
    msg1 = bytearray(noise.INITIATION_LEN)
    msg1[0:4] = b"\x01\0\0\0"
    msg1[8:116] = ref.write_message(TIME)
    init = noise.consume_initiation(them, msg1)
    assert init.peer_public == noise.public_of(i_priv) and init.timestamp == TIME
    msg2, keys = noise.create_response(them, init, psk, 9)
    ref.read_message(bytes(msg2[12:60]))
    assert ref.decrypt(first_sealed(keys.send, b"ping")) == b"ping"


def test_the_initial_hash_is_noises_with_the_identifier_as_prologue() -> None:
    responder = Identity.from_private(noise.generate_private())
    ref = reference(True, noise.generate_private(), noise.generate_private(), bytes(32),
                    remote_public=responder.public)
    symmetric = ref.noise_protocol.handshake_state.symmetric_state
    assert symmetric.ck == noise.INITIAL_CHAIN_KEY
    assert symmetric.h == responder.responder_hash  # after the prologue and the pre-message <- s
