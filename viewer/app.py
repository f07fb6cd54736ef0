"""The one object that wires the GUI to the scene.

State per scene: the :class:`LoadedScene`, its numpy :class:`SceneArrays`, and the viser handles
of every node. Changing what is *visible* (a layer, a view, cameras, splat placement, point size)
only flips handle properties; changing what is *selected* (filters, budget) re-sends the visible
layers' points and marks hidden ones stale (they are sent when first shown); changing colours sends
only the colours. Inference runs in a worker thread; every scene update holds one lock and is
wrapped in ``server.atomic()``.

Heavy follow-up work -- the geometry analysis (once per scene and per analysis setting), target
view renders, exports, renders at a client's camera -- runs as jobs on one background job thread,
in submission order; :meth:`ViewerApp.wait_idle` waits for them (tests, scripts).
"""

from __future__ import annotations

import atexit
import io
import queue
import threading
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from viewer import colormaps
from viewer import scene as nodes
from viewer.gui import (
    Controls,
    analysis_markdown,
    build_controls,
    color_mode_key,
    inspector_markdown,
    residual_unit_key,
    splat_color_key,
    statistics_markdown,
    targets_markdown,
    view_statistics,
)
from viewer.pipeline import LoadedScene, ProgressFn

if TYPE_CHECKING:
    import viser

    from viewer.analysis import AnalysisSettings, SceneAnalysis
    from viewer.inspector import PixelReport

HISTOGRAM_BINS = 64
MAX_VECTORS = 40_000  # residual segments sent at most, split over the views
PICK_MAX_ANGLE = 0.03  # radians: a click further than this from every point picks nothing
RENDER_HEIGHT = 256  # rows of a "render at my camera" image (CPU rendering is slow)

SceneLoader = Callable[[str, ProgressFn], LoadedScene]
"""``loader(spec, progress) -> LoadedScene``; a :class:`ModelSession`'s ``load``."""


@dataclass
class _SceneState:
    loaded: LoadedScene
    arrays: nodes.SceneArrays
    ranges: nodes.ColorRanges
    root_wxyz: np.ndarray  # world_from_model as a viser frame (rotation, translation, scale)
    root_position: np.ndarray
    root_scale: float
    focal_px: float  # median focal length in pixels, for the point-size unit
    median_depth: float
    splat_offset: np.ndarray  # [3] shift for side-by-side splats (model frame)
    analysis: SceneAnalysis | None = None  # computed by a job after the scene is shown
    analysis_maps: dict[str, np.ndarray] | None = None  # mode -> [V, P] float32
    gt_error_limit: float = 1.0  # colour range of the GT relative-error maps
    targets: object | None = None  # viewer.target_render.TargetRenders, when rendered


def _close_if_alive(app_ref: weakref.ref) -> None:
    app = app_ref()
    if app is not None:
        app.close()


class ViewerApp:
    """Live viewer of one scene at a time on ``server``."""

    def __init__(
        self,
        server: viser.ViserServer,
        loader: SceneLoader | None = None,
        scene_specs: list[str] | None = None,
        point_budget: int = 600_000,
        gaussian_budget: int = 300_000,
    ) -> None:
        self.server = server
        self.loader = loader
        self.gaussian_budget = gaussian_budget
        self.controls: Controls = build_controls(server, list(scene_specs or []), point_budget)
        self._lock = threading.RLock()
        self._state: _SceneState | None = None
        self._worker: threading.Thread | None = None
        self.point_handles: dict[str, list[viser.PointCloudHandle]] = {}
        self.layer_frames: dict[str, viser.FrameHandle] = {}
        self.frustums: dict[str, list[viser.CameraFrustumHandle]] = {"context": [], "target": []}
        self.splats: viser.GaussianSplatHandle | None = None
        self.view_toggles: list[viser.GuiCheckboxHandle] = []
        self._indices: dict[tuple[str, int], np.ndarray] = {}
        self._stale: set[str] = set(nodes.POINT_LAYERS)
        self._roots: list[viser.FrameHandle] = []
        self.scenes_shown = 0  # incremented when a scene is completely shown
        self.vector_handles: list[viser.LineSegmentsHandle] | None = None  # None: stale
        self.histogram_handles: list[viser.GuiUplotHandle] = []
        self.marker: viser.PointCloudHandle | None = None
        self.inspected: PixelReport | None = None
        self.analysis_runs = 0  # analyses computed (once per scene and per setting change)
        self.last_export: tuple[str, bytes] | None = None
        self.last_camera_render: np.ndarray | None = None  # [H, W, 3] uint8
        self._splat_key: tuple | None = None
        self._jobs: queue.Queue = queue.Queue()
        self._load_guard = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition()
        self._job_thread = threading.Thread(target=self._job_loop, name="dsviewer-jobs", daemon=True)
        self._job_thread.start()
        # Let a running job finish before the interpreter tears torch down (a daemon thread
        # inside torch at exit aborts the process).
        atexit.register(_close_if_alive, weakref.ref(self))
        self._wire_callbacks()
        server.scene.on_click()(self._on_scene_click)
        server.on_client_connect(self._on_connect)
        if loader is None:
            self.controls.load.disabled = True

    # --- public -------------------------------------------------------------------------------

    @property
    def state(self) -> _SceneState | None:
        return self._state

    def load_async(self, spec: str) -> threading.Thread:
        """Load ``spec`` in a worker thread (GUI stays live); returns the thread."""
        if self.loader is None:
            raise RuntimeError("this viewer was started without a model; it cannot load scenes")
        with self._load_guard:  # GUI callbacks run in a thread pool: one load at a time
            if self._worker is not None and self._worker.is_alive():
                self.controls.status.content = "**A scene is still loading; wait until it shows.**"
                return self._worker
            self.controls.load.disabled = True
            thread = threading.Thread(
                target=self._load, args=(spec,), name="dsviewer-load", daemon=True
            )
            self._worker = thread
            thread.start()
        return thread

    def show(self, loaded: LoadedScene) -> None:
        """Replace the displayed scene with ``loaded`` (drops every node of the previous one)."""
        with self._lock:
            self._drop_queued_jobs()  # they belong to the scene being replaced
            self._clear()
            self._state = self._make_state(loaded)
            with self.server.atomic():
                self._add_roots()
                self._add_cameras()
                self._add_view_toggles()
                self._stale = set(nodes.POINT_LAYERS)
                self._disable_missing_layers()
                self._refresh_selection()
                self._refresh_splats()
                self._refresh_vectors()
                self._add_histograms()
                self._refresh_legend_and_stats()
                self.server.scene.set_up_direction(
                    tuple(self._world_rotation() @ nodes.up_direction(self._extrinsics()))
                )
            self.controls.status.content = self._status_text()
            self.controls.targets_text.content = ""
            blank = np.full((8, 8, 3), 255, np.uint8)
            self.controls.targets_image.image = self.controls.camera_image.image = blank
            self.controls.inspector_text.content = "Click a point in the scene, or enter a pixel."
            self.scenes_shown += 1
            self.request_analysis()
            self._submit("Target views", self._render_targets_job(self._state))
        for client in self.server.get_clients().values():
            self._reset_camera(client)

    # --- loading ------------------------------------------------------------------------------

    def report_progress(self, stage: str, fraction: float) -> None:
        self.controls.status.content = f"**{stage}...**"
        self.controls.progress.visible = fraction < 1.0
        self.controls.progress.value = 100.0 * fraction

    def _load(self, spec: str) -> None:
        assert self.loader is not None
        self.controls.load.disabled = True
        try:
            loaded = self.loader(spec, self.report_progress)
            self.show(loaded)
        except (ValueError, FileNotFoundError, OSError) as error:  # user input: say what
            self.controls.status.content = f"**Could not load `{spec}`:** {error}"
        except Exception:  # noqa: BLE001 -- a worker must not die silently; show the cause
            self.controls.status.content = "**Internal error:**\n```\n" + traceback.format_exc(
                limit=4
            ) + "\n```"
        finally:
            self.controls.progress.visible = False
            self.controls.load.disabled = False

    # --- scene state --------------------------------------------------------------------------

    def _make_state(self, loaded: LoadedScene) -> _SceneState:
        from src.geometry.transforms import matrix_to_quaternion_wxyz

        context = loaded.scene.context
        extrinsics = context.extrinsics.double().numpy()
        arrays = nodes.arrays_from_layers(loaded.layers, extrinsics)
        unit = residual_unit_key(self.controls.residual_unit.value)
        ranges = nodes.color_ranges(arrays, unit, self.controls.residual_percentile.value)
        sim = loaded.scene.world_from_model
        scale, R, t = sim.scale, sim.rotation, sim.translation
        wxyz = matrix_to_quaternion_wxyz(R).numpy()
        fy_px = context.intrinsics[:, 1, 1].double().numpy() * context.image_shape[0]
        depth = arrays.depth["final"][arrays.valid["final"]]
        return _SceneState(
            loaded=loaded,
            arrays=arrays,
            ranges=ranges,
            root_wxyz=wxyz,
            root_position=t.numpy(),
            root_scale=scale,
            focal_px=float(np.median(fy_px)),
            median_depth=float(np.median(depth)) if depth.size else 1.0,
            splat_offset=nodes.side_by_side_offset(arrays, extrinsics),
        )

    def _extrinsics(self) -> np.ndarray:
        assert self._state is not None
        return self._state.loaded.scene.context.extrinsics.double().numpy()

    def _world_rotation(self) -> np.ndarray:
        assert self._state is not None
        M = self._state.loaded.scene.world_from_model.matrix.numpy()
        return M[:3, :3] / self._state.root_scale

    def _clear(self) -> None:
        """Remove every node and GUI element of the current scene and drop its data."""
        self.last_export = self.last_camera_render = None  # tens of MB for an export zip
        handles: list = [h for hs in self.point_handles.values() for h in hs]
        handles += [h for hs in self.frustums.values() for h in hs]
        handles += list(self.layer_frames.values()) + self.view_toggles + self._roots
        if self.splats is not None:
            handles.append(self.splats)
        handles += (self.vector_handles or []) + self.histogram_handles
        if self.marker is not None:
            handles.append(self.marker)
        for handle in handles:
            handle.remove()
        self.vector_handles = None
        self.histogram_handles = []
        self.marker = None
        self.inspected = None
        self._splat_key = None
        self.point_handles = {}
        self.layer_frames = {}
        self.frustums = {"context": [], "target": []}
        self.splats = None
        self.view_toggles = []
        self._roots = []
        self._indices = {}
        self._state = None

    def _add_roots(self) -> None:
        """Top-level frames carrying world_from_model, so every node shows in the user's units."""
        s = self._state
        assert s is not None
        for name in ("/context", "/target", "/layers"):
            self._roots.append(
                self.server.scene.add_frame(
                    name, show_axes=False, wxyz=s.root_wxyz, position=s.root_position,
                    scale=s.root_scale,
                )
            )
        for layer in nodes.POINT_LAYERS:
            self.layer_frames[layer] = self.server.scene.add_frame(
                f"/layers/{layer}", show_axes=False, visible=self._layer_wanted(layer)
            )
        self.layer_frames["residual_vectors"] = self.server.scene.add_frame(
            "/layers/residual_vectors", show_axes=False,
            visible=bool(self.controls.residual_vectors.value),
        )  # fmt: skip

    def _add_cameras(self) -> None:
        s = self._state
        assert s is not None
        scale = nodes.frustum_scale(s.arrays)
        groups = [("context", s.loaded.scene.context, nodes.CONTEXT_COLOR)]
        if s.loaded.scene.target is not None:
            groups.append(("target", s.loaded.scene.target, nodes.TARGET_COLOR))
        for group, views, color in groups:
            handles = nodes.add_frustums(self.server, f"/{group}", views, color, scale)
            toggle = self.controls.context_cameras if group == "context" else self.controls.target_cameras
            for handle in handles:
                handle.visible = toggle.value
                handle.on_click(self._on_frustum_click)
            self.frustums[group] = handles

    def _add_view_toggles(self) -> None:
        s = self._state
        assert s is not None
        with self.controls.views_folder:
            for v in range(s.arrays.num_views):
                frame = int(s.loaded.scene.context.index[v])
                toggle = self.server.gui.add_checkbox(f"View {v} (frame {frame})", initial_value=True)
                toggle.on_update(lambda _event: self._on_view_toggle())
                self.view_toggles.append(toggle)

    def _disable_missing_layers(self) -> None:
        """Grey out toggles of layers this scene does not have (no GT, a depth-only model)."""
        s = self._state
        assert s is not None
        c = self.controls
        c.layer_toggles["gt"].disabled = "gt" not in s.arrays.points
        c.layer_toggles["centers"].disabled = "centers" not in s.arrays.points
        has_gaussians = s.loaded.layers.gaussians is not None
        c.splats.disabled = not has_gaussians
        c.splat_placement.disabled = not has_gaussians
        c.splat_color.disabled = not has_gaussians
        c.min_opacity.disabled = not has_gaussians
        c.render_camera.disabled = not has_gaussians
        c.target_cameras.disabled = s.loaded.scene.target is None

    # --- what is shown ------------------------------------------------------------------------

    def _layer_wanted(self, layer: str) -> bool:
        if layer == "gt" and (self._state is None or "gt" not in self._state.arrays.points):
            return False
        if layer == "centers" and (self._state is None or "centers" not in self._state.arrays.points):
            return False
        return bool(self.controls.layer_toggles[layer].value)

    def _point_filter(self) -> nodes.PointFilter:
        s = self._state
        assert s is not None
        c = self.controls
        low_pct, high_pct = c.depth_range.value
        depth = s.arrays.depth["final"][s.arrays.valid["final"]]
        depth = depth[:: max(1, depth.size // 1_000_000)]
        low, high = np.percentile(depth, [low_pct, high_pct]) if depth.size else (0.0, np.inf)
        if high_pct >= 100.0:
            high = np.inf  # keep everything beyond the last percentile, incl. other layers
        if low_pct <= 0.0:
            low = -np.inf
        return nodes.PointFilter(
            min_confidence=nodes.confidence_threshold(s.arrays, c.min_confidence.value),
            depth_low=float(low),
            depth_high=float(high),
            budget_per_view=int(c.budget.value) // max(1, s.arrays.num_views),
            subsample=c.subsample.value,
            pixel_mask=self._analysis_mask(),
        )

    def _analysis_mask(self) -> np.ndarray | None:
        """``[V, P]`` bool of the analysis filters; None while off or not computed yet."""
        s = self._state
        assert s is not None
        c = self.controls
        if s.analysis_maps is None or not (c.inconsistent_only.value or c.hide_flying.value):
            return None
        mask = np.ones(s.arrays.valid["final"].shape, dtype=bool)
        if c.inconsistent_only.value:
            mask &= s.analysis_maps["inconsistent_final"] > 0.5
        if c.hide_flying.value:
            mask &= ~(s.analysis_maps["flying_pixel"] > 0.5)
        return mask

    def _colors(self, layer: str, view: int, indices: np.ndarray) -> np.ndarray:
        """Colours ``[n, 3]`` of points ``indices`` of ``view`` in the current colour mode."""
        s = self._state
        assert s is not None
        mode = self._color_mode()
        if mode in nodes.ANALYSIS_COLOR_MODES and layer != "residual":
            if s.analysis_maps is None or mode not in s.analysis_maps:  # computing, or no GT
                return np.broadcast_to(np.uint8(nodes.NO_DATA_COLOR), (len(indices), 3)).copy()
            return nodes.analysis_colors(
                s.analysis_maps[mode][view, indices], mode, self._threshold(), s.gt_error_limit
            )
        if mode in nodes.ANALYSIS_COLOR_MODES:
            mode = "residual"
        return nodes.point_colors(
            s.arrays, layer, mode, view, indices, s.ranges, self._residual_unit()
        )

    def _threshold(self) -> float:
        s = self._state
        if s is not None and s.analysis is not None:
            return float(s.analysis.settings.consistency_threshold)  # what the colours show
        return float(self.controls.threshold.value)

    def _point_size(self) -> float:
        """Slider value x the footprint of one pixel at the median depth (scene independent)."""
        s = self._state
        assert s is not None
        return float(self.controls.point_size.value) * s.median_depth / max(s.focal_px, 1e-9)

    def _color_mode(self) -> str:
        return color_mode_key(self.controls.color_mode.value)

    def _residual_unit(self) -> str:
        return residual_unit_key(self.controls.residual_unit.value)

    def _upload_layer(self, layer: str) -> None:
        """(Re)send one layer's selected points, one cloud per view."""
        s = self._state
        assert s is not None
        for handle in self.point_handles.pop(layer, []):
            handle.remove()
        filt = self._point_filter()
        handles = []
        for v in range(s.arrays.num_views):
            idx = nodes.select_points(s.arrays, layer, v, filt)
            self._indices[(layer, v)] = idx
            colors = self._colors(layer, v, idx)
            handles.append(
                nodes.add_point_layer(
                    self.server, f"/layers/{layer}/view_{v}", s.arrays.points[layer][v, idx],
                    colors, self._point_size(), visible=self._view_visible(v),
                )
            )
        self.point_handles[layer] = handles
        self._stale.discard(layer)

    def _view_visible(self, view: int) -> bool:
        return view >= len(self.view_toggles) or bool(self.view_toggles[view].value)

    def _refresh_selection(self) -> None:
        """Filters changed: resend visible layers, mark the hidden ones stale."""
        self._stale = set(nodes.POINT_LAYERS)
        for layer in nodes.POINT_LAYERS:
            if self._layer_wanted(layer):
                self._upload_layer(layer)
            else:
                for handle in self.point_handles.pop(layer, []):
                    handle.remove()

    def _refresh_colors(self, layers: tuple[str, ...]) -> None:
        """Colours changed: send new colours of the given (visible, fresh) layers only."""
        s = self._state
        assert s is not None
        for layer in layers:
            if layer in self._stale or layer not in self.point_handles:
                continue
            for v, handle in enumerate(self.point_handles[layer]):
                handle.colors = self._colors(layer, v, self._indices[(layer, v)])

    def _refresh_splats(self) -> None:
        s = self._state
        assert s is not None
        wanted = bool(self.controls.splats.value) and s.loaded.layers.gaussians is not None
        if not wanted:
            if self.splats is not None:
                self.splats.visible = False
            return
        c = self.controls
        key = (splat_color_key(c.splat_color.value), float(c.min_opacity.value))
        if self.splats is None or self._splat_key != key:  # colours / selection: re-send
            from viewer.analysis import gaussian_colors

            if self.splats is not None:
                self.splats.remove()
            mode, min_opacity = key
            g = s.loaded.layers.gaussians
            indices = nodes.select_gaussians(s.loaded.layers, self.gaussian_budget, min_opacity)
            rgbs = None if mode == "sh" else gaussian_colors(g, mode)  # [N, 3]
            self.splats = nodes.add_splats(
                self.server, "/layers/splats", s.loaded.layers, indices, self._splat_offset(),
                rgbs=rgbs,
            )  # fmt: skip
            self._splat_key = key
        self.splats.visible = True
        self.splats.position = tuple(self._splat_offset())

    def _splat_offset(self) -> np.ndarray:
        s = self._state
        assert s is not None
        side = self.controls.splat_placement.value == "side by side"
        return s.splat_offset if side else np.zeros(3)

    def _refresh_legend_and_stats(self) -> None:
        s = self._state
        assert s is not None
        mode, unit = self._color_mode(), self._residual_unit()
        k = s.root_scale  # legend and statistics in the user's units (world_from_model)
        if mode == "depth":
            image = colormaps.colorbar_image(
                "sequential", k * s.ranges.depth_low, k * s.ranges.depth_high, "depth"
            )
        elif mode == "confidence":
            image = colormaps.colorbar_image("sequential", 0.0, 1.0, "match probability")
        elif mode == "gt_error":
            lim = k * s.ranges.gt_error_limit
            image = colormaps.colorbar_image("diverging", -lim, lim, "depth - GT depth")
        elif mode in nodes.ANALYSIS_COLOR_MODES:
            image = self._analysis_legend(mode)
        else:  # rgb and residual: the residual layer's legend
            if unit == "inverse":
                # The sign means opposite things in the two units; the label says which.
                lim = s.ranges.residual_limit / k
                label = "inverse-depth residual (+ red: pulled nearer)"
            else:
                lim, label = k * s.ranges.residual_limit, "final - coarse depth (+ red: farther)"
            image = colormaps.colorbar_image("diverging", -lim, lim, label)
        self.controls.colorbar.image = image
        self.controls.statistics.content = statistics_markdown(
            view_statistics(s.arrays, unit, k), unit
        )
        filt = self._point_filter()
        low = "0" if not np.isfinite(filt.depth_low) else f"{k * filt.depth_low:.3g}"
        high = "inf" if not np.isfinite(filt.depth_high) else f"{k * filt.depth_high:.3g}"
        self.controls.depth_readout.content = (
            f"Showing depth {low} to {high}, match probability >= {filt.min_confidence:.3f}"
        )

    def _analysis_legend(self, mode: str) -> np.ndarray:
        s = self._state
        assert s is not None
        kind = nodes.analysis_kind(mode)
        if kind == "sequential":
            high = nodes.CONSISTENCY_RANGE * self._threshold()
            label = "multi-view |rel. error| (grey: unchecked)"
            return colormaps.colorbar_image("sequential", 0.0, high, label)
        if mode == "clamp_final":
            label = "-1 at near clamp, +1 at far clamp"
            return colormaps.colorbar_image("diverging", -1.0, 1.0, label)
        if kind == "diverging":
            lim = s.gt_error_limit
            label = "(depth - GT) / GT (grey: no GT)"
            return colormaps.colorbar_image("diverging", -lim, lim, label)
        label = {"inconsistent_final": "inconsistent", "depth_edge": "depth edge",
                 "flying_pixel": "flying pixel"}.get(mode, mode)  # fmt: skip
        return colormaps.two_color_legend(
            (nodes.FLAG_OFF_COLOR, nodes.FLAG_ON_COLOR), ("not flagged", label)
        )

    # --- background jobs ----------------------------------------------------------------------

    def _submit(self, name: str, job: Callable[[], None]) -> None:
        with self._idle:
            self._pending += 1
        self._jobs.put((name, job))

    def _drop_queued_jobs(self) -> None:
        """Forget jobs not yet started: each holds its scene's state alive until it runs."""
        dropped = 0
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
            dropped += 1
        if dropped:
            with self._idle:
                self._pending -= dropped
                self._idle.notify_all()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the background job thread after the job it is running (queued ones are dropped)."""
        if not self._job_thread.is_alive():
            return
        self._drop_queued_jobs()
        self._jobs.put(None)
        self._job_thread.join(timeout)

    def _job_loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:  # close()
                return
            name, job = item
            try:
                job()
            except Exception as error:  # noqa: BLE001 -- a job must not kill the thread
                traceback.print_exc()  # the whole story on the console; one line in the GUI
                c = self.controls
                panel = {"Export": c.export_status, "Target views": c.targets_text,
                         "Render": c.targets_text}.get(name, c.analysis_status)  # fmt: skip
                panel.content = f"**{name} failed:** {type(error).__name__}: {error}"
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted background job has finished; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # --- analysis -----------------------------------------------------------------------------

    def _analysis_settings(self) -> AnalysisSettings:
        from viewer.analysis import AnalysisSettings

        return AnalysisSettings(
            consistency_threshold=float(self.controls.threshold.value),
            consistency_occlusions=str(self.controls.occlusions.value),  # type: ignore[arg-type]
        )

    def request_analysis(self) -> None:
        """Queue the analysis of the shown scene, unless it already has these settings."""
        s = self._state
        if s is None:
            return
        settings = self._analysis_settings()
        if s.analysis is not None and s.analysis.settings == settings:
            return

        def job() -> None:
            from viewer.analysis import analyze

            if self._state is not s or self._analysis_settings() != settings:
                return  # superseded by a newer scene or setting
            self.controls.analysis_status.content = "*Analysing geometry...*"
            context = s.loaded.scene.context
            analysis = analyze(
                s.loaded.layers, context.intrinsics.float(), context.extrinsics.float(), settings
            )
            V, P = s.arrays.valid["final"].shape
            maps = {
                key: value.detach().float().numpy().reshape(V, P)
                for key, value in analysis.color_modes().items()
            }
            percentile = float(self.controls.residual_percentile.value)
            with self._lock:
                if self._state is not s:
                    return
                s.analysis, s.analysis_maps = analysis, maps
                s.gt_error_limit = _gt_error_limit(maps, percentile)
                self.analysis_runs += 1
                with self.server.atomic():
                    if self._analysis_mask() is not None:  # the filters select by it
                        self._refresh_selection()
                    elif self._color_mode() in nodes.ANALYSIS_COLOR_MODES:
                        self._refresh_colors(nodes.POINT_LAYERS)
                    self._refresh_legend_and_stats()
                self.controls.analysis_status.content = analysis_markdown(analysis.summary())
                if self.inspected is not None:
                    self._show_report(self.inspected.view, self.inspected.u, self.inspected.v)

        self._submit("Analysis", job)

    def _on_analysis_filter(self) -> None:
        self._refresh_selection()
        self._refresh_legend_and_stats()

    # --- residual vectors ---------------------------------------------------------------------

    def _refresh_vectors(self) -> None:
        """Show / hide the coarse -> final segments; (re)built when first shown or restrided."""
        from viewer.analysis import residual_segments

        s = self._state
        assert s is not None
        wanted = bool(self.controls.residual_vectors.value)
        self.layer_frames["residual_vectors"].visible = wanted
        if not wanted or self.vector_handles is not None:
            return
        stride = int(self.controls.vector_stride.value)
        per_view = MAX_VECTORS // max(1, s.arrays.num_views)
        handles = []
        for v in range(s.arrays.num_views):
            segments = residual_segments(
                s.loaded.layers, stride=stride, max_segments=per_view, views=[v]
            )
            handles.append(
                self.server.scene.add_line_segments(
                    f"/layers/residual_vectors/view_{v}", points=segments.points,
                    colors=segments.colors, thickness=1.5, thickness_units="screen",
                    visible=self._view_visible(v),
                )
            )  # fmt: skip
        self.vector_handles = handles

    def _on_vector_stride(self) -> None:
        for handle in self.vector_handles or []:
            handle.remove()
        self.vector_handles = None
        self._refresh_vectors()

    # --- histograms ---------------------------------------------------------------------------

    def _add_histograms(self) -> None:
        s = self._state
        assert s is not None
        with self.controls.histograms_folder:
            for v in range(s.arrays.num_views):
                x, counts = self._histogram(v)
                self.histogram_handles.append(
                    self.server.gui.add_uplot(
                        (x, counts),
                        ({"label": "residual"}, {"label": f"view {v} pixels", "stroke": "#b2182b",
                                                 "fill": "rgba(178, 24, 43, 0.25)", "width": 1.5}),
                        title=f"View {v}: {self._histogram_title()}", aspect=2.0,
                        scales={"x": {"time": False}}, axes=({}, {"label": "pixels"}),
                    )
                )  # fmt: skip

    def _histogram_title(self) -> str:
        unit = self._residual_unit()
        return "mono residual (inverse depth)" if unit == "inverse" else "final - coarse depth"

    def _histogram(self, view: int) -> tuple[np.ndarray, np.ndarray]:
        """``(bin centres [B], counts [B])`` of a view's residual, in the user's units.

        One symmetric range for every view (the colour range), so the views compare.
        """
        import torch

        from viewer.analysis import histogram

        s = self._state
        assert s is not None
        unit = self._residual_unit()
        factor = s.root_scale if unit == "metric" else 1.0 / s.root_scale
        values = s.arrays.residual[unit][view][s.arrays.valid["final"][view]]
        limit = s.ranges.residual_limit
        edges, counts = histogram(torch.from_numpy(values), HISTOGRAM_BINS, (-limit, limit))
        centres = 0.5 * (edges[1:] + edges[:-1]) * factor
        return centres.astype(np.float64), counts.astype(np.float64)

    def _refresh_histograms(self) -> None:
        for v, handle in enumerate(self.histogram_handles):
            handle.data = self._histogram(v)
            handle.title = f"View {v}: {self._histogram_title()}"

    # --- inspector ----------------------------------------------------------------------------

    def inspect(self, view: int, u: int, v: int) -> PixelReport:
        """Fill the Inspector with pixel ``(u, v)`` of context view ``view``; returns the report.

        Raises ``PixelOutOfRangeError`` (a ValueError) outside the views.
        """
        with self._lock:
            if self._state is None:
                raise RuntimeError("no scene is shown yet")
            with self.server.atomic():
                return self._show_report(view, u, v)

    def _show_report(self, view: int, u: int, v: int) -> PixelReport:
        from viewer.inspector import inspect_pixel, probability_series

        s = self._state
        assert s is not None
        report = inspect_pixel(s.loaded.layers, s.loaded.prediction, view, u, v, s.analysis)
        k = s.root_scale
        c = self.controls
        c.inspector_text.content = inspector_markdown(report.as_dict(), k)
        series = probability_series(report)
        c.inspector_plot.data = (series.depth.astype(np.float64) * k,
                                 series.probability.astype(np.float64))  # fmt: skip
        c.inspect_view.value, c.inspect_u.value, c.inspect_v.value = view, u, v
        points = np.array([report.coarse_point, report.final_point], dtype=np.float32)
        colors = np.array([(33, 102, 172), (230, 120, 20)], dtype=np.uint8)  # coarse, final
        if self.marker is None:
            self.marker = nodes.add_point_layer(
                self.server, "/layers/inspected", points, colors, 6.0 * self._point_size()
            )
        else:
            self.marker.points, self.marker.colors = points, colors
        self.inspected = report
        return report

    def _on_inspect_button(self) -> None:
        c = self.controls
        try:
            self.inspect(int(c.inspect_view.value), int(c.inspect_u.value), int(c.inspect_v.value))
        except (ValueError, RuntimeError) as error:  # bad pixel, or no scene shown yet
            c.inspector_text.content = f"**{error}**"

    def pick(self, ray_origin, ray_direction) -> tuple[int, int, int] | None:
        """``(view, u, v)`` of the shown point nearest to a world-space ray, or None."""
        s = self._state
        if s is None:
            return None
        R = self._world_rotation()
        origin = R.T @ (np.asarray(ray_origin, np.float64) - s.root_position) / s.root_scale
        direction = R.T @ np.asarray(ray_direction, np.float64)  # model frame
        best: tuple[float, int, int] | None = None
        layers = [n for n in ("final", "coarse", "residual", "gt") if self._layer_wanted(n)]
        for layer in layers or ["final"]:
            for v in range(s.arrays.num_views):
                if not self._view_visible(v):
                    continue
                idx = self._indices.get((layer, v))
                if idx is None:
                    idx = np.flatnonzero(s.arrays.valid[layer][v])
                if idx.size == 0:
                    continue
                i, angle = nodes.nearest_to_ray(s.arrays.points[layer][v, idx], origin, direction)
                if i >= 0 and (best is None or angle < best[0]):
                    best = (angle, v, int(idx[i]))
        if best is None or best[0] > PICK_MAX_ANGLE:
            return None
        width = s.arrays.image_shape[1]
        return best[1], best[2] % width, best[2] // width

    def _on_scene_click(self, event) -> None:
        with self._lock:
            picked = self.pick(event.ray_origin, event.ray_direction)
            if picked is None:
                return
            with self.server.atomic():
                self._show_report(*picked)

    # --- export -------------------------------------------------------------------------------

    def request_export(self, client=None) -> None:
        """Queue an export zip of the shown scene; sent to ``client`` (kept in last_export)."""
        s = self._state
        if s is None:
            return
        c = self.controls

        def job() -> None:
            from viewer.export import export_archive

            def progress(stage: str, fraction: float) -> None:
                c.export_status.content = f"*{stage}...* ({100 * fraction:.0f}%)"

            c.export.disabled = True
            try:
                name, data = export_archive(
                    s.loaded.scene, s.loaded.prediction, s.loaded.layers, progress=progress
                )
            finally:
                c.export.disabled = False
            self.last_export = (name, data)
            c.export_status.content = f"`{name}`: {len(data) / 1e6:.1f} MB"
            if client is not None:
                client.send_file_download(name, data, save_immediately=True)

        self._submit("Export", job)

    # --- target views -------------------------------------------------------------------------

    def _render_targets_job(self, s: _SceneState | None) -> Callable[[], None]:
        def job() -> None:
            if s is None or self._state is not s:
                return
            c = self.controls
            if s.loaded.scene.target is None or s.loaded.layers.gaussians is None:
                c.targets_text.content = "No target views or no Gaussians in this scene."
                return
            try:
                from viewer import target_render
            except ImportError:
                c.targets_text.content = "Target rendering is not available in this build."
                return
            c.targets_text.content = "*Rendering the target views (CPU: a few seconds)...*"
            renders = target_render.render_target_views(s.loaded.scene, s.loaded.prediction)
            panels = None if renders is None else _decode_png(target_render.target_panels_png(renders))
            with self._lock:  # a scene switch during the render must not get this scene's panels
                if self._state is not s:
                    return
                if renders is None:
                    c.targets_text.content = "No renderer available."
                    return
                s.targets = renders
                c.targets_text.content = targets_markdown(
                    [int(i) for i in np.asarray(renders.index)],
                    [float(p) for p in np.asarray(renders.psnr)], float(renders.mean_psnr),
                )  # fmt: skip
                c.targets_image.image = panels

        return job

    def request_camera_render(self, client) -> None:
        """Queue a render of the Gaussians at ``client``'s current camera into the GUI."""
        s = self._state
        if s is None or s.loaded.layers.gaussians is None:
            return
        camera = client.camera
        pose = (np.asarray(camera.wxyz, np.float64), np.asarray(camera.position, np.float64),
                float(camera.fov), float(camera.aspect))  # fmt: skip
        c = self.controls

        def job() -> None:
            from viewer import target_render

            if self._state is not s:
                return
            c.render_camera.disabled = True
            c.render_camera.label = "Rendering..."
            try:
                image = self._render_at(s, *pose, target_render)
            finally:
                c.render_camera.disabled = False
                c.render_camera.label = "Render at my camera"
            with self._lock:  # drop a render of a scene that was replaced meanwhile
                if self._state is not s:
                    return
                self.last_camera_render = image
                c.camera_image.image = image

        self._submit("Render", job)

    def _render_at(self, s: _SceneState, wxyz, position, fov, aspect, target_render) -> np.ndarray:
        """Render the predicted Gaussians (on the model's device) from a viser camera."""
        image = target_render.render_viewer_camera(
            s.loaded.scene, s.loaded.prediction, wxyz, position, fov, aspect, RENDER_HEIGHT
        )
        assert image is not None  # only called when the scene has Gaussians
        return image

    def _status_text(self) -> str:
        s = self._state
        assert s is not None
        scene = s.loaded.scene
        V = scene.context.num_views
        H, W = scene.context.image_shape
        times = ", ".join(f"{k} {v:.2f}s" for k, v in s.loaded.seconds.items())
        shown = sum(len(i) for i in self._indices.values())
        return f"**{scene.key}**: {V} context views at {H}x{W}; {shown:,} points sent. {times}"

    # --- callbacks ----------------------------------------------------------------------------

    def _wire_callbacks(self) -> None:
        c = self.controls
        for layer, toggle in c.layer_toggles.items():
            toggle.on_update(lambda _e, layer=layer: self._on_layer_toggle(layer))
        c.splats.on_update(lambda _e: self._guarded(self._refresh_splats))
        c.splat_placement.on_update(lambda _e: self._guarded(self._refresh_splats))
        c.context_cameras.on_update(lambda _e: self._guarded(self._on_camera_toggle))
        c.target_cameras.on_update(lambda _e: self._guarded(self._on_camera_toggle))
        c.point_size.on_update(lambda _e: self._guarded(self._on_point_size))
        for handle in (c.budget, c.subsample, c.min_confidence, c.depth_range):
            handle.on_update(lambda _e: self._guarded(self._on_filter))
        c.color_mode.on_update(lambda _e: self._guarded(self._on_color_mode))
        c.residual_unit.on_update(lambda _e: self._guarded(self._on_residual_range))
        c.residual_percentile.on_update(lambda _e: self._guarded(self._on_residual_range))
        c.load.on_click(lambda _e: self.load_async(str(c.scene_spec.value)))
        c.residual_vectors.on_update(lambda _e: self._guarded(self._refresh_vectors))
        c.vector_stride.on_update(lambda _e: self._guarded(self._on_vector_stride))
        c.splat_color.on_update(lambda _e: self._guarded(self._refresh_splats))
        c.min_opacity.on_update(lambda _e: self._guarded(self._refresh_splats))
        c.inconsistent_only.on_update(lambda _e: self._guarded(self._on_analysis_filter))
        c.hide_flying.on_update(lambda _e: self._guarded(self._on_analysis_filter))
        c.threshold.on_update(lambda _e: self.request_analysis())
        c.occlusions.on_update(lambda _e: self.request_analysis())
        c.inspect.on_click(lambda _e: self._on_inspect_button())
        c.export.on_click(lambda e: self.request_export(e.client))
        c.render_camera.on_click(
            lambda e: self.request_camera_render(e.client) if e.client else None
        )
        c.reset_view.on_click(lambda e: self._reset_camera(e.client) if e.client else None)

    def _guarded(self, update: Callable[[], None]) -> None:
        with self._lock:
            if self._state is None:
                return
            with self.server.atomic():
                update()

    def _on_layer_toggle(self, layer: str) -> None:
        def update() -> None:
            wanted = self._layer_wanted(layer)
            if wanted and layer in self._stale:
                self._upload_layer(layer)
            self.layer_frames[layer].visible = wanted

        self._guarded(update)

    def _on_view_toggle(self) -> None:
        def update() -> None:
            for handles in [*self.point_handles.values(), self.vector_handles or []]:
                for v, handle in enumerate(handles):
                    handle.visible = self._view_visible(v)

        self._guarded(update)

    def _on_camera_toggle(self) -> None:
        for group, toggle in (("context", self.controls.context_cameras),
                              ("target", self.controls.target_cameras)):  # fmt: skip
            for handle in self.frustums[group]:
                handle.visible = bool(toggle.value)

    def _on_point_size(self) -> None:
        size = self._point_size()
        for handles in self.point_handles.values():
            for handle in handles:
                handle.point_size = size

    def _on_filter(self) -> None:
        self._refresh_selection()
        self._refresh_legend_and_stats()

    def _on_color_mode(self) -> None:
        self._refresh_colors(("coarse", "final", "gt", "centers"))
        self._refresh_legend_and_stats()

    def _on_residual_range(self) -> None:
        s = self._state
        assert s is not None
        s.ranges = nodes.color_ranges(
            s.arrays, self._residual_unit(), self.controls.residual_percentile.value
        )
        if s.analysis_maps is not None:
            s.gt_error_limit = _gt_error_limit(
                s.analysis_maps, float(self.controls.residual_percentile.value)
            )
        self._refresh_colors(nodes.POINT_LAYERS)
        self._refresh_histograms()
        self._refresh_legend_and_stats()

    def _on_frustum_click(self, event) -> None:
        """Move the clicking client's camera onto the clicked view's camera."""
        handle = event.target
        with self._lock:
            if self._state is None or event.client is None:
                return
            wxyz, position = self._world_pose(handle.wxyz, handle.position)
        self._set_client_camera(event.client, wxyz, position)

    def _world_pose(self, wxyz: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A node pose in the model frame -> the world pose under the root frames."""
        import torch

        from src.geometry.transforms import matrix_to_quaternion_wxyz, quaternion_wxyz_to_matrix

        s = self._state
        assert s is not None
        R_root = self._world_rotation()
        R_node = quaternion_wxyz_to_matrix(torch.as_tensor(np.asarray(wxyz, np.float64))).numpy()
        world_wxyz = matrix_to_quaternion_wxyz(torch.as_tensor(R_root @ R_node)).numpy()
        world_position = s.root_scale * (R_root @ np.asarray(position)) + s.root_position
        return world_wxyz, world_position

    def _set_client_camera(self, client, wxyz: np.ndarray, position: np.ndarray) -> None:
        s = self._state
        if s is None:
            return
        import torch

        from src.geometry.transforms import quaternion_wxyz_to_matrix

        forward = quaternion_wxyz_to_matrix(torch.as_tensor(wxyz))[:, 2].numpy()
        with client.atomic():
            client.camera.wxyz = wxyz
            client.camera.position = position
            client.camera.look_at = position + forward * s.median_depth * s.root_scale

    def _reset_camera(self, client) -> None:
        """Put ``client``'s camera on context view 0, pulled back to see all cameras."""
        with self._lock:
            if self._state is None:
                return
            wxyz, position = nodes.camera_pose(self._extrinsics()[0])
            forward = self._extrinsics()[0][:3, 2]
            position = position - forward * 0.5 * self._state.median_depth
            wxyz, position = self._world_pose(wxyz, position)
        self._set_client_camera(client, wxyz, position)

    def _on_connect(self, client) -> None:
        self._reset_camera(client)



def _gt_error_limit(maps: dict[str, np.ndarray], percentile: float) -> float:
    """One colour range for the coarse and final GT relative errors (so they compare)."""
    gt_maps = [maps[k] for k in ("gt_error_final", "gt_error_coarse") if k in maps]
    return max([colormaps.robust_limit(m, percentile) for m in gt_maps], default=1.0)


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
