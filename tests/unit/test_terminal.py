"""terminal.columns: shutil.get_terminal_size's answer for the width, without importing shutil."""

from __future__ import annotations

import shutil

import pytest

from provisioner.terminal import columns


@pytest.mark.parametrize("value", ["132", "0", "-5", "wide", ""])
def test_the_width_is_shutils(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", value)
    assert columns() == shutil.get_terminal_size().columns


def test_without_columns_or_a_terminal_it_is_80(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert columns() == 80  # pytest captures standard output: not a terminal
