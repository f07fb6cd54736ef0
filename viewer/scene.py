"""Pure functions that turn a scene's layers into viser scene nodes.

Nothing here keeps state: :class:`SceneArrays` is the numpy form of one :class:`Layers` (built
once per scene), and the ``add_*`` functions create nodes on a server from it. Scene paths:
``/context/<i>/frustum``, ``/target/<i>/frustum``, ``/layers/<layer>/view_<i>``,
``/layers/splats``, ``/layers/residual_vectors/view_<i>``.

Camera convention at this boundary: viser frustums and client cameras use OpenCV axes
(+X right, +Y down, +Z forward) and ``wxyz`` + position of the camera in the world, i.e. exactly
our ``T_world_cam``; only the rotation's quaternion form is converted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from viewer import colormaps

if TYPE_CHECKING:
    import viser

    from src.dataset.types import ViewSet
    from viewer.layers import Layers

PointLayer = Literal["coarse", "final", "residual", "gt", "centers"]
POINT_LAYERS: tuple[PointLayer, ...] = ("coarse", "final", "residual", "gt", "centers")
ColorMode = Literal["rgb", "residual", "confidence", "depth", "gt_error"]
COLOR_MODES: tuple[ColorMode, ...] = ("rgb", "residual", "confidence", "depth", "gt_error")
AnalysisColorMode = Literal[
    "consistency_final", "consistency_coarse", "inconsistent_final", "clamp_final",
    "depth_edge", "flying_pixel", "gt_error_final", "gt_error_coarse",
]
# The per-pixel maps of ``SceneAnalysis.color_modes()``, in dropdown order.
ANALYSIS_COLOR_MODES: tuple[AnalysisColorMode, ...] = (
    "consistency_final", "consistency_coarse", "inconsistent_final", "clamp_final",
    "depth_edge", "flying_pixel", "gt_error_final", "gt_error_coarse",
)  # fmt: skip
CONSISTENCY_RANGE = 3.0  # multi-view error colour range: [0, 3 x threshold]
ResidualUnit = Literal["inverse", "metric"]
SubsampleMode = Literal["random", "stride"]

CONTEXT_COLOR = (230, 120, 20)
TARGET_COLOR = (40, 110, 230)
NO_DATA_COLOR = (128, 128, 128)
FLAG_OFF_COLOR = (205, 205, 205)  # two-colour flag maps: not flagged
FLAG_ON_COLOR = (178, 24, 43)  # flagged


@dataclass
class SceneArrays:
    """Flat numpy views of one :class:`Layers`; ``P = H * W`` pixels per view, (h, w) order."""

    points: dict[str, np.ndarray]  # layer -> [V, P, 3] float32 world points
    valid: dict[str, np.ndarray]  # layer -> [V, P] bool (finite; GT: depth known)
    depth: dict[str, np.ndarray]  # layer -> [V, P] float32 metric z-depth
    residual: dict[str, np.ndarray]  # "inverse" / "metric" -> [V, P] float32
    confidence: np.ndarray  # [V, P] float32 in [0, 1]
    rgb: np.ndarray  # [V, P, 3] uint8 context images
    gaussian_rgb: np.ndarray | None  # [V, P, 3] uint8 DC colour of the pixel-aligned Gaussians
    gt_depth: np.ndarray | None  # [V, P] float32, 0 where unknown
    rank: np.ndarray  # [P] int32: a fixed random order of the pixels, for random subsampling
    image_shape: tuple[int, int]

    @property
    def num_views(self) -> int:
        return int(self.rgb.shape[0])


def sh_dc_to_rgb(harmonics_dc: np.ndarray) -> np.ndarray:
    """DC colour of 3DGS harmonics ``[..., 3]`` -> uint8 ``[..., 3]`` (0.5 + C0 * dc, clamped)."""
    rgb = np.asarray(harmonics_dc, dtype=np.float32) * np.float32(0.28209479177387814 * 255.0)
    rgb += np.float32(0.5 * 255.0)
    return np.rint(np.clip(rgb, 0.0, 255.0, out=rgb), out=rgb).astype(np.uint8)


def arrays_from_layers(layers: Layers, T_world_cam, seed: int = 0) -> SceneArrays:
    """Convert ``layers`` once to contiguous numpy buffers (float32 points, uint8 colours).

    ``T_world_cam`` ``[V, 4, 4]`` (the context extrinsics) gives the Gaussian centres' depth.
    """
    V, H, W = layers.final_depth.shape
    P = H * W

    def flat(t, channels: int | None = None) -> np.ndarray:
        a = t.detach().cpu().numpy()
        return np.ascontiguousarray(a.reshape(V, P, channels) if channels else a.reshape(V, P))

    points = {
        "coarse": flat(layers.coarse_points, 3).astype(np.float32, copy=False),
        "final": flat(layers.final_points, 3).astype(np.float32, copy=False),
    }
    points["residual"] = points["final"]  # same geometry, coloured by the residual
    depth = {"coarse": flat(layers.coarse_depth), "final": flat(layers.final_depth)}
    depth["residual"] = depth["final"]
    gt_depth = None
    if layers.gt_points is not None and layers.gt_depth is not None:
        points["gt"] = flat(layers.gt_points, 3).astype(np.float32, copy=False)
        gt_depth = flat(layers.gt_depth).astype(np.float32, copy=False)
        depth["gt"] = gt_depth
    gaussian_rgb = None
    if layers.gaussians is not None:
        means = layers.gaussians.means[0].detach().cpu().numpy().astype(np.float32)  # [N, 3]
        if means.shape[0] == V * P:  # pixel-aligned: one Gaussian per context pixel
            points["centers"] = means.reshape(V, P, 3)
            extrinsics = np.asarray(T_world_cam, dtype=np.float32)
            depth["centers"] = _camera_depth(points["centers"], extrinsics)
            dc = layers.gaussians.harmonics[0, :, :, 0].detach().cpu().numpy()  # [N, 3]
            gaussian_rgb = sh_dc_to_rgb(dc).reshape(V, P, 3)
    # A point is finite where its depth is (the unprojection is affine in the depth).
    depth = {k: v.astype(np.float32, copy=False) for k, v in depth.items()}
    valid = {name: np.isfinite(d) & (d > 0) for name, d in depth.items() if name != "residual"}
    valid["residual"] = valid["final"]
    # One fixed random order of the pixels, shared by the views (stable random subsampling).
    rank = np.random.default_rng(seed).permutation(P).astype(np.int32)
    return SceneArrays(
        points=points,
        valid=valid,
        depth=depth,
        residual={
            "inverse": flat(layers.residual_inv).astype(np.float32, copy=False),
            "metric": flat(layers.residual_metric).astype(np.float32, copy=False),
        },
        confidence=flat(layers.confidence).astype(np.float32, copy=False),
        rgb=flat(layers.rgb, 3),
        gaussian_rgb=gaussian_rgb,
        gt_depth=gt_depth,
        rank=rank,
        image_shape=(H, W),
    )


def _camera_depth(points: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    """z-depth of world points ``[V, P, 3]`` in their own view's camera -> ``[V, P]``."""
    axis = T_world_cam[:, :3, 2].astype(np.float32)  # [V, 3] optical axis in the world
    offset = (T_world_cam[:, :3, 3] * T_world_cam[:, :3, 2]).sum(-1).astype(np.float32)  # [V]
    return np.stack([points[v] @ axis[v] - offset[v] for v in range(points.shape[0])])


# --- colours ------------------------------------------------------------------------------------


@dataclass
class ColorRanges:
    """Value ranges of the colour modes for one scene (symmetric limits for signed data)."""

    residual_limit: float
    depth_low: float
    depth_high: float
    gt_error_limit: float


def color_ranges(
    arrays: SceneArrays, residual_unit: ResidualUnit, percentile: float = 98.0
) -> ColorRanges:
    """Robust ranges: ``percentile`` of |residual| / |GT error|; 2nd-98th percentile of depth."""
    final_ok = arrays.valid["final"]
    residual = arrays.residual[residual_unit][final_ok]
    depth = arrays.depth["final"][final_ok]
    sample = depth[:: max(1, depth.size // 1_000_000)]
    low, high = (np.percentile(sample, [2.0, 98.0]) if sample.size else (0.0, 1.0))
    gt_limit = 1.0
    if arrays.gt_depth is not None:
        # One range for the coarse and the final error, so the two layers compare directly.
        errors = [
            arrays.depth[layer][known] - arrays.gt_depth[known]
            for layer in ("coarse", "final")
            for known in [arrays.valid[layer] & (arrays.gt_depth > 0)]
        ]
        gt_limit = max(colormaps.robust_limit(e, percentile) for e in errors)
    return ColorRanges(
        residual_limit=colormaps.robust_limit(residual, percentile),
        depth_low=float(low),
        depth_high=float(max(high, low + 1e-6)),
        gt_error_limit=gt_limit,
    )


def point_colors(
    arrays: SceneArrays,
    layer: PointLayer,
    mode: ColorMode,
    view: int,
    indices: np.ndarray,
    ranges: ColorRanges,
    residual_unit: ResidualUnit,
) -> np.ndarray:
    """Colours ``[n, 3]`` uint8 of the points ``indices`` of ``view`` in ``layer``.

    The residual layer is always coloured by the residual (that is its purpose); ``rgb`` on the
    Gaussian-centre layer shows the Gaussians' own DC colour.
    """
    if layer == "residual":
        mode = "residual"
    if mode == "rgb":
        source = arrays.gaussian_rgb if layer == "centers" else arrays.rgb
        return source[view, indices]
    if mode == "residual":
        values = arrays.residual[residual_unit][view, indices]
        return colormaps.apply_diverging(values, ranges.residual_limit)
    if mode == "confidence":
        return colormaps.apply_sequential(arrays.confidence[view, indices], 0.0, 1.0)
    if mode == "depth":
        values = arrays.depth[layer][view, indices]
        return colormaps.apply_sequential(values, ranges.depth_low, ranges.depth_high)
    if mode == "gt_error":
        if arrays.gt_depth is None:
            return np.broadcast_to(np.uint8(NO_DATA_COLOR), (len(indices), 3)).copy()
        gt = arrays.gt_depth[view, indices]
        error = arrays.depth[layer][view, indices] - gt
        colors = colormaps.apply_diverging(error, ranges.gt_error_limit)
        colors[gt <= 0] = NO_DATA_COLOR
        return colors
    raise ValueError(f"unknown colour mode {mode!r}; choose one of {', '.join(COLOR_MODES)}")


def analysis_kind(mode: AnalysisColorMode) -> Literal["sequential", "diverging", "flag"]:
    """How an analysis map is coloured: errors sequential, signed maps diverging, flags 2-colour."""
    if mode.startswith("consistency"):
        return "sequential"
    if mode.startswith("gt_error") or mode == "clamp_final":
        return "diverging"
    return "flag"


def analysis_colors(
    values: np.ndarray, mode: AnalysisColorMode, threshold: float, gt_error_limit: float
) -> np.ndarray:
    """Colours ``[n, 3]`` uint8 of analysis map ``values`` ``[n]`` (NaN: not defined -> grey).

    Multi-view errors: sequential on ``[0, CONSISTENCY_RANGE x threshold]``; GT relative errors:
    diverging on ``[-gt_error_limit, gt_error_limit]``; the clamp map (-1 near, +1 far):
    diverging on [-1, 1]; flags: :data:`FLAG_OFF_COLOR` / :data:`FLAG_ON_COLOR`.
    """
    values = np.asarray(values, dtype=np.float32)
    defined = np.isfinite(values)
    values = np.where(defined, values, np.float32(0.0))  # coloured grey below
    kind = analysis_kind(mode)
    if kind == "sequential":
        colors = colormaps.apply_sequential(values, 0.0, CONSISTENCY_RANGE * threshold)
    elif kind == "diverging":
        limit = 1.0 if mode == "clamp_final" else gt_error_limit
        colors = colormaps.apply_diverging(values, limit)
    else:
        flagged = (values > 0.5)[:, None]
        colors = np.where(flagged, np.uint8(FLAG_ON_COLOR), np.uint8(FLAG_OFF_COLOR))
        colors = colors.astype(np.uint8)
    colors[~defined] = NO_DATA_COLOR
    return colors


def nearest_to_ray(points: np.ndarray, origin: np.ndarray, direction: np.ndarray):
    """``(index, angle)``: the point ``[n, 3]`` seen closest to the ray, as an angle (radians).

    Points behind the ray origin are ignored; ``(-1, inf)`` when none is in front.
    """
    direction = np.asarray(direction, np.float64)
    direction = direction / max(np.linalg.norm(direction), 1e-12)
    offsets = np.asarray(points, np.float64) - np.asarray(origin, np.float64)  # [n, 3]
    along = offsets @ direction  # [n]
    across = np.linalg.norm(offsets - along[:, None] * direction, axis=-1)
    angle = np.where(along > 0, np.arctan2(across, np.maximum(along, 1e-12)), np.inf)
    if angle.size == 0 or not np.isfinite(angle.min()):
        return -1, float("inf")
    index = int(np.argmin(angle))
    return index, float(angle[index])


# --- selection ----------------------------------------------------------------------------------


@dataclass
class PointFilter:
    """Which points of a layer are shown."""

    min_confidence: float = 0.0  # absolute match probability
    depth_low: float = 0.0
    depth_high: float = float("inf")
    budget_per_view: int = 100_000
    subsample: SubsampleMode = "random"
    pixel_mask: np.ndarray | None = None  # [V, P] bool: pixels allowed (analysis filters)


def confidence_threshold(arrays: SceneArrays, percentile: float) -> float:
    """The match-probability value below which ``percentile`` % of the pixels lie."""
    if percentile <= 0:
        return 0.0
    conf = arrays.confidence.reshape(-1)
    return float(np.percentile(conf[:: max(1, conf.size // 1_000_000)], percentile))


def select_points(arrays: SceneArrays, layer: PointLayer, view: int, filt: PointFilter):
    """Indices ``[n]`` (into the view's P pixels, ascending) of the points to send.

    Filters by validity, confidence and the layer's depth, then keeps at most
    ``budget_per_view``: ``random`` keeps the points of lowest fixed random rank (stable when
    filters change), ``stride`` every k-th remaining pixel.
    """
    depth = arrays.depth[layer][view]
    keep = arrays.valid[layer][view] & (depth >= filt.depth_low) & (depth <= filt.depth_high)
    if filt.min_confidence > 0:
        keep &= arrays.confidence[view] >= filt.min_confidence
    if filt.pixel_mask is not None:
        keep &= filt.pixel_mask[view]
    indices = np.flatnonzero(keep)
    budget = max(int(filt.budget_per_view), 0)
    if indices.size <= budget:
        return indices
    if filt.subsample == "stride":
        step = int(np.ceil(indices.size / budget))
        return indices[::step]
    ranks = arrays.rank[indices]
    chosen = np.argpartition(ranks, budget - 1)[:budget]
    return np.sort(indices[chosen])


# --- nodes --------------------------------------------------------------------------------------


def camera_pose(T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(wxyz [4], position [3])`` of a camera-to-world matrix ``[4, 4]`` (OpenCV axes)."""
    import torch

    from src.geometry.transforms import matrix_to_quaternion_wxyz

    R = torch.as_tensor(np.asarray(T_world_cam, dtype=np.float64)[:3, :3])
    wxyz = matrix_to_quaternion_wxyz(R).numpy()
    return wxyz, np.asarray(T_world_cam, dtype=np.float64)[:3, 3].copy()


def frustum_scale(arrays: SceneArrays) -> float:
    """A frustum size that reads well: a tenth of the median final depth."""
    depth = arrays.depth["final"][arrays.valid["final"]]
    return 0.1 * float(np.median(depth)) if depth.size else 0.3


def up_direction(extrinsics: np.ndarray) -> np.ndarray:
    """World 'up' ``[3]``: the mean of the cameras' -Y axes (OpenCV's Y points down)."""
    up = -np.asarray(extrinsics)[:, :3, 1].mean(axis=0)
    norm = np.linalg.norm(up)
    return up / norm if norm > 1e-9 else np.array([0.0, 0.0, 1.0])


def _thumbnail(image_chw: np.ndarray, max_side: int) -> np.ndarray:
    """``[3, H, W]`` float in [0, 1] -> ``[h, w, 3]`` uint8 with the longer side <= max_side."""
    hwc = np.rint(np.clip(np.transpose(image_chw, (1, 2, 0)), 0, 1) * 255).astype(np.uint8)
    step = max(1, int(np.ceil(max(hwc.shape[:2]) / max_side)))
    return np.ascontiguousarray(hwc[::step, ::step])


def add_frustums(
    server: viser.ViserServer,
    prefix: str,
    views: ViewSet,
    color: tuple[int, int, int],
    scale: float,
    image_max_side: int = 256,
) -> list[viser.CameraFrustumHandle]:
    """One frustum per view at ``{prefix}/{i}/frustum`` with its image and true FOV."""
    from src.geometry.projection import vertical_fov

    fov = vertical_fov(views.intrinsics.double()).numpy()  # [V]
    K = views.intrinsics.double().numpy()
    images = views.image.float().numpy()
    handles = []
    for i in range(views.num_views):
        wxyz, position = camera_pose(views.extrinsics[i].numpy())
        # tan(hfov/2) / tan(vfov/2) = fy / fx in normalized units (W / H for square pixels).
        aspect = float(K[i, 1, 1] / K[i, 0, 0])
        handle = server.scene.add_camera_frustum(
            f"{prefix}/{i}/frustum",
            fov=float(fov[i]),
            aspect=aspect,
            scale=scale,
            thickness=0.04 * scale,
            color=color,
            image=_thumbnail(images[i], image_max_side),
            wxyz=wxyz,
            position=position,
        )
        handles.append(handle)
    return handles


def add_point_layer(
    server: viser.ViserServer,
    name: str,
    points: np.ndarray,
    colors: np.ndarray,
    point_size: float,
    visible: bool = True,
) -> viser.PointCloudHandle:
    """A point cloud ``points`` ``[n, 3]`` float32 with ``colors`` ``[n, 3]`` uint8.

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


def add_splats(
    server: viser.ViserServer,
    name: str,
    layers: Layers,
    indices: np.ndarray,
    offset: np.ndarray,
    visible: bool = True,
    rgbs: np.ndarray | None = None,
) -> viser.GaussianSplatHandle:
    """The predicted Gaussians ``indices`` (into the flat N) as viser splats, shifted by offset.

    ``rgbs`` ``[N, 3]`` uint8 (all Gaussians) replaces their DC colour (opacity/scale modes).
    """
    g = layers.gaussians
    assert g is not None
    centers = g.means[0].detach().cpu().numpy()[indices].astype(np.float32)  # [n, 3]
    covariances = g.covariances[0].detach().cpu().numpy()[indices].astype(np.float32)
    if rgbs is None:
        rgbs = sh_dc_to_rgb(g.harmonics[0, :, :, 0].detach().cpu().numpy()[indices])  # [n, 3]
    else:
        rgbs = np.asarray(rgbs, dtype=np.uint8)[indices]
    opacities = g.opacities[0].detach().cpu().numpy()[indices].astype(np.float32)[:, None]
    return server.scene.add_gaussian_splats(
        name,
        centers=centers,
        covariances=covariances,
        rgbs=np.ascontiguousarray(rgbs),
        opacities=opacities,
        position=tuple(float(x) for x in offset),
        visible=visible,
    )


def select_gaussians(layers: Layers, budget: int, min_opacity: float = 0.0) -> np.ndarray:
    """Indices of at most ``budget`` Gaussians (most opaque first kept), sorted."""
    g = layers.gaussians
    assert g is not None
    opacity = g.opacities[0].detach().cpu().numpy()
    indices = np.flatnonzero((opacity >= min_opacity) & np.isfinite(opacity))
    if indices.size > budget:
        chosen = np.argpartition(-opacity[indices], budget - 1)[:budget]
        indices = np.sort(indices[chosen])
    return indices


def side_by_side_offset(arrays: SceneArrays, extrinsics: np.ndarray) -> np.ndarray:
    """A shift ``[3]`` along the cameras' mean right axis that clears the final point cloud."""
    right = np.asarray(extrinsics)[:, :3, 0].mean(axis=0)
    right /= max(np.linalg.norm(right), 1e-9)
    step = max(1, arrays.points["final"].shape[1] // 50_000)  # a strided sample is plenty
    pts = arrays.points["final"][:, ::step][arrays.valid["final"][:, ::step]]
    if pts.size == 0:
        return right
    along = pts @ right
    low, high = np.percentile(along, [1.0, 99.0])
    return right * float(1.15 * (high - low) + 1e-6)
