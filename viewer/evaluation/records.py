"""What an evaluation keeps on disk while it runs: one record per scene, and the run's identity.

Layout of the output folder ``D``::

    D/run.json               what produced the records (checkpoint, index, target views)
    D/scenes/<id>.json       one record per evaluated scene (ok or failed), written by the rank
                             that ran it; <id> is a hash of the key (keys are untrusted text)
    D/scenes.csv, D/summary.json, D/report.html    merged by rank 0 at the end

Every file is written atomically (:func:`src.io.atomic.atomic_write`): a record exists
completely or not at all, so an interrupted run resumes from the records it finds. A record
holds the thumbnails as base64 PNG (about 4 kB each), so a scene is one file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from src.io.atomic import atomic_write
from viewer.evaluation.columns import METRIC_NAMES, STATUS_FAILED, STATUS_OK

RUN_FILE = "run.json"
RECORDS_DIR = "scenes"
THUMBNAIL_WIDTH = 80  # pixels; the height follows the image's aspect ratio
THUMBNAIL_COLORS = 64  # a palette PNG: about 3 kB per thumbnail instead of 5-15 kB in RGB


@dataclass
class SceneRecord:
    key: str
    status: str  # ok or failed (missing scenes are never run, so never recorded)
    reason: str = ""  # why it failed
    views: int | None = None
    targets: int | None = None
    seconds: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    thumbnails: dict[str, str] = field(default_factory=dict)  # name -> base64 PNG


class RunMismatchError(ValueError):
    def __init__(self, out: Path, differences: list[str]) -> None:
        super().__init__(
            f"{out} holds the results of another evaluation ({'; '.join(differences)}), so "
            "resuming would mix them. Choose another --out, or pass --force to evaluate every "
            "scene again in this folder."
        )


def record_path(out: Path, key: str) -> Path:
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return Path(out) / RECORDS_DIR / f"{digest}.json"


def png_base64(image: np.ndarray, width: int = THUMBNAIL_WIDTH) -> str:
    """``[H, W, 3]`` uint8 -> a palette PNG of the given width (area-averaged), base64 text."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image))
    height = max(1, round(picture.height * width / picture.width))
    picture = picture.resize((width, height), Image.Resampling.BOX)
    picture = picture.quantize(THUMBNAIL_COLORS, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(json.dumps(data, indent=1, allow_nan=False).encode("utf-8"))


def write_record(out: Path, record: SceneRecord) -> None:
    write_json(record_path(out, record.key), asdict(record))


def read_record(out: Path, key: str) -> SceneRecord | None:
    """The scene's record, or None if there is none (or it cannot be read: it is redone)."""
    path = record_path(out, key)
    try:
        data = json.loads(path.read_text("utf-8"))
        record = SceneRecord(**data)
    except (OSError, ValueError, TypeError):
        return None
    if record.key != key or record.status not in (STATUS_OK, STATUS_FAILED):
        return None
    record.metrics = {name: record.metrics.get(name) for name in METRIC_NAMES}
    return record


def is_done(out: Path, key: str) -> bool:
    """A scene with an ``ok`` record is done; failed ones are tried again on a rerun."""
    record = read_record(out, key)
    return record is not None and record.status == STATUS_OK


def run_identity(ckpt: Path, index: Path | None, config: Path | None,
                 max_target_views: int | None) -> dict:
    """What makes two evaluations' records comparable (data roots may change: more keys)."""
    ckpt = Path(ckpt).resolve()
    stat = ckpt.stat()
    return {
        "checkpoint": str(ckpt),
        "checkpoint_bytes": stat.st_size,
        "checkpoint_mtime_ns": stat.st_mtime_ns,
        "config": None if config is None else str(Path(config).resolve()),
        "index": None if index is None else str(Path(index).resolve()),
        "max_target_views": max_target_views,
    }  # fmt: skip


def claim_folder(out: Path, identity: dict, force: bool) -> None:
    """Check ``out``'s ``run.json`` against ``identity`` (unless ``force``), then write it."""
    path = Path(out) / RUN_FILE
    if path.is_file() and not force:
        try:
            previous = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            previous = {}
        if not isinstance(previous, dict):
            previous = {}
        differences = [
            f"{name} was {previous.get(name)!r}, now {value!r}"
            for name, value in identity.items()
            if previous.get(name) != value
        ]
        if differences:
            raise RunMismatchError(Path(out), differences)
    write_json(path, identity)
