"""What an evaluation keeps on disk while it runs: one record per scene, and the run's identity.

Layout of the output folder ``D``::

    D/run.json               what produced the records (checkpoint, config contents, target
                             views, DepthSplat checkout and its state; the index, for information)
    D/scenes/<id>.json       one record per evaluated scene (ok or failed), written by the rank
                             that ran it; <id> is a hash of the key (keys are untrusted text)
    D/scenes.csv, D/summary.json, D/report.html    merged by rank 0 at the end
    D/previous-run/          what ``--force`` with other inputs moved aside (the run before);
                             :mod:`dsviewer.viewer.evaluation.folder` claims and sets aside

Every file is written atomically (:func:`dsviewer.io.atomic.atomic_write`): a record exists
completely or not at all, so an interrupted run resumes from the records it finds. A record
holds the thumbnails as base64 PNG (about 4 kB each), so a scene is one file. Each record names
the run that made it (:func:`run_hash` of ``run.json``), the frames it used and the source it
read (chunk file with its size and modification time, capture folder or synthetic spec), so a
record of another run, of other frames or of other data is never taken for a result of this one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.io.atomic import atomic_write
from dsviewer.io.text_formats import parse_json
from dsviewer.viewer.evaluation.columns import METRIC_NAMES, STATUS_FAILED, STATUS_OK

if TYPE_CHECKING:
    from dsviewer.viewer.session.specs import RunSpec

RUN_FILE = "run.json"
RECORDS_DIR = "scenes"
OUTPUT_FILES = ("scenes.csv", "summary.json", "report.html")
INFORMATION_ONLY = ("index", "index_sha256")
"""run.json fields outside the run's hash: each record stores its frames, so an edited index
redoes only the entries whose frames changed."""
THUMBNAIL_WIDTH = 80  # pixels; the height follows the image's aspect ratio
THUMBNAIL_COLORS = 64  # a palette PNG: about 3 kB per thumbnail instead of 5-15 kB in RGB


@dataclass
class SceneRecord:
    key: str
    status: str  # ok or failed (missing scenes are never run, so never recorded)
    reason: str = ""  # why it failed
    views: int | None = None
    targets: int | None = None
    seconds: float | None = None  # the time spent on the scene: the sum of its stages
    metrics: dict[str, float | None] = field(default_factory=dict)
    thumbnails: dict[str, str] = field(default_factory=dict)  # name -> base64 PNG
    run: str = ""  # run_hash of the run.json it was made under
    context: list[int] | None = None  # the frames asked for (evaluation index), None: default
    target: list[int] | None = None
    source: dict | None = None  # where the scene was read (plan.scene_source)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage_timer.STAGES


def record_path(out: Path, key: str) -> Path:
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return Path(out) / RECORDS_DIR / f"{digest}.json"


def png_base64(image: np.ndarray, width: int = THUMBNAIL_WIDTH) -> str:
    """``[H, W, 3]`` uint8 -> a palette PNG of the given width (area-averaged), base64 text."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image))
    height = max(1, round(picture.height * width / picture.width))
    picture = picture.resize((width, height), Image.Resampling.BOX)
    # Octree: 0.6 ms a thumbnail where median cut takes 3-5 ms, with as good a palette for
    # colour-mapped depth.
    picture = picture.quantize(THUMBNAIL_COLORS, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(json.dumps(data, indent=1, allow_nan=False).encode("utf-8"))


def write_record(out: Path, record: SceneRecord) -> None:
    write_json(record_path(out, record.key), asdict(record))


def frames_of(context, target) -> tuple[list[int] | None, list[int] | None]:
    """Frames as a record stores them (lists; None: the loader's default choice)."""
    return (None if context is None else list(context), None if target is None else list(target))


def _valid(data: object, key: str | None, run: str) -> SceneRecord | None:
    if not isinstance(data, dict):
        return None
    try:
        record = SceneRecord(**data)
    except TypeError:
        return None
    if (not isinstance(record.key, str) or (key is not None and record.key != key)
            or record.run != run or record.status not in (STATUS_OK, STATUS_FAILED)
            or not isinstance(record.metrics, dict) or not isinstance(record.thumbnails, dict)
            or not isinstance(record.stages, dict)
            or not isinstance(record.source, (dict, type(None)))):
        return None  # fmt: skip
    record.metrics = {name: record.metrics.get(name) for name in METRIC_NAMES}
    return record


def read_record(out: Path, key: str, run: str) -> SceneRecord | None:
    """The scene's record made under the run ``run`` (a :func:`run_hash`), or None if there is
    none, it belongs to another run, or it cannot be read (then the scene is redone)."""
    try:
        data = parse_json(record_path(out, key).read_bytes())
    except (OSError, ValueError):
        return None
    return _valid(data, key, run)


def read_run_records(out: Path, run: str) -> dict[str, SceneRecord]:
    """Every valid record of the run ``run`` in ``out``, by key (one pass over the folder)."""
    records: dict[str, SceneRecord] = {}
    folder = Path(out) / RECORDS_DIR
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    for path in paths:
        try:
            record = _valid(parse_json(path.read_bytes()), None, run)
        except (OSError, ValueError):
            continue
        if record is not None and record_path(out, record.key).name == path.name:
            records[record.key] = record
    return records


def measured(record: SceneRecord, context, target, source: dict | None) -> bool:
    """Whether ``record`` measured these frames of this source (the run is checked on reading)."""
    return (record.context, record.target) == frames_of(context, target) and (
        record.source == source)


def is_done(out: Path, key: str, run: str, context=None, target=None,
            source: dict | None = None) -> bool:  # fmt: skip
    """A scene is done when it has an ``ok`` record of this run made with these frames from
    this source; failed ones are tried again on a rerun."""
    record = read_record(out, key, run)
    return (record is not None and record.status == STATUS_OK
            and measured(record, context, target, source))  # fmt: skip


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkout_state(repo: Path) -> dict:
    """A DepthSplat checkout's code as a fingerprint: its git commit and a hash of ``git diff
    HEAD`` (uncommitted edits); outside git, a hash of its ``.py`` files' paths, sizes and
    modification times."""
    def git(*arguments: str) -> str | None:
        try:
            result = subprocess.run(["git", *arguments], cwd=repo, capture_output=True,
                                    timeout=30, check=False)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.decode("utf-8", "replace") if result.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if head is not None:
        diff = git("diff", "HEAD") or ""
        return {"git_head": head.strip(),
                "git_diff_sha256": hashlib.sha256(diff.encode("utf-8")).hexdigest()}
    digest = hashlib.sha256()
    for path in sorted(Path(repo).rglob("*.py")):
        status = path.stat()
        digest.update(f"{path.relative_to(repo)}:{status.st_size}:{status.st_mtime_ns}\n"
                      .encode("utf-8", "surrogatepass"))  # fmt: skip
    return {"python_files_sha256": digest.hexdigest()}


def run_identity(ckpt: Path, index: Path | None, config: Path | None,
                 max_target_views: int | None, depthsplat_repo: Path | None = None,
                 run: RunSpec | None = None, sfm_max_error: float | None = None) -> dict:
    """What makes two evaluations' records comparable: the checkpoint (path, size, time), the
    config's contents, --max-target-views, the DepthSplat checkout with its code state, the
    run's --views, --near and --far, and --sfm-max-error when it is not the default (each only
    when given, so that runs without them keep the identity they had before those flags
    existed; a record stores its own frames). The
    index (path and contents) is recorded for information (:data:`INFORMATION_ONLY`); data
    roots may change between runs, as each record names the data it read."""
    ckpt = Path(ckpt).resolve()
    stat = ckpt.stat()
    return {
        "checkpoint": str(ckpt),
        "checkpoint_bytes": stat.st_size,
        "checkpoint_mtime_ns": stat.st_mtime_ns,
        "config": None if config is None else str(Path(config).resolve()),
        "config_sha256": None if config is None else file_sha256(Path(config)),
        "index": None if index is None else str(Path(index).resolve()),
        "index_sha256": None if index is None else file_sha256(Path(index)),
        "max_target_views": max_target_views,
        "depthsplat_repo": (None if depthsplat_repo is None
                            else str(Path(depthsplat_repo).resolve())),
        "depthsplat_repo_state": (None if depthsplat_repo is None
                                  else checkout_state(Path(depthsplat_repo))),
        **run_planes_and_views(run),
        **({} if sfm_max_error is None else {"sfm_max_error": sfm_max_error}),
    }  # fmt: skip


def run_planes_and_views(run: RunSpec | None) -> dict:
    """``views``, ``near``, ``far`` (the user's units) as given to the run; absent when not."""
    if run is None:
        return {}
    given = {"views": run.views, "near": run.near, "far": run.far}
    return {name: value for name, value in given.items() if value is not None}


def identity_fields(identity: dict) -> dict:
    """The fields of ``identity`` that make the run (all but :data:`INFORMATION_ONLY`)."""
    return {name: value for name, value in identity.items() if name not in INFORMATION_ONLY}


def run_hash(identity: dict) -> str:
    """A short fingerprint of ``identity`` (its :func:`identity_fields`) that every record of
    the run carries."""
    text = json.dumps(identity_fields(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
