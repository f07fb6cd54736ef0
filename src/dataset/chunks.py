"""DepthSplat's ``.torch`` chunk format: reading, atomic writing and look-up by key.

A chunk is a ``torch.save``d list of examples, each a dict::

    key         str
    url         str
    timestamps  int64 [N]
    cameras     float32 [N, 18]   fx fy cx cy (normalized), 2 unused, 3x4 world-to-camera row-major
    images      list of N uint8 [num_bytes] tensors, each an encoded JPEG
    depths      (optional, our extension) list of N float32 [H, W] metric z-depth, 0 = unknown

RE10K and DL3DV chunks share this layout: the DL3DV converter stores the nerfstudio OpenGL
camera-to-world matrices converted to OpenCV world-to-camera, and intrinsics normalized by the
stored image size, exactly like RE10K. They differ only in image size (360x640 for RE10K,
270x480 / 540x960 for DL3DV), which the preprocessing handles.

A dataset root holds chunks plus an ``index.json`` mapping key -> chunk file name (relative to
the root). Roots may also be a parent folder with ``test/`` and/or ``train/`` subfolders, as the
official layout ``datasets/re10k/test/000000.torch`` has.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dsviewer.io.atomic import atomic_write
from dsviewer.io.text_formats import MalformedTextError, parse_json

from .errors import CameraFormatError, ChunkFormatError, MissingRootError, UnknownSceneKeyError
from .paths import path_inside

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
CAMERA_ROW = 18
STAGES = ("test", "train")


@dataclass
class ChunkExample:
    """One scene of a chunk, validated."""

    key: str
    url: str
    timestamps: Tensor  # [N] int64
    cameras: Tensor  # [N, 18] float32
    images: list[Tensor]  # N x [num_bytes] uint8, encoded JPEG
    depths: list[Tensor] | None = None  # N x [H, W] float32

    @property
    def num_frames(self) -> int:
        return int(self.cameras.shape[0])

    def to_dict(self) -> dict:
        example = {
            "key": self.key,
            "url": self.url,
            "timestamps": self.timestamps,
            "cameras": self.cameras,
            "images": self.images,
        }
        if self.depths is not None:
            example["depths"] = self.depths
        return example


def example_from_dict(raw: object, source: str) -> ChunkExample:
    """Validate one raw chunk entry (from ``torch.load``) into a :class:`ChunkExample`."""
    if not isinstance(raw, dict):
        raise ChunkFormatError(Path(source), f"an entry is a {type(raw).__name__}, not a dict")
    missing = [k for k in ("key", "cameras", "images") if k not in raw]
    if missing:
        raise ChunkFormatError(Path(source), f"an entry lacks {', '.join(missing)}")
    key = str(raw["key"])
    where = f"scene {key!r} in {source}"
    cameras = raw["cameras"]
    if not isinstance(cameras, Tensor) or cameras.ndim != 2 or cameras.shape[1] != CAMERA_ROW:
        shape = tuple(cameras.shape) if isinstance(cameras, Tensor) else type(cameras).__name__
        raise CameraFormatError(where, f"'cameras' has shape {shape}, expected [N, {CAMERA_ROW}]")
    images = list(raw["images"])
    if len(images) != cameras.shape[0]:
        raise CameraFormatError(
            where, f"{cameras.shape[0]} camera rows but {len(images)} images"
        )
    depths = raw.get("depths")
    if depths is not None:
        depths = list(depths)
        if len(depths) != len(images):
            raise ChunkFormatError(
                Path(source), f"scene {key!r} has {len(images)} images but {len(depths)} depths"
            )
    timestamps = raw.get("timestamps")
    if timestamps is None:
        timestamps = torch.arange(len(images), dtype=torch.int64)
    return ChunkExample(
        key=key,
        url=str(raw.get("url", "")),
        timestamps=torch.as_tensor(timestamps),
        cameras=cameras.to(torch.float32),
        images=images,
        depths=depths,
    )


def read_chunk(path: Path) -> list[ChunkExample]:
    """All examples of one chunk file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"The chunk file {path} does not exist. Its index.json names it; re-create the "
            "index (delete index.json to have it rebuilt) or restore the file."
        )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise ChunkFormatError(path, f"torch.load failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, list):
        raise ChunkFormatError(path, f"it holds a {type(raw).__name__}, not a list of examples")
    return [example_from_dict(entry, str(path)) for entry in raw]


def write_chunk(path: Path, examples: Sequence[ChunkExample]) -> None:
    """Write examples as one chunk, atomically (temp file in the same folder, then rename)."""
    data = [example.to_dict() for example in examples]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        torch.save(data, handle)


def write_index(root: Path, index: dict[str, str]) -> Path:
    """Write ``root/index.json`` (key -> chunk file name relative to ``root``), atomically."""
    path = Path(root) / INDEX_NAME
    text = json.dumps(dict(sorted(index.items())), indent=1).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(text)
    return path


def _chunk_folders(root: Path) -> list[Path]:
    """The folders of a root that hold chunks: the root itself and/or its stage subfolders."""
    root = Path(root)
    if not root.is_dir():
        raise MissingRootError(root)
    folders = [root / stage for stage in STAGES if (root / stage).is_dir()]
    if (root / INDEX_NAME).is_file() or any(root.glob("*.torch")) or not folders:
        folders.insert(0, root)
    return folders


def build_index(folder: Path) -> dict[str, str]:
    """Scan every chunk of a folder for its keys (slow: loads every chunk)."""
    index: dict[str, str] = {}
    for chunk_path in sorted(Path(folder).glob("*.torch")):
        path_inside(folder, chunk_path.name, f"the chunk listing of {folder}")  # symlinks out
        for example in read_chunk(chunk_path):
            index[example.key] = chunk_path.name
    return index


def load_index(roots: Sequence[Path]) -> dict[str, Path]:
    """key -> chunk path over all roots. Reads each ``index.json``; builds one in memory (and
    logs that it did) only where a folder has chunks but no index."""
    merged: dict[str, Path] = {}
    for root in roots:
        for folder in _chunk_folders(Path(root)):
            index_path = folder / INDEX_NAME
            if index_path.is_file():
                try:
                    index = parse_json(index_path.read_bytes())
                except MalformedTextError as exc:
                    raise ChunkFormatError(index_path, f"invalid JSON ({exc})") from None
                if not isinstance(index, dict):
                    raise ChunkFormatError(index_path, "expected an object key -> chunk file")
            else:
                if not any(folder.glob("*.torch")):
                    continue
                log.warning(
                    "%s has no %s: scanning every chunk to build one in memory (slow). Write it "
                    "once with dsviewer.dataset.chunks.write_index(folder, build_index(folder)).",
                    folder,
                    INDEX_NAME,
                )
                index = build_index(folder)
            for key, name in index.items():
                if not isinstance(name, str):
                    raise ChunkFormatError(index_path, f"key {key!r} maps to {name!r}, not a "
                                           "chunk file name")
                if key not in merged:  # the first root wins on duplicate keys, as a search path
                    merged[key] = path_inside(folder, name, str(index_path))
    return merged


def find_example(key: str, roots: Sequence[Path]) -> tuple[ChunkExample, Path]:
    """The example with ``key`` and its chunk path, loading only the chunk the index names."""
    roots = [Path(r) for r in roots]
    index = load_index(roots)
    if key not in index:
        raise UnknownSceneKeyError(key, index.keys(), roots)
    chunk_path = index[key]
    for example in read_chunk(chunk_path):
        if example.key == key:
            return example, chunk_path
    raise ChunkFormatError(
        chunk_path, f"index.json says it holds {key!r} but it does not; rebuild the index"
    )
