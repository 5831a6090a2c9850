"""noise.py and cookie.py against a stock WireGuard: Debian's wireguard-go in a fresh namespace,
configured with `wg`, and this test speaking to it over UDP with nothing but the pure core (no
forwarder, no provision). Each direction of the handshake, the transport keys (an ICMP echo each
way, sealed and opened here with ChaCha20-Poly1305), and cookie replies both ways."""

from __future__ import annotations

import base64
import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from provisioner.kernel.namespace import entered
from provisioner.tunnel import noise
from provisioner.tunnel.cookie import CookieChecker, CookieGenerator

WG_PORT, OUR_PORT = 51999, 52000
WG_ADDR, OUR_ADDR = "198.51.100.1", "198.51.100.2"


@dataclass
class WireGuardGo:
    ns: str
    name: str
    public: bytes
    psk: bytes
    me: noise.Identity
    sock: socket.socket

    def wg(self, *args: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.ns, "wg", "set", self.name, *args], check=True)

    def recv(self, kind: int, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            msg = self.sock.recv(2048)
            if msg[:1] == bytes((kind,)):
                return msg


@pytest.fixture
def wireguard_go(make_netns: Callable[[], str], tmp_path: Path) -> Iterator[WireGuardGo]:
    ns = make_netns()
    name = f"wgn{os.getpid() % 100000}"  # its control socket, /var/run/wireguard/NAME.sock, is not namespaced
    process = subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", name],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    control = Path(f"/var/run/wireguard/{name}.sock")
    try:
        deadline = time.monotonic() + 10
        while not control.exists():
            assert time.monotonic() < deadline and process.poll() is None, "wireguard-go did not start"
            time.sleep(0.05)
        wg_private, psk = noise.generate_private(), os.urandom(32)
        me = noise.Identity.from_private(noise.generate_private())
        for file, value in (("wg.key", wg_private), ("psk", psk)):
            (tmp_path / file).write_text(base64.b64encode(value).decode())
            (tmp_path / file).chmod(0o600)
        with entered(ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", OUR_PORT))
        wg = WireGuardGo(ns, name, noise.public_of(wg_private), psk, me, sock)
        wg.wg("listen-port", str(WG_PORT), "private-key", str(tmp_path / "wg.key"),
              "peer", base64.b64encode(me.public).decode(), "preshared-key", str(tmp_path / "psk"),
              "allowed-ips", f"{OUR_ADDR}/32", "endpoint", f"127.0.0.1:{OUR_PORT}")
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{WG_ADDR}/24", "dev", name], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", name, "up"], check=True)
        yield wg
        sock.close()
    finally:
        process.kill()
        process.wait()
        control.unlink(missing_ok=True)


def _checksum(data: bytes) -> int:
    data += bytes(len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def echo_request(ident: int) -> bytes:
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"provision noise.py"
    icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,
                     socket.inet_aton(OUR_ADDR), socket.inet_aton(WG_ADDR))
    return ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:] + icmp


def seal(keys: noise.SessionKeys, counter: int, packet: bytes) -> bytes:
    packet += bytes(-len(packet) % 16)
    nonce = struct.pack("<4xQ", counter)
    return struct.pack("<IIQ", noise.MSG_TRANSPORT, keys.remote_index, counter) + ChaCha20Poly1305(
        keys.send).encrypt(nonce, packet, None)


def open_(keys: noise.SessionKeys, msg: bytes) -> bytes:
    _, receiver, counter = struct.unpack_from("<IIQ", msg)
    assert receiver == keys.local_index
    return ChaCha20Poly1305(keys.receive).decrypt(struct.pack("<4xQ", counter), msg[16:], None)


def test_we_initiate_and_both_keys_carry_a_ping(wireguard_go: WireGuardGo) -> None:
    wg = wireguard_go
    generator, checker = CookieGenerator(wg.public), CookieChecker(wg.me.public)
    msg, state = noise.create_initiation(wg.me, wg.public, wg.psk, 0x0A0B0C0D, noise.tai64n(time.time()))
    generator.add_macs(msg, time.monotonic())
    wg.sock.sendto(msg, ("127.0.0.1", WG_PORT))
    response = wg.recv(noise.MSG_RESPONSE)
    assert checker.mac1_ok(response)
    keys = noise.consume_response(wg.me, state, wg.psk, response)
    wg.sock.sendto(seal(keys, 0, echo_request(0x1111)), ("127.0.0.1", WG_PORT))
    while not (reply := open_(keys, wg.recv(noise.MSG_TRANSPORT))):
        pass  # a keepalive
    assert socket.inet_ntoa(reply[12:16]) == WG_ADDR and reply[20] == 0  # an echo reply ...
    assert struct.unpack_from("!H", reply, 24)[0] == 0x1111  # ... to our request


def test_it_initiates_after_our_cookie_reply_and_we_answer(wireguard_go: WireGuardGo) -> None:
    wg = wireguard_go
    generator, checker = CookieGenerator(wg.public), CookieChecker(wg.me.public)
    subprocess.Popen(["ip", "netns", "exec", wg.ns, "ping", "-c", "8", "-i", "1", "-W", "1", OUR_ADDR],
                     stdout=subprocess.DEVNULL)
    first = wg.recv(noise.MSG_INITIATION)
    source = socket.inet_aton("127.0.0.1") + WG_PORT.to_bytes(2, "big")
    assert checker.mac1_ok(first) and not checker.mac2_ok(first, source, time.monotonic())
    wg.sock.sendto(checker.reply(first, source, time.monotonic()), ("127.0.0.1", WG_PORT))  # "under load"

    retry = wg.recv(noise.MSG_INITIATION)  # REKEY_TIMEOUT (5 s) later
    assert checker.mac1_ok(retry) and checker.mac2_ok(retry, source, time.monotonic())
    init = noise.consume_initiation(wg.me, retry, {wg.public: noise.static_secret(wg.me, wg.public)})
    assert init.peer_public == wg.public
    response, keys = noise.create_response(wg.me, init, wg.psk, 0x01020304)
    generator.add_macs(response, time.monotonic())
    wg.sock.sendto(response, ("127.0.0.1", WG_PORT))
    while not (packet := open_(keys, wg.recv(noise.MSG_TRANSPORT))):
        pass
    assert socket.inet_ntoa(packet[12:16]) == WG_ADDR and packet[20] == 8  # its echo request


def test_a_cookie_reply_from_it_under_load_is_taken(wireguard_go: WireGuardGo) -> None:
    wg = wireguard_go
    generator = CookieGenerator(wg.public)
    msg, _ = noise.create_initiation(wg.me, wg.public, wg.psk, 0x77777777, noise.tai64n(time.time()))
    generator.add_macs(msg, 0.0)
    wg.sock.setblocking(False)
    for _ in range(100):  # wireguard-go is under load from 128 queued handshakes on
        for _ in range(1000):
            try:
                wg.sock.sendto(msg, ("127.0.0.1", WG_PORT))
            except BlockingIOError:
                break
        while True:
            try:
                reply = wg.sock.recv(2048)
            except BlockingIOError:
                break
            if reply[0] == noise.MSG_COOKIE_REPLY and generator.consume_reply(reply, 1.0):
                again = bytearray(msg)
                generator.add_macs(again, 2.0)
                assert again[-16:] != bytes(16)  # now with mac2
                return
    pytest.fail("wireguard-go sent no cookie reply that CookieGenerator took")
