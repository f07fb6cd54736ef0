"""COLMAP's sparse-model files (``cameras``, ``images``, ``points3D``; binary or text) as arrays.

Read once per capture: ``colmap.py`` turns the result into frames (poses, cameras, which points
each image sees, for the view choice) and ``sfm.py`` into the SfM reference depth, which needs
more: per image every 2D feature ``(x, y)`` (COLMAP pixel convention, the top-left pixel's
centre at ``(0.5, 0.5)``), and per 3D point its position, colour, mean reprojection error
(pixels) and track, the ``(image id, feature index)`` pairs that observed it.

Binary counts are checked against the bytes left before anything is allocated or looped over,
so a corrupt count is an error naming the file, not a crash; text files are read line by line.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .camera_models import CAMERA_MODELS, Camera, make_camera
from .errors import CaptureFormatError

POINT2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])  # images.bin, per feature
TRACK_ELEMENT = np.dtype([("image", "<u4"), ("feature", "<u4")])  # points3D.bin, per element
POINT_HEAD = np.dtype([("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3), ("error", "<f8")])
CAMERA_RECORD = struct.calcsize("<iiQQ")
IMAGE_RECORD = struct.calcsize("<i7di") + 1 + 8  # + empty name's NUL + num_points2D
POINT_RECORD = POINT_HEAD.itemsize + 8  # + track length
GATHER_BLOCK = 1 << 16  # points (or track elements) gathered per numpy step


@dataclass(frozen=True)
class ImageRecord:
    """One registered image: its world-to-camera pose as COLMAP stores it, and its features."""

    name: str
    image_id: int
    camera_id: int
    qvec: np.ndarray  # [4] float64 (w, x, y, z)
    tvec: np.ndarray  # [3] float64
    xy: np.ndarray  # [F, 2] float64 pixels, COLMAP convention
    point_ids: np.ndarray  # [F] int64 3D point id of each feature, -1 for none

    @property
    def observed(self) -> np.ndarray:
        """``[P]`` int64 ids of the 3D points this image observes."""
        return self.point_ids[self.point_ids >= 0]


@dataclass(frozen=True)
class PointTracks:
    """Every 3D point of a model with its track, flattened: track element ``k`` says that
    image ``track_image[k]`` observed point ``track_point[k]`` (an index into ``ids``) at its
    feature ``track_feature[k]``."""

    ids: np.ndarray  # [P] int64 COLMAP point ids
    xyz: np.ndarray  # [P, 3] float64, the model's world frame
    rgb: np.ndarray  # [P, 3] uint8
    error: np.ndarray  # [P] float64 mean reprojection error, pixels
    track_point: np.ndarray  # [T] int64 index into ids
    track_image: np.ndarray  # [T] int64 image id
    track_feature: np.ndarray  # [T] int64 feature index in that image


@dataclass(frozen=True)
class SparseModel:
    """One model folder's contents; ``tracks`` is None when it has no ``points3D`` file."""

    cameras: dict[int, Camera]
    images: list[ImageRecord]
    tracks: PointTracks | None
    points_path: Path | None


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


def read_images_text(path: Path) -> list[ImageRecord]:
    """Two lines per image: ``id qw qx qy qz tx ty tz camera_id name``, then ``x y point3D_id``
    per feature."""
    lines = _text_lines(path)
    images = []
    for row in range(0, len(lines), 2):
        number, line = lines[row]
        if not line.strip():
            continue
        parts = line.split()
        values = lines[row + 1][1].split() if row + 1 < len(lines) else []
        try:
            if len(values) % 3 or len(parts) < 10:
                raise ValueError
            pose = np.array(parts[1:8], dtype=np.float64)
            table = np.array(values, dtype=np.float64).reshape(-1, 3)
            images.append(ImageRecord(" ".join(parts[9:]), int(parts[0]), int(parts[8]),
                                      pose[:4], pose[4:], table[:, :2],
                                      table[:, 2].astype(np.int64)))
        except (IndexError, ValueError):
            raise _malformed(path, number, line) from None
    return images


def _tracks(ids: list[int], xyz: list, rgb: list, error: list, tracks: list[np.ndarray]
            ) -> PointTracks:  # fmt: skip
    lengths = np.array([len(t) for t in tracks], dtype=np.int64)
    flat = np.concatenate(tracks) if tracks else np.zeros((0, 2), dtype=np.int64)
    return PointTracks(
        ids=np.array(ids, dtype=np.int64),
        xyz=np.array(xyz, dtype=np.float64).reshape(-1, 3),
        rgb=np.array(rgb, dtype=np.uint8).reshape(-1, 3),
        error=np.array(error, dtype=np.float64),
        track_point=np.repeat(np.arange(len(ids), dtype=np.int64), lengths),
        track_image=flat[:, 0].astype(np.int64),
        track_feature=flat[:, 1].astype(np.int64))


def read_point_tracks_text(path: Path) -> PointTracks:
    """``points3D.txt``: ``id x y z r g b error (image_id feature_index)...`` per line."""
    ids, xyz, rgb, error, tracks = [], [], [], [], []
    for number, line in _text_lines(path):
        if not line.strip():
            continue
        parts = line.split()
        try:
            track = np.array(parts[8:], dtype=np.int64)
            if len(parts) < 8 or len(track) % 2:
                raise ValueError
            ids.append(int(parts[0]))
            xyz.append([float(v) for v in parts[1:4]])
            rgb.append([int(v) for v in parts[4:7]])
            error.append(float(parts[7]))
        except (IndexError, ValueError):
            raise _malformed(path, number, line) from None
        tracks.append(track.reshape(-1, 2))
    return _tracks(ids, xyz, rgb, error, tracks)


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


def read_images_binary(path: Path) -> list[ImageRecord]:
    reader = _Reader(path)
    images = []
    for _ in range(reader.count("images", IMAGE_RECORD)):
        values = reader.read("i7di")
        name = reader.read_string()
        table = reader.array(POINT2D, reader.count(f"2D points in image {name!r}",
                                                    POINT2D.itemsize))
        xy = np.stack([table["x"], table["y"]], axis=-1).astype(np.float64)
        images.append(ImageRecord(name, values[0], values[8], np.array(values[1:5]),
                                  np.array(values[5:8]), xy, table["id"].astype(np.int64)))
    return images


def _gather(raw: np.ndarray, offsets: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Records of ``dtype`` starting at byte ``offsets`` ``[N]`` of ``raw``, in blocks of
    :data:`GATHER_BLOCK` so the index arrays stay small."""
    out = np.empty(len(offsets), dtype=dtype)
    for block in range(0, len(offsets), GATHER_BLOCK):
        first = offsets[block : block + GATHER_BLOCK]
        out[block : block + len(first)] = (
            raw[first[:, None] + np.arange(dtype.itemsize)].reshape(-1).view(dtype))
    return out


def read_point_tracks_binary(path: Path) -> PointTracks:
    """``points3D.bin``: per point ``id, xyz, rgb, error, track length, (image, feature)...``.

    One pass finds each record (checking every track length against the bytes left); numpy
    then gathers the fixed-size fields and the track elements."""
    reader = _Reader(path)
    count = reader.count("3D points", POINT_RECORD)
    data, at = reader.data, reader.offset
    starts, lengths = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64)
    length_field = struct.Struct("<Q")
    for i in range(count):
        if at + POINT_RECORD > len(data):
            raise reader.fail(f"ends early at byte {at} (in point {i + 1} of {count})")
        (length,) = length_field.unpack_from(data, at + POINT_HEAD.itemsize)
        if length * TRACK_ELEMENT.itemsize > len(data) - at - POINT_RECORD:
            (point_id,) = length_field.unpack_from(data, at)
            raise reader.fail(f"declares {length} track elements of point {point_id} (at byte "
                              f"{at}), more than the {len(data) - at - POINT_RECORD} bytes left")
        starts[i], lengths[i] = at, length
        at += POINT_RECORD + TRACK_ELEMENT.itemsize * length
    raw = np.frombuffer(data, dtype=np.uint8)
    heads = _gather(raw, starts, POINT_HEAD)
    total = int(lengths.sum())
    before = np.repeat(np.cumsum(lengths) - lengths, lengths)  # elements of earlier points
    element_at = (np.repeat(starts + POINT_RECORD, lengths)
                  + TRACK_ELEMENT.itemsize * (np.arange(total) - before))
    track = _gather(raw, element_at, TRACK_ELEMENT)
    return PointTracks(
        ids=heads["id"].astype(np.int64), xyz=heads["xyz"].astype(np.float64),
        rgb=heads["rgb"].astype(np.uint8), error=heads["error"].astype(np.float64),
        track_point=np.repeat(np.arange(count, dtype=np.int64), lengths),
        track_image=track["image"].astype(np.int64),
        track_feature=track["feature"].astype(np.int64))


# ---------------------------------------------------------------- one model


def read_sparse_model(model: Path, ext: str) -> SparseModel:
    """The model in folder ``model``, whose files end in ``ext`` (``.bin`` or ``.txt``)."""
    binary = ext == ".bin"
    cameras = (read_cameras_binary if binary else read_cameras_text)(model / f"cameras{ext}")
    images = (read_images_binary if binary else read_images_text)(model / f"images{ext}")
    points = model / f"points3D{ext}"
    if not points.is_file():
        return SparseModel(cameras, images, None, None)
    tracks = (read_point_tracks_binary if binary else read_point_tracks_text)(points)
    return SparseModel(cameras, images, tracks, points)
