"""``report.html``: the evaluation as one offline page.

A table with one row per scene, worst first by a chosen column (a menu and the column headers
re-sort it in the page), each scene's thumbnails as embedded PNG data URIs, histograms of the
metrics as inline SVG, and per row the shell-quoted ``dsviewer`` command that opens the scene.

The page loads nothing: no network, no CDN, no external file; a Content-Security-Policy forbids
every source but inline styles, the inline script and ``data:`` images. Every string that comes
from files (scene keys, paths, error messages) goes through :func:`html.escape`; scene keys come
from chunk files, which are untrusted.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np

from dsviewer.viewer.evaluation.columns import METRIC_BY_NAME, METRICS, STATUS_OK, THUMBNAIL_NAMES
from dsviewer.viewer.evaluation.records import SceneRecord

HISTOGRAM_BINS = 20
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")  # fmt: skip

STYLE = """
body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; } h2 { font-size: 15px; margin-top: 20px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 3px 6px; }
th { background: #f4f4f4; position: sticky; top: 0; } th[data-col] { cursor: pointer; }
th[data-sorted=first]::after { content: " \\25BC"; }
th[data-sorted=reversed]::after { content: " \\25B2"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.missing td { color: #777; } tr.failed td { background: #fff1f1; }
td.thumbs { white-space: nowrap; } td.thumbs img { margin-right: 2px; vertical-align: middle; }
td.command code { display: block; min-width: 30em; font-size: 11px; white-space: pre-wrap;
                  word-break: break-all; }
.hist { display: inline-block; margin: 0 12px 12px 0; vertical-align: top; }
.note { color: #555; max-width: 1000px; }
"""

SCRIPT = """
const table = document.getElementById('scenes');
const menu = document.getElementById('sort');
let current = menu.value, reversed = false;
function sortBy(name, reverse) {
  const header = Array.from(table.tHead.rows[0].cells).find(c => c.dataset.col === name);
  if (!header) return;
  const index = header.cellIndex, worse = header.dataset.worse, sign = reverse ? -1 : 1;
  const rows = Array.from(table.tBodies[0].rows);
  rows.sort((a, b) => {
    const x = a.cells[index].dataset.v, y = b.cells[index].dataset.v;
    if (x === undefined || y === undefined) return (x === undefined) - (y === undefined);
    if (worse === 'text') return sign * (x < y ? -1 : x > y ? 1 : 0);
    const d = worse === 'far_from_1'  // a ratio: the farther from 1, the worse
      ? Math.abs(Math.log(parseFloat(x))) - Math.abs(Math.log(parseFloat(y)))
      : parseFloat(x) - parseFloat(y);
    return sign * (worse === 'low' ? d : -d);
  });
  const fragment = document.createDocumentFragment();
  rows.forEach((row, i) => { row.cells[0].textContent = i + 1; fragment.appendChild(row); });
  table.tBodies[0].appendChild(fragment);
  for (const cell of table.tHead.rows[0].cells) delete cell.dataset.sorted;
  header.dataset.sorted = reverse ? 'reversed' : 'first';
  menu.value = name;
  current = name;
  reversed = reverse;
}
menu.addEventListener('change', () => sortBy(menu.value, false));
for (const cell of table.tHead.rows[0].cells) {
  const name = cell.dataset.col;
  if (name) cell.addEventListener('click', () => sortBy(name, name === current && !reversed));
}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def worst_first(records: Sequence[SceneRecord], sort_by: str) -> list[SceneRecord]:
    """Records ordered worst first by ``sort_by``; scenes without the value last, in order."""
    metric = METRIC_BY_NAME[sort_by]
    ranked = [r for r in records if r.metrics.get(sort_by) is not None]
    rest = [r for r in records if r.metrics.get(sort_by) is None]
    return sorted(ranked, key=lambda r: metric.worst_first_key(r.metrics[sort_by])) + rest


def histogram_svg(name: str, values: Sequence[float], width: int = 260,
                  height: int = 110) -> str:  # fmt: skip
    """One metric's histogram over the scenes as an inline SVG (bars, range, counts)."""
    title = f"{name} ({len(values)} scenes)"
    if not values:
        return f'<div class="hist"><b>{esc(title)}</b><br><i>no values</i></div>'
    low, high = float(min(values)), float(max(values))
    span = (low - 0.5, high + 0.5) if high <= low else (low, high)
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64), bins=HISTOGRAM_BINS,
                             range=span)  # fmt: skip
    top, plot_h, bar_w = 14, height - 44, width / HISTOGRAM_BINS  # room for the labels
    tallest = max(1, int(counts.max()))
    bars = "".join(
        f'<rect x="{i * bar_w:.1f}" y="{top + plot_h - plot_h * c / tallest:.1f}" '
        f'width="{bar_w - 1:.1f}" height="{plot_h * c / tallest:.1f}" fill="#4a78b5">'
        f"<title>{c} scenes</title></rect>"
        for i, c in enumerate(counts.tolist())
    )
    return (
        f'<div class="hist"><b>{esc(title)}</b><br>'
        f'<svg width="{width}" height="{height}" '
        f'role="img" aria-label="{esc(title)}">{bars}'
        f'<text x="0" y="{height - 8}" font-size="11">{esc(number(low))}</text>'
        f'<text x="{width}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"{esc(number(high))}</text>"
        f'<text x="{width}" y="10" font-size="10" text-anchor="end">{tallest} scenes</text>'
        "</svg></div>"
    )


ROW_SORTS = {
    "key": ("text", "key (A to Z)"),
    "status": ("text", "status (A to Z)"),
    "views": ("high", "views (most first)"),
    "seconds": ("high", "seconds (slowest first)"),
}
"""The non-metric columns the page sorts by: name -> (data-worse, 'text': A to Z; menu label)."""


def _sortable(name: str) -> str:
    return f'<th data-col="{name}" data-worse="{ROW_SORTS[name][0]}">{name}</th>'


def _header() -> str:
    cells = ["<th>#</th>", _sortable("key"), _sortable("status"),
             "<th>image, coarse, final depth, residual (view 0)</th>",
             _sortable("views"), _sortable("seconds")]  # fmt: skip
    cells += [
        f'<th data-col="{esc(m.name)}" data-worse="{m.worse}" title="{esc(m.meaning)}">'
        f"{esc(m.name)}</th>"
        for m in METRICS
    ]
    cells.append("<th>open it in dsviewer</th>")
    return "<tr>" + "".join(cells) + "</tr>"


def _row(position: int, record: SceneRecord, command: str, with_thumbnails: bool) -> str:
    def numeric(value: float | None) -> str:
        if value is None:
            return '<td class="num"></td>'
        return f'<td class="num" data-v="{esc(repr(value))}">{esc(number(value))}</td>'

    cells = [f"<td>{position}</td>", f'<td data-v="{esc(record.key)}">{esc(record.key)}</td>']
    status = esc(record.status) + (f"<br><small>{esc(record.reason)}</small>"
                                   if record.reason else "")  # fmt: skip
    cells.append(f'<td data-v="{esc(record.status)}">{status}</td>')
    images = ""
    if with_thumbnails:
        images = "".join(
            f'<img alt="{name}" title="{name}" src="data:image/png;base64,'
            f'{esc(record.thumbnails[name])}">'
            for name in THUMBNAIL_NAMES if name in record.thumbnails
        )  # fmt: skip
    cells.append(f'<td class="thumbs">{images}</td>')
    cells += [numeric(record.views), numeric(record.seconds)]
    cells += [numeric(record.metrics.get(m.name)) for m in METRICS]
    cells.append(f'<td class="command"><code>{esc(command)}</code></td>')
    row_class = "" if record.status == STATUS_OK else f' class="{esc(record.status)}"'
    return f"<tr{row_class}>" + "".join(cells) + "</tr>"


def render_report(
    records: Sequence[SceneRecord],
    *,
    sort_by: str,
    commands: Mapping[str, str],
    max_thumbnails: int,
    title: str,
    facts: Sequence[tuple[str, str]],
    aggregation: str,
) -> str:
    """The page as text.

    Args:
        records: one per scene (ok, failed, missing), in any order.
        sort_by: the metric to rank by initially (worst first).
        commands: key -> the shell-quoted ``dsviewer`` command that opens the scene.
        max_thumbnails: thumbnails are embedded for this many rows from the top (they dominate
            the page's size: about 16 kB per scene).
        title: the page title (escaped here); facts: (label, value) lines shown on top.
        aggregation: how the dataset figures are aggregated, shown under the histograms.
    """
    ordered = worst_first(records, sort_by)
    ok = [r for r in records if r.status == STATUS_OK]
    histograms = "".join(
        histogram_svg(m.name, [r.metrics[m.name] for r in ok if r.metrics.get(m.name) is not None
                               and math.isfinite(r.metrics[m.name])])
        for m in METRICS
    )  # fmt: skip
    choices = [(m.name, f"{m.name} (worst = {m.worse})") for m in METRICS]
    choices += [(name, label) for name, (_, label) in ROW_SORTS.items()]
    options = "".join(
        f'<option value="{esc(name)}"{" selected" if name == sort_by else ""}>'
        f"{esc(label)}</option>"
        for name, label in choices
    )
    rows = "\n".join(
        _row(i + 1, r, commands.get(r.key, ""), i < max_thumbnails) for i, r in enumerate(ordered)
    )
    fact_lines = "".join(f"<li><b>{esc(label)}</b>: {esc(value)}</li>" for label, value in facts)
    thumbs_note = (f"Thumbnails are embedded for the first {max_thumbnails} rows by "
                   f"{esc(sort_by)} (--thumbnails sets how many)."
                   if len(ordered) > max_thumbnails else "")  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{esc(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{esc(title)}</h1>
<ul>{fact_lines}</ul>
<h2>Metrics over the scenes with status ok</h2>
<div>{histograms}</div>
<p class="note">{esc(aggregation)}</p>
<h2>Scenes</h2>
<p>Worst first by <select id="sort">{options}</select> (or click a column header; a second
click reverses the order).
{thumbs_note}</p>
<table id="scenes"><thead>{_header()}</thead>
<tbody>
{rows}
</tbody></table>
<script>{SCRIPT}</script>
</body></html>
"""
