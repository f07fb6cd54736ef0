"""One background thread that runs jobs in submission order (knows nothing of viser).

The viewer submits its slow follow-up work here (analysis, target renders, exports, renders at a
client's camera) so that GUI callbacks return at once. Jobs belong to a *generation* (the scene
they were submitted for): :meth:`JobQueue.drop_pending` forgets the queued jobs of a replaced
scene, which would otherwise keep its data alive until they ran.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

ErrorHandler = Callable[[str, BaseException], None]
"""``on_error(job_name, exception)``, called on the job thread when a job raises."""


class JobQueue:
    def __init__(self, on_error: ErrorHandler, name: str = "dsviewer-jobs") -> None:
        self._on_error = on_error
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, name: str, job: Callable[[], None]) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((name, job))

    def drop_pending(self) -> list[str]:
        """Forget every job not started yet; returns their names."""
        dropped = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # close()'s stop marker stays
                self._queue.put(None)
                break
            dropped.append(item[0])
        if dropped:
            with self._idle:
                self._pending -= len(dropped)
                self._idle.notify_all()
        return dropped

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted job has finished; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the running job (queued ones are dropped)."""
        if not self._thread.is_alive():
            return
        self.drop_pending()
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            name, job = item
            try:
                job()
            except Exception as error:
                log.exception("background job %r failed", name)
                self._on_error(name, error)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
