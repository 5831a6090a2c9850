"""A tunnel attacked by a third party on its network, one test per defect the WireGuard rewrite
fixes (issue 11, "Why"). Each test's docstring says what it showed on the code before (our own
JSON-hello protocol); each passes only if the forwarder stays up, stays small and idle, keeps
the tunnel passing packets, and lets nothing forged or replayed reach the device.

The pair (tests/integration/pair.py): gw1 (192.0.2.1) listens on PORT, gw2 (192.0.2.2)
connects; devices tap0, 198.51.100.1 and .2. The attacker sends from gw2's namespace with raw
sockets (any source address), or from addresses of its own on gw2's link.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provisioner.connection.identity import identity, state_name
from provisioner.kernel import namespace

from .attacker import capturing, cpu_seconds, flooding, ip_udp, raw_sender, rss_kb, save_packets
from .helpers import wait_for
from .pair import connected, first_reply_after, hosts, pings, status, up

__all__ = ["hosts"]  # a fixture
PORT = 40839
LISTENER = ("192.0.2.1", PORT)
OLD_INIT = struct.pack(">B3xIQ", 1, 0, 0) + bytes(32)  # the old protocol's INIT header and nonce


def crafted_hellos() -> list[bytes]:
    """The hellos that killed the old UDP loop and TCP handshake thread, and random bytes."""
    rng = random.Random(11)
    bodies = [b'{"provision": Infinity, "type": "tap", "pi": false, "vnet_hdr": true, "secure": true, "keys": []}',
              b"[" * 20000,
              '{"provision": 1, "type": "tap"}'.encode("utf-16-le")[:-1],
              '{"provision": 1}'.encode("utf-16-be"),
              b'{"provision": 1e999, "type": "tap", "pi": 0, "vnet_hdr": 1}',
              b'{"provision": {"a": 1}, "type": "tap", "pi": 0, "vnet_hdr": 1}']
    noise = [rng.randbytes(rng.randrange(0, 1400)) for _ in range(200)]
    return [OLD_INIT + b for b in bodies] + bodies + [b"", b"\x04"] + noise


def settled(inv: Path, state: Path) -> dict[str, dict]:
    """Status as the data planes report it after this moment (every 2 s, kept within 1 s). A row
    without `at` never counted as reported: status did not show it, so this waited for nothing."""
    mark = time.time()
    return wait_for("a report from each data plane", lambda: (r := status(inv, state))
                    and all((row.get("at") or 0) > mark for row in r.values()) and r, 30)


def forwarder_pids(inv: Path, state: Path) -> dict[str, int]:
    return {host: row["pid"] for host, row in status(inv, state).items()}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_crafted_hellos_and_garbage_kill_no_forwarder(tmp_path: Path, hosts: tuple[str, str], transport: str) -> None:
    """Before: one UDP datagram with `Infinity`, 20 000 `[` or UTF-16-looking bytes raised out of
    the receive loop (the forwarder died, and after five the supervisor marked the tunnel
    failed); over TCP the same killed the handshake thread with an unthrottled traceback."""
    inv, state = up(tmp_path, hosts, transport)
    before = forwarder_pids(inv, state)
    attacks = crafted_hellos()
    with namespace.entered(hosts[1]):
        if transport == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for _ in range(6):  # more than the supervisor's five failures
                    for payload in attacks:
                        s.sendto(payload, LISTENER)
                    time.sleep(0.05)
        else:
            for payload in attacks:
                for framed in (struct.pack(">I", 1 << 24 | len(payload)) + payload, payload):
                    with socket.create_connection(LISTENER, timeout=5) as c:
                        try:
                            c.sendall(framed)
                        except OSError:
                            pass  # the listener may close at the first bad byte: that is a right answer
    time.sleep(1.0)
    assert pings(hosts[0], "198.51.100.2", 5), "the tunnel still passes packets"
    rows = status(inv, state)
    assert forwarder_pids(inv, state) == before, "a forwarder died and was restarted"
    assert all(r["state"] == "connected" for r in rows.values()), rows
    # tunnel state is keyed by the machine (gw1 is the namespace hosts[0]), not by the inventory's name
    log = (state / "tunnels" / state_name(identity("netns", hosts[0])) / "tunnels.log").read_text()
    assert log.count("Traceback") <= 1, f"the log is not rate-limited:\n{log[-3000:]}"


def handshake_count(row: dict) -> int:
    return int(row.get("handshakes", 0))


def icmp_payloads(seen: list, pattern: bytes) -> list[bytes]:
    """Echo packets whose data carries `pattern` (ping -p), arriving at a device from its forwarder."""
    out = []
    for s in seen:
        if s.outgoing or len(s.data) < 28 or s.protocol != 0x0800 or s.data[9] != socket.IPPROTO_ICMP:
            continue
        if pattern * 4 in s.data:
            out.append(s.data)
    return out


def test_replayed_initiation_response_and_data_never_reach_the_device(tmp_path: Path, hosts: tuple[str, str]) -> None:
    """Before: pending handshakes were never removed once confirmed, so a recorded CONFIRM
    re-activated an old session with an empty replay window: replayed data reached the device.
    Now a replayed initiation has a timestamp that is not newer (refused, and not answered), a
    replayed response answers no handshake in progress, and replayed data falls behind the
    replay window (gw1 still holds the recorded session as its previous one) or under a session
    that is gone (gw2 was restarted since)."""
    inv, state = up(tmp_path, hosts, "udp")
    with capturing(hosts[0], "u1") as wire:
        os.kill(status(inv, state)["gw2"]["pid"], signal.SIGKILL)  # a fresh handshake, recorded
        wait_for("reconnected", lambda: connected(inv, state), 30)
        for ns, to in ((hosts[1], "198.51.100.1"), (hosts[0], "198.51.100.2")):
            subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "5", "-i", "0.1", "-p", "a5a5", to],
                           capture_output=True, timeout=20)
    recorded = [u for s in wire if (u := s.udp()) and PORT in (u[0][1], u[1][1])]
    to_gw1 = [p for _, dst, p in recorded if dst == LISTENER]
    assert len(recorded) >= 12, "a handshake and data were recorded"
    # Another session replaces the recorded one: now all that was recorded is old.
    old = status(inv, state)["gw2"]["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for("reconnected", lambda: (r := connected(inv, state)) and r["gw2"]["pid"] != old, 30)
    assert pings(hosts[0], "198.51.100.2", 2)
    rows = settled(inv, state)
    host, port = rows["gw1"]["peer"].rsplit(":", 1)
    gw2_now = (host, int(port))  # gw2's new forwarder has another port: replay to where gw2 is now
    rounds = 3
    with capturing(hosts[0], "tap0") as at1, capturing(hosts[1], "tap0") as at2, capturing(hosts[0], "u1") as during:
        for _ in range(rounds):
            for src, dst, payload in recorded:  # each to where it went, from where it came
                with raw_sender(hosts[1] if dst == LISTENER else hosts[0]) as send:
                    send(ip_udp(src, dst if dst == LISTENER else gw2_now, payload))
                    if dst == LISTENER:  # and from elsewhere: a replay must not move the peer's endpoint
                        send(ip_udp(("192.0.2.99", 4444), dst, payload))
            time.sleep(0.3)
        time.sleep(0.5)
    replayed = icmp_payloads(at1, b"\xa5\xa5") + icmp_payloads(at2, b"\xa5\xa5")
    assert not replayed, f"{len(replayed)} replayed packets reached a device"
    assert {1, 4} <= {p[0] for p in to_gw1} and 2 in {p[0] for _, dst, p in recorded if dst != LISTENER}, \
        f"an initiation, a response and data were replayed: {[(d, p[0]) for _, d, p in recorded]}"
    answers = [u for s in during if (u := s.udp()) and u[0] == LISTENER and u[2][:1] == b"\x02"
               and u[2] not in {p for _, _, p in recorded}]
    assert not answers, "gw1 answered a replayed initiation"
    after = settled(inv, state)
    assert {h: r["pid"] for h, r in after.items()} == {h: r["pid"] for h, r in rows.items()}
    assert {h: handshake_count(r) for h, r in after.items()} == {h: handshake_count(r) for h, r in rows.items()}, \
        "a replayed handshake made a session"
    assert after["gw1"]["peer"] == rows["gw1"]["peer"], "a replayed message moved the peer's endpoint"
    assert pings(hosts[0], "198.51.100.2", 2), "the real session is untouched"

    def more(host: str, reason: str) -> int:
        return after[host]["drops"].get(reason, 0) - rows[host]["drops"].get(reason, 0)

    initiations = 2 * sum(p[0] == 1 for p in to_gw1)  # from gw2's address, and from elsewhere
    assert more("gw1", "initiation with a timestamp not newer than the last") >= rounds * initiations, after["gw1"]
    assert more("gw2", "response or cookie reply to no handshake of ours") >= rounds, after["gw2"]
    data = 2 * rounds * sum(p[0] == 4 for p in to_gw1)
    assert more("gw1", "data replayed or too old for the window") + more("gw1", "data for no session we hold") \
        >= data - 2, (data, after["gw1"]["drops"])


@contextmanager
def idle_connections(ns: str, sources: list[str], per_source: int) -> Iterator[list[int]]:
    """Connections to the listener that never send a byte, re-opened as soon as one is closed."""
    stop = threading.Event()
    opened = [0]

    def hold(source: str) -> None:
        with namespace.entered(ns):
            conns: list[socket.socket] = []
            while not stop.is_set():
                alive = []
                for c in conns:
                    try:
                        gone = c.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
                    except BlockingIOError:
                        gone = False
                    except OSError:
                        gone = True
                    if gone:
                        c.close()
                    else:
                        alive.append(c)
                conns = alive
                while len(conns) < per_source and not stop.is_set():
                    c = socket.socket()
                    c.bind((source, 0))
                    c.settimeout(0.5)
                    try:
                        c.connect(LISTENER)
                        conns.append(c)
                        opened[0] += 1
                    except OSError:
                        c.close()
                        break
                time.sleep(0.02)
            for c in conns:
                c.close()

    threads = [threading.Thread(target=hold, args=(s,), daemon=True) for s in sources]
    for t in threads:
        t.start()
    try:
        yield opened
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_idle_tcp_connections_do_not_delay_a_restarted_forwarder(tmp_path: Path, hosts: tuple[str, str]) -> None:
    """Before: 40 connections that sent nothing held all 16 handshake slots for ~10 s each, over
    and over: a killed forwarder took 48 s to come back instead of 0.2 s."""
    inv, state = up(tmp_path, hosts, "tcp")
    sources = [f"192.0.2.{i}" for i in range(10, 20)]
    for s in sources:
        subprocess.run(["ip", "-n", hosts[1], "addr", "add", f"{s}/24", "dev", "u2"], check=True)
    with idle_connections(hosts[1], sources, 4) as opened:
        wait_for("40 idle connections", lambda: opened[0] >= 40, 30)
        gaps = {}
        for host in ("gw2", "gw1"):  # the connecting end killed, then the listener
            pid = status(inv, state)[host]["pid"]
            gaps[host] = first_reply_after(hosts[0], "198.51.100.2", lambda p=pid: os.kill(p, signal.SIGKILL))
        total = opened[0]
    print(f"tunnel back {gaps['gw2']:.2f} s after the connecting forwarder was killed, {gaps['gw1']:.2f} s after "
          f"the listener; {total} idle connections opened in all")
    assert gaps["gw2"] < 2.0 and gaps["gw1"] < 2.0, gaps


def initiations(count: int, listener_public: bytes | None, rng: random.Random) -> list[bytes]:
    """`count` WireGuard initiations from random sources: right size and type, and (when the
    listener's public key is known) a valid mac1, so each costs the listener its full first check;
    and as many of the old protocol's INITs, each naming another protocol version."""
    key = None
    if listener_public is not None:
        from provisioner.tunnel import cookie

        key = cookie.mac1_key(listener_public)
    out = []
    for i in range(count):
        src = (f"192.0.2.{rng.randrange(3, 255)}" if i % 2 else f"203.0.113.{rng.randrange(1, 255)}",
               rng.randrange(1024, 65536))
        body = bytearray(struct.pack("<I", 1) + rng.randbytes(112))
        if key is not None:
            body += hashlib.blake2s(bytes(body), key=key, digest_size=16).digest()
        else:
            body += rng.randbytes(16)
        body += bytes(16)
        out.append(ip_udp(src, LISTENER, bytes(body)))
        old = OLD_INIT + json.dumps({"provision": 1000 + i, "type": "tap", "pi": False, "vnet_hdr": True,
                                     "secure": True, "keys": []}).encode()
        out.append(ip_udp(src, LISTENER, old))
    return out


def public_key_of(tmp_path: Path, host: str) -> bytes | None:
    """The host's public key, if the pair made one (the WireGuard form of the inventory)."""
    import base64

    from provisioner import keys

    path = tmp_path / f"{host}.key"
    if not path.exists() or not hasattr(keys, "read_private"):
        return None
    return base64.b64decode(keys.public_key(keys.read_private(path)))


def test_60000_initiations_from_random_sources_neither_grow_nor_stall_the_forwarder(
        tmp_path: Path, hosts: tuple[str, str]) -> None:
    """Before: the text of a refusal became a counter label, so 60 000 INITs that each named
    another protocol version grew a forwarder from 37 to 127 MB, left it at 26 % CPU while idle,
    and froze stats.json (its line outgrew the supervisor's 64 KB read)."""
    inv, state = up(tmp_path, hosts, "udp")
    for dev in ("all", "default", "u1"):  # let the spoofed sources in (this namespace's default is loose anyway)
        subprocess.run(["ip", "netns", "exec", hosts[0], "sysctl", "-qw", f"net.ipv4.conf.{dev}.rp_filter=0"],
                       check=True)
    pid = status(inv, state)["gw1"]["pid"]
    packets = initiations(60000, public_key_of(tmp_path, "gw1"), random.Random(4))
    rss_before = rss_kb(pid)
    with flooding(hosts[1], save_packets(tmp_path / "initiations", packets), 20000, len(packets) / 20000) as attack:
        sent, took = attack()
    flooded = time.monotonic()
    assert sent >= len(packets)
    assert Path(f"/proc/{pid}").exists(), "the forwarder died under the flood"
    rss_after = rss_kb(pid)

    shares: list[float] = []

    def idle() -> bool:  # the forwarder's CPU share over the last 0.5 s is below 5 %
        c0 = cpu_seconds(pid)
        time.sleep(0.5)
        shares.append((cpu_seconds(pid) - c0) / 0.5)
        return shares[-1] < 0.05

    wait_for("the forwarder idle again", idle, 5, show=lambda: f"CPU share every 0.5 s: {shares}")
    back_to_idle = time.monotonic() - flooded
    assert status(inv, state)["gw1"]["pid"] == pid
    rx = status(inv, state)["gw1"]["rx_packets"]
    assert pings(hosts[1], "198.51.100.1", 5)
    wait_for("status counts the new pings", lambda: status(inv, state)["gw1"]["rx_packets"] >= rx + 5, 3,
             show=lambda: status(inv, state)["gw1"])
    drops = status(inv, state)["gw1"]["drops"]
    print(f"{sent} packets in {took:.1f} s: forwarder RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MB, "
          f"idle again {back_to_idle:.1f} s after the flood; drops {drops}")
    assert rss_after - rss_before < 5 * 1024, f"RSS grew {(rss_after - rss_before) / 1024:.1f} MB"
    assert len(drops) < 30, f"{len(drops)} drop reasons: the sender chose them"
    assert len(json.dumps(status(inv, state)["gw1"])) < 8192


def test_a_nobody_process_cannot_signal_a_forwarder(tmp_path: Path, hosts: tuple[str, str]) -> None:
    """Before: every forwarder ran as `nobody`, so any other `nobody` process could signal it
    (a SIGSTOP froze one while `status` still said `connected`)."""
    inv, state = up(tmp_path, hosts, "udp")
    pids = forwarder_pids(inv, state)
    for host, pid in pids.items():
        uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "kill", "-STOP",
                            str(pid)], capture_output=True, text=True)
        stopped = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
        if stopped:
            os.kill(pid, signal.SIGCONT)
        assert p.returncode != 0 and not stopped, f"nobody stopped {host}'s forwarder (uid {uid})"
        assert "Operation not permitted" in p.stderr, p.stderr
        assert uid == pwd.getpwnam("provision-tunnel").pw_uid, f"{host}'s forwarder runs as uid {uid}"
    assert pings(hosts[0], "198.51.100.2")


def test_a_10s_flood_of_forged_packets_passes_every_ping_and_nothing_forged(tmp_path: Path,
                                                                            hosts: tuple[str, str]) -> None:
    """10 000 packets a second for 10 s at the listener, from the real peer's address and port:
    random bytes, real messages truncated or made too long, and real messages replayed. A ping
    every 100 ms keeps passing, and a capture on the device sees only the pings."""
    inv, state = up(tmp_path, hosts, "udp")
    with capturing(hosts[0], "u1") as wire:  # real traffic to replay and bend
        os.kill(status(inv, state)["gw2"]["pid"], signal.SIGKILL)
        wait_for("reconnected", lambda: connected(inv, state), 30)
        subprocess.run(["ip", "netns", "exec", hosts[1], "ping", "-c", "10", "-i", "0.05", "-p", "a5a5",
                        "198.51.100.1"], capture_output=True, timeout=20)
    real = [u for s in wire if (u := s.udp()) and u[1] == LISTENER]
    assert len(real) >= 10, "real messages to the listener were recorded"
    peer = real[-1][0]
    rng = random.Random(7)
    forged = []
    for i in range(5000):
        _, _, msg = real[i % len(real)]
        kind = i % 4
        if kind == 0:
            payload = rng.randbytes(rng.randrange(0, 1400))
        elif kind == 1:
            payload = msg[:rng.randrange(0, len(msg))]
        elif kind == 2:
            payload = msg + rng.randbytes(rng.randrange(1, 1400 - len(msg) if len(msg) < 1399 else 2))
        else:
            payload = msg
        forged.append(ip_udp(peer, LISTENER, payload))
    file = save_packets(tmp_path / "forged", forged)
    pid = status(inv, state)["gw1"]["pid"]
    with capturing(hosts[0], "tap0") as device:
        with flooding(hosts[1], file, 10000, 10.0) as attack:
            time.sleep(0.2)
            ping = subprocess.run(["ip", "netns", "exec", hosts[1], "ping", "-c", "100", "-i", "0.1", "-W", "1", "-p",
                                   "5a5a", "198.51.100.1"], capture_output=True, text=True, timeout=60)
            sent, took = attack()
    answered = int(ping.stdout.split(" received")[0].rsplit(" ", 1)[1])
    arrived = [s for s in device if not s.outgoing]
    ours = icmp_payloads(arrived, b"\x5a\x5a")
    others = [s for s in arrived if s.data not in ours and s.protocol == 0x0800]
    print(f"flood: {sent} packets in {took:.1f} s; pings answered {answered}/100; device took {len(ours)} pings and "
          f"{len(others)} other IPv4 packets; drops {status(inv, state)['gw1']['drops']}")
    assert sent == 100000 and took < 11, f"the flood was {sent} packets in {took:.1f} s, not 10 000 a second"
    assert status(inv, state)["gw1"]["pid"] == pid
    assert answered >= 98, ping.stdout[-500:]
    assert not others, f"forged packets reached the device: {[o.data[:40].hex() for o in others[:5]]}"
    seqs = [struct.unpack_from("!H", p, (p[0] & 0x0F) * 4 + 6)[0] for p in ours]
    assert len(seqs) == len(set(seqs)) <= 100, "a ping reached the device twice"
