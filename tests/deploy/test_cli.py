import importlib
import json
import pkgutil
import subprocess
import sys

from typer.testing import CliRunner

from deploy import commands
from deploy.cli import app
from schemas.envelope import encode

runner = CliRunner()


def test_help_lists_every_available_room_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    names = [m.name for m in pkgutil.iter_modules(commands.__path__)]
    assert "schemas" in names
    for name in names:
        module = importlib.import_module(f"deploy.commands.{name}")  # every room command imports here
        # a module may add its commands to another module's group (JOINS names that group)
        assert getattr(module, "JOINS", name) in result.output


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "deploy.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("paddock ")


def test_schemas_inspect(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "frame.pdk"
    good.write_bytes(encode({"car": "c1", "seq": 3}, b"jpeg"))
    result = runner.invoke(app, ["schemas", "inspect", str(good)])
    assert result.exit_code == 0
    assert '"seq": 3' in result.output
    assert "payload: 4 bytes" in result.output
    bad = tmp_path / "bad.pdk"
    bad.write_bytes(b"PDK1\xff\xff\x00\x00")
    result = runner.invoke(app, ["schemas", "inspect", str(bad)])
    assert result.exit_code == 2
    assert "header length" in result.output


def test_schemas_inspect_shows_a_signed_models_manifest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from schemas.signing import generate_private_key
    from tests.edge.modelkit import signed_envelope

    path = tmp_path / "model.pdk"
    path.write_bytes(signed_envelope(b"onnx", generate_private_key(), car="car-7", sequence=42))
    result = runner.invoke(app, ["schemas", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)["manifest"]
    assert manifest["target"] == {"kind": "car", "id": "car-7"} and manifest["sequence"] == 42
