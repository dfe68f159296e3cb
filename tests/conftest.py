"""Shared fixtures: a Docker engine (fails loudly when missing) and the sim's OS image."""

from __future__ import annotations

import os
from pathlib import Path
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


#: cloud-init's datasource for a throwaway container of the OS image: it is no instance and no
#: metadata service answers it, so cloud-init runs at once with its ``None`` datasource (default
#: user, host keys) instead of waiting two minutes for the EC2 one.
NO_METADATA_CFG = "# a throwaway container, not an instance: no metadata service\ndatasource_list: [None]\n"


@pytest.fixture
def systemd_container(docker_client: Any, os_image: str, tmp_path: Path) -> Iterator[Any]:
    """A throwaway container of the OS image running systemd (sshd, cloud-init without metadata), removed after."""
    from testcontainers.core.container import DockerContainer

    from sim.container import RUN_OPTIONS

    cfg = tmp_path / "96-no-metadata.cfg"
    cfg.write_text(NO_METADATA_CFG)
    opts = {k: v for k, v in RUN_OPTIONS.items() if k != "tmpfs"}
    container = DockerContainer(os_image).with_kwargs(labels={"ceph-openstack-ami.test": "1"}, **opts)
    container = container.with_volume_mapping(str(cfg), "/etc/cloud/cloud.cfg.d/96-no-metadata.cfg", "ro")
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
