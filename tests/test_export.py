"""``dsviewer.viewer.export`` on the hand-built tilted-plane scene with a non-trivial
``world_from_model``,
and ``dsviewer export`` end to end with the real bundled demo model and scenes.

About 35-40 s on 2 cores: six small exports of the plane (matplotlib and open3d imports
dominate) and two real demo exports (~10 s each: the model's forward pass, the CPU Gaussian
render of a target view, metrics). Every expected value is recomputed here with float64 numpy
(brute-force nearest neighbours for Chamfer) from the scene's own arrays and the similarity, or
for the demo from the exported PLYs and the GT depth loaded afresh, independently of ``viewer/``.
"""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stderr
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from analysis_scenes import GT_HOLE, HEIGHT, WIDTH, build_case, depth_points, similarity
from plyfile import PlyData

from dsviewer.viewer.export import (
    EXPORT_FILE_NAMES,
    ExportExistsError,
    ExportSettings,
    export_scene,
)
from dsviewer.viewer.export.layout import RERUN_FILE
from dsviewer.viewer.export_cli import main, scene_folder
from dsviewer.viewer.panels import panel_figure_size
from dsviewer.viewer.session.loaded import run_prediction

SCALE = 2.0
VIEWS = 3


@pytest.fixture(scope="module")
def case():
    return build_case((1.0, 1.1, 1.0), clamp_pixels=True, world_from_model=similarity(SCALE))


def loaded_case(case):
    return run_prediction(case.scene, lambda _scene: case.prediction)


@pytest.fixture(scope="module")
def exported(case, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "plane"
    result = export_scene(out, loaded_case(case))
    return out, result


def _to_user(points: np.ndarray) -> np.ndarray:
    A = similarity(SCALE)
    return points @ A[:3, :3].T + A[:3, 3]


def _expected(case) -> dict[str, np.ndarray]:
    """Per-pixel expected values ``[V, H, W, ...]`` in the user's units, numpy float64."""
    prediction = case.prediction
    final = prediction.final_depth.double().numpy()
    near, far = prediction.near.numpy()[:, None, None], prediction.far.numpy()[:, None, None]
    coarse = 1.0 / np.clip(prediction.coarse_inv_depth.double().numpy(), 1.0 / far, 1.0 / near)
    f = WIDTH // prediction.confidence.shape[-1]
    confidence = prediction.confidence.numpy().repeat(f, axis=1).repeat(f, axis=2)
    gt = case.scene.context.depth.double().numpy()
    image = case.scene.context.image.numpy().transpose(0, 2, 3, 1)
    grid = np.arange(VIEWS), np.arange(HEIGHT), np.arange(WIDTH)
    view, row, col = np.meshgrid(*grid, indexing="ij")

    def points(depth):
        per_view = [depth_points(depth[i], case.K[i], case.T[i]) for i in range(VIEWS)]
        return _to_user(np.stack(per_view))

    return {
        "final_points": points(final), "coarse_points": points(coarse), "gt_points": points(gt),
        "final": SCALE * final, "coarse": SCALE * coarse, "gt": SCALE * gt,
        "residual": SCALE * (final - coarse),
        "residual_inv": prediction.mono_inv_residual.double().numpy() / SCALE,
        "confidence": confidence,
        "rgb": (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8),
        "view": view, "u": col, "v": row,
    }  # fmt: skip


def _read_all(path: Path) -> dict[str, np.ndarray]:
    """The file read by plyfile, open3d (tensor API) and trimesh; asserts they agree."""
    import open3d as o3d
    import trimesh

    vertex = PlyData.read(str(path))["vertex"].data
    by_plyfile = {name: np.asarray(vertex[name]) for name in vertex.dtype.names}
    cloud = o3d.t.io.read_point_cloud(str(path))
    mesh = trimesh.load(str(path), process=False)
    xyz = np.stack([by_plyfile[a] for a in "xyz"], axis=-1)
    rgb = np.stack([by_plyfile[c] for c in ("red", "green", "blue")], axis=-1)
    np.testing.assert_array_equal(cloud.point.positions.numpy(), xyz)
    np.testing.assert_array_equal(cloud.point.colors.numpy(), rgb)
    np.testing.assert_array_equal(np.asarray(mesh.vertices, dtype=np.float32), xyz)
    np.testing.assert_array_equal(np.asarray(mesh.colors)[:, :3], rgb)
    raw = mesh.metadata["_ply_raw"]["vertex"]["data"]
    for name, values in by_plyfile.items():
        if name in ("x", "y", "z", "red", "green", "blue"):
            continue
        np.testing.assert_array_equal(cloud.point[name].numpy()[:, 0], values)
        np.testing.assert_array_equal(np.asarray(raw[name]).reshape(-1), values)
    return by_plyfile


def test_point_plys_read_back_identically_with_three_readers(case, exported):
    out, _ = exported
    expected = _expected(case)
    all_pixels = np.ones((VIEWS, HEIGHT, WIDTH), dtype=bool)
    has_gt = expected["gt"] > 0
    assert has_gt[GT_HOLE].sum() == 0 and has_gt.sum() == all_pixels.sum() - 20
    residual = {"scalar_residual": "residual", "scalar_residual_inv": "residual_inv",
                "scalar_confidence": "confidence"}  # fmt: skip
    layouts = {
        "coarse.ply": ("coarse_points", all_pixels, {"scalar_depth": "coarse", **residual}),
        "final.ply": ("final_points", all_pixels, {"scalar_depth": "final", **residual}),
        "gt.ply": ("gt_points", has_gt, {"scalar_depth": "gt", **residual}),
        "residual.ply": ("final_points", all_pixels, {"scalar_depth": "final", **residual}),
    }  # fmt: skip
    for name, (points_key, mask, scalars) in layouts.items():
        data = _read_all(out / name)
        xyz = np.stack([data[a] for a in "xyz"], axis=-1)
        assert xyz.dtype == np.float32 and len(xyz) == mask.sum()
        np.testing.assert_allclose(xyz, expected[points_key][mask], atol=2e-4, rtol=1e-5)
        rgb = np.stack([data[c] for c in ("red", "green", "blue")], axis=-1)
        assert rgb.dtype == np.uint8
        np.testing.assert_array_equal(rgb, expected["rgb"][mask])
        for key in ("view", "u", "v"):
            assert data[f"scalar_{key}"].dtype == np.int32
            np.testing.assert_array_equal(data[f"scalar_{key}"], expected[key][mask])
        # Every scalar colour mode of the viewer travels as a scalar_ property (GT is not
        # analysed, so it has no consistency or clamp values).
        modes = {"scalar_gt_error"} | ({"scalar_consistency", "scalar_clamp"} if name != "gt.ply"
                                       else set())  # fmt: skip
        assert modes <= set(data), name
        for prop, key in scalars.items():
            assert data[prop].dtype == np.float32, (name, prop)
            np.testing.assert_allclose(data[prop], expected[key][mask], rtol=2e-5, atol=1e-6)


def test_comparison_ply_has_coarse_and_final_in_two_colours(case, exported):
    out, _ = exported
    expected = _expected(case)
    data = _read_all(out / "comparison.ply")
    n = VIEWS * HEIGHT * WIDTH
    from dsviewer.viewer.point_layers import POINT_LAYERS

    np.testing.assert_array_equal(data["scalar_layer"], np.repeat([0, 1], n))  # registry order
    rgb = np.stack([data[c] for c in ("red", "green", "blue")], axis=-1)
    assert (rgb[:n] == POINT_LAYERS["coarse"].color).all()
    assert (rgb[n:] == POINT_LAYERS["final"].color).all()
    xyz = np.stack([data[a] for a in "xyz"], axis=-1)
    np.testing.assert_allclose(xyz[:n], expected["coarse_points"].reshape(-1, 3), atol=2e-4)
    np.testing.assert_allclose(xyz[n:], expected["final_points"].reshape(-1, 3), atol=2e-4)


def test_gaussians_ply_round_trips_in_user_frame(case, exported):
    from dsviewer.geometry.spherical_harmonics import sh_basis, sh_degree_of
    from dsviewer.io.ply import read_gaussians_ply

    out, _ = exported
    model = case.prediction.gaussians
    read = read_gaussians_ply(out / "gaussians.ply")
    A = similarity(SCALE)
    R = A[:3, :3] / SCALE
    np.testing.assert_allclose(read.means[0].numpy(), _to_user(model.means[0].double().numpy()),
                               atol=2e-4)  # fmt: skip
    cov = model.covariances[0].double().numpy()
    expected_cov = SCALE**2 * np.einsum("ij,njk,lk->nil", R, cov, R)
    np.testing.assert_allclose(read.covariances[0].numpy(), expected_cov, rtol=1e-3, atol=1e-8)
    # The exported SH show the same colour seen from the turned direction, in the basis the
    # renderers evaluate: c_user . Y(R d) == c_model . Y(d) for any direction d. The DC term is
    # rotation-invariant; the higher bands must change.
    harmonics = read.harmonics[0].double()  # [N, 3, d_sh]
    original = model.harmonics[0].double()
    np.testing.assert_allclose(harmonics[..., 0], original[..., 0], atol=1e-6)
    assert not torch.allclose(harmonics[..., 1:], original[..., 1:], atol=1e-3)
    degree = sh_degree_of(harmonics.shape[-1])
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.float64), dim=-1)  # fmt: skip
    R_t = torch.from_numpy(R)
    seen_user = torch.einsum("ncs,ks->nck", harmonics, sh_basis(d @ R_t.T, degree))
    seen_model = torch.einsum("ncs,ks->nck", original, sh_basis(d, degree))
    np.testing.assert_allclose(seen_user.numpy(), seen_model.numpy(), atol=1e-4)
    np.testing.assert_allclose(read.opacities[0].numpy(), model.opacities[0].numpy(), atol=1e-5)


def test_metrics_json_matches_recomputed_values(case, exported):
    out, result = exported
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    expected = _expected(case)
    assert metrics["units"]["scale_from_model"] == pytest.approx(SCALE)
    assert metrics["scene"]["far"] == pytest.approx([40.0] * VIEWS)
    # GT metrics in user units: RMSE scales with the similarity, AbsRel and delta do not.
    gt, has_gt = expected["gt"], expected["gt"] > 0
    for layer in ("coarse", "final"):
        d, g = expected[layer][has_gt], gt[has_gt]
        overall = metrics["gt"][layer]["overall"]
        assert overall["abs_rel"] == pytest.approx(np.mean(np.abs(d - g) / g), rel=1e-6)
        assert overall["rmse"] == pytest.approx(np.sqrt(np.mean((d - g) ** 2)), rel=1e-6)
        assert overall["delta"] == pytest.approx(np.mean(np.maximum(d / g, g / d) < 1.25))
    assert metrics["gt"]["final"]["per_view"][1]["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    # Chamfer distances by brute force (all pairs, numpy), in user units.
    coarse = expected["coarse_points"].reshape(-1, 3)
    final = expected["final_points"].reshape(-1, 3)
    distances = np.linalg.norm(coarse[:, None, :] - final[None, :, :], axis=-1)  # [N, N]
    a_to_b, b_to_a = distances.min(axis=1), distances.min(axis=0)
    chamfer = metrics["chamfer"]["coarse_vs_final"]
    assert chamfer["a_to_b_mean"] == pytest.approx(a_to_b.mean(), rel=1e-4)
    assert chamfer["b_to_a_mean"] == pytest.approx(b_to_a.mean(), rel=1e-4)
    assert chamfer["chamfer"] == pytest.approx(0.5 * (a_to_b.mean() + b_to_a.mean()), rel=1e-4)
    assert set(metrics["chamfer"]) == {"coarse_vs_final", "coarse_vs_gt", "final_vs_gt"}
    # Clamps: exactly two pixels of view 2 (near and far); shares over all pixels.
    assert metrics["clamp"]["final_at_far_share"] == pytest.approx(1.0 / (VIEWS * HEIGHT * WIDTH))
    per_view_near = metrics["clamp"]["per_view_final_at_near_share"]
    assert per_view_near == pytest.approx([0, 0, 1 / (HEIGHT * WIDTH)])
    # Consistency is unit-free: view 0 against the 1.1x view 1 is 1/11 everywhere they overlap.
    pair = metrics["consistency"]["final"]["pairs"]["0->1"]
    assert pair["mean_rel_error"] == pytest.approx(1.0 / 11.0, rel=1e-4)
    assert pair["inconsistent_share"] == 1.0
    assert metrics["consistency"]["final"]["threshold"] == 0.05
    n = VIEWS * HEIGHT * WIDTH
    assert metrics["point_counts"] == {"coarse.ply": n, "final.ply": n, "residual.ply": n,
                                       "comparison.ply": 2 * n, "gt.ply": n - 20,
                                       "centers.ply": n, "gaussians.ply": n}  # fmt: skip
    # no SfM points, no --rerun
    assert sorted(metrics["files"]) == sorted(set(EXPORT_FILE_NAMES) - {"sfm.ply", RERUN_FILE})
    # Cost-volume peakedness: max probability and entropy / log(D), recomputed in numpy.
    probs = case.prediction.match_probs.double().numpy()  # [V, D, h, w]
    entropy = -(probs * np.log(probs)).sum(axis=1) / np.log(probs.shape[1])
    cost = metrics["cost_volume"]
    assert cost["candidates"] == probs.shape[1] and cost["feature_shape"] == [6, 8]
    assert cost["mean_max_probability"] == pytest.approx(probs.max(axis=1).mean(), rel=1e-9)
    assert cost["mean_normalized_entropy"] == pytest.approx(entropy.mean(), rel=1e-9)
    # Gaussian scale statistics in user units: the largest linear scale times the similarity's.
    scales = case.prediction.gaussians.scales[0].double().max(-1).values.numpy() * SCALE
    assert metrics["gaussians"]["scale"]["mean"] == pytest.approx(scales.mean(), rel=1e-4)
    opacity = case.prediction.gaussians.opacities[0].double().numpy()
    low_share = metrics["gaussians"]["below_0.05_opacity_share"]
    assert low_share == pytest.approx(np.mean(opacity < 0.05))


def test_panels_png_and_scene_html(exported):
    from PIL import Image

    out, _ = exported
    with Image.open(out / "panels.png") as image:
        # 5 columns of 3 in; rows of 0.76 * 3 * 24 / 32 + 0.6 = 2.31 in; 100 dpi.
        assert image.size == (1500, 693) == panel_figure_size(VIEWS, HEIGHT, WIDTH)
        pixels = np.asarray(image.convert("RGB"))
        assert pixels.std() > 20  # not a blank canvas
    html = (out / "scene.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "__VISER_EMBED_DATA__" in html  # the scene travels inside the file
    assert "ws://" not in html and "127.0.0.1" not in html  # no server needed


def test_existing_export_is_not_overwritten_without_flag(case, tmp_path):
    loaded = loaded_case(case)
    out = tmp_path / "scene"
    export_scene(out, loaded)
    before = (out / "metrics.json").read_bytes()
    with pytest.raises(ExportExistsError, match="--overwrite"):
        export_scene(out, loaded)
    assert (out / "metrics.json").read_bytes() == before
    # With overwrite, a scene without GT replaces the folder as a whole: no stale gt.ply.
    no_gt = build_case((1.0, 1.0, 1.0))
    no_gt.scene.context.depth = None
    result = export_scene(out, loaded_case(no_gt), ExportSettings(), overwrite=True)
    assert not (out / "gt.ply").exists() and "gt" not in result.metrics
    assert sorted(p.name for p in out.iterdir()) == sorted(
        set(EXPORT_FILE_NAMES) - {"gt.ply", "sfm.ply", RERUN_FILE})
    assert (out / "metrics.json").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene"]  # no working folders left


@dataclass
class DemoRun:
    """One real ``dsviewer export`` run on the bundled demo (model and scenes)."""

    args: list[str]
    out: Path
    status: int
    stderr: str
    load_model_calls: list[Path]  # checkpoints passed to the real load_checkpoint
    views: dict[str, tuple[list[int], list[int]]]  # key -> (context, target) of the index
    skipped: str  # the key whose index entry is null
    walls: dict[str, list[float]]  # key -> [its load started, its metrics.json written]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> DemoRun:
    """``--scene missing`` plus ``--all-from-index`` over two demo keys and a null one.

    The real model and loaders run; ``dsviewer.backends.presets.load_checkpoint`` is wrapped to
    count its calls (it still loads). Shared by two tests: two real exports take ~10 s each on
    2 cores.
    """
    import dsviewer.backends.presets
    from dsviewer.viewer.assets import demo_checkpoint, demo_data_root, demo_scene_keys

    first, second, third = demo_scene_keys()[:3]
    # One target view each keeps the CPU Gaussian renders behind targets.png short.
    views = {second: ([1, 6], [4]), first: ([0, 5], [2])}
    root = tmp_path_factory.mktemp("demo_export")
    index = root / "index.json"
    index.write_text(json.dumps({
        second: {"context": views[second][0], "target": views[second][1]},
        third: None,
        first: {"context": views[first][0], "target": views[first][1]},
    }))  # fmt: skip
    out = root / "out"
    args = ["--ckpt", str(demo_checkpoint()), "--data-root", str(demo_data_root()),
            "--device", "cpu", "--scene", "missing", "--index", str(index), "--all-from-index",
            "--out", str(out)]  # fmt: skip
    original = dsviewer.backends.presets.load_checkpoint
    calls: list[Path] = []

    def counting_load_model(path, *rest, **options):
        calls.append(Path(path))
        return original(path, *rest, **options)

    # Each scene's wall time, from its load to the writing of its metrics.json (the last file),
    # by clocks of our own.
    import dsviewer.viewer.export
    from dsviewer.viewer.evaluation.loading import SceneLoader

    walls: dict[str, list[float]] = {}
    load, write = SceneLoader.load, dsviewer.viewer.export._write_bytes

    def timed_load(self, planned, *rest):
        walls[planned.key] = [time.perf_counter()]
        return load(self, planned, *rest)

    def timed_write(path, data):
        if path.name == "metrics.json":
            walls[json.loads(data)["scene"]["key"]].append(time.perf_counter())
        write(path, data)

    capture = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stderr(capture):  # rich writes there
        patch.setattr(dsviewer.backends.presets, "load_checkpoint", counting_load_model)
        patch.setattr(SceneLoader, "load", timed_load)
        patch.setattr(dsviewer.viewer.export, "_write_bytes", timed_write)
        status = main(args)
    return DemoRun(args, out, status, capture.getvalue(), calls, views, third, walls)


def test_metrics_json_times_every_stage_of_the_scene(demo_run):
    """metrics.json's stages (dsviewer.stage_timer) are all there, none negative, and add up
    to the scene's wall time from its load to the writing of metrics.json, measured by the
    test's own clocks."""
    from dsviewer.stage_timer import STAGE_NAMES

    for key in demo_run.views:
        stages = json.loads((demo_run.out / key / "metrics.json").read_text())["stages"]
        seconds = stages["seconds"]
        assert tuple(seconds) == STAGE_NAMES and set(stages["meanings"]) == set(STAGE_NAMES)
        assert all(value >= 0.0 for value in seconds.values())
        for name in ("decode", "preprocess", "forward", "unproject", "analysis",
                     "consistency", "target_renders", "thumbnails", "writes"):  # fmt: skip
            assert seconds[name] > 0.0, (key, name)  # each one did some work
        start, end = demo_run.walls[key]
        wall = end - start
        assert sum(seconds.values()) == pytest.approx(wall, rel=0.02, abs=0.02), (seconds, wall)


def _check_demo_export(folder: Path, key: str, context: list[int], target: list[int]) -> None:
    """All files are there, and the final-depth AbsRel in ``metrics.json`` is what the exported
    final depths (``residual.ply``) give against the scene's GT depth loaded here afresh."""
    from dsviewer.dataset import load_scene
    from dsviewer.viewer.assets import demo_data_root, demo_preprocess_settings

    assert sorted(p.name for p in folder.iterdir()) == sorted(
        set(EXPORT_FILE_NAMES) - {"sfm.ply", RERUN_FILE})
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["scene"]["key"] == key and metrics["scene"]["context_frames"] == context
    assert metrics["targets"]["index"] == target
    scene = load_scene(key, settings=demo_preprocess_settings(), data_roots=[demo_data_root()],
                       context=context, target=target)  # fmt: skip
    gt = scene.context.depth.double().numpy()  # [V, H, W]
    vertex = PlyData.read(str(folder / "final.ply"))["vertex"].data
    final = np.zeros_like(gt)
    final[vertex["scalar_view"], vertex["scalar_v"], vertex["scalar_u"]] = vertex["scalar_depth"]
    assert len(vertex) == gt.size and (final > 0).all()  # one point per pixel
    has_gt = gt > 0
    assert has_gt.mean() > 0.5  # the demo scenes have GT almost everywhere
    d, g = final[has_gt], gt[has_gt]
    overall = metrics["gt"]["final"]["overall"]
    assert overall["pixels"] == has_gt.sum()
    assert overall["abs_rel"] == pytest.approx(np.mean(np.abs(d - g) / g), rel=1e-5)
    assert overall["rmse"] == pytest.approx(np.sqrt(np.mean((d - g) ** 2)), rel=1e-5)
    # gt.ply holds the same GT depth at the same pixels (a no-similarity scene: scale 1).
    assert metrics["units"]["scale_from_model"] == 1.0
    gt_vertex = PlyData.read(str(folder / "gt.ply"))["vertex"].data
    at_pixels = gt[gt_vertex["scalar_view"], gt_vertex["scalar_v"], gt_vertex["scalar_u"]]
    np.testing.assert_allclose(gt_vertex["scalar_depth"], at_pixels, rtol=1e-6)


def test_main_exports_several_scenes_with_one_model(demo_run, capsys):
    """Real model, real demo scenes: the model loads once, a bad key fails alone (exit 1)."""
    from dsviewer.viewer.assets import demo_checkpoint

    assert demo_run.status == 1  # one scene failed, the other two were written
    assert demo_run.load_model_calls == [demo_checkpoint()]  # once for all three scenes
    assert sorted(p.name for p in demo_run.out.iterdir()) == sorted(demo_run.views)
    stderr = one_line(demo_run.stderr)
    assert "missing" in stderr and "1 of 3 scenes failed" in stderr
    for key, (context, target) in demo_run.views.items():
        _check_demo_export(demo_run.out / key, key, context=context, target=target)
    # Re-running into the same folder is refused before any work, with exit status 2.
    assert main(demo_run.args) == 2
    assert "already holds an export" in one_line(capsys.readouterr().err)
    assert len(demo_run.load_model_calls) == 1
    out = demo_run.out
    assert scene_folder(out, "a/b", many=False) == out  # one scene goes straight into --out
    assert scene_folder(out, "re10k/a b", many=True) == out / "re10k_a_b"


def one_line(text: str) -> str:
    """Console output with rich's line wrapping (which moves with path lengths) undone."""
    return " ".join(text.split())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scene", "a", "--out", "X"], "--ckpt"),
        (["--ckpt", "CKPT", "--scene", "a"], "--out"),
        (["--ckpt", "CKPT", "--out", "X"], "no scene given"),
        (["--ckpt", "nope.pth", "--scene", "a", "--out", "X"], "does not exist"),
        (["--ckpt", "CKPT", "--all-from-index", "--out", "X"], "--index"),
    ],
)
def test_main_rejects_bad_input_clearly(tmp_path, capsys, args, message):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"x")
    args = [str(ckpt) if a == "CKPT" else str(tmp_path / a) if a == "X" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in one_line(err) and "Traceback" not in err


def test_all_from_index_exports_the_evaluated_keys(demo_run):
    """The views come from the index; null entries are skipped as the official evaluation does."""
    assert demo_run.skipped not in demo_run.views
    assert not (demo_run.out / demo_run.skipped).exists()
    assert sorted(p.name for p in demo_run.out.iterdir()) == sorted(demo_run.views)
    for key, (context, _) in demo_run.views.items():
        metrics = json.loads((demo_run.out / key / "metrics.json").read_text())
        assert metrics["scene"]["context_frames"] == context


def test_export_archive_zips_the_same_files(case, exported):
    import io
    import zipfile

    from dsviewer.viewer.export import export_archive

    out, result = exported
    name, data = export_archive(loaded_case(case))
    assert name == "plane_test_export.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(f"plane_test/{f}" for f in EXPORT_FILE_NAMES
                                if f not in ("sfm.ply", RERUN_FILE))
        assert archive.read("plane_test/final.ply") == (out / "final.ply").read_bytes()
        assert json.loads(archive.read("plane_test/metrics.json")) == result.metrics


def test_main_prints_notes_and_leaves_bugs_to_the_boundary(tmp_path, monkeypatch, capsys):
    """The demo model on a tiny capture (real load and forward; the file writing replaced):
    each scene's notes reach the console, and an error that is not bad input (a plain
    ValueError, as numpy raises) is a bug: one line naming the log, exit 1."""
    import dsviewer.viewer.export
    from dsviewer.viewer.assets import demo_checkpoint
    from tests.dataset_builders import noise_image, png_bytes, pose, write_transforms

    capture = tmp_path / "capture"
    capture.mkdir()
    for i in range(3):
        (capture / f"{i}.png").write_bytes(png_bytes(noise_image(i, 64, 64)))
    write_transforms(capture, [(f"{i}.png", pose(x=0.3 * i)) for i in range(3)],
                     fl_x=60.0, w=64, h=64)
    args = ["--ckpt", str(demo_checkpoint()), "--scene", str(capture), "--target", "2",
            "--out", str(tmp_path / "out"), "--device", "cpu", "--overwrite"]
    exported = []
    monkeypatch.setattr(dsviewer.viewer.export, "export_scene", lambda *a, **k: exported.append(a))
    assert main(args) == 0 and len(exported) == 1
    err = one_line(capsys.readouterr().err)
    notes = [n.message for n in exported[0][1].notes]
    assert any("were chosen" in n for n in notes)
    for note in notes:
        assert f"Note: {one_line(note)}" in err

    def broken(*_args, **_kwargs):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(dsviewer.viewer.export, "export_scene", broken)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert main(args) == 1
    err = one_line(capsys.readouterr().err)
    assert "internal error (ValueError" in err and "Traceback" not in err
    logs = list((tmp_path / "state").rglob("*.log"))
    assert len(logs) == 1 and "broadcast" in logs[0].read_text()
