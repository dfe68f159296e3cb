"""The boot agent: per-instance bookkeeping, last-known metadata, unit rendering (over real HTTP)."""

from __future__ import annotations

import json
import os
from typing import Any, Iterator

import pytest

from provision.boot import firstboot, runner
from provision.boot import jobs as boot_jobs
from provision.boot.context import BootContext, BootJob
from provision.boot.units import render_unit
from provision.exceptions import MetadataError
from provision.settings import Settings
from provision.steps import StepResult
from provision.target.local import LocalTarget
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
    return Settings().replace(state_dir=str(tmp_path / "state"), run_dir=str(tmp_path / "run"), metadata_url=imds.server.url,
                              boot_metadata_attempts=2, boot_metadata_delay_s=0,
                              metadata_retries=0, metadata_backoff_s=0)


def run(name: str, settings: Settings) -> StepResult:
    return runner.run_job(name, settings, LocalTarget(), job_list=JOBS, machine_id=MACHINE_A)


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


def run_on(name: str, settings: Settings, machine_id: str) -> StepResult:
    return runner.run_job(name, settings, LocalTarget(), job_list=JOBS, machine_id=machine_id)


MACHINE_A = "0123456789abcdef0123456789abcdef"
MACHINE_B = "fedcba9876543210fedcba9876543210"


def test_metadata_down_uses_last_known_and_says_so(settings: Settings, imds: Instance, capsys: Any) -> None:
    run_on("every-boot", settings, MACHINE_A)
    run_on("once", settings, MACHINE_A)
    imds.server.stop()
    capsys.readouterr()
    run_on("every-boot", settings, MACHINE_A)
    assert CALLS == ["i-00000000000000001"] * 3
    assert "using the last-known configuration" in capsys.readouterr().out
    # the same machine (a reboot): the per-instance job is done already, metadata or not
    result = run_on("once", settings, MACHINE_A)
    assert not result.changed and "already done" in result.detail
    assert len(CALLS) == 3


def test_metadata_down_at_the_first_boot_of_a_new_machine_still_runs_per_instance_jobs(
    settings: Settings, imds: Instance, capsys: Any
) -> None:
    run_on("once", settings, MACHINE_A)  # the builder
    imds.server.stop()
    capsys.readouterr()
    result = run_on("once", settings, MACHINE_B)  # an instance of its image: systemd made a new machine-id
    out = capsys.readouterr().out
    assert result.changed and CALLS == ["i-00000000000000001", "unknown"]
    assert "read on another machine" in out and "using what this instance knows of itself" in out
    assert "machine-id" in out  # the journal says which signal decided
    again = run_on("once", settings, MACHINE_B)  # its next boot, metadata still down
    assert not again.changed and len(CALLS) == 2


def test_after_one_job_waited_out_the_bound_the_next_jobs_of_the_boot_try_once(settings: Settings, imds: Instance, capsys: Any) -> None:
    run_on("every-boot", settings, MACHINE_A)
    imds.server.stop()
    capsys.readouterr()
    run_on("every-boot", settings, MACHINE_A)
    first = capsys.readouterr().out
    assert first.count("metadata: attempt ") == settings.boot_metadata_attempts
    run_on("every-boot", settings, MACHINE_A)
    second = capsys.readouterr().out
    assert "did not answer earlier at this boot; trying once" in second and second.count("metadata: attempt ") == 1
    assert "using the last-known configuration" in second


def test_metadata_down_and_no_address_of_its_own_is_an_error(settings: Settings, imds: Instance, monkeypatch: Any, tmp_path: Any) -> None:
    imds.server.stop()
    # A host with no route at all: its `ip route get` answers as the kernel does without one.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ip").write_text("#!/bin/sh\necho 'RTNETLINK answers: Network is unreachable' >&2\nexit 2\n")
    (fake / "ip").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    with pytest.raises(MetadataError):
        run_on("every-boot", settings, MACHINE_A)


@pytest.mark.parametrize(
    "marker,machine,instance,due,why",
    [
        (None, MACHINE_A, "i-1", True, "never done"),
        (firstboot.Marker("i-1", MACHINE_A), MACHINE_A, "i-1", False, "already done for instance i-1"),
        (firstboot.Marker("i-1", MACHINE_A), MACHINE_B, None, True, "machine-id"),
        (firstboot.Marker("i-1", MACHINE_A), MACHINE_B, "i-1", True, "machine-id"),
        (firstboot.Marker("i-1", MACHINE_A), MACHINE_A, "i-2", True, "instance-id i-1 -> i-2"),
        (firstboot.Marker("i-1", MACHINE_A), MACHINE_A, None, False, "already done"),
        (firstboot.Marker("unknown", MACHINE_A), MACHINE_A, "i-7", False, "already done for instance i-7"),
        (firstboot.Marker("i-1", None), MACHINE_A, None, None, "cannot tell"),
        (firstboot.Marker("i-1", None), MACHINE_A, "i-2", True, "instance-id"),
    ],
)
def test_new_instance_decision(marker: Any, machine: str, instance: str | None, due: bool | None, why: str) -> None:
    d = firstboot.decide(marker, machine, instance)
    assert d.due is due and why in d.why


def test_markers_of_an_older_agent_are_read() -> None:
    assert firstboot.parse_marker("i-0abc\n") == firstboot.Marker("i-0abc", None)
    m = firstboot.Marker("i-1", MACHINE_A)
    assert firstboot.parse_marker(m.text()) == m


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
    assert order.index("tls") < order.index("openstack-secrets") and order[:2] == ["fence", "hostname"]
    text = render_unit(jobs["tls"])
    after = next(line for line in text.splitlines() if line.startswith("After="))
    before = next(line for line in text.splitlines() if line.startswith("Before="))
    assert after == "After=coa-hostname.service coa-fence.service"
    for unit in ("apache2.service", "nova-novncproxy.service", "coa-openstack-secrets.service", "coa-openstack-endpoints.service"):
        assert unit in before.split("=", 1)[1].split()
    # Per boot: its log stays in the journal; the fingerprint of a new certificate goes to the console
    # device itself, at the start of a line as the admin password's (tests/unit/test_tls.py).
    assert "StandardOutput=journal\n" in text and "StandardError" not in text


def test_unknown_job_is_named(settings: Settings) -> None:
    from provision.exceptions import ProvisionError

    with pytest.raises(ProvisionError, match="Unknown boot job"):
        run("nope", settings)
