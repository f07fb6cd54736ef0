"""The official test-time preprocessing, in one place.

Order of operations (DepthSplat at test time):

1. decode each JPEG with PIL to RGB (``images.py``);
2. the dataset's crop shim: scale by ``s = max(h_out / h_in, w_out / w_in)`` to
   ``(round(h_in * s), round(w_in * s))`` with PIL's Lanczos filter on uint8 pixels, then
   centre-crop to ``image_shape`` starting at ``((h - h_out) // 2, (w - w_out) // 2)``.
   Normalized intrinsics are invariant under the scaling (rounding is ignored, as in the
   reference); the crop multiplies ``fx`` by ``w / w_out`` and ``fy`` by ``h / h_out`` and keeps
   ``cx, cy`` (so an odd crop margin leaves the half-pixel misalignment the reference has).
   DL3DV skips the shim when the image already has ``image_shape``;
3. the model wrapper's patch shim: centre-crop to multiples of ``patch_multiple``
   (``shim_patch_size * downscale_factor``) with the same intrinsics rule.

Both shims run **per view** with that view's own intrinsics, so views of different sizes (a
COLMAP model with several cameras, photos in portrait and landscape) all end at
``model_shape``; for views of one size this is exactly the official batch computation.

Worked example (RE10K frame 360x640 -> 256x256 checkpoint, normalized
``fx=0.8, fy=1.4222, cx=cy=0.5``): ``s = max(256/360, 256/640) = 0.7111``, scaled size
``256 x round(455.11) = 256 x 455``, crop columns ``99..354``; ``fx' = 0.8 * 455/256 = 1.421875``,
``fy' = fy * 256/256``, ``cx' = cy' = 0.5``; the patch shim (16) is then a no-op.

GT depth follows the images with nearest sampling (``nearest-exact``: pixel centres) so depth
edges are never blended.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..stage_timer import stage
from .errors import (
    CameraFormatError,
    IntrinsicsError,
    NonFinitePoseError,
    SettingsError,
    frames_text,
    size_text,
)
from .images import decode_image  # noqa: F401  (re-exported: scripts import it from here)
from .types import ViewSet

log = logging.getLogger(__name__)

DatasetKind = Literal["re10k", "dl3dv"]
MAX_FOV_DEGREES = 100.0  # the official loaders skip scenes with a wider field of view
ROTATION_TOLERANCE = 1e-3  # max |R R^T - I| and |det R - 1| of a pose's rotation block


@dataclass(frozen=True)
class PreprocessSettings:
    """What a checkpoint expects of its input views (fill from the checkpoint's run settings)."""

    image_shape: tuple[int, int]
    """(height, width) the crop shim produces (``dataset.image_shape``)."""
    near: float
    """Near plane for every view, in the model's units."""
    far: float
    """Far plane for every view."""
    patch_multiple: int = 16
    """The model wrapper's shim: ``shim_patch_size * downscale_factor`` (16 RE10K, 64 DL3DV)."""
    num_context_views: int = 2
    """Context views when none are given explicitly."""
    dataset: DatasetKind = "re10k"
    """Which official loader to mimic (DL3DV skips the crop shim on images of the right size)."""
    source_shape: tuple[int, int] | None = None
    """Image size the official loader accepts (``ori_image_shape``; 360x640 for RE10K). Other
    sizes are still processed, with a warning, where the official evaluation would skip them."""

    def __post_init__(self) -> None:
        h, w = self.image_shape
        if h <= 0 or w <= 0 or h % 2 or w % 2:
            raise SettingsError("PreprocessSettings", f"image_shape {self.image_shape} must be "
                                "positive and even (the patch shim centre-crops)")
        if not 0 < self.near < self.far:
            raise SettingsError("PreprocessSettings", f"need 0 < near < far, got {self.near}, "
                                f"{self.far}")
        if self.dataset not in ("re10k", "dl3dv"):
            raise SettingsError("PreprocessSettings", f"dataset must be 're10k' or 'dl3dv', got "
                                f"{self.dataset!r}")
        if self.patch_multiple <= 0 or min(h, w) < self.patch_multiple:
            raise SettingsError("PreprocessSettings", f"patch_multiple {self.patch_multiple} "
                                f"does not fit image_shape {self.image_shape}")

    @property
    def model_shape(self) -> tuple[int, int]:
        """(height, width) after the patch shim: what the encoder sees."""
        h, w = self.image_shape
        m = self.patch_multiple
        return (h // m) * m, (w // m) * m


# ---------------------------------------------------------------- decoding and cameras


def cameras_to_matrices(cameras: Tensor, source: str) -> tuple[Tensor, Tensor]:
    """Chunk camera rows ``[N, 18]`` to normalized ``K [N, 3, 3]`` and ``T_world_cam [N, 4, 4]``.

    The world-to-camera matrix is inverted in float32 with ``torch.linalg.inv`` as the
    reference does, so the extrinsics match it bit for bit. Poses are not checked here (a scene
    may hold bad frames that are never selected): call :func:`check_poses` on the chosen ones.
    """
    if cameras.ndim != 2 or cameras.shape[1] != 18:
        raise CameraFormatError(source, f"shape {tuple(cameras.shape)}, expected [N, 18]")
    cameras = cameras.to(torch.float32)
    n = cameras.shape[0]
    K = torch.eye(3, dtype=torch.float32).repeat(n, 1, 1)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2] = cameras[:, :4].T
    T_cam_world = torch.eye(4, dtype=torch.float32).repeat(n, 1, 1)
    T_cam_world[:, :3] = cameras[:, 6:].reshape(n, 3, 4)
    T_world_cam, _ = torch.linalg.inv_ex(T_cam_world)  # singular rows give garbage, not raise
    return K, T_world_cam


def check_poses(T: Tensor, source: str, frames: Sequence[int] | None = None) -> None:
    """Reject poses that are not rigid transforms: non-finite values, a rotation block that
    is not orthonormal (``R R^T = I``) with determinant +1 (so shears and reflections are
    refused), or a last row other than ``0 0 0 1``.

    Args:
        T: ``[N, 4, 4]`` camera-to-world (or world-to-camera) matrices.
        frames: the N frame numbers (or names) to cite in the message.
    """
    frames = list(range(T.shape[0])) if frames is None else list(frames)
    T = T.double()
    finite = torch.isfinite(T).flatten(1).all(dim=1)
    if not finite.all():
        raise NonFinitePoseError(source, [frames[i] for i in torch.nonzero(~finite)[:, 0]])
    R = T[:, :3, :3]
    eye = torch.eye(3, dtype=T.dtype)
    skew = (R @ R.transpose(1, 2) - eye).abs().flatten(1).amax(dim=1)  # [N]
    det = torch.linalg.det(R)
    last_row = (T[:, 3] - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=T.dtype)).abs().amax(dim=1)
    bad = (skew > ROTATION_TOLERANCE) | ((det - 1).abs() > ROTATION_TOLERANCE) | (
        last_row > ROTATION_TOLERANCE)
    if bad.any():
        i = int(torch.nonzero(bad)[0, 0])
        raise NonFinitePoseError(
            source,
            [frames[j] for j in torch.nonzero(bad)[:, 0]],
            f"first bad pose: rotation determinant {det[i].item():.4f} (expected 1), "
            f"max |R R^T - I| = {skew[i].item():.2e}, last row "
            f"{[round(v, 4) for v in T[i, 3].tolist()]} (expected [0, 0, 0, 1]); "
            f"tolerance {ROTATION_TOLERANCE}",
        )


def check_intrinsics(K: Tensor, source: str, frames: Sequence[int | str]) -> None:
    """Reject intrinsics ``[N, 3, 3]`` (normalized or pixels) with non-finite entries or focal
    lengths that are not positive."""
    K = K.double()
    finite = torch.isfinite(K).flatten(1).all(dim=1)
    positive = (K[:, 0, 0] > 0) & (K[:, 1, 1] > 0)
    bad = torch.nonzero(~(finite & positive))[:, 0].tolist()
    if bad:
        i = bad[0]
        values = ", ".join(f"{name}={K[i, r, c].item():.6g}" for name, r, c in
                           (("fx", 0, 0), ("fy", 1, 1), ("cx", 0, 2), ("cy", 1, 2)))
        raise IntrinsicsError(source, f"frame(s) {frames_text([frames[j] for j in bad])}",
                              f"first bad one: {values}")


def warn_unofficial(images_hw: tuple[int, int], K_all: Tensor, T_selected: Tensor,
                    settings: PreprocessSettings, source: str) -> None:
    """Log where the official evaluation would have skipped this scene.

    Args:
        K_all: ``[N, 3, 3]`` intrinsics of every frame (the reference checks them all).
        T_selected: ``[V, 4, 4]`` camera-to-world poses of the selected frames.
    """
    if settings.source_shape is not None and tuple(images_hw) != tuple(settings.source_shape):
        log.warning("%s: images are %s, the official %s loader expects %s and would skip this "
                    "scene; processing it anyway.", source, size_text(*images_hw[::-1]),
                    settings.dataset, size_text(*settings.source_shape[::-1]))
    fov = 2 * torch.atan(0.5 / torch.stack((K_all[:, 0, 0], K_all[:, 1, 1]), -1))
    if (fov * 180 / math.pi > MAX_FOV_DEGREES).any():
        log.warning("%s: a field of view exceeds %.0f degrees; the official loader skips such "
                    "scenes.", source, MAX_FOV_DEGREES)
    if settings.dataset == "dl3dv" and (T_selected[:, :3, 3] > 1e3).any():
        log.warning("%s: a camera translation exceeds 1e3 (a known DL3DV pose failure); the "
                    "official loader skips such scenes.", source)


# ---------------------------------------------------------------- resampling and crops


def rescaled_shape(in_shape: tuple[int, int], out_shape: tuple[int, int]) -> tuple[int, int]:
    """The crop shim's intermediate size: cover ``out_shape`` keeping the aspect, rounded."""
    h_in, w_in = in_shape
    h_out, w_out = out_shape
    scale = max(h_out / h_in, w_out / w_in)
    h_scaled, w_scaled = round(h_in * scale), round(w_in * scale)
    assert h_scaled == h_out or w_scaled == w_out, (in_shape, out_shape)
    return h_scaled, w_scaled


def resize_image_lanczos(image: Tensor, shape: tuple[int, int]) -> Tensor:
    """uint8 ``[3, H, W]`` to float32 ``[3, h, w]`` in [0, 1] via PIL Lanczos on uint8 pixels,
    divided by 255 in float64 first (the reference's exact arithmetic)."""
    h, w = shape
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    resized = np.asarray(pil.resize((w, h), Image.LANCZOS)) / 255
    return torch.tensor(resized, dtype=torch.float32).permute(2, 0, 1).contiguous()


def resize_depth_nearest(depth: Tensor, shape: tuple[int, int]) -> Tensor:
    """``[V, H, W]`` depth resampled at pixel centres with nearest sampling (no blending)."""
    return F.interpolate(depth[:, None], size=shape, mode="nearest-exact")[:, 0]


def center_crop(
    images: Tensor, K: Tensor, shape: tuple[int, int], depth: Tensor | None,
    exact_principal_point: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Centre-crop ``images [V, C, H, W]`` (and ``depth [V, H, W]``) to ``shape``; update ``K``.

    Normalized ``fx, fy`` grow by ``W / w_out``, ``H / h_out``. The official shim keeps the
    normalized ``cx, cy``, which is exact only for a centred principal point (and even margins);
    ``exact_principal_point`` moves it with the crop: ``cx' = (cx W - col0) / w_out``.
    """
    h_in, w_in = images.shape[-2:]
    h_out, w_out = shape
    row, col = (h_in - h_out) // 2, (w_in - w_out) // 2
    images = images[..., row : row + h_out, col : col + w_out]
    if depth is not None:
        depth = depth[..., row : row + h_out, col : col + w_out]
    K = K.clone()
    K[:, 0, 0] *= w_in / w_out
    K[:, 1, 1] *= h_in / h_out
    # An axis the crop leaves whole keeps its cx (cy) bit for bit: views that are already at the
    # model's shape go through again unchanged (dsviewer.api feeds a scene's views back).
    if exact_principal_point and w_in != w_out:
        K[:, 0, 2] = (K[:, 0, 2] * w_in - col) / w_out
    if exact_principal_point and h_in != h_out:
        K[:, 1, 2] = (K[:, 1, 2] * h_in - row) / h_out
    return images, K, depth


def crop_shim(
    images: Tensor, K: Tensor, settings: PreprocessSettings, depth: Tensor | None,
    exact_principal_point: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The dataset crop shim on uint8 ``images [V, 3, H, W]``: float32 ``[V, 3, h, w]`` out."""
    in_shape = tuple(images.shape[-2:])
    out_shape = tuple(settings.image_shape)
    if settings.dataset == "dl3dv" and in_shape == out_shape:
        return images.float() / 255, K, depth  # the DL3DV loader yields such images untouched
    if in_shape[0] < out_shape[0] or in_shape[1] < out_shape[1]:
        log.warning("Images of %s are upsampled to %s; the official loader only downsamples.",
                    size_text(*in_shape[::-1]), size_text(*out_shape[::-1]))
    scaled = rescaled_shape(in_shape, out_shape)
    resized = torch.stack([resize_image_lanczos(image, scaled) for image in images])
    if depth is not None:
        depth = resize_depth_nearest(depth, scaled)
    return center_crop(resized, K, out_shape, depth, exact_principal_point)


def patch_shim(
    images: Tensor, K: Tensor, multiple: int, depth: Tensor | None,
    exact_principal_point: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The model wrapper's shim: centre-crop ``[V, 3, H, W]`` to multiples of ``multiple``."""
    h, w = images.shape[-2:]
    shape = ((h // multiple) * multiple, (w // multiple) * multiple)
    return center_crop(images, K, shape, depth, exact_principal_point)


# ---------------------------------------------------------------- the whole pipeline


def preprocess_views(
    images: Sequence[Tensor],
    K: Tensor,
    T_world_cam: Tensor,
    index: Tensor,
    settings: PreprocessSettings,
    depth: Sequence[Tensor] | None = None,
    camera_models: Sequence[str] | None = None,
    exact_principal_point: bool = False,
    image_names: Sequence[str] | None = None,
) -> ViewSet:
    """Decoded frames to a model-ready :class:`ViewSet`, each view through the shims alone.

    Args:
        images: V uint8 ``[3, H_v, W_v]`` (sizes may differ), or one ``[V, 3, H, W]`` tensor.
        K: normalized intrinsics ``[V, 3, 3]`` of the full images.
        T_world_cam: camera-to-world ``[V, 4, 4]``.
        index: ``[V]`` frame indices in the source scene.
        settings: the checkpoint's expectations.
        depth: optional V metric z-depths ``[H_v, W_v]`` (0 = unknown), cropped with the images.
        camera_models: optional per-view source camera model names.
        image_names: optional per-view image files as the source lists them.
        exact_principal_point: move ``cx, cy`` with the crops (captures, whose principal
            points can be anywhere); False keeps the official shims' rule (chunk datasets).

    Returns:
        A ViewSet with images ``[V, 3, h, w]`` at ``settings.model_shape``.
    """
    with stage("preprocess"):  # the loaders' other work counts as decode (stage_timer.py)
        return _preprocess_views(images, K, T_world_cam, index, settings, depth, camera_models,
                                 exact_principal_point, image_names)


def _preprocess_views(images, K, T_world_cam, index, settings, depth, camera_models,
                      exact_principal_point, image_names) -> ViewSet:  # fmt: skip
    K = K.to(torch.float32)
    out_images, out_K, out_depth = [], [], []
    for v, image in enumerate(images):
        assert image.dtype == torch.uint8 and image.ndim == 3, image.shape
        view_depth = None if depth is None else depth[v][None].to(torch.float32)
        view, view_K, view_depth = crop_shim(image[None], K[v : v + 1], settings, view_depth,
                                             exact_principal_point)
        view, view_K, view_depth = patch_shim(view, view_K, settings.patch_multiple, view_depth,
                                              exact_principal_point)
        out_images.append(view[0])
        out_K.append(view_K[0])
        if view_depth is not None:
            out_depth.append(view_depth[0])
    v = len(out_images)
    return ViewSet(
        image=torch.stack(out_images).contiguous(),
        intrinsics=torch.stack(out_K),
        extrinsics=T_world_cam.to(torch.float32),
        near=torch.full((v,), settings.near, dtype=torch.float32),
        far=torch.full((v,), settings.far, dtype=torch.float32),
        index=index.to(torch.int64),
        depth=torch.stack(out_depth).contiguous() if depth is not None else None,
        camera_models=None if camera_models is None else tuple(camera_models),
        image_names=None if image_names is None else tuple(image_names),
    )
