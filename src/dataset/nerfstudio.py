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
stay inside the folder (see ``paths.py``; names written on Windows with ``\\`` work).

A photo that several split files list (same image file and pose) is **one frame**, so it is
never chosen twice (note ``split_duplicates``); listed twice in one file, or with two poses, it
is refused. Downscaled copies: when a full-size image is missing, nerfstudio's
``images_<k>/<file name>`` (k = 2, 4, 8, as ``ns-process-data`` and gaussian-splatting's
``convert.py --resize`` write them; nerfstudio's ``_get_fname``) is used, the smallest k first,
with the intrinsics divided by k (nerfstudio's ``rescale_output_resolution``; note
``downscaled_images``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from dsviewer.io.text_formats import MalformedTextError, parse_json

from .camera_models import Camera, make_camera
from .capture_frame import Capture, CaptureFrame
from .errors import CaptureFormatError, UnsupportedCameraError, frames_text
from .paths import CaptureFiles, natural_key, path_inside, portable_name
from .types import SceneNote

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
TRANSFORMS_NAME = "transforms.json"
BLENDER_SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".PNG", ".JPEG")  # Blender omits them
DOWNSCALE_FACTORS = (2, 4, 8)  # nerfstudio's images_2, images_4, images_8
NAMES_SHOWN = 5  # names quoted in messages
CAMERA_KEYS = frozenset(("fl_x", "fl_y", "camera_angle_x", "camera_angle_y", "cx", "cy",
                         "camera_model", "is_fisheye", *DISTORTION_KEYS))  # a frame's camera


def transforms_files(folder: Path) -> list[Path]:
    """The camera files of a folder: ``transforms.json``, else the Blender split files."""
    if (folder / TRANSFORMS_NAME).is_file():
        return [folder / TRANSFORMS_NAME]
    return [folder / f"transforms_{s}.json" for s in BLENDER_SPLITS
            if (folder / f"transforms_{s}.json").is_file()]


def _resolve_image(files: CaptureFiles, file_path: str, factors: tuple[int, ...]
                   ) -> tuple[Path | None, int]:
    """The image of ``file_path`` and the factor it was shrunk by: the file itself, else
    ``images_<k>/<its file name>`` for the first k of ``factors``."""
    path = files.find(file_path, IMAGE_SUFFIXES)
    if path is not None:
        return path, 1
    base = portable_name(file_path).rsplit("/", 1)[-1]
    for factor in factors:
        path = files.find(f"images_{factor}/{base}", IMAGE_SUFFIXES)
        if path is not None:
            return path, factor
    return None, 1


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


def _frame(files: CaptureFiles, path: Path, meta: dict, raw: object, number: int,
           factors: tuple[int, ...], cameras: dict) -> tuple[CaptureFrame, int]:
    """One listed frame and the factor its image was shrunk by (1: full size); ``cameras``
    caches the cameras of one file by size and the frame's own intrinsics (most files give
    them once, globally)."""
    folder, source = files.root, str(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("file_path"), str) or (
            "transform_matrix" not in raw):
        raise CaptureFormatError(folder, f"frame {number} of {path.name} lacks a file_path "
                                 "string or a transform_matrix")
    where = f"frame {number} ({raw['file_path']})"
    values = {**meta, **raw}  # per-frame intrinsics override the global ones
    image_path, factor = _resolve_image(files, raw["file_path"], factors)
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
            width, height = (side * factor for side in image.size)  # the full-size image's
    else:
        return CaptureFrame(name=raw["file_path"], image_path=None, camera=None,
                            T_world_cam=matrix @ OPENGL_TO_OPENCV), 1
    key = (width, height, *((k, v) for k, v in raw.items() if k in CAMERA_KEYS))
    try:
        camera = cameras.get(key)
    except TypeError:  # a list or object where a number belongs: _camera names it
        key, camera = None, None
    if camera is None:
        camera = _camera(values, width, height, folder, path, where)
        if key is not None:
            cameras[key] = camera
    return CaptureFrame(name=raw["file_path"], image_path=image_path,
                        camera=camera.downscaled(factor) if factor > 1 else camera,
                        T_world_cam=matrix @ OPENGL_TO_OPENCV), factor


def _camera(values: dict, width: float, height: float, folder: Path, path: Path, where: str
            ) -> Camera:  # fmt: skip
    source = str(path)
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
    return make_camera(model, int(width), int(height), [fx, fy, cx, cy, *distortion], source,
                       where)


def _photo(frame: CaptureFrame) -> str:
    """What makes two listed frames the same photo: the image file, else the name."""
    if frame.image_path is not None:
        return str(frame.image_path)
    return os.path.normpath(portable_name(frame.name))


def _same_view(a: CaptureFrame, b: CaptureFrame) -> bool:
    """Same pose and camera, up to the rounding of two files' decimal numbers."""
    def close(x, y) -> bool:
        return np.allclose(x, y, rtol=1e-7, atol=1e-9)

    if (a.camera is None) != (b.camera is None):
        return False
    same_camera = a.camera is None or (
        (a.camera.model, a.camera.width, a.camera.height)
        == (b.camera.model, b.camera.width, b.camera.height)
        and close(a.camera.params, b.camera.params))
    return same_camera and close(a.T_world_cam, b.T_world_cam)


def read_transforms(folder: Path, files: list[Path] | None = None) -> Capture:
    """Frames of the given camera files (default: :func:`transforms_files`), all files
    together, one frame per photo, in natural ``file_path`` order."""
    files = transforms_files(folder) if files is None else files
    lookup = CaptureFiles(folder, ", ".join(str(p) for p in files))
    factors = tuple(k for k in DOWNSCALE_FACTORS if lookup.has_folder(f"images_{k}"))
    by_photo: dict[str, tuple[CaptureFrame, str]] = {}  # photo -> (frame, file listing it)
    shared: dict[tuple[str, str], list[str]] = {}  # (first file, other file) -> photos
    downscaled: dict[int, list[str]] = {}
    points = None  # the file ply_file_path names (SfM points)
    for path in files:
        cameras: dict[tuple, Camera] = {}
        try:
            meta = parse_json(path.read_bytes())
        except MalformedTextError as exc:
            raise CaptureFormatError(folder, f"{path.name} is not valid JSON ({exc})") from None
        raw_frames = meta.get("frames") if isinstance(meta, dict) else None
        if not raw_frames or not isinstance(raw_frames, list):
            raise CaptureFormatError(folder, f"{path.name} has no 'frames' list")
        twice, in_file = [], set()
        for number, raw in enumerate(raw_frames):
            frame, factor = _frame(lookup, path, meta, raw, number, factors, cameras)
            photo = _photo(frame)
            first = by_photo.get(photo)
            if photo in in_file:
                twice.append(frame.name)
            elif first is None:
                by_photo[photo] = (frame, path.name)
                if factor > 1:
                    downscaled.setdefault(factor, []).append(frame.name)
            elif _same_view(first[0], frame):
                shared.setdefault((first[1], path.name), []).append(photo)
            else:
                raise CaptureFormatError(folder, (
                    f"{first[1]} and {path.name} both list the photo {frame.name!r} "
                    f"({first[0].name!r} in {first[1]}), with different cameras or poses; "
                    "remove one of the entries"))
            in_file.add(photo)
        if points is None and isinstance(meta.get("ply_file_path"), str):
            points = path_inside(folder, meta["ply_file_path"], str(path), follow_links=False)
        if twice:
            raise CaptureFormatError(folder, f"{path.name} lists file_path(s) "
                                     f"{frames_text(twice, NAMES_SHOWN)} more than once")
    frames = sorted((frame for frame, _ in by_photo.values()),  # spellings aside
                    key=lambda frame: natural_key(os.path.normpath(portable_name(frame.name))))
    if not any(frame.image_path for frame in frames):
        raise CaptureFormatError(folder, (
            f"none of the {len(frames)} images its camera file(s) list is on disk; file_path "
            f"names are looked for relative to {os.path.abspath(folder)} (e.g. "
            f"{folder / frames[0].name}, also with an image suffix added, and in "
            "images_2/4/8 by file name)"))
    numbers = {_photo(frame): i for i, frame in enumerate(frames)} if shared else {}
    notes = [SceneNote(
        "split_duplicates",
        f"{other} lists {len(photos)} photo(s) that {first} lists too, with the same camera and "
        f"pose: frame(s) {frames_text(sorted(numbers[p] for p in photos), NAMES_SHOWN)} "
        f"({frames_text([by_photo[p][0].name for p in photos], NAMES_SHOWN)}). Each photo is "
        "one frame (frame numbers count it once), so it is never used twice.")
        for (first, other), photos in shared.items()]
    notes += [SceneNote(
        "downscaled_images",
        f"{len(names)} frame(s) have no full-size image, so their copy in images_{factor}/ "
        f"was used ({frames_text(names, NAMES_SHOWN)}), with the intrinsics divided by "
        f"{factor} as nerfstudio does.") for factor, names in sorted(downscaled.items())]
    if points is not None and not points.is_file():
        notes.append(SceneNote("sfm_points_missing", f"ply_file_path names {points}, which is "
                               "not on disk: there is no SfM reference depth."))
        points = None
    return Capture(folder=folder, camera_file=", ".join(str(p) for p in files), frames=frames,
                   notes=notes, sfm_points=points)
