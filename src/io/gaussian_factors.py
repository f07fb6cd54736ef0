"""Covariance <-> (scales, rotation) for 3D Gaussians, as 3DGS files store them.

Convention: ``cov = R diag(s)^2 R^T``; quaternions are unit, scalar first (``wxyz``), with
``w >= 0``, and ``R(q)`` is the usual active rotation (the matrix 3DGS builds from ``rot_0..3``).
Quaternion <-> matrix conversions are those of ``dsviewer.geometry.transforms``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dsviewer.geometry.transforms import matrix_to_quaternion_wxyz, quaternion_wxyz_to_matrix

MIN_VARIANCE = 1e-30  # eigenvalues are clamped here so that log-scales stay finite


def covariance_from_scales_rotations(scales: Tensor, quaternions_wxyz: Tensor) -> Tensor:
    """``R diag(s)^2 R^T`` from ``[..., 3]`` linear scales and ``[..., 4]`` wxyz quaternions."""
    R = quaternion_wxyz_to_matrix(quaternions_wxyz)
    M = R * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def scales_rotations_from_covariance(covariances: Tensor) -> tuple[Tensor, Tensor]:
    """Factor ``[..., 3, 3]`` covariances into linear scales ``[..., 3]`` and wxyz ``[..., 4]``.

    Computed in float64 (eigendecomposition of the symmetrized matrix); eigenvalues below
    ``MIN_VARIANCE`` are clamped; an eigenvector basis with determinant -1 has its last axis
    flipped, which leaves the covariance unchanged and makes the rotation proper. Returned in
    float64.
    """
    cov = covariances.double()
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    variances, axes = torch.linalg.eigh(cov)  # ascending, columns are axes
    handedness = (torch.linalg.cross(axes[..., 0], axes[..., 1], dim=-1) * axes[..., 2]).sum(-1)
    flip = handedness < 0  # det(axes) = (a0 x a1) . a2 for the columns a_i
    axes = torch.where(flip[..., None, None], axes * axes.new_tensor([1.0, 1.0, -1.0]), axes)
    scales = variances.clamp_min(MIN_VARIANCE).sqrt()
    return scales, matrix_to_quaternion_wxyz(axes)
