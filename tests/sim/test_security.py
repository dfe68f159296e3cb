"""Secrets on a running instance of the AMI: never in a log line (but the one console line for the owner),
secret files readable by root (and one service group) only."""

from __future__ import annotations

from typing import Any

import pytest

from provision.ceph import cli
from provision.openstack.secrets import secrets_path
from tests.sim import inventory

pytestmark = pytest.mark.docker

DUMP = "/run/coa-test-logs.txt"
#: Where logs and the boot jobs' records live: /var/log, and the agent's logs in its state directory.
LOG_FILES = "{ find /var/log -type f; find /var/lib/ceph-openstack-ami -type f \\( -name '*.log' -o -name '*.jsonl' \\); }"


def count_in_logs(t: Any, secret: str) -> tuple[int, int]:
    """(lines of the journal, files under the log places) that contain ``secret`` (fed on stdin, never on a command line)."""
    journal = int(t.run(["sh", "-c", f"grep -cF -f - {DUMP} || true"], stdin=secret + "\n").stdout.strip() or 0)
    script = f"umask 077; p=$(mktemp); cat > \"$p\"; {LOG_FILES} | xargs -r grep -lIF -f \"$p\" 2>/dev/null; rm -f \"$p\"; true"
    files = t.run(["sh", "-c", script], stdin=secret + "\n").stdout.split()
    return journal, len(files)


def test_no_secret_is_in_any_log_and_the_admin_password_is_once_on_the_console(sim: Any) -> None:
    t = sim.target
    secret_items = inventory.secret_values(t, sim.settings)
    t.run(["sh", "-c", f"umask 077 && journalctl --no-pager -o cat > {DUMP}"])
    try:
        found = {name: count_in_logs(t, value) for name, value in secret_items.items() if len(value) >= 16}
    finally:
        t.run(["rm", "-f", DUMP])
    leaked = {name: n for name, n in found.items() if n != (0, 0)}
    assert leaked == {}, f"secrets in logs (journal lines, files): {leaked}"
    # The one deliberate line: on the console only (GetConsoleOutput), once, not in the journal.
    console = sim.console()
    assert console.count(secret_items["openstack admin_password"]) == 1
    assert console.count("ceph-openstack-ami: admin password for ") == 1


def test_secret_files_are_readable_by_root_and_one_service_group_only(sim: Any) -> None:
    t = sim.target
    p = cli.paths(sim.settings)
    files = [secrets_path(sim.settings), "/root/openrc", p.admin_keyring, p.keyring("mon."),
             *inventory.files(t, inventory.KEYRING_GLOBS).keys(), *inventory.files(t, inventory.TLS_KEY_GLOBS).keys(),
             *inventory.files(t, ("/etc/ssh/ssh_host_*_key",)).keys()]
    bad = []
    for path in sorted(set(files)):
        st = t.file_state(path)
        assert st is not None, path
        if st.mode & 0o007 or st.mode & 0o020:  # nothing for others, no group write
            bad.append(f"{path} {st.mode:o} {st.owner}:{st.group}")
    assert bad == [], bad
