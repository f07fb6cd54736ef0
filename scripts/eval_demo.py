"""Held-out depth metrics of the bundled demo model, against the same architecture untrained.

Scenes are rendered now, with seeds no training or demo scene uses, and loaded through the
viewer's own path (``load_scene("synthetic:<seed>")``: 24 frames, the first and last as
context). For each scene the table gives AbsRel and delta<1.25 of

* ``coarse``: the cost-volume depth, ``1 / coarse_inv_depth`` (before the DPT residual);
* ``final``: the model's depth, ``1 / clamp(coarse + residual, 1/far, 1/near)``;
* ``untrained``: the final depth of the same config with random weights (seeded),

over pixels whose GT lies inside the model's ``[near, far]``, and the PSNR of the predicted
Gaussians rendered into a few target views (PyTorch rasterizer) for both models.

    python scripts/eval_demo.py                       # the shipped checkpoint, 12 scenes
    python scripts/eval_demo.py --ckpt run/last.pth --json metrics.json
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dsviewer.depth_metrics import abs_rel, delta_accuracy
from dsviewer.model.losses import valid_depth_mask

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CKPT = REPO / "viewer" / "assets" / "demo" / "depthsplat-demo-tiny.pth"
FIRST_HELD_OUT_SEED = 5000  # training uses (101, i), validation (202, i), the demo scenes (7, i)
MIN_VALID_SHARE = 0.5  # skip a scene whose GT is mostly outside [near, far]


@dataclass
class EvalArgs:
    """Evaluate the demo checkpoint on held-out synthetic scenes."""

    ckpt: Path = DEFAULT_CKPT
    scenes: int = 12
    first_seed: int = FIRST_HELD_OUT_SEED
    image_shape: tuple[int, int] | None = None
    """(H, W) to evaluate at; default: the checkpoint config's image shape."""
    untrained_seed: int = 0
    render_targets: int = 3
    """Target views per scene to render for the PSNR columns (0 = none)."""
    threads: int = 2
    json: Path | None = None
    """Also write the table as JSON here."""


def depth_metrics(depth: Tensor, gt: Tensor, mask: Tensor) -> dict[str, float]:
    return {"abs_rel": float(abs_rel(depth, gt, mask)),
            "delta1": float(delta_accuracy(depth, gt, mask))}


def render_psnr(prediction, targets, count: int) -> float | None:
    """Mean PSNR of ``prediction``'s Gaussians rendered into ``count`` evenly chosen targets."""
    from dsviewer.model.decoder.render import psnr, render_gaussians

    if count == 0 or targets is None or prediction.gaussians is None:
        return None
    picks = torch.linspace(0, targets.num_views - 1, count).round().long().unique()
    rendered = render_gaussians(
        prediction.gaussians,
        targets.intrinsics[None, picks],
        targets.extrinsics[None, picks],
        targets.image_shape,
        near=0.2 * float(targets.near[0]),  # the official decoder's culling
        far=1e4,
        backend="torch",
    )
    return float(psnr(rendered.color[0], targets.image[picks]).mean())


def evaluate(args: EvalArgs) -> dict:
    from rich.console import Console
    from rich.table import Table

    from dsviewer.backends.presets import load_checkpoint
    from dsviewer.dataset import load_scene
    from dsviewer.model import predict
    from dsviewer.model.checkpoint import DepthSplat

    torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.ckpt)
    model, settings = loaded.model, loaded.settings.preprocess
    if args.image_shape is not None:
        settings = dataclasses.replace(settings, image_shape=tuple(args.image_shape))
    torch.manual_seed(args.untrained_seed)
    untrained = DepthSplat(model.config).eval()

    rows = []
    skipped = []
    start = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.scenes):
        scene = load_scene(f"synthetic:{seed}", settings=settings)
        views = scene.context
        assert views.depth is not None
        mask = valid_depth_mask(views.depth, views.near, views.far)  # [V, H, W]
        if mask.float().mean() < MIN_VALID_SHARE:
            skipped.append(seed)
            continue
        trained = predict(model, views)
        baseline = predict(untrained, views)
        rows.append({
            "scene": f"synthetic:{seed}",
            "context": views.index.tolist(),
            "valid_share": float(mask.float().mean()),
            "coarse": depth_metrics(1.0 / trained.coarse_inv_depth, views.depth, mask),
            "final": depth_metrics(trained.final_depth, views.depth, mask),
            "untrained": depth_metrics(baseline.final_depth, views.depth, mask),
            "psnr": render_psnr(trained, scene.target, args.render_targets),
            "psnr_untrained": render_psnr(baseline, scene.target, args.render_targets),
        })
    seconds = time.perf_counter() - start

    def mean(part: str, metric: str) -> float:
        return sum(r[part][metric] for r in rows) / max(len(rows), 1)

    summary: dict = {part: {m: mean(part, m) for m in ("abs_rel", "delta1")}
                     for part in ("coarse", "final", "untrained")}
    for key in ("psnr", "psnr_untrained"):
        values = [r[key] for r in rows if r[key] is not None]
        summary[key] = sum(values) / len(values) if values else None
    table = Table(title=f"{args.ckpt.name} on {len(rows)} held-out synthetic scenes at "
                        f"{settings.image_shape[0]}x{settings.image_shape[1]} "
                        f"(near {settings.near:g}, far {settings.far:g})")
    table.add_column("scene")
    for part in ("coarse", "final", "untrained"):
        table.add_column(f"{part} AbsRel", justify="right")
        table.add_column(f"{part} d<1.25", justify="right")
    table.add_column("PSNR", justify="right")
    table.add_column("PSNR untrained", justify="right")
    for row in rows + [{"scene": "mean", **summary}]:
        cells = [row["scene"]]
        for part in ("coarse", "final", "untrained"):
            cells += [f"{row[part]['abs_rel']:.3f}", f"{row[part]['delta1']:.3f}"]
        cells += ["-" if row[k] is None else f"{row[k]:.2f}" for k in ("psnr", "psnr_untrained")]
        table.add_row(*cells, end_section=row is rows[-1] if rows else False)
    console = Console(width=170)
    console.print(table)
    if skipped:
        console.print(f"skipped (GT mostly outside near/far): {skipped}")
    console.print(f"{len(rows)} scenes in {seconds:.1f} s")
    result = {"checkpoint": args.ckpt.name, "image_shape": list(settings.image_shape),
              "near": settings.near, "far": settings.far, "seeds_first": args.first_seed,
              "scenes": rows, "skipped": skipped, "mean": summary}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    import tyro

    evaluate(tyro.cli(EvalArgs))


if __name__ == "__main__":
    main()
