"""The expert completes three clean laps on every reference track and every built-in track."""

from pathlib import Path

import numpy as np
import pytest

from firmware.sim.expert import ExpertConfig, ExpertDriver
from firmware.sim.run import drive
from firmware.sim.tracks import builtin_track_names
from firmware.sim.world import World
from tests.conftest import TRACKS_DIR

REFERENCE = sorted(p.name for p in TRACKS_DIR.glob("*.npy")) if TRACKS_DIR.is_dir() else []


def _three_clean_laps(track: str | Path) -> None:
    world = World(track, seed=0)
    expert = ExpertDriver(world.track, world.config.car)
    steering = []
    worst = 0.0
    while world.status.lap < 3:
        s, throttle = expert.act(world.car.state)
        assert -1 <= s <= 1 and 0 < throttle <= 1
        steering.append(s)
        status = world.step(s, throttle)
        assert status.all_wheels_on_track, (
            f"{world.track.name}: a wheel left the track at {status.progress:.1f} %"
        )
        assert not status.reversed
        worst = max(worst, status.distance_from_center)
        assert status.time < 3 * 60, f"{world.track.name}: too slow"
    laps = world.status.lap_times
    assert len(laps) == 3
    # Laps 2 and 3 start at speed, so they match each other closely.
    assert laps[1] == pytest.approx(laps[2], abs=0.05)
    assert worst < 0.6 * world.track.min_half_width
    # Smooth, learnable steering: small changes from one step to the next.
    assert np.sqrt(np.mean(np.diff(steering) ** 2)) < 0.12


@pytest.mark.parametrize("name", builtin_track_names())
def test_expert_three_laps_on_builtin_track(name: str) -> None:
    _three_clean_laps(name)


@pytest.mark.parametrize("name", REFERENCE)
def test_expert_three_laps_on_reference_track(name: str, tracks_dir: Path) -> None:
    _three_clean_laps(tracks_dir / name)


def test_there_are_reference_tracks(tracks_dir: Path) -> None:
    assert len(REFERENCE) >= 1 and len(REFERENCE) == len(list(tracks_dir.glob("*.npy")))


def test_expert_drives_the_reversed_direction_and_a_given_line() -> None:
    _three_clean_laps("technical-reversed")
    world = World("oval")
    track = world.track
    # A racing line 10 cm inside the centre line (towards the inner border).
    line = track.center[:-1] + 0.1 * (track.inner[:-1] - track.center[:-1]) / (track.width / 2)
    expert = ExpertDriver(track, world.config.car, line=line)
    result = drive(world, expert, laps=1)
    assert result.finished and result.off_track == 0
    lateral = [track.project(x, y).lateral for x, y in result.trace[len(result.trace) // 2 :: 10]]
    assert np.mean(lateral) == pytest.approx(0.1, abs=0.04)  # left of centre on a CCW track = inside


def test_speed_profile_slows_for_bends_and_noise_is_seeded() -> None:
    world = World("technical")
    expert = ExpertDriver(world.track, world.config.car, ExpertConfig(max_speed=2.5))
    curvature = np.abs(expert.curvature)
    assert expert.speed_profile[np.argmax(curvature)] < 0.6 * expert.speed_profile[np.argmin(curvature)]
    noisy = [ExpertDriver(world.track, config=ExpertConfig(steering_noise=0.05), seed=s) for s in (1, 1, 2)]
    acts = [n.act(world.car.state)[0] for n in noisy]
    assert acts[0] == acts[1] != acts[2]
    with pytest.raises(ValueError, match="racing line"):
        ExpertDriver(world.track, line=np.zeros((3, 2)))
