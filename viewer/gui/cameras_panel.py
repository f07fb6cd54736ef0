"""The Cameras folder: context and target frustums, the start view, and looking through a camera.

Clicking a frustum only selects it; "View through camera" is the explicit action that moves the
clicking client's camera into it. New clients and "Reset view" get the scene's start camera
(:mod:`dsviewer.viewer.view_params`), the one ``scene.html`` opens with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.scene_nodes import add_frustums

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.gui.app import ViewerApp


class CamerasPanel:
    def __init__(self, app: ViewerApp) -> None:
        self.app = app
        gui = app.server.gui
        self.frustums: dict[str, list[viser.CameraFrustumHandle]] = {"context": [], "target": []}
        self.looked_through: tuple[str, int] | None = None  # frustums are hidden meanwhile
        with gui.add_folder("Cameras"):
            self.context_toggle = gui.add_checkbox(
                "Context cameras", initial_value=True, hint="The views the model saw."
            )  # fmt: skip
            self.target_toggle = gui.add_checkbox(
                "Target cameras", initial_value=True,
                hint="Held-out views the Gaussians are rendered into (Target views folder).",
            )  # fmt: skip
            self.choice = gui.add_dropdown(
                "Camera", options=["(none)"], hint="Click a frustum to pick it, or choose here."
            )  # fmt: skip
            self.view_through = gui.add_button(
                "View through camera", hint="Move your view into the chosen camera (its pose and "
                "field of view); frustums are hidden until Reset view (they would fill the view)."
            )  # fmt: skip
            self.reset = gui.add_button(
                "Reset view", hint="Back to the start view that frames the whole scene."
            )  # fmt: skip

        for toggle in (self.context_toggle, self.target_toggle):
            toggle.on_update(lambda _event: app.guarded(self.refresh_visibility))

        @self.view_through.on_click
        def _(event) -> None:
            if event.client is not None:
                self.look_through(event.client, str(self.choice.value))

        @self.reset.on_click
        def _(event) -> None:
            if event.client is not None:
                self.reset_client(event.client)

    def _names(self, kind: str) -> list[str]:
        cameras = (
            self.app.loaded.layers.context if kind == "context" else self.app.loaded.layers.target
        )
        if cameras is None:
            return []
        return [f"{kind} {i}: frame {int(f)}" for i, f in enumerate(cameras.frames)]

    def show(self) -> None:
        loaded = self.app.loaded
        for kind, cameras in (("context", loaded.layers.context), ("target", loaded.layers.target)):
            old = self.frustums[kind]
            count = 0 if cameras is None else cameras.num_views
            for handle in old[count:]:
                handle.visible = False  # kept for the next scene: no remove messages pile up
            if cameras is not None:
                new = add_frustums(self.app.server, f"/cameras/{kind}", cameras,
                                   loaded.view.frustum_scale, kind, by_frame=False)  # fmt: skip
                for index, handle in enumerate(new):
                    handle.on_click(
                        lambda _event, kind=kind, index=index: self._select(kind, index)
                    )
                self.frustums[kind] = new + old[count:]
        self.target_toggle.disabled = loaded.layers.target is None
        self.looked_through = None
        names = self._names("context") + self._names("target")
        self.choice.options = names or ["(none)"]
        self.choice.value = self.choice.options[0]
        self.refresh_visibility()
        self.set_initial_camera()

    def refresh_visibility(self) -> None:
        layers = self.app.loaded.layers
        # Seen from a camera, its own frustum and its neighbours' (targets lie between context
        # cameras) fill the view with their images: all frustums wait for Reset view.
        looking = self.looked_through is not None
        for kind, toggle in (("context", self.context_toggle), ("target", self.target_toggle)):
            cameras = layers.context if kind == "context" else layers.target
            count = 0 if cameras is None else cameras.num_views
            for index, handle in enumerate(self.frustums[kind]):
                handle.visible = bool(toggle.value) and index < count and not looking

    def _select(self, kind: str, index: int) -> None:
        self.choice.value = self._names(kind)[index]

    def _camera(self, name: str):
        """``(kind, cameras, index)`` of a name from :meth:`_names`."""
        kind, rest = name.split(" ", 1)
        index = int(rest.split(":")[0])
        layers = self.app.loaded.layers
        return kind, layers.context if kind == "context" else layers.target, index

    def look_through(self, client, name: str) -> None:
        with self.app.lock:
            if self.app.loaded is None or name == "(none)":
                return
            kind, cameras, index = self._camera(name)
            T = cameras.T_world_cam[index].numpy()
            fov = float(2.0 * np.arctan(0.5 / float(cameras.intrinsics[index, 1, 1])))
            depth = self.app.loaded.view.median_depth
            self.looked_through = (kind, index)
            self.refresh_visibility()
        with client.atomic():
            client.camera.position = T[:3, 3]
            client.camera.look_at = T[:3, 3] + depth * T[:3, 2]
            client.camera.up_direction = -T[:3, 1]
            client.camera.fov = fov

    def set_initial_camera(self) -> None:
        """The start camera of the shown scene for pages that connect from now on."""
        start, up = self.app.loaded.view.start, self.app.loaded.view.up
        initial = self.app.server.initial_camera
        initial.up = tuple(float(x) for x in up)
        initial.position = tuple(float(x) for x in start.position)
        initial.look_at = tuple(float(x) for x in start.look_at)
        initial.fov = float(start.fov)

    def reset_client(self, client) -> None:
        with self.app.lock:
            if self.app.loaded is None:
                return
            start, up = self.app.loaded.view.start, self.app.loaded.view.up
            if self.looked_through is not None:
                self.looked_through = None
                self.refresh_visibility()
        with client.atomic():
            client.camera.up_direction = up
            client.camera.position = start.position
            client.camera.look_at = start.look_at
            client.camera.fov = start.fov
