"""Moved to :mod:`dsviewer.viewer.session`; these names stay here only for viewer/gui, whose
imports branch viewstate rewrites (the lead removes this module after merging it)."""

from dsviewer.viewer.session.runs import Run, RunLoader, estimated_bytes
from dsviewer.viewer.session.specs import RunSpec

__all__ = ["Run", "RunLoader", "RunSpec", "estimated_bytes"]
