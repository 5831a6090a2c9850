"""Saved plans: `plan --out FILE` writes what was reviewed; `apply FILE` applies exactly that, or nothing.

A saved plan records the inventory it was made from (its path, and a digest of every
document it was read from) and, per host, the plan with the digest of the live state it was
made against. `apply FILE` refuses, as Terraform refuses a stale plan, when the inventory's
digest differs, or when any host's live state is no longer the one planned against: it checks
every host before changing any, then each again under that host's lock before its changes.
Nothing else is applied: with the same inventory and the same live state, the plan is the same.
(A docker host is checked before any host is changed, not again under its lock: the apply
runs inside its container.)

A saved plan comes from outside: every field is checked before it is used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ProvisionError, StalePlanError
from .hints import Any
from .plan import Plan, plan_from_dict, plan_to_dict
from .source import Sources

KIND = "provision-saved-plan"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SavedPlan:
    """A plan written by `plan --out`, with what it was made from: apply refuses it when the
    inventory (its digest) or a host's live state has moved since."""

    file: str  # where it was read from, for messages
    inventory: str
    inventory_digest: str
    limit: str | None
    connection: str | None
    destroy: bool  # made by plan --destroy: apply removes what it lists
    plans: Mapping[str, Plan]  # host -> its plan


def inventory_digest(sources: Sources) -> str:
    """Every document's name and text, in the order read: any edit, added or removed vars file changes it."""
    import hashlib  # here: a plan that saves nothing has no use for it (fingerprint.py)

    h = hashlib.sha256()
    for doc in sources.documents:
        for part in (os.path.abspath(doc.file), doc.text):
            h.update(part.encode())
            h.update(b"\0")
    return h.hexdigest()


def write(path: str, sources: Sources, limit: str | None, connection: str | None, destroy: bool,
          plans: Sequence[Plan]) -> None:
    from .files import write_json

    write_json(Path(path), {
        "kind": KIND, "format_version": FORMAT_VERSION, "inventory": os.path.abspath(sources.file),
        "inventory_digest": inventory_digest(sources), "limit": limit, "connection": connection,
        "destroy": destroy, "hosts": [plan_to_dict(p) for p in plans]})


def is_saved_plan(path: str) -> bool:
    """A cheap look: a JSON object whose kind is ours (an inventory never starts like one)."""
    from .files import FileError, read_regular

    try:
        head = read_regular(path, follow_links=True)[:4096]  # a FIFO is no saved plan, and must not hang us
    except FileError:
        return False
    return head.lstrip().startswith(b"{") and KIND.encode() in head


def read(path: str) -> SavedPlan:
    from .files import FileError, parse_json, read_regular

    try:
        data: Any = parse_json(read_regular(path, follow_links=True))
        if data.get("kind") != KIND or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"not a saved plan of format {FORMAT_VERSION}")
        limit, connection = data.get("limit"), data.get("connection")
        if not all(isinstance(v, str | None) for v in (limit, connection)) \
                or not isinstance(data["inventory"], str) or not isinstance(data["inventory_digest"], str) \
                or not isinstance(data.get("destroy"), bool):
            raise ValueError("malformed header")
        plans = {str(p["host"]): plan_from_dict(p) for p in data["hosts"]}
    except (OSError, UnicodeDecodeError, FileError) as exc:
        raise ProvisionError(f"{path}: cannot read the saved plan: {exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProvisionError(f"{path}: not a usable saved plan ({exc}); make one with plan --out FILE") from exc
    return SavedPlan(path, data["inventory"], data["inventory_digest"], limit, connection, data["destroy"], plans)


def check_inventory(saved: SavedPlan, sources: Sources) -> None:
    if inventory_digest(sources) != saved.inventory_digest:
        raise StalePlanError(f"{saved.file}: the inventory {saved.inventory} has changed since this plan was made; "
                             "nothing was applied. Make a new plan (plan --out FILE) and review it.")


def check_host(saved: SavedPlan, planned_now: Plan) -> None:
    """The host's plan made now must be the saved one, against the same live state."""
    then = saved.plans.get(planned_now.host)
    if then is None:
        raise StalePlanError(f"{saved.file}: has no plan for {planned_now.host}; nothing was applied")
    if then.observed_digest != planned_now.observed_digest:
        raise StalePlanError(f"{saved.file}: the live state of {planned_now.host} has changed since this plan was "
                             f"made (observed {then.observed_digest}, now {planned_now.observed_digest}); nothing "
                             "was applied. Make a new plan (plan --out FILE) and review it.")
    if plan_to_dict(then)["changes"] != plan_to_dict(planned_now)["changes"]:
        raise StalePlanError(f"{saved.file}: the plan for {planned_now.host} is not what this provision would apply "
                             "to the same state (another version made it?); nothing was applied")
