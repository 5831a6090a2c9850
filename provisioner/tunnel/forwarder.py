"""One tunnel's forwarder process: `python -m provisioner.tunnel.forwarder RUN_DIR`.

Started (and restarted) by the tunnel's supervisor, which hands it, on its stdin, the device
already attached and this host's private key (and the tunnel's pre-shared key, if any). It
binds its socket, then drops root and every capability (privileges.py) before it hears a
byte, and runs its carrier (udp.py or tcp.py) until it is stopped. Its log goes to stderr
and its counters, one bounded JSON line a second, to stdout: both are pipes to the
supervisor, which writes the files, so the forwarder needs no file access at all.

The protocol is WireGuard's (peer.py and what it uses: noise.py, cookie.py, replay.py,
keypair.py, timers.py); `insecure: true` tunnels carry units in the clear with no handshake.
"""

from __future__ import annotations

# Everything the forwarder uses is imported now, not when first needed: once it has dropped
# root, the Python installation may be unreadable (a virtualenv under /root). getaddrinfo
# looks up the idna codec at its first call.
import base64
import binascii
import encodings.idna  # noqa: F401
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..model import DeviceType, Role, Transport, Tunnel, tunnel_from_dict
from . import noise, privileges, runtime, tcp, udp
from .device import Device, DeviceGone, device_mtu
from .peer import Peer
from .stats import Stats

log = logging.getLogger("provision.forwarder")


@dataclass(frozen=True, repr=False)
class Grant:
    """What the supervisor hands a forwarder it starts, on its stdin (one JSON line): the device,
    already attached (it keeps its own descriptor, so the device keeps its carrier while the
    forwarder restarts, and the kernel keeps its neighbours), and the keys."""

    device_fd: int
    offloads: bool
    private_key: bytes | None
    psk: bytes | None
    endpoint: tuple[str, int] | None = None  # where the last forwarder heard its peer

    @classmethod
    def read(cls, t: Tunnel) -> Grant:
        try:
            d = json.loads(sys.stdin.buffer.readline(16384) or b"{}")
            if not isinstance(d, dict):
                raise ValueError
            if "error" in d:
                raise SystemExit(str(d["error"]))
            private = base64.b64decode(d["private_key"], validate=True) if d.get("private_key") else None
            psk = base64.b64decode(d["psk"], validate=True) if d.get("psk") else None
            grant = cls(int(d["device_fd"]), bool(d["offloads"]), private, psk, endpoint_of(d.get("endpoint")))
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise SystemExit("the supervisor's grant is unreadable") from None
        if t.secure and (grant.private_key is None or len(grant.private_key) != noise.KEY_LEN):
            raise SystemExit("no private key for an encrypted tunnel")
        if grant.psk is not None and len(grant.psk) != noise.KEY_LEN:
            raise SystemExit("the pre-shared key is not 32 bytes")
        return grant


def endpoint_of(text: object) -> tuple[str, int] | None:
    """"192.0.2.2:40839" or "[fd00::2]:40839" (as stats.json says it) as an address; None for anything else."""
    if not isinstance(text, str) or ":" not in text:
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
    peer_public = base64.b64decode(t.peer_public_key)
    return Peer(noise.Identity.from_private(grant.private_key), peer_public, grant.psk, now,
                keep_up=t.role is Role.CONNECT)


def main(argv: list[str]) -> int:
    """stdout and stderr are the supervisor's pipes: counters on one, the log on the other."""
    run_dir = Path(argv[0])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s forwarder[%(process)d] %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    spec = runtime.read_json(run_dir / runtime.SPEC)
    if spec is None:
        log.error("no spec in %s", run_dir)
        return 2
    stats = Stats()
    try:
        t = tunnel_from_dict(spec)
        grant = Grant.read(t)
        wireguard = t.device_type is DeviceType.TUN and t.transport is Transport.UDP
        # UDP: one poll loop, and reads that never wait; TCP: a thread whose first read waits.
        os.set_blocking(grant.device_fd, t.transport is not Transport.UDP)
        device = Device(grant.device_fd, tap=t.device_type is DeviceType.TAP, pi=t.pi, vnet_hdr=t.vnet_hdr,
                        wireguard=wireguard, compress=t.compress, mtu=device_mtu(t.device),
                        offloads=grant.offloads)
        peer = make_peer(t, grant, time.monotonic())
        stats.peer_key = t.peer_public_key
        carrier: udp.UdpCarrier | tcp.TcpCarrier
        if t.transport is Transport.UDP:
            carrier = udp.UdpCarrier(t, device, peer, udp.bind(t), stats,
                                     grant.endpoint if t.role is Role.LISTEN else None)
        else:
            carrier = tcp.TcpCarrier(t, device, peer, tcp.bind(t), stats)
        uid, gid = privileges.drop(t.user, t.group)
    except (SystemExit, privileges.PrivilegeError, OSError, KeyError, ValueError) as exc:
        why = f"{exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
        log.error("%s", why)
        stats.error(why)
        stats.report()
        return 2
    log.info("%s on %s (%s %s %s, %s, offloads %s), running as uid %d gid %d without capabilities",
             t.name, t.device, t.transport, t.role, t.endpoint,
             ("WireGuard" if wireguard else "WireGuard handshake, provision framing") if t.secure
             else "INSECURE: plaintext", "on" if grant.offloads else "off", uid, gid)
    def gone(exc: BaseException) -> None:
        """The device was deleted under us: nothing to forward. Exit, so the supervisor counts it,
        and the next plan shows the device to create."""
        stats.error(f"device {t.device} is gone ({exc})")
        stats.report()
        logging.shutdown()
        os._exit(runtime.DEVICE_GONE)

    if isinstance(carrier, tcp.TcpCarrier):
        carrier.gone = gone
    try:
        carrier.run()
    except DeviceGone as exc:
        gone(exc)
    return 0


__all__ = ["Grant", "main", "socket"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
