"""The sim's long-lived host process: moto as the EC2 API, and the instance metadata service.

Started detached by ``sim.up`` and stopped by ``sim.down``; moto's state lives as long
as this process. The metadata service listens on 169.254.169.254:80 (an address the sim
puts on its Docker bridge) and answers each container with the data moto holds for the
instance whose private IP is the request's source address.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import Any

from .imds import IMDSServer
from .imds_tree import InstanceView, instance_view

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


def ec2_client(endpoint: str, region: str) -> Any:
    """A boto3 EC2 client for the sim's moto server (fake credentials, never real AWS)."""
    import boto3

    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


class MotoResolver:
    """Map a request's source address to the view of the instance moto holds for it."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.ec2 = ec2_client(endpoint, region)
        self.region = region
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, client_ip: str) -> InstanceView | None:
        """The view of the pending or running instance at ``client_ip``, or None."""
        with self._lock:
            res = self.ec2.describe_instances(
                Filters=[
                    {"Name": "private-ip-address", "Values": [client_ip]},
                    {"Name": "instance-state-name", "Values": ["pending", "running"]},
                ]
            )
            instances = [i for r in res["Reservations"] for i in r["Instances"]]
            if not instances:
                return None
            inst = instances[0]
            key = None
            if inst.get("KeyName"):
                if inst["KeyName"] not in self._keys:
                    kp = self.ec2.describe_key_pairs(KeyNames=[inst["KeyName"]], IncludePublicKey=True)["KeyPairs"]
                    self._keys[inst["KeyName"]] = kp[0].get("PublicKey", "") if kp else ""
                key = self._keys[inst["KeyName"]] or None
        return instance_view(inst, key, self.region)


def main(argv: list[str] | None = None) -> int:
    """Run moto and the metadata service until SIGTERM."""
    from moto.server import ThreadedMotoServer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True, help="moto's port on 127.0.0.1")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--imds-host", default="169.254.169.254")
    p.add_argument("--imds-port", type=int, default=80)
    args = p.parse_args(argv)
    os.environ.update(FAKE_CREDENTIALS)

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{args.port}"
    imds = IMDSServer(args.imds_host, args.imds_port, MotoResolver(endpoint, args.region))
    imds.start()
    print(f"sim daemon ready: moto {endpoint}, metadata http://{args.imds_host}:{args.imds_port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        time.sleep(0.5)
    imds.stop()
    moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
