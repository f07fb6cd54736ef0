"""The point clouds in the scene: which points are sent, their colours, picking.

One viser point cloud per (run, layer, view) under a frame per run and layer
(``/runs/<slot>/<layer>/view_<v>``), so toggling a run, a layer or a view only flips
visibility. Changing the selection (filters, budget) re-sends the points of visible layers in
place (``handle.points``, ``handle.colors``); hidden layers are marked stale and sent when
first shown. Changing colours sends only colours. Handles are kept across scenes (same node
names), so scene switches never grow viser's buffer. Everything drawn follows from the
:class:`~dsviewer.viewer.gui.state.ViewState` (layers, views, filters, colour mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.color_modes import mode_of_layer, point_colors
from dsviewer.viewer.gui.placement import label_position, run_label
from dsviewer.viewer.gui.state import Subsample
from dsviewer.viewer.point_layers import POINT_LAYERS, FlatLayer
from dsviewer.viewer.scene_nodes import add_point_cloud

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.analysis import SceneAnalysis
    from dsviewer.viewer.gui.colors import RunColors
    from dsviewer.viewer.gui.context import GuiContext
    from dsviewer.viewer.gui.state import PointSettings, ViewState
    from dsviewer.viewer.session.loaded import LoadedScene
    from dsviewer.viewer.session.runs import Run
PICK_MAX_ANGLE = 0.03  # radians: a click further than this from every point picks nothing


@dataclass(frozen=True)
class PointFilter:
    """Which points of a layer are sent."""

    min_confidence: float = 0.0  # absolute match probability
    depth_low: float = -np.inf
    depth_high: float = np.inf
    budget_per_view: int = 100_000
    subsample: Subsample = "random"
    pixel_mask: np.ndarray | None = None  # [V, P] bool: pixels allowed (analysis filters)


def select_points(
    flat: FlatLayer, confidence: np.ndarray, rank: np.ndarray, view: int, filt: PointFilter
) -> np.ndarray:
    """Indices ``[n]`` (ascending, into the view's ``P`` pixels) of the points to send.

    Filters by validity, confidence and the layer's depth, then keeps at most
    ``budget_per_view``: ``random`` keeps the points of lowest fixed random ``rank`` ``[P]``
    (stable when filters change), ``stride`` every k-th remaining pixel.
    """
    depth = flat.depth[view]
    keep = flat.valid[view] & (depth >= filt.depth_low) & (depth <= filt.depth_high)
    if filt.min_confidence > 0:
        keep &= confidence[view] >= filt.min_confidence
    if filt.pixel_mask is not None:
        keep &= filt.pixel_mask[view]
    indices = np.flatnonzero(keep)
    budget = max(int(filt.budget_per_view), 0)
    if indices.size <= budget:
        return indices
    if filt.subsample == "stride":
        return indices[:: int(np.ceil(indices.size / budget))]
    chosen = np.argpartition(rank[indices], budget - 1)[:budget]
    return np.sort(indices[chosen])


def point_filter(settings: PointSettings, loaded: LoadedScene,
                 analysis: SceneAnalysis | None) -> PointFilter:  # fmt: skip
    """The filter ``settings`` select on a run: percentiles of its own depth and confidence,
    and the analysis filters once its ``analysis`` (for the settings on screen) is there."""
    final = loaded.flat("final")
    depth = final.depth[final.valid]
    low_pct, high_pct = settings.depth_range_pct
    low, high = -np.inf, np.inf
    if depth.size and low_pct > 0:
        low = float(np.percentile(depth, low_pct))
    if depth.size and high_pct < 100:
        high = float(np.percentile(depth, high_pct))
    min_confidence = 0.0
    if settings.min_confidence_pct > 0:
        confidence = loaded.layers.confidence.numpy()
        min_confidence = float(np.percentile(confidence, settings.min_confidence_pct))
    return PointFilter(
        min_confidence=min_confidence, depth_low=low, depth_high=high,
        budget_per_view=settings.budget // max(1, loaded.layers.num_views),
        subsample=settings.subsample, pixel_mask=_analysis_mask(settings, analysis),
    )  # fmt: skip


def point_size(state: ViewState) -> float:
    """The size of every run's points in the scene's units: the chosen pixels at run A's
    median depth (so that overlaid runs draw alike)."""
    return state.loaded.view.point_size(state.points.pixels)


def _analysis_mask(settings: PointSettings, analysis: SceneAnalysis | None) -> np.ndarray | None:
    """``[V, P]`` bool of the analysis filters; None while off or not computed yet."""
    if analysis is None or not settings.uses_analysis:
        return None
    final = analysis.layers["final"]
    V = final.flying.shape[0]
    mask = np.ones((V, final.flying[0].numel()), dtype=bool)
    if settings.inconsistent_only:
        mask &= final.consistency.inconsistent.reshape(V, -1).numpy()
    if settings.hide_flying:
        mask &= ~final.flying.reshape(V, -1).numpy()
    return mask


def nearest_to_ray(points: np.ndarray, origin: np.ndarray, direction: np.ndarray):
    """``(index, angle)``: the point ``[n, 3]`` seen closest to the ray, as an angle (radians).

    Points behind the ray origin are ignored; ``(-1, inf)`` when none is in front.
    """
    direction = np.asarray(direction, np.float64)
    direction = direction / max(np.linalg.norm(direction), 1e-12)
    offsets = np.asarray(points, np.float64) - np.asarray(origin, np.float64)  # [n, 3]
    along = offsets @ direction
    across = np.linalg.norm(offsets - along[:, None] * direction, axis=-1)
    angle = np.where(along > 0, np.arctan2(across, np.maximum(along, 1e-12)), np.inf)
    if angle.size == 0 or not np.isfinite(angle.min()):
        return -1, float("inf")
    index = int(np.argmin(angle))
    return index, float(angle[index])


class PointClouds:
    """The point clouds of one run, under ``/runs/<slot>`` (its position: the run's placement)."""

    def __init__(self, context: GuiContext, colors: RunColors, slot: int) -> None:
        self.context, self.state, self.colors = context, context.state, colors
        self.slot = slot
        self.run: Run | None = None
        scene = context.server.scene
        self.root = scene.add_frame(f"/runs/{slot}", show_axes=False, visible=False)
        self.frames: dict[str, viser.FrameHandle] = {
            key: scene.add_frame(f"/runs/{slot}/{key}", show_axes=False, visible=False)
            for key in POINT_LAYERS
        }
        self.handles: dict[tuple[str, int], viser.PointCloudHandle] = {}
        self.shown: dict[tuple[str, int], np.ndarray] = {}  # pixel indices sent, per cloud
        self.stale: set[str] = set(POINT_LAYERS)
        self.rank = np.zeros(0, np.int32)
        self.label: viser.LabelHandle | None = None  # "A: name" over the cluster

    @property
    def loaded(self):
        return self.run.loaded

    def show(self, run: Run | None) -> None:
        """A new run in this slot (None: the slot is unused and hidden)."""
        self.run = run
        self.refresh_root()
        if run is None:
            return
        layers = run.loaded.layers
        self.rank = (
            np.random.default_rng(0).permutation(layers.final_depth[0].numel()).astype(np.int32)
        )
        for (layer, view), handle in self.handles.items():
            if view >= layers.num_views:  # a view this run does not have
                handle.visible = False
                self.shown[(layer, view)] = np.zeros(0, np.int64)
        self.refresh_selection()

    def wanted(self, layer: str) -> bool:
        return self.state.layer_shown(layer, self.loaded)

    def refresh_selection(self) -> None:
        """Filters changed: re-send visible layers, mark the hidden ones stale."""
        self.stale = set(POINT_LAYERS)
        for layer in POINT_LAYERS:
            self.set_layer_visible(layer)

    def set_layer_visible(self, layer: str) -> None:
        wanted = self.wanted(layer)
        if wanted and layer in self.stale and self.run.visible:
            self._upload(layer)
        self.frames[layer].visible = wanted

    def refresh_root(self) -> None:
        """Shown while its run is, unless overlaid splats or residual vectors cover it."""
        self.root.visible = (self.run is not None and self.run.visible
                             and not self.state.points_covered)  # fmt: skip

    def set_run_visible(self, visible: bool) -> None:
        self.run.visible = visible
        self.refresh_root()
        if visible:
            for layer in POINT_LAYERS:
                self.set_layer_visible(layer)

    def _upload(self, layer: str) -> None:
        state, loaded = self.state, self.loaded
        flat = loaded.flat(layer)
        filt = point_filter(state.points, loaded, state.analysis_of(loaded))
        confidence = loaded.layers.confidence.reshape(flat.num_views, -1).numpy()
        size = point_size(state)
        for v in range(flat.num_views):
            indices = select_points(flat, confidence, self.rank, v, filt)
            points, colors = flat.points[v, indices], self._colors(layer, v, indices)
            if indices.size == 0:  # an empty cloud makes three.js compute a NaN bounding sphere
                points = loaded.layers.context.centers[v : v + 1].float().numpy()
                colors = np.zeros((1, 3), np.uint8)
            key = (layer, v)
            handle = self.handles.get(key)
            if handle is None:
                handle = add_point_cloud(self.context.server, f"/runs/{self.slot}/{layer}/view_{v}",
                                         points, colors, size)  # fmt: skip
                self.handles[key] = handle
            else:
                handle.points, handle.colors, handle.point_size = points, colors, size
            self.shown[key] = indices
            handle.visible = indices.size > 0 and state.view_shown(v)
        self.stale.discard(layer)

    def _colors(self, layer: str, view: int, indices: np.ndarray) -> np.ndarray:
        mode = mode_of_layer(layer, self.state.color_mode)
        return point_colors(self.colors.context(self.run), mode, layer, view, indices)

    def refresh_colors(self) -> None:
        """Colours changed: send new colours of visible, fresh layers only."""
        for (layer, view), indices in self.shown.items():
            fresh = layer not in self.stale and view < self.loaded.layers.num_views
            if fresh and indices.size:
                self.handles[(layer, view)].colors = self._colors(layer, view, indices)

    def refresh_view_visibility(self) -> None:
        for (layer, view), handle in self.handles.items():
            shown = self.shown.get((layer, view))
            handle.visible = shown is not None and shown.size > 0 and self.state.view_shown(view)

    def set_point_size(self, size: float) -> None:
        for handle in self.handles.values():
            handle.point_size = size

    def points_sent(self) -> int:
        """Points on screen: of the layers and views shown (hidden ones keep theirs, unseen)."""
        if not self.root.visible:
            return 0
        views = self.loaded.layers.num_views
        return sum(int(indices.size) for (layer, view), indices in self.shown.items()
                   if self.wanted(layer) and layer not in self.stale
                   and view < views and self.state.view_shown(view))  # fmt: skip

    def pick(self, origin: np.ndarray, direction: np.ndarray):
        """``(angle, layer, view, pixel)`` of this run's shown point nearest to a world ray."""
        loaded = self.loaded
        origin = origin - np.asarray(self.root.position)  # the run's placement offset
        best = None
        for layer, spec in POINT_LAYERS.items():
            if not spec.pickable or not self.wanted(layer) or layer in self.stale:
                continue
            flat = loaded.flat(layer)
            for view in range(flat.num_views):
                indices = self.shown.get((layer, view))
                if indices is None or indices.size == 0 or not self.state.view_shown(view):
                    continue
                i, angle = nearest_to_ray(flat.points[view, indices], origin, direction)
                if i >= 0 and (best is None or angle < best[0]):
                    best = (angle, layer, view, int(indices[i]))
        return best


class RunClouds:
    """The point clouds of every run of the scene; slots are reused across scenes."""

    def __init__(self, context: GuiContext, colors: RunColors) -> None:
        self.context, self.colors = context, colors
        self.slots: list[PointClouds] = []

    def _active(self) -> list[PointClouds]:
        return [clouds for clouds in self.slots if clouds.run is not None and clouds.run.visible]

    def show(self, runs: list[Run]) -> None:
        while len(self.slots) < len(runs):
            self.slots.append(PointClouds(self.context, self.colors, len(self.slots)))
        for index, clouds in enumerate(self.slots):
            clouds.show(runs[index] if index < len(runs) else None)

    def refresh_selection(self) -> None:
        for clouds in self._active():
            clouds.refresh_selection()

    def set_layer_visible(self, layer: str) -> None:
        for clouds in self._active():
            clouds.set_layer_visible(layer)

    def refresh_colors(self) -> None:
        for clouds in self._active():
            clouds.refresh_colors()

    def refresh_view_visibility(self) -> None:
        for clouds in self._active():
            clouds.refresh_view_visibility()

    def refresh_roots(self) -> None:
        for clouds in self.slots:
            clouds.refresh_root()

    def refresh_labels(self) -> None:
        """``A: name`` / ``B: name`` / the name over each run's cluster, with two runs or more
        (labels are children of the run's frame: they move and hide with it)."""
        state = self.context.state
        up = np.asarray(state.loaded.view.up, np.float64)
        for slot, clouds in enumerate(self.slots):
            wanted = clouds.run is not None and len(state.runs) > 1
            if not wanted:
                if clouds.label is not None:
                    clouds.label.visible = False
                continue
            text = run_label(state, slot)  # drawn as WebGL glyphs, never as HTML
            position = label_position(clouds.run, slot, up)
            if clouds.label is None:
                clouds.label = self.context.server.scene.add_label(
                    f"/runs/{slot}/label", text, position=position, anchor="bottom-center")
            else:
                clouds.label.text, clouds.label.position = text, position
                clouds.label.visible = True

    def refresh_point_size(self) -> None:
        size = point_size(self.context.state)
        for clouds in self.slots:
            clouds.set_point_size(size)

    def place(self, offsets: list[np.ndarray]) -> None:
        """Move each run's clouds (overlaid: zeros; side by side: one step per run)."""
        for clouds, offset in zip(self.slots, offsets, strict=False):
            clouds.root.position = tuple(float(x) for x in offset)

    def points_sent(self) -> int:
        return sum(clouds.points_sent() for clouds in self._active())

    def pick(self, origin, direction) -> tuple[Run, str, int, int, int] | None:
        """``(run, layer, view, u, v)`` of the shown point nearest to a world ray, or None."""
        origin, direction = np.asarray(origin, np.float64), np.asarray(direction, np.float64)
        candidates = [(clouds.pick(origin, direction), clouds) for clouds in self._active()]
        candidates = [(hit, clouds) for hit, clouds in candidates if hit is not None]
        if not candidates:
            return None
        (angle, layer, view, pixel), clouds = min(candidates, key=lambda item: item[0][0])
        if angle > PICK_MAX_ANGLE:
            return None
        width = clouds.loaded.layers.image_shape[1]
        return clouds.run, layer, view, pixel % width, pixel // width
