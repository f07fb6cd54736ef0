"""Rigid transforms, quaternions, Gaussian covariances and spherical-harmonics rotation.

Convention
----------
* ``T_world_cam`` is camera-to-world (see ``projection.py``); ``T_cam_world`` its inverse.
* Quaternions are ``wxyz`` (scalar first) unless the name says ``xyzw`` (scalar last, the layout
  the DepthSplat Gaussian head predicts and its visualization dump stores).
* SH coefficients are ``[..., d_sh]`` with ``d_sh = (degree + 1) ** 2`` in the 3DGS order, one
  band after another. ``rotate_sh`` reproduces DepthSplat's rotation of SH to the world frame,
  which applies e3nn's real Wigner-D matrices (y as the polar axis, ``D1(R) = R`` in xyz order)
  band by band to the coefficients as stored. Written here in closed form so that e3nn is not
  needed; the equality is checked in ``tests/test_transforms.py``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# --- rigid transforms ---------------------------------------------------------------------------


def invert_rigid(T: Tensor) -> Tensor:
    """Inverse of rigid 4x4 transforms ``[..., 4, 4]`` (rotation transposed, no general inverse).

    ``T_cam_world = invert_rigid(T_world_cam)`` and back.
    """
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    R_inv = R.transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = R_inv
    out[..., :3, 3:] = -R_inv @ t
    out[..., 3, 3] = 1.0
    return out


def T_cam_world_from_T_world_cam(T_world_cam: Tensor) -> Tensor:
    """World-to-camera ``[..., 4, 4]`` from camera-to-world extrinsics."""
    return invert_rigid(T_world_cam)


def T_world_cam_from_T_cam_world(T_cam_world: Tensor) -> Tensor:
    """Camera-to-world ``[..., 4, 4]`` from world-to-camera (view) matrices."""
    return invert_rigid(T_cam_world)


# --- quaternions --------------------------------------------------------------------------------


def xyzw_to_wxyz(q_xyzw: Tensor) -> Tensor:
    """``[..., 4]`` scalar-last to scalar-first."""
    return torch.cat((q_xyzw[..., 3:], q_xyzw[..., :3]), dim=-1)


def wxyz_to_xyzw(q_wxyz: Tensor) -> Tensor:
    """``[..., 4]`` scalar-first to scalar-last."""
    return torch.cat((q_wxyz[..., 1:], q_wxyz[..., :1]), dim=-1)


def quaternion_xyzw_to_matrix(q_xyzw: Tensor, eps: float = 1e-8) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from quaternions ``[..., 4]`` (xyzw).

    The quaternion need not be unit: it is normalized through ``2 / (|q|^2 + eps)``, the same
    arithmetic as DepthSplat's covariance builder, so covariances agree to float rounding.
    """
    x, y, z, w = q_xyzw.unbind(-1)
    s = 2.0 / ((q_xyzw * q_xyzw).sum(dim=-1) + eps)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def quaternion_wxyz_to_matrix(q_wxyz: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from quaternions ``[..., 4]`` (wxyz)."""
    return quaternion_xyzw_to_matrix(wxyz_to_xyzw(q_wxyz))


def matrix_to_quaternion_wxyz(R: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` (wxyz, ``w >= 0``) from rotation matrices ``[..., 3, 3]``.

    Uses the largest of the four diagonal combinations as the pivot, which keeps the division
    well conditioned for every rotation (including 180 degrees).
    """
    m = R
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 * component^2 for w, x, y, z; the largest one is the safe pivot.
    four_sq = torch.stack(
        (1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22),
        dim=-1,
    )
    pivot = four_sq.argmax(dim=-1, keepdim=True)  # [..., 1]
    root = torch.sqrt(four_sq.clamp_min(1e-12))  # [..., 4] = 2 * |component|
    d21, d02 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0]
    d10 = m[..., 1, 0] - m[..., 0, 1]
    s21, s02 = m[..., 2, 1] + m[..., 1, 2], m[..., 0, 2] + m[..., 2, 0]
    s10 = m[..., 1, 0] + m[..., 0, 1]
    # Candidate quaternions (times 2 * pivot component), one per pivot choice.
    candidates = torch.stack(
        (
            torch.stack((four_sq[..., 0], d21, d02, d10), dim=-1),
            torch.stack((d21, four_sq[..., 1], s10, s02), dim=-1),
            torch.stack((d02, s10, four_sq[..., 2], s21), dim=-1),
            torch.stack((d10, s02, s21, four_sq[..., 3]), dim=-1),
        ),
        dim=-2,
    )  # [..., 4 pivots, 4]
    candidates = candidates / (2 * root[..., :, None])
    q = torch.gather(candidates, -2, pivot[..., None].expand(*pivot.shape[:-1], 1, 4))[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


# --- Gaussians ----------------------------------------------------------------------------------


def covariance_from_scale_rotation(scales: Tensor, rotations_xyzw: Tensor) -> Tensor:
    """``R S S^T R^T`` ``[..., 3, 3]`` from linear scales ``[..., 3]`` and quaternions (xyzw)."""
    R = quaternion_xyzw_to_matrix(rotations_xyzw)
    RS = R * scales[..., None, :]  # R @ diag(s)
    return RS @ RS.transpose(-1, -2)


def rotate_covariance(covariances: Tensor, R: Tensor) -> Tensor:
    """``R C R^T`` for covariances ``[..., 3, 3]`` and rotations ``[..., 3, 3]``."""
    return R @ covariances @ R.transpose(-1, -2)


# --- spherical harmonics ------------------------------------------------------------------------


def _degree2_basis(dtype: torch.dtype, device: torch.device) -> Tensor:
    """Symmetric traceless 3x3 matrices ``B_k`` with ``Y2_k(x) ∝ x^T B_k x`` (e3nn's order).

    e3nn's degree-2 harmonics (component normalization) are ``sqrt15 xz``, ``sqrt15 xy``,
    ``sqrt5 (y^2 - (x^2 + z^2) / 2)``, ``sqrt15 yz``, ``sqrt15 / 2 (z^2 - x^2)``. The five
    matrices below are those quadratic forms; all have Frobenius norm^2 = 7.5 and are mutually
    orthogonal, so they are scaled here to an orthonormal basis.
    """
    a = math.sqrt(15.0) / 2.0
    b = math.sqrt(5.0)
    basis = torch.tensor(
        [
            [[0, 0, a], [0, 0, 0], [a, 0, 0]],
            [[0, a, 0], [a, 0, 0], [0, 0, 0]],
            [[-b / 2, 0, 0], [0, b, 0], [0, 0, -b / 2]],
            [[0, 0, 0], [0, 0, a], [0, a, 0]],
            [[-a, 0, 0], [0, 0, 0], [0, 0, a]],
        ],
        dtype=torch.float64,
    ) / math.sqrt(7.5)
    return basis.to(dtype=dtype, device=device)


def sh_rotation_matrix(R: Tensor, degree: int) -> Tensor:
    """Real Wigner-D matrix ``[..., 2l+1, 2l+1]`` of band ``degree`` (0, 1 or 2) for ``R``.

    Satisfies ``Y_l(R x) = D Y_l(x)`` for e3nn's real harmonics ``Y_l``. Band 1 is ``R`` itself.
    Band 2 acts on quadratic forms: ``Y2_k(R x) = x^T (R^T B_k R) x``, and projecting
    ``R^T B_k R`` back on the orthonormal basis gives ``D_kl = tr(R^T B_k R B_l)``.
    """
    batch = R.shape[:-2]
    if degree == 0:
        return torch.ones((*batch, 1, 1), dtype=R.dtype, device=R.device)
    if degree == 1:
        return R
    if degree == 2:
        B = _degree2_basis(R.dtype, R.device)  # [5, 3, 3]
        rotated = R.transpose(-1, -2)[..., None, :, :] @ B @ R[..., None, :, :]  # [..., 5, 3, 3]
        return torch.einsum("...kij,lij->...kl", rotated, B)
    raise ValueError(f"SH rotation is implemented up to degree 2, got degree {degree}.")


def rotate_sh(sh: Tensor, R: Tensor) -> Tensor:
    """Rotate SH coefficients ``[..., d_sh]`` by rotations ``R`` ``[..., 3, 3]`` (broadcast).

    ``d_sh`` must be 1, 4 or 9. Band ``l`` becomes ``D_l(R) @ sh[l^2:(l+1)^2]``, which is what
    DepthSplat's e3nn-based ``rotate_sh`` computes.
    """
    d_sh = sh.shape[-1]
    num_bands = math.isqrt(d_sh)
    if num_bands * num_bands != d_sh or num_bands > 3:
        raise ValueError(f"expected 1, 4 or 9 SH coefficients per channel, got {d_sh}")
    bands = [sh[..., :1]]
    for degree in range(1, num_bands):
        D = sh_rotation_matrix(R, degree)  # [..., 2l+1, 2l+1]
        block = sh[..., degree * degree : (degree + 1) ** 2]
        bands.append((D @ block[..., None])[..., 0])
    return torch.cat(bands, dim=-1)
