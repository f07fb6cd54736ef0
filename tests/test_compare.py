"""Comparing runs: ``dsviewer.viewer.compare`` on hand-made planes, and ``dsviewer export`` with
several
checkpoints on a real demo scene.

Every expected value is computed here with float64 numpy, independently of ``viewer/`` and
``src/geometry``: ray-plane intersections for the planes, and for the real runs the ray
mapping and bilinear sampling written out again from the exported ``cameras.json`` and PLYs.
About 25-35 s on 2 cores, nearly all in one module-scoped ``dsviewer export`` (two real models,
six runs over two scenes).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData
from viewer_scenes import make_prediction, make_scene, tiny_checkpoint

from dsviewer.viewer.compare import (
    DepthSource,
    compare_pair,
    comparison_problem,
    depth_along_rays,
    difference_maps,
)
from dsviewer.viewer.layers import Cameras
from dsviewer.viewer.session.specs import unique_names

SNAP = 1e-6  # the module's documented rule: positions this close to a pixel centre read it alone


# --- independent float64 maths ---------------------------------------------------------------


def rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return about_y @ about_x


def pose(center, yaw=0.0, pitch=0.0) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rotation(yaw, pitch)
    T[:3, 3] = center
    return T


def intrinsics(fx: float, cx: float, cy: float, height: int, width: int) -> np.ndarray:
    """Normalized K, rounded to float32 as Cameras stores it."""
    K = np.array([[fx, 0, cx], [0, fx * width / height, cy], [0, 0, 1]])
    return K.astype(np.float32).astype(np.float64)


def pixel_rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H, W, 3]`` camera-frame directions with z = 1 through the pixel centres."""
    u = (np.arange(width) + 0.5) / width
    v = (np.arange(height) + 0.5) / height
    x = (u[None, :] - K[0, 2]) / K[0, 0]
    y = (v[:, None] - K[1, 2]) / K[1, 1]
    return np.stack(np.broadcast_arrays(x, y, np.ones((1, 1))), axis=-1)


def plane_hit(K, T, height, width, normal, offset):
    """Ray-plane intersection (plane ``normal . X = offset``): a's z-depth ``[H, W]`` and the
    world points ``[H, W, 3]``."""
    directions = pixel_rays(K, height, width) @ T[:3, :3].T  # world frame, camera z = 1
    t = (offset - normal @ T[:3, 3]) / (directions @ normal)
    return t, T[:3, 3] + t[..., None] * directions


def project(points: np.ndarray, K: np.ndarray, T: np.ndarray, height: int, width: int):
    """World points to pixel coordinates ``(x, y)`` (centres at integers) and z in camera T."""
    cam = (points - T[:3, 3]) @ T[:3, :3]
    x = (K[0, 0] * cam[..., 0] / cam[..., 2] + K[0, 2]) * width - 0.5
    y = (K[1, 1] * cam[..., 1] / cam[..., 2] + K[1, 2]) * height - 0.5
    return x, y, cam[..., 2]


def bilinear(depth: np.ndarray, x: float, y: float) -> float:
    """``depth`` at pixel coordinates; NaN outside the centres or next to invalid depth."""
    height, width = depth.shape
    taps = []
    for value, size in ((x, width), (y, height)):
        if abs(value - round(value)) < SNAP:
            value = float(round(value))
        low = math.floor(value)
        frac = value - low
        if low < 0 or low > size - 1 or (low == size - 1 and frac > 0):
            return math.nan
        taps.append([(low, 1 - frac)] + ([(low + 1, frac)] if frac > 0 else []))
    total = 0.0
    for column, wx in taps[0]:
        for row, wy in taps[1]:
            d = depth[row, column]
            if not (np.isfinite(d) and d > 0):
                return math.nan
            total += wx * wy * d
    return total


def source(name: str, Ks, Ts, frames, depth: np.ndarray) -> DepthSource:
    """A DepthSource of views with the given cameras and depth ``[V, H, W]``."""
    V, H, W = depth.shape
    K = torch.tensor(np.stack(Ks), dtype=torch.float32)
    T = torch.tensor(np.stack(Ts), dtype=torch.float64)
    rays = torch.tensor(np.stack([pixel_rays(k, H, W) for k in Ks]))  # [V, H, W, 3]
    depth_t = torch.tensor(depth, dtype=torch.float32)
    points = torch.einsum("vhwc,vdc->vhwd", rays * depth_t.double()[..., None], T[:, :3, :3])
    points = (points + T[:, None, None, :3, 3]).float()
    cameras = Cameras(intrinsics=K, T_world_cam=T, images=torch.zeros(V, 3, H, W),
                      frames=torch.tensor(frames), near=torch.ones(V),
                      far=torch.ones(V))  # fmt: skip
    return DepthSource(name, cameras, depth_t, points)


# --- hand-made planes ------------------------------------------------------------------------

A_SHAPE, B_SHAPE = (24, 32), (30, 40)
FLOOR = (np.array([0.0, 0.0, 1.0]), 5.0)  # the plane z = 5


def test_b_along_rays_of_another_camera_meets_the_plane_where_geometry_says():
    """b looks straight at the plane (constant depth: bilinear sampling is exact); a is shifted,
    rotated and wrong by 25 %, with holes. b's depth along a's rays must be the analytic
    ray-plane depth wherever the hit lies inside b's pixel centres, NaN elsewhere; a frame b
    lacks is NaN; views are matched by frame, not by order."""
    Ka = [intrinsics(0.8, 0.47, 0.53, *A_SHAPE), intrinsics(1.1, 0.5, 0.5, *A_SHAPE),
          intrinsics(0.9, 0.5, 0.5, *A_SHAPE)]  # fmt: skip
    Ta = [pose([-0.4, 0.25, 0.6], 0.15, -0.1), pose([0.2, -0.1, -0.3], -0.1, 0.05),
          pose([0, 0, 0])]  # fmt: skip
    Kb = [intrinsics(0.9, 0.52, 0.47, *B_SHAPE), intrinsics(0.7, 0.5, 0.5, *B_SHAPE),
          intrinsics(1.0, 0.5, 0.5, *B_SHAPE)]  # fmt: skip
    Tb = [pose([0.3, -0.2, 0.0]), pose([9.0, 9.0, 0.0]), pose([-0.1, 0.1, -0.5])]
    frames_a, frames_b = [3, 8, 11], [8, 5, 3]
    truth = np.stack([plane_hit(K, T, *A_SHAPE, *FLOOR)[0] for K, T in zip(Ka, Ta)])
    own = 1.25 * truth
    own[0, 5:9, 7:12] = 0.0  # invalid: the search starts from the vanishing point there
    own[1, 2, :] = np.nan
    b_depth = np.stack([plane_hit(K, T, *B_SHAPE, *FLOOR)[0] for K, T in zip(Kb, Tb)])
    # b is fronto-parallel: each view's depth is one constant (5 - camera z).
    constant = (FLOOR[1] - np.stack(Tb)[:, 2, 3])[:, None, None]
    np.testing.assert_allclose(b_depth, np.broadcast_to(constant, b_depth.shape), rtol=1e-12)
    a = source("a", Ka, Ta, frames_a, own)
    b = source("b", Kb, Tb, frames_b, b_depth)

    along = depth_along_rays(a, b).numpy()
    for view_a, view_b in ((0, 2), (1, 0)):
        _, hits = plane_hit(Ka[view_a], Ta[view_a], *A_SHAPE, *FLOOR)
        x, y, _ = project(hits, Kb[view_b], Tb[view_b], *B_SHAPE)
        inside = (x >= 0) & (x <= B_SHAPE[1] - 1) & (y >= 0) & (y <= B_SHAPE[0] - 1)
        assert 0.3 < inside.mean() < 1.0  # both cases occur
        np.testing.assert_array_equal(np.isfinite(along[view_a]), inside)
        np.testing.assert_allclose(along[view_a][inside], truth[view_a][inside], rtol=1e-9)
    assert np.isnan(along[2]).all()  # frame 11: b has no view of it

    maps = difference_maps(a, b)
    defined = np.isfinite(along) & np.isfinite(own) & (own > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = {"metric": truth - own, "inverse": 1 / truth - 1 / own}
    for key, values in maps.items():
        values = values.numpy()
        assert values.shape == own.shape and values.dtype == np.float32
        np.testing.assert_array_equal(np.isfinite(values), defined)
        np.testing.assert_allclose(values[defined], expected[key][defined], rtol=1e-5)


def test_b_along_rays_settles_on_a_tilted_surface_in_both_directions():
    """Both cameras see the plane at an angle, so b's depth varies along a's ray's image and the
    point has to be searched for; the only error left is bilinear interpolation of depth."""
    plane = (np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0]), 4.0)
    shape = (90, 120)
    Ka, Kb = intrinsics(0.9, 0.5, 0.5, *shape), intrinsics(1.0, 0.48, 0.52, *shape)
    Ta, Tb = pose([0.0, 0.0, 0.0], 0.1, 0.05), pose([0.5, 0.2, 0.3], -0.15, -0.1)
    depth_a, hits_a = plane_hit(Ka, Ta, *shape, *plane)
    depth_b, hits_b = plane_hit(Kb, Tb, *shape, *plane)
    a, b = source("a", [Ka], [Ta], [0], depth_a[None]), source("b", [Kb], [Tb], [0], depth_b[None])
    # The first source's own depth only seeds the search: make it far off.
    a_off = source("a", [Ka], [Ta], [0], 0.7 * depth_a[None])
    b_off = source("b", [Kb], [Tb], [0], 1.4 * depth_b[None])
    for first, second, hits, truth, K, T in ((a_off, b, hits_a, depth_a, Kb, Tb),
                                             (b_off, a, hits_b, depth_b, Ka, Ta)):  # fmt: skip
        x, y, _ = project(hits, K, T, *shape)
        inside = (x >= 1) & (x <= shape[1] - 2) & (y >= 1) & (y <= shape[0] - 2)
        along = depth_along_rays(first, second)[0].numpy()
        assert inside.mean() > 0.5 and np.isfinite(along[inside]).all()
        np.testing.assert_allclose(along[inside], truth[inside], rtol=2e-5)


def test_same_camera_at_twice_the_resolution_samples_bilinearly():
    """a's pixel centres fall between b's: each value is the bilinear mix of b's depth (not
    inverse depth), NaN beside b's invalid pixel and outside b's centres."""
    K, T = intrinsics(1.0, 0.5, 0.5, 4, 5), pose([0.1, 0.2, 0.3], 0.2, 0.1)
    rng = np.random.default_rng(0)
    b_depth = rng.uniform(1.0, 3.0, (1, 4, 5))
    b_depth[0, 2, 3] = -1.0
    a = source("a", [K], [T], [7], np.ones((1, 8, 10)))
    b = source("b", [K], [T], [7], b_depth)
    b_values = b.depth.double().numpy()[0]  # float32 values, as the function reads them
    along = depth_along_rays(a, b)[0].numpy()
    for row, column in np.ndindex(8, 10):
        expected = bilinear(b_values, column / 2 - 0.25, row / 2 - 0.25)
        np.testing.assert_allclose(along[row, column], expected, rtol=1e-12)
    # NaN: a's outer ring (32 pixels, outside b's centres) and the 4 x 4 pixels around b's hole.
    assert np.isnan(along).sum() == 32 + 16


def test_a_source_compared_with_itself_gives_exactly_zero():
    K, T = intrinsics(0.9, 0.51, 0.49, *A_SHAPE), pose([0.3, -0.1, 0.2], 0.3, -0.2)
    depth, _ = plane_hit(K, T, *A_SHAPE, *FLOOR)
    depth = depth[None] * np.random.default_rng(1).uniform(0.5, 2.0, (1, *A_SHAPE))
    depth[0, 3, 4], depth[0, 10, :5] = np.nan, 0.0
    s = source("s", [K], [T], [0], depth)
    result = compare_pair(s, s)
    valid = int((np.isfinite(depth) & (depth > 0)).sum())
    assert result["depth_abs_rel_b_vs_a"] == 0.0 and result["pixels"] == valid
    assert result["per_view"][0]["depth_abs_rel_b_vs_a"] == 0.0
    assert result["chamfer"]["chamfer"] == 0.0
    metric = difference_maps(s, s)["metric"].numpy()
    assert (metric[np.isfinite(metric)] == 0).all() and np.isfinite(metric).sum() == valid


def test_runs_without_a_shared_frame_are_named_not_compared():
    K = intrinsics(0.8, 0.5, 0.5, 6, 8)
    depth = np.full((1, 6, 8), 4.0, np.float32)
    a = source("a", [K], [pose([0, 0, 0])], [0], depth)
    b = source("b", [K], [pose([0.1, 0, 0])], [3], depth)
    pair = compare_pair(a, b)
    assert pair["shared_frames"] == [] and pair["pixels"] == 0
    assert "share no context frame" in comparison_problem(a, b, "b")
    assert comparison_problem(a, a, "a") is None
    assert "no depth of gt" in comparison_problem(a, None, "gt")


def test_unique_names_keep_order_and_avoid_gt():
    assert unique_names(["m", "m", "gt", "m-2", "n"]) == ["m", "m-2", "gt-2", "m-2-2", "n"]


def test_compare_archive_holds_every_run_and_the_comparison():
    """Two runs of the plane scene at different resolutions; the PLY pair is the one asked."""
    from dsviewer.viewer.export import EXPORT_FILE_NAMES
    from dsviewer.viewer.export.compare_files import ComparisonInputError, compare_archive
    from dsviewer.viewer.export.layout import RERUN_FILE
    from dsviewer.viewer.session.loaded import run_prediction

    small = run_prediction(make_scene(2, 12, 16), make_prediction, run_name="small")
    large = run_prediction(make_scene(2, 24, 32), make_prediction, run_name="large")
    name, data = compare_archive([small, large], 1, 0)
    assert name == "plane_compare.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        compare = json.loads(archive.read("plane/compare.json"))
    expected = {f"plane/runs/{run}/{f}" for run in ("small", "large") for f in EXPORT_FILE_NAMES
                if f not in ("sfm.ply", RERUN_FILE)}  # the plane has no SfM points; no --rerun
    assert names - expected == {"plane/compare.json", "plane/compare.ply"}
    assert names >= expected - {"plane/runs/small/targets.png", "plane/runs/large/targets.png"}
    assert compare["compare_ply"] == {"a": "large", "b": "small"}
    pairs = [(p["a"], p["b"]) for p in compare["pairs"]]
    assert pairs == [("small", "large"), ("gt", "small"), ("gt", "large")]
    # Exact plane depths: the runs agree up to bilinear interpolation of a plane's depth.
    assert compare["pairs"][0]["depth_abs_rel_b_vs_a"] < 1e-3
    for bad in ([small], [small, small]):
        with pytest.raises(ComparisonInputError):
            compare_archive(bad, 0, 0)
    with pytest.raises(ComparisonInputError):
        compare_archive([small, large], 0, 2)


# --- dsviewer export with several checkpoints, real models -----------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``--ckpt demo --ckpt tiny --ckpt tiny`` on two demo scenes: runs at 128 x 128, 64 x 64
    and 64 x 64 (the same file twice: one load, two runs)."""
    import dsviewer.backends
    from dsviewer.viewer.assets import demo_checkpoint, demo_data_root, demo_scene_keys
    from dsviewer.viewer.export_cli import main

    tiny = tiny_checkpoint()
    out = tmp_path_factory.mktemp("compare") / "out"
    keys = demo_scene_keys()[:2]
    args = ["--ckpt", str(demo_checkpoint()), "--ckpt", str(tiny), "--ckpt", str(tiny),
            "--data-root", str(demo_data_root()), "--scene", keys[0], "--scene", keys[1],
            "--target", "3", "--device", "cpu", "--out", str(out)]  # fmt: skip
    original, loads = dsviewer.backends.open_backend, []

    def counting_open_backend(path, *rest, **options):  # each call loads one model
        loads.append(Path(path))
        return original(path, *rest, **options)

    with pytest.MonkeyPatch.context() as patch, redirect_stderr(io.StringIO()):
        patch.setattr(dsviewer.backends, "open_backend", counting_open_backend)
        status = main(args)
    names = [demo_checkpoint().stem, tiny.stem, f"{tiny.stem}-2"]
    return {"status": status, "out": out, "keys": keys, "loads": loads, "names": names,
            "checkpoints": [demo_checkpoint(), tiny]}  # fmt: skip


def read_run(folder: Path) -> dict:
    """A run's cameras, final depth and GT depth, read from its exported files."""
    cameras = json.loads((folder / "cameras.json").read_text())["context"]
    H, W = cameras[0]["image_size"]
    maps = {}
    for layer in ("final", "gt"):
        vertex = PlyData.read(str(folder / f"{layer}.ply"))["vertex"].data
        depth = np.zeros((len(cameras), H, W))
        pixel = vertex["scalar_view"], vertex["scalar_v"], vertex["scalar_u"]
        depth[pixel] = vertex["scalar_depth"]
        maps[layer] = depth
    return {"cameras": cameras, **maps}


def along_rays(cameras_a: list, cameras_b: list, depth_b: np.ndarray, shape_a) -> np.ndarray:
    """b's depth along a's pixel rays for views of one frame that share their camera centre."""
    out = np.full((len(cameras_a), *shape_a), np.nan)
    for i, cam_a in enumerate(cameras_a):
        j = [c["frame"] for c in cameras_b].index(cam_a["frame"])
        cam_b = cameras_b[j]
        Ta, Tb = np.array(cam_a["T_world_cam"]), np.array(cam_b["T_world_cam"])
        assert np.allclose(Ta[:3, 3], Tb[:3, 3], atol=1e-12)  # one frame, one camera centre
        # inv, not transpose: stored rotations are orthonormal to float32 precision only.
        R_b_a = np.linalg.inv(Tb[:3, :3]) @ Ta[:3, :3]
        rays = pixel_rays(np.array(cam_a["intrinsics"]), *shape_a) @ R_b_a.T
        Kb = np.array(cam_b["intrinsics"])
        Hb, Wb = cam_b["image_size"]
        x = (Kb[0, 0] * rays[..., 0] / rays[..., 2] + Kb[0, 2]) * Wb - 0.5
        y = (Kb[1, 1] * rays[..., 1] / rays[..., 2] + Kb[1, 2]) * Hb - 0.5
        for row, column in np.ndindex(*shape_a):
            sample = bilinear(depth_b[j], x[row, column], y[row, column])
            out[i, row, column] = sample / rays[row, column, 2]  # z-depth in a's camera
    return out


def abs_rel(along: np.ndarray, own: np.ndarray) -> tuple[float, int]:
    compared = np.isfinite(along) & (own > 0)
    return float(np.mean(np.abs(along - own)[compared] / own[compared])), int(compared.sum())


def test_export_writes_every_run_and_loads_each_model_once(exported):
    out, names = exported["out"], exported["names"]
    assert exported["status"] == 0
    assert exported["loads"] == exported["checkpoints"]  # the repeated file is loaded once
    assert sorted(p.name for p in out.iterdir()) == sorted(exported["keys"])
    for key in exported["keys"]:
        scene = out / key
        assert sorted(p.name for p in scene.iterdir()) == ["compare.json", "compare.ply", "runs"]
        assert sorted(p.name for p in (scene / "runs").iterdir()) == sorted(names)
        compare = json.loads((scene / "compare.json").read_text())
        assert compare["runs"] == names
        assert [(p["a"], p["b"]) for p in compare["pairs"]] == [
            (names[0], names[1]), (names[0], names[2]), (names[1], names[2]),
            ("gt", names[0]), ("gt", names[1]), ("gt", names[2]),
        ]  # fmt: skip
        same_model = compare["pairs"][2]  # one checkpoint run twice: the same prediction
        assert same_model["depth_abs_rel_b_vs_a"] == 0.0 and same_model["chamfer"]["chamfer"] == 0.0
        shapes = {json.loads((scene / "runs" / n / "cameras.json").read_text())["context"][0]
                  ["image_size"][0] for n in names}  # fmt: skip
        assert shapes == {128, 64}
        # What made each run: the file, the frames and the planes its metrics.json reports.
        from dsviewer.viewer.session.specs import model_path

        files = [exported["checkpoints"][0], *exported["checkpoints"][1:] * 2]
        for name, checkpoint in zip(names, files, strict=True):
            definition = compare["run_definitions"][name]
            metrics = json.loads((scene / "runs" / name / "metrics.json").read_text())["scene"]
            assert definition["checkpoint"] == metrics["checkpoint"] == str(model_path(checkpoint))
            assert definition["context_frames"] == metrics["context_frames"]
            assert [definition["near"], definition["far"]] == [metrics["near"][0],
                                                               metrics["far"][0]]  # fmt: skip
        assert compare["notes"] == [] and all(pair["shared_frames"] for pair in compare["pairs"])


def test_compare_json_matches_an_independent_computation_at_two_resolutions(exported):
    """AbsRel (overall, per view, pixel counts) of the 64 x 64 run along the 128 x 128 run's
    rays, and of each run along the GT's rays, recomputed from the exported files; Chamfer by
    brute force; the GT pair of the first run equals its own metrics.json AbsRel."""
    from scipy.spatial import cKDTree

    names = exported["names"]
    scene = exported["out"] / exported["keys"][0]
    compare = json.loads((scene / "compare.json").read_text())
    runs = {name: read_run(scene / "runs" / name) for name in names}
    large, small = runs[names[0]], runs[names[1]]
    gt = large["gt"]  # GT as preprocessed for the first run
    checks = [(names[0], names[1], large["final"], small), ("gt", names[1], gt, small),
              ("gt", names[0], gt, large)]  # fmt: skip
    for a, b, own, run_b in checks:
        pair = next(p for p in compare["pairs"] if (p["a"], p["b"]) == (a, b))
        along = along_rays(large["cameras"], run_b["cameras"], run_b["final"], own.shape[1:])
        value, pixels = abs_rel(along, own)
        assert pair["depth_abs_rel_b_vs_a"] == pytest.approx(value, rel=1e-9)
        assert pair["pixels"] == pixels and pair["a_pixels"] == int((own > 0).sum())
        if run_b is small:  # a's outer half-pixel ring lies outside the 64 px run's centres
            assert 0.9 * own.size < pixels < (own > 0).sum()
        else:
            assert pixels == (own > 0).sum()
        for view, per_view in enumerate(pair["per_view"]):
            assert per_view["frame"] == large["cameras"][view]["frame"]
            view_value, view_pixels = abs_rel(along[view], own[view])
            assert per_view["depth_abs_rel_b_vs_a"] == pytest.approx(view_value, rel=1e-9)
            assert per_view["pixels"] == view_pixels
    metrics = json.loads((scene / "runs" / names[0] / "metrics.json").read_text())
    gt_pair = next(p for p in compare["pairs"] if (p["a"], p["b"]) == ("gt", names[0]))
    assert gt_pair["depth_abs_rel_b_vs_a"] == pytest.approx(
        metrics["gt"]["final"]["overall"]["abs_rel"], rel=1e-12
    )

    def cloud(name):
        vertex = PlyData.read(str(scene / "runs" / name / "final.ply"))["vertex"].data
        return np.stack([vertex[c] for c in "xyz"], axis=-1).astype(np.float64)

    first, second = cloud(names[0]), cloud(names[1])
    a_to_b = cKDTree(second).query(first)[0].mean()
    b_to_a = cKDTree(first).query(second)[0].mean()
    assert compare["pairs"][0]["chamfer"]["chamfer"] == pytest.approx(0.5 * (a_to_b + b_to_a),
                                                                      rel=1e-6)  # fmt: skip


def test_compare_ply_holds_a_points_and_the_difference_per_point(exported):
    names = exported["names"]
    scene = exported["out"] / exported["keys"][0]
    compare = json.loads((scene / "compare.json").read_text())
    assert compare["compare_ply"] == {"a": names[0], "b": names[1]}
    large, small = (read_run(scene / "runs" / name) for name in names[:2])
    along = along_rays(large["cameras"], small["cameras"], small["final"], (128, 128))
    vertex = PlyData.read(str(scene / "compare.ply"))["vertex"].data
    final = PlyData.read(str(scene / "runs" / names[0] / "final.ply"))["vertex"].data
    assert vertex.dtype["scalar_depth_b_minus_a"] == np.float32
    assert all(vertex.dtype[f"scalar_{c}"] == np.int32 for c in ("view", "u", "v"))
    for column in ("x", "y", "z", "red", "green", "blue", "scalar_view", "scalar_u", "scalar_v"):
        np.testing.assert_array_equal(vertex[column], final[column])  # a's final points
    pixel = vertex["scalar_view"], vertex["scalar_v"], vertex["scalar_u"]
    expected = along[pixel] - large["final"][pixel]
    np.testing.assert_array_equal(np.isnan(vertex["scalar_depth_b_minus_a"]), np.isnan(expected))
    assert np.isnan(expected).mean() < 0.1
    finite = np.isfinite(expected)
    np.testing.assert_allclose(vertex["scalar_depth_b_minus_a"][finite], expected[finite],
                               rtol=1e-6, atol=1e-6)  # fmt: skip


def test_new_run_starts_from_the_chosen_models_own_planes_and_default_views(server, tmp_path):
    """New run's fields: Near/Far follow the chosen checkpoint (demo 1..25, tiny 0.5..100);
    left as shown they stay "the model's own" and "the default views" in the run definition
    (which later scenes rerun); same-named files in two folders are told apart."""
    import shutil

    from dsviewer.viewer.assets import demo_checkpoint, demo_data_root, demo_scene_keys
    from dsviewer.viewer.gui.app import ViewerApp
    from dsviewer.viewer.session.runs import RunLoader, run_planes
    from dsviewer.viewer.session.specs import RunSpec, SessionSettings, model_path

    demo, tiny = demo_checkpoint(), tiny_checkpoint()
    twin = tmp_path / "other" / demo.name
    twin.parent.mkdir()
    shutil.copy(demo, twin)
    key = demo_scene_keys()[0]
    loader = RunLoader([RunSpec(demo), RunSpec(tiny), RunSpec(twin)],
                       SessionSettings(data_root=(demo_data_root(),), device="cpu"))
    app = ViewerApp(server, loader=loader, scene_specs=[key])
    panel = app.runs_panel
    labels = list(panel.checkpoint.options)
    assert labels[0] == f"demo/{demo.name}" and labels[2] == f"other/{demo.name}"
    panel.checkpoint.value = labels[2]
    assert panel.chosen_checkpoint() == model_path(twin)
    panel.checkpoint.value = labels[1]
    assert (panel.near.value, panel.far.value) == (0.5, 100.0)
    panel.checkpoint.value = labels[0]
    assert (panel.near.value, panel.far.value) == (1.0, 25.0)
    app.show_runs(loader.load_all(key, loader.default_specs()[:1]), scene_spec=key)
    assert app.wait_idle(120)
    assert panel.context_frames.value == "0 7"  # run A's default views, shown for editing
    panel.checkpoint.value = labels[1]
    panel.request_run()
    assert app.wait_idle(120)
    new = app.runs[-1]
    assert new.spec == RunSpec(model_path(tiny))  # own planes, default views
    assert run_planes(new.loaded) == (0.5, 100.0)
    panel.context_frames.value = "0 99"  # the strip shows frames 0 to 7
    panel.request_run()
    assert "the scene has frames 0 to 7" in panel.status.content and len(app.runs) == 2
    panel.far.value = 50.0
    panel.context_frames.value = "0 3"
    panel.request_run()
    assert app.wait_idle(120)
    assert app.runs[-1].spec == RunSpec(model_path(tiny), (0, 3), None, 50.0)
    app.close()
