"""Plans, progress and recaps as text for people (coloured on a terminal) and as JSON."""

from __future__ import annotations

import os
import sys
import time

from .hints import Any, TextIO
from .model import Address, Device, Route, Tunnel
from .plan import Action, Change, Kind, Plan
from .terminal import columns

SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.REPLACE: "-/+", Action.DELETE: "-"}
COLOUR = {Action.CREATE: "32", Action.UPDATE: "33", Action.REPLACE: "35", Action.DELETE: "31"}


COLOR_ENV = "PROVISION_COLOR"  # what --color sets: always | never | auto


def use_colour(stream: TextIO) -> bool:
    """--color always/never wins; then NO_COLOR (no-color.org) and FORCE_COLOR (force-color.org);
    else colour follows the terminal."""
    choice = os.environ.get(COLOR_ENV, "auto")
    if choice in ("always", "never"):
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def paint(text: str, code: str, colour: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colour else text


def describe(value: Device | Address | Route | Tunnel) -> str:
    """The attributes that matter, in the words of the inventory."""
    if isinstance(value, Device):
        parts = [str(value.type), str(value.state)]
        parts += [f"{f} {getattr(value, f)}" + _why(value, f) for f in ("mtu", "mac", "owner", "group")
                  if getattr(value, f) is not None]
        parts += [f + _why(value, f) for f in ("pi", "vnet_hdr", "multi_queue") if getattr(value, f)]
        return ", ".join(parts)
    if isinstance(value, Tunnel):
        text = f"{value.transport} {value.role} {value.endpoint} on {value.device}"
        text += f", peer {value.peer}" if value.peer else ""
        if value.secure:
            text += f", encrypted, peer key {short_key(value.peer_public_key)}" + (", psk" if value.psk_file else "")
        else:
            text += ", INSECURE: no key, plaintext"
        text += ", compressed" if value.compress else ""
        return text + (f", as {value.user}" + (f":{value.group}" if value.group else "") if value.user else "")
    if isinstance(value, Route):
        return " ".join(p for p in (f"via {value.via}" if value.via else "",
                                    f"dev {value.dev}" if value.dev else "") if p)
    return ""


def change_line(c: Change, colour: bool, detail: bool = True) -> str:
    head = paint(f"{SYMBOL[c.action]} {c.kind} {c.key}", COLOUR[c.action], colour)
    if not detail:
        return head
    what, why = change_detail(c)
    risk = paint(f"  ! can cut the host off: {c.disruptive}", "1;31", colour) if c.disruptive else ""
    taken = paint(f"  [take over from {c.taken_from}]", "1;35", colour) if c.taken_from else ""
    return f"{head}{'  (' + what + ')' if what else ''}{'  [' + why + ']' if why else ''}{taken}{risk}"


def change_detail(c: Change) -> tuple[str, str]:
    """(what changes, or what the resource is; why), either possibly empty."""
    if c.action in (Action.UPDATE, Action.REPLACE):
        diffs = [f"{f}: {_show(getattr(c.before, f), f)} → {_show(getattr(c.after, f), f)}{_why(c.after, f)}"
                 for f in c.fields_changed() if f not in ("managed", "psk_id")]
        if "psk_id" in c.fields_changed():
            diffs.append("psk: changed")
        if getattr(c.before, "managed", True) != getattr(c.after, "managed", True):
            diffs.append("owner: not provision → provision")
        if c.kind is Kind.TUNNEL:
            return "; ".join(diffs) or describe(c.after), c.reason  # type: ignore[arg-type]
        return ("; ".join(diffs), "") if diffs else ("", c.reason)
    value = c.after if c.after is not None else c.before
    what = describe(value) if value is not None else ""
    return what, c.reason if c.action is Action.DELETE or c.kind is Kind.TUNNEL else ""


def _why(value: Any, field: str) -> str:
    """` (default for a UDP tunnel)` after a device's value that provision chose, not the inventory."""
    why = value.default_for(field) if isinstance(value, Device) else None
    return f" ({why})" if why is not None else ""


def _show(value: Any, field: str = "") -> str:
    if value is None:
        return "none"
    return short_key(value) if field in PUBLIC_KEY_FIELDS else str(value)


PUBLIC_KEY_FIELDS = ("public_key", "peer_public_key")


def short_key(public: str | None) -> str:
    """A public key as people compare them at a glance (as `wg show` does, shortened)."""
    return "unknown" if public is None else public[:8] + "…"


def plan_summary(plan: Plan) -> str:
    if plan.empty:
        return f"{plan.host}: no changes, {plan.in_sync} resources in sync."
    n = plan.counts()
    parts = [f"{n[Action.CREATE]} to create", f"{n[Action.UPDATE]} to update"]
    if n[Action.REPLACE]:
        parts.append(f"{n[Action.REPLACE]} to replace")
    parts.append(f"{n[Action.DELETE]} to delete")
    return f"{plan.host}: {', '.join(parts)}; {plan.in_sync} in sync."


def print_plan(plan: Plan, out: TextIO = sys.stdout, colour: bool | None = None) -> None:
    colour = use_colour(out) if colour is None else colour
    for c in plan.changes:
        out.write(f"  {change_line(c, colour)}\n")
    out.write(plan_summary(plan) + "\n")


def recap_line(host: str, ok: int, changed: int, failed: int, width: int, unreachable: int = 0,
               skipped: int = 0) -> str:
    """As Ansible's PLAY RECAP: ok, changed, unreachable, failed, skipped."""
    return (f"{host.ljust(width)} : ok={ok} changed={changed} unreachable={unreachable} failed={failed} "
            f"skipped={skipped}")


def status_table(rows: list[dict[str, Any]]) -> str:
    """`provision status`: one line per tunnel, columns aligned; drops and errors spelled out below."""
    head = ("HOST", "TUNNEL", "STATE", "SECURITY", "DATAPATH", "PID", "RESTARTS", "PEER", "RX PKTS", "RX BYTES",
            "TX PKTS", "TX BYTES", "DROPS")
    lines = [head]
    notes = []
    for r in rows:
        drops = sum(r["drops"].values())
        security = (("wireguard" if r.get("wireguard") else "encrypted") + ("+lz4" if r.get("compress") else "")) \
            if r.get("encrypted") else "INSECURE"
        lines.append((r["host"], r["tunnel"], r["state"], security, r.get("datapath") or "-", str(r["pid"] or "-"),
                      str(r["restarts"]),
                      r["peer"] or "-",
                      str(r["rx_packets"]), _bytes(r["rx_bytes"]), str(r["tx_packets"]), _bytes(r["tx_bytes"]),
                      str(drops)))
        for reason, n in sorted(r["drops"].items()):
            notes.append(f"{r['host']}/{r['tunnel']}: dropped {n}: {reason}")
        error_at, since = r.get("last_error_at"), r.get("since")
        healthy_since = r["state"] == "connected" and error_at and since and error_at < since
        if r.get("last_error") and not healthy_since:  # an error from before the tunnel came up is history
            when = f" ({_ago(error_at)})" if error_at else ""
            notes.append(f"{r['host']}/{r['tunnel']}: last error{when}: {r['last_error']}")
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)
    return text + "".join(f"\n{n}" for n in notes)


def _ago(at: float) -> str:
    seconds = max(0, int(time.time() - at))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    return f"at {stamp}, {seconds} s ago" if seconds < 3600 else f"at {stamp}"


def pull_status(record: dict[str, Any]) -> str:
    """A pull agent's record (pull/record.py, as saved) for `provision status`."""
    lines = [f"PULL AGENT for {record['host']}: {record['repo']} ({record['branch']}), {record['inventory']}"]
    run = record.get("last_run")
    if run:
        lines.append(f"  last run   {run['at']} ({run['seconds']:.1f} s, run {record.get('runs', 0)}): "
                     f"{'ok' if run['ok'] else 'NOT OK'}: {run['result']}")
    lines.append(f"  fetched    {record.get('fetched') or '-'}")
    good = record.get("good")
    lines.append(f"  last good  {good} (since {record.get('good_at')})" if good else "  last good  -")
    for r in record.get("rejected") or ():
        reason = r["reason"].replace("\n", "\n             ")
        lines.append(f"  rejected   {r['commit'][:12]} at {r['at']}: {reason}")
    return "\n".join(lines)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def plan_markdown(outcomes: list[Any], destroy: bool = False) -> str:
    """Plans as GitHub/GitLab-flavoured Markdown: one line of totals, then per host a heading and
    a compact table, for a pull-request comment. `outcomes` are reconcile.Outcome values."""
    changed = [o for o in outcomes if o.plan is not None and not o.plan.empty]
    failed = [o for o in outcomes if o.status == "failed"]
    title = "provision plan" + (" (destroy)" if destroy else "")
    totals = [f"{len(changed)} host{'s' if len(changed) != 1 else ''} with changes",
              f"{sum(1 for o in outcomes if o.plan is not None and o.plan.empty)} without"]
    totals += [f"**{len(failed)} failed**"] if failed else []
    totals += [f"{n} skipped" for n in [sum(1 for o in outcomes if o.status == "skipped")] if n]
    out = [f"### {title}: {', '.join(totals)}", ""]
    for o in outcomes:
        if o.status == "failed":
            out += [f"#### ❌ `{o.host}`: failed", "", "```", (o.error or "").strip(), "```", ""]
        elif o.status == "skipped":
            out += [f"#### `{o.host}`: skipped ({_md(o.error or '')})", ""]
        elif o.plan is not None and o.plan.empty:
            out += [f"#### `{o.host}`: no changes ({o.plan.in_sync} in sync)", ""]
        elif o.plan is not None:
            out += [f"#### `{o.host}`: {plan_summary(o.plan).split(': ', 1)[1]}", "",
                    "| | resource | change |", "|:-:|---|---|"]
            for c in o.plan.changes:
                what, why = change_detail(c)
                detail = "  ".join(p for p in (what, f"[{why}]" if why else "") if p)
                out.append(f"| `{SYMBOL[c.action]}` | {c.kind} `{_md(c.key)}` | {_md(detail)} |")
            out.append("")
    tunnels = [(o.host, c.after or c.before, SYMBOL[c.action]) for o in changed for c in o.plan.changes
               if c.kind is Kind.TUNNEL]
    if tunnels:
        from .topology import changed_links

        out += ["#### Tunnels this plan changes", "", "```mermaid", graph_mermaid(changed_links(tunnels)).rstrip(),
                "```", ""]
    return "\n".join(out)


def _md(text: str) -> str:
    """A table cell: pipes and line breaks would end the cell."""
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------- long runs

PHASE_WORDS = {"observe": "reading the kernel", "plan": "planning", "apply": "applying", "verify": "verifying"}


def progress_text(host: str, phase: str, done: int, total: int, seconds: float) -> str:
    """`h: applying 1200/3000 changes (40%), 2.1 s`: what the progress line says."""
    words = PHASE_WORDS.get(phase, phase)
    count = f" {done}/{total} change{'s' if total != 1 else ''} ({100 * done // total}%)" if total else ""
    return f"{host}: {words}{count}, {seconds:.1f} s"


class ProgressLine:
    """One line at the bottom of a terminal, redrawn in place (at most 10 times a second) while
    other lines scroll above it: clear() before printing anything else. Only for a terminal:
    the caller makes none when the output is piped or JSON, so nothing extra lands there."""

    INTERVAL = 0.1

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.shown = False
        self._drawn_at = 0.0

    def update(self, text: str, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if not force and now - self._drawn_at < self.INTERVAL:
            return
        width = columns() - 1
        self.stream.write("\r\033[K" + text[:width])
        self.stream.flush()
        self.shown, self._drawn_at = True, now

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def seconds_text(seconds: dict[Any, float]) -> str:
    """`observe 0.05 s, plan 0.02 s, apply 0.31 s, verify 0.05 s`, in the order the phases ran."""
    return ", ".join(f"{phase} {value:.2f} s" for phase, value in seconds.items())


# ---------------------------------------------------------------- inventories


def inventory_list(inventory: Any) -> dict[str, Any]:
    """`ansible-inventory --list`'s shape, each host's `network` merged as provision merges it;
    `_meta.origins[host][kind]` says where each of its entries was written (FILE:LINE), in order."""
    from .inventory import ALL, flatten

    hosts = {h.name: h for h in inventory.hosts}
    out: dict[str, Any] = {"_meta": {"hostvars": {}, "origins": {}}}
    for name in inventory.groups:
        body: dict[str, Any] = {}
        if inventory.direct.get(name) and name != ALL:
            body["hosts"] = list(inventory.direct[name])
        if inventory.children.get(name):
            body["children"] = list(inventory.children[name])
        if body or name == ALL:
            out[name] = body
    for name, host in hosts.items():
        out["_meta"]["hostvars"][name] = flatten(host, {})[ALL]["hosts"][name]
        out["_meta"]["origins"][name] = origins(inventory, host)
    return out


def origins(inventory: Any, host: Any) -> dict[str, list[str]]:
    return {kind: [inventory.source.where(e.path) for e in entries] for kind, entries in host.network.items()}


def inventory_host_yaml(inventory: Any, host: Any) -> str:
    """A host's variables as YAML, each network entry followed by `# FILE:LINE` (where it was written)."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    doc = CommentedMap((k, v) for k, v in host.vars.items())
    network = CommentedMap()
    for kind, entries in host.network.items():
        seq = CommentedSeq(_flow(e.value) for e in entries)
        for i, e in enumerate(entries):
            seq.yaml_add_eol_comment(inventory.source.where(e.path), i)
        network[kind] = seq
    if network:
        doc["network"] = network
    yaml = YAML(typ="rt")
    yaml.default_flow_style = None
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    return buffer.getvalue()


def _flow(value: Any) -> Any:
    """An entry on one line, as people write them in inventories."""
    from ruamel.yaml.comments import CommentedMap

    entry = CommentedMap(value)
    entry.fa.set_flow_style()
    return entry


def inventory_graph(inventory: Any, group: str = "all") -> str:
    """`ansible-inventory --graph`: @group, its child groups, then its own hosts, in the order written."""
    lines: list[str] = []

    def walk(name: str, depth: int) -> None:
        lines.append(("  |" * depth + "--" if depth else "") + "@" + name + ":")
        for child in inventory.children.get(name, ()):
            walk(child, depth + 1)
        for host in inventory.direct.get(name, ()) if name != "all" else ():
            lines.append("  |" * (depth + 1) + "--" + host)
    walk(group, 0)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- topology pictures


def graph_dot(topo: Any) -> str:
    """Graphviz DOT: a cluster per host with its devices; a tunnel is an edge labelled with its
    name, transport and (when seen) state."""
    ids = _ids(topo)
    out = ["graph provision {", "  node [shape=box];"]
    for host, devices in topo.devices.items():
        out.append(f"  subgraph cluster_{ids[host]} {{ label={_dq(host)}; {ids[host]} [label={_dq(host)}, shape=box3d];")
        out += [f"    {ids[host]}_{i} [label={_dq(d)}, shape=ellipse];" for i, d in enumerate(devices)]
        out.append("  }")
    for link in topo.links:
        if not link.b_is_host:
            out.append(f"  {ids[link.b]} [label={_dq(link.b)}, shape=plaintext];")
        out.append(f"  {ids[link.a]} -- {ids[link.b]} [label={_dq(_link_label(link))}];")
    out.append("}")
    return "\n".join(out) + "\n"


def graph_mermaid(topo: Any) -> str:
    """Mermaid `graph LR`, which GitHub and GitLab render in Markdown."""
    ids = _ids(topo)
    out = ["graph LR"]
    for host, devices in topo.devices.items():
        label = host + (": " + ", ".join(devices) if devices else "")
        out.append(f"  {ids[host]}[{_mq(label)}]")
    for link in topo.links:
        if not link.b_is_host:
            out.append(f"  {ids[link.b]}([{_mq(link.b)}])")
        out.append(f"  {ids[link.a]} ---|{_mq(_link_label(link))}| {ids[link.b]}")
    return "\n".join(out) + "\n"


def _link_label(link: Any) -> str:
    parts = [f"{link.change} " if link.change else "", link.name, f" ({link.transport}"]
    parts.append(f", {link.state})" if link.state else ")")
    return "".join(parts)


def _ids(topo: Any) -> dict[str, str]:
    """Names come from inventories: every node gets a plain id, and names appear only as quoted labels."""
    names = list(topo.devices) + [n for link in topo.links for n in (link.a, link.b)]
    return {name: f"n{i}" for i, name in enumerate(dict.fromkeys(names))}


def _dq(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mq(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


# ---------------------------------------------------------------- machine-readable and YAML output

FORMAT_VERSION = 1  # of every JSON document provision prints (schemas/plan.schema.json)


def json_text(data: Any, indent: int = 2, sort_keys: bool = False) -> str:
    import json

    return json.dumps(data, indent=indent, sort_keys=sort_keys)


def result_json(outcomes: list[Any], applied: bool) -> dict[str, Any]:
    from .plan import plan_to_dict

    hosts = []
    for o in outcomes:
        entry: dict[str, Any] = {"host": o.host, "status": str(o.status)}
        if o.plan is not None:
            entry["plan"] = plan_to_dict(o.plan)
        if applied:
            entry["applied"] = len(o.applied)
        if o.error:
            entry["error" if o.status.value == "failed" else "reason"] = o.error
        hosts.append(entry)
    return {"format_version": FORMAT_VERSION, "mode": "apply" if applied else "plan", "hosts": hosts}


def facts_yaml(doc: dict[str, Any]) -> str:
    """A facts document as YAML, keys in the order written (name and type first, as people write them)."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    return buffer.getvalue()
