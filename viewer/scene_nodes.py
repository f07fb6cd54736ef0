"""Pure functions that add scene nodes to a viser server (live viewer and scene.html alike).

Camera convention at this boundary: viser frustums and client cameras use OpenCV axes
(+X right, +Y down, +Z forward) and ``wxyz`` + position of the camera in the world, i.e. exactly
our ``T_world_cam`` in the user's frame; poses go through ``viser.transforms``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.layers import Cameras

FRUSTUM_COLORS = {"context": (230, 120, 20), "target": (40, 110, 230)}
THUMBNAIL_SIDE = 256


def camera_pose(T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(wxyz [4], position [3])`` of a camera-to-world matrix ``[4, 4]``."""
    import viser.transforms as vtf

    T = np.asarray(T_world_cam, dtype=np.float64)
    return vtf.SO3.from_matrix(T[:3, :3]).wxyz, T[:3, 3].copy()


def thumbnail(image_chw: np.ndarray, max_side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """``[3, H, W]`` float in [0, 1] -> ``[h, w, 3]`` uint8 with the longer side <= max_side."""
    hwc = np.rint(np.clip(np.transpose(image_chw, (1, 2, 0)), 0, 1) * 255).astype(np.uint8)
    return shrink(hwc, max_side)


def shrink(image: np.ndarray, max_side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """``[H, W, C]`` -> every k-th pixel, so that the longer side is at most ``max_side``."""
    step = max(1, int(np.ceil(max(image.shape[:2]) / max_side)))
    return np.ascontiguousarray(image[::step, ::step])


def frustum_geometry(cameras: Cameras, index: int) -> dict:
    """``fov`` (vertical, radians) and ``aspect`` of one camera from its normalized intrinsics."""
    K = cameras.intrinsics[index].double().numpy()
    # tan(hfov/2) / tan(vfov/2) = fy / fx in normalized units (W / H for square pixels).
    return {"fov": float(2.0 * np.arctan(0.5 / K[1, 1])), "aspect": float(K[1, 1] / K[0, 0])}


def add_frustums(
    server: viser.ViserServer,
    prefix: str,
    cameras: Cameras,
    scale: float,
    kind: Literal["context", "target"],
    by_frame: bool = True,
) -> list[viser.CameraFrustumHandle]:
    """One frustum per view with its image and true field of view.

    Named ``{prefix}/frame <frame index>`` (readable, for scene.html), or with ``by_frame=False``
    ``{prefix}/view_<i>`` (stable across scenes, so the live viewer replaces its nodes in place).
    """
    images = cameras.images.numpy()
    handles = []
    for i in range(cameras.num_views):
        wxyz, position = camera_pose(cameras.T_world_cam[i].numpy())
        handles.append(
            server.scene.add_camera_frustum(
                f"{prefix}/frame {int(cameras.frames[i])}" if by_frame else f"{prefix}/view_{i}",
                scale=scale, thickness=0.04 * scale, color=FRUSTUM_COLORS[kind],
                image=thumbnail(images[i]), wxyz=wxyz, position=position,
                **frustum_geometry(cameras, i),
            )
        )  # fmt: skip
    return handles


def add_point_cloud(
    server: viser.ViserServer,
    name: str,
    points: np.ndarray,
    colors: np.ndarray,
    point_size: float,
    visible: bool = True,
) -> viser.PointCloudHandle:
    """A point cloud ``[n, 3]`` float32 with uint8 ``colors`` ``[n, 3]``.

    float32 precision (viser's float16 default quantizes far points) and flat shading (so
    colormap colours arrive as they are).
    """
    return server.scene.add_point_cloud(
        name,
        points=np.ascontiguousarray(points, dtype=np.float32),
        colors=np.ascontiguousarray(colors, dtype=np.uint8),
        point_size=point_size,
        point_shape="square",
        precision="float32",
        point_shading="flat",
        visible=visible,
    )
