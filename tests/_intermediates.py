"""Record our depth predictor's per-module tensors under the reference's intermediate keys.

The reference npz (``case_*_intermediates.npz``) names tensors by official module path
(``depth_predictor.backbone@out.2`` ...) and stores large maps on a pixel grid; see
``shared/reference/README.md`` ("Per-module intermediates").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dsviewer.model.encoder.unimatch.mv_unimatch import MultiViewUniMatch

P = "depth_predictor"


def pick(reference: np.lib.npyio.NpzFile, mine: np.ndarray, key: str) -> np.ndarray:
    """Our full-size tensor reduced to the reference's stored pixel grid for ``key``."""
    if key + "#rows" in reference.files:
        return mine[..., reference[key + "#rows"], :][..., reference[key + "#cols"]]
    if key + "#n" in reference.files:
        return mine[:, reference[key + "#n"]]
    return mine


def record_intermediates(
    model: MultiViewUniMatch, run: Callable[[], dict]
) -> tuple[dict[str, Tensor], dict]:
    """Run ``run()`` (a forward of ``model``) with hooks; return (tensors by key, results)."""
    out: dict[str, Tensor] = {}
    handles = []

    def on(module: torch.nn.Module, pre: Callable | None = None, post: Callable | None = None):
        if pre is not None:
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        if post is not None:
            handles.append(module.register_forward_hook(post))

    def backbone_in(_m, args, _kw):
        out[f"{P}.backbone@in"] = args[0]

    def backbone_out(_m, _a, result):
        for i, x in enumerate(result):
            out[f"{P}.backbone@out.{i}"] = x

    def transformer_in(_m, args, _kw):
        for k in range(args[0].shape[1]):
            out[f"{P}.transformer@in.v{k}"] = args[0][:, k]

    def transformer_out(_m, _a, result):
        for k in range(result.shape[1]):
            out[f"{P}.transformer@out.v{k}"] = result[:, k]

    def vit_in(_m, args, _kw):
        out[f"{P}.pretrained.patch_embed@in"] = args[0]

    def upsampler_in(_m, args, _kw):
        for j, x in enumerate(args[0]):
            out[f"{P}.upsampler@in.mono.{j}"] = x

    def upsampler_out(_m, _a, result):
        out[f"{P}.upsampler"] = result

    on(model.backbone, backbone_in, backbone_out)
    on(model.transformer, transformer_in, transformer_out)
    on(model.pretrained.patch_embed, vit_in)
    on(model.upsampler, upsampler_in, upsampler_out)
    if model.num_scales > 1:

        def mv_pyr_out(_m, _a, result):
            out[f"{P}.mv_pyramid@out.1"] = result[1]

        def mono_pyr_in(_m, args, _kw):
            out[f"{P}.mono_pyramid@in"] = args[0]

        def mono_pyr_out(_m, _a, result):
            out[f"{P}.mono_pyramid@out.1"] = result[1]

        on(model.mv_pyramid, post=mv_pyr_out)
        on(model.mono_pyramid, mono_pyr_in, mono_pyr_out)
    for i in range(model.num_scales):
        candidates = model.num_depth_candidates // 4**i

        def reg_in(_m, args, _kw, i=i, d=candidates):
            out[f"{P}.regressor.{i}@in.costvolume"] = args[0][:, :d]
            mono_channels = model.pretrained.config.embed_dim // 2**i
            out[f"{P}.regressor.{i}@in.mono"] = args[0][:, -mono_channels:]

        def reg_out(_m, _a, result, i=i):
            out[f"{P}.regressor.{i}"] = result

        def res_out(_m, _a, result, i=i):
            out[f"{P}.regressor_residual.{i}"] = result

        on(model.regressor[i], reg_in, reg_out)
        on(model.regressor_residual[i], post=res_out)

    vit_maps = model.pretrained.intermediate_maps

    def recording_maps(images: Tensor) -> list[Tensor]:
        maps = vit_maps(images)
        for j, x in enumerate(maps):
            out[f"{P}.pretrained.norm@call{j}.map"] = x
        return maps

    model.pretrained.intermediate_maps = recording_maps  # type: ignore[method-assign]
    try:
        results = run()
    finally:
        del model.pretrained.intermediate_maps
        for handle in handles:
            handle.remove()

    probs = results["match_probs"]
    for i, p in enumerate(probs):
        out[f"{P}@match_probs.{i}"] = p
    # Inline values of the official forward, recomputed from the outputs as the reference did.
    last = len(probs) - 1
    out[f"{P}@depth_candidates.{last}"] = results["depth_candidates"]
    out[f"{P}@softargmax_inv_depth.{last}"] = (probs[last] * results["depth_candidates"]).sum(
        1, keepdim=True
    )
    return out, results


def scale0_candidates(min_depth: Tensor, max_depth: Tensor, num: int = 128) -> Tensor:
    """[B*V, D] scale-0 inverse-depth candidates from [B, V] inverse-depth bounds."""
    lo, hi = min_depth.reshape(-1, 1), max_depth.reshape(-1, 1)
    return lo + torch.linspace(0, 1, num).view(1, num) * (hi - lo)


def seed_upsampled(inv_depth: Tensor) -> Tensor:
    return F.interpolate(inv_depth, scale_factor=2, mode="bilinear", align_corners=True)
