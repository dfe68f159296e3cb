"""What the audit may let through, and why: files it can show to be public or not secret-bearing.

Each justification is checked on the target (one command each, paths on stdin, only paths
and package names printed) and every file let through is listed in the report's
``allowed`` with its reason; nothing is dropped silently.

* **Shipped unmodified by a Debian package** (:func:`packaged_command`): the file's md5sum
  is the one in ``/var/lib/dpkg/info/PKG.md5sums``, or for a conffile the one dpkg keeps
  in ``/var/lib/dpkg/status``. Such a file is published in the distribution's archive,
  the same on every machine that installs the package (test fixtures of Python
  libraries, example keys in documentation, large binaries): not this image's secret.
* **The same bytes as such a file, elsewhere** (``copy``): e.g. the dashboard's collected
  static files. Not for private keys and cephx keys: a published key put to use is as bad
  as a leaked one.
* **Compiled from such a file** (:func:`special_command`, ``pyc``): a ``__pycache__/M.*.pyc``
  whose source ``M.py`` is shipped unmodified and whose header records that source's size.
* **A BlueStore device** (``bluestore``): an OSD's ``block`` file that starts with
  BlueStore's label. It holds the cluster's objects (here the golden guest disk, built
  from distribution packages, and volumes cloned from it); every cephx key is in the
  monitor's store and the keyrings, which are audited.
* **A snap package** (``snap``): a squashfs file under ``/var/lib/snapd`` (magic checked): the
  image of a snap mounted under ``/snap`` (skipped, and listed, by the scan), as published.
* **udev's hardware database** (``hwdb``): ``hwdb.bin`` with its magic, compiled from packaged files.
* **Not compressed after all** (``plain``): a file named like an archive whose first bytes are
  no compression format's magic (dpkg's alternatives named ``x.1.gz``): read as it is.
* **A package's maintainer scripts** (``dpkg-control``): ``/var/lib/dpkg/info/PKG.*`` of a
  package dpkg lists as installed (dpkg keeps them as shipped in the ``.deb``).
* **An initramfs made on this disk** (``initramfs``): ``/boot/initrd.img-V`` whose sha1 is
  the one ``update-initramfs`` recorded in ``/var/lib/initramfs-tools/V``; it is made
  from packaged files and ``/etc``, which are audited.
"""

from __future__ import annotations

import posixpath

from ..target import command_line

#: Reasons, by the tag :func:`special_command` prints (``pyc`` is checked with its source).
SPECIAL_REASONS = {
    "bluestore": "a BlueStore device (label checked): the cluster's objects, here the golden guest disk",
    "initramfs": "initramfs made by update-initramfs on this disk (sha1 as recorded): built from audited files",
    "hwdb": "udev's hardware database (magic checked), compiled from packaged hwdb.d files",
    "snap": "a snap package (squashfs, magic checked): as published in the Snap Store, verified by snapd",
    "plain": "not compressed after all (magic checked): read as it is by the content scan",
    "dpkg-control": "maintainer script or control file of an installed package (dpkg keeps them as shipped)",
}
#: Tags that justify only a file too large to read, and the one that justifies only an archive.
LARGE_ONLY = frozenset({"bluestore", "initramfs", "hwdb", "snap"})
ARCHIVE_ONLY = frozenset({"plain"})

_AWK_MD5SUMS = '{ print FILENAME ":" $0 }'
_AWK_CONFFILES = (
    '/^Package: / { p = $2 } /^Conffiles:/ { c = 1; next } /^[^ ]/ { c = 0 }'
    ' c && NF >= 2 { print "var/lib/dpkg/info/" p ".conffiles:" $2 "  " substr($1, 2) }'
)
#: Joins the candidates' md5sums (before ``@@ref``) with dpkg's lists (after): prints
#: ``REFERENCE-LINE\tCANDIDATE\tsame|copy`` (``same``: at the packaged path, also through
#: merged-/usr's ``/bin -> /usr/bin`` links; ``copy``: the same bytes elsewhere).
_AWK_JOIN = (
    'r == 0 && $0 == "@@ref" { r = 1; next }'
    ' r == 0 { if (substr($0, 33, 2) != "  ") next; m = substr($0, 1, 32); p = substr($0, 35); same[m "  " p] = p;'
    ' if (p ~ "^usr/(bin|sbin|lib[^/]*)/") same[m "  " substr(p, 5)] = p; copy[m] = copy[m] SUBSEP p; next }'
    ' { i = index($0, ".md5sums:"); k = 9; if (!i) { i = index($0, ".conffiles:"); k = 11 } if (!i) next;'
    ' key = substr($0, i + k); if (key in same) print $0 "\\t" same[key] "\\tsame";'
    ' m = substr(key, 1, 32); if (m in copy) { n = split(substr(copy[m], 2), c, SUBSEP); for (j = 1; j <= n; j++) print $0 "\\t" c[j] "\\tcopy" } }'
)


def packaged_command(root: str = "/") -> str:
    """The command that checks files (relative paths, NUL-separated on stdin) against dpkg's md5sums.

    Prints the matching reference lines (``var/lib/dpkg/info/PKG.md5sums:MD5  PATH``, or
    ``PKG.conffiles:`` for a conffile whose md5 is the one in dpkg's status), each followed
    by ``\\tCANDIDATE\\tsame`` or ``\\tcopy``; see :func:`parse_packaged` and :func:`parse_copies`.
    """
    return "; ".join(
        [
            command_line("cd %s || exit 1", root if root.rstrip("/") else "/"),
            "{ xargs -0 -r md5sum -- 2>/dev/null; echo @@ref; "
            + command_line(["awk", _AWK_MD5SUMS]) + " var/lib/dpkg/info/*.md5sums 2>/dev/null; "
            + command_line(["awk", _AWK_CONFFILES]) + " var/lib/dpkg/status 2>/dev/null; } | "
            + command_line(["awk", _AWK_JOIN]),
            "true",
        ]
    )


def _references(stdout: str) -> list[tuple[str, str, str, str]]:
    """``(package, reference path, candidate, how)`` of each line of :func:`packaged_command`."""
    out = []
    for line in stdout.splitlines():
        ref, _, rest = line.partition("\t")
        candidate, _, how = rest.partition("\t")
        for marker in (".md5sums:", ".conffiles:"):
            source, sep, entry = ref.partition(marker)
            if sep and "  " in entry:
                path = "/" + entry.split("  ", 1)[1]
                out.append((posixpath.basename(source).split(":")[0], path, "/" + candidate if candidate else path, how or "same"))
                break
    return out


def parse_packaged(stdout: str) -> dict[str, str]:
    """Files at a path a package ships, with its bytes: ``{"/path": "package"}`` (pure)."""
    return {cand: pkg for pkg, _, cand, how in _references(stdout) if how == "same"}


def parse_copies(stdout: str) -> dict[str, tuple[str, str]]:
    """Files with the bytes of a packaged file elsewhere: ``{"/path": ("package", "/packaged/path")}`` (pure)."""
    return {cand: (pkg, ref) for pkg, ref, cand, how in _references(stdout) if how == "copy"}


_SPECIAL = r"""for f; do case "$f" in
  var/lib/ceph/osd/*/block)
    [ "$(head -c 22 -- "$f" 2>/dev/null)" = "bluestore block device" ] && printf 'bluestore\t%s\0' "$f";;
  boot/initrd.img-*)
    v=${f#boot/initrd.img-}; s=$(sha1sum < "$f" 2>/dev/null | cut -d' ' -f1)
    r=$(cut -d' ' -f1 "var/lib/initramfs-tools/$v" 2>/dev/null)
    [ -n "$s" ] && [ "$s" = "$r" ] && printf 'initramfs\t%s\0' "$f";;
  usr/lib/udev/hwdb.bin|lib/udev/hwdb.bin|etc/udev/hwdb.bin)
    [ "$(head -c 8 -- "$f" 2>/dev/null)" = "KSLPHHRH" ] && printf 'hwdb\t%s\0' "$f";;
  var/lib/snapd/snaps/*.snap|var/lib/snapd/seed/snaps/*.snap|var/lib/snapd/cache/*)
    [ "$(head -c 4 -- "$f" 2>/dev/null)" = "hsqs" ] && printf 'snap\t%s\0' "$f";;
  var/lib/dpkg/info/*.*)
    b=${f##*/}; p=${b%.*}; p=${p%%:*}
    st=$(awk -v p="$p" '$0 == "Package: " p { f = 1; next } f && /^Status:/ { print $2, $3, $4; exit } /^$/ { f = 0 }' var/lib/dpkg/status 2>/dev/null)
    [ "$st" = "install ok installed" ] && printf 'dpkg-control\t%s\0' "$f";;
  */__pycache__/*.pyc)
    d=${f%/__pycache__/*}; b=${f##*/}; src="$d/${b%%.*}.py"
    h=$(od -An -tu4 -j12 -N4 -- "$f" 2>/dev/null | tr -d ' '); n=$(stat -c %s -- "$src" 2>/dev/null)
    [ -n "$h" ] && [ "$h" = "$n" ] && printf 'pyc\t%s\0' "$f";;
esac
case "$f" in *.gz|*.tgz|*.xz|*.txz|*.zst|*.bz2|*.tbz2|*.lz4|*.lzma|*.zip|*.7z|*.jar|*.whl)
  m=$(head -c 6 -- "$f" 2>/dev/null | od -An -tx1 | tr -d ' \n')
  case "$m" in 1f8b*|fd377a585a00|28b52ffd*|425a68*|504b*|377abcaf271c|04224d18*|5d0000*) ;;
    *) printf 'plain\t%s\0' "$f";; esac;;
esac; done"""


def special_command(root: str = "/") -> str:
    """The command that checks files (relative paths, NUL-separated on stdin) for the special justifications.

    Prints ``TAG\\tPATH\\0`` for each file that is of a kind in :data:`SPECIAL_REASONS`, or a
    ``.pyc`` whose header records its source's size (``pyc``; the source must also be
    packaged, see :func:`pyc_source`).
    """
    return "; ".join(
        [command_line("cd %s || exit 1", root if root.rstrip("/") else "/"), "xargs -0 -r sh -c " + command_line("%s", _SPECIAL) + " sh", "true"]
    )


def parse_special(stdout: str) -> dict[str, str]:
    """Parse :func:`special_command`'s output into ``{"/path": tag}`` (pure)."""
    out: dict[str, str] = {}
    for token in stdout.split("\0"):
        tag, sep, path = token.partition("\t")
        if sep:
            out["/" + path] = tag
    return out


def pyc_source(path: str) -> str | None:
    """The source a ``__pycache__/M.TAG.pyc`` is compiled from (``../M.py``), or None."""
    directory, name = posixpath.split(path)
    if posixpath.basename(directory) != "__pycache__" or not name.endswith(".pyc"):
        return None
    return posixpath.join(posixpath.dirname(directory), name.split(".", 1)[0] + ".py")
