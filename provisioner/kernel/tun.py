"""Creating persistent tun/tap devices with the tun driver's ioctls.

The kernel does not create tun devices over rtnetlink (tun_validate() refuses), so this is
what `ip tuntap add` does too: open /dev/net/tun, TUNSETIFF, TUNSETPERSIST, close. In the
calling thread's network namespace. Deletion goes over netlink like any other link.
"""

from __future__ import annotations

import fcntl
import os
import struct

from ..model import Device, DeviceType

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


def flags_of(device: Device) -> int:
    """The TUNSETIFF flags that match this device; a forwarder must open it with the same."""
    flags = IFF_TUN if device.type is DeviceType.TUN else IFF_TAP
    if not device.pi:
        flags |= IFF_NO_PI
    if device.vnet_hdr:
        flags |= IFF_VNET_HDR
    if device.multi_queue:
        flags |= IFF_MULTI_QUEUE
    return flags


def create(device: Device) -> None:
    """Raises OSError with the kernel's errno (EBUSY: the name is taken, EPERM: no CAP_NET_ADMIN)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, IFREQ.pack(device.name.encode(), flags_of(device)))
        if device.owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, device.owner)
        if device.group is not None:
            fcntl.ioctl(fd, TUNSETGROUP, device.group)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)
