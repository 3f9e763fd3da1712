"""The racing line's file and its driver, as the car daemon's race-line pilot reads them."""

from pathlib import Path

import numpy as np
import pytest

from firmware.sim import get_track
from firmware.sim.race_line import LineFileError, RaceLineDriver, line_csv, read_line


def _circle(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[np.cos(a), np.sin(a)], 1.0 + 0.5 * np.sin(a) ** 2


def test_a_written_line_reads_back(tmp_path: Path) -> None:
    points, speeds = _circle()
    path = tmp_path / "line.csv"
    path.write_text(line_csv(points, speeds, np.zeros(len(points)), np.ones(len(points))))
    line = read_line(path)
    assert np.allclose(line.points, points, atol=1e-5) and np.allclose(line.speeds, speeds, atol=1e-5)
    assert path.read_text().splitlines()[0] == "s,x,y,offset_m,speed_mps,curvature"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,b\n1,2\n", "not a racing line"),
        ("x,y,speed_mps\n0,0,1\n1,0,1\n", "at least 4 rows"),
        ("x,y,speed_mps\n0,0,1\n1,0,0\n1,1,1\n0,1,1\n", "speeds > 0"),
    ],
)
def test_a_bad_line_file_is_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "line.csv"
    path.write_text(text)
    with pytest.raises(LineFileError, match=match):
        read_line(path)
    with pytest.raises(LineFileError, match="cannot read"):
        read_line(tmp_path / "missing.csv")


def test_the_driver_takes_the_files_speeds(tmp_path: Path) -> None:
    track = get_track("oval")
    points = track.center[:-1]
    speeds = np.full(len(points), 1.5)
    path = tmp_path / "line.csv"
    path.write_text(line_csv(points, speeds, np.zeros(len(points)), np.zeros(len(points))))
    driver = RaceLineDriver.from_file(track, path)
    assert np.allclose(driver.speed_profile, 1.5)
