"""Tracks: geometry against hand-computed values, loading errors, built-ins and the resolver."""

import math
from pathlib import Path

import numpy as np
import pytest

from firmware.sim.track import Track, TrackError, load_track
from firmware.sim.tracks import builtin_track, builtin_track_names, get_track
from tests.firmware.sim.conftest import rectangle_rows


def test_rectangle_length_width_area_and_direction(rectangle: Track) -> None:
    assert rectangle.length == pytest.approx(12.0)
    assert rectangle.is_ccw
    assert rectangle.area == pytest.approx(8.0)
    # Rows: four mid-side rows 1.0 m wide, four corner rows √2 m (diagonal offsets).
    assert rectangle.width == pytest.approx((4 * 1.0 + 4 * math.sqrt(2)) / 8)
    assert rectangle.min_width == pytest.approx(1.0)
    assert rectangle.min_half_width == pytest.approx(0.5, abs=1e-9)
    assert rectangle.bounds() == pytest.approx((-0.5, -0.5, 4.5, 2.5))


@pytest.mark.parametrize(
    ("x", "y", "s", "distance", "lateral", "segment"),
    [
        (2.0, 0.3, 2.0, 0.3, 0.3, 0),  # bottom side, inside: left of +x travel
        (3.0, -0.2, 3.0, 0.2, -0.2, 1),  # bottom side, outside: right
        (4.25, 1.5, 5.5, 0.25, -0.25, 3),  # right side going up, outside is +x = right
        (1.0, 1.9, 9.0, 0.1, 0.1, 5),  # top side going -x, inside (below) is left
        (0.1, 0.5, 11.5, 0.1, 0.1, 7),  # left side going down, inside (+x) is left
    ],
)
def test_projection_against_hand_values(
    rectangle: Track, x: float, y: float, s: float, distance: float, lateral: float, segment: int
) -> None:
    p = rectangle.project(x, y)
    assert p.s == pytest.approx(s)
    assert p.distance == pytest.approx(distance)
    assert p.lateral == pytest.approx(lateral)
    assert p.segment == segment


@pytest.mark.parametrize(
    ("s", "expected"),
    [(0.5, (0, 1)), (2.0, (1, 2)), (3.99, (1, 2)), (4.5, (2, 3)), (11.5, (7, 8)), (12.0, (0, 1))],
)
def test_closest_waypoints_are_deepracers_prev_next(
    rectangle: Track, s: float, expected: tuple[int, int]
) -> None:
    # DeepRacer: bisect_right over the normalised waypoint distances [0, 1/6, 1/3, 5/12, …, 1].
    assert rectangle.closest_waypoints(s) == expected


def test_points_headings_and_wrapping(rectangle: Track) -> None:
    assert rectangle.point_at(5.0) == pytest.approx((4.0, 1.0))
    assert rectangle.point_at(13.0) == pytest.approx((1.0, 0.0))  # wraps
    assert rectangle.heading_at(1.0) == pytest.approx(0.0)
    assert rectangle.heading_at(5.0) == pytest.approx(math.pi / 2)
    assert abs(rectangle.heading_at(8.0)) == pytest.approx(math.pi)
    assert rectangle.heading_at(11.0) == pytest.approx(-math.pi / 2)


def test_on_track_and_track_width(rectangle: Track) -> None:
    pts = np.array([[2, 0.3], [2, 0.6], [2, -0.6], [4.4, 1.0], [2.0, 1.0], [-0.4, 2.4], [5, 5]])
    assert rectangle.on_track(pts).tolist() == [True, False, False, True, False, True, False]
    assert rectangle.width_at(2.0, 0.2) == pytest.approx(1.0)
    (ix, iy), (ox, oy) = rectangle.border_points(3.0, 0.1)
    assert (ix, iy) == pytest.approx((3.0, 0.5))
    assert (ox, oy) == pytest.approx((3.0, -0.5))


def test_curvature_of_a_circle() -> None:
    theta = np.linspace(0, 2 * math.pi, 200, endpoint=False)
    circle = Track.from_centerline("circle", np.stack([2 * np.cos(theta), 2 * np.sin(theta)], 1), 0.6)
    assert circle.is_ccw
    assert circle.curvature() == pytest.approx(np.full(200, 0.5), rel=1e-3)
    # The inner border is inside the loop.
    assert np.hypot(*circle.inner[0]) == pytest.approx(1.7)
    assert circle.length == pytest.approx(2 * math.pi * 2, rel=1e-3)


def test_reversed_track_keeps_border_names_and_flips_direction(rectangle: Track) -> None:
    back = rectangle.reversed()
    assert back.is_reversed and not back.is_ccw
    assert back.length == pytest.approx(rectangle.length)
    assert back.inner[1] == pytest.approx(rectangle.inner[-2])
    assert back.reversed().name == "rectangle" and not back.reversed().is_reversed


# ---- loading ---------------------------------------------------------------------------------


def _save(tmp_path: Path, name: str, data: np.ndarray) -> Path:
    path = tmp_path / name
    np.save(path, data)
    return path


def test_loads_a_file_and_drops_duplicate_waypoints(tmp_path: Path) -> None:
    rows = rectangle_rows()
    rows = np.insert(rows, 2, rows[1], axis=0)  # a repeated waypoint, as some DeepRacer files have
    track = load_track(_save(tmp_path, "rect.npy", rows))
    assert track.name == "rect"
    assert len(track.waypoints) == 9
    assert track.length == pytest.approx(12.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((10, 4)), "expected an N×6 array"),
        (np.zeros(6), "expected an N×6 array"),
        (rectangle_rows()[:-1], "track is open"),
        (np.where(np.arange(54).reshape(9, 6) == 14, np.nan, rectangle_rows()), "non-finite value"),
        (rectangle_rows()[:3].repeat(1, axis=0), "at least"),
    ],
)
def test_bad_files_are_clear_errors_naming_the_file(tmp_path: Path, data: np.ndarray, message: str) -> None:
    path = _save(tmp_path, "bad.npy", data)
    with pytest.raises(TrackError, match=message) as info:
        load_track(path)
    assert str(path) in str(info.value)


def test_crossing_borders_are_rejected(tmp_path: Path) -> None:
    rows = rectangle_rows()
    rows[2, 4:6] = (3.0, 1.2)  # pull an outer corner through the inner border
    path = _save(tmp_path, "crossed.npy", rows)
    with pytest.raises(TrackError, match="cross") as info:
        load_track(path)
    assert str(path) in str(info.value)
    rows = rectangle_rows()
    rows[[1, 5], 2:4] = rows[[5, 1], 2:4]  # the inner border jumps across the loop and back
    with pytest.raises(TrackError, match="inner border crosses itself"):
        load_track(_save(tmp_path, "twisted.npy", rows))


def test_missing_and_non_npy_files(tmp_path: Path) -> None:
    with pytest.raises(TrackError, match="no such track file"):
        load_track(tmp_path / "nope.npy")
    junk = tmp_path / "junk.npy"
    junk.write_text("not an array")
    with pytest.raises(TrackError, match=r"junk\.npy: not a NumPy"):
        load_track(junk)


def test_every_reference_track_loads(tracks_dir: Path) -> None:
    files = sorted(tracks_dir.glob("*.npy"))
    assert files
    for path in files:
        track = load_track(path)
        assert track.length > 10
        assert 0.5 < track.width < 1.5
        assert track.on_track(track.center).all()


# ---- built-ins and the resolver ---------------------------------------------------------------


def test_at_least_three_builtins_valid_and_drivable() -> None:
    names = builtin_track_names()
    assert len(names) >= 3
    for name in names:
        track = builtin_track(name)
        assert track.name == name
        assert track.is_ccw
        assert 15 < track.length < 40
        # Tight enough to be interesting, never tighter than the inner border allows.
        assert 1 / np.abs(track.curvature()).max() > track.width / 2 + 0.2
        assert track.min_half_width == pytest.approx(track.width / 2, abs=0.01)


def test_get_track_resolves_names_paths_and_tracks(tmp_path: Path, rectangle: Track) -> None:
    assert get_track("oval") is builtin_track("oval")
    assert get_track("oval-reversed").is_reversed
    assert get_track(rectangle) is rectangle
    path = _save(tmp_path, "rect.npy", rectangle_rows())
    assert get_track(path).name == "rect"
    assert get_track(str(path)).length == pytest.approx(12.0)
    with pytest.raises(TrackError, match="oval, s-curve, technical"):
        get_track("monaco")
