"""``recording.rrd``: the scene as a Rerun recording (``dsviewer export --rerun``).

Rerun is optional (``pip install 'dsviewer[rerun]'``); :func:`require_rerun` turns its absence
into one line that says how to install it. Everything is logged static (one scene, no time) in
the user's frame and units, OpenCV axes (``world`` is declared RDF: +X right, +Y down, +Z
forward). The entity paths (README, "Rerun recording"):

* ``world/points/<layer>``: every point layer as drawn (:mod:`~dsviewer.viewer.export.scene_points`)
  with its per-point values as in ``<layer>.ply`` (``scalar_*``, ``scalar_view/u/v``);
* ``world/context/<i>``: the camera (``Transform3D`` camera-to-world, ``Pinhole`` in pixels,
  RDF), with ``photo``, ``depth/<layer>`` (``DepthImage``, meter = 1: values in the user's
  units; 0 where a layer has no depth) and ``maps/<map>``: every map of
  :data:`dsviewer.viewer.maps.MAPS` the scene has but the photo, as the viewer draws it on the
  frustums (the points' colour maps and ranges);
* ``world/target/<i>``: target cameras, with ``photo``, ``render`` and ``depth`` (rendered);
* ``metrics``: ``metrics.json``'s numbers as text.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from dsviewer.errors import SetupError
from dsviewer.geometry.projection import denormalize_intrinsics
from dsviewer.viewer.color_modes import ColorContext
from dsviewer.viewer.export.point_files import pixel_columns, scalar_columns
from dsviewer.viewer.export.scene_points import DrawnLayer
from dsviewer.viewer.layers import Cameras
from dsviewer.viewer.maps import available_maps, map_colors
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.session.loaded import LoadedScene

INSTALL = "pip install 'dsviewer[rerun]'"
APPLICATION_ID = "dsviewer"
DEPTH_LAYERS = ("coarse", "final", "gt", "sfm")  # each view's depth images, when the scene has them
PHOTO_MAP = "photo"  # the maps of viewer/maps.py but this one (logged as the view's photo)
BLUEPRINT_COLUMNS = ("photo", "depth/final", "depth/coarse", "maps/residual")


class RerunMissingError(SetupError):
    def __init__(self) -> None:
        super().__init__(f"--rerun needs the Rerun SDK, which is not installed: {INSTALL} "
                         "(or pip install 'rerun-sdk>=0.41').")  # fmt: skip


def rerun_available() -> bool:
    """Whether the SDK is installed, without importing it (the GUI asks when it starts)."""
    return importlib.util.find_spec("rerun") is not None


def require_rerun():
    """The ``rerun`` module, or :class:`RerunMissingError`."""
    try:
        import rerun
    except ImportError:
        raise RerunMissingError() from None
    return rerun


def context_path(view: int) -> str:
    return f"world/context/{view}"


def target_path(view: int) -> str:
    return f"world/target/{view}"


def _camera(rr, cameras: Cameras, index: int, frustum_depth: float) -> list:
    height, width = cameras.image_shape
    K = denormalize_intrinsics(cameras.intrinsics[index].double(), height, width).numpy()
    T = cameras.T_world_cam[index].double().numpy()
    return [rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]),
            rr.Pinhole(image_from_camera=K, resolution=[width, height],
                       camera_xyz=rr.ViewCoordinates.RDF, image_plane_distance=frustum_depth)]


def _depth_image(rr, depth: np.ndarray):
    """``[H, W]`` z-depth; 0 (Rerun's "no depth") where not finite and positive."""
    valid = np.isfinite(depth) & (depth > 0)
    return rr.DepthImage(np.where(valid, depth, 0.0).astype(np.float32), meter=1.0)


def _log_points(rr, recording, loaded: LoadedScene, context: ColorContext,
                drawn: list[DrawnLayer]) -> None:
    for layer in drawn:
        values = {**scalar_columns(context, layer.key, layer.kept),
                  **pixel_columns(loaded, layer.kept)}  # fmt: skip
        recording.log(f"world/points/{layer.key}", rr.Points3D(layer.points, colors=layer.colors),
                      rr.AnyValues(**values), static=True)  # fmt: skip


def _log_context(rr, recording, loaded: LoadedScene, context: ColorContext) -> None:
    layers, depth_scale = loaded.layers, loaded.view.frustum_scale
    depths = {key: POINT_LAYERS[key].depth(layers) for key in DEPTH_LAYERS}
    maps = [key for key in available_maps(layers, compared=False) if key != PHOTO_MAP]
    rgb = layers.rgb.numpy()
    for v in range(layers.num_views):
        path = context_path(v)
        recording.log(path, *_camera(rr, layers.context, v, depth_scale), static=True)
        recording.log(f"{path}/photo", rr.Image(rgb[v]), static=True)
        for key, depth in depths.items():
            if depth is not None:
                recording.log(f"{path}/depth/{key}", _depth_image(rr, depth[v].numpy()),
                              static=True)  # fmt: skip
        for key in maps:
            recording.log(f"{path}/maps/{key}", rr.Image(map_colors(context, key, v)),
                          static=True)  # fmt: skip


def _as_uint8(images) -> np.ndarray:
    """``[T, 3, H, W]`` float in [0, 1] -> ``[T, H, W, 3]`` uint8 (rounded as ``Layers.rgb``)."""
    scaled = np.clip(images.numpy(), 0.0, 1.0) * 255.0 + 0.5
    return np.floor(scaled).astype(np.uint8).transpose(0, 2, 3, 1)


def _log_targets(rr, recording, loaded: LoadedScene) -> None:
    layers, renders = loaded.layers, loaded.targets
    if layers.target is None:
        return
    rendered = {} if renders is None else {int(f): i for i, f in enumerate(renders.index.tolist())}
    photos = _as_uint8(layers.target.images)
    for t, frame in enumerate(layers.target.frames.tolist()):
        path = target_path(t)
        recording.log(path, *_camera(rr, layers.target, t, loaded.view.frustum_scale),
                      static=True)  # fmt: skip
        recording.log(f"{path}/photo", rr.Image(photos[t]), static=True)
        if int(frame) in rendered:
            i = rendered[int(frame)]
            recording.log(f"{path}/render", rr.Image(_as_uint8(renders.color[i:i + 1])[0]),
                          static=True)  # fmt: skip
            recording.log(f"{path}/depth", _depth_image(rr, renders.depth[i].numpy()),
                          static=True)  # fmt: skip


def _blueprint(rrb, loaded: LoadedScene):
    """A 3D view of the points and cameras (from the viewer's start camera) beside a grid: one
    row per context view, one column per :data:`BLUEPRINT_COLUMNS` entry."""
    layers = loaded.layers
    hidden = [f"- /{context_path(v)}/{part}/**" for v in range(layers.num_views)
              for part in ("depth", "maps")]  # fmt: skip
    if layers.target is not None:
        hidden += [f"- /{target_path(t)}/{part}/**" for t in range(layers.target.num_views)
                   for part in ("render", "depth")]  # fmt: skip
    start = loaded.view.start
    eye = rrb.archetypes.EyeControls3D(position=start.position, look_target=start.look_at,
                                       eye_up=start.up)  # fmt: skip
    # The layers the viewer hides at start are hidden too (listed in the blueprint panel).
    off = {f"world/points/{key}": rrb.EntityBehavior(visible=False)
           for key, layer in POINT_LAYERS.items() if not layer.shown_at_start}  # fmt: skip
    world = rrb.Spatial3DView(origin="world", contents=["+ /world/**", *hidden], name="3D",
                              eye_controls=eye, overrides=off)  # fmt: skip
    columns = BLUEPRINT_COLUMNS  # every scene has these
    grid = [rrb.Spatial2DView(origin=context_path(v), contents=f"$origin/{column}",
                              name=f"{v}: {column}")
            for v in range(layers.num_views) for column in columns]  # fmt: skip
    return rrb.Blueprint(rrb.Horizontal(world, rrb.Grid(*grid, grid_columns=len(columns)),
                                        column_shares=[1, 1]), collapse_panels=True)  # fmt: skip


def write_recording(path: Path, loaded: LoadedScene, context: ColorContext, metrics: dict,
                    drawn: list[DrawnLayer]) -> None:
    """Write the recording of ``loaded`` (its point layers as ``drawn``, its maps coloured by
    ``context``, ``metrics`` as its text) to ``path``."""
    rr = require_rerun()
    import rerun.blueprint as rrb

    # Rerun merges files of one recording id: each run of a comparison gets its own.
    recording = rr.RecordingStream(APPLICATION_ID,
                                   recording_id=f"{loaded.scene.key} ({loaded.run_name})")
    recording.save(str(path), default_blueprint=_blueprint(rrb, loaded))
    recording.log("world", rr.ViewCoordinates.RDF, static=True)
    _log_points(rr, recording, loaded, context, drawn)
    _log_context(rr, recording, loaded, context)
    _log_targets(rr, recording, loaded)
    text = json.dumps(metrics, indent=2)
    recording.log("metrics", rr.TextDocument(text, media_type=rr.MediaType.TEXT), static=True)
    recording.flush()
    recording.disconnect()
    # Rerun writes from a thread of its own and does not raise here on a failed write: a missing
    # or empty file makes the export's transaction fail instead of shipping a broken recording.
    if not path.is_file() or path.stat().st_size == 0:
        raise OSError(f"Rerun did not write {path.name} (the disk may be full or read-only)")
