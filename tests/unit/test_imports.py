"""What a run imports: a no-op plan of an inventory seen before needs no YAML parser, no schema
validator and no cryptography (issue 15: each is 15-60 ms of every run's start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_cache import INVENTORY

HEAVY = ("ruamel.yaml", "jsonschema", "fastjsonschema", "cryptography", "provisioner.tunnel.supervisor",
         "provisioner.reparse")  # the last parses of changed texts: 2 ms
# hints.py and fingerprint.py: typing for the hints, hashlib (OpenSSL's libcrypto) for the cache's
# keys were 9.5M and 11M instructions, 5% of a no-op plan; socket (its constants made IntEnums) 11M
STANDARD = ("typing", "hashlib", "_hashlib", "hmac", "socket", "selectors")
# dataclasses imports inspect (with ast, dis, tokenize) for the docstring of a class without one:
# 30M instructions, 7% of a no-op plan; precompiled.py, the first import of a command, hands it a stand-in
INSPECT = ("inspect", "ast", "dis", "tokenize")
LOAD = """
import sys
from pathlib import Path
from provisioner import precompiled  # first, as the command imports it
import provisioner.cli, provisioner.fleet, provisioner.connection.kernel, provisioner.runner
from provisioner.reconcile import load
loaded = load(sys.argv[1], cache_dir=Path(sys.argv[2]))
print(loaded.from_cache, sorted(sys.modules))
"""


def test_a_cached_load_imports_no_parser_validator_or_cryptography(tmp_path: Path) -> None:
    """Nor, parsed or cached, inspect (INSPECT), typing, hashlib or socket (STANDARD)."""
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY)
    (tmp_path / "state").mkdir(mode=0o700)
    run = [sys.executable, "-c", LOAD, str(path), str(tmp_path / "state" / "cache")]
    first = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert first.startswith("False")  # parsed (without ruamel: a plain shape, reparse.plain_shape), and kept
    again = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert again.startswith("True")
    assert [m for m in HEAVY if f"'{m}'" in again] == []
    for modules in (first, again):
        assert [m for m in INSPECT + STANDARD if f"'{m}'" in modules] == []


START = """
import sys
from provisioner import cli
from provisioner.kernel import namespace
cli.parser().parse_args(["plan", "inventory.yaml"])
print(sorted(sys.modules))
"""


def test_the_parser_and_the_namespace_layer_import_neither_shutil_nor_ctypes() -> None:
    # argparse's formatter asked shutil (with bz2, lzma) for the width, 3-4 ms; setns came through ctypes, 3-4 ms
    modules = subprocess.run([sys.executable, "-c", START], capture_output=True, text=True, check=True).stdout
    assert [m for m in ("shutil", "ctypes", "bz2", "lzma") if f"'{m}'" in modules] == []


FIRST = """
import sys
from pathlib import Path
from provisioner.reconcile import load
load(sys.argv[1], cache_dir=Path(sys.argv[2]))
print(sorted(sys.modules))
"""


@pytest.mark.parametrize("devices", [1, 1000])
def test_an_inventory_read_for_the_first_time_imports_no_yaml_parser_when_it_is_plain(tmp_path: Path,
                                                                                      devices: int) -> None:
    # reparse.plain_shape: a converge of a new 1000-device inventory imported ruamel (20-30 ms) to
    # parse its shape, and a small one (under reparse.KEEP_FROM) to parse all of it
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import reconcile as bench

    path = tmp_path / "inventory.yaml"
    path.write_text(bench.inventory(devices, "ns"))
    (tmp_path / "state").mkdir(mode=0o700)
    modules = subprocess.run([sys.executable, "-c", FIRST, str(path), str(tmp_path / "state" / "cache")],
                             capture_output=True, text=True, check=True).stdout
    assert "'ruamel.yaml'" not in modules


def test_every_dataclass_has_a_docstring_of_its_own() -> None:
    """Docstrings say why; and where a dataclass has none, `dataclass` writes one from
    inspect.signature at import, about 0.1 ms a class: 1.9 ms of an apply's start for the 15
    (of 24) that had none on its path."""
    import dataclasses
    import importlib
    import inspect
    import pkgutil

    import provisioner

    missing = []
    for info in pkgutil.walk_packages(provisioner.__path__, "provisioner."):
        if info.name.endswith("__main__"):  # runs the command
            continue
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if inspect.isclass(cls) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__:
                if "__doc__" not in cls.__dict__ or (cls.__doc__ or "").startswith(f"{cls.__name__}("):
                    missing.append(f"{module.__name__}.{cls.__qualname__}")
    assert missing == []


STAND_IN = """
import sys
from provisioner.precompiled import dataclasses
assert "inspect" not in sys.modules
@dataclasses.dataclass(frozen=True)
class Undocumented:
    a: int
    b: str = "x"
print(Undocumented.__doc__)
import inspect
print(sys.modules["inspect"] is inspect, hasattr(inspect, "getsource"), inspect.signature(Undocumented))
"""


def test_the_stand_in_for_inspect_gives_way_to_the_real_module() -> None:
    # a class without a docstring gets the one inspect.signature writes, and `import inspect`
    # anywhere after is the real module
    out = subprocess.run([sys.executable, "-c", STAND_IN], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["Undocumented(a: int, b: str = 'x')", "True True (a: int, b: str = 'x') -> None"]
