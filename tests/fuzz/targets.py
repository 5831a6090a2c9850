"""Fuzz targets: every decoder a packet from the network reaches, and the inventory loader.

Each target takes arbitrary bytes and may end in only one way: a return value of the kinds the
code promises, or the one typed error the decoder documents. Anything else (an IndexError, a
struct.error, an assertion, a KeyError, a hang) is a crash, and the fuzzer keeps its input.

Random bytes never get past an AEAD tag, so each protocol target also starts from a VALID
message made here with fixed keys and lets the fuzzer bend it (see `shaped`): a flipped bit,
a cut, a patched byte. Coverage then reaches the code behind the checks, not only the checks.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from provisioner import cache, reparse
from provisioner.errors import ProvisionError
from provisioner.kernel import _readahead, _rtattr, netlink  # type: ignore[attr-defined]
from provisioner.model import DeviceType, Role, Transport, Tunnel
from provisioner.source import Source, parse_nodes
from provisioner.tunnel import _fastpath, noise, tcp, vnet  # type: ignore[attr-defined]
from provisioner.tunnel.cookie import CookieChecker, CookieGenerator
from provisioner.tunnel.device import Device
from provisioner.tunnel.drops import Drop
from provisioner.tunnel.fastpath import PySession
from provisioner.tunnel.keypair import Keypair
from provisioner.tunnel.peer import Peer
from provisioner.tunnel.stats import Stats
from provisioner.tunnel.udp import UdpCarrier

from ..unit.runs import cut_alike, open_runs

Target = Callable[[bytes], None]
NOW = 1000.0


def _fixed(seed: int) -> bytes:
    return bytes((seed * 37 + i * 11) & 0xFF for i in range(32))


ALICE = noise.Identity.from_private(_fixed(1))  # the initiator
BOB = noise.Identity.from_private(_fixed(2))  # the responder: the side under test
PSK = _fixed(3)
SOURCE = bytes([192, 0, 2, 2]) + struct.pack(">H", 51820)


def shaped(data: bytes, valid: bytes) -> bytes:
    """The fuzzer's bytes as a message: raw, or a valid message bent by them."""
    if not data:
        return valid
    mode, rest = data[0] % 4, data[1:]
    if mode == 0:
        return rest
    if mode == 1:  # flip bits
        return bytes(a ^ b for a, b in zip(valid, rest.ljust(len(valid), b"\0"), strict=False))
    if mode == 2:  # cut, and maybe extend
        return valid[:rest[0]] + rest[1:] if rest else valid[:0]
    out = bytearray(valid)  # patch: (offset, value) pairs
    for i in range(0, len(rest) - 1, 2):
        out[rest[i] % len(out)] = rest[i + 1]
    return bytes(out)


# ------------------------------------------------------------------ valid messages to bend

def _initiation() -> tuple[bytes, noise.InitiatorState]:
    msg, state = noise.create_initiation(ALICE, BOB.public, PSK, 0x11223344, noise.tai64n(NOW),
                                         ephemeral_private=_fixed(4))
    CookieGenerator(BOB.public).add_macs(msg, NOW)
    return bytes(msg), state


INITIATION, ALICE_STATE = _initiation()
_response, _bob_keys = noise.create_response(BOB, noise.consume_initiation(BOB, INITIATION), PSK, 0x55667788,
                                             ephemeral_private=_fixed(5))
CookieGenerator(ALICE.public).add_macs(_response, NOW)
RESPONSE = bytes(_response)
ALICE_KEYS = noise.consume_response(ALICE, ALICE_STATE, PSK, RESPONSE)
TRANSPORT = Keypair(ALICE_KEYS, NOW).seal(bytes.fromhex("4500001c0001000040017cd9c0000201c0000202") + bytes(8))
COOKIE_REPLY = CookieChecker(BOB.public, random=lambda n: bytes(n)).reply(INITIATION, SOURCE, NOW)  # BOB, under load


# ------------------------------------------------------------------ the targets

def initiation(data: bytes) -> None:
    try:
        got = noise.consume_initiation(BOB, shaped(data, INITIATION))
    except noise.HandshakeError:
        return
    assert len(got.peer_public) == 32 and len(got.timestamp) == 12


def response(data: bytes) -> None:
    try:
        keys = noise.consume_response(ALICE, ALICE_STATE, PSK, shaped(data, RESPONSE))
    except noise.HandshakeError:
        return
    assert len(keys.send) == len(keys.receive) == 32


def cookie_reply(data: bytes) -> None:
    generator = CookieGenerator(BOB.public)
    generator.add_macs(bytearray(INITIATION), NOW)
    assert generator.consume_reply(shaped(data, COOKIE_REPLY), NOW) in (True, False)


def macs(data: bytes) -> None:
    checker = CookieChecker(BOB.public, random=lambda n: bytes(n))
    msg = shaped(data, INITIATION)
    assert checker.mac1_ok(msg) in (True, False)
    assert checker.mac2_ok(msg, SOURCE, NOW) in (True, False)


def transport(data: bytes) -> None:
    """A keypair opening what arrives for it (the carrier checked type and size first, as here)."""
    msg = shaped(data, TRANSPORT)
    if len(msg) < noise.TRANSPORT_MIN_LEN or msg[:4] != noise.HEADER_TRANSPORT:
        return
    plain = Keypair(_bob_keys, NOW).open(msg)
    assert plain is None or isinstance(plain, bytes)


class _Openers:
    """BOB's receive side twice, compiled and in Python, kept across inputs (their replay windows
    see the same counters in the same order, so they must give the same answers)."""

    def __init__(self) -> None:
        keys = (_bob_keys.send, _bob_keys.receive, _bob_keys.remote_index)
        self.compiled, self.python = _fastpath.Session(*keys), PySession(*keys)


_openers: _Openers | None = None


def _answer(session: object, msg: bytes, out_len: int) -> tuple[object, bytes]:
    out = memoryview(bytearray(out_len))
    try:
        return session.open_into(msg, out), bytes(out)  # type: ignore[attr-defined]
    except ValueError:
        return "ValueError", b""


FORGED_OR_REPLAYED = (-1, -2)


def fastpath_open(data: bytes) -> None:
    """_fastpath.Session.open_into on any bytes (valid messages bent), with a buffer a little too
    large or too small: exactly its Python model's answer and bytes, or the same ValueError."""
    global _openers
    if _openers is None:
        _openers = _Openers()
    msg = shaped(data[1:], TRANSPORT)
    out_len = max(0, len(msg) - noise.TRANSPORT_MIN_LEN + (data[0] % 8 if data else 4) - 3)
    compiled = _answer(_openers.compiled, msg, out_len)
    python = _answer(_openers.python, msg, out_len)
    if compiled[0] in FORGED_OR_REPLAYED:
        compiled, python = (compiled[0], b""), (python[0], b"")  # what a failed open left in out is no answer
    assert compiled == python, (compiled[0], python[0])


def fastpath_seal(data: bytes) -> None:
    """_fastpath.Session.seal_many and seal_into on units, an MTU, a counter and a buffer the
    fuzzer picks: the same messages as the model, each of which opens to its padded unit."""
    if len(data) < 4:
        return
    mtu = (0, 16, 1420, 65535)[data[0] % 4]
    counter = (0, 1, 2**32, 2**64 - 2**13 - 3)[data[1] % 4]
    room, rest = 32 * (data[2] % 8) + data[3] * 3, data[4:]
    units, i = [], 0
    while i < len(rest):
        n = rest[i] % 64
        units.append(rest[i + 1:i + 1 + n])
        i += 1 + n
    keys = (_bob_keys.send, _bob_keys.receive, _bob_keys.remote_index)
    results = []
    for session in (_fastpath.Session(*keys), PySession(*keys)):
        out = memoryview(bytearray(room))
        lengths, after = session.seal_many(counter, units, out, 0, mtu)
        try:
            end = session.seal_into(after, rest[:room], out, room // 2)
        except ValueError:
            end = -1
        results.append((lengths, after, end, bytes(out)))
    assert results[0] == results[1]
    lengths, after, _, _ = results[0]
    assert after == counter + len(lengths) and sum(lengths) <= room


def _super_packet() -> bytes:
    """A TSO read of a tun (virtio header, IPv4/TCP with 3000 bytes), valid, to bend."""
    tcp = struct.pack("!HHIIBBHHH", 5201, 40000, 1, 7, 5 << 4, 0x18, 500, 0, 0) + bytes(range(256)) * 12
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp[:3020]), 1, 0x4000, 64, 6, 0, bytes(4), bytes(4))
    return vnet.HDR.pack(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 40, 1380, 20, 16) + ip + tcp[:3020]


SUPER_PACKET = _super_packet()


def fastpath_segment(data: bytes) -> None:
    """_fastpath.wire_packets (a TSO read cut into checksummed packets) on any bytes and bent valid
    super-packets, for a max packet size the fuzzer picks: exactly vnet.wire_packets, or ValueError."""
    max_packet = (1, 40, 60, 576, 1420, 65535)[data[0] % 6] if data else 1420
    cut_alike(shaped(data[1:], SUPER_PACKET), max_packet)


RUN_KEY, RUN_INDEX = bytes(range(7, 39)), 0x0BADF00D


def _run_segment(seq: int, payload: bytes, ip_id: int, flags: int, v6: bool) -> bytes:
    """A TCP segment of one flow (checksums left as they fall: open_run does not check them)."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, seq & 0xFFFFFFFF, 1, 5 << 4, flags, 501, 0, 0)
    if v6:
        return struct.pack("!IHBB16s16s", 0x60000000, 20 + len(payload), 6, 64, bytes(16), bytes(15) + b"\1") \
            + tcp + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), ip_id & 0xFFFF, 0x4000, 64, 6, 0, bytes(4),
                       bytes(4)) + tcp + payload


def fastpath_run(data: bytes) -> None:
    """_fastpath.Session.open_run (the UDP receive turn: open a run of datagrams, glue TCP segments,
    write the device) against PySession.open_run: the same answers and the same device writes, byte
    for byte, for runs the fuzzer builds: flows in and out of order, tails, other bytes as
    plaintext, bent plaintext headers, and datagrams bent, replayed or wrongly addressed."""
    if len(data) < 3:
        return
    size = (40, 200, 600, 1360)[data[0] % 4]
    vnet_hdr, v6 = bool(data[0] & 4), bool(data[0] & 8)
    sender = PySession(RUN_KEY, bytes(32), RUN_INDEX)
    seq, ip_id, i, counter = 1000, 7, 1, 0
    plains: list[bytes] = []
    ops = data[2:]
    while i < len(ops) and len(plains) < 70:
        op, arg = ops[i - 1] % 8, ops[i]
        i += 2
        if op <= 3:  # the next segment of the flow
            plains.append(_run_segment(seq, bytes([arg]) * size, ip_id, vnet.TCP_ACK, v6))
            seq, ip_id = seq + size, ip_id + 1
        elif op == 4:  # a shorter one, maybe with PSH
            n = 1 + arg % size
            plains.append(_run_segment(seq, bytes(n), ip_id, vnet.TCP_ACK | (vnet.TCP_PSH * (arg & 1)), v6))
            seq, ip_id = seq + n, ip_id + 1
        elif op == 5:  # a gap: out of order
            seq += size * (1 + arg % 3)
        elif op == 6:  # the fuzzer's bytes as the plaintext
            plains.append(ops[i:i + arg % 64])
            i += arg % 64
        elif plains:  # a byte of the last plaintext bent
            last = bytearray(plains[-1])
            if last:
                last[arg % len(last)] ^= ops[i - 3] | 1
            plains[-1] = bytes(last)
    if not plains:
        return
    seg = max(len(p) for p in plains) + noise.TRANSPORT_MIN_LEN
    datagrams = []
    for k, plain in enumerate(plains):
        out = memoryview(bytearray(len(plain) + noise.TRANSPORT_MIN_LEN))
        sender.seal_into(counter, plain, out, 0)
        counter += 1
        d = bytes(out)
        bend = data[1] >> 4 if k == data[1] % 16 else 0
        if bend == 1:
            d = d[:20] + bytes([d[20] ^ 1]) + d[21:]  # forged
        elif bend == 2:
            d = d[:4] + b"\0\0\0\0" + d[8:]  # another index
        elif bend == 3 and datagrams:
            d = datagrams[0][:seg]  # replayed
        if k < len(plains) - 1:  # UDP_GRO's runs are equal-sized: pad the plaintext to make them so
            if len(d) != seg:
                out = memoryview(bytearray(seg))
                sender.seal_into(counter - 1, plain + bytes(seg - len(d)), out, 0)
                d = bytes(out) if bend == 0 else d.ljust(seg, b"\0")
        datagrams.append(d)
    blob = b"".join(datagrams)
    compiled = open_runs(_fastpath.Session(bytes(32), RUN_KEY, 0), blob, seg, RUN_INDEX, vnet_hdr)
    python = open_runs(PySession(bytes(32), RUN_KEY, 0), blob, seg, RUN_INDEX, vnet_hdr)
    assert compiled == python, (compiled[0], python[0])


class _Receiver:
    """BOB's peer state, kept across inputs as a forwarder keeps it across datagrams."""

    def __init__(self) -> None:
        self.peer = Peer(BOB, ALICE.public, PSK, NOW, keep_up=False)
        self.now = NOW

    def datagram(self, msg: bytes) -> None:
        """As udp.py dispatches one: type and size at fixed offsets, then the peer."""
        self.now += 0.25
        sizes = {noise.MSG_INITIATION: noise.INITIATION_LEN, noise.MSG_RESPONSE: noise.RESPONSE_LEN,
                 noise.MSG_COOKIE_REPLY: noise.COOKIE_REPLY_LEN}
        kind = int.from_bytes(msg[:4], "little") if len(msg) >= 4 else -1
        if kind == noise.MSG_TRANSPORT and len(msg) >= noise.TRANSPORT_MIN_LEN:
            got = self.peer.open(msg, self.now)
            assert isinstance(got, bytes | Drop)
        elif sizes.get(kind) == len(msg):
            why, reply = self.peer.on_handshake(msg, SOURCE, self.now)
            assert why is None or isinstance(why, Drop)
            assert reply is None or isinstance(reply, bytes)
        for out in self.peer.due(self.now):
            assert isinstance(out, bytes)


_receiver: _Receiver | None = None


def peer(data: bytes) -> None:
    global _receiver
    if _receiver is None:
        _receiver = _Receiver()
    seeds = (INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT)
    _receiver.datagram(shaped(data[1:], seeds[data[0] % 4]) if data else INITIATION)


class _Carrier:
    """BOB's whole UDP receive path: a carrier on a loopback socket, a device writing to /dev/null."""

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        t = Tunnel(name="fuzz", device="fuzz0", transport=Transport.UDP, role=Role.LISTEN,
                   endpoint=f"127.0.0.1:{sock.getsockname()[1]}", device_type=DeviceType.TUN)
        device = Device(os.open(os.devnull, os.O_WRONLY), tap=False, pi=False, vnet_hdr=False, wireguard=True,
                        compress=False)
        self.carrier = UdpCarrier(t, device, Peer(BOB, ALICE.public, PSK, NOW, keep_up=False), sock, Stats("t"))
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.bind(("127.0.0.1", 0))
        self.to = sock.getsockname()


_carrier: _Carrier | None = None


def udp_receive(data: bytes) -> None:
    """Datagrams through the carrier's receive loop: nothing escapes it (its catch-all counts)."""
    global _carrier
    if _carrier is None:
        _carrier = _Carrier()
    seeds = (INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT)
    msg = shaped(data[1:], seeds[data[0] % 4]) if data else b""
    _carrier.sender.sendto(msg[:65000], _carrier.to)
    _carrier.carrier._receive()


class _Vetting:
    """BOB's TCP listener vetting a new connection (one end of a socket pair is the connection)."""

    def __init__(self) -> None:
        t = Tunnel(name="fuzz", device="fuzz0", transport=Transport.TCP, role=Role.LISTEN, endpoint="127.0.0.1:1",
                   device_type=DeviceType.TUN)
        device = Device(os.open(os.devnull, os.O_WRONLY), tap=False, pi=False, vnet_hdr=False, wireguard=False,
                        compress=False)
        self.carrier = tcp.TcpCarrier(t, device, Peer(BOB, ALICE.public, PSK, NOW, keep_up=False), None, Stats("t"))
        self.now = NOW


_vetting: _Vetting | None = None


def tcp_vet(data: bytes) -> None:
    """What a new TCP connection sends before it is the tunnel's: the listener reads it, answers
    or drops it; nothing escapes, and the connection is either accepted, pending or doomed."""
    global _vetting
    if _vetting is None:
        _vetting = _Vetting()
    _vetting.now += 0.25
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        p = tcp.Pending(ours, ("192.0.2.2", 51820), _vetting.now + tcp.HANDSHAKE_DEADLINE, True)
        stream = shaped(data, struct.pack(">I", len(INITIATION)) + INITIATION)
        theirs.sendall(stream[:60000])
        theirs.shutdown(socket.SHUT_WR)
        for _ in range(64):
            if _vetting.carrier._vet(p, _vetting.now) or p.doomed:
                return


def tcp_frames(data: bytes) -> None:
    """The TCP framing as a connection uses it: small frames until it has proven itself, then
    `allow()` (at a point the fuzzer picks); fed in pieces whose sizes the fuzzer picks, as
    recv_into(space()) fills them. It yields exactly the frames in the stream, or FrameError;
    never a frame of 0 or over the limit, never a byte twice, never no room to receive into."""
    if len(data) < 3:
        return
    first, then, switch_at = 1 + data[0] * 3, tcp.MAX_MESSAGE if data[1] & 1 else 1 + data[1] * 50, data[2]
    reader = tcp.FrameReader(limit=first)
    limit, stream, pos, got, n = first, data[3:], 0, b"", 0
    try:
        while pos < len(stream):
            if n == switch_at:
                reader.allow(then)
                limit = then
            n += 1
            space = reader.space()
            assert len(space) > 0, "no room to receive into: the connection would stall"
            piece = stream[pos:pos + min(1 + stream[pos] % 23, len(space))]
            space[:len(piece)] = piece
            for f in reader.frames(len(piece)):
                assert 0 < len(f) <= limit
                got += struct.pack(">I", len(f)) + bytes(f)
            pos += len(piece)
    except tcp.FrameError:
        return
    assert stream.startswith(got)


def virtio_header(data: bytes) -> None:
    """vnet.sanitize: the header we hand the kernel is ours, or BadPacket."""
    tap = bool(data[:1]) and data[0] & 1 == 1
    try:
        hdr = vnet.sanitize(data[1:11].ljust(10, b"\0"), data[11:], tap)
    except vnet.BadPacket:
        return
    assert len(hdr) == vnet.HDR_LEN


_devnull = os.open(os.devnull, os.O_WRONLY)
_devices = [Device(_devnull, tap=bool(m & 1), pi=bool(m & 2), vnet_hdr=bool(m & 4), wireguard=bool(m & 8),
                   compress=bool(m & 16)) for m in range(32)]


def device(data: bytes) -> None:
    """What a peer's authenticated payload becomes at the device, in every device form."""
    if not data:
        return
    got = _devices[data[0] % 32].deliver(data[1:])
    assert got is None or isinstance(got, Drop)


def netlink_pick(data: bytes) -> None:
    """kernel/_rtattr.c's attribute walk against its Python model: the same answer for any bytes
    (an offset, up to 8 types, then the buffer)."""
    if len(data) < 2:
        return
    n = data[1] % 9
    types, buffer = tuple(b % 16 for b in data[2:2 + n]), data[2 + n:]
    offset = data[0] % (len(buffer) + 8)
    assert _rtattr.pick(buffer, offset, types) == netlink._pick(buffer, offset, types)


def netlink_messages(data: bytes) -> None:
    """kernel/_rtattr.c's split of a received buffer against its Python model (a sequence number,
    then the buffer)."""
    if data:
        assert _rtattr.messages(data[1:], data[0] % 4) == netlink._messages(data[1:], data[0] % 4)


def netlink_link(data: bytes) -> None:
    """kernel/_rtattr.c's reading of a link message against its Python model."""
    assert _rtattr.link(data) == netlink._link(data)


def answer_ends(datagram: bytes, seq: int) -> bool:
    """The model of kernel/_readahead.c's `ends`: nothing more (an empty datagram), the answer's end
    or error message, or a header that cannot be walked (tests/integration/test_read_ahead.py too)."""
    offset = 0
    while offset + 16 <= len(datagram):
        length, kind, _, mseq, _ = netlink.HDR.unpack_from(datagram, offset)
        if length < 16 or length > len(datagram) - offset or (mseq == seq and kind in (2, 3)):
            return True
        offset += (length + 3) & ~3
    return not datagram


def netlink_read_ahead(data: bytes) -> None:
    """kernel/_readahead.c's reader against a peer that answers with these datagrams (a sequence
    number, then datagrams each after its 2-byte length, then the answer's end): it keeps each
    one whole up to the first that ends the answer by the model, and never one more."""
    if not data:
        return
    seq, datagrams, offset = data[0], [], 1
    while offset + 2 <= len(data):
        size = int.from_bytes(data[offset:offset + 2], "little") % 512
        datagrams.append(data[offset + 2:offset + 2 + size])
        offset += 2 + size
    datagrams.append(netlink.HDR.pack(16, 3, 2, seq, 0))
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, peer:
        request = netlink.HDR.pack(16, 18, 0x301, seq, 0)
        reading = _readahead.start(ours, (request,))
        assert peer.recv(64) == request
        answer = []
        for datagram in datagrams:
            peer.send(datagram)
            answer.append(datagram)
            if answer_ends(datagram, seq):
                break
        assert reading.result() == (tuple(answer),)


class _Answers:
    """A netlink socket's place in netlink.Netlink that answers with the datagrams given."""

    def __init__(self, datagrams: list[bytes]) -> None:
        self.datagrams = datagrams

    def send(self, payload: bytes) -> int:
        return len(payload)

    def recv(self, size: int) -> bytes:
        if not self.datagrams:
            raise _Unanswered
        return self.datagrams.pop(0)

    def close(self) -> None:
        pass


class _Unanswered(Exception):
    """The datagrams ran out before the batch's fence was answered: a kernel would send it."""


def netlink_transact(data: bytes) -> None:
    """A batch's answers (netlink.transact): up to 8 requests numbered from 1, their fence after
    them, then datagrams each after its 2-byte length, answered in order. It ends with one
    answer per request, each a success or the error an answer named, or EBADMSG carrying what
    is known of a prefix of them, or it waits for more (the fence not answered yet)."""
    if not data:
        return
    requests = [netlink.Request(netlink.RTM_NEWADDR, 0, b"") for _ in range(data[0] % 8 + 1)]
    datagrams, offset = [], 1
    while offset + 2 <= len(data):
        size = int.from_bytes(data[offset:offset + 2], "little") % 512
        datagrams.append(data[offset + 2:offset + 2 + size])
        offset += 2 + size
    sock = netlink.Netlink()
    sock.sock.close()
    sock.sock = _Answers(datagrams)  # type: ignore[assignment]
    try:
        acks = sock.transact(requests)
    except netlink.NetlinkError as exc:
        assert exc.errno == errno.EBADMSG and len(exc.acks) <= len(requests), exc
        assert all(isinstance(a, netlink.Ack) for a in exc.acks)
        return
    except _Unanswered:
        return
    assert len(acks) == len(requests) and all(isinstance(a, netlink.Ack) and 0 <= a.error < 4096 for a in acks)


# Where `inventory` writes its file: the directory a fuzzing child was given (tests/fuzz/run.py's
# `one` deletes it; libFuzzer's exit() skips any cleanup here), else one deleted at this process's exit.
_scratch = None if os.environ.get("PROVISION_FUZZ_WORK") else tempfile.TemporaryDirectory(prefix="provision-fuzz-")
_inventory_dir = Path(_scratch.name if _scratch is not None else os.environ["PROVISION_FUZZ_WORK"])


def inventory(data: bytes) -> None:
    """The whole loader (YAML, schema, checks, resolve): only ProvisionError, never a traceback."""
    from provisioner import reconcile

    path = _inventory_dir / "inventory.yaml"
    path.write_bytes(data)
    try:
        reconcile.load(str(path))
    except ProvisionError:
        return


def plain_shape(data: bytes) -> None:
    """reparse.plain_shape, which reads an inventory's shape without ruamel, against ruamel's
    parse of the same text: where it gives an answer, it is ruamel's (the data and the runs)."""
    import warnings

    form = reparse.shape(data.decode("utf-8", errors="replace"))
    mine = reparse.plain_shape(form)
    if mine is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, node = parse_nodes(Source("", form))  # raises if ruamel refuses what was read: a crash
    assert mine == (expected, reparse.runs_of(form, node)), form
    assert repr(mine[0]) == repr(expected), form  # the same types too: 1 == True, but not here


KEPT_TEXT = ("all:\n  hosts:\n    h:\n      network:\n        devices:\n"
             "          - {name: t0, type: tap}\n          # between\n          - {name: t1, type: tap}\n"
             "        routes:\n          - {to: 192.0.2.0/24, dev: t0}\n")
KEPT_EDIT = KEPT_TEXT.replace("t1, type: tap", "t1, type: tun").replace("dev: t0}", "dev: t1}")


def kept_parse(data: bytes) -> None:
    """reparse.patched reads a kept parse back from the state directory (the bytes: an entry's
    JSON body, forged or damaged as it may be): the answer is a parse or None, never an exception."""
    import json

    try:
        kept = json.loads(data)
    except (ValueError, RecursionError):
        return
    if isinstance(kept, dict):
        made = reparse.patched(kept, KEPT_EDIT)
        assert made is None or (len(made) == 3 and isinstance(made[1], list)), made


def verdict(data: bytes) -> None:
    """cache.get_verdict on a verdict whose body is the bytes (forged with a checksum that holds),
    beside a kept parse its references may name: each file's data, or None; never an exception."""
    from zlib import crc32

    directory = _inventory_dir / "verdicts"
    kept = cache.slot(directory / cache.PARSES, ["kept"])
    if not kept.path.exists():
        directory.mkdir(mode=0o700, exist_ok=True)
        assert cache.put(kept, {"data": parse_nodes(Source("", KEPT_TEXT))[0], "runs": [], "valid": "inventory",
                                "id": "1d"}, text=KEPT_TEXT)
    s = cache.slot(directory, ["verdict"])
    s.path.write_bytes(json.dumps({"format": cache.FORMAT, "key": s.key, "crc32": crc32(data)}).encode() + b"\n" + data)
    files = cache.get_verdict(s)
    assert files is None or isinstance(files, dict), files


def recheck_note(data: bytes) -> None:
    """A note of recheck.py read back from the state directory (the bytes: its JSON body, forged or
    damaged) against an edit of a kept parse: each host's routes to check again, or None (check
    every host whole); never an exception."""
    from provisioner import recheck
    from provisioner.loader import load

    try:
        entry = json.loads(data)
    except (ValueError, RecursionError):
        return
    noted = recheck._noted(entry)
    if noted is None:
        return
    kept_data, node = parse_nodes(Source("", KEPT_TEXT))
    made = reparse.patched({"text": KEPT_TEXT, "data": kept_data, "runs": reparse.runs_of(KEPT_TEXT, node)}, KEPT_EDIT)
    assert made is not None
    edit = reparse.Edit("k" * 64, "1d", made[0], made[1])
    changed = recheck._changed(edit, noted)
    if changed is None:
        return
    path = _inventory_dir / "note.yaml"
    path.write_text(KEPT_EDIT)
    hosts = load(str(path), yaml=lambda source: made[0], check=lambda *a: [])[0].hosts
    out = recheck._touched(changed, hosts)
    assert out is None or (set(out) == {"h"} and all(isinstance(e.value, dict) for e in out["h"])), out


def supervisor_hears(data: bytes) -> None:
    """What an unprivileged data plane (what the network talks to) can say to the root supervisor:
    a channel message and a counter line. Either is refused (None) or comes out in the shapes the
    supervisor uses: never an exception."""
    from provisioner.tunnel.channel import Op, decode
    from provisioner.tunnel.supervisor import counters_of

    m = decode(data)
    assert m is None or (isinstance(m.op, Op) and isinstance(m.name, str) and isinstance(m.body, dict))
    out = counters_of(data)
    assert out is None or (isinstance(out["tunnel"], str) and all(type(out[k]) is int for k in ("rx_packets", "tx_bytes")))


TARGETS: dict[str, Target] = {
    "netlink_pick": netlink_pick,
    "netlink_messages": netlink_messages,
    "netlink_link": netlink_link,
    "netlink_read_ahead": netlink_read_ahead,
    "netlink_transact": netlink_transact,
    "initiation": initiation,
    "response": response,
    "cookie_reply": cookie_reply,
    "macs": macs,
    "transport": transport,
    "peer": peer,
    "udp_receive": udp_receive,
    "tcp_vet": tcp_vet,
    "tcp_frames": tcp_frames,
    "virtio_header": virtio_header,
    "device": device,
    "inventory": inventory,
    "plain_shape": plain_shape,
    "kept_parse": kept_parse,
    "verdict": verdict,
    "recheck_note": recheck_note,
    "supervisor_hears": supervisor_hears,
    "fastpath_open": fastpath_open,
    "fastpath_seal": fastpath_seal,
    "fastpath_segment": fastpath_segment,
    "fastpath_run": fastpath_run,
}
# The targets that reach the compiled extension: `make fuzz` runs them again against a build of
# it with AddressSanitizer and UBSan (run.py --asan).
NATIVE = ["fastpath_open", "fastpath_seal", "fastpath_segment", "fastpath_run", "transport", "peer", "udp_receive",
          "netlink_pick", "netlink_messages", "netlink_link", "netlink_read_ahead"]
SEEDS: dict[str, list[bytes]] = {
    "initiation": [b"\x00" + INITIATION, b"\x01", b"\x03\x05\x00"],
    "response": [b"\x00" + RESPONSE, b"\x01"],
    "cookie_reply": [b"\x00" + COOKIE_REPLY, b"\x01"],
    "macs": [b"\x00" + INITIATION],
    "transport": [b"\x00" + TRANSPORT, b"\x01"],
    "peer": [bytes([i, 1]) for i in range(4)],
    "udp_receive": [bytes([i, 1]) for i in range(4)],
    "tcp_vet": [b"\x01", b"\x00", b"\x02\x03"],
    "tcp_frames": [b"\xff\x01\x01" + struct.pack(">I", 5) + b"hello" + struct.pack(">I", 2) + b"ok"],
    "virtio_header": [b"\x00" + vnet.HDR.pack(1, 1, 54, 1448, 34, 16) + bytes(80)],
    "device": [bytes([8]) + bytes.fromhex("4500001c0001000040017cd9c0000201c0000202") + bytes(8)],
    "supervisor_hears": [b'{"op": "failed", "name": "core", "error": "device is gone"}',
                         b'{"tunnel": "core", "state": "connected", "rx_packets": 3, "drops": {}}'],
    "fastpath_open": [b"\x03" + b"\x00" + TRANSPORT, b"\x04\x01", b"\x00\x02\x20"],
    "fastpath_seal": [bytes([2, 0, 7, 255, 5]) + b"hello" + bytes([0, 20]) + bytes(20), bytes([1, 3, 1, 0])],
    "fastpath_segment": [b"\x04\x00" + SUPER_PACKET, b"\x04\x01", b"\x01\x03\x05\x06"],
    "fastpath_run": [bytes([7, 0x13]) + bytes([0, 1] * 30 + [4, 9]), bytes([15, 0x25]) + bytes([0, 2, 5, 1, 0, 3, 6, 4]) + b"EEEE",
                     bytes([3, 0]) + bytes([1, 1, 7, 9, 0, 2, 4, 8])],
    "inventory": [p.read_bytes() for p in sorted((Path(__file__).resolve().parents[2] / "inventories").glob("*.yaml"))],
    "plain_shape": [p.read_bytes() for p in sorted((Path(__file__).resolve().parents[2] / "inventories").glob("*.yaml"))]
    + [b"---\nall:\n  hosts:\n    h:\n      network:\n        devices:\n        - {name: t0, type: tap}\n"],
    "kept_parse": [json.dumps({"text": KEPT_TEXT, "data": parse_nodes(Source("", KEPT_TEXT))[0],
                               "runs": reparse.runs_of(KEPT_TEXT, parse_nodes(Source("", KEPT_TEXT))[1])}).encode()],
    "verdict": [json.dumps({"files": {}, "kept": {"i.yaml": [
        cache.slot(Path("/") / cache.PARSES, ["kept"]).key, "1d",
        [[["all", "hosts", "h", "network", "routes"], 0, {"to": "192.0.2.0/24", "dev": "t1"}]]]}}).encode(),
        json.dumps({"files": {"a.yaml": {"all": {}}}, "kept": {}}).encode()],
    "recheck_note": [json.dumps({"replaced": []}).encode(),
                     json.dumps({"replaced": [[["all", "hosts", "h", "network", "routes"], 0,
                                               {"to": "192.0.2.0/24", "dev": "t0", "metric": 5}]]}).encode()],
    "netlink_pick": [bytes([0, 3, 1, 3]) + struct.pack("=HH", 8, 3) + b"bt01" + struct.pack("=HH", 5, 1) + b"x",
                     bytes([4, 2, 0x81, 0x80])],
    "netlink_messages": [bytes([1]) + struct.pack("=IHHII", 20, 16, 0x10, 1, 0) + b"abcd"
                         + struct.pack("=IHHII", 20, 2, 0, 1, 0) + struct.pack("=i", -95),
                         bytes([2]) + struct.pack("=IHHII", 20, 3, 0, 2, 0) + bytes(4)],
    "netlink_transact": [bytes([2]) + (36).to_bytes(2, "little") + netlink.HDR.pack(36, 2, 0x100, 2, 0)
                         + struct.pack("=i", -17) + netlink.HDR.pack(16, 20, 0, 2, 0)
                         + (36).to_bytes(2, "little") + netlink.HDR.pack(36, 2, 0x100, 4, 0) + bytes(20)],
    "netlink_read_ahead": [bytes([5]) + (36).to_bytes(2, "little") + netlink.HDR.pack(20, 16, 2, 5, 0) + bytes(4)
                           + netlink.HDR.pack(16, 16, 2, 6, 0) + (16).to_bytes(2, "little") + netlink.HDR.pack(16, 2, 0, 5, 0),
                           bytes([1]) + (20).to_bytes(2, "little") + netlink.HDR.pack(40, 16, 2, 1, 0) + bytes(4)],
    "netlink_link": [struct.pack("=BxHiII", 0, 1, 9, 1, 0) + struct.pack("=HH", 8, 3) + b"tp0\0"
                     + struct.pack("=HH", 8, 4) + struct.pack("=I", 1400) + struct.pack("=HH", 28, 0x8012)
                     + struct.pack("=HH", 8, 1) + b"tun\0" + struct.pack("=HH", 16, 0x8002)
                     + struct.pack("=HH", 5, 3) + b"\x02\0\0\0" + struct.pack("=HH", 5, 4) + b"\x01\0\0\0"],
}
