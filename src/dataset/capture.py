"""A user's own capture (images + COLMAP, transforms.json or LLFF cameras) to
:class:`SceneViews`.

Frame numbers (``--context``/``--target``, ``ViewSet.index``, ``--anchor``) count every frame
the camera file lists, in natural name order (``r_2`` before ``r_10``; LLFF keeps its own
sorted order, ``llff.py``), **including frames whose image is missing** on disk: restoring a
file never renumbers the others. Missing frames are skipped by the default view choice (note
``frames_missing``); asking for one explicitly is an error naming it. A photo listed in several
split files counts once. ``ViewSet.image_names`` keeps each view's image as the file lists it;
depth bounds a camera file states (LLFF) become ``SceneViews.depth_bounds_hint``.

Each chosen image is decoded (``images.py``), its camera scaled to the decoded size (images
resized after SfM, or reduced at decode), undistorted to COLMAP's pinhole when its model has
distortion (``undistort.py``; note ``undistorted``), and rescaled and cropped to the model's
shape on its own (views may differ in size).

Captures come in arbitrary units, while a checkpoint's depth candidates span its fixed
``near..far`` (0.5..100 for RE10K). Like the ``make_baseline_1`` option of DepthSplat's loaders,
we move the context cameras' centroid to the origin and scale so the widest context baseline
becomes ``target_baseline``. When the context cameras barely move (baseline below
``baseline_epsilon`` times the capture's median camera spacing, so units do not matter), that
spacing is the unit instead (note ``baseline_fallback``). ``SceneViews.world_from_model``
holds the inverse similarity, so predictions map back to the capture's own units.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..geometry.similarity import Similarity
from .capture_frame import Capture
from .colmap import read_colmap
from .colmap_layout import find_model, find_workspace
from .errors import CaptureFormatError, MissingFramesError, frames_text
from .images import read_image
from .llff import POSES_BOUNDS, llff_bounds, read_llff
from .nerfstudio import read_transforms, transforms_files
from .notes import decode_notes, selection_notes
from .preprocess import PreprocessSettings, check_poses, preprocess_views
from .sfm import DEFAULT_MAX_ERROR, sfm_reference
from .types import DepthBoundsHint, SceneNote, SceneViews
from .undistort import radial_fold, undistort_image
from .view_choice import camera_spacing, choose_context, choose_targets
from .views import ViewSelection, check_frames, evenly_spaced

MISSING_SHOWN = 5  # names of missing frames quoted in the note


@dataclass(frozen=True)
class CaptureOptions:
    """How to pick views of a capture and bring it to the checkpoint's scale."""

    context_mode: Literal["auto", "evenly"] = "auto"
    """'auto': by COLMAP covisibility, else by camera distance and angle (view_choice.py);
    'evenly': spread over the frames in name order."""
    anchor: int | None = None
    """Frame the 'auto' choice must include; the middle frame when there are no 3D points."""
    target_baseline: float | None = 1.0
    """Widest context-camera distance after rescaling; None keeps the capture's units."""
    baseline_epsilon: float = 1e-3
    """Context baselines below this fraction of the median camera spacing give no scale; the
    spacing is used instead."""
    max_targets: int = 8
    """At most this many default target views."""
    sfm_max_error: float = DEFAULT_MAX_ERROR
    """SfM points whose mean reprojection error exceeds this many pixels are left out of the
    reference depth (``sfm.py``)."""


def read_capture(path: Path) -> Capture:
    """A capture folder (``transforms.json``, Blender split files, a COLMAP model or
    workspace, or LLFF's ``poses_bounds.npy``), or one transforms JSON file."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".json":
        return read_transforms(path.parent, [path])
    if not path.is_dir():
        raise FileNotFoundError(f"The capture folder {path} does not exist. Pass a folder "
                                "with images and a transforms.json, a COLMAP sparse model or "
                                f"LLFF's {POSES_BOUNDS}.")
    if transforms_files(path):
        return read_transforms(path)
    if find_model(path) is not None or find_workspace(path) is not None:
        capture = read_colmap(path)
        bounds = llff_bounds(capture.folder)  # imgs2poses leaves it beside its model
        for frame in capture.frames:
            frame.depth_bounds = bounds.get(frame.name)
        if bounds:
            capture.bounds_source = POSES_BOUNDS
        return capture
    if (path / POSES_BOUNDS).is_file():
        return read_llff(path)
    raise CaptureFormatError(path, "neither transforms.json (or transforms_train/val/test.json) "
                             f"nor a COLMAP model nor LLFF's {POSES_BOUNDS} was found")


def depth_bounds_hint(
    capture: Capture, context: list[int], world_from_model: Similarity,
    settings: PreprocessSettings,
) -> tuple[DepthBoundsHint | None, list[SceneNote]]:
    """The bounds the camera file states for the context frames, and a note comparing them
    with the checkpoint's planes in the model's units."""
    bounds = [capture.frames[i].depth_bounds for i in context]
    if capture.bounds_source is None or any(b is None for b in bounds):
        return None, []
    hint = DepthBoundsHint(tuple(b[0] for b in bounds), tuple(b[1] for b in bounds),
                           capture.bounds_source)
    near, far = hint.span
    scale = world_from_model.scale
    outside = ("" if settings.near <= near / scale and far / scale <= settings.far else
               " The checkpoint's planes do not cover that range: depths outside them are "
               "clamped.")
    return hint, [SceneNote(
        "depth_bounds",
        f"{hint.source} bounds the context views' depth to {near:.4g}..{far:.4g} (the "
        f"capture's units), {near / scale:.4g}..{far / scale:.4g} in the model's units, "
        f"against the checkpoint's near/far {settings.near:g}..{settings.far:g}.{outside}")]


def world_from_model_similarity(centers: np.ndarray, spacing: float, options: CaptureOptions
                                ) -> tuple[Similarity, list[SceneNote]]:
    """``world_from_model`` (scale s, translation c, no rotation) for context centres ``[V, 3]``."""
    if options.target_baseline is None:
        return Similarity.identity(), []
    baseline = float(np.linalg.norm(centers[:, None] - centers[None], axis=-1).max())
    unit, notes = baseline, []
    if baseline <= options.baseline_epsilon * spacing:  # also when no camera moves (0 <= 0)
        unit = spacing if spacing > 0 else 1.0
        notes.append(SceneNote(
            "baseline_fallback",
            f"The context cameras are only {baseline:.2e} apart (below baseline_epsilon "
            f"{options.baseline_epsilon} times the median camera spacing), which gives no "
            "scale; the capture was scaled by "
            + (f"its median camera spacing ({spacing:.3g}) instead." if spacing > 0
               else "1 (its own units), as its cameras do not move either.")))
    scale = unit / options.target_baseline
    return Similarity(scale, torch.eye(3, dtype=torch.float64),
                      torch.from_numpy(centers.mean(axis=0).astype(np.float64))), notes


def choose_views(capture: Capture, usable: list[int], context: list[int] | None,
                 target: list[int] | None, settings: PreprocessSettings,
                 options: CaptureOptions) -> tuple[ViewSelection, list[SceneNote]]:
    """Explicit frames win; else the defaults of view_choice.py among ``usable`` frames."""
    source, n = str(capture.folder), len(capture.frames)
    notes = []
    if context is None:
        if options.anchor is not None:
            check_frames(ViewSelection([options.anchor], []), n, source, "--anchor")
            _refuse_missing(capture, usable, [options.anchor], "--anchor")
        if len(usable) < settings.num_context_views:
            evenly_spaced(len(usable), settings.num_context_views)  # raises the explanation
        if options.context_mode == "evenly":
            picks = evenly_spaced(len(usable), settings.num_context_views).context
            context, how = [usable[k] for k in picks], "evenly spread in name order"
        else:
            context, how = choose_context(capture, usable, settings.num_context_views,
                                          options.anchor)
        notes.append(SceneNote("default_views", f"Context frames {context} were chosen {how}."))
    if target is None:
        target = choose_targets(capture, usable, list(context), options.max_targets)
    selection = ViewSelection(list(context), list(target))
    check_frames(selection, n, source, "The view selection")
    _refuse_missing(capture, usable, selection.context + selection.target,
                    "The view selection (--context/--target)")
    return selection, notes


def _refuse_missing(capture: Capture, usable: list[int], frames: list[int], what: str) -> None:
    missing = [capture.frames[i].name for i in frames if i not in usable]
    if missing:
        raise MissingFramesError(str(capture.folder), missing, what)


def load_capture(
    path: Path,
    settings: PreprocessSettings,
    *,
    context: list[int] | None = None,
    target: list[int] | None = None,
    options: CaptureOptions | None = None,
) -> SceneViews:
    """Load, select, undistort, rescale and preprocess a capture (folder or transforms file)."""
    options = options or CaptureOptions()
    capture = read_capture(Path(path))
    source = str(path)
    frames = capture.frames
    usable = [i for i in capture.available if frames[i].camera is not None]
    notes = list(capture.notes)
    missing = [f.name for f in frames if f.image_path is None]
    if missing:
        notes.append(SceneNote(
            "frames_missing",
            f"{capture.camera_file} lists {len(frames)} frames, {len(missing)} of which have no "
            f"image on disk ({frames_text(missing, MISSING_SHOWN)}); they were skipped. Frame "
            "numbers still count them."))
    selection, choice_notes = choose_views(capture, usable, context, target, settings, options)
    chosen = selection.context + selection.target
    poses = np.stack([frames[i].T_world_cam for i in chosen])
    check_poses(torch.from_numpy(poses), source, [frames[i].name for i in chosen])

    decoded, pixels, K, undistorted, folds = {}, {}, {}, {}, {}
    for i in dict.fromkeys(chosen):
        frame = frames[i]
        decoded[frame.name] = read_image(frame.image_path.read_bytes(), source, frame.name)
        camera = frame.camera_for(decoded[frame.name], source)
        image = decoded[frame.name].pixels.permute(1, 2, 0).numpy()
        if camera.has_distortion:
            image, pinhole = undistort_image(image, camera)
            fold = radial_fold(camera)
            if fold is not None:
                folds[i] = fold.distorted_px
            else:
                undistorted.setdefault(camera.model, []).append(i)
            fx, fy, cx, cy, width, height = (pinhole.fx, pinhole.fy, pinhole.cx, pinhole.cy,
                                             pinhole.width, pinhole.height)
        else:
            (fx, fy, cx, cy), (width, height) = camera.pinhole, (camera.width, camera.height)
        pixels[i] = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
        K[i] = torch.tensor([[fx / width, 0, cx / width], [0, fy / height, cy / height],
                             [0, 0, 1]], dtype=torch.float32)
    for model, models_frames in undistorted.items():
        notes.append(SceneNote(
            "undistorted",
            f"Frame(s) {frames_text(sorted(models_frames))} use the {model} camera model; "
            "they were "
            "undistorted to pinhole cameras the way COLMAP's image_undistorter does (focal "
            "lengths kept, no blank pixels)."))
    if folds:
        notes.append(SceneNote(
            "distortion_folds",
            f"In frame(s) {', '.join(f'{i} (r ≈ {r:.0f} px)' for i, r in sorted(folds.items()))} "
            "the lens distortion folds back inside the image at that distance from the "
            "principal point: pixels beyond it have no ray under the camera model and are "
            "unreliable. These frames were undistorted from the rays inside the fold (black "
            "beyond it), unlike COLMAP's image_undistorter, whose output there is arbitrary."))

    num_context = len(selection.context)
    usable_spacing = camera_spacing(capture, usable)
    world_from_model, scale_notes = world_from_model_similarity(
        poses[:num_context, :3, 3], usable_spacing, options)
    T_model_cam = world_from_model.inverse().poses(torch.from_numpy(poses)).to(torch.float32)
    index = torch.tensor(chosen, dtype=torch.int64)
    models = [frames[i].camera.model for i in chosen]

    def views(part: slice):
        return preprocess_views([pixels[i] for i in chosen[part]],
                                torch.stack([K[i] for i in chosen[part]]), T_model_cam[part],
                                index[part], settings, camera_models=models[part],
                                exact_principal_point=True,
                                image_names=[frames[i].name for i in chosen[part]])

    hint, hint_notes = depth_bounds_hint(capture, selection.context, world_from_model, settings)
    scene = SceneViews(
        key=capture.name or Path(os.path.abspath(capture.folder)).name or str(capture.folder),
        source=source,
        context=views(slice(0, num_context)),
        target=views(slice(num_context, None)) if selection.target else None,
        world_from_model=world_from_model,
        depth_bounds_hint=hint,
    )
    scene.context.sfm, sfm_notes = sfm_reference(capture, selection.context, scene.context,
                                                 world_from_model, options.sfm_max_error)
    scene.notes = (notes + choice_notes + scale_notes + hint_notes + decode_notes(decoded)
                   + selection_notes(scene.context, scene.target) + sfm_notes)
    return scene
