"""One tunnel's data plane: the device on one side, a TCP stream or UDP socket on the other.

Runs as its own process, `python -m provisioner.tunnel.forwarder RUN_DIR`, started (and
restarted) by the tunnel's supervisor. The main thread keeps the connection to the peer and
moves peer → device. Device → peer runs beside it: over TCP in a second thread (both block
in system calls that release the GIL, so on two cores they overlap), over UDP in a forked
process, because there the per-packet Python work is the limit and two processes do not
share a GIL.

Speed comes from the device's offloads (see vnet.py): with `vnet_hdr` one read is up to
64 KB, which crosses TCP as one frame and UDP as one UDP_SEGMENT send of real packets.
Nothing from the network is trusted: frames are bounded, virtio headers sanitized, and a
write the device refuses is a counted drop.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import logging.handlers
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
from pathlib import Path
from typing import Any, NoReturn

from ..kernel import tun
from ..model import DeviceType, Role, Transport, Tunnel, split_endpoint, tunnel_from_dict
from . import runtime, vnet, wire

TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN = 0x01, 0x02, 0x04, 0x08
SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104  # Python 3.11 has no names for these
GSO_SEND_LIMIT = 65000  # bytes of datagrams in one UDP_SEGMENT send (the IP length limit, with room)
READ_SIZE = wire.MAX_UNIT + 64
PI_LEN = 4
CARRIER_CONGESTION = b"cubic"  # for the TCP connection that carries a tunnel
BATCH = 8  # units read from the device and sent to a TCP peer at once, at most
HELLO_INTERVAL = 0.5  # seconds between hellos while a UDP tunnel looks for its peer

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

    def to_dict(self, outbound: Outbound | None = None) -> dict[str, Any]:
        tx_packets, tx_bytes, drops = self.tx_packets, self.tx_bytes, Counter(self.drops)
        if outbound is not None:  # the sending process counts for itself
            tx_packets, tx_bytes, sent_drops = outbound.counts()
            drops.update(sent_drops)
        return {"state": self.state, "peer": self.peer, "since": self.since,
                "rx_packets": self.rx_packets, "rx_bytes": self.rx_bytes,
                "tx_packets": tx_packets, "tx_bytes": tx_bytes,
                "drops": {k: v for k, v in drops.items() if v}, "last_error": self.last_error}


class Outbound:
    """What the two processes of a UDP forwarder share, in one anonymous shared mapping.

    The receiving process hears the peer and says where to send (and how large a datagram
    may be); the sending process reads that and publishes its counters. A seqlock keeps the
    sender from using half an update: the generation is odd while it is being written.
    """

    PEER = struct.Struct("<QHHB16s")  # generation, port, room, family (0 none, 4, 6), address
    COUNTS = struct.Struct("<QQQQQ")  # packets, bytes, then drops by the reasons below
    DROPS = ("no peer connected", "send to the peer failed",
             "a super-packet from the device that cannot be segmented")

    def __init__(self) -> None:
        self.mm = mmap.mmap(-1, self.PEER.size + self.COUNTS.size)
        self._seen = -1
        self._peer: tuple[Any, int] = (None, 1472)

    def set_peer(self, addr: Any, room: int) -> None:
        gen = self.generation() + 1
        struct.pack_into("<Q", self.mm, 0, gen)  # odd: being written
        family, packed = 0, b""
        if addr is not None:
            family = 6 if ":" in addr[0] else 4
            packed = socket.inet_pton(socket.AF_INET6 if family == 6 else socket.AF_INET, addr[0])
        self.PEER.pack_into(self.mm, 0, gen, addr[1] if addr else 0, room, family, packed)
        struct.pack_into("<Q", self.mm, 0, gen + 1)

    def generation(self) -> int:
        return int(struct.unpack_from("<Q", self.mm, 0)[0])

    def peer(self) -> tuple[Any, int]:
        """(address or None, room): cheap when nothing changed, which is almost always."""
        gen = self.generation()
        if gen == self._seen:
            return self._peer
        while True:
            gen, port, room, family, packed = self.PEER.unpack_from(self.mm, 0)
            if not gen % 2 and gen == self.generation():
                break
        addr = None
        if family:
            size = 16 if family == 6 else 4
            addr = (socket.inet_ntop(socket.AF_INET6 if family == 6 else socket.AF_INET, packed[:size]), port)
        self._seen, self._peer = gen, (addr, room)
        return self._peer

    def publish(self, packets: int, nbytes: int, drops: list[int]) -> None:
        self.COUNTS.pack_into(self.mm, self.PEER.size, packets, nbytes, *drops)

    def counts(self) -> tuple[int, int, dict[str, int]]:
        packets, nbytes, *drops = self.COUNTS.unpack_from(self.mm, self.PEER.size)
        return packets, nbytes, dict(zip(self.DROPS, drops, strict=True))


def open_device(t: Tunnel) -> tuple[int, bool]:
    """Attach to the persistent device with its own flags; (fd, offloads on)."""
    try:
        socket.if_nametoindex(t.device)  # never let TUNSETIFF create a device of its own
    except OSError:
        raise SystemExit(f"device {t.device} does not exist (provision apply creates it)") from None
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    flags = tun.IFF_TUN if t.device_type is DeviceType.TUN else tun.IFF_TAP
    flags |= 0 if t.pi else tun.IFF_NO_PI
    flags |= tun.IFF_VNET_HDR if t.vnet_hdr else 0
    flags |= tun.IFF_MULTI_QUEUE if t.multi_queue else 0
    try:
        fcntl.ioctl(fd, tun.TUNSETIFF, tun.IFREQ.pack(t.device.encode(), flags))
    except OSError as exc:
        raise SystemExit(f"cannot attach to {t.device}: {exc.strerror} (are its flags as declared?)") from None
    offloads = False
    if t.vnet_hdr:
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", vnet.HDR_LEN))
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)
            offloads = True
        except OSError as exc:
            log.warning("no TSO on %s (%s): one packet per read", t.device, exc.strerror)
    return fd, offloads


class Forwarder:
    def __init__(self, t: Tunnel, run_dir: Path):
        self.t, self.run_dir = t, run_dir
        self.stats = Stats()
        self.fd, self.offloads = open_device(t)
        self.tap = t.device_type is DeviceType.TAP
        self.pi = PI_LEN if t.pi else 0
        self.hello = wire.Hello(str(t.device_type), t.pi, t.vnet_hdr)
        self.host, self.port = split_endpoint(t.endpoint)
        self._send_lock = threading.Lock()
        self._conn: socket.socket | None = None  # TCP: the live connection
        self._udp: socket.socket | None = None
        self._udp_peer: Any = None  # UDP: where the peer was last heard from
        self._coalescer = (vnet.Coalescer(self.tap, self._write, bytes([wire.DATA]))
                           if t.vnet_hdr and not t.pi and t.transport is Transport.UDP else None)
        self._outbound: Outbound | None = None  # UDP: shared with the sending process
        self._last_heard = 0.0

    # ------------------------------------------------------------ the process

    def run(self) -> None:
        threading.Thread(target=self._report_forever, daemon=True, name="stats").start()
        if self.t.transport is Transport.TCP:
            threading.Thread(target=self._device_to_tcp, daemon=True, name="device->peer").start()
            self._tcp_forever()
        else:
            self._udp_forever()

    def _report_forever(self) -> None:
        while True:
            self._report()
            time.sleep(1.0)

    def _report(self) -> None:
        runtime.write_json(self.run_dir / runtime.STATS, self.stats.to_dict(self._outbound))

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
        os._exit(3)

    def _deliver(self, unit: memoryview) -> None:
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
        offered: queue.Queue[socket.socket] = queue.Queue()
        if self.t.role is Role.LISTEN:
            threading.Thread(target=self._accept_forever, args=(offered,), daemon=True, name="accept").start()
        backoff = Backoff()
        while True:
            try:
                conn = offered.get() if self.t.role is Role.LISTEN else self._tcp_connect()
            except (OSError, wire.ProtocolError) as exc:
                self._lost(f"connecting to {self.t.endpoint}: {_why(exc)}")
                backoff.sleep()
                continue
            backoff.reset()
            self._conn = conn
            peer = _address(conn.getpeername())
            self._connected(peer)
            keepalive = threading.Thread(target=self._tcp_keepalive, args=(conn,), daemon=True)
            keepalive.start()
            try:
                self._tcp_to_device(conn)
            except (OSError, wire.ProtocolError) as exc:
                self._lost(f"connection to {peer}: {_why(exc)}")
            finally:
                self._conn = None
                conn.close()

    def _tcp_connect(self) -> socket.socket:
        conn = socket.create_connection((self.host, self.port), timeout=5.0)
        return self._tcp_handshake(conn)

    def _tcp_handshake(self, conn: socket.socket) -> socket.socket:
        """Say hello, hear the peer's; then a blocking socket with kernel-side timeouts."""
        conn.settimeout(5.0)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:  # BBR, a common default, paces with timers: under a tunnel that only costs CPU (~15% here)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, CARRIER_CONGESTION)
        except OSError:
            pass  # not built into this kernel: the host's default
        conn.sendall(wire.frame_header(wire.HELLO, len(self.hello.encode())) + self.hello.encode())
        word = wire.FRAME.unpack(_recv_exactly(conn, wire.FRAME_LEN))[0]  # exactly the hello: no data read ahead
        kind, length = word >> 24, word & 0xFFFFFF
        if kind != wire.HELLO or length > 4096:
            raise wire.ProtocolError("the peer did not start with a hello")
        self.hello.check_peer(wire.Hello.decode(_recv_exactly(conn, length)))
        conn.settimeout(None)
        # No data for DEAD_AFTER seconds while the peer sends keepalives every 2 s: it is gone.
        timeout = struct.pack("ll", int(wire.DEAD_AFTER), 0)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(wire.DEAD_AFTER * 1000))
        return conn

    def _accept_forever(self, offered: queue.Queue[socket.socket]) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bound = Backoff()
        while True:
            try:
                listener.bind((self.host, self.port))
                break
            except OSError as exc:  # the port is still held by a forwarder that is going away
                self.stats.error(f"cannot listen on {self.t.endpoint}: {exc.strerror}")
                bound.sleep()
        listener.listen(8)
        log.info("listening on %s (tcp)", self.t.endpoint)
        while True:
            conn, addr = listener.accept()
            try:
                self._tcp_handshake(conn)
            except (OSError, wire.ProtocolError) as exc:
                self.stats.error(f"refused a connection from {_address(addr)}: {_why(exc)}")
                conn.close()
                continue
            old = self._conn
            if old is not None:  # the peer came back (restarted): the new connection wins
                log.info("a new connection from %s replaces the current one", _address(addr))
                _shutdown(old)
            offered.put(conn)

    def _tcp_keepalive(self, conn: socket.socket) -> None:
        frame = wire.frame_header(wire.KEEPALIVE, 0)
        while self._conn is conn:
            time.sleep(wire.KEEPALIVE_INTERVAL)
            try:
                with self._send_lock:
                    conn.sendall(frame)
            except OSError:
                _shutdown(conn)
                return

    def _tcp_to_device(self, conn: socket.socket) -> None:
        reader = wire.FrameReader()
        while True:
            n = conn.recv_into(reader.space())
            if n == 0:
                raise ConnectionError("the peer closed the connection")
            for kind, body in reader.frames(n):
                if body is None:
                    self.stats.drop(f"frame larger than {wire.MAX_UNIT} bytes")
                elif kind == wire.DATA:
                    self._deliver(body)
                elif kind == wire.HELLO:
                    raise wire.ProtocolError("a second hello on one connection")

    def _device_to_tcp(self) -> None:
        """Units go out in batches: after one blocking read, whatever else the device already
        holds (a read that does not wait, RWF_NOWAIT) joins it, up to BATCH units, in one send.
        Under load that is fewer sends and fewer wake-ups of the peer; alone, a unit waits for
        nothing."""
        bufs = [bytearray(READ_SIZE) for _ in range(BATCH)]
        views = [memoryview(b) for b in bufs]
        parts: list[bytes | memoryview] = []
        nowait = os.RWF_NOWAIT
        while True:
            n = self._read(bufs[0])
            parts.clear()
            parts += (wire.frame_header(wire.DATA, n), views[0][:n])
            units, nbytes = 1, n
            for i in range(1, BATCH):
                try:
                    n = os.preadv(self.fd, [bufs[i]], -1, nowait)
                except OSError:
                    break
                parts += (wire.frame_header(wire.DATA, n), views[i][:n])
                units += 1
                nbytes += n
            conn = self._conn
            if conn is None:
                self.stats.drop("no peer connected", units)
                continue
            try:
                with self._send_lock:
                    _sendmsg_all(conn, parts)
            except OSError as exc:
                self.stats.drop("send to the peer failed", units)
                if self._conn is conn:
                    self.stats.error(f"send to the peer: {_why(exc)}")
                    _shutdown(conn)
                continue
            self.stats.tx_packets += units
            self.stats.tx_bytes += nbytes

    # ------------------------------------------------------------ UDP

    def _udp_forever(self) -> None:
        connect = self.t.role is Role.CONNECT
        bind_host = ("::" if ":" in self.host else "0.0.0.0") if connect else self.host
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        bound = Backoff()
        while True:
            try:
                sock.bind((bind_host, 0 if connect else self.port))
                break
            except OSError as exc:
                self.stats.error(f"cannot bind {bind_host}:{self.port}: {exc.strerror}")
                bound.sleep()
        try:
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            log.info("no UDP_GRO here: one datagram per receive")
        # A blocking socket whose receives give up after HELLO_INTERVAL (kernel-side, so that a
        # receive is one system call, not a poll and a receive).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, int(HELLO_INTERVAL * 1e6)))
        self._udp = sock
        if not connect:
            log.info("listening on %s (udp)", self.t.endpoint)
        self._start_sender(sock)
        hello = bytes([wire.HELLO]) + self.hello.encode()
        keepalive = bytes([wire.KEEPALIVE])
        # Two receive buffers, used in turn, so that a run of segments being glued together
        # can continue from one receive into the next (see Coalescer.holds).
        buffers = (bytearray(1 << 17), bytearray(1 << 17))
        views = tuple(memoryview(b) for b in buffers)
        turn = 0
        coalescer = self._coalescer
        cmsg_space = socket.CMSG_SPACE(4)
        last_sent = 0.0
        while True:
            now = time.monotonic()
            if self.stats.state == "connected" and now - self._last_heard > wire.DEAD_AFTER:
                self._lost(f"nothing from {self.stats.peer} for {wire.DEAD_AFTER:.0f} s")
                assert self._outbound is not None
                self._outbound.set_peer(None, 0)
                if connect:
                    self._udp_peer = None
            if now - last_sent >= (wire.KEEPALIVE_INTERVAL if self.stats.state == "connected" else HELLO_INTERVAL):
                last_sent = now
                target = self._udp_peer
                if connect and self.stats.state != "connected":
                    try:  # resolve again each time: the peer may come back elsewhere
                        found = socket.getaddrinfo(self.host, self.port, family, socket.SOCK_DGRAM)[0][4]
                        target = (str(found[0]), int(found[1]))
                    except OSError as exc:
                        self._lost(f"resolving {self.host}: {_why(exc)}")
                        target = None
                    if target is not None:
                        self._udp_send_control(sock, hello, target)
                elif target is not None:
                    self._udp_send_control(sock, keepalive, target)
            buf, view = buffers[turn], views[turn]
            if coalescer is not None and coalescer.holds(buf):
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
            turn ^= 1
            if flags & socket.MSG_TRUNC:
                self.stats.drop("datagram larger than the receive buffer")
                continue
            size = n
            for level, kind, data in anc:
                if level == SOL_UDP and kind == UDP_GRO:
                    size = struct.unpack("i", data[:4])[0]
            self._udp_received(sock, view, n, size, addr, hello)

    def _udp_received(self, sock: socket.socket, view: memoryview, n: int, size: int, addr: Any,
                      hello: bytes) -> None:
        """`n` bytes of datagrams of `size` bytes each (the last may be shorter), all from `addr`."""
        if addr != self._udp_peer:
            first = view[:min(size, n)]
            if len(first) and first[0] == wire.HELLO:
                try:
                    self.hello.check_peer(wire.Hello.decode(first[1:]))
                except wire.ProtocolError as exc:
                    self.stats.error(f"refused {_address(addr)}: {exc}")
                    return
                if self.t.role is Role.LISTEN:
                    self._udp_send_control(sock, hello, addr)
                self._udp_peer = addr
                assert self._outbound is not None
                self._outbound.set_peer(addr, _path_room(addr, sock.family))
                self._connected(_address(addr))
                return
            self.stats.drop("datagram from an unknown sender")
            return
        self._last_heard = time.monotonic()
        coalescer = self._coalescer
        continues = coalescer.continues if coalescer is not None else None
        for off in range(0, n, size):
            end = min(off + size, n)
            if continues is not None and continues(view, off, end):
                continue  # the next segment of a TCP run: already taken
            kind = view[off]
            if kind == wire.DATA:
                unit = view[off + 1:end]
                if coalescer is None:
                    self._deliver(unit)
                    continue
                if len(unit) < vnet.HDR_LEN:
                    self.stats.drop("shorter than the virtio header")
                    continue
                try:
                    coalescer.add(unit)
                except vnet.BadPacket as exc:
                    self.stats.drop(str(exc))
            elif kind == wire.HELLO:
                if self.t.role is Role.LISTEN:
                    self._udp_send_control(sock, hello, addr)
                if self.stats.state != "connected":
                    self._connected(_address(addr))

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
        data_byte = bytes([wire.DATA])
        segmenting = self.t.vnet_hdr and self.offloads
        packets = nbytes = 0
        drops = [0] * len(Outbound.DROPS)
        no_peer, send_failed, unsegmentable = range(3)
        gso = True
        for unit in self._read_units():
            peer, room = outbound.peer()
            if peer is None:
                drops[no_peer] += 1
            elif segmenting and unit[self.pi + 1] != vnet.GSO_NONE:
                p = self.pi
                prefix = data_byte + bytes(unit[:p])
                try:
                    pieces = vnet.segment(unit[p:p + vnet.HDR_LEN], unit[p + vnet.HDR_LEN:], self.tap,
                                          room - len(prefix) - vnet.HDR_LEN, prefix)
                except (vnet.BadPacket, IndexError):
                    drops[unsegmentable] += 1
                else:
                    sent, gso = _send_batch(sock, pieces, peer, gso)
                    packets += sent
                    nbytes += sum(len(d) for d in pieces[:sent]) - sent * len(prefix)
                    drops[send_failed] += len(pieces) - sent
            else:
                try:
                    sock.sendmsg((data_byte, unit), (), 0, peer)
                    packets += 1
                    nbytes += len(unit)
                except OSError:
                    drops[send_failed] += 1
            outbound.publish(packets, nbytes, drops)


def _send_batch(sock: socket.socket, datagrams: list[bytes], peer: Any, gso: bool) -> tuple[int, bool]:
    """Equal-sized datagrams (the last may be shorter) in as few UDP_SEGMENT sends as fit.
    Returns how many were sent, and whether UDP_SEGMENT is still worth trying."""
    size = len(datagrams[0])
    most = max(1, min(vnet.MAX_SEGMENTS, GSO_SEND_LIMIT // size))
    sends = -(-len(datagrams) // most)
    per_send = -(-len(datagrams) // sends)  # even sends: 24 + 23, not 44 + 3
    sent = 0
    for i in range(0, len(datagrams), per_send):
        chunk = datagrams[i:i + per_send]
        try:
            if gso and len(chunk) > 1:
                try:
                    sock.sendmsg((b"".join(chunk),), ((SOL_UDP, UDP_SEGMENT, struct.pack("=H", size)),), 0, peer)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                        raise
                    log.info("no UDP_SEGMENT here (%s): one send per datagram", exc.strerror)
                    gso = False
                    for d in chunk:
                        sock.sendto(d, peer)
            else:
                for d in chunk:
                    sock.sendto(d, peer)
        except OSError:
            continue
        sent += len(chunk)
    return sent, gso


class Backoff:
    """0.2 s, doubling, at most 5 s, so a peer that comes back is found within 5 s."""

    def __init__(self, first: float = 0.2, most: float = 5.0):
        self.first, self.most, self.delay = first, most, first

    def sleep(self) -> None:
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, self.most)

    def reset(self) -> None:
        self.delay = self.first


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


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0])
    handler = logging.handlers.RotatingFileHandler(run_dir / runtime.LOG, maxBytes=runtime.LOG_BYTES,
                                                   backupCount=1)
    handler.setFormatter(logging.Formatter("%(asctime)s forwarder[%(process)d] %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    spec = runtime.read_json(run_dir / runtime.SPEC)
    if spec is None:
        log.error("no spec in %s", run_dir)
        return 2
    t = tunnel_from_dict(spec)
    try:
        forwarder = Forwarder(t, run_dir)
    except SystemExit as exc:
        log.error("%s", exc)
        runtime.write_json(run_dir / runtime.STATS, {"state": "connecting", "last_error": str(exc)})
        return 2
    log.info("%s on %s (%s %s %s, offloads %s)", t.name, t.device, t.transport, t.role, t.endpoint,
             "on" if forwarder.offloads else "off")
    forwarder.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
