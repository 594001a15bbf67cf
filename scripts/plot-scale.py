#!/usr/bin/env python3
"""Draw the operator-at-scale results (docs/bench/scale.jsonl, one JSON line per run of
scripts/bench-scale.sh) as an SVG: four panels against the fleet's findings (machines × findings
per machine) — first-scan finish time after the last Job, operator peak RSS, kube-apiserver peak
RSS and etcd database size — one series per build (label `build`, else `profile`). Standard
library only, no network.

Usage: scripts/plot-scale.py [RESULTS.jsonl [OUT.svg]]
(defaults: docs/bench/scale.jsonl, docs/bench/scale.svg)
"""

import json
import sys
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
PANELS = [
    ("first scan: finish after the last Job (s)", lambda r: (r.get("first") or {}).get("finishSeconds")),
    ("operator peak RSS (MiB)", lambda r: r.get("operatorPeakMiB")),
    ("kube-apiserver peak RSS (MiB)", lambda r: r.get("kube-apiserverPeakMiB")),
    ("etcd database (MiB)", lambda r: r.get("etcdDbMiB")),
]
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
W, H, PAD = 360, 240, 48


def series_of(runs):
    out = {}
    for r in runs:
        name = r.get("build") or r.get("profile") or "?"
        out.setdefault(name, []).append(r)
    return out


def panel(x0, y0, title, value, series):
    pts = {
        name: sorted(
            (r["machines"] * r["findingsPerMachine"], value(r))
            for r in runs
            if value(r) is not None
        )
        for name, runs in series.items()
    }
    xs = [x for p in pts.values() for x, _ in p] or [1]
    ys = [y for p in pts.values() for _, y in p] or [1]
    xmax, ymax = max(xs) * 1.1, max(ys) * 1.15 or 1

    def sx(x):
        return x0 + PAD + (W - 2 * PAD) * x / xmax

    def sy(y):
        return y0 + H - PAD + -(H - 2 * PAD) * y / ymax

    parts = [
        f'<text x="{x0 + W / 2}" y="{y0 + 20}" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(xmax)}" y2="{sy(0)}" stroke="#444"/>',
        f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(0)}" y2="{sy(ymax)}" stroke="#444"/>',
        f'<text x="{x0 + W / 2}" y="{y0 + H - 10}" text-anchor="middle" font-size="11">findings</text>',
    ]
    for i in range(5):
        yv = ymax * i / 4
        xv = xmax * i / 4
        parts.append(f'<text x="{sx(0) - 4}" y="{sy(yv) + 4}" text-anchor="end" font-size="10">{yv:.0f}</text>')
        parts.append(f'<text x="{sx(xv)}" y="{sy(0) + 14}" text-anchor="middle" font-size="10">{xv:.0f}</text>')
    for i, (name, p) in enumerate(sorted(pts.items())):
        color = COLORS[i % len(COLORS)]
        if len(p) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in p)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}"/>')
        for x, y in p:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}"/>')
            parts.append(f'<text x="{sx(x) + 6:.1f}" y="{sy(y) - 6:.1f}" font-size="10" fill="{color}">{y:.0f}</text>')
    return parts


def main():
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs/bench/scale.jsonl"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "docs/bench/scale.svg"
    runs = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    series = series_of(runs)
    parts = []
    for i, (title, value) in enumerate(PANELS):
        parts += panel((i % 2) * W, (i // 2) * H + 30, title, value, series)
    for i, name in enumerate(sorted(series)):
        color = COLORS[i % len(COLORS)]
        parts.append(f'<rect x="{10 + i * 240}" y="8" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{24 + i * 240}" y="17" font-size="11">{escape(name)}</text>')
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{2 * H + 30}" '
        f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )
    out.write_text(svg)
    print(f"{out}: {len(runs)} runs, {len(series)} series")


if __name__ == "__main__":
    main()
