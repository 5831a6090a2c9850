"""Containers for multi-host tests, through the Docker SDK.

The session gets an engine and the project image from provide.py (installing and starting
what is missing; a failure to do so fails the run, it never skips). Each test gets the
containers its inventory names, on a user-defined network of their own, with NET_ADMIN and
/dev/net/tun (--privileged does not work on every engine), and they are removed, with their
network, whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from . import provide

LABEL = "provision-test"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = provide.engine()
    except SystemExit:
        pytest.fail("no Docker engine could be started (see the provide: lines above)")
    _remove_leftovers(client)
    yield client
    _remove_leftovers(client)


@pytest.fixture(scope="session")
def image(docker_client: docker.DockerClient) -> str:
    try:
        return provide.project_image(docker_client, provide.base_image(docker_client))
    except SystemExit:
        pytest.fail("the test image could not be built (see the provide: lines above)")


@pytest.fixture
def containers(docker_client: docker.DockerClient, image: str) -> Iterator[Callable[[list[str]], dict[str, Container]]]:
    """A factory: containers(names) starts one container per name on a fresh network."""
    made: list[Container] = []
    networks = []

    def make(names: list[str]) -> dict[str, Container]:
        for name in names:  # a container of that name from an interrupted run
            try:
                docker_client.containers.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass
        net = docker_client.networks.create(f"{LABEL}-{len(networks)}", driver="bridge", labels={LABEL: "1"})
        networks.append(net)
        out = {}
        for name in names:
            c = docker_client.containers.run(
                image, name=name, hostname=name, detach=True, network=net.name, labels={LABEL: "1"},
                cap_add=["NET_ADMIN"], devices=["/dev/net/tun"], init=True, tmpfs={"/run": ""})
            made.append(c)
            out[name] = c
        return out

    yield make
    for c in made:
        c.remove(force=True)
    for n in networks:
        n.remove()
    assert not docker_client.containers.list(all=True, filters={"label": LABEL}), "containers left behind"
    assert not docker_client.networks.list(filters={"label": LABEL}), "networks left behind"


def _remove_leftovers(client: docker.DockerClient) -> None:
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        c.remove(force=True)
    for n in client.networks.list(filters={"label": LABEL}):
        n.remove()
