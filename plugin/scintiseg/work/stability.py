"""Sub-second study stability: a study is ready StableAge seconds after its last instance.

Orthanc declares a study stable (``STABLE_STUDY``) when no instance arrived for
``StableAge`` seconds, but it ages unstable resources in whole seconds, so the
event comes StableAge + 0 to 1 s after the last instance (measured: 0.55 s
median, 1.1 s worst). :class:`StabilityTracker` applies the same rule at a
finer resolution from Orthanc's ``NEW_INSTANCE`` events: the change callback
only appends ``(instance id, arrival time)`` to a queue; the tracker's own
thread finds each instance's study (one in-process REST call, off the
callback thread) and hands a study on once it has been quiet for
``stable_age`` seconds, checked every ``tick`` seconds.

Orthanc's ``STABLE_STUDY`` stays the authority and the backstop: a study the
tracker already handed on is queued again by it, and the job then finds
nothing to do (index reads only, nothing written). Instances that ScintiSeg
stores itself (SEG, preview) are :meth:`ignore`-d, so they never make a
study "new" again.

Pure Python, no ``orthanc`` import: the entry script passes a resolver built
on the gateway, and the tests a dictionary and a fake clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How many of our own stored instance ids are remembered (to ignore their arrival).
MAX_IGNORED = 10000


class StabilityTracker:
    """Hands a study to ``on_stable`` once no instance arrived in it for ``stable_age`` seconds."""

    def __init__(
        self,
        resolve_study: Callable[[str], str | None],
        on_stable: Callable[[str], object],
        stable_age: float,
        tick: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        on_arrival: Callable[[str], object] | None = None,
    ) -> None:
        if stable_age < 0 or tick <= 0:
            raise ValueError("stable_age must be >= 0 and tick > 0")
        self.resolve_study = resolve_study
        self.on_stable = on_stable
        self.stable_age = float(stable_age)
        self.tick = float(tick)
        self.clock = clock
        #: told each study that received instances, once per poll (a cluster records it)
        self.on_arrival = on_arrival
        self._arrivals: deque[tuple[str, float]] = deque()
        self._last: dict[str, float] = {}  # study id -> last arrival
        self._ignored: OrderedDict[str, None] = OrderedDict()
        self._ignored_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.handed_on = 0

    # -- producer side (the change callback): no I/O --------------------------------------
    def new_instance(self, instance_id: str) -> None:
        self._arrivals.append((instance_id, self.clock()))  # deque.append is thread-safe
        self._wake.set()

    def ignore(self, instance_id: str) -> None:
        """An instance ScintiSeg stored itself: its arrival does not make its study new."""
        with self._ignored_lock:
            self._ignored[instance_id] = None
            while len(self._ignored) > MAX_IGNORED:
                self._ignored.popitem(last=False)

    # -- the tracker's work (its own thread, or called directly by tests) --------------------
    def poll(self) -> list[str]:
        """Take in the arrivals, hand on the studies that became stable; returns those."""
        arrived_in: dict[str, None] = {}
        while self._arrivals:
            instance_id, arrived = self._arrivals.popleft()
            with self._ignored_lock:
                if instance_id in self._ignored:
                    continue
            try:
                study = self.resolve_study(instance_id)
            except Exception as exc:  # deleted meanwhile, Orthanc stopping: Orthanc's event remains
                log.debug("instance %s: no study (%s)", instance_id, exc)
                continue
            if study:
                self._last[study] = max(arrived, self._last.get(study, arrived))
                arrived_in[study] = None
        self._tell_arrivals(arrived_in)
        now = self.clock()
        ready = [s for s, t in self._last.items() if now - t >= self.stable_age]
        for study in ready:
            del self._last[study]
            self.handed_on += 1
            try:
                self.on_stable(study)
            except Exception:  # never let one study stop the tracker
                log.exception("study %s: could not be handed on", study)
        return ready

    def _tell_arrivals(self, studies: dict[str, None]) -> None:
        on_arrival = self.on_arrival
        if on_arrival is None:
            return
        for study in studies:
            try:
                on_arrival(study)
            except Exception:  # bookkeeping must not stop the tracker
                log.exception("study %s: arrival not recorded", study)

    def pending(self) -> int:
        """Studies waiting to turn stable."""
        return len(self._last) + len(self._arrivals)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("tracker already started")
        self._thread = threading.Thread(target=self._loop, name="scintiseg-stability", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # the loop's boundary
                log.exception("stability tracker error")
            # sleep a tick while studies wait; otherwise until an instance arrives
            self._wake.wait(self.tick if self._last else None)
            self._wake.clear()
