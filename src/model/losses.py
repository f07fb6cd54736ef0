"""Training losses for our own small DepthSplat models (the demo model), on metric GT depth.

Depth is supervised in inverse depth, where the model predicts it, as a relative error
``|inv_pred / inv_gt - 1|``: scale-free, and to first order the relative depth error that
AbsRel measures. Pixels without usable GT (0 = unknown, or outside the model's near/far range,
where the prediction is clamped and cannot follow) do not count.
"""

from __future__ import annotations

import torch
from torch import Tensor


def valid_depth_mask(depth: Tensor, near: Tensor, far: Tensor) -> Tensor:
    """``[B, V, H, W]`` bool: GT ``depth [B, V, H, W]`` known and inside ``[near, far]``
    (each ``[B, V]``)."""
    near = near[..., None, None]
    far = far[..., None, None]
    return (depth > 0) & (depth >= near) & (depth <= far) & torch.isfinite(depth)


def inverse_depth_loss(inv_depth: Tensor, depth: Tensor, mask: Tensor) -> Tensor:
    """Mean relative inverse-depth error over ``mask``.

    Args:
        inv_depth: ``[B, V, H, W]`` predicted inverse depth.
        depth: ``[B, V, H, W]`` GT metric z-depth.
        mask: ``[B, V, H, W]`` bool, pixels that count.

    Returns:
        A scalar; 0 when nothing is valid.
    """
    gt_inv = 1.0 / depth.clamp_min(1e-6)
    # where(), not a product with the mask: masked-out inf / NaN GT would turn 0 * inf into NaN.
    error = torch.where(mask, (inv_depth / gt_inv - 1.0).abs(), torch.zeros_like(inv_depth))
    return error.sum() / mask.sum().clamp_min(1)


def photometric_loss(rendered: Tensor, image: Tensor) -> Tensor:
    """L1 + MSE between ``rendered`` and ``image`` (``[..., 3, H, W]`` in [0, 1])."""
    difference = rendered - image
    return difference.abs().mean() + (difference**2).mean()
