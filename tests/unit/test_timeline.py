"""The boot timeline: spans from systemd's timestamps, the critical path to ready, the picture."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from sim.timeline import Panel, critical_path, first_and_last, parse_show, path_rows, render_svg

ZERO = 1_000_000_000  # µs of the kernel's monotonic clock at the instance's start


def _block(unit: str, start_s: float, end_s: float, after: str = "") -> str:
    return (f"Id={unit}\nInactiveExitTimestampMonotonic={int(ZERO + start_s * 1e6)}\n"
            f"ActiveEnterTimestampMonotonic={int(ZERO + end_s * 1e6)}\nAfter={after}\n")


SHOW = "\n".join([
    _block("ceph-mon@a.service", 2.0, 3.0, "network-online.target coa-ceph-mon-key.service"),
    _block("coa-ceph-mon-key.service", 1.0, 2.0, "local-fs.target"),
    _block("keystone.service", 3.5, 9.0, "ceph-mon@a.service mariadb.service"),
    _block("mariadb.service", 1.5, 3.4, "network.target"),
    _block("coa-openstack-boot-volume.service", 9.0, 14.0, "keystone.service mariadb.service ceph-mon@a.service"),
    # started at an earlier boot (before ZERO): not part of this one
    "Id=old.service\nInactiveExitTimestampMonotonic=5\nActiveEnterTimestampMonotonic=9\nAfter=\n",
    # seems to start 0.5 s before the instance (two clocks): this boot's, from 0
    _block("systemd-journald.service", -0.5, 0.2),
    # never became active
    "Id=failed.service\nInactiveExitTimestampMonotonic=1000500000\nActiveEnterTimestampMonotonic=0\nAfter=\n",
])


def test_spans_come_from_this_boot_only() -> None:
    spans = parse_show(SHOW, ZERO)
    assert spans[0].unit == "systemd-journald.service" and (spans[0].start, spans[0].end) == (0.0, 0.2)
    spans = spans[1:]
    assert [s.unit for s in spans] == ["coa-ceph-mon-key.service", "mariadb.service", "ceph-mon@a.service",
                                       "keystone.service", "coa-openstack-boot-volume.service"]
    keystone = next(s for s in spans if s.unit == "keystone.service")
    assert (keystone.start, keystone.end, keystone.seconds) == (3.5, 9.0, 5.5) and not keystone.ours
    assert spans[0].ours


def test_the_critical_path_follows_what_each_unit_waited_for_last() -> None:
    spans = parse_show(SHOW, ZERO)[1:]
    chain = [s.unit for s in critical_path(spans)]
    # the boot volume waited for keystone (ended 9.0, the latest of its After=), which waited for
    # mariadb (3.4, later than ceph-mon's 3.0), which waited for nothing we saw start
    assert chain == ["mariadb.service", "keystone.service", "coa-openstack-boot-volume.service"]
    rows = path_rows(critical_path(spans))
    assert rows[-1] == {"unit": "coa-openstack-boot-volume.service", "start_s": 9.0, "end_s": 14.0, "waited_for": "keystone.service"}
    # ready before the boot volume finished: the path ends at the last unit active by then
    assert [s.unit for s in critical_path(spans, until=9.5)] == ["mariadb.service", "keystone.service"]
    assert first_and_last(spans) == {"first_service": ["ceph-mon@a.service", 3.0], "last_service": ["keystone.service", 9.0]}


def test_the_picture_has_a_bar_per_unit_and_a_line_at_ready() -> None:
    spans = tuple(parse_show(SHOW, ZERO)[1:])
    path = frozenset(s.unit for s in critical_path(spans))
    svg = render_svg([Panel("new_instance: ready 14.5s", spans, 14.5, path), Panel("same_ip", spans[:2], 4.0)])
    root = ET.fromstring(svg)  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    bars = root.findall(f"{ns}rect")[1:]  # the first is the background
    assert len(bars) == len(spans) + 2
    colours = {bar.findtext(f"{ns}title", "").split(":")[0]: bar.get("fill") for bar in bars[: len(spans)]}
    assert colours["coa-openstack-boot-volume.service"] == colours["keystone.service"] != colours["ceph-mon@a.service"]
    assert colours["coa-ceph-mon-key.service"] != colours["ceph-mon@a.service"]
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "ready 14.5s" in texts and "ready 4.0s" in texts and "new_instance: ready 14.5s" in texts
