"""The ``paddock`` command's contract with its users: every bad input is one line on stderr and exit
code 2, connection flags read ``PADDOCK_*`` variables, and help texts keep their ``[...]``.

The bad inputs run as real ``python -m deploy.cli`` processes (what a user types); each fails in
validation, before any server or simulation starts.
"""

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deploy.cli import app
from deploy.errors import EXIT_FAILED, EXIT_USAGE, UserError, classify, describe
from deploy.options import nested, parse_sets
from tests.missing import missing

HAS_TRAIN = importlib.util.find_spec("torch") is not None


def paddock(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PADDOCK_") or k == "PADDOCK_TRACKS_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        capture_output=True,
        text=True,
        env=clean | (env or {}),
        cwd=cwd,
        timeout=120,
    )


def one_error_line(out: subprocess.CompletedProcess[str], *words: str) -> str:
    """The run failed with exit code 2 and said so in one line that names ``words``."""
    lines = out.stderr.splitlines()
    assert out.returncode == EXIT_USAGE, (out.returncode, out.stderr)
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in out.stderr, lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def needs_train() -> None:
    if not HAS_TRAIN:
        missing("paddock train needs the train extra (torch): script/setup dev")


def test_a_bad_broker_url_for_the_hub(tmp_path: Path) -> None:
    one_error_line(
        paddock("hub", "serve", "--broker", "mqtt//nope", "--data-dir", str(tmp_path)), "mqtt//nope"
    )


def test_a_bad_store_for_training(tmp_path: Path) -> None:
    needs_train()
    out = paddock("train", "train", "--store", "ftp://x/y", "--no-progress", cwd=tmp_path)
    one_error_line(out, "ftp://x/y", "unsupported store URL")
    assert not (tmp_path / "runs").exists()  # nothing started


def test_an_unknown_track_stops_the_demo_before_anything_starts(tmp_path: Path) -> None:
    out = paddock("demo", "--track", "nosuch", "--out", str(tmp_path / "demo"))
    one_error_line(out, "'nosuch'", "track")
    assert out.stdout == "" and not (tmp_path / "demo").exists()


def test_a_missing_directory_of_tracks() -> None:
    one_error_line(paddock("sim", "tracks", "/nonexistent"), "/nonexistent", "does not exist")


def test_missing_and_bad_config_files(tmp_path: Path) -> None:
    one_error_line(
        paddock("car", "config", "--check", str(tmp_path / "car.toml")), "car.toml", "no such file"
    )
    bad = tmp_path / "hub.toml"
    bad.write_text("[api]\nport = -1\n")
    one_error_line(paddock("hub", "config", "--check", str(bad)), "hub.toml", "api.port")


def test_a_bad_override_of_the_car_config() -> None:
    one_error_line(paddock("car", "run", "--sim", "--set", "loop.hz=0"), "loop.hz")


def test_a_file_that_is_not_an_envelope(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pdk"
    bad.write_bytes(b"PDK1\xff\xff\x00\x00")
    one_error_line(paddock("schemas", "inspect", str(bad)), "bad.pdk", "header length")


def test_an_unknown_flag_is_one_line_too() -> None:
    one_error_line(paddock("hub", "serve", "--mqtt", "mqtt://x"), "--mqtt", "paddock hub serve --help")


def test_connection_settings_come_from_the_environment(tmp_path: Path) -> None:
    out = paddock("hub", "serve", "--data-dir", str(tmp_path), env={"PADDOCK_BROKER": "mqtt//from-env"})
    one_error_line(out, "mqtt//from-env")
    if HAS_TRAIN:
        out = paddock(
            "train", "train", "--no-progress", env={"PADDOCK_STORE": "ftp://from-env"}, cwd=tmp_path
        )
        one_error_line(out, "ftp://from-env")


def _leaf(path: list[str]) -> Any:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


ENV_CASES = [
    (["hub", "serve"], {"broker": "PADDOCK_BROKER", "store": "PADDOCK_STORE", "token": "PADDOCK_TOKEN"}),
    (["car", "run"], {"broker": "PADDOCK_BROKER"}),
    (["demo"], {"broker": "PADDOCK_BROKER"}),
]
CONNECTIONS = {
    "broker": "PADDOCK_BROKER",
    "hub": "PADDOCK_HUB",
    "store": "PADDOCK_STORE",
    "token": "PADDOCK_TOKEN",
}
if HAS_TRAIN:
    ENV_CASES += [
        (["train", "train"], CONNECTIONS),
        (["train", "agent"], CONNECTIONS),
        (["train", "record"], {"store": "PADDOCK_STORE"}),
        (["train", "export"], {"store": "PADDOCK_STORE"}),
    ]


@pytest.mark.parametrize(
    ("path", "variables"), ENV_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_every_connection_flag_reads_its_variable(
    path: list[str], variables: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    command = _leaf(path)
    for param, variable in variables.items():
        monkeypatch.setenv(variable, f"{param}-from-env")
    args = [str(tmp_path / "best.pt")] if path[-1] == "export" else []
    (tmp_path / "best.pt").write_bytes(b"")
    ctx = command.make_context(path[-1], args)
    for param in variables:
        assert ctx.params[param] == f"{param}-from-env", param
    help_text = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "300"}).output
    for variable in variables.values():
        assert f"env var: {variable}" in help_text


def test_the_legacy_token_variable_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PADDOCK_TOKEN", raising=False)
    monkeypatch.setenv("PADDOCK_HUB_TOKEN", "old-name")
    assert _leaf(["hub", "serve"]).make_context("serve", []).params["token"] == "old-name"


def _commands(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, [*path, name])


def test_help_texts_keep_their_brackets() -> None:
    """Every "[...]" written in a help text shows in ``--help`` (Rich used to read it as markup)."""
    runner = CliRunner()
    checked = 0
    for path, command in _commands(typer.main.get_command(app), []):
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
        assert out.exit_code == 0, (path, out.output)
        shown = " ".join(out.output.split())
        for text in texts:
            for bracketed in re.findall(r"\[[^\]\n]+\]", text):
                assert " ".join(bracketed.split()) in shown, (path, bracketed)
                checked += 1
    assert checked >= 3  # car run's [default: …] and [sim], hub's [user[:password]@]…
    car_help = runner.invoke(app, ["car", "run", "--help"], env={"COLUMNS": "300"}).output
    assert "The car's TOML config file [default: /etc/paddock/car.toml]." in car_help


def test_errors_are_sorted_into_user_errors_failures_and_bugs(tmp_path: Path) -> None:
    from firmware.sim import TrackError
    from trainer.launch import LaunchError

    assert classify(UserError("bad")) == (EXIT_USAGE, "bad")
    assert classify(TrackError("no\ntrack")) == (EXIT_USAGE, "no; track")
    assert classify(LaunchError("torchrun exited with status 1")) == (
        EXIT_FAILED,
        "torchrun exited with status 1",
    )
    assert classify(RuntimeError("a bug")) is None and classify(KeyError("x")) is None
    named = tmp_path / "input.toml"
    err = FileNotFoundError(2, "No such file or directory", str(named))
    assert classify(err, ["--config", str(named)]) == (EXIT_USAGE, f"{named}: No such file or directory")
    assert classify(err, ["--config", "other.toml"]) is None  # a file the program itself needed: a bug


def test_pydantic_errors_fold_into_one_line() -> None:
    from hub.config import MqttConfig

    with pytest.raises(ValueError) as caught:
        MqttConfig(url="mqtt//nope", keepalive_s=1)
    text = describe(caught.value)
    assert "\n" not in text and "url: broker url 'mqtt//nope'" in text and "keepalive_s:" in text


def test_set_values_are_toml_then_json_then_text() -> None:
    values = parse_sets(["loop.hz=50", "a.on=true", "name=car 1", 'q="x=y"', "xs=[1, 2]", 'o={"k": 1}'])
    assert values == {"loop.hz": 50, "a.on": True, "name": "car 1", "q": "x=y", "xs": [1, 2], "o": {"k": 1}}
    assert nested({"model.width": 64, "model.height": 32, "seed": 1}) == {
        "model": {"width": 64, "height": 32},
        "seed": 1,
    }
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_sets(["loop.hz"])
