"""The genome and its fitness: a racing line as lateral offsets at control points round the track.

A genome is ``K`` numbers in ``[-1, 1]``, one per control point spaced evenly along the centre line:
``0`` is the centre, ``+1`` the left edge of the usable road, ``-1`` the right edge (the usable road
stops ``margin_m`` short of each border, so the car's wheels stay on the track). A periodic cubic
spline through the control points gives the offset at every sample along the track, so the line is
smooth and closed. The speed profile is the fastest the car can drive that line within its limits:

* cornering: ``v = sqrt(lateral_accel / |curvature|)``, and a curvature beyond what the steering
  can turn (``tan(max_steering) / wheelbase``) is penalised;
* top speed, acceleration and braking from :class:`firmware.sim.physics.VehicleSpec`, derated by
  ``accel_factor`` / ``brake_factor`` because the simulated car follows its throttle with a lag.

The fitness is the lap time of that profile (seconds, lower is better) plus penalties for the line
leaving the usable road. Everything is numpy along the line (no Python loop over samples), and
it is a pure function of the genes: the same genome gives the same lap time bit for bit, whichever
batch or worker it is evaluated in.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from firmware.sim.physics import VehicleSpec
from firmware.sim.track import Track

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LineConfig:
    """How a genome becomes a line and a lap time. Distances in m, speeds in m/s, accelerations m/s²."""

    control_spacing_m: float = 0.5  # between control points (the genome has length / spacing genes)
    sample_spacing_m: float = 0.05  # between samples of the line
    margin_m: float = 0.20  # kept free to each border: half the car's track, the pursuit's corner cut, slack
    lateral_accel: float = 4.0  # the grip the speed profile assumes in bends
    accel_factor: float = 0.6  # of VehicleSpec.max_accel the profile uses (the throttle lag costs the rest)
    brake_factor: float = 0.6  # of VehicleSpec.max_brake
    speed_factor: float = 1.0  # of VehicleSpec.max_speed
    steering_factor: float = 0.8  # of the tightest curvature the steering can turn
    curvature_window_m: float = 0.25  # curvature is measured between points this far apart
    off_track_penalty_s_per_m: float = 20.0  # per metre of line outside the usable road
    steering_penalty_s_per_m: float = 20.0  # per metre of line tighter than the steering allows
    car: VehicleSpec = field(default_factory=VehicleSpec)

    def __post_init__(self) -> None:
        positive = (
            "control_spacing_m",
            "sample_spacing_m",
            "lateral_accel",
            "accel_factor",
            "brake_factor",
            "speed_factor",
            "steering_factor",
            "curvature_window_m",
        )
        for name in positive:
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"LineConfig.{name} must be positive, got {value}")
        if self.control_spacing_m < 4 * self.sample_spacing_m:
            raise ValueError("LineConfig.control_spacing_m must be at least 4 sample spacings")
        if not self.margin_m >= 0:
            raise ValueError("LineConfig.margin_m must be >= 0")
        for name in ("accel_factor", "brake_factor", "speed_factor", "steering_factor"):
            if getattr(self, name) > 1.0:
                raise ValueError(f"LineConfig.{name} must be <= 1 (a fraction of the car's limit)")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LineConfig:
        values = dict(data)
        car = values.pop("car", None)
        car_config = VehicleSpec(**car) if isinstance(car, dict) else VehicleSpec()
        return cls(**values, car=car_config)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class LapEstimate:
    """One genome's line, profile and lap time as the fast evaluator sees it."""

    points: FloatArray  # (N, 2) the line, closed implicitly (the last point joins the first)
    offsets: FloatArray  # (N,) metres left of the centre line (negative: right)
    speeds: FloatArray  # (N,) m/s
    curvature: FloatArray  # (N,) 1/m, > 0 turning left
    lap_time: float  # s, without penalties
    penalty: float  # s
    off_track_m: float  # metres of line outside the usable road

    @property
    def fitness(self) -> float:
        return self.lap_time + self.penalty


class TrackFrame:
    """The track sampled for the evaluator: centre points and the vectors to each usable edge."""

    def __init__(self, track: Track, config: LineConfig) -> None:
        self.track = track
        self.config = config
        n = max(64, round(track.length / config.sample_spacing_m))
        self.s: FloatArray = np.linspace(0.0, track.length, n, endpoint=False)
        idx = np.minimum(np.searchsorted(track.cumulative, self.s, side="right") - 1, len(track.center) - 2)
        t = ((self.s - track.cumulative[idx]) / np.diff(track.cumulative)[idx])[:, None]

        def along(ring: FloatArray) -> FloatArray:
            return np.asarray(ring[idx] + t * (ring[idx + 1] - ring[idx]), dtype=np.float64)

        self.center = along(track.center)
        left_ring, right_ring = (track.inner, track.outer) if track.is_ccw else (track.outer, track.inner)
        to_left = along(left_ring) - self.center
        to_right = along(right_ring) - self.center
        # Scale each edge vector so that ±1 stops margin_m short of the border.
        self.to_left = to_left * _usable(to_left, config.margin_m)
        self.to_right = to_right * _usable(to_right, config.margin_m)
        self.n_genes = max(8, round(track.length / config.control_spacing_m))
        self.spline = periodic_spline_matrix(self.n_genes, n)


def _usable(edge: FloatArray, margin: float) -> FloatArray:
    width = np.hypot(edge[:, 0], edge[:, 1])
    return np.asarray(np.clip((width - margin) / np.maximum(width, 1e-9), 0.0, 1.0)[:, None])


def periodic_spline_matrix(n_control: int, n_samples: int) -> FloatArray:
    """``(n_samples, n_control)``: dense values = matrix @ control values, for a periodic cubic spline
    through ``n_control`` evenly spaced control points sampled at ``n_samples`` evenly spaced points."""
    from scipy.interpolate import CubicSpline

    knots = np.arange(n_control + 1, dtype=np.float64)
    basis = np.vstack([np.eye(n_control), np.eye(n_control)[:1]])
    spline = CubicSpline(knots, basis, bc_type="periodic", axis=0)
    at = np.linspace(0.0, float(n_control), n_samples, endpoint=False)
    return np.asarray(spline(at), dtype=np.float64)


def _curvature(points: NDArray[np.float64], h: int) -> NDArray[np.float64]:
    """Signed Menger curvature of closed lines ``(B, N, 2)`` from points ``h`` samples either side."""
    a, b, c = np.roll(points, h, axis=1), points, np.roll(points, -h, axis=1)
    ab, bc, ac = b - a, c - b, c - a
    cross = ab[..., 0] * bc[..., 1] - ab[..., 1] * bc[..., 0]
    norm = np.hypot
    denom = norm(ab[..., 0], ab[..., 1]) * norm(bc[..., 0], bc[..., 1]) * norm(ac[..., 0], ac[..., 1])
    return np.asarray(2.0 * cross / np.maximum(denom, 1e-12))


def _limit_changes(u: FloatArray, ds: FloatArray, accel: float) -> FloatArray:
    """Speeds² ``u`` (B, N) lowered so that ``u[i] <= u[i-1] + 2·accel·ds[i-1]`` round the loop.

    The recurrence ``u[i] = min(c[i], u[i-1] + 2a·ds)`` has the closed form
    ``2a·S[i] + cummin(c - 2a·S)[i]`` (S: distance travelled), so it runs as one cumulative minimum
    over the whole batch; one lap of history is enough (a constraint from further back is weaker),
    so two laps are tiled and the second is kept.
    """
    n = u.shape[1]
    steps = np.concatenate([np.zeros((len(u), 1)), np.tile(ds, (1, 2))[:, :-1]], axis=1)
    dist = np.cumsum(steps, axis=1)
    cap = np.tile(u, (1, 2))
    out = 2 * accel * dist + np.minimum.accumulate(cap - 2 * accel * dist, axis=1)
    return np.asarray(out[:, n:])


_FRAMES: dict[str, TrackFrame] = {}


class LineEvaluator:
    """The fitness function, picklable (it carries the track's waypoints, not a file name), so a Dask
    worker on another machine rebuilds the same geometry. Call it with one genome, or use
    :meth:`evaluate_batch` for many at once."""

    def __init__(self, track: Track, config: LineConfig | None = None) -> None:
        self.track_name = track.name
        self.waypoints = np.asarray(track.waypoints, dtype=np.float64)
        self.config = config or LineConfig()

    def __getstate__(self) -> dict[str, object]:
        return {"track_name": self.track_name, "waypoints": self.waypoints, "config": self.config}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)

    @cached_property
    def frame(self) -> TrackFrame:
        # A worker unpickles a fresh evaluator with every task: build each track's frame once.
        key = self.fingerprint()
        frame = _FRAMES.get(key)
        if frame is None:
            if len(_FRAMES) >= 8:
                _FRAMES.pop(next(iter(_FRAMES)))
            frame = _FRAMES[key] = TrackFrame(Track(self.track_name, self.waypoints), self.config)
        return frame

    @property
    def n_genes(self) -> int:
        return self.frame.n_genes

    def fingerprint(self) -> str:
        """A short hash of the track and the config: a checkpoint belongs to one fingerprint."""
        digest = hashlib.sha256(self.waypoints.tobytes())
        digest.update(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        return digest.hexdigest()[:16]

    def __call__(self, genes: NDArray[np.floating] | list[float]) -> tuple[float]:
        """DEAP's evaluate: a one-element fitness tuple (lap time + penalties, seconds)."""
        return (float(self.evaluate_batch(np.asarray(genes, dtype=np.float64)[None, :])[0]),)

    def evaluate_batch(self, genes: NDArray[np.floating]) -> FloatArray:
        """Fitness (s) of each row of ``genes`` ``(B, K)``.

        One genome at a time, each vectorised along its line: a matrix product's rounding depends
        on the batch's shape, and a genome's fitness must not depend on which chunk it came in."""
        rows = np.asarray(genes, dtype=np.float64)
        out = np.empty(len(rows))
        for i in range(len(rows)):
            lap, penalty, _ = self._laps(rows[i : i + 1])
            out[i] = lap[0] + penalty[0]
        return out

    def estimate(self, genes: NDArray[np.floating] | list[float]) -> LapEstimate:
        """Everything about one genome: its line, offsets, speed profile and lap time."""
        g = np.asarray(genes, dtype=np.float64)[None, :]
        lap, penalty, parts = self._laps(g)
        return LapEstimate(
            points=parts["points"][0],
            offsets=parts["offsets"][0],
            speeds=np.sqrt(parts["u"][0]),
            curvature=parts["curvature"][0],
            lap_time=float(lap[0]),
            penalty=float(penalty[0]),
            off_track_m=float(parts["off_track_m"][0]),
        )

    def _laps(self, genes: FloatArray) -> tuple[FloatArray, FloatArray, dict[str, FloatArray]]:
        f, c = self.frame, self.config
        if genes.ndim != 2 or genes.shape[1] != f.n_genes:
            raise ValueError(f"expected genomes of {f.n_genes} genes, got shape {genes.shape}")
        dense = genes @ f.spline.T  # (B, N)
        side = np.where(dense[..., None] >= 0, f.to_left, f.to_right)
        points = f.center + np.abs(dense)[..., None] * side
        seg = np.roll(points, -1, axis=1) - points
        ds = np.hypot(seg[..., 0], seg[..., 1])  # (B, N): sample i to i+1
        h = max(1, round(c.curvature_window_m / c.sample_spacing_m))
        kappa = _curvature(points, h)
        car = c.car
        v_top = car.max_speed * c.speed_factor
        u = np.minimum(v_top**2, c.lateral_accel / np.maximum(np.abs(kappa), 1e-9))
        u = _limit_changes(u, ds, car.max_accel * c.accel_factor)
        back = np.roll(ds[:, ::-1], -1, axis=1)  # the same steps, driven backwards
        u = _limit_changes(u[:, ::-1], back, car.max_brake * c.brake_factor)[:, ::-1]
        v = np.sqrt(u)
        lap = np.sum(2.0 * ds / np.maximum(v + np.roll(v, -1, axis=1), 1e-6), axis=1)
        off = np.maximum(np.abs(dense) - 1.0, 0.0) * np.hypot(side[..., 0], side[..., 1])
        off_m = np.sum(ds * (off > 0), axis=1) + np.sum(off, axis=1) * c.sample_spacing_m
        k_max = c.steering_factor * math.tan(car.max_steering_rad) / car.wheelbase
        tight_m = np.sum(ds * (np.abs(kappa) > k_max), axis=1)
        penalty = c.off_track_penalty_s_per_m * off_m + c.steering_penalty_s_per_m * tight_m
        offsets = np.sign(dense) * np.abs(dense) * np.hypot(side[..., 0], side[..., 1])
        parts = {"points": points, "offsets": offsets, "u": u, "curvature": kappa, "off_track_m": off_m}
        return lap, penalty, parts


def smoothest_genes(evaluator: LineEvaluator, iterations: int = 400) -> FloatArray:
    """A low-curvature line as genes: the centre line relaxed towards the average of its neighbours
    and held inside the usable road, then fitted to the control points (least squares). A good
    starting point for the evolution (the line is smooth, not yet fast)."""
    f = evaluator.frame
    h = max(1, round(0.3 / evaluator.config.sample_spacing_m))
    g = np.zeros(len(f.s))
    for _ in range(iterations):
        side = np.where(g[:, None] >= 0, f.to_left, f.to_right)
        points = f.center + np.abs(g)[:, None] * side
        relaxed = 0.5 * (np.roll(points, h, axis=0) + np.roll(points, -h, axis=0))
        # Lateral coordinate of the relaxed points: project onto each side's edge vector.
        delta = relaxed - f.center
        left = np.sum(delta * f.to_left, axis=1) / np.maximum(np.sum(f.to_left**2, axis=1), 1e-12)
        right = np.sum(delta * f.to_right, axis=1) / np.maximum(np.sum(f.to_right**2, axis=1), 1e-12)
        g = np.clip(np.where(left >= 0, left, -right), -1.0, 1.0)
    genes, *_ = np.linalg.lstsq(f.spline, g, rcond=None)
    # The spline overshoots between control points: shrink until the whole line is usable road.
    overshoot = max(1.0, float(np.abs(f.spline @ genes).max()))
    return np.asarray(np.clip(genes / overshoot, -1.0, 1.0))
