"""Small thumbnails of a scene's frames, for choosing context views by eye.

Frame numbers are the ones ``load_scene(context=...)`` takes: positions in a chunk example, in
a capture's natural name order (missing images included, and skipped here), or in a synthetic
scene. Images are decoded reduced (JPEG draft mode) so that a long sequence stays quick.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .images import read_image

THUMBNAIL_PIXELS = 96 * 96 * 4  # decode budget per frame: a little above the thumbnail size


def _thumbnail(pixels, max_side: int) -> np.ndarray:
    hwc = pixels.permute(1, 2, 0).numpy()
    step = max(1, int(np.ceil(max(hwc.shape[:2]) / max_side)))
    return np.ascontiguousarray(hwc[::step, ::step])


def scene_frames(
    spec: str,
    *,
    data_roots: Sequence[Path] = (),
    image_shape: tuple[int, int] = (128, 128),
    max_frames: int = 48,
    max_side: int = 64,
) -> list[tuple[int, np.ndarray]]:
    """``(frame number, [h, w, 3] uint8)`` of at most ``max_frames`` frames, evenly spread.

    ``image_shape`` is the size synthetic scenes are rendered at (as ``load_scene`` does).
    Raises the loaders' errors for specs that do not resolve.
    """
    from . import SYNTHETIC_PREFIX, synthetic_example
    from .capture import read_capture
    from .chunks import find_example

    if spec.startswith(SYNTHETIC_PREFIX):
        example = synthetic_example(int(spec[len(SYNTHETIC_PREFIX):]), *image_shape)
        sources = {i: (lambda i=i: example.images[i]) for i in range(example.num_frames)}
    elif Path(spec).is_dir() or (Path(spec).is_file() and spec.lower().endswith(".json")):
        capture = read_capture(Path(spec))
        sources = {i: (lambda f=capture.frames[i]: f.image_path.read_bytes())
                   for i in capture.available}  # fmt: skip
    else:
        example, _ = find_example(spec, [Path(r) for r in data_roots])
        sources = {i: (lambda i=i: example.images[i]) for i in range(example.num_frames)}
    numbers = sorted(sources)
    if len(numbers) > max_frames:
        picks = np.linspace(0, len(numbers) - 1, max_frames).round().astype(int)
        numbers = [numbers[i] for i in sorted(set(picks.tolist()))]
    return [(i, _thumbnail(read_image(sources[i](), spec, i, THUMBNAIL_PIXELS).pixels, max_side))
            for i in numbers]  # fmt: skip
