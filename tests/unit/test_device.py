"""The device side of a forwarder (device.py): what is sealed for a read, what reaches the device
for a payload, and the userspace GRO that glues a flow's segments into one write."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from provisioner.tunnel import vnet
from provisioner.tunnel.device import Device, Gro
from provisioner.tunnel.drops import Drop
from .inet import checksum
from .runs import drained

MSS = 1380


def segment(seq: int, payload: bytes, flags: int = vnet.TCP_ACK, ident: int = 1) -> bytes:
    """A TCP/IPv4 packet with full, correct checksums, as a peer's device sends it."""
    src, dst = bytes([198, 51, 100, 2]), bytes([198, 51, 100, 1])
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, 5201, seq, 7, 5 << 4, flags, 500, 0, 0)) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp[16:18] = struct.pack("!H", checksum(pseudo + bytes(tcp)))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ident, 0x4000, 64, 6, 0, src, dst))
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    return bytes(ip + tcp)


@pytest.fixture
def device_pair():
    """A Device whose writes arrive, one message per writev, at the other end of a socket pair."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield ours, theirs
    ours.close()
    theirs.close()


def feed(gro: Gro, packets: list[bytes]) -> None:
    for p in packets:
        buf, at = gro.room(len(p) + 16)
        buf[at:at + len(p)] = p
        assert gro.take(buf, at, len(p)) is None
    gro.flush()


def test_a_run_of_segments_is_one_write_with_a_partial_checksum(device_pair) -> None:
    ours, theirs = device_pair
    dev = Device(ours.fileno(), tap=False, pi=False, vnet_hdr=True, wireguard=True, compress=False)
    gro = Gro(dev)
    payloads = [os.urandom(MSS) for _ in range(10)] + [os.urandom(100)]
    seq, packets = 1000, []
    for i, p in enumerate(payloads):
        last = i == len(payloads) - 1
        packets.append(segment(seq, p, vnet.TCP_ACK | (vnet.TCP_PSH if last else 0), ident=i + 1))
        seq += len(p)
    feed(gro, packets)
    [written] = drained(theirs)
    flags, gso, hdr_len, gso_size, csum_start, csum_offset = vnet.HDR.unpack_from(written)
    assert (flags, gso, hdr_len, gso_size, csum_start, csum_offset) == (1, vnet.GSO_TCPV4, 40, MSS, 20, 16)
    pkt = written[vnet.HDR_LEN:]
    assert pkt[40:] == b"".join(payloads)
    assert struct.unpack_from("!H", pkt, 2)[0] == len(pkt)
    assert checksum(pkt[:20]) == 0, "the IPv4 header checksum is right for the glued packet"
    assert struct.unpack_from("!I", pkt, 24)[0] == 1000 and pkt[33] == vnet.TCP_ACK | vnet.TCP_PSH
    pseudo = sum(struct.unpack("!4H", pkt[12:20])) + 6 + len(pkt) - 20
    while pseudo > 0xFFFF:
        pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    assert struct.unpack_from("!H", pkt, 36)[0] == pseudo, "the pseudo-header's sum, for the kernel to finish"


def test_what_cannot_be_glued_is_written_as_it_came(device_pair) -> None:
    ours, theirs = device_pair
    dev = Device(ours.fileno(), tap=False, pi=False, vnet_hdr=True, wireguard=True, compress=False)
    gro = Gro(dev)
    udp = bytearray(segment(1, b"x" * 50))
    udp[9] = 17  # not TCP
    ack = segment(1, b"")  # no payload
    feed(gro, [bytes(udp), ack])
    assert [w[vnet.HDR_LEN:] for w in drained(theirs)] == [bytes(udp), ack]


@pytest.mark.parametrize("plain", [b"\x45" + bytes(10), b"\x60" + bytes(20), b"\x15" + bytes(40),
                                   b"\x45\x00\x00\x50" + bytes(40)])  # short, short, version 1, longer than sent
def test_a_decrypted_packet_that_is_not_ip_never_reaches_the_device(device_pair, plain: bytes) -> None:
    ours, theirs = device_pair
    dev = Device(ours.fileno(), tap=False, pi=False, vnet_hdr=False, wireguard=True, compress=False)
    assert dev.deliver(plain) is Drop.BAD_INNER
    assert Gro(Device(ours.fileno(), tap=False, pi=False, vnet_hdr=True, wireguard=True, compress=False)) \
        .take(memoryview(bytearray(16) + plain), 16, len(plain)) is Drop.BAD_INNER
    assert drained(theirs) == []


def test_wireguard_padding_is_trimmed_and_a_keepalive_writes_nothing(device_pair) -> None:
    ours, theirs = device_pair
    dev = Device(ours.fileno(), tap=False, pi=False, vnet_hdr=False, wireguard=True, compress=False)
    packet = segment(5, b"hello")
    assert dev.deliver(packet + bytes(11)) is None and dev.deliver(b"") is None
    assert drained(theirs) == [packet]
