"""The tun driver's character-device ioctls: creating persistent tun/tap devices, and attaching to one.

The kernel does not create tun devices over rtnetlink (tun_validate() refuses), so this is
what `ip tuntap add` does too: open /dev/net/tun, TUNSETIFF, TUNSETPERSIST, close. In the
calling thread's network namespace. Deletion goes over netlink like any other link.

A leaf (it imports only the model) outside kernel/ and tunnel/: apply creates devices with it
and a tunnel attaches to them, and neither layer has to import the other for it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Callable

from .model import IFNAMSIZ, Device, DeviceType

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFREQ = struct.Struct("16sH22x")  # struct ifreq: name, flags, the rest of the union
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN = 0x01, 0x02, 0x04, 0x08
VNET_HDR_LEN = 10


class AttachError(OSError):
    """The device to attach to is missing, or was made with other flags."""


def flags_of(device: Device) -> int:
    """The TUNSETIFF flags that match this device; a forwarder must open it with the same."""
    return flags_for(device.type, device.pi, device.vnet_hdr, device.multi_queue)


def flags_for(kind: DeviceType, pi: bool, vnet_hdr: bool, multi_queue: bool) -> int:
    flags = IFF_TUN if kind is DeviceType.TUN else IFF_TAP
    if not pi:
        flags |= IFF_NO_PI
    if vnet_hdr:
        flags |= IFF_VNET_HDR
    if multi_queue:
        flags |= IFF_MULTI_QUEUE
    return flags


def create(device: Device, made: Callable[[], None] = lambda: None) -> None:
    """Raises OSError with the kernel's errno (EBUSY: the name is taken, EPERM: no CAP_NET_ADMIN).
    `made` is called once the device exists and is persistent, before its descriptor is closed:
    the close waits for an RCU grace period (the tun driver's detach), time a caller can spend
    on the device (kernel/creations.py reports it then)."""
    name = device.name.encode()
    if not 0 < len(name) < IFNAMSIZ or b"\0" in name or b"%" in name:  # as kernel/_tuntap.c: never a template
        raise OSError(errno.EINVAL, f"{device.name!r} cannot be a device's own name")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, IFREQ.pack(name, flags_of(device)))
        if device.owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, device.owner)
        if device.group is not None:
            fcntl.ioctl(fd, TUNSETGROUP, device.group)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
        made()
    finally:
        os.close(fd)


def attach(name: str, flags: int, offloads: bool = True) -> tuple[int, bool]:
    """A descriptor attached to the persistent device `name` with its own flags, and whether TSO
    is on (with vnet_hdr and `offloads`: then one read is up to 64 KB). What a forwarder reads
    and writes. Over UDP a forwarder sends every packet as one message, so it asks for none."""
    import socket

    try:
        socket.if_nametoindex(name)  # never let TUNSETIFF create a device of its own
    except OSError:
        raise AttachError(f"device {name} does not exist (provision apply creates it)") from None
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, IFREQ.pack(name.encode(), flags))
    except OSError as exc:
        os.close(fd)
        raise AttachError(f"cannot attach to {name}: {exc.strerror} (are its flags as declared?)") from None
    if not flags & IFF_VNET_HDR:
        offloads = False
    if flags & IFF_VNET_HDR:
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN if offloads else 0)
            offloads = bool(offloads)
        except OSError:
            offloads = False  # an old kernel: one packet per read
    return fd, offloads
