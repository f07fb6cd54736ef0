"""The point-cloud PLY files of an export, one per registered point layer, plus comparison.ply.

Each ``<layer>.ply`` holds the layer's valid points (finite, positive depth) as float32
``x y z``, uchar ``red green blue`` (the layer's image colours) and, per point:

* ``scalar_<mode>`` (float32) for every colour mode of
:data:`~dsviewer.viewer.color_modes.COLOR_MODES`
  with values on the layer -- the numbers the viewer colours by (``scalar_depth``,
  ``scalar_residual`` (final - coarse, metric), ``scalar_confidence``, ``scalar_gt_error``,
  ``scalar_consistency``, categorical codes such as ``scalar_clamp`` or ``scalar_inconsistent``;
  NaN where undefined), plus ``scalar_residual_inv`` (the residual in inverse depth);
* ``scalar_view``, ``scalar_u``, ``scalar_v`` (int32): the context view and pixel (column, row).

The ``scalar_`` prefix is what CloudCompare imports as scalar fields; open3d's tensor API,
plyfile and trimesh read the same names. ``comparison.ply`` holds the coarse and final points
in their layer colours with ``scalar_layer`` (the layer's index in the registry).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from dsviewer.io.ply import write_point_cloud_ply
from dsviewer.viewer.color_modes import COLOR_MODES, ColorContext, layer_values
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.session.loaded import LoadedScene

SKIPPED_MODES = ("rgb", "layer")  # the colours themselves, and a constant per file
COMPARED_LAYERS = ("coarse", "final")


def scalar_columns(context: ColorContext, layer: str, keep: np.ndarray) -> dict[str, np.ndarray]:
    metric = replace(context, settings=replace(context.settings, residual_unit="metric"), _cache={})
    inverse = replace(
        context, settings=replace(context.settings, residual_unit="inverse"), _cache={}
    )
    columns = {}
    for key in COLOR_MODES:
        if key in SKIPPED_MODES:
            continue
        values = layer_values(metric, key, layer)
        if values is not None:
            columns[f"scalar_{key}"] = np.asarray(values, np.float32).reshape(-1)[keep]
    columns["scalar_residual_inv"] = layer_values(inverse, "residual", layer).reshape(-1)[keep]
    return columns


def pixel_columns(loaded: LoadedScene, keep: np.ndarray) -> dict[str, np.ndarray]:
    """``scalar_view``, ``scalar_u``, ``scalar_v`` (int32) of the kept pixels (flat, v-h-w)."""
    view, row, col = (index.reshape(-1).numpy()[keep] for index in loaded.layers.pixel_grid())
    return {"scalar_view": view.astype(np.int32), "scalar_u": col.astype(np.int32),
            "scalar_v": row.astype(np.int32)}  # fmt: skip


def layer_table(loaded: LoadedScene, context: ColorContext, key: str) -> dict:
    """``{"points", "colors", "properties"}`` of point layer ``key`` (which the scene has)."""
    flat = loaded.flat(key)
    keep = flat.valid.reshape(-1)
    colors = POINT_LAYERS[key].image_colors(loaded.layers).reshape(-1, 3).numpy()[keep]
    return {
        "points": flat.points.reshape(-1, 3)[keep],
        "colors": colors,
        "properties": {**scalar_columns(context, key, keep), **pixel_columns(loaded, keep)},
    }


def comparison_table(loaded: LoadedScene) -> dict:
    points, colors, layer_index, pixels = [], [], [], []
    for key in COMPARED_LAYERS:
        flat = loaded.flat(key)
        keep = flat.valid.reshape(-1)
        points.append(flat.points.reshape(-1, 3)[keep])
        colors.append(np.tile(np.uint8(POINT_LAYERS[key].color), (int(keep.sum()), 1)))
        layer_index.append(np.full(int(keep.sum()), list(POINT_LAYERS).index(key), np.int32))
        pixels.append(pixel_columns(loaded, keep))
    properties = {"scalar_layer": np.concatenate(layer_index)}
    for name in pixels[0]:
        properties[name] = np.concatenate([p[name] for p in pixels])
    return {"points": np.concatenate(points), "colors": np.concatenate(colors),
            "properties": properties}  # fmt: skip


def write_table(path: Path, table: dict) -> int:
    write_point_cloud_ply(path, table["points"], table["colors"], table["properties"])
    return len(table["points"])
