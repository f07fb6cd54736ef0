"""LLFF captures (Mildenhall et al. 2019): ``poses_bounds.npy`` beside ``images/``.

``poses_bounds.npy`` holds float ``[N, 17]``: per image a 3x5 matrix stored row by row, whose
first four columns are the camera-to-world pose and whose fifth column is ``(H, W, f)`` (image
size and focal length in pixels of the images the poses were computed from), then two depth
bounds ``near, far``: in LLFF's ``imgs2poses``, the 0.1 and 99.9 percentiles of the z-depths of
the COLMAP points each image sees, in the capture's units.

**Axes.** LLFF's rotation columns are the camera's *down, right, backward* axes in world
coordinates (``imgs2poses`` turns COLMAP's right, down, forward columns into "[-u, r, -t]").
With OpenCV axes (right, down, forward) the camera-to-world rotation is therefore ``[c1, c0,
-c2]`` of LLFF's columns ``c0 c1 c2``, the centre unchanged. LLFF stores no principal point: it
is the image centre, and ``fx = fy = f``.

**Order.** Row i is the i-th image of ``images/`` in Python's sorted order of the file names
ending in ``JPG``, ``jpg`` or ``png`` (LLFF's ``load_data`` and NeRF's ``load_llff_data`` pair
rows and files by position; ``imgs2poses`` wrote the rows in sorted name order). Frame numbers
are these positions (the ones NeRF's every-8th-frame test split counts), and the counts must
match.

**Downscaled folders.** LLFF's ``minify`` writes ``images_<k>`` (a k x k area average, files
renamed ``image000.png``...). When ``images/`` is missing or does not hold one image per row,
the first ``images_<k>`` that does is used (smallest k first), in the same sorted order, with
``f`` and the centre divided by k (note ``downscaled_images``).

The bounds become each frame's ``depth_bounds`` and the scene's ``depth_bounds_hint``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .camera_models import Camera, make_camera
from .capture_frame import Capture, CaptureFrame
from .errors import CaptureFormatError
from .types import SceneNote

POSES_BOUNDS = "poses_bounds.npy"
ROW_LENGTH = 17  # 3x5 pose-and-hwf matrix, then near and far
IMAGE_ENDINGS = ("JPG", "jpg", "png")  # what LLFF's load_data pairs with the rows
DOWNSCALED = re.compile(r"images_(\d+)")


def llff_to_opencv(matrix: np.ndarray) -> np.ndarray:
    """``[4, 4]`` OpenCV camera-to-world of one LLFF ``[3, 5]`` matrix (see module doc)."""
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2] = matrix[:, 1], matrix[:, 0], -matrix[:, 2]
    T[:3, 3] = matrix[:, 3]
    return T


def read_poses_bounds(path: Path) -> np.ndarray:
    """``[N, 17]`` float64, with the header's shape checked against the file's size before
    anything is allocated."""
    folder = path.parent
    try:
        with open(path, "rb") as file:
            major, _ = np.lib.format.read_magic(file)
            read_header = (np.lib.format.read_array_header_1_0 if major == 1
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(file)
            left = os.fstat(file.fileno()).st_size - file.tell()
    except (ValueError, OSError) as exc:
        raise CaptureFormatError(folder, f"{POSES_BOUNDS} is not a NumPy array file ({exc})"
                                 ) from None
    if len(shape) != 2 or shape[1] != ROW_LENGTH or dtype.kind != "f" or fortran:
        raise CaptureFormatError(folder, (
            f"{POSES_BOUNDS} holds a {dtype} array of shape {shape}; LLFF writes float rows "
            f"of {ROW_LENGTH} numbers (a 3x5 pose matrix, then near and far), one per image"))
    if shape[0] * ROW_LENGTH * dtype.itemsize > left:
        raise CaptureFormatError(folder, f"{POSES_BOUNDS} declares {shape[0]} rows but holds "
                                 f"only {left} bytes of data (the file is truncated)")
    rows = np.load(path, allow_pickle=False).astype(np.float64)
    if len(rows) == 0:
        raise CaptureFormatError(folder, f"{POSES_BOUNDS} lists no images")
    return rows


def image_listing(folder: Path) -> list[str]:
    """The images of one folder in LLFF's order: sorted names with LLFF's endings."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_file() and e.name.endswith(IMAGE_ENDINGS))


def _image_folders(folder: Path) -> list[tuple[str, int]]:
    """``(name, factor)`` of ``images`` and every ``images_<k>``, smallest factor first."""
    found = [("images", 1)] if (folder / "images").is_dir() else []
    with os.scandir(folder) as entries:
        found += sorted(((e.name, int(m.group(1))) for e in entries
                         if e.is_dir() and (m := DOWNSCALED.fullmatch(e.name))
                         and int(m.group(1)) > 0), key=lambda item: item[1])  # fmt: skip
    return found


def _choose_folder(folder: Path, rows: int) -> tuple[str, int, list[str]]:
    counts = []
    for name, factor in _image_folders(folder):
        listing = image_listing(folder / name)
        if len(listing) == rows:
            return name, factor, listing
        counts.append(f"{name}/ holds {len(listing)}")
    held = "; ".join(counts) if counts else "there is no images/ folder"
    raise CaptureFormatError(folder, (
        f"{POSES_BOUNDS} has {rows} rows, which LLFF pairs by position with the images "
        f"(names ending in {', '.join(IMAGE_ENDINGS)}, sorted) of images/ or images_<k>/, but "
        f"{held}. Put exactly the images the poses were computed from in images/"))


def read_llff(folder: Path) -> Capture:
    """Every image of an LLFF capture, in LLFF's order (see module doc)."""
    rows = read_poses_bounds(folder / POSES_BOUNDS)
    subfolder, factor, listing = _choose_folder(folder, len(rows))
    source = str(folder / POSES_BOUNDS)
    cameras: dict[tuple[float, float, float], Camera] = {}
    frames, bad_bounds = [], 0
    for number, (row, name) in enumerate(zip(rows, listing, strict=True)):
        matrix = row[:15].reshape(3, 5)
        height, width, focal = matrix[:, 4]
        camera = cameras.get((height, width, focal))
        if camera is None:
            if not (np.isfinite([height, width]).all() and height == int(height)
                    and width == int(width)):
                raise CaptureFormatError(folder, f"row {number} of {POSES_BOUNDS} gives the "
                                         f"image size H={height}, W={width}; expected integers")
            camera = make_camera("PINHOLE", int(width), int(height),
                                 [focal, focal, width / 2, height / 2], source, f"row {number}")
            cameras[(height, width, focal)] = camera
        near, far = float(row[15]), float(row[16])
        bounds = (near, far) if np.isfinite([near, far]).all() and 0 < near < far else None
        bad_bounds += bounds is None
        frames.append(CaptureFrame(
            name=f"{subfolder}/{name}", image_path=folder / subfolder / name,
            camera=camera.downscaled(factor) if factor > 1 else camera,
            T_world_cam=llff_to_opencv(matrix), depth_bounds=bounds))
    notes = []
    if factor > 1:
        notes.append(SceneNote(
            "downscaled_images",
            f"images/ does not hold the {len(rows)} images {POSES_BOUNDS} lists, so "
            f"{subfolder}/ was used, with the focal length divided by {factor} as LLFF does."))
    if bad_bounds:
        notes.append(SceneNote(
            "depth_bounds_invalid",
            f"{bad_bounds} row(s) of {POSES_BOUNDS} give no usable near/far bounds (not "
            "finite, or not 0 < near < far); those frames have no depth-bounds hint."))
    return Capture(folder=folder, camera_file=source, frames=frames, notes=notes,
                   bounds_source=POSES_BOUNDS)


def llff_bounds(folder: Path) -> dict[str, tuple[float, float]]:
    """Image name -> (near, far) of ``poses_bounds.npy`` beside another camera file (LLFF's
    ``imgs2poses`` leaves it beside its COLMAP model), when its rows pair with ``images/``."""
    if not (folder / POSES_BOUNDS).is_file() or not (folder / "images").is_dir():
        return {}
    try:
        rows = read_poses_bounds(folder / POSES_BOUNDS)
    except CaptureFormatError:  # only a hint beside a model that stands on its own
        return {}
    listing = image_listing(folder / "images")
    if len(listing) != len(rows):
        return {}
    return {name: (float(row[15]), float(row[16])) for name, row in zip(listing, rows,
                                                                        strict=True)
            if np.isfinite(row[15:17]).all() and 0 < row[15] < row[16]}
