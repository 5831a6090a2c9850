"""The `docker` connection: a host that is a container, reached through the Docker SDK.

As with Ansible's docker connection, the work happens inside the container: the inventory
file is copied in (with the host's private key file and the pre-shared key files its
tunnels name, mode 0600, into a directory only root can read), and the container's own `provision` runs the same command for that one
host with `--connection local --json`. So the netlink calls, the lock and the tunnel
forwarders all live in the container's namespaces and outlive the controller's command;
the controller only validates, fans out, and prints what comes back.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from collections.abc import Callable, Mapping, Sequence

from .. import keys
from ..errors import HostError, UnreachableError
from ..files import parse_json
from ..hints import Any
from ..inventory import Host

INBOX = "/var/lib/provision/inbox"  # inventory and keys, in the container (not /run: often a tmpfs, which
# `docker cp` and put_archive cannot write to)
NOT_FOUND = (126, 127)  # the shell's "cannot execute" and "not found"


def run_inside(host: Host, inventory_file: str, argv: Sequence[str], everyone: Mapping[str, Host]) -> dict[str, Any]:
    """`provision ARGV INVENTORY --limit HOST --connection local --json` in the container; its JSON.
    The container gets the host's variables (and what its tunnels need of their peers) as one file, `network`
    merged here (inventory.flatten): whatever form the inventory has, it reads the same."""
    from ..inventory import flatten

    container = _container(host)
    data = json.dumps(flatten(host, everyone), indent=1).encode()  # JSON is YAML
    name = f"provision-inventory-{hashlib.sha256(data).hexdigest()[:12]}.yaml"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        _add(tar, INBOX.lstrip("/"), None)
        _add(tar, f"{INBOX.lstrip('/')}/{name}", data)
        for inside, outside, read in _key_files(host, inventory_file, everyone):
            try:  # with the checks of any key file: never through a link, never from a FIFO
                key = keys.encode(read(outside)).encode() + b"\n"
            except keys.KeyFileError as exc:
                raise HostError(host.name, str(exc)) from None
            parts = inside.lstrip("/").split("/")
            for i in range(1, len(parts)):
                _add(tar, "/".join(parts[:i]), None)
            _add(tar, "/".join(parts), key)
    try:
        container.put_archive("/", archive.getvalue())
        command = ["provision", *argv, f"{INBOX}/{name}", "--limit", host.name, "--connection", "local", "--json"]
        code, (out, err) = container.exec_run(command, demux=True)
    except _docker_errors() as exc:
        raise UnreachableError(host.name, f"container {host.address}: {_explain(exc)}") from exc
    out_text, err_text = (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace").strip()
    if code in NOT_FOUND or "executable file not found" in out_text + err_text:
        raise UnreachableError(host.name, f"provision is not installed in container {host.address}")
    try:
        return dict(parse_json(out_text))
    except ValueError:
        raise HostError(host.name, f"provision in container {host.address} failed (exit {code}): "
                                   f"{err_text or out_text.strip() or 'no output'}") from None


def _add(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    """A file (mode 0600) or, with no data, a directory (0700), owned by root."""
    info = tarfile.TarInfo(name)
    info.uid = info.gid = 0
    if data is None:
        if not (name + "/").startswith(INBOX.lstrip("/") + "/"):
            return  # never touch the modes of directories the container already has (/run, /etc ...)
        info.type, info.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(info)
        return
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def _key_files(host: Host, inventory_file: str, everyone: Mapping[str, Host]) -> list[tuple[str, str, Callable[[str], bytes]]]:
    """(path in the container, path here, how to read it) of each key file the host's tunnels
    use: its private key (when tunnel_private_key_file names one: the default is the
    container's own), the pre-shared keys, and the public key files (tunnel_public_key_file)
    of the host and its peers. Relative paths resolve against the inventory's directory on
    both sides, as `key_path` does; absolute ones are the same path inside."""
    from ..resolve import key_path

    secure = [e.value for e in host.network.get("tunnels", ()) if e.value.get("insecure") is not True]
    named: list[tuple[Any, Callable[[str], bytes]]] = []
    if secure:
        named.append((host.vars.get("tunnel_private_key_file"), keys.read_private))
        named += [(t.get("psk_file"), keys.read_psk) for t in secure]
        peers = {str(t["peer"]) for t in secure if "peer" in t}
        named += [(h.vars.get("tunnel_public_key_file"), _read_public) for h in everyone.values()
                  if (h.name == host.name or h.name in peers) and "tunnel_public_key" not in h.vars]
    return [(posixpath.normpath(posixpath.join(INBOX, str(raw))), key_path(inventory_file, str(raw)), read)
            for raw, read in dict(named).items() if raw is not None]


def _read_public(path: str) -> bytes:
    return keys.decode(keys.read_public(path)) or b""


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
