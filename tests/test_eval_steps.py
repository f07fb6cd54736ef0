"""Geometry over training, end to end on real files: ``scripts/train_demo.py --ckpt-every``
trains the demo model a few steps and writes Lightning's checkpoint layout; ``dsviewer eval
--ckpt-dir`` evaluates every step; its ``steps.csv`` must hold, per step, what ``dsviewer
export`` of that checkpoint writes into ``metrics.json``."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from dsviewer.viewer.evaluation.columns import CSV_COLUMNS, METRIC_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]
FRAMES, SIZE = 4, 128
VIEWS = ["--context", "0", "3", "--target", "2"]
EVERY, STEPS = 1, 2


def train_demo_module():
    """``scripts/train_demo.py`` as a module (dataclasses need it in ``sys.modules``)."""
    name = "train_demo_under_test"
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / "train_demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """Two demo training steps on one synthetic scene, a checkpoint after each."""
    from dsviewer.dataset.synthetic import write_dataset

    root = tmp_path_factory.mktemp("steps")
    write_dataset(root / "data", 1, FRAMES, SIZE, SIZE, seed=11, progress=False)
    key = next(iter(json.loads((root / "data" / "index.json").read_text())))
    demo = train_demo_module()
    threads = torch.get_num_threads()
    try:
        demo.train(demo.TrainArgs(data=root / "data", out=root / "run", val_data=None,
                                  steps=STEPS, batch_size=1, finetune_steps=0,
                                  ckpt_every=EVERY, threads=1))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    settled(root / "run")
    return root, key


def settled(path: Path) -> None:
    """Date a file (or a folder's files) a minute back: the checkpoint folder reads a file only
    once it has not changed for a second, and the tests need not wait for that."""
    when = time.time() - 60
    for each in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(each, (when, when))


def evaluate(*args: str) -> tuple[int, str]:
    """``dsviewer eval`` in this process, as its main() chooses: (exit code, console text)."""
    from rich.console import Console

    from dsviewer.viewer.eval_cli import parse_args
    from dsviewer.viewer.evaluation.runner import run_evaluation
    from dsviewer.viewer.evaluation.steps import run_step_evaluation

    log = io.StringIO()
    options = parse_args(list(args))
    run = run_evaluation if options.ckpt_dir is None else run_step_evaluation
    code = run(options.job(), console=Console(file=log, width=300), check=options.check_flags)
    return code, log.getvalue()


def the_viewers_row(path: Path, data: Path, key: str) -> dict[str, object]:
    """The row the viewer's curves get for a scene it has loaded (``loaded_step_row``)."""
    from dsviewer.viewer.session.model import ModelSession
    from dsviewer.viewer.session.specs import SessionSettings
    from dsviewer.viewer.watch.checkpoints import StepCheckpoint
    from dsviewer.viewer.watch.step_metrics import loaded_step_row

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        session = ModelSession(path, SessionSettings(data_root=(data,), context=(0, 3),
                                                     target=(2,), device="cpu"))  # fmt: skip
        return loaded_step_row(StepCheckpoint(1, path, "global_step"), key, session.load(key))
    finally:
        torch.set_num_threads(threads)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_train_demo_writes_lightning_checkpoints_atomically(training):
    root, _ = training
    folder = root / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=1.ckpt",
                                                         "epoch=0-step=2.ckpt"]  # no temp file
    files = {step: torch.load(folder / f"epoch=0-step={step}.ckpt", weights_only=True)
             for step in (1, 2)}  # fmt: skip
    last = torch.load(root / "run" / "last.pth", weights_only=True)
    assert [files[1]["global_step"], files[2]["global_step"], last["global_step"]] == [1, 2, 2]
    key = "encoder.depth_predictor.backbone.conv1.weight"
    assert torch.equal(files[2]["state_dict"][key], last["state_dict"][key])
    assert not torch.equal(files[1]["state_dict"][key], files[2]["state_dict"][key])


def test_steps_csv_equals_export_of_each_checkpoint(training, tmp_path):
    from dsviewer.viewer.export_cli import main as export_main

    root, key = training
    out = tmp_path / "eval"
    common = ["--ckpt-dir", str(root / "run"), "--data-root", str(root / "data"), "--scene",
              key, *VIEWS, "--out", str(out), "--device", "cpu", "--threads", "1"]  # fmt: skip
    code, said = evaluate(*common)
    assert code == 0, said
    assert "last.pth: skipped, a copy of the newest step" in said
    rows = read_csv(out / "steps.csv")
    assert list(rows[0]) == ["step", "checkpoint", *CSV_COLUMNS]
    ckpts = root / "run" / "checkpoints"
    assert [(r["step"], r["checkpoint"], r["key"], r["status"]) for r in rows] == [
        ("1", str(ckpts / "epoch=0-step=1.ckpt"), key, "ok"),
        ("2", str(ckpts / "epoch=0-step=2.ckpt"), key, "ok"),
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as eval ran (--threads 1): float sums depend on the count
    try:
        for row in rows:
            folder = tmp_path / f"export-{row['step']}"
            assert export_main(["--ckpt", row["checkpoint"], "--data-root", str(root / "data"),
                                "--scene", key, *VIEWS, "--out", str(folder), "--device",
                                "cpu"]) == 0  # fmt: skip
            metrics = json.loads((folder / "metrics.json").read_text())
            gt, consistency, clamp = metrics["gt"], metrics["consistency"], metrics["clamp"]
            expected = {
                "gt_abs_rel_coarse": gt["coarse"]["overall"]["abs_rel"],
                "gt_abs_rel_final": gt["final"]["overall"]["abs_rel"],
                "gt_delta_final": gt["final"]["overall"]["delta"],
                "inconsistent_coarse": consistency["coarse"]["overall"]["inconsistent_share"],
                "inconsistent_final": consistency["final"]["overall"]["inconsistent_share"],
                "clamp_final": clamp["final_at_near_share"] + clamp["final_at_far_share"],
                "confidence_mean": metrics["confidence"]["mean"],
                "residual_abs_mean": metrics["residual"]["abs_metric_mean"],
                "target_psnr": metrics["targets"]["mean_psnr"],
            }
            assert {name: float(row[name]) for name in expected} == pytest.approx(expected,
                                                                                  rel=1e-6)
    finally:
        torch.set_num_threads(threads)
    assert rows[0]["gt_abs_rel_final"] != rows[1]["gt_abs_rel_final"]  # two models, two rows
    viewer_row = the_viewers_row(ckpts / "epoch=0-step=1.ckpt", root / "data", key)
    assert viewer_row["step"] == 1 and viewer_row["checkpoint"] == rows[0]["checkpoint"]
    assert {name: viewer_row[name] for name in expected} == pytest.approx(
        {name: float(rows[0][name]) for name in expected}, rel=1e-6)

    page = (out / "report.html").read_text()
    assert page.count("<svg") == sum(any(r[name] for r in rows) for name in METRIC_NAMES)
    assert 'href="steps/step-000000001/report.html"' in page
    assert (out / "steps" / "step-000000002" / "report.html").is_file()
    assert "http" not in page.replace("http-equiv", "")  # offline: nothing fetched

    # A new checkpoint appears: a rerun evaluates that step alone and adds its row.
    from dsviewer.backends.presets import load_checkpoint
    from dsviewer.dataset.settings import settings_to_dict
    from dsviewer.model.checkpoint_file import save_checkpoint

    loaded = load_checkpoint(ckpts / "epoch=0-step=2.ckpt")  # the same weights and settings
    save_checkpoint(loaded.model, ckpts / "epoch=0-step=3.ckpt", global_step=3,
                    preprocess=settings_to_dict(loaded.settings.preprocess))
    settled(ckpts / "epoch=0-step=3.ckpt")  # the others keep their time: it names their run
    code, said = evaluate(*common)
    assert code == 0, said
    assert said.count("All 1 scenes already done") == 2 and said.count("1 to run") == 1
    again = read_csv(out / "steps.csv")
    assert [r["step"] for r in again] == ["1", "2", "3"]
    code, said = evaluate("--ckpt", str(ckpts / "epoch=0-step=1.ckpt"), *common[2:])
    assert code == 2 and "holds an evaluation of a training's steps" in said
    drop = ("seconds", "checkpoint", "step")
    assert [{k: v for k, v in r.items() if k not in drop} for r in again[1:]] == [
        {k: v for k, v in r.items() if k not in drop} for r in (rows[1], rows[1])]


@pytest.mark.parametrize("args, phrase", [
    (["--ckpt-dir", "{tmp}/absent"], "is not a folder"),
    (["--ckpt-dir", "{tmp}", "--ckpt", "{tmp}/x.pth"], "exclude each other"),
    (["--ckpt-dir", "{tmp}"], "holds no complete DepthSplat checkpoint"),
])  # fmt: skip
def test_bad_ckpt_dir_is_one_paragraph(args, phrase, tmp_path, capsys):
    from dsviewer.viewer.eval_cli import main

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    os.utime(tmp_path / "junk.pth", (1e9, 1e9))  # settled long ago
    argv = [a.format(tmp=tmp_path) for a in args] + ["--out", str(tmp_path / "out"),
                                                     "--scene", "synthetic:1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err
