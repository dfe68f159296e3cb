"""cloud-init's own EC2 datasource, told the one thing a container hides: the platform is EC2.

Installed in the sim's OS image only, as ``coa_sim_cloudinit.DataSourceEc2`` (named first in
``datasource_pkg_list`` by ``95-sim-container.cfg``); on EC2 it does not exist.

cloud-init 22.4 names the cloud before it asks the metadata service
(``DataSourceEc2.identify_platform``): ``/sys/hypervisor/uuid`` starting ``ec2`` (Xen
instances, m1.xlarge among them) or the DMI system UUID and serial (Nitro). A container has
neither: ``cloudinit.dmi.read_dmi_data`` answers None inside one, and no container can have
``/sys/hypervisor`` (runc: ``mkdir .../sys/hypervisor: operation not permitted``). Left
unidentified, the datasource skips the IMDSv2 token and asks with IMDSv1, which an instance
launched with ``HttpTokens: required`` refuses (401) until cloud-init gives up after 120 s.

The subclass gives the answer identification gives on EC2; every request, retry and
fallback after it is cloud-init's own. The init-local variant (``DataSourceEc2Local``) is
left out: on EC2 it brings up DHCP on the NIC before asking, in a container Docker has
configured the interface and there is no DHCP server, so the network stage's datasource
(the same class, after the network is up) is the one that runs.
"""

from __future__ import annotations

from cloudinit import sources
from cloudinit.sources import DataSourceEc2 as upstream


class DataSourceEc2(upstream.DataSourceEc2):
    def _get_cloud_name(self) -> str:
        return upstream.CloudNames.AWS


datasources = [(DataSourceEc2, (sources.DEP_FILESYSTEM, sources.DEP_NETWORK))]


def get_datasource_list(depends: list[str]) -> list[type[DataSourceEc2]]:
    return sources.list_from_depends(depends, datasources)
