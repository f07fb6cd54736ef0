"""The columns of ``scenes.csv``: one place that names every per-scene metric and its meaning.

Each metric is computed once per scene by :mod:`dsviewer.viewer.evaluation.scene_metrics`; the
report,
the CSV and the dataset aggregates all iterate :data:`METRICS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Worse = Literal["high", "low", "far_from_1"]  # far_from_1: a ratio, worst the farthest from 1


@dataclass(frozen=True)
class Metric:
    name: str
    meaning: str
    worse: Worse  # which end of the scale ranks a scene as bad

    def worst_first_key(self, value: float) -> float:
        """Sort key that puts the worst value first."""
        if self.worse == "far_from_1":
            return -abs(math.log(value)) if value > 0 else -math.inf
        return -value if self.worse == "high" else value


METRICS: tuple[Metric, ...] = (
    Metric("gt_abs_rel_coarse", "AbsRel of the coarse MVS depth against GT, pixels of all "
           "context views pooled (empty without GT depth)", "high"),
    Metric("gt_abs_rel_final", "AbsRel of the final depth against GT, pooled likewise", "high"),
    Metric("gt_delta_final", "share of final-depth pixels with max(d/gt, gt/d) < 1.25", "low"),
    Metric("sfm_abs_rel_coarse", "AbsRel of the coarse MVS depth against the capture's SfM "
           "points (read bilinearly at each observed pixel), all context views pooled (empty "
           "without SfM points or with fewer than 20)", "high"),
    Metric("sfm_abs_rel_final", "AbsRel of the final depth against the SfM points, likewise",
           "high"),
    Metric("sfm_scale_final", "median of final depth / SfM depth: 1 when unbiased; away from 1 "
           "is a scale bias (wrong near/far or normalisation)", "far_from_1"),
    Metric("sfm_points", "SfM observations the final-depth SfM metrics rest on", "low"),
    Metric("inconsistent_coarse", "share of checked coarse-depth pixels that disagree with the "
           "other context views by more than the analysis threshold (multi-view consistency)",
           "high"),
    Metric("inconsistent_final", "the same for the final depth", "high"),
    Metric("clamp_final", "share of final-depth pixels at the near or far clamp", "high"),
    Metric("confidence_mean", "mean cost-volume confidence (maximum match probability)", "low"),
    Metric("residual_abs_mean", "mean |final - coarse| depth, in the scene's own units", "high"),
    Metric("residual_rel_mean", "mean |final - coarse| / coarse depth (unit-free)", "high"),
    Metric("target_psnr", "PSNR (dB) of the Gaussians rendered at the target views, mean over "
           "the rendered views (empty without target views or Gaussians)", "low"),
)  # fmt: skip
METRIC_BY_NAME = {metric.name: metric for metric in METRICS}
METRIC_NAMES = tuple(METRIC_BY_NAME)

STATUS_OK, STATUS_MISSING, STATUS_FAILED = "ok", "missing", "failed"
ROW_FIELDS = ("key", "status", "reason", "views", "targets", "seconds")
"""The non-metric columns, first in ``scenes.csv``: ``views``/``targets`` count context and
target views, ``seconds`` is the wall time of the scene on its rank (load to metrics)."""
CSV_COLUMNS = ROW_FIELDS + METRIC_NAMES

THUMBNAIL_NAMES = ("image", "coarse", "final", "residual")
"""Per scene, of its first context view: the image, the coarse and the final depth (one shared
range, the viewer's sequential map) and the metric residual final - coarse (the viewer's
diverging map: red = the final surface is farther)."""

DEFAULT_SORT_WITH_GT = "gt_abs_rel_final"
DEFAULT_SORT_WITHOUT_GT = "inconsistent_final"
