"""The genome and its fitness: the line, the speed profile inside the car's limits, penalties, and
the replay of a line in the real simulator."""

import math
import pickle

import numpy as np
import pytest

from firmware.sim import ExpertDriver, get_track
from trainer.race.driver import RaceLineDriver, ReplayEvaluator, replay
from trainer.race.line import LineConfig, LineEvaluator, periodic_spline_matrix, smoothest_genes


@pytest.fixture(scope="module")
def evaluator() -> LineEvaluator:
    return LineEvaluator(get_track("technical"))


def test_the_spline_is_periodic_and_passes_through_its_control_points() -> None:
    m = periodic_spline_matrix(10, 200)
    assert np.allclose(m.sum(axis=1), 1.0)  # a constant offset stays constant
    assert np.allclose(m[::20], np.eye(10))  # sample 20k sits on control point k
    rng = np.random.default_rng(0)
    genes = rng.uniform(-1, 1, 10)
    dense = m @ genes
    # Closed and smooth: the step from the last sample to the first is like any other step.
    steps = np.abs(np.diff(np.append(dense, dense[0])))
    assert steps[-1] < 3 * np.median(steps) + 1e-9


def test_the_centre_genome_is_the_centre_line(evaluator: LineEvaluator) -> None:
    est = evaluator.estimate(np.zeros(evaluator.n_genes))
    assert np.abs(est.offsets).max() < 1e-12
    track = evaluator.frame.track
    assert est.penalty == 0.0
    length = np.hypot(*np.diff(np.vstack([est.points, est.points[:1]]), axis=0).T).sum()
    assert length == pytest.approx(track.length, rel=1e-3)


def test_the_speed_profile_keeps_inside_the_cars_limits(evaluator: LineEvaluator) -> None:
    c = evaluator.config
    car = c.car
    est = evaluator.estimate(smoothest_genes(evaluator))
    v = est.speeds
    assert v.max() <= car.max_speed * c.speed_factor + 1e-9
    assert np.all(v**2 * np.abs(est.curvature) <= c.lateral_accel + 1e-6)
    ds = np.hypot(*(np.roll(est.points, -1, axis=0) - est.points).T)
    dv2 = np.roll(v, -1) ** 2 - v**2  # round the loop, the last sample to the first included
    assert np.all(dv2 <= 2 * car.max_accel * c.accel_factor * ds + 1e-6)
    assert np.all(-dv2 <= 2 * car.max_brake * c.brake_factor * ds + 1e-6)
    lap = np.sum(2 * ds / (v + np.roll(v, -1)))
    assert est.lap_time == pytest.approx(lap)
    assert v.min() < 0.8 * v.max()  # it does brake for the bends


def test_the_fitness_is_a_pure_function_of_the_genes(evaluator: LineEvaluator) -> None:
    rng = np.random.default_rng(3)
    genes = rng.uniform(-1, 1, (6, evaluator.n_genes))
    batch = evaluator.evaluate_batch(genes)
    one_by_one = [evaluator(g)[0] for g in genes]
    again = pickle.loads(pickle.dumps(evaluator)).evaluate_batch(genes)
    assert list(batch) == one_by_one == list(again)


def test_leaving_the_usable_road_is_penalised(evaluator: LineEvaluator) -> None:
    k = evaluator.n_genes
    inside = evaluator.estimate(np.full(k, 0.9))
    outside = evaluator.estimate(np.full(k, 1.3))
    assert inside.penalty == 0.0
    assert outside.off_track_m > 0 and outside.penalty > 10.0
    assert outside.fitness > inside.fitness


def test_a_line_too_tight_for_the_steering_is_penalised() -> None:
    track = get_track("technical")
    lenient = LineEvaluator(track, LineConfig(control_spacing_m=0.3))
    zigzag = np.resize([1.0, -1.0], lenient.n_genes)
    est = lenient.estimate(zigzag)
    k_max = lenient.config.steering_factor * math.tan(lenient.config.car.max_steering_rad) / 0.165
    assert np.abs(est.curvature).max() > k_max
    assert est.penalty > 0


def test_the_smooth_line_drives_faster_than_the_centre_in_the_simulator(evaluator: LineEvaluator) -> None:
    track = evaluator.frame.track
    centre = evaluator.estimate(np.zeros(evaluator.n_genes))
    smooth = evaluator.estimate(smoothest_genes(evaluator))
    on_centre = replay(track, RaceLineDriver(track, centre.points, centre.speeds))
    on_smooth = replay(track, RaceLineDriver(track, smooth.points, smooth.speeds))
    baseline = replay(track, ExpertDriver(track))
    assert on_centre.clean and on_smooth.clean and baseline.clean
    assert smooth.lap_time < centre.lap_time
    assert on_smooth.best_lap is not None and on_centre.best_lap is not None and baseline.best_lap is not None
    assert on_smooth.best_lap < on_centre.best_lap < baseline.best_lap
    # The fast evaluator's flying lap is close to what the simulator measures.
    assert on_smooth.best_lap == pytest.approx(smooth.lap_time, rel=0.08)


def test_the_replay_fitness_scores_wheels_off_the_track() -> None:
    track = get_track("oval")
    exact = ReplayEvaluator(track)
    k = exact.n_genes
    assert exact(np.zeros(k))[0] == pytest.approx(
        replay(track, RaceLineDriver(track, *_line(exact, np.zeros(k))), laps=1).lap_times[0]
    )
    wide = LineEvaluator(track, LineConfig(margin_m=0.0))
    off = ReplayEvaluator(track, LineConfig(margin_m=0.0))
    est = wide.estimate(np.full(k, 1.0))  # along the left border: wheels over the line
    run = replay(track, RaceLineDriver(track, est.points, est.speeds), laps=1)
    assert run.wheels_off_steps > 0
    assert off(np.full(k, 1.0))[0] > sum(run.lap_times)


def _line(ev: LineEvaluator, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    est = ev.estimate(genes)
    return est.points, est.speeds
