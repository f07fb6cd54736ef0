"""The one object that wires the GUI folders to the shown scene and its runs.

It owns the runs of the shown scene (:class:`~dsviewer.viewer.runs.Run`: one model with given views
and
near/far; run A is the one the folders describe, B the one it is compared with), one lock, the
job queue and the folders (one module each). Folders call back into it when a setting changes;
it decides what must be refreshed: visibility flips handles, a new selection re-sends points in
place, new colours send colours only. Inference runs in a worker thread; analysis, target
renders, exports, new runs and camera renders run as jobs on one background thread
(:mod:`dsviewer.viewer.jobs`); every scene update holds the lock inside ``server.atomic()``.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.color_modes import ColorContext, DepthDifference, color_mode
from dsviewer.viewer.colormaps import robust_limit
from dsviewer.viewer.compare import GT_NAME, has_gt
from dsviewer.viewer.escape import escape_markdown
from dsviewer.viewer.gui.analysis_panel import AnalysisPanel
from dsviewer.viewer.gui.cameras_panel import CamerasPanel
from dsviewer.viewer.gui.display_panels import ColoursPanel, LayersPanel, PointsPanel, ViewsPanel
from dsviewer.viewer.gui.export_panel import ExportPanel
from dsviewer.viewer.gui.inspector_panel import InspectorPanel
from dsviewer.viewer.gui.points import RunClouds
from dsviewer.viewer.gui.runs_panel import NO_B, RunsPanel
from dsviewer.viewer.gui.scene_panel import ScenePanel
from dsviewer.viewer.gui.splats import ResidualVectors, SplatNodes, side_by_side_offset
from dsviewer.viewer.gui.targets_panel import TargetsPanel
from dsviewer.viewer.jobs import JobQueue
from dsviewer.viewer.pipeline import LoadedScene, ProgressFn
from dsviewer.viewer.runs import Run, RunLoader, RunSpec

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.analysis import SceneAnalysis

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
        self.runs: list[Run] = []
        self.primary = 0  # index of run A
        self.partner: str = NO_B  # run B's name, "gt" (the scene's GT depth), or NO_B
        self.scene_spec = (scene_specs or [""])[0]
        self.scenes_shown = 0  # incremented when a scene is completely shown
        self._contexts: dict[int, ColorContext] = {}
        self._differences: dict[int, dict] = {}  # run id -> B - A maps on that run's pixels
        self._worker: threading.Thread | None = None
        self._load_guard = threading.Lock()
        self.jobs = JobQueue(self._on_job_error)
        # Let a running job finish before the interpreter tears torch down (a daemon thread
        # inside torch at exit aborts the process).
        atexit.register(_close_if_alive, weakref.ref(self))

        server.gui.configure_theme(dark_mode=True, show_share_button=False, control_width="medium")
        server.gui.main_panel.dock_right()  # beside the canvas, never over the scene
        self.scene_panel = ScenePanel(self, list(scene_specs or []), model_info)
        self.runs_panel = RunsPanel(self)
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
        self.points = RunClouds(self)
        server.on_client_connect(self._on_connect)

    @property
    def loaded(self) -> LoadedScene | None:
        """Run A's scene: what the single-run folders (analysis, targets, cameras) describe."""
        return self.runs[self.primary].loaded if self.runs else None

    # --- showing a scene ----------------------------------------------------------------------

    def show(self, loaded: LoadedScene) -> None:
        """Show one run of a scene (the simple form of :meth:`show_runs`)."""
        self.show_runs([Run(loaded.run_name, RunSpec(Path(loaded.run_name)), loaded)])

    def show_runs(self, runs: list[Run], scene_spec: str | None = None) -> None:
        """Replace the shown scene with ``runs`` of it (GUI elements and nodes update in place).

        ``scene_spec``: what the runs were loaded from, where New run loads its runs (set here,
        with the runs, so that the two cannot disagree); None keeps the current one.
        """
        with self.lock:
            dropped = self.jobs.drop_pending()  # they belong to the scene being replaced
            if "Run" in dropped:
                self.runs_panel.status.content = "*New run cancelled: the scene changed.*"
            if scene_spec is not None:
                self.scene_spec = scene_spec
            names = [run.name for run in runs]
            a = self.runs[self.primary].name if self.runs else None
            self.runs = list(runs)
            # A scene switch reruns the same definitions: keep the A and B the user chose.
            self.primary = names.index(a) if a in names else 0
            choices = [NO_B, *names, *([GT_NAME] if has_gt(runs) else [])]
            if a is None or self.partner not in choices or self.partner == names[self.primary]:
                self.partner = next((n for n in names if n != names[self.primary]), NO_B)
            self._contexts = {}
            with self.server.atomic():
                self.server.scene.set_up_direction(tuple(float(x) for x in self.loaded.view.up))
                self.runs_panel.show()
                self._show_primary()
                self.points.show(self.runs)
                self.place_runs()
                self._pair_changed()
                self.scene_panel.show()
            self.scenes_shown += 1
            self.request_analysis()
        for client in self.server.get_clients().values():
            self.cameras.reset_client(client)

    def _show_primary(self) -> None:
        """The folders that describe run A."""
        self.views.show()
        self.layers_panel.show()
        self.cameras.show()
        self.splats.show()
        self.vectors.show()
        self.inspector.reset()
        self.targets.show()
        self.export_panel.show()
        self.targets.request_targets()

    def add_run(self, run: Run) -> None:
        """A new run of the shown scene (New run); it becomes B."""
        with self.lock, self.server.atomic():
            self.runs.append(run)
            self.partner = run.name
            self.runs_panel.enforce_budget()
            self.runs_panel.show()
            self.points.show(self.runs)
            self.place_runs()
            self._pair_changed()
        self.request_analysis()

    def remove_run(self, index: int) -> None:
        """Forget run ``index`` (never A: the caller keeps it); A keeps its run, not its index."""
        removed = self.runs.pop(index)
        if index < self.primary:
            self.primary -= 1
        self.primary = min(self.primary, len(self.runs) - 1)
        if self.partner == removed.name:
            self.partner = NO_B
        self._contexts.pop(id(removed), None)
        self._differences.pop(id(removed), None)

    def set_run_visible(self, index: int, visible: bool) -> None:
        self.points.slots[index].set_run_visible(visible)
        self.points_panel.refresh_readout()

    def set_pair(self, a: str, b: str) -> None:
        """A and B chosen in the Runs folder."""
        names = [run.name for run in self.runs]
        with self.lock:
            if a not in names or (a == names[self.primary] and b == self.partner):
                return
            primary_changed = names.index(a) != self.primary
            self.primary, self.partner = names.index(a), b
            with self.server.atomic():
                if primary_changed:
                    self._show_primary()
                self._pair_changed()
        if primary_changed:
            self.request_analysis()

    def _pair_changed(self) -> None:
        self._contexts, self._differences = {}, {}
        self.points.refresh_colors()
        self.refresh_colors_and_tables()
        if self.partner != NO_B:
            self.jobs.submit("Compare", self._difference_job(self.runs[self.primary], self.partner))

    def _difference_job(self, a: Run, partner: str) -> Callable[[], None]:
        """Compute B - A on A's pixels and on B's (the depth of one along the other's rays)."""

        def job() -> None:
            from dsviewer.viewer.compare import (
                comparison_problem,
                difference_maps,
                gt_source,
                run_source,
            )

            with self.lock:  # the GUI thread edits the run list
                b = next((run for run in self.runs if run.name == partner), None)
            source_a = run_source(a.loaded)
            source_b = (gt_source(a.loaded) if partner == GT_NAME
                        else None if b is None else run_source(b.loaded))  # fmt: skip
            problem = comparison_problem(source_a, source_b, partner)
            if problem is not None:
                self.runs_panel.status.content = f"*{escape_markdown(problem)}*"
                return
            maps = {id(a): {k: v.numpy() for k, v in difference_maps(source_a, source_b).items()}}
            if b is not None:  # on B's pixels: -(A - B) = B - A
                maps[id(b)] = {
                    k: -v.numpy() for k, v in difference_maps(source_b, source_a).items()
                }
            with self.lock:
                if a is not self.runs[self.primary] or partner != self.partner:
                    return  # the pair changed meanwhile
                self._differences, self._contexts = maps, {}
                self.guarded(self.on_colors_changed)

        return job

    def place_runs(self) -> None:
        """Overlaid, or each run shifted along the cameras' right axis past the previous one."""
        step = np.zeros(3)
        if self.runs_panel.placement.value == "side by side" and len(self.runs) > 1:
            final = self.loaded.flat("final")
            step = side_by_side_offset(final.points[final.valid],
                                       self.loaded.layers.context.T_world_cam.numpy())  # fmt: skip
        self.points.place([i * step for i in range(len(self.points.slots))])

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
            self.scene_panel.load.disabled = True
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
            panel.progress.visible = False
            panel.load.disabled = False

    # --- what the settings select -----------------------------------------------------------

    def guarded(self, update: Callable[[], None]) -> None:
        """Run a GUI callback's update under the lock, batched, when a scene is shown."""
        with self.lock:
            if not self.runs:
                return
            with self.server.atomic():
                update()

    def current_analysis(self, loaded: LoadedScene | None = None) -> SceneAnalysis | None:
        """The analysis of a run (default: A) for the settings on screen, if computed."""
        loaded = loaded or self.loaded
        return None if loaded is None else loaded.cached_analysis(self.analysis_panel.settings())

    def color_context(self, run: Run | None = None) -> ColorContext:
        """The colour context of a run (default: A), rebuilt when its inputs change."""
        run = run or self.runs[self.primary]
        analysis = self.current_analysis(run.loaded)
        settings = self.colours.settings()
        context = self._contexts.get(id(run))
        if context is None or context.analysis is not analysis or context.settings != settings:
            context = ColorContext(
                run.loaded.layers, analysis, settings, self._difference(run, settings)
            )
            self._contexts[id(run)] = context
        return context

    def _difference(self, run: Run, settings) -> DepthDifference | None:
        """B - A on ``run``'s pixels, with the colour range of run A's (shared by both)."""
        maps = self._differences.get(id(run))
        reference = self._differences.get(id(self.runs[self.primary]))
        if maps is None or reference is None:
            return None
        limits = {
            unit: robust_limit(values, settings.percentile) for unit, values in reference.items()
        }
        return DepthDifference(maps, limits)

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
        """Queue the analysis of every run for the settings on screen (once per setting)."""
        settings = self.analysis_panel.settings()
        pending = [run for run in self.runs if run.loaded.cached_analysis(settings) is None]
        if not pending:
            self.guarded(self._analysis_ready)
            return
        self.analysis_panel.computing()
        for run in pending:

            def job(run: Run = run) -> None:
                if run not in self.runs or self.analysis_panel.settings() != settings:
                    return  # superseded by a newer scene or setting
                run.loaded.analysis(settings)
                self.guarded(lambda: self._analysis_ready() if run in self.runs else None)

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
        from dsviewer.viewer.errors import describe_error

        panel = {"Export": self.export_panel.status, "Target views": self.targets.text,
                 "Render": self.targets.text, "Run": self.runs_panel.status,
                 "Compare": self.runs_panel.status,
                 "Frames": self.runs_panel.status}.get(name, self.analysis_panel.table)  # fmt: skip
        panel.content = f"**{name} failed:** {describe_error(error)}"

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every background job has finished (tests, scripts); False on timeout."""
        return self.jobs.wait_idle(timeout)

    def close(self) -> None:
        self.jobs.close()

    def _on_connect(self, client) -> None:
        self.cameras.reset_client(client)


__all__ = ["SceneLoader", "ViewerApp"]
