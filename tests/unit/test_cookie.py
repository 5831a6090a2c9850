"""mac1/mac2 and cookie replies (provisioner/tunnel/cookie.py), and the XChaCha20-Poly1305 they use,
checked against the published vectors of draft-irtf-cfrg-xchacha."""

from __future__ import annotations

import itertools

import pytest

from provisioner.tunnel import cookie, noise
from provisioner.tunnel.cookie import CookieChecker, CookieGenerator
from provisioner.tunnel.noise import Identity

SOURCE = bytes([192, 0, 2, 1]) + (51820).to_bytes(2, "big")
OTHER_SOURCE = bytes([192, 0, 2, 2]) + (51820).to_bytes(2, "big")
PSK = bytes(32)


@pytest.fixture(scope="module")
def pair() -> tuple[Identity, Identity]:
    return Identity.from_private(noise.generate_private()), Identity.from_private(noise.generate_private())


def initiation(a: Identity, b: Identity, index: int = 1) -> bytearray:
    return noise.create_initiation(a, b.public, PSK, index, noise.tai64n(1000.0))[0]


def response(a: Identity, b: Identity) -> bytearray:
    init = noise.consume_initiation(b, initiation(a, b))
    return noise.create_response(b, init, PSK, 2)[0]


def counting_random():
    """Deterministic, and different every call: lets a test see when the secret is renewed."""
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


# ---- the XChaCha20-Poly1305 primitives -------------------------------------------------------


def test_hchacha20_matches_the_draft_vector() -> None:  # draft-irtf-cfrg-xchacha-03 §2.2.1
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    expected = "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    assert cookie.hchacha20(key, nonce).hex() == expected


def hchacha20_by_the_rounds(key: bytes, nonce16: bytes) -> bytes:
    """The draft's definition, round by round: the independent reference for cookie.hchacha20."""
    import struct

    def rotl(v: int, n: int) -> int:
        return ((v << n) & 0xFFFFFFFF) | (v >> (32 - n))

    def quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
        for x, y, z, r in ((a, b, d, 16), (c, d, b, 12), (a, b, d, 8), (c, d, b, 7)):
            s[x] = (s[x] + s[y]) & 0xFFFFFFFF
            s[z] = rotl(s[z] ^ s[x], r)

    s = [*struct.unpack("<4I", b"expand 32-byte k"), *struct.unpack("<8I", key), *struct.unpack("<4I", nonce16)]
    for _ in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
                           (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
            quarter(s, a, b, c, d)
    return struct.pack("<8I", *s[0:4], *s[12:16])


def test_hchacha20_equals_the_rounds_for_any_key_and_nonce() -> None:
    import os

    assert hchacha20_by_the_rounds(bytes(range(32)), bytes.fromhex("000000090000004a0000000031415927")).hex() == (
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    )
    for nonce in [bytes(16), b"\xff" * 16] + [os.urandom(16) for _ in range(30)]:
        key = os.urandom(32)
        assert cookie.hchacha20(key, nonce) == hchacha20_by_the_rounds(key, nonce)


def test_xchacha20poly1305_matches_the_draft_vector() -> None:  # draft-irtf-cfrg-xchacha-03 §A.3.1
    key = bytes(range(0x80, 0xA0))
    nonce = bytes(range(0x40, 0x58))
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
        b"sunscreen would be it."
    )
    sealed = bytes.fromhex(
        "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
        "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
        "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
        "21f9664c97637da9768812f615c68b13b52e"
        "c0875924c1c7987947deafd8780acf49"
    )
    assert cookie.xchacha20poly1305_seal(key, nonce, plaintext, aad) == sealed
    assert cookie.xchacha20poly1305_open(key, nonce, sealed, aad) == plaintext
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    assert cookie.xchacha20poly1305_open(key, nonce, bytes(tampered), aad) is None
    assert cookie.xchacha20poly1305_open(key, nonce, sealed, aad + b"x") is None


# ---- mac1 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["initiation", "response"])
def test_mac1_from_the_generator_is_what_the_checker_accepts(pair: tuple[Identity, Identity], kind: str) -> None:
    a, b = pair
    msg = initiation(a, b) if kind == "initiation" else response(a, b)
    receiver = b if kind == "initiation" else a
    CookieGenerator(receiver.public).add_macs(msg, now=0.0)
    assert CookieChecker(receiver.public).mac1_ok(msg)
    assert CookieChecker(receiver.public).mac1_ok(memoryview(msg))
    assert not CookieChecker((a if receiver is b else b).public).mac1_ok(msg)  # mac1 with a wrong key
    assert msg[-16:] == bytes(16)  # no cookie held: mac2 stays zero


def test_mac1_is_keyed_as_wireguard_keys_it(pair: tuple[Identity, Identity]) -> None:
    import hashlib

    a, b = pair
    msg = initiation(a, b)
    CookieGenerator(b.public).add_macs(msg, 0.0)
    key = hashlib.blake2s(b"mac1----" + b.public).digest()
    assert msg[116:132] == hashlib.blake2s(bytes(msg[:116]), key=key, digest_size=16).digest()


def test_any_byte_changed_before_mac2_fails_mac1(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    msg = initiation(a, b)
    CookieGenerator(b.public).add_macs(msg, 0.0)
    checker = CookieChecker(b.public)
    for offset in range(noise.INITIATION_LEN - 16):
        tampered = bytearray(msg)
        tampered[offset] ^= 0x80
        assert not checker.mac1_ok(tampered), offset


@pytest.mark.parametrize("msg", [b"", b"\x01", bytes(148), b"\x01\0\0\x01" + bytes(144), b"\x02\0\0\0" + bytes(144),
                                 b"\x01\0\0\0" + bytes(143), b"\x03\0\0\0" + bytes(60), b"\x04\0\0\0" + bytes(88)])
def test_mac1_ok_refuses_anything_not_a_handshake_message(msg: bytes) -> None:
    assert not CookieChecker(bytes(32)).mac1_ok(msg)
    assert not CookieChecker(bytes(32)).mac2_ok(msg, SOURCE, 0.0)


# ---- cookie replies and mac2 -----------------------------------------------------------------


def test_cookie_reply_round_trip_then_mac2(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    generator, checker = CookieGenerator(b.public), CookieChecker(b.public)
    msg = initiation(a, b, index=0xDEADBEEF)
    generator.add_macs(msg, now=10.0)
    assert not checker.mac2_ok(msg, SOURCE, now=10.0)  # under load: no mac2 yet
    reply = checker.reply(msg, SOURCE, now=10.0)
    assert len(reply) == noise.COOKIE_REPLY_LEN and reply[0:4] == b"\x03\0\0\0"
    assert reply[4:8] == (0xDEADBEEF).to_bytes(4, "little")  # to the sender of msg
    assert generator.consume_reply(reply, now=10.1)
    assert not generator.consume_reply(reply, now=10.1)  # one reply per message sent

    retry = initiation(a, b, index=0xDEADBEEF)
    generator.add_macs(retry, now=11.0)
    assert retry[-16:] != bytes(16)
    assert checker.mac1_ok(retry) and checker.mac2_ok(retry, SOURCE, now=11.0)
    assert not checker.mac2_ok(retry, OTHER_SOURCE, now=11.0)  # the cookie is bound to the source
    tampered = bytearray(retry)
    tampered[140] ^= 1
    assert not checker.mac2_ok(tampered, SOURCE, now=11.0)


def test_cookies_expire_after_120_s_on_both_sides(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    generator, checker = CookieGenerator(b.public), CookieChecker(b.public, random=counting_random())
    msg = initiation(a, b)
    generator.add_macs(msg, now=0.0)
    assert generator.consume_reply(checker.reply(msg, SOURCE, now=0.0), now=0.0)
    msg = initiation(a, b)
    generator.add_macs(msg, now=119.0)
    assert checker.mac2_ok(msg, SOURCE, now=119.0)
    assert not checker.mac2_ok(msg, SOURCE, now=121.0)  # the checker's secret is too old
    generator.add_macs(msg, now=121.0)
    assert msg[-16:] == bytes(16)  # the generator's cookie is too old: no mac2


def test_the_secret_is_renewed_and_old_cookies_stop_working(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    generator, checker = CookieGenerator(b.public), CookieChecker(b.public, random=counting_random())
    msg = initiation(a, b)
    generator.add_macs(msg, now=0.0)
    assert generator.consume_reply(checker.reply(msg, SOURCE, now=0.0), now=0.0)
    checker.reply(initiation(a, b), SOURCE, now=200.0)  # renews the secret
    msg = initiation(a, b)
    generator.add_macs(msg, now=100.0)  # the generator still holds its (fresh to it) cookie
    assert msg[-16:] != bytes(16)
    assert not checker.mac2_ok(msg, SOURCE, now=200.0)


def test_a_reply_to_an_older_message_or_from_someone_else_is_refused(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    generator, checker = CookieGenerator(b.public), CookieChecker(b.public)
    first = initiation(a, b, index=5)
    generator.add_macs(first, 0.0)
    stale = checker.reply(first, SOURCE, 0.0)
    second = initiation(a, b, index=5)
    generator.add_macs(second, 1.0)
    assert not generator.consume_reply(stale, 1.0)  # sealed to the first mac1
    assert not generator.consume_reply(CookieChecker(a.public).reply(second, SOURCE, 1.0), 1.0)  # wrong key
    good = bytearray(checker.reply(second, SOURCE, 1.0))
    for offset in range(4, noise.COOKIE_REPLY_LEN):
        tampered = bytearray(good)
        tampered[offset] ^= 0x01
        assert not generator.consume_reply(tampered, 1.0), offset
    assert generator.consume_reply(good, 1.0)


def test_a_reply_before_anything_was_sent_is_refused(pair: tuple[Identity, Identity]) -> None:
    a, b = pair
    msg = initiation(a, b)
    CookieGenerator(b.public).add_macs(msg, 0.0)
    assert not CookieGenerator(b.public).consume_reply(CookieChecker(b.public).reply(msg, SOURCE, 0.0), 0.0)


def test_reply_and_add_macs_refuse_other_messages() -> None:
    with pytest.raises(ValueError):
        CookieChecker(bytes(32)).reply(bytes(64), SOURCE, 0.0)
    with pytest.raises(ValueError):
        CookieGenerator(bytes(32)).add_macs(bytearray(64), 0.0)
