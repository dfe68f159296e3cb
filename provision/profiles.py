"""Distribution profiles: which base image a build starts from, and who logs in.

One small frozen dataclass per supported distribution. A profile says where the
EC2 source AMI comes from (publisher account and name pattern), which user the
image logs in as, which base image the simulation uses, and where python3 lives.

The "proven" record ties the simulation to the real build: a sim run of a
profile that reached *ready* calls :func:`record_proven`; the EC2 build refuses
a profile that no sim run has proven unless told otherwise.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .exceptions import ConfigError

#: Where the simulation records the profiles it has proven (relative to the project root).
DEFAULT_PROVEN_PATH = "build/sim-proven.json"

_PROVEN_VERSION = 1


@dataclass(frozen=True)
class Profile:
    """One distribution the AMI can be built from.

    Attributes:
        name: short id used on the command line (``debian-12``).
        display_name: human-readable name (``Debian 12 (bookworm)``).
        codename: the release codename (``bookworm``, ``noble``).
        login_user: the default user of the distribution's cloud image.
        source_owner: AWS account id that publishes the official images.
        source_name_pattern: ``describe_images`` name filter for those images.
        architecture: EC2 architecture of the image (``x86_64``).
        sim_base_image: base image the simulation builds its container from.
        python3: absolute path of python3 on the image.
    """

    name: str
    display_name: str
    codename: str
    login_user: str
    source_owner: str
    source_name_pattern: str
    architecture: str
    sim_base_image: str
    python3: str = "/usr/bin/python3"


DEBIAN_12 = Profile(
    name="debian-12",
    display_name="Debian 12 (bookworm)",
    codename="bookworm",
    login_user="admin",
    # Debian's official cloud-team publisher account (https://wiki.debian.org/Cloud/AmazonEC2Image/Bookworm).
    source_owner="136693071363",
    source_name_pattern="debian-12-amd64-*",
    architecture="x86_64",
    sim_base_image="debootstrap:bookworm",
)

UBUNTU_24_04 = Profile(
    name="ubuntu-24.04",
    display_name="Ubuntu 24.04 LTS (noble)",
    codename="noble",
    login_user="ubuntu",
    # Canonical. From noble on, the images are published under hvm-ssd-gp3/ (not hvm-ssd/).
    source_owner="099720109477",
    source_name_pattern="ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
    architecture="x86_64",
    sim_base_image="ubuntu:24.04",
)

#: Every known profile, by name.
PROFILES: dict[str, Profile] = {p.name: p for p in (DEBIAN_12, UBUNTU_24_04)}


def profile_names() -> tuple[str, ...]:
    """The names of every known profile, sorted."""
    return tuple(sorted(PROFILES))


def get_profile(name: str) -> Profile:
    """Return the profile called ``name``.

    Raises:
        ConfigError: no profile has that name; the error lists the valid ones.
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"Unknown profile {name!r}",
            hint=f"use one of: {', '.join(profile_names())}",
        ) from None


def resolve_profile(profile: str | Profile) -> Profile:
    """Return ``profile`` itself, or the known profile of that name."""
    return profile if isinstance(profile, Profile) else get_profile(profile)


# --- the "proven" record ---------------------------------------------------------


def load_proven(path: str | os.PathLike[str] = DEFAULT_PROVEN_PATH) -> dict[str, dict[str, Any]]:
    """Return the proven record: profile name -> what the sim run recorded.

    A missing file is an empty record.

    Raises:
        ConfigError: the file exists but is not a proven record.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"Cannot read the proven record {p}: {e.strerror}") from e
    try:
        data = json.loads(text)
        profiles = data["profiles"]
        if not isinstance(profiles, dict):
            raise TypeError("profiles is not a mapping")
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"The proven record {p} is not valid ({e})",
            hint=f"delete {p} and re-run the simulation for the profiles you build",
        ) from e
    return {str(k): dict(v) for k, v in profiles.items() if isinstance(v, dict)}


def is_proven(profile: str | Profile, path: str | os.PathLike[str] = DEFAULT_PROVEN_PATH) -> bool:
    """True when a simulation run of ``profile`` has reached ready (per the record at ``path``)."""
    name = profile.name if isinstance(profile, Profile) else profile
    return name in load_proven(path)


def record_proven(
    profile: str | Profile,
    path: str | os.PathLike[str] = DEFAULT_PROVEN_PATH,
    *,
    detail: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> Path:
    """Record that a simulation run of ``profile`` reached ready; return the record's path.

    The file is rewritten atomically; other profiles' entries are kept. An
    unreadable record is replaced rather than blocking the simulation.

    Args:
        profile: the profile (or its name) that was proven.
        path: the record file (created with its directory when missing).
        detail: extra facts to keep with the entry (sim image, instance id, ...).
        now: the time to record (unix seconds); defaults to the current time.
    """
    prof = resolve_profile(profile)
    p = Path(path)
    try:
        record = load_proven(p)
    except ConfigError:
        record = {}
    stamp = time.time() if now is None else now
    entry: dict[str, Any] = {
        "proven_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)),
        "proven_at_unix": int(stamp),
        "sim_base_image": prof.sim_base_image,
    }
    entry.update(dict(detail or {}))
    record[prof.name] = entry
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": _PROVEN_VERSION, "profiles": record}, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
