"""Carrying out a plan as a transaction: every step knows its inverse.

A plan's changes become kernel steps (pure, `steps_for`); `Transaction` runs them with
netlink requests batched, remembers which took effect, and on failure undoes those in
reverse order before the original error is raised again (as pyroute2's NDB transactions
and nmstate's checkpoints do). Starting and stopping a tunnel's forwarder are steps too,
carried out by the host's `Forwarders`, so a failed apply also undoes those.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ForwarderError, KernelError
from ..model import OWNER_ALIAS, OWNER_PROTOCOL, Address, Device, LinkState, Observed, Route, Tunnel
from ..plan import Action, Change, Kind, Plan, Resource, is_rekey
from . import netlink as nl
from . import tun

if TYPE_CHECKING:
    from ..tunnel.control import Tunnels as Forwarders

RTPROT_BOOT = 3  # what `ip route add` uses; given back to routes we did not own on rollback


@dataclass(frozen=True)
class Step:
    """One kernel operation. `verb` is one of the names in `_ENCODERS` or `create-tun`."""

    verb: str
    subject: Resource
    prior: Resource | None = None  # what a set/replace overwrites, for its inverse
    restores: tuple[Address | Route, ...] = ()  # what a link delete takes with it

    @property
    def what(self) -> str:
        s = self.subject
        if isinstance(s, Device):
            return f"device {s.name}"
        if isinstance(s, Address):
            return f"address {s.cidr} on {s.device}"
        if isinstance(s, Tunnel):
            return f"tunnel {s.name}"
        return f"route {s.to}" + (f" table {s.table}" if s.table != 254 else "") + f" metric {s.metric}"

    def inverse(self) -> list[Step]:
        s = self.subject
        if self.verb == "create-tun":
            return [Step("delete-link", s)]
        if self.verb == "set-link":
            return [Step("set-link", self.prior, s)] if self.prior is not None else []
        if self.verb == "delete-link":
            assert isinstance(s, Device)
            back = [Step("create-tun", s), Step("set-link", s)]
            back += [Step("add-addr", a) for a in self.restores if isinstance(a, Address)]
            back += [Step("add-route", r) for r in self.restores if isinstance(r, Route)]
            return back
        if self.verb == "add-addr":
            return [Step("del-addr", s)]
        if self.verb == "del-addr":  # and the routes the kernel may have taken with the address
            return [Step("add-addr", s), *(Step("replace-route", r) for r in self.restores)]
        if self.verb == "add-route":
            return [Step("del-route", s)]
        if self.verb == "del-route":
            return [Step("add-route", s)]
        if self.verb == "start-forwarder":
            return [Step("stop-forwarder", s)]
        if self.verb == "stop-forwarder":
            return [Step("start-forwarder", s)]
        if self.verb == "rekey-forwarder":
            return [Step("rekey-forwarder", self.prior, s)] if self.prior is not None else []
        if self.verb == "replace-route":  # a re-asserted route (prior == subject) has nothing to undo
            return [Step("replace-route", self.prior, s)] if self.prior not in (None, s) else []
        raise AssertionError(self.verb)


def steps_for(plan: Plan, observed: Observed) -> list[tuple[Change, list[Step]]]:
    """Pure: the kernel steps of each change, in the plan's order."""
    deleted_routes = {c.before.key for c in plan.changes
                      if c.kind is Kind.ROUTE and c.action is Action.DELETE and isinstance(c.before, Route)}

    def kept_routes_on(device: str) -> tuple[Route, ...]:
        """What the kernel may take with the device or its address, and an undo puts back."""
        return tuple(r for r in observed.routes if r.dev == device and r.key not in deleted_routes)

    out = []
    for c in plan.changes:
        steps: list[Step] = []
        after, before = c.after, c.before
        if c.kind is Kind.DEVICE:
            if c.action in (Action.DELETE, Action.REPLACE):
                assert isinstance(c.before, Device)
                name = c.before.name
                takes: tuple[Address | Route, ...] = tuple(
                    a for a in observed.addresses if a.device == name and not a.is_link_local_v6)
                takes += kept_routes_on(name)
                steps.append(Step("delete-link", c.before, restores=takes))
            if c.action in (Action.CREATE, Action.REPLACE):
                assert after is not None
                steps += [Step("create-tun", after), Step("set-link", after)]
            if c.action is Action.UPDATE:
                assert after is not None
                steps.append(Step("set-link", after, before))
        elif c.kind is Kind.TUNNEL:
            if is_rekey(c):
                assert after is not None
                steps.append(Step("rekey-forwarder", after, before))
            else:
                if before is not None:
                    steps.append(Step("stop-forwarder", before))
                if after is not None:
                    steps.append(Step("start-forwarder", after))
        elif c.kind is Kind.ADDRESS:
            subject = after or before
            assert subject is not None
            if c.action is Action.CREATE:
                steps.append(Step("add-addr", subject))
            else:
                assert isinstance(subject, Address)
                steps.append(Step("del-addr", subject, restores=kept_routes_on(subject.device)))
        elif c.action is Action.DELETE:
            assert before is not None
            steps.append(Step("del-route", before))
        else:
            assert after is not None
            steps.append(Step("add-route" if c.action is Action.CREATE else "replace-route", after, before))
        out.append((c, steps))
    return out


# The phases of a plan, in order. Within a phase steps are independent, so all tun devices
# are created (ioctls) before their netlink settings go out in large batches.
PHASES = ("stop-forwarder", "del-route", "del-addr", "delete-link", "create-tun", "set-link", "add-addr",
          "add-route", "start-forwarder")
PROCESS_VERBS = ("stop-forwarder", "start-forwarder", "rekey-forwarder")
_PHASE_OF = {verb: i for i, verb in enumerate(PHASES)} | {"replace-route": PHASES.index("add-route"),
                                                          "rekey-forwarder": PHASES.index("start-forwarder")}


def schedule(per_change: list[tuple[Change, list[Step]]]) -> list[Step]:
    """All steps in phase order (stable: the plan's order within a phase)."""
    return sorted((s for _, steps in per_change for s in steps), key=lambda s: _PHASE_OF[s.verb])


@dataclass
class Transaction:
    """Runs steps; `done` keeps every step that took effect, so they can be undone."""

    host: str
    sock: nl.Netlink
    forwarders: Forwarders | None = None
    done: list[Step] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def run(self, steps: Sequence[Step], on_step: Callable[[Step], None] = lambda s: None) -> None:
        """Raises KernelError at the first failure; the steps before it stay in `done`."""
        failure = self._execute(steps, on_step, stop=True)
        if failure:
            step, code, reason = failure[0]
            if step.verb in PROCESS_VERBS:
                raise ForwarderError(self.host, reason, resource=step.what)
            raise KernelError(self.host, step.what, code, reason)

    def rollback(self) -> list[str]:
        """Undo `done` in reverse order; returns what could not be undone (best effort)."""
        undo = [inv for step in reversed(self.done) for inv in step.inverse()]
        self.done = []
        failures = self._execute(undo, lambda s: None, stop=False)
        self.done = []
        return [f"could not undo {step.what}: {reason or code}" for step, code, reason in failures]

    def _execute(self, steps: Sequence[Step], on_step: Callable[[Step], None],
                 stop: bool) -> list[tuple[Step, int, str]]:
        failures: list[tuple[Step, int, str]] = []
        batch: list[Step] = []

        def flush() -> bool:
            requests: list[nl.Request | None] = []
            for s in batch:
                try:
                    requests.append(self._encode(s))
                except OSError as exc:  # a device vanished under us: report it as the kernel would
                    failures.append((s, exc.errno or 0, str(exc)))
                    requests.append(None)
            sendable = [r for r in requests if r is not None]
            try:
                acks = iter(self.sock.transact(sendable))
            except nl.NetlinkError as exc:  # the socket failed: what was acknowledged took effect, no more
                acks = iter((*exc.acks, *([nl.Ack(exc.errno or errno.EIO, exc.strerror or "")] * len(sendable))))
            for s, r in zip(batch, requests, strict=True):
                if r is None:
                    continue
                ack = next(acks)
                if ack.error:
                    failures.append((s, ack.error, ack.reason))
                else:
                    self._took_effect(s)
                    on_step(s)
            batch.clear()
            return not failures

        unsettled: list[Step] = []

        def settle() -> bool:
            """The tunnel steps written so far, carried out together (one look by the supervisor)."""
            assert self.forwarders is not None
            why = self.forwarders.settle()
            for s in unsettled:
                self._took_effect(s)  # a failed start is undone too: its spec was written
                if s.subject.name in why:  # type: ignore[union-attr]
                    failures.append((s, 0, why[s.subject.name]))  # type: ignore[union-attr]
                else:
                    on_step(s)
            unsettled.clear()
            return not failures

        for s in steps:
            if s.verb in PROCESS_VERBS:
                if batch and not flush() and stop:
                    return failures
                try:
                    self._process_step(s)
                except ForwarderError as exc:
                    failures.append((s, 0, exc.message))
                    if stop:
                        return failures
                    continue
                unsettled.append(s)
                continue
            if unsettled and not settle() and stop:
                return failures
            if s.verb == "create-tun":
                if batch and not flush() and stop:
                    return failures
                try:
                    assert isinstance(s.subject, Device)
                    tun.create(s.subject)
                except OSError as exc:
                    failures.append((s, exc.errno or 0, _tun_reason(exc)))
                    if stop:
                        return failures
                    continue
                self._took_effect(s)
                on_step(s)
            else:
                batch.append(s)
        if batch:
            flush()
        if unsettled:
            settle()
        return failures

    def _process_step(self, step: Step) -> None:
        assert self.forwarders is not None and isinstance(step.subject, Tunnel)
        if step.verb == "start-forwarder":
            self.forwarders.start(step.subject)
        elif step.verb == "rekey-forwarder":
            self.forwarders.rekey(step.subject)
        else:
            self.forwarders.stop(step.subject)

    def _took_effect(self, step: Step) -> None:
        self.done.append(step)
        if step.verb == "delete-link":
            self._index.pop(step.subject.name, None)  # type: ignore[union-attr]

    def _ifindex(self, name: str) -> int:
        if name not in self._index:
            self._index[name] = socket.if_nametoindex(name)
        return self._index[name]

    def _encode(self, step: Step) -> nl.Request:
        return _ENCODERS[step.verb](self, step.subject)


def _tun_reason(exc: OSError) -> str:
    if exc.errno == 16:  # EBUSY
        return "the name is in use by another device, or the device is open with other flags"
    return exc.strerror or str(exc)


def _link_set(t: Transaction, d: Device) -> nl.Request:
    body = nl.IFINFO.pack(socket.AF_UNSPEC, 0, 0, nl.IFF_UP if d.state is LinkState.UP else 0, nl.IFF_UP)
    body += nl.attr(nl.IFLA_IFNAME, d.name.encode() + b"\0")
    body += nl.attr(nl.IFLA_IFALIAS, OWNER_ALIAS.encode() if d.managed else b"")
    if d.mtu is not None:
        body += nl.u32(nl.IFLA_MTU, d.mtu)
    if d.mac is not None:
        body += nl.attr(nl.IFLA_ADDRESS, bytes.fromhex(d.mac.replace(":", "")))
    return nl.Request(nl.RTM_NEWLINK, 0, body)


def _link_delete(t: Transaction, d: Device) -> nl.Request:
    body = nl.IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + nl.attr(nl.IFLA_IFNAME, d.name.encode() + b"\0")
    return nl.Request(nl.RTM_DELLINK, 0, body)


def _addr(msg_type: int, flags: int) -> Callable[[Transaction, Address], nl.Request]:
    def encode(t: Transaction, a: Address) -> nl.Request:
        family, packed, prefixlen = _packed(a.cidr)
        body = nl.IFADDR.pack(family, prefixlen, 0, 0, t._ifindex(a.device))
        body += nl.attr(nl.IFA_LOCAL, packed) + nl.attr(nl.IFA_ADDRESS, packed)
        return nl.Request(msg_type, flags, body)
    return encode


def _route(msg_type: int, flags: int) -> Callable[[Transaction, Route], nl.Request]:
    def encode(t: Transaction, r: Route) -> nl.Request:
        family, packed, prefixlen = _packed(r.to)
        deleting = msg_type == nl.RTM_DELROUTE
        protocol = 0 if deleting else (OWNER_PROTOCOL if r.managed else RTPROT_BOOT)
        if deleting:
            scope = nl.RT_SCOPE_NOWHERE
        else:
            scope = nl.RT_SCOPE_LINK if (r.via is None and family == socket.AF_INET) else nl.RT_SCOPE_UNIVERSE
        table_byte = r.table if r.table < 256 else nl.RT_TABLE_UNSPEC
        body = nl.RTMSG.pack(family, prefixlen, 0, 0, table_byte, protocol, scope, nl.RTN_UNICAST, 0)
        body += nl.u32(nl.RTA_TABLE, r.table) + nl.u32(nl.RTA_PRIORITY, r.metric)
        if prefixlen:
            body += nl.attr(nl.RTA_DST, packed)
        if not deleting:
            if r.via is not None:
                body += nl.attr(nl.RTA_GATEWAY, socket.inet_pton(family, r.via))
            if r.dev is not None:
                body += nl.u32(nl.RTA_OIF, t._ifindex(r.dev))
        return nl.Request(msg_type, flags, body)
    return encode


def _packed(cidr: str) -> tuple[int, bytes, int]:
    """(family, address bytes, prefix length) of a canonical 'ADDRESS/PREFIX' (model.py made it
    so), by inet_pton: no ipaddress object per request."""
    address, _, prefix = cidr.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return family, socket.inet_pton(family, address), int(prefix)


_ENCODERS: dict[str, Callable[[Transaction, object], nl.Request]] = {
    "set-link": _link_set,  # type: ignore[dict-item]
    "delete-link": _link_delete,  # type: ignore[dict-item]
    "add-addr": _addr(nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL),  # type: ignore[dict-item]
    "del-addr": _addr(nl.RTM_DELADDR, 0),  # type: ignore[dict-item]
    "add-route": _route(nl.RTM_NEWROUTE, nl.NLM_F_CREATE | nl.NLM_F_EXCL),  # type: ignore[dict-item]
    "replace-route": _route(nl.RTM_NEWROUTE, nl.NLM_F_CREATE | nl.NLM_F_REPLACE),  # type: ignore[dict-item]
    "del-route": _route(nl.RTM_DELROUTE, 0),  # type: ignore[dict-item]
}

