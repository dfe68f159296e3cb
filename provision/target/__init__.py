"""Targets: the hosts provisioning acts on, chosen from a spec string.

``from_spec("local")``, ``from_spec("docker://NAME")``, ``from_spec("ssh://USER@HOST[:PORT]")``.
The registry maps each scheme to the dotted path of its backend's factory and imports the
backend only when a spec asks for it (as pytest-testinfra's backends do), so the base
never imports its backends and a new backend is one line here.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import ConfigError
from .base import FileState, Result, Target, command_line

__all__ = ["BACKENDS", "FileState", "Result", "Target", "command_line", "from_spec"]

#: scheme -> "module:factory" of the backend; the factory takes (spec, **options).
BACKENDS: dict[str, str] = {
    "local": "provision.target.local:from_spec",
    "docker": "provision.target.docker:from_spec",
    "ssh": "provision.target.ssh:from_spec",
}

_FORMS = ("local", "docker://NAME", "ssh://USER@HOST[:PORT]")


def from_spec(spec: str, **options: Any) -> Target:
    """Build a target from ``local``, ``docker://NAME`` or ``ssh://USER@HOST[:PORT]``.

    Extra ``options`` go to the backend (e.g. ``key_filename`` for ssh).

    Raises:
        ConfigError: the scheme is unknown or the spec is malformed.
    """
    scheme = "local" if spec == "local" else urlsplit(spec).scheme
    if scheme not in BACKENDS or (scheme != "local" and "://" not in spec):
        raise ConfigError(f"Unknown target {spec!r}", hint="use one of: " + ", ".join(_FORMS))
    module, _, name = BACKENDS[scheme].partition(":")
    factory = getattr(importlib.import_module(module), name)
    target: Target = factory(spec, **options)
    return target
