"""Render DepthSplat Gaussians into cameras: gsplat on CUDA, our compiled loop on the CPU.

Every backend implements the same rule (see ``rasterizer_torch``): 3DGS EWA splatting with a
0.3 px^2 dilation, 3DGS real SH from the camera centre, front-to-back compositing with the alpha
clamp and the 1/255 threshold, culling ``near < z < far``. Cameras use the project's conventions
(normalized intrinsics, camera-to-world OpenCV extrinsics, ``dsviewer.geometry.projection``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from dsviewer.model.decoder.rasterizer_gsplat import gsplat_available, rasterize_gsplat
from dsviewer.model.decoder.rasterizer_numba import rasterize_numba
from dsviewer.model.decoder.rasterizer_torch import RenderOutput, rasterize_torch
from dsviewer.model.types import Gaussians

Backend = Literal["auto", "numba", "torch", "gsplat"]


@dataclass(frozen=True)
class Rasterizer:
    """One backend: its one-view function and the devices it can draw on."""

    rasterize: Callable[..., RenderOutput]  # rasterize_torch's signature
    runs_on: Callable[[torch.device], bool]
    needs: str  # what to do when it cannot run here, for the error message
    differentiable: bool  # gradients flow back to the Gaussians


RASTERIZERS: dict[str, Rasterizer] = {
    "gsplat": Rasterizer(rasterize_gsplat, gsplat_available,
                         "the Gaussians on a CUDA device and the gsplat package "
                         "(pip install gsplat)", differentiable=True),
    "numba": Rasterizer(rasterize_numba, lambda device: device.type == "cpu",
                        "the Gaussians on the CPU", differentiable=False),
    "torch": Rasterizer(rasterize_torch, lambda device: True, "nothing", differentiable=True),
}  # fmt: skip
# "auto": the first that runs on the Gaussians' device (and gives gradients when they need them)
AUTO_ORDER = ("gsplat", "numba", "torch")


class RenderInputError(ValueError):
    """Inputs to ``render_gaussians`` with inconsistent shapes or an unusable backend."""


def _per_view(value: float | Tensor, batch: int, views: int, name: str) -> Tensor:
    tensor = torch.as_tensor(value, dtype=torch.float64)
    if tensor.ndim == 0:
        return tensor.expand(batch, views)
    if tensor.shape != (batch, views):
        raise RenderInputError(
            f"{name} must be a number or a [B, V] = [{batch}, {views}] tensor, got shape "
            f"{tuple(tensor.shape)}. Pass one value per rendered view."
        )
    return tensor


def render_gaussians(
    gaussians: Gaussians,
    intrinsics: Tensor,  # [B, V, 3, 3] normalized
    extrinsics: Tensor,  # [B, V, 4, 4] camera-to-world (T_world_cam)
    image_shape: tuple[int, int],
    near: float | Tensor,  # number or [B, V]
    far: float | Tensor,  # number or [B, V]
    background: Tensor | None = None,  # [3], black if None
    backend: Backend = "auto",
) -> RenderOutput:
    """Render every batch element's Gaussians into each of its V cameras.

    ``backend="auto"`` takes the first of ``AUTO_ORDER`` that runs on the Gaussians' device:
    gsplat on CUDA where it is installed, the compiled loop on the CPU (the PyTorch twin when
    the Gaussians require gradients), the PyTorch twin elsewhere; a named backend that cannot
    run there raises ``RenderInputError``.

    Returns:
        ``RenderOutput`` with color ``[B, V, 3, H, W]``, depth ``[B, V, H, W]`` (expected z-depth
        of what is seen, 0 where nothing is) and alpha ``[B, V, H, W]``.
    """
    batch = gaussians.means.shape[0]
    if intrinsics.ndim != 4 or intrinsics.shape[0] != batch or intrinsics.shape[2:] != (3, 3):
        raise RenderInputError(
            f"intrinsics must be [B, V, 3, 3] with B = {batch} (the Gaussians' batch), got "
            f"{tuple(intrinsics.shape)}. Add the batch/view axes with intrinsics[None, None]."
        )
    views = intrinsics.shape[1]
    if extrinsics.shape != (batch, views, 4, 4):
        raise RenderInputError(
            f"extrinsics must be [B, V, 4, 4] = [{batch}, {views}, 4, 4] camera-to-world "
            f"matrices, got {tuple(extrinsics.shape)}."
        )
    device = gaussians.means.device
    if backend != "auto" and backend not in RASTERIZERS:
        raise RenderInputError(
            f"backend must be 'auto' or one of {', '.join(map(repr, RASTERIZERS))}, got "
            f"{backend!r}."
        )
    if backend != "auto" and not RASTERIZERS[backend].runs_on(device):
        raise RenderInputError(
            f"backend={backend!r} needs {RASTERIZERS[backend].needs}; the Gaussians are on "
            f"{device}. Use backend='auto' to pick the one that runs there."
        )
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (gaussians.means, gaussians.covariances, gaussians.harmonics,
                                  gaussians.opacities))  # fmt: skip
    if backend != "auto" and needs_grad and not RASTERIZERS[backend].differentiable:
        raise RenderInputError(
            f"backend={backend!r} gives no gradients, and the Gaussians require them; use "
            "backend='torch' (or 'auto'), or render under torch.no_grad()."
        )
    usable = [name for name in AUTO_ORDER if RASTERIZERS[name].runs_on(device)
              and (RASTERIZERS[name].differentiable or not needs_grad)]  # fmt: skip
    name = backend if backend != "auto" else usable[0]
    rasterize = RASTERIZERS[name].rasterize

    near_bv = _per_view(near, batch, views, "near")
    far_bv = _per_view(far, batch, views, "far")
    if background is None:
        background = torch.zeros(3)
    background = background.to(device=device, dtype=gaussians.means.dtype)

    outputs = []
    for b in range(batch):
        for v in range(views):
            outputs.append(
                rasterize(
                    gaussians.means[b],
                    gaussians.covariances[b],
                    gaussians.harmonics[b],
                    gaussians.opacities[b],
                    intrinsics[b, v],
                    extrinsics[b, v],
                    image_shape,
                    float(near_bv[b, v]),
                    float(far_bv[b, v]),
                    background,
                )
            )
    height, width = image_shape
    return RenderOutput(
        color=torch.stack([o.color for o in outputs]).reshape(batch, views, 3, height, width),
        depth=torch.stack([o.depth for o in outputs]).reshape(batch, views, height, width),
        alpha=torch.stack([o.alpha for o in outputs]).reshape(batch, views, height, width),
    )


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Peak signal-to-noise ratio of images in [0, 1] (both clamped to it first).

    Args:
        a, b: ``[..., C, H, W]``.

    Returns:
        ``[...]`` PSNR in dB; identical images give 100 dB (MSE floored at 1e-10).
    """
    mse = ((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean(dim=(-3, -2, -1))
    return -10.0 * torch.log10(mse.clamp_min(1e-10))
