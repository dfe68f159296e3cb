"""This instance's OpenStack secrets: every password and key it owns, generated per instance.

They live in one root-only file under the state directory; a rotation in progress keeps the
new set in a pending file until every service has it. Standard library only.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import posixpath
import secrets as _random
import string
import uuid
from dataclasses import dataclass, field

from ..exceptions import ConfigError, ProvisionError
from ..settings import Settings
from ..steps import Log
from ..target import Target

#: Where provisioning and the boot agent keep this instance's OpenStack secrets (root, 0600),
#: and where a rotation keeps the new ones until it is complete (both under ``state_dir``).
SECRETS_NAME = "openstack/secrets.json"
PENDING_NAME = "openstack/secrets.pending.json"

_ALPHANUM = string.ascii_letters + string.digits


def new_password(length: int = 32) -> str:
    """A random password of letters and digits (safe in URLs, ini files, SQL and shells)."""
    return "".join(_random.choice(_ALPHANUM) for _ in range(length))


def new_fernet_key() -> str:
    """A Fernet key as Keystone's key repositories hold it (urlsafe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(_random.token_bytes(32)).decode()


@dataclass(frozen=True)
class Secrets:
    """Every password an instance owns. ``repr`` never shows a value."""

    admin_password: str = field(repr=False)
    keystone_db: str = field(repr=False)
    glance_db: str = field(repr=False)
    cinder_db: str = field(repr=False)
    glance_service: str = field(repr=False)
    cinder_service: str = field(repr=False)
    rabbit: str = field(repr=False)
    erlang_cookie: str = field(repr=False)
    libvirt_secret_uuid: str
    nova_db: str = field(repr=False)
    placement_db: str = field(repr=False)
    neutron_db: str = field(repr=False)
    nova_service: str = field(repr=False)
    placement_service: str = field(repr=False)
    neutron_service: str = field(repr=False)
    #: Django's SECRET_KEY of the dashboard (signs its session cookies).
    dashboard_key: str = field(repr=False)

    @classmethod
    def generate(cls) -> "Secrets":
        """A complete new set: nothing shared with any other instance or with the builder."""
        return cls(
            admin_password=new_password(),
            keystone_db=new_password(),
            glance_db=new_password(),
            cinder_db=new_password(),
            glance_service=new_password(),
            cinder_service=new_password(),
            rabbit=new_password(),
            erlang_cookie=new_password(32).upper(),
            libvirt_secret_uuid=str(uuid.uuid4()),
            nova_db=new_password(),
            placement_db=new_password(),
            neutron_db=new_password(),
            nova_service=new_password(),
            placement_service=new_password(),
            neutron_service=new_password(),
            dashboard_key=new_password(50),
        )

    def to_json(self) -> str:
        """Serialise for the root-only secrets file."""
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, complete: bool = False) -> "Secrets":
        """Parse the secrets file; ConfigError naming what is missing or malformed.

        ``complete``: generate the missing ones instead (a host provisioned before a service
        was added keeps every secret it has).
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"The OpenStack secrets file is not JSON ({e.msg})") from e
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if not isinstance(data.get(n), str) or not data.get(n)]
        if missing and not complete:
            raise ConfigError(f"The OpenStack secrets file lacks {', '.join(missing)}", hint="re-run provisioning")
        fresh = dataclasses.asdict(cls.generate()) if missing else {}
        return cls(**{n: (fresh[n] if n in missing else data[n]) for n in names})

    def differing(self, other: "Secrets") -> list[str]:
        """Names of the fields that differ (values never shown)."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def secrets_path(settings: Settings) -> str:
    """The root-only file that holds this instance's OpenStack secrets."""
    return posixpath.join(settings.state_dir, SECRETS_NAME)


def pending_path(settings: Settings) -> str:
    """Where a rotation keeps the secrets it is installing until it is complete."""
    return posixpath.join(settings.state_dir, PENDING_NAME)


def load_secrets(target: Target, settings: Settings, path: str | None = None) -> Secrets | None:
    """This host's secrets, or None when there are none yet."""
    try:
        text = target.read(path or secrets_path(settings)).decode()
    except FileNotFoundError:
        return None
    return Secrets.from_json(text)


def pending_secrets(target: Target, settings: Settings, log: Log) -> Secrets:
    """The secrets this instance's rotation installs: the pending file's, or new ones saved there first.

    The first per-instance job of a boot to need them (``coa-openstack-broker``) makes them; the
    later ones, and a run after an interrupted one, install the same set.
    """
    pending = pending_path(settings)
    new = load_secrets(target, settings, pending)
    if new is None:
        new = Secrets.generate()
        save_secrets(target, settings, new, pending)
        log("generated new secrets for this instance (held in a root-only pending file until installed)")
    else:
        log("installing this instance's pending secrets (made earlier at this boot or by an interrupted run)")
    return new


def require_secrets(target: Target, settings: Settings) -> Secrets:
    """This host's secrets; ProvisionError when provisioning never made them."""
    sec = load_secrets(target, settings)
    if sec is None:
        raise ProvisionError(f"No OpenStack secrets at {secrets_path(settings)}", hint="provision the host (invoke provision.host)")
    return sec


def save_secrets(target: Target, settings: Settings, sec: Secrets, path: str | None = None) -> bool:
    """Write the secrets file (root, 0600); True if it changed."""
    target.run(["install", "-d", "-m", "0700", posixpath.dirname(path or secrets_path(settings))])
    return target.put(path or secrets_path(settings), sec.to_json(), 0o600)


def ensure_secrets(target: Target, settings: Settings) -> tuple[bool, str]:
    """Generate this host's secrets when it has none (the boot agent renews them per instance)."""
    try:
        text = target.read(secrets_path(settings)).decode()
    except FileNotFoundError:
        text = None
    if text is not None:
        sec = Secrets.from_json(text, complete=True)
        if save_secrets(target, settings, sec):
            return True, f"added the secrets this version needs to {secrets_path(settings)} (others kept)"
        return False, f"{secrets_path(settings)} present"
    save_secrets(target, settings, Secrets.generate())
    return True, f"generated {secrets_path(settings)} (root, 0600)"
