"""The depth metrics, defined once: AbsRel, RMSE, delta accuracy and median ratio of a depth map
against a reference depth, over the pixels a boolean mask selects.

Training (``scripts/train_demo.py``), the held-out evaluation (``scripts/eval_demo.py``), the
viewer's GT metrics (``dsviewer.viewer.analysis.metrics``) and run comparisons
(``dsviewer.viewer.compare``) all
call these, so a number means the same thing wherever it is printed. Inputs may have any
matching shapes; the result keeps the inputs' dtype and stays differentiable (the demo model
trains on :func:`abs_rel`). With an empty mask every metric is NaN: callers that report
counts check them first. ``mask=None`` takes every entry (for values already selected: a
boolean gather costs more than the metric).
"""

from __future__ import annotations

import torch
from torch import Tensor

DELTA_THRESHOLD = 1.25
"""The usual ``delta < 1.25`` accuracy threshold."""


def _select(depth: Tensor, reference: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    return (depth, reference) if mask is None else (depth[mask], reference[mask])


def abs_rel(depth: Tensor, reference: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean ``|d - ref| / ref`` over ``mask``."""
    d, ref = _select(depth, reference, mask)
    return ((d - ref).abs() / ref.clamp_min(1e-12)).mean()


def rmse(depth: Tensor, reference: Tensor, mask: Tensor | None = None) -> Tensor:
    """``sqrt(mean((d - ref)^2))`` over ``mask``, in the depth's units."""
    d, ref = _select(depth, reference, mask)
    return ((d - ref) ** 2).mean().sqrt()


def delta_accuracy(
    depth: Tensor, reference: Tensor, mask: Tensor | None = None,
    threshold: float = DELTA_THRESHOLD,
) -> Tensor:
    """Share of masked pixels with ``max(d / ref, ref / d) < threshold``."""
    d, ref = _select(depth, reference, mask)
    d, ref = d.clamp_min(1e-12), ref.clamp_min(1e-12)
    return (torch.maximum(d / ref, ref / d) < threshold).to(d.dtype).mean()


def median_ratio(depth: Tensor, reference: Tensor, mask: Tensor | None = None) -> Tensor:
    """Median of ``d / ref`` over ``mask`` (the lower middle value for an even count, as
    ``torch.median``): the depth's scale against the reference, 1 when unbiased."""
    d, ref = _select(depth, reference, mask)
    return (d / ref.clamp_min(1e-12)).median()
