"""Provisioning OpenStack on a host: the ordered :func:`steps`, and what spans every service (the
packages, the files each service contributes, their schemas, starting the storage APIs).

The service modules hold their own renderers and steps; this module puts them in order.
Nothing is reinstalled at boot: the boot jobs (:mod:`provision.openstack.instance`) only
reconfigure, writing exactly the files :func:`config_files` lists, so a second provisioning
run, or a boot where nothing changed, changes nothing.

No secret ever appears on a command line (they go through stdin or files of mode 0600)
or in a log line, except the one console line that gives the owner the admin password.
"""

from __future__ import annotations

import posixpath

from .. import tls
from ..settings import Settings
from ..steps import FnStep, Step, apt_install, missing_packages, outcome
from ..systemd import ensure_running, restart_if_active, unit_enabled
from ..target import Target
from . import compute, dashboard, identity, image, network, proxy, volume
from .addresses import Addresses, provisioning_addresses
from .api import agent
from .compute import LIBVIRTD_SOCKET_DROPIN, compute_step, ensure_cell_templates, kvm_usable, libvirt_step, restart_libvirt_socket
from .dashboard import dashboard_step
from .identity import catalog_step, keystone_step
from .image import ensure_glance_dirs, guest_step
from .infra import DATABASES, SchemaCommands, broker_step, database_step, infra_files, manage, start_infrastructure, table_count
from .ini import FileSpec
from .network import network_step
from .profile import PROFILE_NAME, OpenStackProfile, profile
from .secrets import Secrets, ensure_secrets, require_secrets
from .uwsgi import uwsgi_files

POLICY_RC_D = "/usr/sbin/policy-rc.d"
POLICY_RC_D_TEXT = "#!/bin/sh\n# ceph-openstack-ami: no service starts during package installation.\nexit 101\n"
#: Every database's schema commands, from the services that own them.
SCHEMAS: SchemaCommands = {**identity.SCHEMAS, **image.SCHEMAS, **volume.SCHEMAS, **compute.SCHEMAS, **network.SCHEMAS}


def install_packages(target: Target, prof: OpenStackProfile) -> tuple[bool, str]:
    """Install the packages without recommends, no service started by maintainer scripts."""
    missing = missing_packages(target, prof.packages)
    if not missing:
        return False, f"{len(prof.packages)} packages installed"
    ours = not target.exists(POLICY_RC_D)
    if ours:
        target.put(POLICY_RC_D, POLICY_RC_D_TEXT, 0o755)
    try:
        apt_install(target, prof.packages, 1800)
    finally:
        if ours:
            target.run(["rm", "-f", POLICY_RC_D])
    return True, f"installed {len(missing)} missing of {len(prof.packages)} packages ({' '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})"


def service_files(settings: Settings, prof: OpenStackProfile) -> list[FileSpec]:
    """Files that tune the services (no secrets, no addresses): MariaDB, RabbitMQ, uWSGI, the agents, libvirt, the dashboard."""
    files = [*infra_files(settings, prof), *uwsgi_files(settings, prof)]
    if prof.agent_units:
        files += [
            *network.agent_files(settings, prof),
            *compute.hypervisor_files(prof),
            *network.guest_net_files(settings, prof),
            *dashboard.site_files(settings, prof),
            *proxy.proxy_files(settings, prof),
        ]
    return files


def config_files(settings: Settings, prof: OpenStackProfile, sec: Secrets, addrs: Addresses, kvm: bool = False) -> list[FileSpec]:
    """The files holding secrets or addresses: 0640 root:<service group>, openrc 0600 root.

    ``kvm``: the host has a usable /dev/kvm (``virt_type = auto`` picks kvm then).
    """
    return [
        *identity.keystone_files(settings, prof, sec),
        *image.glance_files(settings, prof, sec, addrs),
        *volume.cinder_files(settings, prof, sec, addrs),
        *compute.compute_files(settings, prof, sec, addrs, kvm),
        *network.neutron_files(settings, prof, sec, addrs),
        *dashboard.overrides_files(settings, prof, sec, addrs),
        *identity.openrc_files(settings, sec, addrs),
    ]


def write_files(target: Target, files: list[FileSpec]) -> list[FileSpec]:
    """Write ``files`` (unchanged content is left alone); return the ones that changed."""
    return [f for f in files if target.put(f.path, f.content, f.mode, f.owner, f.group)]


def units_of(files: list[FileSpec]) -> list[str]:
    """The units that read any of ``files`` (in first-seen order, no repeats)."""
    out: list[str] = []
    for f in files:
        out += [u for u in f.units if u not in out]
    return out


def write_configs(target: Target, settings: Settings, prof: OpenStackProfile, sec: Secrets, addrs: Addresses) -> list[FileSpec]:
    """Render and write every secret- or address-bearing file; return the ones that changed."""
    return write_files(target, config_files(settings, prof, sec, addrs, kvm_usable(target)))


def tune_services(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """uWSGI inis and /etc/default files, MariaDB and RabbitMQ drop-ins, state dirs; unneeded units off."""
    changed = write_files(target, service_files(settings, prof))
    did = [posixpath.basename(f.path) for f in changed]
    target.run(["install", "-d", "-m", "0700", posixpath.join(settings.state_dir, "openstack")])
    if target.put(posixpath.join(settings.state_dir, PROFILE_NAME), prof.name + "\n", 0o644):
        did.append(f"recorded profile {prof.name}")
    did += ensure_glance_dirs(target)
    enabled = [u for u in prof.unneeded_units if unit_enabled(target, u)]
    if enabled:
        target.run(["systemctl", "disable", "--quiet", "--now", *enabled], check=False)
        did.append("disabled " + " ".join(enabled))
    failed = [u for u in prof.unneeded_units if target.run(["systemctl", "is-failed", "--quiet", u], check=False).ok]
    if failed:  # one that failed before it was disabled (nvmf-autoconnect without the nvme-fabrics module) leaves systemd "degraded"
        target.run(["systemctl", "reset-failed", *failed], check=False)
        did.append("cleared the failed state of " + " ".join(failed))
    if any(f.path.startswith("/etc/systemd/system/") for f in changed):
        target.run(["systemctl", "daemon-reload"])
    if any(f.path == LIBVIRTD_SOCKET_DROPIN for f in changed):
        restart_libvirt_socket(target, prof)
    restarted = restart_if_active(target, units_of(changed))
    if restarted:
        did.append("restarted " + " ".join(restarted))
    return outcome(did, "service tuning in place")


def config_step(target: Target, settings: Settings, prof: OpenStackProfile, ip: str) -> tuple[bool, str]:
    """keystone.conf, glance-api.conf, cinder.conf and /root/openrc for this host's secrets and addresses."""
    addrs = provisioning_addresses(target, settings, ip)
    changed = write_configs(target, settings, prof, require_secrets(target, settings), addrs)
    restarted = restart_if_active(target, units_of(changed))
    if not changed:
        return False, f"configuration current (public {addrs.public_host}, private {addrs.private_ip})"
    detail = "wrote " + ", ".join(f.path for f in changed)
    return True, detail + (f"; restarted {' '.join(restarted)}" if restarted else "")


def db_sync_step(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """Create the schemas of empty databases (as each service's user); Nova's cells mapped by template."""
    did = []
    for db, _, _ in DATABASES:
        if SCHEMAS[db] and table_count(target, db) == 0:
            for user, argv in SCHEMAS[db]:
                manage(target, user, argv, 900)
            did.append(f"{db} schema created")
    cells = ensure_cell_templates(target)
    if cells:
        restart_if_active(target, list(prof.nova_units))  # they cache the mappings
    did += cells
    return outcome(did, "schemas of " + ", ".join(db for db, _, _ in DATABASES) + " exist")


def services_step(target: Target, settings: Settings, prof: OpenStackProfile) -> tuple[bool, str]:
    """Glance, Cinder and libvirt enabled and running; the APIs answer (Nova, Neutron: :func:`compute_step`)."""
    did = ensure_running(target, [prof.libvirt_unit, prof.glance_unit, *prof.cinder_units])
    agent(target, "wait-apis")
    return outcome(did, "glance, cinder and libvirt running; APIs answer")


def steps(settings: Settings, profile_name: str, ip: str) -> list[Step]:
    """The provisioning steps, after the Ceph steps, for the instance at ``ip`` (its private IPv4)."""
    prof = profile(profile_name)
    return [
        FnStep("openstack.packages", lambda t, s: install_packages(t, prof)),
        # Apache serves TLS only: the certificate exists before anything starts it.
        FnStep("tls.certificate", tls.provision_step),
        FnStep("openstack.tuning", lambda t, s: tune_services(t, s, prof)),
        FnStep("openstack.infrastructure", lambda t, s: start_infrastructure(t, s, prof)),
        FnStep("openstack.secrets", ensure_secrets),
        FnStep("openstack.database", database_step),
        FnStep("openstack.broker", lambda t, s: broker_step(t, s, prof)),
        FnStep("openstack.config", lambda t, s: config_step(t, s, prof, ip)),
        FnStep("openstack.db-sync", lambda t, s: db_sync_step(t, s, prof)),
        FnStep("openstack.keystone", lambda t, s: keystone_step(t, s, prof)),
        FnStep("openstack.catalog", lambda t, s: catalog_step(t, s, ip)),
        FnStep("openstack.libvirt-secret", libvirt_step),
        FnStep("openstack.services", lambda t, s: services_step(t, s, prof)),
        FnStep("openstack.guest-image", guest_step),
        FnStep("openstack.compute", lambda t, s: compute_step(t, s, prof)),
        FnStep("openstack.network", network_step),
        FnStep("openstack.dashboard", lambda t, s: dashboard_step(t, s, prof, ip)),
    ]
