"""``dsviewer eval`` throughput: the overlapped loop against the sequential one, per process mode.

Same inputs for every run: N synthetic scenes (exact GT depth) at the model's image size,
written once; the demo model (``viewer/assets/demo``, 128x128) unless ``--ckpt`` names another
or ``--arch`` asks for a real-size architecture (its recipe weights, seed 0, saved under the
released file name of ``bench/encoder.py``'s ``PRESET_OF``, e.g. gs_small_u4l4: the 256x256
``depthsplat-gs-small-re10k-256x256-view2-cfeab6b1.pth``). In alternating rounds it runs, as
subprocesses, each mode twice, overlapped (the default loop) and ``--no-overlap`` (each scene's
steps one after the other, the loop before the overlap; on a CPU the default loop runs the
steps in turn too, ``pipeline.overlaps_the_model``), in swapped order every other round:

  one process:  ``python -m dsviewer.viewer.eval_cli --threads T ...``
  two ranks:    ``python -m torch.distributed.run --nproc_per_node 2 -m dsviewer.viewer.eval_cli
                --threads T/2 ...`` (gloo; each rank pinned to its own cores)

It reports scenes per second in the loop (scenes / the slowest rank's own loop time,
``loop_seconds`` in summary.json) and end to end (the command's wall time), beside the
encoder-only bound: the model's forward pass alone on the same scenes, in fresh processes
pinned as eval's ranks are (one at T threads; for two ranks two at T/2 threads, side by side,
their scenes per second added), measured every round; loop / bound is the median of the
rounds' own ratios. Then the stage table: seconds per scene and stage
(``dsviewer.stage_timer.STAGES``, summed over the ranks, from summary.json), overlapped and
sequential, and the forward's share of them (what loop / bound measures, without the machine's
drift between a loop and its bound). Prints the load average before and after; asserts
nothing.

Run: ``python bench/eval.py --arch gs_small_u4l4 --scenes 6 --rounds 2`` (the issue's real-size
case) or ``python bench/eval.py`` (the demo model). ``--device cuda`` runs one rank per visible
GPU; without a GPU it says so and stops.
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

LOOPS = {"overlap": "--overlap", "sequential": "--no-overlap"}


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def run_eval(ranks: int, threads: int, loop: str, args, data_root: Path, out: Path) -> dict:
    """One ``dsviewer eval`` as a subprocess: scenes/s end to end and in the loop, and its
    seconds per stage and scene (summed over the ranks)."""
    eval_args = ["--ckpt", str(args.ckpt), "--data-root", str(data_root), "--out", str(out),
                 "--device", args.device, "--threads", str(threads), "--force",
                 LOOPS[loop]]  # fmt: skip
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
    # Each rank's own loop (to its last record, not its wait for the others, whose start can lag
    # by half a second); the slowest rank's sets the pace.
    loop_seconds = max(rank["loop_seconds"] for rank in timing["ranks"])
    stages = {name: seconds / scenes for name, seconds in timing["stages"].items()}
    return {"end_to_end": scenes / wall, "loop": scenes / loop_seconds, "stages": stages}


def encoder_bound(args, data_root: Path, threads: int) -> float:
    """Scenes per second of the forward pass alone at ``threads`` threads (after a warm-up)."""
    import torch

    from dsviewer.viewer.evaluation.loading import SceneLoader
    from dsviewer.viewer.evaluation.plan import plan_scenes
    from dsviewer.viewer.evaluation.scene_metrics import encoder_seconds, open_session
    from dsviewer.viewer.session.specs import SessionSettings

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        session = open_session(Path(args.ckpt), SessionSettings(device=args.device))
        loader = SceneLoader(session.preprocess())
        scenes = [loader.load(planned) for planned in plan_scenes([data_root]).available]
        encoder_seconds(session, scenes[0])  # warm-up: first-call allocations and kernel choice
        if args.barrier is not None:
            args.barrier.wait()  # the ranks' forwards run side by side, as in the loop
        return len(scenes) / sum(encoder_seconds(session, scene) for scene in scenes)
    finally:
        torch.set_num_threads(previous)


def _bound_rank(rank: int, ranks: int, threads: int, args, data_root: Path, rates) -> None:
    """One rank of :func:`ranks_bound`, pinned to its block of cores as eval's ranks are (and
    on its own GPU with ``--device cuda``, as torchrun's ranks are)."""
    available = sorted(os.sched_getaffinity(0))
    share = max(1, len(available) // ranks)
    os.sched_setaffinity(0, available[rank * share:(rank + 1) * share] or available)
    if args.device == "cuda":
        args = argparse.Namespace(**{**vars(args), "device": f"cuda:{rank}"})
    rates[rank] = encoder_bound(args, data_root, threads)


def ranks_bound(ranks: int, threads: int, args, data_root: Path) -> float:
    """The forward pass alone in ``ranks`` fresh processes at once, each on its own cores, as
    eval runs: the sum of their scenes per second. Side by side because ranks that share a
    machine share its memory bandwidth and caches (one rank alone overstates what two reach);
    fresh, because a long-lived process drifts (this one's forward slowed by 15 % between two
    rounds while eval's did not)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        rates = manager.dict()
        worker_args = argparse.Namespace(**{**vars(args), "barrier": context.Barrier(ranks)})
        workers = [context.Process(target=_bound_rank, args=(rank, ranks, threads, worker_args,
                                                             data_root, rates))
                   for rank in range(ranks)]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if len(rates) != ranks:
            raise SystemExit("bench/eval.py: a rank of the encoder bound failed (see above).")
        return sum(rates.values())


def checkpoint(args, folder: Path) -> Path:
    """``--ckpt``, or ``--arch``'s recipe weights under its released name, or the demo model."""
    if args.ckpt is not None:
        return args.ckpt
    if args.arch is not None:
        sys.path.insert(0, str(REPO_ROOT / "bench"))
        from encoder import write_checkpoint  # bench/encoder.py: one recipe, one file name

        return write_checkpoint(args.arch, None, folder)
    from dsviewer.viewer.assets import demo_checkpoint

    return demo_checkpoint()


def modes_for(args) -> dict[str, tuple[int, int]]:
    """(ranks, threads per rank) of each process mode."""
    if args.device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
        modes = {"1 process, 1 GPU": (1, args.threads)}
        if gpus > 1:
            modes[f"{gpus} ranks, 1 GPU each"] = (gpus, args.threads)
        return modes
    half = max(1, args.threads // 2)
    modes = {f"1 process x {args.threads} threads": (1, args.threads)}
    if not args.one_process:
        modes[f"2 ranks x {half} thread(s)"] = (2, half)
    return modes


def print_tables(modes, runs, bounds, args) -> None:
    print()
    print(f"{'mode':<26}{'loop':<12}{'end to end':>11}{'in the loop':>13}{'encoder bound':>15}"
          f"{'loop / bound':>14}{'vs sequential':>15}")  # fmt: skip
    for mode in modes:
        bound = statistics.median(bounds[mode])
        sequential = [r["loop"] for r in runs[(mode, "sequential")]]
        for loop in LOOPS:
            end = statistics.median(r["end_to_end"] for r in runs[(mode, loop)])
            rates = [r["loop"] for r in runs[(mode, loop)]]
            # Ratios within each round (its loops and its bound were measured minutes apart),
            # then their median: the machine's drift between rounds cancels.
            of_bound = statistics.median(r / b for r, b in zip(rates, bounds[mode], strict=True))
            of_sequential = statistics.median(r / q for r, q in zip(rates, sequential,
                                                                    strict=True))  # fmt: skip
            print(f"{mode:<26}{loop:<12}{end:>11.3f}{statistics.median(rates):>13.3f}"
                  f"{bound:>15.3f}{of_bound:>14.2f}{of_sequential:>15.2f}")  # fmt: skip
        print(f"{'':<26}loop / bound per round: "
              + ", ".join(f"{loop} " + " ".join(f"{r['loop'] / b:.2f}" for r, b in
                                               zip(runs[(mode, loop)], bounds[mode],
                                                   strict=True))
                          for loop in LOOPS))  # fmt: skip
    from dsviewer.stage_timer import STAGE_NAMES

    print("\nseconds per scene and stage (summed over ranks; median of rounds); columns: "
          "ranks x threads, loop")
    columns = [(mode, loop) for mode in modes for loop in LOOPS]
    labels = [f"{modes[mode][0]}x{modes[mode][1]} {loop}" for mode, loop in columns]
    print(f"{'stage':<16}" + "".join(f"{label:>18}" for label in labels))
    for name in (*STAGE_NAMES, "total"):
        cells = []
        for column in columns:
            values = [sum(r["stages"].values()) if name == "total" else r["stages"][name]
                      for r in runs[column]]
            cells.append(f"{statistics.median(values):>18.3f}")
        print(f"{name:<16}" + "".join(cells))
    # The model's share of each scene's own time: loop / bound would be this if the loop's
    # forward ran as fast as the bound's, and, within one run, no drift of the machine moves it.
    shares = [statistics.median(r["stages"]["forward"] / sum(r["stages"].values())
                                for r in runs[column]) for column in columns]  # fmt: skip
    print(f"{'forward share':<16}" + "".join(f"{share:>18.3f}" for share in shares))
    print(f"\nscenes per second, median of {args.rounds} rounds; {load_average()} after; max "
          f"target views {args.max_target_views}; model {Path(args.ckpt).name}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=6, help="synthetic scenes to generate")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=2, help="total CPU threads per mode")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--max-target-views", type=int, default=1,
                        help="target views rendered per scene for PSNR")
    parser.add_argument("--ckpt", type=Path, default=None, help="default: the demo model")
    parser.add_argument("--arch", default=None,
                        help="instead of --ckpt: recipe weights of this architecture under its "
                        "released file name (e.g. gs_small_u4l4, 256x256)")
    parser.add_argument("--one-process", action="store_true", help="skip the torchrun mode")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="default: --scenes synthetic scenes at the model's image size")
    args = parser.parse_args()
    args.barrier = None
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("bench/eval.py --device cuda: no CUDA GPU is visible here; nothing measured.")
            return

    with tempfile.TemporaryDirectory(prefix="bench_eval_") as temp:
        args.ckpt = checkpoint(args, Path(temp))
        data_root = args.data_root
        if data_root is None:
            from dsviewer.backends.presets import checkpoint_settings
            from dsviewer.dataset.synthetic import write_dataset

            data_root = Path(temp) / "data"
            height, width = checkpoint_settings(args.ckpt).preprocess.image_shape
            write_dataset(data_root, args.scenes, 6, height, width, seed=11, progress=False)
        modes = modes_for(args)
        print(f"{load_average()} before; {args.scenes} scenes, {args.rounds} rounds, model "
              f"{Path(args.ckpt).name}", flush=True)  # fmt: skip
        runs: dict[tuple[str, str], list[dict]] = {(m, loop): [] for m in modes for loop in LOOPS}
        bounds: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_index in range(args.rounds):
            loops = list(LOOPS) if round_index % 2 == 0 else list(reversed(LOOPS))
            for mode, (ranks, threads) in modes.items():
                for loop in loops:  # alternate: drift on a shared machine hits both loops
                    out = Path(temp) / f"out_{round_index}_{ranks}_{loop}"
                    last = run_eval(ranks, threads, loop, args, data_root, out)
                    runs[(mode, loop)].append(last)
                    print(f"round {round_index + 1}, {mode}, {loop}: {last['loop']:.3f} scenes/s "
                          f"in the loop, {last['end_to_end']:.3f} end to end; "
                          f"{load_average()}", flush=True)  # fmt: skip
                bounds[mode].append(ranks_bound(ranks, threads, args, data_root))
                print(f"round {round_index + 1}, {mode}: encoder bound {bounds[mode][-1]:.3f} "
                      "scenes/s", flush=True)  # fmt: skip
        print_tables(modes, runs, bounds, args)


if __name__ == "__main__":
    main()
