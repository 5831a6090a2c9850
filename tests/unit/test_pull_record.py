"""The pull agent's decisions and its record, without git or a kernel."""

from __future__ import annotations

import json
from pathlib import Path

from provisioner.pull.record import KEEP_REJECTED, Record, Verdict, decide, load, save

A, B, C = "a" * 40, "b" * 40, "c" * 40
FRESH = Record("/srv/net", "main", "inventory.yaml", "edge")
ON_A = FRESH.adopt(A, "t0")


def verdict(record: Record, commit: str, **facts: object) -> Verdict:
    facts = {"fast_forward": True, "signature": None, **facts}
    return decide(record, commit, **facts).verdict  # type: ignore[arg-type]


def test_a_new_fast_forward_commit_is_adopted_and_the_good_one_is_kept() -> None:
    assert verdict(FRESH, A, floor=A) is Verdict.ADOPT
    assert verdict(ON_A, B) is Verdict.ADOPT
    assert verdict(ON_A, A) is Verdict.STAY


def test_a_rewritten_branch_is_refused_unless_reset_is_allowed() -> None:
    d = decide(ON_A, B, fast_forward=False, signature=None)
    assert d.verdict is Verdict.REFUSE and "rewritten" in d.reason and "--allow-reset" in d.reason
    assert verdict(ON_A, B, fast_forward=False, allow_reset=True) is Verdict.ADOPT


def test_signatures_are_required_when_asked_for() -> None:
    d = decide(ON_A, B, fast_forward=True, signature=(False, "the commit is not signed"))
    assert d.verdict is Verdict.REFUSE and "not signed by an allowed key" in d.reason
    assert verdict(ON_A, B, signature=(True, "Good signature"), signed_for=("main",)) is Verdict.ADOPT


def test_without_a_record_nothing_is_adopted_unless_a_minimum_commit_is_pinned() -> None:
    """Issue 14, defect 1: a lost record (a reboot when it lived in /run) counted as a
    fast-forward, so an older commit was adopted."""
    d = decide(FRESH, A, fast_forward=True, signature=None)
    assert d.verdict is Verdict.REFUSE and "--min-commit" in d.reason
    assert verdict(FRESH, B, floor=A) is Verdict.ADOPT
    d = decide(FRESH, C, fast_forward=False, signature=None, floor=A, allow_reset=True)
    assert d.verdict is Verdict.REFUSE and "pinned minimum commit" in d.reason
    rejected_first = FRESH.reject(B, "kernel refused", "t1")  # a record without a good commit
    assert verdict(rejected_first, C) is Verdict.REFUSE


def test_a_signature_binds_the_commit_to_its_branch() -> None:
    """Issue 14, defect 1: a commit signed for another branch (or for none) is not adopted."""
    good = (True, "Good signature")
    for named in ((), ("staging",)):
        d = decide(ON_A, B, fast_forward=True, signature=good, signed_for=named)
        assert d.verdict is Verdict.REFUSE and "Provision-Branch: main" in d.reason
    assert verdict(ON_A, B, signature=good, signed_for=("staging", "main")) is Verdict.ADOPT


def test_a_failed_commit_is_not_retried_but_a_refused_one_is_judged_again() -> None:
    failed = ON_A.reject(B, "kernel refused", "t1")
    assert verdict(failed, B) is Verdict.STAY
    assert verdict(failed, B, retry=True) is Verdict.ADOPT
    assert verdict(failed, C) is Verdict.ADOPT  # the next commit is tried
    refused = ON_A.reject(B, "rewritten", "t1", refused=True)
    assert verdict(refused, B, fast_forward=False, allow_reset=True) is Verdict.ADOPT
    assert refused.adopt(B, "t2").rejected == ()


def test_rejections_are_bounded_and_the_record_survives_a_round_trip(tmp_path: Path) -> None:
    record = ON_A
    for i in range(KEEP_REJECTED + 5):
        record = record.reject(f"{i:040d}", f"reason {i}", "t")
    assert len(record.rejected) == KEEP_REJECTED and record.rejected[-1].reason == f"reason {KEEP_REJECTED + 4}"
    path = tmp_path / "agent.json"
    save(record, path)
    assert Record.from_dict(load(path) or {}) == record
    assert json.loads(path.read_text())["good"] == A
    assert [p.name for p in tmp_path.iterdir()] == ["agent.json"]  # no temporary file left
    assert load(tmp_path / "missing.json") is None


def test_a_record_that_is_not_one_is_an_error_not_a_missing_record(tmp_path: Path) -> None:
    """A damaged or planted record must not read as "no record": that lifts the rollback check."""
    import os

    import pytest

    from provisioner.files import FileError

    (tmp_path / "garbage.json").write_text("{not json")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "link.json").symlink_to(tmp_path / "garbage.json")
    for name, words in (("garbage.json", "not a pull agent record"), ("fifo.json", "not a regular file"),
                        ("link.json", "symbolic link")):
        with pytest.raises(FileError, match=words):
            load(tmp_path / name)
