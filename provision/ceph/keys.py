"""Each instance its own cephx keys: the per-instance rotation, done before the daemons that use them start.

Two boot jobs, once per new instance (see :mod:`provision.boot.firstboot`), both before the fence
comes down (:mod:`provision.boot.fence`):

* :func:`rotate_mon_key` — BEFORE the monitor starts: ``mon.``'s key lives only in the monitor's
  data dir (``ceph auth get mon.`` reads it from there) and authenticates anyone who holds it with
  ``allow *``, so it is rewritten in the keyring file (caps kept: ``ceph-authtool --gen-key`` would
  drop them and lock every ``mon.`` login out). The monitor then starts with it; nothing restarts.
* :func:`rotate_keys` — AFTER the monitor answers and BEFORE the manager and the OSDs start: a new
  key for every OSD, ``mgr.x``, each client and ``client.admin`` (last), imported into the cluster
  (caps unchanged) and written into its keyring file (mode and owner kept); the daemons then start
  with their new keys, so none has to be restarted. Entities the cluster does not need are
  removed: the ``client.bootstrap-*`` keys (provisioning removes them at build, this job removes
  any an older image still holds).

Run by hand on a running cluster, the restarts of what runs are queued (``--no-block``), never awaited.

A run killed half-way is finished by the next run: each new key is written to a pending keyring
under ``<state_dir>/ceph-rotate/`` before it is imported, re-imported first the next time, and
``client.admin``'s pending key authenticates when the installed one was already replaced.
"""

from __future__ import annotations

import json
import re
import time

from ..exceptions import CephNotHealthy, ProvisionError
from ..settings import Settings
from ..steps import Log, StepResult
from ..systemd import wait_for
from ..target import Target
from .auth import clients, gen_key, replace_key
from .boot import record
from .cli import ceph, paths
from .health import mon_answers

#: Entities the monitor makes at a cluster's creation for tools this project does not use
#: (ceph-volume, cephadm, rgw, rbd-mirror, mds); each can make new users (``profile bootstrap-*``).
BOOTSTRAP_PREFIX = "client.bootstrap-"
MON_WAIT_S = 180


def _rotation_plan(settings: Settings) -> list[tuple[str, str, str | None]]:
    """(entity, keyring path, unit that uses it) in rotation order: OSDs, manager, clients, client.admin last."""
    p = paths(settings)
    c = settings.ceph
    plan: list[tuple[str, str, str | None]] = [(f"osd.{i}", p.keyring(f"osd.{i}"), f"ceph-osd@{i}") for i in range(c.osd_count)]
    plan.append((f"mgr.{c.mgr_id}", p.keyring(f"mgr.{c.mgr_id}"), f"ceph-mgr@{c.mgr_id}"))
    plan += [(cl.entity, p.keyring(cl.entity), None) for cl in clients(settings)]
    plan.append(("client.admin", p.admin_keyring, None))
    return plan


def _admin_keyring(target: Target, settings: Settings, pending_admin: str) -> str:
    """The keyring that authenticates client.admin now: the installed one, or a pending one left by a crash."""
    for keyring in (paths(settings).admin_keyring, pending_admin):
        if target.exists(keyring):
            r = ceph(target, settings, "auth", "get-key", "client.admin", check=False, keyring=keyring)
            if r.ok:
                return keyring
    raise ProvisionError(
        "No keyring authenticates client.admin (neither the installed one nor a pending rotation's)",
        hint=f"check that the monitor runs (`systemctl status ceph-mon@{settings.ceph.mon_id}`)",
    )


def rotate_mon_key(target: Target, settings: Settings, log: Log = print) -> StepResult:
    """A new key for ``mon.`` in the monitor's keyring (caps kept).

    At boot the monitor has not started yet (this job is ordered before it). A monitor that runs
    (a by-hand run, the builder at the end of provisioning) is stopped for the change and its start
    is only queued: from inside a unit ordered before it, a blocking start would wait for itself.
    """
    start = time.monotonic()
    c = settings.ceph
    path = paths(settings).keyring("mon.")
    unit = f"ceph-mon@{c.mon_id}"
    st = target.file_state(path)
    if st is None:
        raise ProvisionError(f"The monitor has no keyring at {path}", hint="provision the host first (invoke provision.host)")
    new_text = replace_key(target.read(path).decode(), gen_key(target))
    running = target.service_active(unit)
    if running:
        log(f"mon.: stopping {unit} to replace its key")
        target.run(["systemctl", "stop", unit])
    try:
        target.put(path, new_text, st.mode, st.owner, st.group)
    finally:
        if running:
            target.run(["systemctl", "start", "--no-block", unit])
    result = StepResult("ceph.rotate-mon-key", True, "new key for mon." + (" (monitor restart queued)" if running else ""),
                        time.monotonic() - start)
    record(target, settings, "rotate-mon-key", result, log)
    return result


def remove_bootstrap_keys(target: Target, settings: Settings, keyring: str | None = None) -> list[str]:
    """Delete every ``client.bootstrap-*`` entity; return the ones deleted ("already absent" is none)."""
    listed = ceph(target, settings, "auth", "ls", "-f", "json", keyring=keyring).stdout
    entities = [e.get("entity", "") for e in json.loads(listed or "{}").get("auth_dump", [])]
    gone = [e for e in entities if e.startswith(BOOTSTRAP_PREFIX)]
    for entity in gone:
        ceph(target, settings, "auth", "del", entity, keyring=keyring)
    return gone


def _rotate_one(target: Target, settings: Settings, entity: str, path: str, unit: str | None, admin: str, rot: str, log: Log) -> bool:
    """Give one entity its new key (pending file, import, keyring file, restart if it runs); False if it is not there."""
    if not target.exists(path):
        log(f"{entity}: no keyring at {path}; skipped")
        return False
    pending = f"{rot}/{entity}.keyring"
    if not target.exists(pending):
        cur = ceph(target, settings, "auth", "get", entity, keyring=admin, check=False)
        if not cur.ok:
            log(f"{entity}: not in the cluster; skipped")
            return False
        target.put(pending, replace_key(cur.stdout, gen_key(target)), 0o600)
    new_key = _key_of(target.read(pending).decode())
    ceph(target, settings, "auth", "import", "-i", pending, keyring=admin)
    st = target.file_state(path)
    assert st is not None
    target.put(path, replace_key(target.read(path).decode(), new_key), st.mode, st.owner, st.group)
    if unit and target.service_active(unit):
        # queued, not awaited: this job is ordered before the daemons, a blocking restart would wait for itself
        log(f"{entity}: queueing a restart of {unit}, which ran with the old key")
        target.run(["systemctl", "restart", "--no-block", unit])
    elif unit:
        # a daemon that failed to start before must not be stuck in its start limit
        target.run(["systemctl", "reset-failed", unit], check=False)
    target.run(["rm", "-f", pending])
    return True


def rotate_keys(target: Target, settings: Settings, log: Log = print) -> StepResult:
    """New keys for the OSDs, ``mgr.x``, the clients and ``client.admin``; the bootstrap keys removed."""
    start = time.monotonic()
    rot = f"{settings.state_dir}/ceph-rotate"
    target.run(["install", "-d", "-m", "0700", rot])
    pending_admin = f"{rot}/client.admin.keyring"
    wait_for("the monitor to answer", lambda: mon_answers(target, settings), MON_WAIT_S, error=CephNotHealthy)
    admin = _admin_keyring(target, settings, pending_admin)
    done = []
    for entity, path, unit in _rotation_plan(settings):
        if _rotate_one(target, settings, entity, path, unit, admin, rot, log):
            done.append(entity)
            if entity == "client.admin":
                admin = path
    removed = remove_bootstrap_keys(target, settings, keyring=admin)
    detail = f"new keys for {', '.join(done) or 'nothing'}" + (f"; removed {', '.join(removed)}" if removed else "")
    result = StepResult("ceph.rotate-keys", bool(done or removed), detail, time.monotonic() - start)
    record(target, settings, "rotate-keys", result, log)
    return result


def _key_of(keyring_text: str) -> str:
    m = re.search(r"(?m)^[ \t]*key[ \t]*=[ \t]*(\S+)[ \t]*$", keyring_text)
    if not m:
        raise ProvisionError("A pending keyring has no key line")
    return m.group(1)


