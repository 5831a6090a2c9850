from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], str]:
    """Write an inventory text to a file and return its path."""
    def make(text: str, name: str = "inventory.yaml") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return make
