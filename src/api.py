"""dsviewer as a library: load a model, open a scene or bring your own arrays, predict, export.

    import dsviewer
    model = dsviewer.load("depthsplat-gs-base-re10k-256x256-view2-ca7b6795.pth", device="cpu")
    pred = model.predict(images, intrinsics, extrinsics, near=0.5, far=100.0)
    pred.final_depth.numpy()        # [V, H, W] metric z-depth

Conventions of this facade (the project's, ``dsviewer.geometry.projection``, except that
intrinsics are in **pixels** here, as calibration tools give them):

* images ``[V, H, W, 3]`` RGB, uint8, or float in [0, 1]; a list of ``[H_v, W_v, 3]`` for
  views of different sizes;
* intrinsics ``[V, 3, 3]`` in pixels of each view's own image, with pixel centres at
  ``u + 0.5`` (COLMAP's convention; from OpenCV's ``calibrateCamera`` add 0.5 to ``cx, cy``);
  ``intrinsics_unit="normalized"`` takes row 0 / W and row 1 / H instead;
* extrinsics ``[V, 4, 4]`` camera-to-world (``T_world_cam``), OpenCV axes (+x right, +y down,
  +z forward);
* ``depth`` is metric z-depth along the optical axis; inverse depths are named ``inv``.

Inputs are numpy arrays or torch tensors (any device); outputs are CPU torch tensors (``.numpy()``
views) and :class:`Views` of numpy arrays. Bad input raises
:class:`dsviewer.errors.InputError` (a ``UserError`` and a ``ValueError``) with one paragraph
that says what was wrong and how to fix it.

Everything heavy (torch, the model, the dataset readers) loads inside the functions, so
``import dsviewer`` stays light. This module is the one place in ``src/`` that reaches into
``dsviewer.viewer``, and only inside :func:`load_demo` (the demo files ship there) and
:func:`export` (the export files are written there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from dsviewer.api_inputs import IntrinsicsUnit
from dsviewer.errors import InputError

if TYPE_CHECKING:
    from torch import Tensor

    from dsviewer.backends import ModelBackend
    from dsviewer.dataset.preprocess import PreprocessSettings
    from dsviewer.dataset.types import SceneViews, ViewSet
    from dsviewer.geometry.similarity import Similarity
    from dsviewer.model.types import Prediction


# ---------------------------------------------------------------- what comes out


@dataclass
class Views:
    """Views of one scene as :meth:`Model.predict` takes them (numpy, pixel intrinsics)."""

    images: np.ndarray  # [V, H, W, 3] float32 in [0, 1]
    intrinsics: np.ndarray  # [V, 3, 3] float64, pixels of these images
    extrinsics: np.ndarray  # [V, 4, 4] float64 camera-to-world, OpenCV axes
    near: np.ndarray  # [V] float32, the units of the extrinsics
    far: np.ndarray  # [V] float32
    frames: np.ndarray  # [V] int64 frame numbers in the source scene
    depth: np.ndarray | None = None  # [V, H, W] float32 ground-truth z-depth, 0 where unknown


@dataclass
class Splats:
    """The predicted 3D Gaussians in the frame of the extrinsics (CPU float32 tensors).

    ``N = V * H * W`` for DepthSplat, ordered ``(view, row, column)`` of the output grid.
    """

    means: Tensor  # [N, 3]
    covariances: Tensor  # [N, 3, 3] world frame
    harmonics: Tensor  # [N, 3, d_sh] real spherical harmonics, 3DGS basis order, world frame
    opacities: Tensor  # [N] in [0, 1]


@dataclass
class ScenePrediction:
    """What the model predicted for the context views, on the grid it saw (CPU float32).

    ``final_depth = 1 / clamp(coarse_inv_depth + mono_inv_residual, 1/far, 1/near)``: the cost
    volume's inverse depth plus the monocular (DPT) residual, both inverse depths, clamped to
    each view's planes. ``inputs`` are the views after the preprocessing (rescale and
    centre-crop to the model's shape, intrinsics updated): every map is ``[V, H, W]`` on their
    pixels, and their intrinsics unproject it.
    """

    inputs: Views
    final_depth: Tensor  # [V, H, W] metric z-depth
    coarse_depth: Tensor  # [V, H, W] 1 / clamp(coarse_inv_depth, 1/far, 1/near), metric
    coarse_inv_depth: Tensor  # [V, H, W] the cost volume's soft-argmax inverse depth
    mono_inv_residual: Tensor  # [V, H, W] signed; > 0 pulled the surface nearer
    confidence: Tensor  # [V, H, W] the cost volume's maximum match probability, in [0, 1]
    gaussians: Splats | None  # None for depth-only checkpoints
    model_output: Prediction = field(repr=False)  # everything, cost volume included

    def numpy(self) -> dict[str, np.ndarray]:
        """Every map (and the Gaussians, as ``gaussian_<field>``) as numpy arrays (views of
        the tensors, not copies)."""
        names = ("final_depth", "coarse_depth", "coarse_inv_depth", "mono_inv_residual",
                 "confidence")  # fmt: skip
        arrays = {name: getattr(self, name).numpy() for name in names}
        if self.gaussians is not None:
            for name, value in vars(self.gaussians).items():
                arrays[f"gaussian_{name}"] = value.numpy()
        return arrays


@dataclass
class Scene:
    """One scene preprocessed for one model (:func:`open_scene`).

    ``context`` and ``target`` are in the *model's* frame: captures are recentred and rescaled as
    DepthSplat expects its baselines (datasets and synthetic scenes are used as they are).
    ``world_from_model`` maps back to the scene's own units: ``.lengths(depth)`` scales depths,
    ``.points(xyz)`` moves points, ``.poses(T)`` moves cameras.
    """

    key: str
    source: str  # a chunk file, a capture folder or "synthetic:<seed>"
    context: Views
    target: Views | None
    world_from_model: Similarity
    notes: list[str]  # what the loader did or doubts, one sentence each
    views: SceneViews = field(repr=False)  # the pipeline's own object (dsviewer.export reads it)


# ---------------------------------------------------------------- the model


class Model:
    """A loaded checkpoint (:func:`load`, :func:`load_demo`)."""

    def __init__(
        self,
        backend: ModelBackend,
        data_roots: Sequence[Path] = (),
        config: Path | None = None,
        depthsplat_repo: Path | None = None,
    ) -> None:
        self.backend = backend
        self.data_roots = tuple(data_roots)
        """Where :func:`open_scene` also looks up scene keys (the demo's scenes for the demo)."""
        self.config = config  # how the backend was opened, for export's own session
        self.depthsplat_repo = depthsplat_repo

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def settings(self) -> PreprocessSettings:
        """What the model expects: ``image_shape`` (H, W), ``near``, ``far``, view count."""
        return self.backend.preprocess

    def __repr__(self) -> str:
        h, w = self.settings.image_shape
        return f"Model({self.name!r}, {w}x{h}, device={self.backend.device!r})"

    def predict(
        self,
        images: np.ndarray | Tensor | Sequence[np.ndarray | Tensor],
        intrinsics: np.ndarray | Tensor,
        extrinsics: np.ndarray | Tensor,
        *,
        near: float | np.ndarray | Tensor | None = None,
        far: float | np.ndarray | Tensor | None = None,
        intrinsics_unit: IntrinsicsUnit = "pixels",
    ) -> ScenePrediction:
        """Depth and Gaussians for ``V >= 2`` posed context views.

        Args:
            images: ``[V, H, W, 3]`` RGB, uint8 or float in [0, 1] (floats are rounded to 8
                bits: the preprocessing resamples uint8 pixels, as DepthSplat's loaders do), or
                a list of ``[H_v, W_v, 3]``.
            intrinsics: ``[V, 3, 3]`` in pixels of each image (see the module docstring), or
                normalized with ``intrinsics_unit="normalized"``.
            extrinsics: ``[V, 4, 4]`` camera-to-world, OpenCV axes.
            near, far: the planes (one number or one per view) in the units of the
                extrinsics; default: the model's own (``model.settings``).

        Each view is rescaled and centre-cropped to ``model.settings.image_shape`` and then
        to the model's patch multiple, its intrinsics updated, as ``dsviewer`` does for
        captures (a principal point off the centre moves with the crop).
        """
        import torch

        from dsviewer.api_inputs import (
            extrinsics_matrices,
            image_views,
            intrinsics_matrices,
            planes,
        )
        from dsviewer.dataset.preprocess import preprocess_views

        pixels = image_views(images)
        V = len(pixels)
        if V < 2:
            raise InputError(f"predict() got {V} view; DepthSplat matches views against each "
                             "other in its cost volume, so give at least 2 context views.")
        K = intrinsics_matrices(intrinsics, [tuple(p.shape[-2:]) for p in pixels], intrinsics_unit)
        T_world_cam = extrinsics_matrices(extrinsics, V)
        near_v, far_v = planes(near, far, V, self.settings)
        views = preprocess_views(pixels, K, T_world_cam, torch.arange(V), self.settings,
                                 exact_principal_point=True)  # fmt: skip
        views.near, views.far = near_v, far_v
        return _scene_prediction(views, self.backend.predict(views))


def load(
    checkpoint: str | Path,
    *,
    device: str = "auto",
    config: str | Path | None = None,
    depthsplat_repo: str | Path | None = None,
) -> Model:
    """Load a checkpoint as ``dsviewer --ckpt`` does.

    Args:
        checkpoint: a released DepthSplat file (``.pth``, ``.ckpt``, ``.safetensors``), read
            with ``torch.load(weights_only=True)``; its settings come from the preset named
            after it (``configs/checkpoints/``), the settings embedded in it, or ``config``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        depthsplat_repo: run your own DepthSplat checkout's code (``docs/backends.md``).
    """
    from dsviewer.backends import open_backend

    path = Path(checkpoint).expanduser()
    if str(checkpoint) == "demo" and not path.exists():
        raise InputError("There is no file named 'demo'. The bundled demo model is "
                         "dsviewer.load_demo(); dsviewer.load() takes a checkpoint file.")
    config = None if config is None else Path(config).expanduser()
    repo = None if depthsplat_repo is None else Path(depthsplat_repo).expanduser()
    backend = open_backend(path, device=device, config=config, depthsplat_repo=repo)
    return Model(backend, config=config, depthsplat_repo=repo)


def load_demo(device: str = "auto") -> Model:
    """The bundled demo model (a toy DepthSplat trained on synthetic rooms; 128 x 128).

    Its scenes open by key with :func:`open_scene` (``"synthetic_7_0000"``, ...).
    """
    from dsviewer.backends import open_backend
    from dsviewer.viewer.assets import demo_checkpoint, demo_data_root

    return Model(open_backend(demo_checkpoint(), device=device), data_roots=[demo_data_root()])


def open_scene(
    spec: str | Path,
    model: Model,
    *,
    data_root: str | Path | Sequence[str | Path] = (),
    index: str | Path | None = None,
    context: Sequence[int] | None = None,
    target: Sequence[int] | None = None,
) -> Scene:
    """A scene preprocessed for ``model``, as ``dsviewer --scene`` opens it.

    Args:
        spec: a dataset key (looked up in the ``index.json`` of ``data_root``), a capture
            folder (COLMAP, ``transforms.json``, NeRF-synthetic), one transforms JSON file, or
            ``"synthetic:<seed>"``.
        data_root: one or more dataset roots (chunks and ``index.json``).
        index: the official evaluation index JSON (context/target frames per key).
        context, target: frame numbers; they win over the index and the default choice.

    Returns:
        The scene; its ``context`` views go straight back into :meth:`Model.predict`
        (``images``, ``intrinsics`` in pixels, ``extrinsics``, ``near=``, ``far=``).
    """
    from dsviewer.dataset import load_scene

    roots = [data_root] if isinstance(data_root, (str, Path)) else list(data_root)
    views = load_scene(
        str(spec),
        settings=model.settings,
        data_roots=[*(Path(r).expanduser() for r in roots), *model.data_roots],
        index_path=None if index is None else Path(index),
        context=None if context is None else list(context),
        target=None if target is None else list(target),
    )
    return Scene(
        key=views.key,
        source=views.source,
        context=_views(views.context),
        target=None if views.target is None else _views(views.target),
        world_from_model=views.world_from_model,
        notes=[note.message for note in views.notes],
        views=views,
    )


def export(
    out: str | Path,
    model: Model,
    scene: Scene,
    *,
    overwrite: bool = False,
    consistency_threshold: float = 0.05,
    consistency_occlusions: Literal["count", "skip"] = "count",
    rerun: bool = False,
) -> list[Path]:
    """Run ``model`` on ``scene`` and write the files ``dsviewer export`` writes, in the
    scene's own units, into ``out`` (all of them or none; ``README.md``, "Exports"); with
    ``rerun`` also ``recording.rrd`` (``dsviewer export --rerun``; needs the rerun extra).

    ``overwrite`` replaces an earlier export as a whole; a folder holding other files is
    refused. The run goes through the viewer's own model session (on ``model``'s backend), so
    notes and findings are the command's.
    Returns the paths written.
    """
    from dsviewer.stage_timer import StageTimer, stage, timing
    from dsviewer.viewer.analysis import AnalysisSettings
    from dsviewer.viewer.export import ExportSettings, export_scene, refuse_existing
    from dsviewer.viewer.export.transaction import check_writable, recover
    from dsviewer.viewer.session.model import ModelSession
    from dsviewer.viewer.session.specs import RunSpec, SessionSettings

    if scene.views.context.image_shape != model.settings.model_shape:
        raise InputError(f"The scene {scene.key!r} was opened for a model that takes "
                         f"{scene.views.context.image_shape} images, not for {model.name} "
                         f"({model.settings.model_shape}). Open it again with this model: "
                         "dsviewer.open_scene(spec, model).")
    if rerun:
        from dsviewer.viewer.export.rerun_recording import require_rerun

        require_rerun()  # before any model work
    folder = Path(out)
    recover(folder)  # what a killed export left behind
    check_writable(folder)
    refuse_existing(folder, overwrite)
    # The viewer's own model session runs the scene, so the notes, the capture check's findings
    # and the run's record are those `dsviewer export` writes.
    settings = SessionSettings(device=model.backend.device, config=model.config,
                               depthsplat_repo=model.depthsplat_repo)  # fmt: skip
    session = ModelSession(model.backend.checkpoint, settings, backend=model.backend)
    export_settings = ExportSettings(analysis=AnalysisSettings(
        consistency_threshold=consistency_threshold,
        consistency_occlusions=consistency_occlusions,
    ), rerun=rerun)  # fmt: skip
    # metrics.json's stages, as `dsviewer export` writes them (the scene was opened before)
    with timing(StageTimer()), stage("decode"):  # the stages inside count apart
        # Recorded as a command-line run that asks for nothing beyond the scene's views.
        loaded = session.run(scene.views, run=RunSpec(session.checkpoint, units="user"))
        with stage("writes"):
            result = export_scene(folder, loaded, export_settings, overwrite=overwrite)
    return [folder / name for name in result.files]


# ---------------------------------------------------------------- conversions


def _views(views: ViewSet) -> Views:
    from dsviewer.geometry.projection import denormalize_intrinsics

    H, W = views.image_shape
    return Views(
        images=views.image.permute(0, 2, 3, 1).float().cpu().numpy(),
        intrinsics=denormalize_intrinsics(views.intrinsics.double().cpu(), H, W).numpy(),
        extrinsics=views.extrinsics.double().cpu().numpy(),
        near=views.near.float().cpu().numpy(),
        far=views.far.float().cpu().numpy(),
        frames=views.index.cpu().numpy(),
        depth=None if views.depth is None else views.depth.float().cpu().numpy(),
    )


def _scene_prediction(views: ViewSet, prediction: Prediction) -> ScenePrediction:
    def owned(t: Tensor) -> Tensor:
        # A copy on the CPU: the model's outputs are inference tensors, which refuse in-place
        # edits (pred.final_depth[mask] = 0) outside torch.inference_mode.
        return t.detach().float().cpu().clone()

    splats = None
    if prediction.gaussians is not None:
        g = prediction.gaussians
        splats = Splats(*(owned(t[0]) for t in (g.means, g.covariances, g.harmonics,
                                                  g.opacities)))  # fmt: skip
    return ScenePrediction(
        inputs=_views(views),
        final_depth=owned(prediction.final_depth),
        coarse_depth=owned(prediction.coarse_depth()),
        coarse_inv_depth=owned(prediction.coarse_inv_depth),
        mono_inv_residual=owned(prediction.mono_inv_residual),
        confidence=owned(prediction.pixel_confidence()),
        gaussians=splats,
        model_output=prediction,
    )
