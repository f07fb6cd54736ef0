"""The facts the capture check needs from a capture's files (:mod:`capture_check` reads none).

A loaded capture (:class:`~dsviewer.dataset.types.SceneViews`) knows its context views as the
model sees them; the check also needs each context image's size on disk, its focal length
before the crops, the other frames' camera centres (to suggest other context frames), the
context that COLMAP covisibility would choose, and the released checkpoint whose image shape
crops these images the least.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsviewer.dataset.capture_frame import Capture
    from dsviewer.dataset.preprocess import PreprocessSettings
    from dsviewer.dataset.types import SceneViews
    from dsviewer.viewer.capture_check import CheckInputs, Finding


def is_capture(scene: SceneViews) -> bool:
    """Whether ``scene`` came from a capture folder or transforms file (not a dataset chunk or
    a synthetic scene)."""
    source = Path(scene.source)
    return source.is_dir() or (source.is_file() and source.suffix.lower() == ".json")


def image_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image file as stored, from its header."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def released_checkpoints() -> dict[str, PreprocessSettings]:
    """Released checkpoint file name -> its preprocessing, from configs/checkpoints."""
    from dsviewer.backends.presets import available_presets, load_preset

    released = {}
    for name in available_presets():
        settings = load_preset(name)
        released[settings.checkpoint or f"{name}.pth"] = settings.preprocess
    return released


def least_cropping(sizes: list[tuple[int, int]], settings: PreprocessSettings
                   ) -> tuple[str, tuple[int, int], int] | None:
    """The released checkpoint whose image shape keeps most of the worst-cropped image, when it
    keeps more than ``settings`` does: (file name, image_shape, its context views)."""
    from dsviewer.viewer.capture_check import kept_share

    def kept(candidate: PreprocessSettings) -> float:
        return min(kept_share(size, candidate)[0] for size in sizes)

    best = max(released_checkpoints().items(), key=lambda item: kept(item[1]), default=None)
    if best is None or kept(best[1]) <= kept(settings) + 1e-9:
        return None
    name, preprocess = best
    return name, preprocess.image_shape, preprocess.num_context_views


def _covisible_context(capture: Capture, usable: list[int], frames: list[int]
                       ) -> tuple[int, ...] | None:
    from dsviewer.dataset.view_choice import choose_context

    tracked = all(capture.frames[i].point_ids is not None for i in usable)
    if frames[0] not in usable or not tracked:
        return None
    chosen, _ = choose_context(capture, usable, len(frames), frames[0])
    return tuple(chosen)


def check_inputs(scene: SceneViews, settings: PreprocessSettings,
                 near: float | None = None, far: float | None = None,
                 capture: Capture | None = None) -> CheckInputs:
    """The check's inputs for a loaded capture; ``near``/``far`` (model units) default to the
    context views' planes."""
    from dsviewer.dataset.capture import read_capture
    from dsviewer.viewer.capture_check import CheckInputs

    capture = capture or read_capture(Path(scene.source))
    frames = [int(i) for i in scene.context.index]
    sizes, focals = [], []
    for i in frames:
        frame = capture.frames[i]
        sizes.append(image_size(frame.image_path))
        fx, fy, _, _ = frame.camera.pinhole
        focals.append((fx / frame.camera.width, fy / frame.camera.height))
    usable = [i for i in capture.available if capture.frames[i].camera is not None]
    return CheckInputs(
        scene=scene, settings=settings,
        near=float(scene.context.near[0]) if near is None else near,
        far=float(scene.context.far[0]) if far is None else far,
        image_sizes=tuple(sizes), source_focals=tuple(focals),
        frame_centers={i: capture.frames[i].T_world_cam[:3, 3] for i in usable},
        covisible_context=lambda: _covisible_context(capture, usable, frames),
        better_checkpoint=least_cropping(sizes, settings),
    )  # fmt: skip


def capture_findings(scene: SceneViews, settings: PreprocessSettings) -> list[Finding]:
    """The check's findings for a run on ``scene`` (its own planes); none for scenes that are
    not captures."""
    from dsviewer.viewer.capture_check import run_checks

    if not is_capture(scene):
        return []
    return run_checks(check_inputs(scene, settings))
