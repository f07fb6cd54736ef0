"""Tiny datasets written in code for the dataset tests: chunks, COLMAP models, transforms.json."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dsviewer.dataset import PreprocessSettings
from dsviewer.dataset.chunks import ChunkExample, write_chunk, write_index

H, W = 32, 48
SETTINGS = PreprocessSettings(image_shape=(H, W), near=0.5, far=100.0, patch_multiple=16)
OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def png_bytes(array: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def noise_image(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def pose(x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw_degrees: float = 0.0) -> np.ndarray:
    """Camera-to-world, OpenCV axes: centre (x, y, z), turned about the +Y axis."""
    a = np.deg2rad(yaw_degrees)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = x, y, z
    return T


def tiny_example(num_frames: int = 4, key: str = "tiny", spacing: float = 0.5) -> ChunkExample:
    """A chunk example of noise JPEGs and cameras moving along +X (fx = 0.8, centred)."""
    rows = []
    for i in range(num_frames):
        w2c = np.linalg.inv(pose(x=spacing * i))
        rows.append([0.8, 1.2, 0.5, 0.5, 0.0, 0.0, *w2c[:3].ravel()])
    images = []
    for i in range(num_frames):
        buffer = io.BytesIO()
        Image.fromarray(noise_image(i)).save(buffer, format="JPEG", quality=95)
        images.append(torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8))
    return ChunkExample(key=key, url="", timestamps=torch.arange(num_frames),
                        cameras=torch.tensor(rows, dtype=torch.float32), images=images)


def write_root(root: Path, example: ChunkExample) -> Path:
    write_chunk(root / "000000.torch", [example])
    write_index(root, {example.key: "000000.torch"})
    return root


def colmap_quaternion(T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP's world-to-camera ``(qw qx qy qz)`` and ``t`` for a camera-to-world pose."""
    w2c = np.linalg.inv(T_world_cam)
    R = w2c[:3, :3]
    qw = np.sqrt(max(0.0, 1 + np.trace(R))) / 2
    q = np.array([qw, (R[2, 1] - R[1, 2]) / (4 * qw), (R[0, 2] - R[2, 0]) / (4 * qw),
                  (R[1, 0] - R[0, 1]) / (4 * qw)])
    return q, w2c[:3, 3]


def write_colmap_text(folder: Path, cameras: dict[int, tuple[str, int, int, list[float]]],
                      images: list[tuple[str, int, np.ndarray, list[int]]],
                      points: dict[int, np.ndarray] | None = None, model: str = "sparse/0"
                      ) -> Path:  # fmt: skip
    """``cameras``: id -> (model, width, height, params); ``images``: (name, camera id,
    T_world_cam, observed point ids); ``points``: id -> xyz; written into ``folder/model``."""
    sparse = folder / model
    sparse.mkdir(parents=True, exist_ok=True)
    (sparse / "cameras.txt").write_text("".join(
        f"{cid} {model} {w} {h} {' '.join(repr(float(p)) for p in params)}\n"
        for cid, (model, w, h, params) in cameras.items()))
    lines = ["# images"]
    for number, (name, cid, T, ids) in enumerate(images, 1):
        q, t = colmap_quaternion(T)
        lines.append(f"{number} {' '.join(repr(float(v)) for v in [*q, *t])} {cid} {name}")
        lines.append(" ".join(f"1.0 2.0 {pid}" for pid in ids))
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    if points is not None:
        (sparse / "points3D.txt").write_text("".join(
            f"{pid} {float(x)!r} {float(y)!r} {float(z)!r} 128 128 128 0.5\n"
            for pid, (x, y, z) in points.items()))
    return sparse


def write_colmap_binary(folder: Path, camera: tuple[int, int, int, list[float]],
                        images: list[tuple[str, np.ndarray, int]]) -> Path:
    """One camera ``(model id, width, height, params)``; images ``(name, T_world_cam,
    num_points2D written in the header)`` each followed by that many (x, y, id) records, or
    none when the count is a lie (a corrupt file)."""
    sparse = folder / "sparse" / "0"
    sparse.mkdir(parents=True, exist_ok=True)
    model_id, width, height, params = camera
    (sparse / "cameras.bin").write_bytes(struct.pack("<QiiQQ", 1, 1, model_id, width, height)
                                         + struct.pack(f"<{len(params)}d", *params))
    data = struct.pack("<Q", len(images))
    for number, (name, T, num_points) in enumerate(images, 1):
        q, t = colmap_quaternion(T)
        data += struct.pack("<i4d3di", number, *q, *t, 1) + name.encode() + b"\0"
        data += struct.pack("<Q", num_points)
        if num_points < 1000:
            data += struct.pack("<ddq", 1.0, 2.0, -1) * num_points
    (sparse / "images.bin").write_bytes(data)
    return sparse


def write_transforms(folder: Path, frames: list[tuple[str, np.ndarray]], name: str =
                     "transforms.json", **meta) -> Path:
    """``frames``: (file_path, T_world_cam with OpenCV axes), stored with OpenGL axes."""
    path = folder / name
    path.write_text(json.dumps({**meta, "frames": [
        {"file_path": file_path, "transform_matrix": (T @ OPENGL_FROM_OPENCV).tolist()}
        for file_path, T in frames]}))
    return path
