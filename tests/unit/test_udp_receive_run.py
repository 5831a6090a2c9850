"""The UDP carrier's receive turn with open_run: what a message at a time did to the peer, the
endpoint, the stats and the drops is done once per run, and what the run stops at goes the old
way. On a real loopback socket and a socket pair standing in for the device."""

from __future__ import annotations

import socket
import time

from provisioner.model import DeviceType, Role, Transport, Tunnel
from provisioner.tunnel import noise
from provisioner.tunnel.device import Device
from provisioner.tunnel.drops import Drop
from provisioner.tunnel.peer import Peer
from provisioner.tunnel.stats import Stats
from provisioner.tunnel.udp import UdpCarrier

from .runs import drained
from .test_open_run import padded, udp_packet


def _setup():
    now = time.monotonic()
    a, b = noise.Identity.from_private(noise.generate_private()), noise.Identity.from_private(noise.generate_private())
    listener = Peer(a, b.public, None, now, keep_up=False)
    connector = Peer(b, a.public, None, now, keep_up=True)
    [init] = connector.due(now)
    why, response = listener.on_handshake(init, b"x" * 6, now)
    assert why is None and response is not None
    why, keepalive = connector.on_handshake(response, b"y" * 6, now)
    assert why is None and listener.next is not None and listener.current is None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(17, 104, 1)  # UDP_GRO, as udp.bind sets it
    sock.setblocking(False)
    t = Tunnel(name="t", device="t0", transport=Transport.UDP, role=Role.LISTEN,
               endpoint=f"127.0.0.1:{sock.getsockname()[1]}", device_type=DeviceType.TUN)
    dev, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    reader.setblocking(False)
    device = Device(dev.fileno(), tap=False, pi=False, vnet_hdr=False, wireguard=True, compress=False)
    carrier = UdpCarrier(t, device, listener, sock, Stats("t"))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    return carrier, connector, sender, sock, (dev, reader)


def test_a_run_confirms_the_session_and_is_heard_once_with_the_same_counts() -> None:
    carrier, connector, sender, sock, (dev, reader) = _setup()
    try:
        kp = connector.current
        assert kp is not None
        packets = [udp_packet(100 + i) for i in range(5)]
        msgs = [kp.seal(padded(p)) for p in packets]
        forged = bytearray(kp.seal(padded(udp_packet(7))))
        forged[-1] ^= 1
        for m in [msgs[0], msgs[1], bytes(forged), msgs[1], msgs[2], msgs[3], msgs[4]]:
            sender.sendto(m, sock.getsockname())
        time.sleep(0.05)
        assert carrier.runs  # an encrypted tun: the run goes through open_run
        carrier._receive()
        peer = carrier.peer
        assert peer is not None and peer.current is not None and peer.next is None  # confirmed
        assert peer.current.confirmed and peer.handshakes == 1
        assert time.monotonic() - peer.last_heard < 5
        assert carrier.endpoint == sender.getsockname() and carrier.timers_moved
        assert drained(reader) == packets
        assert carrier.stats.rx_packets == 5
        assert carrier.stats.rx_bytes == sum(len(padded(p)) for p in packets)
        counts = carrier.stats.drops.counts
        assert counts[Drop.DECRYPT_FAILED] == 1 and counts[Drop.REPLAYED] == 1
        assert counts[Drop.INTERNAL] == 0
    finally:
        for s in (sender, sock, dev, reader):
            s.close()


def test_data_on_no_session_we_hold_is_dropped_the_old_way() -> None:
    carrier, connector, sender, sock, (dev, reader) = _setup()
    try:
        kp = connector.current
        assert kp is not None
        msg = bytearray(kp.seal(padded(udp_packet(20))))
        msg[4:8] = (kp.remote_index ^ 1).to_bytes(4, "little")
        sender.sendto(bytes(msg), sock.getsockname())
        time.sleep(0.05)
        carrier._receive()
        assert carrier.stats.drops.counts[Drop.UNKNOWN_INDEX] == 1
        assert carrier.peer is not None and carrier.peer.current is None and carrier.endpoint is None
        assert drained(reader) == []
    finally:
        for s in (sender, sock, dev, reader):
            s.close()
