"""Per-pixel flags on one depth map: near/far clamps, depth edges and flying pixels.

* **Clamp.** A depth sits at the near (far) clamp when its inverse depth equals ``1/near``
  (``1/far``) up to a relative tolerance: the model clamps there, in inverse depth.
* **Depth edges and flying pixels.** Two 4-neighbours *jump* when their depths differ by more
  than a factor ``1 + threshold``. A pixel with any jump lies on a depth edge; a pixel that jumps
  to *both* neighbours along a row or a column (it belongs to neither side) is a flying pixel.
  Pixels are flagged, never removed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def clamp_masks(
    depth: Tensor, near: Tensor, far: Tensor, rtol: float = 1e-5
) -> tuple[Tensor, Tensor]:
    """``(at_near, at_far)``, each ``[V, H, W]`` bool, for depth ``[V, H, W]``, near/far ``[V]``.

    Compared in inverse depth, where the model clamps: ``|1/d - 1/near| <= rtol / near``.
    """
    inv = 1.0 / depth.double()
    inv_near = (1.0 / near.double())[:, None, None]
    inv_far = (1.0 / far.double())[:, None, None]
    at_near = (inv - inv_near).abs() <= rtol * inv_near
    at_far = (inv - inv_far).abs() <= rtol * inv_far
    return at_near, at_far


def depth_edges(depth: Tensor, threshold: float = 0.1) -> tuple[Tensor, Tensor]:
    """``(edge, flying)``, each ``[V, H, W]`` bool, for depth ``[V, H, W]`` (see module doc)."""
    valid = torch.isfinite(depth) & (depth > 0)
    log_depth = torch.where(valid, depth.clamp_min(1e-12).log(), torch.full_like(depth, torch.nan))
    limit = float(np.log1p(threshold))
    jump_x = (log_depth[:, :, 1:] - log_depth[:, :, :-1]).abs() > limit  # [V, H, W-1]
    jump_y = (log_depth[:, 1:, :] - log_depth[:, :-1, :]).abs() > limit  # [V, H-1, W]
    left = F.pad(jump_x, (1, 0), value=False)  # jump to the left neighbour
    right = F.pad(jump_x, (0, 1), value=False)
    up = F.pad(jump_y, (0, 0, 1, 0), value=False)
    down = F.pad(jump_y, (0, 0, 0, 1), value=False)
    edge = left | right | up | down
    flying = (left & right) | (up & down)
    return edge, flying


