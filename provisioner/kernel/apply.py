"""Carrying out a plan as a transaction: every step knows its inverse.

A plan's changes become kernel steps (pure, `steps_for`); `Transaction` runs them with
netlink requests batched, remembers which took effect, and on failure undoes those in
reverse order before the original error is raised again (as pyroute2's NDB transactions
and nmstate's checkpoints do). Starting and stopping a tunnel's forwarder are steps too,
carried out by whatever runs the host's tunnels (a `TunnelProcesses`, given to the
transaction: the kernel layer does not import the tunnel layer), so a failed apply also
undoes those.
"""

from __future__ import annotations

import errno
from _socket import AF_INET, AF_INET6, AF_UNSPEC, if_nametoindex, inet_pton  # socket's C half: netlink.py says why
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum, auto
from functools import cache
from itertools import groupby

from ..errors import ForwarderError, KernelError, kernel_words
from ..files import FileError
from ..hints import Protocol
from ..model import OWNER_ALIAS, OWNER_PROTOCOL, Address, Device, LinkState, Observed, Route, Tunnel
from ..plan import Action, Change, Kind, Plan, Resource, is_rekey
from . import netlink as nl

RTPROT_BOOT = 3  # what `ip route add` uses; given back to routes we did not own on rollback


class Verb(StrEnum):
    """What a step does. The value is the name a step is shown by."""

    CREATE_TUN = "create-tun"
    SET_LINK = "set-link"
    DELETE_LINK = "delete-link"
    ADD_ADDR = "add-addr"
    DEL_ADDR = "del-addr"
    ADD_ROUTE = "add-route"
    DEL_ROUTE = "del-route"
    REPLACE_ROUTE = "replace-route"
    START_FORWARDER = "start-forwarder"
    STOP_FORWARDER = "stop-forwarder"
    REKEY_FORWARDER = "rekey-forwarder"


class TunnelProcesses(Protocol):
    """What a transaction needs of whatever runs a host's tunnels (tunnel.control's `Tunnels`).
    start, stop and rekey say what is wanted (or raise ForwarderError); `settle` carries out all
    said so far together and returns {tunnel name: why} for each that did not take effect."""

    def start(self, t: Tunnel) -> None: ...
    def stop(self, t: Tunnel) -> None: ...
    def rekey(self, t: Tunnel) -> None: ...
    def settle(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Step:
    """One kernel or tunnel-process operation, with what its inverse needs to know."""

    verb: Verb
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
        """The steps that undo this one (none for a set that overwrote nothing), by `INVERSES`."""
        return INVERSES[self.verb](self)


def _opposite(verb: Verb) -> Callable[[Step], list[Step]]:
    """Undone by the opposite operation on the same subject."""
    return lambda step: [Step(verb, step.subject)]


def _set_back(step: Step) -> list[Step]:
    """Undone by setting again what it overwrote."""
    return [Step(step.verb, step.prior, step.subject)] if step.prior is not None else []


def _set_back_if_changed(step: Step) -> list[Step]:
    """As _set_back, but a re-asserted route (prior == subject) has nothing to undo."""
    return [Step(step.verb, step.prior, step.subject)] if step.prior not in (None, step.subject) else []


def _recreate_link(step: Step) -> list[Step]:
    """A deleted link comes back with the addresses and routes the kernel took with it."""
    assert isinstance(step.subject, Device)
    back = [Step(Verb.CREATE_TUN, step.subject), Step(Verb.SET_LINK, step.subject)]
    back += [Step(Verb.ADD_ADDR, a) for a in step.restores if isinstance(a, Address)]
    back += [Step(Verb.ADD_ROUTE, r) for r in step.restores if isinstance(r, Route)]
    return back


def _readd_addr(step: Step) -> list[Step]:
    """A deleted address comes back with the routes the kernel may have taken with it."""
    return [Step(Verb.ADD_ADDR, step.subject), *(Step(Verb.REPLACE_ROUTE, r) for r in step.restores)]


# Every verb's inverse: one rule each (a unit test holds it to every member of Verb).
INVERSES: dict[Verb, Callable[[Step], list[Step]]] = {
    Verb.CREATE_TUN: _opposite(Verb.DELETE_LINK),
    Verb.SET_LINK: _set_back,
    Verb.DELETE_LINK: _recreate_link,
    Verb.ADD_ADDR: _opposite(Verb.DEL_ADDR),
    Verb.DEL_ADDR: _readd_addr,
    Verb.ADD_ROUTE: _opposite(Verb.DEL_ROUTE),
    Verb.DEL_ROUTE: _opposite(Verb.ADD_ROUTE),
    Verb.REPLACE_ROUTE: _set_back_if_changed,
    Verb.START_FORWARDER: _opposite(Verb.STOP_FORWARDER),
    Verb.STOP_FORWARDER: _opposite(Verb.START_FORWARDER),
    Verb.REKEY_FORWARDER: _set_back,
}


def steps_for(plan: Plan, observed: Observed) -> list[tuple[Change, list[Step]]]:
    """Pure: the kernel steps of each change, in the plan's order."""
    @cache
    def on_devices() -> tuple[dict[str, list[Route]], dict[str, list[Address]]]:
        """The observed routes and addresses by device, read once, and only when a change takes
        some with it: a scan of all of them for every device deleted made a destroy of 10 000
        devices spend 11 s here (0.2 s at 1000), and a change of one route needs neither."""
        deleted_routes = {c.before.key for c in plan.changes
                          if c.kind is Kind.ROUTE and c.action is Action.DELETE and isinstance(c.before, Route)}
        routes_on: dict[str, list[Route]] = {}
        for r in observed.routes:
            if r.dev is not None and r.key not in deleted_routes:
                routes_on.setdefault(r.dev, []).append(r)
        addresses_on: dict[str, list[Address]] = {}
        for a in observed.addresses:
            addresses_on.setdefault(a.device, []).append(a)
        return routes_on, addresses_on

    def kept_routes_on(device: str) -> tuple[Route, ...]:
        """What the kernel may take with the device or its address, and an undo puts back."""
        return tuple(on_devices()[0].get(device, ()))

    out = []
    for c in plan.changes:
        steps: list[Step] = []
        after, before = c.after, c.before
        if c.kind is Kind.DEVICE:
            if c.action in (Action.DELETE, Action.REPLACE):
                assert isinstance(c.before, Device)
                name = c.before.name
                takes: tuple[Address | Route, ...] = tuple(
                    a for a in on_devices()[1].get(name, ()) if not a.is_link_local_v6)
                takes += kept_routes_on(name)
                steps.append(Step(Verb.DELETE_LINK, c.before, restores=takes))
            if c.action in (Action.CREATE, Action.REPLACE):
                assert after is not None
                steps += [Step(Verb.CREATE_TUN, after), Step(Verb.SET_LINK, after)]
            if c.action is Action.UPDATE:
                assert after is not None
                steps.append(Step(Verb.SET_LINK, after, before))
        elif c.kind is Kind.TUNNEL:
            if is_rekey(c):
                assert after is not None
                steps.append(Step(Verb.REKEY_FORWARDER, after, before))
            else:
                if before is not None:
                    steps.append(Step(Verb.STOP_FORWARDER, before))
                if after is not None:
                    steps.append(Step(Verb.START_FORWARDER, after))
        elif c.kind is Kind.ADDRESS:
            subject = after or before
            assert subject is not None
            if c.action is Action.CREATE:
                steps.append(Step(Verb.ADD_ADDR, subject))
            else:
                assert isinstance(subject, Address)
                steps.append(Step(Verb.DEL_ADDR, subject, restores=kept_routes_on(subject.device)))
        elif c.action is Action.DELETE:
            assert before is not None
            steps.append(Step(Verb.DEL_ROUTE, before))
        else:
            assert after is not None
            steps.append(Step(Verb.ADD_ROUTE if c.action is Action.CREATE else Verb.REPLACE_ROUTE, after, before))
        out.append((c, steps))
    return out


# The phases of a plan, in order. Within a phase steps are independent, so all tun devices
# are created (ioctls) before their netlink settings go out in large batches.
PHASES = (Verb.STOP_FORWARDER, Verb.DEL_ROUTE, Verb.DEL_ADDR, Verb.DELETE_LINK, Verb.CREATE_TUN, Verb.SET_LINK,
          Verb.ADD_ADDR, Verb.ADD_ROUTE, Verb.START_FORWARDER)
PROCESS_VERBS = frozenset({Verb.STOP_FORWARDER, Verb.START_FORWARDER, Verb.REKEY_FORWARDER})
_PHASE_OF = {verb: i for i, verb in enumerate(PHASES)} | {Verb.REPLACE_ROUTE: PHASES.index(Verb.ADD_ROUTE),
                                                          Verb.REKEY_FORWARDER: PHASES.index(Verb.START_FORWARDER)}


def schedule(per_change: list[tuple[Change, list[Step]]]) -> list[Step]:
    """All steps in phase order (stable: the plan's order within a phase)."""
    return sorted((s for _, steps in per_change for s in steps), key=lambda s: _PHASE_OF[s.verb])


@dataclass
class Transaction:
    """Runs steps; `done` keeps every step that took effect, so they can be undone."""

    host: str
    sock: nl.Netlink
    tunnels: TunnelProcesses | None = None
    done: list[Step] = field(default_factory=list)
    # steps counted as done whose answer the kernel's socket lost, and how (netlink.Ack.heard)
    unconfirmed: list[tuple[Step, str]] = field(default_factory=list)
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
        """Undo `done` in reverse order; returns what could not be undone (best effort), and what
        may not have been: an undo whose answer was lost is no undo known to have worked."""
        undo = [inv for step in reversed(self.done) for inv in step.inverse()]
        self.done, self.unconfirmed = [], []
        failures = self._execute(undo, lambda s: None, stop=False)
        self.done = []
        return ([f"could not undo {step.what}: {kernel_words(code, reason) if code else reason or 'no reason given'}"
                 for step, code, reason in failures]
                + [f"could not confirm the undo of {step.what}: the kernel's answer was lost ({why})"
                   for step, why in self.unconfirmed])

    def _execute(self, steps: Sequence[Step], on_step: Callable[[Step], None], stop: bool) -> list[Failure]:
        """Runs of one kind in turn: forwarder steps carried out together, tun devices created,
        netlink requests sent in batches. With `stop`, nothing after a run that failed."""
        failures: list[Failure] = []
        runs = _runs(steps)
        k = 0
        while k < len(runs) and not (failures and stop):
            kind, run = runs[k]
            if kind is _Run.PROCESSES:
                self._processes(run, on_step, failures, stop)
            elif kind is _Run.CREATIONS:
                after = runs[k + 1][1] if k + 1 < len(runs) and runs[k + 1][0] is _Run.REQUESTS else []
                requests = self._create(run, after, on_step, failures, stop)
                if after:
                    k += 1
                    if not (failures and stop):
                        self._send(after, requests, on_step, failures)
            else:
                self._requests(run, on_step, failures)
            k += 1
        return failures

    def _requests(self, run: Sequence[Step], on_step: Callable[[Step], None], failures: list[Failure]) -> None:
        """A run of netlink requests, in order: a stretch of link deletions as one group (they are
        one phase, so they stand together), the rest in batches."""
        for deleting, steps in groupby(run, key=lambda s: s.verb is Verb.DELETE_LINK):
            stretch = list(steps)
            if not (deleting and len(stretch) >= GROUP_DELETE_FROM and self._delete_group(stretch, on_step, failures)):
                self._send(stretch, [self._encoded(s, failures) for s in stretch], on_step, failures)

    def _delete_group(self, run: Sequence[Step], on_step: Callable[[Step], None], failures: list[Failure]) -> bool:
        """Links deleted together, as `ip link delete group` does. Deleted one by one, each link
        waits in the kernel for its own RCU grace periods (18 s for 1000 taps here, as for `ip
        -batch`); a group goes in one unregistering (0.2 s). Each device is given a group number
        that no link in the namespace has (random, checked against a dump of every link's group),
        then that group is deleted: what the kernel deletes is what has the number, ours alone.
        If the group cannot be deleted, each device gets its own group back and the failure is
        each step's. False, and nothing changed: no free number was found (or the groups could
        not be read), delete one by one."""
        try:
            groups = _link_groups(self.sock)
        except nl.NetlinkError:  # the socket: one by one, its failure is told step by step
            return False
        taken = set(groups.values())
        number = next((n for n in (_random_group() for _ in range(GROUP_TRIES)) if n not in taken), None)
        if number is None:
            return False
        grouped: list[tuple[Step, nl.Ack]] = []  # each with the answer to its number
        put = [_set_group(s.subject.name, number) for s in run]  # type: ignore[union-attr]
        for s, ack in zip(run, self._acks(put), strict=True):
            if ack.error:
                failures.append((s, ack.error, ack.reason))  # a device gone already, say: as the kernel says
            else:
                grouped.append((s, ack))
        if not grouped:
            return True
        body = nl.IFINFO.pack(AF_UNSPEC, 0, 0, 0, 0) + nl.u32(nl.IFLA_GROUP, number)
        (ack,) = self._acks([nl.Request(nl.RTM_DELLINK, 0, body)])
        if ack.error:
            back = [_set_group(s.subject.name, groups.get(s.subject.name, 0)) for s, _ in grouped]  # type: ignore[union-attr]
            self._acks(back)  # best effort: a device left in the group is still ours, and whole
            failures += [(s, ack.error, ack.reason) for s, _ in grouped]
            return True
        for s, numbered in grouped:  # an answer lost, to its number or to the deletion: unconfirmed
            self._took_effect(s, ack if numbered.heard else numbered)
            on_step(s)
        return True

    def _acks(self, requests: Sequence[nl.Request]) -> list[nl.Ack]:
        """What became of every request. Where the socket fails, its error is the answer of each
        request it did not send (those it sent but could not hear about count as done:
        netlink.transact)."""
        try:
            return self.sock.transact(requests)
        except nl.NetlinkError as exc:
            unsent = nl.Ack(exc.errno or errno.EIO, f"not sent: {exc.strerror or ''}", heard=False)
            return [*exc.acks, *([unsent] * (len(requests) - len(exc.acks)))]

    def _processes(self, run: Sequence[Step], on_step: Callable[[Step], None], failures: list[Failure],
                   stop: bool) -> None:
        """Forwarder steps are written one by one and carried out together (one look by the
        supervisor); a failed start is undone too, as its spec was written."""
        assert self.tunnels is not None
        written: list[Step] = []
        for s in run:
            try:
                self._process_step(s)
            except ForwarderError as exc:
                failures.append((s, 0, exc.message))
                if stop:
                    break
                continue
            written.append(s)
        if not written:
            return
        try:
            why = self.tunnels.settle()
        except (ForwarderError, FileError) as exc:  # none known to have taken effect (a full disk, say)
            reason = exc.message if isinstance(exc, ForwarderError) else str(exc)
            why = {s.subject.name: reason for s in written}  # type: ignore[union-attr]
        for s in written:
            self._took_effect(s)
            if s.subject.name in why:  # type: ignore[union-attr]
                failures.append((s, 0, why[s.subject.name]))  # type: ignore[union-attr]
            else:
                on_step(s)

    def _create(self, run: Sequence[Step], after: Sequence[Step], on_step: Callable[[Step], None],
                failures: list[Failure], stop: bool) -> list[nl.Request | None]:
        """Creates the tun devices of `run` in order, on a thread of its own, and meanwhile
        encodes the requests of `after` (the run that follows), each as soon as the devices it
        names exist. A creation waits in the kernel (the rtnl lock, an RCU grace period when its
        descriptor closes) with the GIL released: 0.1-0.2 s for 1000 taps, time in which the
        Python work of encoding and reporting is done. The requests still go out after the last
        creation, so the kernel sees what it saw before: all devices, then their settings. Each
        device's index comes with its report where kernel/_tuntap.c made it (no lookup by name)."""
        from .creations import Creations  # a thread and a queue: only for a plan that makes devices

        pending = {s.subject.name for s in run}  # type: ignore[union-attr]
        requests: list[nl.Request | None] = [None] * len(after)
        waiting: dict[str, list[int]] = {}  # by device: the requests that carry its index
        encoding: list[Failure] = []

        def encode(i: int) -> None:
            requests[i] = self._encoded(after[i], encoding)

        made = Creations(run, stop)
        try:
            for i, step in enumerate(after):
                name = _indexed_device(step)
                if name is not None and name in pending:  # its index is known once it is made
                    waiting.setdefault(name, []).append(i)
                else:
                    encode(i)
            for step, error, index in made:
                name = step.subject.name  # type: ignore[union-attr]
                if error is not None:
                    failures.append((step, error.errno or 0, _tun_reason(error)))
                    continue
                if index:
                    self._index[name] = index
                self._took_effect(step)
                on_step(step)
                for i in waiting.pop(name, ()):
                    encode(i)
        finally:
            for step in made.close():  # left by an exception: what was made is still undone by a rollback
                self._took_effect(step)
        for i in (i for left in waiting.values() for i in left):  # on a device that failed: as the kernel says
            encode(i)
        if not (failures and stop):
            failures += encoding
        return requests

    def _send(self, run: Sequence[Step], requests: Sequence[nl.Request | None], on_step: Callable[[Step], None],
              failures: list[Failure]) -> None:
        """The requests of `run` (None: it could not be encoded), in batches; each one the kernel
        did not refuse took effect."""
        acks = iter(self._acks([r for r in requests if r is not None]))
        for s, r in zip(run, requests, strict=True):
            if r is None:
                continue
            ack = next(acks)
            if ack.error:
                failures.append((s, ack.error, ack.reason))
            else:
                self._took_effect(s, ack)
                on_step(s)

    def _encoded(self, step: Step, failures: list[Failure]) -> nl.Request | None:
        try:
            return _ENCODERS[step.verb](self, step.subject)
        except OSError as exc:  # a device vanished under us: reported as the kernel would
            failures.append((step, exc.errno or 0, str(exc)))
            return None

    def _process_step(self, step: Step) -> None:
        assert self.tunnels is not None and isinstance(step.subject, Tunnel)
        if step.verb is Verb.START_FORWARDER:
            self.tunnels.start(step.subject)
        elif step.verb is Verb.REKEY_FORWARDER:
            self.tunnels.rekey(step.subject)
        else:
            self.tunnels.stop(step.subject)

    def _took_effect(self, step: Step, ack: nl.Ack = nl.ACKED) -> None:
        self.done.append(step)
        if not ack.heard:
            self.unconfirmed.append((step, ack.reason))
        if step.verb is Verb.DELETE_LINK:
            self._index.pop(step.subject.name, None)  # type: ignore[union-attr]

    def _ifindex(self, name: str) -> int:
        if name not in self._index:
            self._index[name] = if_nametoindex(name)
        return self._index[name]


Failure = tuple[Step, int, str]  # the step, the kernel's errno (0: none), why
# From this many link deletions in a row, they go as one group (Transaction._delete_group): the
# dump of every link's group it needs (9 ms among 1000 links) costs less than one deletion's
# grace periods (18 ms).
GROUP_DELETE_FROM = 2
GROUP_TRIES = 8  # random group numbers tried before deleting one by one (a clash is 1 in 2**31 a try)


def _random_group() -> int:
    """A group number no one would choose: above the small ones people name in /etc/iproute2/group."""
    import secrets

    return (1 << 24) + secrets.randbelow((1 << 31) - (1 << 24))


def _link_groups(sock: nl.Netlink) -> dict[str, int]:
    """Every link's group, by name."""
    out: dict[str, int] = {}
    for kind, msg in sock.dump(nl.RTM_GETLINK, nl.links_request()):
        if kind != nl.RTM_NEWLINK or len(msg) < nl.IFINFO.size:
            continue
        name, group = nl.pick(msg, nl.IFINFO.size, (nl.IFLA_IFNAME, nl.IFLA_GROUP))
        if name is not None:
            out[nl.cstr(name)] = nl.u32_of(group, 0)
    return out


def _set_group(name: str, group: int) -> nl.Request:
    return nl.Request(nl.RTM_NEWLINK, 0, _named_link(name) + nl.u32(nl.IFLA_GROUP, group))


def _indexed_device(step: Step) -> str | None:
    """The device whose index a step's request carries: an address's, a route's way out (a
    link's request names its device)."""
    s = step.subject
    return s.device if isinstance(s, Address) else s.dev if isinstance(s, Route) else None


class _Run(Enum):
    PROCESSES = auto()
    CREATIONS = auto()
    REQUESTS = auto()


def _runs(steps: Sequence[Step]) -> list[tuple[_Run, list[Step]]]:
    """The steps cut where their kind changes, in order."""
    out: list[tuple[_Run, list[Step]]] = []
    for s in steps:
        kind = (_Run.PROCESSES if s.verb in PROCESS_VERBS else _Run.CREATIONS if s.verb is Verb.CREATE_TUN
                else _Run.REQUESTS)
        if out and out[-1][0] is kind:
            out[-1][1].append(s)
        else:
            out.append((kind, [s]))
    return out


def _tun_reason(exc: OSError) -> str:
    if exc.errno == 16:  # EBUSY
        return "the name is in use by another device, or the device is open with other flags"
    return exc.strerror or str(exc)


def _link_set(t: Transaction, d: Device) -> nl.Request:
    body = nl.IFINFO.pack(AF_UNSPEC, 0, 0, nl.IFF_UP if d.state is LinkState.UP else 0, nl.IFF_UP)
    body += nl.attr(nl.IFLA_IFNAME, d.name.encode() + b"\0")
    body += nl.attr(nl.IFLA_IFALIAS, OWNER_ALIAS.encode() if d.managed else b"")
    if d.mtu is not None:
        body += nl.u32(nl.IFLA_MTU, d.mtu)
    if d.mac is not None:
        body += nl.attr(nl.IFLA_ADDRESS, bytes.fromhex(d.mac.replace(":", "")))
    return nl.Request(nl.RTM_NEWLINK, 0, body)


def _link_delete(t: Transaction, d: Device) -> nl.Request:
    return nl.Request(nl.RTM_DELLINK, 0, _named_link(d.name))


def _named_link(name: str) -> bytes:
    """The start of a request on a link named, not numbered: an index may not be known yet."""
    return nl.IFINFO.pack(AF_UNSPEC, 0, 0, 0, 0) + nl.attr(nl.IFLA_IFNAME, name.encode() + b"\0")


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
            scope = nl.RT_SCOPE_LINK if (r.via is None and family == AF_INET) else nl.RT_SCOPE_UNIVERSE
        table_byte = r.table if r.table < 256 else nl.RT_TABLE_UNSPEC
        body = nl.RTMSG.pack(family, prefixlen, 0, 0, table_byte, protocol, scope, nl.RTN_UNICAST, 0)
        body += nl.u32(nl.RTA_TABLE, r.table) + nl.u32(nl.RTA_PRIORITY, r.metric)
        if prefixlen:
            body += nl.attr(nl.RTA_DST, packed)
        if not deleting:
            if r.via is not None:
                body += nl.attr(nl.RTA_GATEWAY, inet_pton(family, r.via))
            if r.dev is not None:
                body += nl.u32(nl.RTA_OIF, t._ifindex(r.dev))
        return nl.Request(msg_type, flags, body)
    return encode


def _packed(cidr: str) -> tuple[int, bytes, int]:
    """(family, address bytes, prefix length) of a canonical 'ADDRESS/PREFIX' (model.py made it
    so), by inet_pton: no ipaddress object per request."""
    address, _, prefix = cidr.partition("/")
    family = AF_INET6 if ":" in address else AF_INET
    return family, inet_pton(family, address), int(prefix)


# The netlink request of every verb that is one (not create-tun, not the process verbs).
_ENCODERS: dict[Verb, Callable[[Transaction, object], nl.Request]] = {
    Verb.SET_LINK: _link_set,  # type: ignore[dict-item]
    Verb.DELETE_LINK: _link_delete,  # type: ignore[dict-item]
    Verb.ADD_ADDR: _addr(nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL),  # type: ignore[dict-item]
    Verb.DEL_ADDR: _addr(nl.RTM_DELADDR, 0),  # type: ignore[dict-item]
    Verb.ADD_ROUTE: _route(nl.RTM_NEWROUTE, nl.NLM_F_CREATE | nl.NLM_F_EXCL),  # type: ignore[dict-item]
    Verb.REPLACE_ROUTE: _route(nl.RTM_NEWROUTE, nl.NLM_F_CREATE | nl.NLM_F_REPLACE),  # type: ignore[dict-item]
    Verb.DEL_ROUTE: _route(nl.RTM_DELROUTE, 0),  # type: ignore[dict-item]
}

