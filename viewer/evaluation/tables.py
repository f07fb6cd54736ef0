"""``scenes.csv`` (one row per scene) and ``summary.json`` (the dataset's aggregates)."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dsviewer.io.atomic import atomic_write
from dsviewer.viewer.evaluation.columns import (
    CSV_COLUMNS,
    METRICS,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_OK,
)
from dsviewer.viewer.evaluation.records import SceneRecord

AGGREGATION = (
    "Each metric is computed per scene first (GT errors and shares pool the pixels of the "
    "scene's context views; target_psnr is the mean over its rendered target views). The "
    "dataset figures are statistics over the scenes with status ok that define the metric, each "
    "scene weighing one: mean (as the official evaluation averages PSNR over scenes), median, "
    "10th and 90th percentile (linear interpolation), min and max; 'worst' names the scene at "
    "the bad end (high or low as 'worse' says). Missing and failed scenes are counted, never "
    "averaged."
)


def record_row(record: SceneRecord) -> dict[str, object]:
    """One record as a ``scenes.csv`` row, typed: None where a cell is empty."""
    return {
        "key": record.key,
        "status": record.status,
        "reason": record.reason,
        "views": record.views,
        "targets": record.targets,
        "seconds": None if record.seconds is None else round(record.seconds, 3),
        **{metric.name: record.metrics.get(metric.name) for metric in METRICS},
    }


def csv_row(record: SceneRecord) -> dict[str, object]:
    """The CSV cells of one record: empty for None, floats in their shortest exact form."""
    return csv_cells(record_row(record), CSV_COLUMNS)


def csv_cells(row: dict[str, object], columns: Sequence[str]) -> dict[str, object]:
    return {name: "" if row.get(name) is None else row[name] for name in columns}


def write_csv(path: Path, records: Sequence[SceneRecord]) -> None:
    write_rows(path, [record_row(record) for record in records], CSV_COLUMNS)


def write_rows(path: Path, rows: Sequence[dict[str, object]], columns: Sequence[str]) -> None:
    """A CSV file of typed rows (None: an empty cell), written atomically."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(csv_cells(row, columns))
    with atomic_write(path) as handle:
        handle.write(text.getvalue().encode("utf-8", "replace"))


def read_rows(path: Path) -> list[dict[str, object]]:
    """The typed rows of a ``scenes.csv`` this module wrote (the inverse of :func:`write_csv`:
    counts as int, seconds and metrics as float, empty cells as None)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    numbers = {"views": int, "targets": int, "seconds": float,
               **{metric.name: float for metric in METRICS}}  # fmt: skip
    return [{name: (numbers[name](cell) if cell else None) if name in numbers else cell
             for name, cell in row.items()} for row in rows]  # fmt: skip


def metric_aggregates(records: Sequence[SceneRecord]) -> dict[str, dict]:
    """Per metric: count, mean, median, p10, p90, min, max and the worst scene (see AGGREGATION)."""
    ok = [record for record in records if record.status == STATUS_OK]
    out: dict[str, dict] = {}
    for metric in METRICS:
        pairs = [(r.metrics.get(metric.name), r.key) for r in ok]
        pairs = [(v, key) for v, key in pairs if v is not None and math.isfinite(v)]
        if not pairs:
            out[metric.name] = {"scenes": 0, "meaning": metric.meaning, "worse": metric.worse}
            continue
        values = np.array([v for v, _ in pairs], dtype=np.float64)
        p10, median, p90 = np.percentile(values, [10.0, 50.0, 90.0])
        worst = min(pairs, key=lambda pair: metric.worst_first_key(pair[0]))
        out[metric.name] = {
            "scenes": len(pairs),
            "mean": float(values.mean()),
            "median": float(median),
            "p10": float(p10),
            "p90": float(p90),
            "min": float(values.min()),
            "max": float(values.max()),
            "worst": {"key": worst[1], "value": worst[0]},
            "meaning": metric.meaning,
            "worse": metric.worse,
        }
    return out


def summary(records: Sequence[SceneRecord], run: dict, timing: dict,
            skipped_by_index: int, not_evaluated: int = 0) -> dict:  # fmt: skip
    """The content of ``summary.json`` (``not_evaluated``: scenes of the test set that no run
    in the folder has evaluated yet, when ``--scene`` ran others)."""
    counts = Counter(record.status for record in records)
    return {
        "run": run,
        "scenes": {
            "total": len(records),
            STATUS_OK: counts[STATUS_OK],
            STATUS_MISSING: counts[STATUS_MISSING],
            STATUS_FAILED: counts[STATUS_FAILED],
            "skipped_by_index": skipped_by_index,
            "not_evaluated": not_evaluated,
        },
        "aggregation": AGGREGATION,
        "metrics": metric_aggregates(records),
        "timing": timing,
    }
