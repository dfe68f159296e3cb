"""``invoke ami.deregister``: an AMI goes, with its snapshots (on AWS; the sim's goes through the same call)."""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from .api import check_credentials, check_region, default_client_factory, start_session
from .cleanup import deregister
from .plan import validate_ami_id


def deregister_ami(settings: Settings, ami_id: str, session: Any = None, endpoint_url: str | None = None) -> list[str]:
    """Deregister ``ami_id`` in the settings' region and delete its snapshots; what was removed.

    Raises:
        ConfigError: the region or the id is refused.
        AwsError: no credentials, the image is not registered there, or EC2 refused.
    """
    validate_ami_id(ami_id)
    check_region(settings.region, session)
    sess, _ = start_session(session)
    check_credentials(sess)
    client = default_client_factory(sess, endpoint_url)(settings.region)
    return deregister(client, ami_id, settings.region)
