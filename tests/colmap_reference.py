"""An independent reader of COLMAP's binary models, for the tests that check dsviewer's own
readers on real captures (written from COLMAP's documented format, sharing no code with
``src/dataset/colmap_files.py``)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

PARAMETER_COUNTS = {0: 3, 1: 4, 2: 4, 3: 5, 4: 8, 5: 8, 6: 12, 7: 5, 8: 4, 9: 5, 10: 12}
"""Camera model id -> number of parameters (SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, ...)."""


def quaternion_matrix(qw: float, qx: float, qy: float, qz: float) -> np.ndarray:
    """The rotation [3, 3] of a unit quaternion (w, x, y, z), re-normalised by its determinant."""
    R = np.array([
        [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)],
        [2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)],
        [2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)]])
    return R / np.cbrt(np.linalg.det(R))


def read_binary_model(folder: Path) -> tuple[dict, dict, dict]:
    """``cameras.bin``, ``images.bin`` and ``points3D.bin`` of ``folder``:

    * cameras ``{id: (width, height, model id, params [P])}``;
    * images ``{name: (T_cam_world [4, 4], camera id, xy [F, 2], point ids [F], -1 = none)}``;
    * points ``{id: (xyz [3], mean reprojection error in pixels)}``.
    """
    data = (folder / "cameras.bin").read_bytes()
    cameras, at = {}, 8
    for _ in range(struct.unpack_from("<Q", data)[0]):
        cid, model, width, height = struct.unpack_from("<iiQQ", data, at)
        count = PARAMETER_COUNTS[model]
        params = np.array(struct.unpack_from(f"<{count}d", data, at + 24))
        cameras[cid] = (width, height, model, params)
        at += 24 + 8 * count
    data = (folder / "images.bin").read_bytes()
    images, at = {}, 8
    for _ in range(struct.unpack_from("<Q", data)[0]):
        _, qw, qx, qy, qz, tx, ty, tz, cid = struct.unpack_from("<i7di", data, at)
        end = data.index(b"\0", at + 64)
        name = data[at + 64 : end].decode()
        count = struct.unpack_from("<Q", data, end + 1)[0]
        table = np.frombuffer(data, dtype=[("x", "<f8"), ("y", "<f8"), ("id", "<i8")],
                              count=count, offset=end + 9)
        at = end + 9 + 24 * count
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = quaternion_matrix(qw, qx, qy, qz), (tx, ty, tz)
        images[name] = (T, cid, np.stack([table["x"], table["y"]], -1), table["id"].copy())
    data = (folder / "points3D.bin").read_bytes()
    points, at = {}, 8
    for _ in range(struct.unpack_from("<Q", data)[0]):
        pid, x, y, z = struct.unpack_from("<Q3d", data, at)
        error, length = struct.unpack_from("<dQ", data, at + 35)
        points[pid] = (np.array([x, y, z]), error)
        at += 51 + 8 * length
    return cameras, images, points
