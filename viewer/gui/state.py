"""ViewState: what the GUI's settings select, in one typed object.

The folders write it, each from its own controls only; the code that draws (point clouds,
legend, tables, residual vectors, export) reads it. So no folder reads another folder's
controls, and every value here is a value (a registry key, a run name, a number), never the
label a control shows. A folder's private controls (splat colour, vector stride, the
inspector's pixel fields) stay in that folder: nothing else reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from dsviewer.viewer.analysis import AnalysisSettings
from dsviewer.viewer.color_modes import ColorSettings
from dsviewer.viewer.maps import MapSettings
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.session.specs import GT_NAME
from dsviewer.viewer.view_params import DEFAULT_POINT_PIXELS

if TYPE_CHECKING:
    from dsviewer.viewer.analysis import SceneAnalysis
    from dsviewer.viewer.session.loaded import LoadedScene
    from dsviewer.viewer.session.runs import Run

Placement = Literal["overlaid", "side by side"]
Subsample = Literal["random", "stride"]
SplatsShown = Literal["hidden", "overlaid", "side by side"]


@dataclass(frozen=True)
class Partner:
    """Run B, the one A is compared with: another run (by name) or the scene's GT depth."""

    run: str | None = None  # None: the ground truth

    @property
    def is_gt(self) -> bool:
        return self.run is None

    @property
    def name(self) -> str:
        """The name the comparison files and messages give B (``gt`` for the ground truth)."""
        return GT_NAME if self.run is None else self.run


GROUND_TRUTH = Partner(None)


@dataclass(frozen=True)
class InspectedPixel:
    """The pixel the inspector shows: ``(u, v)`` of context view ``view`` of run ``run``."""

    run: str
    view: int
    u: int
    v: int


@dataclass(frozen=True)
class PointSettings:
    """Which points of each layer are sent, and how large they are drawn."""

    pixels: float = DEFAULT_POINT_PIXELS  # point size in context pixels at the median depth
    budget: int = 600_000  # points per layer at most, split over the views
    subsample: Subsample = "random"
    min_confidence_pct: float = 0.0  # percentile of the run's match probability
    depth_range_pct: tuple[float, float] = (0.0, 100.0)  # percentiles of the run's final depth
    inconsistent_only: bool = False  # analysis filter: only multi-view inconsistent pixels
    hide_flying: bool = False  # analysis filter: drop pixels between two surfaces

    @property
    def uses_analysis(self) -> bool:
        return self.inconsistent_only or self.hide_flying


def _layers_at_start() -> dict[str, bool]:
    return {key: layer.shown_at_start for key, layer in POINT_LAYERS.items()}


@dataclass
class ViewState:
    """The runs shown, which two are compared, and every setting that more than one part of
    the GUI reads. The app changes the runs and the pair under its lock; a folder's callback
    replaces its settings whole (frozen dataclasses) or flips one key, so a reader on the job
    thread never sees half an update."""

    runs: list[Run] = field(default_factory=list)
    primary: int = 0  # index of run A in ``runs``: the run the single-run folders describe
    partner: Partner | None = None  # run B; None: A is compared with nothing
    scene_spec: str = ""  # what the runs were loaded from (where New run loads)
    placement: Placement = "overlaid"  # of the runs' point clouds
    layers_shown: dict[str, bool] = field(default_factory=_layers_at_start)  # by layer key
    views_hidden: set[int] = field(default_factory=set)  # context views whose points are hidden
    color_mode: str = "rgb"  # a key of COLOR_MODES
    color: ColorSettings = field(default_factory=ColorSettings)
    points: PointSettings = field(default_factory=PointSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    splats: SplatsShown = "hidden"  # run A's Gaussians as splats, and where
    vectors_shown: bool = False  # run A's residual vectors
    maps: MapSettings = field(default_factory=MapSettings)  # frustum pictures and the grid
    inspected: InspectedPixel | None = None  # written by the inspector, marked on the maps

    @property
    def points_covered(self) -> bool:
        """Whether the point clouds step aside for what is drawn on their surfaces: overlaid
        splats and residual vectors lie inside the final points, which would hide them."""
        return self.splats == "overlaid" or self.vectors_shown

    @property
    def run_a(self) -> Run | None:
        return self.runs[self.primary] if self.runs else None

    @property
    def loaded(self) -> LoadedScene | None:
        """Run A's scene: what the single-run folders (analysis, targets, cameras) describe."""
        return self.runs[self.primary].loaded if self.runs else None

    def run_named(self, name: str | None) -> Run | None:
        return next((run for run in self.runs if run.name == name), None)

    def run_b(self) -> Run | None:
        """Run B when B is a run of the list (None for GT or no B)."""
        return None if self.partner is None else self.run_named(self.partner.run)

    def layer_shown(self, key: str, loaded: LoadedScene) -> bool:
        """Whether layer ``key`` is switched on and ``loaded`` has it."""
        return self.layers_shown[key] and loaded.flat(key) is not None

    def view_shown(self, view: int) -> bool:
        return view not in self.views_hidden

    def analysis_of(self, loaded: LoadedScene | None = None) -> SceneAnalysis | None:
        """The analysis of a run (default: A) for the settings on screen, if computed."""
        loaded = loaded or self.loaded
        return None if loaded is None else loaded.cached_analysis(self.analysis)
