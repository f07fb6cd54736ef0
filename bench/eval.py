"""``dsviewer eval`` throughput: one process against two torchrun ranks with the same threads.

Same inputs for every mode: N synthetic scenes (exact GT depth) written once, the demo model
(``viewer/assets/demo``, 128x128) unless ``--ckpt``/``--data-root`` name others. In alternating
rounds it runs, as subprocesses, on CPU:

  one process:  ``python -m dsviewer.viewer.eval_cli --threads T ...``
  two ranks:    ``python -m torch.distributed.run --nproc_per_node 2 -m dsviewer.viewer.eval_cli
                --threads T/2 ...`` (gloo; each rank pinned to its own cores)
  reference:    one process with T/2 threads (what each rank has), so that the gain of the
                ranks over one process splits into threading and parallelism

and reports scenes per second two ways: end to end (the command's wall time: Python start,
imports, model load, the scenes, the merge) and in the loop (scenes / the slowest rank's loop
time, from summary.json). Beside them, the encoder-only bound: the model's forward pass alone on
the same scenes in this process (T threads for one process; T/2 threads, times two, for two
ranks): no evaluation can beat it. Prints one table and the load average; asserts nothing.

Run: ``python bench/eval.py [--scenes 12] [--rounds 2] [--threads 2] [--device cpu|cuda]``.
On a GPU machine ``--device cuda`` runs one rank per visible GPU instead of the CPU split.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def run_eval(ranks: int, threads: int, args, data_root: Path, out: Path) -> dict:
    """One ``dsviewer eval`` as a subprocess; its wall time and its summary's timing."""
    eval_args = ["--ckpt", str(args.ckpt), "--data-root", str(data_root), "--out", str(out),
                 "--device", args.device, "--threads", str(threads), "--force"]  # fmt: skip
    if args.max_target_views is not None:
        eval_args += ["--max-target-views", str(args.max_target_views)]
    if ranks == 1:
        command = [sys.executable, "-m", "dsviewer.viewer.eval_cli", *eval_args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={ranks}", "-m", "dsviewer.viewer.eval_cli",
                   *eval_args]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            check=False)  # fmt: skip
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"dsviewer eval failed ({' '.join(command)}):\n{result.stderr}")
    timing = json.loads((out / "summary.json").read_text())["timing"]
    scenes = timing["evaluated_this_run"]
    loop = max(rank["seconds"] for rank in timing["ranks"])
    return {"end_to_end": scenes / wall, "loop": scenes / loop}


def encoder_bound(args, data_root: Path, threads: int) -> float:
    """Scenes per second of the forward pass alone at ``threads`` threads (after a warm-up)."""
    import torch

    from dsviewer.viewer.evaluation.loading import SceneLoader
    from dsviewer.viewer.evaluation.plan import plan_scenes
    from dsviewer.viewer.evaluation.scene_metrics import encoder_seconds, open_session
    from dsviewer.viewer.session.specs import SessionSettings

    torch.set_num_threads(threads)
    session = open_session(Path(args.ckpt), SessionSettings(device=args.device))
    loader = SceneLoader(session.preprocess())
    scenes = [loader.load(planned) for planned in plan_scenes([data_root]).available]
    encoder_seconds(session, scenes[0])  # warm-up: first-call allocations and kernel choice
    return len(scenes) / sum(encoder_seconds(session, scene) for scene in scenes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=12, help="synthetic scenes to generate")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per mode")
    parser.add_argument("--threads", type=int, default=2, help="total CPU threads per mode")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--max-target-views", type=int, default=1,
                        help="target views rendered per scene for PSNR (CPU rendering is slow)")
    parser.add_argument("--ckpt", type=Path, default=None, help="default: the demo model")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="default: --scenes synthetic scenes at the model's image size")
    args = parser.parse_args()

    from dsviewer.viewer.assets import demo_checkpoint, demo_preprocess_settings

    args.ckpt = args.ckpt or demo_checkpoint()
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as temp:
        data_root = args.data_root
        if data_root is None:
            from dsviewer.dataset.synthetic import write_dataset

            data_root = Path(temp) / "data"
            height, width = demo_preprocess_settings().image_shape
            write_dataset(data_root, args.scenes, 6, height, width, seed=11, progress=False)
        if args.device == "cuda":
            import torch

            gpus = torch.cuda.device_count()
            modes = {"1 process, 1 GPU": (1, args.threads)}
            if gpus > 1:
                modes[f"{gpus} ranks, 1 GPU each"] = (gpus, args.threads)
        else:
            half = max(1, args.threads // 2)
            modes = {f"1 process x {args.threads} threads": (1, args.threads),
                     f"2 ranks x {half} thread(s)": (2, half)}  # fmt: skip
            if half < args.threads:  # separates the threading from the ranks' parallelism
                modes[f"1 process x {half} thread(s)"] = (1, half)
        print(f"{load_average()} before; {args.scenes} scenes, {args.rounds} rounds", flush=True)
        runs: dict[str, list[dict]] = {mode: [] for mode in modes}
        bounds: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_index in range(args.rounds):
            for mode, (ranks, threads) in modes.items():  # alternate: drift hits every mode
                out = Path(temp) / f"out_{round_index}_{ranks}"
                runs[mode].append(run_eval(ranks, threads, args, data_root, out))
                # Each rank has its own cores (or GPU): the bound scales with the ranks.
                bounds[mode].append(ranks * encoder_bound(args, data_root, threads))
                last = runs[mode][-1]
                print(f"round {round_index + 1}, {mode}: {last['end_to_end']:.2f} scenes/s end "
                      f"to end, {last['loop']:.2f} in the loop, encoder bound "
                      f"{bounds[mode][-1]:.2f}", flush=True)  # fmt: skip

    print()
    print(f"{'mode':<28}{'end to end':>12}{'in the loop':>13}{'encoder bound':>15}"
          f"{'loop / bound':>14}{'loop / first':>14}")  # fmt: skip
    first = None
    for mode in modes:
        end = statistics.median(r["end_to_end"] for r in runs[mode])
        loop = statistics.median(r["loop"] for r in runs[mode])
        bound = statistics.median(bounds[mode])
        first = first or loop
        print(f"{mode:<28}{end:>12.2f}{loop:>13.2f}{bound:>15.2f}{loop / bound:>14.2f}"
              f"{loop / first:>14.2f}")  # fmt: skip
    print(f"\nscenes per second, median of {args.rounds} rounds; {load_average()} after; "
          f"max target views {args.max_target_views}; model {Path(args.ckpt).name}.")

if __name__ == "__main__":
    main()
