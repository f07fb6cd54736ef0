"""What every GUI folder and scene part shares: the server, the view state, the lock, the jobs.

The app makes one :class:`GuiContext` and hands it to each folder together with the callbacks
that folder needs; a folder never sees the app or another folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading

    import viser

    from dsviewer.viewer.gui.state import ViewState
    from dsviewer.viewer.jobs import JobQueue


@dataclass(frozen=True)
class GuiContext:
    server: viser.ViserServer
    state: ViewState
    lock: threading.RLock  # held by every change of the state or the scene
    jobs: JobQueue  # the one background thread

    def guarded(self, update: Callable[[], None]) -> None:
        """Run a GUI callback's update under the lock, batched, when a scene is shown."""
        with self.lock:
            if not self.state.runs:
                return
            with self.server.atomic():
                update()
