"""The build's images: each one registered for removal before it is requested, its snapshots tagged
with the build id as soon as EC2 lists them, waited for, and, with ``force``, put in the place of
an earlier image of the same name only once it is available.

AWS refuses a second image of one name in a region (moto does not: the tests add the rule), and
an image cannot be renamed, so ``force`` never deregisters the old image first:

1. in a region that holds an image of the name, the new one is made under a temporary name
   (:attr:`~provision.ec2.plan.BuildPlan.temp_image_name`), waited for, tagged, published if asked;
2. the ``replace`` stage, region by region: the old image is deregistered and its snapshots
   deleted; the new one is made again under the final name (from the stopped builder in the
   build region, as a copy of the build region's image elsewhere), waited for and published;
   then the temporary one is removed.

So the region always holds an available image: the old one, then the old and the temporary one,
then the temporary one while the final one is made, then the final one. From the moment the old
image is gone, the build keeps its newest available image of that region whatever happens next:
a failure or an interrupt then leaves the temporary image, and says how to give it the name. The
cost: the name is absent while the final image is made, and that region's image is made twice.
"""

from __future__ import annotations

import functools
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..exceptions import AwsError
from ..steps import Log
from .api import ClientFactory, call, describe_image
from .cleanup import (
    Cleanup,
    delete_image,
    delete_leftover_snapshots,
    delete_snapshots_once_deregistered,
    image_snapshots,
    images_of_build,
    snapshots_made_for,
)
from .images import images_named, publish_image, require_imds_v2, tag_image_and_snapshots
from .plan import BUILD_ID_TAG, BuildPlan
from .shapes import image_snapshot_ids, tag_list, tag_specifications, tags_dict
from .waits import wait_image_available, wait_state

#: Makes an image called ``name`` and returns its id (``create_image`` or ``copy_image``).
Request = Callable[[str], str]


@dataclass
class ImageRef:
    """An image of this build: its region and name, its cleanup handle, and its id and snapshots once known."""

    region: str
    name: str
    handle: int = -1
    sent: bool = False
    id: str | None = None
    snapshots: list[str] = field(default_factory=list)
    image: dict[str, Any] = field(default_factory=dict)


class Imaging:
    """The images of one build, region by region, and what a failure must remove or keep of them."""

    def __init__(
        self, plan: BuildPlan, clients: ClientFactory, cleanup: Cleanup, *, log: Log, sleep: Callable[[float], None]
    ) -> None:
        self.plan = plan
        self.clients = clients
        self.cleanup = cleanup
        self.log = log
        self.sleep = sleep
        self.tags: dict[str, str] = {}
        #: region -> ids of the images called ``ami_name`` there before the build (``force`` replaces them).
        self.existing: dict[str, list[str]] = {}
        #: region -> this build's image there (the temporary one until it is replaced).
        self.current: dict[str, ImageRef] = {}
        #: region -> the image kept whatever happens: the old one of its name is gone.
        self.kept: dict[str, ImageRef] = {}
        self._swept: set[str] = set()

    def name_for(self, region: str) -> str:
        """The name to make the image under in ``region``: temporary while an image of the final name exists."""
        return self.plan.temp_image_name if self.existing.get(region) else self.plan.ami_name

    @property
    def ami_ids(self) -> dict[str, str]:
        """Region -> this build's image there, in the plan's region order."""
        return {r: str(self.current[r].id) for r in self.plan.regions if r in self.current and self.current[r].id}

    # --- one image ---------------------------------------------------------------------
    def start(self, region: str, request: Request, name: str, after: Callable[[str], None] | None = None) -> ImageRef:
        """Register the image's removal, request it, tag its snapshots as soon as they are listed, then run ``after``."""
        client = self.clients(region)
        self._register_sweep(client, region)
        ref = self._register(client, region, name)
        ref.sent = True
        try:
            ref.id = request(name)
        except AwsError:
            ref.sent = False  # EC2 answered with an error: no image was made
            raise
        self.cleanup.update(
            ref.handle,
            label=f"image {ref.id} and its snapshots in {region}",
            manual=f"aws ec2 deregister-image --region {region} --image-id {ref.id}  # then delete its snapshots",
        )
        self._tag_snapshots(client, ref)
        if after is not None:
            after(ref.id)
        return ref

    def finish(self, ref: ImageRef) -> ImageRef:
        """Wait for the image, then tag it and every snapshot behind it and require IMDSv2."""
        assert ref.id is not None
        client, plan = self.clients(ref.region), self.plan
        wait_image_available(client, ref.id, region=ref.region, delay=plan.wait_delay, attempts=plan.wait_attempts, sleep=self.sleep)
        ref.image = describe_image(client, ref.id, ref.region)
        ref.snapshots = list(dict.fromkeys([*ref.snapshots, *image_snapshot_ids(ref.image)]))
        tag_image_and_snapshots(client, ref.image, self._tags(ref), ref.region)
        require_imds_v2(client, ref.image, ref.region, self.log)
        self.current[ref.region] = ref
        return ref

    def publish(self, ref: ImageRef) -> None:
        """Grant launch permission to everyone on an available image of this build."""
        publish_image(self.clients(ref.region), ref.image, ref.region)

    # --- force: the replacement ----------------------------------------------------------
    def replace(self, region: str, request: Request, after: Callable[[str], None] | None = None) -> None:
        """Put this build's image in the place of the older ones of its name in ``region`` (see the module)."""
        temp = self.current[region]
        if temp.name == self.plan.ami_name:
            return
        client, name, temp_id = self.clients(region), self.plan.ami_name, str(temp.id)
        # From here on the temporary image goes only if an available image carries the name.
        self.cleanup.keep(temp.handle)
        self.cleanup.add(
            f"temporary image {temp_id} ({temp.name!r}) in {region}",
            lambda: self._remove_temp_unless_sole(client, temp),
            f"aws ec2 deregister-image --region {region} --image-id {temp_id}  # then delete its snapshots",
        )
        self._remove_old(client, region, spare=temp_id)
        self.log(f"    {temp_id} ({temp.name!r}) is kept in {region} until the image named {name!r} is available")
        final = self.finish(self.start(region, request, name, after))
        if self.plan.public:
            self.publish(final)
        self.cleanup.keep(final.handle)
        self.kept[region] = final
        self.log(f"    {final.id} now carries the name {name!r} in {region}")

    def _remove_old(self, client: Any, region: str, spare: str) -> None:
        """Deregister the images called ``ami_name`` in ``region`` (but ``spare``) and delete their snapshots.

        Each removal is registered first, so one cut short is finished by the cleanup (its
        snapshots deleted once the image is deregistered; nothing touched while it is not).
        """
        name = self.plan.ami_name
        for image in images_named(client, name, region):
            ami_id = image["ImageId"]
            if ami_id == spare or image.get("State") == "deregistered":
                continue
            snaps = list(dict.fromkeys([*image_snapshot_ids(image), *snapshots_made_for(client, ami_id, region)]))
            self.cleanup.add(
                f"snapshots {', '.join(snaps)} of the replaced image {ami_id} in {region}",
                functools.partial(delete_snapshots_once_deregistered, client, ami_id, snaps, region),
                f"aws ec2 delete-snapshot --region {region} --snapshot-id SNAPSHOT  # for each of {' '.join(snaps)}",
            )
            self.log(f"    replacing {ami_id} ({name!r}) in {region}: deregistering it and deleting its snapshots")
            delete_image(client, ami_id, region, snaps)

    def _remove_temp_unless_sole(self, client: Any, temp: ImageRef) -> None:
        """Remove the temporary image if an available image carries the final name; else keep it (and say so)."""
        named = [i for i in images_named(client, self.plan.ami_name, temp.region) if i.get("State") == "available"]
        if named:
            delete_image(client, str(temp.id), temp.region, temp.snapshots)
        else:
            self.kept[temp.region] = temp

    def keep_all(self) -> None:
        """The build succeeded: its current images are results, not temporaries."""
        for ref in self.current.values():
            self.cleanup.keep(ref.handle)

    def kept_lines(self) -> list[str]:
        """What a failed build keeps (images that replaced an old one), with how to finish by hand."""
        lines = []
        for region, ref in self.kept.items():
            line = f"kept {ref.id} ({ref.name!r}) in {region}: the earlier image of that name is already gone"
            if ref.name != self.plan.ami_name:
                line += (
                    f"; give it the name with: aws ec2 copy-image --region {region} --source-region {region} "
                    f"--source-image-id {ref.id} --name {shlex.quote(self.plan.ami_name)}"
                )
            lines.append(line)
        return lines

    # --- registration and tags -----------------------------------------------------------
    def _tags(self, ref: ImageRef) -> dict[str, str]:
        return {**self.tags, "Name": ref.name}

    def _register(self, client: Any, region: str, name: str) -> ImageRef:
        """Register removal of the image before it is requested: by id once known, else by build tag and name."""
        ref = ImageRef(region=region, name=name)
        build_id = self.plan.build_id

        def remove() -> None:
            ids = {i["ImageId"] for i in images_of_build(client, build_id, region, name)}
            if ref.id:
                ids.add(ref.id)
            elif ref.sent:
                ids |= self._made_in_flight(client, region, name)
            for ami_id in sorted(ids):
                delete_image(client, ami_id, region, ref.snapshots if ami_id == ref.id else ())

        ref.handle = self.cleanup.add(
            f"image {name!r} of build {build_id} in {region}",
            remove,
            f"aws ec2 describe-images --region {region} --owners self --filters Name=tag:{BUILD_ID_TAG},Values={build_id}"
            "  # then deregister-image and delete-snapshot",
        )
        return ref

    def _made_in_flight(self, client: Any, region: str, name: str) -> set[str]:
        """Images called ``name`` that were not there before the build and carry no other build's tag.

        What a request interrupted before its reply made: found by its build tag on AWS, but
        moto does not apply ``copy_image``'s tag specifications, so by name as well.
        """
        before = set(self.existing.get(region, ()))
        return {
            i["ImageId"]
            for i in images_named(client, name, region)
            if i["ImageId"] not in before and tags_dict(i.get("Tags")).get(BUILD_ID_TAG) in (None, self.plan.build_id)
        }

    def _register_sweep(self, client: Any, region: str) -> None:
        """Once per region, before its first image: remove the build's snapshots no registered image uses."""
        if region in self._swept:
            return
        self._swept.add(region)
        build_id = self.plan.build_id

        def sweep() -> None:
            delete_leftover_snapshots(client, build_id, region)

        self.cleanup.add(
            f"snapshots of build {build_id} in {region}",
            sweep,
            f"aws ec2 describe-snapshots --region {region} --owner-ids self --filters Name=tag:{BUILD_ID_TAG},Values={build_id}"
            "  # then delete-snapshot for each",
        )

    def _tag_snapshots(self, client: Any, ref: ImageRef) -> None:
        """Wait (bounded) until EC2 lists the image's snapshots, then tag them with the build id at once."""
        assert ref.id is not None
        ami_id, found = ref.id, ref.snapshots

        def listed() -> tuple[str, str]:
            found[:] = image_snapshots(client, ami_id, ref.region)
            return ("listed", "") if found else ("not listed yet", "")

        wait_state(
            listed,
            resource=f"the snapshots of {ami_id} in {ref.region}",
            want="listed",
            delay=self.plan.wait_delay,
            attempts=self.plan.wait_attempts,
            sleep=self.sleep,
        )
        call(client, f"tag the snapshots of {ami_id} in {ref.region}", "create_tags", Resources=list(found), Tags=tag_list(self._tags(ref)))


def image_request(client: Any, what: str, operation: str, tags: Mapping[str, str], **params: Any) -> Request:
    """A :data:`Request` calling ``create_image`` or ``copy_image`` with ``params``, the name, and the image's tags."""

    def request(name: str) -> str:
        spec = tag_specifications(["image"], {**tags, "Name": name})
        return str(call(client, f"{what} as {name!r}", operation, Name=name, TagSpecifications=spec, **params)["ImageId"])

    return request
