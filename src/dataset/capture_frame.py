"""One posed image of a user's own capture, and a whole capture as its reader returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .camera_models import Camera, check_perspective
from .colmap_files import ImageRecord, PointTracks
from .errors import ImageCameraMismatchError, size_text
from .images import DecodedImage


@dataclass
class CaptureFrame:
    """A posed image; ``camera`` gives its model, size and parameters in pixels.

    ``T_world_cam`` is camera-to-world with OpenCV axes (float64 ``[4, 4]``). Principal points
    follow the COLMAP/OpenCV pixel convention (the centre of the top-left pixel is at
    ``(0.5, 0.5)``), which is the project's convention after dividing by width and height.
    """

    name: str
    image_path: Path | None  # None: the camera file lists it, but the image is not on disk
    camera: Camera | None  # None only for a missing image whose size the file does not give
    T_world_cam: np.ndarray  # [4, 4] float64
    sfm_image: ImageRecord | None = None  # COLMAP's record: features and the points they see
    depth_bounds: tuple[float, float] | None = None
    """(near, far) z-depth the camera file states for this image, in the capture's units
    (LLFF's ``poses_bounds.npy``); a hint, not a measurement."""

    @property
    def point_ids(self) -> np.ndarray | None:
        """``[P]`` int64 ids of the COLMAP 3D points this image observes, when known."""
        return None if self.sfm_image is None else self.sfm_image.observed

    def camera_for(self, image: DecodedImage, source: str) -> Camera:
        """The camera scaled to the decoded pixels, after checking that the stored image is
        the camera's image (same size, or the same aspect ratio when resized after SfM)."""
        assert self.camera is not None
        check_perspective(self.camera, f"frame {self.name} of {source}")
        cam_w, cam_h = self.camera.width, self.camera.height
        width, height = image.stored_size
        if abs(cam_w * height - cam_h * width) > max(width, height):
            turned = abs(cam_w * width - cam_h * height) <= max(width, height)
            exif = (f" and carries EXIF orientation {image.exif_orientation}"
                    if image.exif_orientation else "")
            raise ImageCameraMismatchError(
                self.image_path.parent if self.image_path else Path(source), self.name,
                size_text(width, height), size_text(cam_w, cam_h), exif if turned else None)
        return self.camera.scaled(*image.size)


@dataclass
class Capture:
    """Every frame a camera file lists, in natural name order (``r_2`` before ``r_10``; LLFF
    captures keep LLFF's own order, see ``llff.py``).

    Frame numbers (``--context``/``--target``, ``ViewSet.index``) are positions in ``frames``,
    missing images included, so they do not shift when a missing image is restored. A photo
    that several split files list is one frame.
    """

    folder: Path
    camera_file: str  # what the frames were read from, for messages
    frames: list[CaptureFrame]
    tracks: PointTracks | None = None  # COLMAP's 3D points with their tracks, when known
    notes: list = field(default_factory=list)  # SceneNotes of the reader
    name: str | None = None  # the scene's key when not the folder's name (COLMAP's dense/<n>)
    bounds_source: str | None = None  # the file the frames' depth_bounds come from
    sfm_points: Path | None = None  # COLMAP's points3D.bin/.txt or transforms' ply_file_path

    @property
    def available(self) -> list[int]:
        """Frame numbers whose images exist."""
        return [i for i, f in enumerate(self.frames) if f.image_path is not None]
