"""Undistortion: images distorted here by our own forward models come back to the pinhole
ground truth, the pinhole camera is COLMAP's, and loaders report what they undistorted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsviewer.dataset import CaptureOptions, load_scene
from dsviewer.dataset.camera_models import Camera
from dsviewer.dataset.preprocess import preprocess_views
from dsviewer.dataset.undistort import (
    lift_pixels,
    radial_fold,
    undistort_image,
    undistorted_pinhole,
)
from tests.dataset_builders import SETTINGS, png_bytes, pose, write_colmap_text, write_transforms

OPENCV = Camera("OPENCV", 320, 240, (250.0, 255.0, 161.0, 119.0, -0.25, 0.07, 0.002, -0.001))
FISHEYE = Camera("OPENCV_FISHEYE", 320, 240, (150.0, 150.0, 160.0, 120.0, 0.05, 0.01, -0.004,
                                               0.001))


def pattern(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth colour pattern of normalized pinhole coordinates: ``[..., 3]`` in 0..255."""
    return np.stack([128 + 100 * np.sin(9 * u) * np.cos(7 * v), 128 + 90 * np.cos(11 * u + 3 * v),
                     128 + 80 * np.sin(6 * (u - v))], axis=-1)


def lift_opencv(xd: np.ndarray, yd: np.ndarray, k1, k2, p1, p2) -> tuple[np.ndarray, ...]:
    """Invert OpenCV's radial-tangential distortion by fixed-point iteration (our own)."""
    u, v = xd.copy(), yd.copy()
    for _ in range(200):
        r2 = u * u + v * v
        radial = 1 + k1 * r2 + k2 * r2 * r2
        u = (xd - 2 * p1 * u * v - p2 * (r2 + 2 * u * u)) / radial
        v = (yd - p1 * (r2 + 2 * v * v) - 2 * p2 * u * v) / radial
    return u, v


def lift_fisheye(xd: np.ndarray, yd: np.ndarray, k1, k2, k3, k4) -> tuple[np.ndarray, ...]:
    """Invert theta_d = theta (1 + k1 theta^2 + ...) by Newton steps (our own)."""
    theta_d = np.hypot(xd, yd)
    theta = theta_d.copy()
    for _ in range(50):
        t2 = theta * theta
        value = theta * (1 + k1 * t2 + k2 * t2**2 + k3 * t2**3 + k4 * t2**4) - theta_d
        slope = 1 + 3 * k1 * t2 + 5 * k2 * t2**2 + 7 * k3 * t2**3 + 9 * k4 * t2**4
        theta -= value / slope
    scale = np.tan(theta) / np.maximum(theta_d, 1e-12)
    return xd * scale, yd * scale


def distorted_image(camera: Camera) -> np.ndarray:
    """The pattern as ``camera`` sees it: each distorted pixel lifted to the pinhole plane."""
    fx, fy, cx, cy = camera.pinhole
    ys, xs = np.mgrid[0 : camera.height, 0 : camera.width] + 0.5
    lift = lift_fisheye if camera.model == "OPENCV_FISHEYE" else lift_opencv
    u, v = lift((xs - cx) / fx, (ys - cy) / fy, *camera.distortion)
    return np.clip(np.rint(pattern(u, v)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("camera", [OPENCV, FISHEYE], ids=lambda c: c.model)
def test_undistorted_image_matches_the_pinhole_ground_truth(camera):
    image, pinhole = undistort_image(distorted_image(camera), camera)
    ys, xs = np.mgrid[0 : pinhole.height, 0 : pinhole.width] + 0.5
    truth = pattern((xs - pinhole.cx) / pinhole.fx, (ys - pinhole.cy) / pinhole.fy)
    error = np.abs(image.astype(float) - truth)[2:-2, 2:-2].mean()
    fx, fy, cx, cy = camera.pinhole  # the naive reading: the distorted image as a pinhole's
    ys, xs = np.mgrid[0 : camera.height, 0 : camera.width] + 0.5
    naive = pattern((xs - cx) / fx, (ys - cy) / fy)
    naive_error = np.abs(distorted_image(camera).astype(float) - naive).mean()
    assert error < 1.0, error
    assert naive_error > 15 * error, (naive_error, error)


# The same cameras through pycolmap 4.2.1's undistort_camera (COLMAP's UndistortCamera with its
# default options): width, height, cx, cy of the pinhole.
PYCOLMAP = [
    (Camera("OPENCV", 640, 480, (500, 510, 320, 240, -0.2, 0.05, 0.001, -0.001)),
     (697, 502, 348.5, 251.0)),
    (Camera("RADIAL", 640, 480, (450, 321, 239, -0.25, 0.08)), (736, 516, 369.15, 256.925)),
    (Camera("OPENCV_FISHEYE", 640, 480, (300, 300, 320, 240, 0.05, 0.01, 0, 0)),
     (943, 584, 471.5, 292.0)),
    (Camera("FOV", 640, 480, (300, 300, 320, 240, 0.8)), (810, 526, 405.0, 263.0)),
    (Camera("THIN_PRISM_FISHEYE", 640, 480, (300, 300, 320, 240, 0.05, 0.01, 0.001, 0.001, 0,
                                             0, 0.001, 0.001)), (937, 583, 468.5, 291.5)),
    (Camera("DIVISION", 640, 480, (500, 510, 320, 240, -0.1)), (666, 489, 333.0, 244.5)),
    (Camera("EUCM", 640, 480, (300, 300, 320, 240, 0.6, 1.1)), (1066, 612, 533.0, 306.0)),
]


@pytest.mark.parametrize(("camera", "expected"), PYCOLMAP, ids=lambda c: getattr(c, "model", ""))
def test_pinhole_is_colmaps(camera, expected):
    pinhole = undistorted_pinhole(camera)
    assert (pinhole.width, pinhole.height) == expected[:2]
    assert (pinhole.cx, pinhole.cy) == pytest.approx(expected[2:], abs=1e-9)
    assert (pinhole.fx, pinhole.fy) == camera.pinhole[:2]
    white = np.full((camera.height, camera.width, 3), 255, np.uint8)
    image, _ = undistort_image(white, camera)
    assert image[1:-1, 1:-1].min() == 255  # no blank pixels inside (COLMAP's blank_pixels=0)


def test_colmap_capture_is_undistorted_and_noted(tmp_path):
    (tmp_path / "images").mkdir()
    image = distorted_image(OPENCV)
    names = ["a.png", "b.png", "c.png"]
    for name in names:
        (tmp_path / "images" / name).write_bytes(png_bytes(image))
    fx, fy, cx, cy = OPENCV.pinhole
    write_colmap_text(tmp_path, {1: ("OPENCV", 320, 240, list(OPENCV.params)),
                                 2: ("PINHOLE", 320, 240, [fx, fy, cx, cy])},
                      [("a.png", 1, pose(), []), ("b.png", 1, pose(x=1.0), []),
                       ("c.png", 2, pose(x=0.5), [])])
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[2],
                       capture=CaptureOptions(target_baseline=None))
    assert scene.context.camera_models == ("OPENCV", "OPENCV")
    assert scene.target.camera_models == ("PINHOLE",)
    notes = {note.code: note.message for note in scene.notes}
    assert "Frame(s) 0, 1 use the OPENCV camera model" in notes["undistorted"]
    undistorted, pinhole = undistort_image(image, OPENCV)
    K = torch.tensor([[pinhole.fx / pinhole.width, 0, pinhole.cx / pinhole.width],
                      [0, pinhole.fy / pinhole.height, pinhole.cy / pinhole.height], [0, 0, 1]])
    expected = preprocess_views([torch.from_numpy(undistorted).permute(2, 0, 1)], K[None],
                                torch.eye(4)[None], torch.tensor([0]), SETTINGS,
                                exact_principal_point=True)
    torch.testing.assert_close(scene.context.image[0], expected.image[0])
    torch.testing.assert_close(scene.context.intrinsics[0], expected.intrinsics[0])


def test_transforms_fisheye_and_opencv_keys(tmp_path):
    (tmp_path / "f.png").write_bytes(png_bytes(distorted_image(FISHEYE)))
    (tmp_path / "g.png").write_bytes(png_bytes(distorted_image(FISHEYE)))
    fx, fy, cx, cy = FISHEYE.pinhole
    k1, k2, k3, k4 = FISHEYE.distortion
    write_transforms(tmp_path, [("f.png", pose()), ("g.png", pose(x=1.0))],
                     camera_model="OPENCV_FISHEYE", fl_x=fx, fl_y=fy, cx=cx, cy=cy, w=320, h=240,
                     k1=k1, k2=k2, k3=k3, k4=k4)
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[])
    assert scene.context.camera_models == ("OPENCV_FISHEYE", "OPENCV_FISHEYE")
    pinhole = undistorted_pinhole(FISHEYE)
    # The crop shim keeps normalized cx; the pinhole's is cx' / w'.
    assert scene.context.intrinsics[0, 0, 2].item() == pytest.approx(pinhole.cx / pinhole.width)
    k1, k2, p1, p2 = OPENCV.distortion
    write_transforms(tmp_path, [("f.png", pose()), ("g.png", pose(x=1.0))], fl_x=250.0,
                     w=320, h=240, k1=k1, k2=k2, p1=p1, p2=p2)
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[])
    assert scene.context.camera_models == ("OPENCV", "OPENCV")


def test_a_fold_inside_the_image_is_found_masked_and_noted(tmp_path):
    """RADIAL k2 = -1 on a 160x120 image (f = 100): r (1 + k2 r^4) peaks at r^4 = 1 / 5, i.e.
    0.535 (53.5 px) from the principal point, inside the image; k2 = -0.05 peaks beyond the
    corners (1.13 > 1.0) and is no fold."""
    folded = Camera("RADIAL", 160, 120, (100.0, 80.0, 60.0, 0.0, -1.0))
    fold = radial_fold(folded)
    r = 0.2 ** 0.25
    assert fold.radius == pytest.approx(r, abs=1e-3)
    assert fold.distorted_px == pytest.approx(100 * r * (1 - r**4), abs=0.1)
    assert radial_fold(Camera("RADIAL", 160, 120, (100.0, 80.0, 60.0, 0.0, -0.05))) is None
    assert radial_fold(OPENCV) is None
    image = np.full((120, 160, 3), 200, dtype=np.uint8)
    out, pinhole = undistort_image(image, folded)  # sized to the rays inside the fold
    assert np.hypot(pinhole.width, pinhole.height) / 2 <= 100 * fold.radius + 1
    # k2 = -200 folds at 0.178 (17.8 px): COLMAP's smallest size (0.2: 32x24) reaches past it.
    tight = Camera("RADIAL", 160, 120, (100.0, 80.0, 60.0, 0.0, -200.0))
    out, pinhole = undistort_image(image, tight)
    ys, xs = np.mgrid[: pinhole.height, : pinhole.width] + 0.5
    radius = np.hypot((xs - pinhole.cx) / pinhole.fx, (ys - pinhole.cy) / pinhole.fy)
    beyond = radius > radial_fold(tight).radius
    assert beyond.any() and (out[beyond] == 0).all()
    assert (out[radius < 0.9 * radial_fold(tight).radius] == 200).all()

    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "images" / name).write_bytes(png_bytes(image))
    write_colmap_text(tmp_path, {1: ("RADIAL", 160, 120, list(folded.params)),
                                 2: ("RADIAL", 160, 120, [100.0, 80.0, 60.0, -0.1, 0.0])},
                      [("a.png", 1, pose(), []), ("b.png", 2, pose(x=1.0), [])])
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[])
    notes = {note.code: note.message for note in scene.notes}
    assert notes["distortion_folds"].startswith("In frame(s) 0 (r ≈ 53 px) the lens distortion")
    assert notes["undistorted"].startswith("Frame(s) 1 use the RADIAL camera model")


def test_border_pixels_beyond_the_fold_are_put_on_it():
    """RADIAL k1 = -1, k2 = -0.3 (f = 200, 160x120) folds at r = 0.5395, whose distorted radius
    (0.369) lies between the half-height (0.3) and the half-width (0.4): the left and right
    borders and every corner are beyond it. OpenCV's iterative inverse lifts the corner pixel
    to a ray well inside the fold (0.497); put on the fold instead, the rays of the pinhole's
    corners reach the fold radius, to within the pixel its floor()ed size may lose."""
    camera = Camera("RADIAL", 160, 120, (200.0, 80.0, 60.0, -1.0, -0.3))
    r = np.linspace(0.0, 1.0, 1_000_001)
    peak = r[np.argmax(r * (1 - r**2 - 0.3 * r**4))]  # independent of radial_fold's search
    assert np.linalg.norm(lift_pixels(camera, np.array([[0.5, 0.5]]))) < peak - 0.03
    pinhole = undistorted_pinhole(camera)
    corner = np.hypot(pinhole.cx / pinhole.fx, pinhole.cy / pinhole.fy)
    assert peak - 1.0 / 200.0 <= corner <= peak + 1e-3
    fold = radial_fold(camera)
    assert fold.radius == pytest.approx(peak, abs=1e-3)
    assert fold.distorted_radius == pytest.approx(peak * (1 - peak**2 - 0.3 * peak**4), abs=1e-6)
