"""The predicted Gaussians rendered at the target views (with PSNR) and at any viewer camera.

Convention
----------
* Everything is rendered in the user's frame from :class:`~dsviewer.viewer.layers.Layers`
(Gaussians and
  cameras moved by the same similarity; the images and PSNR do not depend on it).
* Rendering follows the official DepthSplat decoder: black background, and Gaussians culled only
  when their camera z is at most ``0.2 * near`` (3DGS's fixed 0.2 after the decoder rescales the
  scene by ``1 / near``); nothing is culled far away. ``near`` is the context views' near plane.
* Target views are rendered at their own image size and intrinsics; PSNR is
  :func:`dsviewer.model.decoder.render.psnr` of the clamped images, per view, and ``mean_psnr`` is
  the plain mean over the rendered views, as the official evaluation averages them.
* Viewer cameras (:func:`camera_from_viser`) use viser's convention, which is OpenCV like ours:
  ``client.camera.wxyz`` is the rotation ``R_world_camera``, ``position`` the camera centre,
  ``fov`` the *vertical* field of view in radians, ``aspect`` width / height. The viser world is
  the user's frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from dsviewer.errors import InputError
from dsviewer.stage_timer import stage
from dsviewer.viewer.colormaps import robust_limit
from dsviewer.viewer.panels import DEFAULT_DPI, PanelGrid, figure_inches

if TYPE_CHECKING:
    from dsviewer.model.decoder.render import Backend
    from dsviewer.model.types import Gaussians
    from dsviewer.viewer.layers import Layers

OFFICIAL_NEAR_FACTOR = 0.2  # the official decoder culls camera z <= 0.2 * near
NO_FAR_PLANE = 1e10  # "never cull far": gsplat's own default far plane, finite for its kernels
TARGET_COLUMNS = ("rendered", "GT", "|rendered - GT| (mean over RGB)")
ERROR_FLOOR = 1e-3  # smallest error colour range, so an exact render does not show noise


class CameraInputError(InputError):
    """A viewer camera that cannot be turned into a pinhole camera."""


@dataclass
class TargetRenders:
    """The Gaussians rendered at (a selection of) the scene's target views."""

    index: Tensor  # [T] frame indices in the source scene
    color: Tensor  # [T, 3, H, W] float in [0, 1], black background
    gt: Tensor  # [T, 3, H, W] float in [0, 1], the target images
    depth: Tensor  # [T, H, W] expected z-depth of what is seen (user units), 0 where nothing
    alpha: Tensor  # [T, H, W] accumulated opacity
    psnr: Tensor  # [T] dB
    mean_psnr: float
    distance: Tensor  # [T] to the nearest context camera centre, user units
    angle: Tensor  # [T] degrees to the nearest context viewing direction

    @property
    def num_views(self) -> int:
        return int(self.color.shape[0])


def target_render_unavailable(layers: Layers) -> str | None:
    """Why target views cannot be rendered (a sentence for the user), or None if they can."""
    if layers.gaussians is None:
        return "the model predicts depth only (no Gaussians), so there is nothing to render"
    if layers.target is None or layers.target.num_views == 0:
        return "the scene has no target views (only context views were selected)"
    if not bool(layers.gaussians.finite().any()):  # a PSNR of the empty background says nothing
        return "every predicted Gaussian is NaN or infinite (see the scene notes)"
    return None


def select_views(num_views: int, max_views: int | None) -> list[int]:
    """At most ``max_views`` of ``num_views`` indices, evenly spread, first and last included."""
    if max_views is None or num_views <= max_views:
        return list(range(num_views))
    if max_views <= 0:
        return []
    if max_views == 1:
        return [0]
    step = (num_views - 1) / (max_views - 1)
    return sorted({round(i * step) for i in range(max_views)})


def render_target_views(
    layers: Layers, *, backend: Backend = "auto", max_views: int | None = None
) -> TargetRenders | None:
    """Render the layers' Gaussians at the target views and score them against the GT images.

    Args:
        layers: the scene's layers; their ``target`` cameras are rendered at the target size.
        backend: ``"auto"`` (gsplat on CUDA when installed, the compiled loop on the CPU) or
            a name of ``RASTERIZERS``.
        max_views: render at most this many target views, evenly spread (None: all). A CPU
            render of a 256x256 view takes 0.04-0.1 s (0.4-3 s more for numba's first call).

    Returns:
        :class:`TargetRenders`, or None when :func:`target_render_unavailable` gives a reason.
    """
    with stage("target_renders"):
        return _render_target_views(layers, backend, max_views)


def _render_target_views(layers: Layers, backend: Backend,
                         max_views: int | None) -> TargetRenders | None:  # fmt: skip
    from dsviewer.geometry.view_geometry import pairwise_view_geometry
    from dsviewer.model.decoder.render import psnr, render_gaussians

    if target_render_unavailable(layers) is not None:
        return None
    gaussians, target = layers.gaussians, layers.target
    chosen = select_views(target.num_views, max_views)
    if not chosen:
        return None
    picked = torch.tensor(chosen, dtype=torch.long)
    dtype = gaussians.means.dtype
    output = render_gaussians(
        gaussians,
        target.intrinsics[picked][None].to(dtype),  # [1, T, 3, 3]
        target.T_world_cam[picked][None].to(dtype),  # [1, T, 4, 4]
        target.image_shape,
        near=culling_near(layers),
        far=NO_FAR_PLANE,
        background=torch.zeros(3),
        backend=backend,
    )
    color = output.color[0].detach().float().cpu().clamp(0.0, 1.0)  # [T, 3, H, W]
    gt = target.images[picked]  # [T, 3, H, W]
    scores = psnr(color, gt)  # [T]
    distance, angle = pairwise_view_geometry(target.T_world_cam[picked], layers.context.T_world_cam)
    return TargetRenders(
        index=target.frames[picked],
        color=color,
        gt=gt,
        depth=output.depth[0].detach().float().cpu(),
        alpha=output.alpha[0].detach().float().cpu(),
        psnr=scores,
        mean_psnr=float(scores.mean()),
        distance=distance.min(dim=1).values,
        angle=angle.min(dim=1).values,
    )


def culling_near(layers: Layers) -> float:
    """The official decoder's near culling plane for these layers (user units)."""
    return OFFICIAL_NEAR_FACTOR * float(layers.context.near.min())


# --- any camera ---------------------------------------------------------------------------------


def camera_from_viser(
    wxyz: Sequence[float] | np.ndarray,
    position: Sequence[float] | np.ndarray,
    fov: float,
    aspect: float,
    height: int,
) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """A viser client camera as ``(K [3, 3] normalized, T_world_cam [4, 4], (H, W))``, float64.

    Args:
        wxyz, position: ``client.camera.wxyz`` (``R_world_camera``, OpenCV axes) and
            ``client.camera.position`` in viser's world.
        fov: ``client.camera.fov``, the vertical field of view in radians.
        aspect: ``client.camera.aspect`` (width / height).
        height: rows of the image to render; the width is ``round(height * aspect)``.

    Square pixels, principal point at the image centre.
    """
    from dsviewer.geometry.transforms import quaternion_xyzw_to_matrix, wxyz_to_xyzw

    if not (0.0 < fov < math.pi) or not aspect > 0 or height < 1:
        raise CameraInputError(
            f"a viewer camera needs 0 < fov < pi (radians), aspect > 0 and height >= 1; got "
            f"fov={fov}, aspect={aspect}, height={height}. Pass client.camera.fov, "
            "client.camera.aspect and a positive render height."
        )
    width = max(1, round(height * aspect))
    fy = 0.5 / math.tan(0.5 * fov)  # fraction of the height
    fx = fy * height / width  # the same focal length in pixels, as a fraction of the width
    K = torch.tensor([[fx, 0.0, 0.5], [0.0, fy, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    q = torch.as_tensor(np.asarray(wxyz, dtype=np.float64))
    T = torch.eye(4, dtype=torch.float64)
    # eps=0: viewer poses are unit quaternions; the default eps would bend them by ~1e-8.
    T[:3, :3] = quaternion_xyzw_to_matrix(wxyz_to_xyzw(q / q.norm()), eps=0.0)
    T[:3, 3] = torch.as_tensor(np.asarray(position, dtype=np.float64))
    return K, T, (height, width)


def render_at_camera(
    gaussians: Gaussians,
    intrinsics: Tensor,  # [3, 3] normalized
    T_world_cam: Tensor,  # [4, 4] camera-to-world in the Gaussians' frame
    image_shape: tuple[int, int],
    near: float,
    far: float,
    *,
    backend: Backend = "auto",
) -> np.ndarray:
    """Render the Gaussians (B = 1) at one camera on a black background: ``[H, W, 3]`` uint8.

    ``near``/``far`` are the culling planes passed to the rasterizer as they are; to match the
    target renders use ``OFFICIAL_NEAR_FACTOR * context near`` and :data:`NO_FAR_PLANE`.
    """
    from dsviewer.model.decoder.render import render_gaussians

    if gaussians.means.shape[0] != 1:
        raise CameraInputError(
            f"render_at_camera renders one scene's Gaussians (batch 1), got batch "
            f"{gaussians.means.shape[0]}; pass prediction.gaussians."
        )
    device, dtype = gaussians.means.device, gaussians.means.dtype
    K = torch.as_tensor(intrinsics).to(device=device, dtype=dtype)
    T = torch.as_tensor(T_world_cam).to(device=device, dtype=dtype)
    output = render_gaussians(gaussians, K[None, None], T[None, None], image_shape, near=near,
                              far=far, background=torch.zeros(3), backend=backend)  # fmt: skip
    return to_uint8(output.color[0, 0])


def render_viewer_camera(
    layers: Layers,
    wxyz: Sequence[float] | np.ndarray,
    position: Sequence[float] | np.ndarray,
    fov: float,
    aspect: float,
    height: int,
    *,
    backend: Backend = "auto",
) -> np.ndarray | None:
    """The Gaussians seen from a viser client camera, ``[H, W, 3]`` uint8, or None without them.

    Culling follows the target renders (``0.2 * context near``, no far plane). ``height`` sets
    the cost (a 256 x 256 CPU render takes 0.04-0.1 s); render off the GUI thread.
    """
    if layers.gaussians is None:
        return None
    K, T, shape = camera_from_viser(wxyz, position, fov, aspect, height)
    return render_at_camera(layers.gaussians, K, T, shape, culling_near(layers), NO_FAR_PLANE,
                            backend=backend)  # fmt: skip


def to_uint8(color: Tensor) -> np.ndarray:
    """``[3, H, W]`` float in [0, 1] -> ``[H, W, 3]`` uint8 (rounded, clamped)."""
    image = color.detach().float().cpu().clamp(0.0, 1.0).permute(1, 2, 0)
    return (image * 255.0).round().to(torch.uint8).numpy()


# --- targets.png --------------------------------------------------------------------------------


def target_figure_size(
    num_views: int, height: int, width: int, dpi: int = DEFAULT_DPI
) -> tuple[int, int]:
    """``(width_px, height_px)`` of :func:`target_panels_png` for ``num_views`` views of H x W."""
    fig_w, fig_h = figure_inches(len(TARGET_COLUMNS), num_views, height, width)
    return round(fig_w * dpi), round(fig_h * dpi)


def target_panels_png(renders: TargetRenders, *, dpi: int = DEFAULT_DPI) -> bytes:
    """PNG bytes: per target view one row -- rendered | GT | ``|rendered - GT|`` heat map.

    The rendered panel's title carries the frame index and PSNR. The error (mean absolute
    difference over RGB) shares one colour range across rows, so rows compare; its size is
    :func:`target_figure_size`. Drawn on a bare matplotlib ``Figure`` (Agg), like ``panels.png``.
    """
    num_views, _, height, width = renders.color.shape
    grid = PanelGrid(len(TARGET_COLUMNS), num_views, height, width, dpi)
    error = (renders.color - renders.gt).abs().mean(dim=1).numpy()  # [T, H, W]
    limit = robust_limit(error, floor=ERROR_FLOOR)
    for row in range(num_views):
        frame = int(renders.index[row])
        score = float(renders.psnr[row])
        ax, bar = grid.cell(row, 0, f"frame {frame}: rendered, PSNR {score:.2f} dB")
        ax.imshow(renders.color[row].permute(1, 2, 0).numpy())
        bar.set_visible(False)
        ax, bar = grid.cell(row, 1, f"frame {frame}: {TARGET_COLUMNS[1]}")
        ax.imshow(renders.gt[row].clamp(0, 1).permute(1, 2, 0).numpy())
        bar.set_visible(False)
        ax, bar = grid.cell(row, 2, f"frame {frame}: {TARGET_COLUMNS[2]}")
        grid.colorbar(ax.imshow(error[row], cmap="magma", vmin=0.0, vmax=limit), bar)
    return grid.png()
