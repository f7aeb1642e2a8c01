"""The live page's timeline: an SVG drawn without matplotlib (every refresh,
for every viewer), and the words that say what it shows (its text alternative).

A row per CPU of each node (timeline.assign_lanes), across the time since
the earliest job shown (at least 5 minutes, at most the window); a job a
bar on the lanes it held, coloured by whose it is (the instructor's page)
or by its rule (a learner's), an unfinished one open to the right edge, a
failed one outlined in red and dashed; a legend under it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from xml.sax.saxutils import escape as xml_escape

from minihpc.timeline import Bar, assign_lanes

WIDTH, LANE, LEFT, TOP, BOTTOM, LEGEND = 900, 14, 70, 24, 24, 24
MAX_LEGEND = 8
PALETTE = ("#1b6ca8", "#c05a00", "#2e7d32", "#7b1fa2", "#00838f", "#ad1457", "#5d4037", "#455a64")
GOOD = ("COMPLETED", "RUNNING", "PENDING")
# Characters XML 1.0 does not allow: a name holding one would make the whole picture unreadable.
NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def escape(words: str) -> str:
    return xml_escape(NOT_XML.sub("?", words))


def colour(key: str) -> str:
    """The same colour for the same user or rule on every refresh and every page."""
    return PALETTE[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(PALETTE)]


def bars(rows: list[dict]) -> list[Bar]:
    return [Bar(str(r["job_id"]), str(r["user"]), str(r["rule"]), str(r["node"]), int(r["cpus"] or 1),
                float(r["submit"] or 0), r["start"], r["end"], str(r["state"])) for r in rows]


def span(rows: list[dict], now: float, window_s: int) -> int:
    """Seconds across the picture: back to the earliest start, in whole minutes, 5 to window_s // 60."""
    starts = [float(r["start"]) for r in rows if r["start"]]
    back = now - min(starts) if starts else 0
    return 60 * min(max(5, int(back // 60) + 1), window_s // 60)


def describe(rows: list[dict], now: float, window_s: int) -> str:
    """What the picture shows, in words (the img's alt)."""
    minutes = span(rows, now, window_s) // 60
    if not rows:
        return f"Timeline of the last {minutes} minutes: no jobs."
    states = Counter(str(r["state"]).lower() for r in rows)
    users = sorted({str(r["user"]) for r in rows})
    nodes = sorted({str(r["node"]) for r in rows if r["start"] and r["node"] and r["node"] != "None assigned"})
    said = ", ".join(f"{n} {s}" for s, n in sorted(states.items(), key=lambda x: (-x[1], x[0])))
    return (f"Timeline of the last {minutes} minutes: {len(rows)} job(s) ({said}) of {', '.join(users)}"
            + (f", on {', '.join(nodes)}." if nodes else "."))


def svg(rows: list[dict], nodes: list[str], cpus: int, now: float, window_s: int, by: str) -> str:
    """The timeline as an SVG document; `by` is "user" or "rule" (what the colours tell apart)."""
    drawn = [b for b in bars(rows) if b.start is not None and b.node in nodes]
    assign_lanes(drawn, cpus)
    lanes = len(nodes) * cpus
    count = Counter(b.user if by == "user" else b.rule for b in drawn)
    keys = sorted(count, key=lambda k: (-count[k], k))  # the legend: the most drawn first
    height = TOP + lanes * LANE + BOTTOM + (LEGEND if drawn else 0)
    across = span(rows, now, window_s)
    t0 = now - across

    def x(t: float) -> float:
        return LEFT + (WIDTH - LEFT - 10) * min(max((t - t0) / across, 0.0), 1.0)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
           f'height="{height}" font-family="DejaVu Sans, sans-serif" font-size="11">',
           f"<title>{escape(describe(rows, now, window_s))}</title>",
           f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>']
    for i, node in enumerate(nodes):
        y = TOP + i * cpus * LANE
        out.append(f'<text x="4" y="{y + cpus * LANE / 2 + 4}" fill="#222">{escape(node)}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - 10}" y2="{y}" stroke="#bbb"/>')
    minutes, axis = across // 60, TOP + lanes * LANE + BOTTOM - 8
    for m in range(0, minutes + 1, 1 if minutes <= 10 else 5):
        tx = x(t0 + m * 60)
        out.append(f'<line x1="{tx:.1f}" y1="{TOP}" x2="{tx:.1f}" y2="{TOP + lanes * LANE}" stroke="#eee"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis}" text-anchor="middle" fill="#555">'
                   f'{"now" if m == minutes else f"-{minutes - m} min"}</text>')
    node_row = {n: i for i, n in enumerate(nodes)}
    for b in drawn:
        left, right = x(b.start), x(b.end if b.end is not None else now)
        key = b.user if by == "user" else b.rule
        failed = b.state not in GOOD
        for lane in b.lanes:
            y = TOP + (node_row[b.node] * cpus + lane) * LANE + 2
            edge = ' stroke="#b00020" stroke-width="2" stroke-dasharray="4 2"' if failed else ""
            out.append(f'<rect x="{left:.1f}" y="{y}" width="{max(right - left, 2):.1f}" height="{LANE - 4}" '
                       f'fill="{colour(key)}"{edge}><title>{escape(f"job {b.job_id} {b.rule} ({b.user}), {b.state}")}'
                       f"</title></rect>")
    # The legend: whose (or which rule) each colour is, and what a failed job looks like.
    x0, y0 = LEFT, TOP + lanes * LANE + BOTTOM + 6
    for key in [*keys[:MAX_LEGEND], *([f"{len(keys) - MAX_LEGEND} more"] if len(keys) > MAX_LEGEND else [])]:
        fill = colour(key) if key in keys else "#ffffff"
        out.append(f'<rect x="{x0}" y="{y0}" width="10" height="10" fill="{fill}"/>'
                   f'<text x="{x0 + 14}" y="{y0 + 9}" fill="#222">{escape(key[:24])}</text>')
        x0 += 24 + 7 * min(len(key), 24)
    if any(b.state not in GOOD for b in drawn):
        out.append(f'<rect x="{x0}" y="{y0}" width="10" height="10" fill="#ffffff" stroke="#b00020" '
                   f'stroke-width="2" stroke-dasharray="4 2"/>'
                   f'<text x="{x0 + 14}" y="{y0 + 9}" fill="#222">failed</text>')
    out.append("</svg>")
    return "\n".join(out)
