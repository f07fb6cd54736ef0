"""COLMAP sparse models (``cameras`` + ``images``, binary or text) to :class:`CaptureFrame`s.

COLMAP stores world-to-camera poses (quaternion ``qw qx qy qz`` + translation) with OpenCV axes.
Only ``fx, fy, cx, cy`` of each camera model are used: distortion coefficients are ignored (the
model is a pinhole camera), and the loader logs a warning when any are non-zero. Undistort the
images first (``colmap image_undistorter``) for exact geometry.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .capture_frame import CaptureFrame
from .errors import CaptureFormatError

# model id -> (name, number of parameters); the first ones are focal(s) and principal point.
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
MODEL_IDS = {name: model_id for model_id, (name, _) in CAMERA_MODELS.items()}
SINGLE_FOCAL = {"SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE",
                "RADIAL_FISHEYE"}
MODEL_FOLDERS = ("sparse/0", "sparse", "colmap/sparse/0", "distorted/sparse/0", ".")


def pinhole_from_params(model: str, params: list[float]) -> tuple[tuple[float, ...], tuple]:
    """``(fx, fy, cx, cy)`` and the remaining (ignored) parameters of a camera model."""
    if model in SINGLE_FOCAL:
        f, cx, cy = params[:3]
        return (f, f, cx, cy), tuple(params[3:])
    fx, fy, cx, cy = params[:4]
    return (fx, fy, cx, cy), tuple(params[4:])


def quaternion_to_rotation(qvec: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` to a 3x3 rotation matrix."""
    w, x, y, z = qvec / np.linalg.norm(qvec)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _camera_to_world(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    T_cam_world = np.eye(4)
    T_cam_world[:3, :3] = quaternion_to_rotation(qvec)
    T_cam_world[:3, 3] = tvec
    return np.linalg.inv(T_cam_world)


# ---------------------------------------------------------------- text


def read_cameras_text(path: Path) -> dict[int, tuple[str, int, int, list[float]]]:
    """camera id -> (model name, width, height, params)."""
    cameras = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        try:
            camera_id, model, width, height = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = [float(p) for p in parts[4:]]
        except (IndexError, ValueError):
            raise CaptureFormatError(path.parent, f"{path.name} line {number} is malformed: "
                                     f"{line!r}") from None
        if model not in MODEL_IDS:
            raise CaptureFormatError(path.parent, f"unknown camera model {model!r} in {path}")
        cameras[camera_id] = (model, width, height, params)
    return cameras


def read_images_text(path: Path) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """[(name, camera id, qvec, tvec)]; every image takes two lines (the second: its points)."""
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    images = []
    for number in range(0, len(lines), 2):
        line = lines[number]
        if not line.strip():
            continue
        parts = line.split()
        try:
            qvec = np.array([float(v) for v in parts[1:5]])
            tvec = np.array([float(v) for v in parts[5:8]])
            camera_id, name = int(parts[8]), " ".join(parts[9:])
        except (IndexError, ValueError):
            raise CaptureFormatError(path.parent, f"{path.name} has a malformed image line: "
                                     f"{line!r}") from None
        images.append((name, camera_id, qvec, tvec))
    return images


# ---------------------------------------------------------------- binary


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path, self.data, self.offset = path, path.read_bytes(), 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise CaptureFormatError(self.path.parent, f"{self.path.name} ends early (truncated)")
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def read_string(self) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise CaptureFormatError(self.path.parent, f"{self.path.name} ends early (truncated)")
        text = self.data[self.offset : end].decode("utf-8")
        self.offset = end + 1
        return text


def read_cameras_binary(path: Path) -> dict[int, tuple[str, int, int, list[float]]]:
    reader = _Reader(path)
    cameras = {}
    for _ in range(reader.read("Q")[0]):
        camera_id, model_id, width, height = reader.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise CaptureFormatError(path.parent, f"unknown camera model id {model_id} in {path}")
        model, num_params = CAMERA_MODELS[model_id]
        cameras[camera_id] = (model, width, height, list(reader.read(f"{num_params}d")))
    return cameras


def read_images_binary(path: Path) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    reader = _Reader(path)
    images = []
    for _ in range(reader.read("Q")[0]):
        values = reader.read("i7di")
        qvec, tvec, camera_id = np.array(values[1:5]), np.array(values[5:8]), values[8]
        name = reader.read_string()
        num_points = reader.read("Q")[0]
        reader.read(f"{num_points * 24}x")  # skip (x, y, point3D id) per 2-D point
        images.append((name, camera_id, qvec, tvec))
    return images


# ---------------------------------------------------------------- model -> frames


def find_model(folder: Path) -> tuple[Path, str] | None:
    """The folder holding ``cameras``/``images`` and their extension (``.bin`` or ``.txt``)."""
    for sub in MODEL_FOLDERS:
        model = folder / sub
        for ext in (".bin", ".txt"):
            if (model / f"cameras{ext}").is_file() and (model / f"images{ext}").is_file():
                return model, ext
    return None


def find_image(folder: Path, name: str) -> Path:
    for candidate in (folder / "images" / name, folder / name):
        if candidate.is_file():
            return candidate
    raise CaptureFormatError(folder, f"the COLMAP model names image {name!r}, but neither "
                             f"images/{name} nor {name} exists")


def read_colmap(folder: Path) -> list[CaptureFrame]:
    """All registered images of the COLMAP model in ``folder``, sorted by name."""
    found = find_model(folder)
    if found is None:
        raise CaptureFormatError(folder, "no COLMAP model found (looked in "
                                 + ", ".join(MODEL_FOLDERS) + ")")
    model, ext = found
    if ext == ".bin":
        cameras = read_cameras_binary(model / "cameras.bin")
        images = read_images_binary(model / "images.bin")
    else:
        cameras = read_cameras_text(model / "cameras.txt")
        images = read_images_text(model / "images.txt")
    frames = []
    for name, camera_id, qvec, tvec in sorted(images, key=lambda item: item[0]):
        if camera_id not in cameras:
            raise CaptureFormatError(folder, f"image {name!r} uses camera {camera_id}, which "
                                     f"{model / ('cameras' + ext)} does not define")
        camera_model, width, height, params = cameras[camera_id]
        (fx, fy, cx, cy), rest = pinhole_from_params(camera_model, params)
        frames.append(
            CaptureFrame(name=name, image_path=find_image(folder, name), width=width,
                         height=height, fx=fx, fy=fy, cx=cx, cy=cy,
                         T_world_cam=_camera_to_world(qvec, tvec), camera_model=camera_model,
                         distortion=rest)
        )
    if not frames:
        raise CaptureFormatError(folder, f"the COLMAP model in {model} has no images")
    return frames
