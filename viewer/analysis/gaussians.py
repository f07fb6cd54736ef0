"""Per-Gaussian scalars for colouring and filtering the predicted splats."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from dsviewer.model.types import Gaussians, all_finite
from dsviewer.viewer.colormaps import apply_sequential, robust_range


def gaussian_scalar(gaussians: Gaussians, mode: Literal["opacity", "scale"]) -> Tensor:
    """Per-Gaussian scalar ``[N]`` of batch element 0 for colouring.

    ``opacity``: in [0, 1]. ``scale``: the largest standard deviation of the world covariance
    (``sqrt`` of its largest eigenvalue), in world units.
    """
    if mode == "opacity":
        return gaussians.opacities[0].float()
    if mode == "scale":
        largest = largest_eigenvalue(gaussians.covariances[0].double())  # NaN where not finite
        return largest.clamp_min(0).sqrt().float()
    raise ValueError(f"unknown Gaussian colour mode {mode!r}; use 'opacity' or 'scale'")


def largest_eigenvalue(matrices: Tensor) -> Tensor:
    """Largest eigenvalue ``[...]`` of symmetric 3x3 matrices ``[..., 3, 3]``, in closed form.

    The trigonometric solution of the characteristic cubic (Smith, 1961): with ``m = tr(A) / 3``
    and ``p = |A - m I|_F^2 / 6``, the eigenvalues are ``m + 2 sqrt(p) cos(phi + 2 pi k / 3)``,
    ``phi = acos(det(A - m I) / (2 p^1.5)) / 3``; ``k = 0`` is the largest. Like
    ``torch.linalg.eigvalsh`` it reads the lower triangle. A scene's 131 k covariances take
    about 5 ms here and 60 ms in ``eigvalsh``, which solves each small matrix on its own; the two
    agree to ~1e-9 relative in float64 (``tests/test_analysis.py``). Non-finite matrices give
    NaN.
    """
    shape = matrices.shape[:-2]
    flat = matrices.reshape(-1, 9)
    # One contiguous row per entry: elementwise work on strided [..., 3, 3] views is 5x slower.
    a00, _, _, a10, a11, _, a20, a21, a22 = flat.T.contiguous()
    m = (a00 + a11 + a22) / 3.0
    d0, d1, d2 = a00 - m, a11 - m, a22 - m
    p = (d0 * d0 + d1 * d1 + d2 * d2 + 2.0 * (a10 * a10 + a20 * a20 + a21 * a21)) / 6.0
    det = d0 * (d1 * d2 - a21 * a21) - a10 * (a10 * d2 - a21 * a20) + a20 * (a10 * a21 - d1 * a20)
    half_cos = det / (2.0 * p.clamp_min(1e-300) ** 1.5)
    phi = torch.acos(half_cos.clamp(-1.0, 1.0)) / 3.0
    largest = torch.where(p > 0, m + 2.0 * p.sqrt() * torch.cos(phi), m)
    return largest.reshape(shape).masked_fill(~all_finite(matrices, 2), float("nan"))


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
