"""Plot ``partial-results.json`` (from ``bench_partial.py --save``) as an SVG, by hand.

    python benchmarks/plot_partial.py        # writes docs/partial-results.svg

Extra CPU per delta against answer size, both axes logarithmic: openai-python's re-parse of
the snapshot grows with the answer, ours stays flat. No plotting library: the SVG is written
as text, so the plot needs nothing beyond Python.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "partial-results.svg"

WIDTH, HEIGHT = 720, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 230, 40, 75
SERIES = (
    ("jiter_us", "jiter re-parse, openai-python's way", "#d9534f"),
    ("stream_us", "our stream, parsed on every delta", "#2b7bb9"),
    ("typed_us", "our parser, typed partial", "#5cb85c"),
    ("ours_us", "our parser, plain partial", "#8e6cbf"),
)


def _scale(low: float, high: float, size: float, flip: bool) -> Any:
    low_log, high_log = math.log10(low), math.log10(high)

    def place(value: float) -> float:
        share = (math.log10(value) - low_log) / (high_log - low_log)
        return size * (1 - share) if flip else size * share

    return place


def svg(results: dict[str, Any]) -> str:
    rows = results["rows"]
    sizes = [row["kb"] for row in rows]
    values = [row[key] for row in rows for key, _, _ in SERIES if row.get(key)]
    low = 10 ** math.floor(math.log10(min(values)))
    high = 10 ** math.ceil(math.log10(max(values)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x_of = _scale(min(sizes), max(sizes), plot_w, flip=False)
    y_of = _scale(low, high, plot_h, flip=True)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="system-ui, sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">Partial structured output: '
        f"extra CPU per {results['delta']}-character delta</text>",
        f'<g transform="translate({LEFT},{TOP})">',
        f'<rect width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    decade = low
    while decade <= high * 1.0001:
        y = y_of(decade)
        label = f"{decade:g}"
        parts.append(f'<line x1="0" x2="{plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="-8" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        decade *= 10
    for size in sizes:
        x = x_of(size)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{plot_h}" stroke="#eee"/>')
        parts.append(f'<text x="{x:.1f}" y="{plot_h + 18}" text-anchor="middle">{size} KB</text>')
    parts.append(
        f'<text x="{plot_w / 2:.0f}" y="{plot_h + 40}" text-anchor="middle">answer size</text>'
    )
    parts.append(
        f'<text transform="translate(-50,{plot_h / 2:.0f}) rotate(-90)" text-anchor="middle">'
        "µs of CPU per delta (log; lower is better)</text>"
    )
    for index, (key, label, color) in enumerate(SERIES):
        points = [(x_of(row["kb"]), y_of(row[key])) for row in rows if row.get(key)]
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points]
        legend_y = 10 + index * 34
        parts.append(
            f'<line x1="{plot_w + 14}" x2="{plot_w + 34}" y1="{legend_y}" y2="{legend_y}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        first, _, rest = label.partition(",")
        parts.append(
            f'<text x="{plot_w + 40}" y="{legend_y + 4}">{first}{"," if rest else ""}</text>'
        )
        if rest:
            parts.append(f'<text x="{plot_w + 40}" y="{legend_y + 18}">{rest.strip()}</text>')
    parts.append("</g>")
    parts.append(
        f'<text x="{LEFT}" y="{HEIGHT - 8}" fill="#666">Python {results["python"]}; '
        "benchmarks/bench_partial.py --save, then benchmarks/plot_partial.py</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    results = json.loads((HERE / "partial-results.json").read_text())
    OUT.write_text(svg(results))
    print(f"plot written to {OUT}")


if __name__ == "__main__":
    main()
