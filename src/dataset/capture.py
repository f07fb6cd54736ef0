"""A user's own capture (images + COLMAP or nerfstudio cameras) to :class:`SceneViews`.

Captures come in arbitrary units, while a checkpoint's depth candidates span its fixed
``near..far`` (0.5..100 for RE10K). Like the ``make_baseline_1`` option of DepthSplat's loaders
(rescale translations so the context baseline is 1, refuse baselines below
``baseline_epsilon``), we move the context cameras' centroid to the origin and scale so the
widest context baseline becomes ``target_baseline``. ``SceneViews.world_from_model`` holds the
inverse similarity, so predictions map back to the capture's own units:
``x_world = world_from_model @ x_model`` (depths multiply by ``world_from_model[0, 0]``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..geometry.similarity import Similarity
from .capture_frame import CaptureFrame
from .colmap import find_model, read_colmap
from .errors import CaptureFormatError
from .nerfstudio import read_transforms
from .preprocess import (
    PreprocessSettings,
    check_poses,
    decode_image,
    preprocess_views,
    stack_same_size,
)
from .types import SceneViews
from .views import ViewSelection, check_frames, evenly_spaced, frames_between, nearest_to

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureOptions:
    """How to pick views of a capture and bring it to the checkpoint's scale."""

    context_mode: Literal["nearest", "evenly"] = "nearest"
    """'nearest': the anchor frame and its nearest cameras; 'evenly': spread over the frames."""
    anchor: int | None = None
    """Frame (in name order) the 'nearest' mode starts from; the middle frame when unset."""
    target_baseline: float | None = 1.0
    """Widest context-camera distance after rescaling; None keeps the capture's units."""
    baseline_epsilon: float = 1e-3
    """Smaller context baselines (in capture units) cannot be rescaled and are refused."""
    max_targets: int = 8
    """At most this many target views between the context frames."""


def read_capture_frames(folder: Path) -> list[CaptureFrame]:
    """Frames of a capture folder: ``transforms.json`` if present, else a COLMAP model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"The capture folder {folder} does not exist. Pass a folder "
                                "with images and a transforms.json or a COLMAP sparse model.")
    if (folder / "transforms.json").is_file():
        return read_transforms(folder)
    if find_model(folder) is not None:
        return read_colmap(folder)
    raise CaptureFormatError(folder, "neither transforms.json nor a COLMAP model was found")


def world_from_model_similarity(centers: np.ndarray, options: CaptureOptions,
                                folder: Path) -> Similarity:
    """``world_from_model`` (scale s, translation c, no rotation) for context centres ``[V, 3]``."""
    if options.target_baseline is None:
        return Similarity.identity()
    baseline = np.linalg.norm(centers[:, None] - centers[None], axis=-1).max()
    if baseline < options.baseline_epsilon:
        raise CaptureFormatError(
            folder, f"the context cameras are only {baseline:.2e} apart (less than "
            f"baseline_epsilon {options.baseline_epsilon}), so the scene scale is unknown; "
            "pick context views taken from different positions"
        )
    scale = float(baseline / options.target_baseline)
    return Similarity(scale, torch.eye(3, dtype=torch.float64),
                      torch.from_numpy(centers.mean(axis=0).astype(np.float64)))


def choose_views(frames: list[CaptureFrame], context: list[int] | None,
                 target: list[int] | None, settings: PreprocessSettings,
                 options: CaptureOptions, source: str) -> ViewSelection:
    n = len(frames)
    if context is not None:
        selection = ViewSelection(list(context), list(target) if target is not None
                                  else frames_between(context, options.max_targets))
    else:
        if options.context_mode == "evenly":
            selection = evenly_spaced(n, settings.num_context_views, options.max_targets)
        else:
            anchor = n // 2 if options.anchor is None else options.anchor
            check_frames(ViewSelection([anchor], []), n, source, "--anchor")
            centers = torch.from_numpy(np.stack([f.T_world_cam[:3, 3] for f in frames]))
            selection = nearest_to(centers, anchor, settings.num_context_views,
                                   options.max_targets)
        if target is not None:
            selection = ViewSelection(selection.context, list(target))
    check_frames(selection, n, source, "The view selection")
    return selection


def load_capture(
    folder: Path,
    settings: PreprocessSettings,
    *,
    context: list[int] | None = None,
    target: list[int] | None = None,
    options: CaptureOptions | None = None,
) -> SceneViews:
    """Load, select, rescale and preprocess a capture. Frame indices refer to name order."""
    folder = Path(folder)
    options = options or CaptureOptions()
    source = str(folder)
    frames = read_capture_frames(folder)
    selection = choose_views(frames, context, target, settings, options, source)
    chosen = selection.context + selection.target
    poses = np.stack([frames[i].T_world_cam for i in chosen])
    check_poses(torch.from_numpy(poses), source, chosen)

    distorted = sorted({frames[i].camera_model for i in chosen if frames[i].has_distortion})
    if distorted:
        log.warning("%s: camera model(s) %s have distortion, which is ignored (pinhole fx fy cx "
                    "cy only); undistort the images for exact geometry.", source, distorted)

    decoded = {}
    for i in dict.fromkeys(chosen):
        decoded[i] = decode_image(frames[i].image_path.read_bytes(), source, frames[i].name)
    images = stack_same_size([decoded[i] for i in chosen], [frames[i].name for i in chosen],
                             source)
    height, width = images.shape[-2:]
    for i in chosen:  # normalized intrinsics survive a uniform resize, not an aspect change
        if abs(frames[i].width * height - frames[i].height * width) > max(width, height):
            raise CaptureFormatError(folder, f"image {frames[i].name} is {width}x{height} but its "
                                     f"camera is {frames[i].width}x{frames[i].height} (another "
                                     "aspect ratio)")
    K = torch.tensor(np.stack([frames[i].normalized_intrinsics() for i in chosen]),
                     dtype=torch.float32)

    num_context = len(selection.context)
    world_from_model = world_from_model_similarity(poses[:num_context, :3, 3], options, folder)
    T_model_cam = world_from_model.inverse().poses(torch.from_numpy(poses)).to(torch.float32)
    index = torch.tensor(chosen, dtype=torch.int64)

    def views(part: slice):
        return preprocess_views(images[part], K[part], T_model_cam[part], index[part], settings)

    return SceneViews(
        key=folder.name,
        source=source,
        context=views(slice(0, num_context)),
        target=views(slice(num_context, None)) if selection.target else None,
        world_from_model=world_from_model,
    )
