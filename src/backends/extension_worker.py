"""Worker process that runs a user's DepthSplat checkout; started by
:mod:`dsviewer.backends.extension`.

Run as a script (``python extension_worker.py REPO``), never imported inside the worker: the
checkout's package is called ``src``, like those of MVSplat, pixelSplat and many other research
codes, so this file imports only the standard library, torch, PyYAML and (for ``.safetensors``)
safetensors, and binds the name ``src`` to the checkout before any other ``src`` can. The parent
imports this module only for the message framing.

Protocol: length-prefixed messages both ways, each ``torch.save`` of a dict of plain values and
tensors, read with ``torch.load(weights_only=True)``. Requests are ``{"op": "load", ...}``,
``{"op": "predict", "context": {...}}`` and ``{"op": "close"}``; every answer has ``ok``, and
failures carry ``kind`` and ``message``. The checkout's own prints go to stderr, so stdout
carries nothing but answers.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import io
import os
import re
import struct
import sys
import time
import traceback
import typing
from pathlib import Path
from typing import Any, BinaryIO

import torch

HEADER = struct.Struct("<Q")
MAX_MESSAGE_BYTES = 1 << 36  # 64 GiB: far above any prediction, catches a corrupt header
CONTRACT_KEYS = ("coarse_mv_depth", "mono_depth", "match_probs", "match_prob", "depth_candidates")
GAUSSIAN_FIELDS = ("means", "covariances", "harmonics", "opacities")


# --- framing (also used by the parent) ----------------------------------------------------------


def write_message(stream: BinaryIO, message: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    payload = buffer.getvalue()
    stream.write(HEADER.pack(len(payload)) + payload)
    stream.flush()


def read_message(stream: BinaryIO) -> dict[str, Any] | None:
    """The next message, or None when the other side closed the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"message header announces {size} bytes; the stream is corrupt")
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


# --- isolation ----------------------------------------------------------------------------------


def bind_checkout_package(repo: Path) -> None:
    """Make ``import src`` (and every ``src.*``) resolve inside ``repo`` only.

    The official ``src`` has no ``__init__.py`` (a namespace package), and a regular package of
    the same name anywhere on ``sys.path`` (another research code installed into the same
    environment) would win over it, so the package is registered by hand with ``repo/src`` as
    its only search location. ``sys.path`` keeps every other entry: site-packages is where the
    checkout finds einops, jaxtyping and the rest.
    """
    sys.path[0] = str(repo)  # instead of this script's folder
    standard = (importlib.machinery.PathFinder, importlib.machinery.BuiltinImporter,
                importlib.machinery.FrozenImporter)  # fmt: skip
    for finder in list(sys.meta_path):  # e.g. another project's editable src/
        if finder not in standard and _claims_src(finder):
            sys.meta_path.remove(finder)
    package_dir = repo / "src"
    init = package_dir / "__init__.py"
    if init.is_file():
        spec = importlib.util.spec_from_file_location(
            "src", init, submodule_search_locations=[str(package_dir)]
        )
    else:
        spec = importlib.machinery.ModuleSpec("src", None, is_package=True)
        spec.submodule_search_locations = [str(package_dir)]
    module = importlib.util.module_from_spec(spec)
    sys.modules["src"] = module
    if init.is_file():
        spec.loader.exec_module(module)


def _claims_src(finder: Any) -> bool:
    try:
        return finder.find_spec("src", None) is not None
    except (ImportError, AttributeError, TypeError, ValueError):  # it cannot answer: no claim
        return False


# --- the checkout's encoder configuration -------------------------------------------------------


class _YamlLoader:
    """PyYAML's safe loader with floats such as ``1e-10`` read as numbers, as OmegaConf does."""

    @staticmethod
    def load(text: str) -> Any:
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:float",
            re.compile(r"^[-+]?(\d[\d_]*)?\.?\d*[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$"),
            list("-+0123456789."),
        )
        return yaml.load(text, Loader=Loader)


def _merge(base: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def encoder_settings(repo: Path, experiment: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``model.encoder`` as the checkout's Hydra composition gives it for ``+experiment=NAME``
    and the command-line ``overrides`` (dotted keys below ``model.encoder``)."""
    settings = _YamlLoader.load((repo / "config/model/encoder/depthsplat.yaml").read_text()) or {}
    experiment_file = repo / "config" / "experiment" / f"{experiment}.yaml"
    if experiment_file.is_file():
        global_settings = _YamlLoader.load(experiment_file.read_text()) or {}
        _merge(settings, (global_settings.get("model") or {}).get("encoder") or {})
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = settings
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return settings


def build_dataclass(cls: type, values: dict[str, Any], where: str = "model.encoder") -> Any:
    """``cls`` from a nested dict, nested dataclasses included (extra keys ignored, as dacite)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            if field.default is not dataclasses.MISSING:
                continue
            if field.default_factory is not dataclasses.MISSING:
                continue
            raise KeyError(f"{where}.{field.name}")
        value = values[field.name]
        kind = hints.get(field.name)
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = build_dataclass(kind, value, f"{where}.{field.name}")
        kwargs[field.name] = value
    return cls(**kwargs)


# --- building and running -----------------------------------------------------------------------


class WorkerError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _code_only_hub(original):
    """``torch.hub.load`` that asks for DINOv2's code without its pretrained weights (the
    checkpoint overwrites every tensor) and reports an unreachable hub as one error kind."""

    def load(repo_or_dir, model, *args, **kwargs):
        if "dinov2" in str(repo_or_dir):
            kwargs.setdefault("pretrained", False)
        try:
            return original(repo_or_dir, model, *args, **kwargs)
        except Exception as error:  # offline, no cache, rate limits: all end the same way
            message = f"torch.hub.load({repo_or_dir!r}, {model!r}): {error}"
            raise WorkerError("hub", message) from error

    return load


def read_state(checkpoint: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """The checkpoint's tensors (``encoder.`` stripped) and whether it is a depth-only file."""
    if checkpoint.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_file(str(checkpoint), device="cpu")
    else:
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    depth_only = False
    if isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    elif isinstance(obj.get("model"), dict):  # released depth checkpoints
        obj, depth_only = obj["model"], True
    prefixed = any(str(k).startswith("encoder.") for k in obj)
    state = {
        k.removeprefix("encoder."): v
        for k, v in obj.items()
        if isinstance(v, torch.Tensor) and (not prefixed or k.startswith("encoder."))
    }
    return state, depth_only


class Session:
    def __init__(self, repo: Path):
        self.repo = repo
        self.encoder: torch.nn.Module | None = None
        self.device = "cpu"

    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        torch.set_num_threads(int(request["threads"]))
        try:
            from src.model.encoder.encoder_depthsplat import (  # the checkout's own code
                EncoderDepthSplat,
                EncoderDepthSplatCfg,
            )
        except ModuleNotFoundError as error:
            raise WorkerError("module", str(error.name)) from error
        settings = encoder_settings(self.repo, request["experiment"], request["overrides"])
        try:
            cfg = build_dataclass(EncoderDepthSplatCfg, settings)
        except KeyError as error:
            raise WorkerError("config", f"{error.args[0]} is not set") from error
        original_hub_load = torch.hub.load
        torch.hub.load = _code_only_hub(original_hub_load)
        try:
            encoder = EncoderDepthSplat(cfg)
        finally:
            torch.hub.load = original_hub_load
        state, depth_only = read_state(Path(request["checkpoint"]))
        target = encoder.depth_predictor if depth_only else encoder
        try:
            target.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise WorkerError("checkpoint", str(error).split("\n\t")[0][:2000]) from error
        self.device = request["device"]
        self.encoder = encoder.to(self.device).eval()
        module = sys.modules[EncoderDepthSplat.__module__]
        return {
            "ok": True,
            "encoder_file": str(Path(module.__file__).resolve()),
            "seconds": time.perf_counter() - start,
        }

    def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.encoder is not None, "predict before load"
        context = {k: v.to(self.device) for k, v in request["context"].items()}
        dump: dict[str, Any] = {}
        returned: dict[str, Any] = {}

        def keep_match_probs(module, inputs, output):
            if isinstance(output, dict) and output.get("match_probs"):
                returned["match_probs"] = output["match_probs"][-1]  # [BV, D, h, w]

        hook = self.encoder.depth_predictor.register_forward_hook(keep_match_probs)
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            with torch.inference_mode():
                output = self.encoder(context, global_step=0, visualization_dump=dump)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
        finally:
            hook.remove()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        gaussians = output.get("gaussians") if isinstance(output, dict) else output
        depth = output.get("depths") if isinstance(output, dict) else None
        if depth is None and "depth" in dump:
            depth = dump["depth"].flatten(-2)[..., 0]  # [B, V, H, W, srf, s] -> [B, V, H, W]
        if depth is None:
            raise WorkerError("output", "the encoder returned no depth")
        answer: dict[str, Any] = {
            "ok": True,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "depth": depth.float().cpu(),
            "dump": {k: dump[k].float().cpu() for k in CONTRACT_KEYS if k in dump},
            "returned_match_probs": (
                returned["match_probs"].float().cpu() if "match_probs" in returned else None
            ),
            "gaussians": None,
        }
        if gaussians is not None:
            fields = {name: getattr(gaussians, name).float().cpu() for name in GAUSSIAN_FIELDS}
            for name in ("scales", "rotations"):
                fields[name] = dump[name].float().cpu() if name in dump else None
            answer["gaussians"] = fields
        return answer


def serve(repo: Path, requests: BinaryIO, answers: BinaryIO) -> None:
    session = Session(repo)
    while (request := read_message(requests)) is not None:
        if request["op"] == "close":
            write_message(answers, {"ok": True})
            return
        try:
            answer = getattr(session, request["op"])(request)
        except WorkerError as error:
            answer = {"ok": False, "kind": error.kind, "message": str(error)}
        except Exception as error:  # noqa: BLE001 (any failure of their code becomes an answer)
            details = traceback.format_exc(limit=-8)
            answer = {"ok": False, "kind": type(error).__name__, "message": details}
        write_message(answers, answer)


def main(argv: list[str]) -> None:
    repo = Path(argv[1]).resolve()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the checkout's prints and warnings go to stderr, never into the protocol
    bind_checkout_package(repo)
    serve(repo, sys.stdin.buffer, answers)


if __name__ == "__main__":
    main(sys.argv)
