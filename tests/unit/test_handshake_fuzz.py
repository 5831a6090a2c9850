"""Hypothesis drives every decoder in noise.py, cookie.py and replay.py that reads bytes from the network
(noise.consume_initiation / consume_response / response_receiver, CookieChecker.mac1_ok / mac2_ok,
CookieGenerator.consume_reply, ReplayWindow) with random bytes, with valid messages mutated
(bytes flipped, cut, extended) and with valid headers over random bodies. The only outcomes
allowed: a HandshakeError with one of the fixed reasons, or False. Anything else is a bug that
a datagram could trigger.

FUZZ_EXAMPLES sets the examples per target: a short pass by default (make test), more for a
longer fuzzing run, e.g. `FUZZ_EXAMPLES=20000 pytest tests/unit/test_handshake_fuzz.py`."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.tunnel import noise
from provisioner.tunnel.cookie import CookieChecker, CookieGenerator
from provisioner.tunnel.noise import HandshakeError, Identity
from provisioner.tunnel.replay import WINDOW_SIZE, ReplayWindow

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
REASONS = {noise.BAD_SIZE, noise.BAD_TYPE, noise.BAD_KEY, noise.BAD_STATIC, noise.BAD_TIMESTAMP,
           noise.BAD_RESPONSE, noise.UNKNOWN_RECEIVER, noise.UNKNOWN_PEER}
PSK = bytes(range(32))
SOURCE = bytes([198, 51, 100, 7, 0xCA, 0x6C])

INITIATOR = Identity.from_private(noise.generate_private())
RESPONDER = Identity.from_private(noise.generate_private())


def _valid_initiation() -> tuple[bytearray, noise.InitiatorState]:
    msg, state = noise.create_initiation(INITIATOR, RESPONDER.public, PSK, 1234, noise.tai64n(5000.0))
    CookieGenerator(RESPONDER.public).add_macs(msg, 0.0)
    return msg, state


INITIATION, STATE = _valid_initiation()
PRECOMPUTED = {INITIATOR.public: noise.static_secret(RESPONDER, INITIATOR.public)}
RESPONSE = noise.create_response(RESPONDER, noise.consume_initiation(RESPONDER, INITIATION), PSK, 77)[0]
CookieGenerator(INITIATOR.public).add_macs(RESPONSE, 0.0)


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid message with a few bytes changed, then maybe cut short or extended."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    tail = draw(st.binary(max_size=40))
    how = draw(st.sampled_from(["as is", "cut", "extended"]))
    return bytes(data[:cut] if how == "cut" else data + tail if how == "extended" else data)


def with_header(header: bytes, size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size - 4, max_size=size - 4).map(lambda body: header + body)


def hostile(valid: bytes, header: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), mutated(valid), with_header(header, len(valid)))


def refused_or_decoded(call):  # noqa: ANN001, ANN201 - a tiny helper for the tests below
    try:
        return call()
    except HandshakeError as refused:
        assert refused.reason in REASONS
        return None


@FUZZ
@given(hostile(bytes(INITIATION), noise.HEADER_INITIATION))
def test_consume_initiation_only_refuses(msg: bytes) -> None:
    result = refused_or_decoded(lambda: noise.consume_initiation(RESPONDER, msg))
    known = refused_or_decoded(lambda: noise.consume_initiation(RESPONDER, msg, PRECOMPUTED))
    assert (result is None) is (known is None)
    if result is not None:  # decrypted: then the static and timestamp must be the ones sealed
        assert result.peer_public == INITIATOR.public and msg[8:116] == INITIATION[8:116]


@FUZZ
@given(hostile(bytes(RESPONSE), noise.HEADER_RESPONSE))
def test_consume_response_and_response_receiver_only_refuse(msg: bytes) -> None:
    refused_or_decoded(lambda: noise.response_receiver(msg))
    keys = refused_or_decoded(lambda: noise.consume_response(INITIATOR, STATE, PSK, msg))
    if keys is not None:
        assert msg[8:60] == RESPONSE[8:60]


@FUZZ
@given(st.one_of(hostile(bytes(INITIATION), noise.HEADER_INITIATION),
                 hostile(bytes(RESPONSE), noise.HEADER_RESPONSE)),
       st.binary(max_size=20), st.floats(allow_nan=True, allow_infinity=True))
def test_mac_checks_only_answer_true_or_false(msg: bytes, source: bytes, now: float) -> None:
    checker = CookieChecker(RESPONDER.public)
    assert checker.mac1_ok(msg) in (True, False)
    assert checker.mac2_ok(msg, source, now) is False  # no secret yet: nobody holds a cookie
    if checker.mac1_ok(msg):
        checker.reply(msg, source, 0.0)
        assert checker.mac2_ok(msg, source, 0.0) in (True, False)


@st.composite
def cookie_replies(draw: st.DrawFn) -> tuple[CookieGenerator, bytes]:
    generator = CookieGenerator(RESPONDER.public)
    sent = bytearray(INITIATION)
    generator.add_macs(sent, 0.0)
    reply = CookieChecker(RESPONDER.public).reply(sent, SOURCE, 0.0)
    return generator, draw(hostile(reply, noise.HEADER_COOKIE_REPLY))


@FUZZ
@given(cookie_replies(), st.floats(allow_nan=True, allow_infinity=True))
def test_consume_reply_only_answers_true_or_false(case: tuple[CookieGenerator, bytes], now: float) -> None:
    generator, msg = case
    assert generator.consume_reply(msg, now) in (True, False)
    assert CookieGenerator(RESPONDER.public).consume_reply(msg, now) is False  # nothing sent yet


def test_an_unmutated_cookie_reply_is_taken() -> None:  # so the fuzz test above can see True at all
    generator = CookieGenerator(RESPONDER.public)
    sent = bytearray(INITIATION)
    generator.add_macs(sent, 0.0)
    assert generator.consume_reply(CookieChecker(RESPONDER.public).reply(sent, SOURCE, 0.0), 0.0)


class Model:
    """The replay rule stated plainly: a counter is fresh if it was never seen, is below the
    limit, and is at most WINDOW_SIZE below the greatest counter seen (0 before any)."""

    def __init__(self, limit: int) -> None:
        self.seen: set[int] = set()
        self.limit = limit

    def accept(self, counter: int) -> bool:
        top = max(self.seen, default=0)
        if not 0 <= counter < self.limit or counter in self.seen or top - counter > WINDOW_SIZE:
            return False
        self.seen.add(counter)
        return True


def walks() -> st.SearchStrategy[list[int]]:
    """Counters as a receiver sees them: mostly near the top, some far behind, some far ahead."""
    steps = st.lists(st.one_of(st.integers(-200, 200), st.integers(-9000, 9000), st.integers(0, 2**40)),
                     max_size=300)
    return st.tuples(st.integers(0, 2**32), steps).map(
        lambda start_steps: [start_steps[0] + sum(start_steps[1][:i]) for i in range(len(start_steps[1]))])


@FUZZ
@given(st.one_of(walks(), st.lists(st.integers(-2, 2**64 + 2), max_size=100)),
       st.sampled_from([2**64 - 2**13 - 1, 2**33]))
def test_the_replay_window_is_the_plain_rule(counters: list[int], limit: int) -> None:
    window, model = ReplayWindow(limit), Model(limit)
    for counter in counters:
        would = window.check(counter)
        assert window.accept(counter) is would is model.accept(counter), counter


@pytest.mark.parametrize("msg", [INITIATION, RESPONSE])
def test_the_fuzzed_messages_start_valid(msg: bytearray) -> None:
    assert CookieChecker((RESPONDER if msg is INITIATION else INITIATOR).public).mac1_ok(msg)
