"""The TCP carrier's listening end over a real loopback connection (no root, no device): when
it tells `status` that the tunnel is connected."""

from __future__ import annotations

import socket
import threading
import time
import types

from provisioner.model import Role
from provisioner.tunnel import noise
from provisioner.tunnel.peer import Peer
from provisioner.tunnel.stats import LinkState, Stats
from provisioner.tunnel.tcp import FrameReader, Pending, TcpCarrier, frame
from provisioner.tunnel.udp import source_key


def listening_end(psk_listener: bytes, psk_connector: bytes) -> tuple[list[LinkState], Peer, socket.socket, bytes]:
    """A listener whose connection's initiation was accepted (as _vet does), carried in a thread;
    (every state it reported, the connecting Peer, the connecting socket, the response it read)."""
    a, b = noise.Identity.from_private(noise.generate_private()), noise.Identity.from_private(noise.generate_private())
    now = time.monotonic()
    listener = Peer(a, b.public, psk_listener, now, keep_up=False)
    connector = Peer(b, a.public, psk_connector, now, keep_up=True)
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, addr = server.accept()
    server.close()
    why, response = listener.on_handshake(connector.initiation(now), source_key(addr), now)
    assert why is None and response is not None
    conn.sendall(b"".join(frame(response)))
    stats = Stats("t")
    states: list[LinkState] = []
    report = stats.set_state

    def record(state: LinkState, peer: str | None) -> None:
        states.append(state)
        report(state, peer)

    stats.set_state = record  # type: ignore[method-assign]
    stats.report = lambda: None  # type: ignore[method-assign]
    t = types.SimpleNamespace(role=Role.LISTEN, endpoint="127.0.0.1:1")
    carrier = TcpCarrier(t, None, listener, None, stats)  # type: ignore[arg-type]

    def carry() -> None:
        try:
            carrier._carry(Pending(conn, addr, 0.0, True))
        except (ConnectionError, OSError, ValueError):
            pass

    threading.Thread(target=carry, daemon=True).start()
    reader = FrameReader()
    client.settimeout(2)
    got = reader.frames(client.recv_into(reader.space()))
    assert len(got) == 1 and len(got[0]) == noise.RESPONSE_LEN
    return states, connector, client, bytes(got[0])


def test_a_listener_is_connected_only_once_the_initiator_has_confirmed_the_session() -> None:
    """A psk that differs: the initiator cannot verify the response and hangs up. The listener
    must not have said `connected` meanwhile (it did, for up to a second per attempt)."""
    states, connector, client, response = listening_end(bytes(32), b"\1" * 32)
    why, _ = connector.on_handshake(response, b"", time.monotonic())
    assert why is not None
    time.sleep(0.3)
    client.close()
    time.sleep(0.2)
    assert LinkState.CONNECTED not in states, states


def test_a_listener_is_connected_at_the_initiators_first_message() -> None:
    states, connector, client, response = listening_end(bytes(32), bytes(32))
    why, keepalive = connector.on_handshake(response, b"", time.monotonic())
    assert why is None and keepalive is not None
    time.sleep(0.2)
    assert LinkState.CONNECTED not in states, "connected before the initiator confirmed"
    client.sendall(b"".join(frame(keepalive)))
    deadline = time.monotonic() + 30
    while LinkState.CONNECTED not in states and time.monotonic() < deadline:
        time.sleep(0.01)
    assert LinkState.CONNECTED in states
    client.close()


def test_a_connecting_end_retries_fast_while_the_listener_is_likely_restarting_then_backs_off() -> None:
    """Both ends of a key change restart at once: the connecting end's first connects meet the
    old listener (which refuses the new key) or none. Doubling from 0.05 s, it slept 0.8–1.6 s
    when the new listener was already up: a key change cost more than a reconnect."""
    from provisioner.tunnel.tcp import FAST_RECONNECT_FOR, MAX_RECONNECT, reconnect_delay

    assert all(reconnect_delay(t / 10) == 0.05 for t in range(int(FAST_RECONNECT_FOR * 10)))
    slept, t = [], 0.0
    while t < 60:
        slept.append(reconnect_delay(t))
        t += slept[-1]
    assert sum(d == 0.05 for d in slept) <= FAST_RECONNECT_FOR / 0.05 + 1
    assert max(slept) == MAX_RECONNECT and slept == sorted(slept)
    assert len(slept) < 60, "about one connect a second at most, on average, over a minute"


def test_a_deleted_device_ends_the_forwarder_even_while_a_connection_is_carried() -> None:
    """A write to a deleted device raises DeviceGone inside the connection's loop. The catch-all
    that keeps a bad connection from ending the forwarder took it too: the forwarder ran on
    without a device, and its tunnel never showed `failed`."""
    import os

    import pytest

    from provisioner.tunnel.device import DeviceGone

    r, w = os.pipe()  # a device that never has anything to read
    try:
        t = types.SimpleNamespace(role=Role.CONNECT, endpoint="127.0.0.1:1")
        device = types.SimpleNamespace(fd=r)
        carrier = TcpCarrier(t, device, None, None, Stats("t"))  # type: ignore[arg-type]
        a, b = socket.socketpair()
        offers = iter([Pending(a, None, 0.0, False)])

        def next_connection() -> Pending:
            p = next(offers, None)
            if p is None:
                raise AssertionError("the forwarder went on after its device was gone")
            return p

        carrier._next_connection = next_connection  # type: ignore[method-assign]
        carrier._device_to_peer = lambda: None  # type: ignore[method-assign]

        def carry(p: Pending) -> None:
            raise DeviceGone("File descriptor in bad state")

        carrier._carry = carry  # type: ignore[method-assign]
        with pytest.raises(DeviceGone):
            carrier.run()
        b.close()
    finally:
        os.close(r)
        os.close(w)
