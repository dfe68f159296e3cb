"""Images for the simulation, built without a registry and cached by recipe.

* base: ``ubuntu:24.04`` when it can be pulled; otherwise a Debian 12 root filesystem
  made with ``debootstrap`` and ``docker import``-ed.
* os: ``Dockerfile.ubuntu`` on top of the base (the stand-in for a cloud image).

Each tag carries a hash of its recipe, so an image is rebuilt exactly when its recipe
changes; old tags are left for ``sim.down --all``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.exceptions import SimError
from provision.profiles import Profile
from provision.steps import Log

ROOT = Path(__file__).resolve().parent.parent
LABEL = "ceph-openstack-ami.sim"
REPO = "ceph-openstack-ami"
#: Image kinds (``REPO/<kind>:tag``) kept across ``sim.down``; ``sim.down --all`` removes them too.
CACHED_KINDS = ("base", "os")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
DEBOOTSTRAP_INCLUDE = ("ca-certificates",)


@dataclass(frozen=True)
class BaseRecipe:
    """How the Debian base root filesystem is made."""

    suite: str = "bookworm"
    variant: str = "minbase"
    mirror: str = DEBIAN_MIRROR
    include: tuple[str, ...] = DEBOOTSTRAP_INCLUDE

    def sources_list(self) -> str:
        """The apt sources of the base: main, updates and security, as Debian's cloud images have."""
        return (
            f"deb {self.mirror} {self.suite} main\n"
            f"deb {self.mirror} {self.suite}-updates main\n"
            f"deb {DEBIAN_SECURITY} {self.suite}-security main\n"
        )

    def digest(self) -> str:
        """A short hash of the recipe (part of the image tag)."""
        text = "|".join([self.suite, self.variant, self.mirror, ",".join(self.include), self.sources_list(), "v1"])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _image_exists(client: Any, tag: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(tag)
        return True
    except ImageNotFound:
        return False


def try_pull(client: Any, ref: str, log: Log) -> bool:
    """Pull ``ref`` if it is not present; False (quickly) when no registry answers."""
    from docker.errors import APIError, ImageNotFound

    if _image_exists(client, ref):
        return True
    try:
        client.images.pull(ref)
        return True
    except (APIError, ImageNotFound) as e:
        log(f"cannot pull {ref}: {str(e).splitlines()[0][:160]}")
        return False


def debian_base(client: Any, recipe: BaseRecipe, log: Log) -> str:
    """Tag of the Debian base image, built with debootstrap and imported if missing."""
    tag = f"{REPO}/base:debian-{recipe.suite}-{recipe.digest()}"
    if _image_exists(client, tag):
        log(f"base image {tag} cached")
        return tag
    if os.geteuid() != 0:
        raise SimError("Building the base root filesystem needs root (debootstrap)", hint="run as root, or build the base once with sudo")
    if shutil.which("debootstrap") is None:
        install_debootstrap(log)
    work = Path(tempfile.mkdtemp(prefix="coa-rootfs-"))
    rootfs = work / "rootfs"
    try:
        log(f"debootstrap {recipe.variant} {recipe.suite} from {recipe.mirror} (about 30 s)...")
        cmd = ["debootstrap", f"--variant={recipe.variant}", f"--include={','.join(recipe.include)}", recipe.suite, str(rootfs), recipe.mirror]
        _stream(cmd, log, prefix="  debootstrap: ", every=40)
        (rootfs / "etc/apt/sources.list").write_text(recipe.sources_list())
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / leftover).glob("*.deb"):
                p.unlink()
        log(f"importing the root filesystem as {tag}...")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        imp = subprocess.run(["docker", "import", "--change", f"LABEL {LABEL}=1 {LABEL}.cache=base", "-", tag], stdin=tar.stdout, capture_output=True)
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise SimError(f"docker import of the base root filesystem failed: {imp.stderr.decode()[-400:]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tag


def install_debootstrap(log: Log) -> None:
    """Install debootstrap from the distribution's archive (apt), or say how to."""
    if shutil.which("apt-get") is None:
        raise SimError("debootstrap is not installed and there is no apt-get to install it", hint="install debootstrap with your package manager")
    log("debootstrap is missing: installing it with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "debootstrap"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise SimError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-300:]}", hint="apt-get install -y debootstrap")


def _stream(cmd: list[str], log: Log, prefix: str, every: int = 1) -> None:
    """Run ``cmd``, logging every ``every``-th line of output; raise SimError on failure."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for n, line in enumerate(proc.stdout):
        tail = (tail + [line.rstrip()])[-20:]
        if n % every == 0 or line.startswith(("E:", "W:")):
            log(prefix + line.rstrip())
    if proc.wait() != 0:
        raise SimError(f"{cmd[0]} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def os_recipe_digest(base_tag: str, login_user: str) -> str:
    """Hash of what the OS image is built from: the Dockerfile, sim/files and the base."""
    h = hashlib.sha256()
    h.update(base_tag.encode() + b"|" + login_user.encode())
    for path in [ROOT / "Dockerfile.ubuntu", *sorted((ROOT / "sim/files").rglob("*"))]:
        if path.is_file():
            h.update(str(path.relative_to(ROOT)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def os_image(client: Any, profile: Profile, log: Log) -> str:
    """Tag of the OS image for ``profile`` (the sim's source AMI content), built if missing."""
    if profile.sim_base_image.startswith("debootstrap:"):
        base = debian_base(client, BaseRecipe(suite=profile.sim_base_image.split(":", 1)[1]), log)
    else:
        if not try_pull(client, profile.sim_base_image, log):
            raise SimError(f"{profile.sim_base_image} cannot be pulled here", hint="use the debian-12 profile (--profile debian-12), which needs no registry")
        base = profile.sim_base_image
    tag = f"{REPO}/os:{profile.name}-{os_recipe_digest(base, profile.login_user)}"
    if _image_exists(client, tag):
        log(f"OS image {tag} cached")
        return tag
    log(f"building {tag} from Dockerfile.ubuntu (BASE_IMAGE={base})...")
    stream = client.api.build(
        path=str(ROOT),
        dockerfile="Dockerfile.ubuntu",
        tag=tag,
        buildargs={"BASE_IMAGE": base, "LOGIN_USER": profile.login_user},
        labels={LABEL: "1", f"{LABEL}.cache": "os"},
        rm=True,
        forcerm=True,
        decode=True,
    )
    tail: list[str] = []
    for chunk in stream:
        if "error" in chunk:
            raise SimError("Building the OS image failed: " + chunk["error"].strip() + "\n" + "\n".join(tail[-15:]))
        text = chunk.get("stream", "").rstrip()
        if text:
            tail.append(text)
            if text.startswith("Step ") or "Setting up" in text and "systemd" in text:
                log("  " + text)
    return tag


def default_profile(client: Any, log: Log) -> str:
    """ubuntu-24.04 where ``ubuntu:24.04`` can be pulled, else debian-12 (built with debootstrap)."""
    if try_pull(client, "ubuntu:24.04", log):
        return "ubuntu-24.04"
    log("falling back to Debian 12 built with debootstrap (profile debian-12)")
    return "debian-12"


def remove_images(client: Any, all_images: bool, log: Log, keep: Collection[str] = ()) -> list[str]:
    """Remove the sim's image tags (AMIs first) but those in ``keep``; the cached base and OS images only with ``all_images``."""
    removed: list[str] = []
    ours = [(t, t.split("/", 1)[1].split(":", 1)[0]) for img in client.images.list() for t in img.tags
            if t.startswith(f"{REPO}/") and t not in keep]
    # AMIs (children) before the cached base and OS images they are built on.
    for tag, kind in sorted(ours, key=lambda tk: tk[1] in CACHED_KINDS):
        if kind in CACHED_KINDS and not all_images:
            continue
        try:
            client.images.remove(tag, force=True)
            removed.append(f"image {tag}")
        except Exception as e:  # still used by a container of another tool
            log(f"left image {tag}: {e}")
    return removed
