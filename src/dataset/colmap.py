"""COLMAP sparse models (``cameras``, ``images``, ``points3D``; binary or text) to a Capture.

COLMAP stores world-to-camera poses (quaternion ``qw qx qy qz`` + translation) with OpenCV
axes, and per image the 3D point id each 2D feature observes (-1 for none), which is what the
view choice uses for covisibility. ``colmap_files.py`` reads the files, once per capture: the
frames keep their image records and the capture its point tracks, which the SfM reference
(``sfm.py``) uses too. Image names must stay inside the capture folder (see ``paths.py``);
images missing on disk stay in the frame list with ``image_path=None``.

Where the model and its images are is ``colmap_layout.py``'s job; a workspace's ``dense/<n>``
is read when none of the top-level model's images is on disk (note ``colmap_workspace``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .capture_frame import Capture, CaptureFrame
from .colmap_files import read_sparse_model
from .colmap_layout import (
    MODEL_PLACES_TEXT,
    WORKSPACE_FOLDER,
    ModelChoice,
    find_image,
    find_model,
    find_workspace,
)
from .errors import CaptureFormatError
from .paths import CaptureFiles, natural_key
from .types import SceneNote


def quaternion_to_rotation(qvec: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` to a 3x3 rotation matrix (NaN for a zero quaternion,
    which the pose check then reports)."""
    norm = np.linalg.norm(qvec)
    w, x, y, z = qvec / norm if norm > 0 else np.full(4, np.nan)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _camera_to_world(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    R = quaternion_to_rotation(qvec)
    T = np.eye(4)
    T[:3, :3] = R.T
    T[:3, 3] = -R.T @ tvec
    return T


# ---------------------------------------------------------------- model -> capture


def _read_model(folder: Path, found: ModelChoice) -> Capture:
    """Every image of one model, in natural name order (images missing on disk included)."""
    model, ext, root = found.model, found.ext, found.root
    sparse = read_sparse_model(model, ext)
    images_file = str(model / f"images{ext}")
    files = CaptureFiles(root, images_file)
    frames = []
    for image in sorted(sparse.images, key=lambda record: natural_key(record.name)):
        if image.camera_id not in sparse.cameras:
            raise CaptureFormatError(folder, f"image {image.name!r} uses camera "
                                     f"{image.camera_id}, which {model / ('cameras' + ext)} "
                                     "does not define")
        frames.append(CaptureFrame(name=image.name,
                                   image_path=find_image(files, image.name, found.image_folders),
                                   camera=sparse.cameras[image.camera_id],
                                   T_world_cam=_camera_to_world(image.qvec, image.tvec),
                                   sfm_image=image))
    if not frames:
        raise CaptureFormatError(folder, f"the COLMAP model in {model} has no images")
    return Capture(folder=root, camera_file=images_file, frames=frames, tracks=sparse.tracks,
                   notes=[found.note] if found.note else [], sfm_points=sparse.points_path)


def _looked(found: ModelChoice) -> str:
    """Where a model's images were looked for: ``a, b and c``."""
    places = [str(found.root / sub) for sub in found.image_folders]
    return ", ".join(places[:-1]) + " and " + places[-1]


def _none_on_disk(folder: Path, capture: Capture, found: ModelChoice) -> CaptureFormatError:
    looked = _looked(found)
    example = found.root / found.image_folders[0] / capture.frames[0].name
    return CaptureFormatError(folder, (
        f"none of the {len(capture.frames)} images that {capture.camera_file} lists is on "
        f"disk; they were looked for in {looked} (e.g. {example}). Pass the capture folder "
        f"that holds the images (its model is found in {MODEL_PLACES_TEXT}, or a COLMAP "
        f"workspace's {WORKSPACE_FOLDER}/<n>), or put the images there"))


def _workspace_name(root: Path) -> str | None:
    """A workspace's dense/<n> (or dense), as image_undistorter writes it (with stereo/), is
    named after the workspace, not "0"."""
    absolute = Path(os.path.abspath(root))
    if not (root / "stereo").is_dir():
        return None
    for parent in (absolute, absolute.parent):
        if parent.name == WORKSPACE_FOLDER:
            return parent.parent.name or None
    return None


def read_colmap(folder: Path) -> Capture:
    """Every image of the COLMAP model of ``folder`` (see :func:`find_model`), in natural name
    order; a workspace's ``dense/<n>`` when the model's own images are not on disk."""
    found, workspace = find_model(folder), find_workspace(folder)
    if found is None and workspace is None:
        raise CaptureFormatError(folder, f"no COLMAP model found (looked in {MODEL_PLACES_TEXT}"
                                 f" and {WORKSPACE_FOLDER}/<n>)")
    passed_over = None
    if found is not None:
        capture = _read_model(folder, found)
        if any(frame.image_path for frame in capture.frames):
            capture.name = _workspace_name(found.root)
            return capture
        if workspace is None:
            raise _none_on_disk(folder, capture, found)
        passed_over = capture
    dense, choice = workspace
    capture = _read_model(dense, choice)
    if not any(frame.image_path for frame in capture.frames):
        raise _none_on_disk(dense, capture, choice)
    place = Path(os.path.relpath(dense, folder)).as_posix()
    why = ("there is no other model" if passed_over is None else
           f"none of the {len(passed_over.frames)} images that {passed_over.camera_file} "
           f"lists is on disk (looked for in {_looked(found)})")
    capture.notes.append(SceneNote(
        "colmap_workspace",
        f"The COLMAP workspace's {place} was used (undistorted images with their own model, "
        f"as image_undistorter writes them), because {why}."))
    capture.name = Path(os.path.abspath(folder)).name
    return capture
