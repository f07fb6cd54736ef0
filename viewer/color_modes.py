"""The registry of colour modes: how a point of any layer gets its colour, and its legend.

A colour mode is declared once, here: its values per pixel (``[V, H, W]``, NaN where undefined,
or uint8 RGB for the image mode), how its range is chosen, and its legend kind (image,
diverging, sequential, categorical). The GUI's dropdown, the legend, the point colours, the
inspector and the exports iterate :data:`COLOR_MODES`. To add a mode, write one ``values``
function and append one :class:`ColorMode` (see docs/ARCHITECTURE.md).

Every mode colours a point by the pixel it comes from in the layer it belongs to: "depth" on the
coarse layer is the coarse depth, "multi-view error" on the coarse layer is the coarse depth's
consistency. A mode without values for a layer (GT error without GT, the analysis while it
runs) colours it :data:`~dsviewer.viewer.colormaps.NO_DATA_COLOR`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from dsviewer.viewer import colormaps
from dsviewer.viewer.analysis import SceneAnalysis, analysed_layer
from dsviewer.viewer.analysis.sfm_metrics import relative_error
from dsviewer.viewer.layers import Layers
from dsviewer.viewer.point_layers import POINT_LAYERS, point_layer, registry_entry

LegendKind = Literal["image", "diverging", "sequential", "categorical"]
ResidualUnit = Literal["inverse", "metric"]
CONSISTENCY_RANGE = 3.0  # multi-view errors are coloured on [0, 3 x threshold]
GT_ERROR_FLOOR = 1e-3  # smallest GT-error range, so float noise on exact depth stays white


@dataclass(frozen=True)
class ColorSettings:
    residual_unit: ResidualUnit = "inverse"
    percentile: float = 98.0
    """Robust range of signed maps: this percentile of |value|."""


@dataclass(frozen=True)
class DepthDifference:
    """Run B's depth minus run A's, on the pixels of the run being coloured, and the colour range
    both runs share (so their colours compare)."""

    maps: dict  # "metric" / "inverse" -> [V, H, W] float32, NaN where the other run has no depth
    limits: dict  # the same keys -> symmetric colour range


@dataclass
class ColorContext:
    """What colours depend on: the layers, their analysis (None while it runs), the settings,
    and for a compared run the depth difference B - A on its pixels."""

    layers: Layers
    analysis: SceneAnalysis | None
    settings: ColorSettings = field(default_factory=ColorSettings)
    difference: DepthDifference | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def cached(self, key: tuple, compute: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


@dataclass(frozen=True)
class Category:
    label: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class ColorMode:
    key: str
    label: str
    hint: str
    legend: LegendKind
    values: Callable[[ColorContext, str], np.ndarray | None]
    """``(context, layer key) -> [V, H, W]`` float (codes for categorical modes; NaN: no data)
    or ``[V, H, W, 3]`` uint8 for the image mode; None when the layer has none."""
    value_range: Callable[[ColorContext], tuple[float, float]] | None = None
    legend_label: Callable[[ColorContext], str] = lambda context: ""
    categories: Callable[[ColorContext], list[Category]] | None = None
    no_data_label: str | None = None
    needs_analysis: bool = False
    missing: Callable[[ColorContext], str | None] = lambda context: None
    """What the user must do first when the mode has nothing to colour yet (the legend says it)."""


# --- values -------------------------------------------------------------------------------------


def _image(context: ColorContext, layer: str) -> np.ndarray | None:
    colors = point_layer(layer).image_colors(context.layers)
    return None if colors is None else colors.numpy()


def _view(context: ColorContext, layer: str) -> np.ndarray:
    V, H, W = context.layers.final_depth.shape
    return np.broadcast_to(np.arange(V, dtype=np.float32)[:, None, None], (V, H, W))


def _categorised_layers() -> list[str]:
    """The layers "Layer" tells apart: those drawn in the chosen mode (not the residual's)."""
    return [key for key, layer in POINT_LAYERS.items() if layer.fixed_color_mode is None]


def _layer(context: ColorContext, layer: str) -> np.ndarray:
    index = _categorised_layers().index(layer)
    return np.full(context.layers.final_depth.shape, index, dtype=np.float32)


def _residual(context: ColorContext, layer: str) -> np.ndarray:
    layers = context.layers
    inverse = context.settings.residual_unit == "inverse"
    return (layers.residual_inv if inverse else layers.residual_metric).numpy()


def _difference(context: ColorContext, layer: str) -> np.ndarray | None:
    difference = context.difference  # of the final depths, so drawn on the final layer
    if difference is None or layer != "final":
        return None
    return difference.maps[context.settings.residual_unit]


def _difference_range(context: ColorContext) -> tuple[float, float]:
    limit = (
        1.0
        if context.difference is None
        else context.difference.limits[context.settings.residual_unit]
    )
    return -limit, limit


def _difference_label(context: ColorContext) -> str:
    if context.settings.residual_unit == "inverse":
        return "1/depth B - 1/depth A (+ red: B nearer)"
    return "depth B - depth A (+ red: B farther)"


def _confidence(context: ColorContext, layer: str) -> np.ndarray:
    return context.layers.confidence.numpy()


def _depth(context: ColorContext, layer: str) -> np.ndarray | None:
    depth = point_layer(layer).depth(context.layers)
    return None if depth is None else depth.numpy()


def _gt_error(context: ColorContext, layer: str) -> np.ndarray | None:
    layers = context.layers
    depth = point_layer(layer).depth(layers)
    if layers.gt_depth is None or depth is None:
        return None
    gt = layers.gt_depth.numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gt > 0, (depth.numpy() - gt) / gt, np.nan).astype(np.float32)


def _sfm_error(context: ColorContext, layer: str) -> np.ndarray | None:
    """On the SfM layer: (final - SfM) / SfM at each observation's pixel, NaN elsewhere."""
    sfm = context.layers.sfm
    if sfm is None or layer != "sfm":
        return None
    errors = relative_error(context.layers.final_depth, sfm).float()
    index = sfm.index_map
    shown = torch.where(index >= 0, errors[index.clamp_min(0)], torch.tensor(float("nan")))
    return shown.numpy()


def _sfm_error_range(context: ColorContext) -> tuple[float, float]:
    def compute():
        values = _sfm_error(context, "sfm")
        limit = (1.0 if values is None else
                 colormaps.robust_limit(values[np.isfinite(values)], context.settings.percentile,
                                        GT_ERROR_FLOOR))
        return -limit, limit

    return context.cached(("sfm_error", context.settings.percentile), compute)


def _from_analysis(read: Callable) -> Callable[[ColorContext, str], np.ndarray | None]:
    def values(context: ColorContext, layer: str) -> np.ndarray | None:
        checks = None if context.analysis is None else context.analysis.of(layer)
        return None if checks is None else read(checks).float().numpy()

    return values


def _clamp_codes(checks) -> object:
    return 1 + checks.at_far.float() - checks.at_near.float()  # 0 near, 1 none, 2 far


def _inconsistent_codes(checks) -> object:
    codes = checks.consistency.inconsistent.float()
    codes[~checks.consistency.checked] = float("nan")
    return codes


# --- ranges and labels ----------------------------------------------------------------------------


def _final_valid(context: ColorContext) -> np.ndarray:
    depth = context.layers.final_depth.numpy()
    return np.isfinite(depth) & (depth > 0)


def _residual_range(context: ColorContext) -> tuple[float, float]:
    def compute():
        values = _residual(context, "final")[_final_valid(context)]
        limit = colormaps.robust_limit(values, context.settings.percentile)
        return -limit, limit

    key = ("residual", context.settings.residual_unit, context.settings.percentile)
    return context.cached(key, compute)


def _depth_range(context: ColorContext) -> tuple[float, float]:
    depth = context.layers.final_depth.numpy()
    return context.cached(("depth",), lambda: colormaps.robust_range(depth[_final_valid(context)]))


def _gt_error_range(context: ColorContext) -> tuple[float, float]:
    def compute():
        limits = [colormaps.robust_limit(errors, context.settings.percentile, GT_ERROR_FLOOR)
                  for errors in (_gt_error(context, "coarse"), _gt_error(context, "final"))
                  if errors is not None]  # fmt: skip
        limit = max(limits, default=1.0)
        return -limit, limit

    return context.cached(("gt_error", context.settings.percentile), compute)


def _consistency_range(context: ColorContext) -> tuple[float, float]:
    threshold = (
        0.05 if context.analysis is None else context.analysis.settings.consistency_threshold
    )
    return 0.0, CONSISTENCY_RANGE * threshold


def _residual_label(context: ColorContext) -> str:
    # The sign means opposite things in the two units; the label says which.
    if context.settings.residual_unit == "inverse":
        return "inverse-depth residual (+ red: pulled nearer)"
    return "final - coarse depth (+ red: farther)"


def _view_categories(context: ColorContext) -> list[Category]:
    frames = context.layers.context.frames.tolist()
    palette = colormaps.CATEGORY_COLORS
    return [
        Category(f"view {v} (frame {f})", palette[v % len(palette)]) for v, f in enumerate(frames)
    ]


def _layer_categories(context: ColorContext) -> list[Category]:
    return [Category(point_layer(key).label, point_layer(key).color)
            for key in _categorised_layers()]  # fmt: skip


def _flags(*labels: str) -> Callable[[ColorContext], list[Category]]:
    colors = ((205, 205, 205), (178, 24, 43), (33, 102, 172))[: len(labels)]
    categories = [Category(label, color) for label, color in zip(labels, colors, strict=True)]
    return lambda context: categories


_CLAMP_CATEGORIES = [
    Category("at near clamp", (33, 102, 172)),
    Category("not clamped", (205, 205, 205)),
    Category("at far clamp", (178, 24, 43)),
]


_MODES = (
    ColorMode(
        "rgb", "Image", "Each point in its pixel's colour (Gaussian centres: their DC colour).",
        "image", _image,
    ),
    ColorMode(
        "view", "View", "A colour per context view: which camera each point comes from.",
        "categorical", _view, categories=_view_categories,
    ),
    ColorMode(
        "layer", "Layer", "A colour per layer: tells overlaid coarse, final and GT apart.",
        "categorical", _layer, categories=_layer_categories,
    ),
    ColorMode(
        "residual", "Residual",
        "What the monocular DPT branch added to the cost volume's depth (unit: Residual unit).",
        "diverging", _residual, _residual_range, _residual_label,
    ),
    ColorMode(
        "difference", "B - A",
        "Run B's final depth minus run A's along each pixel's own ray (choose A and B in the Runs "
        "folder; unit: Residual unit).",
        "diverging", _difference, _difference_range, _difference_label,
        no_data_label="not compared / unseen by the other run",
        missing=lambda context: None if context.difference is not None else (
            "choose run B (or gt) in the Runs folder"),
    ),
    ColorMode(
        "confidence", "Confidence", "The cost volume's maximum match probability per pixel.",
        "sequential", _confidence, lambda context: (0.0, 1.0),
        lambda context: "match probability",
    ),
    ColorMode(
        "depth", "Depth", "z-depth in the view's own camera (one range for all layers).",
        "sequential", _depth, _depth_range, lambda context: "depth",
    ),
    ColorMode(
        "gt_error", "GT error", "(depth - GT) / GT of the layer's own depth; grey: no GT.",
        "diverging", _gt_error, _gt_error_range, lambda context: "(depth - GT) / GT",
        no_data_label="no GT",
    ),
    ColorMode(
        "sfm_error", "Error vs SfM",
        "On the SfM points layer: (final depth - SfM depth) / SfM depth, the final depth read "
        "bilinearly at the pixel where the point was observed; red: predicted too far.",
        "diverging", _sfm_error, _sfm_error_range, lambda context: "(final - SfM) / SfM",
        no_data_label="not an SfM point",
        missing=lambda context: None if context.layers.sfm is not None else (
            "this scene has no SfM points (captures with a COLMAP model or a point cloud)"),
    ),
    ColorMode(
        "consistency", "Multi-view error",
        "Mean relative depth disagreement with the other views that see the pixel.",
        "sequential", _from_analysis(lambda checks: checks.consistency.rel_error),
        _consistency_range, lambda context: "multi-view |rel. error|",
        no_data_label="unchecked", needs_analysis=True,
    ),
    ColorMode(
        "inconsistent", "Inconsistent", "Pixels whose multi-view error exceeds the threshold.",
        "categorical", _from_analysis(_inconsistent_codes),
        categories=_flags("consistent", "inconsistent"), no_data_label="unchecked",
        needs_analysis=True,
    ),
    ColorMode(
        "clamp", "Near / far clamp", "Depths the model clamped at its near or far plane.",
        "categorical", _from_analysis(_clamp_codes),
        categories=lambda context: _CLAMP_CATEGORIES, needs_analysis=True,
    ),
    ColorMode(
        "depth_edge", "Depth edges", "Pixels next to a depth jump (> 10 %) between neighbours.",
        "categorical", _from_analysis(lambda checks: checks.edge),
        categories=_flags("smooth", "depth edge"), needs_analysis=True,
    ),
    ColorMode(
        "flying_pixel", "Flying pixels",
        "Pixels that jump away from both neighbours along a row or a column: on neither surface.",
        "categorical", _from_analysis(lambda checks: checks.flying),
        categories=_flags("on a surface", "flying pixel"), needs_analysis=True,
    ),
)  # fmt: skip

COLOR_MODES: dict[str, ColorMode] = {mode.key: mode for mode in _MODES}


def color_mode(key: str) -> ColorMode:
    return registry_entry(COLOR_MODES, key, "colour mode")


def mode_of_layer(layer: str, chosen: str) -> str:
    """The mode a layer is drawn in: its fixed mode if it has one, else the chosen one."""
    return point_layer(layer).fixed_color_mode or chosen


def layer_values(context: ColorContext, mode_key: str, layer: str) -> np.ndarray | None:
    """``mode``'s values on ``layer`` (cached per context)."""
    mode = color_mode(mode_key)
    return context.cached(
        ("values", mode_key, layer, context.settings), lambda: mode.values(context, layer)
    )


def colorize(mode: ColorMode, context: ColorContext, values: np.ndarray | None) -> np.ndarray:
    """uint8 ``[..., 3]`` colours of ``values`` ``[...]`` (or ``[..., 3]`` image colours)."""
    if values is None:
        raise ValueError("no values to colour")
    if mode.legend == "image":
        return np.asarray(values, dtype=np.uint8)
    defined = np.isfinite(values)
    if mode.legend == "categorical":
        palette = np.array([c.color for c in mode.categories(context)], dtype=np.uint8)
        return colormaps.apply_categories(values, palette)
    low, high = mode.value_range(context)
    safe = np.where(defined, values, 0.0)
    if mode.legend == "diverging":
        colors = colormaps.apply_diverging(safe, high)
    else:
        colors = colormaps.apply_sequential(safe, low, high)
    colors[~defined] = colormaps.NO_DATA_COLOR
    return colors


def point_colors(
    context: ColorContext, mode_key: str, layer: str, view: int, pixels: np.ndarray
) -> np.ndarray:
    """uint8 ``[n, 3]`` colours of the flat ``pixels`` ``[n]`` of ``view`` in ``layer``."""
    mode = color_mode(mode_key)
    values = layer_values(context, mode_key, layer)
    if values is None:
        return np.broadcast_to(np.uint8(colormaps.NO_DATA_COLOR), (len(pixels), 3)).copy()
    per_view = values[view].reshape(-1, 3) if mode.legend == "image" else values[view].reshape(-1)
    return colorize(mode, context, per_view[pixels])


def grey_meaning(mode: ColorMode) -> str | None:
    """What the no-data grey means in ``mode``: its own no-data label and, for modes computed by
    the analysis, the layers the analysis does not cover (they have no values at all)."""
    meanings = [mode.no_data_label] if mode.no_data_label else []
    if mode.needs_analysis:
        skipped = [layer.label for key, layer in POINT_LAYERS.items()
                   if analysed_layer(key) is None]  # fmt: skip
        meanings.append("not analysed: " + ", ".join(skipped))
    return "; ".join(meanings) or None


def legend_image(context: ColorContext, mode_key: str, width: int = 320) -> np.ndarray:
    """The legend of ``mode`` for this scene and settings, ``[h, width, 3]`` uint8."""
    mode = color_mode(mode_key)
    if mode.needs_analysis and context.analysis is None:
        return colormaps.text_image("analysing the geometry...", width=width)
    if mode.legend == "image":
        return colormaps.text_image("the images' own colours", width=width)
    missing = mode.missing(context)
    if missing is not None:
        return colormaps.text_image(missing, width=width)
    grey = grey_meaning(mode)
    if mode.legend == "categorical":
        entries = [(c.label, c.color) for c in mode.categories(context)]
        footnote = (grey, colormaps.NO_DATA_COLOR) if grey else None
        return colormaps.categories_image(entries, width=width, footnote=footnote)
    low, high = mode.value_range(context)
    label = mode.legend_label(context) + (f" (grey: {grey})" if grey else "")
    return colormaps.colorbar_image(mode.legend, low, high, label, width=width)
