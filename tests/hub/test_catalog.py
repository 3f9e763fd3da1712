"""The catalog: migrations, the bdseq rules, deployments replayed as a stack."""

import sqlite3
import time
from pathlib import Path

import pytest

from hub.fleet.deployments import Current, current_from_history, rollback_target
from hub.storage.catalog import Catalog, CatalogError, Conflict, migrations
from schemas.messages import CarStatus


def test_migrations_create_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cat = Catalog(path)
    latest = migrations()[-1].version
    assert cat.schema_version == latest
    cat.close()
    again = Catalog(path)  # applying again is a no-op
    assert again.schema_version == latest
    tables = {
        r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert {"cars", "sessions", "datasets", "models", "deployments", "jobs", "evaluations"} <= tables
    again.close()


def test_a_newer_catalog_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(CatalogError, match="newer than this hub"):
        Catalog(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError):
        Catalog(path)


def test_bdseq_rules(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite")
    now = time.time()
    assert cat.apply_status("c1", CarStatus(state="online", bdseq=3, ts=now))
    assert not cat.apply_status("c1", CarStatus(state="offline", bdseq=2, ts=now))  # stale death
    assert cat.get_car("c1")["state"] == "online"  # type: ignore[index]
    assert cat.apply_status("c1", CarStatus(state="offline", bdseq=3, ts=now))
    assert cat.get_car("c1")["state"] == "offline"  # type: ignore[index]
    # A birth always wins, even with a lower bdseq (a car that lost its counter).
    assert cat.apply_status("c1", CarStatus(state="online", bdseq=0, ts=now))
    car = cat.get_car("c1")
    assert car is not None and (car["state"], car["bdseq"], car["births"], car["stale_deaths"]) == (
        "online",
        0,
        2,
        1,
    )


def test_duplicate_model_and_dataset_conflict(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite")
    entry = {
        "name": "m",
        "version": "1",
        "format": "onnx",
        "sha256": "0" * 64,
        "size": 1,
        "card": {},
        "artifact_key": "models/m/1/model.onnx",
        "created": 1.0,
    }
    cat.add_model(entry)
    with pytest.raises(Conflict):
        cat.add_model(entry)
    assert cat.next_version("m") == "2"
    cat.create_dataset("d", {"name": "d", "train": [], "val": []})
    with pytest.raises(Conflict):
        cat.create_dataset("d", {"name": "d"})


def _row(action: str, model: tuple[str, str] | None = None) -> dict[str, object]:
    return {
        "action": action,
        "model_name": model[0] if model else None,
        "model_version": model[1] if model else None,
    }


def test_deployments_replay_as_a_stack() -> None:
    a, b, c = ("m", "1"), ("m", "2"), ("m", "3")
    history = [_row("deploy", a), _row("deploy", b), _row("deploy", c)]
    assert current_from_history(history) == Current("m", "3")
    assert rollback_target(history) == Current("m", "2")
    history.append(_row("rollback", b))
    assert current_from_history(history) == Current("m", "2")
    assert rollback_target(history) == Current("m", "1")
    history.append(_row("clear"))
    assert current_from_history(history) is None
    assert rollback_target(history) == Current("m", "2")  # a rollback undoes the clear
    history.append(_row("rollback", b))
    assert current_from_history(history) == Current("m", "2")
    assert rollback_target([_row("deploy", a)]) is False
    assert current_from_history([_row("deploy", a), _row("deploy", a)]) == Current("m", "1")
    assert rollback_target([_row("deploy", a), _row("deploy", a)]) is False
