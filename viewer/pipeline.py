"""Moved to :mod:`dsviewer.viewer.session`; these names stay here only for viewer/gui, whose
imports branch viewstate rewrites (the lead removes this module after merging it)."""

from dsviewer.viewer.session.loaded import LoadedScene, ProgressFn

__all__ = ["LoadedScene", "ProgressFn"]
