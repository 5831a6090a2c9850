"""Shared fixtures. Kernel tests each get fresh network namespaces, removed afterwards
(with every process still inside them), whether the test passed or not."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.kernel)


def _delete_namespace(name: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def make_netns() -> Iterator[Callable[[], str]]:
    """A factory of fresh, uniquely named network namespaces; all are deleted at teardown."""
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (network namespaces); run `make test` as root")
    made: list[str] = []

    def make() -> str:
        name = f"pvt{os.getpid() % 100000}x{next(_counter)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        made.append(name)
        return name

    yield make
    for name in made:
        _delete_namespace(name)


@pytest.fixture
def netns(make_netns: Callable[[], str]) -> str:
    return make_netns()
