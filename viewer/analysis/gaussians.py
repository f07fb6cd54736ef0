"""Per-Gaussian scalars for colouring and filtering the predicted splats."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from dsviewer.model.types import Gaussians
from dsviewer.viewer.colormaps import apply_sequential, robust_range


def gaussian_scalar(gaussians: Gaussians, mode: Literal["opacity", "scale"]) -> Tensor:
    """Per-Gaussian scalar ``[N]`` of batch element 0 for colouring.

    ``opacity``: in [0, 1]. ``scale``: the largest standard deviation of the world covariance
    (``sqrt`` of its largest eigenvalue), in world units.
    """
    if mode == "opacity":
        return gaussians.opacities[0].float()
    if mode == "scale":
        covariances = gaussians.covariances[0].double()
        finite = torch.isfinite(covariances).flatten(-2).all(-1)
        largest = torch.full(finite.shape, float("nan"), dtype=torch.float64)
        largest[finite] = torch.linalg.eigvalsh(covariances[finite])[:, -1]  # [N] where finite
        return largest.clamp_min(0).sqrt().float()
    raise ValueError(f"unknown Gaussian colour mode {mode!r}; use 'opacity' or 'scale'")


def gaussian_colors(
    gaussians: Gaussians,
    mode: Literal["opacity", "scale"],
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """``[N, 3]`` uint8 colours of :func:`gaussian_scalar` on the sequential colormap.

    Range: ``value_range``, else [0, 1] for opacity and the 2nd-98th percentile for scale.
    """
    values = gaussian_scalar(gaussians, mode).numpy()
    if value_range is None:
        value_range = (0.0, 1.0) if mode == "opacity" else robust_range(values)
    return apply_sequential(values, value_range[0], value_range[1])


def gaussian_keep_mask(gaussians: Gaussians, min_opacity: float) -> Tensor:
    """``[N]`` bool: Gaussians of batch element 0 at least as opaque as ``min_opacity``."""
    return gaussians.opacities[0] >= min_opacity
