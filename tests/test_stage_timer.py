"""The stage timer (``dsviewer.stage_timer``): nested stages count apart and add up to the wall
time, each thread records into its own current timer, nothing is recorded without one."""

from __future__ import annotations

import threading
import time

import pytest

from dsviewer.stage_timer import STAGE_NAMES, StageTimer, add_stages, stage, timing


def busy(seconds: float) -> None:
    """Let wall time pass (the timer measures wall time; tolerances allow a descheduling)."""
    time.sleep(seconds)


def test_nested_stages_count_apart_and_add_up_to_the_wall_time():
    timer = StageTimer()
    clock = time.perf_counter
    with timing(timer):
        start = clock()
        with stage("decode"):
            busy(0.05)
            inner_start = clock()
            with stage("preprocess"):
                busy(0.06)
            inner = clock() - inner_start
            busy(0.01)
        with stage("forward"):
            busy(0.05)
        wall = clock() - start
    seconds = timer.as_dict()
    assert tuple(seconds) == STAGE_NAMES
    assert seconds["preprocess"] == pytest.approx(inner, abs=0.01)
    assert timer.total() == pytest.approx(wall, abs=0.01)  # nothing counted twice or lost
    assert seconds["decode"] == pytest.approx(wall - inner - seconds["forward"], abs=0.01)
    assert [name for name, value in seconds.items() if value > 0] == [
        "decode", "preprocess", "forward"]


def test_a_stage_still_running_counts_up_to_the_reading():
    timer = StageTimer()
    with timing(timer), stage("writes"):
        start = time.perf_counter()
        busy(0.05)
        reading = timer.as_dict()["writes"]
        elapsed = time.perf_counter() - start
    assert reading == pytest.approx(elapsed, abs=0.01)


def test_each_thread_records_into_its_own_timer_and_none_without_one():
    timers = [StageTimer(), StageTimer()]
    with stage("forward"):  # no current timer: nothing anywhere
        busy(0.01)

    def work(timer: StageTimer, name: str) -> None:
        with timing(timer), stage(name):
            busy(0.06)

    threads = [threading.Thread(target=work, args=(timers[0], "decode")),
               threading.Thread(target=work, args=(timers[1], "target_renders"))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {n for n, v in timers[0].seconds.items() if v > 0} == {"decode"}
    assert {n for n, v in timers[1].seconds.items() if v > 0} == {"target_renders"}
    assert all(t.seconds["forward"] == 0.0 for t in timers)
    with pytest.raises(KeyError, match="not a stage"), timers[0].stage("rendering"):
        pass
    assert add_stages({"decode": 1.0}, {"decode": 0.5, "writes": 2.0}) == {
        **dict.fromkeys(STAGE_NAMES, 0.0), "decode": 1.5, "writes": 2.0}
