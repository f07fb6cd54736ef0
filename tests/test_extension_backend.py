"""The extension backend on the shipped stand-in checkout (tests/data/standin_depthsplat).

The stand-in computes a tiny, fully known model; every number the worker sends back is
compared with the same computation done here, and its Gaussians with our own unprojection.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT

from dsviewer.backends import open_backend
from dsviewer.backends.depthsplat_patch import (
    INSERTIONS,
    MATCHER_FILE,
    MATCHER_INSERTION,
    plan_patch,
)
from dsviewer.backends.extension import DepthSplatRepoError, ExtensionBackend
from dsviewer.backends.extension_worker import read_message, write_message
from dsviewer.dataset.types import ViewSet
from dsviewer.geometry.projection import unproject_depth
from dsviewer.viewer import patch_cli
from dsviewer.viewer.errors import EXIT_USER_ERROR

STANDIN = REPO_ROOT / "tests" / "data" / "standin_depthsplat"
PRESET = "depthsplat-gs-small-re10k-256x256-view2-cfeab6b1"  # near 0.5, far 100
CANDIDATES = 16  # the stand-in's experiment file sets num_depth_candidates
RESIDUAL_SCALE = 0.5  # and its encoder file residual_scale


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def checkout_copy(tmp_path: Path, name: str = "depthsplat", patched: bool = True) -> Path:
    repo = tmp_path / name
    shutil.copytree(STANDIN, repo)
    if patched:
        assert patch_cli.main([str(repo)]) == 0
    return repo


def standin_weights(path: Path, depth_only: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    state = {
        "encoder.depth_predictor.matcher.weight": torch.randn(CANDIDATES, 3, 1, 1, generator=g),
        "encoder.depth_predictor.matcher.bias": torch.randn(CANDIDATES, generator=g),
        "encoder.depth_predictor.upsampler.weight": 0.01 * torch.randn(1, 3, 1, 1, generator=g),
        "encoder.depth_predictor.upsampler.bias": torch.zeros(1),
    }
    if depth_only:
        depth = {k.removeprefix("encoder.depth_predictor."): v for k, v in state.items()}
        torch.save({"model": depth}, path)
    else:
        state["encoder.opacity.weight"] = torch.randn(1, 3, 1, 1, generator=g)
        state["encoder.opacity.bias"] = torch.randn(1, generator=g)
        torch.save(state, path)
    return state


def two_views(height: int = 16, width: int = 24) -> ViewSet:
    g = torch.Generator().manual_seed(1)
    K = torch.tensor([[0.9, 0.0, 0.5], [0.0, 1.2, 0.5], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    T = torch.eye(4).repeat(2, 1, 1)
    T[1, 0, 3] = 0.2
    return ViewSet(
        image=torch.rand(2, 3, height, width, generator=g),
        intrinsics=K.clone(),
        extrinsics=T,
        near=torch.full((2,), 0.5),
        far=torch.full((2,), 100.0),
        index=torch.arange(2),
    )


def expected_outputs(state: dict[str, torch.Tensor], views: ViewSet) -> dict[str, torch.Tensor]:
    """The stand-in's computation, written out again: [V, ...] per key."""
    image, inv_far, inv_near = views.image, 1 / views.far, 1 / views.near
    w = {k.removeprefix("encoder.depth_predictor."): v for k, v in state.items()}
    low = F.avg_pool2d(image, 4)
    probs = F.conv2d(low, w["matcher.weight"], w["matcher.bias"]).softmax(dim=1)  # [V, D, h, w]
    steps = torch.linspace(0, 1, CANDIDATES)
    candidates = inv_far[:, None] + steps * (inv_near - inv_far)[:, None]  # [V, D]
    candidates = candidates[:, :, None, None].expand_as(probs)
    coarse_low = (probs * candidates).sum(dim=1, keepdim=True)
    coarse = F.interpolate(coarse_low, scale_factor=4, mode="bilinear", align_corners=True)[:, 0]
    mono = RESIDUAL_SCALE * F.conv2d(image, w["upsampler.weight"], w["upsampler.bias"])[:, 0]
    clamped = torch.minimum(coarse + mono, inv_near[:, None, None])
    clamped = torch.maximum(clamped, inv_far[:, None, None])
    return {
        "match_probs": probs,
        "depth_candidates": candidates,
        "coarse": coarse,
        "mono": mono,
        "final": 1 / clamped,
    }


def load_error(repo: Path, tmp_path: Path) -> str:
    """The message with which loading stand-in weights from ``repo`` fails."""
    standin_weights(tmp_path / "w.pth")
    with pytest.raises(DepthSplatRepoError) as caught:
        ExtensionBackend(tmp_path / "w.pth", repo=repo, device="cpu", config=PRESET)
    assert "Traceback" not in str(caught.value)  # one paragraph, not a stack
    return str(caught.value)


@pytest.fixture(scope="module")
def patched_run(tmp_path_factory):
    """One patched stand-in, one worker (with dsviewer's root on PYTHONPATH), one prediction."""
    tmp = tmp_path_factory.mktemp("standin")
    repo = checkout_copy(tmp)
    checkpoint = tmp / "standin.pth"
    state = standin_weights(checkpoint)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO_ROOT)  # dsviewer's own `src` is importable in the worker
    try:
        backend = open_backend(checkpoint, device="cpu", config=PRESET, depthsplat_repo=repo)
    finally:
        os.environ.pop("PYTHONPATH") if saved is None else os.environ.update(PYTHONPATH=saved)
    views = two_views()
    prediction = backend.predict(views)
    yield backend, repo, state, views, prediction
    backend.close()


def test_worker_runs_the_checkouts_own_src(patched_run):
    backend, repo, *_ = patched_run
    assert isinstance(backend, ExtensionBackend)
    # The encoder module came from the checkout (it imports src.standin_only, which only the
    # checkout has), although dsviewer's own src/ was on the worker's PYTHONPATH.
    assert backend.encoder_file == (repo / "src/model/encoder/encoder_depthsplat.py").resolve()
    assert backend.warnings == []
    assert backend.name == "standin-depthsplat"  # checkpoint stem and checkout folder


def test_prediction_matches_the_standin_computation(patched_run):
    _, _, state, views, prediction = patched_run
    expected = expected_outputs(state, views)
    torch.testing.assert_close(prediction.match_probs, expected["match_probs"])
    torch.testing.assert_close(prediction.confidence, expected["match_probs"].amax(dim=1))
    torch.testing.assert_close(prediction.inv_depth_candidates, expected["depth_candidates"])
    torch.testing.assert_close(prediction.coarse_inv_depth, expected["coarse"])
    torch.testing.assert_close(prediction.mono_inv_residual, expected["mono"])
    torch.testing.assert_close(prediction.final_depth, expected["final"])
    assert prediction.mono_inv_residual.abs().max() > 1e-4  # the residual is not trivially zero
    means = prediction.gaussians.means[0].reshape(2, 16, 24, 3)
    ours = unproject_depth(expected["final"], views.intrinsics, views.extrinsics)
    torch.testing.assert_close(means, ours, rtol=1e-5, atol=1e-5)
    assert prediction.gaussians.rotations_xyzw.shape == (1, 2 * 16 * 24, 4)


def test_unpatched_checkout_says_what_to_add(tmp_path):
    repo = checkout_copy(tmp_path, patched=False)
    with pytest.raises(DepthSplatRepoError) as caught:
        ExtensionBackend(tmp_path / "unused.pth", repo=repo, device="cpu", config=PRESET)
    message = str(caught.value)
    assert f"dsviewer patch-depthsplat {repo}" in message
    for insertion in INSERTIONS:
        assert insertion.path.as_posix() in message
        assert insertion.lines in message


def test_not_a_checkout(tmp_path):
    with pytest.raises(DepthSplatRepoError, match="is not a DepthSplat checkout"):
        ExtensionBackend(tmp_path / "x.pth", repo=tmp_path, device="cpu", config=PRESET)


def test_missing_optional_keys_degrade_with_warnings(tmp_path, patched_run):
    _, _, state, views, full = patched_run
    repo = checkout_copy(tmp_path)
    encoder = repo / "src/model/encoder/encoder_depthsplat.py"
    text = encoder.read_text()
    kept = '("coarse_mv_depth", "mono_depth")'
    text = text.replace('("coarse_mv_depth", "mono_depth", "depth_candidates")', kept)
    text = text.replace('            visualization_dump["match_probs"] = match_probs\n', "")
    line = '            visualization_dump["match_prob"] = match_probs.max(dim=2).values\n'
    text = text.replace(line, "")
    encoder.write_text(text)
    checkpoint = tmp_path / "standin.pth"
    torch.save(state, checkpoint)
    with ExtensionBackend(checkpoint, repo=repo, device="cpu", config=PRESET) as backend:
        prediction = backend.predict(views)
    # match_probs come from the depth predictor's own returned dict: the same values.
    torch.testing.assert_close(prediction.match_probs, full.match_probs)
    torch.testing.assert_close(prediction.confidence, full.confidence)
    assert prediction.inv_depth_candidates.isnan().all()
    torch.testing.assert_close(prediction.final_depth, full.final_depth)
    assert len(backend.warnings) == 2
    assert any("depth_candidates" in w for w in backend.warnings)


def test_depth_only_checkpoint(tmp_path):
    repo = checkout_copy(tmp_path)
    checkpoint = tmp_path / "depth.pth"
    state = standin_weights(checkpoint, depth_only=True)
    preset = "depthsplat-depth-base-352x640-randview2-8-65a892c5"  # depth_only: true
    views = two_views()
    with ExtensionBackend(checkpoint, repo=repo, device="cpu", config=preset) as backend:
        prediction = backend.predict(views)
    assert prediction.gaussians is None
    torch.testing.assert_close(prediction.final_depth, expected_outputs(state, views)["final"])


def test_missing_module_is_one_paragraph(tmp_path):
    repo = checkout_copy(tmp_path)
    module = repo / "src/model/encoder/unimatch/mv_unimatch.py"
    module.write_text("import a_module_nobody_has  # noqa\n" + module.read_text())
    message = load_error(repo, tmp_path)
    assert "'a_module_nobody_has'" in message and "pip install -r" in message


def test_checkpoint_that_does_not_fit(tmp_path):
    repo = checkout_copy(tmp_path)
    torch.save({"encoder.depth_predictor.matcher.weight": torch.zeros(2)}, tmp_path / "bad.pth")
    with pytest.raises(DepthSplatRepoError, match="does not fit the encoder"):
        ExtensionBackend(tmp_path / "bad.pth", repo=repo, device="cpu", config=PRESET)


def test_message_framing_round_trip():
    message = {"ok": True, "x": torch.arange(6.0).reshape(2, 3), "nested": {"y": [1, "a", None]}}
    stream = io.BytesIO()
    write_message(stream, message)
    write_message(stream, {"op": "close"})
    stream.seek(0)
    first = read_message(stream)
    torch.testing.assert_close(first["x"], message["x"])
    assert first["nested"] == message["nested"]
    assert read_message(stream) == {"op": "close"}
    assert read_message(stream) is None  # closed stream
    with pytest.raises(ValueError, match="corrupt"):
        read_message(io.BytesIO(b"\xff" * 8))


# --- dsviewer patch-depthsplat ------------------------------------------------------------------


def test_patch_shows_the_diff_touches_two_files_and_is_idempotent(tmp_path, capsys):
    repo = checkout_copy(tmp_path, patched=False)
    before = tree_digest(repo)
    assert patch_cli.main([str(repo), "--dry-run"]) == 0
    assert tree_digest(repo) == before
    assert patch_cli.main([str(repo)]) == 0
    shown = capsys.readouterr().out
    after = tree_digest(repo)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {p.path.as_posix() for p in INSERTIONS}
    assert set(after) == set(before)
    for insertion in INSERTIONS:
        assert f"+++ b/{insertion.path.as_posix()}" in shown
        for line in insertion.lines.splitlines():
            assert f"+{line}" in shown
    assert patch_cli.main([str(repo)]) == 0
    assert "already has the exposure; nothing changed" in capsys.readouterr().out
    assert tree_digest(repo) == after
    assert not any(p.changed for p in plan_patch(repo))


@pytest.mark.parametrize("damage", ["anchor", "name", "file"])
def test_patch_refuses_an_unrecognised_checkout(tmp_path, capsys, damage):
    repo = checkout_copy(tmp_path, patched=False)
    matcher = repo / "src/model/encoder/unimatch/mv_unimatch.py"
    if damage == "anchor":
        matcher.write_text(matcher.read_text().replace('({"match_probs": match_probs})', "(x)"))
    elif damage == "name":
        matcher.write_text(matcher.read_text().replace("residual_depth", "mono_part"))
    else:
        matcher.unlink()
    before = tree_digest(repo)
    assert patch_cli.main([str(repo)]) == EXIT_USER_ERROR
    error = capsys.readouterr().err
    assert "changed nothing" in error or "not a DepthSplat checkout" in error
    assert "Traceback" not in error
    assert tree_digest(repo) == before


def test_patch_cli_help_is_instant():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dsviewer.viewer.patch_cli", "--help"],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and "patch-depthsplat" in result.stdout
    assert " torch" not in result.stderr  # nothing heavy is imported for --help


def test_unreachable_hub_is_one_paragraph(tmp_path):
    """The official encoder builds DINOv2 through torch.hub; a hub it cannot reach (here a
    local hub folder that does not exist, as offline without a cache) is explained."""
    repo = checkout_copy(tmp_path)
    encoder = repo / "src/model/encoder/encoder_depthsplat.py"
    missing_hub = tmp_path / "facebookresearch_dinov2_main"
    encoder.write_text(encoder.read_text().replace(
        "        self.cfg = cfg\n",
        f"        self.cfg = cfg\n        torch.hub.load({str(missing_hub)!r}, 'dinov2_vits14', "
        "source='local')\n",
    ))  # fmt: skip
    message = load_error(repo, tmp_path)
    assert "builds DINOv2 through torch.hub" in message and "pretrained=False" in message


def test_patch_keeps_a_crlf_files_line_endings(tmp_path):
    """Upstream commits mv_unimatch.py with CRLF endings: the patch inserts CRLF lines and
    leaves every existing byte as it was (a `git diff` shows the insertion only)."""
    repo = checkout_copy(tmp_path, patched=False)
    matcher = repo / MATCHER_FILE
    original = matcher.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    matcher.write_bytes(original)
    assert patch_cli.main([str(repo)]) == 0
    patched = matcher.read_bytes()
    old_lines, new_lines = original.split(b"\r\n"), patched.split(b"\r\n")
    assert b"\n" not in b"".join(new_lines)  # every line ends in CRLF
    inserted = MATCHER_INSERTION.lines.encode().splitlines()
    assert len(new_lines) == len(old_lines) + len(inserted)
    at = new_lines.index(inserted[0])
    assert new_lines[at : at + len(inserted)] == inserted
    assert new_lines[:at] + new_lines[at + len(inserted) :] == old_lines
    assert not any(p.changed for p in plan_patch(repo))  # idempotent on CRLF too


def test_patch_refusal_lists_the_lines_to_add(tmp_path, capsys):
    repo = checkout_copy(tmp_path, patched=False)
    matcher = repo / MATCHER_FILE
    matcher.write_text(matcher.read_text().replace('({"match_probs": match_probs})', "(x)"))
    assert patch_cli.main([str(repo)]) == EXIT_USER_ERROR
    error = capsys.readouterr().err
    assert "docs/" not in error  # a pip-installed user has no docs folder
    for insertion in INSERTIONS:
        assert insertion.lines in error and insertion.anchor.strip() in error


def test_worker_keeps_the_path_entry_that_holds_another_src(tmp_path, monkeypatch):
    """Another project's regular `src` package may sit in site-packages beside the checkout's
    dependencies (einops...). Here such a folder holds a `src` package (with a copy of the
    worker) and a module the checkout imports: the worker must still import that module, and
    the checkout's own `src`, not the folder's."""
    site = tmp_path / "site"
    (site / "src" / "backends").mkdir(parents=True)
    (site / "src" / "__init__.py").write_text("")
    worker = site / "src" / "backends" / "extension_worker.py"
    shutil.copy(REPO_ROOT / "src" / "backends" / "extension_worker.py", worker)
    (site / "site_neighbour.py").write_text("VALUE = 1\n")
    repo = checkout_copy(tmp_path)
    encoder = repo / "src/model/encoder/encoder_depthsplat.py"
    encoder.write_text("import site_neighbour  # noqa\n" + encoder.read_text())
    standin_weights(tmp_path / "w.pth")
    monkeypatch.setattr("dsviewer.backends.extension.WORKER_SCRIPT", worker)
    monkeypatch.setenv("PYTHONPATH", str(site))
    with ExtensionBackend(tmp_path / "w.pth", repo=repo, device="cpu", config=PRESET) as backend:
        assert backend.encoder_file == encoder.resolve()  # the checkout's src, not site's
