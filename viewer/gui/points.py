"""The point clouds in the scene: which points are sent, their colours, picking.

One viser point cloud per (layer, view) under a frame per layer (``/layers/<layer>``), so
toggling a layer or a view only flips visibility. Changing the selection (filters, budget)
re-sends the points of visible layers in place (``handle.points``, ``handle.colors``); hidden
layers are marked stale and sent when first shown. Changing colours sends only colours.
Handles are kept across scenes (same node names), so scene switches never grow viser's buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from viewer.color_modes import mode_of_layer, point_colors
from viewer.point_layers import POINT_LAYERS, FlatLayer
from viewer.scene_nodes import add_point_cloud

if TYPE_CHECKING:
    import viser

    from viewer.gui.app import ViewerApp

Subsample = Literal["random", "stride"]
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
    def __init__(self, app: ViewerApp) -> None:
        self.app = app
        self.frames: dict[str, viser.FrameHandle] = {}
        self.handles: dict[tuple[str, int], viser.PointCloudHandle] = {}
        self.shown: dict[tuple[str, int], np.ndarray] = {}  # pixel indices sent, per cloud
        self.stale: set[str] = set(POINT_LAYERS)
        self.rank = np.zeros(0, np.int32)
        for key in POINT_LAYERS:
            self.frames[key] = app.server.scene.add_frame(f"/layers/{key}", show_axes=False,
                                                          visible=False)  # fmt: skip

    # --- scene ------------------------------------------------------------------------------

    def show(self) -> None:
        """A new scene: every layer is stale; visible ones are sent now."""
        loaded = self.app.loaded
        P = loaded.layers.image_shape[0] * loaded.layers.image_shape[1]
        self.rank = np.random.default_rng(0).permutation(P).astype(np.int32)
        for (layer, view), handle in self.handles.items():
            if view >= loaded.layers.num_views:  # a view the new scene does not have
                handle.visible = False
                self.shown[(layer, view)] = np.zeros(0, np.int64)
        self.refresh_selection()

    def wanted(self, layer: str) -> bool:
        return self.app.layers_panel.wanted(layer) and self.app.loaded.flat(layer) is not None

    def refresh_selection(self) -> None:
        """Filters changed: re-send visible layers, mark the hidden ones stale."""
        self.stale = set(POINT_LAYERS)
        for layer in POINT_LAYERS:
            self.set_layer_visible(layer)

    def set_layer_visible(self, layer: str) -> None:
        wanted = self.wanted(layer)
        if wanted and layer in self.stale:
            self._upload(layer)
        self.frames[layer].visible = wanted

    def _upload(self, layer: str) -> None:
        app = self.app
        loaded = app.loaded
        flat = loaded.flat(layer)
        filt = app.points_panel.point_filter()
        confidence = loaded.layers.confidence.reshape(flat.num_views, -1).numpy()
        size = app.points_panel.point_size()
        for v in range(flat.num_views):
            indices = select_points(flat, confidence, self.rank, v, filt)
            points, colors = flat.points[v, indices], self._colors(layer, v, indices)
            if indices.size == 0:  # an empty cloud makes three.js compute a NaN bounding sphere
                points = loaded.layers.context.centers[v : v + 1].float().numpy()
                colors = np.zeros((1, 3), np.uint8)
            key = (layer, v)
            handle = self.handles.get(key)
            if handle is None:
                handle = add_point_cloud(app.server, f"/layers/{layer}/view_{v}", points, colors, size)
                self.handles[key] = handle
            else:
                handle.points, handle.colors, handle.point_size = points, colors, size
            self.shown[key] = indices
            handle.visible = indices.size > 0 and app.views.visible(v)
        self.stale.discard(layer)

    def _colors(self, layer: str, view: int, indices: np.ndarray) -> np.ndarray:
        mode = mode_of_layer(layer, self.app.colours.mode())
        return point_colors(self.app.color_context(), mode, layer, view, indices)

    def refresh_colors(self, layers: tuple[str, ...] | None = None) -> None:
        """Colours changed: send new colours of visible, fresh layers only."""
        for (layer, view), indices in self.shown.items():
            if layers is not None and layer not in layers:
                continue
            if layer in self.stale or indices.size == 0 or view >= self.app.loaded.layers.num_views:
                continue
            self.handles[(layer, view)].colors = self._colors(layer, view, indices)

    def refresh_view_visibility(self) -> None:
        for (layer, view), handle in self.handles.items():
            shown = self.shown.get((layer, view))
            handle.visible = shown is not None and shown.size > 0 and self.app.views.visible(view)

    def set_point_size(self, size: float) -> None:
        for handle in self.handles.values():
            handle.point_size = size

    def points_sent(self) -> int:
        return sum(int(i.size) for i in self.shown.values())

    # --- picking ----------------------------------------------------------------------------

    def pick(self, origin, direction) -> tuple[str, int, int, int] | None:
        """``(layer, view, u, v)`` of the shown point nearest to a world ray, or None."""
        loaded = self.app.loaded
        best: tuple[float, str, int, int] | None = None
        for layer, spec in POINT_LAYERS.items():
            if not spec.pickable or not self.wanted(layer) or layer in self.stale:
                continue
            flat = loaded.flat(layer)
            for view in range(flat.num_views):
                indices = self.shown.get((layer, view))
                if indices is None or indices.size == 0 or not self.app.views.visible(view):
                    continue
                i, angle = nearest_to_ray(flat.points[view, indices], origin, direction)
                if i >= 0 and (best is None or angle < best[0]):
                    best = (angle, layer, view, int(indices[i]))
        if best is None or best[0] > PICK_MAX_ANGLE:
            return None
        width = loaded.layers.image_shape[1]
        _, layer, view, pixel = best
        return layer, view, pixel % width, pixel // width
