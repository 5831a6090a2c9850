"""The `docker` connection: a host that is a container, reached through the Docker SDK.

As with Ansible's docker connection, the work happens inside the container: the inventory
file is copied in, and the container's own `provision` runs the same command for that one
host with `--connection local --json`. So the netlink calls, the lock and the tunnel
forwarders all live in the container's namespaces and outlive the controller's command;
the controller only validates, fans out, and prints what comes back.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import HostError, UnreachableError
from ..inventory import Host

INBOX = "/tmp"  # where the inventory is put inside the container
NOT_FOUND = (126, 127)  # the shell's "cannot execute" and "not found"


def run_inside(host: Host, inventory_file: str, argv: Sequence[str]) -> dict[str, Any]:
    """`provision ARGV INVENTORY --limit HOST --connection local --json` in the container; its JSON."""
    container = _container(host)
    data = Path(inventory_file).read_bytes()
    name = f"provision-inventory-{hashlib.sha256(data).hexdigest()[:12]}.yaml"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o600
        tar.addfile(info, io.BytesIO(data))
    try:
        container.put_archive(INBOX, archive.getvalue())
        command = ["provision", *argv, f"{INBOX}/{name}", "--limit", host.name, "--connection", "local", "--json"]
        code, (out, err) = container.exec_run(command, demux=True)
    except _docker_errors() as exc:
        raise UnreachableError(host.name, f"container {host.address}: {_explain(exc)}") from exc
    out_text, err_text = (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace").strip()
    if code in NOT_FOUND or "executable file not found" in out_text + err_text:
        raise UnreachableError(host.name, f"provision is not installed in container {host.address}")
    try:
        return dict(json.loads(out_text))
    except ValueError:
        raise HostError(host.name, f"provision in container {host.address} failed (exit {code}): "
                                   f"{err_text or out_text.strip() or 'no output'}") from None


def _container(host: Host) -> Any:
    try:
        import docker
    except ImportError:
        raise UnreachableError(host.name, "the Docker SDK is not installed (pip install 'provision[docker]')") \
            from None
    try:
        client = docker.from_env()
        container = client.containers.get(host.address)
    except docker.errors.NotFound:
        raise UnreachableError(host.name, f"no container named {host.address}") from None
    except docker.errors.DockerException as exc:
        raise UnreachableError(host.name, f"cannot reach the Docker engine: {_explain(exc)}") from exc
    if container.status != "running":
        raise UnreachableError(host.name, f"container {host.address} is {container.status}, not running")
    return container


def _docker_errors() -> tuple[type[BaseException], ...]:
    import docker.errors
    import requests

    return (docker.errors.DockerException, requests.RequestException)


def _explain(exc: BaseException) -> str:
    return str(getattr(exc, "explanation", None) or exc)
