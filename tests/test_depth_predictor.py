"""Our MultiViewUniMatch against the official model's golden outputs and intermediates.

Each golden case builds its architecture once (module-scoped cache), loads the recipe
weights (seed 0) with strict=True and runs one hooked forward; ~30-60 s in all on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ALL_GOLDEN_CASES, available
from conftest import GOLDEN_CASES as CASES

from dsviewer.model.encoder.dinov2 import ViTConfig
from dsviewer.model.encoder.unimatch.mv_unimatch import DepthPredictorInputError, MultiViewUniMatch
from dsviewer.model.weight_recipe import load_manifest, recipe_state_dict
from tests._intermediates import pick, record_intermediates

GS_PREFIX = "encoder.depth_predictor."


def build_from_config(cfg: dict) -> MultiViewUniMatch:
    """The depth predictor as the official encoder builds it from its config."""
    return MultiViewUniMatch(
        num_scales=cfg["num_scales"],
        upsample_factor=cfg["upsample_factor"],
        lowest_feature_resolution=cfg["lowest_feature_resolution"],
        vit_type=cfg["monodepth_vit_type"],
        unet_channels=cfg["depth_unet_channels"],
    )


def depth_predictor_state(manifest: dict) -> dict[str, torch.Tensor]:
    state = recipe_state_dict(manifest, seed=0)
    if manifest["key_prefix"]:
        state = {k[len(GS_PREFIX) :]: t for k, t in state.items() if k.startswith(GS_PREFIX)}
    return state


def nearest_cameras(extrinsics: torch.Tensor, keep: int = 3) -> torch.Tensor | None:
    """The official encoder's nearest-camera matrix [B, V, keep] for V > 3, else None."""
    if extrinsics.shape[1] <= 3:
        return None
    centres = extrinsics[:, :, :3, 3]
    return torch.argsort(torch.cdist(centres, centres))[:, :, :keep]


class CaseRun:
    def __init__(self, reference: Path, name: str) -> None:
        torch.set_num_threads(2)
        self.case = json.loads((reference / f"case_{name}.json").read_text())
        self.expected = np.load(reference / f"case_{name}_expected.npz")
        inputs = np.load(reference / f"case_{name}_inputs.npz")
        self.inputs = {k: torch.from_numpy(inputs[k]) for k in inputs.files}
        with torch.device("meta"):  # skip the random init; every tensor comes from the recipe
            model = build_from_config(self.case["encoder_config"]).eval()
        manifest = load_manifest(reference / self.case["manifest"])
        model.load_state_dict(depth_predictor_state(manifest), strict=True, assign=True)
        x = self.inputs
        with torch.no_grad():
            self.recorded, self.results = record_intermediates(
                model,
                lambda: model(
                    x["image"],
                    attn_splits_list=[2],
                    intrinsics=x["intrinsics"],
                    min_depth=1.0 / x["far"],
                    max_depth=1.0 / x["near"],
                    extrinsics=x["extrinsics"],
                    nn_matrix=nearest_cameras(x["extrinsics"]),
                ),
            )
        self.num_scales = model.num_scales


@pytest.fixture(scope="module")
def runs(reference: Path):
    cache: dict[str, CaseRun] = {}

    def get(name: str) -> CaseRun:
        if name not in cache:
            cache[name] = CaseRun(reference, name)
        return cache[name]

    return get


def assert_close(mine: np.ndarray, expected: np.ndarray, rtol: float, atol: float, what: str):
    assert mine.shape == expected.shape, f"{what}: shape {mine.shape} != {expected.shape}"
    err = np.abs(mine - expected)
    bound = atol + rtol * np.abs(expected)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (
        f"{what}: max abs err {err.max():.3e} at {worst} (mine {mine[worst]}, "
        f"expected {expected[worst]}), tolerance atol {atol} rtol {rtol}"
    )


@pytest.mark.parametrize("name", CASES)
def test_golden_outputs(runs, name: str) -> None:
    run = runs(name)
    r, tol = run.results, run.case["tolerances"]
    b, v = run.inputs["image"].shape[:2]
    probs = r["match_probs"][-1]
    mine = {
        "coarse_mv_depth": r["coarse_mv_depth"],
        "coarse_mv_depth_lowres": r["coarse_mv_depth_lowres"],
        "mono_depth": r["mono_depth"],
        "match_prob_max": probs.max(dim=1).values.view(b, v, *probs.shape[-2:]),
        "final_depth": r["depth_preds"][-1],
    }
    for key, tensor in mine.items():
        t = tol[key]
        assert_close(tensor.numpy(), run.expected[key], t["rtol"], t["atol"], f"{name}:{key}")
    # The documented identity between the new keys and the depth the model returns.
    inv = (r["coarse_mv_depth"] + r["mono_depth"]).clamp(
        min=(1.0 / run.inputs["far"])[..., None, None],
        max=(1.0 / run.inputs["near"])[..., None, None],
    )
    torch.testing.assert_close(1.0 / inv, r["depth_preds"][-1], rtol=0, atol=0)
    assert len(r["depth_preds"]) == 1 and len(r["match_probs"]) == run.num_scales
    assert r["depth_candidates"].shape == probs.shape


# The most diagnostic rows of the reference table, top to bottom (a bug shows first where
# it is introduced). Features are compared relative to their magnitude.
INTERMEDIATE_KEYS = [
    "depth_predictor.backbone@out.0",
    "depth_predictor.backbone@out.2",
    "depth_predictor.transformer@in.v0",
    "depth_predictor.transformer@out.v0",
    "depth_predictor.transformer@out.v1",
    "depth_predictor.transformer@out.v2",
    "depth_predictor.mv_pyramid@out.1",
    "depth_predictor.pretrained.patch_embed@in",
    "depth_predictor.pretrained.norm@call0.map",
    "depth_predictor.pretrained.norm@call3.map",
    "depth_predictor.upsampler@in.mono.3",
    "depth_predictor.mono_pyramid@in",
    "depth_predictor.mono_pyramid@out.1",
    "depth_predictor.regressor.0@in.costvolume",
    "depth_predictor.regressor.0@in.mono",
    "depth_predictor.regressor.0",
    "depth_predictor.regressor_residual.0",
    "depth_predictor@match_probs.0",
    "depth_predictor.regressor.1@in.costvolume",
    "depth_predictor.regressor.1",
    "depth_predictor@match_probs.1",
    "depth_predictor@depth_candidates.1",
    "depth_predictor@softargmax_inv_depth.1",
    "depth_predictor.upsampler",
]


@pytest.mark.parametrize("name", available(*ALL_GOLDEN_CASES[:2]))
def test_intermediates_module_by_module(runs, reference: Path, name: str) -> None:
    run = runs(name)
    z = np.load(reference / f"case_{name}_intermediates.npz")
    checked = 0
    for key in INTERMEDIATE_KEYS:
        if key not in z.files:
            continue  # scale-1 rows exist for the 2-scale case b only
        assert key in run.recorded, f"{key} was not recorded"
        mine = pick(z, run.recorded[key].contiguous().numpy(), key)
        ref = z[key]
        scale = max(1.0, float(np.abs(ref).max()))
        assert_close(mine, ref, rtol=0.0, atol=1e-4 * scale, what=f"{name}:{key}")
        checked += 1
    assert checked >= (14 if name.startswith("a") else 21)
    if name.startswith("a"):  # 1-scale: the last-scale candidates are the scale-0 linspace
        ref = z["depth_predictor@depth_candidates.0"]
        mine = run.results["depth_candidates"][:, :, 0, 0].numpy()
        assert_close(mine, ref, rtol=1e-6, atol=0.0, what="a:depth_candidates.0")


ARCHITECTURES = [
    "gs_small_u4l4",
    "gs_small_u8l8",
    "gs_base_u2l4",
    "gs_base_u4l8",
    "gs_large_u2l4",
    "depth_small_u8l8",
    "depth_base_u4l8",
]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_state_dict_layout_matches_manifest(reference: Path, arch: str) -> None:
    """Every released layout, including vitl and depth-small: same keys, order and shapes."""
    manifest = load_manifest(reference / f"manifest_{arch}.json")
    with torch.device("meta"):
        model = build_from_config(manifest["encoder_config"])
    expected = [
        (e["key"][len(GS_PREFIX) :] if manifest["key_prefix"] else e["key"], tuple(e["shape"]))
        for e in manifest["keys"]
        if not manifest["key_prefix"] or e["key"].startswith(GS_PREFIX)
    ]
    ours = [(k, tuple(t.shape)) for k, t in model.state_dict().items()]
    assert sorted(ours) == sorted(expected)


def test_reduced_configuration_runs_and_respects_bounds() -> None:
    """A narrow model (tiny ViT, 64 channels) builds from the same code and behaves."""
    torch.manual_seed(0)
    model = MultiViewUniMatch(
        num_scales=2,
        feature_channels=64,
        upsample_factor=4,
        lowest_feature_resolution=8,
        num_transformer_layers=2,
        num_depth_candidates=32,
        unet_channels=64,
        cnn_stage_channels=(32, 48, 64),
        vit_config=ViTConfig(embed_dim=96, depth=4, num_heads=3, tapped_layers=(0, 1, 2, 3)),
        dpt_features=32,
        dpt_out_channels=(24, 48, 96, 96),
    ).eval()
    b, v, h, w = 1, 3, 64, 64
    near, far = torch.full((b, v), 1.0), torch.full((b, v), 10.0)
    extrinsics = torch.eye(4).repeat(b, v, 1, 1)
    extrinsics[0, :, 0, 3] = torch.tensor([0.0, 0.2, -0.2])
    intrinsics = torch.tensor([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]]).repeat(b, v, 1, 1)
    with torch.no_grad():
        r = model(
            torch.rand(b, v, 3, h, w),
            intrinsics=intrinsics,
            min_depth=1.0 / far,
            max_depth=1.0 / near,
            extrinsics=extrinsics,
        )
    assert r["coarse_mv_depth_lowres"].shape == (b, v, h // 4, w // 4)
    assert [p.shape[1] for p in r["match_probs"]] == [32, 8]
    # The DPT output conv is zero-initialized: no residual, and the soft-argmax of
    # candidates inside [1/far, 1/near] stays inside it.
    assert torch.count_nonzero(r["mono_depth"]) == 0
    coarse = r["coarse_mv_depth"]
    assert coarse.min() >= 0.1 - 1e-6 and coarse.max() <= 1.0 + 1e-6
    torch.testing.assert_close(r["depth_preds"][-1], 1.0 / coarse, rtol=1e-6, atol=0)
    torch.testing.assert_close(
        r["match_probs"][1].sum(1), torch.ones(b * v, h // 4, w // 4), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(DepthPredictorInputError, match="multiples of 32"):
        model(
            torch.rand(b, v, 3, 48, 64),
            intrinsics=intrinsics,
            min_depth=1.0 / far,
            max_depth=1.0 / near,
            extrinsics=extrinsics,
        )
