"""SSH into the golden guest: Dropbear, its shared libraries, and the key from Nova's config drive.

The guest (:mod:`provision.image.guest`) carries Debian's ``dropbear-bin`` with the shared
libraries it needs (found by reading the ELF files' ``DT_NEEDED`` entries, :func:`elf_needed`,
closed over with :func:`library_closure`). Nothing secret is in the image: at every boot the
guest makes its own host key (``dropbearkey``, ed25519) and reads the server's public key from
the config drive Nova attaches (``openstack/latest/meta_data.json``, ``public_keys``;
the server is booted with a Nova key pair made from the EC2 instance's own key,
:mod:`provision.openstack.keypair`). Without a key, SSH logins stay off. Password logins are
off in any case (``dropbear -s``).

The config drive is an ISO 9660 image on an IDE CD-ROM (the ``pc`` machine type's default
bus for it): :data:`CONFIG_DRIVE_MODULES` are loaded with the NIC's.

Everything here is pure but :func:`dropbear_files`, which reads the unpacked packages on a
Target.
"""

from __future__ import annotations

import posixpath
import shlex
import struct
from typing import Callable, Iterable

from ..target import Target

#: The guest's user the owner logs in as (with the server's key pair only).
GUEST_USER = "root"
#: The SSH server's package; its ``Depends:`` are downloaded with it (their libraries unpacked, not installed).
SSH_PACKAGE = "dropbear-bin"
#: ``apt-cache depends`` options for the whole closure of ``Depends:`` (and nothing else).
DEPENDS_ONLY = ("--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                "--no-enhances", "--no-pre-depends")
#: The programs taken from it: (path in the package, path in the guest).
SSH_PROGRAMS = (("usr/sbin/dropbear", "/sbin/dropbear"), ("usr/bin/dropbearkey", "/bin/dropbearkey"))
#: Where the guest's libraries go (a directory the Debian dynamic loader searches by default).
GUEST_LIBDIR = "/lib/x86_64-linux-gnu"
#: The dynamic loader's path as the programs name it (``PT_INTERP``).
GUEST_INTERP = "/lib64/ld-linux-x86-64.so.2"
#: Where the loader itself goes (``GUEST_INTERP`` is a symbolic link to it, as on Debian).
GUEST_LOADER = f"{GUEST_LIBDIR}/{posixpath.basename(GUEST_INTERP)}"
#: Where libraries are in the unpacked packages.
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64")
#: The modules that make Nova's config drive readable: the IDE controller, the CD-ROM, ISO 9660.
CONFIG_DRIVE_MODULES = ("ata_piix", "sr_mod", "isofs")
KEYS_SCRIPT = "/etc/cephdemo-keys.sh"
HOST_KEY = "/etc/dropbear/dropbear_ed25519_host_key"
#: Console lines the guest prints (tests and people read them).
KEY_LINE_PREFIX = "cephdemo-guest: ssh key "
NO_KEY_LINE = "cephdemo-guest: no ssh key in the config drive: ssh logins are off"
HOST_KEY_LINE_PREFIX = "cephdemo-guest: ssh host key "
#: Seconds the guest waits for the config drive's CD-ROM to appear.
CONFIG_DRIVE_WAIT_S = 20

_PT_DYNAMIC, _PT_LOAD, _DT_NEEDED, _DT_STRTAB = 2, 1, 1, 5


def elf_needed(data: bytes) -> list[str]:
    """The ``DT_NEEDED`` sonames of a 64-bit little-endian ELF file, in order ([] for a static one).

    Raises:
        ValueError: not a 64-bit little-endian ELF file.
    """
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads: list[tuple[int, int, int]] = []
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == _PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == _PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []
    needed: list[int] = []
    strtab = None
    for off in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        if tag == _DT_NEEDED:
            needed.append(val)
        elif tag == _DT_STRTAB:
            strtab = val
    if strtab is None:
        raise ValueError("ELF dynamic section without a string table")
    base = next((off + strtab - vaddr for vaddr, off, size in loads if vaddr <= strtab < vaddr + size), None)
    if base is None:
        raise ValueError("ELF string table outside every loaded segment")
    return [data[base + n:data.index(b"\0", base + n)].decode() for n in needed]


def library_closure(programs: Iterable[str], needed: Callable[[str], list[str]], find: Callable[[str], str | None]) -> list[str]:
    """The files of every library ``programs`` need, directly or through other libraries, each once.

    ``needed(path)`` gives a file's sonames, ``find(soname)`` its file (None: not there).

    Raises:
        ValueError: a soname is nowhere to be found.
    """
    out: list[str] = []
    todo = list(programs)
    seen: set[str] = set()
    while todo:
        for soname in needed(todo.pop(0)):
            if soname in seen:
                continue
            seen.add(soname)
            path = find(soname)
            if path is None:
                raise ValueError(f"library {soname} is in none of the unpacked packages")
            out.append(path)
            todo.append(path)
    return out


def parse_depends(text: str) -> list[str]:
    """The package names of ``apt-cache depends`` output's ``Depends:`` lines (alternatives' first choice only), each once.

    With ``--recurse`` the output holds every package's lines: the whole closure.
    """
    out: list[str] = []
    alternative = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(("Depends:", "|Depends:")):
            name = s.split(":", 1)[1].strip()
            if not alternative and not name.startswith("<") and name not in out:
                out.append(name)
            alternative = s.startswith("|")
    return out


def render_keys_script(drive_wait_s: int = CONFIG_DRIVE_WAIT_S) -> str:
    """The guest's key reader: the config drive's public key into ``/root/.ssh/authorized_keys``.

    Arguments (for tests): the mount point (``/run/config-drive``) and the home (``/root``).

    It waits for a CD-ROM labelled ``config-2`` (Nova's config drive), mounts it read-only,
    takes the value of ``public_keys`` in ``openstack/latest/meta_data.json`` (one key: the
    server's key pair) and prints one console line either way.
    """
    return (
        "#!/bin/sh\n"
        "# cephdemo guest: the server's SSH public key from Nova's config drive (run at every boot).\n"
        'mnt="${1:-/run/config-drive}" home="${2:-/root}"\n'
        "dev=''\n"
        f"i=0; while [ -z \"$dev\" ] && [ $i -lt {drive_wait_s * 10} ]; do\n"
        "    for d in /dev/sr0 /dev/sr1; do [ -b \"$d\" ] && dev=$d && break; done\n"
        "    [ -n \"$dev\" ] || usleep 100000; i=$((i + 1))\n"
        "done\n"
        'mkdir -p "$mnt"\n'
        'mounted() { grep -q " $mnt " /proc/mounts; }\n'
        'if [ -n "$dev" ] && ! mounted; then mount -t iso9660 -o ro "$dev" "$mnt" || echo "cephdemo-guest: cannot mount $dev"; fi\n'
        'meta="$mnt/openstack/latest/meta_data.json"\n'
        # One line of JSON (Nova's json.dumps): the first key of the "public_keys" object; its
        # trailing JSON-escaped newline dropped.
        "key=$(sed -n 's/.*\"public_keys\": *{ *\"[^\"]*\": *\"\\([^\"]*\\)\".*/\\1/p' \"$meta\" 2>/dev/null | sed 's/\\\\n$//')\n"
        'if [ -n "$key" ]; then\n'
        "    umask 077\n"
        '    mkdir -p "$home/.ssh"\n'
        '    printf \'%s\\n\' "$key" > "$home/.ssh/authorized_keys"\n'
        f"    echo \"{KEY_LINE_PREFIX}$(echo \"$key\" | cut -d' ' -f1) from the config drive\"\n"
        "else\n"
        f"    echo {shlex.quote(NO_KEY_LINE)}\n"
        "fi\n"
        'mounted && umount "$mnt"\n'
        "exit 0\n"
    )


def render_ssh_start() -> str:
    """The /init lines (run in the background) that read the key, make this boot's host key and start Dropbear.

    Dropbear refuses passwords (``-s``) and port forwarding (``-j -k``); the host key is new at
    every boot (the guest's root is its initramfs) and its public half goes to the console.
    """
    key = HOST_KEY
    return (
        f"({KEYS_SCRIPT}; mkdir -p {posixpath.dirname(key)}; "
        f"dropbearkey -t ed25519 -f {key} >/dev/null 2>&1; "
        f"echo \"{HOST_KEY_LINE_PREFIX}$(dropbearkey -y -f {key} | grep '^ssh-')\"; "
        f"dropbear -r {key} -s -j -k -p 22 || echo 'cephdemo-guest: dropbear did not start') "
        "</dev/null >/dev/console 2>&1 &"
    )


def dropbear_files(target: Target, unpacked: str) -> list[tuple[str, str]]:
    """(file in ``unpacked``, path in the guest) for Dropbear's programs, the libraries they need and the loader
    (:data:`GUEST_LOADER`; the caller links :data:`GUEST_INTERP` to it).

    Raises:
        ValueError: a library is missing from the unpacked packages.
    """
    def find(soname: str) -> str | None:
        for d in LIB_DIRS:
            path = f"{unpacked}/{d}/{soname}"
            if target.exists(path):
                return path
        return None

    programs = [f"{unpacked}/{src}" for src, _ in SSH_PROGRAMS]
    libs = library_closure(programs, lambda p: elf_needed(target.read(p)), find)
    loader = find(posixpath.basename(GUEST_INTERP))
    if loader is None:
        raise ValueError(f"the dynamic loader {posixpath.basename(GUEST_INTERP)} is in none of the unpacked packages")
    files = [(f"{unpacked}/{src}", dst) for src, dst in SSH_PROGRAMS]
    files += [(lib, f"{GUEST_LIBDIR}/{posixpath.basename(lib)}") for lib in libs if lib != loader]
    files.append((loader, GUEST_LOADER))
    return files
