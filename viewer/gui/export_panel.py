"""The Export folder: every export file of the shown scene, for the GUI's current settings, zipped.

The zip is made by the same :func:`dsviewer.viewer.export.export_archive` as ``dsviewer export``,
from
the loaded scene's cached analysis for the settings on screen (consistency threshold,
occlusions, residual unit and range), so its metrics.json holds the numbers the GUI shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dsviewer.viewer.escape import escape_markdown

if TYPE_CHECKING:
    from dsviewer.viewer.export import ExportSettings
    from dsviewer.viewer.gui.context import GuiContext


def rerun_option() -> tuple[bool, str]:
    """Whether the "Rerun recording" option can be ticked, and its tooltip."""
    from dsviewer.viewer.export.rerun_recording import INSTALL, rerun_available

    if rerun_available():
        return True, ("Add recording.rrd to the zip: cameras, photos, depth and map images and "
                      "the points with their values, for Rerun's viewer.")
    return False, f"Needs the Rerun SDK: {INSTALL}, then restart dsviewer."


class ExportPanel:
    def __init__(self, context: GuiContext) -> None:
        self.context, self.state = context, context.state
        self.last_export: tuple[str, bytes] | None = None
        gui = context.server.gui
        with gui.add_folder("Export", expand_by_default=False):
            self.button = gui.add_button(
                "Export zip", hint="PLYs, 3DGS PLY, cameras, an offline scene.html, scene.glb, "
                "panels and metrics for the settings on screen, in one zip."
            )  # fmt: skip
            available, hint = rerun_option()
            self.rerun = gui.add_checkbox("Rerun recording", initial_value=False,
                                          disabled=not available, hint=hint)
            self.status = gui.add_markdown(
                "PLYs, panels, metrics, an offline scene and scene.glb, zipped.")

        @self.button.on_click
        def _(event) -> None:
            self.request_export(event.client)

    def settings(self) -> ExportSettings:
        from dsviewer.viewer.export import ExportSettings

        return ExportSettings(analysis=self.state.analysis, color=self.state.color,
                              rerun=self.rerun.value)  # fmt: skip

    def show(self) -> None:
        self.last_export = None  # tens of MB of the previous scene

    def request_export(self, client=None) -> None:
        """Queue an export zip of the shown scene; sent to ``client`` (kept in last_export).

        With several runs the zip holds each run's files under ``runs/`` plus compare.json and
        compare.ply of A and B (or A and the next run)."""
        state = self.state
        if state.loaded is None:
            return
        settings = self.settings()
        runs = [run.loaded for run in state.runs]
        a, b_run = state.primary, state.run_b()
        b = state.runs.index(b_run) if b_run is not None else (a + 1) % len(runs)

        def job() -> None:
            from dsviewer.viewer.export import export_archive
            from dsviewer.viewer.export.compare_files import compare_archive

            def progress(stage: str, fraction: float) -> None:
                self.status.content = f"*{escape_markdown(stage)}...* ({100 * fraction:.0f}%)"

            self.button.disabled = True
            try:
                if len(runs) > 1:
                    name, data = compare_archive(runs, a, b, settings, progress=progress)
                else:
                    name, data = export_archive(runs[0], settings, progress=progress)
            finally:
                self.button.disabled = False
            self.last_export = (name, data)
            self.status.content = f"{escape_markdown(name)}: {len(data) / 1e6:.1f} MB"
            if client is not None:
                client.send_file_download(name, data, save_immediately=True)

        self.context.jobs.submit("Export", job)
