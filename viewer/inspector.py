"""Click-a-point inspector: everything the model believed about one pixel (pure functions).

All values are in the user's units (the layers are). The cost-volume tensors live at feature
resolution ``h x w``; a full-resolution pixel ``(u, v)`` maps to feature pixel
``(u * w // W, v * h // H)``, the nearest-neighbour mapping that upsamples the confidence map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dsviewer.errors import InputError
from dsviewer.viewer.analysis import SceneAnalysis
from dsviewer.viewer.color_modes import COLOR_MODES, ColorContext, layer_values
from dsviewer.viewer.layers import Cameras, Layers


class PixelOutOfRangeError(InputError):
    """A view index or pixel coordinate outside the scene's context views."""


@dataclass
class PixelReport:
    view: int
    u: int  # column
    v: int  # row
    feature_u: int
    feature_v: int
    frame: int  # the view's frame index in the source scene
    coarse_depth: float
    final_depth: float
    residual_inv: float  # mono residual, inverse depth
    residual_metric: float  # final - coarse depth
    confidence: float
    near: float
    far: float
    coarse_point: tuple[float, float, float]
    final_point: tuple[float, float, float]
    gt_depth: float | None  # None without GT or where GT is unknown
    candidate_inv_depth: np.ndarray  # [D] the cost volume's inverse-depth candidates
    probability: np.ndarray  # [D] the softmax over them (sums to 1)
    mode_values: dict[str, float | None] = field(default_factory=dict)
    """Each scalar colour mode's value at this pixel on the final layer (None: undefined)."""
    flags: list[str] = field(default_factory=list)

    @property
    def candidate_depth(self) -> np.ndarray:
        return 1.0 / self.candidate_inv_depth

    @property
    def argmax_depth(self) -> float:
        return float(self.candidate_depth[int(np.argmax(self.probability))])

    @property
    def expected_depth(self) -> float:
        """Depth of the probability-weighted mean inverse depth (the cost volume's estimate)."""
        return float(1.0 / np.sum(self.probability * self.candidate_inv_depth))

    def relative_error(self, depth: float) -> float | None:
        return None if self.gt_depth is None else abs(depth - self.gt_depth) / self.gt_depth


def corresponding_pixel(
    a: Cameras, view: int, u: int, v: int, b: Cameras
) -> tuple[int, int, int] | None:
    """``(view, u, v)`` of ``b`` whose pixel the ray of ``a``'s pixel ``(u, v)`` passes through.

    ``b``'s view of the same source frame is used (runs of one scene may crop and scale a frame
    differently); None when ``b`` has no such view or the ray leaves its image.
    """
    import torch

    from dsviewer.geometry.projection import camera_rays, project_points
    from dsviewer.viewer.compare import matching_views

    target = matching_views(a, b)[view]
    if target is None:
        return None
    height, width = a.image_shape
    centre = torch.tensor([(u + 0.5) / width, (v + 0.5) / height], dtype=torch.float64)
    ray = camera_rays(centre, a.intrinsics[view].double())  # [3], camera frame, z = 1
    T = a.T_world_cam[view]
    point = T[:3, :3] @ ray + T[:3, 3]  # one unit along the ray, in the world
    coords, depth = project_points(
        point[None], b.intrinsics[target].double(), b.T_world_cam[target]
    )
    if float(depth[0]) <= 0:
        return None
    height_b, width_b = b.image_shape
    u_b, v_b = (
        int(np.floor(float(coords[0, 0]) * width_b)),
        int(np.floor(float(coords[0, 1]) * height_b)),
    )
    if not (0 <= u_b < width_b and 0 <= v_b < height_b):
        return None
    return target, u_b, v_b


def feature_pixel(u: int, v: int, image_shape: tuple[int, int], feature_shape: tuple[int, int]):
    """``(feature_u, feature_v)`` of full-resolution pixel ``(u, v)`` (nearest, as upsampled)."""
    height, width = image_shape
    feat_h, feat_w = feature_shape
    return min(u * feat_w // width, feat_w - 1), min(v * feat_h // height, feat_h - 1)


def _flags(analysis: SceneAnalysis, at: tuple[int, int, int]) -> list[str]:
    flags = []
    for name in ("coarse", "final"):
        checks = analysis.layers[name]
        masks = {"at near clamp": checks.at_near, "at far clamp": checks.at_far,
                 "on a depth edge": checks.edge, "a flying pixel": checks.flying,
                 "inconsistent": checks.consistency.inconsistent}  # fmt: skip
        flags += [f"{name} {what}" for what, mask in masks.items() if bool(mask[at])]
    return flags


def inspect_pixel(
    layers: Layers,
    view: int,
    u: int,
    v: int,
    analysis: SceneAnalysis | None = None,
    colors: ColorContext | None = None,
) -> PixelReport:
    """Every per-pixel quantity of context view ``view`` at column ``u``, row ``v``.

    The colour modes' values are read through ``colors`` (the viewer's context of this run: its
    settings and, when compared, B - A), else through a plain context of ``layers`` and
    ``analysis``. Raises :class:`PixelOutOfRangeError` outside the context views.
    """
    num_views = layers.num_views
    height, width = layers.image_shape
    if not (0 <= view < num_views and 0 <= u < width and 0 <= v < height):
        raise PixelOutOfRangeError(
            f"pixel (view={view}, u={u}, v={v}) is outside the context views: there are "
            f"{num_views} views of {width} x {height} pixels (u is the column, v the row, from 0)."
        )
    probabilities = layers.cost_volume.probabilities
    fu, fv = feature_pixel(u, v, (height, width), tuple(probabilities.shape[-2:]))
    at = (view, v, u)
    gt_depth = None
    if layers.gt_depth is not None and float(layers.gt_depth[at]) > 0:
        gt_depth = float(layers.gt_depth[at])

    def point(points) -> tuple[float, float, float]:
        x, y, z = (float(c) for c in points[at])
        return x, y, z

    report = PixelReport(
        view=view, u=u, v=v, feature_u=fu, feature_v=fv,
        frame=int(layers.context.frames[view]),
        coarse_depth=float(layers.coarse_depth[at]), final_depth=float(layers.final_depth[at]),
        residual_inv=float(layers.residual_inv[at]),
        residual_metric=float(layers.residual_metric[at]),
        confidence=float(layers.confidence[at]),
        near=float(layers.context.near[view]), far=float(layers.context.far[view]),
        coarse_point=point(layers.coarse_points), final_point=point(layers.final_points),
        gt_depth=gt_depth,
        candidate_inv_depth=(
            layers.cost_volume.candidate_inv_depth[view, :, fv, fu].double().numpy()
        ),
        probability=probabilities[view, :, fv, fu].double().numpy(),
    )  # fmt: skip
    context = colors if colors is not None else ColorContext(layers, analysis)
    for key, mode in COLOR_MODES.items():
        if mode.legend not in ("diverging", "sequential"):
            continue
        values = layer_values(context, key, "final")
        value = None if values is None else float(values[at])
        report.mode_values[key] = value if value is not None and np.isfinite(value) else None
    if analysis is not None:
        report.flags = _flags(analysis, at)
    return report


@dataclass
class ProbabilitySeries:
    """The cost-volume probability over the depth candidates, by increasing depth.

    ``depth_range`` is the plot's x range: the view's near and far planes.
    """

    depth: np.ndarray  # [D]
    probability: np.ndarray  # [D]
    depth_range: tuple[float, float]  # the plot's x range: the view's near and far


def probability_series(report: PixelReport) -> ProbabilitySeries:
    depth = report.candidate_depth
    order = np.argsort(depth)
    return ProbabilitySeries(
        depth=depth[order], probability=report.probability[order],
        depth_range=(report.near, report.far),
    )  # fmt: skip
