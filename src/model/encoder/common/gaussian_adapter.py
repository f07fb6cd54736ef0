"""Raw Gaussian-head channels to pixel-aligned 3D Gaussians in the world frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ....geometry.projection import camera_rays, pixel_centers
from ....geometry.spherical_harmonics import SH_C0  # an RGB value c has DC (c - 0.5) / C0
from ....geometry.transforms import covariance_from_scale_rotation, rotate_covariance, rotate_sh
from ...types import Gaussians


@dataclass(frozen=True)
class HeadLayout:
    """Channel layout of the Gaussian head output: opacity, offset, scale, rotation, SH."""

    sh_degree: int

    @property
    def d_sh(self) -> int:
        return (self.sh_degree + 1) ** 2

    @property
    def split_sizes(self) -> tuple[int, int, int, int, int]:
        """(opacity logit, xy pixel offset, log-ish scales, xyzw quaternion, rgb x d_sh SH)."""
        return (1, 2, 3, 4, 3 * self.d_sh)

    @property
    def num_channels(self) -> int:
        return sum(self.split_sizes)


class GaussianAdapter(nn.Module):
    """Turns the head's per-pixel channels and the final depth into Gaussians.

    Per pixel: opacity ``sigmoid``; the ray goes through the pixel centre moved by
    ``(sigmoid(offset) - 0.5)`` pixels; scales ``clamp(softplus(x - 4), min, max)``; the
    quaternion (xyzw, camera frame) divided by ``norm + 1e-8``; SH damped per band by
    ``0.1 * 0.25^l`` with the image colour added to the DC term; covariance and SH are then
    rotated from the camera to the world frame, and the mean is placed at z-depth ``depth``
    on the ray.
    """

    def __init__(self, gaussian_scale_min: float, gaussian_scale_max: float, sh_degree: int):
        super().__init__()
        self.gaussian_scale_min = gaussian_scale_min
        self.gaussian_scale_max = gaussian_scale_max
        self.layout = HeadLayout(sh_degree)
        # Built from Python numbers: tensor ops here would pull in torch._dynamo (2.6 s) when
        # the model is built on the meta device to check a checkpoint's shapes.
        band_of_coefficient = [band for band in range(sh_degree + 1) for _ in range(2 * band + 1)]
        sh_mask = [1.0 if band == 0 else 0.1 * 0.25**band for band in band_of_coefficient]
        self.register_buffer("sh_mask", torch.tensor(sh_mask, dtype=torch.float32),
                             persistent=False)  # [d_sh]

    @property
    def d_sh(self) -> int:
        return self.layout.d_sh

    def forward(
        self,
        raw: Tensor,  # [B, V, C, H, W] Gaussian head output, C = layout.num_channels
        depth: Tensor,  # [B, V, H, W] metric z-depth
        image: Tensor,  # [B, V, 3, H, W] in [0, 1]
        intrinsics: Tensor,  # [B, V, 3, 3] normalized
        extrinsics: Tensor,  # [B, V, 4, 4] T_world_cam
    ) -> Gaussians:
        """Gaussians with ``N = V * H * W`` ordered ``(v, h, w)``, batch dim kept."""
        c, h, w = raw.shape[-3:]
        expected = self.layout.num_channels
        assert c == expected, f"expected {expected} channels, got {c}"
        raw = rearrange(raw, "b v c h w -> b v (h w) c")
        opacity_logit, offset, raw_scales, raw_rotations, raw_sh = raw.split(
            self.layout.split_sizes, dim=-1
        )

        # Ray through the pixel centre, nudged by at most half a pixel each way.
        pixel_size = torch.tensor((1.0 / w, 1.0 / h), dtype=raw.dtype, device=raw.device)
        centers = pixel_centers(h, w, device=raw.device, dtype=raw.dtype).reshape(h * w, 2)
        coordinates = centers + (offset.sigmoid() - 0.5) * pixel_size  # [B, V, HW, 2]
        rays_cam = camera_rays(coordinates, intrinsics[:, :, None])  # [B, V, HW, 3], z = 1
        R_world_cam = extrinsics[:, :, None, :3, :3]  # [B, V, 1, 3, 3]
        origins = extrinsics[:, :, None, :3, 3]  # [B, V, 1, 3]
        rays_world = (R_world_cam @ rays_cam[..., None])[..., 0]
        means = origins + rays_world * rearrange(depth, "b v h w -> b v (h w) ()")

        scales = F.softplus(raw_scales - 4.0)
        scales = scales.clamp(self.gaussian_scale_min, self.gaussian_scale_max)
        rotations_xyzw = raw_rotations / (raw_rotations.norm(dim=-1, keepdim=True) + 1e-8)
        cov_cam = covariance_from_scale_rotation(scales, rotations_xyzw)  # [B, V, HW, 3, 3]
        covariances = rotate_covariance(cov_cam, R_world_cam)

        sh = rearrange(raw_sh, "... (rgb d) -> ... rgb d", rgb=3) * self.sh_mask  # [B, V, HW, 3, d]
        colors = rearrange(image, "b v rgb h w -> b v (h w) rgb")
        sh_dc = sh[..., :1] + ((colors - 0.5) / SH_C0)[..., None]
        sh_cam = torch.cat((sh_dc, sh[..., 1:]), dim=-1)
        harmonics = rotate_sh(sh_cam, R_world_cam[..., None, :, :])  # [B, V, HW, 3, d]

        def flat(x: Tensor) -> Tensor:
            return x.flatten(1, 2)  # (v, hw) -> N

        return Gaussians(
            means=flat(means),
            covariances=flat(covariances),
            harmonics=flat(harmonics),
            opacities=flat(opacity_logit.sigmoid()[..., 0]),
            scales=flat(scales),
            rotations_xyzw=flat(rotations_xyzw),
        )
