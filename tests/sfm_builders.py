"""COLMAP models with full tracks, written in code, for the SfM reference tests.

Geometry is chosen in the test (cameras, poses, 3D points); each point's observed pixel is its
projection through the camera's lens by OpenCV's ``projectPoints`` (not by dsviewer's code), so
the tests' expectations come from another implementation than the one tested.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from dataset_builders import colmap_quaternion, png_bytes

CAMERA_MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3,
                    "OPENCV": 4}


@dataclass
class SfmCamera:
    model: str  # PINHOLE or OPENCV
    width: int
    height: int
    params: list[float]  # COLMAP order: fx fy cx cy [k1 k2 p1 p2]

    def project(self, T_world_cam: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """COLMAP-convention pixels ``[N, 2]`` and z-depths ``[N]`` of world points."""
        T_cam_world = np.linalg.inv(T_world_cam)
        cam = xyz @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
        fx, fy, cx, cy = self.params[:4]
        K = np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]])
        dist = np.array(self.params[4:] or [0.0, 0.0, 0.0, 0.0], dtype=np.float64)
        pixels, _ = cv2.projectPoints(cam.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, dist)
        return pixels.reshape(-1, 2) + 0.5, cam[:, 2]


@dataclass
class SfmImage:
    name: str
    camera_id: int
    T_world_cam: np.ndarray


def observations(cameras: dict[int, SfmCamera], images: list[SfmImage], xyz: np.ndarray
                 ) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Per image, the observed pixels ``[F, 2]`` and point indices ``[F]`` of the points in
    front of it and inside it."""
    out = []
    for image in images:
        camera = cameras[image.camera_id]
        pixels, z = camera.project(image.T_world_cam, xyz)
        seen = (z > 0) & (pixels[:, 0] >= 0) & (pixels[:, 0] < camera.width) & (
            pixels[:, 1] >= 0) & (pixels[:, 1] < camera.height)
        out.append((pixels[seen], np.flatnonzero(seen)))
    return out


def write_sfm_model(folder: Path, cameras: dict[int, SfmCamera], images: list[SfmImage],
                    xyz: np.ndarray, error: np.ndarray, binary: bool, model: str = "sparse/0",
                    rgb: np.ndarray | None = None, stored_xyz: np.ndarray | None = None) -> Path:
    """A full model (features and tracks) of points ``xyz [P, 3]`` (ids 1..P) with
    reprojection errors ``error [P]``; feature ``f`` of image ``i`` observes its point.
    ``stored_xyz`` (default ``xyz``) is what points3D says, to write inconsistent models."""
    sparse = folder / model
    sparse.mkdir(parents=True, exist_ok=True)
    seen = observations(cameras, images, xyz)
    rgb = np.full((len(xyz), 3), 90, dtype=np.uint8) if rgb is None else rgb
    stored = xyz if stored_xyz is None else stored_xyz
    tracks: list[list[tuple[int, int]]] = [[] for _ in range(len(xyz))]
    for number, (_, points) in enumerate(seen, 1):
        for feature, p in enumerate(points):
            tracks[p].append((number, feature))
    if binary:
        data = struct.pack("<Q", len(cameras))
        for cid, cam in cameras.items():
            data += struct.pack("<iiQQ", cid, CAMERA_MODEL_IDS[cam.model], cam.width, cam.height)
            data += struct.pack(f"<{len(cam.params)}d", *cam.params)
        (sparse / "cameras.bin").write_bytes(data)
        data = struct.pack("<Q", len(images))
        for number, (image, (pixels, points)) in enumerate(zip(images, seen), 1):
            q, t = colmap_quaternion(image.T_world_cam)
            data += struct.pack("<i4d3di", number, *q, *t, image.camera_id)
            data += image.name.encode() + b"\0" + struct.pack("<Q", len(points))
            for (x, y), p in zip(pixels, points):
                data += struct.pack("<ddq", x, y, p + 1)
        (sparse / "images.bin").write_bytes(data)
        data = struct.pack("<Q", len(xyz))
        for p in range(len(xyz)):
            data += struct.pack("<Q3d3Bd", p + 1, *stored[p], *rgb[p], error[p])
            data += struct.pack("<Q", len(tracks[p]))
            data += b"".join(struct.pack("<II", i, f) for i, f in tracks[p])
        (sparse / "points3D.bin").write_bytes(data)
        return sparse
    (sparse / "cameras.txt").write_text("# cameras\n" + "".join(
        f"{cid} {cam.model} {cam.width} {cam.height} {' '.join(map(repr, cam.params))}\n"
        for cid, cam in cameras.items()))
    lines = ["# images"]
    for number, (image, (pixels, points)) in enumerate(zip(images, seen), 1):
        q, t = colmap_quaternion(image.T_world_cam)
        lines.append(f"{number} {' '.join(repr(float(v)) for v in [*q, *t])} "
                     f"{image.camera_id} {image.name}")
        lines.append(" ".join(f"{float(x)!r} {float(y)!r} {p + 1}"
                              for (x, y), p in zip(pixels, points)))
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    (sparse / "points3D.txt").write_text("# points\n" + "".join(
        f"{p + 1} {' '.join(repr(float(v)) for v in stored[p])} {' '.join(map(str, rgb[p]))} "
        f"{float(error[p])!r} {' '.join(f'{i} {f}' for i, f in tracks[p])}\n"
        for p in range(len(xyz))))
    return sparse


def dot_image(camera: SfmCamera, pixels: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 ``[H, W, 3]``: a Gaussian dot of ``sigma`` px at each pixel (COLMAP convention)."""
    ys, xs = np.mgrid[0 : camera.height, 0 : camera.width] + 0.5
    value = np.zeros((camera.height, camera.width))
    for x, y in pixels:
        value = np.maximum(value, np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)))
    return np.repeat((value * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def write_images(folder: Path, cameras: dict[int, SfmCamera], images: list[SfmImage],
                 xyz: np.ndarray, sigma: float = 3.0) -> None:
    """Each image shows its observed points as dots (so their place survives preprocessing)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for image, (pixels, _) in zip(images, observations(cameras, images, xyz)):
        camera = cameras[image.camera_id]
        (folder / "images" / image.name).write_bytes(png_bytes(dot_image(camera, pixels, sigma)))
