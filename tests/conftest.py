"""Shared fixtures: a Docker engine (fails loudly when missing) and the sim's OS image."""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """The Docker SDK client; a test that needs Docker and finds none fails (never skips)."""
    from provision.target.docker import docker_client as make

    return make()


@pytest.fixture(scope="session")
def os_image(docker_client: Any) -> str:
    """Tag of the sim's OS image (the stand-in for a cloud image), built once if missing."""
    from provision.profiles import get_profile
    from sim import images

    profile = get_profile(os.environ.get("COA_TEST_PROFILE") or images.default_profile(docker_client, print))
    return images.os_image(docker_client, profile, print)


@pytest.fixture
def systemd_container(docker_client: Any, os_image: str) -> Iterator[Any]:
    """A throwaway container of the OS image running systemd (sshd included), removed after."""
    from testcontainers.core.container import DockerContainer

    from sim.container import RUN_OPTIONS

    opts = {k: v for k, v in RUN_OPTIONS.items() if k != "tmpfs"}
    container = DockerContainer(os_image).with_kwargs(labels={"ceph-openstack-ami.test": "1"}, **opts)
    for path in RUN_OPTIONS["tmpfs"]:
        container = container.with_tmpfs_mount(path)
    with container as c:
        from provision.target.docker import DockerTarget
        from sim.instance import wait_for_systemd

        wrapped = c.get_wrapped_container()
        wait_for_systemd(DockerTarget(wrapped.name, client=docker_client), timeout=120)
        yield wrapped


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Run the fast offline tier first, then the Docker/sim tier (which shares one sim per session)."""
    items.sort(key=lambda item: 1 if item.get_closest_marker("docker") or item.get_closest_marker("reliability") else 0)
