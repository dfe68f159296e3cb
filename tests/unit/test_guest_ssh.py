"""SSH into the golden guest: ELF dependencies, the package closure, the key reader run by a real shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from provision.image import guest, guest_ssh

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7b6YRX+oFdjQRIhVwcMPhhHnE6nFOmDQA++MO9cb0I owner@laptop"


def test_elf_needed_reads_the_sonames_the_dynamic_loader_resolves() -> None:
    exe = os.path.realpath(sys.executable)
    with open(exe, "rb") as f:
        needed = guest_ssh.elf_needed(f.read())
    ldd = subprocess.run(["ldd", exe], capture_output=True, text=True, check=True).stdout
    resolved = {line.split()[0] for line in ldd.splitlines() if "=>" in line}
    assert "libc.so.6" in needed
    assert set(needed) <= resolved, (needed, resolved)


def test_elf_needed_refuses_what_is_not_elf() -> None:
    with pytest.raises(ValueError):
        guest_ssh.elf_needed(b"#!/bin/sh\n" + bytes(64))


def test_library_closure_follows_libraries_of_libraries_once() -> None:
    graph = {"/x/dropbear": ["libtomcrypt.so.1", "libc.so.6"], "/x/lib/libtomcrypt.so.1": ["libgmp.so.10", "libc.so.6"],
             "/x/lib/libgmp.so.10": ["libc.so.6"], "/x/lib/libc.so.6": []}

    def find(soname: str) -> str | None:
        return f"/x/lib/{soname}"

    assert guest_ssh.library_closure(["/x/dropbear"], lambda p: graph[p], find) == [
        "/x/lib/libtomcrypt.so.1", "/x/lib/libc.so.6", "/x/lib/libgmp.so.10"]
    with pytest.raises(ValueError, match="libgmp"):
        guest_ssh.library_closure(["/x/dropbear"], lambda p: graph[p], lambda s: None if "gmp" in s else find(s))


def test_parse_depends_takes_every_package_of_a_recursive_listing_once() -> None:
    text = ("dropbear-bin\n  Depends: libc6\n  Depends: libtomcrypt1\n |Depends: zlib1g\n  Depends: zlib-ng\n"
            "libtomcrypt1\n  Depends: libc6\n  Depends: libgmp10\n  Depends: <virtual-thing>\nlibgmp10\n  Depends: libc6\n")
    assert guest_ssh.parse_depends(text) == ["libc6", "libtomcrypt1", "zlib1g", "libgmp10"]


def _config_drive(tmp_path: object, meta: dict[str, object]) -> str:
    mnt = os.path.join(str(tmp_path), "mnt")
    os.makedirs(os.path.join(mnt, "openstack", "latest"))
    with open(os.path.join(mnt, "openstack", "latest", "meta_data.json"), "w") as f:
        json.dump(meta, f)  # as Nova writes it: one line of json.dumps
    return mnt


def _run_keys_script(tmp_path: object, mnt: str) -> tuple[str, str]:
    script = os.path.join(str(tmp_path), "keys.sh")
    with open(script, "w") as f:
        f.write(guest_ssh.render_keys_script(drive_wait_s=0))
    home = os.path.join(str(tmp_path), "home")
    out = subprocess.run(["sh", script, mnt, home], capture_output=True, text=True, check=True, timeout=30).stdout
    return out, home


def test_keys_script_writes_the_config_drives_key_as_the_only_authorized_key(tmp_path: object) -> None:
    mnt = _config_drive(tmp_path, {"uuid": "u", "public_keys": {"cephdemo-key": KEY + "\n"}, "hostname": "cephdemo-server",
                                   "keys": [{"name": "cephdemo-key", "type": "ssh", "data": KEY + "\n"}]})
    out, home = _run_keys_script(tmp_path, mnt)
    path = os.path.join(home, ".ssh", "authorized_keys")
    with open(path) as f:
        assert f.read() == KEY + "\n"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    assert out.strip() == guest_ssh.KEY_LINE_PREFIX + "ssh-ed25519 from the config drive"


def test_keys_script_without_a_key_leaves_logins_off(tmp_path: object) -> None:
    mnt = _config_drive(tmp_path, {"uuid": "u", "hostname": "cephdemo-server", "public_keys": {}})
    out, home = _run_keys_script(tmp_path, mnt)
    assert out.strip() == guest_ssh.NO_KEY_LINE
    assert not os.path.exists(os.path.join(home, ".ssh", "authorized_keys"))


def test_init_starts_ssh_in_the_background_before_handing_over_and_refuses_passwords() -> None:
    lines = guest.render_init(modules=["virtio_net"]).splitlines()
    start = next(i for i, line in enumerate(lines) if "dropbear -r" in line)
    assert start < lines.index("exec /sbin/init")
    assert lines[start].rstrip().endswith("&")  # never delays the getty
    assert " -s " in lines[start] and guest_ssh.KEYS_SCRIPT in lines[start]
    assert any("devpts" in line for line in lines[:start])  # a pty for the login shell
    assert guest.render_nsswitch().startswith("passwd: files")
