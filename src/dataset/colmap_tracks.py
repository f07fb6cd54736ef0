"""What a COLMAP model says about its 3D points: where each image observed them.

``colmap.py`` reads poses and cameras (and, for view choice, which points each image sees);
the SfM reference depth (``sfm.py``) needs more: per image its id and every 2D feature
``(x, y)`` (COLMAP pixel convention, the top-left pixel's centre at ``(0.5, 0.5)``), and per 3D
point its position, colour, mean reprojection error (pixels) and track, the list of
``(image id, feature index)`` pairs that observed it. Binary counts are checked against the
bytes left before anything is allocated (``colmap._Reader``); text files are read line by line.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .colmap import IMAGE_RECORD, POINT2D, POINT_RECORD, _malformed, _Reader, _text_lines

TRACK_ELEMENT = np.dtype([("image", "<u4"), ("feature", "<u4")])  # points3D.bin, per element
POINT_HEAD = np.dtype([("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3), ("error", "<f8")])
GATHER_BLOCK = 1 << 16


@dataclass(frozen=True)
class ImageFeatures:
    """One registered image's 2D features."""

    image_id: int
    xy: np.ndarray  # [F, 2] float64 pixels, COLMAP convention (top-left pixel centre 0.5)
    point_ids: np.ndarray  # [F] int64 3D point id of each feature, -1 for none


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


def read_image_features_text(path: Path) -> dict[str, ImageFeatures]:
    """``images.txt``: name -> its features (two lines per image, the second ``x y id`` per
    feature)."""
    lines = _text_lines(path)
    images = {}
    for row in range(0, len(lines), 2):
        number, line = lines[row]
        if not line.strip():
            continue
        parts = line.split()
        values = lines[row + 1][1].split() if row + 1 < len(lines) else []
        try:
            image_id, name = int(parts[0]), " ".join(parts[9:])
            if len(values) % 3 or len(parts) < 10:
                raise ValueError
            table = np.array(values, dtype=np.float64).reshape(-1, 3)
        except (IndexError, ValueError):
            raise _malformed(path, number, line) from None
        images[name] = ImageFeatures(image_id, table[:, :2], table[:, 2].astype(np.int64))
    return images


def read_image_features_binary(path: Path) -> dict[str, ImageFeatures]:
    """``images.bin``: name -> its features."""
    reader = _Reader(path)
    images = {}
    for _ in range(reader.count("images", IMAGE_RECORD)):
        image_id = reader.read("i7di")[0]
        name = reader.read_string()
        table = reader.array(POINT2D, reader.count(f"2D points in image {name!r}",
                                                    POINT2D.itemsize))
        xy = np.stack([table["x"], table["y"]], axis=-1).astype(np.float64)
        images[name] = ImageFeatures(image_id, xy, table["id"].astype(np.int64))
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


def read_point_tracks_binary(path: Path) -> PointTracks:
    """``points3D.bin``: per point ``id, xyz, rgb, error, track length, (image, feature)...``.

    One pass finds each record (checking every track length against the bytes left); numpy
    then gathers the fixed-size fields and the track elements, in blocks of
    :data:`GATHER_BLOCK` points so the index arrays stay small."""
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
            raise reader.fail(f"declares {length} track elements at byte {at}, more than the "
                              f"{len(data) - at - POINT_RECORD} bytes left")
        starts[i], lengths[i] = at, length
        at += POINT_RECORD + TRACK_ELEMENT.itemsize * length
    raw = np.frombuffer(data, dtype=np.uint8)
    heads = np.empty(count, dtype=POINT_HEAD)
    for block in range(0, count, GATHER_BLOCK):
        first = starts[block : block + GATHER_BLOCK]
        heads[block : block + len(first)] = (
            raw[first[:, None] + np.arange(POINT_HEAD.itemsize)].reshape(-1).view(POINT_HEAD))
    total = int(lengths.sum())
    before = np.repeat(np.cumsum(lengths) - lengths, lengths)  # elements of earlier points
    element_at = (np.repeat(starts + POINT_RECORD, lengths)
                  + TRACK_ELEMENT.itemsize * (np.arange(total) - before))
    track = np.empty(total, dtype=TRACK_ELEMENT)
    for block in range(0, total, GATHER_BLOCK):
        first = element_at[block : block + GATHER_BLOCK]
        track[block : block + len(first)] = (
            raw[first[:, None] + np.arange(TRACK_ELEMENT.itemsize)].reshape(-1)
            .view(TRACK_ELEMENT))
    return PointTracks(
        ids=heads["id"].astype(np.int64), xyz=heads["xyz"].astype(np.float64),
        rgb=heads["rgb"].astype(np.uint8), error=heads["error"].astype(np.float64),
        track_point=np.repeat(np.arange(count, dtype=np.int64), lengths),
        track_image=track["image"].astype(np.int64),
        track_feature=track["feature"].astype(np.int64))


def read_model_observations(model: Path, ext: str
                            ) -> tuple[dict[str, ImageFeatures], PointTracks] | None:
    """Features and tracks of the model in ``model`` (``ext`` ``.bin`` or ``.txt``), or None
    when it has no ``points3D`` file."""
    points = model / f"points3D{ext}"
    if not points.is_file():
        return None
    if ext == ".bin":
        return read_image_features_binary(model / "images.bin"), read_point_tracks_binary(points)
    return read_image_features_text(model / "images.txt"), read_point_tracks_text(points)
