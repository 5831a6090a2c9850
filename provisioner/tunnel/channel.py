"""The one conversation between a host's supervisor and its data plane: bounded JSON messages,
with descriptors, over a SOCK_SEQPACKET socket pair.

A message is one datagram (no framing to get wrong), at most MAX_MESSAGE bytes, carrying at most
MAX_FDS descriptors. Each side treats what it hears as hostile in its own way: the data plane
runs as an unprivileged user and may be compromised, so the supervisor checks every field it
reads (a closed set of ops, names it knows); descriptors that arrive unasked are closed.
"""

from __future__ import annotations

import array
import json
import os
import socket
from dataclasses import dataclass
from enum import StrEnum

from ..files import parse_json
from ..hints import Any

MAX_MESSAGE = 64 * 1024
MAX_FDS = 2


class Op(StrEnum):
    """What one side tells the other."""

    ADD = "add"  # supervisor → plane: run this tunnel (its device and socket come with it)
    REMOVE = "remove"  # supervisor → plane: stop this tunnel and close what it holds
    ADDED = "added"  # plane → supervisor: it runs
    REMOVED = "removed"  # plane → supervisor: it stopped, its socket is closed (the port is free)
    FAILED = "failed"  # plane → supervisor: it could not start, or its device went away


@dataclass(frozen=True)
class Message:
    """One message between provision and a tunnel supervisor: an operation on a named tunnel,
    a JSON body, and the descriptors it hands over."""

    op: Op
    name: str
    body: dict[str, Any]
    fds: tuple[int, ...] = ()


class ChannelClosed(Exception):
    """The other side is gone."""


class Channel:
    def __init__(self, sock: socket.socket):
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, op: Op, name: str, body: dict[str, Any] | None = None, fds: tuple[int, ...] = ()) -> None:
        data = json.dumps({"op": op.value, "name": name, **(body or {})}).encode()
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"a {op.value} message for {name} is {len(data)} bytes")
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            self.sock.sendmsg([data], ancillary)
        except (BrokenPipeError, ConnectionResetError):
            raise ChannelClosed from None

    def receive(self) -> Message | None:
        """The next message, or None if none is waiting (the socket is non-blocking) or it was not
        one: malformed messages are dropped, their descriptors closed. ChannelClosed at the end."""
        try:
            data, ancillary, flags, _ = self.sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * 4),
                                                          socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except (ConnectionResetError, OSError) as exc:
            raise ChannelClosed from exc
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[:len(payload) - len(payload) % got.itemsize])
                fds.extend(got)
        if not data and not fds:
            raise ChannelClosed
        m = None if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) else decode(data)
        if m is None:
            for fd in fds:
                os.close(fd)
            return None
        return Message(m.op, m.name, m.body, tuple(fds))

    def close(self) -> None:
        self.sock.close()


def decode(data: bytes) -> Message | None:
    """A message's bytes as a Message (without descriptors), or None if they are not one. Pure."""
    if len(data) > MAX_MESSAGE:
        return None
    try:
        d = parse_json(data)
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not 0 < len(d["name"]) <= 64:
            return None
        return Message(Op(d.pop("op")), d.pop("name"), d)
    except (ValueError, KeyError, TypeError):
        return None
