"""``report.html`` of ``dsviewer eval --ckpt-dir``: every metric as a curve over the steps.

One inline SVG per metric of :data:`dsviewer.viewer.evaluation.columns.METRICS` that any row
defines: a thin line per scene (hover: its key) and a thick one for the mean over the scenes
with status ok at that step; then a table of the steps with each step's own report linked. The
page loads nothing (the Content-Security-Policy of ``report.py``: no script is needed here);
scene keys, paths and notes come from files and are escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from dsviewer.viewer.evaluation.columns import METRICS, STATUS_OK
from dsviewer.viewer.evaluation.report import CSP, STYLE, esc, number

if TYPE_CHECKING:
    from dsviewer.viewer.watch.checkpoints import StepCheckpoint

SCENE_COLORS = ("#4a78b5", "#d9822b", "#3d9a5b", "#b5475a", "#7d5fb2", "#8c6d3f", "#c25fa8",
                "#6f7f8f")  # fmt: skip
CURVE_STYLE = """
.curve { display: inline-block; margin: 0 14px 14px 0; vertical-align: top; }
a { color: #2a5d9f; }
"""


def scene_color(position: int) -> str:
    return SCENE_COLORS[position % len(SCENE_COLORS)]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def step_means(rows: Sequence[Mapping[str, object]], name: str) -> dict[int, float | None]:
    """Per step: the mean of metric ``name`` over its ok rows that define it."""
    by_step: dict[int, list[float]] = {}
    for row in rows:
        by_step.setdefault(int(row["step"]), [])  # type: ignore[arg-type]
        value = row.get(name)
        if row.get("status") == STATUS_OK and isinstance(value, float) and math.isfinite(value):
            by_step[int(row["step"])].append(value)  # type: ignore[arg-type]
    return {step: _mean(values) for step, values in sorted(by_step.items())}


def curve_svg(name: str, series: Mapping[str, Sequence[tuple[int, float]]],
              mean: Sequence[tuple[int, float]], width: int = 300, height: int = 170) -> str:
    """Lines of (step, value) points: one per scene in ``series``, and ``mean`` drawn thick."""
    points = [p for line in series.values() for p in line] + list(mean)
    if not points:
        return ""
    steps = [p[0] for p in points]
    values = [p[1] for p in points]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(values), max(values)
    if y1 <= y0:
        y0, y1 = y0 - 0.5 * (abs(y0) or 1), y1 + 0.5 * (abs(y1) or 1)
    left, top, plot_w, plot_h = 62, 8, width - 72, height - 36

    def xy(step: int, value: float) -> str:
        x = left + (plot_w * (step - x0) / (x1 - x0) if x1 > x0 else plot_w / 2)
        return f"{x:.1f},{top + plot_h * (y1 - value) / (y1 - y0):.1f}"

    def line(data: Sequence[tuple[int, float]], color: str, stroke: float, label: str) -> str:
        coords = " ".join(xy(s, v) for s, v in data)
        dots = "".join(f'<circle cx="{xy(s, v).split(",")[0]}" cy="{xy(s, v).split(",")[1]}" '
                       f'r="{stroke + 0.8:.1f}" fill="{color}"/>' for s, v in data)  # fmt: skip
        return (f'<g><title>{esc(label)}</title><polyline points="{coords}" fill="none" '
                f'stroke="{color}" stroke-width="{stroke}"/>{dots}</g>')

    lines = "".join(line(data, scene_color(i), 1.0, key)
                    for i, (key, data) in enumerate(series.items()) if data)  # fmt: skip
    if mean:
        lines += line(mean, "#111", 2.5, "mean over the ok scenes")
    bottom = top + plot_h
    axes = (f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="#999"/>'
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#999"/>'
            f'<text x="{left - 4}" y="{top + 9}" font-size="10" text-anchor="end">'
            f"{esc(number(y1))}</text>"
            f'<text x="{left - 4}" y="{bottom}" font-size="10" text-anchor="end">'
            f"{esc(number(y0))}</text>"
            f'<text x="{left}" y="{bottom + 14}" font-size="10">step {x0}</text>'
            f'<text x="{left + plot_w}" y="{bottom + 14}" font-size="10" text-anchor="end">'
            f"step {x1}</text>")  # fmt: skip
    return (f'<div class="curve"><b>{esc(name)}</b><br><svg width="{width}" height="{height}" '
            f'role="img" aria-label="{esc(name)} over the steps">{axes}{lines}</svg></div>')


def render_step_report(rows: Sequence[Mapping[str, object]], steps: Sequence[StepCheckpoint],
                       links: Mapping[int, str], notes: Sequence[str], folder: str) -> str:
    """The page as text. ``rows``: ``steps.csv``'s typed rows; ``links``: step -> the relative
    path of that step's own report; ``notes``: the files of the folder that were skipped."""
    keys = list(dict.fromkeys(str(row["key"]) for row in rows))
    curves = []
    for metric in METRICS:
        series = {key: [(int(r["step"]), float(r[metric.name]))  # type: ignore[arg-type]
                        for r in rows if r["key"] == key and r["status"] == STATUS_OK
                        and isinstance(r.get(metric.name), float)]
                  for key in keys}  # fmt: skip
        mean = [(s, v) for s, v in step_means(rows, metric.name).items() if v is not None]
        curves.append(curve_svg(f"{metric.name} (worse: {metric.worse})", series, mean))
    header = "".join(f"<th>{esc(h)}</th>" for h in
                     ("step", "from", "checkpoint", "ok", "failed or missing", "report"))
    header += "".join(f"<th>{esc(m.name)}</th>" for m in METRICS)
    means = {m.name: step_means(rows, m.name) for m in METRICS}
    body = []
    for step in steps:
        mine = [r for r in rows if r["step"] == step.step]
        ok = sum(r["status"] == STATUS_OK for r in mine)
        cells = [str(step.step), step.step_source, step.path.name, str(ok), str(len(mine) - ok)]
        row = "".join(f"<td>{esc(cell)}</td>" for cell in cells)
        row += f'<td><a href="{esc(links[step.step])}">report</a></td>'
        row += "".join(f'<td class="num">{esc(number(means[m.name].get(step.step)))}</td>'
                       for m in METRICS)  # fmt: skip
        body.append(f"<tr>{row}</tr>")
    facts = [("checkpoint folder", folder), ("steps", f"{len(steps)}: {steps[0].step} to "
              f"{steps[-1].step}" if steps else "none"), ("scenes", str(len(keys)))]  # fmt: skip
    fact_lines = "".join(f"<li><b>{esc(label)}</b>: {esc(value)}</li>" for label, value in facts)
    note_lines = "".join(f"<li>{esc(note)}</li>" for note in notes)
    legend = " ".join(f'<span style="color:{scene_color(i)}">&#9632;</span> {esc(key)}'
                      for i, key in enumerate(keys))  # fmt: skip
    skipped = f"<h2>Files skipped</h2><ul>{note_lines}</ul>" if notes else ""
    title = f"dsviewer eval: {len(steps)} steps of {folder}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{esc(title)}</title><style>{STYLE}{CURVE_STYLE}</style></head>
<body>
<h1>{esc(title)}</h1>
<ul>{fact_lines}</ul>
<h2>Metrics over the steps</h2>
<p class="note">Thin lines: one scene each (hover for its key); thick: the mean over the scenes
with status ok at that step. Each metric's meaning and how a step's scenes are evaluated:
the step's own report.</p>
<p>{legend} <b>&#9632;</b> mean</p>
<div>{"".join(curves)}</div>
<h2>Steps</h2>
<table><thead><tr>{header}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
{skipped}
</body></html>
"""
