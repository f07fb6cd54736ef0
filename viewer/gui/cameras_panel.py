"""The Cameras folder: context and target frustums, the start view, and looking through a camera.

Clicking a frustum only selects it; "View through camera" is the explicit action that moves the
clicking client's camera into it. New clients and "Reset view" get a camera that frames what is
shown (every shown layer of every visible run where it stands, the splats; see
:mod:`dsviewer.viewer.gui.placement`) from the start camera's direction: with one run and its
final points, the scene's start camera (:mod:`dsviewer.viewer.view_params`), the one
``scene.html`` opens with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.gui.placement import framing_view
from dsviewer.viewer.scene_nodes import add_frustums

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.gui.context import GuiContext

NO_CAMERA = "(none)"


class CamerasPanel:
    def __init__(self, context: GuiContext) -> None:
        self.context, self.state = context, context.state
        gui = context.server.gui
        self.frustums: dict[str, list[viser.CameraFrustumHandle]] = {"context": [], "target": []}
        self.looked_through: tuple[str, int] | None = None  # frustums are hidden meanwhile
        self.choices: list[tuple[str, int]] = []  # (kind, index) of each Camera option
        with gui.add_folder("Cameras"):
            self.context_toggle = gui.add_checkbox(
                "Context cameras", initial_value=True, hint="The views the model saw."
            )  # fmt: skip
            self.target_toggle = gui.add_checkbox(
                "Target cameras", initial_value=True,
                hint="Held-out views the Gaussians are rendered into (Target views folder).",
            )  # fmt: skip
            self.choice = gui.add_dropdown(
                "Camera", options=[NO_CAMERA], hint="Click a frustum to pick it, or choose here."
            )  # fmt: skip
            self.view_through = gui.add_button(
                "View through camera", hint="Move your view into the chosen camera (its pose and "
                "field of view); frustums are hidden until Reset view (they would fill the view)."
            )  # fmt: skip
            self.reset = gui.add_button(
                "Reset view", hint="A view that frames everything shown: every visible run "
                "where it stands (side by side too), its shown layers and the splats."
            )  # fmt: skip

        for toggle in (self.context_toggle, self.target_toggle):
            toggle.on_update(lambda _event: context.guarded(self.refresh_visibility))

        @self.view_through.on_click
        def _(event) -> None:
            chosen = self.chosen()
            if event.client is not None and chosen is not None:
                self.look_through(event.client, *chosen)

        @self.reset.on_click
        def _(event) -> None:
            if event.client is not None:
                self.reset_client(event.client)

    def _cameras(self, kind: str):
        layers = self.state.loaded.layers
        return layers.context if kind == "context" else layers.target

    def chosen(self) -> tuple[str, int] | None:
        """``(kind, index)`` of the camera in the Camera dropdown; None when there is none."""
        if not self.choices:
            return None
        return self.choices[list(self.choice.options).index(self.choice.value)]

    def show(self) -> None:
        loaded = self.state.loaded
        for kind, cameras in (("context", loaded.layers.context), ("target", loaded.layers.target)):
            old = self.frustums[kind]
            count = 0 if cameras is None else cameras.num_views
            for handle in old[count:]:
                handle.visible = False  # kept for the next scene: no remove messages pile up
            if cameras is not None:
                new = add_frustums(self.context.server, f"/cameras/{kind}", cameras,
                                   loaded.view.frustum_scale, kind, by_frame=False)  # fmt: skip
                for index, handle in enumerate(new):
                    handle.on_click(
                        lambda _event, kind=kind, index=index: self._select(kind, index)
                    )
                self.frustums[kind] = new + old[count:]
        self.target_toggle.disabled = loaded.layers.target is None
        self.looked_through = None
        self.choices = [(kind, index) for kind in ("context", "target")
                        for index in range(len(self._frames(kind)))]  # fmt: skip
        self.choice.options = [self._label(*camera) for camera in self.choices] or [NO_CAMERA]
        self.choice.value = self.choice.options[0]
        self.refresh_visibility()
        self.set_initial_camera()

    def refresh_visibility(self) -> None:
        layers = self.state.loaded.layers
        # Seen from a camera, its own frustum and its neighbours' (targets lie between context
        # cameras) fill the view with their images: all frustums wait for Reset view.
        looking = self.looked_through is not None
        for kind, toggle in (("context", self.context_toggle), ("target", self.target_toggle)):
            cameras = layers.context if kind == "context" else layers.target
            count = 0 if cameras is None else cameras.num_views
            for index, handle in enumerate(self.frustums[kind]):
                handle.visible = bool(toggle.value) and index < count and not looking

    def _frames(self, kind: str) -> list[int]:
        cameras = self._cameras(kind)
        return [] if cameras is None else [int(f) for f in cameras.frames]

    def _label(self, kind: str, index: int) -> str:
        return f"{kind} {index}: frame {self._frames(kind)[index]}"

    def _select(self, kind: str, index: int) -> None:
        self.choice.value = self._label(kind, index)

    def look_through(self, client, kind: str, index: int) -> None:
        """Move ``client``'s camera into camera ``index`` of ``kind`` (context or target)."""
        with self.context.lock:
            if self.state.loaded is None:
                return
            cameras = self._cameras(kind)
            T = cameras.T_world_cam[index].numpy()
            fov = float(2.0 * np.arctan(0.5 / float(cameras.intrinsics[index, 1, 1])))
            depth = self.state.loaded.view.median_depth
            self.looked_through = (kind, index)
            self.refresh_visibility()
        with client.atomic():
            client.camera.position = T[:3, 3]
            client.camera.look_at = T[:3, 3] + depth * T[:3, 2]
            client.camera.up_direction = -T[:3, 1]
            client.camera.fov = fov

    def reframe_clients(self) -> None:
        """Frame what is shown in every page (after a change of placement)."""
        self.set_initial_camera()
        for client in self.context.server.get_clients().values():
            self.reset_client(client)

    def set_initial_camera(self) -> None:
        """The start camera of the shown scene for pages that connect from now on."""
        start, up = framing_view(self.state), self.state.loaded.view.up
        initial = self.context.server.initial_camera
        initial.up = tuple(float(x) for x in up)
        initial.position = tuple(float(x) for x in start.position)
        initial.look_at = tuple(float(x) for x in start.look_at)
        initial.fov = float(start.fov)

    def reset_client(self, client) -> None:
        with self.context.lock:
            if self.state.loaded is None:
                return
            start, up = framing_view(self.state), self.state.loaded.view.up
            if self.looked_through is not None:
                self.looked_through = None
                self.refresh_visibility()
        with client.atomic():
            client.camera.up_direction = up
            client.camera.position = start.position
            client.camera.look_at = start.look_at
            client.camera.fov = start.fov
