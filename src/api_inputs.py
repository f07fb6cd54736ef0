"""The arrays a user hands to :meth:`dsviewer.api.Model.predict`: checked, then converted to
the forms the preprocessing takes (uint8 ``[3, H, W]`` views, float64 matrices, ``[V]``
planes). torch loads inside the functions, so importing this module stays light.

Each check raises :class:`dsviewer.errors.InputError` with one paragraph: what was wrong and how
to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from dsviewer.errors import InputError

if TYPE_CHECKING:
    import torch

    from dsviewer.dataset.preprocess import PreprocessSettings

IntrinsicsUnit = Literal["pixels", "normalized"]
FLOAT_IMAGE_SLACK = 1e-3  # float images may overshoot [0, 1] by rounding, not by a 0-255 range
SKEW_TOLERANCE = 1e-6  # |K[0, 1]| relative to fx: DepthSplat's cameras have no skew


def as_tensor(value: object, name: str) -> torch.Tensor:
    """``value`` (numpy, torch on any device, nested lists) as a CPU tensor."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise InputError(f"{name} holds {array.dtype} values; pass a numeric numpy array or "
                         "torch tensor (for images of different sizes, a list of arrays).")
    return torch.tensor(array)  # a copy: the caller's array is never shared or changed


def image_views(images: object) -> list[torch.Tensor]:
    """V uint8 ``[3, H_v, W_v]`` tensors (what the preprocessing takes)."""
    if isinstance(images, (list, tuple)):
        views = [as_tensor(image, f"images[{v}]") for v, image in enumerate(images)]
    else:
        stacked = as_tensor(images, "images")
        if stacked.ndim != 4:
            raise InputError(f"images has shape {tuple(stacked.shape)}; pass [V, H, W, 3] RGB "
                             "(V views), or a list of [H, W, 3] arrays.")
        views = list(stacked)
    return [uint8_view(image, v).permute(2, 0, 1).contiguous() for v, image in enumerate(views)]


def uint8_view(image: torch.Tensor, v: int) -> torch.Tensor:
    """One view ``[H, W, 3]`` as uint8: floats in [0, 1] are rounded to 8 bits, integers must
    already be 0-255."""
    import torch

    shape = tuple(image.shape)
    if image.ndim != 3 or shape[-1] != 3 or min(shape[:2]) < 2:
        hint = (" It looks channels-first: move the channel axis last "
                "(np.moveaxis(images, -3, -1))." if image.ndim == 3 and shape[0] == 3 else "")
        raise InputError(f"View {v} of images has shape {shape}; each view must be [H, W, 3] "
                         f"RGB of at least 2x2 pixels (drop an alpha channel, repeat a gray "
                         f"one).{hint}")
    if image.dtype == torch.uint8:
        return image
    values = image if image.dtype.is_floating_point else image.long()  # uint16 has no min()
    low, high = float(values.min()), float(values.max())
    if not image.dtype.is_floating_point:
        if low < 0 or high > 255:
            raise InputError(f"View {v} of images holds integers from {low:g} to {high:g}; "
                             "pass 8-bit values (0-255), or floats in [0, 1] (divide 16-bit "
                             "images by 65535).")
        return image.to(torch.uint8)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InputError(f"View {v} of images holds NaN or infinite values; pass finite RGB "
                         "values in [0, 1].")
    if low < -FLOAT_IMAGE_SLACK or high > 1 + FLOAT_IMAGE_SLACK:
        raise InputError(f"View {v} of images holds floats from {low:.4g} to {high:.4g}; float "
                         "images must lie in [0, 1]. Divide 0-255 values by 255 (or pass them "
                         "as uint8).")
    return (image.double().clamp(0, 1) * 255).round().to(torch.uint8)


def intrinsics_matrices(intrinsics: object, shapes: list[tuple[int, int]],
                        unit: IntrinsicsUnit) -> torch.Tensor:  # fmt: skip
    """``[V, 3, 3]`` float64 normalized intrinsics of views of ``shapes`` ``(H, W)``, checked."""
    import torch

    from dsviewer.geometry.projection import normalize_intrinsics

    if unit not in ("pixels", "normalized"):
        raise InputError(f"intrinsics_unit is {unit!r}; use 'pixels' or 'normalized'.")
    K = as_tensor(intrinsics, "intrinsics").double()
    V = len(shapes)
    if tuple(K.shape) != (V, 3, 3):
        raise InputError(f"intrinsics has shape {tuple(K.shape)}; pass one 3x3 matrix per view, "
                         f"[{V}, 3, 3] for these {V} images (np.repeat(K[None], {V}, 0) if "
                         "they share a camera).")
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    last_row = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    bad = ~torch.isfinite(K).flatten(1).all(1) | (fx <= 0) | (fy <= 0)
    bad |= (K[:, 2] != last_row).any(1) | (K[:, 1, 0] != 0)
    bad |= K[:, 0, 1].abs() > SKEW_TOLERANCE * fx.abs()
    if bad.any():
        v = int(torch.nonzero(bad)[0, 0])
        raise InputError(f"intrinsics[{v}] is {K[v].tolist()}; a pinhole camera matrix is "
                         "[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with finite, positive fx and "
                         "fy (no skew). Undistort to a pinhole camera first if yours has more.")
    if unit == "pixels" and bool(((cx <= 1) & (cy <= 1)).all()):
        raise InputError("intrinsics look normalized (every principal point lies inside the "
                         "first pixel), but intrinsics_unit is 'pixels'. Pass "
                         "intrinsics_unit='normalized', or the matrices in pixels.")
    if unit == "normalized" and bool(((cx.abs() > 4) | (cy.abs() > 4)).any()):
        raise InputError("intrinsics look like pixels (a principal point lies more than four "
                         "image sizes away), but intrinsics_unit is 'normalized'. Pass "
                         "intrinsics_unit='pixels', or divide row 0 by W and row 1 by H.")
    if unit == "normalized":
        return K
    # Each view by its own size; float64 keeps normalized -> pixels -> normalized exact.
    return torch.stack([normalize_intrinsics(K[v], h, w) for v, (h, w) in enumerate(shapes)])


def extrinsics_matrices(extrinsics: object, V: int) -> torch.Tensor:
    """``[V, 4, 4]`` float32 camera-to-world, checked to be rigid."""
    from dsviewer.dataset.errors import NonFinitePoseError
    from dsviewer.dataset.preprocess import check_poses

    T = as_tensor(extrinsics, "extrinsics").double()
    if tuple(T.shape) != (V, 4, 4):
        raise InputError(f"extrinsics has shape {tuple(T.shape)}; pass [{V}, 4, 4] "
                         "camera-to-world matrices, one per image (append the row 0 0 0 1 to "
                         "3x4 poses).")
    try:
        check_poses(T, "extrinsics")
    except NonFinitePoseError as error:
        raise InputError(f"extrinsics of view(s) {error.frames} are not rigid camera-to-world "
                         f"transforms ({error.detail}). Pass rotations with determinant +1 and "
                         "the last row 0 0 0 1, in OpenCV axes; invert world-to-camera "
                         "matrices first (np.linalg.inv).") from None
    return T.float()


def planes(near: object, far: object, V: int,
           settings: PreprocessSettings) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``[V]`` float32 near and far planes (the model's own where not given)."""
    import torch

    def per_view(value: object, default: float, name: str) -> torch.Tensor:
        t = torch.full((V,), default) if value is None else as_tensor(value, name).double()
        if t.ndim == 0:
            t = t.expand(V)
        if tuple(t.shape) != (V,):
            raise InputError(f"{name} has shape {tuple(t.shape)}; pass one number or {V}, one "
                             "per view.")
        return t.float()

    near_v, far_v = per_view(near, settings.near, "near"), per_view(far, settings.far, "far")
    if not (torch.isfinite(near_v).all() and torch.isfinite(far_v).all()
            and (near_v > 0).all() and (far_v > near_v).all()):  # fmt: skip
        raise InputError(f"near {near_v.tolist()} and far {far_v.tolist()} must be finite with "
                         "0 < near < far, in the units of the extrinsics. Leave them out to use "
                         f"the model's own ({settings.near:g} and {settings.far:g}).")
    return near_v, far_v
