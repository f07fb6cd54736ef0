"""The Scene folder: which model, which scene, loading progress, and what the user should know.

Every string that comes from a file or a client (scene keys, specs, notes, error messages) goes
through :func:`dsviewer.viewer.escape.escape_markdown` before it reaches the markdown, which viser
renders
as HTML for every connected client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dsviewer.viewer.escape import escape_markdown

if TYPE_CHECKING:
    from dsviewer.viewer.gui.context import GuiContext
    from dsviewer.viewer.session.loaded import LoadedScene


def spec_hint(accepts_paths: bool) -> str:
    """What the Scene spec field takes: paths only where the viewer opens typed paths (served
    on loopback; a shared viewer opens only the scenes it was given, keys and synthetic)."""
    if accepts_paths:
        return ("A dataset key (looked up in the data roots), a capture folder or transforms "
                "file on the viewer's machine, or synthetic:<seed>.")  # fmt: skip
    return ("A scene given on the command line, a dataset key in the data roots, or "
            "synthetic:<seed> (this shared viewer opens no typed paths).")  # fmt: skip


class ScenePanel:
    def __init__(self, context: GuiContext, scene_specs: list[str], model_info: str,
                 on_load: Callable[[str], object] | None, accepts_paths: bool = True) -> None:
        """``on_load(spec)``: Load scene was clicked; None: this viewer cannot load scenes.
        ``accepts_paths``: whether typed paths are opened (the field's tooltip says so)."""
        gui = context.server.gui
        with gui.add_folder("Scene"):
            self.model = gui.add_markdown(model_info)
            # Always a text field: a dropdown would drop a typed key (a Select keeps only its
            # options). The given scenes are offered beside it, and picking one fills it.
            self.given = None
            if len(scene_specs) > 1:
                self.given = gui.add_dropdown("Given scenes", options=scene_specs,
                                              hint="The scenes given on the command line; "
                                              "picking one puts it in Scene spec.")  # fmt: skip
            first = scene_specs[0] if scene_specs else ""
            self.spec = gui.add_text("Scene spec", initial_value=first,
                                     hint=spec_hint(accepts_paths))  # fmt: skip
            self.load = gui.add_button("Load scene", hint="Run the model on this scene; the GUI "
                                       "stays live while it runs.", disabled=on_load is None)
            self.status = gui.add_markdown("Starting...")
            self.progress = gui.add_progress_bar(0.0, animated=True, visible=False)
            self.notes = gui.add_markdown("")

        @self.load.on_click
        def _(_event) -> None:
            if on_load is not None:
                on_load(str(self.spec.value).strip())

        if self.given is not None:

            @self.given.on_update
            def _(_event) -> None:
                self.spec.value = self.given.value

    def report_progress(self, stage: str, fraction: float) -> None:
        self.status.content = f"**{escape_markdown(stage)}...**"
        self.progress.visible = fraction < 1.0
        self.progress.value = 100.0 * fraction

    def say(self, text: str) -> None:
        """Show a message our own code wrote (untrusted parts must be escaped by the caller)."""
        self.status.content = text

    def set_loading(self, loading: bool) -> None:
        """While a scene loads, Load scene waits; afterwards the progress bar goes."""
        self.load.disabled = loading
        if not loading:
            self.progress.visible = False

    def show(self, loaded: LoadedScene, points_sent: int) -> None:
        layers = loaded.layers
        height, width = layers.image_shape
        times = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in loaded.seconds.items())
        self.status.content = (
            f"**{escape_markdown(loaded.scene.key)}**: {layers.num_views} context views at "
            f"{width} x {height}; {points_sent:,} points sent. {times}"
        )
        lines = [f"- {escape_markdown(note.message)}" for note in loaded.notes]
        self.notes.content = ("**Notes**\n\n" + "\n".join(lines)) if lines else ""
