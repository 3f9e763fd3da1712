"""The release as a user gets it: script/build's wheel installed into a fresh virtual environment.

The environment has no system site-packages and only the ``sim`` extra, so anything the commands
import without declaring it, or any data file the wheel forgets, fails here. Dependencies come from
a local wheelhouse (``PADDOCK_WHEELHOUSE``, filled by ``script/setup dev`` or on first use), so the
test measures paddock's install, not the network.
"""

import os
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

import schemas
from schemas.release import DISTRIBUTION, WHEEL_NAME

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = Path(os.environ.get("PADDOCK_WHEELHOUSE", Path.home() / ".cache" / "paddock" / "wheelhouse"))

pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload,no-any-return]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = os.environ | {"PYTHON": sys.executable, "PADDOCK_BUILD_FLAGS": "--no-isolation"}
    t0 = time.monotonic()
    done = _run([str(ROOT / "script" / "build"), str(out)], env=env)
    print(f"script/build: {time.monotonic() - t0:.1f} s")
    assert done.returncode == 0, done.stderr
    return out


def test_the_distribution_is_ours_and_the_version_has_one_source() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "paddock-fleet"
    assert project["scripts"] == {"paddock": "deploy.cli:main"}
    extras = project["optional-dependencies"]
    self_refs = [r for reqs in extras.values() for r in reqs if r.startswith("paddock")]
    assert self_refs and all(r.startswith("paddock-fleet[") for r in self_refs)


def test_wheel_and_sdist_carry_every_data_file(release: Path) -> None:
    tracked = _run(
        ["git", "ls-files", "schemas", "infra", "firmware", "edge", "hub", "trainer", "deploy"], cwd=ROOT
    )
    data = {p for p in tracked.stdout.split() if not p.endswith(".py")}
    assert {"deploy/systemd/paddock-car.service", "schemas/json/telemetry.schema.json"} <= data
    wheel = zipfile.ZipFile(release / WHEEL_NAME).namelist()
    with tarfile.open(release / f"paddock_fleet-{schemas.__version__}.tar.gz") as tar:
        sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert data - set(wheel) == set()
    assert data - sdist == set()
    assert any(n.startswith("deploy/grafana/dashboards/") for n in wheel)


def _fresh_venv(path: Path, wheel: Path) -> Path:
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    python = path / "bin" / "python"
    # This environment's pip installs into the new one; --no-compile: byte-compiling OpenCV and
    # matplotlib would be most of the time, and Python compiles what it imports anyway.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile"]
    spec = f"{wheel}[sim]"
    done = _run([*pip, "--no-index", "--find-links", str(WHEELHOUSE), spec])
    if done.returncode != 0:  # first use, or pyproject changed: fill the wheelhouse once
        fetched = _run([sys.executable, "-m", "pip", "download", "-q", "-d", str(WHEELHOUSE), spec])
        assert fetched.returncode == 0, fetched.stderr
        done = _run([*pip, "--no-index", "--find-links", str(WHEELHOUSE), spec])
    assert done.returncode == 0, done.stderr
    return path / "bin"


def test_fresh_environment_runs_the_commands(release: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    bin_dir = _fresh_venv(tmp_path / "venv", release / WHEEL_NAME)
    print(f"fresh venv with {WHEEL_NAME}[sim]: {time.monotonic() - t0:.1f} s")
    # Away from the checkout and with no PYTHONPATH, so only the installed wheel can answer.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "HOME": str(tmp_path),
        "PATH": f"{bin_dir}:/usr/bin:/bin",
    }
    paddock = str(bin_dir / "paddock")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        t = time.monotonic()
        done = _run([paddock, *args], cwd=tmp_path, env=env)
        print(f"paddock {' '.join(args)}: {time.monotonic() - t:.1f} s, exit {done.returncode}")
        return done

    lookup = f"import importlib.metadata as m; print(m.version({DISTRIBUTION!r}))"
    version = _run([str(bin_dir / "python"), "-c", lookup], env=env)
    assert version.stdout.strip() == schemas.__version__
    helped = run("--help")
    assert helped.returncode == 0, helped.stderr
    assert "car" in helped.stdout and "sim" in helped.stdout
    assert f"{WHEEL_NAME}[all]" in " ".join(helped.stdout.split()).replace("\\", "")  # the hint is real
    example = run("car", "config", "--example", "--car-id", "fresh-1")
    assert example.returncode == 0, example.stderr
    config = tmp_path / "car.toml"
    config.write_text(example.stdout)
    checked = run("car", "config", "--check", str(config))
    assert checked.returncode == 0, checked.stderr
    assert '"fresh-1"' in checked.stdout
    # the actuators plugins came with the wheel's entry points, DonkeyCar's board among them
    config.write_text(example.stdout.replace('kind = "pwm"', 'kind = "pca9685"', 1))
    board = run("car", "config", "--check", str(config))
    assert board.returncode == 0, board.stderr
    assert '"pca9685"' in board.stdout
    unit = run("car", "unit")
    assert f"ExecStart={paddock} car run" in unit.stdout  # the unit file came out of the wheel
    lap = run("sim", "run", "--laps", "1")
    assert lap.returncode == 0, lap.stderr
    assert "lap" in lap.stdout
    print(f"total: {time.monotonic() - t0:.1f} s")


def test_no_install_instruction_names_the_pypi_project() -> None:
    """PyPI's ``paddock`` is someone else's: every instruction must install the wheel (or the repo)."""
    import re

    wrong = re.compile(r"pip install[^\n]*?(?<![\w./-])paddock(\[|\s|'|\"|$)")
    tracked = _run(["git", "ls-files"], cwd=ROOT).stdout.split()
    bad = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".toml", ".service", ".sh", ".yml", ".yaml", ".hub", ""}:
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        bad += [f"{name}:{i}" for i, line in enumerate(text.splitlines(), 1) if wrong.search(line)]
    assert bad == [], bad
