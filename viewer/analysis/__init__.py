"""Geometry diagnostics of one scene's :class:`~dsviewer.viewer.layers.Layers`: pure functions, no
GUI.

:func:`analyze` runs every per-pixel check on the two predicted depth layers (coarse and
final): multi-view consistency (:mod:`.consistency`), near/far clamps, depth edges and flying
pixels (:mod:`.flags`), with GT the relative error and the depth metrics (:mod:`.metrics`), and
with a capture's SfM points the same against them (:mod:`.sfm_metrics`).
The maps are in the user's frame and units, like the layers. ``SceneAnalysis.summary()`` is the
analysis part of ``metrics.json``; its keys are stable (the eval report reads them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import Tensor

from dsviewer.depth_metrics import DELTA_THRESHOLD
from dsviewer.stage_timer import stage
from dsviewer.viewer.analysis.consistency import (
    Consistency,
    Lookup,
    Occlusions,
    multiview_consistency,
)
from dsviewer.viewer.analysis.flags import clamp_masks, depth_edges
from dsviewer.viewer.analysis.gaussians import gaussian_scalar
from dsviewer.viewer.analysis.metrics import gt_error_map, gt_metrics, value_stats
from dsviewer.viewer.analysis.sfm_metrics import (
    MIN_POINTS,
    relative_error,
    sfm_metrics,
    sfm_summary,
)
from dsviewer.viewer.layers import Layers

ANALYSED_LAYERS = ("coarse", "final")
"""Depth layers the checks run on; other point layers borrow one (see :func:`analysed_layer`)."""


@dataclass(frozen=True)
class AnalysisSettings:
    consistency_threshold: float = 0.05
    """Relative depth error above which a pixel counts as inconsistent across views."""

    consistency_lookup: Lookup = "bilinear"
    """How the other view's depth is read at a projected point."""

    consistency_occlusions: Occlusions = "count"
    """``skip``: leave out projections behind the other view's surface (possible occlusions)."""

    clamp_rtol: float = 1e-5
    """Relative tolerance on inverse depth for 'at the near/far clamp'."""

    edge_threshold: float = 0.1
    """Relative depth jump between 4-neighbours that marks a depth edge."""

    delta_threshold: float = DELTA_THRESHOLD
    """Ratio threshold of the delta accuracy metric."""

    sfm_min_points: int = MIN_POINTS
    """SfM metrics resting on fewer observations are replaced by "too few SfM points"."""


@dataclass
class DepthAnalysis:
    """Every check of one depth layer; maps are ``[V, H, W]``."""

    consistency: Consistency
    at_near: Tensor  # bool
    at_far: Tensor  # bool
    edge: Tensor  # bool
    flying: Tensor  # bool
    gt_error: Tensor | None = None  # (d - gt) / gt, NaN where GT is unknown
    gt_metrics: dict | None = None
    sfm_error: Tensor | None = None  # [N] (d - sfm) / sfm at each SfM observation
    sfm_metrics: dict | None = None


def analysed_layer(point_layer: str) -> str | None:
    """The analysed depth layer a point layer shows: the residual layer is the final depth."""
    if point_layer in ANALYSED_LAYERS:
        return point_layer
    return "final" if point_layer == "residual" else None


@dataclass
class SceneAnalysis:
    settings: AnalysisSettings
    layers: dict[str, DepthAnalysis]  # "coarse", "final"
    extra: dict = field(default_factory=dict)

    def of(self, point_layer: str) -> DepthAnalysis | None:
        """The checks behind ``point_layer`` (None for GT and Gaussian centres)."""
        key = analysed_layer(point_layer)
        return None if key is None else self.layers[key]

    def summary(self) -> dict:
        """JSON-ready statistics (plain floats, ints, lists, dicts)."""

        def share(mask: Tensor) -> float:
            return float(mask.double().mean())

        final, coarse = self.layers["final"], self.layers["coarse"]
        out = {
            "settings": asdict(self.settings),
            "consistency": {
                key: self.layers[key].consistency.summary() for key in ("final", "coarse")
            },
            "clamp": {
                "final_at_near_share": share(final.at_near),
                "final_at_far_share": share(final.at_far),
                "coarse_at_near_share": share(coarse.at_near),
                "coarse_at_far_share": share(coarse.at_far),
                "per_view_final_at_near_share": [share(m) for m in final.at_near],
                "per_view_final_at_far_share": [share(m) for m in final.at_far],
            },
            "edges": {
                "edge_share": share(final.edge),
                "flying_share": share(final.flying),
                "coarse_flying_share": share(coarse.flying),
                "per_view_flying_share": [share(m) for m in final.flying],
            },
        }
        if final.gt_metrics is not None:
            out["gt"] = {"coarse": coarse.gt_metrics, "final": final.gt_metrics}
        out.update(self.extra)
        return out


def analyze_depth(
    layers: Layers, points: Tensor, depth: Tensor, settings: AnalysisSettings
) -> DepthAnalysis:
    """The checks of one depth map ``[V, H, W]`` and its world points ``[V, H, W, 3]``."""
    context = layers.context
    at_near, at_far = clamp_masks(depth, context.near, context.far, settings.clamp_rtol)
    edge, flying = depth_edges(depth, settings.edge_threshold)
    with stage("consistency"):
        consistency = multiview_consistency(
            points, depth, context.intrinsics, context.T_world_cam.float(),
            threshold=settings.consistency_threshold, lookup=settings.consistency_lookup,
            occlusions=settings.consistency_occlusions, edge_threshold=settings.edge_threshold,
        )  # fmt: skip
    result = DepthAnalysis(consistency=consistency, at_near=at_near, at_far=at_far, edge=edge,
                           flying=flying)  # fmt: skip
    if layers.gt_depth is not None:
        result.gt_error = gt_error_map(depth, layers.gt_depth)
        result.gt_metrics = gt_metrics(depth, layers.gt_depth, settings.delta_threshold)
    if layers.sfm is not None:
        result.sfm_error = relative_error(depth, layers.sfm)
        result.sfm_metrics = sfm_metrics(depth, layers.sfm, settings.sfm_min_points,
                                         settings.delta_threshold)
    return result


def analyze(layers: Layers, settings: AnalysisSettings = AnalysisSettings()) -> SceneAnalysis:
    """Every analysis of this package on one scene's layers."""
    with stage("analysis"):
        return _analyze(layers, settings)


def _analyze(layers: Layers, settings: AnalysisSettings) -> SceneAnalysis:
    analysis = SceneAnalysis(
        settings=settings,
        layers={
            "coarse": analyze_depth(layers, layers.coarse_points, layers.coarse_depth, settings),
            "final": analyze_depth(layers, layers.final_points, layers.final_depth, settings),
        },
    )
    analysis.extra["residual"] = {
        "metric": value_stats(layers.residual_metric),
        "inverse": value_stats(layers.residual_inv),
        "abs_metric_mean": float(layers.residual_metric.abs().double().nanmean()),
    }
    analysis.extra["confidence"] = value_stats(layers.confidence)
    if layers.sfm is not None:
        analysis.extra["sfm"] = sfm_summary(
            layers.sfm, layers.num_views, analysis.layers["coarse"].sfm_metrics,
            analysis.layers["final"].sfm_metrics, settings.sfm_min_points)
    if layers.gaussians is not None:
        opacity = gaussian_scalar(layers.gaussians, "opacity")
        analysis.extra["gaussians"] = {
            "count": int(opacity.numel()),
            "opacity": value_stats(opacity),
            "scale": value_stats(gaussian_scalar(layers.gaussians, "scale")),
            "below_0.05_opacity_share": float((opacity < 0.05).double().mean()),
        }
    return analysis
