"""One posed image of a user's own capture, as COLMAP or nerfstudio describe it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class CaptureFrame:
    """A posed image; pixel intrinsics refer to a ``width x height`` image.

    ``T_world_cam`` is camera-to-world with OpenCV axes (float64 ``[4, 4]``). Principal points
    follow the COLMAP/OpenCV pixel convention (the centre of the top-left pixel is at
    ``(0.5, 0.5)``), which is the project's convention after dividing by width and height.
    """

    name: str
    image_path: Path
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    T_world_cam: np.ndarray  # [4, 4] float64
    camera_model: str = "PINHOLE"
    distortion: tuple[float, ...] = field(default_factory=tuple)

    def normalized_intrinsics(self) -> np.ndarray:
        """``[3, 3]`` normalized K (row 0 / width, row 1 / height)."""
        return np.array(
            [
                [self.fx / self.width, 0.0, self.cx / self.width],
                [0.0, self.fy / self.height, self.cy / self.height],
                [0.0, 0.0, 1.0],
            ]
        )

    @property
    def has_distortion(self) -> bool:
        return any(abs(k) > 0 for k in self.distortion) or "FISHEYE" in self.camera_model
