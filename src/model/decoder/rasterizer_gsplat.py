"""The boundary to gsplat's CUDA rasterizer: our conventions in, gsplat's only inside this file.

gsplat wants world-to-camera view matrices and pixel intrinsics; its pixel centres are at
``u + 0.5`` like ours, so ``denormalize_intrinsics`` is the whole intrinsics conversion.
"""

from __future__ import annotations

import importlib.util
import math

import torch
from torch import Tensor

from dsviewer.geometry.projection import denormalize_intrinsics
from dsviewer.geometry.transforms import T_cam_world_from_T_world_cam
from dsviewer.model.decoder.rasterizer_torch import LOW_PASS_PX2, RenderOutput


def gsplat_available(device: torch.device) -> bool:
    """True when ``device`` is CUDA and gsplat can be imported."""
    return device.type == "cuda" and importlib.util.find_spec("gsplat") is not None


def rasterize_gsplat(
    means: Tensor,  # [N, 3] world
    covariances: Tensor,  # [N, 3, 3] world
    harmonics: Tensor,  # [N, 3, d_sh] world, 3DGS basis
    opacities: Tensor,  # [N]
    intrinsics: Tensor,  # [3, 3] normalized
    T_world_cam: Tensor,  # [4, 4] camera-to-world
    image_shape: tuple[int, int],
    near: float,
    far: float,
    background: Tensor,  # [3]
) -> RenderOutput:
    """One view through ``gsplat.rasterization`` (classic mode, 0.3 px dilation, RGB + ED)."""
    from gsplat import rasterization  # lazy: CUDA-only dependency

    height, width = image_shape
    d_sh = harmonics.shape[-1]
    viewmat = T_cam_world_from_T_world_cam(T_world_cam.double()).to(means.dtype)
    K_px = denormalize_intrinsics(intrinsics.to(means.dtype), height, width)
    colors, alphas, _ = rasterization(
        means,
        None,  # quats: unused when covars is given
        None,  # scales
        opacities,
        harmonics.transpose(-1, -2).contiguous(),  # [N, d_sh, 3]
        viewmat[None],
        K_px[None],
        width,
        height,
        near_plane=float(near),
        far_plane=float(far),
        eps2d=LOW_PASS_PX2,
        sh_degree=math.isqrt(d_sh) - 1,
        packed=False,
        # RGB only: with render_mode="RGB+ED" gsplat appends the zero depth channel itself.
        backgrounds=background.to(means)[None],
        render_mode="RGB+ED",
        rasterize_mode="classic",
        covars=covariances,
    )
    color = colors[0, ..., :3].permute(2, 0, 1)  # [3, H, W]
    return RenderOutput(color=color, depth=colors[0, ..., 3], alpha=alphas[0, ..., 0])
