import json

import jsonschema as js

from schemas import jsonschema
from schemas.messages import Telemetry


def test_checked_in_schemas_are_current() -> None:
    assert jsonschema.stale() == [], "run `paddock schemas export` and commit schemas/json/"


def test_stale_detects_a_changed_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    jsonschema.write(tmp_path)
    assert jsonschema.stale(tmp_path) == []
    (tmp_path / "telemetry.schema.json").write_text("{}")
    (tmp_path / "old.schema.json").write_text("{}")
    assert jsonschema.stale(tmp_path) == ["old.schema.json", "telemetry.schema.json"]


def test_a_python_message_validates_against_its_json_schema() -> None:
    schema = json.loads((jsonschema.JSON_DIR / "telemetry.schema.json").read_text())
    js.validate(json.loads(Telemetry(seq=1, mode="manual", steering=0.5).to_json()), schema)
    try:
        js.validate({"seq": -1, "mode": "manual"}, schema)
    except js.ValidationError:
        pass
    else:
        raise AssertionError("a negative seq must not validate")
