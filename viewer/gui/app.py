"""The one object that wires the GUI folders to the shown scene and its runs.

It owns the :class:`~dsviewer.viewer.gui.state.ViewState` (the runs of the shown scene, which
two are compared: run A is the one the folders describe, B the one it is compared with, and
every setting more than one part reads), one lock, the job queue and the folders (one module
each). A folder writes its part of the state and calls the one callback it was given; the app
decides what must be refreshed: visibility flips handles, a new selection re-sends points in
place, new colours send colours only. Folders never see the app or each other. Inference runs
in a worker thread; analysis, target renders, exports, new runs and camera renders run as jobs
on one background thread (:mod:`dsviewer.viewer.jobs`); every scene update holds the lock
inside ``server.atomic()``.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.viewer.color_modes import color_mode
from dsviewer.viewer.escape import escape_markdown
from dsviewer.viewer.gui import client_shims
from dsviewer.viewer.gui.analysis_panel import AnalysisPanel
from dsviewer.viewer.gui.cameras_panel import CamerasPanel
from dsviewer.viewer.gui.colors import RunColors, difference_job, legend
from dsviewer.viewer.gui.context import GuiContext
from dsviewer.viewer.gui.display_panels import ColoursPanel, LayersPanel, PointsPanel, ViewsPanel
from dsviewer.viewer.gui.export_panel import ExportPanel
from dsviewer.viewer.gui.inspector_panel import InspectorPanel
from dsviewer.viewer.gui.map_pictures import MapPictures
from dsviewer.viewer.gui.maps_panel import MapsPanel
from dsviewer.viewer.gui.placement import run_offsets
from dsviewer.viewer.gui.points import RunClouds, point_filter
from dsviewer.viewer.gui.runs_panel import RunsPanel, b_choices, oldest_over_budget
from dsviewer.viewer.gui.scene_panel import ScenePanel
from dsviewer.viewer.gui.splats import ResidualVectors, SplatNodes
from dsviewer.viewer.gui.state import Partner, ViewState
from dsviewer.viewer.gui.targets_panel import TargetsPanel
from dsviewer.viewer.jobs import JobQueue
from dsviewer.viewer.session.loaded import LoadedScene, ProgressFn
from dsviewer.viewer.session.runs import Run, RunLoader
from dsviewer.viewer.session.specs import RunSpec

if TYPE_CHECKING:
    import viser

SceneLoader = Callable[[str, ProgressFn], LoadedScene]
"""``loader(spec, progress) -> LoadedScene``: one run per scene (tests, simple scripts)."""
SpecCheck = Callable[[str], str | None]
"""``check(spec) -> None`` when a client may open ``spec``, else the reason it may not."""


def _close_if_alive(app_ref: weakref.ref) -> None:
    app = app_ref()
    if app is not None:
        app.close()


class ViewerApp:
    """The live viewer of one scene at a time, with one or more runs, on ``server``."""

    def __init__(
        self,
        server: viser.ViserServer,
        loader: SceneLoader | RunLoader | None = None,
        scene_specs: list[str] | None = None,
        point_budget: int = 600_000,
        gaussian_budget: int = 300_000,
        *,
        model_info: str = "",
        spec_check: SpecCheck | None = None,
    ) -> None:
        self.server = server
        self.run_loader = loader if isinstance(loader, RunLoader) else None
        self.loader = loader
        self.spec_check = spec_check
        self.lock = threading.RLock()
        self.state = ViewState(scene_spec=(scene_specs or [""])[0])
        self.scenes_shown = 0  # incremented when a scene is completely shown
        self._worker: threading.Thread | None = None
        self._load_guard = threading.Lock()
        self.jobs = JobQueue(self._on_job_error)
        # Let a running job finish before the interpreter tears torch down (a daemon thread
        # inside torch at exit aborts the process).
        atexit.register(_close_if_alive, weakref.ref(self))
        context = GuiContext(server, self.state, self.lock, self.jobs)
        self.context = context
        self.colors = RunColors(self.state)
        self.clouds = RunClouds(context, self.colors)
        self.map_pictures = MapPictures(context, self.colors)

        client_shims.install(server)  # before any element: see the module for why
        server.gui.configure_theme(dark_mode=True, show_share_button=False, control_width="medium")
        server.gui.main_panel.dock_right()  # beside the canvas, never over the scene
        # The folders, top to bottom; each gets the context and the callbacks it needs.
        self.scene_panel = ScenePanel(context, list(scene_specs or []), model_info,
                                      None if loader is None else self.load_async,
                                      accepts_paths=spec_check is None)  # fmt: skip
        self.runs_panel = RunsPanel(context, self.run_loader, on_pair=self.set_pair,
                                    on_placement=self.on_placement,
                                    on_run_visible=self.set_run_visible,
                                    on_new_run=self.add_run,
                                    on_remove=self.remove_b)  # fmt: skip
        self.layers_panel = LayersPanel(context, self.on_layer_toggled)
        self.colours_panel = ColoursPanel(context, self.on_colors_changed)
        self.cameras_panel = CamerasPanel(context)
        self.maps_panel = MapsPanel(context, self.map_pictures.refresh,
                                    on_open_grid=self.map_pictures.frame_grid)  # fmt: skip
        self.analysis_panel = AnalysisPanel(context, self.request_analysis)
        self.views_panel = ViewsPanel(context, self.on_view_visibility)
        self.points_panel = PointsPanel(context, point_budget,
                                        on_size=self.clouds.refresh_point_size,
                                        on_selection=self.on_selection_changed)  # fmt: skip
        self.inspector_panel = InspectorPanel(
            context, lambda origin, direction: self.map_pictures.pick(origin, direction,
                                                                      self.clouds),
            self.colors.context, on_inspect=self.map_pictures.refresh,
        )  # fmt: skip
        self.gaussians_panel = SplatNodes(context, gaussian_budget, self.on_overlay)
        self.vectors_panel = ResidualVectors(context, lambda: self.on_overlay(False))
        self.targets_panel = TargetsPanel(context)
        self.export_panel = ExportPanel(context)
        server.on_client_connect(self._on_connect)

    @property
    def runs(self) -> list[Run]:
        return self.state.runs

    @property
    def loaded(self) -> LoadedScene | None:
        """Run A's scene: what the single-run folders (analysis, targets, cameras) describe."""
        return self.state.loaded

    # --- showing a scene ----------------------------------------------------------------------

    def show(self, loaded: LoadedScene) -> None:
        """Show one run of a scene (the simple form of :meth:`show_runs`)."""
        self.show_runs([Run(loaded.run_name, RunSpec(Path(loaded.run_name)), loaded)])

    def show_runs(self, runs: list[Run], scene_spec: str | None = None) -> None:
        """Replace the shown scene with ``runs`` of it (GUI elements and nodes update in place).

        ``scene_spec``: what the runs were loaded from, where New run loads its runs (set here,
        with the runs, so that the two cannot disagree); None keeps the current one.
        """
        state = self.state
        with self.lock:
            dropped = self.jobs.drop_pending()  # they belong to the scene being replaced
            if "Run" in dropped:
                self.runs_panel.say("*New run cancelled: the scene changed.*")
            if scene_spec is not None:
                state.scene_spec = scene_spec
            a = state.run_a.name if state.runs else None
            # A scene switch reruns the same definitions: keep the A and B the user chose.
            names = [run.name for run in runs]
            state.runs = list(runs)
            state.primary = names.index(a) if a in names else 0
            partners = [value for _, value in b_choices(runs)]
            a_itself = Partner(names[state.primary])
            if a is None or state.partner not in partners or state.partner == a_itself:
                state.partner = next((Partner(n) for n in names if n != names[state.primary]),
                                     None)  # fmt: skip
            self.colors.invalidate()
            with self.server.atomic():
                self.server.scene.set_up_direction(tuple(float(x) for x in self.loaded.view.up))
                self.runs_panel.show()
                self._show_primary()
                self.clouds.show(state.runs)
                self.place_runs()
                self._pair_changed()
                self.scene_panel.show(self.loaded, self.clouds.points_sent())
            self.scenes_shown += 1
            self.request_analysis()
        for client in self.server.get_clients().values():
            self.cameras_panel.reset_client(client)

    def _show_primary(self) -> None:
        """The folders that describe run A."""
        loaded = self.loaded
        self.views_panel.show(loaded)
        self.layers_panel.show(loaded)
        self.cameras_panel.show()
        self.map_pictures.show(self.cameras_panel.frustums["context"])
        self.gaussians_panel.show()
        self.vectors_panel.show()
        self.inspector_panel.reset()
        self.targets_panel.show()
        self.export_panel.show()
        self.targets_panel.request_targets()

    def add_run(self, run: Run) -> None:
        """A new run of the shown scene (New run); it becomes B."""
        with self.lock, self.server.atomic():
            self.state.runs.append(run)
            self.state.partner = Partner(run.name)
            self._enforce_budget()
            self._runs_changed()
        self.request_analysis()

    def _runs_changed(self) -> None:
        """Runs were added or removed: the Runs folder, the clouds and their places, B - A."""
        self.runs_panel.show()
        self.clouds.show(self.state.runs)
        self.place_runs()
        self._pair_changed()
        self._refresh_readout()

    def _enforce_budget(self) -> None:
        """Drop the oldest runs that are not A or B while the runs exceed the memory budget."""
        dropped = []
        while (index := oldest_over_budget(self.state)) is not None:
            dropped.append(self.state.runs[index].name)
            self.remove_run(index)
        self.runs_panel.show_dropped(dropped)

    def remove_run(self, index: int) -> None:
        """Forget run ``index`` (never A: the caller keeps it); A keeps its run, not its index."""
        state = self.state
        removed = state.runs.pop(index)
        if index < state.primary:
            state.primary -= 1
        state.primary = min(state.primary, len(state.runs) - 1)
        if state.partner == Partner(removed.name):
            state.partner = None
        self.colors.forget(removed)

    def remove_b(self) -> None:
        """Forget run B (Remove B in the Runs folder); the next other run becomes B."""
        state = self.state
        with self.lock:
            b = state.run_b()
            if b is None or b is state.run_a:
                return
            self.remove_run(state.runs.index(b))
            state.partner = next((Partner(r.name) for r in state.runs if r is not state.run_a),
                                 None)  # fmt: skip
            with self.server.atomic():
                self._runs_changed()
            self.inspector_panel.refresh()
        self.runs_panel.say(f"Removed {escape_markdown(b.name)}.")

    def set_run_visible(self, index: int, visible: bool) -> None:
        self.clouds.slots[index].set_run_visible(visible)
        self._refresh_readout()

    def set_pair(self, primary: int, partner: Partner | None) -> None:
        """A (an index into the runs) and B chosen in the Runs folder."""
        state = self.state
        with self.lock:
            if not 0 <= primary < len(state.runs):
                return
            if primary == state.primary and partner == state.partner:
                return
            primary_changed = primary != state.primary
            state.primary, state.partner = primary, partner
            with self.server.atomic():
                if primary_changed:
                    self._show_primary()
                self._pair_changed()
        if primary_changed:
            self.request_analysis()

    def _pair_changed(self) -> None:
        self.clouds.refresh_labels()
        self.colors.clear()
        self.maps_panel.show()  # B - A is a map while B is chosen
        self.clouds.refresh_colors()
        self.refresh_colors_and_tables()
        if self.state.partner is not None:
            job = difference_job(self.context, self.colors, self.runs_panel.say,
                                 self.on_colors_changed)  # fmt: skip
            self.jobs.submit("Compare", job)

    def place_runs(self) -> None:
        """Overlaid, or each run shifted along the cameras' right axis past the previous one;
        the labels, splats and residual vectors follow."""
        self.clouds.place(run_offsets(self.state))
        self.clouds.refresh_labels()
        self.gaussians_panel.refresh()
        self.vectors_panel.refresh()

    def on_placement(self) -> None:
        """The runs' placement changed: place them, then frame them in every page."""
        self.place_runs()
        self.cameras_panel.reframe_clients()

    def on_overlay(self, moved: bool) -> None:
        """Splats or residual vectors shown, hidden or (``moved``) placed elsewhere."""
        self.gaussians_panel.refresh()
        self.vectors_panel.refresh()
        self.clouds.refresh_roots()
        self.layers_panel.show_covered(self.state)
        self._refresh_readout()
        if moved:
            self.cameras_panel.reframe_clients()

    def load_async(self, spec: str) -> threading.Thread | None:
        """Load ``spec`` (every run definition on it) in a worker thread; returns the thread."""
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
            self.scene_panel.set_loading(True)
            self._worker = threading.Thread(target=self._load, args=(spec,), name="dsviewer-load",
                                            daemon=True)  # fmt: skip
            self._worker.start()
        return self._worker

    def _load(self, spec: str) -> None:
        from dsviewer.viewer.errors import describe_error

        panel = self.scene_panel
        try:
            if self.run_loader is not None:  # every run definition, on the new scene
                specs = [run.spec for run in self.runs] or self.run_loader.default_specs()
                runs = self.run_loader.load_all(spec, specs, panel.report_progress)
            else:
                loaded = self.loader(spec, panel.report_progress)
                runs = [Run(loaded.run_name, RunSpec(Path(loaded.run_name)), loaded)]
            self.show_runs(runs, scene_spec=spec)
        except Exception as error:  # noqa: BLE001 -- a worker must not die silently
            panel.say(f"**Could not load {escape_markdown(spec)}:** {describe_error(error)}")
        finally:
            panel.set_loading(False)

    # --- what the settings select -----------------------------------------------------------

    def refresh_colors_and_tables(self) -> None:
        self.colours_panel.show_legend(legend(self.state, self.colors))
        self._refresh_readout()
        self.analysis_panel.refresh(self.loaded, self.colors.residual_limit())
        self.map_pictures.refresh()

    def _refresh_readout(self) -> None:
        """Run A's point filter and the points on screen, under the Points folder."""
        state = self.state
        filt = point_filter(state.points, state.loaded, state.analysis_of())
        self.points_panel.show_readout(filt, self.clouds.points_sent())

    def on_colors_changed(self) -> None:
        self.clouds.refresh_colors()
        self.refresh_colors_and_tables()
        self.inspector_panel.refresh()  # its colour-mode rows (B - A) follow the colours

    def on_selection_changed(self) -> None:
        self.clouds.refresh_selection()
        self._refresh_readout()

    def on_layer_toggled(self, layer: str) -> None:
        self.clouds.set_layer_visible(layer)
        self.colours_panel.show_legend(legend(self.state, self.colors))
        self._refresh_readout()

    def on_view_visibility(self) -> None:
        self.clouds.refresh_view_visibility()
        self.vectors_panel.refresh()

    # --- analysis -----------------------------------------------------------------------------

    def request_analysis(self) -> None:
        """Queue the analysis of every run for the settings on screen (once per setting)."""
        state = self.state
        settings = state.analysis
        pending = [run for run in state.runs if run.loaded.cached_analysis(settings) is None]
        if not pending:
            self.context.guarded(self._analysis_ready)
            return
        self.analysis_panel.computing()
        for run in pending:

            def job(run: Run = run) -> None:
                if run not in state.runs or state.analysis != settings:
                    return  # superseded by a newer scene or setting
                run.loaded.analysis(settings)
                self.context.guarded(
                    lambda: self._analysis_ready() if run in state.runs else None
                )

            self.jobs.submit("Analysis", job)

    def _analysis_ready(self) -> None:
        if self.state.points.uses_analysis:
            self.clouds.refresh_selection()  # the filters select by the analysis
        elif color_mode(self.state.color_mode).needs_analysis:
            self.clouds.refresh_colors()
        self.refresh_colors_and_tables()
        self.inspector_panel.refresh()

    # --- background work ----------------------------------------------------------------------

    def _on_job_error(self, name: str, error: BaseException) -> None:
        from dsviewer.viewer.errors import describe_error

        panel = {"Export": self.export_panel.status, "Target views": self.targets_panel.text,
                 "Render": self.targets_panel.text, "Run": self.runs_panel.status,
                 "Compare": self.runs_panel.status,
                 "Frames": self.runs_panel.status}.get(name, self.analysis_panel.table)  # fmt: skip
        panel.content = f"**{name} failed:** {describe_error(error)}"

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every background job has finished (tests, scripts); False on timeout."""
        return self.jobs.wait_idle(timeout)

    def close(self) -> None:
        self.jobs.close()

    def _on_connect(self, client) -> None:
        self.cameras_panel.reset_client(client)


__all__ = ["SceneLoader", "ViewerApp"]
