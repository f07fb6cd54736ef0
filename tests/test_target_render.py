"""``dsviewer.viewer.target_render`` and the ``targets.png`` export on a hand-built plane scene.

Two context cameras see a tilted plane whose colour is a smooth function of the world point.
Every context pixel becomes a tiny isotropic Gaussian (0.1 px footprint, opacity 1) on the plane
with that colour, so a target camera equal to a context camera must reproduce the context image
(up to the 3DGS 0.3 px^2 dilation, which blends neighbouring pixels) and the plane depth. Expected
values (plane depth, colours, PSNR) are computed here in float64 numpy. About 10 s on 2 cores.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dsviewer.dataset.types import SceneViews, ViewSet
from dsviewer.geometry.similarity import Similarity
from dsviewer.model.types import Gaussians, Prediction
from dsviewer.viewer.target_render import (
    NO_FAR_PLANE,
    OFFICIAL_NEAR_FACTOR,
    camera_from_viser,
    render_at_camera,
    render_target_views,
    render_viewer_camera,
    select_views,
    target_figure_size,
    target_render_unavailable,
    to_uint8,
)

HEIGHT, WIDTH = 24, 32
NEAR, FAR = 1.0, 20.0
FOCAL = 1.1  # fy as a fraction of the height; fx gives the same focal length in pixels
NORMAL = np.array([0.1, -0.2, 1.0]) / np.linalg.norm([0.1, -0.2, 1.0])
OFFSET = float(NORMAL @ np.array([0.0, 0.0, 4.0]))  # the plane n . x = c passes (0, 0, 4)
SH_C0 = 0.28209479177387814  # the degree-0 real SH basis value, 1 / (2 sqrt(pi))
# Measured 35.1 dB (41.4 dB with camera 0's Gaussians alone): the 0.3 px^2 dilation and the
# other camera's interleaved Gaussians blend each pixel with its neighbours' colours.
MIN_PSNR_DB = 32.0
MAX_BLACK_PSNR_DB = 8.0  # an all-black render of this image: measured 5.07 dB


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    return np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array(
        [[1, 0, 0], [0, cp, -sp], [0, sp, cp]]
    )


def _pose(yaw: float, pitch: float, centre) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _rotation(yaw, pitch)
    T[:3, 3] = centre
    return T


K = np.array([[FOCAL * HEIGHT / WIDTH, 0, 0.5], [0, FOCAL, 0.5], [0, 0, 1]])
CONTEXT_POSES = np.stack([_pose(0.05, 0.02, (-0.2, 0.0, 0.0)), _pose(-0.08, -0.03, (0.3, 0.1, 0))])
AWAY_POSE = _pose(math.pi, 0.0, (-0.2, 0.0, 0.0))  # at camera 0, looking away from the plane


def _rays(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Camera rays ``[H, W, 3]`` with z = 1 through the pixel centres (u + 0.5) / W."""
    x = ((np.arange(width) + 0.5) / width - K[0, 2]) / K[0, 0]
    y = ((np.arange(height) + 0.5) / height - K[1, 2]) / K[1, 1]
    x, y = np.meshgrid(x, y)
    return np.stack((x, y, np.ones_like(x)), axis=-1)


def _plane_depth(T: np.ndarray) -> np.ndarray:
    rays_world = _rays() @ T[:3, :3].T
    return (OFFSET - NORMAL @ T[:3, 3]) / (rays_world @ NORMAL)  # [H, W]


def _colour(points: np.ndarray) -> np.ndarray:
    """A smooth colour ``[..., 3]`` in [0.15, 0.85] painted on the world points."""
    phases = np.array([0.0, 2.0, 4.0])
    return 0.5 + 0.35 * np.sin(2.2 * points[..., None, 0] + 1.7 * points[..., None, 1] + phases)


def _build(targets: list[np.ndarray], world_from_model: np.ndarray | None = None):
    depth = np.stack([_plane_depth(T) for T in CONTEXT_POSES])  # [V, H, W]
    points = np.stack([(_rays() * d[..., None]) @ T[:3, :3].T + T[:3, 3]
                       for d, T in zip(depth, CONTEXT_POSES, strict=True)])  # fmt: skip
    colours = _colour(points)  # [V, H, W, 3]
    images = torch.from_numpy(colours.transpose(0, 3, 1, 2)).float()
    n = points.shape[0] * HEIGHT * WIDTH
    # 0.1 px footprint: sigma = 0.1 * depth / focal_px, isotropic.
    sigma = 0.1 * depth.reshape(-1) / (FOCAL * HEIGHT)
    covariances = torch.from_numpy(sigma**2)[:, None, None] * torch.eye(3, dtype=torch.float64)
    harmonics = torch.from_numpy((colours.reshape(n, 3, 1) - 0.5) / SH_C0)
    gaussians = Gaussians(
        means=torch.from_numpy(points.reshape(1, n, 3)).float(),
        covariances=covariances[None].float(),
        harmonics=harmonics[None].float(),
        opacities=torch.ones(1, n),
    )
    views = len(CONTEXT_POSES)
    near, far = torch.full((views,), NEAR), torch.full((views,), FAR)
    depth_t = torch.from_numpy(depth).float()
    context = ViewSet(image=images, intrinsics=torch.from_numpy(K).float().expand(views, 3, 3),
                      extrinsics=torch.from_numpy(CONTEXT_POSES).float(), near=near, far=far,
                      index=torch.tensor([0, 10]), depth=depth_t)  # fmt: skip
    target = None
    if targets:
        t = len(targets)
        target = ViewSet(image=images[:1].expand(t, 3, HEIGHT, WIDTH).clone(),
                         intrinsics=context.intrinsics[:1].expand(t, 3, 3).clone(),
                         extrinsics=torch.from_numpy(np.stack(targets)).float(),
                         near=near[:1].expand(t), far=far[:1].expand(t),
                         index=torch.arange(t) + 3)  # fmt: skip
    h, w, candidates = HEIGHT // 4, WIDTH // 4, 4
    prediction = Prediction(
        coarse_inv_depth=1.0 / depth_t,
        mono_inv_residual=torch.zeros_like(depth_t),
        final_depth=depth_t,
        confidence=torch.full((views, h, w), 0.25),
        match_probs=torch.full((views, candidates, h, w), 0.25),
        inv_depth_candidates=torch.linspace(1 / FAR, 1 / NEAR, candidates)[None, :, None, None]
        .expand(views, candidates, h, w)
        .clone(),
        near=near,
        far=far,
        gaussians=gaussians,
    )
    transform = Similarity.identity()
    if world_from_model is not None:
        transform = Similarity.from_matrix(world_from_model)
    scene = SceneViews(key="plane/targets", source="test:targets", context=context,
                       target=target, world_from_model=transform)  # fmt: skip
    return scene, prediction, depth


def _similarity(scale: float = 2.5) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = scale * _rotation(0.7, -0.4)
    T[:3, 3] = [1.0, -2.0, 0.5]
    return T


def _layers(scene, prediction):
    from dsviewer.viewer.layers import build_layers

    return build_layers(scene, prediction)


@pytest.fixture(scope="module")
def plane():
    scene, prediction, depth = _build([CONTEXT_POSES[0], AWAY_POSE])
    renders = render_target_views(_layers(scene, prediction), backend="torch")
    return scene, prediction, depth, renders


def _numpy_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2)
    return float(-10.0 * np.log10(mse))


def test_target_at_a_context_camera_reproduces_its_image_and_plane_depth(plane):
    scene, _, depth, renders = plane
    assert renders is not None and renders.num_views == 2
    assert renders.index.tolist() == [3, 4]
    assert renders.color.shape == (2, 3, HEIGHT, WIDTH)
    assert renders.depth.shape == (2, HEIGHT, WIDTH)
    torch.testing.assert_close(renders.gt, scene.target.image)
    expected = scene.context.image[0].double().numpy()
    psnr = _numpy_psnr(renders.color[0].double().numpy(), expected)
    assert psnr > MIN_PSNR_DB
    assert float(renders.psnr[0]) == pytest.approx(psnr, abs=1e-3)
    assert renders.alpha[0].min() > 0.99  # opaque everywhere: the plane fills the view
    # Both targets sit at context camera 0: distance 0; the second looks the other way.
    np.testing.assert_allclose(renders.distance.numpy(), [0.0, 0.0], atol=1e-6)
    assert float(renders.angle[0]) == pytest.approx(0.0, abs=1e-3)
    opposite = np.degrees(np.arccos(np.clip(AWAY_POSE[:3, 2] @ CONTEXT_POSES[:, :3, 2].T, -1, 1)))
    assert float(renders.angle[1]) == pytest.approx(opposite.min(), abs=1e-6)
    # Each pixel blends Gaussians within ~2 px on the plane, so its depth lies within two pixel
    # steps of the plane depth there (measured: 0.57 steps, 0.45 % of the depth); nearer ones
    # composite first, so the blend leans towards the camera, never away from it.
    step = max(np.abs(np.diff(depth[0], axis=0)).max(), np.abs(np.diff(depth[0], axis=1)).max())
    error = renders.depth[0].double().numpy() - depth[0]
    assert np.abs(error).max() < 2.0 * step
    assert error.max() < 0.01 * step


def test_target_looking_away_renders_black_with_low_psnr(plane):
    scene, _, _, renders = plane
    assert torch.count_nonzero(renders.color[1]) == 0
    assert torch.count_nonzero(renders.alpha[1]) == 0 and torch.count_nonzero(renders.depth[1]) == 0
    expected = _numpy_psnr(np.zeros((3, HEIGHT, WIDTH)), scene.target.image[1].double().numpy())
    assert float(renders.psnr[1]) == pytest.approx(expected, abs=1e-3)
    assert expected < MAX_BLACK_PSNR_DB
    assert renders.mean_psnr == pytest.approx((float(renders.psnr[0]) + expected) / 2, abs=1e-3)


def test_no_renders_without_targets_or_gaussians():
    layers = _layers(*_build([])[:2])
    assert render_target_views(layers) is None
    assert "no target views" in target_render_unavailable(layers)
    scene, prediction, _ = _build([CONTEXT_POSES[0]])
    prediction.gaussians = None
    layers = _layers(scene, prediction)
    assert render_target_views(layers) is None
    assert "depth only" in target_render_unavailable(layers)


def test_select_views_spreads_evenly():
    assert select_views(3, None) == [0, 1, 2]
    assert select_views(3, 8) == [0, 1, 2]
    assert select_views(56, 8) == [0, 8, 16, 24, 31, 39, 47, 55]
    assert select_views(5, 1) == [0]


def test_camera_from_viser_identity_pose_looks_down_z():
    fov = math.radians(60.0)
    K_v, T, shape = camera_from_viser((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), fov, 1.5, 20)
    assert shape == (20, 30)
    torch.testing.assert_close(T, torch.eye(4, dtype=torch.float64))
    fy = 0.5 / math.tan(fov / 2)
    expected = torch.tensor([[fy * 20 / 30, 0, 0.5], [0, fy, 0.5], [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(K_v, expected)


def test_camera_from_viser_matches_viser_look_at_orientation():
    """viser's own look-at -> wxyz: the camera's +Z points at look_at and -Y along up."""
    from viser._viser import CameraHandle

    handle = CameraHandle(client=None)  # no client: only the orientation maths is exercised
    position, look_at = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.5, 5.0])
    up = np.array([0.0, 0.0, 1.0])
    handle._state.position, handle._state.look_at, handle._state.up_direction = (
        position, look_at, up)  # fmt: skip
    handle._update_wxyz()
    _, T, _ = camera_from_viser(handle._state.wxyz, position, 1.0, 1.0, 8)
    forward = (look_at - position) / np.linalg.norm(look_at - position)
    np.testing.assert_allclose(T[:3, 2].numpy(), forward, atol=1e-9)
    np.testing.assert_allclose(T[:3, 3].numpy(), position)
    assert float(T[:3, 1].numpy() @ up) < 0  # image rows run down, against the up vector
    torch.testing.assert_close(T[:3, :3] @ T[:3, :3].T, torch.eye(3, dtype=torch.float64))


def test_render_at_a_viser_camera_under_world_from_model_equals_the_target_render(plane):
    """The viewer shows the user's frame: a viser camera where the user sees context camera 0
    renders what the target render at camera 0 gives (Gaussians and cameras move together)."""
    from dsviewer.geometry.transforms import matrix_to_quaternion_wxyz

    _, _, _, renders = plane
    M = _similarity()
    scale = np.cbrt(np.linalg.det(M[:3, :3]))
    T0 = CONTEXT_POSES[0]
    R_user = (M[:3, :3] / scale) @ T0[:3, :3]  # the camera as the viewer shows it, user frame
    position = M[:3, :3] @ T0[:3, 3] + M[:3, 3]
    wxyz = matrix_to_quaternion_wxyz(torch.from_numpy(R_user)).numpy()
    fov = 2.0 * math.atan(0.5 / FOCAL)
    K_v, T_user, shape = camera_from_viser(wxyz, position, fov, WIDTH / HEIGHT, HEIGHT)
    assert shape == (HEIGHT, WIDTH)
    np.testing.assert_allclose(T_user[:3, :3].numpy(), R_user, atol=1e-9)
    np.testing.assert_allclose(K_v.numpy(), K, atol=1e-12)
    layers = _layers(*_build([CONTEXT_POSES[0]], world_from_model=M)[:2])
    image = render_at_camera(layers.gaussians, K_v, T_user, shape,
                             OFFICIAL_NEAR_FACTOR * NEAR * scale, NO_FAR_PLANE, backend="torch")
    assert image.dtype == np.uint8 and image.shape == (HEIGHT, WIDTH, 3)
    expected = to_uint8(renders.color[0])
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1
    # The GUI's one call does the same from the layers (their near plane).
    via_layers = render_viewer_camera(layers, wxyz, position, fov, WIDTH / HEIGHT, HEIGHT,
                                      backend="torch")  # fmt: skip
    np.testing.assert_array_equal(via_layers, image)


def test_export_writes_targets_png_and_psnr(plane, tmp_path):
    from PIL import Image

    from dsviewer.viewer.export import export_scene
    from dsviewer.viewer.session.loaded import run_prediction

    _, _, _, renders = plane
    # A non-trivial world_from_model: the images and PSNR do not depend on it.
    scene, prediction, _ = _build([CONTEXT_POSES[0], AWAY_POSE], world_from_model=_similarity())
    result = export_scene(tmp_path / "out", run_prediction(scene, lambda _s: prediction))
    assert "targets.png" in result.files
    with Image.open(tmp_path / "out" / "targets.png") as image:
        assert image.size == target_figure_size(2, HEIGHT, WIDTH)
        assert np.asarray(image.convert("RGB")).std() > 20  # not a blank canvas
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["targets"]["index"] == [3, 4]
    np.testing.assert_allclose(metrics["targets"]["psnr"], renders.psnr.numpy(), atol=1e-4)
    assert metrics["targets"]["mean_psnr"] == pytest.approx(renders.mean_psnr, abs=1e-4)
    scale = np.cbrt(np.linalg.det(_similarity()[:3, :3]))  # distances in the user's units
    np.testing.assert_allclose(metrics["targets"]["distance_to_context"], 0.0, atol=1e-5)
    baseline = np.linalg.norm(CONTEXT_POSES[0][:3, 3] - CONTEXT_POSES[1][:3, 3])
    assert metrics["targets"]["context_baseline"] == pytest.approx(scale * baseline, rel=1e-6)
    assert "targets.png" in metrics["files"]
    # Without target views an overwrite leaves no stale targets.png and says why.
    scene, prediction, _ = _build([])
    result = export_scene(tmp_path / "out", run_prediction(scene, lambda _s: prediction),
                          overwrite=True)  # fmt: skip
    assert not (tmp_path / "out" / "targets.png").exists()
    assert "no target views" in result.metrics["targets"]["skipped"]
