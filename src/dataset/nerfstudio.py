"""nerfstudio / instant-ngp ``transforms.json`` and NeRF-synthetic (Blender) folders.

``transform_matrix`` is camera-to-world with **OpenGL** camera axes (+X right, +Y up, +Z
backward); we right-multiply by ``diag(1, -1, -1, 1)`` to get OpenCV axes, as DepthSplat's DL3DV
converter does. Intrinsics come from ``fl_x, fl_y, cx, cy, w, h`` (per frame or global; a
frame's own keys win), or from ``camera_angle_x`` (and ``camera_angle_y``) with the principal
point at the centre, as Blender scenes give them. Sizes missing from the file are read from the
image header.

Distortion ``k1 k2 k3 k4 p1 p2`` becomes a COLMAP camera model, undistorted later like COLMAP
cameras: ``camera_model: OPENCV_FISHEYE`` (or ``is_fisheye: true``) -> OPENCV_FISHEYE with
``k1..k4``; otherwise OPENCV (``k1 k2 p1 p2``), or FULL_OPENCV when ``k3`` is set. A
perspective ``k4`` (which nerfstudio and OpenCV read differently) is refused.

Which file: a folder with ``transforms.json`` uses it. A NeRF-synthetic folder (no
``transforms.json``, but ``transforms_train.json``, ``transforms_val.json``,
``transforms_test.json``) loads **all splits together**; a spec naming one JSON file (e.g.
``lego/transforms_test.json``) loads that file alone. Either way frames are numbered in natural
order of their ``file_path`` (so for Blender: ``test/r_0..``, then ``train/..``, then ``val/..``).
Frames whose image is missing on disk stay in the list (``image_path=None``); image paths must
stay inside the folder (see ``paths.py``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from dsviewer.io.text_formats import MalformedTextError, parse_json

from .camera_models import make_camera
from .capture_frame import Capture, CaptureFrame
from .errors import CaptureFormatError, UnsupportedCameraError
from .paths import natural_key, path_inside
from .types import SceneNote

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
TRANSFORMS_NAME = "transforms.json"
BLENDER_SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".PNG", ".JPEG")  # Blender omits them


def transforms_files(folder: Path) -> list[Path]:
    """The camera files of a folder: ``transforms.json``, else the Blender split files."""
    if (folder / TRANSFORMS_NAME).is_file():
        return [folder / TRANSFORMS_NAME]
    return [folder / f"transforms_{s}.json" for s in BLENDER_SPLITS
            if (folder / f"transforms_{s}.json").is_file()]


def _resolve_image(folder: Path, file_path: str, named_in: str) -> Path | None:
    path = path_inside(folder, file_path, named_in, follow_links=False)
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES:
        candidate = path_inside(folder, file_path + suffix, named_in, follow_links=False)
        if candidate.is_file():
            return candidate
    return None


def _number(values: dict, key: str, source: str, where: str) -> float:
    try:
        return float(values[key])
    except (TypeError, ValueError):
        raise CaptureFormatError(Path(source).parent, f"{where} of {Path(source).name} has "
                                 f"{key} = {values[key]!r}, not a number") from None


def _model_and_distortion(values: dict, source: str, where: str) -> tuple[str, list[float]]:
    k1, k2, k3, k4, p1, p2 = (_number(values, k, source, where) if k in values else 0.0
                              for k in DISTORTION_KEYS)
    named = str(values.get("camera_model", "OPENCV")).upper()
    if named == "OPENCV_FISHEYE" or values.get("is_fisheye") is True:
        if p1 or p2:
            raise UnsupportedCameraError(f"{where} of {source}", "OPENCV_FISHEYE",
                                         "the fisheye model has no tangential terms p1 p2")
        return "OPENCV_FISHEYE", [k1, k2, k3, k4]
    if named not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "PERSPECTIVE"):
        raise UnsupportedCameraError(f"{where} of {source}", named, "transforms.json supports "
                                     "OPENCV (or PINHOLE) and OPENCV_FISHEYE cameras")
    if k4:
        raise UnsupportedCameraError(f"{where} of {source}", named, "a perspective k4 "
                                     "term is read differently by nerfstudio (r^8) and OpenCV "
                                     "(rational denominator)")
    if k3:
        return "FULL_OPENCV", [k1, k2, p1, p2, k3, 0.0, 0.0, 0.0]
    if k1 or k2 or p1 or p2:
        return "OPENCV", [k1, k2, p1, p2]
    return "PINHOLE", []


def _frame(folder: Path, path: Path, meta: dict, raw: object, number: int) -> CaptureFrame:
    source = str(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("file_path"), str) or (
            "transform_matrix" not in raw):
        raise CaptureFormatError(folder, f"frame {number} of {path.name} lacks a file_path "
                                 "string or a transform_matrix")
    where = f"frame {number} ({raw['file_path']})"
    values = {**meta, **raw}  # per-frame intrinsics override the global ones
    image_path = _resolve_image(folder, raw["file_path"], source)
    try:
        matrix = np.asarray(raw["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    if matrix.shape == (3, 4):
        matrix = np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])
    if matrix.shape != (4, 4):
        raise CaptureFormatError(folder, f"{where} of {path.name}: transform_matrix has shape "
                                 f"{matrix.shape}, expected 4x4 of numbers")
    if "w" in values and "h" in values:
        width, height = _number(values, "w", source, where), _number(values, "h", source, where)
    elif image_path is not None:
        with Image.open(image_path) as image:
            width, height = image.size
    else:
        return CaptureFrame(name=raw["file_path"], image_path=None, camera=None,
                            T_world_cam=matrix @ OPENGL_TO_OPENCV)
    if "fl_x" in values:
        fx = _number(values, "fl_x", source, where)
        fy = _number(values, "fl_y", source, where) if "fl_y" in values else fx
    elif "camera_angle_x" in values:
        fx = 0.5 * width / math.tan(0.5 * _number(values, "camera_angle_x", source, where))
        fy = (0.5 * height / math.tan(0.5 * _number(values, "camera_angle_y", source, where))
              if "camera_angle_y" in values else fx)
    else:
        raise CaptureFormatError(folder, f"{path.name} gives {where} no focal length (fl_x or "
                                 "camera_angle_x)")
    cx = _number(values, "cx", source, where) if "cx" in values else width / 2
    cy = _number(values, "cy", source, where) if "cy" in values else height / 2
    model, distortion = _model_and_distortion(values, source, where)
    if not (math.isfinite(width) and math.isfinite(height) and width == int(width) and
            height == int(height)):
        raise CaptureFormatError(folder, f"{where} of {path.name} has image size w={width}, "
                                 f"h={height}; expected positive integers")
    camera = make_camera(model, int(width), int(height), [fx, fy, cx, cy, *distortion], source,
                         where)
    return CaptureFrame(name=raw["file_path"], image_path=image_path, camera=camera,
                        T_world_cam=matrix @ OPENGL_TO_OPENCV)


def read_transforms(folder: Path, files: list[Path] | None = None) -> Capture:
    """Frames of the given camera files (default: :func:`transforms_files`), all files
    together, in natural ``file_path`` order."""
    files = transforms_files(folder) if files is None else files
    frames, points = [], None
    for path in files:
        try:
            meta = parse_json(path.read_bytes())
        except MalformedTextError as exc:
            raise CaptureFormatError(folder, f"{path.name} is not valid JSON ({exc})") from None
        raw_frames = meta.get("frames") if isinstance(meta, dict) else None
        if not raw_frames or not isinstance(raw_frames, list):
            raise CaptureFormatError(folder, f"{path.name} has no 'frames' list")
        frames += [_frame(folder, path, meta, raw, n) for n, raw in enumerate(raw_frames)]
        if points is None and isinstance(meta.get("ply_file_path"), str):
            points = path_inside(folder, meta["ply_file_path"], str(path), follow_links=False)
    names = [f.name for f in frames]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})[:5]
        raise CaptureFormatError(folder, f"file_path(s) {twice} appear more than once")
    frames.sort(key=lambda frame: natural_key(frame.name))
    if not any(frame.image_path for frame in frames):
        raise CaptureFormatError(folder, (
            f"none of the {len(frames)} images its camera file(s) list is on disk; file_path "
            f"names are looked for relative to {os.path.abspath(folder)} (e.g. "
            f"{folder / frames[0].name}, also with an image suffix added)"))
    notes = []
    if points is not None and not points.is_file():
        notes.append(SceneNote("sfm_points_missing", f"ply_file_path names {points}, which is "
                               "not on disk: there is no SfM reference depth."))
        points = None
    return Capture(folder=folder, camera_file=", ".join(str(p) for p in files), frames=frames,
                   notes=notes, sfm_points=points)
