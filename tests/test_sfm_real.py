"""The SfM reference and metrics of real COLMAP captures, against an independent computation.

Real captures are not shipped (the project ships only what it makes); point
``DSVIEWER_REAL_COLMAP`` at capture folders (separated by ``os.pathsep``) to run these tests,
else they are skipped. Each capture holds a model of the original photos (found as dsviewer
finds it) and the model COLMAP's ``image_undistorter`` wrote of the same images, in
``dense/sparse`` or ``dense/0/sparse``.

The expected values are computed here from the files alone, with a reader written in this file
(not ``colmap_files.py``): for each context image, every observation of the **undistorted**
model (COLMAP undistorted those keypoints itself) is scaled and cropped as the official crop
shim does, its depth is the point's z in COLMAP's pose, and the predicted depth is read at it
by a bilinear lookup written out here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dsviewer.dataset import PreprocessSettings
from dsviewer.dataset.capture import load_capture
from dsviewer.viewer.analysis import analyze
from dsviewer.viewer.session.loaded import run_prediction
from tests.colmap_reference import read_binary_model

CAPTURES = [Path(p) for p in os.environ.get("DSVIEWER_REAL_COLMAP", "").split(os.pathsep) if p]
SETTINGS = PreprocessSettings(image_shape=(256, 448), near=0.5, far=100.0, patch_multiple=16)

pytestmark = pytest.mark.skipif(not CAPTURES, reason="DSVIEWER_REAL_COLMAP names no capture")


def read_model(folder: Path) -> tuple[dict, dict, dict]:
    """cameras {id: (width, height, model id)}, images {name: (R, t, camera, xy, point ids)},
    points {id: (xyz, error)} of a binary model (the independent reader's, reshaped)."""
    cameras, images, points = read_binary_model(folder)
    cameras = {cid: (w, h, model) for cid, (w, h, model, _) in cameras.items()}
    images = {name: (T[:3, :3], T[:3, 3], cid, xy, ids)
              for name, (T, cid, xy, ids) in images.items()}  # fmt: skip
    return cameras, images, points


def undistorted_model(capture: Path) -> Path:
    """image_undistorter's model of the capture's images, or the capture's own when all its
    cameras are pinholes already (a dense workspace passed as the capture)."""
    from dsviewer.dataset.colmap import find_model

    for sub in ("dense/sparse", "dense/0/sparse"):
        if (capture / sub / "images.bin").is_file():
            return capture / sub
    own = find_model(capture).model
    if all(model in (0, 1) for _, _, model in read_model(own)[0].values()):
        return own
    pytest.skip(f"{capture} has no dense/sparse model of image_undistorter")


def expected_observations(capture: Path, names: list[str], settings: PreprocessSettings,
                          max_error: float = 2.0) -> list[list[tuple]]:
    """Per context view, sorted (point id, u, v, depth in model units) from the undistorted
    model."""
    cameras, images, points = read_model(undistorted_model(capture))
    height, width = settings.image_shape
    centres = [-images[n][0].T @ images[n][1] for n in names]
    scale = max(np.linalg.norm(a - b) for a in centres for b in centres)  # target baseline 1
    out = []
    for name in names:
        R, t, cid, xy, ids = images[name]
        w, h, _ = cameras[cid]
        s = max(height / h, width / w)
        hs, ws = round(h * s), round(w * s)
        row, col = (hs - height) // 2, (ws - width) // 2
        view = []
        for (x, y), pid in zip(xy, ids):
            if pid < 0 or points[pid][1] > max_error:
                continue
            u, v = x * ws / w - col, y * hs / h - row
            z = (R @ points[pid][0] + t)[2]
            if z > 0 and 0 <= u < width and 0 <= v < height:
                view.append((int(pid), u, v, z / scale))
        out.append(sorted(view))  # a point may be observed twice in one image
    return out


def bilinear(depth: np.ndarray, u: float, v: float) -> float:
    """``depth [H, W]`` at continuous pixel ``(u, v)`` (pixel centres at c + 0.5, clamped)."""
    height, width = depth.shape
    x, y = min(max(u - 0.5, 0), width - 1), min(max(v - 0.5, 0), height - 1)
    x0, y0 = min(int(x), width - 2), min(int(y), height - 2)
    fx, fy = x - x0, y - y0
    top = depth[y0, x0] * (1 - fx) + depth[y0, x0 + 1] * fx
    bottom = depth[y0 + 1, x0] * (1 - fx) + depth[y0 + 1, x0 + 1] * fx
    return float(top * (1 - fy) + bottom * fy)


def context_names(capture: Path, scene) -> list[str]:
    from dsviewer.dataset.capture import read_capture

    frames = read_capture(capture).frames
    return [frames[int(i)].name for i in scene.context.index]


def sfm_point_ids(capture: Path) -> np.ndarray:
    """COLMAP ids of the model's points in file order (the reference's point indices)."""
    from dsviewer.dataset.colmap import find_model

    _, _, points = read_model(find_model(capture).model)
    return np.array(list(points), dtype=np.int64)


def near_border(u: float, v: float, settings: PreprocessSettings) -> bool:
    height, width = settings.image_shape
    return min(u, v, width - u, height - v) < 0.01


@pytest.mark.parametrize("capture", CAPTURES, ids=[p.name for p in CAPTURES])
def test_real_capture_sfm_observations_match_colmaps_undistorted_model(capture):
    scene = load_capture(capture, SETTINGS)
    point_ids = sfm_point_ids(capture)
    expected = expected_observations(capture, context_names(capture, scene), SETTINGS)
    for view, wanted in zip(scene.context.sfm.views, expected, strict=True):
        got = sorted((int(point_ids[p]), *uv, d) for p, uv, d in
                     zip(view.point, view.uv, view.depth))
        assert len(got) > 0
        # the same observations, but for any within 0.01 px of the crop's edge
        got = [o for o in got if not near_border(o[1], o[2], SETTINGS)]
        wanted = [o for o in wanted if not near_border(o[1], o[2], SETTINGS)]
        assert [o[0] for o in got] == [o[0] for o in wanted]
        # within 0.1 model pixel: images stored smaller than their camera are undistorted at
        # their own size, whose rounding differs from COLMAP's at full size by up to ~0.07
        np.testing.assert_allclose(np.array(got)[:, 1:3], np.array(wanted)[:, 1:3], atol=0.1)
        np.testing.assert_allclose(np.array(got)[:, 3], np.array(wanted)[:, 3], rtol=1e-9)


@pytest.mark.parametrize("capture", CAPTURES, ids=[p.name for p in CAPTURES])
def test_real_capture_sfm_metrics_match_an_independent_computation(capture):
    from dsviewer.backends import open_backend
    from dsviewer.viewer.assets import demo_checkpoint

    backend = open_backend(demo_checkpoint(), device="cpu")
    scene = load_capture(capture, backend.preprocess)
    loaded = run_prediction(scene, lambda s: backend.predict(s.context))
    summary = analyze(loaded.layers).summary()["sfm"]["final"]["overall"]
    depth = loaded.prediction.final_depth.double().numpy()
    expected = expected_observations(capture, context_names(capture, scene), backend.preprocess)
    ratios = np.array([bilinear(depth[v], u, w) / z for v, view in enumerate(expected)
                       for _, u, w, z in view])
    assert summary["points"] == len(ratios)
    if len(ratios) < 20:
        assert summary["reason"].startswith("too few SfM points")
        return
    assert summary["abs_rel"] == pytest.approx(np.abs(ratios - 1).mean(), rel=1e-4)
    assert summary["median_ratio"] == pytest.approx(np.sort(ratios)[(len(ratios) - 1) // 2],
                                                    rel=1e-4)
    assert summary["delta"] == pytest.approx(
        np.mean(np.maximum(ratios, 1 / ratios) < 1.25), abs=1.5 / len(ratios))
