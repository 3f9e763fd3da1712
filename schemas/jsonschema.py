"""JSON Schema files for every message, for clients that are not written in Python.

``python -m schemas.jsonschema`` (or ``paddock schemas export``) rewrites ``schemas/json/``;
a test fails when the checked-in files differ from what the models generate.
"""

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas import dataset, messages, model_card, signing

JSON_DIR = Path(__file__).parent / "json"

MODELS: dict[str, type[BaseModel] | TypeAdapter[Any]] = {
    "hub-status": messages.HubStatus,
    "car-status": messages.CarStatus,
    "telemetry": messages.Telemetry,
    "frame-record": messages.FrameRecord,
    "event": messages.EVENT_ADAPTER,
    "command-drive": messages.DriveCommand,
    "command-mode": messages.ModeCommand,
    "command-record": messages.RecordCommand,
    "command-config": messages.ConfigCommand,
    "command-rebirth": messages.RebirthCommand,
    "command-response": messages.CommandResponse,
    "estop": messages.EStop,
    "model-state": messages.ModelState,
    "job-request": messages.JOB_ADAPTER,
    "job-progress": messages.JobProgress,
    "job-result": messages.JobResult,
    "model-card": model_card.ModelCard,
    "model-manifest": model_card.ModelManifest,
    "model-header": signing.SignedHeader,
    "session-manifest": dataset.SessionManifest,
    "dataset-manifest": dataset.DatasetManifest,
}


def generate() -> dict[str, str]:
    """File name → schema text for every message."""
    out: dict[str, str] = {}
    for name, model in MODELS.items():
        schema = model.json_schema() if isinstance(model, TypeAdapter) else model.model_json_schema()
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": name, **schema}
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def stale(directory: Path = JSON_DIR) -> list[str]:
    """Files that are missing, different or no longer generated."""
    expected = generate()
    bad = [
        n
        for n, text in expected.items()
        if not (directory / n).is_file() or (directory / n).read_text() != text
    ]
    extra = [p.name for p in directory.glob("*.schema.json") if p.name not in expected]
    return sorted(bad + extra)


def write(directory: Path = JSON_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    expected = generate()
    for p in directory.glob("*.schema.json"):
        if p.name not in expected:
            p.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text)
    return sorted(expected)


if __name__ == "__main__":
    if "--check" in sys.argv:
        bad = stale()
        if bad:
            print("stale JSON schemas:", ", ".join(bad), file=sys.stderr)
            sys.exit(1)
    else:
        print("\n".join(write()))
