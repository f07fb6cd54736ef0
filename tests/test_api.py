"""The public Python API (``dsviewer.load``, ``open_scene``, ``Model.predict``, ``export``),
called as a user would: numpy arrays in, numpy or torch out.

References computed another way: the viewer's own pipeline (``ModelSession.load``, the path
``dsviewer`` and ``dsviewer export`` take) on the same scene, the metrics recorded in
``demo.json`` when the demo was shipped, the inverse-depth formula evaluated here on the
outputs, and ``dsviewer export`` run through its command line.

Budget: one demo model (128x128, 2 views), about eight forward passes on the CPU, two demo
exports (``dsviewer export`` and ``dsviewer.export``) and a 4-frame COLMAP capture.
"""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

import dsviewer
from dsviewer.viewer.assets import demo_checkpoint, demo_data_root, demo_info

KEY = "synthetic_7_0000"  # a bundled demo scene with GT depth


@pytest.fixture(scope="module")
def model() -> dsviewer.Model:
    return dsviewer.load_demo(device="cpu")


@pytest.fixture(scope="module")
def scene(model) -> dsviewer.Scene:
    return dsviewer.open_scene(KEY, model)


@pytest.fixture(scope="module")
def pred(model, scene) -> dsviewer.ScenePrediction:
    views = scene.context
    return model.predict(views.images, views.intrinsics, views.extrinsics,
                         near=views.near, far=views.far)  # fmt: skip


@pytest.fixture(scope="module")
def pipeline():
    """The same scene through the viewer's pipeline (what ``dsviewer`` shows)."""
    from dsviewer.viewer.session.model import ModelSession
    from dsviewer.viewer.session.specs import SessionSettings

    settings = SessionSettings(data_root=(demo_data_root(),), device="cpu")
    return ModelSession(demo_checkpoint(), settings)


def test_import_dsviewer_loads_neither_numpy_nor_torch():
    code = ("import sys, dsviewer; print({'numpy', 'torch'} & set(sys.modules) or None); "
            "print(callable(dsviewer.load), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO_ROOT.parent).stdout.split()  # fmt: skip
    assert out == ["None", "True", "False"]  # the names resolve on first use, still no torch


def test_outputs_are_numpy_and_torch_with_the_documented_shapes(model, pred, scene):
    V, (H, W) = 2, model.settings.image_shape
    arrays = pred.numpy()
    for name in ("final_depth", "coarse_depth", "coarse_inv_depth", "mono_inv_residual",
                 "confidence"):  # fmt: skip
        assert isinstance(getattr(pred, name), torch.Tensor)
        assert arrays[name].shape == (V, H, W) and arrays[name].dtype == np.float32
    assert arrays["gaussian_means"].shape == (V * H * W, 3)
    assert arrays["gaussian_covariances"].shape == (V * H * W, 3, 3)
    assert pred.inputs.images.shape == (V, H, W, 3)
    np.testing.assert_array_equal(pred.inputs.intrinsics, scene.context.intrinsics)
    assert ((arrays["confidence"] >= 0) & (arrays["confidence"] <= 1)).all()
    # Ordinary tensors: in-place edits (pred.final_depth[mask] = 0) work outside inference mode.
    assert not any(t.is_inference() for t in (pred.final_depth, pred.confidence,
                                               pred.gaussians.means))  # fmt: skip


def test_predictions_equal_the_viewer_pipeline_on_the_same_scene(pred, pipeline):
    session = pipeline
    loaded = session.load(KEY)
    layers = loaded.layers  # identity world_from_model: the dataset is used as it is
    assert loaded.scene.world_from_model.is_identity
    for ours, theirs in [(pred.final_depth, layers.final_depth),
                         (pred.coarse_depth, layers.coarse_depth),
                         (pred.mono_inv_residual, layers.residual_inv),
                         (pred.confidence, layers.confidence),
                         (pred.gaussians.means, layers.gaussians.means[0]),
                         (pred.gaussians.covariances, layers.gaussians.covariances[0]),
                         (pred.gaussians.opacities, layers.gaussians.opacities[0])]:
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_depth_accuracy_matches_the_metrics_recorded_when_the_demo_shipped(pred, scene):
    """AbsRel against GT, computed here from numpy (mean |d - gt| / gt over GT pixels inside
    near/far), equals demo.json's per-scene record."""
    gt = scene.context.depth
    near, far = scene.context.near[:, None, None], scene.context.far[:, None, None]
    mask = (gt >= near) & (gt <= far)
    recorded = demo_info()["demo_scene_metrics"][KEY]
    for part, depth in (("final", pred.final_depth.numpy()), ("coarse", pred.coarse_depth.numpy())):
        abs_rel = float(np.mean(np.abs(depth[mask] - gt[mask]) / gt[mask]))
        assert abs_rel == pytest.approx(recorded[part]["abs_rel"], abs=2e-4), part


def inverse_depth_rule(pred, near, far) -> np.ndarray:
    total = pred.coarse_inv_depth.numpy().astype(np.float64) + pred.mono_inv_residual.numpy()
    return 1.0 / np.clip(total, 1.0 / far, 1.0 / near)


def test_final_depth_is_the_clamped_inverse_of_coarse_plus_mono(pred, scene):
    near, far = scene.context.near[:, None, None], scene.context.far[:, None, None]
    np.testing.assert_allclose(pred.final_depth.numpy(), inverse_depth_rule(pred, near, far),
                               rtol=1e-5)  # fmt: skip
    coarse = 1.0 / np.clip(pred.coarse_inv_depth.numpy().astype(np.float64), 1 / far, 1 / near)
    np.testing.assert_allclose(pred.coarse_depth.numpy(), coarse, rtol=1e-6)


def test_user_planes_clamp_the_final_depth(model, scene):
    """near/far of one's own (3..6, inside this room's GT depth 2.7..19) are the clamp limits:
    every pixel beyond far is clamped to it."""
    views = scene.context
    near, far = 3.0, 6.0
    pred = model.predict(views.images, views.intrinsics, views.extrinsics, near=near, far=far)
    final = pred.final_depth.numpy()
    np.testing.assert_allclose(final, inverse_depth_rule(pred, near, far), rtol=1e-5)
    assert final.min() >= near * (1 - 1e-6) and final.max() <= far * (1 + 1e-6)
    assert np.isclose(final, far, rtol=1e-6).mean() > 0.005  # the far wall is clamped


def test_pixel_and_normalized_intrinsics_integer_and_float_images_agree(model, scene, pred):
    views = scene.context
    H, W = views.images.shape[1:3]
    normalized = views.intrinsics / np.array([W, H, 1.0])[:, None]  # rows 0 and 1 divided
    integers = np.round(views.images * 255).astype(np.int64)  # 0-255 in any integer type
    other = model.predict(torch.from_numpy(integers), normalized, views.extrinsics,
                          near=float(views.near[0]), far=float(views.far[0]),
                          intrinsics_unit="normalized")  # fmt: skip
    assert torch.equal(other.final_depth, pred.final_depth)
    assert torch.equal(other.gaussians.means, pred.gaussians.means)
    np.testing.assert_array_equal(other.inputs.intrinsics, views.intrinsics)


def test_a_capture_loads_and_predicts_as_the_viewer_and_as_raw_arrays(model, pipeline, tmp_path):
    """A 4-frame COLMAP capture of 160x240 photos (bigger than the model's 128x128): the scene
    opened by the API predicts what the viewer's pipeline predicts, and the raw photos with
    their pixel intrinsics (rescaled and cropped by predict) give the same prediction."""
    from PIL import Image

    from dsviewer.dataset.synthetic import render_example
    from tests.dataset_builders import png_bytes

    pytest.importorskip("open3d")  # the synthetic scene is ray-cast with open3d
    Rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    height, width = 160, 240
    example = render_example(5, 0, 4, height, width)
    photos = [np.asarray(Image.open(io.BytesIO(bytes(i.numpy())))) for i in example.images]
    K_norm = example.cameras[0, :4].double().numpy()
    fx, fy, cx, cy = (K_norm * np.array([width, height, width, height])).tolist()
    images_txt, poses = ["# images"], []
    (tmp_path / "images").mkdir()
    for i, (photo, row) in enumerate(zip(photos, example.cameras.double().numpy(), strict=True)):
        (tmp_path / "images" / f"{i}.png").write_bytes(png_bytes(photo))
        T_cam_world = np.vstack([row[6:].reshape(3, 4), [0, 0, 0, 1]])
        poses.append(np.linalg.inv(T_cam_world))
        x, y, z, w = Rotation.from_matrix(T_cam_world[:3, :3]).as_quat()  # scipy: xyzw
        q = [w, x, y, z]
        pose = " ".join(repr(float(v)) for v in [*q, *T_cam_world[:3, 3]])
        images_txt += [f"{i + 1} {pose} 1 {i}.png", ""]
    sparse = tmp_path / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text(f"1 PINHOLE {width} {height} {fx!r} {fy!r} {cx!r} {cy!r}\n")
    (sparse / "images.txt").write_text("\n".join(images_txt) + "\n")

    scene = dsviewer.open_scene(tmp_path, model, context=[0, 3])
    views = scene.context
    ours = model.predict(views.images, views.intrinsics, views.extrinsics)
    session = pipeline
    from dsviewer.viewer.session.specs import RunSpec

    run = RunSpec(demo_checkpoint(), context=(0, 3))
    theirs = session.run(session.views(str(tmp_path), run), run=run).prediction
    torch.testing.assert_close(ours.final_depth, theirs.final_depth, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.mono_inv_residual, theirs.mono_inv_residual)

    # Raw photos in, pixel intrinsics of the photos, poses in the scene's model frame.
    K_pixels = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    raw = model.predict([photos[0], photos[3]], np.stack([K_pixels] * 2),  # a list of views
                        views.extrinsics)  # fmt: skip
    torch.testing.assert_close(raw.final_depth, ours.final_depth, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(raw.inputs.intrinsics, views.intrinsics, rtol=1e-6)
    # The model frame (recentred, rescaled) maps back to the capture's units: camera centres.
    assert scene.world_from_model.scale != pytest.approx(1.0)
    back = scene.world_from_model.poses(torch.from_numpy(views.extrinsics))
    np.testing.assert_allclose(back[:, :3, 3].numpy(), np.stack(poses)[[0, 3], :3, 3],
                               atol=1e-5)  # fmt: skip


def good_inputs(scene):
    v = scene.context
    return {"images": v.images, "intrinsics": v.intrinsics, "extrinsics": v.extrinsics}


def flipped(T):
    T = T.copy()
    T[1, :3, 0] *= -1  # a reflection: determinant -1
    return T


BAD_INPUTS = {
    "channels first": (lambda i: {**i, "images": np.moveaxis(i["images"], -1, 1)},
                       "channels-first"),
    "one view": (lambda i: {k: v[:1] for k, v in i.items()}, "at least 2"),
    "0-255 floats": (lambda i: {**i, "images": i["images"] * 255}, "Divide 0-255"),
    "gray": (lambda i: {**i, "images": i["images"][..., 0]}, "[V, H, W, 3]"),
    "one K for all": (lambda i: {**i, "intrinsics": i["intrinsics"][0]}, "[2, 3, 3]"),
    "normalized as pixels": (lambda i: {**i, "intrinsics": i["intrinsics"] / 128 * np.array(
        [1, 1, 128.0])[:, None]}, "look normalized"),
    "3x4 poses": (lambda i: {**i, "extrinsics": i["extrinsics"][:, :3]}, "3x4"),
    "reflection": (lambda i: {**i, "extrinsics": flipped(i["extrinsics"])}, "determinant"),
    "16-bit": (lambda i: {**i, "images": (i["images"] * 65535).astype(np.uint16)}, "65535"),
    "text": (lambda i: {**i, "intrinsics": np.array([["a"] * 3] * 3)}, "numeric"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_paragraph_and_exit_status_2(model, scene, case, capsys):
    from dsviewer.viewer.errors import EXIT_USER_ERROR, run_entry_point

    change, phrase = BAD_INPUTS[case]
    inputs = change(good_inputs(scene))
    with pytest.raises(dsviewer.InputError) as raised:
        model.predict(**inputs)
    assert phrase in str(raised.value) and "\n" not in str(raised.value)
    assert run_entry_point("script", lambda: model.predict(**inputs)) == EXIT_USER_ERROR
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "Traceback" not in stderr


def test_bad_planes_and_unknown_files_are_user_errors(model, scene):
    from dsviewer.viewer.errors import is_user_error

    with pytest.raises(dsviewer.InputError, match="0 < near < far"):
        model.predict(**good_inputs(scene), near=5.0, far=2.0)
    with pytest.raises(dsviewer.InputError, match="load_demo"):
        dsviewer.load("demo")
    with pytest.raises(Exception) as raised:
        dsviewer.open_scene("synthetic_7_000", model)  # misspelled key: the close ones named
    assert is_user_error(raised.value) and KEY in str(raised.value)


def readme_python_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> tuple[dict, Path]:
    """Every ```python block of README.md, in order, in one namespace (like a notebook), run in
    an empty folder; returns the namespace and the folder."""
    blocks = readme_python_blocks()
    assert blocks, "README.md shows no Python example"
    folder = tmp_path_factory.mktemp("readme")
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 -- the point
    return namespace, folder


def test_the_readme_python_blocks_run_as_written(readme_run, pred):
    namespace, folder = readme_run
    assert torch.equal(namespace["pred"].final_depth, pred.final_depth)  # the same scene
    # The photos at twice the size, rescaled back by predict: close to the original depth.
    big = namespace["big"].final_depth.numpy()
    assert np.abs(big / pred.final_depth.numpy() - 1).mean() < 0.02
    assert (folder / "demo_export" / "metrics.json").is_file()


def test_export_writes_what_dsviewer_export_writes(readme_run, model, scene, tmp_path):
    """The README's ``dsviewer.export`` folder against ``dsviewer export --demo`` on its scene."""
    from dsviewer.viewer.export_cli import main

    ours = readme_run[1] / "demo_export"
    assert main(["--demo", "--scene", KEY, "--device", "cpu", "--out",
                 str(tmp_path / "cli")]) == 0  # fmt: skip
    cli_files = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert sorted(p.name for p in ours.iterdir()) == cli_files and "gaussians.ply" in cli_files
    api_metrics = json.loads((ours / "metrics.json").read_text())
    cli_metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert _without_timings(api_metrics) == _without_timings(cli_metrics)
    for name in ("final.ply", "gaussians.ply", "cameras.json"):
        assert (ours / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    with pytest.raises(ValueError, match="already holds an export"):
        dsviewer.export(ours, model, scene)  # refused before any model work


def _without_timings(metrics: dict) -> dict:
    return {k: _without_timings(v) if isinstance(v, dict) else v for k, v in metrics.items()
            if "seconds" not in k}  # fmt: skip


def test_src_reaches_into_the_viewer_only_inside_the_facade_functions():
    """docs/ARCHITECTURE.md's boundary: no module of src/ imports dsviewer.viewer, except
    src/api.py inside its functions (load_demo, export)."""
    inside_functions: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / "src").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                for inner in ast.walk(node):
                    if _imports_viewer(inner):
                        inside_functions.setdefault(path.name, set()).add(node.name)
        assert not any(_imports_viewer(node) for node in tree.body), path
    assert inside_functions == {"api.py": {"load_demo", "export"}}


def _imports_viewer(node: ast.AST) -> bool:
    names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
             [a.name for a in node.names] if isinstance(node, ast.Import) else [])  # fmt: skip
    return any(n == "dsviewer.viewer" or n.startswith("dsviewer.viewer.") for n in names)
