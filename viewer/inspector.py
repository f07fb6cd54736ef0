"""Click-a-point inspector: everything the model believed about one pixel (pure functions).

The cost-volume tensors (``match_probs``, ``depth_candidates``) live at feature resolution
``h x w``; a full-resolution pixel ``(u, v)`` maps to feature pixel ``(u * w // W, v * h // H)``,
the same nearest-neighbour mapping that upsamples the confidence map in :mod:`viewer.layers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from src.model.types import Prediction
from viewer.layers import Layers

if TYPE_CHECKING:
    from viewer.analysis import SceneAnalysis


class PixelOutOfRangeError(ValueError):
    """A view index or pixel coordinate outside the scene's context views."""


@dataclass
class PixelReport:
    view: int
    u: int  # column
    v: int  # row
    feature_u: int  # column at cost-volume resolution
    feature_v: int  # row at cost-volume resolution
    coarse_depth: float
    final_depth: float
    residual_inv: float  # mono residual, inverse depth
    residual_metric: float  # final - coarse depth
    confidence: float  # max match probability at the feature pixel
    near: float
    far: float
    coarse_point: tuple[float, float, float]
    final_point: tuple[float, float, float]
    gt_depth: float | None  # None without GT or where GT is unknown
    gt_abs_rel_coarse: float | None
    gt_abs_rel_final: float | None
    candidate_inv_depth: np.ndarray  # [D] float64, the cost volume's inverse-depth candidates
    probability: np.ndarray  # [D] float64, the softmax over them (sums to 1)
    # With a SceneAnalysis: multi-view relative errors (None where unchecked) and flags.
    consistency_final: float | None = None
    consistency_coarse: float | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def candidate_depth(self) -> np.ndarray:
        """``[D]`` metric depth of each candidate."""
        return 1.0 / self.candidate_inv_depth

    @property
    def argmax_depth(self) -> float:
        return float(self.candidate_depth[int(np.argmax(self.probability))])

    @property
    def expected_depth(self) -> float:
        """Depth of the probability-weighted mean inverse depth (the cost volume's estimate)."""
        return float(1.0 / np.sum(self.probability * self.candidate_inv_depth))

    def as_dict(self) -> dict:
        """Scalars only, JSON-ready (for a GUI markdown table or a log line)."""
        return {
            "view": self.view, "u": self.u, "v": self.v,
            "feature_u": self.feature_u, "feature_v": self.feature_v,
            "coarse_depth": self.coarse_depth, "final_depth": self.final_depth,
            "residual_inv": self.residual_inv, "residual_metric": self.residual_metric,
            "confidence": self.confidence, "near": self.near, "far": self.far,
            "gt_depth": self.gt_depth, "gt_abs_rel_coarse": self.gt_abs_rel_coarse,
            "gt_abs_rel_final": self.gt_abs_rel_final,
            "argmax_depth": self.argmax_depth, "expected_depth": self.expected_depth,
            "consistency_final": self.consistency_final,
            "consistency_coarse": self.consistency_coarse, "flags": list(self.flags),
        }  # fmt: skip


def feature_pixel(u: int, v: int, image_shape: tuple[int, int], feature_shape: tuple[int, int]):
    """``(feature_u, feature_v)`` of full-resolution pixel ``(u, v)`` (nearest, as upsampled)."""
    height, width = image_shape
    feat_h, feat_w = feature_shape
    return min(u * feat_w // width, feat_w - 1), min(v * feat_h // height, feat_h - 1)


def inspect_pixel(
    layers: Layers,
    prediction: Prediction,
    view: int,
    u: int,
    v: int,
    analysis: SceneAnalysis | None = None,
) -> PixelReport:
    """Every per-pixel quantity of context view ``view`` at column ``u``, row ``v``.

    With ``analysis`` (of the same layers) the report also carries the pixel's multi-view
    consistency errors and its flags: ``final at near clamp``, ``final at far clamp``,
    ``coarse at near clamp``, ``coarse at far clamp``, ``depth edge``, ``flying pixel``,
    ``inconsistent``. Raises :class:`PixelOutOfRangeError` outside the context views.
    """
    num_views = layers.num_views
    height, width = layers.image_shape
    if not (0 <= view < num_views and 0 <= u < width and 0 <= v < height):
        raise PixelOutOfRangeError(
            f"pixel (view={view}, u={u}, v={v}) is outside the context views: there are "
            f"{num_views} views of {width}x{height} pixels (u is the column, v the row, from 0)."
        )
    feat_h, feat_w = prediction.match_probs.shape[-2:]
    fu, fv = feature_pixel(u, v, (height, width), (feat_h, feat_w))
    probs = prediction.match_probs[view, :, fv, fu].detach().double().cpu().numpy()
    candidates = prediction.depth_candidates[view, :, fv, fu].detach().double().cpu().numpy()

    gt_depth = gt_coarse = gt_final = None
    if layers.gt_depth is not None and float(layers.gt_depth[view, v, u]) > 0:
        gt_depth = float(layers.gt_depth[view, v, u])
        gt_coarse = abs(float(layers.coarse_depth[view, v, u]) - gt_depth) / gt_depth
        gt_final = abs(float(layers.final_depth[view, v, u]) - gt_depth) / gt_depth

    def point(points: torch.Tensor) -> tuple[float, float, float]:
        x, y, z = (float(c) for c in points[view, v, u])
        return x, y, z

    report = PixelReport(
        view=view, u=u, v=v, feature_u=fu, feature_v=fv,
        coarse_depth=float(layers.coarse_depth[view, v, u]),
        final_depth=float(layers.final_depth[view, v, u]),
        residual_inv=float(layers.residual_inv[view, v, u]),
        residual_metric=float(layers.residual_metric[view, v, u]),
        confidence=float(layers.confidence[view, v, u]),
        near=float(layers.near[view]), far=float(layers.far[view]),
        coarse_point=point(layers.coarse_points), final_point=point(layers.final_points),
        gt_depth=gt_depth, gt_abs_rel_coarse=gt_coarse, gt_abs_rel_final=gt_final,
        candidate_inv_depth=candidates, probability=probs,
    )  # fmt: skip
    if analysis is not None:
        _add_analysis(report, analysis)
    return report


def _add_analysis(report: PixelReport, analysis: SceneAnalysis) -> None:
    at = (report.view, report.v, report.u)

    def finite_or_none(value: torch.Tensor) -> float | None:
        value = float(value)
        return value if np.isfinite(value) else None

    report.consistency_final = finite_or_none(analysis.consistency_final.rel_error[at])
    report.consistency_coarse = finite_or_none(analysis.consistency_coarse.rel_error[at])
    masks = {
        "final at near clamp": analysis.final_at_near,
        "final at far clamp": analysis.final_at_far,
        "coarse at near clamp": analysis.coarse_at_near,
        "coarse at far clamp": analysis.coarse_at_far,
        "depth edge": analysis.edge,
        "flying pixel": analysis.flying,
        "inconsistent": analysis.consistency_final.inconsistent,
    }
    report.flags = [name for name, mask in masks.items() if bool(mask[at])]


@dataclass
class ProbabilitySeries:
    """The cost-volume probability over depth candidates, sorted by increasing depth."""

    depth: np.ndarray  # [D] metric, ascending
    probability: np.ndarray  # [D]
    markers: dict[str, float]  # "coarse", "final", "argmax", "expected" and "gt" when known

    def as_uplot(self) -> tuple[tuple[np.ndarray, ...], tuple[dict, ...]]:
        """``(data, series)`` for ``server.gui.add_uplot(data, series, ...)``.

        ``data`` is ``(x, y)`` as float64 arrays; ``series`` holds plain dicts (uPlot's series
        options) so that this module does not import viser.
        """
        data = (self.depth.astype(np.float64), self.probability.astype(np.float64))
        series = ({"label": "depth"}, {"label": "probability", "stroke": "#2166ac", "width": 2})
        return data, series

    def as_plotly(self):
        """A ``plotly.graph_objects.Figure`` (for ``server.gui.add_plotly``), markers as lines."""
        import plotly.graph_objects as go  # lazy: plotly is only needed for this view

        figure = go.Figure(go.Scatter(x=self.depth, y=self.probability, mode="lines+markers",
                                      name="match probability"))  # fmt: skip
        colors = {"coarse": "#2166ac", "final": "#b2182b", "gt": "#1b7837",
                  "argmax": "#777777", "expected": "#444444"}  # fmt: skip
        for name, depth in self.markers.items():
            figure.add_vline(x=depth, line_color=colors.get(name, "#000000"), line_dash="dot",
                             annotation_text=name)  # fmt: skip
        margin = {"l": 40, "r": 10, "t": 20, "b": 40}
        figure.update_layout(xaxis_title="depth", yaxis_title="probability", margin=margin,
                             showlegend=False)  # fmt: skip
        return figure


def probability_series(report: PixelReport) -> ProbabilitySeries:
    """The report's candidate curve sorted by depth, with the pixel's depths as markers."""
    depth = report.candidate_depth
    order = np.argsort(depth)
    markers = {
        "coarse": report.coarse_depth,
        "final": report.final_depth,
        "argmax": report.argmax_depth,
        "expected": report.expected_depth,
    }
    if report.gt_depth is not None:
        markers["gt"] = report.gt_depth
    return ProbabilitySeries(
        depth=depth[order], probability=report.probability[order], markers=markers
    )
