import asyncio

import pytest

from firmware.actuators import clip_unit
from firmware.cycle_timer import CycleTimer


class FakeClock:
    """A clock the test moves by hand, so timing logic is checked exactly."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_slots_are_on_an_absolute_grid_and_misses_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", lambda s: (slept.append(s), setattr(clock, "t", clock.t + s)))
    timer = CycleTimer(10, clock=clock)
    assert timer.wait() == 0
    clock.t += 0.03  # work took 30 ms
    assert timer.wait() == 1
    assert slept[-1] == pytest.approx(0.07)
    clock.t += 0.35  # a stall: slots 2 and 3 (at +0.2, +0.3) are missed, slot 4 runs 50 ms late
    assert timer.wait() == 4
    assert timer.missed == 2
    assert timer.stats().late_max_ms == pytest.approx(50)
    assert timer.stats().ticks == 3


def test_real_sleeping_keeps_the_rate() -> None:
    timer = CycleTimer(200)
    import time

    t0 = time.perf_counter()
    for _ in range(40):
        timer.wait()
    elapsed = time.perf_counter() - t0
    assert elapsed == pytest.approx(39 / 200, abs=0.05)
    assert timer.stats().late_p50_ms >= 0


async def test_async_wait() -> None:
    timer = CycleTimer(100)
    ticks = [await timer.async_wait() for _ in range(5)]
    assert ticks == [0, 1, 2, 3, 4]
    await asyncio.sleep(0)


def test_bad_rate_and_nan_actions() -> None:
    with pytest.raises(ValueError):
        CycleTimer(0)
    assert clip_unit(float("nan")) == 0.0
    assert clip_unit(3) == 1.0
    assert clip_unit(-3) == -1.0
