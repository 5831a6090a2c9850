"""A host's data plane: one unprivileged process that serves every tunnel of the host (of one
`user:`/`group:`, which is nearly always all of them), as wireguard-go serves many peers.

Forked by the host's supervisor (supervisor.py), it drops root and every capability at once
(privileges.py), before it hears a byte, and then only listens to its supervisor's channel
(channel.py): ADD brings a tunnel's spec, keys and, as descriptors, its device and its socket
(the supervisor attaches and binds, which needs privilege); REMOVE ends one tunnel and closes
what it held. A tunnel that is not named in a message is never touched: its sessions and
counters go on.

One poll loop serves every UDP tunnel: the devices, the sockets and the channel, with each
tunnel's timers in a heap, so an idle hub wakes only when some tunnel has something due. A
TCP tunnel runs as threads of its own (tcp.py), as its stream needs. Nothing a tunnel's
traffic raises leaves its handler: it is counted as an INTERNAL drop of that tunnel.

Counters go to the supervisor as JSON lines on stdout (one per tunnel, each with its name),
the log on stderr: the data plane writes no files.
"""

from __future__ import annotations

# Everything is imported now, not when first needed: once root is dropped, the Python
# installation may be unreadable (a virtualenv under /root). getaddrinfo looks up the idna
# codec at its first call.
import base64
import binascii
import contextvars
import encodings.idna  # noqa: F401
import functools
import heapq
import ipaddress
import itertools
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..model import DeviceType, Role, Transport, Tunnel, tunnel_from_dict
from . import noise, privileges, tcp, udp
from .channel import Channel, ChannelClosed, Message, Op
from .device import Device, DeviceGone, device_mtu
from .peer import Peer
from .stats import Stats, write_out

log = logging.getLogger("provision.forwarder")
REPORT_EVERY = 1.0  # the tunnels whose counters moved (and the quiet ones every 4 s); a change of state goes at once
TUNNEL: contextvars.ContextVar[str] = contextvars.ContextVar("tunnel", default="-")


class _TunnelName(logging.Filter):
    """Every log line says which tunnel it is about: many share this process and its log."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.tunnel = TUNNEL.get()
        return True


@dataclass(frozen=True, repr=False)
class Grant:
    """What the supervisor's ADD carries besides the descriptors: the tunnel, and the keys it
    read as root. Checked here like anything else that arrives: a bad one fails that tunnel."""

    tunnel: Tunnel
    offloads: bool
    private_key: bytes | None
    psk: bytes | None
    endpoint: tuple[str, int] | None  # where the last data plane heard the peer

    @classmethod
    def of(cls, body: dict[str, object]) -> Grant:
        try:
            t = tunnel_from_dict(body["spec"])  # type: ignore[arg-type]
            private = _key(body.get("private_key"))
            psk = _key(body.get("psk"))
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            raise ValueError(f"the supervisor's grant is unreadable ({exc})") from None
        if t.secure and private is None:
            raise ValueError("no private key for an encrypted tunnel")
        return cls(t, bool(body.get("offloads")), private, psk, endpoint_of(body.get("endpoint")))


def _key(text: object) -> bytes | None:
    if text is None:
        return None
    key = base64.b64decode(str(text), validate=True)
    if len(key) != noise.KEY_LEN:
        raise ValueError("a key is not 32 bytes")
    return key


def endpoint_of(text: object) -> tuple[str, int] | None:
    """"192.0.2.2:40839" or "[fd00::2]:40839" (as the counters say it) as an address; None for anything else."""
    if not isinstance(text, str) or ":" not in text or len(text) > 64:
        return None
    host, _, port = text.rpartition(":")
    try:
        address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        number = int(port)
    except ValueError:
        return None
    return (str(address), number) if 0 < number < 65536 else None


def make_peer(t: Tunnel, grant: Grant, now: float) -> Peer | None:
    if not t.secure:
        return None
    assert grant.private_key is not None and t.peer_public_key is not None
    return Peer(noise.Identity.from_private(grant.private_key), base64.b64decode(t.peer_public_key), grant.psk,
                now, keep_up=t.role is Role.CONNECT)


class Plane:
    """The loop, and the tunnels it serves."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.poller = select.poll()
        self.handlers: dict[int, tuple[str, Callable[[], None]]] = {}
        self.udp: dict[str, udp.UdpCarrier] = {}
        self.tcp: dict[str, tcp.TcpCarrier] = {}
        self.timers: list[tuple[float, int, str]] = []  # (when, sequence, tunnel): stale entries are skipped
        self.due: dict[str, float] = {}
        self._sequence = itertools.count()
        self._closed: list[str] = []  # TCP tunnels whose threads have ended (appended by those threads)
        self._gone: dict[str, str] = {}  # TCP tunnels that ended because their device went away
        self._parked: dict[str, Message] = {}  # an ADD waiting for the TCP tunnel of its name to end
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.next_report = 0.0
        self._report_from = 0
        self.poller.register(channel.fileno(), select.POLLIN)
        self.poller.register(self._wake_r, select.POLLIN)

    # ------------------------------------------------------------ the channel

    def command(self, m: Message) -> None:
        if m.op is Op.ADD:
            self.add(m)
        elif m.op is Op.REMOVE:
            self.remove(m.name)
        else:
            for fd in m.fds:
                os.close(fd)

    def add(self, m: Message) -> None:
        name = m.name
        old = self.tcp.get(name)
        if old is not None and old.stopping.is_set() and name not in self._parked and len(m.fds) in (1, 2):
            self._parked[name] = m  # a TCP tunnel of that name is still ending: this one starts after it
            return
        if name in self.udp or name in self.tcp or len(m.fds) not in (1, 2):
            for fd in m.fds:
                os.close(fd)
            self.channel.send(Op.FAILED, name, {"error": "a duplicate or incomplete grant"})
            return
        device_fd, sock_fd = m.fds[0], (m.fds[1] if len(m.fds) == 2 else -1)
        token = TUNNEL.set(name)
        sock: socket.socket | None = None
        carrier: udp.UdpCarrier | tcp.TcpCarrier
        try:
            grant = Grant.of(m.body)
            t = grant.tunnel
            if sock_fd >= 0:
                sock = socket.socket(fileno=sock_fd)
            if (sock is None) != (t.transport is Transport.TCP and t.role is Role.CONNECT):
                raise ValueError("the grant's socket does not fit the tunnel")
            stats = Stats(name)
            stats.peer_key = t.peer_public_key
            wireguard = t.device_type is DeviceType.TUN and t.transport is Transport.UDP
            os.set_blocking(device_fd, False)
            device = Device(device_fd, tap=t.device_type is DeviceType.TAP, pi=t.pi, vnet_hdr=t.vnet_hdr,
                            wireguard=wireguard, compress=t.compress, mtu=device_mtu(t.device),
                            offloads=grant.offloads)
            peer = make_peer(t, grant, time.monotonic())
            if t.transport is Transport.UDP:
                assert sock is not None
                carrier = udp.UdpCarrier(t, device, peer, sock, stats,
                                         grant.endpoint if t.role is Role.LISTEN else None)
            else:
                carrier = tcp.TcpCarrier(t, device, peer, sock, stats)
        except (ValueError, OSError, TypeError, KeyError) as exc:  # that tunnel fails; the process goes on
            if sock is not None:
                sock.close()
            elif sock_fd >= 0:
                os.close(sock_fd)
            os.close(device_fd)
            self.channel.send(Op.FAILED, name, {"error": str(exc)})
            TUNNEL.reset(token)
            return
        if isinstance(carrier, udp.UdpCarrier):
            carrier.start()
            self.udp[name] = carrier
            for fd, handler in carrier.handlers().items():
                self.handlers[fd] = (name, handler)
                self.poller.register(fd, select.POLLIN)
            self._schedule(name, time.monotonic())
        else:
            carrier.gone = functools.partial(self._tcp_gone, name)
            self.tcp[name] = carrier
            carrier.start(functools.partial(self._tcp_ended, name))
        log.info("%s on %s (%s %s %s, %s), offloads %s", name, t.device, t.transport, t.role, t.endpoint,
                 ("WireGuard" if wireguard else "WireGuard handshake, provision framing") if t.secure
                 else "INSECURE: plaintext", "on" if grant.offloads else "off")
        TUNNEL.reset(token)
        self.channel.send(Op.ADDED, name)

    def remove(self, name: str, why: str | None = None) -> None:
        parked = self._parked.pop(name, None)
        if parked is not None:  # it never started: its descriptors go, and the one still ending ends
            for fd in parked.fds:
                os.close(fd)
            self.channel.send(Op.REMOVED, name)
            return
        carrier = self.udp.pop(name, None)
        if carrier is not None:
            for fd in carrier.handlers():
                self.poller.unregister(fd)
                del self.handlers[fd]
            self.due.pop(name, None)
            carrier.stats.report()  # the last counters
            carrier.close()
            self.channel.send(Op.FAILED if why else Op.REMOVED, name, {"error": why} if why else None)
        elif name in self.tcp:
            self.tcp[name].stop()  # REMOVED once its threads are out (_tcp_ended)
        else:
            self.channel.send(Op.REMOVED, name)

    def _tcp_gone(self, name: str, exc: DeviceGone) -> None:
        self._gone[name] = f"device is gone ({exc})"
        self.tcp[name].stats.error(self._gone[name])
        self.tcp[name].stop()

    def _tcp_ended(self, name: str) -> None:
        """From the tunnel's last thread: the loop sends REMOVED (one thread owns the channel)."""
        self._closed.append(name)
        os.write(self._wake_w, b"\0")

    # ------------------------------------------------------------ the loop

    def _schedule(self, name: str, when: float) -> None:
        if self.due.get(name) != when:
            self.due[name] = when
            heapq.heappush(self.timers, (when, next(self._sequence), name))

    def _tick(self, name: str, now: float) -> None:
        carrier = self.udp.get(name)
        if carrier is not None:
            token = TUNNEL.set(name)
            try:
                wait = carrier.tick(now)
            except Exception:
                carrier.count_internal()
                wait = 0.1
            TUNNEL.reset(token)
            self._schedule(name, now + wait)

    def report(self) -> None:
        """The counters of the UDP tunnels whose counters moved since their last report (and of
        each quiet one every 4 s), one line each, all at once: a wake-up or two of the
        supervisor for all of them (a TCP tunnel reports from its own thread)."""
        carriers = list(self.udp.values())
        start = self._report_from % len(carriers) if carriers else 0
        now = time.monotonic()
        for i in range(len(carriers)):
            stats = carriers[(start + i) % len(carriers)].stats
            if stats.due(now) and not write_out(stats.line()):
                self._report_from = start + i  # the supervisor is behind: the rest first, next time
                return
        self._report_from = 0

    def run(self) -> None:
        channel_fd = self.channel.fileno()
        while True:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                when, _, name = heapq.heappop(self.timers)
                if self.due.get(name) == when:
                    self._tick(name, now)
            if now >= self.next_report:
                self.report()
                self.next_report = now + REPORT_EVERY
            wait = min(self.timers[0][0] if self.timers else now + REPORT_EVERY, self.next_report) - now
            events = self.poller.poll(max(0.0, wait) * 1000)
            touched: set[str] = set()
            for fd, _ in events:
                if fd == channel_fd:
                    self._commands()
                    continue
                if fd == self._wake_r:
                    self._reap_tcp()
                    continue
                entry = self.handlers.get(fd)
                if entry is None:
                    continue
                name, handler = entry
                token = TUNNEL.set(name)
                try:
                    handler()
                except DeviceGone as exc:
                    self.udp[name].stats.error(f"device is gone ({exc})")
                    self.remove(name, f"device is gone ({exc})")
                    continue
                except Exception:  # one tunnel's trouble is that tunnel's counted drop, nothing more
                    self.udp[name].count_internal()
                finally:
                    TUNNEL.reset(token)
                touched.add(name)
            now = time.monotonic()
            for name in touched:  # a handshake may have made a timer due at once; data never does
                carrier = self.udp.get(name)
                if carrier is not None and carrier.timers_moved:
                    carrier.timers_moved = False
                    self._tick(name, now)

    def _commands(self) -> None:
        for _ in range(64):
            m = self.channel.receive()  # ChannelClosed: the supervisor is gone, and so are we
            if m is None:
                return
            self.command(m)

    def _reap_tcp(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        while self._closed:
            name = self._closed.pop()
            carrier = self.tcp.pop(name, None)
            if carrier is not None:
                carrier.stats.report()
                gone = self._gone.pop(name, None)
                self.channel.send(Op.FAILED if gone else Op.REMOVED, name, {"error": gone} if gone else None)
            parked = self._parked.pop(name, None)
            if parked is not None:
                self.add(parked)


def main(channel_fd: int, user: str | None, group: str | None) -> int:
    """Forked by the supervisor: stdout carries counters, stderr the log, `channel_fd` commands."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s data-plane[%(process)d] %(levelname)s %(tunnel)s: %(message)s"))
    handler.addFilter(_TunnelName())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    channel = Channel(socket.socket(fileno=channel_fd))
    os.set_blocking(1, False)  # counters (stats.write_out); the log on stderr waits, but says little
    try:
        uid, gid = privileges.drop(user, group)
    except (privileges.PrivilegeError, OSError) as exc:
        log.error("%s", exc)
        return 2
    log.info("serving tunnels as uid %d gid %d without capabilities", uid, gid)
    try:
        Plane(channel).run()
    except ChannelClosed:
        return 0
    return 0
