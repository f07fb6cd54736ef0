"""How the shown runs are coloured: one colour context per run, and the legend.

Both follow from the :class:`~dsviewer.viewer.gui.state.ViewState` alone (colour mode, colour
settings, analysis settings, the layers switched on) plus the B - A maps of the pair compared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer import colormaps
from dsviewer.viewer.color_modes import (
    COLOR_MODES,
    ColorContext,
    DepthDifference,
    color_mode,
    legend_image,
    mode_of_layer,
)
from dsviewer.viewer.point_layers import POINT_LAYERS

if TYPE_CHECKING:
    from dsviewer.viewer.gui.context import GuiContext
    from dsviewer.viewer.gui.state import ViewState
    from dsviewer.viewer.session.runs import Run


class RunColors:
    """The colour context of each run, rebuilt when its inputs change."""

    def __init__(self, state: ViewState) -> None:
        self.state = state
        self._contexts: dict[int, ColorContext] = {}  # run id -> context
        self._differences: dict[int, dict] = {}  # run id -> B - A maps on that run's pixels

    def clear(self) -> None:
        """A new pair: forget the contexts and the B - A maps."""
        self._contexts, self._differences = {}, {}

    def set_differences(self, maps: dict[int, dict]) -> None:
        """B - A (``"metric"`` / ``"inverse"`` -> ``[V, H, W]``) on the pixels of each run id."""
        self._differences, self._contexts = maps, {}

    def forget(self, run: Run) -> None:
        self._contexts.pop(id(run), None)
        self._differences.pop(id(run), None)

    def invalidate(self) -> None:
        self._contexts = {}

    def context(self, run: Run | None = None) -> ColorContext:
        """The colour context of a run (default: A)."""
        state = self.state
        run = run or state.run_a
        analysis = state.analysis_of(run.loaded)
        settings = state.color
        context = self._contexts.get(id(run))
        if context is None or context.analysis is not analysis or context.settings != settings:
            context = ColorContext(run.loaded.layers, analysis, settings, self._difference(run))
            self._contexts[id(run)] = context
        return context

    def _difference(self, run: Run) -> DepthDifference | None:
        """B - A on ``run``'s pixels, with the colour range of run A's (shared by both)."""
        maps = self._differences.get(id(run))
        reference = self._differences.get(id(self.state.run_a))
        if maps is None or reference is None:
            return None
        percentile = self.state.color.percentile
        limits = {unit: colormaps.robust_limit(values, percentile)
                  for unit, values in reference.items()}  # fmt: skip
        return DepthDifference(maps, limits)

    def residual_limit(self) -> float:
        """The symmetric colour range of run A's residual (the histograms share it)."""
        return color_mode("residual").value_range(self.context())[1]


def modes_in_use(state: ViewState) -> list[str]:
    """The colour modes of run A's visible layers (the chosen one, and fixed ones like the
    residual layer's), in registry order; the chosen one when no layer is visible."""
    loaded = state.loaded
    used = {mode_of_layer(key, state.color_mode) for key in POINT_LAYERS
            if state.layer_shown(key, loaded)}  # fmt: skip
    return [key for key in COLOR_MODES if key in used] or [state.color_mode]


def legend(state: ViewState, colors: RunColors) -> np.ndarray:
    """One legend per colour mode on screen, each under its name: ``[h, w, 3]`` uint8."""
    context = colors.context()
    parts = []
    for key in modes_in_use(state):
        parts += [colormaps.text_image(COLOR_MODES[key].label, height=20),
                  legend_image(context, key)]  # fmt: skip
    return np.concatenate(parts, axis=0)


def difference_job(context: GuiContext, colors: RunColors, say: Callable[[str], None],
                   on_ready: Callable[[], None]) -> Callable[[], None]:  # fmt: skip
    """A job computing B - A of the pair chosen now, on A's pixels and on B's (the depth of one
    along the other's rays), handed to ``colors``; then ``on_ready()``. ``say(text)``: why the
    two cannot be compared."""
    from dsviewer.viewer.escape import escape_markdown

    state = context.state
    a, partner = state.run_a, state.partner

    def job() -> None:
        from dsviewer.viewer.compare import (
            comparison_problem,
            difference_maps,
            gt_source,
            run_source,
        )

        with context.lock:  # the GUI thread edits the run list
            if a is not state.run_a or partner != state.partner:
                return  # the pair changed (or B was removed) before this job ran
            b = state.run_named(partner.run)
        source_a = run_source(a.loaded)
        source_b = (gt_source(a.loaded) if partner.is_gt
                    else None if b is None else run_source(b.loaded))  # fmt: skip
        problem = comparison_problem(source_a, source_b, partner.name)
        if problem is not None:
            say(f"*{escape_markdown(problem)}*")
            return
        maps = {id(a): {k: v.numpy() for k, v in difference_maps(source_a, source_b).items()}}
        if b is not None:  # on B's pixels: -(A - B) = B - A
            maps[id(b)] = {k: -v.numpy() for k, v in difference_maps(source_b, source_a).items()}
        with context.lock:
            if a is not state.run_a or partner != state.partner:
                return  # the pair changed meanwhile
            colors.set_differences(maps)
            context.guarded(on_ready)

    return job
