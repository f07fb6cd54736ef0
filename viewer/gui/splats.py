"""The Gaussians folder (predicted splats) and the residual vectors, as scene nodes.

Splats are sent once per scene and per (colouring, opacity threshold); placement and visibility
only move or hide the node. "side by side" shifts the splats along the cameras' right axis past
the final points and reframes every client's view so that both stay in sight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.analysis.gaussians import gaussian_colors
from dsviewer.viewer.analysis.residual_vectors import residual_segments
from dsviewer.viewer.colormaps import robust_range
from dsviewer.viewer.point_layers import gaussian_dc_rgb
from dsviewer.viewer.view_params import framing_camera

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.gui.context import GuiContext

SPLAT_COLORS = {"SH colour": "sh", "Opacity": "opacity", "Scale": "scale"}
MAX_VECTORS = 40_000  # residual segments sent at most, split over the views
SIDE_GAP = 1.15  # side-by-side shift: this many times the points' extent along the right axis


def select_gaussians(opacities: np.ndarray, budget: int, min_opacity: float = 0.0) -> np.ndarray:
    """Indices of at most ``budget`` Gaussians at least ``min_opacity`` opaque (the most opaque).

    NaN opacities (non-finite Gaussians) are never selected.
    """
    indices = np.flatnonzero((opacities >= min_opacity) & np.isfinite(opacities))
    if indices.size > budget:
        chosen = np.argpartition(-opacities[indices], budget - 1)[:budget]
        indices = np.sort(indices[chosen])
    return indices


def side_by_side_offset(points: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    """A shift ``[3]`` along the cameras' mean right axis that clears ``points`` ``[n, 3]``."""
    right = T_world_cam[:, :3, 0].mean(axis=0)
    right /= max(np.linalg.norm(right), 1e-9)
    if points.size == 0:
        return right
    low, high = robust_range(points @ right, 1.0, 99.0)
    return right * float(SIDE_GAP * (high - low) + 1e-6)


class SplatNodes:
    def __init__(self, context: GuiContext, budget: int) -> None:
        self.context, self.state = context, context.state
        self.budget = budget
        self.handle: viser.GaussianSplatHandle | None = None
        self.sent_key: tuple | None = None
        gui = context.server.gui
        with gui.add_folder("Gaussians", expand_by_default=False):
            self.toggle = gui.add_checkbox(
                "Gaussian splats",
                initial_value=False,
                hint="The predicted 3D Gaussians as splats (DC colour).",
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
        for control in (self.toggle, self.color, self.min_opacity):
            control.on_update(lambda _event: context.guarded(self.refresh))

        @self.placement.on_update
        def _(_event) -> None:
            context.guarded(self.refresh)
            context.guarded(self.reframe_clients)

    def show(self) -> None:
        has = self.state.loaded.layers.gaussians is not None
        for control in (self.toggle, self.placement, self.color, self.min_opacity):
            control.disabled = not has
        self.sent_key = None
        self.refresh()

    def offset(self) -> np.ndarray:
        if self.placement.value != "side by side":
            return np.zeros(3)
        loaded = self.state.loaded
        final = loaded.flat("final")
        return side_by_side_offset(
            final.points[final.valid], loaded.layers.context.T_world_cam.numpy()
        )

    def refresh(self) -> None:
        gaussians = self.state.loaded.layers.gaussians
        if not self.toggle.value or gaussians is None:
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
        self.handle.position = tuple(float(x) for x in self.offset())

    def reframe_clients(self) -> None:
        """Frame the final points and (side by side) their shifted copy in every client."""
        loaded = self.state.loaded
        final = loaded.flat("final")
        points = final.points[final.valid]
        framed = np.concatenate((points, points + self.offset()))
        camera = framing_camera(framed, loaded.layers.context.T_world_cam.numpy(), loaded.view.up)
        for client in self.context.server.get_clients().values():
            with client.atomic():
                client.camera.position, client.camera.look_at = camera.position, camera.look_at


class ResidualVectors:
    """Coarse -> final segments per view (built when first shown or restrided)."""

    def __init__(self, context: GuiContext) -> None:
        self.context, self.state = context, context.state
        self.handles: list[viser.LineSegmentsHandle] = []
        self.fresh = False
        gui = context.server.gui
        with gui.add_folder("Residual vectors", expand_by_default=False):
            self.toggle = gui.add_checkbox(
                "Residual vectors", initial_value=False,
                hint="Segments from each coarse point to its final point: what the monocular "
                "branch moved (blue: toward the camera, red: away).",
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
            context.guarded(self.refresh)

        @self.stride.on_update
        def _(_event) -> None:
            self.fresh = False
            context.guarded(self.refresh)

    def show(self) -> None:
        self.fresh = False
        self.refresh()

    def refresh(self) -> None:
        wanted = bool(self.toggle.value)
        if wanted and not self.fresh:
            self._build()
        count = self.state.loaded.layers.num_views
        for v, handle in enumerate(self.handles):
            handle.visible = wanted and v < count and self.state.view_shown(v)

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
