"""Train the bundled demo model: DepthSplat at toy widths, on synthetic scenes with exact depth.

The model is the project's own ``DepthSplat`` built from ``configs/demo/depthsplat-demo-tiny.yaml``
(so the result loads through ``dsviewer.model.load_model``). Each step samples 2 context frames
(``min_gap_share`` of the scene's span apart or more) and a target frame between them per
scene, preprocessed by the viewer's own code (``dsviewer.dataset.preprocess.preprocess_views``) and
optionally mirrored left-right, and minimises

* the relative error of the final and of the coarse cost-volume depth against the ray-cast GT
  (pixels outside ``[near, far]`` ignored), in inverse depth or, with ``--loss-space depth``,
  as AbsRel itself (see ``relative_error`` for why that matters);
* optionally the cross-entropy of the cost volume's softmax against the GT (``matching_loss``),
  which teaches the features to match instead of leaving the coarse depth to a monocular guess;
* optionally a photometric loss of the predicted Gaussians rendered into the target view with
  the project's PyTorch rasterizer (trains opacity, scale and colour of the Gaussian head).

The first ``steps`` run at ``low_res_shape``, the last ``finetune_steps`` at the config's image
shape (the resolution the viewer uses for the demo scenes). With ``--anneal-by-time`` the
schedule follows the wall-clock budget ``max_minutes`` instead when the machine is slower.
``viewer/assets/demo/README.md`` has the commands that built the shipped model.

    python -m dsviewer.dataset.synthetic --out /tmp/demo/train --scenes 952 --frames 8 \\
        --height 128 --width 128 --seed 101
    python scripts/train_demo.py train --data /tmp/demo/train --out /tmp/demo/run ...
    python scripts/train_demo.py ship --run /tmp/demo/run --metrics eval.json
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from dsviewer.backends.presets import load_checkpoint, load_preset
from dsviewer.dataset.chunks import load_index, read_chunk
from dsviewer.dataset.preprocess import (
    PreprocessSettings,
    cameras_to_matrices,
    decode_image,
    preprocess_views,
)
from dsviewer.dataset.settings import settings_to_dict
from dsviewer.depth_metrics import abs_rel
from dsviewer.model.checkpoint import DepthSplat, save_checkpoint
from dsviewer.model.losses import inverse_depth_loss, photometric_loss, valid_depth_mask
from dsviewer.model.types import Gaussians

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "demo" / "depthsplat-demo-tiny.yaml"
MIN_VALID_SHARE = 0.95  # skip context pairs whose GT leaves [near, far] on more pixels
CHECKPOINTS_DIR = "checkpoints"  # Lightning's ModelCheckpoint folder inside a run folder


@dataclass
class TrainArgs:
    """Train the demo model on synthetic chunks (see the module docstring)."""

    data: Path = Path("/work/scratch/demo_train/train")
    """Training chunks plus index.json (from ``python -m dsviewer.dataset.synthetic``)."""
    out: Path = Path("/work/scratch/demo_train/run")
    """Run folder: checkpoints (last.pth, fp32; checkpoints/ with --ckpt-every) and log.jsonl."""
    val_data: Path | None = Path("/work/scratch/demo_train/val")
    """Held-out chunks for the periodic validation line (None: no validation)."""
    config: Path = DEMO_CONFIG
    init: Path | None = None
    """Start from this checkpoint's weights (e.g. a low-resolution run) instead of random."""
    steps: int = 600
    """Steps at ``low_res_shape``."""
    batch_size: int = 8
    low_res_shape: tuple[int, int] = (64, 64)
    finetune_steps: int = 80
    """Steps at the config's image shape after the low-resolution ones."""
    finetune_batch_size: int = 2
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    grad_clip: float = 1.0
    coarse_weight: float = 1.0
    """Weight of the coarse (cost-volume) depth term; the final depth term has weight 1."""
    loss_space: Literal["inverse", "depth", "both"] = "inverse"
    """Where the relative depth error is taken (see ``relative_error``)."""
    matching_weight: float = 0.0
    """Weight of the cost volume's cross-entropy against the GT (``matching_loss``; 0 = off)."""
    render_weight: float = 0.0
    """Weight of the photometric target-view loss (0 = off)."""
    render_every: int = 2
    """Render loss on every this-many steps, for the first batch element only (it is slow)."""
    min_gap_share: float = 0.0
    """Context frames at least this share of a scene's frame span apart (0: any gap from 3 on).
    The demo and held-out pairs are a scene's first and last frame (share 1)."""
    flip_prob: float = 0.0
    """Chance of mirroring a sample left-right (images, GT, cameras: a mirrored scene)."""
    threads: int = 2
    seed: int = 0
    val_every: int = 100
    ckpt_every: int = 0
    """Also write a checkpoint every this-many steps in PyTorch Lightning's ModelCheckpoint
    layout, OUT/checkpoints/epoch=0-step=S.ckpt with global_step S (the steps done) and the
    settings (0: none), to follow the training with `dsviewer eval --ckpt-dir OUT`."""
    max_minutes: float = 55.0
    """Stop early (saving a checkpoint) past this wall-clock time."""
    anneal_by_time: bool = False
    """Run the schedule on the share of ``max_minutes`` spent wherever that is ahead of the share
    of steps done: on a busy machine the switch to the full resolution comes on time and the
    learning rate has decayed to its floor when the time is up."""


@dataclass
class TrainScene:
    """All frames of one scene, preprocessed at one resolution."""

    key: str
    images: Tensor  # [F, 3, H, W] float16 in [0, 1]
    intrinsics: Tensor  # [F, 3, 3] normalized
    extrinsics: Tensor  # [F, 4, 4] T_world_cam
    depth: Tensor  # [F, H, W] float32 metric GT

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])


def load_scenes(root: Path, settings: PreprocessSettings) -> list[TrainScene]:
    """Every scene of ``root`` with all its frames through the viewer's preprocessing."""
    chunk_paths = sorted(set(load_index([root]).values()))
    scenes = []
    for chunk_path in chunk_paths:
        for example in read_chunk(chunk_path):
            where = f"{example.key} in {chunk_path}"
            K, T = cameras_to_matrices(example.cameras, where)
            images = torch.stack(
                [decode_image(data, where, i) for i, data in enumerate(example.images)]
            )
            depth = torch.stack([d.to(torch.float32) for d in example.depths])
            views = preprocess_views(
                images, K, T, torch.arange(example.num_frames), settings, depth
            )
            assert views.depth is not None
            scenes.append(
                TrainScene(example.key, views.image.half(), views.intrinsics, views.extrinsics,
                           views.depth)
            )
    return scenes


def sample_views(scene: TrainScene, rng: np.random.Generator,
                 min_gap_share: float = 0.0) -> tuple[list[int], int]:
    """Two context frames apart by 3 or more frames and by ``min_gap_share`` of the frame span
    (random order), and a target strictly between them."""
    span = scene.num_frames - 1
    gap = int(rng.integers(max(3, math.ceil(min_gap_share * span)), span + 1))
    first = int(rng.integers(0, scene.num_frames - gap))
    context = [first, first + gap]
    if rng.random() < 0.5:
        context.reverse()
    target = int(rng.integers(min(context) + 1, max(context)))
    return context, target


@dataclass
class Batch:
    context: dict[str, Tensor]  # the encoder's input dict, [B, 2, ...]
    depth: Tensor  # [B, 2, H, W] GT of the context views
    target_image: Tensor  # [B, 1, 3, H, W]
    target_intrinsics: Tensor  # [B, 1, 3, 3]
    target_extrinsics: Tensor  # [B, 1, 4, 4]


@dataclass
class Sample:
    """One training sample: 2 context frames and 1 target frame of a scene."""

    images: Tensor  # [3, 3, H, W] context, context, target
    intrinsics: Tensor  # [3, 3, 3] normalized
    extrinsics: Tensor  # [3, 4, 4] T_world_cam
    depth: Tensor  # [3, H, W]


MIRROR_X = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


def mirror(sample: Sample) -> Sample:
    """The sample as seen in the scene mirrored in its world x axis.

    A camera coordinate ``x`` becomes ``-x``, so image columns reverse and the normalized
    principal point moves to ``1 - cx``; ``T_world_cam`` becomes ``M T M`` with
    ``M = diag(-1, 1, 1, 1)`` (a proper rotation again), and depth is unchanged per pixel.
    """
    intrinsics = sample.intrinsics.clone()
    intrinsics[:, 0, 2] = 1.0 - intrinsics[:, 0, 2]
    return Sample(
        images=sample.images.flip(-1),
        intrinsics=intrinsics,
        extrinsics=MIRROR_X @ sample.extrinsics @ MIRROR_X,
        depth=sample.depth.flip(-1),
    )


def scene_sample(scene: TrainScene, context: list[int], target: int) -> Sample:
    frames = [*context, target]
    return Sample(scene.images[frames].float(), scene.intrinsics[frames],
                  scene.extrinsics[frames], scene.depth[frames])


def batch_of(samples: list[Sample], near: float, far: float) -> Batch:
    """Stack samples into the encoder's input dict (context) and the target tensors."""

    def stack(name: str, frames: slice) -> Tensor:
        return torch.stack([getattr(sample, name)[frames] for sample in samples])

    context, target = slice(0, 2), slice(2, 3)
    size = len(samples)
    return Batch(
        context={
            "image": stack("images", context),
            "intrinsics": stack("intrinsics", context),
            "extrinsics": stack("extrinsics", context),
            "near": torch.full((size, 2), near),
            "far": torch.full((size, 2), far),
        },
        depth=stack("depth", context),
        target_image=stack("images", target),
        target_intrinsics=stack("intrinsics", target),
        target_extrinsics=stack("extrinsics", target),
    )


def make_batch(scenes: list[TrainScene], size: int, rng: np.random.Generator,
               near: float, far: float, min_gap_share: float = 0.0,
               flip_prob: float = 0.0) -> Batch:
    samples: list[Sample] = []
    while len(samples) < size:
        scene = scenes[int(rng.integers(len(scenes)))]
        context, target = sample_views(scene, rng, min_gap_share)
        depth = scene.depth[context]
        valid = valid_depth_mask(depth[None], torch.full((1, 2), near), torch.full((1, 2), far))
        if valid.float().mean() < MIN_VALID_SHARE:
            continue  # a camera inside or against an object: not a useful stereo pair
        sample = scene_sample(scene, context, target)
        samples.append(mirror(sample) if rng.random() < flip_prob else sample)
    return batch_of(samples, near, far)


def widest_pairs(scenes: list[TrainScene], near: float, far: float) -> Batch:
    """Every scene's first and last frame as context (the demo's and the held-out evaluation's
    setting) and its middle frame as target."""
    samples = [scene_sample(s, [0, s.num_frames - 1], s.num_frames // 2) for s in scenes]
    return batch_of(samples, near, far)


def relative_error(inv_depth: Tensor, depth: Tensor, mask: Tensor, space: str) -> Tensor:
    """Mean relative error of ``inv_depth`` against GT ``depth`` (``[B, V, H, W]``) over ``mask``.

    ``inverse``: ``|inv / inv_gt - 1|``, which under uncertainty favours predictions that are
    too far (a depth ``k`` times too far costs ``1 - 1/k``, ``k`` times too near ``k - 1``);
    ``depth``: ``|d / gt - 1|``, AbsRel itself; ``both``: their mean.
    """
    if space == "inverse":
        return inverse_depth_loss(inv_depth, depth, mask)
    absolute = abs_rel(1.0 / inv_depth, depth, mask)
    if space == "depth":
        return absolute
    return 0.5 * (inverse_depth_loss(inv_depth, depth, mask) + absolute)


def matching_loss(probs: Tensor, candidates: Tensor, depth: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy of the cost volume's softmax against the GT inverse depth.

    The target puts the GT on the two candidates around it, weighted by distance (candidates
    are evenly spaced per pixel). This rewards the matching distribution itself, not only its
    expectation (the coarse depth), so the features learn to match sooner.

    Args:
        probs, candidates: ``[B, V, D, h, w]`` softmax and INVERSE-depth candidates.
        depth: ``[B, V, H, W]`` GT metric depth; mask: ``[B, V, H, W]`` bool, usable pixels.
    """
    b, v, d, h, w = probs.shape
    factor = depth.shape[-1] // w
    inv = torch.where(mask, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    pooled = torch.nn.functional.avg_pool2d(inv.flatten(0, 1)[:, None], factor)  # [BV, 1, h, w]
    usable = -torch.nn.functional.max_pool2d(-mask.flatten(0, 1)[:, None].float(), factor)
    inv_gt = pooled.view(b, v, 1, h, w)
    usable = usable.view(b, v, h, w) > 0.5  # every pixel under the cell usable
    position = (inv_gt - candidates[:, :, :1]) / (candidates[:, :, 1:2] - candidates[:, :, :1])
    position = position.clamp(0, d - 1 - 1e-4)  # [B, V, 1, h, w] in candidate units
    low = position.floor()
    upper_share = position - low
    log_probs = probs.clamp_min(1e-6).log()
    low_index = low.long()
    cross_entropy = -((1 - upper_share) * log_probs.gather(2, low_index)
                      + upper_share * log_probs.gather(2, low_index + 1))[:, :, 0]  # [B, V, h, w]
    return cross_entropy[usable].sum() / usable.sum().clamp_min(1)


def depth_losses(model: DepthSplat, batch: Batch, space: str = "inverse",
                 matching: bool = False) -> tuple[dict[str, Tensor], object]:
    """Forward pass; the final and coarse relative depth errors (and, with ``matching``, the
    cost volume's cross-entropy) and the encoder output."""
    dump: dict[str, Tensor] = {}
    output = model.encoder(batch.context, visualization_dump=dump)
    mask = valid_depth_mask(batch.depth, batch.context["near"], batch.context["far"])
    losses = {
        "final": relative_error(1.0 / output.depth, batch.depth, mask, space),
        "coarse": relative_error(dump["coarse_mv_depth"], batch.depth, mask, space),
    }
    if matching:
        losses["matching"] = matching_loss(dump["match_probs"], dump["depth_candidates"],
                                           batch.depth, mask)
    return losses, output


def render_loss(gaussians: Gaussians, batch: Batch, near: float) -> Tensor:
    """Photometric loss of batch element 0's Gaussians rendered into its target view."""
    from dsviewer.model.decoder.render import render_gaussians

    first = Gaussians(
        means=gaussians.means[:1],
        covariances=gaussians.covariances[:1],
        harmonics=gaussians.harmonics[:1],
        opacities=gaussians.opacities[:1],
    )
    height, width = batch.target_image.shape[-2:]
    rendered = render_gaussians(
        first,
        batch.target_intrinsics[:1],
        batch.target_extrinsics[:1],
        (height, width),
        near=0.2 * near,  # the official decoder's culling: only just in front
        far=1e4,
        backend="torch",
    )
    return photometric_loss(rendered.color, batch.target_image[:1])


def schedule_progress(step: int, total: int, seconds: float, args: TrainArgs) -> float:
    """How far the run is, in [0, 1]: the share of steps done, or (``anneal_by_time``) the
    share of ``max_minutes`` spent when that is larger."""
    progress = step / total
    if args.anneal_by_time:
        progress = max(progress, seconds / (args.max_minutes * 60))
    return min(progress, 1.0)


def learning_rate(step: int, total: int, progress: float, args: TrainArgs) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 2% of the peak at the end of
    the run (``progress`` 1; with step-based progress the cosine starts after the warm-up)."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    warmup = args.warmup_steps / total
    decay = max(progress - warmup, 0.0) / max(1.0 - warmup, 1e-9)
    return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(decay, 1.0))))


@torch.no_grad()
def validate(model: DepthSplat, batch: Batch) -> dict[str, float]:
    """AbsRel of the final and coarse depth on a fixed held-out batch."""
    model.eval()
    dump: dict[str, Tensor] = {}
    output = model.encoder(batch.context, visualization_dump=dump)
    model.train()
    mask = valid_depth_mask(batch.depth, batch.context["near"], batch.context["far"])
    return {
        "val_abs_rel_final": float(abs_rel(output.depth, batch.depth, mask)),
        "val_abs_rel_coarse": float(abs_rel(1.0 / dump["coarse_mv_depth"], batch.depth, mask)),
    }


def train(args: TrainArgs) -> Path:
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    preset = load_preset(args.config)
    config, preprocess = preset.architecture, preset.preprocess
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "args.json").write_text(json.dumps(_jsonable(vars(args)), indent=2) + "\n")

    def settings(shape: tuple[int, int]) -> PreprocessSettings:
        return PreprocessSettings(image_shape=shape, near=preprocess.near, far=preprocess.far,
                                  patch_multiple=preprocess.patch_multiple)

    start = time.perf_counter()
    low = load_scenes(args.data, settings(args.low_res_shape)) if args.steps else []
    high = load_scenes(args.data, settings(preprocess.image_shape)) if args.finetune_steps else []
    val_batch = None
    if args.val_data is not None:
        val_scenes = load_scenes(args.val_data, settings(preprocess.image_shape))
        val_batch = widest_pairs(val_scenes, preprocess.near, preprocess.far)
    loaded_in = time.perf_counter() - start
    print(f"loaded {max(len(low), len(high))} training scenes in {loaded_in:.1f} s")

    model = DepthSplat(config)
    if args.init is not None:
        from dsviewer.model import load_model

        model.load_state_dict(load_model(args.init, config=config).state_dict())
    model.train()
    num_params = sum(p.numel() for p in model.parameters())
    print(f"model {config.architecture}: {num_params / 1e6:.2f} M parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    total = args.steps + args.finetune_steps
    log_path = args.out / "log.jsonl"
    log_file = log_path.open("w")
    start = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total}"), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns) as progress:
        task = progress.add_task("training", total=total, status="")
        for step in range(total):
            progress_share = schedule_progress(step, total, time.perf_counter() - start, args)
            finetune = step >= args.steps or progress_share >= args.steps / total
            scenes = high if finetune else low
            size = args.finetune_batch_size if finetune else args.batch_size
            batch = make_batch(scenes, size, rng, preprocess.near, preprocess.far,
                               args.min_gap_share, args.flip_prob)
            lr = learning_rate(step, total, progress_share, args)
            for group in optimizer.param_groups:
                group["lr"] = lr

            losses, output = depth_losses(model, batch, args.loss_space,
                                          matching=args.matching_weight > 0)
            loss = losses["final"] + args.coarse_weight * losses["coarse"]
            if "matching" in losses:
                loss = loss + args.matching_weight * losses["matching"]
            if args.render_weight > 0 and step % args.render_every == 0:
                losses["render"] = render_loss(output.gaussians, batch, preprocess.near)
                loss = loss + args.render_weight * losses["render"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()

            record = {"step": step, "lr": lr, "loss": float(loss.detach()),
                      "grad_norm": float(grad_norm),
                      "seconds": time.perf_counter() - start,
                      "shape": list(batch.depth.shape[-2:])}
            record.update({k: float(v.detach()) for k, v in losses.items()})
            last = step == total - 1
            out_of_time = record["seconds"] > args.max_minutes * 60
            if val_batch is not None and (step % args.val_every == 0 or last or out_of_time):
                record.update(validate(model, val_batch))
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            status = (f"loss {record['loss']:.3f} final {record['final']:.3f} "
                      f"coarse {record['coarse']:.3f}")
            if "render" in record:
                status += f" render {record['render']:.3f}"
            if "val_abs_rel_final" in record:
                status += (f" | val AbsRel final {record['val_abs_rel_final']:.3f} "
                           f"coarse {record['val_abs_rel_coarse']:.3f}")
            progress.update(task, advance=1, status=status)
            done = step + 1  # Lightning's global_step: optimizer steps taken
            if args.ckpt_every and done % args.ckpt_every == 0:
                save_checkpoint(model, step_checkpoint_path(args.out, done),
                                preprocess=settings_to_dict(preprocess), global_step=done)
            if step % args.val_every == 0 or last or out_of_time:
                save_checkpoint(model, args.out / "last.pth", global_step=done,
                                preprocess=settings_to_dict(preprocess))
            if out_of_time:
                print(f"stopping at step {step}: past {args.max_minutes} minutes")
                break
    log_file.close()
    print(f"trained {step + 1} steps in {(time.perf_counter() - start) / 60:.1f} min; "
          f"checkpoint {args.out / 'last.pth'}, log {log_path}")
    return args.out / "last.pth"


def step_checkpoint_path(run: Path, global_step: int) -> Path:
    """Where Lightning's ModelCheckpoint puts a step's file (its default name,
    ``epoch={epoch}-step={step}``). The demo samples scenes at random, so it is one endless
    epoch 0. ``save_checkpoint`` writes to a temporary name and renames it, so a watcher never
    sees half a file. Lightning does not (its ``_atomic_save`` writes to the final name in the
    2.x releases we read); ``dsviewer.viewer.watch.checkpoints`` copes with both."""
    return run / CHECKPOINTS_DIR / f"epoch=0-step={global_step}.ckpt"


def _jsonable(values: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


# --- shipping -----------------------------------------------------------------------------------


@dataclass
class ShipArgs:
    """Put a trained run into viewer/assets/demo: fp16 checkpoint, demo scenes, demo.json."""

    run: Path = Path("/work/scratch/demo_train/run")
    """A training run folder (last.pth, log.jsonl, args.json)."""
    assets: Path = REPO / "viewer" / "assets" / "demo"
    metrics: Path | None = None
    """JSON written by ``scripts/eval_demo.py --json`` (held-out metrics) to include."""
    scene_seed: int = 7
    num_scenes: int = 3
    scene_frames: int = 8
    scene_shape: tuple[int, int] | None = None
    """(H, W) of the demo scenes; default: the checkpoint config's image shape."""
    keep_scenes: bool = False
    """Keep the demo scenes already in ``assets`` instead of rendering them again (another
    machine's open3d/numpy can change a few JPEG bytes, which would show up as a new file)."""


def write_demo_scenes(folder: Path, seed: int, count: int, frames: int,
                      shape: tuple[int, int], near: float, far: float) -> list[str]:
    """Render synthetic scenes ``(seed, 0), (seed, 1), ...`` and write the first ``count`` that
    make a good stereo demo as one chunk: GT depth inside ``[near, far]`` on (nearly) every
    pixel, and a baseline between the first and last frame (the default context pair) that is
    mostly sideways (at least twice its forward component), as in the usual two-view setting."""
    from dsviewer.dataset.chunks import write_chunk, write_index
    from dsviewer.dataset.preprocess import cameras_to_matrices
    from dsviewer.dataset.synthetic import render_example

    examples = []
    scene = 0
    while len(examples) < count:
        example = render_example(seed, scene, frames, *shape)
        scene += 1
        depth = torch.stack(example.depths)
        _, T_world_cam = cameras_to_matrices(example.cameras, example.key)
        offset = T_world_cam[0, :3, :3].T @ (T_world_cam[-1, :3, 3] - T_world_cam[0, :3, 3])
        sideways = offset[0].abs() >= 2 * offset[2].abs()  # in the first camera's frame
        if ((depth >= near) & (depth <= far)).float().mean() > 0.999 and sideways:
            examples.append(example)
    folder.mkdir(parents=True, exist_ok=True)
    write_chunk(folder / "000000.torch", examples)
    write_index(folder, {example.key: "000000.torch" for example in examples})
    return [example.key for example in examples]


def training_summary(run: Path) -> dict:
    """Steps, wall time and the loss curve (means over stretches of steps) of a run."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    stretch = max(len(records) // 10, 1)
    curve = []
    for first in range(0, len(records), stretch):
        part = records[first : first + stretch]
        means = {}
        for key in ("loss", "final", "coarse", "matching", "render"):
            values = [r[key] for r in part if key in r]  # render: only on its steps
            if values:
                means[key] = sum(values) / len(values)
        curve.append({"steps": [part[0]["step"], part[-1]["step"]], "shape": part[-1]["shape"],
                      **means})
    validation = [{k: r[k] for k in ("step", "val_abs_rel_final", "val_abs_rel_coarse")}
                  for r in records if "val_abs_rel_final" in r]
    args = json.loads((run / "args.json").read_text()) if (run / "args.json").is_file() else {}
    return {"steps": len(records), "minutes": records[-1]["seconds"] / 60, "args": args,
            "loss_curve": curve, "validation": validation}


def training_stages(run: Path) -> list[dict]:
    """Summaries of ``run`` and the runs it was initialised from (``--init``), oldest first."""
    stages = [training_summary(run)]
    while (init := stages[0]["args"].get("init")) and (Path(init).parent / "log.jsonl").is_file():
        stages.insert(0, training_summary(Path(init).parent))
    return stages


def demo_scene_metrics(assets: Path, keys: list[str]) -> dict[str, dict]:
    """Per shipped demo scene: GT depth metrics of the coarse and the final depth, computed as
    ``dsviewer export`` computes them (``metrics.json`` ``gt.coarse/final.overall``)."""
    from dsviewer.viewer.analysis import gt_metrics
    from dsviewer.viewer.assets import CHECKPOINT_NAME, SCENES_DIR_NAME
    from dsviewer.viewer.session.model import ModelSession
    from dsviewer.viewer.session.specs import SessionSettings

    session = ModelSession(assets / CHECKPOINT_NAME,
                           SessionSettings(data_root=(assets / SCENES_DIR_NAME,), device="cpu"))
    metrics = {}
    for key in keys:
        layers = session.load(key).layers
        assert layers.gt_depth is not None
        metrics[key] = {part: gt_metrics(depth, layers.gt_depth)["overall"]
                        for part, depth in (("coarse", layers.coarse_depth),
                                            ("final", layers.final_depth))}
    return metrics


def ship(args: ShipArgs) -> None:
    from dsviewer.viewer.assets import CHECKPOINT_NAME, INFO_NAME, SCENES_DIR_NAME

    torch.manual_seed(0)
    loaded = load_checkpoint(args.run / "last.pth")
    model = loaded.model
    config, preprocess = loaded.settings.architecture, loaded.settings.preprocess
    checkpoint = save_checkpoint(model.half(), args.assets / CHECKPOINT_NAME,
                                 preprocess=settings_to_dict(preprocess))
    shape = args.scene_shape or preprocess.image_shape
    if args.keep_scenes:
        keys = sorted(load_index([args.assets / SCENES_DIR_NAME]))
    else:
        keys = write_demo_scenes(args.assets / SCENES_DIR_NAME, args.scene_seed,
                                 args.num_scenes, args.scene_frames, shape, preprocess.near,
                                 preprocess.far)
    info = {
        "checkpoint": CHECKPOINT_NAME,
        "architecture": config.architecture,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": {"architecture": config.to_dict(), "preprocess": settings_to_dict(preprocess)},
        "scenes": {"keys": keys, "seed": args.scene_seed, "frames": args.scene_frames,
                   "image_shape": list(shape),
                   "made_with": "dsviewer.dataset.synthetic.render_example"
                                "(seed, scene, frames, H, W)"},
        "training_stages": training_stages(args.run),
        "demo_scene_metrics": demo_scene_metrics(args.assets, keys),
    }
    if args.metrics is not None:
        info["held_out_metrics"] = json.loads(args.metrics.read_text())
    path = args.assets / INFO_NAME
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(path)
    sizes = {p.name: p.stat().st_size for p in sorted(args.assets.rglob("*")) if p.is_file()}
    print(f"shipped {checkpoint} and scenes {keys}")
    for name, size in sizes.items():
        print(f"  {name}: {size / 1e6:.2f} MB")


def main() -> None:
    import tyro

    chosen = tyro.extras.subcommand_cli_from_dict({"train": TrainArgs, "ship": ShipArgs})
    if isinstance(chosen, TrainArgs):
        train(chosen)
    else:
        ship(chosen)


if __name__ == "__main__":
    main()
