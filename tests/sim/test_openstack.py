"""OpenStack on Ceph in the simulated instance: RBD-backed Glance and Cinder, the one bootable volume, per-instance secrets.

Needs the ``sim`` session fixture (tests/sim/conftest.py). Everything is checked from inside
the instance, as its owner would: ``. /root/openrc && openstack ...``, ``rbd``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from provision import verbosity
from provision.openstack.profile import profile
from provision.openstack.provisioning import steps as openstack_steps
from provision.openstack.secrets import Secrets, secrets_path
from provision.steps import run_steps
from provision.systemd import unit_enabled
from provision.target import Result, Target
from tests.sim import inventory

pytestmark = pytest.mark.docker

OPENRC = "/root/openrc"
CLI_TIMEOUT_S = 120


def cli(target: Target, template: str, *args: Any, check: bool = True, password: str | None = None) -> Result:
    """``openstack ...`` with the instance's admin credentials (or another password, on stdin)."""
    prefix = ". /root/openrc && "
    stdin = None
    if password is not None:
        prefix += "read -r OS_PASSWORD && export OS_PASSWORD && "
        stdin = password + "\n"
    return target.run(f"{prefix}timeout {CLI_TIMEOUT_S} openstack {template}", *args, check=check, stdin=stdin)


def cli_json(target: Target, template: str, *args: Any) -> Any:
    return json.loads(cli(target, template + " -f json", *args).stdout)


def wait_status(target: Target, kind: str, ident: str, want: str, timeout: float = 180) -> str:
    """Poll ``openstack KIND show ID`` until its status is ``want`` (or an error state)."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = cli(target, f"{kind} show %s -f value -c status", ident).stdout.strip()
        if status == want or status.startswith("error") or status == "killed":
            return status
        time.sleep(2)
    return status


def boot_volumes(sim: Any) -> list[dict[str, Any]]:
    """The admin project's volumes called ``cephdemo-boot``."""
    vols = cli_json(sim.target, "volume list --long --name %s", sim.settings.boot_volume_name)
    return [v for v in vols if v["Name"] == sim.settings.boot_volume_name]


def rbd_parent(target: Target, pool: str, image: str) -> str | None:
    """``POOL/IMAGE@SNAP`` of an RBD image's parent, or None for an image that is not a clone."""
    info = json.loads(target.run(["timeout", "60", "rbd", "info", "--format", "json", f"{pool}/{image}"]).stdout)
    parent = info.get("parent")
    return f"{parent['pool']}/{parent['image']}@{parent['snapshot']}" if parent else None


def secrets_of(sim: Any) -> Secrets:
    return Secrets.from_json(sim.target.read(secrets_path(sim.settings)).decode())


def endpoints(target: Target) -> list[dict[str, Any]]:
    return cli_json(target, "endpoint list")


def last_boot_entry(sim: Any, job: str) -> dict[str, Any]:
    """The latest line the boot agent logged for ``job`` (``<state_dir>/boot-log.jsonl``)."""
    lines = sim.target.read(f"{sim.settings.state_dir}/boot-log.jsonl").decode().splitlines()
    entries = [json.loads(ln) for ln in lines if ln.strip()]
    return [e for e in entries if e["job"] == job][-1]


# --- services --------------------------------------------------------------------------------
def test_services_are_enabled_system_services(sim: Any) -> None:
    prof = profile(sim.status()["profile"] or "debian-12")
    for unit in prof.all_units:
        if unit == prof.libvirt_unit:
            continue  # socket-activated
        assert unit_enabled(sim.target, unit), f"{unit} would not start at boot"
        assert sim.target.service_active(unit), f"{unit} is not running"


def test_openrc_and_secret_files_are_private(sim: Any) -> None:
    t = sim.target
    assert t.file_state(OPENRC) is not None and (t.file_state(OPENRC).mode, t.file_state(OPENRC).owner) == (0o600, "root")
    for path, group in (("/etc/keystone/keystone.conf", "keystone"), ("/etc/glance/glance-api.conf", "glance"), ("/etc/cinder/cinder.conf", "cinder")):
        st = t.file_state(path)
        assert st is not None and (st.mode, st.owner, st.group) == (0o640, "root", group), path
    st = t.file_state(secrets_path(sim.settings))
    assert st is not None and (st.mode, st.owner) == (0o600, "root")


def test_token_image_and_volume_lists_work_with_openrc(sim: Any) -> None:
    t = sim.target
    assert cli(t, "token issue -f value -c id").stdout.strip()
    cli(t, "image list")
    cli(t, "volume list")


# --- Glance and Cinder on RBD ------------------------------------------------------------------
def test_image_lands_in_images_pool_and_volume_is_a_clone(sim: Any) -> None:
    t = sim.target
    s = sim.settings
    t.run("head -c 1048576 /dev/urandom > /root/coa-test-image.raw")
    image = cli(t, "image create --disk-format raw --container-format bare --file /root/coa-test-image.raw coa-test-image -f value -c id").stdout.strip()
    volume = ""
    try:
        assert wait_status(t, "image", image, "active") == "active"
        assert image in t.run(["timeout", "60", "rbd", "-p", s.image_pool, "ls"]).stdout.split()
        volume = cli(t, "volume create --image %s --size 1 coa-test-volume -f value -c id", image).stdout.strip()
        assert wait_status(t, "volume", volume, "available") == "available"
        assert rbd_parent(t, s.volume_pool, f"volume-{volume}") == f"{s.image_pool}/{image}@snap"
    finally:
        if volume:
            cli(t, "volume delete %s", volume, check=False)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and cli(t, "volume show %s", volume, check=False).ok:
                time.sleep(2)
        cli(t, "image delete %s", image, check=False)
        t.run("rm -f /root/coa-test-image.raw", check=False)


def test_exactly_one_boot_volume_cloned_from_the_golden_image(sim: Any) -> None:
    t = sim.target
    vols = boot_volumes(sim)
    assert len(vols) == 1 and vols[0]["Status"] == "in-use"  # the demo server's root disk (tests/sim/test_compute.py)
    golden = cli(t, "image show %s -f value -c id", sim.settings.openstack.guest_image_name).stdout.strip()
    assert rbd_parent(t, sim.settings.volume_pool, f"volume-{vols[0]['ID']}") == f"{sim.settings.image_pool}/{golden}@snap"
    assert cli(t, "volume show %s -f value -c bootable", vols[0]["ID"]).stdout.strip() == "true"


def test_second_provisioning_changes_nothing_and_its_verbose_trace_shows_no_secret(sim: Any) -> None:
    status = sim.status()
    steps = openstack_steps(sim.settings, status["profile"] or "debian-12", status["private_ip"])
    traced: list[str] = []
    verbosity.apply(verbosity.VERBOSE, traced.append)  # what `-v` prints: every command line run on the instance
    try:
        report = run_steps(sim.target, sim.settings, steps)
    finally:
        verbosity.apply(verbosity.NORMAL, print)
    assert report.changed == 0, [r.line() for r in report.results if r.changed]
    assert len(traced) > 10 and all(line.startswith("    $ [") for line in traced)
    secrets = {k: v for k, v in inventory.secret_values(sim.target, sim.settings).items() if len(v) >= 16}
    shown = sorted(k for k, v in secrets.items() if any(v in line for line in traced))
    assert shown == [], f"secrets on traced command lines: {shown}"




def test_no_api_logged_a_greenlet_thread_switch(sim: Any) -> None:
    """The uWSGI APIs log to their own files, not the journal: no eventlet lock was woken from another thread."""
    r = sim.target.run("grep -l 'cannot switch to a different thread' /var/log/*/*.log 2>/dev/null || true")
    assert r.stdout.split() == [], r.stdout
