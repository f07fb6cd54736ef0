"""``scene.html``: a self-contained, offline viser scene of one export.

The scene is built on a throwaway viser server (127.0.0.1, a random port, never announced) with
the same view parameters as the live viewer (point size, frustum size, start camera, up), then
serialized by viser into one HTML file. Its nodes carry the layers' labels (``/Final depth/view
0``, ``/Context cameras/frame 12``): the page's scene-tree panel, opened on load, is the list of
labelled layer toggles. A small overlay states the scene and shows the legend of every colour
mode the file uses (the residual layer's diverging map; the SfM points drawn a second time in
their error against the final depth, hidden at start).
"""

from __future__ import annotations

import base64
import contextlib
import io
import math

import numpy as np

from dsviewer.viewer.color_modes import ColorContext, color_mode, legend_image, point_colors
from dsviewer.viewer.escape import escape_html
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.scene_nodes import add_frustums, add_point_cloud
from dsviewer.viewer.session.loaded import LoadedScene

CONTEXT_GROUP = "Context cameras"
TARGET_GROUP = "Target cameras"
SECOND_MODES = {"sfm": "sfm_error"}  # layers drawn twice: in their colours and in this mode

# Opens the scene tree (the layer toggles) once the viewer has drawn its controls.
_OPEN_TREE = """<script>
(function open(tries) {
  var button = document.querySelector('[aria-label="Show scene tree"]');
  if (button) { button.click(); }
  else if (tries > 0) { setTimeout(function () { open(tries - 1); }, 250); }
})(40);
</script>"""


def _png_data_url(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _drawings(key: str) -> list[tuple[str, str, bool]]:
    """How a layer is drawn in the file: ``(group name, colour mode, visible at start)``; the
    SfM points a second time in their error against the final depth."""
    layer = POINT_LAYERS[key]
    drawings = [(layer.label, layer.fixed_color_mode or "rgb", layer.shown_at_start)]
    if key in SECOND_MODES:
        mode = color_mode(SECOND_MODES[key])
        drawings.append((f"{layer.label}: {mode.label}", mode.key, False))
    return drawings


def _overlay(loaded: LoadedScene, context: ColorContext, shown: list[str]) -> str:
    legends = []
    for key in shown:
        for name, mode, _ in _drawings(key):
            if mode == "rgb":
                continue
            legends.append(
                f"<div>{escape_html(name)}</div>"
                f'<img alt="legend" src="{_png_data_url(legend_image(context, mode))}">'
            )
    title = f"{loaded.scene.key} ({loaded.run_name})"
    return (
        '<div id="dsviewer-legend" style="position:fixed;left:12px;bottom:12px;z-index:10;'
        "background:rgba(37,38,43,0.9);color:#e6e6e6;padding:8px 10px;border-radius:6px;"
        'font:12px sans-serif;max-width:340px">'
        f"<div><b>{escape_html(title)}</b></div>"
        "<div>Layers and cameras: toggle them in the scene tree (top right). Other layers show "
        "the images' own colours.</div>" + "".join(legends) + "</div>"
    )


def scene_html(loaded: LoadedScene, context: ColorContext, point_budget: int) -> str:
    """The HTML document of ``loaded``'s layers (at most ``point_budget`` points each)."""
    import viser

    layers, view = loaded.layers, loaded.view
    with contextlib.redirect_stdout(io.StringIO()):  # viser prints a banner on start/stop
        server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        server.scene.set_up_direction(tuple(float(x) for x in view.up))
        start = view.start
        server.initial_camera.position = tuple(float(x) for x in start.position)
        server.initial_camera.look_at = tuple(float(x) for x in start.look_at)
        server.initial_camera.up = tuple(float(x) for x in start.up)
        server.initial_camera.fov = float(start.fov)
        add_frustums(server, f"/{CONTEXT_GROUP}", layers.context, view.frustum_scale, "context")
        if layers.target is not None:
            add_frustums(server, f"/{TARGET_GROUP}", layers.target, view.frustum_scale, "target")
        shown = []
        for key in POINT_LAYERS:
            flat = loaded.flat(key)
            if flat is None or key == "centers":
                continue
            shown.append(key)
            for name, mode, visible in _drawings(key):
                server.scene.add_frame(f"/{name}", show_axes=False, visible=visible)
                for v in range(flat.num_views):
                    pixels = np.flatnonzero(flat.valid[v])
                    pixels = pixels[
                        :: max(1, math.ceil(len(pixels) / max(1, point_budget // flat.num_views)))
                    ]
                    colors = point_colors(context, mode, key, v, pixels)
                    frame = int(layers.context.frames[v])
                    add_point_cloud(server, f"/{name}/view {v} (frame {frame})",
                                    flat.points[v, pixels], colors, view.point_size())  # fmt: skip
        document = server.scene.as_html(dark_mode=True)
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            server.stop()
    overlay = _overlay(loaded, context, shown) + _OPEN_TREE
    end = document.rindex("</body>")
    return document[:end] + overlay + document[end:]
