"""Encrypted tunnels between real namespaces: who gets in, what shows, who runs, what a key
change costs, what compression saves.

A peer with the wrong key is refused in the handshake (over UDP and TCP) and the real
session stays; two ends whose keys do not match never exchange a packet; no output, file or
process shows a private key or psk; forwarders keep no privileges and the state directory
is root's alone; changing a host's key costs no more than a reconnect; compression shrinks
what crosses the wire.

What the hostile-peer tests (test_hostile_peers.py) cover better is not repeated here:
forged, replayed, truncated and oversized datagrams never reaching the device (the 10 s
flood, with a capture on the device), replayed initiations, responses and data (recorded
from a real handshake), crafted garbage over UDP and TCP, idle TCP connections, and a flood
of initiations with a valid mac1.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import signal
import socket
import subprocess
import time
import types
from pathlib import Path

import pytest

from provisioner import keys
from provisioner.kernel import namespace
from provisioner.tunnel import cookie, fastpath, noise
from provisioner.tunnel.drops import Drop
from provisioner.tunnel.privileges import DEFAULT_USER
from provisioner.tunnel.tcp import frame

from .helpers import provision, wait_for
from .pair import PSK, SECURE, connected, device_rx, hosts, inventory, key_pair, longest_silence, pings, status, up

__all__ = ["hosts"]  # a fixture
PORT = 40839
LISTENER = ("192.0.2.1", PORT)


def public(tmp_path: Path, host: str) -> bytes:
    return base64.b64decode(key_pair(tmp_path / f"{host}.key"))


def stranger_initiation(listener: bytes, mac1: bool = True) -> bytes:
    """A well-formed initiation to the listener from a key pair it has never heard of."""
    me = noise.Identity.from_private(noise.generate_private())
    msg, _ = noise.create_initiation(me, listener, bytes(32), 7, noise.tai64n(time.time()))
    if mac1:
        cookie.CookieGenerator(listener).add_macs(msg, time.monotonic())
    return bytes(msg)


def impostor_initiation(listener: bytes, claimed: bytes) -> bytes:
    """An initiation that claims the real peer's public key (public, so anyone has it). Without
    the peer's private key the static-static secret is a guess: the timestamp does not decrypt."""
    claimant = types.SimpleNamespace(public=claimed)  # all create_initiation reads of `me` here
    msg, _ = noise.create_initiation(claimant, listener, bytes(32), 8,  # type: ignore[arg-type]
                                     noise.tai64n(time.time()), precomputed_ss=os.urandom(32))
    cookie.CookieGenerator(listener).add_macs(msg, time.monotonic())
    return bytes(msg)


def test_a_udp_peer_with_the_wrong_key_is_refused_in_the_handshake(tmp_path: Path, hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts, "udp")
    before = status(inv, state)["gw1"]
    assert before["datapath"] == fastpath.DATAPATH.value  # compiled, unless PROVISION_DATAPATH=python
    listener = public(tmp_path, "gw1")
    attacks = {
        Drop.BAD_MAC1: stranger_initiation(listener, mac1=False),  # does not even know whom it talks to
        Drop.UNKNOWN_PEER: stranger_initiation(listener),
        Drop.HANDSHAKE_REFUSED: impostor_initiation(listener, public(tmp_path, "gw2")),
    }
    with namespace.entered(hosts[1]):
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with attacker:
        attacker.settimeout(1.0)
        for msg in attacks.values():
            attacker.sendto(msg, LISTENER)
        with pytest.raises(TimeoutError):  # WireGuard's answer to a handshake it refuses: none
            attacker.recv(4096)
    drops = wait_for("each refusal counted", lambda: (d := status(inv, state)["gw1"]["drops"])
                     and all(d.get(reason.value, 0) >= before["drops"].get(reason.value, 0) + 1 for reason in attacks)
                     and d, 30, show=lambda: status(inv, state)["gw1"])
    print(f"refused: {drops}")
    after = status(inv, state)["gw1"]
    assert (after["pid"], after["peer"], after["handshakes"]) == (before["pid"], before["peer"], before["handshakes"])
    assert pings(hosts[0], "198.51.100.2"), "the real session is untouched"


def test_tcp_connections_with_the_wrong_key_are_refused_and_the_real_one_stays(tmp_path: Path,
                                                                               hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts, "tcp")
    before = status(inv, state)["gw1"]
    assert before["datapath"] == fastpath.DATAPATH.value
    listener = public(tmp_path, "gw1")
    attacks = {
        "a stranger's key": b"".join(frame(stranger_initiation(listener))),
        "the peer's key claimed": b"".join(frame(impostor_initiation(listener, public(tmp_path, "gw2")))),
        "no mac1": b"".join(frame(stranger_initiation(listener, mac1=False))),
        "not WireGuard": b"GET / HTTP/1.1\r\nHost: tunnel\r\n\r\n",
        "a frame cut short": b"".join(frame(stranger_initiation(listener)))[:100],
    }
    answers = {}
    for what, data in attacks.items():  # one after the other: a source may hold only a few pending
        with namespace.entered(hosts[1]):
            conn = socket.create_connection(LISTENER, timeout=5)
        with conn:
            conn.sendall(data)
            try:  # closed by the listener, at once or at its handshake deadline
                answers[what] = conn.recv(4096)
            except ConnectionResetError:
                answers[what] = b""
    assert answers == dict.fromkeys(attacks, b""), f"the listener answered: {answers}"
    refusals = (Drop.UNKNOWN_PEER, Drop.HANDSHAKE_REFUSED, Drop.BAD_MAC1, Drop.MALFORMED)
    drops = wait_for("each refusal counted", lambda: (d := status(inv, state)["gw1"]["drops"])
                     and all(d.get(reason.value, 0) >= 1 for reason in refusals) and d, 30,
                     show=lambda: status(inv, state)["gw1"])
    print(f"refused: {drops}")
    after = status(inv, state)["gw1"]
    assert (after["pid"], after["peer"], after["handshakes"]) == (before["pid"], before["peer"], before["handshakes"]), \
        "the real connection was never replaced"
    assert pings(hosts[0], "198.51.100.2")


@pytest.mark.parametrize(("mismatch", "transport"), [("public key", "udp"), ("psk", "tcp")])
def test_peers_whose_keys_do_not_match_never_exchange_a_packet(tmp_path: Path, hosts: tuple[str, str],
                                                               mismatch: str, transport: str) -> None:
    """Checked by validate when both ends are in one inventory; here each host is applied from
    its own inventory (as hosts applied separately are), so only the handshake can refuse:
    gw1 expects another key than gw2's, or the two ends hold different psks."""
    state = tmp_path / "state"
    keys.pskgen(tmp_path / "other.psk")
    for host in ("gw1", "gw2"):
        text = inventory(tmp_path, hosts, transport, security=SECURE + ", " + PSK).read_text()
        if host == "gw1" and mismatch == "public key":
            text = text.replace(key_pair(tmp_path / "gw2.key"), key_pair(tmp_path / "stranger.key"))
        if host == "gw1" and mismatch == "psk":
            text = text.replace("psk_file: core.psk", "psk_file: other.psk")
        (tmp_path / f"{host}.yaml").write_text(text)
        provision("apply", str(tmp_path / f"{host}.yaml"), "--limit", host, state_dir=state, check_rc=0)
    refusal = Drop.UNKNOWN_PEER if mismatch == "public key" else Drop.HANDSHAKE_REFUSED
    refuser = "gw1" if mismatch == "public key" else "gw2"  # the listener knows no such peer; the initiator's
    # response does not verify under its psk
    rows = wait_for("refused", lambda: (r := status(tmp_path / "gw2.yaml", state))
                    and r[refuser]["drops"].get(refusal.value, 0) >= 2 and r, 10,
                    show=lambda: status(tmp_path / "gw2.yaml", state))
    assert all(r["handshakes"] == 0 for r in rows.values()), rows
    states = set()
    for _ in range(30):  # status never says connected, not even for a moment
        states |= {(host, r["state"]) for host, r in status(tmp_path / "gw2.yaml", state).items()}
        time.sleep(0.1)
    assert states == {("gw1", "connecting"), ("gw2", "connecting")}, states
    assert not pings(hosts[0], "198.51.100.2", 2) and not pings(hosts[1], "198.51.100.1", 2)
    assert device_rx(hosts[0], "tap0") == 0 and device_rx(hosts[1], "tap0") == 0


def every_process_text(namespaces: tuple[str, ...]) -> bytes:
    """`ps` of the whole machine, and the command line, environment and status of every process
    in the namespaces (as root: what any reader could see, and more)."""
    seen = subprocess.run(["ps", "-eww", "-o", "pid,user,args"], capture_output=True, check=True).stdout
    for ns in namespaces:
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            for name in ("cmdline", "environ", "status"):
                try:
                    seen += Path(f"/proc/{pid}/{name}").read_bytes()
                except FileNotFoundError:
                    pass
    return seen


def spellings(key: bytes) -> list[bytes]:
    return [key, key.hex().encode(), base64.b64encode(key), base64.b64encode(key).rstrip(b"=")]


def test_no_output_file_or_process_shows_a_private_key_or_psk(tmp_path: Path, hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts, "tcp", security=SECURE + ", " + PSK)
    secrets = [s for f in ("gw1.key", "gw2.key") for s in spellings(keys.read_private(tmp_path / f))]
    secrets += spellings(keys.read_psk(tmp_path / "core.psk"))
    seen = b""
    for args in (["validate"], ["plan"], ["plan", "--json"], ["apply", "--json"], ["apply", "--diff"], ["status"],
                 ["status", "--json"], ["facts"], ["facts", "--json"]):
        r = provision(args[0], str(inv), *args[1:], state_dir=state, check_rc=0)
        seen += (r.out + r.err).encode()
    facts = json.loads(provision("facts", str(inv), "--json", state_dir=state, check_rc=0).out)
    assert key_pair(tmp_path / "gw1.key") in json.dumps(facts), "facts show the public key"
    seen += every_process_text(hosts)
    # A key change shows in the plan; the keys do not.
    keys.keygen(tmp_path / "gw1.key", force=True)
    secrets += spellings(keys.read_private(tmp_path / "gw1.key"))
    changed = inventory(tmp_path, hosts, "tcp", security=SECURE + ", " + PSK)
    for args in (["plan"], ["plan", "--json"]):
        r = provision(args[0], str(changed), *args[1:], state_dir=state, check_rc=0)
        assert "key changed" in r.out, r.out
        seen += (r.out + r.err).encode()
    # A broken key file is named, not shown.
    bad = tmp_path / "bad.key"
    bad.write_bytes(base64.b64encode(keys.read_private(tmp_path / "gw1.key"))[:-4] + b"!!!!\n")
    bad.chmod(0o600)
    (tmp_path / "bad.yaml").write_text(changed.read_text().replace("gw1.key", "bad.key"))
    broken = provision("apply", str(tmp_path / "bad.yaml"), state_dir=state, check_rc=1)
    assert "bad.key" in broken.err, broken.err
    secrets += [base64.b64encode(keys.read_private(tmp_path / "gw1.key"))[:-4]]
    seen += (broken.out + broken.err).encode()
    provision("apply", str(changed), state_dir=state, check_rc=0)  # a forwarder restarted with the new key
    wait_for("connected with the new key", lambda: connected(changed, state), 30)
    seen += every_process_text(hosts)
    for path in state.rglob("*"):
        if path.is_file():
            seen += path.read_bytes()
    for secret in secrets:
        assert secret not in seen


def test_forwarders_keep_no_privileges_and_the_state_is_roots_alone(tmp_path: Path, hosts: tuple[str, str]) -> None:
    inv, state = up(tmp_path, hosts, "udp")
    user = pwd.getpwnam(DEFAULT_USER)
    for host, row in status(inv, state).items():
        pid = row["pid"]
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert fields["Uid"].split() == [str(user.pw_uid)] * 4 and fields["Gid"].split() == [str(user.pw_gid)] * 4
        assert fields["Groups"].split() == [], fields["Groups"]
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(fields[caps], 16) == 0, (host, caps, fields[caps])
        assert fields["NoNewPrivs"].strip() == "1"
        # Not dumpable: even a process of the same user cannot read its environment or its
        # memory (where the session keys are); a dumpable process's own user could.
        for what in ("environ", "mem"):
            peek = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                                   "head", "-c", "1", f"/proc/{pid}/{what}"], capture_output=True, text=True)
            assert peek.returncode != 0 and "Permission denied" in peek.stderr, (what, peek)
    tunnels = state / "tunnels"
    assert tunnels.stat().st_uid == 0 and tunnels.stat().st_mode & 0o077 == 0, oct(tunnels.stat().st_mode)
    for path in [state, *state.rglob("*")]:
        st = path.lstat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, f"{path} is writable by others: {st.st_mode:o}"
    assert pings(hosts[0], "198.51.100.2")


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_changing_a_hosts_key_costs_no_more_than_a_reconnect(tmp_path: Path, hosts: tuple[str, str],
                                                             transport: str) -> None:
    """A new private key for gw1 and its tunnel_public_key in the inventory, both ends in one
    apply: gw1's forwarder restarts with its new key, gw2's with gw1's new public key. There is
    no rollover (as in WireGuard), so the yardstick is both forwarders restarting at once."""
    inv, state = up(tmp_path, hosts, transport)

    def reconnect() -> None:  # the yardstick: both forwarders killed at once, restarted, reconnected
        old = {host: row["pid"] for host, row in status(inv, state).items()}
        for pid in old.values():
            os.kill(pid, signal.SIGKILL)
        wait_for("reconnected", lambda: (r := connected(inv, state))
                 and all(r[host]["pid"] != pid for host, pid in old.items()), 30)

    yardstick = longest_silence(hosts[0], "198.51.100.2", reconnect)
    os.link(tmp_path / "gw1.key", tmp_path / "gw1.old")
    new = keys.keygen(tmp_path / "gw1.key", force=True)
    changed = inventory(tmp_path, hosts, transport)  # gw1's tunnel_public_key is now the new key's
    assert new in changed.read_text()
    plan = provision("plan", str(changed), state_dir=state, check_rc=0).out
    short = lambda key: key[:8] + "…"  # noqa: E731
    old = key_pair(tmp_path / "gw1.old")
    assert f"gw1:\n  -/+ tunnel core  (public_key: {short(old)} → {short(new)})  [restart: key changed]\n" in plan, plan
    assert f"gw2:\n  -/+ tunnel core  (peer_public_key: {short(old)} → {short(new)})  [restart: peer key changed]\n" \
        in plan, plan

    def apply() -> None:  # both hosts at once, as a fleet applies them (one after the other adds the time between)
        provision("apply", str(changed), "--forks", "2", state_dir=state, check_rc=0)
        wait_for("connected with the new key", lambda: (r := connected(changed, state)) and r["gw2"]["peer_key"] == new,
                 30, show=lambda: status(changed, state))

    gap = longest_silence(hosts[0], "198.51.100.2", apply)
    print(f"{transport}: longest silence {yardstick:.3f} s when both forwarders are killed and reconnect, "
          f"{gap:.3f} s when a host's key changes (both ends in one apply)")
    assert gap < yardstick + 0.5, f"the tunnel was down {gap:.2f} s, a reconnect {yardstick:.2f} s"
    assert provision("plan", str(changed), "--detailed-exitcode", state_dir=state).rc == 0


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_compression_shrinks_what_crosses_the_wire(tmp_path: Path, hosts: tuple[str, str], transport: str) -> None:
    """Over TCP (our framing), and for a tap device over UDP (our form inside WireGuard's
    messages): lz4 before sealing. 16 MiB of zeros through the tunnel; what u2 sent is counted."""
    inv, state = up(tmp_path, hosts, transport, security=SECURE + ", compress: true")

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
    print(f"{transport}: 16 MiB of zeros crossed the link as {crossed / 1e6:.2f} MB")
    assert crossed < (16 << 20) / 10


def device_tx(ns: str, device: str) -> int:
    """Packets the kernel handed the device's reader: with TSO, one per super-packet."""
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", device], capture_output=True, text=True,
                         check=True).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def test_an_encrypted_udp_tun_with_vnet_hdr_reads_super_packets_and_cuts_them(tmp_path: Path,
                                                                              hosts: tuple[str, str]) -> None:
    """On the compiled datapath TSO is on for such a device: one read is up to 64 KB, cut into fully
    checksummed packets as it is sealed (fastpath.Session.read_seal); a bulk flow arrives intact,
    with many datagrams per read, and nothing dropped. On the Python path TSO stays off (cutting in
    Python costs more than it saves): one datagram per read."""
    from .test_tunnels import transfer_intact

    state = tmp_path / "state"
    inv = inventory(tmp_path, hosts, "udp", security=SECURE)
    inv.write_text(inv.read_text().replace("name: tap0, type: tap, vnet_hdr: true", "name: dev0, type: tun, "
                                           "vnet_hdr: true, mtu: 1420").replace("device: tap0", "device: dev0"))
    provision("apply", str(inv), state_dir=state, check_rc=0)
    wait_for("both ends connected", lambda: connected(inv, state), 30)
    assert pings(hosts[0], "198.51.100.2")
    reads_before, sent_before = device_tx(hosts[0], "dev0"), status(inv, state)["gw1"]["tx_packets"]
    assert transfer_intact(hosts[1], hosts[0], "198.51.100.2")  # gw1 sends to gw2
    rows = wait_for("the counters reported", lambda: (r := status(inv, state))
                    and r["gw1"]["tx_packets"] - sent_before > 1000 and r, 30, show=lambda: status(inv, state))
    reads, sent = device_tx(hosts[0], "dev0") - reads_before, rows["gw1"]["tx_packets"] - sent_before
    print(f"{sent} datagrams from {reads} reads")
    if fastpath.DATAPATH is fastpath.Datapath.COMPILED:
        assert sent > 3 * reads, "no super-packets: TSO is off"
    else:
        assert sent <= reads * 1.05, "super-packets on the Python path"
    assert all(r["restarts"] == 0 for r in rows.values()), rows
    assert not any(reason for r in rows.values() for reason in r["drops"] if reason != Drop.NO_SESSION.value), rows
    assert rows["gw1"]["datapath"] == fastpath.DATAPATH.value
