"""The SfM reference's data types (built by ``sfm.py``), apart so that ``types.py`` can name them
without importing the builder, which imports ``types.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

MIN_POINTS = 20
"""Below this many SfM points a statistic against the reference (the SfM metrics, the capture
check's depth range) is not given: "too few SfM points"."""

DROP_REASONS = {
    "bad_track": "a track names a feature the image does not have",
    "behind": "behind the camera",
    "error": "reprojection error above the threshold",
    "unliftable": "beyond what the lens model can undistort",
    "outside": "outside the model's image after undistortion and crop",
    "occluded": "behind nearer points of the cloud",
}


@dataclass(frozen=True)
class SfmView:
    """The reference observations of one context view (N of them)."""

    frame: int  # the frame number in the capture
    uv: np.ndarray  # [N, 2] float64, pixels of the model image (centre of pixel c at c + 0.5)
    depth: np.ndarray  # [N] float64 z-depth in the model's units
    error: np.ndarray  # [N] float64 reprojection error in source pixels; NaN when unknown
    point: np.ndarray  # [N] int64 index into SfmReference.xyz
    dropped: dict[str, int] = field(default_factory=dict)  # DROP_REASONS key -> count

    @property
    def count(self) -> int:
        return len(self.depth)


@dataclass(frozen=True)
class SfmReference:
    """A capture's SfM points and, per context view (in context order), their observations."""

    xyz: np.ndarray  # [P, 3] float64 in the model frame (as ViewSet.extrinsics)
    rgb: np.ndarray  # [P, 3] uint8
    error: np.ndarray  # [P] float64 mean reprojection error in pixels; NaN when unknown
    views: tuple[SfmView, ...]
    max_error: float  # the threshold applied (pixels); inf when errors are unknown
    source: Literal["tracks", "point_cloud"]
    path: str  # the file the points came from

    @property
    def count(self) -> int:
        return sum(view.count for view in self.views)

    def summary(self) -> str:
        """One sentence per view: points kept and dropped, with reasons."""
        parts = []
        for view in self.views:
            dropped = ", ".join(f"{n} {DROP_REASONS[k]}" for k, n in view.dropped.items() if n)
            parts.append(f"frame {view.frame}: {view.count} points"
                         + (f" (left out: {dropped})" if dropped else ""))
        return "; ".join(parts)
