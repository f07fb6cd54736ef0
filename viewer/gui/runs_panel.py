"""The Runs folder: which runs of the scene are shown, which two are compared (A and B), where
they are placed; and "New run": another model, other context views or another near/far.

A run is (checkpoint, context frames, near/far). New runs are computed as jobs and added to the
list without a restart; runs stay in memory within a budget (the oldest not compared is
dropped, with a note). Scene switches keep the run definitions and run them on the new scene.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.errors import InputError
from dsviewer.viewer.compare import GT_NAME, has_gt, unique_names
from dsviewer.viewer.escape import escape_markdown
from dsviewer.viewer.runs import Run, RunSpec, estimated_bytes

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.gui.app import ViewerApp

NO_B = "(none)"
RUN_MEMORY_BUDGET = 4 << 30  # bytes of predictions and layers kept; older runs are dropped
STRIP_COLUMNS = 8


def frames_strip(frames: list[tuple[int, np.ndarray]], side: int = 64) -> np.ndarray:
    """The thumbnails in a grid, each with its frame number below it.

    Returns ``[rows * (side + 14), 8 * side, 3]`` uint8.
    """
    from PIL import Image, ImageDraw

    rows = max(1, -(-len(frames) // STRIP_COLUMNS))
    cell_h = side + 14
    strip = Image.new("RGB", (STRIP_COLUMNS * side, rows * cell_h), (37, 38, 43))
    draw = ImageDraw.Draw(strip)
    for i, (number, image) in enumerate(frames):
        x, y = (i % STRIP_COLUMNS) * side, (i // STRIP_COLUMNS) * cell_h
        strip.paste(Image.fromarray(image), (x + (side - image.shape[1]) // 2, y))
        draw.text((x + side // 2, y + side + 1), str(number), fill=(230, 230, 230), anchor="ma")
    return np.asarray(strip)


def checkpoint_labels(paths: list[Path]) -> list[str]:
    """A distinct label per checkpoint: its file name, with as many parent folders as it takes
    (``exp1/last.pth``, ``exp2/last.pth``)."""
    depth = 1
    while True:
        labels = ["/".join(path.parts[-depth:]) for path in paths]
        if len(set(labels)) == len(labels) or depth >= max(len(p.parts) for p in paths):
            return labels
        depth += 1


def parse_frames(text: str) -> tuple[int, ...] | None:
    """``"0 5"`` or ``"0, 5"`` -> ``(0, 5)``; empty -> None (the default views)."""
    parts = text.replace(",", " ").split()
    if not parts:
        return None
    try:
        frames = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(
            f"context frames must be integers separated by spaces, got {text!r}"
        ) from None
    if len(set(frames)) != len(frames) or min(frames) < 0:
        raise InputError(f"context frames must be distinct and non-negative, got {text!r}")
    return frames


class RunsPanel:
    def __init__(self, app: ViewerApp) -> None:
        self.app = app
        gui = app.server.gui
        self.toggles: list[viser.GuiCheckboxHandle] = []
        with gui.add_folder("Runs"):
            self.a = gui.add_dropdown(
                "A",
                options=[NO_B],
                hint="The run the folders below describe, and the reference of B - A.",
            )
            self.b = gui.add_dropdown(
                "B",
                options=[NO_B],
                hint="The run compared with A (colour mode 'B - A'); gt: the scene's ground truth.",
            )
            self.placement = gui.add_dropdown(
                "Runs placement", options=("overlaid", "side by side"),
                hint="side by side: each run shifted beside the previous one.",
            )  # fmt: skip
            self.note = gui.add_markdown("")
            self.list_folder = gui.add_folder("Shown runs")
        with gui.add_folder("New run", expand_by_default=False):
            self.checkpoint_options = (checkpoint_labels(app.run_loader.checkpoints)
                                       if app.run_loader else [NO_B])  # fmt: skip
            self.checkpoint = gui.add_dropdown(
                "Checkpoint", options=self.checkpoint_options,
                hint="A model loaded at start (--ckpt).",
            )  # fmt: skip
            self.strip = gui.add_image(np.zeros((14, 64, 3), np.uint8), label="Frames")
            self.context = gui.add_text(
                "Context frames",
                initial_value="",
                hint="Frame numbers (see the strip), e.g. '0 5'; starts as run A's; empty or "
                "unchanged from A's default views: the scene's default views (on every scene).",
            )  # fmt: skip
            self.near = gui.add_number(
                "Near", initial_value=0.0, min=0.0,
                hint="The new run's near plane, in the model's units; starts as the chosen "
                "checkpoint's own. 0: the model's own.",
            )  # fmt: skip
            self.far = gui.add_number(
                "Far", initial_value=0.0, min=0.0,
                hint="The new run's far plane, in the model's units; starts as the chosen "
                "checkpoint's own. 0: the model's own.",
            )  # fmt: skip
            self.run_button = gui.add_button(
                "Run",
                disabled=app.run_loader is None,
                hint="Run this model on the shown scene as a new run.",
            )
            self.status = gui.add_markdown("")

        self._showing = False  # show() sets the dropdowns itself: not a user's choice
        self._default_context = ""  # the context field's text when it shows A's default views
        self._frame_count: int | None = None  # frames of the shown scene (the strip's)
        self._fill_planes()

        @self.a.on_update
        def _(_event) -> None:
            if not self._showing:
                app.set_pair(self.a.value, self.b.value)

        @self.b.on_update
        def _(_event) -> None:
            if not self._showing:
                app.set_pair(self.a.value, self.b.value)

        @self.placement.on_update
        def _(_event) -> None:
            app.guarded(app.place_runs)

        @self.run_button.on_click
        def _(_event) -> None:
            self.request_run()

        @self.checkpoint.on_update
        def _(_event) -> None:
            self._fill_planes()

    def chosen_checkpoint(self) -> Path:
        return self.app.run_loader.checkpoints[
            self.checkpoint_options.index(self.checkpoint.value)
        ]

    def _fill_planes(self) -> None:
        """Near/Far start as the chosen model's own planes."""
        if self.app.run_loader is not None:
            near, far = self.app.run_loader.own_planes(self.chosen_checkpoint())
            self.near.value, self.far.value = round(near, 6), round(far, 6)

    def show(self) -> None:
        """The run list of the shown scene (checkboxes reused), A/B choices, the frames strip."""
        app = self.app
        names = [run.name for run in app.runs]
        with self.list_folder:
            while len(self.toggles) < len(app.runs):
                toggle = app.server.gui.add_checkbox(f"run {len(self.toggles)}", initial_value=True)
                index = len(self.toggles)
                toggle.on_update(
                    lambda _event, index=index: app.guarded(
                        lambda: app.set_run_visible(index, bool(self.toggles[index].value))
                    )
                )
                self.toggles.append(toggle)
        for index, toggle in enumerate(self.toggles):
            toggle.visible = index < len(app.runs)
            if index < len(app.runs):
                toggle.label = app.runs[index].label
                toggle.value = app.runs[index].visible
        self._showing = True
        try:
            self.a.options = names
            self.a.value = names[app.primary]
            self.b.options = [NO_B, *names, *([GT_NAME] if has_gt(app.runs) else [])]
            self.b.value = app.partner if app.partner in self.b.options else NO_B
        finally:
            self._showing = False
        self.placement.disabled = len(app.runs) < 2
        if app.run_loader is not None:
            app.jobs.submit("Frames", self._frames_job(app.loaded))

    def _frames_job(self, loaded):
        def job() -> None:
            from dsviewer.dataset.frames import scene_frames

            frames = scene_frames(
                self.app.scene_spec,
                image_shape=loaded.layers.image_shape,
                data_roots=self.app.run_loader.options.data_root,
            )
            if self.app.loaded is loaded:
                self.strip.image = frames_strip(frames)
                self._frame_count = frames[-1][0] + 1 if frames else None  # the strip ends there
                text = " ".join(str(int(f)) for f in loaded.layers.context.frames)
                self.context.value = text
                uses_default = self.app.runs[self.app.primary].spec.context is None
                self._default_context = text if uses_default else ""

        return job

    def request_run(self) -> None:
        """Queue the run the New-run controls describe."""
        app = self.app
        text = str(self.context.value)
        try:
            # A's default views, left as shown, stay "the default" (another scene has others).
            context = None if text.split() == self._default_context.split() else parse_frames(text)
            count = self._frame_count
            if context is not None and count is not None and max(context) >= count:
                raise InputError(f"Context frames {text!r}: the scene has frames 0 to {count - 1} "
                                 "(the strip above)")  # fmt: skip
        except ValueError as error:
            self.status.content = f"**{escape_markdown(error)}**"
            return
        checkpoint = self.chosen_checkpoint()
        own = app.run_loader.own_planes(checkpoint)
        planes = [float(field.value) for field in (self.near, self.far)]
        near, far = (None if value in (0.0, round(default, 6)) else value
                     for value, default in zip(planes, own))  # fmt: skip
        spec = RunSpec(checkpoint, context, near, far)
        scene_spec = app.scene_spec
        self.status.content = "*Running the model...*"

        def job() -> None:
            from dsviewer.viewer.errors import describe_error

            with app.lock:
                name = unique_names([*[r.name for r in app.runs], spec.checkpoint.stem])[-1]
            try:
                loaded = app.run_loader.load(scene_spec, spec, name)
            except Exception as error:  # noqa: BLE001 -- shown in the panel
                self.status.content = f"**Run failed:** {describe_error(error)}"
                return
            with app.lock:
                if app.scene_spec != scene_spec:
                    self.status.content = "*New run discarded: the scene changed while it ran.*"
                    return
                app.add_run(Run(name, spec, loaded))
            self.status.content = f"Added {escape_markdown(name)}."

        app.jobs.submit("Run", job)

    def enforce_budget(self) -> None:
        """Drop the oldest runs that are not A or B while the runs exceed the memory budget."""
        app = self.app
        dropped = []
        while sum(estimated_bytes(r.loaded) for r in app.runs) > RUN_MEMORY_BUDGET:
            keep = {app.primary, *[i for i, r in enumerate(app.runs) if r.name == app.partner]}
            candidates = [i for i in range(len(app.runs)) if i not in keep]
            if not candidates:
                break
            dropped.append(app.runs[candidates[0]].name)
            app.remove_run(candidates[0])
        self.note.content = (
            ("Dropped to stay within memory: " + ", ".join(escape_markdown(n) for n in dropped))
            if dropped
            else ""
        )
