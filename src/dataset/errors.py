"""Errors a user can cause when pointing the loader at data; each message says what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class SceneError(ValueError):
    """Base class: something about a scene on disk cannot be used as it is."""


class MissingRootError(FileNotFoundError):
    def __init__(self, root: Path) -> None:
        super().__init__(
            f"The data root {root} does not exist or is not a folder. Pass the folder that holds "
            "the chunk files (*.torch) and their index.json (or its parent with a test/ or train/ "
            "subfolder), e.g. --data-root datasets/re10k."
        )


class UnknownSceneKeyError(SceneError):
    def __init__(self, key: str, known: Iterable[str], searched: list[Path]) -> None:
        known = list(known)
        close = difflib.get_close_matches(key, known, n=5, cutoff=0.4)
        hint = (
            f" The closest keys are: {', '.join(close)}."
            if close
            else f" No key is similar; {len(known)} keys are available."
        )
        roots = ", ".join(str(p) for p in searched)
        super().__init__(
            f"No scene with key {key!r} in the index of {roots}.{hint} Check the spelling, or "
            "add the root that holds this scene."
        )
        self.key = key
        self.close_matches = close


class CorruptImageError(SceneError):
    def __init__(self, source: str, frame: int | str, reason: str) -> None:
        super().__init__(
            f"Frame {frame} of {source} is not a readable image ({reason}). The file or chunk "
            "is probably truncated or corrupt: re-create it, or choose other frames with "
            "--context/--target."
        )


class CameraFormatError(SceneError):
    def __init__(self, source: str, detail: str) -> None:
        super().__init__(
            f"The cameras of {source} are not in the expected format: {detail}. DepthSplat "
            "chunks store one row of 18 numbers per frame (fx fy cx cy normalized, two unused "
            "values, then the 3x4 world-to-camera matrix row by row); re-convert the scene."
        )


class NonFinitePoseError(SceneError):
    def __init__(self, source: str, frames: list[int], detail: str = "non-finite values") -> None:
        shown = ", ".join(str(f) for f in frames[:10]) + (" ..." if len(frames) > 10 else "")
        super().__init__(
            f"The camera poses of frame(s) {shown} in {source} are invalid ({detail}). "
            "The official evaluation skips such scenes; pick other frames with "
            "--context/--target or fix the poses."
        )


class MixedImageSizeError(SceneError):
    def __init__(self, source: str, sizes: dict[tuple[int, int], list[str]]) -> None:
        parts = [
            f"{h}x{w} ({len(names)} frames, e.g. {names[0]})" for (h, w), names in sizes.items()
        ]
        super().__init__(
            f"The images of {source} have different sizes: {'; '.join(parts)}. All views of a "
            "scene must share one size; resize them to a common size (and scale the "
            "intrinsics) or select frames of one size."
        )


class FrameIndexError(SceneError):
    def __init__(self, source: str, frames: list[int], num_frames: int, what: str) -> None:
        super().__init__(
            f"{what} names frame(s) {frames} of {source}, which has only {num_frames} frames "
            f"(valid indices 0..{num_frames - 1}). Use indices in that range."
        )


class SkippedSceneError(SceneError):
    def __init__(self, key: str, index_path: Path) -> None:
        super().__init__(
            f"The evaluation index {index_path} marks scene {key!r} as skipped (null): the "
            "official evaluation does not use it. Pass --context/--target indices explicitly "
            "to view it anyway."
        )


class CaptureFormatError(SceneError):
    def __init__(self, folder: Path, detail: str) -> None:
        super().__init__(
            f"Cannot read the capture in {folder}: {detail}. A capture folder holds images plus "
            "either a COLMAP model (sparse/0/cameras.{bin,txt} and images.{bin,txt}) or a "
            "nerfstudio transforms.json."
        )


class ChunkFormatError(SceneError):
    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"{path} is not a DepthSplat chunk: {detail}. A chunk is a torch file holding a list "
            "of examples with key, url, timestamps, cameras and images; re-create it with the "
            "conversion script."
        )


class SettingsError(SceneError):
    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"Invalid dataset settings in {source}: {detail}.")
        self.detail = detail
