"""Undistort images of any COLMAP camera model to pinhole images, as COLMAP's undistorter does.

The pinhole camera follows COLMAP's ``image_undistorter`` with its default options
(``UndistortCamera`` in ``src/colmap/image/undistortion.cc``, ``blank_pixels = 0``,
``min_scale = 0.2``, ``max_scale = 2``): the output **keeps the focal lengths** ``fx, fy``;
the image size is scaled per axis so that the undistorted image holds **no blank pixels**
(every border pixel of the distorted image is lifted to the pinhole plane, and the size is the
largest that stays inside all of them), ``w' = floor(s_x w)``, ``h' = floor(s_y h)``; the
principal point is scaled with the size, ``cx' = cx w' / w``, ``cy' = cy h' / h``.

Pixels are resampled bilinearly (as COLMAP's ``WarpImageBetweenCameras``) with OpenCV's
``remap``. The maps come from OpenCV where OpenCV has the model: its standard model for
SIMPLE_RADIAL, RADIAL, OPENCV and FULL_OPENCV (``k1 k2 p1 p2 k3 k4 k5 k6``, rational), its
fisheye model (``cv2.fisheye``, ``k1..k4`` on the angle) for OPENCV_FISHEYE,
SIMPLE_RADIAL_FISHEYE, RADIAL_FISHEYE, SIMPLE_FISHEYE and FISHEYE. FOV, THIN_PRISM_FISHEYE,
RAD_TAN_THIN_PRISM_FISHEYE, SIMPLE_DIVISION, DIVISION and EUCM, which OpenCV lacks, are
projected with COLMAP's formulas here (:func:`project_normalized`). EQUIRECTANGULAR has no
pinhole image and is refused.

OpenCV puts the centre of the top-left pixel at ``(0, 0)``, COLMAP at ``(0.5, 0.5)``: principal
points move by 0.5 at that boundary.

Strong radial terms can fold the lens map back inside the image (``r (1 + k1 r^2 + k2 r^4)``
stops growing, e.g. SfM of internet photos with ``k2 = -387``): pixels beyond the fold radius
have no ray at all under the model, and both COLMAP's and OpenCV's iterative inverses return
arbitrary rays there. For such cameras (:func:`radial_fold`) the pinhole is sized from the rays
inside the fold only and pixels beyond it stay black; COLMAP's output differs there.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .camera_models import PINHOLE_MODELS, Camera, check_perspective
from .errors import UnsupportedCameraError, size_text

MIN_SCALE, MAX_SCALE = 0.2, 2.0  # COLMAP's UndistortCameraOptions defaults
OPENCV_STANDARD = ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV")
OPENCV_FISHEYE = ("OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "SIMPLE_FISHEYE",
                  "FISHEYE")
POINT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
FOLD_SEARCH_RADIUS = 50.0  # normalized pinhole radius searched for a fold (88.9 degrees off-axis)
FOLD_SEARCH_STEPS = 200_000


@dataclass(frozen=True)
class Pinhole:
    """The undistorted camera: pixels, COLMAP convention (top-left pixel centre at 0.5)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float


def _opencv_coefficients(camera: Camera) -> np.ndarray:
    """Distortion coefficients in OpenCV's order for the models OpenCV has."""
    d = camera.distortion
    if camera.model == "SIMPLE_RADIAL":
        return np.array([d[0], 0.0, 0.0, 0.0])
    if camera.model in ("RADIAL", "RADIAL_FISHEYE"):
        return np.array([d[0], d[1], 0.0, 0.0])
    if camera.model == "SIMPLE_RADIAL_FISHEYE":
        return np.array([d[0], 0.0, 0.0, 0.0])
    if camera.model in ("SIMPLE_FISHEYE", "FISHEYE"):
        return np.zeros(4)
    return np.array(d, dtype=np.float64)  # OPENCV, FULL_OPENCV, OPENCV_FISHEYE: same order


def _opencv_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------- models OpenCV lacks


def _fisheye_from_normal(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale (u, v) to length atan(r): the fisheye angle coordinates COLMAP distorts."""
    r = np.hypot(u, v)
    scale = np.where(r > np.finfo(float).eps, np.arctan(r) / np.maximum(r, 1e-300), 1.0)
    return u * scale, v * scale


def project_normalized(camera: Camera, u: np.ndarray, v: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (COLMAP convention) of normalized points ``(u, v, 1)`` for the models
    OpenCV lacks, by COLMAP's formulas; NaN where the model cannot project."""
    fx, fy, cx, cy = camera.pinhole
    d = camera.distortion
    model = camera.model
    if model == "FOV":
        omega = d[0]
        r = np.hypot(u, v)
        if omega ** 2 < 1e-4:
            factor = (omega ** 2 * r ** 2) / 3 - omega ** 2 / 12 + 1
        else:
            safe = np.maximum(r, 1e-12)
            factor = np.where(r ** 2 < 1e-4,
                              2 * np.tan(omega / 2) * (3 - 4 * r ** 2 * np.tan(omega / 2) ** 2)
                              / (3 * omega),
                              np.arctan(safe * 2 * np.tan(omega / 2)) / (safe * omega))
        x, y = u * factor, v * factor
    elif model in ("SIMPLE_DIVISION", "DIVISION"):
        disc = 1.0 - 4.0 * (u * u + v * v) * d[0]
        r = np.where(disc >= 0, 2.0 / (1.0 + np.sqrt(np.maximum(disc, 0.0))), np.nan)
        x, y = r * u, r * v
    elif model == "EUCM":
        alpha, beta = d
        rho = np.sqrt(np.maximum(beta * (u * u + v * v) + 1.0, 0.0))
        den = alpha * rho + (1.0 - alpha)
        den = np.where(den > np.finfo(float).eps, den, np.nan)
        x, y = u / den, v / den
    elif model == "THIN_PRISM_FISHEYE":
        k1, k2, p1, p2, k3, k4, sx1, sy1 = d
        uu, vv = _fisheye_from_normal(u, v)
        r2 = uu * uu + vv * vv
        radial = k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3 + k4 * r2 ** 4
        x = uu + uu * radial + 2 * p1 * uu * vv + p2 * (r2 + 2 * uu * uu) + sx1 * r2
        y = vv + vv * radial + 2 * p2 * uu * vv + p1 * (r2 + 2 * vv * vv) + sy1 * r2
    elif model == "RAD_TAN_THIN_PRISM_FISHEYE":
        uu, vv = _fisheye_from_normal(u, v)
        theta2 = uu * uu + vv * vv
        radial = 1.0 + sum(k * theta2 ** (i + 1) for i, k in enumerate(d[:6]))
        p0, p1, s0, s1, s2, s3 = d[6:]
        xr, yr = radial * uu, radial * vv
        r2 = xr * xr + yr * yr
        x = xr + 2 * p1 * xr * yr + p0 * (r2 + 2 * xr * xr) + s0 * r2 + s1 * r2 ** 2
        y = yr + 2 * p0 * xr * yr + p1 * (r2 + 2 * yr * yr) + s2 * r2 + s3 * r2 ** 2
    else:
        raise AssertionError(model)
    return fx * x + cx, fy * y + cy


def _lift_newton(camera: Camera, px: np.ndarray, py: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Invert :func:`project_normalized` by Newton steps with a numerical Jacobian (as COLMAP's
    iterative undistortion); NaN where it does not converge."""
    fx, fy, cx, cy = camera.pinhole
    u, v = (px - cx) / fx, (py - cy) / fy
    step = 1e-7
    for _ in range(100):
        x, y = project_normalized(camera, u, v)
        ex, ey = (x - px) / fx, (y - py) / fy
        xu, yu = project_normalized(camera, u + step, v)
        xv, yv = project_normalized(camera, u, v + step)
        a, c = (xu - x) / (fx * step), (yu - y) / (fy * step)
        b, e = (xv - x) / (fx * step), (yv - y) / (fy * step)
        det = a * e - b * c
        du, dv = (e * ex - b * ey) / det, (a * ey - c * ex) / det
        u, v = u - du, v - dv
        if np.nanmax(np.abs(np.concatenate([du, dv])), initial=0.0) < 1e-12:
            break
    x, y = project_normalized(camera, u, v)
    bad = ~(np.abs(x - px) < 1e-3) | ~(np.abs(y - py) < 1e-3)
    return np.where(bad, np.nan, u), np.where(bad, np.nan, v)


# ---------------------------------------------------------------- folds


@dataclass(frozen=True)
class Fold:
    """Where a camera's radial distortion stops increasing, inside its image."""

    radius: float  # normalized pinhole radius r of the fold
    distorted_radius: float  # its radius in the distorted image, normalized ((x - cx) / fx)
    distorted_px: float  # the same in pixels from the principal point (mean focal length)


def radial_fold(camera: Camera) -> Fold | None:
    """The fold of OpenCV's standard radial map ``r -> r (1 + k1 r^2 + k2 r^4 + k3 r^6) /
    (1 + k4 r^2 + k5 r^4 + k6 r^6)`` when it lies inside the image, else None (tangential
    terms left out; other models are not checked)."""
    if camera.model not in OPENCV_STANDARD:
        return None
    k = np.zeros(8)
    coefficients = _opencv_coefficients(camera)
    k[: len(coefficients)] = coefficients
    r = np.linspace(0.0, FOLD_SEARCH_RADIUS, FOLD_SEARCH_STEPS + 1)
    r2 = r * r
    distorted = r * ((1 + r2 * (k[0] + r2 * (k[1] + r2 * k[4])))
                     / (1 + r2 * (k[5] + r2 * (k[6] + r2 * k[7]))))
    falling = np.flatnonzero(~(np.diff(distorted) > 0))  # NaN (a zero denominator) counts
    if len(falling) == 0:
        return None
    fx, fy, cx, cy = camera.pinhole
    corners_x, corners_y = np.array([0.0, camera.width]), np.array([0.0, camera.height])
    reach = np.hypot(*np.meshgrid((corners_x - cx) / fx, (corners_y - cy) / fy)).max()
    top = falling[0]
    if not distorted[top] < reach:
        return None
    return Fold(float(r[top]), float(distorted[top]), float(distorted[top] * (fx + fy) / 2))


def _inside_fold(camera: Camera, points: np.ndarray, normal: np.ndarray, fold: Fold | None
                 ) -> np.ndarray:  # fmt: skip
    """Lifted pixels ``points`` -> ``normal`` (``[N, 2]`` each) kept inside the fold: pixels
    beyond the fold's distorted radius have no ray, and the iterative inverse does not converge
    there (it may even return a ray inside the fold), so they are put at the fold radius in
    their own direction (radial distortion keeps directions); other rays are pulled in to it."""
    if fold is None:
        return normal
    fx, fy, cx, cy = camera.pinhole
    offset = (points - [cx, cy]) / [fx, fy]  # distorted, normalized
    distorted = np.linalg.norm(offset, axis=1, keepdims=True)
    radius = np.linalg.norm(normal, axis=1, keepdims=True)
    inside = normal * np.minimum(1.0, fold.radius / np.maximum(radius, 1e-300))
    on_fold = offset * (fold.radius / np.maximum(distorted, 1e-300))
    return np.where(distorted > fold.distorted_radius, on_fold, inside)


# ---------------------------------------------------------------- the undistorter


def lift_pixels(camera: Camera, points: np.ndarray) -> np.ndarray:
    """Pixel coordinates ``[N, 2]`` (COLMAP convention) of the distorted image to normalized
    pinhole coordinates ``[N, 2]`` (NaN where the model cannot lift them)."""
    fx, fy, cx, cy = camera.pinhole
    src = points.reshape(-1, 1, 2).astype(np.float64) - 0.5
    K = _opencv_matrix(fx, fy, cx, cy)
    if camera.model in OPENCV_STANDARD:
        lifted = cv2.undistortPoints(src, K, _opencv_coefficients(camera),
                                     criteria=POINT_CRITERIA)
    elif camera.model in OPENCV_FISHEYE:
        lifted = cv2.fisheye.undistortPoints(src, K, _opencv_coefficients(camera),
                                             criteria=POINT_CRITERIA)
    else:
        u, v = _lift_newton(camera, points[:, 0].astype(np.float64),
                            points[:, 1].astype(np.float64))
        return np.stack([u, v], axis=-1)
    return lifted.reshape(-1, 2)


def undistorted_pinhole(camera: Camera) -> Pinhole:
    """COLMAP's undistorted pinhole camera for ``camera`` (rule in the module docstring)."""
    check_perspective(camera, f"a {size_text(camera.width, camera.height)} camera")
    fx, fy, cx, cy = camera.pinhole
    w, h = camera.width, camera.height
    if camera.model in PINHOLE_MODELS:
        return Pinhole(w, h, fx, fy, cx, cy)
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    borders = {
        "left": np.stack([np.full(h, 0.5), ys], -1),
        "right": np.stack([np.full(h, w - 0.5), ys], -1),
        "top": np.stack([xs, np.full(w, 0.5)], -1),
        "bottom": np.stack([xs, np.full(w, h - 0.5)], -1),
    }
    lifted, fold = {}, radial_fold(camera)
    for side, points in borders.items():
        normal = _inside_fold(camera, points, lift_pixels(camera, points), fold)
        normal = normal[np.isfinite(normal).all(axis=1)]
        if len(normal) == 0:
            raise UnsupportedCameraError(f"a {camera.model} camera", camera.model,
                                         f"no pixel on its {side} border can be lifted to the "
                                         "pinhole plane (check the distortion parameters)")
        lifted[side] = (fx * normal[:, 0] + cx, fy * normal[:, 1] + cy)
    left_max_x = lifted["left"][0].max()
    right_min_x = lifted["right"][0].min()
    top_max_y = lifted["top"][1].max()
    bottom_min_y = lifted["bottom"][1].min()
    # blank_pixels = 0: the scale at which no blank pixel remains (COLMAP's max_scale_*).
    no_blank_x = max(cx / (cx - left_max_x), (w - 0.5 - cx) / (right_min_x - cx))
    no_blank_y = max(cy / (cy - top_max_y), (h - 0.5 - cy) / (bottom_min_y - cy))
    scale_x = float(np.clip(1.0 / no_blank_x, MIN_SCALE, MAX_SCALE))
    scale_y = float(np.clip(1.0 / no_blank_y, MIN_SCALE, MAX_SCALE))
    width, height = int(max(1.0, scale_x * w)), int(max(1.0, scale_y * h))
    return Pinhole(width, height, fx, fy, cx * width / w, cy * height / h)


def undistortion_maps(camera: Camera, pinhole: Pinhole) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of the pinhole image, where to sample the distorted image: two float32
    ``[h', w']`` maps in OpenCV pixel coordinates (for ``cv2.remap``)."""
    size = (pinhole.width, pinhole.height)
    K = _opencv_matrix(*camera.pinhole)
    P = _opencv_matrix(pinhole.fx, pinhole.fy, pinhole.cx, pinhole.cy)
    if camera.model in OPENCV_STANDARD:
        return cv2.initUndistortRectifyMap(K, _opencv_coefficients(camera), None, P, size,
                                           cv2.CV_32FC1)
    if camera.model in OPENCV_FISHEYE:
        return cv2.fisheye.initUndistortRectifyMap(K, _opencv_coefficients(camera), np.eye(3), P,
                                                   size, cv2.CV_32FC1)
    xs, ys = np.meshgrid(np.arange(pinhole.width) + 0.5, np.arange(pinhole.height) + 0.5)
    px, py = project_normalized(camera, (xs - pinhole.cx) / pinhole.fx,
                                (ys - pinhole.cy) / pinhole.fy)
    invalid = ~np.isfinite(px) | ~np.isfinite(py)
    px, py = np.where(invalid, -1e6, px - 0.5), np.where(invalid, -1e6, py - 0.5)
    return px.astype(np.float32), py.astype(np.float32)


def undistort_image(image: np.ndarray, camera: Camera) -> tuple[np.ndarray, Pinhole]:
    """Undistort ``image`` (uint8 ``[H, W, 3]`` of ``camera``'s size) to COLMAP's pinhole.

    Returns:
        The pinhole image (uint8 ``[h', w', 3]``, black where nothing maps) and its camera.
    """
    assert image.shape[:2] == (camera.height, camera.width), (image.shape, camera)
    pinhole = undistorted_pinhole(camera)
    if camera.model in PINHOLE_MODELS:
        return image, pinhole
    map_x, map_y = undistortion_maps(camera, pinhole)
    out = cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    fold = radial_fold(camera)
    if fold is not None:  # rays beyond the fold would show the image folded back
        xs = (np.arange(pinhole.width) + 0.5 - pinhole.cx) / pinhole.fx
        ys = (np.arange(pinhole.height) + 0.5 - pinhole.cy) / pinhole.fy
        out[np.hypot(*np.meshgrid(xs, ys)) > fold.radius] = 0
    return out, pinhole
