"""The named daemon threads of a worker: started together, asked to end, joined with one deadline.

:class:`scintiseg.work.worker.Worker` and :class:`scintiseg.work.cluster.ClusterWorker`
both run their loops on a :class:`ThreadGroup`; each keeps its own stop event and
wakes its own threads before :meth:`ThreadGroup.join`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


class ThreadGroup:
    """Daemon threads named ``<prefix>-<name>``, started once."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._threads: list[threading.Thread] = []

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def start(self, targets: Sequence[tuple[str, Callable[[], object]]]) -> None:
        """Start one thread per ``(name, target)``; raises if the group was started already."""
        if self._threads:
            raise RuntimeError("worker already started")
        for name, target in targets:
            thread = threading.Thread(target=target, name=f"{self.prefix}-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def join(self, timeout: float) -> bool:
        """Wait for every thread, ``timeout`` seconds in all; True if all ended (else logged)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("worker thread(s) still busy after %.0f s: %s", timeout, ", ".join(alive))
        return not alive
