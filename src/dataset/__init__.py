"""Scenes in, exactly as DepthSplat's official evaluation sees them.

One entry point, :func:`load_scene`, turns a dataset key, a capture folder or
``synthetic:<seed>`` into :class:`SceneViews`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from .capture import CaptureOptions, load_capture
from .chunks import ChunkExample, find_example, load_index
from .errors import SceneError
from .preprocess import PreprocessSettings
from .scene import scene_from_example
from .settings import load_preprocess_settings
from .types import SceneNote, SceneViews, ViewSet

SYNTHETIC_PREFIX = "synthetic:"
SYNTHETIC_FRAMES = 24

__all__ = [
    "CaptureOptions",
    "PreprocessSettings",
    "SceneError",
    "SceneNote",
    "SceneViews",
    "ViewSet",
    "list_scene_keys",
    "load_preprocess_settings",
    "load_scene",
]


def list_scene_keys(data_roots: Sequence[Path]) -> list[str]:
    """Every scene key the roots' ``index.json`` files name, sorted (for pickers)."""
    return sorted(load_index([Path(r) for r in data_roots]))


@functools.lru_cache(maxsize=4)
def synthetic_example(seed: int, height: int, width: int,
                      num_frames: int = SYNTHETIC_FRAMES) -> ChunkExample:
    """One synthetic scene rendered in memory (cached per seed and size)."""
    from .synthetic import render_example

    return render_example(seed, 0, num_frames, height, width, key=f"{SYNTHETIC_PREFIX}{seed}")


def load_scene(
    spec: str,
    *,
    settings: PreprocessSettings,
    data_roots: Sequence[Path] = (),
    index_path: Path | None = None,
    context: Sequence[int] | None = None,
    target: Sequence[int] | None = None,
    capture: CaptureOptions | None = None,
) -> SceneViews:
    """Load one scene, preprocessed for a checkpoint.

    Args:
        spec: a dataset key (looked up in ``data_roots``), a capture folder (images plus
            ``transforms.json``, NeRF-synthetic ``transforms_{train,val,test}.json``, a COLMAP
            model or workspace, or LLFF's ``poses_bounds.npy``), one transforms JSON file
            (e.g. ``lego/transforms_test.json`` for one split), or ``synthetic:<seed>``
            (rendered on the fly at ``settings.image_shape`` with 24 frames and GT depth).
        settings: what the checkpoint expects (image shape, near/far, patch multiple, ...).
        data_roots: dataset roots holding chunks and ``index.json``, searched in order.
        index_path: the official evaluation index JSON choosing context/target per key.
        context, target: explicit frame indices; they win over the index and the defaults.
            For captures they count every frame the camera file lists, in natural name
            order, missing images included (see ``capture.py``).
        capture: view choice and rescaling for captures.

    Returns:
        The scene; ``notes`` lists what the user should know (codes in ``notes.py``,
        ``capture.py``, ``view_choice.py``), ``ViewSet.camera_models`` the source camera model
        of each view, ``ViewSet.image_names`` its image file, ``depth_bounds_hint`` the depth
        bounds the capture states (LLFF).

    Raises:
        SceneError (a ValueError) or FileNotFoundError subclasses with a readable message.
    """
    if spec.startswith(SYNTHETIC_PREFIX):
        try:
            seed = int(spec[len(SYNTHETIC_PREFIX):])
        except ValueError:
            raise SceneError(f"{spec!r} is not 'synthetic:<integer seed>', e.g. synthetic:0."
                             ) from None
        example = synthetic_example(seed, *settings.image_shape)
        return scene_from_example(example, spec, settings, context=context, target=target,
                                  official=False)
    if Path(spec).is_dir() or (Path(spec).is_file() and spec.lower().endswith(".json")):
        return load_capture(Path(spec), settings,
                            context=None if context is None else list(context),
                            target=None if target is None else list(target),
                            options=capture or CaptureOptions())
    if not data_roots:
        raise SceneError(
            f"{spec!r} is not a folder, and no data root was given to look it up as a dataset "
            "key. Pass --data-root (a folder with chunks and index.json), a capture folder, "
            "or synthetic:<seed>."
        )
    example, chunk_path = find_example(spec, [Path(r) for r in data_roots])
    return scene_from_example(example, str(chunk_path), settings, context=context,
                              target=target, index_path=index_path)
