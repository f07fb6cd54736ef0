"""A user's own DepthSplat checkout (``--depthsplat-repo``) as a ``ModelBackend``.

The checkout's encoder code runs on its checkpoint in a worker process
(:mod:`dsviewer.backends.extension_worker`): its package is called ``src``, like many other
research codes', and its imports stay out of dsviewer's process. What comes back is read through
the ``visualization_dump`` contract:

====================  ===============  ========================================================
key                   shape            meaning
====================  ===============  ========================================================
``coarse_mv_depth``   [B, V, H, W]     required. INVERSE depth: cost-volume soft-argmax, upsampled
``mono_depth``        [B, V, H, W]     required. INVERSE-depth residual of the DPT upsampler
``match_probs``       [B, V, D, h, w]  optional. last-scale softmax over the depth candidates
``match_prob``        [B, V, h, w]     optional. its maximum over D
``depth_candidates``  [B, V, D, h, w]  optional. last-scale inverse-depth candidates
====================  ===============  ========================================================

The official code writes none of them (only ``depth``, ``scales`` and ``rotations``);
``dsviewer patch-depthsplat`` adds them (see :mod:`dsviewer.backends.depthsplat_patch`). Without the
optional keys the backend degrades and says so in ``warnings``: ``match_probs`` is then taken from
the depth predictor's own returned ``match_probs`` where it has them, ``match_prob`` is their
maximum, and missing candidates are NaN (the pixel inspector shows probabilities only).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dsviewer.backends import extension_worker as protocol
from dsviewer.backends.depthsplat_patch import (
    ENCODER_FILE,
    MATCHER_FILE,
    exposes_maps,
    exposure_instructions,
)
from dsviewer.errors import SetupError

if TYPE_CHECKING:
    from typing_extensions import Self

    from dsviewer.dataset.types import ViewSet
    from dsviewer.model.config import DepthSplatConfig
    from dsviewer.model.types import Prediction

WORKER_SCRIPT = Path(protocol.__file__).resolve()
CONFIG_FILE = Path("config/model/encoder/depthsplat.yaml")
HUB_CACHE_HINT = (
    "python -c \"import torch; torch.hub.load('facebookresearch/dinov2', 'dinov2_vits14', "
    "pretrained=False)\""
)


class DepthSplatRepoError(SetupError):
    """The checkout, its environment or its checkpoint cannot run; the message says what to do."""


def encoder_overrides(config: DepthSplatConfig) -> dict[str, Any]:
    """The checkout's ``model.encoder`` settings that select ``config``'s architecture."""
    return {
        "monodepth_vit_type": config.vit_type,
        "num_scales": config.num_scales,
        "upsample_factor": config.upsample_factor,
        "lowest_feature_resolution": config.lowest_feature_resolution,
        "train_depth_only": config.depth_only,
        "gaussian_adapter.gaussian_scale_min": config.gaussian_scale_min,
        "gaussian_adapter.gaussian_scale_max": config.gaussian_scale_max,
        "gaussian_adapter.sh_degree": config.sh_degree,
        "gaussian_regressor_channels": config.gaussian_regressor_channels,
        "local_mv_match": config.local_mv_match,
        "return_depth": True,  # the final depth comes back with the Gaussians
    }


def check_checkout(repo: Path) -> None:
    """Raise :class:`DepthSplatRepoError` unless ``repo`` is a checkout with the exposure."""
    needed = (ENCODER_FILE, MATCHER_FILE, CONFIG_FILE)
    missing = [p.as_posix() for p in needed if not (repo / p).is_file()]
    if missing:
        raise DepthSplatRepoError(
            f"--depthsplat-repo {repo} is not a DepthSplat checkout: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing. Pass the root folder of your clone "
            "of github.com/cvg/depthsplat (or of your fork), the folder that holds src/ and "
            "config/."
        )
    if not exposes_maps(repo):
        raise DepthSplatRepoError(exposure_instructions(repo))


def _run_name(checkpoint: Path, repo: Path) -> str:
    return f"{checkpoint.stem}-{re.sub(r'[^A-Za-z0-9._-]+', '_', repo.name) or 'depthsplat'}"


class _Worker:
    """The worker process and its pipes; one request at a time."""

    def __init__(self, repo: Path, python: str):
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        self.process = subprocess.Popen(
            [python, "-u", str(WORKER_SCRIPT), str(repo)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=repo,  # as the official scripts run: relative paths start at the checkout
        )
        self.lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop, self.process, self.stderr)

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            try:
                protocol.write_message(self.process.stdin, request)
                answer = protocol.read_message(self.process.stdout)
            except (BrokenPipeError, OSError, ValueError):
                answer = None
        if answer is None:
            code = self.process.wait(timeout=30)
            raise DepthSplatRepoError(
                f"The DepthSplat worker process ended unexpectedly (exit code {code}). Its last "
                f"output:\n{self.stderr_tail()}"
            )
        return answer

    def stderr_tail(self, lines: int = 15) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:]) or "(nothing)"

    def close(self) -> None:
        self._finalizer()


def _stop(process: subprocess.Popen, stderr) -> None:
    if process.poll() is None:
        try:
            protocol.write_message(process.stdin, {"op": "close"})
            process.wait(timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout, stderr):
        stream.close()


class ExtensionBackend:
    """A DepthSplat checkout's own encoder on ``checkpoint``, run in a worker process.

    Args:
        checkpoint: the checkpoint file (read by the worker with ``weights_only=True``).
        repo: root of the checkout (holds ``src/`` and ``config/``).
        device: ``cpu`` or ``cuda``, already resolved.
        config: a preset name or YAML for the architecture and the preprocessing; by default
            chosen as for the built-in model (embedded, preset named after the file, inferred).
        python: the interpreter for the worker; this one by default.
    """

    def __init__(
        self,
        checkpoint: Path,
        *,
        repo: Path,
        device: str,
        config: str | Path | None = None,
        python: str = sys.executable,
    ):
        from dsviewer.backends.presets import resolve_settings
        from dsviewer.model import CheckpointError
        from dsviewer.model.checkpoint_file import read_checkpoint

        start = time.perf_counter()
        self.checkpoint = Path(checkpoint)
        self.repo = Path(repo).resolve()
        self.device = device
        self.name = _run_name(self.checkpoint, self.repo)
        check_checkout(self.repo)
        # the settings as the built-in model chooses them (the one resolution, presets.py)
        settings, self.warnings = resolve_settings(read_checkpoint(self.checkpoint),
                                                   self.checkpoint, config)  # fmt: skip
        model_config, self.preprocess = settings.architecture, settings.preprocess
        if not model_config.is_released_width:
            raise CheckpointError(
                f"{self.checkpoint} has reduced widths ({model_config.architecture}); only the "
                "released widths exist in DepthSplat's code. Open it without --depthsplat-repo."
            )
        self.config = model_config
        self._worker = _Worker(self.repo, python)
        experiment = "dl3dv" if self.preprocess.dataset == "dl3dv" else "re10k"
        answer = self._worker.call({
            "op": "load",
            "checkpoint": str(self.checkpoint.resolve()),
            "device": device,
            "experiment": experiment,
            "overrides": encoder_overrides(model_config),
            "threads": torch.get_num_threads(),  # the worker computes as this process would
        })  # fmt: skip
        if not answer["ok"]:
            error = self._explain(answer)
            self.close()
            raise error
        self.encoder_file = Path(answer["encoder_file"])
        self.load_seconds = time.perf_counter() - start

    def predict(self, context: ViewSet) -> Prediction:
        from dsviewer.model.predict import prediction_from_outputs
        from dsviewer.model.types import Gaussians

        answer = self._worker.call({"op": "predict", "context": context.as_batch("cpu")})
        if not answer["ok"]:
            raise self._explain(answer)
        # Wall and CPU seconds of the encoder call alone, as measured in the worker.
        self.forward_seconds = float(answer["seconds"])
        self.forward_cpu_seconds = float(answer["cpu_seconds"])
        dump = self._complete_dump(answer["dump"], answer["returned_match_probs"], context)
        gaussians = None
        if answer["gaussians"] is not None:
            g = answer["gaussians"]
            gaussians = Gaussians(
                means=g["means"],
                covariances=g["covariances"],
                harmonics=g["harmonics"],
                opacities=g["opacities"],
                scales=g["scales"],
                rotations_xyzw=g["rotations"],
            )
        return prediction_from_outputs(
            answer["depth"], dump, gaussians, context.near.float(), context.far.float()
        )

    def _complete_dump(
        self, dump: dict[str, torch.Tensor], returned: torch.Tensor | None, context: ViewSet
    ) -> dict[str, torch.Tensor]:
        """The contract's optional keys filled in where the checkout left them out."""
        missing = [k for k in ("coarse_mv_depth", "mono_depth") if k not in dump]
        if missing:
            raise DepthSplatRepoError(
                f"The encoder of {self.repo} ran but left {' and '.join(missing)} out of "
                "visualization_dump (the code names them, but this forward pass did not write "
                "them). " + exposure_instructions(self.repo)
            )
        if "match_probs" not in dump and returned is not None:
            dump["match_probs"] = returned.unflatten(0, (1, context.num_views))
            self._warn("match_probs came from the depth predictor's returned dict, not from "
                       "visualization_dump")  # fmt: skip
        if "match_probs" not in dump:
            b, v, h, w = dump["coarse_mv_depth"].shape
            dump["match_probs"] = torch.full((b, v, 1, h, w), float("nan"))
            self._warn("no matching probabilities: confidence colours and the cost-volume "
                       "statistics are empty (NaN)")  # fmt: skip
        if "match_prob" not in dump:
            dump["match_prob"] = dump["match_probs"].max(dim=2).values
        if "depth_candidates" not in dump:
            dump["depth_candidates"] = torch.full_like(dump["match_probs"], float("nan"))
            self._warn("no depth_candidates in visualization_dump: the pixel inspector shows "
                       "probabilities without their depths (run dsviewer "
                       "patch-depthsplat)")  # fmt: skip
        return dump

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def _explain(self, answer: dict[str, Any]) -> DepthSplatRepoError:
        kind, message = answer["kind"], answer["message"]
        if kind == "module":
            return DepthSplatRepoError(
                f"The DepthSplat code in {self.repo} imports the module {message!r}, which the "
                f"Python running dsviewer ({sys.executable}) cannot import. Install the "
                f"checkout's requirements into this environment (pip install -r "
                f"{self.repo / 'requirements.txt'}), see docs/backends.md for the list."
            )
        if kind == "hub":
            return DepthSplatRepoError(
                "The DepthSplat code builds DINOv2 through torch.hub, which found neither the "
                f"network nor a cached copy ({message}). Run once with network access: "
                f"{HUB_CACHE_HINT} (or copy a facebookresearch_dinov2_main folder into "
                "$TORCH_HOME/hub, by default ~/.cache/torch/hub); no pretrained weights are needed."
            )
        if kind == "checkpoint":
            return DepthSplatRepoError(
                f"{self.checkpoint} does not fit the encoder that {self.repo} builds for "
                f"{self.config.architecture} ({message}). Pass --config with the preset that "
                "matches the checkpoint (configs/checkpoints/*.yaml)."
            )
        if kind == "config":
            return DepthSplatRepoError(
                f"{self.repo / CONFIG_FILE} does not configure the encoder completely: {message}."
            )
        return DepthSplatRepoError(
            f"The DepthSplat code in {self.repo} failed ({kind}):\n{message}\nWorker output:\n"
            f"{self._worker.stderr_tail()}"
        )

    def close(self) -> None:
        """Stop the worker process (also done when the backend is garbage-collected)."""
        self._worker.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
