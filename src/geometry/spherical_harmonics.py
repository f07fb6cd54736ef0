"""Real spherical harmonics in the basis of the original 3D Gaussian Splatting code.

Convention
----------
Coefficients are stored ``[..., 3, d_sh]`` (colour channel, then basis index) with
``d_sh = (degree + 1) ** 2`` and the basis ordered by degree, then by order ``m = -l .. l``,
exactly as the 3DGS CUDA rasterizer (``computeColorFromSH``) and gsplat evaluate them. For a unit
direction ``(x, y, z)`` (from the camera centre to the Gaussian, world frame):

* degree 0: ``C0``
* degree 1: ``-C1 y, C1 z, -C1 x``
* degree 2: ``C2[0] xy, C2[1] yz, C2[2] (2zz - xx - yy), C2[3] xz, C2[4] (xx - yy)``
* degree 3: ``C3[0] y(3xx - yy), C3[1] xyz, C3[2] y(4zz - xx - yy), C3[3] z(2zz - 3xx - 3yy),
  C3[4] x(4zz - xx - yy), C3[5] z(xx - yy), C3[6] x(xx - 3yy)``

The colour is ``max(sum_k basis_k * coeff_k + 0.5, 0)``, as 3DGS does (no upper clamp).

DepthSplat's world-frame ``harmonics`` are in this basis by construction: the official decoder
hands them unchanged to the 3DGS rasterizer (``shs`` of ``diff_gaussian_rasterization``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
MAX_SH_DEGREE = 3


def sh_degree_of(d_sh: int) -> int:
    """Degree of a basis with ``d_sh`` coefficients; asserts it is a supported square."""
    degree = math.isqrt(d_sh) - 1
    assert (degree + 1) ** 2 == d_sh and 0 <= degree <= MAX_SH_DEGREE, f"bad d_sh {d_sh}"
    return degree


def sh_basis(directions: Tensor, degree: int) -> Tensor:
    """Evaluate the 3DGS real-SH basis.

    Args:
        directions: ``[..., 3]`` unit vectors.
        degree: 0 to 3.

    Returns:
        ``[..., (degree + 1) ** 2]`` basis values.
    """
    x, y, z = directions.unbind(-1)
    terms = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        terms += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        terms += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        terms += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(terms, dim=-1)


def sh_to_rgb(harmonics: Tensor, directions: Tensor) -> Tensor:
    """View-dependent colour of each Gaussian.

    Args:
        harmonics: ``[..., 3, d_sh]`` coefficients (3DGS basis order).
        directions: ``[..., 3]`` viewing directions (camera centre to Gaussian), any length.

    Returns:
        ``[..., 3]`` colour, ``max(SH + 0.5, 0)``.
    """
    degree = sh_degree_of(harmonics.shape[-1])
    unit = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(unit, degree)  # [..., d_sh]
    rgb = (harmonics * basis[..., None, :]).sum(dim=-1)
    return (rgb + 0.5).clamp_min(0.0)


def _fibonacci_directions(count: int) -> Tensor:
    """``[count, 3]`` unit vectors spread evenly over the sphere (float64)."""
    i = torch.arange(count, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / count
    radius = (1.0 - z * z).sqrt()
    angle = math.pi * (3.0 - math.sqrt(5.0)) * i
    return torch.stack((radius * angle.cos(), radius * angle.sin(), z), dim=-1)


def sh_rotation_3dgs(rotation: Tensor, degree: int) -> Tensor:
    """The matrix that rotates coefficients of the 3DGS basis by ``rotation``.

    With ``D = sh_rotation_3dgs(R, degree)`` and ``c' = D c``: ``c' . Y(R d) == c . Y(d)`` for
    every direction ``d``, i.e. the rotated Gaussians render exactly as before when the scene
    and the cameras turn together. (The model's own SH rotation, ``rotate_sh`` in
    ``src/geometry/transforms.py``, follows e3nn's axis convention as the official code does;
    it is *not* a rotation of this basis, so it must not be used to move rendered Gaussians.)

    Each band is found exactly by evaluating the basis at fixed directions and their rotations
    (the bands of a real orthonormal SH basis rotate among themselves, orthogonally).

    Args:
        rotation: ``[..., 3, 3]`` rotation matrices.
        degree: 0 to 3.

    Returns:
        ``[..., d_sh, d_sh]`` block-diagonal, float64.
    """
    directions = _fibonacci_directions(64)  # [K, 3]
    basis = sh_basis(directions, degree)  # [K, d_sh]
    rotated = sh_basis(directions @ rotation.double().transpose(-1, -2), degree)  # [..., K, d_sh]
    # Y(R d) = D Y(d) for every sample, band by band: D^T = pinv(Y) Y(R d).
    d_sh = basis.shape[-1]
    matrix = torch.zeros((*rotation.shape[:-2], d_sh, d_sh), dtype=torch.float64)
    for band in range(degree + 1):
        block = slice(band * band, (band + 1) * (band + 1))
        solved = torch.linalg.pinv(basis[:, block]) @ rotated[..., :, block]
        matrix[..., block, block] = solved.transpose(-1, -2)
    return matrix


def rotate_sh_3dgs(harmonics: Tensor, rotation: Tensor) -> Tensor:
    """``[..., 3, d_sh]`` 3DGS-basis coefficients turned by ``rotation [..., 3, 3]`` (see above)."""
    matrix = sh_rotation_3dgs(rotation, sh_degree_of(harmonics.shape[-1]))  # [..., d_sh, d_sh]
    rotated = harmonics.double() @ matrix.transpose(-1, -2)
    return rotated.to(harmonics.dtype)
