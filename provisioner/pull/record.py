"""What the pull agent knows, and what it decides from it: pure values, kept on disk as JSON.

The record is rewritten whole, atomically (files.atomic_write), so a kill at any moment leaves
either the old record or the new one, never a mix. It lives in the persistent state directory
(/var/lib/provision), not in /run: it is what stops a rollback, so a reboot must not erase it,
and without it (a new host, a lost disk) nothing is adopted unless a minimum commit is pinned.
The decision about a fetched
commit is a pure function of the record and of three facts about the commit, so every rule
(fast-forward only, signatures, no retry of a rejected commit) is unit-tested without git.
"""

from __future__ import annotations

import errno
import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from ..files import FileError, atomic_write, parse_json, read_regular
from ..hints import Any

KEEP_REJECTED = 20  # the most recent rejections kept, with their reasons


@dataclass(frozen=True)
class Rejection:
    """A commit the agent turned down, and why: one that failed is not tried again on every
    run; one that was refused (`refused`) is judged afresh."""

    commit: str
    reason: str
    at: str
    refused: bool = False  # not tried (rewritten branch, signature): judged afresh by every run


@dataclass(frozen=True)
class Run:
    """The agent's last run, as `provision status` shows it."""

    at: str  # when the run started (UTC, ISO 8601)
    seconds: float
    ok: bool  # the host is on the branch's commit and in sync with it
    result: str  # one line for a person


@dataclass(frozen=True)
class Record:
    """What the agent remembers between runs (its state file): above all the last good commit,
    from which the next one it adopts must descend."""

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
        """A record read back, which is input like any file of the state directory: its commits
        become paths (the trees) and git's arguments, so each must be a commit id, and every
        field must be of its type. ValueError for anything else."""
        _fields(d, cls, ("repo", "branch", "inventory", "host"))
        for key in ("fetched", "good"):
            if d.get(key) is not None:
                _commit(d[key])
        _optional(d, "good_at", str)
        rejected, run = d.get("rejected") or [], d.get("last_run")
        if not isinstance(rejected, list) or len(rejected) > KEEP_REJECTED:
            raise ValueError(f"rejected: not a list of at most {KEEP_REJECTED}")
        for r in rejected:
            _fields(r, Rejection, ("commit", "reason", "at"))
            _commit(r["commit"])
            _optional(r, "refused", bool)
        if run is not None:
            _fields(run, Run, ("at", "result"))
            if type(run.get("ok")) is not bool or type(run.get("seconds")) not in (int, float):
                raise ValueError("last_run: ok and seconds")
        if type(d.get("runs", 0)) is not int:
            raise ValueError("runs: not a whole number")
        return cls(**{**d, "rejected": tuple(Rejection(**r) for r in rejected),
                      "last_run": Run(**run) if run else None})


def _fields(d: Any, kind: type, texts: tuple[str, ...]) -> None:
    """`d` holds only `kind`'s fields, and those named in `texts` are text."""
    if not isinstance(d, dict) or not set(d) <= set(kind.__dataclass_fields__):  # type: ignore[attr-defined]
        raise ValueError(f"not a {kind.__name__.lower()} of this version")
    for key in texts:
        if type(d.get(key)) is not str:
            raise ValueError(f"{key}: not text")


def _optional(d: dict[str, Any], key: str, kind: type) -> None:
    if d.get(key) is not None and type(d[key]) is not kind:
        raise ValueError(f"{key}: not {kind.__name__}")


def _commit(value: Any) -> None:
    """A commit id as git prints it: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits."""
    if type(value) is not str or len(value) not in (40, 64) or value.strip("0123456789abcdef"):
        raise ValueError(f"{str(value)[:80]!r} is not a commit id")


BRANCH_TRAILER = "Provision-Branch"


class Verdict(StrEnum):
    ADOPT = "adopt"  # a new commit: validate and apply it
    REFUSE = "refuse"  # a new commit we must not apply: record why, stay on the last good one
    STAY = "stay"  # nothing new to try: repair drift from the last good commit


@dataclass(frozen=True)
class Decision:
    """What to do with the branch's commit, and why: the pure half of a run, tested apart from git."""

    verdict: Verdict
    reason: str = ""


def decide(record: Record, commit: str, *, fast_forward: bool, signature: tuple[bool, str] | None,
           retry: bool = False, allow_reset: bool = False, floor: str | None = None,
           signed_for: tuple[str, ...] = ()) -> Decision:
    """What to do with the branch's commit. `fast_forward`: it descends from the last good
    commit, or, with no last good commit, from the pinned minimum `floor`. `signature`:
    (trusted, git's words), or None when signatures are not required; a signed commit must
    also name, in `signed_for` (its Provision-Branch trailers, inside what was signed), the
    branch the record follows: a signature that does not say where it belongs could be
    replayed from another branch."""
    if commit == record.good:
        return Decision(Verdict.STAY, "already on this commit")
    if record.good is None and floor is None:
        return Decision(Verdict.REFUSE, "no record of a last good commit (a new host, or its record is lost) and no "
                                        "minimum commit pinned: refusing to adopt anything, as any older commit "
                                        "would look new (pin one with --min-commit)")
    # refusals are judged afresh each run: cheap, and --allow-reset or a new signers file may lift them
    if not fast_forward and record.good is None:
        return Decision(Verdict.REFUSE, f"{commit[:12]} does not descend from the pinned minimum commit "
                                        f"{(floor or '')[:12]}: refusing it")
    if not fast_forward and not allow_reset:
        return Decision(Verdict.REFUSE, f"the branch was rewritten: {commit[:12]} does not descend from the last "
                                        f"good commit {(record.good or '')[:12]}; refusing it (--allow-reset "
                                        "follows a rewritten branch)")
    if signature is not None and not signature[0]:
        return Decision(Verdict.REFUSE, f"commit {commit[:12]} is not signed by an allowed key: {signature[1]}")
    if signature is not None and record.branch not in signed_for:
        named = ", ".join(signed_for) or "none"
        return Decision(Verdict.REFUSE, f"commit {commit[:12]} is signed for branch {named}, not {record.branch}: "
                                        f"a signed commit names its branch in its message (a trailer line "
                                        f"`{BRANCH_TRAILER}: {record.branch}`)")
    earlier = record.failure(commit)  # an inventory that failed does not fail less the next time
    if earlier is not None and not retry:
        first = earlier.reason.splitlines()[0] if earlier.reason else "no reason"
        return Decision(Verdict.STAY, f"commit {commit[:12]} was rejected before ({first}); "
                                      "waiting for a new commit (or --retry)")
    return Decision(Verdict.ADOPT)


RECORD_BYTES = 1024 * 1024


def load(path: Path) -> dict[str, Any] | None:
    """The saved record, None if there is none; a file that is not a record is an error, not
    a missing record (that would lift the rollback protection)."""
    try:
        data = read_regular(path, RECORD_BYTES)
    except FileError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    try:
        return dict(parse_json(data))
    except (ValueError, TypeError) as exc:
        raise FileError(path, f"is not a pull agent record ({exc}); move it away to start afresh") from None


def save(record: Record, path: Path) -> None:
    """Atomically: the old record or the new one survives any kill, never half of one."""
    atomic_write(path, (json.dumps(record.to_dict(), indent=2) + "\n").encode())
