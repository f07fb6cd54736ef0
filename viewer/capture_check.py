"""The capture check: what in a capture differs from what a checkpoint was trained on.

Each finding is one function of :class:`CheckInputs` (the capture as loaded for the checkpoint,
plus a few facts read from its files) and is listed once in :data:`CHECKS`; ``dsviewer check``,
the scene notes (GUI, console, ``metrics.json``) and the tests iterate that registry. A finding
says ``ok``, ``warn`` or ``unknown`` (what the capture lacks to decide), its number, and the flag
to try. Nothing here reads files or runs the model.

Units: depths and baselines in the model's units are the capture's own divided by
``world_from_model.scale`` (the capture is scaled so its widest context baseline is 1); every
suggested ``--near``/``--far`` is given back in the capture's own units (times that scale), so a
capture rescaled by 10 gets the same findings and suggestions 10 times larger.

What the thresholds rest on (docs/capture_check.md says more):

* the cost volume's depth candidates are spaced evenly in inverse depth between ``1/far`` and
  ``1/near`` (DepthSplat's ``mv_unimatch``); parts of the scene outside ``near..far`` are
  clamped, and a near plane far in front of the scene spends most candidates on empty space;
* the official RE10K/DL3DV loaders skip views wider than ``max_fov: 100`` degrees
  (``config/dataset/re10k.yaml``, ``dl3dv.yaml``);
* RE10K's 640 x 360 frames lose 44 % of their pixels to the centre crop of the 256 x 256
  checkpoints: a crop that loses more is beyond what those checkpoints were trained on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from dsviewer.dataset.sfm_types import MIN_POINTS

if TYPE_CHECKING:
    from dsviewer.dataset.preprocess import PreprocessSettings
    from dsviewer.dataset.sfm import SfmReference, SfmView
    from dsviewer.dataset.types import SceneNote, SceneViews

Status = Literal["ok", "warn", "unknown"]

PLANE_MARGIN = 1.5
"""A suggested near plane is the nearest 5th percentile divided by this, a far plane the farthest
95th percentile times it (only the plane that is wrong moves)."""
MAX_CANDIDATES_IN_FRONT = 0.9
"""Warn when more than this share of the depth candidates lies nearer than the scene."""
MIN_MEDIAN_SHIFT_PX = 4.0
"""The median SfM point must move at least this many model pixels between the context views
(one cell of the cost volume, which matches at 1/4 of the input resolution)."""
MAX_MEDIAN_SHIFT = 0.5
"""... and at most this share of the image width (else the views barely overlap)."""
MAX_FOV_DEGREES = 100.0
"""The official loaders' ``max_fov``: wider views are skipped in training and evaluation."""
MAX_CROP_LOSS = 0.45
"""Share of an image the centre crop may discard (RE10K's frames lose 0.44 in the square
checkpoints)."""
MIN_SHARED_POINTS = 20
MIN_SHARED_SHARE = 0.1
"""A context view must share this many SfM points, and this share of its points, with another."""


@dataclass(frozen=True)
class Finding:
    """One result of the check: its status, the number, what it means and what to try."""

    key: str
    title: str
    status: Status
    value: str  # the number(s), as shown
    detail: str  # one or two sentences: what was measured against what
    flag: str | None = None  # the flag to try (None: no flag helps; the detail says what does)
    numbers: dict[str, float | list[float] | None] = field(default_factory=dict)

    def note(self) -> SceneNote | None:
        """The scene note of a finding that is not ok (None when ok)."""
        from dsviewer.dataset.types import SceneNote

        if self.status == "ok":
            return None
        tail = f" Try {self.flag}." if self.flag else ""
        return SceneNote(f"check_{self.key}", f"Capture check, {self.title}: {self.detail}{tail}")

    def as_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "status": self.status,
                "value": self.value, "detail": self.detail, "flag": self.flag,
                "numbers": self.numbers}  # fmt: skip


@dataclass(frozen=True)
class CheckInputs:
    """What the findings read: the loaded capture and facts from its files.

    ``scene`` is the capture preprocessed for the checkpoint (model frame, context views in
    order, ``scene.context.sfm`` the SfM reference when the capture has points).
    """

    scene: SceneViews
    settings: PreprocessSettings  # the checkpoint's own preprocessing (its training planes)
    near: float  # the planes of this run, model units
    far: float
    image_sizes: tuple[tuple[int, int], ...]  # (W, H) of each context view's image file
    source_focals: tuple[tuple[float, float], ...]  # (fx / W, fy / H) of each, before any crop
    frame_centers: dict[int, np.ndarray] = field(default_factory=dict)  # [3], user units, of
    # every frame with an image and a camera
    covisible_context: Callable[[], tuple[int, ...] | None] | None = None
    """The context COLMAP covisibility would choose with the first context frame (called only
    when the overlap warns: it scores every pair of frames)."""
    better_checkpoint: tuple[str, tuple[int, int], int] | None = None  # the released
    # checkpoint that crops the least: (file name, image_shape, its number of context views)

    @property
    def scale(self) -> float:
        """User units per model unit."""
        return float(self.scene.world_from_model.scale)

    @property
    def frames(self) -> list[int]:
        return [int(i) for i in self.scene.context.index]

    @property
    def sfm(self) -> SfmReference | None:
        return self.scene.context.sfm


def sentence(text: str) -> str:
    """``text`` with its first letter upper case (the rest kept: "SfM" stays "SfM")."""
    return text[:1].upper() + text[1:]


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _sfm_views(inputs: CheckInputs) -> list[SfmView] | None:
    """The SfM views with enough points (None without an SfM reference)."""
    if inputs.sfm is None:
        return None
    return [v for v in inputs.sfm.views if v.count >= MIN_POINTS]


def _no_sfm(key: str, title: str, what: str, inputs: CheckInputs) -> Finding:
    if inputs.sfm is None:
        why = ("the capture has no SfM points (a COLMAP model with points3D, or a "
               "transforms.json with ply_file_path, gives them)")
    else:
        why = f"no context view has {MIN_POINTS} SfM points or more"
    return Finding(key, title, "unknown", "n/a", f"{what} cannot be measured: {why}.")


# ---------------------------------------------------------------- the findings


def _depth_ranges(inputs: CheckInputs) -> tuple[list[tuple[int, float, float]], str] | None:
    """Per context view ``(frame, low, high)`` in model units and what they are: the SfM
    depths' 5th-95th percentiles, else the bounds the camera file states (LLFF), else None."""
    views = _sfm_views(inputs)
    if views:
        ranges = [(v.frame, *map(float, np.percentile(v.depth, [5, 95]))) for v in views]
        return ranges, "SfM depths (5th-95th percentile)"
    hint = inputs.scene.depth_bounds_hint
    if hint is None:
        return None
    s = inputs.scale
    ranges = [(frame, near / s, far / s) for frame, near, far in
              zip(inputs.frames, hint.near, hint.far, strict=True)]  # fmt: skip
    return ranges, f"the depth bounds {hint.source} states (no SfM points)"


def depth_range(inputs: CheckInputs) -> Finding:
    """The scene's depth (SfM 5th-95th percentile per context view, else the camera file's
    stated bounds; model units) against near/far."""
    title = "depth range against near/far"
    found = _depth_ranges(inputs)
    if found is None:
        return _no_sfm("depth_range", title, "The scene's depth range", inputs)
    per_view, what = found
    low = min(r[1] for r in per_view)
    high = max(r[2] for r in per_view)
    near, far = inputs.near, inputs.far
    # Candidates are even in inverse depth: the share nearer than the scene's near end.
    span = 1 / near - 1 / far
    in_front = float(np.clip((1 / near - 1 / low) / span, 0.0, 1.0))
    problems = []
    if low < near:
        problems.append(f"the near end ({_fmt(low)}) lies in front of the near plane, where "
                        "depths are clamped")
    if high > far:
        problems.append(f"the far end ({_fmt(high)}) lies beyond the far plane")
    if in_front > MAX_CANDIDATES_IN_FRONT:
        problems.append(f"{in_front:.0%} of the cost volume's depth candidates (even in inverse "
                        "depth) lie nearer than the scene, so few are left to resolve it")
    ranges = ", ".join(f"frame {frame}: {_fmt(lo)}-{_fmt(hi)}" for frame, lo, hi in per_view)
    value = f"{_fmt(low)}-{_fmt(high)} (near {_fmt(near)}, far {_fmt(far)}; model units)"
    numbers = {"depth_p5": low, "depth_p95": high, "near": near, "far": far,
               "candidates_in_front": in_front}  # fmt: skip
    if not problems:
        return Finding("depth_range", title, "ok", value, f"{sentence(what)} in model units "
                       f"({ranges}) lie within the planes.", numbers=numbers)  # fmt: skip
    # Move only the plane that is wrong (a far plane pulled in would clamp what SfM missed).
    s = inputs.scale
    near_wrong = low < near or in_front > MAX_CANDIDATES_IN_FRONT
    new_near = (low / PLANE_MARGIN if near_wrong else near) * s
    new_far = (high * PLANE_MARGIN if high > far else far) * s
    numbers.update(suggested_near=float(f"{new_near:.3g}"), suggested_far=float(f"{new_far:.3g}"))
    detail = (f"{sentence(what)} in model units ({ranges}): {'; '.join(problems)}. Planes "
              "that fit "
              f"the scene, in the capture's own units (model units x {_fmt(s)}):")
    return Finding("depth_range", title, "warn", value, detail,
                   f"--near {new_near:.3g} --far {new_far:.3g}", numbers)  # fmt: skip


def _median_depth(inputs: CheckInputs) -> tuple[float | None, str]:
    """The scene's median depth (model units) and where it comes from."""
    views = _sfm_views(inputs)
    if views:
        return float(np.median(np.concatenate([v.depth for v in views]))), "SfM points"
    # No points: where the viewing axes of the first two context cameras pass closest.
    T = inputs.scene.context.extrinsics.double().numpy()
    if len(T) < 2:
        return None, ""
    c0, c1, d0, d1 = T[0, :3, 3], T[1, :3, 3], T[0, :3, 2], T[1, :3, 2]
    w, b = c0 - c1, float(d0 @ d1)
    denominator = 1 - b * b
    if denominator < 1e-6:  # parallel axes: no crossing
        return None, ""
    t0 = (b * (d1 @ w) - (d0 @ w)) / denominator
    t1 = ((d1 @ w) - b * (d0 @ w)) / denominator
    if t0 <= 0 or t1 <= 0:
        return None, ""
    return float((t0 + t1) / 2), "where the first two cameras' viewing axes cross"


def _context_baseline(inputs: CheckInputs) -> float:
    centers = inputs.scene.context.extrinsics.double().numpy()[:, :3, 3]
    return float(np.linalg.norm(centers[:, None] - centers[None], axis=-1).max())


def _partner(inputs: CheckInputs, depth_user: float, ratio: float) -> int | None:
    """The frame whose distance from the first context camera, over the scene's depth, is
    nearest ``ratio`` (in log terms)."""
    first = inputs.frames[0]
    if first not in inputs.frame_centers:
        return None
    best, best_cost = None, math.inf
    for frame, center in inputs.frame_centers.items():
        distance = float(np.linalg.norm(center - inputs.frame_centers[first]))
        if frame == first or distance <= 0:
            continue
        cost = abs(math.log(distance / depth_user / ratio))
        if cost < best_cost:
            best, best_cost = frame, cost
    return best


def baseline(inputs: CheckInputs) -> Finding:
    """Widest context baseline over the median scene depth, against what the checkpoint can use."""
    title = "baseline against scene depth"
    depth, source = _median_depth(inputs)
    if depth is None:
        return _no_sfm("baseline", title, "The baseline against the scene's depth "
                       "(the context cameras' axes do not cross in front of them either)", inputs)
    ratio = _context_baseline(inputs) / depth
    fx = float(inputs.scene.context.intrinsics[:, 0, 0].mean())
    width = inputs.scene.context.image_shape[1]
    trained = inputs.settings
    low = max(1 / trained.far, MIN_MEDIAN_SHIFT_PX / (fx * width))
    high = min(1 / trained.near, MAX_MEDIAN_SHIFT / fx)
    shift = ratio * fx * width
    value = f"{ratio:.3g} (usable {low:.3g}-{high:.3g})"
    numbers = {"ratio": ratio, "low": low, "high": high, "median_depth": depth,
               "median_shift_px": shift}  # fmt: skip
    detail = (f"widest context baseline / median depth ({source}) is {ratio:.3g}: the median "
              f"point moves {shift:.1f} px of the model's {width} px. The checkpoint's training "
              f"planes ({_fmt(trained.near)}-{_fmt(trained.far)} baselines) and its cost volume "
              f"(at least {MIN_MEDIAN_SHIFT_PX:g} px of shift, at most {MAX_MEDIAN_SHIFT:.0%} of "
              f"the width at this field of view) admit {low:.3g}-{high:.3g}")
    if low <= ratio <= high:
        return Finding("baseline", title, "ok", value, detail + ".", numbers=numbers)
    target = math.sqrt(low * high)
    partner = _partner(inputs, depth * inputs.scale, target)
    flag = f"--context {inputs.frames[0]} {partner}" if partner is not None else None
    what = "too small: depth comes from the monocular branch" if ratio < low else (
        "too wide: the views share little of the scene")
    numbers["suggested_context"] = None if partner is None else [inputs.frames[0], partner]
    return Finding("baseline", title, "warn", value, f"{detail}; this is {what}.", flag, numbers)


def field_of_view(inputs: CheckInputs) -> Finding:
    """Field of view of each context view before the crop and as the model sees it."""
    title = "field of view"

    def degrees(f: float) -> float:
        return math.degrees(2 * math.atan(0.5 / f))

    source = [(degrees(fx), degrees(fy)) for fx, fy in inputs.source_focals]
    K = inputs.scene.context.intrinsics.double()
    model = [(degrees(float(k[0, 0])), degrees(float(k[1, 1]))) for k in K]
    widest = max(max(s) for s in source)
    value = ", ".join(f"{w:.0f} x {h:.0f} deg" for w, h in source)
    seen = ", ".join(f"{w:.0f} x {h:.0f}" for w, h in model)
    numbers = {"source_degrees": [list(s) for s in source],
               "model_degrees": [list(m) for m in model]}  # fmt: skip
    detail = f"horizontal x vertical, as captured ({value}); after the crop the model sees {seen}"
    if widest <= MAX_FOV_DEGREES:
        return Finding("field_of_view", title, "ok", value, detail + ".", numbers=numbers)
    return Finding("field_of_view", title, "warn", value,
                   f"{detail}; the official loaders skip views wider than {MAX_FOV_DEGREES:.0f} "
                   "degrees, so no checkpoint saw such views. Undistort a fisheye capture, or "
                   "crop the images to a narrower view.", None, numbers)  # fmt: skip


def kept_share(size: tuple[int, int], settings: PreprocessSettings) -> tuple[float, float]:
    """(share of the image the crops keep, rescale factor) for an image of ``size`` (W, H)."""
    from dsviewer.dataset.preprocess import rescaled_shape

    width, height = size
    scale = max(settings.image_shape[0] / height, settings.image_shape[1] / width)
    h, w = rescaled_shape((height, width), settings.image_shape)
    mh, mw = settings.model_shape
    return (mh * mw) / (h * w), scale


def crop(inputs: CheckInputs) -> Finding:
    """How much of each image the centre crop to the model's aspect ratio throws away."""
    title = "centre crop"
    kept = [kept_share(size, inputs.settings)[0] for size in inputs.image_sizes]
    worst = 1 - min(kept)
    height, width = inputs.settings.model_shape
    value = f"{worst:.0%} lost"
    sizes = ", ".join(f"{w} x {h}" for w, h in dict.fromkeys(inputs.image_sizes))
    numbers = {"lost": [1 - k for k in kept]}
    detail = (f"the centre crop of {sizes} images to the model's {width} x {height} discards "
              f"{worst:.0%} of an image (the square RE10K checkpoints lose 44 % of RE10K's "
              "frames)")
    if worst <= MAX_CROP_LOSS:
        return Finding("crop", title, "ok", value, detail + ".", numbers=numbers)
    flag, better = None, inputs.better_checkpoint
    if better is not None:
        name, shape, views = better
        count = inputs.scene.context.num_views  # keep the views: its preset may want others
        flag = f"--ckpt {name}" + (f" --views {count}" if views != count else "")
        detail += f"; the released checkpoint at {shape[1]} x {shape[0]} keeps more"
    else:
        w, h = inputs.image_sizes[0]
        detail += ("; no released checkpoint has this aspect ratio: pass --config with a copy of "
                   f"the checkpoint's preset whose image_shape keeps the images' {w}:{h} aspect")
    return Finding("crop", title, "warn", value, detail + ".", flag, numbers)


def downscale(inputs: CheckInputs) -> Finding:
    """The factor between each image file and the model's input."""
    title = "downscale"
    factors = [kept_share(size, inputs.settings)[1] for size in inputs.image_sizes]
    value = ", ".join(f"x{f:.2g}" for f in factors)
    numbers = {"scale": factors}
    if max(factors) <= 1.0 + 1e-6:
        return Finding("downscale", title, "ok", value, "each image is reduced by this factor to "
                       "the model's input (the official pipeline reduces RE10K's 640 x 360 frames "
                       "0.71x for 256 x 256).", numbers=numbers)  # fmt: skip
    return Finding("downscale", title, "warn", value,
                   "an image is smaller than the model's input and is enlarged, so the model "
                   "sees interpolated pixels; use the full-size images (not a downscaled "
                   "images_N folder).", None, numbers)  # fmt: skip


def overlap(inputs: CheckInputs) -> Finding:
    """Shared SfM points between the chosen context views."""
    title = "overlap of the context views"
    if inputs.sfm is None or len(inputs.sfm.views) < 2:
        return _no_sfm("overlap", title, "The overlap of the context views", inputs)
    views = inputs.sfm.views
    points = [set(np.asarray(v.point).tolist()) for v in views]
    best = []
    for i, mine in enumerate(points):
        shared = max(len(mine & other) for j, other in enumerate(points) if j != i)
        best.append((shared, shared / max(len(mine), 1)))
    worst = min(range(len(views)), key=lambda i: best[i][1])
    shared, share = best[worst]
    value = f"{shared} points ({share:.0%})"
    numbers = {"shared": [b[0] for b in best], "share": [b[1] for b in best]}
    detail = (f"frame {views[worst].frame} shares {shared} of its {views[worst].count} SfM points "
              "with another context view")
    if shared >= MIN_SHARED_POINTS and share >= MIN_SHARED_SHARE:
        return Finding("overlap", title, "ok", value, detail + ".", numbers=numbers)
    flag = None
    better = inputs.covisible_context() if inputs.covisible_context is not None else None
    if better is not None and list(better) != inputs.frames:
        flag = "--context " + " ".join(str(f) for f in better)
    return Finding("overlap", title, "warn", value,
                   f"{detail} (at least {MIN_SHARED_POINTS} and {MIN_SHARED_SHARE:.0%} wanted): "
                   "the cost volume finds no matches where the views do not overlap.", flag,
                   numbers)  # fmt: skip


@dataclass(frozen=True)
class Check:
    key: str
    label: str
    run: Callable[[CheckInputs], Finding]


CHECKS: tuple[Check, ...] = (
    Check("depth_range", "Depth range (SfM) against near/far", depth_range),
    Check("baseline", "Baseline / median depth", baseline),
    Check("field_of_view", "Field of view", field_of_view),
    Check("crop", "Centre crop", crop),
    Check("downscale", "Downscale", downscale),
    Check("overlap", "Overlap of the context views (SfM)", overlap),
)


def run_checks(inputs: CheckInputs) -> list[Finding]:
    """Every finding, in registry order."""
    return [check.run(inputs) for check in CHECKS]


def finding_notes(findings: list[Finding]) -> list[SceneNote]:
    """The notes of the findings that are not ok."""
    return [note for note in (f.note() for f in findings) if note is not None]
