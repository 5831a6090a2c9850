"""The chaos suite's table is printed at the end of the run (and kept with
$PROVISION_CHAOS_RESULTS, which `make chaos` turns into the table of docs/chaos.md)."""

from __future__ import annotations

import pytest

from ..integration.pair import hosts  # noqa: F401  (two namespaces on one link: the tunnel cases' fixture)
from .world import FIGURES, table


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    if FIGURES:
        terminalreporter.write_sep("=", "chaos: fault → what happened")
        terminalreporter.write_line(table(FIGURES))
