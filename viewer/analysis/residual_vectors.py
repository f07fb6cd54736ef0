"""Residual vectors: segments from each coarse point to its final point (what the DPT moved)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dsviewer.viewer.layers import Layers


@dataclass
class ResidualSegments:
    """Coarse -> final line segments, ready for viser ``scene.add_line_segments``."""

    points: np.ndarray  # [N, 2, 3] float32, (coarse point, final point)
    colors: np.ndarray  # [N, 2, 3] uint8
    view: np.ndarray  # [N] int64
    u: np.ndarray  # [N] int64, column
    v: np.ndarray  # [N] int64, row


TOWARD_COLOR = (33, 102, 172)  # final point closer to the camera than the coarse one
AWAY_COLOR = (178, 24, 43)


def residual_segments(
    layers: Layers,
    *,
    stride: int = 4,
    max_segments: int = 20_000,
    views: list[int] | None = None,
    min_length: float = 0.0,
) -> ResidualSegments:
    """Segments from each coarse point to its final point on a regular pixel subsample.

    Every ``stride``-th pixel along rows and columns (grid offset ``stride // 2``), then evenly
    thinned to at most ``max_segments``. Segments shorter than ``min_length`` (world units) are
    dropped. Blue: the residual moved the point toward the camera; red: away from it.
    """
    num_views, height, width = layers.final_depth.shape
    selected = range(num_views) if views is None else views
    mask = torch.zeros(num_views, height, width, dtype=torch.bool)
    offset = stride // 2
    for view in selected:
        mask[view, offset::stride, offset::stride] = True
    delta = layers.final_points - layers.coarse_points  # [V, H, W, 3]
    mask &= delta.norm(dim=-1) >= min_length
    mask &= torch.isfinite(delta).all(-1)
    view_idx, row, col = torch.nonzero(mask, as_tuple=True)
    if view_idx.numel() > max_segments:
        keep = torch.linspace(0, view_idx.numel() - 1, max_segments).round().long()
        view_idx, row, col = view_idx[keep], row[keep], col[keep]
    start = layers.coarse_points[view_idx, row, col]
    end = layers.final_points[view_idx, row, col]
    toward = (layers.residual_metric[view_idx, row, col] < 0).numpy()
    colors = np.where(toward[:, None], np.array(TOWARD_COLOR), np.array(AWAY_COLOR))
    colors = np.repeat(colors[:, None, :], 2, axis=1).astype(np.uint8)
    return ResidualSegments(
        points=torch.stack((start, end), dim=1).float().numpy(),
        colors=colors,
        view=view_idx.numpy(),
        u=col.numpy(),
        v=row.numpy(),
    )
