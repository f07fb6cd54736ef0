"""Command-line options: :class:`ViewOptions` (the views and planes a model is asked for, in
every command, ``dsviewer check`` included), :class:`RunOptions` (which model runs on which
scene, in every command that runs the model), and the viewer's own.

Plain dataclasses; their field docstrings become the ``--help`` text (tyro reads them). A
command includes the run options by subclassing :class:`RunOptions` (``dsviewer``,
``dsviewer export``, ``dsviewer eval``), checks them with :meth:`RunOptions.check` (the one
place the checkpoint and the other run flags are judged) and hands the libraries what they
mean: :meth:`RunOptions.run_specs` and :meth:`RunOptions.session_settings`. Nothing heavy is
imported here so that ``--help`` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro  # light (~0.1 s); the field docstrings below are its --help text

from dsviewer.errors import InputError
from dsviewer.viewer.session.specs import MIN_VIEWS, RunSpec, SessionSettings, model_path


class MissingOptionError(InputError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"--{name} is required (or pass --demo to open the bundled demo). "
            "Run `dsviewer --help` for the options."
        )


class CheckpointMissingError(InputError, FileNotFoundError):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"The checkpoint {path} does not exist. Pass the path of a released DepthSplat "
            "checkpoint (e.g. --ckpt pretrained/depthsplat-gs-base-re10k-256x256-view2-"
            "ca7b6795.pth), or --demo for the bundled one."
        )


class RunOptionsError(InputError):
    """Run flags that cannot be used together or as given."""


@dataclass
class ViewOptions:
    """The context views and depth range a model is asked for, and how a capture's SfM
    reference is read (every command has these, ``dsviewer check`` too)."""

    context: list[int] | None = None
    """Context view indices (frames of the scene); default: the evaluation index, else chosen
    (by COLMAP covisibility for captures)."""

    views: int | None = None
    """Number of context views to choose when --context is not given (at least 2); default: the
    checkpoint's preset."""

    near: float | None = None
    """Near plane in the scene's own units (a capture's units; converted like the capture);
    default: the checkpoint's."""

    far: float | None = None
    """Far plane in the scene's own units; default: the checkpoint's."""

    sfm_max_error: float = 2.0  # dataset.sfm.DEFAULT_MAX_ERROR (not imported: --help stays fast)
    """Captures: SfM points whose mean reprojection error exceeds this many pixels are left out
    of the SfM reference depth."""

    config: Path | None = None
    """Model preset YAML (configs/checkpoints/*.yaml); default: recognised from the checkpoint."""

    def check_views_and_planes(self) -> None:
        """The view count, the context frames and the planes judged together (user errors)."""
        if self.views is not None:
            if self.views < MIN_VIEWS:
                raise RunOptionsError(f"--views {self.views}: DepthSplat needs at least "
                                      f"{MIN_VIEWS} context views.")  # fmt: skip
            if self.context is not None and len(self.context) != self.views:
                raise RunOptionsError(
                    f"--views {self.views} and --context {' '.join(map(str, self.context))} "
                    f"({len(self.context)} frames) disagree; give one of them."
                )
        for flag, value in (("--near", self.near), ("--far", self.far)):
            if value is not None and not 0 < value < float("inf"):
                raise RunOptionsError(f"{flag} {value}: give a positive finite distance in the "
                                      "scene's units.")  # fmt: skip
        if self.near is not None and self.far is not None and self.near >= self.far:
            raise RunOptionsError(f"--near {self.near} must be below --far {self.far}.")

    def run_spec(self, checkpoint: str | Path) -> RunSpec:
        """The run of ``checkpoint`` these options ask for: view count and planes in the user's
        units (its context frames are the session's, see :meth:`RunOptions.session_settings`)."""
        return RunSpec(model_path(checkpoint), near=self.near, far=self.far, views=self.views,
                       units="user")  # fmt: skip


@dataclass
class SceneOptions(ViewOptions):
    """Which scenes a model runs on, where they are found and where the model runs (every
    command that runs a model has these; :class:`RunOptions` adds which checkpoints)."""

    scene: Annotated[list[str], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Scene: a dataset key (e.g. RealEstate10K), a capture folder (COLMAP/transforms.json) or
    synthetic:<seed>; repeat the flag for several."""

    data_root: Annotated[list[Path], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Dataset root holding chunks and index.json; give the flag once per root."""

    index: Path | None = None
    """Evaluation index JSON that fixes context/target views per scene key."""

    target: list[int] | None = None
    """Target view indices (held-out cameras); default: the evaluation index, else frames near
    the context."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the model runs; auto picks CUDA when available (under torchrun, eval's ranks take
    the GPU of their local rank)."""

    depthsplat_repo: Path | None = None
    """Run your own DepthSplat checkout's code (a fork, say) instead of the built-in model; see
    docs/backends.md (``dsviewer patch-depthsplat PATH`` adds what it must expose)."""

    def check_scenes(self, need_scene: bool = True) -> None:
        """The scene flags judged once, before anything heavy: scenes given, data roots and
        config present, views and planes sensible. Raises a user error naming the flag."""
        if need_scene and not self.scene:
            raise MissingOptionError("scene")
        for root in self.data_root:
            if not Path(root).exists():
                raise FileNotFoundError(
                    f"The data root {root} does not exist. Pass the folder holding the "
                    "dataset's chunks and index.json with --data-root."
                )
        config = self.config
        if config is not None and Path(config).suffix in (".yaml", ".yml") \
                and not Path(config).is_file():  # a preset name is the preset reader's to judge
            raise RunOptionsError(f"--config {config} does not exist or is not a file; give a "
                                  "model preset YAML (configs/checkpoints/*.yaml).")  # fmt: skip
        self.check_views_and_planes()

    def session_settings(self) -> SessionSettings:
        """How the models open and where scenes are found."""
        return SessionSettings(
            data_root=tuple(Path(r) for r in self.data_root), index=self.index,
            context=None if self.context is None else tuple(self.context),
            target=None if self.target is None else tuple(self.target),
            sfm_max_error=self.sfm_max_error, device=self.device,
            config=self.config, depthsplat_repo=self.depthsplat_repo,
        )  # fmt: skip


@dataclass
class RunOptions(SceneOptions):
    """Which model runs on which scene, views and depth range (every command that runs given
    checkpoints has these)."""

    ckpt: Annotated[list[Path], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Checkpoint file (.pth / .ckpt / .safetensors) of a DepthSplat model. dsviewer and
    export take the flag again for more models (each a run of the same scene, to compare); eval
    takes one."""

    def check(self, need_scene: bool = True, need_ckpt: bool = True) -> None:
        """Every run flag judged once, before anything heavy: the checkpoints and files exist,
        the views and planes make sense. Raises a user error naming the flag."""
        if need_ckpt and not self.ckpt:
            raise MissingOptionError("ckpt")
        if need_scene and not self.scene:
            raise MissingOptionError("scene")
        for checkpoint in self.ckpt:
            if not Path(checkpoint).is_file():
                raise CheckpointMissingError(Path(checkpoint))
        self.check_scenes(need_scene)

    def run_specs(self) -> list[RunSpec]:
        """One run per ``--ckpt``, in order, with the view count and planes given (the context
        frames are the session's: every run without its own uses them)."""
        return [self.run_spec(checkpoint) for checkpoint in self.ckpt]

    def use_demo(self) -> None:
        """Fill the model and scenes from the bundled demo (``viewer/assets``): the demo scenes
        unless some are named. Raises the assets' ``DemoAssetsMissingError`` (a
        FileNotFoundError) with instructions when the files are not installed."""
        from dsviewer.viewer.assets import demo_checkpoint, demo_data_root, demo_scene_keys

        self.ckpt = [demo_checkpoint()]
        self.data_root = [demo_data_root(), *self.data_root]
        self.scene = self.scene or demo_scene_keys()


@dataclass
class TargetRenderOptions:
    """How many target views are rendered for a scene's target PSNR (``dsviewer eval``,
    ``dsviewer watch``: a 256 x 256 CPU render costs 0.04-0.1 s)."""

    max_target_views: int | None = None
    """Render at most this many target views per scene for target_psnr (0: none; default all)."""


@dataclass
class ServeOptions:
    """Where a live viewer serves and how much it sends (``dsviewer``, ``dsviewer watch``)."""

    host: str = "127.0.0.1"
    """Interface to bind. The default is local only; pass 0.0.0.0 to share on your network."""

    port: int | None = None
    """Port to serve on; default 8080 or the next free one. A port given here must be free."""

    point_budget: int = 600_000
    """Points sent per layer at most (server-side subsampling keeps the browser fluid)."""

    gaussian_budget: int = 300_000
    """Gaussians sent at most."""

    def check_serving(self) -> None:
        """The budgets, the port and the host judged before anything heavy."""
        from dsviewer.viewer.network import check_port, resolve_host

        if self.point_budget < 1 or self.gaussian_budget < 1:
            raise InputError("--point-budget and --gaussian-budget must be at least 1.")
        check_port(self.port)
        resolve_host(self.host)


@dataclass
class ViewerOptions(RunOptions, ServeOptions):
    """Options of the live viewer (``dsviewer``): the first --scene is shown, the others are
    offered in the GUI's scene switcher."""

    demo: bool = False
    """Open the bundled demo model and scenes (also what happens with neither --ckpt nor
    --scene)."""

    scenes: Annotated[list[str], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Another scene spec offered in the GUI's scene switcher."""

    def use_demo(self) -> None:
        """The demo, with every demo scene offered in the switcher (also beside a --scene)."""
        from dsviewer.viewer.assets import demo_scene_keys

        super().use_demo()
        self.scenes = [*self.scenes, *(k for k in demo_scene_keys() if k not in self.scene)]


@dataclass
class WatchOptions(SceneOptions, ServeOptions, TargetRenderOptions):
    """Options of ``dsviewer watch``: a training's checkpoint folder followed live."""

    folder: tyro.conf.Positional[Path | None] = None
    """The folder a training writes its checkpoints into (Lightning's checkpoints/ layout or
    plain .pth files); it may appear later (a training about to start)."""

    memory_gb: float = 2.0
    """Predictions and layers of the steps kept in memory at most (GB); past it the least
    recently shown are dropped and run again from their checkpoint when shown."""

    step_seconds: float = 120.0
    """Seconds a step may spend on the scenes that are not shown (the shown scene always runs);
    the scenes left are run when shown."""

    poll_seconds: float = 2.0
    """How often the folder is looked at for new checkpoints."""

    def check(self) -> None:
        """The watch's flags judged before anything heavy."""
        if self.folder is None:
            raise InputError("Give the folder your training writes checkpoints into: "
                             "dsviewer watch DIR --scene KEY ... (see dsviewer watch --help).")
        folder = Path(self.folder)
        if not folder.is_dir() and (folder.exists() or not folder.parent.is_dir()):
            raise InputError(f"The checkpoint folder {self.folder} does not exist or is not a "
                             "folder (nor is its parent, where a training about to start "
                             "would make it). Pass the folder your training writes "
                             "checkpoints into.")  # fmt: skip
        if self.max_target_views is not None and self.max_target_views < 0:
            raise InputError(f"--max-target-views {self.max_target_views}: give 0 or more.")
        for flag, value in (("--memory-gb", self.memory_gb), ("--step-seconds",
                            self.step_seconds), ("--poll-seconds", self.poll_seconds)):  # fmt: skip
            if not 0 < value < float("inf"):
                raise InputError(f"{flag} {value}: give a positive number.")
        self.check_scenes()
        self.check_serving()
