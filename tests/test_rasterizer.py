"""The CPU Gaussian rasterizers (the compiled loop and its PyTorch twin) against analytic images,
an independent per-Gaussian loop and each other."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from dsviewer.geometry.projection import project_points
from dsviewer.geometry.spherical_harmonics import SH_C0, SH_C1, sh_basis, sh_to_rgb
from dsviewer.model.decoder.rasterizer_torch import rasterize_torch
from dsviewer.model.decoder.render import RASTERIZERS, RenderInputError, psnr, render_gaussians
from dsviewer.model.types import Gaussians

SIZE = 33  # odd, so the principal point falls on the centre of pixel 16
FOCAL = 1.2  # normalized: f_px = FOCAL * SIZE
K = torch.tensor([[FOCAL, 0.0, 0.5], [0.0, FOCAL, 0.5], [0.0, 0.0, 1.0]])


CPU_RASTERIZERS = ("numba", "torch")


@pytest.fixture(params=CPU_RASTERIZERS)
def rasterize(request):
    """Each CPU backend's one-view function: every rule below holds for both."""
    return RASTERIZERS[request.param].rasterize


def _pose() -> torch.Tensor:
    """A camera-to-world pose that is neither identity nor axis aligned."""
    angle = 0.4
    c, s = math.cos(angle), math.sin(angle)
    R_y = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    R_x = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    T = torch.eye(4)
    T[:3, :3] = R_y @ R_x
    T[:3, 3] = torch.tensor([0.3, -1.0, 2.0])
    return T


T_WORLD_CAM = _pose()


def _world(point_cam: list[float]) -> torch.Tensor:
    p = torch.tensor(point_cam)
    return T_WORLD_CAM[:3, :3] @ p + T_WORLD_CAM[:3, 3]


def _isotropic(points_cam, scales, opacities, harmonics) -> tuple[torch.Tensor, ...]:
    means = torch.stack([_world(p) for p in points_cam])
    s = torch.tensor(scales)
    covariances = torch.eye(3) * (s**2)[:, None, None]  # isotropic: same in every frame
    return means, covariances, harmonics, torch.tensor(opacities)


def _pixel_centres() -> torch.Tensor:
    v, u = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    return torch.stack((u, v), dim=-1).double() + 0.5  # [H, W, 2] pixel coordinates


def _analytic_alpha(centre_px, sigma2_px, opacity) -> torch.Tensor:
    """3DGS alpha of an isotropic footprint: o exp(-r^2 / 2 var), var = sigma^2 + 0.3."""
    r2 = ((_pixel_centres() - torch.tensor(centre_px, dtype=torch.float64)) ** 2).sum(-1)
    alpha = (opacity * torch.exp(-r2 / (2 * (sigma2_px + 0.3)))).clamp_max(0.99)
    return torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))


def test_single_gaussian_head_on_matches_analytic_footprint_and_sh_colour(rasterize):
    z, scale, opacity = 2.0, 0.03, 0.8
    harmonics = torch.zeros(1, 3, 4)
    harmonics[0, :, 0] = torch.tensor([0.9, -0.3, 0.2])
    harmonics[0, :, 1:] = torch.tensor([[0.1, 0.2, 0.3], [-0.2, 0.1, 0.0], [0.05, -0.1, 0.2]])
    means, covs, harm, op = _isotropic([[0.0, 0.0, z]], [scale], [opacity], harmonics)
    out = rasterize(
        means, covs, harm, op, K, T_WORLD_CAM, (SIZE, SIZE), 0.1, 100.0, torch.zeros(3)
    )
    f_px = FOCAL * SIZE
    sigma_px = f_px * scale / z  # 0.594 px
    expected_alpha = _analytic_alpha([SIZE / 2, SIZE / 2], sigma_px**2, opacity)
    assert out.alpha[16, 16].item() == pytest.approx(opacity, rel=1e-6)
    torch.testing.assert_close(out.alpha.double(), expected_alpha, atol=2e-6, rtol=1e-5)
    assert int((out.alpha > 0).sum()) == int((expected_alpha > 0).sum()) > 9

    # Colour: the view direction is the camera's +Z axis in the world frame.
    x, y, zz = T_WORLD_CAM[:3, 2].tolist()
    rgb = (
        0.5
        + SH_C0 * harmonics[0, :, 0]
        + SH_C1 * (-y * harmonics[0, :, 1] + zz * harmonics[0, :, 2] - x * harmonics[0, :, 3])
    )
    rgb = rgb.clamp_min(0)
    drawn = out.alpha > 0
    torch.testing.assert_close(
        out.color[:, drawn] / out.alpha[drawn],
        rgb[:, None].expand(3, int(drawn.sum())),
        atol=1e-5,
        rtol=1e-5,
    )
    torch.testing.assert_close(
        out.depth[drawn], torch.full((int(drawn.sum()),), z), atol=1e-5, rtol=0
    )
    assert (out.color[:, ~drawn] == 0).all() and (out.depth[~drawn] == 0).all()


def test_two_gaussians_nearer_wins_and_composite_is_front_to_back_blend(rasterize):
    z_near, z_far = 2.0, 3.0
    s_near, s_far = 0.05, 0.09
    o_near, o_far = 0.6, 0.9
    c_near, c_far = torch.tensor([1.0, 0.2, 0.1]), torch.tensor([0.1, 0.3, 1.0])
    harmonics = torch.zeros(2, 3, 1)
    harmonics[0, :, 0] = (c_far - 0.5) / SH_C0  # listed far one first: order must not matter
    harmonics[1, :, 0] = (c_near - 0.5) / SH_C0
    means, covs, harm, op = _isotropic(
        [[0.0, 0.0, z_far], [0.0, 0.0, z_near]], [s_far, s_near], [o_far, o_near], harmonics
    )
    background = torch.tensor([0.2, 0.3, 0.4])
    out = rasterize(
        means, covs, harm, op, K, T_WORLD_CAM, (SIZE, SIZE), 0.1, 100.0, background
    )

    f_px = FOCAL * SIZE
    centre = [SIZE / 2, SIZE / 2]
    a1 = _analytic_alpha(centre, (f_px * s_near / z_near) ** 2, o_near)
    a2 = _analytic_alpha(centre, (f_px * s_far / z_far) ** 2, o_far)
    weight_far = (1 - a1) * a2
    expected = a1 * c_near[:, None, None] + weight_far * c_far[:, None, None]
    expected = expected + ((1 - a1) * (1 - a2)) * background[:, None, None]
    torch.testing.assert_close(out.color.double(), expected.double(), atol=1e-5, rtol=1e-5)
    alpha = 1 - (1 - a1) * (1 - a2)
    torch.testing.assert_close(out.alpha.double(), alpha, atol=1e-5, rtol=1e-5)
    depth = torch.where(alpha > 0, (a1 * z_near + weight_far * z_far) / alpha.clamp_min(1e-12), 0.0)
    torch.testing.assert_close(out.depth.double(), depth, atol=1e-4, rtol=1e-5)
    # At the centre the near (red) one dominates even though the far one is more opaque.
    assert out.color[0, 16, 16] > out.color[2, 16, 16]


@pytest.mark.parametrize(
    ("z", "near", "far", "drawn"),
    [
        (-2.0, 0.1, 100.0, False),
        (0.5, 1.0, 100.0, False),
        (5.0, 1.0, 4.0, False),
        (2.0, 1.0, 4.0, True),
    ],
    ids=["behind-camera", "nearer-than-near", "beyond-far", "inside"],
)
def test_culling_by_near_far_and_behind_camera(rasterize, z, near, far, drawn):
    means, covs, harm, op = _isotropic([[0.0, 0.0, z]], [0.05], [0.9], torch.zeros(1, 3, 1))
    out = rasterize(
        means, covs, harm, op, K, T_WORLD_CAM, (SIZE, SIZE), near, far, torch.ones(3)
    )
    assert bool((out.alpha > 0).any()) == drawn
    if not drawn:
        assert (out.color == 1).all() and (out.depth == 0).all()


def test_off_centre_gaussian_lands_where_projection_helper_predicts(rasterize):
    point_cam = [0.31, -0.22, 2.5]
    means, covs, harm, op = _isotropic([point_cam], [0.06], [0.95], torch.zeros(1, 3, 1))
    out = rasterize(
        means, covs, harm, op, K, T_WORLD_CAM, (SIZE, SIZE), 0.1, 100.0, torch.zeros(3)
    )
    coords, depth = project_points(means, K, T_WORLD_CAM)
    predicted = coords[0] * SIZE  # pixel coordinates, pixel u spans [u, u + 1)
    peak = int(out.alpha.argmax())
    assert (peak % SIZE, peak // SIZE) == tuple(int(c) for c in predicted.floor())
    weights = out.alpha.double()
    centroid = (weights[..., None] * _pixel_centres()).sum((0, 1)) / weights.sum()
    torch.testing.assert_close(centroid.float(), predicted, atol=0.02, rtol=0)
    assert depth.item() == pytest.approx(point_cam[2], rel=1e-5)


def _reference_render(means, covs, harm, op, K_norm, T_world_cam, shape, near, far, background):
    """Literal 3DGS loop, independent of the rasterizer: autograd Jacobian, one Gaussian a step."""
    H, W = shape
    K_px = K_norm.double().clone()
    K_px[0] *= W
    K_px[1] *= H
    T_cam_world = torch.linalg.inv(T_world_cam.double())

    def to_pixel(p_world):
        p = T_cam_world[:3, :3] @ p_world + T_cam_world[:3, 3]
        return torch.stack(
            (K_px[0, 0] * p[0] / p[2] + K_px[0, 2], K_px[1, 1] * p[1] / p[2] + K_px[1, 2])
        )

    depth_of = (means.double() @ T_cam_world[:3, :3].T + T_cam_world[:3, 3])[:, 2]
    order = torch.argsort(depth_of)
    v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    pixels = torch.stack((u, v), -1).double() + 0.5
    T = torch.ones(H, W, dtype=torch.float64)
    done = torch.zeros(H, W, dtype=torch.bool)
    color = torch.zeros(H, W, 3, dtype=torch.float64)
    depth_sum = torch.zeros(H, W, dtype=torch.float64)
    clamped = 0
    centre = T_world_cam[:3, 3].double()
    for i in order.tolist():
        if not near < depth_of[i] < far:
            continue
        mean = means[i].double()
        J = torch.autograd.functional.jacobian(to_pixel, mean)  # [2, 3] = d pixel / d world
        cov2d = J @ covs[i].double() @ J.T + 0.3 * torch.eye(2, dtype=torch.float64)
        d = pixels - to_pixel(mean)
        power = -0.5 * torch.einsum("hwi,ij,hwj->hw", d, torch.linalg.inv(cov2d), d)
        alpha = op[i].double() * torch.exp(power)
        clamped += int((alpha > 0.99).sum())
        alpha = alpha.clamp_max(0.99)
        use = (alpha >= 1 / 255) & ~done
        stop = use & (T * (1 - alpha) < 1e-4)
        done |= stop
        use &= ~stop
        rgb = sh_to_rgb(harm[i].double(), mean - centre)
        color += torch.where(use[..., None], (alpha * T)[..., None] * rgb, 0.0)
        depth_sum += torch.where(use, alpha * T * depth_of[i], 0.0)
        T = torch.where(use, T * (1 - alpha), T)
    color += T[..., None] * background.double()
    return color.permute(2, 0, 1), 1 - T, int(done.sum()), clamped


@pytest.mark.parametrize(
    ("opacity_min", "variance"), [(0.2, 0.002), (0.9, 0.01)], ids=["sparse", "dense-saturating"]
)
def test_rasterizer_equals_literal_3dgs_loop(rasterize, opacity_min, variance):
    n, shape = 160, (20, 27)  # several front-to-back runs (max_pairs) with carried state
    means_cam = torch.rand(n, 3) * torch.tensor([1.2, 1.0, 2.0]) + torch.tensor([-0.6, -0.5, 1.5])
    means = means_cam @ T_WORLD_CAM[:3, :3].T + T_WORLD_CAM[:3, 3]
    A = torch.randn(n, 3, 3)
    covs = variance * (A @ A.transpose(-1, -2)) + 1e-4 * torch.eye(3)
    harm = 0.3 * torch.randn(n, 3, 9)
    op = opacity_min + (1 - opacity_min) * torch.rand(n)
    op[::4] = 1.0  # alpha reaches the 0.99 clamp near these centres
    background = torch.tensor([0.1, 0.5, 0.9])
    out = rasterize(
        means,
        covs,
        harm,
        op,
        K,
        T_WORLD_CAM,
        shape,
        0.1,
        3.2,
        background,
        **({"max_pairs": 3000} if rasterize is rasterize_torch else {}),
    )
    ref_color, ref_alpha, stopped, clamped = _reference_render(
        means, covs, harm, op, K, T_WORLD_CAM, shape, 0.1, 3.2, background
    )
    torch.testing.assert_close(out.alpha.double(), ref_alpha, atol=2e-5, rtol=0)
    torch.testing.assert_close(out.color.double(), ref_color, atol=2e-5, rtol=0)
    assert 0.3 < float(ref_alpha.mean())  # the scene is not empty
    if opacity_min > 0.5:  # the dense case exercises the 0.99 clamp and the T < 1e-4 stop
        assert stopped > 50 and clamped > 3


def test_sh_basis_is_orthonormal_with_3dgs_signs():
    n = 40000  # Fibonacci sphere quadrature
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = (1 - z * z).sqrt()
    dirs = torch.stack((r * torch.cos(phi), r * torch.sin(phi), z), -1)
    Y = sh_basis(dirs, 3)  # [n, 16]
    gram = 4 * math.pi * Y.T @ Y / n
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)
    # 3DGS degree-1 order and signs: (-y, z, -x).
    unit = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(
        sh_basis(unit, 1)[:, 1:],
        SH_C1
        * torch.tensor([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64),
    )


@pytest.mark.parametrize("backend", CPU_RASTERIZERS)
def test_render_gaussians_batches_views_and_checks_shapes(backend):
    means, covs, harm, op = _isotropic([[0.0, 0.0, 2.0]], [0.05], [0.9], torch.zeros(1, 3, 1))
    gaussians = Gaussians(
        means[None].repeat(2, 1, 1),
        covs[None].repeat(2, 1, 1, 1),
        harm[None].repeat(2, 1, 1, 1),
        op[None].repeat(2, 1),
    )
    gaussians.opacities[1] = 0.5
    intrinsics = K.expand(2, 3, 3, 3)
    extrinsics = T_WORLD_CAM.expand(2, 3, 4, 4)
    out = render_gaussians(
        gaussians,
        intrinsics,
        extrinsics,
        (SIZE, SIZE),
        0.1,
        torch.tensor([[100.0, 100.0, 1.0]] * 2),
        backend=backend,
    )
    assert out.color.shape == (2, 3, 3, SIZE, SIZE) and out.depth.shape == (2, 3, SIZE, SIZE)
    assert out.alpha[0, 0, 16, 16].item() == pytest.approx(0.9, rel=1e-6)
    assert out.alpha[1, 1, 16, 16].item() == pytest.approx(0.5, rel=1e-6)
    assert out.alpha[:, 2].max() == 0  # far = 1 culls it in the third view
    with pytest.raises(RenderInputError, match=r"\[B, V, 3, 3\]"):
        render_gaussians(gaussians, K, extrinsics, (SIZE, SIZE), 0.1, 100.0)
    with pytest.raises(RenderInputError, match="near"):
        render_gaussians(gaussians, intrinsics, extrinsics, (SIZE, SIZE), torch.ones(3), 100.0)


def test_compiled_loop_equals_torch_twin_on_a_crowded_scene():
    """Thousands of overlapping Gaussians, several threads and row bands, float32 as a model
    gives them: the compiled loop and the tensor version draw the same image to rounding."""
    generator = torch.Generator().manual_seed(3)
    n, shape = 3000, (61, 90)
    means_cam = torch.rand(n, 3, generator=generator) * torch.tensor([2.4, 2.0, 3.0])
    means_cam += torch.tensor([-1.2, -1.0, 1.0])
    means = means_cam @ T_WORLD_CAM[:3, :3].T + T_WORLD_CAM[:3, 3]
    A = torch.randn(n, 3, 3, generator=generator)
    covs = 0.004 * (A @ A.transpose(-1, -2)) + 1e-5 * torch.eye(3)
    harm = 0.3 * torch.randn(n, 3, 4, generator=generator)
    op = 0.3 + 0.7 * torch.rand(n, generator=generator)
    args = (means, covs, harm, op, K, T_WORLD_CAM, shape, 0.2, 3.5, torch.tensor([0.3, 0.6, 0.1]))
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_thread = RASTERIZERS["numba"].rasterize(*args)
        assert torch.get_num_threads() == 1  # numba's pool left torch's thread count alone
        torch.set_num_threads(2)  # two threads, eight bands: bands meet inside Gaussians
        ours = RASTERIZERS["numba"].rasterize(*args)
    finally:
        torch.set_num_threads(previous)
    for name in ("color", "alpha", "depth"):  # a pixel's blend order is the same in any band
        assert torch.equal(getattr(ours, name), getattr(one_thread, name))
    twin = rasterize_torch(*args)
    assert 0.2 < float((twin.alpha > 0.9999 - 1e-4).float().mean())  # many pixels stop early
    for name in ("color", "alpha", "depth"):
        torch.testing.assert_close(getattr(ours, name), getattr(twin, name), atol=5e-5, rtol=1e-5)


def test_auto_backend_on_cpu_is_the_compiled_loop_unless_gradients_are_needed(monkeypatch):
    means, covs, harm, op = _isotropic([[0.0, 0.0, 2.0]], [0.05], [0.9], torch.zeros(1, 3, 1))
    gaussians = Gaussians(means[None], covs[None], harm[None], op[None])
    calls = []
    original = RASTERIZERS["numba"]
    monkeypatch.setitem(RASTERIZERS, "numba", type(original)(
        lambda *a: calls.append(1) or original.rasterize(*a), original.runs_on, original.needs,
        original.differentiable))
    render_gaussians(gaussians, K[None, None], T_WORLD_CAM[None, None], (SIZE, SIZE), 0.1, 100.0)
    assert calls == [1]
    with pytest.raises(RenderInputError, match="'numba', 'torch'"):
        render_gaussians(gaussians, K[None, None], T_WORLD_CAM[None, None], (SIZE, SIZE), 0.1,
                         100.0, backend="opengl")  # fmt: skip
    with pytest.raises(RenderInputError, match="CUDA device"):
        render_gaussians(gaussians, K[None, None], T_WORLD_CAM[None, None], (SIZE, SIZE), 0.1,
                         100.0, backend="gsplat")  # fmt: skip

    # Gaussians that need gradients (a training step) get the tensor twin, which gives them.
    gaussians.opacities.requires_grad_(True)
    out = render_gaussians(gaussians, K[None, None], T_WORLD_CAM[None, None], (SIZE, SIZE), 0.1,
                           100.0)  # fmt: skip
    out.color.sum().backward()
    assert calls == [1] and float(gaussians.opacities.grad.abs().sum()) > 0
    with pytest.raises(RenderInputError, match="no gradients"):
        render_gaussians(gaussians, K[None, None], T_WORLD_CAM[None, None], (SIZE, SIZE), 0.1,
                         100.0, backend="numba")  # fmt: skip


def test_depth_order_is_the_stable_argsort():
    from dsviewer.model.decoder.rasterizer_torch import depth_order

    generator = torch.Generator().manual_seed(5)
    z = torch.rand(20000, generator=generator) * 30 + 0.01
    z[::9] = z[4]  # ties keep their index order
    z[::13] = math.inf  # culled ones go last
    for depths in (z, z.double(), torch.cat([z, torch.tensor([0.0, -1.0])])):  # fast and slow
        assert torch.equal(depth_order(depths), torch.argsort(depths, stable=True))


def test_psnr_of_known_error():
    a = torch.full((2, 3, 4, 5), 0.5)
    torch.testing.assert_close(psnr(a, a + 0.1), torch.full((2,), 20.0), atol=1e-4, rtol=0)
    assert float(psnr(a, a)[0]) == pytest.approx(100.0)


@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("gsplat") is None,
    reason="needs CUDA and gsplat",
)
def test_gsplat_and_torch_backends_agree():
    n = 400
    means_cam = torch.rand(n, 3) * torch.tensor([1.2, 1.0, 2.0]) + torch.tensor([-0.6, -0.5, 1.5])
    means = means_cam @ T_WORLD_CAM[:3, :3].T + T_WORLD_CAM[:3, 3]
    A = torch.randn(n, 3, 3)
    covs = 0.002 * (A @ A.transpose(-1, -2)) + 1e-4 * torch.eye(3)
    gaussians = Gaussians(
        means[None], covs[None], 0.3 * torch.randn(1, n, 3, 16), 0.05 + 0.85 * torch.rand(1, n)
    )  # below both backends' alpha clamps
    args = (
        K[None, None],
        T_WORLD_CAM[None, None],
        (48, 64),
        0.1,
        3.2,
        torch.tensor([0.1, 0.5, 0.9]),
    )
    ours = render_gaussians(gaussians, *args, backend="torch")
    cuda = Gaussians(
        *(
            t.cuda()
            for t in (
                gaussians.means,
                gaussians.covariances,
                gaussians.harmonics,
                gaussians.opacities,
            )
        )
    )
    theirs = render_gaussians(
        cuda, *(a.cuda() if isinstance(a, torch.Tensor) else a for a in args), backend="gsplat"
    )
    torch.testing.assert_close(theirs.alpha.cpu(), ours.alpha, atol=2e-3, rtol=0)
    torch.testing.assert_close(theirs.color.cpu(), ours.color, atol=2e-3, rtol=0)
    drawn = ours.alpha > 0.5
    torch.testing.assert_close(theirs.depth.cpu()[drawn], ours.depth[drawn], atol=1e-3, rtol=1e-3)


def test_projection_and_sh_match_gsplat_torch_reference():
    """gsplat's own CPU reference (``gsplat/cuda/_torch_impl.py``), where gsplat is installed."""
    reference = pytest.importorskip("gsplat.cuda._torch_impl")
    from dsviewer.geometry.projection import denormalize_intrinsics
    from dsviewer.geometry.transforms import invert_rigid
    from dsviewer.model.decoder.rasterizer_torch import project_gaussians

    n, (H, W) = 300, (48, 64)
    T = T_WORLD_CAM.double()
    K_off = torch.tensor([[1.1, 0.0, 0.47], [0.0, 1.3, 0.55], [0.0, 0.0, 1.0]], dtype=torch.float64)
    means_cam = torch.rand(n, 3, dtype=torch.float64) * 3 + torch.tensor([-1.5, -1.5, 0.5])
    means = means_cam @ T[:3, :3].T + T[:3, 3]
    A = torch.randn(n, 3, 3, dtype=torch.float64)
    covs = 0.003 * (A @ A.transpose(-1, -2)) + 1e-4 * torch.eye(3, dtype=torch.float64)
    harm = 0.3 * torch.randn(n, 3, 16, dtype=torch.float64)
    op = 0.05 + 0.9 * torch.rand(n, dtype=torch.float64)

    radii, means2d, depths, conics, _ = reference._fully_fused_projection(
        means, covs, invert_rigid(T)[None], denormalize_intrinsics(K_off, H, W)[None], W, H,
        eps2d=0.3, near_plane=0.1, far_plane=100.0,
    )  # fmt: skip
    ours = project_gaussians(means, covs, harm, op, K_off, T, (H, W), 0.1, 100.0)
    idx = ours.index
    assert len(idx) > 100 and bool((radii[0, idx] > 0).all())  # ours is a subset of gsplat's
    torch.testing.assert_close(ours.means2d, means2d[0, idx], atol=1e-9, rtol=0)
    torch.testing.assert_close(ours.conics, conics[0, idx], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(ours.depths, depths[0, idx], atol=1e-12, rtol=0)
    dirs = means - T[:3, 3]
    theirs = reference._spherical_harmonics(3, dirs, harm.transpose(-1, -2).contiguous())
    torch.testing.assert_close(
        sh_to_rgb(harm, dirs), (theirs + 0.5).clamp_min(0), atol=1e-12, rtol=0
    )
