"""A training's checkpoint folder read as steps: real files on disk, written the ways trainings
write them (Lightning's layout, plain .pth, slowly in pieces, truncated, another model)."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import micro_config

from dsviewer.model import DepthSplat
from dsviewer.model.checkpoint_file import CONFIG_ENTRY, read_checkpoint
from dsviewer.viewer.watch.checkpoints import CheckpointFolder, StepCheckpoint

OLD = time.time() - 3600  # an mtime long settled


@pytest.fixture(scope="module")
def states():
    """Two micro models' state dicts: the folder's architecture and another one."""
    torch.manual_seed(0)
    first = DepthSplat(micro_config()).state_dict()
    other = DepthSplat(micro_config().replace(dpt_features=24)).state_dict()
    return first, other


def lightning_bytes(state: dict, step: int | None, config=None) -> bytes:
    """A checkpoint as Lightning's ModelCheckpoint writes it (plus dsviewer's settings)."""
    entries: dict = {"state_dict": state, "epoch": 0}
    if step is not None:
        entries["global_step"] = step
    if config is not None:
        entries[CONFIG_ENTRY] = {"architecture": config.to_dict()}
    buffer = io.BytesIO()
    torch.save(entries, buffer)
    return buffer.getvalue()


def put(path: Path, data: bytes, mtime: float = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def test_steps_from_global_step_file_name_and_file_order(tmp_path, states):
    state, _ = states
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    best = put(ckpts / "best.ckpt", lightning_bytes(state, 30, micro_config()))
    put(ckpts / "last.ckpt", best.read_bytes(), OLD + 5)  # save_last: a copy of the newest
    plain = io.BytesIO()
    torch.save(state, plain)
    named = put(run / "weights-step_12.pth", plain.getvalue(), OLD + 1)
    # Step-less files: numbered in the order written (mtime), not by name.
    b = put(run / "b.pth", plain.getvalue(), OLD - 20)
    a = put(run / "a.pth", plain.getvalue(), OLD - 10)

    folder = CheckpointFolder(run, settle_s=0.5)
    new, notes = folder.poll()
    assert new == [
        StepCheckpoint(0, b, "file order"),
        StepCheckpoint(1, a, "file order"),
        StepCheckpoint(12, named, "file name"),
        StepCheckpoint(30, best, "global_step"),
    ]
    assert len(notes) == 1 and notes[0].startswith("checkpoints/last.ckpt: skipped")
    assert "step 30" in notes[0] and "checkpoints/best.ckpt" in notes[0]
    assert folder.architecture == micro_config()
    assert folder.poll() == ([], [])  # nothing new, nothing said twice

    later = put(ckpts / "epoch=1-step=40.ckpt", lightning_bytes(state, 40))
    os.symlink(later, ckpts / "last-v1.ckpt")  # save_last="link": silently the same file
    assert folder.poll() == ([StepCheckpoint(40, later, "global_step")], [])
    assert [s.step for s in folder.all_steps()] == [0, 1, 12, 30, 40]


def test_a_checkpoint_written_slowly_is_read_only_once_complete(tmp_path, states):
    """A non-atomic writer in pieces, polled all along. Halfway it stalls past settle_s (held
    until a poll has looked): the half file is examined, found incomplete (no zip end record)
    and noted, never returned; the whole file is returned once."""
    state, _ = states
    data = lightning_bytes(state, 9, micro_config())
    path = tmp_path / "checkpoints" / "epoch=0-step=9.ckpt"
    path.parent.mkdir()
    settle = 0.3
    halfway, resume, done = threading.Event(), threading.Event(), threading.Event()

    def write() -> None:
        pieces = 12
        with open(path, "wb") as file:
            for i in range(pieces):
                file.write(data[i * len(data) // pieces:(i + 1) * len(data) // pieces])
                file.flush()
                if i == pieces // 2:
                    halfway.set()
                    resume.wait(20)
                time.sleep(0.04)
        done.set()

    folder = CheckpointFolder(tmp_path, settle_s=settle)
    writer = threading.Thread(target=write)
    writer.start()
    before, notes, after = [], [], []
    deadline = time.time() + 20
    while time.time() < deadline and not after:
        if halfway.is_set() and not resume.is_set():
            time.sleep(settle + 0.05)  # the half file has settled
            new, said = folder.poll()
            before += new
            notes += said
            resume.set()
            continue
        finished = done.is_set()
        new, said = folder.poll()
        (after if finished else before).extend(new)
        notes += said
        time.sleep(0.02)
    resume.set()
    writer.join()
    assert before == []
    assert after == [StepCheckpoint(9, path, "global_step")]
    assert notes  # the stall; a loaded machine may starve the writer into more of them
    assert all(n.startswith("checkpoints/epoch=0-step=9.ckpt: skipped") and "end record" in n
               for n in notes)  # fmt: skip
    reread = read_checkpoint(after[0].path)  # what was returned is the whole file
    key = "encoder.depth_predictor.backbone.conv1.weight"
    torch.testing.assert_close(reread.state_dict[key], state[key], rtol=0, atol=0)


def test_bad_files_get_one_note_and_polling_goes_on(tmp_path, states):
    state, other = states
    good = lightning_bytes(state, 3, micro_config())
    cut = put(tmp_path / "epoch=0-step=3.ckpt", good[: len(good) // 2])
    legacy = io.BytesIO()
    torch.save({"state_dict": state}, legacy, _use_new_zipfile_serialization=False)
    put(tmp_path / "legacy-step=4.pth", legacy.getvalue()[:5000])
    put(tmp_path / "junk.pth", b"hello, not a checkpoint")
    put(tmp_path / "classifier.pth", lightning_bytes({"fc.weight": torch.zeros(2, 2)}, 1))
    put(tmp_path / "epoch=0-step=5.ckpt", lightning_bytes(state, 5, micro_config()), OLD + 1)
    put(tmp_path / "copy-step=5.pth", lightning_bytes(state, 5, micro_config()), OLD + 2)
    put(tmp_path / "wide-step=6.pth", lightning_bytes(other, 6, micro_config().replace(
        dpt_features=24)), OLD + 3)  # fmt: skip

    folder = CheckpointFolder(tmp_path, settle_s=0.5)
    new, notes = folder.poll()
    assert [(s.step, s.path.name) for s in new] == [(5, "epoch=0-step=5.ckpt")]
    said = {note.split(":")[0]: note for note in notes}
    assert len(notes) == len(said) == 6
    assert "end record" in said["epoch=0-step=3.ckpt"]
    assert "truncated or corrupt" in said["legacy-step=4.pth"]
    assert "not a PyTorch checkpoint" in said["junk.pth"]
    assert "not a DepthSplat checkpoint" in said["classifier.pth"]
    assert "step 5 (global_step) is already epoch=0-step=5.ckpt" in said["copy-step=5.pth"]
    assert "another architecture than epoch=0-step=5.ckpt (dpt_features 16 -> 24)" in (
        said["wide-step=6.pth"])
    assert folder.poll() == ([], [])  # each said once

    put(cut, good, OLD + 10)  # the copy finished after all: read again, accepted
    assert folder.poll() == ([StepCheckpoint(3, cut, "global_step")], [])


def test_other_architecture_without_settings_is_told_by_shapes(tmp_path, states):
    """Widths no released file has, saved without settings (loadable with --config): no
    architecture can be named, so the folder compares tensor shapes."""
    state, other = states
    put(tmp_path / "step=1.pth", lightning_bytes(state, None))
    put(tmp_path / "step=2.pth", lightning_bytes(other, None), OLD + 1)
    put(tmp_path / "fresh-step=3.pth", lightning_bytes(state, None), time.time() + 60)
    folder = CheckpointFolder(tmp_path, settle_s=0.5)
    new, notes = folder.poll()
    assert new == [StepCheckpoint(1, tmp_path / "step=1.pth", "file name")]
    assert folder.architecture is None and folder.pending == [tmp_path / "fresh-step=3.pth"]
    assert len(notes) == 1 and notes[0].startswith("step=2.pth: skipped, another architecture "
                                                   "than step=1.pth: ")
    assert "tensors differ" in notes[0]


def test_last_ckpt_alone_is_a_step_and_its_rewrite_the_next(tmp_path, states):
    """save_top_k=0 with save_last: last.ckpt is the only file, rewritten at every save."""
    state, _ = states
    last = put(tmp_path / "checkpoints" / "last.ckpt", lightning_bytes(state, 7))
    folder = CheckpointFolder(tmp_path, settle_s=0.5)
    assert folder.poll() == ([StepCheckpoint(7, last, "global_step")], [])
    put(last, lightning_bytes(state, 9), OLD + 60)
    assert folder.poll() == ([StepCheckpoint(9, last, "global_step")], [])
    assert [s.step for s in folder.all_steps()] == [7, 9]
    plain = put(tmp_path / "last.pth", lightning_bytes(state, None))  # no step of its own
    new, notes = folder.poll()
    assert new == [] and len(notes) == 1 and notes[0].startswith(f"{plain.name}: skipped")
