"""``scene.glb``: the scene for every glTF viewer (Blender, three.js, PowerPoint), written with
trimesh.

One node per point layer, named after the layer's key (``final``, ``coarse``, ...): its points
(``POINTS`` primitives) with vertex colours as the viewer draws the layer at start
(:mod:`dsviewer.viewer.export.scene_points`); one node per camera, ``context camera <i> (frame
<n>)`` and ``target camera <i> (frame <n>)``: its frustum as eight line segments (``LINES``),
apex at the camera centre, the image's outer edge at the viewer's frustum depth, in the viewer's
frustum colours. Every position is in the user's units, turned to glTF's axes (+Y up, a camera
looks down -Z) by :func:`dsviewer.geometry.projection.opencv_to_gltf`, the one conversion;
nodes carry no transform.
"""

from __future__ import annotations

import numpy as np

from dsviewer.geometry.projection import image_corner_points, opencv_to_gltf
from dsviewer.viewer.export.scene_points import DrawnLayer
from dsviewer.viewer.layers import Cameras
from dsviewer.viewer.scene_nodes import FRUSTUM_COLORS
from dsviewer.viewer.session.loaded import LoadedScene

OPAQUE = 255


def frustum_segments(cameras: Cameras, depth: float) -> np.ndarray:
    """``[V, 8, 2, 3]`` line segments per camera (user frame): apex to each image corner, then
    the image's outer edge at z-depth ``depth``."""
    corners = image_corner_points(cameras.intrinsics.double(), cameras.T_world_cam.double(),
                                  depth).numpy()  # [V, 4, 3]  # fmt: skip
    apex = np.broadcast_to(cameras.centers.numpy()[:, None], corners.shape)
    following = np.roll(corners, -1, axis=1)
    return np.concatenate([np.stack([apex, corners], axis=2),
                           np.stack([corners, following], axis=2)], axis=1)  # fmt: skip


def camera_node_name(kind: str, index: int, frame: int) -> str:
    return f"{kind} camera {index} (frame {frame})"


def _rgba(colors: np.ndarray) -> np.ndarray:
    """uint8 ``[N, 3]`` -> ``[N, 4]`` opaque."""
    return np.concatenate([colors, np.full((len(colors), 1), OPAQUE, np.uint8)], axis=1)


def scene_glb(loaded: LoadedScene, drawn: list[DrawnLayer]) -> bytes:
    """The GLB bytes of ``loaded``'s point layers as ``drawn`` and its cameras."""
    import trimesh

    scene = trimesh.Scene()
    for layer in drawn:
        cloud = trimesh.PointCloud(opencv_to_gltf(layer.points), colors=_rgba(layer.colors))
        scene.add_geometry(cloud, node_name=layer.key, geom_name=layer.key)
    layers = loaded.layers
    for kind, cameras in (("context", layers.context), ("target", layers.target)):
        if cameras is None:
            continue
        segments = frustum_segments(cameras, loaded.view.frustum_scale)
        color = np.array([[*FRUSTUM_COLORS[kind], OPAQUE]], dtype=np.uint8)
        for i, frame in enumerate(cameras.frames.tolist()):
            path = trimesh.load_path(opencv_to_gltf(segments[i]))
            path.colors = np.repeat(color, len(path.entities), axis=0)
            name = camera_node_name(kind, i, int(frame))
            scene.add_geometry(path, node_name=name, geom_name=name)
    return scene.export(file_type="glb")

