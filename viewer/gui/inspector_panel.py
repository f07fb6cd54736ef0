"""The Inspector folder: click a point or a map's pixel (or type a pixel) to see everything
about that pixel.

A click in the scene is a ray in the user's frame; the ``pick`` the app gives
(:meth:`MapPictures.pick`) finds the map pixel it meets or the shown point nearest to it. The
inspected pixel is written to ``state.inspected`` (the maps mark it). The report
(:mod:`dsviewer.viewer.inspector`) lists the depths, the residual, the confidence, GT, every
scalar colour mode's value and the flags, and plots the cost volume's probability over the
depth candidates between the view's near and far planes. With several runs the same ray's
pixel is reported in each (one column per run, the curves overlaid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.color_modes import COLOR_MODES
from dsviewer.viewer.colormaps import CATEGORY_COLORS
from dsviewer.viewer.escape import escape_markdown
from dsviewer.viewer.gui.state import InspectedPixel
from dsviewer.viewer.inspector import (
    PixelOutOfRangeError,
    PixelReport,
    corresponding_pixel,
    inspect_pixel,
    probability_series,
)
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.scene_nodes import add_point_cloud

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.color_modes import ColorContext
    from dsviewer.viewer.gui.context import GuiContext
    from dsviewer.viewer.session.runs import Run

    Pick = Callable[[np.ndarray, np.ndarray], "tuple[Run, str, int, int, int] | None"]
    ColorsOf = Callable[[Run], ColorContext]

PROMPT = "Click a point in the scene, or enter a pixel."
MARKER_PIXELS = 6.0  # the picked point's marker, in context pixels


def _fmt(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4g}"


def _rows(report: PixelReport) -> list[tuple[str, str]]:
    rows = [
        ("view, pixel (u, v)", f"{report.view}, ({report.u}, {report.v})"),
        ("frame", str(report.frame)),
        ("coarse depth", _fmt(report.coarse_depth)),
        ("final depth", _fmt(report.final_depth)),
        ("residual (inverse)", _fmt(report.residual_inv)),
        ("residual (final - coarse)", _fmt(report.residual_metric)),
        ("confidence", _fmt(report.confidence)),
        ("GT depth", _fmt(report.gt_depth)),
        ("rel. error coarse / final", (f"{_fmt(report.relative_error(report.coarse_depth))} / "
                                      f"{_fmt(report.relative_error(report.final_depth))}")),
        ("cost volume argmax / mean",
         f"{_fmt(report.argmax_depth)} / {_fmt(report.expected_depth)}"),
    ]  # fmt: skip
    rows += [(COLOR_MODES[k].label.lower() + " (final)", _fmt(v))
             for k, v in report.mode_values.items()
             if k not in ("residual", "confidence", "depth")]  # fmt: skip
    rows.append(("flags", ", ".join(report.flags) or "none"))
    return rows


RUNS_PER_TABLE = 2  # run columns per table: more would not fit the docked panel


def report_markdown(reports: list[tuple[str, PixelReport | None]]) -> str:
    """One column per run (``(run name, report)``; None: the run has no such pixel); with more
    than :data:`RUNS_PER_TABLE` runs, one table per group of runs, stacked, so that every table
    fits the panel's width."""
    labels = [label for label, _ in _rows(next(r for _, r in reports if r is not None))]
    tables = []
    for start in range(0, len(reports), RUNS_PER_TABLE):
        group = reports[start : start + RUNS_PER_TABLE]
        names = [escape_markdown(name) for name, _ in group]
        columns = [dict(_rows(report)) if report is not None else {} for _, report in group]
        header = "| | " + " | ".join(names) + " |" if len(reports) > 1 else "| | |"
        lines = [header, "|---|" + "---|" * len(group)]
        lines += [f"| {label} | " + " | ".join(c.get(label, "-") for c in columns) + " |"
                  for label in labels]  # fmt: skip
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


EMPTY_PLOT = (
    (np.array([1.0, 2.0]), np.zeros(2)),
    ({"label": "depth"}, {"label": "probability", "stroke": "#4393c3", "width": 2}),
)


def probability_plot(reports: list[tuple[str, PixelReport]]) -> tuple[tuple, tuple, list]:
    """``(data, series, x range)`` for uPlot: each run's curve on one depth axis.

    uPlot draws series on shared x values, and runs of other models or planes have other depth
    candidates. So x is the union of every run's candidates, and each run's curve is read there
    linearly in log depth between its own candidates (exactly the polyline through its points on
    the plot's log axis) and is 0 outside them (no candidate, no probability). No NaN is sent:
    uPlot would draw no path at all through NaN values.
    """
    curves = [(name, probability_series(report)) for name, report in reports]
    x = np.unique(np.concatenate([c.depth for _, c in curves]))
    data = [x]
    series = [{"label": "depth"}]
    for index, (name, curve) in enumerate(curves):
        y = np.interp(np.log(x), np.log(curve.depth), curve.probability, left=0.0, right=0.0)
        data.append(y)
        color = CATEGORY_COLORS[index % len(CATEGORY_COLORS)]
        series.append({"label": name, "stroke": "#{:02x}{:02x}{:02x}".format(*color),
                       "width": 2})  # fmt: skip
    low = min(c.depth_range[0] for _, c in curves)
    high = max(c.depth_range[1] for _, c in curves)
    return tuple(d.astype(np.float64) for d in data), tuple(series), [low, high]


class InspectorPanel:
    def __init__(self, context: GuiContext, pick: Pick, colors: ColorsOf,
                 on_inspect: Callable[[], None] | None = None) -> None:  # fmt: skip
        """``pick(ray_origin, ray_direction) -> (run, layer, view, u, v)`` of what a world ray
        hits (a shown point or a map's pixel), or None; ``colors(run)``: the colour context the
        points of a run are drawn with (the colour modes' values, B - A included, are read from
        it); ``on_inspect()`` after the inspected pixel (``state.inspected``) changed."""
        self.context, self.state = context, context.state
        self.colors = colors
        self.on_inspect = on_inspect
        self.report: PixelReport | None = None  # the inspected pixel, in ``run``
        self.run: Run | None = None  # the run of the clicked point (the fields' pixel is its)
        self.reports: list[tuple[str, PixelReport | None]] = []  # every run's, by name
        self.marker: viser.PointCloudHandle | None = None
        gui = context.server.gui
        with gui.add_folder("Inspector", expand_by_default=False):
            self.text = gui.add_markdown(PROMPT)
            self.view = gui.add_number("View", initial_value=0, min=0, step=1)
            self.u = gui.add_number("u (column)", initial_value=0, min=0, step=1)
            self.v = gui.add_number("v (row)", initial_value=0, min=0, step=1)
            self.inspect = gui.add_button(
                "Inspect", hint="Inspect this pixel of this context view."
            )
            self.plot = gui.add_uplot(
                *EMPTY_PLOT, title="Cost-volume probability over depth", aspect=1.6,
                scales={"x": {"time": False, "distr": 3}},  # candidates are uniform in 1/depth
                axes=({"label": "depth"}, {"label": "probability"}),
            )  # fmt: skip

        @self.inspect.on_click
        def _(_event) -> None:
            try:
                self.inspect_pixel(int(self.view.value), int(self.u.value), int(self.v.value))
            except (PixelOutOfRangeError, RuntimeError) as error:
                self.text.content = f"**{escape_markdown(error)}**"

        @context.server.scene.on_click()
        def _(event) -> None:
            with context.lock:
                if self.state.loaded is None:
                    return
                picked = pick(event.ray_origin, event.ray_direction)
                if picked is None:
                    return
                run, _, view, u, v = picked
                with context.server.atomic():
                    self._show(view, u, v, run)

    def reset(self) -> None:
        """A new scene: forget the last pixel and its curve."""
        self.report, self.run = None, None
        self.state.inspected = None
        self.text.content = PROMPT
        self._plot(*EMPTY_PLOT)
        if self.marker is not None:
            self.marker.visible = False

    def inspect_pixel(self, view: int, u: int, v: int) -> PixelReport:
        """Fill the inspector with pixel ``(u, v)`` of context view ``view`` of the last
        inspected run (else A); returns the report."""
        with self.context.lock:
            if self.state.loaded is None:
                raise RuntimeError("no scene is shown yet")
            run = self.run if self.run in self.state.runs else None
            with self.context.server.atomic():
                return self._show(view, u, v, run)

    def refresh(self) -> None:
        """The analysis changed: recompute the shown pixel's report (of the run it was in)."""
        if self.report is None:
            return
        if self.run not in self.state.runs:  # dropped meanwhile
            self.reset()
            return
        self._show(self.report.view, self.report.u, self.report.v, self.run)

    def _show(self, view: int, u: int, v: int, run: Run | None = None) -> PixelReport:
        """The pixel of ``run`` (default: A), and the same ray's pixel in every other run."""
        state = self.state
        run = run or state.run_a
        loaded = run.loaded
        report = inspect_pixel(loaded.layers, view, u, v, state.analysis_of(loaded),
                               self.colors(run))  # fmt: skip
        reports: list[tuple[str, PixelReport | None]] = [(run.name, report)]
        for other in state.runs:
            if other is run or not other.visible:
                continue
            pixel = corresponding_pixel(
                loaded.layers.context, view, u, v, other.loaded.layers.context
            )
            reports.append((other.name, None if pixel is None else inspect_pixel(
                other.loaded.layers, *pixel, state.analysis_of(other.loaded),
                self.colors(other))))  # fmt: skip
        self.text.content = report_markdown(reports)
        self._plot(*probability_plot([(n, r) for n, r in reports if r is not None]))
        self.view.value, self.u.value, self.v.value = view, u, v
        points = np.array([report.coarse_point, report.final_point], dtype=np.float32)
        colors = np.array([POINT_LAYERS["coarse"].color, POINT_LAYERS["final"].color], np.uint8)
        size = MARKER_PIXELS * loaded.view.pixel_footprint
        if self.marker is None:
            self.marker = add_point_cloud(self.context.server, "/inspected", points, colors, size)
        else:
            self.marker.points, self.marker.colors, self.marker.point_size = points, colors, size
            self.marker.visible = True
        self.report, self.reports, self.run = report, reports, run
        self.state.inspected = InspectedPixel(run.name, view, u, v)
        if self.on_inspect is not None:
            self.on_inspect()
        return report

    def _plot(self, data: tuple, series: tuple, x_range: list | None = None) -> None:
        """New curves. uPlot reads one data array per series, and a page may draw between two
        property updates: a series without its array stops the page ("reading 'length'"). So
        more series: the data first; fewer: the series first."""
        with self.context.server.atomic():
            if len(series) > len(self.plot.series):
                self.plot.data, self.plot.series = data, series
            else:
                self.plot.series, self.plot.data = series, data
            if x_range is not None:
                self.plot.scales = {"x": {"time": False, "distr": 3, "range": x_range}}
