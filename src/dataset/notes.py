"""The :class:`SceneNote`s every loader emits the same way.

Codes (stable; the viewer lists them in metrics.json):

* ``context_equals_target``: a target frame is also a context frame.
* ``small_baseline``: the context cameras barely move, so the cost volume sees no parallax.
* ``exif_orientation``: images carry an EXIF orientation tag; pixels are used as stored.
* ``downscaled_at_decode``: images over the decode budget were decoded at reduced size.
* ``alpha_composited``: images with transparency were composited on white.
* ``mixed_image_sizes``: views of different sizes were each rescaled and cropped on their own.

Loaders add their own: ``undistorted`` (undistort.py), ``frames_missing`` (capture.py),
``default_views`` (view_choice.py), ``baseline_fallback`` and ``depth_bounds`` (capture.py),
``colmap_models`` (colmap_layout.py), ``colmap_workspace`` (colmap.py), ``split_duplicates``
and ``downscaled_images`` (nerfstudio.py, llff.py), ``depth_bounds_invalid`` (llff.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..geometry.view_geometry import pairwise_view_geometry
from .errors import frames_text, size_text
from .images import MAX_DECODE_PIXELS, DecodedImage
from .types import SceneNote, ViewSet

SIZES_SHOWN = 4  # image sizes quoted in the mixed_image_sizes note
MIN_NEAR_DISPARITY_PX = 2.0
"""Below this many pixels of shift for a point at the near plane, the context has no parallax."""


def selection_notes(context: ViewSet, target: ViewSet | None) -> list[SceneNote]:
    """Notes on the chosen views themselves (model-frame poses, model-shape images)."""
    notes = []
    if target is not None:
        shared = sorted(set(context.index.tolist()) & set(target.index.tolist()))
        if shared:
            notes.append(SceneNote(
                "context_equals_target",
                f"Target frame(s) {frames_text(shared)} are also context views: their renders "
                "reproduce an input, so their error says nothing about novel views."))
    if context.num_views >= 2:
        distance, _ = pairwise_view_geometry(context.extrinsics, context.extrinsics)
        flat = int(torch.argmax(distance))
        a, b = divmod(flat, context.num_views)
        widest = float(distance[a, b])
        width = context.image_shape[1]
        focal_px = float(context.intrinsics[:, 0, 0].max()) * width
        near = float(context.near.min())
        disparity = focal_px * widest / near
        if disparity < MIN_NEAR_DISPARITY_PX:
            frames = context.index.tolist()
            notes.append(SceneNote(
                "small_baseline",
                f"The context cameras are at most {widest:.3g} model units apart (frames "
                f"{frames[a]} and {frames[b]}): a point at the near plane ({near:g}) moves by "
                f"only {disparity:.2f} px between them, so the cost volume cannot tell depths "
                "apart and the depth comes from the monocular branch alone."))
    return notes


def decode_notes(decoded: Mapping[str, DecodedImage]) -> list[SceneNote]:
    """Notes on how the images named in ``decoded`` (name -> image) were decoded."""
    notes = []
    rotated = {n: d.exif_orientation for n, d in decoded.items() if d.exif_orientation}
    if rotated:
        example = next(iter(rotated))
        notes.append(SceneNote(
            "exif_orientation",
            f"{len(rotated)} image(s) carry an EXIF orientation tag (e.g. {example}: "
            f"{rotated[example]}); their pixels are used as stored, without rotating, as "
            "COLMAP reads them, so the cameras match the pixels but the images may look turned."))
    reduced = {n: d for n, d in decoded.items() if d.reduced}
    if reduced:
        example, d = next(iter(reduced.items()))
        notes.append(SceneNote(
            "downscaled_at_decode",
            f"{len(reduced)} image(s) exceed the decode budget of {MAX_DECODE_PIXELS / 1e6:.0f} "
            f"MP and were decoded at reduced size (e.g. {example}: {size_text(*d.stored_size)} "
            f"-> {size_text(*d.size)}); intrinsics were scaled to match."))
    alpha = [n for n, d in decoded.items() if d.had_alpha]
    if alpha:
        notes.append(SceneNote(
            "alpha_composited",
            f"{len(alpha)} image(s) have transparency (e.g. {alpha[0]}); transparent pixels "
            "were composited on a white background."))
    sizes: dict[tuple[int, int], list[str]] = {}
    for name, d in decoded.items():
        sizes.setdefault(d.size, []).append(name)
    if len(sizes) > 1:
        parts = "; ".join(f"{size_text(*size)}: {len(names)} (e.g. {names[0]})"
                          for size, names in list(sizes.items())[:SIZES_SHOWN])
        parts += f"; {len(sizes) - SIZES_SHOWN} more sizes" if len(sizes) > SIZES_SHOWN else ""
        notes.append(SceneNote(
            "mixed_image_sizes",
            f"The views have different sizes ({parts}); each was rescaled and centre-cropped "
            "to the model's shape with its own intrinsics."))
    return notes
