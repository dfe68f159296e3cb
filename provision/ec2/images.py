"""Images and what they are made on: the source image (owner-checked), the instance type, names
already taken, publishing (block public access, encryption by default, launch permission ``all``),
IMDSv2 on the image, and tags on an image and its snapshots.

moto differences handled here (see ``moto-notes.md``): instance types are validated before anything
is created (moto accepts any), duplicate AMI names are checked by us, snapshots are tagged with
``create_tags`` after the image exists, and APIs moto lacks (image block-public-access) count as
"cannot tell".
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..exceptions import AwsError, ConfigError
from ..profiles import Profile
from ..steps import Log
from .api import call, try_call
from .plan import validate_ami_id
from .shapes import image_snapshot_ids, newest_image, source_image_filters, tag_list


def check_instance_type(client: Any, region: str, instance_type: str, architecture: str | None = None) -> dict[str, Any]:
    """Return the instance type's description if EC2 offers it in ``region`` (for ``architecture``).

    moto's ``run_instances`` accepts any type, so this runs before anything is created.

    Raises:
        ConfigError: the type does not exist, is not offered in the region, or cannot run the architecture.
    """
    resp = try_call(
        client,
        f"describe instance type {instance_type}",
        "describe_instance_types",
        ignore={"InvalidInstanceType"},
        InstanceTypes=[instance_type],
    )
    types = (resp or {}).get("InstanceTypes", [])
    if not types:
        raise ConfigError(
            f"EC2 has no instance type {instance_type!r}",
            hint="choose a type from `aws ec2 describe-instance-types`, e.g. m1.xlarge or m5.xlarge",
        )
    offers = call(
        client,
        f"list offerings of {instance_type} in {region}",
        "describe_instance_type_offerings",
        LocationType="region",
        Filters=[{"Name": "instance-type", "Values": [instance_type]}],
    ).get("InstanceTypeOfferings", [])
    if not any(o.get("InstanceType") == instance_type for o in offers):
        raise ConfigError(
            f"Instance type {instance_type!r} is not offered in {region}",
            hint=f"choose another instance type or region (`aws ec2 describe-instance-type-offerings --region {region}`)",
        )
    info = types[0]
    arches = info.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    if architecture and arches and architecture not in arches:
        raise ConfigError(
            f"Instance type {instance_type!r} cannot run {architecture} images (it runs {', '.join(arches)})",
            hint="choose an instance type for the profile's architecture",
        )
    return info


def find_source_image(client: Any, profile: Profile, region: str) -> dict[str, Any]:
    """The newest available image of the profile's publisher that matches its name pattern.

    Raises:
        ConfigError: none matches in ``region``.
    """
    images = call(
        client,
        f"look up {profile.display_name} images in {region}",
        "describe_images",
        Owners=[profile.source_owner],
        Filters=source_image_filters(profile),
    ).get("Images", [])
    best = newest_image(images)
    if best is None:
        raise ConfigError(
            f"No {profile.display_name} image named {profile.source_name_pattern!r} from account {profile.source_owner} in {region}",
            hint="pass an explicit source AMI id, or choose a region where the distribution publishes images",
        )
    return dict(best)


def describe_source_image(
    client: Any, ami_id: str, region: str, profile: Profile | None = None, *, trust_owner: bool = False
) -> dict[str, Any]:
    """The explicit source image ``ami_id``: it must exist and be available, and match the profile.

    An image whose owner is not the profile's publisher is refused unless ``trust_owner``:
    whatever its owner put in it becomes the base of a public image.

    Raises:
        ConfigError: it is malformed, does not exist in ``region``, is not available, has
            another architecture, or belongs to another owner (without ``trust_owner``).
    """
    validate_ami_id(ami_id)
    resp = try_call(
        client,
        f"describe image {ami_id}",
        "describe_images",
        ignore={"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable", "InvalidAMIID.Malformed"},
        ImageIds=[ami_id],
    )
    images = (resp or {}).get("Images", [])
    if not images:
        raise ConfigError(f"Source AMI {ami_id} does not exist in {region}", hint="check the id, and that it lives in the build region")
    image = dict(images[0])
    if image.get("State") != "available":
        raise ConfigError(f"Source AMI {ami_id} is {image.get('State')!r}, not available")
    if profile and image.get("Architecture") and image["Architecture"] != profile.architecture:
        raise ConfigError(
            f"Source AMI {ami_id} is {image['Architecture']}, but profile {profile.name} is {profile.architecture}",
            hint="choose an image of the profile's architecture",
        )
    owner = str(image.get("OwnerId", "?"))
    if profile and owner != profile.source_owner and not trust_owner:
        raise ConfigError(
            f"Source AMI {ami_id} belongs to account {owner}, not to {profile.display_name}'s publisher {profile.source_owner}",
            hint="omit --source-ami to start from the publisher's newest image, or pass --trust-source-owner "
            "if you trust that account with the base of this image",
        )
    return image


def images_named(client: Any, name: str, region: str) -> list[dict[str, Any]]:
    """This account's images called exactly ``name`` (AWS refuses duplicates; moto does not, so we check)."""
    return call(
        client,
        f"look up images named {name!r} in {region}",
        "describe_images",
        Owners=["self"],
        Filters=[{"Name": "name", "Values": [name]}],
    ).get("Images", [])


def block_public_access_state(client: Any, region: str, log: Log) -> str | None:
    """The account's AMI block-public-access state in ``region``, or None when the API cannot tell.

    "Cannot tell" (an older API, moto, missing permission) is logged and treated as unknown.
    """
    try:
        resp = client.get_image_block_public_access_state()
    except (NotImplementedError, AttributeError) as e:
        log(f"    (cannot tell whether AMI block public access is on in {region}: the API is not available: {e}; continuing)")
        return None
    except Exception as e:  # noqa: BLE001 - any answer other than a state means "unknown"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        log(f"    (cannot tell whether AMI block public access is on in {region}: {first}; continuing)")
        return None
    state = resp.get("ImageBlockPublicAccessState")
    return str(state) if state else None


def ebs_encryption_by_default(client: Any, region: str, log: Log) -> bool | None:
    """Whether new EBS volumes (and so the image's snapshots) are encrypted by default; None when unknown."""
    try:
        return bool(client.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])
    except Exception as e:  # noqa: BLE001 - unknown is logged, not fatal
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        log(f"    (cannot tell whether EBS encryption by default is on in {region}: {first}; continuing)")
        return None


def check_can_publish(client: Any, region: str, log: Log) -> None:
    """Refuse, before anything is built, an account/region where a public image is impossible.

    Raises:
        AwsError: AMI block public access is on, or EBS encryption by default is on.
    """
    state = block_public_access_state(client, region, log)
    if state is not None and state != "unblocked":
        raise AwsError(
            f"Cannot publish in {region}: the account's AMI block public access is {state!r}",
            hint=f"turn it off (`aws ec2 disable-image-block-public-access --region {region}`) or build without --public",
        )
    if ebs_encryption_by_default(client, region, log):
        raise AwsError(
            f"Cannot publish in {region}: EBS encryption by default is on, so the image's snapshots would be encrypted and encrypted images cannot be public",
            hint=f"turn it off (`aws ec2 disable-ebs-encryption-by-default --region {region}`) or build without --public",
        )


def encrypted_snapshots(client: Any, snapshot_ids: Sequence[str], region: str) -> list[str]:
    """Which of ``snapshot_ids`` are encrypted."""
    if not snapshot_ids:
        return []
    snaps = call(client, f"describe snapshots in {region}", "describe_snapshots", SnapshotIds=list(snapshot_ids)).get("Snapshots", [])
    return [s["SnapshotId"] for s in snaps if s.get("Encrypted")]


def publish_image(client: Any, image: Mapping[str, Any], region: str) -> None:
    """Grant launch permission to everyone (``Group=all``) and check that it took.

    Raises:
        AwsError: the image's snapshots are encrypted (AWS cannot make those public), or the grant did not take.
    """
    ami_id = image["ImageId"]
    enc = encrypted_snapshots(client, image_snapshot_ids(image), region)
    if enc:
        raise AwsError(
            f"Refusing to publish {ami_id} in {region}: its snapshots {', '.join(enc)} are encrypted, and encrypted images cannot be made public",
            hint=f"turn off EBS encryption by default (`aws ec2 disable-ebs-encryption-by-default --region {region}`) and rebuild, or build without --public",
        )
    call(
        client, f"make {ami_id} public in {region}", "modify_image_attribute", ImageId=ami_id, LaunchPermission={"Add": [{"Group": "all"}]}
    )
    perms = call(
        client, f"read launch permissions of {ami_id} in {region}", "describe_image_attribute", ImageId=ami_id, Attribute="launchPermission"
    ).get("LaunchPermissions", [])
    if not any(p.get("Group") == "all" for p in perms):
        raise AwsError(
            f"Failed to make {ami_id} public in {region}: launch permission 'all' did not take",
            hint="check the account's AMI block public access setting",
        )


def require_imds_v2(client: Any, image: Mapping[str, Any], region: str, log: Log) -> None:
    """Mark the image IMDSv2-only (``ImdsSupport=v2.0``): instances launched from it require tokens.

    ``create_image`` has no ImdsSupport parameter, so this uses ``modify_image_attribute``
    (one-way on AWS). When ``describe_images`` does not report the attribute back
    (moto ignores it), that is logged rather than failing.
    """
    ami_id = image["ImageId"]
    if image.get("ImdsSupport") == "v2.0":
        return
    call(client, f"require IMDSv2 on {ami_id} in {region}", "modify_image_attribute", ImageId=ami_id, ImdsSupport={"Value": "v2.0"})
    images = call(client, f"describe image {ami_id}", "describe_images", ImageIds=[ami_id]).get("Images", [])
    if not images or images[0].get("ImdsSupport") != "v2.0":
        log(f"    (the API did not report ImdsSupport back for {ami_id}; set to v2.0 but not verified)")


def tag_image_and_snapshots(client: Any, image: Mapping[str, Any], tags: Mapping[str, str], region: str) -> None:
    """Tag an image and every snapshot behind it (snapshot tags cannot be set at creation in moto)."""
    ids = [image["ImageId"], *image_snapshot_ids(image)]
    call(client, f"tag {', '.join(ids)} in {region}", "create_tags", Resources=ids, Tags=tag_list(tags))
