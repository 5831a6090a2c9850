"""One tunnel's data plane: the device on one side, a TCP stream or UDP socket on the other.

Runs as its own process, `python -m provisioner.tunnel.forwarder RUN_DIR`, started (and
restarted) by the tunnel's supervisor, which hands it the attached device and the keys
(Grant). It opens its socket, then drops root and every capability (privileges.py) before
it hears a byte. Its log goes to stderr and its counters, one JSON line a second, to
stdout: both are pipes to the supervisor, which writes the files, so the forwarder needs no
file access at all.

The main thread keeps the connection to the peer and moves peer → device. Device → peer runs
beside it: over TCP in a second thread (both block in system calls that release the GIL,
so on two cores they overlap), over UDP in a forked process, because there the per-packet
Python work is the limit and two processes do not share a GIL.

Every session starts with session.py's handshake, and every unit is sealed with the
session's keys: nothing reaches the device that the peer holding the key did not send, once.
Speed comes from the device's offloads (see vnet.py): with `vnet_hdr` one read is up to
64 KB, which crosses TCP as one frame and UDP as one UDP_SEGMENT send of real packets.
Nothing from the network is trusted: frames are bounded, virtio headers sanitized, and a
write the device refuses is a counted drop.
"""

from __future__ import annotations

# Everything the forwarder uses is imported now, not when first needed: once it has dropped
# root, the Python installation may be unreadable (a virtualenv under /root). getaddrinfo
# looks up the idna codec at its first call.
import base64
import encodings.idna  # noqa: F401
import errno
import json
import logging
import mmap
import os
import queue
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..model import DeviceType, Role, Transport, Tunnel, split_endpoint, tunnel_from_dict
from . import privileges, runtime, session, vnet, wire
from .session import Session

SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104  # Python 3.11 has no names for these
GSO_SEND_LIMIT = 65000  # bytes of datagrams in one UDP_SEGMENT send (the IP length limit, with room)
READ_SIZE = wire.MAX_UNIT + 64
PI_LEN = 4
CARRIER_CONGESTION = b"cubic"  # for the TCP connection that carries a tunnel
BATCH = 8  # units read from the device and sent to a TCP peer at once, at most
HELLO_INTERVAL = 0.5  # seconds between handshake messages while a UDP tunnel looks for its peer
HELLO_FAST, HELLO_FAST_FOR = 0.05, 1.0  # ... but every 0.05 s in the first second it looks
HANDSHAKE_TIMEOUT = 5.0  # seconds a TCP peer has to complete the handshake
MAX_HANDSHAKES = 16  # TCP handshakes in progress at once; more connections are closed at once
MAX_PENDING = 64  # UDP handshakes awaiting their CONFIRM

log = logging.getLogger("provision.forwarder")


class Stats:
    """Counters the status command shows. Written from two threads: plain ints under the GIL."""

    def __init__(self) -> None:
        self.state = "connecting"
        self.peer: str | None = None
        self.since = time.time()
        self.rx_packets = self.rx_bytes = self.tx_packets = self.tx_bytes = 0
        self.drops: Counter[str] = Counter()
        self.last_error: str | None = None
        self.key_id: str | None = None  # of the key the current session was made with
        self._logged: dict[str, float] = {}

    def drop(self, reason: str, count: int = 1) -> None:
        self.drops[reason] += count
        now = time.monotonic()
        if now - self._logged.get(reason, -60.0) > 10.0:  # a flood of drops must not flood the log
            self._logged[reason] = now
            log.warning("dropped a packet: %s (%d so far)", reason, self.drops[reason])

    def error(self, text: str) -> None:
        self.last_error = text
        log.warning("%s", text)

    def refused(self, who: str, why: str) -> None:
        """A handshake that failed: counted by reason, and logged as rarely as drops are."""
        self.last_error = f"refused {who}: {why}"
        self.drop(f"handshake refused: {why}")

    def to_dict(self, outbound: Outbound | None = None) -> dict[str, Any]:
        tx_packets, tx_bytes, drops = self.tx_packets, self.tx_bytes, Counter(self.drops)
        if outbound is not None:  # the sending process counts for itself
            tx_packets, tx_bytes, sent_drops = outbound.counts()
            drops.update(sent_drops)
        return {"state": self.state, "peer": self.peer, "since": self.since,
                "rx_packets": self.rx_packets, "rx_bytes": self.rx_bytes,
                "tx_packets": tx_packets, "tx_bytes": tx_bytes,
                "drops": {k: v for k, v in drops.items() if v}, "last_error": self.last_error,
                "key_id": self.key_id}


class Outbound:
    """What the two processes of a UDP forwarder share, in one anonymous shared mapping.

    The receiving process makes the sessions and hears the peer; it says where to send, how
    large a datagram may be, and with which session's data key. The sending process reads
    that and publishes its counters. A seqlock keeps the sender from using half an update:
    the generation is odd while it is being written. The mapping is anonymous: the key in it
    exists only in these two processes' memory.
    """

    # generation, port, room, family (0 none, 4, 6), address, session id,
    # flags (1 a session, 2 with a key, 4 compressed), the session's data key for sending
    PEER = struct.Struct("<QHHB16sIB32s")
    COUNTS = struct.Struct("<QQQQQ")  # packets, bytes, then drops by the reasons below
    DROPS = ("no peer connected", "send to the peer failed",
             "a super-packet from the device that cannot be segmented")

    def __init__(self) -> None:
        self.mm = mmap.mmap(-1, self.PEER.size + self.COUNTS.size)
        self._seen = -1
        self._peer: tuple[Any, int, Session | None] = (None, 1472, None)

    def set_peer(self, addr: Any, room: int, s: Session | None) -> None:
        gen = self.generation() + 1
        struct.pack_into("<Q", self.mm, 0, gen)  # odd: being written
        family, packed = 0, b""
        if addr is not None:
            family = 6 if ":" in addr[0] else 4
            packed = socket.inet_pton(socket.AF_INET6 if family == 6 else socket.AF_INET, addr[0])
        flags = 0 if s is None else 1 | (2 if s.send is not None else 0) | (4 if s.compress else 0)
        key = s.send if s is not None and s.send is not None else b""
        self.PEER.pack_into(self.mm, 0, gen, addr[1] if addr else 0, room, family, packed,
                            s.id if s is not None else 0, flags, key)
        struct.pack_into("<Q", self.mm, 0, gen + 1)

    def generation(self) -> int:
        return int(struct.unpack_from("<Q", self.mm, 0)[0])

    def peer(self) -> tuple[Any, int, Session | None]:
        """(address or None, room, session with its send key or None): cheap when nothing changed."""
        gen = self.generation()
        if gen == self._seen:
            return self._peer
        while True:
            gen, port, room, family, packed, sid, flags, key = self.PEER.unpack_from(self.mm, 0)
            if not gen % 2 and gen == self.generation():
                break
        addr = None
        if family:
            size = 16 if family == 6 else 4
            addr = (socket.inet_ntop(socket.AF_INET6 if family == 6 else socket.AF_INET, packed[:size]), port)
        s = Session(sid, key if flags & 2 else None, None, None, None, bool(flags & 4)) if flags & 1 else None
        self._seen, self._peer = gen, (addr, room, s)
        return self._peer

    def publish(self, packets: int, nbytes: int, drops: list[int]) -> None:
        self.COUNTS.pack_into(self.mm, self.PEER.size, packets, nbytes, *drops)

    def counts(self) -> tuple[int, int, dict[str, int]]:
        packets, nbytes, *drops = self.COUNTS.unpack_from(self.mm, self.PEER.size)
        return packets, nbytes, dict(zip(self.DROPS, drops, strict=True))


class Forwarder:
    def __init__(self, t: Tunnel, grant: Grant):
        """Everything that needs privilege is done before privileges.drop(): binding the socket
        here; the device and the keys come from the supervisor (see Grant)."""
        self.t = t
        self.stats = Stats()
        self.psks, self.previous_until = dict(grant.psks), grant.previous_until
        self.fd, self.offloads = grant.device_fd, grant.offloads
        self.tap = t.device_type is DeviceType.TAP
        self.pi = PI_LEN if t.pi else 0
        self.hello = session.Hello(str(t.device_type), t.pi, t.vnet_hdr, t.secure, t.compress)
        self.host, self.port = split_endpoint(t.endpoint)
        self._report_lock = threading.Lock()
        # TCP: the live connection and the sealer of what we send on it, swapped together
        self._send_lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._sealer = session.StreamSealer(None, False)
        self._listener = self._bind_tcp() if t.transport is Transport.TCP and t.role is Role.LISTEN else None
        # UDP: the session, the peer it is with, and the two openers and the control sealer
        self._udp = self._bind_udp() if t.transport is Transport.UDP else None
        self._udp_peer: Any = None
        self._session: Session | None = None
        self._confirmed = False  # the initiator heard the listener within the session
        self._opener: session.DatagramOpener | None = None
        self._control_opener: session.DatagramOpener | None = None
        self._control_sealer: session.DatagramSealer | None = None
        self._initiator: session.Initiator | None = None
        self._confirm = b""  # the initiator's CONFIRM datagram, sent again until heard
        self._pending: dict[int, tuple[Any, session.Pending]] = {}  # listener: session id -> (address, half)
        self._coalescer = (vnet.Coalescer(self.tap, self._write)
                           if t.vnet_hdr and not t.pi and t.transport is Transport.UDP else None)
        self._outbound: Outbound | None = None
        self._last_heard = 0.0
        self._hinted = 0.0  # when we last told a sender we do not know its session
        self._run_next = -1  # UDP: the counter that would continue the coalescer's run
        # When the peer has just gone (it said CLOSE) or we have just started, it is most likely
        # restarting, which takes about 0.1 s: handshake messages go every HELLO_FAST for a while,
        # so the tunnel is back as soon as the peer is, not up to HELLO_INTERVAL later.
        self._looking_since = time.monotonic()
        self._receive_timeout = HELLO_INTERVAL  # what SO_RCVTIMEO is set to

    def _bind_tcp(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._bind(listener, (self.host, self.port))
        listener.listen(16)
        log.info("listening on %s (tcp)", self.t.endpoint)
        return listener

    def _bind_udp(self) -> socket.socket:
        connect = self.t.role is Role.CONNECT
        bind_host = ("::" if ":" in self.host else "0.0.0.0") if connect else self.host
        sock = socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self._bind(sock, (bind_host, 0 if connect else self.port))
        try:
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            log.info("no UDP_GRO here: one datagram per receive")
        # A blocking socket whose receives give up after HELLO_INTERVAL (kernel-side, so that a
        # receive is one system call, not a poll and a receive).
        _set_receive_timeout(sock, HELLO_INTERVAL)
        if not connect:
            log.info("listening on %s (udp)", self.t.endpoint)
        return sock

    def _bind(self, sock: socket.socket, where: tuple[str, int]) -> None:
        bound = Backoff()
        while True:
            try:
                sock.bind(where)
                return
            except OSError as exc:  # the port is still held by a forwarder that is going away
                self.stats.error(f"cannot bind {self.t.endpoint}: {exc.strerror}")
                self._report()
                bound.sleep()

    # ------------------------------------------------------------ the process

    def run(self) -> None:
        threading.Thread(target=self._report_forever, daemon=True, name="stats").start()
        if self.t.transport is Transport.TCP:
            threading.Thread(target=self._device_to_tcp, daemon=True, name="device->peer").start()
            self._tcp_forever()
        else:
            try:
                self._udp_forever()
            finally:
                self._udp_close()

    def _report_forever(self) -> None:
        while True:
            self._report()
            time.sleep(1.0)

    def _report(self) -> None:
        """One line of counters to the supervisor, which keeps them in stats.json."""
        line = json.dumps(self.stats.to_dict(self._outbound)).encode() + b"\n"
        with self._report_lock:
            try:
                os.write(1, line)
            except OSError:
                pass  # the supervisor is gone; PR_SET_PDEATHSIG ends us

    def _keys(self) -> session.Keys:
        """The keys to offer and accept now: the previous one only while the rotation lasts."""
        if len(self.psks) > 1 and time.time() > self.previous_until:
            self._only_newest("the previous key's time is up")
        return self.psks

    def _session_made(self, s: Session) -> None:
        self.stats.key_id = s.key_id
        if len(self.psks) > 1 and s.key_id == next(iter(self.psks)):
            self._only_newest("a session was made with the new key")

    def _only_newest(self, why: str) -> None:
        newest = next(iter(self.psks))
        self.psks = {newest: self.psks[newest]}
        log.info("key rotation complete (%s): the previous key is no longer accepted", why)

    def _connected(self, peer: str) -> None:
        self.stats.state, self.stats.peer, self.stats.since = "connected", peer, time.time()
        self._last_heard = time.monotonic()
        log.info("connected to %s", peer)
        self._report()

    def _lost(self, why: str) -> None:
        if self.stats.state == "connected":
            log.info("lost the peer: %s", why)
        self.stats.state = "connecting"
        self.stats.error(why)

    # ------------------------------------------------------------ device side

    def _read_units(self) -> Any:
        """Yield views of each unit read from the device (valid until the next one)."""
        buf = bytearray(READ_SIZE)
        view = memoryview(buf)
        while True:
            yield view[:self._read(buf)]

    def _read(self, buf: bytearray) -> int:
        """One unit from the device into buf, waiting for it."""
        while True:
            try:
                return os.readv(self.fd, [buf])
            except OSError as exc:
                if exc.errno not in (errno.EINTR, errno.EAGAIN):
                    self._device_gone(exc)

    def _device_gone(self, exc: OSError) -> NoReturn:
        """The device was deleted under us (EBADFD): nothing to forward. Exit, so the supervisor
        counts it, and the next plan shows the device to create."""
        self.stats.state = "connecting"
        self.stats.error(f"device {self.t.device} is gone ({exc.strerror})")
        self._report()
        logging.shutdown()
        os._exit(runtime.DEVICE_GONE)

    def _deliver(self, unit: memoryview | bytes) -> None:
        """One unit from the peer into the device: checked, and a refusal is a drop."""
        parts: Sequence[bytes | memoryview] = (unit,)
        if self.t.vnet_hdr:
            p = self.pi
            if len(unit) < p + vnet.HDR_LEN:
                self.stats.drop("shorter than the virtio header")
                return
            try:
                hdr = vnet.sanitize(unit[p:p + vnet.HDR_LEN], unit[p + vnet.HDR_LEN:], self.tap)
            except vnet.BadPacket as exc:
                self.stats.drop(str(exc))
                return
            parts = (unit[:p], hdr, unit[p + vnet.HDR_LEN:]) if p else (hdr, unit[vnet.HDR_LEN:])
        self._write(parts)

    def _write(self, parts: Sequence[bytes | memoryview]) -> None:
        try:
            n = os.writev(self.fd, parts)
        except OSError as exc:
            if exc.errno == errno.EBADFD:
                self._device_gone(exc)
            self.stats.drop(f"device refused the write: {errno.errorcode.get(exc.errno or 0, exc.errno)}")
            return
        self.stats.rx_packets += 1
        self.stats.rx_bytes += n

    # ------------------------------------------------------------ TCP

    def _tcp_forever(self) -> None:
        offered: queue.Queue[tuple[socket.socket, Session]] = queue.Queue()
        if self._listener is not None:
            threading.Thread(target=self._accept_forever, args=(offered,), daemon=True, name="accept").start()
        backoff = Backoff()
        while True:
            try:
                conn, s = offered.get() if self._listener is not None else self._tcp_connect()
                peer = _address(conn.getpeername())
            except (OSError, wire.ProtocolError) as exc:
                self._lost(f"connecting to {self.t.endpoint}: {_why(exc)}")
                backoff.sleep()
                continue
            backoff.reset()
            self._session_made(s)
            with self._send_lock:
                self._conn, self._sealer = conn, session.StreamSealer(s.send, s.compress)
            self._connected(peer)
            threading.Thread(target=self._tcp_keepalive, args=(conn,), daemon=True).start()
            try:
                self._tcp_to_device(conn, session.StreamOpener(s.receive, s.compress, wire.MAX_UNIT))
            except (OSError, wire.ProtocolError) as exc:
                self._lost(f"connection to {peer}: {_why(exc)}")
            finally:
                with self._send_lock:
                    if self._conn is conn:
                        self._conn = None
                conn.close()

    def _tcp_connect(self) -> tuple[socket.socket, Session]:
        conn = socket.create_connection((self.host, self.port), timeout=HANDSHAKE_TIMEOUT)
        try:
            _carrier(conn)
            initiator = session.Initiator(self.hello, self._keys())
            _send_frame(conn, wire.INIT, initiator.init)
            confirm, s = initiator.on_reply(_expect_frame(conn, wire.REPLY, refusal=True))
            _send_frame(conn, wire.CONFIRM, confirm)
        except session.HandshakeError as exc:
            conn.close()
            self.stats.refused(self.t.endpoint, str(exc))
            raise
        except BaseException:
            conn.close()
            raise
        _established(conn)
        return conn, s

    def _accept_forever(self, offered: queue.Queue[tuple[socket.socket, Session]]) -> None:
        """Each handshake in a thread of its own, so that a peer that stalls (or an attacker)
        delays nobody; a connection replaces the current one only once it has proven the key."""
        assert self._listener is not None
        slots = threading.BoundedSemaphore(MAX_HANDSHAKES)
        while True:
            conn, addr = self._listener.accept()
            if not slots.acquire(blocking=False):
                conn.close()
                self.stats.drop("handshake refused: too many at once")
                continue
            threading.Thread(target=self._tcp_respond, args=(conn, addr, offered, slots), daemon=True).start()

    def _tcp_respond(self, conn: socket.socket, addr: Any, offered: queue.Queue[tuple[socket.socket, Session]],
                     slots: threading.BoundedSemaphore) -> None:
        try:
            conn.settimeout(HANDSHAKE_TIMEOUT)
            _carrier(conn)
            reply, pending = session.Responder(self.hello, self._keys()).on_init(_expect_frame(conn, wire.INIT))
            _send_frame(conn, wire.REPLY, reply)
            s = pending.on_confirm(_expect_frame(conn, wire.CONFIRM))
            _established(conn)
        except (OSError, wire.ProtocolError) as exc:
            self.stats.refused(_address(addr), _why(exc))
            if isinstance(exc, session.HandshakeError):
                try:
                    _send_frame(conn, wire.REFUSED, session.refusal(str(exc)))
                except OSError:
                    pass
            conn.close()
            return
        finally:
            slots.release()
        old = self._conn
        if old is not None:  # the peer came back (restarted): the new connection wins
            log.info("a new connection from %s replaces the current one", _address(addr))
            _shutdown(old)
        offered.put((conn, s))

    def _tcp_keepalive(self, conn: socket.socket) -> None:
        while self._conn is conn:
            time.sleep(wire.KEEPALIVE_INTERVAL)
            try:
                with self._send_lock:
                    if self._conn is not conn:
                        return
                    word, body = self._sealer.seal(wire.KEEPALIVE, b"")
                    conn.sendall(word + bytes(body))
            except OSError:
                _shutdown(conn)
                return

    def _tcp_to_device(self, conn: socket.socket, opener: session.StreamOpener) -> None:
        """A frame that fails authentication ends the connection: in a TCP stream it can only be
        an attack or corruption, and the peer reconnects with a fresh session."""
        reader = wire.FrameReader()
        data = (wire.DATA, wire.DATA_LZ4)
        while True:
            n = conn.recv_into(reader.space())
            if n == 0:
                raise ConnectionError("the peer closed the connection")
            for kind, body in reader.frames(n):
                if body is None:
                    opener.skip()
                    self.stats.drop(f"frame larger than {wire.MAX_BODY} bytes")
                elif kind in data or kind == wire.KEEPALIVE:
                    try:
                        unit = opener.open(kind, body)
                    except session.Rejected as exc:
                        self.stats.drop(str(exc))
                        raise
                    if kind != wire.KEEPALIVE:
                        self._deliver(unit)
                else:
                    raise wire.ProtocolError(f"frame of type {kind} within a session")

    def _device_to_tcp(self) -> None:
        """Units go out in batches: after one blocking read, whatever else the device already
        holds (a read that does not wait, RWF_NOWAIT) joins it, up to BATCH units, in one send.
        Under load that is fewer sends and fewer wake-ups of the peer; alone, a unit waits for
        nothing. Sealing happens under the send lock: the counter must follow the stream."""
        bufs = [bytearray(READ_SIZE) for _ in range(BATCH)]
        views = [memoryview(b) for b in bufs]
        units: list[memoryview] = []
        parts: list[bytes | memoryview] = []
        nowait = os.RWF_NOWAIT
        while True:
            n = self._read(bufs[0])
            units.clear()
            units.append(views[0][:n])
            nbytes = n
            for i in range(1, BATCH):
                try:
                    n = os.preadv(self.fd, [bufs[i]], -1, nowait)
                except OSError:
                    break
                units.append(views[i][:n])
                nbytes += n
            with self._send_lock:
                conn, seal = self._conn, self._sealer.seal
                if conn is None:
                    self.stats.drop("no peer connected", len(units))
                    continue
                parts.clear()
                for unit in units:
                    parts += seal(wire.DATA, unit)
                try:
                    _sendmsg_all(conn, parts)
                except OSError as exc:
                    self.stats.drop("send to the peer failed", len(units))
                    self.stats.error(f"send to the peer: {_why(exc)}")
                    _shutdown(conn)
                    continue
            self.stats.tx_packets += len(units)
            self.stats.tx_bytes += nbytes

    # ------------------------------------------------------------ UDP

    def _udp_forever(self) -> None:
        sock = self._udp
        assert sock is not None
        self._start_sender(sock)
        # Two receive buffers, used in turn, so that a run of segments being glued together can
        # continue from one receive into the next (see Coalescer.holds); and a plaintext buffer
        # beside each, where datagrams are decrypted to.
        buffers = (bytearray(1 << 17), bytearray(1 << 17))
        plains = (bytearray(1 << 17), bytearray(1 << 17))
        views = tuple(memoryview(b) for b in buffers)
        plain_views = tuple(memoryview(b) for b in plains)
        turn = 0
        coalescer = self._coalescer
        cmsg_space = socket.CMSG_SPACE(4)
        last_sent = 0.0
        while True:
            now = time.monotonic()
            if self._session is not None and now - self._last_heard > wire.DEAD_AFTER:
                self._lost(f"nothing from {_address(self._udp_peer)} for {wire.DEAD_AFTER:.0f} s")
                self._udp_deactivate()
            steady = self._session is not None and self._confirmed and self._initiator is None
            fast = not steady and now - self._looking_since < HELLO_FAST_FOR
            interval = wire.KEEPALIVE_INTERVAL if steady else HELLO_FAST if fast else HELLO_INTERVAL
            if now - last_sent >= interval:
                last_sent = now
                self._udp_tick(sock)
            wait = HELLO_FAST if fast else HELLO_INTERVAL
            if wait != self._receive_timeout:  # twice per handshake: the data path pays no system call
                self._receive_timeout = wait
                _set_receive_timeout(sock, wait)
            buf, view = buffers[turn], views[turn]
            if coalescer is not None and (coalescer.holds(buf) or coalescer.holds(plains[turn])):
                coalescer.flush()
            try:
                if coalescer is not None and coalescer.pending:
                    try:  # more of the run may be queued; if not, deliver what we have now
                        n, anc, flags, addr = sock.recvmsg_into((buf,), cmsg_space, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        coalescer.flush()
                        continue
                else:
                    n, anc, flags, addr = sock.recvmsg_into((buf,), cmsg_space)
            except BlockingIOError:  # SO_RCVTIMEO: time for the keepalive bookkeeping
                continue
            except OSError as exc:
                self.stats.error(f"receive: {_why(exc)}")
                continue
            if flags & socket.MSG_TRUNC:
                self.stats.drop("datagram larger than the receive buffer")
                continue
            size = n
            for level, kind, data in anc:
                if level == SOL_UDP and kind == UDP_GRO:
                    size = struct.unpack("i", data[:4])[0]
            self._udp_received(sock, view, plain_views[turn], n, size, addr)
            turn ^= 1

    def _udp_tick(self, sock: socket.socket) -> None:
        """While looking for the peer: every HELLO_FAST at first, then every HELLO_INTERVAL.
        Every KEEPALIVE_INTERVAL after."""
        if self.t.role is Role.CONNECT and self._session is None:
            try:  # resolve again each time: the peer may come back elsewhere
                found = socket.getaddrinfo(self.host, self.port, sock.family, socket.SOCK_DGRAM)[0][4]
            except OSError as exc:
                self._lost(f"resolving {self.host}: {_why(exc)}")
                return
            self._udp_send_init(sock, (str(found[0]), int(found[1])))
        elif self._session is not None and not self._confirmed:
            self._udp_send_control(sock, self._confirm, self._udp_peer)
        elif self._session is not None:
            if self._initiator is not None:  # a new handshake while the session carries on
                self._udp_send_init(sock, self._udp_peer)
            self._udp_keepalive(sock)

    def _udp_send_init(self, sock: socket.socket, addr: Any) -> None:
        """INIT of the handshake in progress (a new one if none is): the same INIT again until a
        REPLY comes, however slow the path."""
        if self._initiator is None:
            self._initiator = session.Initiator(self.hello, self._keys())
        self._udp_send_control(sock, _handshake(wire.INIT, 0, self._initiator.init), addr)

    def _udp_keepalive(self, sock: socket.socket) -> None:
        assert self._control_sealer is not None
        self._udp_send_control(sock, self._control_sealer.seal(wire.KEEPALIVE), self._udp_peer)

    def _udp_close(self) -> None:
        """Tell the peer this session ends (a UDP peer has no FIN to hear), so that it starts a
        new handshake at once instead of after DEAD_AFTER of silence: a restart for a new key then
        costs what a reconnect costs. Runs as SIGTERM's SystemExit unwinds the receive loop; the
        control sealer has no other user, and a seal the signal cut short was never sent, so no
        counter goes out twice."""
        if self._udp is not None and self._control_sealer is not None and self._udp_peer is not None:
            self._udp_send_control(self._udp, self._control_sealer.seal(wire.CLOSE), self._udp_peer)

    def _udp_activate(self, addr: Any, s: Session, sock: socket.socket, confirmed: bool) -> None:
        self._session, self._udp_peer, self._confirmed = s, addr, confirmed
        self._session_made(s)
        self._opener = session.DatagramOpener(s.receive, s.id, s.compress, wire.MAX_UNIT)
        self._control_opener = session.DatagramOpener(s.receive_control, s.id, False, 0)
        self._control_sealer = session.DatagramSealer(s.send_control, s.id, False)
        assert self._outbound is not None
        self._outbound.set_peer(addr, _path_room(addr, sock.family), s)
        self._last_heard = time.monotonic()
        if confirmed:
            self._connected(_address(addr))

    def _udp_deactivate(self) -> None:
        self._session = self._opener = self._control_opener = self._control_sealer = None
        self._initiator, self._confirmed = None, False
        if self.t.role is Role.CONNECT:
            self._udp_peer = None
        assert self._outbound is not None
        self._outbound.set_peer(None, 0, None)
        self._looking_since = time.monotonic()

    def _udp_received(self, sock: socket.socket, view: memoryview, plain: memoryview, n: int, size: int,
                      addr: Any) -> None:
        """`n` bytes of datagrams of `size` bytes each (the last may be shorter), all from `addr`.
        Units are opened into `plain` at the offset their datagram had in `view`."""
        heard = False
        coalescer = self._coalescer
        opener = self._opener if addr == self._udp_peer else None
        open_into = opener.open_into if opener is not None else None
        continues = coalescer.continues if coalescer is not None else None
        append = coalescer.append if coalescer is not None else None
        data = (wire.DATA, wire.DATA_CONT, wire.DATA_LZ4)
        for off in range(0, n, size):
            end = off + size if off + size < n else n
            kind = view[off]
            if kind in data:
                if open_into is None:
                    self.stats.drop("datagram from an unknown sender")
                    self._unknown_session(sock, view[off:end], addr)
                    continue
                try:
                    unit = open_into(view[off:end], plain[off:end])
                except session.Rejected as exc:
                    self.stats.drop(str(exc))
                    continue
                heard = True
                if continues is None or append is None or opener is None:
                    self._deliver(unit)
                    continue
                if isinstance(unit, bytes):  # decompressed: the coalescer writes into what it keeps
                    unit = memoryview(bytearray(unit))
                counter = opener.counter
                if opener.kind == wire.DATA_CONT and counter == self._run_next and append(unit):
                    self._run_next = counter + 1  # the sender says: the same super-packet, next segment
                    continue
                if continues(unit, 0, len(unit)):
                    self._run_next = counter + 1  # the next segment of a TCP run: already taken
                    continue
                assert coalescer is not None
                if len(unit) < vnet.HDR_LEN:
                    self.stats.drop("shorter than the virtio header")
                    continue
                try:
                    coalescer.add(unit)
                except vnet.BadPacket as exc:
                    self.stats.drop(str(exc))
                    continue
                self._run_next = counter + 1 if coalescer.pending else -1
            else:
                heard |= self._udp_control(sock, kind, view[off:end], plain[off:end], addr)
        if heard:
            self._last_heard = time.monotonic()

    def _udp_control(self, sock: socket.socket, kind: int, datagram: memoryview, plain: memoryview,
                     addr: Any) -> bool:
        """A keepalive or handshake datagram; True if it proved the peer is there."""
        listener = self.t.role is Role.LISTEN
        if len(datagram) < session.DATAGRAM_LEN:
            self.stats.drop("datagram shorter than its header")
            return False
        sid = session.DATAGRAM.unpack_from(datagram)[1]
        body = datagram[session.DATAGRAM_LEN:]
        try:
            if kind in (wire.KEEPALIVE, wire.CLOSE):
                if self._control_opener is None or addr != self._udp_peer:
                    self.stats.drop("datagram from an unknown sender")
                    self._unknown_session(sock, datagram, addr)
                    return False
                self._control_opener.open_into(datagram, plain)
                if kind == wire.CLOSE:
                    self._lost(f"{_address(addr)} closed the session (its forwarder stopped or is restarting)")
                    self._udp_deactivate()
                    return False
                if not self._confirmed:
                    self._confirmed = True
                    self._connected(_address(addr))
                return True
            if kind == wire.INIT and listener:
                reply, pending = session.Responder(self.hello, self._keys()).on_init(body)
                if len(self._pending) >= MAX_PENDING:
                    del self._pending[next(iter(self._pending))]
                self._pending[pending.session.id] = (addr, pending)
                self._udp_send_control(sock, _handshake(wire.REPLY, 0, reply), addr)
            elif kind == wire.REPLY and not listener and self._initiator is not None:
                confirm, s = self._initiator.on_reply(body)
                self._initiator = None  # one session per handshake: a replayed REPLY finds none
                self._confirm = _handshake(wire.CONFIRM, s.id, confirm)
                self._udp_send_control(sock, self._confirm, addr)
                self._udp_activate(addr, s, sock, confirmed=False)
            elif kind == wire.CONFIRM and listener and sid in self._pending and self._pending[sid][0] == addr:
                s = self._pending[sid][1].on_confirm(body)
                fresh = self._session is None or self._session.id != s.id
                if fresh:
                    self._udp_activate(addr, s, sock, confirmed=True)
                self._udp_keepalive(sock)  # the initiator waits for a word from us in the session
                return fresh  # a CONFIRM again (ours was lost, or it is replayed) proves nothing new
            elif kind == wire.UNKNOWN_SESSION and not listener:
                if self._session is not None and sid == self._session.id and self._initiator is None:
                    log.info("the listener no longer knows our session (it restarted): a new handshake")
                    self._udp_send_init(sock, addr)
                    self._looking_since = time.monotonic()
            elif kind == wire.REFUSED and not listener and self._initiator is not None:
                self.stats.refused(_address(addr), str(session.refused(body)))
            else:
                self.stats.drop(f"unexpected datagram of type {kind}")
        except session.Rejected as exc:
            self.stats.drop(str(exc))
        except session.HandshakeError as exc:
            self.stats.refused(_address(addr), str(exc))
            if listener and kind == wire.INIT:
                self._udp_send_control(sock, _handshake(wire.REFUSED, 0, session.refusal(str(exc))), addr)
        return False

    def _unknown_session(self, sock: socket.socket, datagram: memoryview, addr: Any) -> None:
        """A listener that restarted (a new key) hears the old session: it says so, at most twice a
        second, so the peer makes a new one at once instead of after DEAD_AFTER. The hint is not
        authenticated, and need not be: it only makes the peer start a handshake beside its session."""
        if self.t.role is not Role.LISTEN or len(datagram) < session.DATAGRAM_LEN:
            return
        now = time.monotonic()
        if now - self._hinted < HELLO_INTERVAL:
            return
        self._hinted = now
        sid = session.DATAGRAM.unpack_from(datagram)[1]
        self._udp_send_control(sock, _handshake(wire.UNKNOWN_SESSION, sid, b""), addr)

    def _udp_send_control(self, sock: socket.socket, data: bytes, addr: Any) -> None:
        try:
            sock.sendto(data, addr)
        except OSError as exc:
            self.stats.error(f"send to {_address(addr)}: {_why(exc)}")

    def _start_sender(self, sock: socket.socket) -> None:
        """Device → peer runs in a process of its own: per-packet work in Python is what limits
        UDP, and two processes do not share a GIL. It dies with us (PR_SET_PDEATHSIG); if it
        dies, we exit too, and the supervisor starts the pair again."""
        self._outbound = Outbound()
        pid = os.fork()
        if pid == 0:
            try:
                runtime.die_with_parent(signal.SIGKILL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self._device_to_udp(sock, self._outbound)
            finally:
                os._exit(1)

        def sender_died(*_: Any) -> None:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                self.stats.error("the sending process died")
                self._report()
                logging.shutdown()
                os._exit(4)

        signal.signal(signal.SIGCHLD, sender_died)

    def _device_to_udp(self, sock: socket.socket, outbound: Outbound) -> None:
        """Each unit sealed into `out` as whole datagrams, then sent; a super-packet is first cut
        into real segments, sealed one by one, and sent with UDP_SEGMENT."""
        segmenting = self.t.vnet_hdr and self.offloads
        packets = nbytes = 0
        drops = [0] * len(Outbound.DROPS)
        no_peer, send_failed, unsegmentable = range(3)
        gso = True
        sealer: session.DatagramSealer | None = None
        out = memoryview(bytearray(2 * READ_SIZE))
        prefix = b""
        for unit in self._read_units():
            peer, room, s = outbound.peer()
            if peer is None or s is None:
                drops[no_peer] += 1
                outbound.publish(packets, nbytes, drops)
                continue
            if sealer is None or (sealer.id, sealer.key) != (s.id, s.send):  # a new session: never a new
                sealer = session.DatagramSealer(s.send, s.id, s.compress)  # counter on an old key
            if segmenting and unit[self.pi + 1] != vnet.GSO_NONE:
                p = self.pi
                prefix = bytes(unit[:p])
                try:
                    pieces = vnet.segment(unit[p:p + vnet.HDR_LEN], unit[p + vnet.HDR_LEN:], self.tap,
                                          room - sealer.overhead - len(prefix) - vnet.HDR_LEN, prefix)
                except (vnet.BadPacket, IndexError):
                    drops[unsegmentable] += 1
                    outbound.publish(packets, nbytes, drops)
                    continue
                sent, gso = _send_sealed(sock, out, sealer.seal_all(pieces, out), peer, gso)
                packets += sent
                nbytes += sum(len(d) for d in pieces[:sent]) - sent * len(prefix)
                drops[send_failed] += len(pieces) - sent
            else:
                try:
                    sock.sendto(out[:sealer.seal_into(wire.DATA, unit, out)], peer)
                    packets += 1
                    nbytes += len(unit)
                except OSError:
                    drops[send_failed] += 1
            outbound.publish(packets, nbytes, drops)


def _send_sealed(sock: socket.socket, out: memoryview, lengths: list[int], peer: Any, gso: bool) -> tuple[int, bool]:
    """The datagrams laid end to end in `out`, in as few UDP_SEGMENT sends as fit: that needs
    all but the last of a send to be of one size. Returns how many were sent, and whether
    UDP_SEGMENT is still worth trying."""
    size = lengths[0]
    uniform = all(n == size for n in lengths[:-1]) and lengths[-1] <= size
    if not (gso and uniform and len(lengths) > 1):
        return _send_each(sock, out, lengths, peer), gso
    most = max(1, min(vnet.MAX_SEGMENTS, GSO_SEND_LIMIT // size))
    sends = -(-len(lengths) // most)
    per_send = -(-len(lengths) // sends)  # even sends: 24 + 23, not 44 + 3
    sent = 0
    for i in range(0, len(lengths), per_send):
        count = min(per_send, len(lengths) - i)
        start, end = i * size, i * size + sum(lengths[i:i + count])
        try:
            if count > 1:
                sock.sendmsg((out[start:end],), ((SOL_UDP, UDP_SEGMENT, struct.pack("=H", size)),), 0, peer)
            else:
                sock.sendto(out[start:end], peer)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                continue
            log.info("no UDP_SEGMENT here (%s): one send per datagram", exc.strerror)
            return sent + _send_each(sock, out[start:], lengths[i:], peer), False
        sent += count
    return sent, gso


def _send_each(sock: socket.socket, out: memoryview, lengths: list[int], peer: Any) -> int:
    sent = pos = 0
    for n in lengths:
        try:
            sock.sendto(out[pos:pos + n], peer)
            sent += 1
        except OSError:
            pass
        pos += n
    return sent


def _handshake(kind: int, sid: int, body: bytes) -> bytes:
    """A handshake datagram: the usual header (counter 0, never checked), then the message."""
    return session.DATAGRAM.pack(kind, sid, 0) + body


def _send_frame(conn: socket.socket, kind: int, body: bytes) -> None:
    conn.sendall(wire.frame_header(kind, len(body)) + body)


def _expect_frame(conn: socket.socket, kind: int, refusal: bool = False) -> bytes:
    """The next frame, which must be a handshake message of `kind` (and short): exactly it, so
    that nothing after it is read ahead. With `refusal`, the listener may say why it refuses us."""
    word = wire.FRAME.unpack(_recv_exactly(conn, wire.FRAME_LEN))[0]
    got, length = word >> 24, word & 0xFFFFFF
    if length > 4096 or (got != kind and not (refusal and got == wire.REFUSED)):
        raise wire.ProtocolError("the peer does not speak provision's handshake")
    body = _recv_exactly(conn, length)
    if got == wire.REFUSED:
        raise session.refused(body)
    return body


def _carrier(conn: socket.socket) -> None:
    conn.settimeout(HANDSHAKE_TIMEOUT)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:  # BBR, a common default, paces with timers: under a tunnel that only costs CPU (~15% here)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, CARRIER_CONGESTION)
    except OSError:
        pass  # not built into this kernel: the host's default


def _established(conn: socket.socket) -> None:
    """After the handshake: a blocking socket with kernel-side timeouts. No data for DEAD_AFTER
    seconds while the peer sends keepalives every 2 s: it is gone."""
    conn.settimeout(None)
    timeout = struct.pack("ll", int(wire.DEAD_AFTER), 0)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(wire.DEAD_AFTER * 1000))


class Backoff:
    """0.05 s, doubling, at most 5 s: a peer restarting (a new key) is back within a few tries,
    and one that is gone is looked for every 5 s."""

    def __init__(self, first: float = 0.05, most: float = 5.0):
        self.first, self.most, self.delay = first, most, first

    def sleep(self) -> None:
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, self.most)

    def reset(self) -> None:
        self.delay = self.first


def _set_receive_timeout(sock: socket.socket, seconds: float) -> None:
    """Receives give up after `seconds` (under 1): the UDP loop wakes for its handshake messages."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, int(seconds * 1e6)))


def _path_room(addr: Any, family: int) -> int:
    """The largest UDP payload that reaches `addr` without fragments: the route's MTU, less headers."""
    IP_MTU, IPV6_MTU = 14, 24
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.connect(addr)
        if family == socket.AF_INET6:
            return probe.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU) - 48
        return probe.getsockopt(socket.IPPROTO_IP, IP_MTU) - 28
    except OSError:
        return 1472 if family == socket.AF_INET else 1452
    finally:
        probe.close()


def _sendmsg_all(conn: socket.socket, parts: list[bytes | memoryview]) -> None:
    """sendmsg until every byte is out (a signal can cut a send short)."""
    sent = conn.sendmsg(parts)
    total = sum(len(p) for p in parts)
    if sent < total:
        conn.sendall(b"".join(parts)[sent:])


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = conn.recv(n, socket.MSG_WAITALL)
    if len(data) < n:
        raise ConnectionError("closed during the hello")
    return data


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _address(addr: Any) -> str:
    host, port = addr[0], addr[1]
    host = host.removeprefix("::ffff:")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
        return f"no reply for {wire.DEAD_AFTER:.0f} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, repr=False)
class Grant:
    """What the supervisor hands a forwarder it starts, on its stdin (one JSON line): the device,
    already attached (it keeps its own descriptor, so the device keeps its carrier while the
    forwarder restarts, and the kernel keeps its neighbours), and the keys, newest first. The
    others are rotated-out keys, accepted until `previous_until` or a session with the newest."""

    device_fd: int
    offloads: bool
    psks: dict[str, bytes]
    previous_until: float

    @classmethod
    def read(cls, t: Tunnel) -> Grant:
        try:
            d = json.loads(sys.stdin.buffer.readline(16384) or b"{}")
            if "error" in d:
                raise SystemExit(str(d["error"]))
            psks = {str(k): base64.b64decode(v) for k, v in d.get("keys", {}).items()}
            grant = cls(int(d["device_fd"]), bool(d["offloads"]), psks, float(d.get("previous_until") or 0.0))
        except (ValueError, TypeError, AttributeError, KeyError):
            raise SystemExit("the supervisor's grant is unreadable") from None
        if t.secure and not psks:
            raise SystemExit("no key for an encrypted tunnel")
        return grant


def main(argv: list[str]) -> int:
    """stdout and stderr are the supervisor's pipes: counters on one, the log on the other."""
    run_dir = Path(argv[0])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s forwarder[%(process)d] %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    spec = runtime.read_json(run_dir / runtime.SPEC)
    if spec is None:
        log.error("no spec in %s", run_dir)
        return 2
    t = tunnel_from_dict(spec)
    try:
        forwarder = Forwarder(t, Grant.read(t))
        uid, gid = privileges.drop(t.user, t.group)
    except (SystemExit, privileges.PrivilegeError, OSError) as exc:
        why = str(exc) if not isinstance(exc, OSError) else f"{exc.strerror or exc}"
        log.error("%s", why)
        os.write(1, json.dumps({"state": "connecting", "last_error": why}).encode() + b"\n")
        return 2
    log.info("%s on %s (%s %s %s, %s, offloads %s), running as uid %d gid %d without capabilities",
             t.name, t.device, t.transport, t.role, t.endpoint,
             "encrypted" if t.secure else "INSECURE: plaintext", "on" if forwarder.offloads else "off", uid, gid)
    forwarder.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
