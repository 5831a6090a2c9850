"""Containers for multi-host tests, through the Docker SDK.

The session gets an engine and the project image from provide.py (installing and starting
what is missing; a failure to do so fails the run, it never skips). Each test gets the
containers its inventory names, on a user-defined network of their own, with NET_ADMIN and
/dev/net/tun (--privileged does not work on every engine), and they are removed, with their
network, whatever happens.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from . import provide

LABEL = "provision-test"  # its value: the session that made the container or network
PID_LABEL = "provision-test.pid"  # the pytest process of that session
BOOT_LABEL = "provision-test.boot"
SESSION = secrets.token_hex(6)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
DECOY_TUNNEL_ARGV0 = "python3 -m provisioner.tunnel.dataplane --decoy"


def ours() -> dict[str, str]:
    return {LABEL: SESSION, PID_LABEL: str(os.getpid()), BOOT_LABEL: BOOT_ID}


def session_dir() -> Path:
    """The controller's state directory for this session (others on the machine have theirs)."""
    return Path(f"/tmp/provision-controller-{SESSION}")


def session_processes() -> list[int]:
    """Processes on this machine that a `provision` of this session started (they carry its
    state directory in their environment): what the tests may check, and nothing else."""
    marker = f"PROVISION_STATE_DIR={session_dir()}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            found.append(int(entry))
    return found


def _orphaned(labels: dict[str, str]) -> bool:
    """Made by a test session that is gone (killed, or before a reboot): nobody will remove it."""
    if labels.get(LABEL) == SESSION:
        return True
    if labels.get(BOOT_LABEL) != BOOT_ID:
        return True
    pid = labels.get(PID_LABEL, "")
    return not (pid.isdigit() and Path(f"/proc/{pid}").exists())


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = provide.engine()
    except SystemExit:
        pytest.fail("no Docker engine could be started (see the provide: lines above)")
    _remove(client, _orphaned)
    yield client
    _remove(client, lambda labels: labels.get(LABEL) == SESSION)
    for made in (session_dir(), session_dir().with_name(session_dir().name + "-lib")):
        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="session")
def image(docker_client: docker.DockerClient) -> str:
    try:
        return provide.project_image(docker_client, provide.base_image(docker_client))
    except SystemExit:
        pytest.fail("the test image could not be built (see the provide: lines above)")


@pytest.fixture(scope="session", autouse=True)
def someone_elses_work(docker_client: docker.DockerClient, image: str) -> Iterator[None]:
    """What another user of the machine runs while we test: a tunnel process of their own and
    a container another (live) test session made. The tests must neither count them nor
    remove them (issue 14, defect 8): both are checked to be untouched at the end."""
    process = subprocess.Popen(["bash", "-c", f'exec -a "{DECOY_TUNNEL_ARGV0}" sleep 100000'])
    theirs = {LABEL: "another-session", PID_LABEL: str(process.pid), BOOT_LABEL: BOOT_ID}
    container = docker_client.containers.run(image, ["sleep", "100000"], name=f"provision-decoy-{SESSION}",
                                             detach=True, labels=theirs, network_mode="none")
    try:
        yield
        assert process.poll() is None, "another user's tunnel process was killed"
        container.reload()
        assert container.status == "running", "another session's container was removed"
    finally:
        process.kill()
        process.wait()
        container.remove(force=True)


@pytest.fixture
def containers(docker_client: docker.DockerClient, image: str) -> Iterator[Callable[[list[str]], dict[str, Container]]]:
    """A factory: containers(names) starts one container per name on a fresh network."""
    made: list[Container] = []
    networks = []

    def make(names: list[str]) -> dict[str, Container]:
        for name in names:  # a container of that name from an interrupted run
            try:
                other = docker_client.containers.get(name)
            except docker.errors.NotFound:
                continue
            if not _orphaned(other.labels):
                pytest.fail(f"container {name} belongs to a test session that is still running (pid "
                            f"{other.labels.get(PID_LABEL, '?')}); run the docker tests under "
                            "flock /tmp/provision-docker-tests.lock")
            other.remove(force=True)
        net = docker_client.networks.create(f"{LABEL}-{SESSION}-{len(networks)}", driver="bridge", labels=ours())
        networks.append(net)
        out = {}
        for name in names:
            c = docker_client.containers.run(
                image, name=name, hostname=name, detach=True, network=net.name, labels=ours(),
                cap_add=["NET_ADMIN"], devices=["/dev/net/tun"], init=True, tmpfs={"/run": ""})
            made.append(c)
            out[name] = c
        return out

    yield make
    for c in made:
        c.remove(force=True)
    for n in networks:
        n.remove()
    mine = {"label": f"{LABEL}={SESSION}"}
    assert not docker_client.containers.list(all=True, filters=mine), "containers left behind"
    assert not docker_client.networks.list(filters=mine), "networks left behind"


def _remove(client: docker.DockerClient, which: Callable[[dict[str, str]], bool]) -> None:
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        if which(c.labels):
            c.remove(force=True)
    for n in client.networks.list(filters={"label": LABEL}):
        if which(n.attrs.get("Labels") or {}):
            n.remove()

