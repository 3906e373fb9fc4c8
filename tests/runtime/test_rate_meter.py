"""Speed and time left, computed once in runtime for every progress display."""
from __future__ import annotations

from runtime.jobs import RateMeter, format_duration


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_and_time_left_over_the_recent_window():
    clock = Clock()
    meter = RateMeter(1000, window_s=5.0, clock=clock)
    meter.update(0)
    assert meter.rate is None and meter.text() == "measuring speed..."
    for _ in range(10):            # 10 units a second for 10 s
        clock.now += 1
        meter.update(meter.done + 10)
    assert meter.rate == 10 and meter.eta_s == 90 and meter.text() == "10/s, 1 min 30 s left"
    for _ in range(6):             # then 50 a second: the old pace has left the 5 s window
        clock.now += 1
        meter.update(meter.done + 50)
    assert meter.rate == 50 and meter.eta_s == (1000 - 400) / 50


def test_work_resumed_part_way_counts_only_what_it_saw_advance():
    clock = Clock()
    meter = RateMeter(10_000, clock=clock)
    meter.update(8_000)            # bytes already on disk from an earlier run
    clock.now += 2
    meter.update(8_200)
    assert meter.rate == 100
    meter.update(0)                # started over: measured afresh, never negative
    assert meter.rate is None


def test_durations_read_like_a_person_would_say_them():
    assert [format_duration(s) for s in (0.4, 8, 65, 3 * 3600 + 14 * 60 + 5)] == [
        "0 s", "8 s", "1 min 05 s", "3 h 14 min"]
