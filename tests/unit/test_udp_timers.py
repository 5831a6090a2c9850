"""How long a UDP tunnel lets the data plane's loop sleep: an idle hub must be idle."""

from __future__ import annotations

import os
import socket

from provisioner.model import DeviceType, Role, Transport, Tunnel
from provisioner.tunnel import noise
from provisioner.tunnel.device import Device
from provisioner.tunnel.peer import Peer
from provisioner.tunnel.stats import Stats
from provisioner.tunnel.udp import IDLE_TICK, UdpCarrier

ME = noise.Identity.from_private(bytes(range(32)))
PEER = noise.Identity.from_private(bytes(range(1, 33)))


def carrier(role: Role) -> UdpCarrier:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    t = Tunnel(name="t", device="t0", transport=Transport.UDP, role=role,
               endpoint="127.0.0.1:9" if role is Role.CONNECT else f"127.0.0.1:{sock.getsockname()[1]}",
               device_type=DeviceType.TUN)
    device = Device(os.open(os.devnull, os.O_RDWR), tap=False, pi=False, vnet_hdr=False, wireguard=True,
                    compress=False)
    return UdpCarrier(t, device, Peer(ME, PEER.public, None, 1000.0, keep_up=role is Role.CONNECT), sock, Stats("t"))


def test_a_listener_nobody_has_spoken_to_sleeps_the_idle_tick() -> None:
    """A packet the kernel sends out of the device as it comes up (an IPv6 router solicitation)
    wants a session; a listener cannot start one before its peer speaks, but it asked to be
    woken every 10 ms from then on: 500 such tunnels kept the data plane at 27 % of a core."""
    c = carrier(Role.LISTEN)
    try:
        assert c.peer is not None and c.peer.sender(1000.0) is None  # what a read from the device asks
        for now in (1000.0, 1003.0, 1100.0):
            assert c.tick(now) == IDLE_TICK
    finally:
        c.close()


def test_a_connecting_end_wakes_for_its_handshake_retries() -> None:
    c = carrier(Role.CONNECT)
    try:
        c.start()
        assert c.tick(1000.0) < IDLE_TICK  # an initiation went out; its retry is due within seconds
    finally:
        c.close()


def test_a_slow_name_lookup_never_stalls_the_loop(monkeypatch) -> None:
    """A connecting end named by a host name looked it up in the loop: with one data plane for
    every tunnel of a host, a slow DNS server would have stalled them all."""
    import threading
    import time

    release = threading.Event()

    def slow(*args: object) -> list:
        release.wait(30)
        return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("192.0.2.7", 51820))]

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    c = carrier(Role.CONNECT)
    c.host = "peer.example"
    try:
        t0 = time.monotonic()
        assert c._resolve() is False and c._resolve() is False
        assert time.monotonic() - t0 < 10, "the lookup ran in the loop"  # (it would wait 30 s)
        release.set()
        deadline = time.monotonic() + 30
        while not c._resolve() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.endpoint == ("192.0.2.7", 51820)
    finally:
        release.set()
        c.close()
