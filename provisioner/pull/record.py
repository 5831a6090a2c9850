"""What the pull agent knows, and what it decides from it: pure values, kept on disk as JSON.

The record is rewritten whole, atomically (a temporary file, fsync, rename), so a kill at any
moment leaves either the old record or the new one, never a mix. The decision about a fetched
commit is a pure function of the record and of three facts about the commit, so every rule
(fast-forward only, signatures, no retry of a rejected commit) is unit-tested without git.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..atomic import write_json

KEEP_REJECTED = 20  # the most recent rejections kept, with their reasons


@dataclass(frozen=True)
class Rejection:
    commit: str
    reason: str
    at: str
    refused: bool = False  # not tried (rewritten branch, signature): judged afresh by every run


@dataclass(frozen=True)
class Run:
    at: str  # when the run started (UTC, ISO 8601)
    seconds: float
    ok: bool  # the host is on the branch's commit and in sync with it
    result: str  # one line for a person


@dataclass(frozen=True)
class Record:
    repo: str
    branch: str
    inventory: str
    host: str
    fetched: str | None = None  # the branch's commit at the last fetch
    good: str | None = None  # the last commit adopted: valid, applied and verified
    good_at: str | None = None
    rejected: tuple[Rejection, ...] = field(default_factory=tuple)
    last_run: Run | None = None
    runs: int = 0

    def failure(self, commit: str) -> Rejection | None:
        """The commit's earlier rejection after it was tried (invalid, or its apply failed)."""
        return next((r for r in self.rejected if r.commit == commit and not r.refused), None)

    def reject(self, commit: str, reason: str, at: str, refused: bool = False) -> Record:
        kept = tuple(r for r in self.rejected if r.commit != commit)
        return replace(self, rejected=(*kept, Rejection(commit, reason, at, refused))[-KEEP_REJECTED:])

    def adopt(self, commit: str, at: str) -> Record:
        return replace(self, good=commit, good_at=at, rejected=tuple(r for r in self.rejected if r.commit != commit))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        run = d.get("last_run")
        return cls(**{**d, "rejected": tuple(Rejection(**r) for r in d.get("rejected") or ()),
                      "last_run": Run(**run) if run else None})


class Verdict(StrEnum):
    ADOPT = "adopt"  # a new commit: validate and apply it
    REFUSE = "refuse"  # a new commit we must not apply: record why, stay on the last good one
    STAY = "stay"  # nothing new to try: repair drift from the last good commit


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""


def decide(record: Record, commit: str, *, fast_forward: bool, signature: tuple[bool, str] | None,
           retry: bool = False, allow_reset: bool = False) -> Decision:
    """What to do with the branch's commit. `fast_forward`: it descends from the last good
    commit (or there is none yet). `signature`: (trusted, git's words), or None when
    signatures are not required."""
    if commit == record.good:
        return Decision(Verdict.STAY, "already on this commit")
    # refusals are judged afresh each run: cheap, and --allow-reset or a new signers file may lift them
    if not fast_forward and not allow_reset:
        return Decision(Verdict.REFUSE, f"the branch was rewritten: {commit[:12]} does not descend from the last "
                                        f"good commit {(record.good or '')[:12]}; refusing it (--allow-reset "
                                        "follows a rewritten branch)")
    if signature is not None and not signature[0]:
        return Decision(Verdict.REFUSE, f"commit {commit[:12]} is not signed by an allowed key: {signature[1]}")
    earlier = record.failure(commit)  # an inventory that failed does not fail less the next time
    if earlier is not None and not retry:
        first = earlier.reason.splitlines()[0] if earlier.reason else "no reason"
        return Decision(Verdict.STAY, f"commit {commit[:12]} was rejected before ({first}); "
                                      "waiting for a new commit (or --retry)")
    return Decision(Verdict.ADOPT)


def load(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return dict(json.load(f))
    except FileNotFoundError:
        return None


def save(record: Record, path: Path) -> None:
    """Atomically: the old record or the new one survives any kill, never half of one."""
    write_json(path, record.to_dict())
