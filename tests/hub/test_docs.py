"""docs/hub.md lists exactly the routes the API has, with the right token column."""

import re
from pathlib import Path
from types import SimpleNamespace

from hub.api.app import create_app
from hub.config import HubConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "hub.md"


def test_route_table_matches_the_api() -> None:
    spec = create_app(SimpleNamespace(settings=HubConfig().api)).openapi()  # type: ignore[arg-type]
    actual = {
        (method.upper(), path, bool(op.get("security")))
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    }
    rows = re.findall(
        r"^\| `(GET|POST|PUT|PATCH|DELETE)` \| `([^`]+)` \|\s*(read|read, always|operate|admin)?\s*\|",
        DOC.read_text(),
        re.M,
    )
    documented = {(m, p, bool(t)) for m, p, t in rows}
    assert documented == actual, {"undocumented": actual - documented, "not in the API": documented - actual}
