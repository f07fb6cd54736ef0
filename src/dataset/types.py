"""The one object a scene becomes before the model or the viewer sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..geometry.similarity import Similarity

if TYPE_CHECKING:
    from .sfm_types import SfmReference


@dataclass(frozen=True)
class SceneNote:
    """Something about a scene the user should know; shown in the GUI, listed in metrics.json."""

    code: str
    """Stable identifier, e.g. ``context_equals_target`` or ``undistorted``."""
    message: str
    """One sentence for people; it may quote file names (escape before display)."""


@dataclass
class ViewSet:
    """A set of preprocessed views of one scene, in the project's conventions.

    Images are float in [0, 1]; intrinsics normalized; extrinsics camera-to-world, OpenCV axes
    (see ``src/geometry/projection.py``).
    """

    image: Tensor  # [V, 3, H, W]
    intrinsics: Tensor  # [V, 3, 3] normalized
    extrinsics: Tensor  # [V, 4, 4] T_world_cam
    near: Tensor  # [V]
    far: Tensor  # [V]
    index: Tensor  # [V] frame indices in the source scene
    depth: Tensor | None = None  # [V, H, W] metric GT z-depth, 0 where unknown
    camera_models: tuple[str, ...] | None = None  # per view, the source's camera model name
    image_names: tuple[str, ...] | None = None  # per view, the image file as the source lists it
    sfm: SfmReference | None = None  # context views of a capture with SfM points (sfm.py)

    @property
    def num_views(self) -> int:
        return int(self.image.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    def as_batch(self, device: torch.device | str | None = None) -> dict[str, Tensor]:
        """The ``context`` dict the encoder takes, with a batch dim of 1."""
        batch = {
            "image": self.image[None],
            "intrinsics": self.intrinsics[None],
            "extrinsics": self.extrinsics[None],
            "near": self.near[None],
            "far": self.far[None],
        }
        return {k: v.to(device) if device is not None else v for k, v in batch.items()}


@dataclass(frozen=True)
class DepthBoundsHint:
    """The z-depth range a capture's camera file states for each context view (LLFF's
    ``poses_bounds.npy``: the 0.1 and 99.9 percentiles of the SfM points' depths), in the
    **user's** units; divide by ``SceneViews.world_from_model.scale`` for the model frame.
    A hint for near/far, not a measurement."""

    near: tuple[float, ...]  # [V] per context view
    far: tuple[float, ...]  # [V]
    source: str  # the file it comes from, e.g. "poses_bounds.npy"

    @property
    def span(self) -> tuple[float, float]:
        """``(nearest near, farthest far)`` over the context views."""
        return min(self.near), max(self.far)


@dataclass
class SceneViews:
    """Context and target views of one scene, ready for the model.

    ``world_from_model`` maps the (possibly rescaled and recentred) model frame back to the
    user's own units; identity for datasets used as they are.
    """

    key: str
    source: str  # where it came from: a chunk path, a capture folder or "synthetic:<seed>"
    context: ViewSet
    target: ViewSet | None = None
    world_from_model: Similarity = field(default_factory=Similarity.identity)
    notes: list[SceneNote] = field(default_factory=list)
    depth_bounds_hint: DepthBoundsHint | None = None  # when the capture states depth bounds
