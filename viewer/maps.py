"""Per-view maps: a colour mode drawn as an image of each context view, and the 2D grid of them.

A map is one colour mode (:data:`~dsviewer.viewer.color_modes.COLOR_MODES`) on the pixels of
one point layer (:data:`~dsviewer.viewer.point_layers.POINT_LAYERS`), coloured by
:func:`~dsviewer.viewer.color_modes.point_colors` from the run's
:class:`~dsviewer.viewer.color_modes.ColorContext`: the very function, ranges and settings
that colour the points, so a map and the points of its pixels always show the same colour.
:data:`MAPS` lists them once; the frustum pictures' dropdown, the grid's columns and the
tests iterate it. Pure numpy: nothing here knows viser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dsviewer.viewer import colormaps
from dsviewer.viewer.color_modes import ColorContext, legend_image, point_colors
from dsviewer.viewer.layers import Layers
from dsviewer.viewer.point_layers import point_layer
from dsviewer.viewer.scene_nodes import THUMBNAIL_SIDE, shrink

GRID_CELL_SIDE = 160  # longer side of a grid cell, in grid-image pixels
GRID_GAP = 4  # grid-image pixels between cells
GRID_TITLE_HEIGHT = 20  # the row of column titles
MARKER_OUTLINE = (0, 0, 0)
MARKER_COLOR = (255, 0, 255)  # magenta: in none of the colour maps


@dataclass(frozen=True)
class ViewMap:
    key: str
    label: str
    mode: str  # a COLOR_MODES key
    layer: str  # a POINT_LAYERS key: whose pixels are coloured (depth of "coarse" is coarse)
    needs_partner: bool = False  # B - A: listed only while a run B (or gt) is chosen


_MAPS = (
    ViewMap("photo", "Photo", "rgb", "final"),
    ViewMap("coarse_depth", "Coarse depth", "depth", "coarse"),
    ViewMap("final_depth", "Final depth", "depth", "final"),
    ViewMap("gt_depth", "GT depth", "depth", "gt"),
    ViewMap("residual", "Mono residual", "residual", "final"),
    ViewMap("confidence", "Confidence", "confidence", "final"),
    ViewMap("gt_error", "GT error", "gt_error", "final"),
    ViewMap("sfm_error", "Error vs SfM", "sfm_error", "sfm"),
    ViewMap("consistency", "Multi-view error", "consistency", "final"),
    ViewMap("inconsistent", "Inconsistent", "inconsistent", "final"),
    ViewMap("clamp", "Near / far clamp", "clamp", "final"),
    ViewMap("depth_edge", "Depth edges", "depth_edge", "final"),
    ViewMap("flying_pixel", "Flying pixels", "flying_pixel", "final"),
    ViewMap("difference", "B - A", "difference", "final", needs_partner=True),
)

MAPS: dict[str, ViewMap] = {view_map.key: view_map for view_map in _MAPS}
GRID_COLUMNS = ("photo", "coarse_depth", "residual", "final_depth", "gt_error", "sfm_error")
"""The grid's columns when the scene has them (panels.png's), then the map chosen for the
frustums if it is not among them."""


@dataclass(frozen=True)
class MapSettings:
    """What the Maps folder selects: the frustums' picture and whether the grid is open."""

    frustum: str = "photo"  # a MAPS key
    grid: bool = False


def available_maps(layers: Layers, compared: bool) -> list[str]:
    """The keys of the maps a run's ``layers`` have: those whose layer it has (GT, SfM), and
    B - A while ``compared`` (a run B or gt is chosen; its values come with the comparison)."""
    keys = []
    for view_map in _MAPS:
        if view_map.needs_partner and not compared:
            continue
        if point_layer(view_map.layer).depth(layers) is None:
            continue
        if view_map.mode == "gt_error" and layers.gt_depth is None:
            continue
        keys.append(view_map.key)
    return keys


def map_colors(context: ColorContext, key: str, view: int) -> np.ndarray:
    """``[H, W, 3]`` uint8: map ``key`` of context view ``view``, coloured as its points."""
    view_map = MAPS[key]
    height, width = context.layers.image_shape
    pixels = np.arange(height * width)
    colors = point_colors(context, view_map.mode, view_map.layer, view, pixels)
    return colors.reshape(height, width, 3)


def pixel_of(s: float, t: float, height: int, width: int) -> tuple[int, int]:
    """``(u, v)``: the pixel at fractions ``(s, t)`` of an image's width and height (from its
    top-left corner), pixel ``u`` spanning ``[u / W, (u + 1) / W)``."""
    return min(int(s * width), width - 1), min(int(t * height), height - 1)


def mark(image: np.ndarray, s: float, t: float) -> np.ndarray:
    """A copy of ``image`` ``[h, w, 3]`` with a cross around fractions ``(s, t)``; the arms
    leave the marked pixel itself visible."""
    out = image.copy()
    h, w = out.shape[:2]
    x, y = min(int(s * w), w - 1), min(int(t * h), h - 1)
    arm = max(4, max(h, w) // 16)
    gap = max(2, arm // 3)
    for color, half in ((MARKER_OUTLINE, 1), (MARKER_COLOR, 0)):  # outline first, then colour
        for lo, hi in ((-arm, -gap), (gap + 1, arm + 1)):
            out[max(y - half, 0) : y + half + 1, max(x + lo, 0) : max(x + hi, 0)] = color
            out[max(y + lo, 0) : max(y + hi, 0), max(x - half, 0) : x + half + 1] = color
    return out


def frustum_picture(context: ColorContext, key: str, view: int,
                    marked: tuple[float, float] | None = None) -> np.ndarray:  # fmt: skip
    """The frustum's picture: map ``key`` of ``view`` at thumbnail size (longer side at most
    ``THUMBNAIL_SIDE``), with the marker at fractions ``marked`` (s, t) if given."""
    picture = shrink(map_colors(context, key, view), THUMBNAIL_SIDE)
    return picture if marked is None else mark(picture, *marked)


@dataclass(frozen=True)
class GridLayout:
    """Where each cell of a grid image lies: ``rows`` views by ``columns`` maps of
    ``cell_h x cell_w`` pixels, ``gap`` pixels apart, under a row of titles."""

    rows: int
    columns: int
    cell_h: int
    cell_w: int
    gap: int = GRID_GAP
    title_h: int = GRID_TITLE_HEIGHT
    legend_h: int = 0  # the row of legends under the cells

    @staticmethod
    def for_maps(rows: int, columns: int, height: int, width: int) -> GridLayout:
        """Cells with the maps' aspect ratio, the longer side :data:`GRID_CELL_SIDE`."""
        step = max(height, width) / GRID_CELL_SIDE
        return GridLayout(rows, columns, max(1, round(height / step)), max(1, round(width / step)))

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the whole grid image."""
        return (self.title_h + self.rows * (self.cell_h + self.gap) + self.legend_h,
                self.gap + self.columns * (self.cell_w + self.gap))  # fmt: skip

    def origin(self, row: int, column: int) -> tuple[int, int]:
        """``(y, x)`` of the top-left pixel of a cell."""
        return self.title_h + row * (self.cell_h + self.gap), self.gap + column * (
            self.cell_w + self.gap
        )

    def locate(self, s: float, t: float) -> tuple[int, int, float, float] | None:
        """``(row, column, s, t)``: the cell at fractions ``(s, t)`` of the grid image and the
        fractions inside it; None on a title, a gap or outside."""
        height, width = self.shape
        x, y = s * width, t * height
        column = int((x - self.gap) // (self.cell_w + self.gap))
        row = int((y - self.title_h) // (self.cell_h + self.gap))
        if not (0 <= row < self.rows and 0 <= column < self.columns):
            return None
        top, left = self.origin(row, column)
        inside_s, inside_t = (x - left) / self.cell_w, (y - top) / self.cell_h
        if not (0 <= inside_s < 1 and 0 <= inside_t < 1):
            return None
        return row, column, inside_s, inside_t


def _resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = np.minimum(((np.arange(height) + 0.5) * image.shape[0] / height).astype(int),
                      image.shape[0] - 1)  # fmt: skip
    cols = np.minimum(((np.arange(width) + 0.5) * image.shape[1] / width).astype(int),
                      image.shape[1] - 1)  # fmt: skip
    return image[rows[:, None], cols[None, :]]


def grid_columns(available: list[str], chosen: str) -> list[str]:
    """The grid's maps: :data:`GRID_COLUMNS` this run has, then ``chosen`` if not among them."""
    columns = [key for key in GRID_COLUMNS if key in available]
    return columns + ([chosen] if chosen in available and chosen not in columns else [])


def grid_cell(context: ColorContext, layout: GridLayout, key: str, view: int) -> np.ndarray:
    """Map ``key`` of ``view`` at the grid's cell size, ``[cell_h, cell_w, 3]`` uint8."""
    return _resize_nearest(map_colors(context, key, view), layout.cell_h, layout.cell_w)


def grid_legends(context: ColorContext, layout: GridLayout, columns: list[str]) -> list:
    """Each column's legend at the cell width (the points' legend of its colour mode)."""
    return [legend_image(context, MAPS[key].mode, width=layout.cell_w) for key in columns]


def grid_image(layout: GridLayout, columns: list[str],
               cell: Callable[[str, int], np.ndarray],
               marked: tuple[int, float, float] | None = None,
               legends: list[np.ndarray] | None = None) -> np.ndarray:  # fmt: skip
    """The grid ``[h, w, 3]`` uint8: one row per context view, one column per map of
    ``columns`` (``cell(key, view)``: :func:`grid_cell`, or a cached copy), titles on top,
    ``legends`` (:func:`grid_legends`; ``layout.legend_h`` high) below; ``marked`` =
    ``(view, s, t)`` puts the marker on every map of that view."""
    height, width = layout.shape
    legend_top = height - layout.legend_h
    grid = np.empty((height, width, 3), np.uint8)
    grid[:] = colormaps.LEGEND_BACKGROUND
    for column, key in enumerate(columns):
        _, left = layout.origin(0, column)
        title = colormaps.text_image(MAPS[key].label, width=layout.cell_w, height=layout.title_h)
        grid[: layout.title_h, left : left + layout.cell_w] = title
        for view in range(layout.rows):
            image = cell(key, view)
            if marked is not None and marked[0] == view:
                image = mark(image, marked[1], marked[2])
            top, left = layout.origin(view, column)
            grid[top : top + layout.cell_h, left : left + layout.cell_w] = image
        if legends is not None:
            legend = legends[column][: layout.legend_h, : layout.cell_w]
            _, left = layout.origin(0, column)
            grid[legend_top : legend_top + legend.shape[0], left : left + legend.shape[1]] = legend
    return grid
