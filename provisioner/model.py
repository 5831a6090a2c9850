"""The network state of one host, desired or observed, as plain frozen values.

Desired and live state use the same types so that the diff is plain comparison: the
observer normalises what the kernel says (MAC case, IPv6 compression, order) and the
inventory loader normalises what a person wrote, into the same canonical form.
In a desired value `None` means "not managed": the live value is left as it is.
"""

from __future__ import annotations

import ipaddress
from _socket import AF_INET, inet_ntop, inet_pton  # socket's C half: kernel/netlink.py says why
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import lru_cache
from operator import attrgetter

from .hints import Any

MAIN_TABLE = 254
IPV4_DEFAULT_METRIC = 0  # what the kernel gives a route added without a metric
IPV6_DEFAULT_METRIC = 1024
OWNER_ALIAS = "provision"  # the device alias that marks a device as ours, kept by the kernel
OWNER_PROTOCOL = 147  # the route protocol number that marks a route as ours (like bird=12, bgp=186)
IFNAMSIZ = 16  # the kernel's limit on an interface name, including the terminating NUL


class DeviceType(StrEnum):
    TUN = "tun"
    TAP = "tap"


class LinkState(StrEnum):
    UP = "up"
    DOWN = "down"


class Default(StrEnum):
    """Why a desired device has a value the inventory did not write (defaults.py chose it)."""

    TUNNEL_VNET_HDR = "default for a tunnel's device"
    UDP_MTU = "default for a UDP tunnel"
    UDP_TAP_MTU = "default for a tap over a UDP tunnel"
    TCP_MTU = "default for a TCP tunnel"


# Device, Address and Route (and inventory.Entry) write their own __init__, which @dataclass
# keeps: a plan makes them by the thousand (8000 at 1000 devices, 120 a host of a fleet), and
# the __init__ @dataclass writes for a frozen class sets each field through object.__setattr__,
# 1.2 us for a Device. For these classes (an instance __dict__, no descriptor named like a field)
# storing into the instance's __dict__ is what that amounts to, at half the cost: 5% of a no-op
# plan's instructions. tests/unit/test_model.py holds each __init__ to its class's fields.
@dataclass(frozen=True, order=True)
class Device:
    """A tun/tap device. `managed` is True when it carries our alias (always True when desired).
    `defaults` names the attributes provision chose, not the inventory, and why: shown in a
    plan, never compared (the kernel holds the value, not where it came from)."""

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
    defaults: tuple[tuple[str, Default], ...] = field(default=(), compare=False)

    def __init__(self, name: str, type: DeviceType, state: LinkState = LinkState.UP, mtu: int | None = None,
                 mac: str | None = None, owner: int | None = None, group: int | None = None, pi: bool = False,
                 vnet_hdr: bool = False, multi_queue: bool = False, managed: bool = True,
                 defaults: tuple[tuple[str, Default], ...] = ()) -> None:
        held = self.__dict__  # the fields, set once: see the note above
        held["name"], held["type"], held["state"], held["mtu"], held["mac"] = name, type, state, mtu, mac
        held["owner"], held["group"], held["pi"], held["vnet_hdr"] = owner, group, pi, vnet_hdr
        held["multi_queue"], held["managed"], held["defaults"] = multi_queue, managed, defaults

    # Attributes the kernel fixes when the device is created: changing one means a new device.
    FIXED = ("type", "pi", "vnet_hdr", "multi_queue", "owner", "group")
    MUTABLE = ("state", "mtu", "mac")

    def default_for(self, attribute: str) -> Default | None:
        """Why provision chose this attribute's value; None when the inventory wrote it (or it is observed)."""
        return next((why for name, why in self.defaults if name == attribute), None)


@dataclass(frozen=True, order=True)
class Address:
    """An address on a device, written canonically (canonical_interface): two spellings of one
    address are one address, so the diff compares strings."""

    device: str
    cidr: str  # canonical interface form: "198.51.100.1/24", "fd00:1::1/64"

    def __init__(self, device: str, cidr: str) -> None:
        held = self.__dict__  # the fields, set once (see Device)
        held["device"], held["cidr"] = device, cidr

    @property
    def is_link_local_v6(self) -> bool:
        return ipaddress.ip_interface(self.cidr).ip.is_link_local and ":" in self.cidr


# Device's and Address's orders as sort keys: the same order (a host's device names are unique,
# and name is a device's first field) without a generated __lt__ making two tuples of fields
# per comparison, 0.2-0.5 ms per 1000 sorted; and routes in the order of Route.key, without a
# Python call per route
DEVICE_ORDER = attrgetter("name")
ADDRESS_ORDER = attrgetter("device", "cidr")
ROUTE_ORDER = attrgetter("table", "to", "metric")


RouteKey = tuple[int, str, int]  # (table, to, metric): what identifies a route in the kernel


@dataclass(frozen=True, order=True)
class Route:
    """A route as the kernel keys it (table, destination, metric) and what it carries. Desired
    and observed routes share the type, so the plan compares them field by field."""

    to: str  # canonical network: "10.20.0.0/16", "fd00:20::/48"
    table: int = MAIN_TABLE
    metric: int = IPV4_DEFAULT_METRIC
    via: str | None = None
    dev: str | None = None  # desired: None means any device; observed: the resolved device
    managed: bool = True  # observed: carries our protocol number

    def __init__(self, to: str, table: int = MAIN_TABLE, metric: int = IPV4_DEFAULT_METRIC, via: str | None = None,
                 dev: str | None = None, managed: bool = True) -> None:
        held = self.__dict__  # the fields, set once (see Device)
        held["to"], held["table"], held["metric"], held["via"], held["dev"], held["managed"] = (
            to, table, metric, via, dev, managed)

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


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class Role(StrEnum):
    LISTEN = "listen"
    CONNECT = "connect"


class RunState(StrEnum):
    RUNNING = "running"
    FAILED = "failed"  # crashed repeatedly; the supervisor gave up until the next apply
    STOPPED = "stopped"  # the spec is there but no supervisor runs it


@dataclass(frozen=True, order=True)
class Tunnel:
    """A tunnel and the forwarder that carries it: everything the forwarder needs to run.

    With `peer:` the inventory names the other host; the loader has already decided the
    role and the endpoint (see validate.resolve_tunnels). The device flags are copied from
    the device, because the forwarder must open it with exactly those flags; a device that
    is replaced with other flags therefore restarts its forwarder.
    """

    name: str
    device: str
    transport: Transport
    role: Role
    endpoint: str  # listen: the local "address:port" to bind; connect: the peer's "host:port"
    peer: str | None = None  # the inventory host at the other end, when written with peer:
    device_type: DeviceType = DeviceType.TAP
    pi: bool = False
    vnet_hdr: bool = False
    multi_queue: bool = False
    private_key_file: str | None = None  # absolute, this host's X25519 private key; None: insecure (plaintext)
    public_key: str | None = None  # this host's public key (base64) as the inventory says
    peer_public_key: str | None = None  # the other end's public key (base64)
    psk_file: str | None = None  # absolute; the optional pre-shared key mixed into the handshake
    psk_id: str | None = None  # keys.key_id of the psk; desired None: not known here
    compress: bool = False
    user: str | None = None  # the forwarder drops to this user (and group) after opening its sockets
    group: str | None = None
    state: RunState = RunState.RUNNING

    SPEC = ("device", "transport", "role", "endpoint", "peer", "device_type", "pi", "vnet_hdr", "multi_queue",
            "private_key_file", "public_key", "peer_public_key", "psk_file", "psk_id", "compress", "user", "group")

    @property
    def secure(self) -> bool:
        return self.private_key_file is not None


@dataclass(frozen=True)
class Network:
    """What a host should look like: the merged `network` variable, normalised."""

    devices: tuple[Device, ...] = ()
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()
    absent_devices: tuple[str, ...] = ()
    absent_routes: tuple[AbsentRoute, ...] = ()
    tunnels: tuple[Tunnel, ...] = ()


@dataclass(frozen=True)
class Observed:
    """What the kernel of a host has: tun/tap devices in full, other links by name and kind."""

    devices: tuple[Device, ...] = ()
    addresses: tuple[Address, ...] = ()  # on tun/tap devices
    routes: tuple[Route, ...] = ()  # all tables but local, without kernel-made routes
    links: tuple[tuple[str, str], ...] = field(default=())  # (name, kind) of every interface
    tunnels: tuple[Tunnel, ...] = ()  # the forwarders provision has set up on this host

    def digest(self) -> str:
        """A fingerprint of this state, so a plan can say what it was made against."""
        import hashlib

        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


@lru_cache(maxsize=1 << 16)
def canonical_interface(text: str) -> str:
    """'FD00:1:0::1/64' -> 'fd00:1::1/64'; a bare address gets a host prefix. Remembered (bounded):
    validation, the merge and the desired state each ask for the same few thousand texts."""
    if _ipv4_canonical(text) is not None:
        return text
    return str(ipaddress.ip_interface(text))


@lru_cache(maxsize=1 << 16)
def canonical_network(text: str) -> str:
    """'10.20.0.0/16' stays; 'default' is 0.0.0.0/0; host bits are an error (strict). Remembered
    as canonical_interface is."""
    if text == "default":
        return "0.0.0.0/0"
    v4 = _ipv4_canonical(text)
    if v4 is not None and not v4[0] & ((1 << (32 - v4[1])) - 1):
        return text
    return str(ipaddress.ip_network(text, strict=True))


@lru_cache(maxsize=1 << 16)
def canonical_address(text: str) -> str:
    """'192.0.2.1' stays; 'FD00::0:1' -> 'fd00::1' (ValueError if it is no address). Remembered as
    canonical_interface is: a 50-host inventory's gateways were 1000 ipaddress objects a run."""
    if _ipv4_canonical(f"{text}/32") is not None:
        return text
    return str(ipaddress.ip_address(text))


def _ipv4_canonical(text: str) -> tuple[int, int] | None:
    """(address, prefix length) if `text` is already written as ipaddress would print it
    ('192.0.2.0/24': no leading zeros, a prefix length); else None, and ipaddress decides.
    An inventory of 1000 devices has 3000-4000 such strings, each looked at once per run: the C
    library's strict parser and printer cost 1-2 us (an address that prints back as written is
    a canonical dotted quad), where an ipaddress object costs 10-20 us."""
    address, _, length = text.partition("/")
    prefix = _PREFIX_LENGTHS.get(length)
    if prefix is None:
        return None
    try:
        packed = inet_pton(AF_INET, address)
    except (OSError, ValueError):  # not an address; a NUL or a character UTF-8 cannot carry
        return None
    if inet_ntop(AF_INET, packed) != address:  # a leading zero, which inet_pton may take
        return None
    return int.from_bytes(packed, "big"), prefix


_PREFIX_LENGTHS = {str(n): n for n in range(33)}  # "0".."32", as ipaddress writes them


def default_metric(to: str) -> int:
    return IPV6_DEFAULT_METRIC if ":" in to else IPV4_DEFAULT_METRIC


def split_endpoint(text: str) -> tuple[str, int]:
    """'192.0.2.1:40839' -> ('192.0.2.1', 40839); '[fd00::1]:5' -> ('fd00::1', 5). ValueError if bad."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (PORT 1-65535; IPv6 as [ADDRESS]:PORT)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, [ADDRESS]:PORT")
    return host, int(port)


def tunnel_to_dict(t: Tunnel) -> dict[str, Any]:
    """The forwarder's spec (what spec.json and facts hold): every field but the run state."""
    return {f.name: (v.value if isinstance(v, StrEnum) else v)
            for f in fields(t) if f.name != "state" for v in (getattr(t, f.name),)}


def tunnel_from_dict(d: Mapping[str, Any], state: RunState = RunState.RUNNING) -> Tunnel:
    """Raises KeyError or ValueError for a dict that is not a tunnel spec."""
    return Tunnel(
        name=str(d["name"]), device=str(d["device"]), transport=Transport(d["transport"]), role=Role(d["role"]),
        endpoint=str(d["endpoint"]), peer=d.get("peer"), device_type=DeviceType(d["device_type"]),
        pi=bool(d["pi"]), vnet_hdr=bool(d["vnet_hdr"]), multi_queue=bool(d["multi_queue"]),
        private_key_file=_text(d.get("private_key_file")), public_key=_text(d.get("public_key")),
        peer_public_key=_text(d.get("peer_public_key")), psk_file=_text(d.get("psk_file")),
        psk_id=_text(d.get("psk_id")), compress=bool(d.get("compress", False)),
        user=_text(d.get("user")), group=_text(d.get("group")), state=state)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
