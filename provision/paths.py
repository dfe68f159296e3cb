"""On-instance paths and unit names shared by provisioning, the boot agent and readiness.

This module imports nothing of ours, so every floor of the package can use it.
"""

from __future__ import annotations

#: Where the boot agent's code lives on the instance (its ``PYTHONPATH``).
AGENT_DIR = "/usr/lib/ceph-openstack-ami"
#: Our configuration on the instance.
CONFIG_DIR = "/etc/ceph-openstack-ami"
#: The settings provisioning wrote, read by the boot agent.
SETTINGS_PATH = f"{CONFIG_DIR}/settings.json"
#: Where our systemd units are installed.
UNIT_DIR = "/etc/systemd/system"
#: The interpreter the boot agent runs under (the distribution's, standard library only).
AGENT_PYTHON = "/usr/bin/python3"

#: Last metadata a boot job read, under the settings' ``state_dir``.
LAST_METADATA_NAME = "last-metadata.json"
#: Under ``run_dir`` (per boot): the metadata service did not answer a job's whole bound at this boot.
METADATA_DOWN_NAME = "metadata-down"
#: The demo server this instance booted (id, guest address, key pair), under ``state_dir``: how to reach it.
DEMO_SERVER_NAME = "demo-server.json"
#: The boot jobs' outcomes (one JSON line per run), under ``state_dir``.
BOOT_LOG_NAME = "boot-log.jsonl"

#: Placement, the Nova control plane and console proxy, the Neutron server; also the order
#: of the boot jobs' units.
COMPUTE_API_UNITS = (
    "placement-api.service",
    "nova-api.service",
    "nova-conductor.service",
    "nova-scheduler.service",
    "nova-novncproxy.service",
    "neutron-api.service",
    "neutron-rpc-server.service",
)
#: nova-compute and Neutron's agents (after the guests' bridge).
AGENT_UNITS = ("nova-compute.service", "neutron-linuxbridge-agent.service", "neutron-dhcp-agent.service")
#: Ours, but not a boot job (the agent removes unknown coa-* units): the guests' network link.
GUEST_NET_UNIT = "ceph-openstack-ami-guest-net.service"
#: The OpenStack units the OpenStack boot jobs are ordered against (Debian's and Ubuntu's names:
#: ordering against a unit that is not installed is ignored).
OPENSTACK_UNITS = (
    "keystone.service",
    "apache2.service",
    "glance-api.service",
    "cinder-api.service",
    "cinder-scheduler.service",
    "cinder-volume.service",
    *COMPUTE_API_UNITS,
)
#: Units the demo server needs beyond the APIs (the hypervisor side and the guests' network).
COMPUTE_UNITS = ("libvirtd.service", *AGENT_UNITS, GUEST_NET_UNIT)


def agent_argv(*args: str) -> list[str]:
    """argv that runs the installed agent's python modules on the instance (``python3 -m ARGS``)."""
    return ["env", f"PYTHONPATH={AGENT_DIR}", "python3", "-m", *args]


def ceph_units(mon_id: str, mgr_id: str, osd_count: int) -> tuple[str, ...]:
    """The Ceph daemons' units: the monitor, the manager, each OSD."""
    return (
        f"ceph-mon@{mon_id}.service",
        f"ceph-mgr@{mgr_id}.service",
        *(f"ceph-osd@{i}.service" for i in range(osd_count)),
    )
