"""What provision chooses for a device a tunnel reads, where the inventory says nothing.

A device named by a tunnel has one reader, the forwarder, which provision starts: so provision
may pick its flags and MTU for speed, as wireguard-go does for the devices it makes.

- `vnet_hdr: true`. With the virtio header the kernel hands the forwarder 64 KB TSO
  super-packets over TCP, and over UDP the forwarder writes coalesced runs (userspace GRO) to
  the device: one system call per 64 KB instead of per 1.4 KB (with the MTU below, 9-12x the
  throughput over TCP and 2x over UDP, a tenth and half the CPU per GB: `make bench-tunnel`
  with BENCH_FLAGS=default, two runs). The header never reaches the wire in WireGuard's form.
- `mtu`: over UDP the largest inner packet whose datagram fits a 1500-byte path with an IPv6
  outer header, so the carrier is never IP-fragmented: 1500 - 40 (IPv6) - 8 (UDP) - 32
  (WireGuard's header and tag) = 1420 for a tun, as WireGuard picks; a tap's frame carries 25
  bytes more in our form (a flags byte, the virtio header, the Ethernet header), so 1395.
  Over TCP the carrier cuts the byte stream into segments itself and never fragments, so the
  device keeps Ethernet's 1500: every inner host can send full-sized packets into the tunnel
  and out of its far end without path MTU discovery. (With TSO the inner TCP moves 64 KB per
  read whatever the MTU: 9000 measured no faster, 1.43 Gbit/s against 1.37-1.68.)

A value the inventory writes (`vnet_hdr: false`, `mtu: 9000`) is obeyed. A device no tunnel
names keeps the kernel's defaults (no virtio header, MTU unmanaged).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .hints import Any
from .model import Default, DeviceType, Transport

ETHERNET_MTU = 1500
UDP_OVERHEAD = 40 + 8 + 32  # an IPv6 outer header, UDP, WireGuard's transport header and tag
TAP_FORM_OVERHEAD = 1 + 10 + 14  # our form's flags byte and virtio header, the Ethernet header
UDP_TUN_MTU = ETHERNET_MTU - UDP_OVERHEAD  # 1420, as WireGuard
UDP_TAP_MTU = UDP_TUN_MTU - TAP_FORM_OVERHEAD  # 1395


def carriers(tunnels: Iterable[Mapping[str, Any]]) -> dict[str, Transport]:
    """device name -> the transport of the tunnel that names it (validation allows one per device)."""
    return {str(t.get("device")): Transport(t.get("transport", Transport.TCP)) for t in tunnels}


def vnet_hdr(device: Mapping[str, Any], carrier: Transport | None) -> tuple[bool, Default | None]:
    """The device's vnet_hdr, and why when provision chose it."""
    if "vnet_hdr" in device:
        return bool(device["vnet_hdr"]), None
    if carrier is not None:
        return True, Default.TUNNEL_VNET_HDR
    return False, None


def mtu(device: Mapping[str, Any], carrier: Transport | None) -> tuple[int | None, Default | None]:
    """The device's MTU (None: not managed), and why when provision chose it."""
    if "mtu" in device:
        return device["mtu"], None
    if carrier is Transport.UDP:
        if device.get("type") == DeviceType.TAP:
            return UDP_TAP_MTU, Default.UDP_TAP_MTU
        return UDP_TUN_MTU, Default.UDP_MTU
    if carrier is Transport.TCP:
        return ETHERNET_MTU, Default.TCP_MTU
    return None, None
