"""``panels.png``: one row per context view -- image, coarse depth, residual, final depth, GT error.

Rendered with matplotlib's Agg backend (no display needed). The figure has a fixed size that
:func:`panel_figure_size` states, so callers and tests know the pixel size in advance.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from dsviewer.viewer.color_modes import GT_ERROR_FLOOR
from dsviewer.viewer.colormaps import robust_limit, robust_range
from dsviewer.viewer.layers import Layers

COLUMNS = ("image", "coarse depth", "residual (final - coarse)", "final depth",
           "GT error (final - gt) / gt")  # fmt: skip
PANEL_WIDTH_IN = 3.0  # inches per column
TITLE_HEIGHT_IN = 0.6  # inches per row for titles and tick labels
TITLE_TOP_IN = 0.3  # space above each image for its title
IMAGE_WIDTH_FRACTION = 0.76  # of a column; the rest holds the colorbar and its tick labels
CELL_MARGIN_IN = 0.05
DEFAULT_DPI = 100


def panel_figure_size(
    num_views: int, height: int, width: int, dpi: int = DEFAULT_DPI
) -> tuple[int, int]:
    """``(width_px, height_px)`` of the panels figure for ``num_views`` views of ``H x W``."""
    fig_w, fig_h = figure_inches(len(COLUMNS), num_views, height, width)
    return round(fig_w * dpi), round(fig_h * dpi)


def figure_inches(num_columns: int, num_views: int, height: int, width: int) -> tuple[float, float]:
    """Size in inches of a grid of ``num_views`` rows by ``num_columns`` panels of ``H x W``."""
    image_height_in = IMAGE_WIDTH_FRACTION * PANEL_WIDTH_IN * height / width
    return num_columns * PANEL_WIDTH_IN, num_views * (image_height_in + TITLE_HEIGHT_IN)


class PanelGrid:
    """A bare matplotlib Figure of ``num_views`` rows x ``num_columns`` image panels.

    Each panel is an image with a thin colorbar beside it, placed by hand (a fixed layout is
    both fast and of a size known in advance, :func:`figure_inches`). No pyplot: no global
    backend state; :meth:`png` renders with Agg.
    """

    def __init__(self, num_columns: int, num_views: int, height: int, width: int, dpi: int):
        from matplotlib.figure import Figure

        self.fig_w, self.fig_h = figure_inches(num_columns, num_views, height, width)
        self.figure = Figure(figsize=(self.fig_w, self.fig_h), dpi=dpi)
        self.dpi = dpi
        self.image_w = IMAGE_WIDTH_FRACTION * PANEL_WIDTH_IN
        self.image_h = self.image_w * height / width

    def cell(self, row: int, column: int, title: str):
        """``(image axes, colorbar axes)`` of one panel."""
        fig_w, fig_h = self.fig_w, self.fig_h
        bottom = fig_h - (row * (self.image_h + TITLE_HEIGHT_IN) + TITLE_TOP_IN) - self.image_h
        left = column * PANEL_WIDTH_IN + CELL_MARGIN_IN
        box = (left / fig_w, bottom / fig_h, self.image_w / fig_w, self.image_h / fig_h)
        ax = self.figure.add_axes(box)
        bar_left = left + self.image_w + CELL_MARGIN_IN
        bar = self.figure.add_axes(
            (bar_left / fig_w, bottom / fig_h, 0.1 / fig_w, self.image_h / fig_h)
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=8)
        return ax, bar

    def colorbar(self, image, bar) -> None:
        from matplotlib.ticker import FormatStrFormatter, MaxNLocator

        self.figure.colorbar(image, cax=bar)
        bar.yaxis.set_major_locator(MaxNLocator(5))
        bar.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))  # short labels fit the cell
        bar.tick_params(labelsize=7)

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=self.dpi)
        return buffer.getvalue()


def render_panels(
    layers: Layers,
    gt_error: torch.Tensor | None = None,
    *,
    dpi: int = DEFAULT_DPI,
    depth_unit: str = "",
) -> bytes:
    """PNG bytes of the panels figure.

    Args:
        layers: the scene's layers (depths in the units to display).
        gt_error: ``[V, H, W]`` signed relative error of the final depth (NaN where unknown), or
            None; without it the last column says so.
        dpi: resolution; the size is :func:`panel_figure_size`.
        depth_unit: appended to the depth and residual titles, e.g. ``"m"``.
    """
    from matplotlib import colormaps

    num_views, height, width = layers.final_depth.shape
    grid = PanelGrid(len(COLUMNS), num_views, height, width, dpi)
    unit = f" [{depth_unit}]" if depth_unit else ""

    def cell(view: int, column: int):
        title = COLUMNS[column] + (unit if column in (1, 2, 3) else "")
        return grid.cell(view, column, f"view {view}: {title}")

    colorbar = grid.colorbar

    for view in range(num_views):
        coarse = layers.coarse_depth[view].numpy()
        final = layers.final_depth[view].numpy()
        residual = layers.residual_metric[view].numpy()
        ax, bar = cell(view, 0)
        ax.imshow(layers.rgb[view].numpy())
        bar.set_visible(False)
        low, high = robust_range(
            np.concatenate((coarse.ravel(), final.ravel()))
        )  # one range: they compare
        for column, depth in ((1, coarse), (3, final)):
            ax, bar = cell(view, column)
            colorbar(ax.imshow(depth, cmap="viridis", vmin=low, vmax=high), bar)
        ax, bar = cell(view, 2)
        limit = robust_limit(residual)
        image = ax.imshow(residual, cmap="RdBu_r", vmin=-limit, vmax=limit)
        colorbar(image, bar)
        ax, bar = cell(view, 4)
        if gt_error is not None:
            error = np.ma.masked_invalid(gt_error[view].numpy())
            limit = robust_limit(gt_error[view].numpy(), floor=GT_ERROR_FLOOR)
            no_gt_grey = colormaps["RdBu_r"].with_extremes(bad="0.6")  # unknown GT: grey
            image = ax.imshow(error, cmap=no_gt_grey, vmin=-limit, vmax=limit)
            colorbar(image, bar)
        else:
            bar.set_visible(False)
            ax.text(0.5, 0.5, "no GT depth", ha="center", va="center", transform=ax.transAxes)
    return grid.png()
