"""The Target views folder: the Gaussians rendered at the held-out views, and at your camera.

Both renders run as jobs (a 256 x 256 CPU render takes 0.04-0.1 s, more at first). The target
renders are cached on the loaded scene, where the export writes targets.png from the same
images and PSNR. The folder shows them as one column (rendered, GT, error under each other,
each as wide as the panel): targets.png's rows of three would be a third of the panel wide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from dsviewer.viewer.gui.context import GuiContext
    from dsviewer.viewer.session.loaded import LoadedScene
    from dsviewer.viewer.target_render import TargetRenders

RENDER_HEIGHT = 256  # rows of a "render at my camera" image
BLANK = np.full((8, 8, 3), 40, np.uint8)
CAPTION_HEIGHT = 16  # pixels of a caption line over each image of the column
COLUMN_WIDTH = 320  # at least this wide (pixels repeated): a page shows images at most 1:1


def target_column(renders: TargetRenders) -> np.ndarray:
    """Per target view: rendered, GT and ``|rendered - GT|`` (mean over RGB, one colour range
    for all targets, as in targets.png) under each other, each under a caption; every pixel
    repeated ``k = ceil(COLUMN_WIDTH / W)`` times each way, so the page shows it panel-wide.

    Returns ``[T * 3 * (16 + k H), k W, 3]`` uint8.
    """
    from dsviewer.viewer.colormaps import apply_sequential, format_number, robust_limit, text_image
    from dsviewer.viewer.target_render import ERROR_FLOOR

    def rgb(image) -> np.ndarray:  # [3, H, W] float -> [H, W, 3] uint8
        return np.rint(image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)

    repeat = -(-COLUMN_WIDTH // int(renders.color.shape[-1]))
    width = repeat * int(renders.color.shape[-1])
    error = (renders.color - renders.gt).abs().mean(dim=1).numpy()  # [T, H, W]
    limit = robust_limit(error, floor=ERROR_FLOOR)
    parts = []
    for t in range(renders.num_views):
        frame, psnr = int(renders.index[t]), float(renders.psnr[t])
        for caption, image in (
            (f"frame {frame}: rendered, PSNR {psnr:.2f} dB", rgb(renders.color[t])),
            (f"frame {frame}: GT", rgb(renders.gt[t])),
            (f"|rendered - GT|, 0 to {format_number(limit)}",
             apply_sequential(error[t], 0.0, limit)),
        ):  # fmt: skip
            image = np.repeat(np.repeat(image, repeat, axis=0), repeat, axis=1)
            parts += [text_image(caption, width=width, height=CAPTION_HEIGHT), image]
    return np.concatenate(parts, axis=0)


def targets_markdown(renders: TargetRenders, baseline: float) -> str:
    """PSNR per target with its distance and angle to the context cameras (the PSNR of a far or
    off-axis target says little about the geometry)."""
    lines = [f"Context baseline {baseline:.3g}.", "",
             "| frame | PSNR (dB) | distance | angle |", "|---|---|---|---|"]  # fmt: skip
    for i, p, d, a in zip(renders.index.tolist(), renders.psnr.tolist(), renders.distance.tolist(),
                          renders.angle.tolist(), strict=True):  # fmt: skip
        lines.append(f"| {i} | {p:.2f} | {d:.3g} | {a:.0f}° |")
    lines.append(f"| **mean** | **{renders.mean_psnr:.2f}** | | |")
    return "\n".join(lines)


class TargetsPanel:
    def __init__(self, context: GuiContext) -> None:
        self.context, self.state = context, context.state
        self.last_camera_render: np.ndarray | None = None
        gui = context.server.gui
        with gui.add_folder("Target views", expand_by_default=False):
            self.text = gui.add_markdown("")
            self.image = gui.add_image(BLANK, label="rendered, GT, error")
            self.render_camera = gui.add_button(
                "Render at my camera", hint="Render the predicted Gaussians from your current "
                "viewpoint (CPU: a few seconds)."
            )  # fmt: skip
            self.camera_status = gui.add_markdown("")
            self.camera_progress = gui.add_progress_bar(100.0, animated=True, visible=False)
            self.camera_image = gui.add_image(BLANK, label="At my camera")

        @self.render_camera.on_click
        def _(event) -> None:
            if event.client is not None:
                self.request_camera_render(event.client)

    def show(self) -> None:
        self.text.content = ""
        self.image.image = self.camera_image.image = BLANK
        self.last_camera_render = None
        self.render_camera.disabled = self.state.loaded.layers.gaussians is None

    def request_targets(self) -> None:
        loaded = self.state.loaded

        def job() -> None:
            from dsviewer.viewer.export.metrics import context_baseline
            from dsviewer.viewer.target_render import target_render_unavailable

            if self.state.loaded is not loaded:
                return
            reason = target_render_unavailable(loaded.layers)
            if reason is not None:
                self.text.content = f"No target renders: {reason}."
                return
            self.text.content = "*Rendering the target views (CPU: a few seconds)...*"
            renders = loaded.targets
            panels = target_column(renders)
            # A scene switch during the render must not get this scene's panels.
            with self.context.lock:
                if self.state.loaded is not loaded:
                    return
                self.text.content = targets_markdown(renders, context_baseline(loaded.layers))
                self.image.image = panels

        self.context.jobs.submit("Target views", job)

    def request_camera_render(self, client) -> None:
        """Queue a render of the Gaussians at ``client``'s current camera into the GUI."""
        loaded: LoadedScene | None = self.state.loaded
        if loaded is None or loaded.layers.gaussians is None:
            return
        camera = client.camera
        pose = (np.asarray(camera.wxyz, np.float64), np.asarray(camera.position, np.float64),
                float(camera.fov), float(camera.aspect))  # fmt: skip
        # Said at once: the job may wait behind others (analysis, target renders).
        self._rendering(True, "*Rendering at your camera (waits for the jobs before it)...*")

        def job() -> None:
            from dsviewer.viewer.target_render import render_viewer_camera

            if self.state.loaded is not loaded:
                self._rendering(False, "*Render dropped: the scene changed.*")
                return
            self.camera_status.content = "*Rendering at your camera (CPU: a few seconds)...*"
            try:
                image = render_viewer_camera(loaded.layers, *pose, RENDER_HEIGHT)
            finally:
                self._rendering(False, "")
            with self.context.lock:  # drop a render of a scene that was replaced meanwhile
                if self.state.loaded is not loaded:
                    return
                self.last_camera_render = image
                self.camera_image.image = image

        self.context.jobs.submit("Render", job)

    def _rendering(self, busy: bool, text: str) -> None:
        """Render at my camera is busy (progress shown, button off) or done."""
        self.camera_status.content = text
        self.camera_progress.visible = busy
        self.render_camera.disabled = busy
