"""Tracks in AWS DeepRacer's format and the geometry queries on them.

A track file is an ``N×6`` array of float metres: columns 0–1 the centre line, 2–3 the inner border,
4–5 the outer border, one row per waypoint; the track is closed when the first row equals the last.
Consecutive duplicate waypoints are dropped on load (DeepRacer's simulator does the same), so
waypoint indices match what DeepRacer hands a reward function.

Distances along the track (``s``) are metres along the centre line from waypoint 0, in the
waypoints' order (the driving direction). "Left" is left of that direction.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

MIN_WAYPOINTS = 4
_CLOSE_TOLERANCE_M = 1e-6


class TrackError(ValueError):
    """A track that cannot be used; the message names the file (or built-in) and the defect."""


@dataclass(frozen=True, slots=True)
class Projection:
    """Where a point lies relative to the centre line."""

    s: float  # metres along the centre line from waypoint 0, in [0, length)
    distance: float  # metres from the centre line (>= 0)
    lateral: float  # signed: > 0 left of the driving direction, < 0 right
    segment: int  # index i of the centre-line segment [i, i+1] holding the nearest point
    foot_x: float  # nearest point on the centre line
    foot_y: float


class Track:
    """A closed track: centre line and borders, with geometry queries.

    Build one with :func:`load_track`, :func:`get_track` or :meth:`Track.from_centerline`.
    """

    def __init__(
        self,
        name: str,
        waypoints: NDArray[np.floating],
        *,
        source: str | None = None,
        is_reversed: bool = False,
    ) -> None:
        self.name = name
        self.source = source or name
        self.is_reversed = is_reversed  # driven against the file's waypoint order
        rows = _validate(np.asarray(waypoints), self.source)
        self.waypoints: FloatArray = rows
        self.waypoints.setflags(write=False)
        self.center: FloatArray = rows[:, 0:2]
        self.inner: FloatArray = rows[:, 2:4]
        self.outer: FloatArray = rows[:, 4:6]
        # DeepRacer's lanes (where bot cars drive and resets put the car): halfway between the
        # centre line and the inner border, and the outer one.
        self.lanes: tuple[FloatArray, FloatArray] = (
            (self.center + self.inner) / 2,
            (self.center + self.outer) / 2,
        )
        # Centre-line segments (the last one ends on the closing row, a copy of row 0).
        self._a = self.center[:-1]
        self._d = self.center[1:] - self.center[:-1]
        self._seg_len: FloatArray = np.hypot(self._d[:, 0], self._d[:, 1])
        self._seg_len2 = self._seg_len**2
        self.cumulative: FloatArray = np.concatenate([[0.0], np.cumsum(self._seg_len)])
        self.length = float(self.cumulative[-1])
        # DeepRacer's normalised waypoint distances (the last one is exactly 1.0).
        self._ndists = [float(v) for v in self.cumulative[:-1] / self.length] + [1.0]
        widths = np.hypot(*(self.inner - self.outer).T)
        self.width = float(widths[:-1].mean())
        self.min_width = float(widths.min())
        x, y = self.center[:, 0], self.center[:, 1]
        self.area = 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))
        self.is_ccw = self.area > 0
        # Border segments for point-in-polygon and ray casting.
        self._rings = [self.inner, self.outer]
        edges = np.vstack([np.hstack([r[:-1], r[1:]]) for r in self._rings])
        self._ex0, self._ey0, ex1, self._ey1 = edges.T.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            self._eslope = np.where(self._ey1 != self._ey0, (ex1 - self._ex0) / (self._ey1 - self._ey0), 0.0)
        self._n_inner_edges = len(self.inner) - 1
        self._waypoint_tuples = [(float(px), float(py)) for px, py in self.center]
        self.min_half_width = self._min_half_width()

    def _min_half_width(self) -> float:
        """The least distance from the centre line to either border (sampled every 2 cm)."""
        samples = [np.linspace(0.0, self.length, max(8, int(self.length / 0.02)), endpoint=False)]
        idx = np.minimum(
            np.searchsorted(self.cumulative, samples[0], side="right") - 1, len(self._seg_len) - 1
        )
        t = (samples[0] - self.cumulative[idx]) / self._seg_len[idx]
        pts = self._a[idx] + t[:, None] * self._d[idx]
        best = np.inf
        for ring in self._rings:
            a = ring[:-1]
            d = ring[1:] - a
            len2 = np.maximum(d[:, 0] ** 2 + d[:, 1] ** 2, 1e-18)
            for chunk in np.array_split(pts, max(1, len(pts) // 256)):
                px = chunk[:, 0:1] - a[:, 0]
                py = chunk[:, 1:2] - a[:, 1]
                u = np.clip((px * d[:, 0] + py * d[:, 1]) / len2, 0.0, 1.0)
                dist2 = (px - u * d[:, 0]) ** 2 + (py - u * d[:, 1]) ** 2
                best = min(best, float(dist2.min()))
        return math.sqrt(best)

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def from_centerline(
        cls, name: str, center: NDArray[np.floating], width: float, *, source: str | None = None
    ) -> Track:
        """A track of constant ``width`` around a closed centre line (first point == last point not
        required; the closing row is added). The inner border is on the inside of the loop."""
        c = np.asarray(center, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != 2 or len(c) < MIN_WAYPOINTS:
            raise TrackError(f"{source or name}: a centre line needs at least {MIN_WAYPOINTS} (x, y) points")
        if np.allclose(c[0], c[-1]):
            c = c[:-1]
        tangent = np.roll(c, -1, axis=0) - np.roll(c, 1, axis=0)
        tangent /= np.hypot(tangent[:, 0], tangent[:, 1])[:, None]
        left = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        x, y = c[:, 0], c[:, 1]
        ccw = float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) > 0
        inward = left if ccw else -left
        rows = np.hstack([c, c + inward * width / 2, c - inward * width / 2])
        rows = np.vstack([rows, rows[:1]])
        return cls(name, rows, source=source)

    def reversed(self) -> Track:
        """The same track driven the other way (DeepRacer's reverse direction): rows in reverse
        order, inner and outer borders keep their names."""
        name = self.name.removesuffix("-reversed") if self.is_reversed else f"{self.name}-reversed"
        return Track(name, self.waypoints[::-1].copy(), source=self.source, is_reversed=not self.is_reversed)

    def __repr__(self) -> str:
        return (
            f"Track({self.name!r}, waypoints={len(self.waypoints)}, length={self.length:.2f} m, "
            f"width={self.width:.2f} m)"
        )

    # ---- queries -----------------------------------------------------------------------------

    @property
    def waypoint_list(self) -> list[tuple[float, float]]:
        """Centre-line waypoints as DeepRacer's ``params['waypoints']`` (closing point included)."""
        return self._waypoint_tuples

    def project(self, x: float, y: float) -> Projection:
        """The nearest point on the centre line to ``(x, y)``."""
        px = x - self._a[:, 0]
        py = y - self._a[:, 1]
        t = (px * self._d[:, 0] + py * self._d[:, 1]) / self._seg_len2
        np.maximum(t, 0.0, out=t)
        np.minimum(t, 1.0, out=t)
        ex = px - t * self._d[:, 0]
        ey = py - t * self._d[:, 1]
        dist2 = ex * ex + ey * ey
        i = int(np.argmin(dist2))
        ti = float(t[i])
        dx, dy = float(self._d[i, 0]), float(self._d[i, 1])
        cross = dx * float(py[i]) - dy * float(px[i])
        distance = math.sqrt(float(dist2[i]))
        s = float(self.cumulative[i]) + ti * float(self._seg_len[i])
        if s >= self.length:
            s -= self.length
        return Projection(
            s=s,
            distance=distance,
            lateral=distance if cross > 0 else -distance,
            segment=i,
            foot_x=float(self._a[i, 0]) + ti * dx,
            foot_y=float(self._a[i, 1]) + ti * dy,
        )

    def closest_waypoints(self, s: float) -> tuple[int, int]:
        """DeepRacer's ``closest_waypoints`` ``[prev, next]`` for a distance ``s`` along the track."""
        ndist = (s % self.length) / self.length
        nxt = bisect.bisect_right(self._ndists, ndist)
        prev = nxt - 1
        if prev == -1:
            prev = len(self._ndists) - 1
        if nxt == len(self._ndists):
            nxt = 0
        return prev, nxt

    def segment_at(self, s: float) -> tuple[int, float]:
        """The centre-line segment holding distance ``s`` and the fraction along it."""
        s %= self.length
        i = min(int(np.searchsorted(self.cumulative, s, side="right")) - 1, len(self._seg_len) - 1)
        return i, (s - float(self.cumulative[i])) / float(self._seg_len[i])

    def point_at(self, s: float) -> tuple[float, float]:
        """The centre-line point at distance ``s`` (wraps around)."""
        i, t = self.segment_at(s)
        return (
            float(self._a[i, 0] + t * self._d[i, 0]),
            float(self._a[i, 1] + t * self._d[i, 1]),
        )

    def heading_at(self, s: float) -> float:
        """Direction of travel (radians, counter-clockwise from +x) of the centre line at ``s``."""
        i, _ = self.segment_at(s)
        return math.atan2(float(self._d[i, 1]), float(self._d[i, 0]))

    def border_points(self, x: float, y: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """DeepRacer's nearest inner and outer border points: the points of each border nearest to
        the centre-line point nearest to ``(x, y)``."""
        p = self.project(x, y)
        return (
            _nearest_on_polyline(self.inner, p.foot_x, p.foot_y),
            _nearest_on_polyline(self.outer, p.foot_x, p.foot_y),
        )

    def width_at(self, x: float, y: float) -> float:
        """DeepRacer's ``track_width`` at ``(x, y)``: distance between the nearest border points."""
        (ix, iy), (ox, oy) = self.border_points(x, y)
        return math.hypot(ix - ox, iy - oy)

    def on_track(self, points: NDArray[np.floating]) -> NDArray[np.bool_]:
        """For each ``(x, y)`` row: inside the road (between the borders, the borders included)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        px = pts[:, 0:1]
        py = pts[:, 1:2]
        # Even-odd rule over both borders at once: inside the outer ring xor inside the inner one.
        crossings = ((self._ey0 > py) != (self._ey1 > py)) & (
            px < self._ex0 + (py - self._ey0) * self._eslope
        )
        return np.asarray(crossings.sum(axis=1) % 2 == 1)

    def curvature(self) -> FloatArray:
        """Signed curvature (1/m, > 0 turning left) at each waypoint (closing row excluded)."""
        c = self.center[:-1]
        prev, nxt = np.roll(c, 1, axis=0), np.roll(c, -1, axis=0)
        a = c - prev
        b = nxt - c
        cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
        la = np.hypot(a[:, 0], a[:, 1])
        lb = np.hypot(b[:, 0], b[:, 1])
        lc = np.hypot(*(nxt - prev).T)
        # Menger curvature: 4·area / (|a||b||c|) = 2·cross / (|a||b||c|)
        return np.asarray(2.0 * cross / np.maximum(la * lb * lc, 1e-12), dtype=np.float64)

    def bounds(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of both borders, grown by ``margin`` metres."""
        pts = np.vstack([self.inner, self.outer, self.center])
        lo = pts.min(axis=0) - margin
        hi = pts.max(axis=0) + margin
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def border_segments(self) -> FloatArray:
        """All border segments as rows ``(x0, y0, x1, y1)`` (for ray casting)."""
        segs = [np.hstack([r[:-1], r[1:]]) for r in self._rings]
        return np.vstack(segs)


# ---- loading -----------------------------------------------------------------------------------


def resample_closed(points: FloatArray, spacing: float) -> FloatArray:
    """Points evenly spaced by arc length along a densely sampled closed curve (no closing point)."""
    closed = np.vstack([points, points[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(8, round(cum[-1] / spacing))
    s = np.linspace(0.0, cum[-1], n, endpoint=False)
    return np.stack([np.interp(s, cum, closed[:, 0]), np.interp(s, cum, closed[:, 1])], axis=1)


def load_track(path: str | Path, name: str | None = None) -> Track:
    """Load a DeepRacer ``.npy`` track file. Raises :class:`TrackError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise TrackError(f"{p}: no such track file")
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for a file that is not .npy
        raise TrackError(f"{p}: not a NumPy .npy array ({exc})") from None
    return Track(name or p.stem, data, source=str(p))


def _validate(data: NDArray[np.generic], source: str) -> FloatArray:
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise TrackError(f"{source}: waypoints must be real numbers, got dtype {data.dtype}")
    if data.ndim != 2 or data.shape[1] != 6:
        raise TrackError(
            f"{source}: expected an N×6 array (centre x, y, inner x, y, outer x, y), got shape {data.shape}"
        )
    rows = data.astype(np.float64)
    if not np.isfinite(rows).all():
        r, c = np.argwhere(~np.isfinite(rows))[0]
        raise TrackError(f"{source}: non-finite value (NaN or inf) at row {r}, column {c}")
    if len(rows) < MIN_WAYPOINTS + 1:
        raise TrackError(f"{source}: a track needs at least {MIN_WAYPOINTS + 1} rows, got {len(rows)}")
    if not np.allclose(rows[0], rows[-1], rtol=0.0, atol=_CLOSE_TOLERANCE_M):
        raise TrackError(
            f"{source}: the track is open (its first row must equal its last row to close the loop)"
        )
    # Drop consecutive duplicate centre points (keeping the closing row), as DeepRacer does.
    seg = np.hypot(*np.diff(rows[:, 0:2], axis=0).T)
    keep = np.concatenate([[True], seg > 1e-9])
    keep[-1] = True
    rows = rows[keep]
    if np.hypot(*(rows[-1, 0:2] - rows[-2, 0:2])) <= 1e-9:
        rows = np.delete(rows, -2, axis=0)
    rows[-1] = rows[0]
    if len(rows) < MIN_WAYPOINTS + 1:
        raise TrackError(f"{source}: fewer than {MIN_WAYPOINTS} distinct waypoints")
    for label, cols in (("inner border", slice(2, 4)), ("outer border", slice(4, 6))):
        hit = _self_crossing(rows[:, cols])
        if hit is not None:
            raise TrackError(f"{source}: the {label} crosses itself (segments {hit[0]} and {hit[1]})")
    hit = _crossing(rows[:, 2:4], rows[:, 4:6])
    if hit is not None:
        raise TrackError(
            f"{source}: the inner and outer borders cross (inner segment {hit[0]}, outer segment {hit[1]})"
        )
    return rows


def _segments_cross(a0: FloatArray, a1: FloatArray, b0: FloatArray, b1: FloatArray) -> NDArray[np.bool_]:
    """Proper crossings between every segment of A (rows) and of B (columns)."""

    def orient(p: FloatArray, q: FloatArray, r: FloatArray) -> FloatArray:
        return (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
            r[..., 0] - p[..., 0]
        )

    A0, A1 = a0[:, None, :], a1[:, None, :]
    B0, B1 = b0[None, :, :], b1[None, :, :]
    o1 = orient(A0, A1, B0)
    o2 = orient(A0, A1, B1)
    o3 = orient(B0, B1, A0)
    o4 = orient(B0, B1, A1)
    return np.asarray((o1 * o2 < 0) & (o3 * o4 < 0))


def _self_crossing(ring: FloatArray) -> tuple[int, int] | None:
    n = len(ring) - 1
    cross = _segments_cross(ring[:-1], ring[1:], ring[:-1], ring[1:])
    idx = np.arange(n)
    near = np.abs(idx[:, None] - idx[None, :])
    cross &= (near > 1) & (near < n - 1)  # neighbours share an endpoint
    hits = np.argwhere(np.triu(cross))
    return (int(hits[0, 0]), int(hits[0, 1])) if len(hits) else None


def _crossing(a: FloatArray, b: FloatArray) -> tuple[int, int] | None:
    hits = np.argwhere(_segments_cross(a[:-1], a[1:], b[:-1], b[1:]))
    return (int(hits[0, 0]), int(hits[0, 1])) if len(hits) else None


def _nearest_on_polyline(line: FloatArray, x: float, y: float) -> tuple[float, float]:
    a = line[:-1]
    d = line[1:] - a
    len2 = np.maximum(d[:, 0] ** 2 + d[:, 1] ** 2, 1e-18)
    t = np.clip(((x - a[:, 0]) * d[:, 0] + (y - a[:, 1]) * d[:, 1]) / len2, 0.0, 1.0)
    fx = a[:, 0] + t * d[:, 0]
    fy = a[:, 1] + t * d[:, 1]
    i = int(np.argmin((fx - x) ** 2 + (fy - y) ** 2))
    return float(fx[i]), float(fy[i])
