"""Where things stand in the scene: each run's shift, the splats' shift, the A/B labels, and the
camera that frames what is shown.

Pure functions of the :class:`~dsviewer.viewer.gui.state.ViewState`, so that the clouds, the
splats, the residual vectors, the labels and "Reset view" agree on one placement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.colormaps import robust_range
from dsviewer.viewer.view_params import framing_camera

if TYPE_CHECKING:
    from dsviewer.viewer.gui.state import ViewState
    from dsviewer.viewer.session.runs import Run
    from dsviewer.viewer.view_params import StartCamera

SIDE_GAP = 1.15  # side-by-side shift: this many times the points' extent along the right axis
LABEL_RISE = 0.08  # overlaid runs' labels stack up by this share of the cluster's height
FRAMING_SAMPLE = 200_000  # points a framing reads at most (a fixed stride)


def side_by_side_offset(points: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    """A shift ``[3]`` along the cameras' mean right axis that clears ``points`` ``[n, 3]``."""
    right = T_world_cam[:, :3, 0].mean(axis=0)
    right /= max(np.linalg.norm(right), 1e-9)
    if points.size == 0:
        return right
    low, high = robust_range(points @ right, 1.0, 99.0)
    return right * float(SIDE_GAP * (high - low) + 1e-6)


def _step(state: ViewState) -> np.ndarray:
    """One side-by-side step, from run A's final points and cameras."""
    final = state.loaded.flat("final")
    return side_by_side_offset(final.points[final.valid],
                               state.loaded.layers.context.T_world_cam.numpy())  # fmt: skip


def run_offsets(state: ViewState) -> list[np.ndarray]:
    """The shift ``[3]`` of each run: zeros overlaid; side by side one step per run."""
    if state.placement != "side by side" or len(state.runs) < 2:
        return [np.zeros(3) for _ in state.runs]
    step = _step(state)
    return [i * step for i in range(len(state.runs))]


def splat_offset(state: ViewState) -> np.ndarray:
    """The splats' shift: on run A overlaid; side by side one step past the last run."""
    offsets = run_offsets(state)
    base = offsets[state.primary] if offsets else np.zeros(3)
    if state.splats != "side by side":
        return base
    last = max(len(state.runs) - 1, 0) if state.placement == "side by side" else state.primary
    return base + (last - state.primary + 1) * _step(state)


def run_label(state: ViewState, index: int) -> str:
    """What the 3D view writes over run ``index``: ``A: name``, ``B: name`` or its name."""
    run = state.runs[index]
    if index == state.primary:
        return f"A: {run.name}"
    if state.partner is not None and state.partner.run == run.name:
        return f"B: {run.name}"
    return run.name


def label_position(run: Run, slot: int, up: np.ndarray) -> np.ndarray:
    """Above the run's final points (in its own frame); overlaid runs' labels stack up."""
    final = run.loaded.flat("final")
    points = final.points[final.valid]
    if points.size == 0:
        return run.loaded.layers.context.centers.float().numpy().mean(axis=0)
    heights = points @ up
    low, high = robust_range(heights, 2.0, 98.0)
    center = np.array([np.median(points[:, axis]) for axis in range(3)])
    rise = (high - float(center @ up)) + LABEL_RISE * (high - low) * (1 + slot)
    return center + up * rise


def shown_points(state: ViewState) -> np.ndarray:
    """``[n, 3]`` the points on screen where they are drawn: every shown layer of every visible
    run at its shift, and the splats' centres at theirs (a sample of at most FRAMING_SAMPLE)."""
    parts = []
    offsets = run_offsets(state)
    for run, offset in zip(state.runs, offsets, strict=True):
        if not run.visible or state.points_covered:
            continue
        for key in state.layers_shown:
            flat = run.loaded.flat(key) if state.layers_shown[key] else None
            if flat is not None:
                parts.append(flat.points[flat.valid] + offset)
    if state.vectors_shown:  # on run A's final surface
        final = state.loaded.flat("final")
        parts.append(final.points[final.valid] + offsets[state.primary])
    gaussians = state.loaded.layers.gaussians
    if state.splats != "hidden" and gaussians is not None:
        parts.append(gaussians.means[0].numpy() + splat_offset(state))
    points = np.concatenate(parts) if parts else np.zeros((0, 3))
    points = points[np.isfinite(points).all(axis=1)]
    stride = max(1, len(points) // FRAMING_SAMPLE)
    return points[::stride]


def framing_view(state: ViewState) -> StartCamera:
    """A camera that frames everything shown (and run A's cameras), from A's start direction."""
    loaded = state.loaded
    return framing_camera(shown_points(state), loaded.layers.context.T_world_cam.numpy(),
                          loaded.view.up)  # fmt: skip
