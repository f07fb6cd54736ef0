"""COLMAP sparse models (``cameras``, ``images``, ``points3D``; binary or text) to a Capture.

COLMAP stores world-to-camera poses (quaternion ``qw qx qy qz`` + translation) with OpenCV
axes, and per image the 3D point id each 2D feature observes (-1 for none), which is what the
view choice uses for covisibility. Binary counts are checked against the bytes left in the
file before anything is allocated or looped over, so a corrupt count is an error, not a crash.
Image names must stay inside the capture folder (see ``paths.py``); images missing on disk
stay in the frame list with ``image_path=None``.

Where the model and its images are is ``colmap_layout.py``'s job; a workspace's ``dense/<n>``
is read when none of the top-level model's images is on disk (note ``colmap_workspace``).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .camera_models import CAMERA_MODELS, Camera, make_camera
from .capture_frame import Capture, CaptureFrame
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

POINT2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])  # images.bin per feature
CAMERA_RECORD = struct.calcsize("<iiQQ")
IMAGE_RECORD = struct.calcsize("<i7di") + 1 + 8  # + empty name's NUL + num_points2D
POINT_RECORD = struct.calcsize("<Q3d3Bd") + 8  # + track length


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


# ---------------------------------------------------------------- text


def _text_lines(path: Path) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1)
            if not line.startswith("#")]


def _malformed(path: Path, number: int, line: str) -> CaptureFormatError:
    return CaptureFormatError(path.parent, f"{path.name} line {number} is malformed: "
                              f"{line[:200]!r}")


def read_cameras_text(path: Path) -> dict[int, Camera]:
    cameras = {}
    for number, line in _text_lines(path):
        if not line.strip():
            continue
        parts = line.split()
        try:
            camera_id, model, width, height = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = [float(p) for p in parts[4:]]
        except (IndexError, ValueError):
            raise _malformed(path, number, line) from None
        cameras[camera_id] = make_camera(model, width, height, params, str(path),
                                         f"camera {camera_id}")
    return cameras


def read_images_text(path: Path) -> list[tuple[str, int, np.ndarray, np.ndarray, np.ndarray]]:
    """[(name, camera id, qvec, tvec, point3D ids)]; each image takes two lines, the second
    ``x y point3D_id`` per feature."""
    lines = _text_lines(path)
    images = []
    for row in range(0, len(lines), 2):
        number, line = lines[row]
        if not line.strip():
            continue
        parts = line.split()
        points_line = lines[row + 1][1] if row + 1 < len(lines) else ""
        try:
            qvec = np.array([float(v) for v in parts[1:5]])
            tvec = np.array([float(v) for v in parts[5:8]])
            camera_id, name = int(parts[8]), " ".join(parts[9:])
            values = points_line.split()
            if len(values) % 3:
                raise ValueError
            ids = np.array([int(v) for v in values[2::3]], dtype=np.int64)
        except (IndexError, ValueError):
            raise _malformed(path, number, line) from None
        images.append((name, camera_id, qvec, tvec, ids[ids >= 0]))
    return images


def read_points_text(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Point ids ``[P]`` and positions ``[P, 3]`` of ``points3D.txt``."""
    ids, xyz = [], []
    for number, line in _text_lines(path):
        if not line.strip():
            continue
        parts = line.split()
        try:
            ids.append(int(parts[0]))
            xyz.append([float(v) for v in parts[1:4]])
        except (IndexError, ValueError):
            raise _malformed(path, number, line) from None
    return np.array(ids, dtype=np.int64), np.array(xyz, dtype=np.float64).reshape(-1, 3)


# ---------------------------------------------------------------- binary


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path, self.data, self.offset = path, path.read_bytes(), 0

    @property
    def left(self) -> int:
        return len(self.data) - self.offset

    def fail(self, detail: str) -> CaptureFormatError:
        return CaptureFormatError(self.path.parent, f"{self.path.name} {detail} (the file is "
                                  "truncated or corrupt; re-export the model from COLMAP)")

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if size > self.left:
            raise self.fail(f"ends early at byte {self.offset}")
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def count(self, what: str, record_size: int) -> int:
        """A record count, checked against the bytes left (each record >= record_size)."""
        (count,) = self.read("Q")
        if count * record_size > self.left:
            raise self.fail(f"declares {count} {what}, which would need at least "
                            f"{count * record_size} bytes, but only {self.left} remain")
        return count

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        array = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.offset)
        self.offset += dtype.itemsize * count
        return array

    def read_string(self) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise self.fail(f"ends early at byte {self.offset} (in an image name)")
        text = self.data[self.offset : end].decode("utf-8", errors="replace")
        self.offset = end + 1
        return text


def read_cameras_binary(path: Path) -> dict[int, Camera]:
    reader = _Reader(path)
    cameras = {}
    for _ in range(reader.count("cameras", CAMERA_RECORD)):
        camera_id, model_id, width, height = reader.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise reader.fail(f"has camera {camera_id} with unknown model id {model_id}")
        model, names = CAMERA_MODELS[model_id]
        params = list(reader.read(f"{len(names)}d"))
        cameras[camera_id] = make_camera(model, width, height, params, str(path),
                                         f"camera {camera_id}")
    return cameras


def read_images_binary(path: Path) -> list[tuple[str, int, np.ndarray, np.ndarray, np.ndarray]]:
    reader = _Reader(path)
    images = []
    for _ in range(reader.count("images", IMAGE_RECORD)):
        values = reader.read("i7di")
        qvec, tvec, camera_id = np.array(values[1:5]), np.array(values[5:8]), values[8]
        name = reader.read_string()
        points = reader.array(POINT2D, reader.count(f"2D points in image {name!r}",
                                                     POINT2D.itemsize))
        ids = points["id"].astype(np.int64)
        images.append((name, camera_id, qvec, tvec, ids[ids >= 0]))
    return images


def read_points_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    reader = _Reader(path)
    count = reader.count("3D points", POINT_RECORD)
    ids, xyz = np.empty(count, dtype=np.int64), np.empty((count, 3))
    for i in range(count):
        values = reader.read("Q3d3Bd")
        ids[i], xyz[i] = values[0], values[1:4]
        track = reader.count(f"track elements of point {values[0]}", 8)
        reader.offset += 8 * track  # (image id, point2D index) pairs: images.bin has them too
    return ids, xyz


# ---------------------------------------------------------------- model -> capture


def _read_model(folder: Path, found: ModelChoice) -> Capture:
    """Every image of one model, in natural name order (images missing on disk included)."""
    model, ext, root = found.model, found.ext, found.root
    binary = ext == ".bin"
    cameras = (read_cameras_binary if binary else read_cameras_text)(model / f"cameras{ext}")
    images = (read_images_binary if binary else read_images_text)(model / f"images{ext}")
    points_path = model / f"points3D{ext}"
    point_ids = point_xyz = None
    if points_path.is_file():
        point_ids, point_xyz = (read_points_binary if binary else read_points_text)(points_path)
    images_file = str(model / f"images{ext}")
    files = CaptureFiles(root, images_file)
    frames = []
    for name, camera_id, qvec, tvec, ids in sorted(images, key=lambda item: natural_key(item[0])):
        if camera_id not in cameras:
            raise CaptureFormatError(folder, f"image {name!r} uses camera {camera_id}, which "
                                     f"{model / ('cameras' + ext)} does not define")
        frames.append(CaptureFrame(name=name, image_path=find_image(files, name,
                                                                    found.image_folders),
                                   camera=cameras[camera_id],
                                   T_world_cam=_camera_to_world(qvec, tvec), point_ids=ids))
    if not frames:
        raise CaptureFormatError(folder, f"the COLMAP model in {model} has no images")
    return Capture(folder=root, camera_file=images_file, frames=frames, point_ids=point_ids,
                   point_xyz=point_xyz, notes=[found.note] if found.note else [],
                   sfm_points=points_path if points_path.is_file() else None)


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
