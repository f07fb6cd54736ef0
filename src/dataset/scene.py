"""A chunk example (dataset scene or synthetic scene) to :class:`SceneViews`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .chunks import ChunkExample
from .errors import ChunkFormatError, size_text
from .images import read_image
from .notes import decode_notes, selection_notes
from .preprocess import (
    PreprocessSettings,
    cameras_to_matrices,
    check_intrinsics,
    check_poses,
    preprocess_views,
    warn_unofficial,
)
from .types import SceneViews
from .views import ViewSelection, select_views

CHUNK_CAMERA_MODEL = "PINHOLE"  # chunks store fx fy cx cy only


def scene_from_example(
    example: ChunkExample,
    source: str,
    settings: PreprocessSettings,
    *,
    context: Sequence[int] | None = None,
    target: Sequence[int] | None = None,
    index_path: Path | None = None,
    official: bool = True,
) -> SceneViews:
    """Select views of one example, decode only those frames and preprocess them.

    Every check runs before anything is returned, so a scene is either complete or an error.
    ``official`` logs where the official loader would have skipped the scene (not for synthetic
    scenes, which are rendered at the checkpoint's size on purpose).
    """
    where = f"scene {example.key!r} in {source}"
    selection = select_views(
        example.key,
        example.num_frames,
        where,
        context=context,
        target=target,
        index_path=index_path,
        num_context_views=settings.num_context_views,
    )
    if settings.dataset == "dl3dv":  # the DL3DV config sorts context and target indices
        selection = ViewSelection(sorted(selection.context), sorted(selection.target))
    chosen = selection.context + selection.target
    K_all, T_all = cameras_to_matrices(example.cameras, where)
    check_intrinsics(K_all[chosen], where, chosen)
    check_poses(T_all[chosen], where, chosen)

    decoded = {i: read_image(example.images[i], where, i) for i in dict.fromkeys(chosen)}
    images = [decoded[i].pixels for i in chosen]
    if official:
        sizes = {tuple(image.shape[-2:]) for image in images}
        for size in sizes:
            warn_unofficial(size, K_all, T_all[chosen], settings, where)

    depth = None
    if example.depths is not None:
        depth = [example.depths[i].to(torch.float32) for i in chosen]
        for i, d, image in zip(chosen, depth, images, strict=True):
            if d.shape[-2:] != image.shape[-2:]:
                raise ChunkFormatError(
                    Path(source), f"scene {example.key!r} frame {i} has a depth map of size "
                    f"{size_text(d.shape[-1], d.shape[-2])} but an image of size "
                    f"{size_text(image.shape[-1], image.shape[-2])}")

    index = torch.tensor(chosen, dtype=torch.int64)
    num_context = len(selection.context)

    def views(part: slice):
        return preprocess_views(images[part], K_all[index[part]], T_all[index[part]],
                                index[part], settings, None if depth is None else depth[part],
                                camera_models=[CHUNK_CAMERA_MODEL] * len(chosen[part]))

    scene = SceneViews(
        key=example.key,
        source=source,
        context=views(slice(0, num_context)),
        target=views(slice(num_context, None)) if selection.target else None,
    )
    scene.notes = decode_notes({f"frame {i}": d for i, d in decoded.items()}) + selection_notes(
        scene.context, scene.target)
    return scene
