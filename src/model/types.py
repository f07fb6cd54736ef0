"""Data types produced by the model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def all_finite(values: Tensor, trailing_dims: int) -> Tensor:
    """Whether the last ``trailing_dims`` axes hold only finite numbers, ``[...]`` bool.

    A finite sum of everything proves every entry finite (NaN and inf survive a sum) in one
    pass; only when it is not (a non-finite entry, or finite ones overflowing) is each row
    checked: ``x - x`` is 0 for a finite ``x`` and NaN for inf or NaN, so a row's sum is 0
    exactly when all its entries are finite, 8x faster than ``isfinite(...).all()`` over such
    small trailing axes.
    """
    rows = values.shape[: values.ndim - trailing_dims]
    if bool(torch.isfinite(values.sum())):
        return torch.ones(rows, dtype=torch.bool, device=values.device)
    return (values - values).flatten(-trailing_dims).sum(-1) == 0


@dataclass
class Gaussians:
    """3D Gaussians in the world frame of the context extrinsics.

    ``N`` = V * H * W for a pixel-aligned prediction, ordered ``(v, h, w)``.
    """

    means: Tensor  # [B, N, 3]
    covariances: Tensor  # [B, N, 3, 3]
    harmonics: Tensor  # [B, N, 3, d_sh], real SH (3DGS basis order), world frame
    opacities: Tensor  # [B, N] in [0, 1]
    # The two factors of the covariance in the *camera* frame of the view that produced each
    # Gaussian (as the official visualization dump has them): cov_cam = R S S^T R^T.
    scales: Tensor | None = None  # [B, N, 3] linear scales
    rotations_xyzw: Tensor | None = None  # [B, N, 4] unit quaternions, scalar last, camera frame

    @property
    def sh_degree(self) -> int:
        return round(self.harmonics.shape[-1] ** 0.5) - 1

    def finite(self) -> Tensor:
        """``[B, N]`` bool: Gaussians whose mean, covariance, opacity and harmonics are finite."""
        ok = all_finite(self.means, 1) & torch.isfinite(self.opacities)
        return ok & all_finite(self.covariances, 2) & all_finite(self.harmonics, 2)

    def select(self, keep: Tensor, batch_index: int = 0) -> Gaussians:
        """Batch element ``batch_index`` restricted to the Gaussians ``keep`` ``[N]`` (B = 1)."""

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[batch_index][keep][None]

        return Gaussians(pick(self.means), pick(self.covariances), pick(self.harmonics),
                         pick(self.opacities), pick(self.scales), pick(self.rotations_xyzw))


@dataclass
class Prediction:
    """What the encoder believed about one scene's context views (batch element removed).

    Inverse-depth quantities are named as such; everything called ``depth`` is metric z-depth.
    ``final_depth = 1 / clamp(coarse_inv_depth + mono_inv_residual, 1/far, 1/near)``.
    """

    coarse_inv_depth: Tensor  # [V, H, W] bilinearly upsampled cost-volume inverse depth
    mono_inv_residual: Tensor  # [V, H, W] DPT upsampler residual, inverse depth, signed
    final_depth: Tensor  # [V, H, W] metric z-depth
    confidence: Tensor  # [V, h, w] max over candidates of the last-scale softmax
    match_probs: Tensor  # [V, D, h, w] last-scale softmax over depth candidates
    inv_depth_candidates: Tensor  # [V, D, h, w] last-scale inverse-depth candidates
    near: Tensor  # [V]
    far: Tensor  # [V]
    gaussians: Gaussians | None = None  # batch dim kept (B = 1), None for depth-only models

    def coarse_depth(self) -> Tensor:
        """``[V, H, W]`` metric depth of the cost volume alone (CPU, float32):
        ``1 / clamp(coarse_inv_depth, 1/far, 1/near)``, the planes of each view."""
        near = self.near.float().cpu()[:, None, None]
        far = self.far.float().cpu()[:, None, None]
        coarse_inv = self.coarse_inv_depth.float().cpu()
        return 1.0 / coarse_inv.clamp(min=1.0 / far, max=1.0 / near)

    def pixel_confidence(self) -> Tensor:
        """``[V, H, W]`` the maximum match probability per pixel (CPU, float32), upsampled from
        the cost volume's ``h x w`` with nearest sampling, as the encoder does before its
        Gaussian head."""
        H, W = self.final_depth.shape[-2:]
        confidence = self.confidence.float().cpu()[:, None]  # [V, 1, h, w]
        return F.interpolate(confidence, size=(H, W), mode="nearest")[:, 0]
