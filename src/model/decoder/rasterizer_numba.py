"""The CPU Gaussian rasterizer: ``rasterizer_torch``'s rule, composited by a compiled loop.

``rasterize_torch`` evaluates every (Gaussian, pixel) pair as tensors, which costs gathers, a
sort and segmented sums per pair: about a second on a CPU for a 256x256 view of a DepthSplat
scene (22 M pairs), against 0.04-0.1 s here. The projection is the same function
(``project_gaussians``: cull, EWA footprint, SH colour, sort by camera z); compositing is the
3DGS loop itself, compiled by numba: Gaussians front to back, each blended into the pixels of
its opacity-aware box, a pixel done at the first Gaussian that would take its transmittance
below ``1e-4``. Rows are split into bands, one band per task, so threads never share a pixel.
It gives no gradients: ``render_gaussians`` takes the tensor version when they are needed.

Everything is float64 here: along a row the Gaussian's power is a quadratic in ``u``, so its
``exp`` is a running product (three ``exp`` a row instead of one a pixel). ``rasterize_torch``
evaluates the footprint in the Gaussians' dtype (float32, as gsplat and the 3DGS kernel do); the
two agree to that dtype's rounding (``tests/test_rasterizer.py`` runs every test on both). The
conics are positive definite (projection keeps ``det > 0``), so the power is never above 0 and
the 3DGS kernel's guard for it has nothing to catch.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
from torch import Tensor

from dsviewer.model.decoder.rasterizer_torch import (
    ALPHA_MAX,
    ALPHA_MIN,
    TRANSMITTANCE_MIN,
    ProjectedGaussians,
    RenderOutput,
    project_gaussians,
)

BANDS_PER_THREAD = 4  # more bands than threads, so a band full of large Gaussians does not stall
FAINT_MARGIN = 1e-3  # in log alpha: 0.1 %, far above the rounding of the running power
_KERNEL_LOCK = threading.Lock()  # numba's workqueue pool must not be entered twice at once
_kernel = None


def _compile():
    """Build the compositing kernel on first use (numba is imported only by a CPU render)."""
    import numba

    # numba's OpenMP layer shares libgomp with torch and sets its thread count for the whole
    # process (a rank's one torch thread became two); its own pool leaves torch's alone.
    numba.config.THREADING_LAYER = "workqueue"

    @numba.njit(parallel=True, cache=True, nogil=True)
    def composite_bands(
        means2d,  # [M, 2] pixel coordinates, depth order
        conics,  # [M, 3] (a, b, c) of the inverse 2D covariance, positive definite
        opacities,  # [M]
        colors,  # [M, 3]
        depths,  # [M]
        pixel_min,  # [M, 2] int64 (u, v), inclusive
        pixel_max,  # [M, 2] int64 (u, v), inclusive
        band_rows,  # rows per band
        transmittance,  # [H, W] float64 out, starts at 1
        color_sum,  # [H, W, 3] float64 out, starts at 0
        depth_sum,  # [H, W] float64 out, starts at 0
    ):
        height, width = transmittance.shape
        num_bands = (height + band_rows - 1) // band_rows
        for band in numba.prange(num_bands):
            first_row = band * band_rows
            last_row = min(height, first_row + band_rows) - 1
            done = np.zeros((last_row - first_row + 1, width), dtype=np.bool_)
            open_pixels = done.size
            for g in range(means2d.shape[0]):
                v_lo = max(pixel_min[g, 1], first_row)
                v_hi = min(pixel_max[g, 1], last_row)
                if v_lo > v_hi:
                    continue
                mean_u, mean_v = np.float64(means2d[g, 0]), np.float64(means2d[g, 1])
                a, b, c = (np.float64(conics[g, 0]), np.float64(conics[g, 1]),
                           np.float64(conics[g, 2]))  # fmt: skip
                opacity = np.float64(opacities[g])
                faint = math.log(ALPHA_MIN / opacity) - FAINT_MARGIN  # below it alpha < 1/255
                u_lo, u_hi = pixel_min[g, 0], pixel_max[g, 0]
                dx = u_lo + 0.5 - mean_u
                decay = math.exp(-a)
                for v in range(v_lo, v_hi + 1):
                    dy = v + 0.5 - mean_v
                    # Along a row the power is a quadratic in u: its steps change by -a, so
                    # exp(power) is a running product, and a row costs three exps, not one
                    # a pixel.
                    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
                    step = -a * (dx + 0.5) - b * dy  # power(u + 1) - power(u)
                    gauss, gauss_step = math.exp(power), math.exp(step)
                    for u in range(u_lo, u_hi + 1):
                        if power >= faint and not done[v - first_row, u]:
                            alpha = min(ALPHA_MAX, opacity * gauss)
                            if alpha >= ALPHA_MIN:
                                t_before = transmittance[v, u]
                                t_after = t_before * (1.0 - alpha)
                                if t_after < TRANSMITTANCE_MIN:
                                    done[v - first_row, u] = True
                                    open_pixels -= 1
                                else:
                                    weight = alpha * t_before
                                    for channel in range(3):
                                        color_sum[v, u, channel] += weight * colors[g, channel]
                                    depth_sum[v, u] += weight * depths[g]
                                    transmittance[v, u] = t_after
                        power += step
                        step -= a
                        gauss *= gauss_step
                        gauss_step *= decay
                if open_pixels == 0:
                    break

    return composite_bands


def composite(projected: ProjectedGaussians, image_shape: tuple[int, int]):
    """Blend depth-sorted projected Gaussians front to back with the 3DGS rule.

    Returns:
        ``(transmittance [H, W], color_sum [H, W, 3], depth_sum [H, W])`` as float64 numpy arrays:
        the final transmittance and the alpha-weighted sums of colour and camera z.
    """
    global _kernel
    import numba

    height, width = image_shape
    transmittance = np.ones((height, width), dtype=np.float64)
    color_sum = np.zeros((height, width, 3), dtype=np.float64)
    depth_sum = np.zeros((height, width), dtype=np.float64)
    if len(projected.index) == 0:
        return transmittance, color_sum, depth_sum

    def array(tensor: Tensor) -> np.ndarray:
        return np.ascontiguousarray(tensor.detach().cpu().numpy())

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    band_rows = max(1, math.ceil(height / (threads * BANDS_PER_THREAD)))
    with _KERNEL_LOCK:
        if _kernel is None:
            _kernel = _compile()
        previous_threads = numba.get_num_threads()
        numba.set_num_threads(threads)  # the caller's torch thread budget (one per rank)
        previous_chunk = numba.set_parallel_chunksize(1)  # bands one at a time: rows vary
        try:
            _kernel(
                array(projected.means2d), array(projected.conics), array(projected.opacities),
                array(projected.colors), array(projected.depths), array(projected.pixel_min),
                array(projected.pixel_max), band_rows, transmittance, color_sum, depth_sum,
            )  # fmt: skip
        finally:
            numba.set_parallel_chunksize(previous_chunk)
            numba.set_num_threads(previous_threads)
    return transmittance, color_sum, depth_sum


def warm_up() -> None:
    """Import numba and load (or compile) the kernel for float32 Gaussians: 0.4-3 s that the
    first render would otherwise pay."""
    one, pixel = torch.ones(1), torch.zeros(1, 2, dtype=torch.long)
    projected = ProjectedGaussians(
        index=pixel[:, 0], means2d=torch.zeros(1, 2), conics=torch.ones(1, 3), depths=one,
        colors=torch.zeros(1, 3), opacities=one, pixel_min=pixel, pixel_max=pixel,
    )
    composite(projected, (1, 1))


def warm_up_in_background(device: str) -> threading.Thread | None:
    """Start :func:`warm_up` on a daemon thread when ``device`` (``auto``, ``cpu``, ``cuda``...)
    will render on the CPU, so that it runs while the model loads."""
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if not cpu or _kernel is not None:
        return None
    thread = threading.Thread(target=warm_up, name="rasterizer-warm-up", daemon=True)
    thread.start()
    return thread


def rasterize_numba(
    means: Tensor,  # [N, 3] world
    covariances: Tensor,  # [N, 3, 3] world
    harmonics: Tensor,  # [N, 3, d_sh] world, 3DGS basis
    opacities: Tensor,  # [N] in [0, 1]
    intrinsics: Tensor,  # [3, 3] normalized
    T_world_cam: Tensor,  # [4, 4] camera-to-world
    image_shape: tuple[int, int],
    near: float,
    far: float,
    background: Tensor,  # [3]
) -> RenderOutput:
    """Render one view on the CPU; same arguments and result as ``rasterize_torch``.

    Returns:
        color ``[3, H, W]``, depth ``[H, W]``, alpha ``[H, W]`` in the Gaussians' dtype, on
        their device.
    """
    dtype, device = means.dtype, means.device
    projected = project_gaussians(
        means, covariances, harmonics, opacities, intrinsics.to(dtype), T_world_cam.to(dtype),
        image_shape, float(near), float(far),
    )  # fmt: skip
    transmittance, color_sum, depth_sum = composite(projected, image_shape)
    transmittance_t = torch.from_numpy(transmittance)
    alpha = 1.0 - transmittance_t
    color = torch.from_numpy(color_sum) + transmittance_t[..., None] * background.double().cpu()
    depth = torch.where(alpha > 0, torch.from_numpy(depth_sum) / alpha.clamp_min(1e-10), 0.0)
    return RenderOutput(
        color=color.permute(2, 0, 1).to(device=device, dtype=dtype).contiguous(),
        depth=depth.to(device=device, dtype=dtype),
        alpha=alpha.to(device=device, dtype=dtype),
    )
