"""The network state of one host, desired or observed, as plain frozen values.

Desired and live state use the same types so that the diff is plain comparison: the
observer normalises what the kernel says (MAC case, IPv6 compression, order) and the
inventory loader normalises what a person wrote, into the same canonical form.
In a desired value `None` means "not managed": the live value is left as it is.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

MAIN_TABLE = 254
IPV4_DEFAULT_METRIC = 0  # what the kernel gives a route added without a metric
IPV6_DEFAULT_METRIC = 1024
OWNER_ALIAS = "provision"  # the device alias that marks a device as ours, kept by the kernel
OWNER_PROTOCOL = 147  # the route protocol number that marks a route as ours (like bird=12, bgp=186)


class DeviceType(StrEnum):
    TUN = "tun"
    TAP = "tap"


class LinkState(StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, order=True)
class Device:
    """A tun/tap device. `managed` is True when it carries our alias (always True when desired)."""

    name: str
    type: DeviceType
    state: LinkState = LinkState.UP
    mtu: int | None = None
    mac: str | None = None
    owner: int | None = None
    group: int | None = None
    pi: bool = False
    vnet_hdr: bool = False
    multi_queue: bool = False
    managed: bool = True

    # Attributes the kernel fixes when the device is created: changing one means a new device.
    FIXED = ("type", "pi", "vnet_hdr", "multi_queue", "owner", "group")
    MUTABLE = ("state", "mtu", "mac")


@dataclass(frozen=True, order=True)
class Address:
    device: str
    cidr: str  # canonical interface form: "198.51.100.1/24", "fd00:1::1/64"

    @property
    def is_link_local_v6(self) -> bool:
        return ipaddress.ip_interface(self.cidr).ip.is_link_local and ":" in self.cidr


RouteKey = tuple[int, str, int]  # (table, to, metric): what identifies a route in the kernel


@dataclass(frozen=True, order=True)
class Route:
    to: str  # canonical network: "10.20.0.0/16", "fd00:20::/48"
    table: int = MAIN_TABLE
    metric: int = IPV4_DEFAULT_METRIC
    via: str | None = None
    dev: str | None = None  # desired: None means any device; observed: the resolved device
    managed: bool = True  # observed: carries our protocol number

    @property
    def key(self) -> RouteKey:
        return (self.table, self.to, self.metric)

    @property
    def family(self) -> int:
        return 6 if ":" in self.to else 4


@dataclass(frozen=True)
class AbsentRoute:
    """`state: absent` on a route: remove it whoever owns it. No metric matches every metric."""

    to: str
    table: int = MAIN_TABLE
    metric: int | None = None

    def matches(self, key: RouteKey) -> bool:
        return key[0] == self.table and key[1] == self.to and self.metric in (None, key[2])


@dataclass(frozen=True)
class Network:
    """What a host should look like: the merged `network` variable, normalised."""

    devices: tuple[Device, ...] = ()
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()
    absent_devices: tuple[str, ...] = ()
    absent_routes: tuple[AbsentRoute, ...] = ()


@dataclass(frozen=True)
class Observed:
    """What the kernel of a host has: tun/tap devices in full, other links by name and kind."""

    devices: tuple[Device, ...] = ()
    addresses: tuple[Address, ...] = ()  # on tun/tap devices
    routes: tuple[Route, ...] = ()  # all tables but local, without kernel-made routes
    links: tuple[tuple[str, str], ...] = field(default=())  # (name, kind) of every interface

    def digest(self) -> str:
        """A fingerprint of this state, so a plan can say what it was made against."""
        import hashlib

        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


def canonical_interface(text: str) -> str:
    """'FD00:1:0::1/64' -> 'fd00:1::1/64'; a bare address gets a host prefix."""
    return str(ipaddress.ip_interface(text))


def canonical_network(text: str) -> str:
    """'10.20.0.0/16' stays; 'default' is 0.0.0.0/0; host bits are an error (strict)."""
    if text == "default":
        return "0.0.0.0/0"
    return str(ipaddress.ip_network(text, strict=True))


def default_metric(to: str) -> int:
    return IPV6_DEFAULT_METRIC if ":" in to else IPV4_DEFAULT_METRIC
