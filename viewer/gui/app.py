"""The one object that wires the GUI folders to the shown scene.

It owns the shown :class:`~viewer.pipeline.LoadedScene`, one lock, the job queue and the folders
(one module each). Folders call back into it when a setting changes; it decides what must be
refreshed: visibility flips handles, a new selection re-sends points in place, new colours send
colours only. Inference runs in a worker thread; analysis, target renders, exports and camera
renders run as jobs on one background thread (:mod:`viewer.jobs`); every scene update holds the
lock inside ``server.atomic()``.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from viewer.color_modes import COLOR_MODES, ColorContext, color_mode
from viewer.escape import escape_markdown
from viewer.gui.analysis_panel import AnalysisPanel
from viewer.gui.cameras_panel import CamerasPanel
from viewer.gui.display_panels import ColoursPanel, LayersPanel, PointsPanel, ViewsPanel
from viewer.gui.export_panel import ExportPanel
from viewer.gui.inspector_panel import InspectorPanel
from viewer.gui.points import PointClouds
from viewer.gui.scene_panel import ScenePanel
from viewer.gui.splats import ResidualVectors, SplatNodes
from viewer.gui.targets_panel import TargetsPanel
from viewer.jobs import JobQueue
from viewer.pipeline import LoadedScene, ProgressFn

if TYPE_CHECKING:
    import viser

    from viewer.analysis import SceneAnalysis

SceneLoader = Callable[[str, ProgressFn], LoadedScene]
"""``loader(spec, progress) -> LoadedScene``; a :class:`ModelSession`'s ``load``."""
SpecCheck = Callable[[str], str | None]
"""``check(spec) -> None`` when a client may open ``spec``, else the reason it may not."""


def _close_if_alive(app_ref: weakref.ref) -> None:
    app = app_ref()
    if app is not None:
        app.close()


class ViewerApp:
    """The live viewer of one scene at a time on ``server``."""

    def __init__(
        self,
        server: viser.ViserServer,
        loader: SceneLoader | None = None,
        scene_specs: list[str] | None = None,
        point_budget: int = 600_000,
        gaussian_budget: int = 300_000,
        *,
        model_info: str = "",
        spec_check: SpecCheck | None = None,
    ) -> None:
        self.server = server
        self.loader = loader
        self.spec_check = spec_check
        self.lock = threading.RLock()
        self.loaded: LoadedScene | None = None
        self.scenes_shown = 0  # incremented when a scene is completely shown
        self._color_context: ColorContext | None = None
        self._worker: threading.Thread | None = None
        self._load_guard = threading.Lock()
        self.jobs = JobQueue(self._on_job_error)
        # Let a running job finish before the interpreter tears torch down (a daemon thread
        # inside torch at exit aborts the process).
        atexit.register(_close_if_alive, weakref.ref(self))

        server.gui.configure_theme(dark_mode=True, show_share_button=False, control_width="medium")
        server.gui.main_panel.dock_right()  # beside the canvas, never over the scene
        self.scene_panel = ScenePanel(self, list(scene_specs or []), model_info)
        self.layers_panel = LayersPanel(self)
        self.colours = ColoursPanel(self)
        self.cameras = CamerasPanel(self)
        self.analysis_panel = AnalysisPanel(self)
        self.views = ViewsPanel(self)
        self.points_panel = PointsPanel(self, point_budget)
        self.inspector = InspectorPanel(self)
        self.splats = SplatNodes(self, gaussian_budget)
        self.vectors = ResidualVectors(self)
        self.targets = TargetsPanel(self)
        self.export_panel = ExportPanel(self)
        self.points = PointClouds(self)
        server.on_client_connect(self._on_connect)

    # --- showing a scene ----------------------------------------------------------------------

    def show(self, loaded: LoadedScene) -> None:
        """Replace the shown scene with ``loaded`` (GUI elements and nodes are updated in place)."""
        with self.lock:
            self.jobs.drop_pending()  # they belong to the scene being replaced
            self.loaded = loaded
            self._color_context = None
            with self.server.atomic():
                self.server.scene.set_up_direction(tuple(float(x) for x in loaded.view.up))
                self.views.show()
                self.layers_panel.show()
                self.cameras.show()
                self.points.show()
                self.splats.show()
                self.vectors.show()
                self.inspector.reset()
                self.targets.show()
                self.export_panel.show()
                self.refresh_colors_and_tables()
                self.scene_panel.show()
            self.scenes_shown += 1
            self.request_analysis()
            self.targets.request_targets()
        for client in self.server.get_clients().values():
            self.cameras.reset_client(client)

    def load_async(self, spec: str) -> threading.Thread | None:
        """Load ``spec`` in a worker thread (the GUI stays live); returns the thread."""
        if self.loader is None:
            raise RuntimeError("this viewer was started without a model; it cannot load scenes")
        refusal = None if self.spec_check is None else self.spec_check(spec)
        if refusal is not None:
            self.scene_panel.say(f"**Not opened:** {escape_markdown(refusal)}")
            return None
        with self._load_guard:  # GUI callbacks run in a thread pool: one load at a time
            if self._worker is not None and self._worker.is_alive():
                self.scene_panel.say("**A scene is still loading; wait until it shows.**")
                return self._worker
            self.scene_panel.load.disabled = True
            self._worker = threading.Thread(target=self._load, args=(spec,), name="dsviewer-load",
                                            daemon=True)  # fmt: skip
            self._worker.start()
        return self._worker

    def _load(self, spec: str) -> None:
        from viewer.errors import describe_error

        panel = self.scene_panel
        try:
            self.show(self.loader(spec, panel.report_progress))
        except Exception as error:  # noqa: BLE001 -- a worker must not die silently
            panel.say(f"**Could not load {escape_markdown(spec)}:** {describe_error(error)}")
        finally:
            panel.progress.visible = False
            panel.load.disabled = False

    # --- what the settings select -----------------------------------------------------------

    def guarded(self, update: Callable[[], None]) -> None:
        """Run a GUI callback's update under the lock, batched, when a scene is shown."""
        with self.lock:
            if self.loaded is None:
                return
            with self.server.atomic():
                update()

    def current_analysis(self) -> SceneAnalysis | None:
        """The analysis for the settings on screen, if it has been computed."""
        if self.loaded is None:
            return None
        return self.loaded.cached_analysis(self.analysis_panel.settings())

    def color_context(self) -> ColorContext:
        analysis = self.current_analysis()
        settings = self.colours.settings()
        context = self._color_context
        if context is None or context.analysis is not analysis or context.settings != settings:
            context = ColorContext(self.loaded.layers, analysis, settings)
            self._color_context = context
        return context

    def residual_limit(self) -> float:
        return color_mode("residual").value_range(self.color_context())[1]

    def refresh_colors_and_tables(self) -> None:
        self.colours.refresh_legend()
        self.points_panel.refresh_readout()
        self.analysis_panel.refresh()

    def on_colors_changed(self) -> None:
        self.points.refresh_colors()
        self.refresh_colors_and_tables()

    def on_selection_changed(self) -> None:
        self.points.refresh_selection()
        self.points_panel.refresh_readout()

    def on_layer_toggled(self, layer: str) -> None:
        self.points.set_layer_visible(layer)
        self.colours.refresh_legend()

    def on_view_visibility(self) -> None:
        self.points.refresh_view_visibility()
        self.vectors.refresh()

    # --- analysis -----------------------------------------------------------------------------

    def request_analysis(self) -> None:
        """Queue the analysis of the shown scene for the settings on screen (once per setting)."""
        loaded = self.loaded
        if loaded is None:
            return
        settings = self.analysis_panel.settings()
        if loaded.cached_analysis(settings) is not None:
            self.guarded(self._analysis_ready)
            return
        self.analysis_panel.computing()

        def job() -> None:
            if self.loaded is not loaded or self.analysis_panel.settings() != settings:
                return  # superseded by a newer scene or setting
            loaded.analysis(settings)
            self.guarded(lambda: self._analysis_ready() if self.loaded is loaded else None)

        self.jobs.submit("Analysis", job)

    def _analysis_ready(self) -> None:
        if self.points_panel.inconsistent_only.value or self.points_panel.hide_flying.value:
            self.points.refresh_selection()  # the filters select by the analysis
        elif color_mode(self.colours.mode()).needs_analysis:
            self.points.refresh_colors()
        self.refresh_colors_and_tables()
        self.inspector.refresh()

    # --- background work ----------------------------------------------------------------------

    def _on_job_error(self, name: str, error: BaseException) -> None:
        from viewer.errors import describe_error

        panel = {"Export": self.export_panel.status, "Target views": self.targets.text,
                 "Render": self.targets.text}.get(name, self.analysis_panel.table)  # fmt: skip
        panel.content = f"**{name} failed:** {describe_error(error)}"

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every background job has finished (tests, scripts); False on timeout."""
        return self.jobs.wait_idle(timeout)

    def close(self) -> None:
        self.jobs.close()

    def _on_connect(self, client) -> None:
        self.cameras.reset_client(client)


__all__ = ["COLOR_MODES", "SceneLoader", "ViewerApp"]
