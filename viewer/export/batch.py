"""Many scenes exported with one model load per checkpoint: the library behind ``dsviewer export``.

It takes what the command line means, not the command line: the runs (:class:`RunSpec`, one per
checkpoint given), the session's settings, each scene's output folder and the export settings.
Scenes are resolved once (:func:`dsviewer.viewer.evaluation.plan.plan_scenes`, linear in the
number of keys), each chunk is read once for every model
(:class:`dsviewer.viewer.evaluation.loading.SceneLoader`); one run writes a scene's files
(:func:`dsviewer.viewer.export.export_scene`), several write a comparison
(:func:`dsviewer.viewer.export.compare_files.export_comparison`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.stage_timer import StageTimer, stage, timing

if TYPE_CHECKING:
    from dsviewer.viewer.export import ExportSettings
    from dsviewer.viewer.session.loaded import LoadedScene
    from dsviewer.viewer.session.specs import RunSpec, SessionSettings

NotesFn = Callable[[str, "list[LoadedScene]"], None]
"""``shown(scene_key, runs)`` after a scene is written (the CLI prints its notes)."""


def export_scenes(
    folders: dict[str, Path],
    runs: Sequence[RunSpec],
    settings: SessionSettings,
    export: ExportSettings,
    *,
    overwrite: bool = False,
    console=None,
    written: NotesFn | None = None,
) -> list[tuple[str, str]]:
    """Export every scene of ``folders`` (scene spec -> its folder) with every run.

    Returns the failures as ``(scene, reason)``: scenes the data roots do not hold and scenes
    whose input is bad (bad input fails that scene alone; a bug raises).
    """
    from dsviewer.viewer.errors import is_user_error
    from dsviewer.viewer.evaluation.loading import SceneLoader
    from dsviewer.viewer.evaluation.plan import plan_scenes, with_explicit_frames
    from dsviewer.viewer.evaluation.progress import SceneProgress
    from dsviewer.viewer.export import export_scene
    from dsviewer.viewer.export.compare_files import export_comparison
    from dsviewer.viewer.session.model import ModelSession, finish
    from dsviewer.viewer.session.specs import run_names

    plan = plan_scenes(settings.data_root, settings.index, list(folders))
    # Explicit views win over the evaluation index (and are named as the source of bad frames).
    plan = with_explicit_frames(plan, settings.context, settings.target)
    failures = [(scene.key, scene.missing) for scene in plan.missing]
    names = dict(zip(run_names(runs), runs, strict=True))
    # One model load per checkpoint file, every model kept for all scenes.
    sessions = {path: ModelSession(path, settings)
                for path in dict.fromkeys(spec.checkpoint for spec in runs)}  # fmt: skip
    from dsviewer.dataset import CaptureOptions

    loader = SceneLoader(next(iter(sessions.values())).preprocess(),
                         capture=CaptureOptions(sfm_max_error=settings.sfm_max_error))
    with SceneProgress(len(plan.available), "Exporting", console=console) as progress:
        for planned in progress.track(plan.available):
            try:  # metrics.json holds the scene's stages so far (its whole export, one run)
                with timing(StageTimer()), stage("decode"):  # the stages inside count apart
                    loaded = []
                    for name, spec in names.items():
                        session = sessions[spec.checkpoint]
                        views = loader.load(planned, session.preprocess(spec))
                        with stage("preprocess"):
                            views = finish(views, spec)
                        loaded.append(session.run(views, run_name=name if len(runs) > 1
                                                  else None, run=spec))  # fmt: skip
                    with stage("writes"):
                        if len(loaded) == 1:
                            export_scene(folders[planned.key], loaded[0], export,
                                         overwrite=overwrite)  # fmt: skip
                        else:
                            export_comparison(folders[planned.key], loaded, export,
                                              overwrite=overwrite)  # fmt: skip
            except Exception as error:
                if not is_user_error(error):
                    raise  # a bug: the boundary logs its traceback (exit 1)
                failures.append((planned.key, str(error)))  # bad input fails this scene alone
                progress.failed()
                continue
            if written is not None:
                written(planned.key, loaded)
    return failures
