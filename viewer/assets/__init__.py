"""Files shipped inside the package: the demo model and demo scenes behind ``dsviewer --demo``.

``demo/`` holds a small DepthSplat (the released architecture at toy widths, trained by
``scripts/train_demo.py`` on ray-cast synthetic scenes), three synthetic scenes with exact GT
depth as a chunk plus ``index.json``, and ``demo.json`` (how they were made, held-out metrics).
The preprocessing the model expects is embedded in the checkpoint. Everything here works
offline on a fresh install.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsviewer.errors import SetupError

if TYPE_CHECKING:
    from dsviewer.dataset.preprocess import PreprocessSettings

DEMO_DIR = Path(__file__).resolve().parent / "demo"
CHECKPOINT_NAME = "depthsplat-demo-tiny.pth"
SCENES_DIR_NAME = "scenes"
INFO_NAME = "demo.json"


class DemoAssetsMissingError(SetupError, FileNotFoundError):
    """A demo file is not where the package should have put it."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"The bundled demo file {path} is missing, so this installation of dsviewer is "
            "incomplete. Reinstall the package (`pip install --force-reinstall dsviewer`, or "
            "`pip install -e .` in a checkout), or run `python scripts/train_demo.py` and "
            "`python scripts/train_demo.py ship` to rebuild the demo files."
        )


def _existing(path: Path) -> Path:
    if not path.exists():
        raise DemoAssetsMissingError(path)
    return path


def demo_checkpoint() -> Path:
    """The demo model, loadable with ``dsviewer.model.load_model`` (config embedded, fp16
    weights)."""
    return _existing(DEMO_DIR / CHECKPOINT_NAME)


def demo_data_root() -> Path:
    """The dataset root of the demo scenes (a chunk and ``index.json``), for ``data_roots``."""
    return _existing(DEMO_DIR / SCENES_DIR_NAME)


def demo_scene_keys() -> list[str]:
    """Keys of the demo scenes, sorted (``load_scene(key, data_roots=[demo_data_root()])``)."""
    index = json.loads(_existing(demo_data_root() / "index.json").read_text())
    return sorted(index)


def is_demo_checkpoint(path: Path) -> bool:
    """Whether ``path`` is the bundled demo model."""
    try:
        return Path(path).resolve() == (DEMO_DIR / CHECKPOINT_NAME).resolve()
    except OSError:
        return False


def demo_description() -> str:
    """Markdown for the viewer: what the demo model is (a toy, not a released checkpoint)."""
    info = demo_info()
    millions = info["parameters"] / 1e6
    return (
        f"**Model: the bundled demo.** A toy DepthSplat ({millions:.1f} M parameters, the "
        "released architecture at small widths) trained on this project's synthetic rooms. It is "
        "not a released checkpoint: expect blurred depth edges. Pass `--ckpt` for a real model."
    )


@cache
def demo_info() -> dict[str, Any]:
    """``demo.json``: provenance (data, training) and held-out metrics."""
    return json.loads(_existing(DEMO_DIR / INFO_NAME).read_text())


@cache
def demo_preprocess_settings() -> PreprocessSettings:
    """What the demo model expects of its input views: the settings its checkpoint embeds."""
    from dsviewer.backends.presets import checkpoint_settings

    return checkpoint_settings(demo_checkpoint()).preprocess


__all__ = [
    "DEMO_DIR",
    "DemoAssetsMissingError",
    "demo_checkpoint",
    "demo_data_root",
    "demo_description",
    "demo_info",
    "demo_preprocess_settings",
    "demo_scene_keys",
    "is_demo_checkpoint",
]
