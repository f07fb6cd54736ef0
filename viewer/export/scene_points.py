"""The point layers as scene files draw them (``scene.glb``, the Rerun recording).

Each registered layer the scene has, its valid points thinned to a budget by a fixed stride over
the flat ``(v, h, w)`` order, and coloured as the viewer draws the layer at start: the images'
own colours, or the layer's fixed colour mode (the residual layer shows the residual in the
export's colour settings). ``kept`` is the flat pixel mask, so callers read any per-pixel value
of the same points (:func:`dsviewer.viewer.export.point_files.scalar_columns`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsviewer.viewer.color_modes import ColorContext, color_mode, colorize, layer_values
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.session.loaded import LoadedScene

START_MODE = "rgb"  # the mode a layer without a fixed one is drawn in


@dataclass(frozen=True)
class DrawnLayer:
    key: str
    label: str
    points: np.ndarray  # [N, 3] float32, the user's frame
    colors: np.ndarray  # [N, 3] uint8
    kept: np.ndarray  # [V * H * W] bool: the pixels the points come from
    mode: str  # the colour mode of ``colors``


def kept_pixels(valid: np.ndarray, budget: int) -> np.ndarray:
    """Flat bool mask of at most ``budget`` of the ``valid`` pixels ``[V, P]`` (a fixed stride,
    so a scene under the budget keeps every valid pixel)."""
    index = np.flatnonzero(valid.reshape(-1))
    index = index[:: max(1, math.ceil(len(index) / max(1, budget)))]
    kept = np.zeros(valid.size, dtype=bool)
    kept[index] = True
    return kept


def drawn_layer(loaded: LoadedScene, context: ColorContext, key: str, budget: int
                ) -> DrawnLayer | None:  # fmt: skip
    """Layer ``key`` as drawn (None when the scene lacks it)."""
    flat = loaded.flat(key)
    if flat is None:
        return None
    layer = POINT_LAYERS[key]
    kept = kept_pixels(flat.valid, budget)
    mode = color_mode(layer.fixed_color_mode or START_MODE)
    values = layer_values(context, mode.key, key)
    if values is None:  # a fixed mode that has no values here: the images' colours instead
        mode = color_mode(START_MODE)
        values = layer_values(context, mode.key, key)
    per_pixel = values.reshape(-1, 3) if mode.legend == "image" else values.reshape(-1)
    return DrawnLayer(key=key, label=layer.label, points=flat.points.reshape(-1, 3)[kept],
                      colors=colorize(mode, context, per_pixel[kept]), kept=kept,
                      mode=mode.key)  # fmt: skip


def drawn_layers(loaded: LoadedScene, context: ColorContext, budget: int) -> list[DrawnLayer]:
    """Every layer the scene has with at least one valid point, in the registry's order (an
    all-NaN prediction draws nothing; glTF has no empty point primitive)."""
    drawn = (drawn_layer(loaded, context, key, budget) for key in POINT_LAYERS)
    return [layer for layer in drawn if layer is not None and len(layer.points)]
