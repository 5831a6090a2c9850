"""The TCP carrier: WireGuard's messages, each behind a 4-byte big-endian length.

Not WireGuard's wire (WireGuard has no TCP), but the same handshake, keys, counters and
timers: the connecting end sends an initiation frame, the listener answers with a response
frame, and from then on data, keepalives and rekeying handshakes travel in the same stream.
A frame that does not authenticate ends the connection (in a stream it can only be an attack
or corruption); the connecting end reconnects with a fresh handshake.

The listener never lets an unauthenticated connection hold anything for long: all pending
connections are served by one thread polling them, each has HANDSHAKE_DEADLINE from accept
to its initiation, at most PER_SOURCE pending from one address and MAX_PENDING in all; when
either is full, the oldest pending connection is closed to make room, so a legitimate peer
(which sends its initiation at once) always gets in. A connection becomes the tunnel's only
once its initiation has been accepted by peer.py, which makes it the current one.

Threads (in the host's data plane, one set per TCP tunnel): the carrier's own thread owns the
connection and reads peer → device; a second reads device → peer (both wait in system calls
that release the GIL, so on two cores they overlap); a third accepts and vets connections
(listener only). Sealing and every change of the keypairs happen under one lock: the counter
must follow the stream. Every wait is bounded (TICK), so `stop()` ends all three within a
TICK, and the last one out closes what the tunnel held.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

from ..hints import Any
from ..model import Role, Tunnel, split_endpoint
from . import noise
from .device import MAX_UNIT, NOTHING, Device, DeviceGone
from .drops import Drop
from .peer import Peer
from .stats import LinkState, Stats
from .timers import DEAD_AFTER, KEEPALIVE_INTERVAL
from .udp import address_text, source_key

LENGTH = struct.Struct(">I")
MAX_MESSAGE = noise.TRANSPORT_HEADER_LEN + 1 + MAX_UNIT + 16  # a sealed unit of our form, with its tag
HANDSHAKE_DEADLINE = 2.0  # seconds from accept to an accepted initiation
PER_SOURCE = 4
MAX_PENDING = 64
CONNECT_TIMEOUT = 5.0
BATCH = 8  # units read from the device and sent at once, at most
CARRIER_CONGESTION = b"cubic"
TICK = 0.5
FIRST_RECONNECT, FAST_RECONNECT_FOR, MAX_RECONNECT = 0.05, 2.0, 5.0

log = logging.getLogger("provision.forwarder")


def reconnect_delay(failing_for: float) -> float:
    """Seconds before the next connect after `failing_for` seconds of failed ones: every
    FIRST_RECONNECT for FAST_RECONNECT_FOR (the listener is most likely restarting, as for a new
    key, and is back in about 0.3 s), then as long again as it has failed since, up to
    MAX_RECONNECT (a doubling backoff)."""
    return min(MAX_RECONNECT, max(FIRST_RECONNECT, failing_for - FAST_RECONNECT_FOR))


class FrameError(ValueError):
    """The stream is not a sequence of frames we accept."""


class FrameTooLarge(FrameError):
    """A frame of no bytes, or of more than the reader takes."""


class FrameReader:
    """Cuts a TCP byte stream into frames without copying whole frames. Feed it what
    `recv_into(space())` filled; it yields each complete message (a view, valid until the next
    call). A length of 0 or more than MAX_MESSAGE raises FrameError: the stream ends."""

    def __init__(self, size: int = 1 << 18, limit: int = MAX_MESSAGE):
        self.limit = limit
        self.error: FrameTooLarge | None = None  # found after the frames frames() returned: raised next
        self.size = size
        self.buf = bytearray(max(min(size, 4 * (limit + LENGTH.size)), limit + LENGTH.size))  # small while the limit is
        self.view = memoryview(self.buf)
        self.start = self.filled = 0

    def allow(self, limit: int) -> None:
        """Take frames up to `limit` from now on (a connection that proved itself)."""
        self.limit = limit
        if len(self.buf) < self.size:
            rest = self.buf[self.start:self.filled]
            self.buf = bytearray(self.size)
            self.buf[:len(rest)] = rest
            self.view = memoryview(self.buf)
            self.start, self.filled = 0, len(rest)

    def space(self) -> memoryview:
        if len(self.buf) - self.filled < self.limit + LENGTH.size:
            rest = self.filled - self.start
            self.buf[:rest] = self.buf[self.start:self.filled]
            self.start, self.filled = 0, rest
        return self.view[self.filled:]

    def frames(self, n: int) -> list[memoryview]:
        """The complete frames among what arrived. A bad length ends the stream: the frames before
        it are returned first, and the next call raises."""
        if self.error is not None:
            raise self.error
        self.filled += n
        view, pos, end = self.view, self.start, self.filled
        out: list[memoryview] = []
        while end - pos >= 4:
            length = LENGTH.unpack_from(view, pos)[0]
            if length == 0 or length > self.limit:
                self.error = FrameTooLarge(f"frame of {length} bytes")
                if not out:
                    raise self.error
                break
            if end - pos - 4 < length:
                break
            out.append(view[pos + 4:pos + 4 + length])
            pos += 4 + length
        if pos == end:
            self.start = self.filled = 0
        else:
            self.start = pos
        return out


def frame(msg: bytes | memoryview) -> list[bytes | memoryview]:
    return [LENGTH.pack(len(msg)), msg]


def _tune(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:  # BBR, a common default, paces with timers: under a tunnel that only costs CPU
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, CARRIER_CONGESTION)
    except OSError:
        pass
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(DEAD_AFTER * 1000))


def bind(t: Tunnel) -> socket.socket | None:
    if t.role is not Role.LISTEN:
        return None
    host, port = split_endpoint(t.endpoint)
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    return listener


class Pending:
    """A connection that has not yet sent an accepted initiation."""

    __slots__ = ("conn", "addr", "deadline", "reader", "doomed", "early")

    def __init__(self, conn: socket.socket, addr: Any, deadline: float, secure: bool):
        self.conn, self.addr, self.deadline = conn, addr, deadline
        # Until its initiation is accepted a connection may send nothing longer than one.
        self.reader = FrameReader(limit=noise.INITIATION_LEN if secure else MAX_MESSAGE)
        self.doomed = False
        self.early: list[bytes] = []


class TcpCarrier:
    def __init__(self, t: Tunnel, device: Device, peer: Peer | None, listener: socket.socket | None, stats: Stats):
        self.t, self.device, self.peer, self.listener, self.stats = t, device, peer, listener, stats
        self.drop = stats.drops
        self.host, self.port = split_endpoint(t.endpoint)
        self.lock = threading.Lock()  # sealing, sending, and every change of the peer's keypairs
        self.conn: socket.socket | None = None
        self.offered: collections.deque[Pending] = collections.deque()
        self.arrived = threading.Event()
        self.plain = memoryview(bytearray(MAX_MESSAGE))  # where a frame is decrypted to (main thread)
        self.gone: Callable[[DeviceGone], None] = _raise  # what the device thread does when the device goes
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self._last_report = 0.0
        self._internal_logged = -60.0

    # ------------------------------------------------------------ the process

    def start(self, done: Callable[[], None]) -> None:
        """The carrier's threads; `done` is called (from the last of them) once `stop()` has ended
        them all and closed the tunnel's socket and device descriptor."""
        main = threading.Thread(target=self._run_then_close, args=(done,), daemon=True, name=f"{self.t.name}")
        self.threads = [threading.Thread(target=self._device_to_peer, daemon=True, name=f"{self.t.name}:device")]
        if self.listener is not None:
            self.threads.append(threading.Thread(target=self._vet_forever, daemon=True, name=f"{self.t.name}:accept"))
        for thread in [*self.threads, main]:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.arrived.set()

    def _run_then_close(self, done: Callable[[], None]) -> None:
        try:
            self.run()
        except DeviceGone as exc:  # the tunnel ends (and the supervisor attaches afresh); no other
            self.gone(exc)
        finally:
            self.stopping.set()
            for thread in self.threads:
                thread.join()
            if self.listener is not None:
                self.listener.close()
            os.close(self.device.fd)
            done()

    def run(self) -> None:
        failing_since: float | None = None
        while not self.stopping.is_set():
            p = self._next_connection()
            if p is None:
                now = time.monotonic()
                self._report(now)
                failing_since = now if failing_since is None else failing_since
                self.stopping.wait(reconnect_delay(now - failing_since))
                continue
            failing_since = None
            conn = p.conn
            try:
                self._carry(p)
            except FrameError as exc:  # counted where it was found; a reader's too, here
                if isinstance(exc, FrameTooLarge):
                    self.drop(Drop.BAD_FRAME)
                self.stats.error(f"connection to {self.stats.peer}: {_why(exc)}")
            except DeviceGone:
                raise
            except OSError as exc:
                self.stats.error(f"connection to {self.stats.peer}: {_why(exc)}")
            except Exception:  # a connection never ends the forwarder: it is dropped, and counted
                self.drop(Drop.INTERNAL)
                self._log_internal("carrying a connection raised")
            finally:
                with self.lock:
                    if self.conn is conn:
                        self.conn = None
                _shutdown(conn)
                conn.close()

    def _next_connection(self) -> Pending | None:
        if self.listener is not None:
            while not self.offered:
                if self.stopping.is_set():
                    return None
                self.arrived.wait(TICK)
                self.arrived.clear()
                self._report(time.monotonic())
            return self.offered.popleft()
        try:
            return self._connect()
        except (OSError, FrameError) as exc:
            self.stats.set_state(LinkState.CONNECTING, None)
            self.stats.error(f"connecting to {self.t.endpoint}: {_why(exc)}")
            return None

    def _log_internal(self, what: str) -> None:
        now = time.monotonic()
        if now - self._internal_logged > 10.0:  # a traceback at most every 10 s
            self._internal_logged = now
            log.exception("%s (logged at most every 10 s)", what)

    def _report(self, now: float) -> None:
        if now - self._last_report >= 1.0:
            self._last_report = now
            peer = self.peer
            if peer is not None:
                self.stats.sessions(peer.handshakes, peer.last_handshake)
            if self.conn is None:
                self.stats.set_state(LinkState.CONNECTING, None)
            self.stats.report()

    # ------------------------------------------------------------ connecting end

    def _connect(self) -> Pending:
        conn = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        try:
            _tune(conn)
            p = Pending(conn, conn.getpeername(), 0.0, secure=False)
            peer = self.peer
            if peer is None:
                return p
            reader = p.reader
            deadline = time.monotonic() + CONNECT_TIMEOUT
            with self.lock:
                conn.sendall(b"".join(frame(peer.initiation(time.monotonic()))))
            source = source_key(conn.getpeername())
            while True:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                n = conn.recv_into(reader.space())
                if n == 0:
                    raise ConnectionError("the listener closed the connection during the handshake")
                for msg in reader.frames(n):
                    kind = msg[0]
                    if len(msg) < 4 or kind not in (noise.MSG_RESPONSE, noise.MSG_COOKIE_REPLY) \
                            or len(msg) != (noise.RESPONSE_LEN if kind == noise.MSG_RESPONSE else noise.COOKIE_REPLY_LEN):
                        raise FrameError("not a handshake response")
                    with self.lock:
                        why, reply = peer.on_handshake(msg, source, time.monotonic())
                        if why is not None:
                            self.drop(why)
                            raise FrameError(f"handshake refused: {why.value}")
                        if kind == noise.MSG_COOKIE_REPLY:  # under load: again, now with the cookie
                            conn.sendall(b"".join(frame(peer.initiation(time.monotonic()))))
                            continue
                        assert reply is not None  # the keepalive that confirms the session
                        conn.sendall(b"".join(frame(reply)))
                        return p
        except BaseException:
            conn.close()
            raise

    # ------------------------------------------------------------ listening end

    def _vet_forever(self) -> None:
        """Accepts, and serves every pending connection from one poll loop until it sends an
        initiation that peer.py accepts (then it is offered to the main thread) or it is closed."""
        assert self.listener is not None
        listener = self.listener
        listener.setblocking(False)
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        pending: dict[int, Pending] = {}

        def close(fd: int) -> None:
            p = pending.pop(fd)
            poller.unregister(fd)
            p.conn.close()

        while not self.stopping.is_set():
            try:
                events = poller.poll(250)
                now = time.monotonic()
                for fd in [fd for fd, p in pending.items() if p.deadline <= now]:
                    self.drop(Drop.HANDSHAKE_REFUSED)
                    close(fd)
                for fd, _ in events:
                    if fd == listener.fileno():
                        self._accept(listener, pending, poller, close)
                    elif fd in pending:
                        p = pending[fd]
                        if self._vet(p, now):
                            pending.pop(fd)
                            poller.unregister(fd)
                            self._offer(p)
                        elif p.doomed:
                            close(fd)
            except Exception:  # a connection never ends the accepting thread
                self.drop(Drop.INTERNAL)
                self._log_internal("vetting a connection raised")
                time.sleep(0.01)
        for fd in list(pending):
            close(fd)
        for p in self.offered:
            p.conn.close()

    def _accept(self, listener: socket.socket, pending: dict[int, Pending], poller: select.poll,
                close: Any) -> None:
        for _ in range(64):
            try:
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: let others finish first
                self.stats.error(f"accept: {exc.strerror or exc}")
                return
            conn.setblocking(False)
            same = [fd for fd, p in pending.items() if p.addr[0] == addr[0]]
            if len(same) >= PER_SOURCE:
                close(min(same, key=lambda fd: pending[fd].deadline))
            if len(pending) >= MAX_PENDING:
                close(min(pending, key=lambda fd: pending[fd].deadline))
            pending[conn.fileno()] = Pending(conn, addr, time.monotonic() + HANDSHAKE_DEADLINE, self.peer is not None)
            poller.register(conn.fileno(), select.POLLIN)

    def _vet(self, p: Pending, now: float) -> bool:
        """True once the connection's initiation is accepted (the response is sent on it). A
        connection that closes, sends something else or is refused is marked doomed."""
        try:
            n = p.conn.recv_into(p.reader.space())
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            n = 0
        try:
            msgs = p.reader.frames(n) if n else []
        except FrameError:
            self.drop(Drop.MALFORMED)
            p.doomed = True
            return False
        if not msgs:
            p.doomed = n == 0
            return False
        peer = self.peer
        if peer is None:  # insecure: the first frames are data, and the connection is the tunnel's
            p.early = [bytes(m) for m in msgs]
            return True
        for msg in msgs:
            if len(msg) != noise.INITIATION_LEN or bytes(msg[:4]) != b"\x01\0\0\0":
                self.drop(Drop.MALFORMED)
                p.doomed = True
                return False
            with self.lock:
                why, reply = peer.on_handshake(msg, source_key(p.addr), now)
            if reply is not None:
                try:
                    p.conn.send(b"".join(frame(reply)))  # 100 bytes into an empty send buffer
                except OSError:
                    p.doomed = True
                    return False
            if why is None:
                p.reader.allow(MAX_MESSAGE)
                return True
            self.drop(why)
            if reply is None:  # refused for good; a cookie reply leaves it time to try again
                p.doomed = True
                return False
        return False

    def _offer(self, p: Pending) -> None:
        p.conn.setblocking(True)
        _tune(p.conn)
        old = self.conn
        if old is not None:  # the peer came back (restarted): the new connection wins
            log.info("a new connection from %s replaces the current one", address_text(p.addr))
            _shutdown(old)
        self.offered.append(p)
        self.arrived.set()

    # ------------------------------------------------------------ carrying

    def _carry(self, p: Pending) -> None:
        peer, conn, reader = self.peer, p.conn, p.reader
        addr = conn.getpeername()
        conn.settimeout(None)  # blocking, with kernel-side timeouts: a receive is one system call
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, int(TICK * 1e6)))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(DEAD_AFTER), 0))
        with self.lock:
            self.conn = conn
            # A listener has only sent its response: the session is the tunnel's once the initiator
            # uses it (its first message confirms it), not before (a peer with another psk never does).
            unconfirmed = peer.next if peer is not None and self.t.role is Role.LISTEN else None
        if peer is not None:
            self.stats.sessions(peer.handshakes, peer.last_handshake)
        if unconfirmed is None:
            self.stats.set_state(LinkState.CONNECTED, address_text(addr))
        for msg in p.early:  # an insecure peer's first frames, read while it was vetted
            self._deliver(msg)
        if reader.error is not None:
            raise reader.error
        source = source_key(addr)
        last_heard, last_keepalive = time.monotonic(), 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if peer is not None:
                with self.lock:
                    for msg in peer.due(now):
                        conn.sendall(b"".join(frame(msg)))
                if now - peer.last_heard > DEAD_AFTER:
                    raise ConnectionError(f"nothing from the peer for {DEAD_AFTER:.0f} s")
            else:
                if now - last_heard > DEAD_AFTER:
                    raise ConnectionError(f"nothing from the peer for {DEAD_AFTER:.0f} s")
                if now - last_keepalive >= KEEPALIVE_INTERVAL:  # insecure: a unit of nothing
                    with self.lock:
                        conn.sendall(b"".join(frame(NOTHING)))
                    last_keepalive = now
            self._report(now)
            try:
                n = conn.recv_into(reader.space())
            except (BlockingIOError, InterruptedError):  # SO_RCVTIMEO: time for the timers
                continue
            if n == 0:
                raise ConnectionError("the peer closed the connection")
            last_heard = time.monotonic()
            for frame_ in reader.frames(n):
                self._message(conn, frame_, source, last_heard)
            if unconfirmed is not None and peer is not None and peer.current is unconfirmed:
                unconfirmed = None
                self.stats.sessions(peer.handshakes, peer.last_handshake)
                self.stats.set_state(LinkState.CONNECTED, address_text(addr))
            if reader.error is not None:
                raise reader.error

    def _message(self, conn: socket.socket, msg: memoryview, source: bytes, now: float) -> None:
        peer = self.peer
        if peer is None:
            self._deliver(msg)
            return
        n = len(msg)
        kind = int.from_bytes(msg[:4], "little") if n >= 4 else -1
        if kind == noise.MSG_TRANSPORT and n >= noise.TRANSPORT_MIN_LEN:
            with self.lock:
                kp = peer.keypair_for(msg, now)
                size = kp if isinstance(kp, Drop) else peer.open_with(kp, msg, self.plain, now)
            if isinstance(size, Drop):
                self.drop(size)
                raise FrameError("a frame that does not authenticate")
            if size:
                self._deliver(self.plain[:size])
            return
        if kind in (noise.MSG_INITIATION, noise.MSG_RESPONSE) and n == (
                noise.INITIATION_LEN if kind == noise.MSG_INITIATION else noise.RESPONSE_LEN):
            with self.lock:  # a rekey within the stream
                why, reply = peer.on_handshake(msg, source, now)
                if reply is not None:
                    conn.sendall(b"".join(frame(reply)))
            if why is not None:
                self.drop(why)
            return
        self.drop(Drop.MALFORMED)
        raise FrameError("a frame that is not a WireGuard message")

    def _deliver(self, plain: bytes | memoryview) -> None:
        why = self.device.deliver(plain)
        if why is None:
            self.stats.rx_packets += 1
            self.stats.rx_bytes += len(plain)
        else:
            self.drop(why)

    # ------------------------------------------------------------ device → peer

    def _device_to_peer(self) -> None:
        try:
            self._device_to_peer_forever()
        except DeviceGone as exc:  # the process ends with the device, from whichever thread
            self.gone(exc)

    def _device_to_peer_forever(self) -> None:
        """After one wait, whatever else the device already holds joins the batch (reads that do
        not wait), up to BATCH units, each sealed behind its length into one buffer and sent with
        one send: under load fewer sends and fewer wake-ups of the peer."""
        readers = [self.device.reader() for _ in range(BATCH)]
        out = memoryview(bytearray(BATCH * (MAX_MESSAGE + LENGTH.size)))
        poller = select.poll()
        poller.register(self.device.fd, select.POLLIN)
        while not self.stopping.is_set():
            units = []
            for reader in readers:
                unit = reader.read()
                if unit is None:
                    break
                if unit:
                    units.append(unit)
            if not units:
                poller.poll(TICK * 1000)  # the one wait: bounded, so a stop is seen
                continue
            with self.lock:
                conn, peer = self.conn, self.peer
                if conn is None:
                    self.drop(Drop.NO_SESSION, len(units))
                    continue
                now = time.monotonic()
                kp = peer.sender(now) if peer is not None else None
                if peer is not None and kp is None:
                    self.drop(Drop.NO_SESSION, len(units))
                    continue
                pos = 0
                for unit in units:
                    if kp is not None:
                        end = kp.seal_into(unit, out, pos + LENGTH.size)
                    else:
                        end = pos + LENGTH.size + len(unit)
                        out[pos + LENGTH.size:end] = unit
                    LENGTH.pack_into(out, pos, end - pos - LENGTH.size)
                    pos = end
                try:
                    conn.sendall(out[:pos])
                except OSError as exc:
                    self.drop(Drop.SEND_FAILED, len(units))
                    self.stats.error(f"send to the peer: {_why(exc)}")
                    _shutdown(conn)
                    continue
                if peer is not None:
                    peer.last_sent = now
            self.stats.tx_packets += len(units)
            self.stats.tx_bytes += sum(len(u) for u in units)


def _raise(exc: BaseException) -> None:
    raise exc


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.ETIMEDOUT):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


__all__ = ["FrameReader", "FrameError", "TcpCarrier", "bind", "frame", "MAX_MESSAGE"]
