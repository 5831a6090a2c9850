"""The UDP carrier: one tunnel's device and socket, served by the data plane's loop (dataplane.py),
which calls `handlers()` when a descriptor is readable and `tick()` when its timers are due.

Every datagram is one WireGuard message. What arrives is checked at fixed offsets before
anything else: the first four bytes are the type (a little-endian u32, so WireGuard's three
reserved bytes must be zero) and the size must be the type's (handshake messages) or at
least the transport minimum. Transport messages go straight to their keypair (a dict lookup,
the replay window, one AEAD); handshake messages go through the gate (gate.py) to the
peer's state machine (peer.py). A datagram that raises anything is a counted INTERNAL drop
and a rate-limited log line, never the end of the loop (nor of another tunnel).

Device → peer: whatever the device holds is read without waiting (its offloads are off over
UDP, so one read is one packet), sealed, and sent in runs of equal-sized datagrams with one
UDP_SEGMENT send each. Peer → device: a receive takes a run of datagrams at once (UDP_GRO).
"""

from __future__ import annotations

import collections
import concurrent.futures
import errno
import functools
import ipaddress
import logging
import socket
import struct
import os
import time
from collections.abc import Callable

from ..hints import Any
from ..model import Role, Tunnel, split_endpoint
from . import fastpath, noise
from .device import READ_SIZE, Device, DeviceGone, Gro
from .drops import Drop
from .keypair import Keypair
from .peer import Peer
from .stats import LinkState, Stats
from .timers import DEAD_AFTER, KEEPALIVE_INTERVAL

SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104  # Python 3.11 has no names for these
MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: IntFlag arithmetic costs a microsecond a datagram
IP_MTU_DISCOVER, IPV6_MTU_DISCOVER, IP_PMTUDISC_DONT, IP_MTU, IPV6_MTU = 10, 23, 0, 14, 24
GSO_SEND_LIMIT = 65000  # bytes of datagrams in one UDP_SEGMENT send
MAX_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS
SEND_BATCH = 64  # units read from the device per turn of the loop, at most
RECEIVE_BATCH = 16  # receives per turn of the loop, at most
MAX_STAGED = 128  # units kept while a handshake is under way (WireGuard's queue length)
OUT_SIZE = 1 << 18  # bytes of sealed datagrams per turn of the loop, at most (with OUT_SLACK to spare)
OUT_SLACK = READ_SIZE + 64
IDLE_TICK = 2.0  # the longest a tunnel's timers sleep (the peer's own timers are usually sooner)
HANDSHAKE_SIZES = {noise.MSG_INITIATION: noise.INITIATION_LEN, noise.MSG_RESPONSE: noise.RESPONSE_LEN,
                   noise.MSG_COOKIE_REPLY: noise.COOKIE_REPLY_LEN}
TRANSPORT = noise.MSG_TRANSPORT
# Scratch space shared by every UDP tunnel of the data plane: one loop runs them all, one turn
# at a time, and no turn leaves anything in them (a GRO run is flushed at the end of its
# receive). Per tunnel they were 0.7 MB: 350 MB for a hub of 500.
RECEIVE_BUFFER = bytearray(1 << 17)
RECEIVE_VIEW = memoryview(RECEIVE_BUFFER)
OUT = memoryview(bytearray(OUT_SIZE))  # sealed datagrams, side by side, for one send
PLAIN = memoryview(bytearray(1 << 17))  # where a datagram is decrypted to (without GRO)
GRO = memoryview(bytearray(1 << 18))  # where a GRO run is glued

log = logging.getLogger("provision.forwarder")


@functools.cache
def _resolver() -> concurrent.futures.ThreadPoolExecutor:
    """One thread for the data plane's name lookups, made at the first (never before the fork)."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="resolve")


def source_key(addr: Any) -> bytes:
    """The source as WireGuard's cookie MACs it: address bytes, then the port (big-endian)."""
    host = addr[0]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.inet_pton(family, host) + int(addr[1]).to_bytes(2, "big")


def address_text(addr: Any) -> str:
    host = str(addr[0]).removeprefix("::ffff:")
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


def bind(t: Tunnel) -> socket.socket:
    """The socket, bound while we still may (a low port needs privilege)."""
    host, port = split_endpoint(t.endpoint)
    connect = t.role is Role.CONNECT
    bind_host = ("::" if ":" in host else "0.0.0.0") if connect else host
    sock = socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((bind_host, 0 if connect else port))
    # A message larger than the path is fragmented by the kernel rather than refused: the
    # device's MTU, not the path, decides how large a packet gets (WireGuard picks 1420).
    if sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IP_PMTUDISC_DONT)
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        log.info("no UDP_GRO here: one datagram per receive")
    # Blocking, so that a full send buffer holds the sender back (as the kernel holds back the
    # device's own queue) instead of losing a whole run of datagrams; receives never wait.
    sock.setblocking(True)
    return sock


class UdpCarrier:
    def __init__(self, t: Tunnel, device: Device, peer: Peer | None, sock: socket.socket, stats: Stats,
                 endpoint: Any = None):
        self.t, self.device, self.peer, self.sock, self.stats = t, device, peer, sock, stats
        self.drop = stats.drops
        self.host, self.port = split_endpoint(t.endpoint)
        # Where the peer is: resolved (connect), or learned from it (listen). A listener that restarts
        # is told where the peer was (by its supervisor, from the last forwarder's counters), and
        # starts a handshake there at once instead of waiting for the peer to notice the silence.
        self.endpoint: Any = endpoint
        if endpoint is not None and peer is not None:
            peer.want_session(time.monotonic())
        self.staged: collections.deque[bytes | memoryview] = collections.deque(maxlen=MAX_STAGED)
        self.gso = True
        self.reader = device.reader()
        self.out, self.plain = OUT, PLAIN
        self.gro = Gro(device, GRO) if device.vnet_hdr and not device.pi else None
        # WireGuard's form on an encrypted tun: a receive's run is opened and written in one call
        # (_open_run); our form (tap, compress), insecure tunnels and a pi header go datagram by datagram.
        self.runs = peer is not None and device.wireguard and not device.pi
        self.room = 0  # the largest datagram that reaches the endpoint unfragmented (UDP_SEGMENT's limit)
        self._room_for: Any = None
        self._internal_logged = -60.0
        self._lookup: concurrent.futures.Future[Any] | None = None  # a name being resolved
        self.timers_moved = False  # something happened that the timers must see at once (a handshake)
        self._last_keepalive = self._heard = -60.0  # insecure tunnels: our last keepalive, the peer's last word

    # ------------------------------------------------------------ what the data plane's loop calls

    def start(self) -> None:
        if self.t.role is Role.CONNECT:
            self._resolve()

    def handlers(self) -> dict[int, Callable[[], None]]:
        """What to call when each of our descriptors is readable."""
        return {self.device.fd: self._send_from_device, self.sock.fileno(): self._receive}

    def tick(self, now: float) -> float:
        """Timers; how long until they want us again."""
        return self._tick(now)

    def close(self) -> None:
        """Our socket and our descriptor on the device (the supervisor keeps its own: the device
        keeps its carrier)."""
        self.sock.close()
        os.close(self.device.fd)

    def _tick(self, now: float) -> float:
        """Timers: handshakes, keepalives, the state. Returns how long the loop may sleep (the
        data plane reports every tunnel's counters together: dataplane.Plane.report)."""
        peer = self.peer
        wait = IDLE_TICK
        if peer is not None:
            if self.endpoint is not None or self.t.role is Role.CONNECT:
                for msg in peer.due(now):
                    if self.endpoint is None and not self._resolve():
                        break
                    self._send(msg, self.endpoint)
                wait = min(wait, peer.next_event(now))  # (a listener nobody spoke to has no timer to run)
            state = LinkState.CONNECTED if peer.connected(now) else LinkState.CONNECTING
            self.stats.sessions(peer.handshakes, peer.last_handshake)
        else:
            if self.t.role is Role.CONNECT and now - self._last_keepalive >= KEEPALIVE_INTERVAL and self._resolve():
                self._send(b"", self.endpoint)  # insecure: an empty datagram says we are here
                self._last_keepalive = now
            state = LinkState.CONNECTED if now - self._heard < DEAD_AFTER else LinkState.CONNECTING
        self.stats.set_state(state, address_text(self.endpoint) if self.endpoint else None)
        return max(0.001, wait)

    def _resolve(self) -> bool:
        """Where a connecting end's peer is (at start, until it resolves; after that the peer is
        where its authenticated messages come from). An address as written is taken at once; a
        name is looked up in a thread of its own, so a slow DNS server never stalls the other
        tunnels of the data plane: False until the answer is in."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            pass
        else:
            self.endpoint = (self.host, self.port)
            return True
        lookup = self._lookup
        if lookup is None:
            self._lookup = _resolver().submit(socket.getaddrinfo, self.host, self.port, self.sock.family,
                                              socket.SOCK_DGRAM)
            return False
        if not lookup.done():
            return False
        self._lookup = None
        try:
            found = lookup.result()[0][4]
        except OSError as exc:
            self.stats.error(f"resolving {self.host}: {exc.strerror or exc}")
            return False
        self.endpoint = (str(found[0]), int(found[1]))
        return True

    def _send(self, data: bytes | memoryview, addr: Any, quiet: bool = False) -> None:
        try:
            self.sock.sendto(data, addr)
        except BlockingIOError:
            self.drop(Drop.SEND_FAILED)
        except OSError as exc:
            self.drop(Drop.SEND_FAILED)
            if not quiet:
                self.stats.error(f"send to {address_text(addr)}: {exc.strerror or exc}")

    # ------------------------------------------------------------ device → peer

    def _send_from_device(self) -> None:
        """What the device holds, up to SEND_BATCH units, sealed side by side into one buffer and sent
        in as few sends as the sizes allow."""
        peer, reader, out = self.peer, self.reader, self.out
        now = time.monotonic()
        kp = peer.sender(now) if peer is not None else None
        if kp is not None and not reader.compress:  # the common case: read and sealed in one call
            sealed, size, unsegmentable = reader.read_seal(kp, SEND_BATCH, out, 0)
            if unsegmentable:
                self.drop(Drop.UNSEGMENTABLE, unsegmentable)
            if sealed:
                self._send_out(sealed, size, now)
            return
        if reader.segment:  # TSO on and no session yet: the packets wait for one
            self._stage_packets(peer)
            return
        lengths: list[int] = []
        pos = nbytes = 0
        room = len(out) - OUT_SLACK
        for _ in range(SEND_BATCH):
            payload = reader.read()
            if payload is None:
                break
            size = len(payload)
            if size == 0:
                continue
            nbytes += size
            if kp is not None:
                end = kp.seal_into(payload, out, pos)
            elif peer is None:  # insecure: the unit as it is
                end = pos + size
                out[pos:end] = payload
            else:
                if len(self.staged) == MAX_STAGED:
                    self.drop(Drop.NO_SESSION)  # the oldest goes, as in WireGuard
                self.staged.append(bytes(payload))
                self.timers_moved = True  # a session is wanted now, not at the next tick
                continue
            lengths.append(end - pos)
            pos = end
            if pos > room:
                break
        if lengths:
            self._send_out(lengths, nbytes, now)

    def _stage_packets(self, peer: Peer | None) -> None:
        for _ in range(SEND_BATCH):
            packets = self.reader.read_packets()
            if packets is None:
                return
            for packet in packets:
                if peer is None or len(self.staged) == MAX_STAGED:
                    self.drop(Drop.NO_SESSION)
                    if peer is None:
                        continue
                self.staged.append(packet + bytes(fastpath.padded(len(packet), self.device.mtu) - len(packet)))

    def _send_out(self, lengths: list[int], nbytes: int, now: float) -> None:
        if self.endpoint is None:
            self.drop(Drop.NO_SESSION, len(lengths))
            return
        self.stats.tx_packets += self._send_all(self.out, lengths, self.endpoint)
        self.stats.tx_bytes += nbytes
        if self.peer is not None:
            self.peer.last_sent = now

    def _flush_staged(self, kp: Keypair) -> None:
        """What waited for a session goes out on it, in order."""
        if not self.staged or self.endpoint is None:
            return
        lengths: list[int] = []
        pos = nbytes = 0
        while self.staged and pos < len(self.out) - OUT_SLACK:
            payload = self.staged.popleft()
            end = kp.seal_into(payload, self.out, pos)
            lengths.append(end - pos)
            nbytes += len(payload)
            pos = end
        self._send_out(lengths, nbytes, time.monotonic())
        self.staged.clear()

    def _path_room(self, addr: Any) -> int:
        """The largest UDP payload that reaches `addr` without fragments: the route's MTU, less headers."""
        if addr != self._room_for:
            self._room_for = addr
            probe = socket.socket(self.sock.family, socket.SOCK_DGRAM)
            try:
                probe.connect(addr)
                if self.sock.family == socket.AF_INET6:
                    self.room = probe.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU) - 48
                else:
                    self.room = probe.getsockopt(socket.IPPROTO_IP, IP_MTU) - 28
            except OSError:
                self.room = 1232
            finally:
                probe.close()
        return self.room

    def _send_all(self, buf: memoryview, lengths: list[int], addr: Any) -> int:
        """The datagrams laid end to end in buf: runs of equal size (the last of a run may be
        shorter) in one UDP_SEGMENT send each, when they fit the path (the kernel refuses larger
        segments); returns how many were sent."""
        room = self._path_room(addr)
        sent, i, count, pos = 0, 0, len(lengths), 0
        sock = self.sock
        while i < count:
            size = lengths[i]
            j, end = i + 1, pos + size
            limit = min(count, i + min(MAX_SEGMENTS, max(1, GSO_SEND_LIMIT // size)))
            while j < limit and lengths[j] == size:
                end += size
                j += 1
            if j < limit and lengths[j] < size:  # a shorter one may end the run
                end += lengths[j]
                j += 1
            if j - i > 1 and self.gso and size <= room:
                try:
                    sock.sendmsg((buf[pos:end],), ((SOL_UDP, UDP_SEGMENT, struct.pack("=H", size)),), 0, addr)
                    sent += j - i
                except OSError as exc:
                    if exc.errno in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                        log.info("no UDP_SEGMENT here (%s): one send per datagram", exc.strerror)
                        self.gso = False
                        continue
                    self.drop(Drop.SEND_FAILED, j - i)
            else:
                p = pos
                for k in range(i, j):
                    try:
                        sock.sendto(buf[p:p + lengths[k]], addr)
                        sent += 1
                    except OSError:
                        self.drop(Drop.SEND_FAILED)
                    p += lengths[k]
            i, pos = j, end
        return sent

    # ------------------------------------------------------------ peer → device

    def _receive(self) -> None:
        buf = RECEIVE_BUFFER
        view = RECEIVE_VIEW
        space = socket.CMSG_SPACE(4)
        for _ in range(RECEIVE_BATCH):
            try:
                n, anc, flags, addr = self.sock.recvmsg_into((buf,), space, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # an ICMP error for something we sent, reported here
                self.stats.error(f"receive: {exc.strerror or exc}")
                continue
            if flags & MSG_TRUNC:
                self.drop(Drop.MALFORMED)
                continue
            size = n
            for level, kind, data in anc:
                if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
                    size = struct.unpack_from("=i", data)[0] or n
            now = time.monotonic()
            if n == 0:  # an empty datagram (an insecure keepalive)
                self._datagram(view[:0], addr, now)
                continue
            off = 0
            while off < n:
                if self.runs:  # the common case: the run's datagrams for one session opened and written in one call
                    off = self._open_run(off, n, size, addr, now)
                    if off >= n:
                        break
                try:  # what the run stopped at (or every datagram, when it may not run): one at a time
                    self._datagram(view[off:min(off + size, n)], addr, now)
                except DeviceGone:
                    raise
                except Exception:  # one datagram never ends the loop
                    self.count_internal()
                off += size
        if self.gro is not None:  # nothing more waiting: the run so far goes to the device now
            self._flush_gro()

    def _open_run(self, off: int, n: int, size: int, addr: Any, now: float) -> int:
        """The datagrams from RECEIVE_BUFFER[off:n] (each `size` long) that are transport messages
        for the session the first one names, opened and written to the device in one call
        (fastpath.Session.open_run), the peer told once what a message at a time would have told it;
        returns where the rest starts (a datagram the call stopped at goes through _datagram)."""
        peer = self.peer
        assert peer is not None
        if n - off < noise.TRANSPORT_MIN_LEN or RECEIVE_BUFFER[off] != TRANSPORT:
            return off
        kp = peer.keypair_for(RECEIVE_VIEW[off:off + 8], now)
        if isinstance(kp, Drop):
            return off
        gro = self.gro
        if gro is not None and gro.coalescer.pending:  # what _datagram glued goes first, in order
            self._flush_gro()
        was_confirmed = kp.confirmed
        try:
            consumed, packets, nbytes, *dropped = kp.session.open_run(
                RECEIVE_BUFFER, off, n, size, kp.local_index, self.device.fd, self.device.vnet_hdr, self.plain)
        except OSError as exc:
            if exc.errno == errno.EBADFD:
                raise DeviceGone(str(exc.strerror)) from None
            self.count_internal()
            return off
        except Exception:
            self.count_internal()
            return off
        if not consumed:
            return off
        peer.heard(kp, now)  # once for the run: every consumed message authenticated on kp
        if addr != self.endpoint:
            self.endpoint = addr  # roaming: the peer is where its last authenticated message came from
            self.timers_moved = True
        if not was_confirmed:  # the session is confirmed: connected, now (the timers see it at once)
            self.timers_moved = True
            self._flush_staged(kp)
        stats = self.stats
        stats.rx_packets += packets
        stats.rx_bytes += nbytes
        for why, count in zip(fastpath.RUN_DROPS, dropped, strict=True):
            if count:
                self.drop(why, count)
        return off + consumed * size

    def _flush_gro(self) -> None:
        gro = self.gro
        assert gro is not None
        gro.flush()
        for why in gro.drops:
            self.drop(why)
        gro.drops.clear()

    def count_internal(self) -> None:
        self.drop(Drop.INTERNAL)
        now = time.monotonic()
        if now - self._internal_logged > 10.0:
            self._internal_logged = now
            log.exception("a datagram raised (logged at most every 10 s)")

    def _datagram(self, d: memoryview, addr: Any, now: float) -> None:
        peer = self.peer
        if peer is None:
            self._plain_datagram(d, addr, now)
            return
        n = len(d)
        kind = int.from_bytes(d[:4], "little") if n >= 4 else -1
        if kind == TRANSPORT and n >= noise.TRANSPORT_MIN_LEN:
            kp = peer.keypair_for(d, now)
            if isinstance(kp, Drop):  # WireGuard answers nothing it cannot place
                self.drop(kp)
                return
            gro = self.gro
            buf, at = gro.room(n - noise.TRANSPORT_MIN_LEN) if gro is not None else (self.plain, 0)
            was_confirmed = kp.confirmed
            size = peer.open_with(kp, d, buf[at:], now)
            if isinstance(size, Drop):
                self.drop(size)
                return
            if addr != self.endpoint:
                self.endpoint = addr  # roaming: the peer is where its last authenticated message came from
                self.timers_moved = True  # (status shows where the peer is now)
            if not was_confirmed:  # the session is confirmed: connected, now (the timers see it at once)
                self.timers_moved = True
                self._flush_staged(kp)
            if size:
                why = gro.take(buf, at, size) if gro is not None else self.device.deliver(buf[:size])
                if why is None:
                    self.stats.rx_packets += 1
                    self.stats.rx_bytes += size
                else:
                    self.drop(why)
            return
        if HANDSHAKE_SIZES.get(kind) != n:
            self.drop(Drop.MALFORMED)
            return
        had = peer.current
        why, reply = peer.on_handshake(d, source_key(addr), now)
        self.timers_moved = True
        if reply is not None:  # a response, or a cookie reply to a source nobody vouched for: no log
            self._send(reply, addr, quiet=why is not None)
        if why is not None:
            self.drop(why)
            return
        if kind != noise.MSG_COOKIE_REPLY:
            self.endpoint = addr
        if peer.current is not had and peer.current is not None:
            self._flush_staged(peer.current)

    def _plain_datagram(self, d: memoryview, addr: Any, now: float) -> None:
        """An insecure tunnel: the datagram is the unit; anyone may send one (that is what insecure means)."""
        self._heard = now
        if self.t.role is Role.LISTEN:
            self.endpoint = addr
        if len(d):
            gro = self.gro
            if gro is not None:  # the run must not live in the receive buffer: a copy
                buf, at = gro.room(len(d))
                buf[at:at + len(d)] = d
                why = gro.take(buf, at, len(d))
            else:
                why = self.device.deliver(d)
            if why is None:
                self.stats.rx_packets += 1
                self.stats.rx_bytes += len(d)
            else:
                self.drop(why)
