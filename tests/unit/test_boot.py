"""The boot agent: per-instance bookkeeping, last-known metadata, unit rendering (over real HTTP)."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from provision.boot import jobs as boot_jobs
from provision.boot import runner
from provision.boot.context import BootContext, BootJob
from provision.exceptions import MetadataError
from provision.settings import Settings
from provision.steps import StepResult
from provision.target.local import LocalTarget
from provision.boot.units import render_unit
from sim.imds import IMDSServer
from sim.imds_tree import InstanceView

CALLS: list[str] = []


def fake_job(ctx: BootContext) -> StepResult:
    """A job that records which instance it ran for."""
    CALLS.append(ctx.info.instance_id)
    return StepResult("fake", True, f"ran for {ctx.info.instance_id}")


JOBS = [
    BootJob("every-boot", "boot", "runs at every boot", fake_job),
    BootJob("once", "instance", "runs once per instance", fake_job),
]


def tree(instance_id: str, ip: str = "10.0.0.5") -> dict[str, str]:
    return {
        "meta-data/instance-id": instance_id,
        "meta-data/ami-id": "ami-0123456789abcdef0",
        "meta-data/instance-type": "m1.xlarge",
        "meta-data/local-ipv4": ip,
        "meta-data/local-hostname": "ip-10-0-0-5.ec2.internal",
        "meta-data/public-ipv4": "203.0.113.9",
        "meta-data/public-hostname": "ec2-203-0-113-9.compute-1.amazonaws.com",
        "meta-data/placement/availability-zone": "us-east-1a",
        "meta-data/mac": "0e:00:00:00:00:01",
    }


class Instance:
    """A metadata server whose answer can be switched to a new instance, or taken down."""

    def __init__(self) -> None:
        self.view: InstanceView | None = InstanceView(tree("i-00000000000000001"))
        self.server = IMDSServer("127.0.0.1", 0, lambda ip: self.view).start()

    def relaunch(self, instance_id: str) -> None:
        self.view = InstanceView(tree(instance_id, "10.0.0.6"))


@pytest.fixture
def imds() -> Iterator[Instance]:
    inst = Instance()
    yield inst
    inst.server.stop()


@pytest.fixture
def settings(tmp_path: Any, imds: Instance) -> Settings:
    CALLS.clear()
    return Settings().replace(state_dir=str(tmp_path / "state"), metadata_url=imds.server.url,
                              boot_metadata_attempts=2, boot_metadata_delay_s=0,
                              metadata_retries=0, metadata_backoff_s=0)


def run(name: str, settings: Settings) -> StepResult:
    return runner.run_job(name, settings, LocalTarget(), job_list=JOBS)


def test_per_instance_job_runs_once_per_instance_id(settings: Settings, imds: Instance) -> None:
    assert run("once", settings).changed
    assert not run("once", settings).changed  # a reboot: same instance
    assert CALLS == ["i-00000000000000001"]
    imds.relaunch("i-00000000000000002")  # a new instance from this disk
    assert run("once", settings).changed
    assert CALLS == ["i-00000000000000001", "i-00000000000000002"]


def test_per_boot_job_runs_every_time(settings: Settings) -> None:
    run("every-boot", settings)
    run("every-boot", settings)
    assert len(CALLS) == 2


def test_metadata_down_uses_last_known_and_says_so(settings: Settings, imds: Instance, capsys: Any) -> None:
    run("every-boot", settings)
    imds.server.stop()
    capsys.readouterr()
    run("every-boot", settings)
    assert CALLS == ["i-00000000000000001", "i-00000000000000001"]
    assert "using the last-known configuration" in capsys.readouterr().out
    # a per-instance job cannot tell whether this is a new instance: it does nothing
    result = run("once", settings)
    assert not result.changed and "metadata unavailable" in result.detail


def test_metadata_down_without_history_is_an_error(settings: Settings, imds: Instance) -> None:
    imds.server.stop()
    with pytest.raises(MetadataError):
        run("every-boot", settings)


def test_job_timings_are_recorded(settings: Settings) -> None:
    run("every-boot", settings)
    lines = open(f"{settings.state_dir}/boot-log.jsonl").read().splitlines()
    entry = json.loads(lines[-1])
    assert entry["job"] == "every-boot" and entry["changed"] is True and entry["seconds"] >= 0


def test_units_order_readdress_before_every_ceph_daemon() -> None:
    s = Settings().replace(ceph={"osd_count": 2})
    jobs = {j.name: j for j in boot_jobs.jobs(s)}
    text = render_unit(jobs["ceph-readdress"])
    before = next(line for line in text.splitlines() if line.startswith("Before="))
    for unit in ("ceph-mon@a.service", "ceph-mgr@x.service", "ceph-osd@0.service", "ceph-osd@1.service"):
        assert unit in before
    assert "ExecStart=/usr/bin/python3 -m provision.boot run ceph-readdress" in text
    assert "StandardOutput=journal+console" in render_unit(jobs["ceph-keys"])  # per-instance: console too


def test_tls_unit_runs_after_the_hostname_before_apache_and_the_openstack_jobs() -> None:
    jobs = {j.name: j for j in boot_jobs.jobs(Settings())}
    order = [j.name for j in boot_jobs.jobs(Settings())]
    assert order.index("tls") < order.index("openstack-secrets") and order[0] == "hostname"
    text = render_unit(jobs["tls"])
    after = next(line for line in text.splitlines() if line.startswith("After="))
    before = next(line for line in text.splitlines() if line.startswith("Before="))
    assert after == "After=coa-hostname.service"
    for unit in ("apache2.service", "nova-novncproxy.service", "coa-openstack-secrets.service", "coa-openstack-endpoints.service"):
        assert unit in before.split("=", 1)[1].split()
    # Per boot, and only what it announces (stderr: the fingerprint of a new certificate) reaches the console.
    assert "StandardOutput=journal\n" in text and "StandardError=journal+console\n" in text
    assert "StandardError" not in render_unit(jobs["ceph-readdress"])


def test_unknown_job_is_named(settings: Settings) -> None:
    from provision.exceptions import ProvisionError

    with pytest.raises(ProvisionError, match="Unknown boot job"):
        run("nope", settings)
