"""Encrypted tunnels between real namespaces, attacked from real sockets.

What the issue asks to see: a peer without the key is refused in the handshake; forged,
replayed, too-old and truncated datagrams, and forged or replayed handshakes, are dropped
before the device (its kernel counters do not move) while the tunnel stays up for the real
peer; keys never show anywhere; forwarders run without privileges; a key rotation costs no
more than a reconnect; compression shrinks what crosses the wire.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provisioner import keys
from provisioner.kernel import namespace
from provisioner.plan import REKEY
from provisioner.tunnel import session, wire

from .helpers import provision, wait_for
from .pair import SECURE, connected, device_rx, hosts, inventory, pings, status, up

__all__ = ["hosts"]  # a fixture
PORT = 40839


# ------------------------------------------------------------------ tools of the attacker

def capture(ns: str, device: str, keep: int, proto: int, stop: threading.Event) -> list[tuple[bytes, bytes]]:
    """(IP header + transport header, payload) of packets to PORT seen on `device`, until `stop`."""
    with namespace.entered(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    sock.bind((device, 0x0800))
    sock.settimeout(0.1)
    out: list[tuple[bytes, bytes]] = []
    with sock:
        while not stop.is_set() and len(out) < keep:
            try:
                pkt = sock.recv(65535)
            except TimeoutError:
                continue
            ihl = (pkt[0] & 0x0F) * 4
            if pkt[9] != proto or struct.unpack("!H", pkt[ihl + 2:ihl + 4])[0] != PORT:
                continue
            l4 = 8 if proto == socket.IPPROTO_UDP else (pkt[ihl + 12] >> 4) * 4
            if len(pkt) > ihl + l4:
                out.append((pkt[:ihl + l4], pkt[ihl + l4:]))
    return out


@contextmanager
def capturing(ns: str, device: str, keep: int, proto: int) -> Iterator[list[tuple[bytes, bytes]]]:
    got: list[tuple[bytes, bytes]] = []
    stop = threading.Event()
    thread = threading.Thread(target=lambda: got.extend(capture(ns, device, keep, proto, stop)))
    thread.start()
    time.sleep(0.2)
    try:
        yield got
    finally:
        stop.set()
        thread.join()


def spoof_udp(ns: str, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
    """One UDP datagram from a raw socket, with whatever source we like (checksum 0: none)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    with namespace.entered(ns):
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    with raw:
        raw.sendto(ip + udp, (dst[0], 0))


def freeze(pid: int) -> list[int]:
    """SIGSTOP a forwarder and its sending process: the real peer falls silent mid-test."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    frozen = [pid, *map(int, children)]
    for p in frozen:
        os.kill(p, signal.SIGSTOP)
    return frozen


def thaw(frozen: list[int]) -> None:
    for p in frozen:
        os.kill(p, signal.SIGCONT)


# ------------------------------------------------------------------ the tests

def test_forged_replayed_old_and_truncated_datagrams_never_reach_the_device(tmp_path: Path,
                                                                             hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts, "udp")
    with capturing(hosts[0], "u1", 20, socket.IPPROTO_UDP) as seen:
        assert pings(hosts[1], "198.51.100.1", 5)
    recorded = [(h, p) for h, p in seen if p[0] == wire.DATA]
    assert len(recorded) >= 3, seen
    peer = (socket.inet_ntoa(recorded[0][0][12:16]), struct.unpack("!H", recorded[0][0][20:22])[0])
    # Move the window far past what was recorded: more than REPLAY_WINDOW datagrams from gw2.
    subprocess.run(["ip", "netns", "exec", hosts[1], "ping", "-f", "-c", str(session.REPLAY_WINDOW + 500), "-s",
                    "32", "198.51.100.1"], capture_output=True, check=True, timeout=60)
    listener = status(inv, state)["gw1"]
    with capturing(hosts[0], "u1", 1, socket.IPPROTO_UDP) as last:  # the newest datagram the listener took
        assert pings(hosts[1], "198.51.100.1", 1)
    frozen = freeze(status(inv, state)["gw2"]["pid"])
    try:
        newest = last[0][1]
        top = int.from_bytes(newest[8:16], "big")

        def at(counter: int) -> bytearray:  # the newest datagram, claiming another counter
            return bytearray(newest[:8] + counter.to_bytes(8, "big") + newest[16:])

        flipped = at(top + 5)
        flipped[-20] ^= 0x40
        sid = int.from_bytes(newest[4:8], "big")
        forger = session.DatagramSealer(os.urandom(32), sid, False)
        forger.counter = 1 << 20  # ahead of the window: refused for its tag, not as a replay
        close = forger.seal(wire.CLOSE)  # "I am going", but not from the peer
        attacks = {
            "replayed": [newest],
            "older than the replay window": [recorded[0][1]],
            "datagram failed authentication": [bytes(flipped), bytes(at(1 << 40)), bytes(at(top + 6)[:40]), close],
            "datagram shorter than its authentication tag": [bytes(at(top + 7)[:20])],
            "datagram shorter than its header": [newest[:5]],
        }
        before = device_rx(hosts[0], "tap0")
        for datagrams in attacks.values():
            for d in datagrams:
                spoof_udp(hosts[1], peer, ("192.0.2.1", PORT), d)
        spoof_udp(hosts[1], ("192.0.2.99", 4000), ("192.0.2.1", PORT), bytes(at(top + 8)))  # from elsewhere
        drops = wait_for("every attack counted", lambda: (d := status(inv, state)["gw1"]["drops"])
                         and all(d.get(reason, 0) >= len(ds) for reason, ds in attacks.items()) and d, 5,
                         show=lambda: status(inv, state)["gw1"]["drops"])
        assert drops.get("datagram from an unknown sender", 0) >= 1
        assert device_rx(hosts[0], "tap0") == before, "a forged datagram reached the device"
    finally:
        thaw(frozen)
    assert status(inv, state)["gw1"]["pid"] == listener["pid"]
    assert "closed the session" not in (state / "tunnels/gw1/core/forwarder.log").read_text()
    assert pings(hosts[0], "198.51.100.2"), "the tunnel stays up for the real peer"


def test_a_udp_peer_without_the_key_is_refused_in_the_handshake(tmp_path: Path, hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts, "udp")
    listener = ("192.0.2.1", PORT)
    with namespace.entered(hosts[1]):
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with attacker:
        attacker.settimeout(2)
        # Another key: refused at once, and told so.
        stranger = session.Initiator(session.Hello("tap", False, True), {"0000000000000000": os.urandom(32)})
        attacker.sendto(session.DATAGRAM.pack(wire.INIT, 0, 0) + stranger.init, listener)
        answer = attacker.recv(4096)
        assert answer[0] == wire.REFUSED and b"does not hold this tunnel's key" in answer
        # The right key's id (ids are public) but not the key: the listener's reply does not
        # verify, and a made-up CONFIRM is refused.
        key_id = status(inv, state)["gw1"]["key_id"]
        impostor = session.Initiator(session.Hello("tap", False, True), {key_id: os.urandom(32)})
        attacker.sendto(session.DATAGRAM.pack(wire.INIT, 0, 0) + impostor.init, listener)
        body = attacker.recv(4096)[session.DATAGRAM_LEN:]
        try:
            impostor.on_reply(body)
            raise AssertionError("the listener's reply verified without its key")
        except session.HandshakeError as exc:
            assert "does not hold this tunnel's key" in str(exc)
        sid = int.from_bytes(body[32:36], "big")
        attacker.sendto(session.DATAGRAM.pack(wire.CONFIRM, sid, 0) + os.urandom(32), listener)
        attacker.sendto(session.DatagramSealer(os.urandom(32), sid, False).seal(wire.DATA, b"x" * 60), listener)
        wait_for("both refused", lambda: status(inv, state)["gw1"]["drops"].get(
            "handshake refused: the peer does not hold this tunnel's key", 0) >= 2, 5)
    assert status(inv, state)["gw1"]["peer"].startswith("192.0.2.2:")
    assert pings(hosts[0], "198.51.100.2")


def test_tcp_connections_without_the_key_are_refused_and_the_real_one_stays(tmp_path: Path,
                                                                             hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts, "tcp")
    real = status(inv, state)
    # Record the real peer's side of a handshake and its first frames: restart its forwarder.
    with capturing(hosts[0], "u1", 40, socket.IPPROTO_TCP) as seen:
        os.kill(real["gw2"]["pid"], signal.SIGKILL)
        wait_for("reconnected", lambda: (r := connected(inv, state)) and r["gw2"]["pid"] != real["gw2"]["pid"], 10)
        assert pings(hosts[1], "198.51.100.1", 2)
    to_listener = [(h[20:22], p) for h, p in seen if struct.unpack("!H", h[22:24])[0] == PORT]
    new = next(port for port, p in to_listener if p[0] == wire.INIT)  # the new connection's source port
    recorded = b"".join(p for port, p in to_listener if port == new)
    assert len(recorded) > 200, "a handshake and sealed frames were recorded"
    listener = status(inv, state)
    frozen = freeze(listener["gw2"]["pid"])
    try:
        before = device_rx(hosts[0], "tap0")
        with namespace.entered(hosts[1]):
            conns = [socket.create_connection(("192.0.2.1", PORT), timeout=5) for _ in range(4)]
        replayed, wrong_key, garbage, truncated = conns
        replayed.sendall(recorded)  # INIT, CONFIRM and sealed frames of a session that is gone
        initiator = session.Initiator(session.Hello("tap", False, True), os.urandom(32))
        wrong_key.sendall(wire.frame_header(wire.INIT, len(initiator.init)) + initiator.init)
        garbage.sendall(b"GET / HTTP/1.1\r\nHost: tunnel\r\n\r\n")
        truncated.sendall(wire.frame_header(wire.INIT, 500) + b"\x00" * 100)
        truncated.shutdown(socket.SHUT_WR)
        word = int.from_bytes(wrong_key.recv(4, socket.MSG_WAITALL), "big")
        try:
            initiator.on_reply(wrong_key.recv(word & 0xFFFFFF, socket.MSG_WAITALL))
            raise AssertionError("the listener's reply verified without its key")
        except session.HandshakeError:
            pass
        wrong_key.sendall(wire.frame_header(wire.CONFIRM, 32) + os.urandom(32))
        drops = wait_for("four refusals", lambda: (d := status(inv, state)["gw1"]["drops"])
                         and sum(n for k, n in d.items() if k.startswith("handshake refused")) >= 4 and d, 8,
                         show=lambda: status(inv, state)["gw1"])
        assert drops["handshake refused: the peer does not hold this tunnel's key"] >= 2, drops  # replayed, wrong key
        assert drops["handshake refused: the peer does not speak provision's handshake"] >= 1, drops
        for c in conns:
            c.close()
        assert device_rx(hosts[0], "tap0") == before, "an attacker's frame reached the device"
    finally:
        thaw(frozen)
    after = status(inv, state)["gw1"]
    assert (after["pid"], after["peer"]) == (listener["gw1"]["pid"], listener["gw1"]["peer"]), \
        "the real connection was never replaced"
    assert pings(hosts[0], "198.51.100.2")


def test_peers_with_different_keys_never_exchange_a_packet(tmp_path: Path, hosts: tuple[str, str]) -> None:
    """Checked by validate when both ends are in one inventory; here each host has its own
    inventory (as when hosts are applied separately), so only the handshake can refuse."""
    state = tmp_path / "state"
    for host, key in (("gw1", "a.key"), ("gw2", "b.key")):
        keys.keygen(tmp_path / key)
        text = inventory(tmp_path, hosts, "tcp").read_text().replace("key_file: core.key", f"key_file: {key}")
        (tmp_path / f"{host}.yaml").write_text(text)
        provision("apply", str(tmp_path / f"{host}.yaml"), "--limit", host, state_dir=state, check_rc=0)
    rows = wait_for("both refuse", lambda: (r := status(tmp_path / "gw1.yaml", state))
                    and r["gw1"]["last_error"] and r["gw2"]["last_error"] and r, 10)
    assert "does not hold this tunnel's key" in rows["gw1"]["last_error"], rows
    assert "the listener refused us: the peer does not hold this tunnel's key" in rows["gw2"]["last_error"], rows
    assert all(r["state"] == "connecting" for r in rows.values()), rows
    assert not pings(hosts[0], "198.51.100.2", 2)
    assert device_rx(hosts[0], "tap0") == 0 and device_rx(hosts[1], "tap0") == 0


def test_no_output_file_or_process_shows_a_key(tmp_path: Path, hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts, "tcp")
    key = keys.read_key(tmp_path / "core.key")
    secrets = [key, key.hex().encode(), base64.b64encode(key), base64.b64encode(key).rstrip(b"=")]
    seen = b""
    for args in (["validate"], ["plan"], ["plan", "--json"], ["apply", "--json"], ["apply", "--diff"], ["status"],
                 ["status", "--json"], ["facts"], ["facts", "--json"]):
        r = provision(*args[:1], str(inv), *args[1:], state_dir=state)
        seen += (r.out + r.err).encode()
    keys.keygen(tmp_path / "core.key", force=True)  # a rotation shows in the plan, the keys do not
    rotated = provision("plan", str(inv), "--json", state_dir=state, check_rc=0)
    seen += (rotated.out + rotated.err).encode()
    new = keys.read_key(tmp_path / "core.key")
    secrets += [new, new.hex().encode(), base64.b64encode(new)]
    bad = tmp_path / "bad.key"
    bad.write_bytes(base64.b64encode(key)[:-4] + b"!!!!\n")
    bad.chmod(0o600)
    (tmp_path / "bad.yaml").write_text(inv.read_text().replace("core.key", "bad.key"))
    broken = provision("apply", str(tmp_path / "bad.yaml"), state_dir=state, check_rc=1)
    assert "is not a provision key" in broken.err
    seen += (broken.out + broken.err).encode()
    for path in state.rglob("*"):
        if path.is_file():
            seen += path.read_bytes()
    for pid in (status(inv, state)[h]["pid"] for h in ("gw1", "gw2")):
        seen += Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
    assert "key_id" in json.dumps(json.loads(rotated.out))
    for secret in secrets:
        assert secret not in seen


def test_forwarders_keep_no_privileges_and_the_state_is_roots_alone(tmp_path: Path, hosts: tuple[str, str]) -> None:
    state = tmp_path / "state"
    inv = inventory(tmp_path, hosts, "udp", security=SECURE + ", user: nobody, group: nogroup")
    provision("apply", str(inv), state_dir=state, check_rc=0)
    wait_for("connected", lambda: connected(inv, state), 10)
    nobody = pwd.getpwnam("nobody").pw_uid
    for ns in hosts:
        pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                               text=True).stdout.split()]
        forwarders = [p for p in pids if b"tunnel.forwarder" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(forwarders) == 2, "the forwarder and its sending process"
        for pid in forwarders:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            assert fields["Uid"].split() == [str(nobody)] * 4 and fields["Gid"].split()[0] == "65534"
            for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(fields[caps], 16) == 0, (caps, fields[caps])
            assert fields["NoNewPrivs"].strip() == "1"
        link = json.loads(subprocess.run(["ip", "-n", ns, "-d", "-j", "link", "show", "tap0"], capture_output=True,
                                         text=True, check=True).stdout)[0]
        assert link["linkinfo"]["info_data"]["user"] in ("nobody", str(nobody)), link["linkinfo"]
    for path in [state, *state.rglob("*")]:
        st = path.lstat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, f"{path} is writable by others: {st.st_mode:o}"
    assert pings(hosts[0], "198.51.100.2")


def longest_silence(ns: str, address: str, during: Callable[[], object]) -> float:
    """Seconds of the longest gap between ping replies (one ping every 20 ms) while `during` runs."""
    replies: list[float] = []
    pinger = subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-D", "-i", "0.02", "-W", "1", address],
                              stdout=subprocess.PIPE, text=True)
    reader = threading.Thread(target=lambda: replies.extend(
        float(line[1:line.index("]")]) for line in pinger.stdout or () if "bytes from" in line))
    reader.start()
    try:
        time.sleep(0.5)
        during()
        time.sleep(1.0)
    finally:
        pinger.send_signal(signal.SIGINT)
        pinger.wait()
        reader.join()
    return max(b - a for a, b in zip(replies, replies[1:], strict=False))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_rotated_key_costs_no_more_than_a_reconnect(tmp_path: Path, hosts: tuple[str, str], transport: str) -> None:
    """Rotation as a fleet does it: each host applied on its own, at its own time (and then,
    both in one apply). The end rotated first keeps the old key too, until the other has the new."""
    inv, state = up(tmp_path, hosts, transport)
    old_id = keys.key_id(keys.read_key(tmp_path / "core.key"))

    def reconnect() -> None:  # what any restart of a forwarder costs: the yardstick
        old = status(inv, state)["gw2"]["pid"]
        os.kill(old, signal.SIGKILL)
        wait_for("reconnected", lambda: (r := connected(inv, state)) and r["gw2"]["pid"] != old, 10)

    def apply(limit: str, key_id: str) -> Callable[[], None]:
        def run() -> None:
            provision("apply", str(inv), "--limit", limit, state_dir=state, check_rc=0)
            wait_for(f"connected with key {key_id}", lambda: (r := connected(inv, state))
                     and all(row["key_id"] == key_id for row in r.values()), 10, show=lambda: status(inv, state))
        return run

    yardstick = longest_silence(hosts[0], "198.51.100.2", reconnect)
    new_id = keys.keygen(tmp_path / "core.key", force=True)
    plan = provision("plan", str(inv), state_dir=state, check_rc=0).out
    assert plan.count(f"-/+ tunnel core  (key: rotated)  [{REKEY}]") == 2, plan
    first = longest_silence(hosts[0], "198.51.100.2", apply("gw1", old_id))  # gw2 has only the old key yet
    second = longest_silence(hosts[0], "198.51.100.2", apply("gw2", new_id))
    newer = keys.keygen(tmp_path / "core.key", force=True)
    both = longest_silence(hosts[0], "198.51.100.2", apply("all", newer))
    print(f"{transport}: longest silence: {yardstick:.3f} s when a forwarder is killed and reconnects; key rotation: "
          f"{first:.3f} s applying the first end, {second:.3f} s the second, {both:.3f} s both in one apply")
    for gap in (first, second, both):
        assert gap < yardstick + 0.5, f"the tunnel was down {gap:.2f} s, a reconnect {yardstick:.2f} s"
    assert provision("plan", str(inv), "--detailed-exitcode", state_dir=state).rc == 0


def test_compression_shrinks_what_crosses_the_wire(tmp_path: Path, hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts, "tcp", security=SECURE + ", compress: true")

    def wire_bytes() -> int:
        out = subprocess.run(["ip", "-n", hosts[1], "-s", "-j", "link", "show", "u2"], capture_output=True,
                             text=True, check=True).stdout
        return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])

    sender = "import socket,sys; c=socket.create_connection(('198.51.100.1',5999)); c.sendall(bytes(16<<20)); c.close()"
    receiver = ("import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); "
                "s.bind(('0.0.0.0',5999)); s.listen(1); print('ready',flush=True); c,_=s.accept(); n=0\n"
                "while d:=c.recv(1<<20): n+=len(d)\nprint(n)")
    rx = subprocess.Popen(["ip", "netns", "exec", hosts[0], "python3", "-c", receiver], stdout=subprocess.PIPE,
                          text=True)
    assert rx.stdout is not None and rx.stdout.readline().strip() == "ready"
    before = wire_bytes()
    subprocess.run(["ip", "netns", "exec", hosts[1], "python3", "-c", sender], check=True, timeout=60)
    assert rx.communicate(timeout=60)[0].strip() == str(16 << 20)
    crossed = wire_bytes() - before
    print(f"16 MiB of zeros crossed the link as {crossed / 1e6:.2f} MB")
    assert crossed < (16 << 20) / 10
