"""Planned scenes to :class:`SceneViews`, one chunk read per run of scenes from that chunk.

The plan already knows each key's chunk and its evaluation-index views, so nothing is looked
up again per scene (reading a 7,194-key ``index.json`` and evaluation index costs about 70 ms,
which per scene would outweigh a GPU forward). The last chunk read is kept: the shards are
sorted by chunk, so consecutive scenes mostly share it. The preprocessing is the dataset
loader's own (:func:`dsviewer.dataset.scene.scene_from_example`, as
:func:`dsviewer.dataset.load_scene`
uses it). Frames the evaluation index names are checked here, so that a bad one is reported as
the index's (its file and key), not as a command-line flag's; without target renders the target
frames are not even decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.viewer.evaluation.plan import PlannedScene

if TYPE_CHECKING:
    from dsviewer.dataset.capture import CaptureOptions
    from dsviewer.dataset.chunks import ChunkExample
    from dsviewer.dataset.preprocess import PreprocessSettings
    from dsviewer.dataset.types import SceneViews


class SceneLoader:
    """Loads planned scenes preprocessed for one model (its ``PreprocessSettings``).

    Args:
        settings: the model's preprocessing.
        index: the evaluation index the planned frames come from (named in errors).
        targets: False loads no target view (``--max-target-views 0``: nothing to render).
        capture: how capture folders are read (e.g. the SfM error threshold).
    """

    def __init__(self, settings: PreprocessSettings, index: Path | None = None,
                 targets: bool = True, capture: CaptureOptions | None = None) -> None:
        self.settings = settings
        self.capture = capture
        self.index = index
        self.targets = targets
        self._chunk: Path | None = None
        self._examples: dict[str, ChunkExample] = {}

    def _example(self, key: str, chunk: Path) -> ChunkExample:
        from dsviewer.dataset.chunks import read_chunk
        from dsviewer.dataset.errors import ChunkFormatError

        if chunk != self._chunk:
            self._chunk, self._examples = None, {}  # no stale cache if the read fails
            self._examples = {example.key: example for example in read_chunk(chunk)}
            self._chunk = chunk
        if key not in self._examples:
            raise ChunkFormatError(
                chunk, f"index.json says it holds {key!r} but it does not; rebuild the index"
            )
        return self._examples[key]

    def load(self, planned: PlannedScene, settings: PreprocessSettings | None = None) -> SceneViews:
        """The scene's views, preprocessed with ``settings`` (default: the loader's; another
        model's settings reuse the chunk already read). Raises the dataset loader's errors."""
        from dsviewer.dataset import load_scene
        from dsviewer.dataset.scene import scene_from_example
        from dsviewer.dataset.views import ViewSelection, check_frames

        settings = settings or self.settings
        context = None if planned.context is None else list(planned.context)
        target = None if planned.target is None else list(planned.target)
        if not self.targets:
            target = []  # the loader decodes the selected frames only: none of the targets
        if planned.chunk is None:  # synthetic:<seed> or a capture folder
            return load_scene(planned.key, settings=settings, context=context, target=target,
                              capture=self.capture)
        example = self._example(planned.key, planned.chunk)
        if context is not None:
            chosen_by = planned.frames_from or f"The evaluation index {self.index} entry " \
                f"{planned.key!r}"
            check_frames(ViewSelection(context, target or []), example.num_frames,
                         f"scene {planned.key!r} in {planned.chunk}", chosen_by)  # fmt: skip
        return scene_from_example(example, str(planned.chunk), settings, context=context,
                                  target=target)  # fmt: skip
