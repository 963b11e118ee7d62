"""The sub-second stability tracker, with a fake clock and a dictionary as the store."""

from __future__ import annotations

import threading
import time

import pytest

from scintiseg.work.stability import StabilityTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(stable_age: float = 2.0) -> tuple[StabilityTracker, Clock, list[str], dict[str, str]]:
    clock, handed, studies = Clock(), [], {"i1": "s1", "i2": "s1", "i3": "s2"}
    tracker = StabilityTracker(studies.__getitem__, handed.append, stable_age, clock=clock)
    return tracker, clock, handed, studies


def test_a_study_is_handed_on_stable_age_after_its_last_instance() -> None:
    tracker, clock, handed, _ = make()
    tracker.new_instance("i1")
    clock.now += 1.5
    tracker.new_instance("i2")  # same study, later: restarts its quiet period
    clock.now += 1.9
    assert tracker.poll() == [] and tracker.pending() == 1
    clock.now += 0.1
    assert tracker.poll() == ["s1"] and handed == ["s1"]
    assert tracker.poll() == [] and tracker.pending() == 0  # handed on once


def test_studies_are_independent() -> None:
    tracker, clock, handed, _ = make()
    tracker.new_instance("i1")
    clock.now += 1.0
    tracker.new_instance("i3")
    clock.now += 1.0
    assert tracker.poll() == ["s1"]
    clock.now += 1.0
    assert tracker.poll() == ["s2"] and handed == ["s1", "s2"]


def test_our_own_instances_are_ignored_and_lookups_can_fail() -> None:
    tracker, clock, handed, studies = make()
    tracker.ignore("i1")
    tracker.new_instance("i1")
    tracker.new_instance("gone")  # deleted before the tracker looked: KeyError from the store
    clock.now += 5
    assert tracker.poll() == [] and handed == []
    assert "i1" in studies  # ignored without a lookup


def test_a_failing_consumer_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    clock, got = Clock(), []

    def on_stable(study: str) -> None:
        if study == "s1":
            raise RuntimeError("boom")
        got.append(study)

    tracker = StabilityTracker({"i1": "s1", "i3": "s2"}.__getitem__, on_stable, 1.0, clock=clock)
    tracker.new_instance("i1")
    tracker.new_instance("i3")
    clock.now += 1
    assert sorted(tracker.poll()) == ["s1", "s2"] and got == ["s2"]
    assert "could not be handed on" in caplog.text


def test_thread_hands_on_within_a_tick() -> None:
    done = threading.Event()
    seen: list[tuple[str, float]] = []

    def on_stable(study: str) -> None:
        seen.append((study, time.monotonic()))
        done.set()

    tracker = StabilityTracker({"i1": "s1"}.__getitem__, on_stable, stable_age=0.2, tick=0.02)
    tracker.start()
    try:
        t0 = time.monotonic()
        tracker.new_instance("i1")
        assert done.wait(5)
        delay = seen[0][1] - t0
        assert seen[0][0] == "s1" and 0.2 <= delay < 0.2 + 0.5  # StableAge, plus a tick or so
    finally:
        tracker.stop()


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        StabilityTracker(str, print, stable_age=-1)


def test_each_study_that_received_instances_is_told_once_per_poll() -> None:
    clock, arrived, studies = Clock(), [], {"i1": "s1", "i2": "s1", "i3": "s2"}
    tracker = StabilityTracker(studies.__getitem__, lambda s: None, 2.0, clock=clock, on_arrival=arrived.append)
    for iid in ("i1", "i2", "i3"):
        tracker.new_instance(iid)
    tracker.poll()
    assert arrived == ["s1", "s2"]
    tracker.poll()
    assert arrived == ["s1", "s2"]  # nothing new arrived
