"""nerfstudio / instant-ngp ``transforms.json`` to :class:`CaptureFrame`s.

``transform_matrix`` is camera-to-world with **OpenGL** camera axes (+X right, +Y up, +Z
backward); we right-multiply by ``diag(1, -1, -1, 1)`` to get OpenCV axes, as DepthSplat's DL3DV
converter does. Intrinsics come from ``fl_x, fl_y, cx, cy, w, h`` (per frame or global), or from
``camera_angle_x`` (Blender style) with the principal point at the centre. Distortion keys
(``k1.. p2``) are ignored, with a warning from the capture loader.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from .capture_frame import CaptureFrame
from .errors import CaptureFormatError

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size  # (width, height)


def _resolve_image(folder: Path, file_path: str) -> Path:
    path = folder / file_path
    if path.is_file():
        return path
    for suffix in (".png", ".jpg", ".jpeg", ".JPG", ".PNG"):  # Blender files omit the suffix
        if path.with_suffix(suffix).is_file():
            return path.with_suffix(suffix)
    raise CaptureFormatError(folder, f"transforms.json names image {file_path!r}, which does "
                             "not exist")


def read_transforms(folder: Path, name: str = "transforms.json") -> list[CaptureFrame]:
    """Frames of ``folder/transforms.json``, sorted by image path."""
    path = folder / name
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CaptureFormatError(folder, f"{name} is not valid JSON ({exc})") from None
    raw_frames = meta.get("frames") if isinstance(meta, dict) else None
    if not raw_frames:
        raise CaptureFormatError(folder, f"{name} has no 'frames' list")
    frames = []
    for number, raw in enumerate(raw_frames):
        values = {**meta, **raw}  # per-frame intrinsics override the global ones
        if "file_path" not in raw or "transform_matrix" not in raw:
            raise CaptureFormatError(folder, f"frame {number} of {name} lacks file_path or "
                                     "transform_matrix")
        image_path = _resolve_image(folder, raw["file_path"])
        matrix = np.asarray(raw["transform_matrix"], dtype=np.float64)
        if matrix.shape == (3, 4):
            matrix = np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])
        if matrix.shape != (4, 4):
            raise CaptureFormatError(folder, f"frame {number} transform_matrix has shape "
                                     f"{matrix.shape}, expected 4x4")
        if "w" in values and "h" in values:
            width, height = int(values["w"]), int(values["h"])
        else:
            width, height = _image_size(image_path)
        if "fl_x" in values:
            fx = float(values["fl_x"])
            fy = float(values.get("fl_y", fx))
        elif "camera_angle_x" in values:
            fx = 0.5 * width / math.tan(0.5 * float(values["camera_angle_x"]))
            fy = (0.5 * height / math.tan(0.5 * float(values["camera_angle_y"]))
                  if "camera_angle_y" in values else fx)
        else:
            raise CaptureFormatError(folder, f"{name} gives no focal length (fl_x or "
                                     "camera_angle_x)")
        frames.append(
            CaptureFrame(
                name=str(raw["file_path"]),
                image_path=image_path,
                width=width,
                height=height,
                fx=fx,
                fy=fy,
                cx=float(values.get("cx", width / 2)),
                cy=float(values.get("cy", height / 2)),
                T_world_cam=matrix @ OPENGL_TO_OPENCV,
                camera_model=str(values.get("camera_model", "OPENCV")),
                distortion=tuple(float(values.get(k, 0.0)) for k in DISTORTION_KEYS),
            )
        )
    return sorted(frames, key=lambda frame: frame.name)
