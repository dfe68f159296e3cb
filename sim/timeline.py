"""Where boot time goes: each unit's span from systemd's own timestamps, the critical path to
ready, and a timeline picture (SVG) a person can look at.

Pure functions: :func:`parse_show` reads ``systemctl show`` output, :func:`critical_path` walks
the ``After=`` edges back from the last unit to finish (as ``systemd-analyze critical-chain``
does), :func:`render_svg` draws one bar per unit. The benchmark (:mod:`sim.bench`) collects the
text and writes the picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence
from xml.sax.saxutils import escape

#: ``systemctl show`` properties read for each unit.
SHOW_PROPERTIES = "Id,InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic,After"
#: How far before the instance's start (µs) a unit's start may seem to be and still count as this boot's.
CLOCK_SLACK_US = 2_000_000
#: Our boot jobs' unit prefix (drawn in their own colour).
OURS_PREFIX = "coa-"


@dataclass(frozen=True)
class Span:
    """One unit at this boot: seconds from the instance's start to leaving ``inactive`` and to ``active``."""

    unit: str
    start: float
    end: float
    after: tuple[str, ...]

    @property
    def ours(self) -> bool:
        return self.unit.startswith(OURS_PREFIX)

    @property
    def seconds(self) -> float:
        return self.end - self.start


def show_blocks(text: str) -> list[dict[str, str]]:
    """The property maps of ``systemctl show -p ... UNIT...`` output, one per unit (blocks split by a blank line)."""
    return [dict(line.split("=", 1) for line in block.splitlines() if "=" in line) for block in text.strip().split("\n\n")]


def parse_show(text: str, zero_mono_us: int) -> list[Span]:
    """Spans from ``systemctl show -p SHOW_PROPERTIES UNIT...`` output (blocks split by a blank line).

    ``zero_mono_us`` is the kernel's monotonic clock (µs) at the instance's start; units that
    did not both leave ``inactive`` and enter ``active`` at or after it (not started at this
    boot) are left out.
    """
    spans: list[Span] = []
    for fields in show_blocks(text):
        start = int(fields.get("InactiveExitTimestampMonotonic") or 0)
        end = int(fields.get("ActiveEnterTimestampMonotonic") or 0)
        # the zero is read off two clocks (the engine's start time, the kernel's uptime): a unit
        # started in the instance's first moments may seem to start a little before it
        if "Id" not in fields or start < zero_mono_us - CLOCK_SLACK_US or end < start:
            continue
        spans.append(Span(fields["Id"], max(start - zero_mono_us, 0) / 1e6, max(end - zero_mono_us, 0) / 1e6,
                          tuple(fields.get("After", "").split())))
    return sorted(spans, key=lambda s: (s.start, s.unit))


def critical_path(spans: Sequence[Span], until: float | None = None) -> list[Span]:
    """The chain of units that held up the last one to become active (by ``until``), first to last.

    From the unit that became active last, step to the unit among its ``After=`` that became
    active last before it started, and so on: the units each one actually waited for.
    """
    by_name = {s.unit: s for s in spans}
    done = [s for s in spans if until is None or s.end <= until + 1e-6]
    if not done:
        return []
    chain = [max(done, key=lambda s: (s.end, s.unit))]
    seen = {chain[0].unit}
    while True:
        head = chain[-1]
        waited = [by_name[u] for u in head.after if u in by_name and u not in seen and by_name[u].end <= head.start + 0.01]
        if not waited:
            break
        nxt = max(waited, key=lambda s: (s.end, s.unit))
        chain.append(nxt)
        seen.add(nxt.unit)
    return list(reversed(chain))


def path_rows(chain: Sequence[Span]) -> list[dict[str, object]]:
    """The critical path as JSON-ready rows: unit, start, end, and the unit it waited for."""
    rows: list[dict[str, object]] = []
    for n, s in enumerate(chain):
        rows.append({"unit": s.unit, "start_s": round(s.start, 2), "end_s": round(s.end, 2),
                     "waited_for": chain[n - 1].unit if n else None})
    return rows


def first_and_last(spans: Iterable[Span]) -> dict[str, object]:
    """The first and the last service (not ours) to become active, with when."""
    services = sorted((s for s in spans if not s.ours and s.unit.endswith(".service")), key=lambda s: s.end)
    if not services:
        return {"first_service": None, "last_service": None}
    return {"first_service": [services[0].unit, round(services[0].end, 2)],
            "last_service": [services[-1].unit, round(services[-1].end, 2)]}


#: Drawing constants: pixels per row, label column, chart width.
ROW, LABEL, WIDTH = 16, 300, 760
OURS_COLOUR, OTHER_COLOUR, PATH_COLOUR = "#d9534f", "#8aa6c1", "#1f4e79"


@dataclass(frozen=True)
class Panel:
    """One boot to draw: a title, its spans, when it was ready, the units on its critical path."""

    title: str
    spans: tuple[Span, ...]
    ready_s: float
    path: frozenset[str] = frozenset()


def horizon(panels: Sequence[Panel]) -> float:
    """The seconds the time axis spans: the latest ready or unit end of all panels (one scale for all)."""
    return max([1.0, *(p.ready_s for p in panels), *(s.end for p in panels for s in p.spans)])


def _panel(p: Panel, top: int, horizon: float) -> tuple[list[str], int]:
    """SVG elements of one panel drawn from ``top`` on an axis of ``horizon`` seconds, and its height."""
    scale = WIDTH / horizon
    height = 44 + ROW * len(p.spans)
    bottom = top + height - 14
    out = [f'<text x="4" y="{top + 16}" font-size="13" font-weight="bold">{escape(p.title)}</text>']
    step = 5 if horizon <= 60 else 10 if horizon <= 150 else 30
    for t in range(0, int(horizon) + 1, step):
        x = LABEL + t * scale
        out.append(f'<line x1="{x:.1f}" y1="{top + 28}" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 12}" text-anchor="middle" fill="#666">{t}s</text>')
    for n, s in enumerate(p.spans):
        y = top + 32 + n * ROW
        colour = PATH_COLOUR if s.unit in p.path else OURS_COLOUR if s.ours else OTHER_COLOUR
        w = max(s.seconds * scale, 1.5)
        out.append(f'<text x="{LABEL - 6}" y="{y + 11}" text-anchor="end">{escape(s.unit)}</text>')
        out.append(f'<rect x="{LABEL + s.start * scale:.1f}" y="{y + 2}" width="{w:.1f}" height="{ROW - 4}" fill="{colour}">'
                   f"<title>{escape(s.unit)}: {s.start:.1f}s to {s.end:.1f}s</title></rect>")
        out.append(f'<text x="{LABEL + s.start * scale + w + 3:.1f}" y="{y + 11}" fill="#444">{s.seconds:.1f}s</text>')
    x = LABEL + p.ready_s * scale
    out.append(f'<line x1="{x:.1f}" y1="{top + 26}" x2="{x:.1f}" y2="{bottom}" stroke="black" stroke-width="2" stroke-dasharray="4,2"/>')
    out.append(f'<text x="{x + 4:.1f}" y="{top + 26}">ready {p.ready_s:.1f}s</text>')
    return out, height + 16


def render_svg(panels: Sequence[Panel]) -> str:
    """The timeline picture: per panel one bar per unit (ours red, others blue, the critical path
    dark), a dashed line at ready, a seconds axis; panels one below the other."""
    body: list[str] = []
    top = 0
    span = horizon(panels)
    for p in panels:
        elements, height = _panel(p, top, span)
        body += elements
        top += height
    legend = (f'<text x="4" y="{top + 12}" fill="{OURS_COLOUR}">ours (coa-*)</text>'
              f'<text x="120" y="{top + 12}" fill="{OTHER_COLOUR}">services</text>'
              f'<text x="220" y="{top + 12}" fill="{PATH_COLOUR}">critical path to ready</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL + WIDTH + 110}" height="{top + 20}" '
            'font-family="monospace" font-size="11">\n<rect width="100%" height="100%" fill="white"/>\n'
            + "\n".join(body) + "\n" + legend + "\n</svg>\n")
