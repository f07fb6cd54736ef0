"""Errors a user can cause when pointing the loader at data; each message says what to do."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path

from dsviewer.errors import InputError


class SceneError(InputError):
    """Base class: something about a scene on disk cannot be used as it is."""


class MissingRootError(InputError, FileNotFoundError):
    def __init__(self, root: Path) -> None:
        super().__init__(
            f"The data root {root} does not exist or is not a folder. Pass the folder that holds "
            "the chunk files (*.torch) and their index.json (or its parent with a test/ or train/ "
            "subfolder), e.g. --data-root datasets/re10k."
        )


def close_keys(key: str, known: Iterable[str]) -> list[str]:
    """The (at most five) known scene keys closest to a misspelled ``key``, closest first."""
    return difflib.get_close_matches(key, list(known), n=5, cutoff=0.4)


def close_keys_text(close: list[str], num_known: int) -> str:
    """The sentence every command adds after "no scene with key ...": the ``close`` keys (from
    :func:`close_keys`), or how many there are."""
    if close:
        return f"The closest keys are: {', '.join(close)}."
    return f"No key is similar; {num_known} keys are available."


class UnknownSceneKeyError(SceneError):
    def __init__(self, key: str, known: Iterable[str], searched: list[Path]) -> None:
        known = list(known)
        close = close_keys(key, known)
        roots = ", ".join(str(p) for p in searched)
        super().__init__(
            f"No scene with key {key!r} in the index of {roots}. "
            f"{close_keys_text(close, len(known))} Check the spelling, or add the root that "
            "holds this scene."
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
        self.frames = frames
        self.detail = detail


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
            "either a COLMAP model (sparse/0/cameras.{bin,txt} and images.{bin,txt}), a "
            "nerfstudio transforms.json or LLFF's poses_bounds.npy."
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


def size_text(width: int, height: int) -> str:
    """The one way messages write an image size: width x height in pixels."""
    return f"{width}x{height} (WxH)"


def frames_text(frames: Iterable[object], limit: int = 10) -> str:
    """``a, b, c ...`` listing at most ``limit`` frames (names or numbers)."""
    frames = [str(f) for f in frames]
    return ", ".join(frames[:limit]) + (f" ... ({len(frames)} in all)" if len(frames) > limit
                                        else "")


class PathOutsideRootError(SceneError):
    def __init__(self, name: str, named_in: str, root: Path, follow_links: bool = True) -> None:
        resolved = "'..' and symbolic links" if follow_links else "'..'"
        super().__init__(
            f"{named_in} names the file {name!r}, which lies outside {os.path.abspath(root)} "
            f"(after resolving {resolved}). Files a dataset names must stay inside its folder: "
            "move or copy the file into the folder and name it relative to it."
        )


class IntrinsicsError(SceneError):
    def __init__(self, source: str, where: str, detail: str) -> None:
        super().__init__(
            f"The camera intrinsics of {where} in {source} are invalid ({detail}). Focal "
            "lengths must be finite and positive and principal points finite; fix the "
            "calibration, or pick other frames with --context/--target."
        )


class EvaluationIndexError(SceneError):
    def __init__(self, path: Path, key: str, role: str, value: object, detail: str) -> None:
        super().__init__(
            f"Entry {key!r} of the evaluation index {path} has {role} {value!r}: {detail}. "
            'Each entry is null or {"context": [i, j, ...], "target": [k, ...]} with integer '
            "frame indices; fix the file or pass --context/--target explicitly."
        )


class DuplicateContextError(SceneError):
    def __init__(self, source: str, context: list[int], what: str) -> None:
        super().__init__(
            f"{what} selects the context frames {context} of {source}, which repeat a frame. "
            "Context views must be distinct frames (the cost volume matches each view against "
            "the others); give distinct indices."
        )


class ImageTooLargeError(SceneError):
    def __init__(self, source: str, frame: int | str, size: str, limit: int | None) -> None:
        super().__init__(
            f"Frame {frame} of {source} is too large to decode ({size}; PIL's "
            f"decompression-bomb limit is {(limit or 0) / 1e6:.0f} MP, and this format cannot "
            "be reduced while decoding). Downscale the image (e.g. to 8000 px on its longer "
            "side; normalized intrinsics stay valid) or save it as JPEG, which is decoded at "
            "reduced size."
        )


class MissingFramesError(SceneError):
    def __init__(self, source: str, names: list[str], what: str) -> None:
        super().__init__(
            f"{what} asks for frame(s) whose images are missing on disk in {source}: "
            f"{frames_text(names)}. Restore those files, or choose frames whose images exist "
            "(frame numbers count every frame the camera file lists, missing ones included)."
        )


UNDISTORT_ADVICE = ("Undistort the images to a pinhole camera first (e.g. `colmap "
                    "image_undistorter`) and load the undistorted folder")
PANORAMA_ADVICE = ("Cut perspective (pinhole) views out of the panoramas with an "
                   "equirectangular-to-perspective tool, compute their cameras (e.g. with "
                   "COLMAP) and load those")


class UnsupportedCameraError(SceneError):
    def __init__(self, source: str, model: str, detail: str,
                 advice: str = UNDISTORT_ADVICE) -> None:
        super().__init__(f"The camera model {model} of {source} cannot be used: {detail}. "
                         f"{advice}.")


class ImageCameraMismatchError(SceneError):
    def __init__(self, folder: Path, name: str, image_size: str, camera_size: str,
                 turned_by: str | None) -> None:
        turned = ("" if turned_by is None else
                  f" It is the camera's image turned by 90 degrees{turned_by}: it was probably "
                  "rotated after the cameras were computed (COLMAP uses pixels as stored, "
                  "ignoring EXIF orientation).")
        super().__init__(
            f"Image {name} in {folder} is {image_size} but its camera is {camera_size} (another "
            f"aspect ratio), so the camera does not describe these pixels.{turned} Use the "
            "images the cameras were computed from, or compute the cameras again from these "
            "images."
        )


class ImplausibleCameraError(SceneError):
    def __init__(self, source: str, where: str, fx: float, fy: float, width: int, height: int,
                 fov_x: float, fov_y: float, plausible: tuple[float, float]) -> None:
        super().__init__(
            f"The camera of {where} in {source} has a field of view of {fov_x:.3g} x "
            f"{fov_y:.3g} degrees (horizontal x vertical: focal lengths fx={fx:g}, fy={fy:g} "
            f"pixels for an image of {size_text(width, height)}), outside the {plausible[0]:g} "
            f"to {plausible[1]:g} degrees of any real camera. The focal length is probably in "
            "another unit (normalized by the image size, or millimetres) or the file is "
            "broken: write the focal lengths in pixels of the image size the file gives, or "
            "compute the cameras again (e.g. with COLMAP)."
        )
