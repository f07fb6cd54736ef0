"""The registry of point layers: every per-pixel point cloud the viewer can show and export.

A layer is declared once, here; the GUI's toggles, the legend of "colour by layer", picking,
the inspector, the PLY exports and ``scene.html`` iterate :data:`POINT_LAYERS`. To add a layer,
write its ``points`` and ``depth`` accessors on :class:`~dsviewer.viewer.layers.Layers` and append
one
:class:`PointLayer` (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dsviewer.geometry.spherical_harmonics import SH_C0
from dsviewer.viewer.layers import Layers, camera_depth


@dataclass(frozen=True)
class PointLayer:
    key: str
    label: str
    hint: str
    points: Callable[[Layers], Tensor | None]
    """``[V, H, W, 3]`` world points, or None when the scene lacks the layer."""
    depth: Callable[[Layers], Tensor | None]
    """``[V, H, W]`` z-depth in the view's own camera: validity (finite, > 0) and colouring."""
    color: tuple[int, int, int]
    """The layer's own colour (colour by layer, comparison.ply, inspector markers)."""
    image_colors: Callable[[Layers], Tensor | None] = lambda layers: layers.rgb
    """``[V, H, W, 3]`` uint8 of the "image" colour mode."""
    fixed_color_mode: str | None = None
    """A colour mode this layer always uses (the residual layer shows the residual)."""
    shown_at_start: bool = False
    pickable: bool = True


def _gaussian_centers(layers: Layers) -> Tensor | None:
    if not layers.gaussians_pixel_aligned:
        return None
    return layers.gaussians.means[0].reshape(*layers.final_depth.shape, 3)


def _gaussian_center_depth(layers: Layers) -> Tensor | None:
    centers = _gaussian_centers(layers)
    return None if centers is None else camera_depth(centers, layers.context.T_world_cam)


def gaussian_dc_rgb(harmonics_dc: Tensor) -> Tensor:
    """uint8 ``[..., 3]`` colour of the DC term of 3DGS harmonics ``[..., 3]`` (0.5 + C0 dc)."""
    return (harmonics_dc.float() * SH_C0 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8)


def _gaussian_colors(layers: Layers) -> Tensor | None:
    if not layers.gaussians_pixel_aligned:
        return None
    dc = layers.gaussians.harmonics[0, :, :, 0]  # [N, 3]
    return gaussian_dc_rgb(dc).reshape(*layers.final_depth.shape, 3)


_LAYERS = (
    PointLayer(
        "coarse", "Coarse MVS depth",
        "The cost volume's depth (1 / coarse_mv_depth, bilinearly upsampled), unprojected.",
        lambda layers: layers.coarse_points, lambda layers: layers.coarse_depth,
        color=(0, 114, 178),
    ),
    PointLayer(
        "final", "Final depth",
        "The model's output depth: 1 / clamp(coarse + mono residual, 1/far, 1/near).",
        lambda layers: layers.final_points, lambda layers: layers.final_depth,
        color=(230, 159, 0), shown_at_start=True,
    ),
    PointLayer(
        "residual", "Mono residual",
        "The final points coloured by the residual the monocular DPT branch added.",
        lambda layers: layers.final_points, lambda layers: layers.final_depth,
        color=(204, 121, 167), fixed_color_mode="residual",
    ),
    PointLayer(
        "gt", "Ground truth",
        "Ground-truth depth unprojected (scenes with GT depth only).",
        lambda layers: layers.gt_points,
        lambda layers: None if layers.gt_depth is None else layers.gt_depth,
        color=(0, 158, 115),
    ),
    PointLayer(
        "sfm", "SfM points",
        "The capture's SfM points each context view observed, at their 3D positions in their "
        "own colour (captures with a COLMAP model or a point cloud): the reference of the SfM "
        "metrics.",
        lambda layers: None if layers.sfm is None else layers.sfm.points_map,
        lambda layers: None if layers.sfm is None else layers.sfm.depth_map,
        color=(213, 94, 0),
        image_colors=lambda layers: None if layers.sfm is None else layers.sfm.rgb_map,
    ),
    PointLayer(
        "centers", "Gaussian centres",
        "The centres of the predicted pixel-aligned Gaussians, in their DC colour.",
        _gaussian_centers, _gaussian_center_depth, color=(240, 228, 66),
        image_colors=_gaussian_colors,
    ),
)  # fmt: skip

POINT_LAYERS: dict[str, PointLayer] = {layer.key: layer for layer in _LAYERS}


def registry_entry(registry: dict, key: str, what: str):
    """``registry[key]``, or a ValueError that lists the keys there are."""
    try:
        return registry[key]
    except KeyError:
        raise ValueError(f"unknown {what} {key!r}; known: {', '.join(registry)}") from None


def point_layer(key: str) -> PointLayer:
    return registry_entry(POINT_LAYERS, key, "layer")


def available_layers(layers: Layers) -> list[str]:
    """Keys of the registered layers this scene has."""
    return [key for key, layer in POINT_LAYERS.items() if layer.points(layers) is not None]


@dataclass
class FlatLayer:
    """One layer as flat numpy views for drawing: ``P = H * W`` pixels per view, (h, w) order."""

    points: np.ndarray  # [V, P, 3] float32
    depth: np.ndarray  # [V, P] float32
    valid: np.ndarray  # [V, P] bool

    @property
    def num_views(self) -> int:
        return int(self.points.shape[0])


def flat_layer(layers: Layers, key: str) -> FlatLayer | None:
    """``key``'s points and depth as ``[V, P, ...]`` numpy views, or None without the layer."""
    layer = point_layer(key)
    points, depth = layer.points(layers), layer.depth(layers)
    if points is None or depth is None:
        return None
    V = points.shape[0]
    depth = depth.float().reshape(V, -1).numpy()
    points = points.float().reshape(V, -1, 3).numpy()
    valid = np.isfinite(depth) & (depth > 0) & np.isfinite(points).all(-1)
    return FlatLayer(points=points, depth=depth, valid=valid)
