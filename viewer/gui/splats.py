"""The Gaussians folder (predicted splats) and the residual vectors, as scene nodes.

Splats are sent once per scene and per (colouring, opacity threshold); placement and visibility
only move or hide the node. Both folders write what they show into the ViewState (``splats``,
``vectors_shown``): overlaid splats and the residual vectors lie inside the final points, so the
point clouds step aside while they are shown (``ViewState.points_covered``), else the points
would hide them. Both stand at run A's place (:mod:`dsviewer.viewer.gui.placement`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.analysis.gaussians import gaussian_colors
from dsviewer.viewer.analysis.residual_vectors import residual_segments
from dsviewer.viewer.gui.placement import run_offsets, splat_offset
from dsviewer.viewer.point_layers import gaussian_dc_rgb

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.gui.context import GuiContext

SPLAT_COLORS = {"SH colour": "sh", "Opacity": "opacity", "Scale": "scale"}
MAX_VECTORS = 40_000  # residual segments sent at most, split over the views


def select_gaussians(opacities: np.ndarray, budget: int, min_opacity: float = 0.0) -> np.ndarray:
    """Indices of at most ``budget`` Gaussians at least ``min_opacity`` opaque (the most opaque).

    NaN opacities (non-finite Gaussians) are never selected.
    """
    indices = np.flatnonzero((opacities >= min_opacity) & np.isfinite(opacities))
    if indices.size > budget:
        chosen = np.argpartition(-opacities[indices], budget - 1)[:budget]
        indices = np.sort(indices[chosen])
    return indices


class SplatNodes:
    def __init__(self, context: GuiContext, budget: int,
                 on_shown: Callable[[bool], None]) -> None:  # fmt: skip
        """``on_shown(moved)``: the splats were shown, hidden or (``moved``) placed elsewhere;
        ``ViewState.splats`` says how."""
        self.context, self.state = context, context.state
        self.budget = budget
        self.handle: viser.GaussianSplatHandle | None = None
        self.sent_key: tuple | None = None
        gui = context.server.gui
        with gui.add_folder("Gaussians", expand_by_default=False):
            self.toggle = gui.add_checkbox(
                "Gaussian splats",
                initial_value=False,
                hint="The predicted 3D Gaussians of run A as splats (DC colour). Overlaid, the "
                "point clouds are hidden while they are shown (they would cover the splats).",
            )
            self.placement = gui.add_dropdown(
                "Splats placement", options=("overlaid", "side by side"),
                hint="side by side: beside the point layers, so both can be seen at once.",
            )  # fmt: skip
            self.color = gui.add_dropdown(
                "Splat colour",
                options=list(SPLAT_COLORS),
                hint="SH colour, or a map of opacity or largest scale.",
            )
            self.min_opacity = gui.add_slider(
                "Min splat opacity",
                min=0.0,
                max=1.0,
                step=0.01,
                initial_value=0.0,
                hint="Hide fainter Gaussians.",
            )
        for control in (self.color, self.min_opacity):
            control.on_update(lambda _event: context.guarded(self.refresh))
        self._write()

        @self.toggle.on_update
        def _(_event) -> None:
            self._write()  # side by side, they widen (or narrow) what must be framed
            context.guarded(lambda: on_shown(self.placement.value == "side by side"))

        @self.placement.on_update
        def _(_event) -> None:
            self._write()
            context.guarded(lambda: on_shown(True))

    def _write(self) -> None:
        loaded = self.state.loaded
        has = loaded is not None and loaded.layers.gaussians is not None
        self.state.splats = self.placement.value if self.toggle.value and has else "hidden"

    def show(self) -> None:
        has = self.state.loaded.layers.gaussians is not None
        for control in (self.toggle, self.placement, self.color, self.min_opacity):
            control.disabled = not has
        self._write()
        self.sent_key = None
        self.refresh()

    def refresh(self) -> None:
        gaussians = self.state.loaded.layers.gaussians
        if self.state.splats == "hidden" or gaussians is None:
            if self.handle is not None:
                self.handle.visible = False
            return
        key = (SPLAT_COLORS[self.color.value], float(self.min_opacity.value))
        if self.sent_key != key:
            mode, min_opacity = key
            opacities = np.where(
                gaussians.finite()[0].numpy(), gaussians.opacities[0].numpy(), np.nan
            )
            indices = select_gaussians(opacities, self.budget, min_opacity)  # NaN ones never
            if mode == "sh":
                rgbs = gaussian_dc_rgb(gaussians.harmonics[0, indices, :, 0]).numpy()
            else:
                rgbs = gaussian_colors(gaussians, mode)[indices]
            self.handle = self.context.server.scene.add_gaussian_splats(
                "/splats", centers=gaussians.means[0, indices].numpy(),
                covariances=gaussians.covariances[0, indices].numpy(), rgbs=rgbs,
                opacities=opacities[indices][:, None],
            )  # fmt: skip
            self.sent_key = key
        self.handle.visible = True
        self.handle.position = tuple(float(x) for x in splat_offset(self.state))


class ResidualVectors:
    """Coarse -> final segments per view (built when first shown or restrided)."""

    def __init__(self, context: GuiContext, on_shown: Callable[[], None]) -> None:
        """``on_shown()``: the vectors were shown or hidden (``ViewState.vectors_shown``)."""
        self.context, self.state = context, context.state
        self.handles: list[viser.LineSegmentsHandle] = []
        self.fresh = False
        gui = context.server.gui
        with gui.add_folder("Residual vectors", expand_by_default=False):
            self.toggle = gui.add_checkbox(
                "Residual vectors", initial_value=False,
                hint="Segments from each coarse point to its final point of run A: what the "
                "monocular branch moved (blue: toward the camera, red: away). The point clouds "
                "are hidden while they are shown (they would cover the segments).",
            )  # fmt: skip
            self.stride = gui.add_slider(
                "Vector stride (px)",
                min=1,
                max=32,
                step=1,
                initial_value=8,
                hint="One segment every this many pixels.",
            )

        @self.toggle.on_update
        def _(_event) -> None:
            self.state.vectors_shown = bool(self.toggle.value)
            context.guarded(on_shown)

        @self.stride.on_update
        def _(_event) -> None:
            self.fresh = False
            context.guarded(self.refresh)

    def show(self) -> None:
        self.fresh = False
        self.refresh()

    def refresh(self) -> None:
        wanted = self.state.vectors_shown
        if wanted and not self.fresh:
            self._build()
        count = self.state.loaded.layers.num_views
        offsets = run_offsets(self.state)
        position = tuple(float(x) for x in offsets[self.state.primary])  # at run A's place
        for v, handle in enumerate(self.handles):
            handle.visible = wanted and v < count and self.state.view_shown(v)
            handle.position = position

    def _build(self) -> None:
        loaded = self.state.loaded
        per_view = MAX_VECTORS // max(1, loaded.layers.num_views)
        for v in range(loaded.layers.num_views):
            segments = residual_segments(loaded.layers, stride=int(self.stride.value),
                                         max_segments=per_view, views=[v])  # fmt: skip
            handle = self.context.server.scene.add_line_segments(
                f"/residual_vectors/view_{v}", points=segments.points, colors=segments.colors,
                thickness=1.5, thickness_units="screen",
            )  # fmt: skip
            if v < len(self.handles):
                self.handles[v] = handle
            else:
                self.handles.append(handle)
        self.fresh = True
