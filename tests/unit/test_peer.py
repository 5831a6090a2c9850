"""The protocol state machine of one tunnel (peer.py, keypair.py, gate.py), with WireGuard's
rules: two Peers talk through plain function calls, and a third party replays, forges and floods."""

from __future__ import annotations

import os

import pytest

from provisioner.tunnel import noise, timers
from provisioner.tunnel.drops import Drop, Drops
from provisioner.tunnel.gate import UNDER_LOAD
from provisioner.tunnel.peer import Peer

A_SOURCE = bytes([192, 0, 2, 1]) + (40839).to_bytes(2, "big")
B_SOURCE = bytes([192, 0, 2, 2]) + (50000).to_bytes(2, "big")


def pair(now: float = 1000.0, psk: bytes | None = None) -> tuple[Peer, Peer]:
    a, b = noise.Identity.from_private(noise.generate_private()), noise.Identity.from_private(noise.generate_private())
    listener = Peer(a, b.public, psk, now, keep_up=False)
    connector = Peer(b, a.public, psk, now, keep_up=True)
    return listener, connector


def handshake(listener: Peer, connector: Peer, now: float = 1000.0) -> tuple[bytes, bytes, bytes]:
    """(initiation, response, the keepalive that confirms): the messages that crossed."""
    [init] = connector.due(now)
    why, response = listener.on_handshake(init, B_SOURCE, now)
    assert why is None and response is not None
    why, keepalive = connector.on_handshake(response, A_SOURCE, now)
    assert why is None and keepalive is not None
    assert listener.open(keepalive, now) == b""
    return init, response, keepalive


def test_a_handshake_makes_one_session_both_ways_and_data_crosses() -> None:
    listener, connector = pair()
    handshake(listener, connector)
    assert listener.connected(1000.0) and connector.connected(1000.0)
    to_listener = connector.sender(1000.0).seal(b"ping")
    assert listener.open(to_listener, 1000.1) == b"ping"
    assert connector.open(listener.sender(1000.1).seal(b"pong"), 1000.2) == b"pong"
    assert listener.handshakes == connector.handshakes == 1


def test_the_responder_may_not_send_before_the_initiator_has_used_the_session() -> None:
    listener, connector = pair()
    [init] = connector.due(1000.0)
    listener.on_handshake(init, B_SOURCE, 1000.0)
    assert listener.sender(1000.0) is None, "the responder's keypair is 'next' until confirmed"


def test_replayed_data_is_dropped() -> None:
    listener, connector = pair()
    handshake(listener, connector)
    msg = connector.sender(1000.0).seal(b"once")
    assert listener.open(msg, 1000.0) == b"once"
    assert listener.open(msg, 1000.0) is Drop.REPLAYED  # the replay window refuses it


def test_a_replayed_initiation_is_refused_by_its_timestamp() -> None:
    listener, connector = pair()
    init, _, _ = handshake(listener, connector)
    why, reply = listener.on_handshake(init, B_SOURCE, 1001.0)
    assert (why, reply) == (Drop.REPLAYED_INITIATION, None)


def test_an_initiation_with_an_older_timestamp_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    listener, connector = pair()
    handshake(listener, connector)
    monkeypatch.setattr(noise, "tai64n", lambda _: noise.TAI64N_OLD if hasattr(noise, "TAI64N_OLD")
                        else (1 << 62).to_bytes(8, "big") + bytes(4))
    old = connector.initiation(1002.0)
    assert listener.on_handshake(old, B_SOURCE, 1002.0) == (Drop.REPLAYED_INITIATION, None)


def test_a_replayed_response_finds_no_handshake() -> None:
    listener, connector = pair()
    _, response, _ = handshake(listener, connector)
    assert connector.on_handshake(response, A_SOURCE, 1001.0) == (Drop.UNEXPECTED_RESPONSE, None)


def test_an_initiation_from_another_key_is_refused() -> None:
    listener, _ = pair()
    stranger = Peer(noise.Identity.from_private(noise.generate_private()), listener.me.public, None, 1000.0,
                    keep_up=True)
    assert listener.on_handshake(stranger.initiation(1000.0), B_SOURCE, 1000.0) == (Drop.UNKNOWN_PEER, None)


def test_different_psks_never_make_a_session() -> None:
    listener, connector = pair(psk=os.urandom(32))
    connector.psk = os.urandom(32)
    [init] = connector.due(1000.0)
    why, response = listener.on_handshake(init, B_SOURCE, 1000.0)  # IKpsk2 mixes the psk in last:
    assert why is None and response is not None  # the initiator is the one who finds out
    assert connector.on_handshake(response, A_SOURCE, 1000.0) == (Drop.HANDSHAKE_REFUSED, None)
    assert not connector.connected(1000.0) and listener.sender(1000.0) is None


def test_a_forged_mac1_costs_nothing_more() -> None:
    listener, connector = pair()
    init = bytearray(connector.initiation(1000.0))
    init[-20] ^= 1  # inside mac1
    assert listener.on_handshake(bytes(init), B_SOURCE, 1000.0) == (Drop.BAD_MAC1, None)


def test_under_load_an_initiation_without_a_cookie_gets_a_cookie_reply_and_one_with_it_passes() -> None:
    listener, connector = pair()
    now = 1000.0
    for _ in range(UNDER_LOAD + 1):  # a flood from elsewhere (valid mac1: our public key is public)
        listener.on_handshake(Peer(noise.Identity.from_private(noise.generate_private()), listener.me.public, None,
                                   now, keep_up=True).initiation(now), bytes([203, 0, 113, 9]) + b"\x99\x99", now)
    assert listener.gate.under_load(now)
    [init] = connector.due(now)
    why, reply = listener.on_handshake(init, B_SOURCE, now)
    assert why is Drop.BAD_MAC2 and reply is not None and reply[0] == noise.MSG_COOKIE_REPLY
    assert connector.on_handshake(reply, A_SOURCE, now) == (None, None)
    again = connector.initiation(now + 0.05)  # now with mac2
    why, response = listener.on_handshake(again, B_SOURCE, now + 0.05)
    assert why is None and response is not None


def test_rekey_after_time_comes_from_the_initiator() -> None:
    listener, connector = pair()
    handshake(listener, connector)
    later = 1000.0 + timers.REKEY_AFTER_TIME + 1
    assert connector.sender(later) is not None  # still usable ...
    msgs = connector.due(later)  # ... and a new handshake is due
    assert any(m[0] == noise.MSG_INITIATION for m in msgs)
    assert listener.sender(later) is not None and not [m for m in listener.due(later) if m[0] == 1]


def test_nothing_seals_or_opens_after_reject_after_time() -> None:
    listener, connector = pair()
    handshake(listener, connector)
    msg = connector.sender(1000.0).seal(b"late")
    dead = 1000.0 + timers.REJECT_AFTER_TIME
    assert connector.sender(dead) is None
    assert listener.open(msg, dead) is Drop.EXPIRED


def test_an_unanswered_initiation_is_sent_again_soon_then_at_rekey_timeout() -> None:
    _, connector = pair()
    [first] = connector.due(1000.0)
    assert connector.due(1000.0) == []
    t, gaps = 1000.0, []
    for _ in range(timers.FAST_RETRIES + 8):
        t = connector.retry_at
        gaps.append(t)
        assert [m[0] for m in connector.due(t)][:1] == [noise.MSG_INITIATION]
    steps = [b - a for a, b in zip(gaps, gaps[1:], strict=False)]
    assert steps[0] < 0.5 and timers.REKEY_TIMEOUT <= steps[-1] <= timers.REKEY_TIMEOUT + 0.34


def test_a_restarted_listener_that_knows_where_its_peer_was_starts_the_handshake() -> None:
    listener, connector = pair()
    handshake(listener, connector)
    restarted = Peer(listener.me, listener.peer_public, None, 1001.0, keep_up=False)
    assert restarted.due(1001.0) == [], "a listener with nothing to say stays quiet"
    restarted.want_session(1001.0)  # what the carrier does when its supervisor says where the peer was
    [hello] = restarted.due(1001.0)
    why, response = connector.on_handshake(hello, A_SOURCE, 1001.0)  # the connector answers it
    assert why is None and response is not None
    assert restarted.on_handshake(response, B_SOURCE, 1001.0)[0] is None and restarted.connected(1001.0)


def test_data_for_no_session_is_answered_with_nothing() -> None:
    listener, connector = pair()
    handshake(listener, connector)
    restarted = Peer(listener.me, listener.peer_public, None, 1001.0, keep_up=False)
    assert restarted.open(connector.sender(1001.0).seal(b"x"), 1001.0) is Drop.UNKNOWN_INDEX
    assert restarted.due(1001.0) == [] and restarted.pending is None


def test_a_flood_from_spoofed_sources_never_takes_the_peers_cookie_or_handshake_budget() -> None:
    listener, connector = pair()
    handshake(listener, connector)  # the peer's address is now the trusted one
    now = 1001.0
    flood = Peer(noise.Identity.from_private(noise.generate_private()), listener.me.public, None, now, keep_up=True)
    msg = flood.initiation(now)
    for i in range(5000):  # spoofed sources, valid mac1 (the public key is public): under load, cookies spent
        listener.on_handshake(msg, bytes([203, 0, 113, i % 250]) + i.to_bytes(2, "big"), now)
    assert listener.gate.under_load(now)
    why, reply = listener.on_handshake(connector.initiation(now), B_SOURCE, now)
    assert why is Drop.BAD_MAC2 and reply is not None, "the peer still gets its cookie"
    assert connector.on_handshake(reply, A_SOURCE, now) == (None, None)
    why, response = listener.on_handshake(connector.initiation(now + 0.05), B_SOURCE, now + 0.05)
    assert why is None and response is not None, "and its handshake"


def test_drop_reasons_are_a_closed_set_with_bounded_counters() -> None:
    drops = Drops()
    for _ in range(10_000):
        drops(Drop.MALFORMED)
    assert drops.to_dict() == {Drop.MALFORMED.value: 10_000}
    assert len(drops.counts) == len(Drop)


def test_an_idle_peer_never_asks_to_be_woken_in_a_loop() -> None:
    listener, connector = pair()
    assert listener.next_event(1000.0) >= 0.01, "no session, no endpoint: nothing to do but wait"
    handshake(listener, connector)
    assert 0.01 <= listener.next_event(1000.5) <= timers.KEEPALIVE_INTERVAL


def test_a_listener_with_something_to_send_does_not_start_a_second_session_beside_the_peers() -> None:
    """Found in CI: packets from the device before the first session made the listener start a
    handshake of its own as soon as it learned the endpoint, a second session at every start."""
    listener, connector = pair()
    assert listener.sender(1000.0) is None  # something to send, no session: a handshake is wanted
    [init] = connector.due(1000.0)
    why, response = listener.on_handshake(init, B_SOURCE, 1000.0)
    assert why is None and response is not None
    assert listener.sender(1000.0) is None and listener.due(1000.0) == [], "it waits for the peer's session"
    _, keepalive = connector.on_handshake(response, A_SOURCE, 1000.0)
    assert listener.open(keepalive, 1000.0) == b""
    assert listener.handshakes == connector.handshakes == 1
    assert not [m for m in listener.due(1000.1) if m[0] == noise.MSG_INITIATION]
