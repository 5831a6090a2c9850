"""Which package may import which: the kernel layer never imports the tunnel layer.

The transaction reaches tunnel processes through `kernel.apply.TunnelProcesses`, and the
tun/tap ioctls both layers need live in the leaf `provisioner.tuntap`. Read from the source
with ast, so an import under TYPE_CHECKING or inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import provisioner

ROOT = Path(provisioner.__file__).parent


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, as absolute dotted names (a `from X import y` counts as X and X.y)."""
    package = ".".join(("provisioner", *path.relative_to(ROOT).with_suffix("").parts[:-1]))
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def provision_imports(path: Path) -> set[str]:
    return {m for m in imports_of(path) if m == "provisioner" or m.startswith("provisioner.")}


def test_imports_are_resolved_as_python_does() -> None:
    supervisor = provision_imports(ROOT / "tunnel" / "supervisor.py")
    assert {"provisioner.tuntap", "provisioner.tunnel.runtime", "provisioner.model.Tunnel"} <= supervisor


def test_the_kernel_layer_does_not_import_the_tunnel_layer() -> None:
    files = sorted((ROOT / "kernel").rglob("*.py"))
    assert files
    offending = {f"{f.relative_to(ROOT)}: {m}" for f in files for m in provision_imports(f)
                 if m == "provisioner.tunnel" or m.startswith("provisioner.tunnel.")}
    assert not offending


def test_tuntap_is_a_leaf() -> None:
    """Both layers use it, so it may use neither (only the shared model)."""
    assert {m.split(".")[1] for m in provision_imports(ROOT / "tuntap.py")} == {"model"}
