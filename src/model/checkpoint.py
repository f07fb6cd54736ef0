"""Build the model a checkpoint file describes: check it from shapes first, then load strictly.

Order, so that no file can make us allocate more than its own tensors: the architecture is
bounded (:class:`DepthSplatConfig` refuses absurd sizes), the widths it sets are compared with
the file's shapes, then every key and shape with a meta-device build; only a file that fits
exactly is built for real and loaded with ``strict=True``.

Which architecture: :func:`file_architecture`, the one definition of a file's own
architecture (the ``config`` argument, else the one embedded by :func:`save_checkpoint`, else
the one read off the shapes: released widths). Released files carry no settings, and two of them
differ from the shape-inferred architecture in ``gaussian_scale_max``: the layer above,
``dsviewer.backends.presets.resolve_settings``, puts their presets before the shapes and uses
:func:`file_architecture` for the rest. The steps, one verb each: ``read_checkpoint`` (the
file), ``file_architecture`` / ``resolve_settings`` (the settings), ``build_model`` (the model).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .architecture import (
    closest_architecture,
    expected_shapes,
    implied_shape_problems,
    infer_config,
    mismatch_report,
    shapes_of,
    skipped_weight_init,
)
from .checkpoint_file import (
    DEPTH_PREFIX,
    CheckpointError,
    CheckpointNotFoundError,
    RawCheckpoint,
    read_checkpoint,
    save_checkpoint,
)
from .config import ConfigError, DepthSplatConfig
from .depthsplat import DepthSplat

log = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "DepthSplat",
    "build_model",
    "config_from_shapes",
    "file_architecture",
    "load_model",
    "nonfinite_warning",
    "read_checkpoint",
    "save_checkpoint",
]

def config_from_shapes(raw: RawCheckpoint, path: Path) -> DepthSplatConfig:
    """The released architecture the file's shapes show, or an error saying what it is not."""
    shapes = shapes_of(raw.state_dict)
    if not any(k.startswith(DEPTH_PREFIX) for k in shapes):
        name, share = closest_architecture(set(shapes))
        raise CheckpointError(
            f"{path} ({raw.layout}, {len(shapes)} tensors) is not a DepthSplat checkpoint: "
            f"none of its keys belongs to a depth predictor (closest architecture: {name}, "
            f"{share:.0%} key overlap; first keys: {list(shapes)[:5]}). Pass a released "
            "DepthSplat checkpoint or a file written by save_checkpoint."
        )
    try:
        return infer_config(shapes)
    except CheckpointError as error:
        name, share = closest_architecture(set(shapes))
        raise CheckpointError(
            f"{path} ({raw.layout}) is not a DepthSplat checkpoint: {error} (closest "
            f"architecture: {name}, {share:.0%} key overlap)."
        ) from error


def file_architecture(raw: RawCheckpoint, path: Path, config: DepthSplatConfig | None = None
                      ) -> tuple[DepthSplatConfig, str]:  # fmt: skip
    """(the architecture, where it came from): ``config`` if given, else the one embedded in
    the file, else the one its tensor shapes show."""
    if config is not None:
        return config, "given config"
    if raw.embedded is not None:
        return raw.embedded.architecture, "architecture embedded in the file"
    return config_from_shapes(raw, path), "architecture read off the shapes"


def build_model(raw: RawCheckpoint, config: DepthSplatConfig, path: Path, origin: str
                ) -> DepthSplat:
    """The model of ``config`` with the file's weights, on the CPU in eval mode.

    Args:
        origin: where ``config`` came from, for messages (``given config``, ``preset ...``).

    Raises:
        CheckpointError: the tensors do not fit ``config``; nothing was allocated for it.
    """
    shapes = shapes_of(raw.state_dict)
    problems = implied_shape_problems(config, shapes)
    if problems:
        raise CheckpointError(
            f"{path} ({raw.layout}) contradicts the {origin}: {'; '.join(problems[:4])}. "
            "Nothing was built. Pass the matching config (configs/checkpoints/*.yaml), or save "
            "the model again with save_checkpoint."
        )
    try:
        expected = expected_shapes(config)
    except ConfigError as error:
        raise CheckpointError(
            f"{path}: the architecture ({origin}) is invalid: {error}. Pass the matching config "
            "(configs/checkpoints/*.yaml), or save the model again with save_checkpoint."
        ) from None
    report = mismatch_report(shapes, expected)
    if report:
        name, share = closest_architecture(set(shapes))
        raise CheckpointError(
            f"{path} ({raw.layout}) does not fit the {config.architecture} architecture "
            f"({origin}): {report}. Closest architecture by key names: {name} ({share:.0%} "
            "overlap). Pass the matching config (configs/checkpoints/*.yaml) or check that the "
            "file is a DepthSplat checkpoint."
        )
    with skipped_weight_init():
        model = DepthSplat(config)
    model.load_state_dict(raw.state_dict, strict=True)
    return model.eval()


def nonfinite_warning(model: torch.nn.Module, path: Path) -> str | None:
    """A sentence naming the tensors that hold NaN or inf values, or None when all are finite."""
    bad = {}
    for key, tensor in model.state_dict().items():
        # NaN and inf survive a sum, which is 100x cheaper than testing every value; a sum
        # that merely overflowed is cleared by the exact count.
        if tensor.is_floating_point() and not torch.isfinite(tensor.sum()):
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad[key] = count
    if not bad:
        return None
    total = len(model.state_dict())
    examples = ", ".join(f"{k} ({n} values)" for k, n in list(bad.items())[:3])
    return (
        f"{path.name}: {len(bad)} of {total} weight tensors hold NaN or inf values, e.g. "
        f"{examples}. Predictions may be NaN; the file is probably damaged or from a diverged "
        "training run."
    )


def load_model(
    path: str | Path,
    device: torch.device | str = "cpu",
    config: DepthSplatConfig | None = None,
) -> DepthSplat:
    """Build the model a checkpoint file describes and load its weights strictly (eval mode).

    Args:
        path: ``.pth`` / ``.ckpt`` / ``.safetensors`` file.
        device: where the model goes.
        config: the architecture; by default the file's embedded one, else read off the shapes.

    Raises:
        CheckpointError: (a ``ValueError``) the file is missing, unreadable or does not fit.
    """
    path = Path(path)
    raw = read_checkpoint(path)
    architecture, origin = file_architecture(raw, path, config)
    model = build_model(raw, architecture, path, origin)
    warning = nonfinite_warning(model, path)
    if warning:
        log.warning(warning)
    return model.to(device)
