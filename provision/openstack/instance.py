"""The OpenStack boot jobs of an instance: the per-instance rotation of every secret
(:func:`rotate_secrets`) and the per-boot reconcile of configuration, catalog and libvirt
secret with the instance's addresses (:func:`reconcile`).

They run on the instance under the distribution's ``/usr/bin/python3`` (standard library
only), as systemd units of the boot agent (see :func:`provision.boot.jobs`); each service
module supplies its part.
"""

from __future__ import annotations

import dataclasses
import posixpath
import time
from typing import Any

from .. import tls
from ..console import to_console
from ..settings import Settings
from ..steps import Log, StepResult
from ..systemd import restart_if_active
from ..target import Target
from . import infra
from .addresses import Addresses
from .api import say
from .compute import ensure_libvirt_secret
from .dashboard import console_line
from .identity import KEYSTONE_RECORD, OPENRC_PATH, admin_cloud, ensure_keystone_resources, keystone_bootstrap, keystone_digest, renew_keys
from .profile import host_profile
from .provisioning import units_of, write_configs
from .secrets import Secrets, load_secrets, pending_path, pending_secrets, require_secrets, save_secrets


def rotate_secrets(target: Target, settings: Settings, info: Any, log: Log = say) -> StepResult:
    """Give this instance its own secrets; nothing of the image's (the builder's) stays valid.

    Works from an image whose scrub removed the builder's secrets (``secrets.json``, openrc,
    Fernet and credential keys, libvirt secret values): it needs none of them, only root on
    MariaDB's socket, the broker's cookie file and the cephx keyring of client.volumes.

    Unit ordering: once per new instance-id, ``After=coa-ceph-keys.service mariadb.service
    rabbitmq-server.service``, ``Before=`` Keystone, Glance and Cinder (so they start with the new
    secrets; when run by hand while they run, they are restarted).

    A run that dies half-way left the new secrets in a pending file (root, 0600); the next
    run installs the same ones, so every service converges on one set. The admin password
    is printed once, on the console, when everything is in place, with the SHA-256 fingerprint
    of the TLS certificate (made before this job by ``coa-tls``) that the dashboard serves.
    """
    start = time.monotonic()
    prof = host_profile(target, settings)
    addrs = Addresses.from_info(info)
    # The image's scrub may have removed the builder's secrets file: nothing here needs it.
    old = load_secrets(target, settings)
    new = pending_secrets(target, settings, log)
    done: list[str] = []
    done += infra.rotate(target, settings, new, prof.broker_unit, log)
    done += renew_keys(target)
    changed = write_configs(target, settings, prof, new, addrs)
    done.append("wrote " + ", ".join(posixpath.basename(f.path) for f in changed))
    keystone_bootstrap(target, settings, new.admin_password)
    done.append("admin password")
    done += ensure_libvirt_secret(target, settings, new)
    save_secrets(target, settings, new)
    target.run(["rm", "-f", pending_path(settings)])
    restarted = restart_if_active(target, list(prof.service_units), log, queue=True)
    if restarted:
        done.append("restarted " + " ".join(restarted))
    renewed = new.differing(old) if old else [f.name for f in dataclasses.fields(Secrets)]
    log(f"renewed {len(renewed)} secrets: {', '.join(renewed)}")
    # The one line that shows a secret: the console log (get-console-output) is how the owner learns it.
    line = console_line(settings, addrs, new.admin_password, tls.served_fingerprint(target, settings))
    to_console(line, f"the admin password of this instance is in {OPENRC_PATH} (root only)", log)
    return StepResult("openstack.secrets", True, "; ".join(done), time.monotonic() - start)


def rotate_broker(target: Target, settings: Settings, log: Log = say, installed: bool = False) -> StepResult:
    """The broker's part of a new instance's secrets, before the broker starts: its Erlang cookie
    and its user's password (definitions it imports at start), so it starts once, with them.

    Unit ordering: once per new instance-id, ``Before=rabbitmq-server.service``; the secrets it
    takes from the pending file are the ones ``coa-openstack-secrets`` installs everywhere else.
    ``installed``: that job already ran for this instance, so its secrets are the ones to give.
    A broker found running (started by hand) is restarted without waiting: it starts after this job.
    """
    start = time.monotonic()
    prof = host_profile(target, settings)
    sec = require_secrets(target, settings) if installed else pending_secrets(target, settings, log)
    done = infra.ensure_broker_files(target, sec, prof.broker_unit, log, queued=True)
    return StepResult("openstack.broker", bool(done), "; ".join(done) or "the broker's files already hold this instance's secrets",
                      time.monotonic() - start)


def reconcile(target: Target, settings: Settings, info: Any, log: Log = say) -> StepResult:
    """Configuration, catalog, service users and libvirt secret for this boot's addresses; no-op when current.

    Keystone's part is checked against a record (the SHA-256 of what it was last given, root
    only): when the addresses and secrets are those of the last reconcile, Keystone is not asked
    and the services do not wait for its first answer. A catalog changed by hand is put back by
    the next boot whose addresses or secrets differ, or by provisioning (``openstack.catalog``).

    Unit ordering: every boot, ``After=keystone.service coa-openstack-secrets.service``,
    ``Before=`` Glance and Cinder (their configuration is rewritten before they start).
    """
    start = time.monotonic()
    prof = host_profile(target, settings)
    addrs = Addresses.from_info(info)
    sec = require_secrets(target, settings)
    did: list[str] = []
    changed = write_configs(target, settings, prof, sec, addrs)
    if changed:
        did.append("rewrote " + ", ".join(f.path for f in changed))
        restarted = restart_if_active(target, units_of(changed), log, queue=True)
        if restarted:
            did.append("restarted " + " ".join(restarted))
    # Keystone is asked only when what it must hold changed since the last reconcile recorded it
    # (a new instance, new addresses or secrets): a boot that changes nothing does not wait for it.
    record, digest = posixpath.join(settings.state_dir, KEYSTONE_RECORD), keystone_digest(settings, sec, addrs)
    if not target.holds(record, digest, 0o600):
        cloud, reset = admin_cloud(target, settings, sec, log)
        did += reset
        did += ensure_keystone_resources(cloud, settings, sec, addrs)
        target.put(record, digest, 0o600)
    did += ensure_libvirt_secret(target, settings, sec)
    where = f"public {addrs.public_host}, private {addrs.private_ip}"
    if did:
        for d in did:
            log(f"changed: {d}")
        return StepResult("openstack.endpoints", True, f"{where}: " + "; ".join(did), time.monotonic() - start)
    log(f"unchanged: configuration follows {where}; Keystone's catalog and service users were made for it (recorded in {record})")
    return StepResult("openstack.endpoints", False, f"unchanged ({where})", time.monotonic() - start)
