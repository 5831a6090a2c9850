"""A small synchronous rtnetlink socket: batched requests, fast dumps, the kernel's own reasons.

Why not pyroute2's IPRoute on this path (measured on the 2-core test machine, 1000 taps):
importing pyroute2 costs 0.14 s and decoding one link message through its object model
0.2 ms (every one of the ~40 attributes becomes an object), so a dump of 1000 links,
addresses and routes costs 0.45-0.6 s in Python, more than `ip -batch` needs to create
them all. Here a request is a few `struct.pack` calls, many requests go to the kernel in
one `send` (the kernel runs them in order and answers the ones that fail), and a dump decodes only
the attributes the plan needs (~10 us a link). pyroute2 stays the independent oracle in
the integration tests, which check what the kernel holds without using this code.
"""

from __future__ import annotations

import errno
import os
import struct
import time
# socket's C half, whose names these are: `import socket` makes four IntEnums of its constants, 11M
# instructions (3 ms) of every run
from _socket import AF_NETLINK, AF_UNSPEC, MSG_DONTWAIT, SOCK_RAW, SOL_SOCKET, SO_RCVBUF, SO_RCVTIMEO, SO_SNDBUF, socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..hints import Protocol

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_EXT_MASK = 1, 3, 4, 18, 20, 29
IFLA_GROUP = 27
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_TUN_OWNER, IFLA_TUN_GROUP, IFLA_TUN_TYPE, IFLA_TUN_PI, IFLA_TUN_VNET_HDR = 1, 2, 3, 4, 5
IFLA_TUN_PERSIST, IFLA_TUN_MULTI_QUEUE = 6, 7
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFF_UP = 0x1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
RTPROT_KERNEL = 2
RT_TABLE_UNSPEC, RT_TABLE_LOCAL = 0, 255

HDR = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTA = struct.Struct("=HH")
U32 = struct.Struct("=I")
ERR = struct.Struct("=i")
BATCH = 256  # requests per send: should all fail, their errors must fit the receive buffer


def attr(kind: int, data: bytes) -> bytes:
    size = RTA.size + len(data)
    return RTA.pack(size, kind) + data + b"\0" * (-size % 4)


def u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


def u32_of(raw: bytes | None, default: int) -> int:
    """A u32 attribute's value, as `pick` found it; `default` when absent or short."""
    return U32.unpack_from(raw)[0] if raw is not None and len(raw) >= 4 else default


def links_request() -> bytes:
    """The body of a dump of every link, without the statistics nobody here reads."""
    return IFINFO.pack(AF_UNSPEC, 0, 0, 0, 0) + u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)


def _pick(data: memoryview | bytes, offset: int, types: tuple[int, ...]) -> tuple[bytes | None, ...]:
    """For each of `types`, the payload of the first attribute of that type from `offset` on, or
    None: a link carries some 40 attributes and the observer reads 5, so the others are stepped
    over without being sliced, and the walk stops once each was found (the kernel sends each
    once). The model of kernel/_rtattr.c's pick, and its fallback where that is not built."""
    if offset < 0:
        raise ValueError("negative offset")
    view = memoryview(data)
    found: list[bytes | None] = [None] * len(types)
    where: dict[int, list[int]] = {}
    for i, t in enumerate(types):
        where.setdefault(t, []).append(i)
    end, left = len(view), len(types)
    unpack = RTA.unpack_from
    while left and offset + 4 <= end:
        size, kind = unpack(view, offset)
        if size < 4:
            break
        for i in where.get(kind & 0x3FFF, ()):
            if found[i] is None:
                found[i] = bytes(view[offset + 4: offset + size])
                left -= 1
        offset += (size + 3) & ~3
    return tuple(found)


def _messages(data: bytes, seq: int) -> tuple[list[tuple[int, bytes]], bool, bool, int]:
    """What one received buffer holds of the answer to request `seq`: its messages as (type,
    payload), in order; whether the answer's end (NLMSG_DONE) was among them; whether the kernel
    marked one as interrupted (NLM_F_DUMP_INTR); the errno of an error message, 0 for none. The
    walk stops at the end, at DONE, at an error, or at a header that claims less than its own
    size (EBADMSG, as is an error message too short for its code or whose code is not a negative
    errno). The model of kernel/_rtattr.c's messages, and its fallback."""
    view = memoryview(data)
    out: list[tuple[int, bytes]] = []
    offset, end, interrupted = 0, len(view), False
    while offset + HDR.size <= end:
        length, kind, flags, mseq, _ = HDR.unpack_from(view, offset)
        if length < HDR.size:
            return out, False, interrupted, errno.EBADMSG
        payload = bytes(view[offset + HDR.size: offset + length])
        offset += (length + 3) & ~3
        if mseq != seq:
            continue
        interrupted |= bool(flags & NLM_F_DUMP_INTR)
        if kind == NLMSG_DONE:
            return out, True, interrupted, 0
        if kind == NLMSG_ERROR:
            if len(payload) < ERR.size:
                return out, False, interrupted, errno.EBADMSG
            (error,) = ERR.unpack_from(payload)
            if error == 0:
                continue  # an acknowledgement
            return out, False, interrupted, -error if -4096 < error < 0 else errno.EBADMSG
        out.append((kind, payload))
    return out, False, interrupted, 0


LINK_ATTRS = (IFLA_IFNAME, IFLA_MTU, IFLA_ADDRESS, IFLA_IFALIAS, IFLA_LINKINFO)
INFO_ATTRS = (IFLA_INFO_KIND, IFLA_INFO_DATA)
TUN_ATTRS = (IFLA_TUN_TYPE, IFLA_TUN_OWNER, IFLA_TUN_GROUP, IFLA_TUN_PI, IFLA_TUN_VNET_HDR, IFLA_TUN_MULTI_QUEUE)
Link = tuple[int, int, str, int, bytes | None, str | None, str, tuple[int | None, ...] | None]


def _link(msg: bytes) -> Link | None:
    """An RTM_NEWLINK payload as (index, flags, name, mtu, mac, alias, kind, tun), or None if it
    is shorter than its fixed header. Absent, name and kind are "", mtu 0, mac and alias None;
    tun is None unless the kind is "tun" with its data, then (type, owner, group, pi, vnet_hdr,
    multi_queue), each the little-endian value of at most its first 4 bytes, or None. The
    model of kernel/_rtattr.c's link (a tenth of the time: one call, where this makes a dozen),
    and its fallback."""
    if len(msg) < IFINFO.size:
        return None
    _, _, index, flags, _ = IFINFO.unpack_from(msg)
    raw_name, raw_mtu, mac, raw_alias, info = _pick(msg, IFINFO.size, LINK_ATTRS)
    kind, tun = "", None
    if info is not None:
        raw_kind, data = _pick(info, 0, INFO_ATTRS)
        kind = cstr(raw_kind) if raw_kind is not None else ""
        if kind == "tun" and data is not None:
            tun = tuple(None if v is None else int.from_bytes(v[:4], "little") for v in _pick(data, 0, TUN_ATTRS))
    return (index, flags, cstr(raw_name) if raw_name is not None else "",
            U32.unpack_from(raw_mtu)[0] if raw_mtu is not None and len(raw_mtu) >= U32.size else 0,
            mac, cstr(raw_alias) if raw_alias is not None else None, kind, tun)


try:  # the same in C (kernel/_rtattr.c)
    from ._rtattr import link, messages, pick
except ImportError:  # a checkout or wheel built without it
    link, messages, pick = _link, _messages, _pick

# a socket made and dumps read on a thread of their own (kernel/_readahead.c); without it, nothing is read ahead
try:
    from ._readahead import start_in as _start_in
except ImportError:
    _start_in = None
READ_AHEAD = _start_in is not None


def _answer(datagrams: Iterable[bytes], seq: int) -> list[tuple[int, bytes]] | None:
    """The messages of the answer to request `seq`, from datagrams taken up to its end; None if
    the kernel marked any of them interrupted (a change under way: the dump is asked for again)
    or they ended before it did. An error message is NetlinkError."""
    out: list[tuple[int, bytes]] = []
    interrupted = False
    for datagram in datagrams:
        found, done, cut, error = messages(datagram, seq)
        out += found
        interrupted |= cut  # the kernel marks the first message after a change, not the last
        if error:
            raise NetlinkError(error, "malformed netlink message" if error == errno.EBADMSG else os.strerror(error))
        if done:
            return None if interrupted else out
    return None


def cstr(value: memoryview | bytes) -> str:
    return bytes(value).split(b"\0", 1)[0].decode(errors="replace")


@dataclass(frozen=True)
class Request:
    """One netlink request that changes something, encoded but not yet numbered: transact numbers
    a batch's requests, so each error the kernel answers is matched to its request."""

    type: int
    flags: int
    body: bytes
    what: str = ""  # the resource it changes, for error messages


@dataclass(frozen=True)
class Ack:
    """What became of one request: what took effect is exactly what the kernel did not refuse,
    which a rollback needs to know."""

    error: int  # 0, or a positive errno
    reason: str  # the kernel's extended-ack message, when it gave one
    # False: the kernel never answered for it, its socket failed (`reason` says how). With error 0
    # the kernel ran it and its refusal, if any, was lost: it counts as done; else it was not sent.
    heard: bool = True


ACKED = Ack(0, "")  # a request that took effect (what the kernel may add to a success is not read)


class NetlinkError(OSError):
    """The socket itself failed (not a request: those fail in their Ack). `acks` holds what is
    known of the requests from the first on, in order, so a transaction can undo what took
    effect; the requests after them were not sent, or what became of them is unknown."""

    acks: tuple[Ack, ...] = ()


TRANSIENT = frozenset({errno.ENOBUFS, errno.EAGAIN, errno.EINTR, errno.ENOMEM})
SEND_TRIES = 4  # a send the kernel refuses for want of memory is tried again after 0, 10, 40, 90 ms
# How long a receive may wait. The kernel queues a send's answers before the send returns, and makes
# the next part of a dump in the receive before: a receive that waits is for an answer that will not
# come. One dropped from a full receive buffer sets the socket's error (ENOBUFS), which the next
# receive raises, but not one dropped while the buffer is still marked full, nor what follows a
# message the kernel could not read; without a limit that wait would hold the host's lock for ever.
RECEIVE_TIMEOUT = 10
TIMEVALS = (struct.Struct("@ll"), struct.Struct("@qq"))  # struct timeval: two longs, or a 64-bit time_t
DRAIN = 2 * BATCH + 2  # datagrams read at most after a failed receive: a batch's answers, and more


def receive(sock: socket) -> bytes:
    """One datagram; a failure, or no answer within RECEIVE_TIMEOUT, is a NetlinkError."""
    try:
        return sock.recv(1 << 20)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise NetlinkError(exc.errno, f"no answer from the kernel within {RECEIVE_TIMEOUT} s") from None
        raise NetlinkError(exc.errno, f"netlink receive failed: {exc.strerror}") from None


def send(sock: socket, payload: bytes) -> None:
    """One netlink send, tried again while the kernel's reason is a passing one (ENOBUFS,
    EAGAIN, ...): a netlink send is taken whole or not at all, so trying again is safe. Measured
    with strace's fault injection (docs/chaos.md): one failed send used to abort an apply."""
    for attempt in range(SEND_TRIES):
        try:
            sock.send(payload)
            return
        except OSError as exc:
            if exc.errno not in TRANSIENT or attempt == SEND_TRIES - 1:
                raise NetlinkError(exc.errno, f"netlink send failed: {exc.strerror}") from None
            time.sleep(0.01 * attempt * attempt)


class ReadAhead(Protocol):
    """What kernel/_readahead.c's start_in gives: the thread making a socket and reading, and what it read."""

    def opened(self) -> tuple[int, int]: ...  # the socket, handed over, and its namespace; OSError if it failed
    def result(self) -> tuple[tuple[bytes, ...], ...]: ...  # per request its datagrams; OSError if it failed
    def wait(self) -> None: ...  # the reader done with it, nothing made of what it read, a socket not handed over closed


class Netlink:
    """One NETLINK_ROUTE socket in whatever network namespace the calling thread was in, or
    (`made`) one an Opening's thread made and read dumps on."""

    def __init__(self, made: Opening | None = None) -> None:
        self.seq = 0
        self._reading: ReadAhead | None = None  # a thread reading dumps asked for ahead, still under way
        self._read: tuple[tuple[bytes, ...], ...] | None = None  # what it read (None: it failed)
        self._ahead: dict[tuple[int, bytes], tuple[int, int]] = {}  # (type, body) -> its index, its seq
        if made is not None:
            try:
                self.sock = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, made.fd)
            except BaseException:
                os.close(made.fd)
                raise
            self.seq, self._reading, self._ahead = len(made.ahead), made.reading, dict(made.ahead)
            return
        self.sock = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)
        try:
            self._setup()
        except BaseException:
            self.sock.close()
            raise

    def _setup(self) -> None:
        for forced, plain, value in ((SO_SNDBUFFORCE, SO_SNDBUF, 1 << 20),
                                     (SO_RCVBUFFORCE, SO_RCVBUF, 8 << 20)):
            try:
                self.sock.setsockopt(SOL_SOCKET, forced, value)
            except PermissionError:  # not root: the capped size still does for reading
                self.sock.setsockopt(SOL_SOCKET, plain, value)
        for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
        for timeval in TIMEVALS:  # the one this C library's struct timeval is
            try:
                self.sock.setsockopt(SOL_SOCKET, SO_RCVTIMEO, timeval.pack(RECEIVE_TIMEOUT, 0))
                break
            except OSError:
                continue
        self.sock.bind((0, 0))
        # connected to the kernel: a datagram from any other socket is refused (ECONNREFUSED at its
        # sender), so a process with CAP_NET_ADMIN in the namespace cannot answer for the kernel
        self.sock.connect((0, 0))

    def close(self) -> None:
        if self._reading is not None:  # its thread uses the descriptor until it ends
            self._reading.wait()
            self._reading = None
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _dump_request(self, msg_type: int, body: bytes) -> tuple[int, bytes]:
        """A dump asked for: its sequence number, and the message that asks."""
        seq = self._next_seq()
        return seq, dump_request(msg_type, body, seq)

    def _settle(self) -> None:
        """The reading thread ended, and what it read kept (nothing, if it failed: each dump is then
        asked for in turn. An answer too large to keep was read to its end first; after a failed
        receive the kernel may still be in the middle of the dump, and the one asked in turn then
        fails as any refused dump does)."""
        if self._reading is not None:
            try:
                self._read = self._reading.result()
            except OSError:
                self._read = None
            self._reading = None

    def _received(self) -> Iterator[bytes]:
        """The socket's datagrams as they come, for a dump's answer to be walked to its end."""
        while True:
            yield receive(self.sock)

    def dump(self, msg_type: int, body: bytes) -> list[tuple[int, bytes]]:
        """Every (type, message) of a dump; retried whole if the kernel says it was interrupted.
        A dump read ahead is taken from what was read, unless that reading failed or was
        interrupted: then it is asked for again, here."""
        self._settle()
        ahead = self._ahead.pop((msg_type, body), None)
        if ahead is not None:
            index, seq = ahead
            read = self._read
            if not self._ahead:
                self._read = None  # the last one taken: what was read is not kept (10 000 links: 12 MB)
            if read is not None:
                whole = _answer(read[index], seq)
                if whole is not None:
                    return whole
        for _ in range(5):
            seq, request = self._dump_request(msg_type, body)
            send(self.sock, request)
            whole = _answer(self._received(), seq)
            if whole is not None:
                return whole
        raise NetlinkError(errno.EINTR, "dump kept being interrupted by concurrent changes")

    def transact(self, requests: Sequence[Request]) -> list[Ack]:
        """Send requests in batches, in order, and learn which took effect. The kernel runs every
        message of a send in order and keeps going after a failure; it answers a request asked
        without NLM_F_ACK only if it fails. So a batch is its requests without that flag and a
        fence after them, a NOOP that asks for one: its answer says the batch is over, and each
        request that no error names took effect. Acknowledged one by one, 1000 devices' 3000
        settings cost the kernel 3000 answers and this process 3000 receives: `transact` took
        38-42 ms of a converge, now 30-31 (20-30 of it the kernel's; docs/performance.md, the
        twenty-third round)."""
        self._settle()
        self._ahead, self._read = {}, None  # read before these changes: no longer the kernel's state
        acks: list[Ack] = []
        for start in range(0, len(requests), BATCH):
            chunk = requests[start:start + BATCH]
            first = self.seq + 1
            payload = b"".join(
                HDR.pack(HDR.size + len(r.body), r.type, (r.flags | NLM_F_REQUEST) & ~NLM_F_ACK, self._next_seq(), 0)
                + r.body for r in chunk)
            fence = self._next_seq()
            try:
                send(self.sock, payload + HDR.pack(HDR.size, NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, fence, 0))
            except NetlinkError as exc:
                exc.acks = tuple(acks)
                raise
            failed: dict[int, Ack] = {}  # by index in the chunk: the requests an error names
            while True:
                try:
                    data = memoryview(receive(self.sock))
                except NetlinkError as exc:
                    if self._drained(first, fence, failed, acks):
                        break  # what was still queued held the fence: the batch is known whole
                    # the kernel ran the whole batch, and refusals may be lost: what it did not refuse
                    # counts as done, unheard (a rollback undoes it, which is harmless under the lock:
                    # it fails, or sets what is there; an apply's verification reads what is there)
                    lost = Ack(0, exc.strerror or "", heard=False)
                    exc.acks = (*acks, *(failed.get(i, lost) for i in range(len(chunk))))
                    raise
                if _errors(data, first, fence, failed, acks):
                    break
            acks.extend(failed.get(i, ACKED) for i in range(len(chunk)))
        return acks

    def _drained(self, first: int, fence: int, failed: dict[int, Ack], acks: list[Ack]) -> bool:
        """After a failed receive, what is still queued, read without waiting (so the socket's
        buffer is empty for what it is used for next, a rollback say: while it is marked full,
        answers are dropped without a word): True if it held the batch's fence."""
        for _ in range(DRAIN):
            try:
                data = memoryview(self.sock.recv(1 << 20, MSG_DONTWAIT))
            except OSError:  # nothing more (EAGAIN), or the socket's error again
                return False
            if _errors(data, first, fence, failed, acks):
                return True
        return False


def dump_request(msg_type: int, body: bytes, seq: int) -> bytes:
    return HDR.pack(HDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


class Opening:
    """A socket being made in the network namespace whose file is `path`, and these dumps (type,
    body) read on it, on a thread of their own (kernel/_readahead.c's start_in) while this one
    does other work. The thread enters the namespace itself, so this one need not (a fleet's
    next host: connection/kernel.py's Ahead). `socket` then gives it as a Netlink whose `dump`
    of the same (type, body) takes what was read. Only with the compiled reader (READ_AHEAD)."""

    def __init__(self, path: str, dumps: Sequence[tuple[int, bytes]]) -> None:
        assert _start_in is not None, "no compiled reader: see READ_AHEAD"
        self.ahead = {dump: (index, index + 1) for index, dump in enumerate(dict.fromkeys(dumps))}  # each once
        self.reading: ReadAhead = _start_in(path, tuple(dump_request(t, b, seq) for (t, b), (_, seq)
                                                        in self.ahead.items()))
        self.fd = -1

    def socket(self, namespace: int) -> Netlink | None:
        """The socket, if it was made and in `namespace` (namespace.current: the one this thread
        is in now); else None, and nothing is left open (the namespace was made anew since, say)."""
        try:
            self.fd, made_in = self.reading.opened()
        except OSError:
            return None
        sock = Netlink(self)
        if made_in != namespace:
            sock.close()
            return None
        return sock

    def close(self) -> None:
        """The reader done with it; a socket never handed over closed."""
        self.reading.wait()

    def __enter__(self) -> Opening:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _errors(data: memoryview, first: int, fence: int, failed: dict[int, Ack], acks: list[Ack]) -> bool:
    """The errors in a datagram that name a request of the batch numbered `first` up to its
    `fence`, put in `failed`; True once the fence is answered. A header claiming less than
    itself, or an error message too short for its code or with one that is no errno, is
    EBADMSG (with what is known)."""
    offset, end = 0, len(data)
    while offset + HDR.size <= end:
        length, kind, flags, mseq, _ = HDR.unpack_from(data, offset)
        start, offset = offset + HDR.size, offset + ((length + 3) & ~3)
        mine = kind == NLMSG_ERROR and first <= mseq <= fence
        if length < HDR.size or (mine and min(length, end - start + HDR.size) < HDR.size + ERR.size):
            raise _malformed(acks, failed)  # a walk that stands still, an answer without its code
        if mine:
            if mseq == fence:
                return True
            code = ERR.unpack_from(data, start)[0]
            if not -4096 < code <= 0:  # an errno is under 4096, told negative (found by fuzzing; as `_messages`)
                raise _malformed(acks, failed)
            # a success told all the same (a kernel that acknowledged anyway) is the shared Ack
            failed[mseq - first] = ACKED if code == 0 else _ack(data[start:start - HDR.size + length], flags)
    return False


def _malformed(acks: list[Ack], failed: dict[int, Ack]) -> NetlinkError:
    """What a transaction raises for a message it cannot read, with what is known of the requests:
    those of earlier batches, and of this one every request up to the last that an answer
    named (the kernel answers in order, so those before it without an error took effect)."""
    exc = NetlinkError(errno.EBADMSG, "malformed netlink message")
    exc.acks = (*acks, *(failed.get(i, ACKED) for i in range(max(failed, default=-1) + 1)))
    return exc


def _ack(msg: memoryview, flags: int) -> Ack:
    code = -ERR.unpack_from(msg)[0]
    reason = ""
    if flags & NLM_F_ACK_TLVS and len(msg) >= ERR.size + HDR.size:
        # error(4) + the original header (payload left out: NETLINK_CAP_ACK), then TLVs
        inner_len = HDR.unpack_from(msg, 4)[0]
        start = 4 + (HDR.size if flags & 0x100 else inner_len)
        (message,) = pick(msg, start, (NLMSGERR_ATTR_MSG,))
        if message is not None:
            reason = cstr(message)
    return Ack(code, reason)
