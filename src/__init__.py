"""dsviewer: see what DepthSplat believed about the geometry.

The public Python API lives in :mod:`dsviewer.api` and is re-exported here on first use, so
``import dsviewer`` itself loads nothing heavy (no torch)::

    import dsviewer
    model = dsviewer.load_demo(device="cpu")        # or dsviewer.load("<checkpoint>.pth")
    scene = dsviewer.open_scene("synthetic_7_0000", model)
    pred = model.predict(scene.context.images, scene.context.intrinsics,
                         scene.context.extrinsics)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsviewer.api import (
        InputError,
        Model,
        Scene,
        ScenePrediction,
        Splats,
        Views,
        export,
        load,
        load_demo,
        open_scene,
    )

__all__ = ["InputError", "Model", "Scene", "ScenePrediction", "Splats", "Views", "export",
           "load", "load_demo", "open_scene"]  # fmt: skip


def __getattr__(name: str):
    if name in __all__:
        from dsviewer import api

        return getattr(api, name)
    raise AttributeError(f"module 'dsviewer' has no attribute {name!r}")
