"""The Runs folder: which runs of the scene are shown, which two are compared (A and B), where
they are placed; and "New run": another model, other context views or another near/far.

A run is (checkpoint, context frames, near/far). New runs are computed as jobs and added to the
list without a restart; runs stay in memory within a budget (the oldest not compared is
dropped, with a note). Scene switches keep the run definitions and run them on the new scene.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.errors import InputError
from dsviewer.viewer.compare import has_gt
from dsviewer.viewer.escape import escape_markdown
from dsviewer.viewer.gui.state import GROUND_TRUTH, Partner
from dsviewer.viewer.session.runs import Run, estimated_bytes
from dsviewer.viewer.session.specs import GT_NAME, RunSpec, unique_names

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.gui.context import GuiContext
    from dsviewer.viewer.gui.state import ViewState
    from dsviewer.viewer.session.loaded import LoadedScene
    from dsviewer.viewer.session.runs import RunLoader

NO_B = "(none)"  # the B dropdown's label for "compare with nothing"
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


def b_choices(runs: list[Run]) -> list[tuple[str, Partner | None]]:
    """The B dropdown's ``(label, value)`` pairs: none, every run, and GT when a scene has it."""
    gt = [(GT_NAME, GROUND_TRUTH)] if has_gt(runs) else []
    return [(NO_B, None), *[(run.name, Partner(run.name)) for run in runs], *gt]


def same_run(a: Run, b: Run) -> bool:
    """Whether two runs of a scene are the same: one checkpoint file, the same context frames
    and the same near/far planes (as the runs used them)."""
    ca, cb = a.loaded.layers.context, b.loaded.layers.context
    return (a.spec.checkpoint.resolve() == b.spec.checkpoint.resolve()
            and ca.frames.tolist() == cb.frames.tolist()
            and np.allclose(ca.near.numpy(), cb.near.numpy(), rtol=1e-6)
            and np.allclose(ca.far.numpy(), cb.far.numpy(), rtol=1e-6))  # fmt: skip


def already_asked(spec: RunSpec, runs: list[Run]) -> Run | None:
    """The run that ``spec`` (a New run's) would repeat, judged before running it: the same
    checkpoint asked for the same frames (or the default views again) and the same planes."""
    for run in runs:
        if run.spec.checkpoint.resolve() != spec.checkpoint.resolve():
            continue
        frames = run.loaded.layers.context.frames.tolist()
        same_frames = (spec.context is None and run.spec.context is None
                       or spec.context is not None and list(spec.context) == frames)  # fmt: skip
        same_planes = all(getattr(spec, plane) is None and getattr(run.spec, plane) is None
                          or run.spec.units == "model"
                          and getattr(spec, plane) == getattr(run.spec, plane)
                          for plane in ("near", "far"))  # fmt: skip
        if same_frames and same_planes:
            return run
    return None


def oldest_over_budget(state: ViewState) -> int | None:
    """The index of the oldest run that is neither A nor B while the runs exceed the memory
    budget; None when they fit (or only A and B are left)."""
    if sum(estimated_bytes(run.loaded) for run in state.runs) <= RUN_MEMORY_BUDGET:
        return None
    b = state.run_b()
    return next((i for i, run in enumerate(state.runs) if i != state.primary and run is not b),
                None)  # fmt: skip


class RunsPanel:
    def __init__(
        self,
        context: GuiContext,
        run_loader: RunLoader | None,
        on_pair: Callable[[int, Partner | None], None],
        on_placement: Callable[[], None],
        on_run_visible: Callable[[int, bool], None],
        on_new_run: Callable[[Run], None],
        on_remove: Callable[[], None],
    ) -> None:
        """``on_pair(a, b)``: A (an index into the runs) and B were chosen; ``on_placement()``:
        the placement changed; ``on_run_visible(index, visible)``: a run was shown or hidden;
        ``on_new_run(run)``: New run made ``run`` of the shown scene; ``on_remove()``: Remove B
        was clicked. No ``run_loader``: no New run."""
        self.context, self.state = context, context.state
        self.run_loader = run_loader
        self.on_run_visible, self.on_new_run = on_run_visible, on_new_run
        state, gui = context.state, context.server.gui
        self.b_values: list[Partner | None] = [None]  # the value of each B choice
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
            self.remove = gui.add_button(
                "Remove B", disabled=True,
                hint="Forget run B (choose the run to remove as B); A cannot be removed.",
            )  # fmt: skip
            self.note = gui.add_markdown("")
            self.list_folder = gui.add_folder("Shown runs")
        with gui.add_folder("New run", expand_by_default=False):
            self.checkpoint_options = (checkpoint_labels(run_loader.checkpoints)
                                       if run_loader else [NO_B])  # fmt: skip
            self.checkpoint = gui.add_dropdown(
                "Checkpoint", options=self.checkpoint_options,
                hint="A model loaded at start (--ckpt).",
            )  # fmt: skip
            self.strip = gui.add_image(np.zeros((14, 64, 3), np.uint8), label="Frames")
            self.context_frames = gui.add_text(
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
                disabled=run_loader is None,
                hint="Run this model on the shown scene as a new run.",
            )
            self.status = gui.add_markdown("")

        self._showing = False  # show() sets the dropdowns itself: not a user's choice
        self._default_context = ""  # the context field's text when it shows A's default views
        self._frame_count: int | None = None  # frames of the shown scene (the strip's)
        self._fill_planes()

        for dropdown in (self.a, self.b):

            @dropdown.on_update
            def _(_event) -> None:
                if not self._showing and self.a.value in self.a.options:
                    on_pair(*self._chosen_pair())
                    self.remove.disabled = self.state.run_b() is None

        state.placement = self.placement.value

        @self.placement.on_update
        def _(_event) -> None:
            state.placement = self.placement.value
            context.guarded(on_placement)

        @self.run_button.on_click
        def _(_event) -> None:
            self.request_run()

        @self.remove.on_click
        def _(_event) -> None:
            on_remove()

        @self.checkpoint.on_update
        def _(_event) -> None:
            self._fill_planes()

    def _chosen_pair(self) -> tuple[int, Partner | None]:
        """A (its index in the runs) and B (its value) the dropdowns show."""
        b_labels = list(self.b.options)
        b = b_labels.index(self.b.value) if self.b.value in b_labels else 0
        return list(self.a.options).index(self.a.value), self.b_values[b]

    def chosen_checkpoint(self) -> Path:
        return self.run_loader.checkpoints[
            self.checkpoint_options.index(self.checkpoint.value)
        ]

    def _fill_planes(self) -> None:
        """Near/Far start as the chosen model's own planes."""
        if self.run_loader is not None:
            near, far = self.run_loader.own_planes(self.chosen_checkpoint())
            self.near.value, self.far.value = round(near, 6), round(far, 6)

    def show(self) -> None:
        """The run list of the shown scene (checkboxes reused), A/B choices, the frames strip."""
        state, runs = self.state, self.state.runs
        with self.list_folder:
            while len(self.toggles) < len(runs):
                toggle = self.context.server.gui.add_checkbox(f"run {len(self.toggles)}",
                                                              initial_value=True)  # fmt: skip
                index = len(self.toggles)
                toggle.on_update(lambda _event, index=index: self._run_toggled(index))
                self.toggles.append(toggle)
        for index, toggle in enumerate(self.toggles):
            toggle.visible = index < len(runs)
            if index < len(runs):
                toggle.label = runs[index].label
                toggle.value = runs[index].visible
        choices = b_choices(runs)
        self.b_values = [value for _, value in choices]
        self._showing = True
        try:
            self.a.options = [run.name for run in runs]
            self.a.value = runs[state.primary].name
            self.b.options = [label for label, _ in choices]
            b = self.b_values.index(state.partner) if state.partner in self.b_values else 0
            self.b.value = choices[b][0]
        finally:
            self._showing = False
        self.placement.disabled = len(runs) < 2
        self.remove.disabled = state.run_b() is None
        if self.run_loader is not None:
            self.context.jobs.submit("Frames", self._frames_job(state.loaded))

    def _run_toggled(self, index: int) -> None:
        visible = bool(self.toggles[index].value)
        self.context.guarded(lambda: self.on_run_visible(index, visible))

    def say(self, text: str) -> None:
        """Show a message our own code wrote (untrusted parts must be escaped by the caller)."""
        self.status.content = text

    def show_dropped(self, names: list[str]) -> None:
        """Say which runs were dropped to stay within the memory budget (none: say nothing)."""
        self.note.content = ("Dropped to stay within memory: "
                             + ", ".join(escape_markdown(n) for n in names)) if names else ""

    def _frames_job(self, loaded: LoadedScene):
        state = self.state

        def job() -> None:
            from dsviewer.dataset.frames import scene_frames

            frames = scene_frames(
                state.scene_spec,
                image_shape=loaded.layers.image_shape,
                data_roots=self.run_loader.settings.data_root,
            )
            if state.loaded is loaded:
                self.strip.image = frames_strip(frames)
                self._frame_count = frames[-1][0] + 1 if frames else None  # the strip ends there
                text = " ".join(str(int(f)) for f in loaded.layers.context.frames)
                self.context_frames.value = text
                uses_default = state.run_a.spec.context is None
                self._default_context = text if uses_default else ""

        return job

    def request_run(self) -> None:
        """Queue the run the New-run controls describe."""
        context, state = self.context, self.state
        text = str(self.context_frames.value)
        try:
            # A's default views, left as shown, stay "the default" (another scene has others).
            frames = None if text.split() == self._default_context.split() else parse_frames(text)
            count = self._frame_count
            if frames is not None and count is not None and max(frames) >= count:
                raise InputError(f"Context frames {text!r}: the scene has frames 0 to {count - 1} "
                                 "(the strip above)")  # fmt: skip
        except ValueError as error:
            self.status.content = f"**{escape_markdown(error)}**"
            return
        checkpoint = self.chosen_checkpoint()
        own = self.run_loader.own_planes(checkpoint)
        planes = [float(field.value) for field in (self.near, self.far)]
        near, far = (None if value in (0.0, round(default, 6)) else value
                     for value, default in zip(planes, own))  # fmt: skip
        spec = RunSpec(checkpoint, frames, near, far)
        scene_spec = state.scene_spec
        with context.lock:
            twin = already_asked(spec, state.runs)
        if twin is not None:
            self.status.content = (f"**Not run: {escape_markdown(twin.name)} is this run "
                                   "already** (same checkpoint, context frames and near/far).")
            return
        self.status.content = "*Running the model...*"

        def job() -> None:
            from dsviewer.viewer.errors import describe_error

            with context.lock:
                name = unique_names([*[r.name for r in state.runs], spec.checkpoint.stem])[-1]
            try:
                loaded = self.run_loader.load(scene_spec, spec, name)
            except Exception as error:  # noqa: BLE001 -- shown in the panel
                self.status.content = f"**Run failed:** {describe_error(error)}"
                return
            run = Run(name, spec, loaded)
            with context.lock:
                if state.scene_spec != scene_spec:
                    self.status.content = "*New run discarded: the scene changed while it ran.*"
                    return
                twin = next((other for other in state.runs if same_run(other, run)), None)
                if twin is not None:
                    self.status.content = (f"**Not added: {escape_markdown(twin.name)} is this "
                                           "run already** (same checkpoint, context frames and "
                                           "near/far).")  # fmt: skip
                    return
                self.on_new_run(run)
            self.status.content = f"Added {escape_markdown(name)}."

        context.jobs.submit("Run", job)
