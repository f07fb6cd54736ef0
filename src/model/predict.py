"""One forward pass of a loaded model on a view set, returned as a :class:`Prediction`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from .depthsplat import DepthSplat
from .types import Gaussians, Prediction

if TYPE_CHECKING:  # the model only reads the ViewSet's tensors; no dataset code is imported
    from ..dataset.types import ViewSet

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def predict(
    model: DepthSplat,
    context: ViewSet,
    autocast_dtype: str | None = None,
) -> Prediction:
    """Run the encoder on ``context`` (batch of one) under ``torch.inference_mode``.

    Args:
        model: from :func:`dsviewer.model.load_model`.
        context: the context views, already preprocessed (H, W multiples of
            ``model.config.min_image_multiple``).
        autocast_dtype: ``"fp16"`` or ``"bf16"`` mixed precision, CUDA only; outputs are float32.

    Returns:
        Depth maps with the batch dim removed (``[V, H, W]``); Gaussians keep ``B = 1``.
    """
    device = next(model.parameters()).device
    if autocast_dtype is not None:
        if autocast_dtype not in AUTOCAST_DTYPES:
            raise ValueError(
                f"autocast_dtype must be one of {sorted(AUTOCAST_DTYPES)} or None, "
                f"got {autocast_dtype!r}."
            )
        if device.type != "cuda":
            raise ValueError(
                f"autocast_dtype={autocast_dtype!r} needs the model on CUDA (it is on {device}); "
                "run in float32 on the CPU."
            )
        autocast = torch.autocast("cuda", dtype=AUTOCAST_DTYPES[autocast_dtype])
    else:
        autocast = contextlib.nullcontext()

    dump: dict[str, torch.Tensor] = {}
    with torch.inference_mode(), autocast:
        output = model.encoder(context.as_batch(device), global_step=0, visualization_dump=dump)

    return prediction_from_outputs(
        output.depth, dump, output.gaussians, context.near.to(device), context.far.to(device)
    )


def prediction_from_outputs(
    final_depth: torch.Tensor,
    dump: dict[str, torch.Tensor],
    gaussians: Gaussians | None,
    near: torch.Tensor,
    far: torch.Tensor,
) -> Prediction:
    """Batch element 0 of an encoder's outputs as a :class:`Prediction` (float32).

    Args:
        final_depth: ``[B, V, H, W]`` metric depth.
        dump: the ``visualization_dump`` contract: ``coarse_mv_depth``, ``mono_depth``
            ``[B, V, H, W]`` (inverse depths), ``match_prob`` ``[B, V, h, w]``, ``match_probs``,
            ``depth_candidates`` ``[B, V, D, h, w]``.
        gaussians: ``B = 1`` Gaussians, or None for depth-only models.
        near, far: ``[V]``.
    """

    def first(x: torch.Tensor) -> torch.Tensor:
        return x[0].float()

    if gaussians is not None:
        g = gaussians
        gaussians = Gaussians(
            means=g.means.float(),
            covariances=g.covariances.float(),
            harmonics=g.harmonics.float(),
            opacities=g.opacities.float(),
            scales=None if g.scales is None else g.scales.float(),
            rotations_xyzw=None if g.rotations_xyzw is None else g.rotations_xyzw.float(),
        )
    return Prediction(
        coarse_inv_depth=first(dump["coarse_mv_depth"]),
        mono_inv_residual=first(dump["mono_depth"]),
        final_depth=first(final_depth),
        confidence=first(dump["match_prob"]),
        match_probs=first(dump["match_probs"]),
        inv_depth_candidates=first(dump["depth_candidates"]),
        near=near.float(),
        far=far.float(),
        gaussians=gaussians,
    )
