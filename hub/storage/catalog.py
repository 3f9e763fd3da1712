"""The catalog: cars, sessions, datasets, models with lineage, deployments and jobs, in SQLite.

The schema is created and upgraded by numbered SQL files in ``hub/storage/migrations`` (``PRAGMA
user_version`` records the last one applied). Each thread gets its own connection (WAL mode), so
ingest threads and API workers write without sharing a connection.
"""

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from infra.sqlite import ThreadConnections
from schemas.messages import CarStatus

JOB_PROGRESS_KEPT = 1000


class CatalogError(RuntimeError):
    """The catalog cannot be used (newer schema than this hub, corrupt file)."""


class Conflict(ValueError):
    """The request conflicts with what the catalog holds (a duplicate, a missing reference)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    out = []
    for entry in resources.files("hub.storage.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append(Migration(int(name[:4]), name, entry.read_text()))
    out.sort(key=lambda m: m.version)
    for i, m in enumerate(out, start=1):
        if m.version != i:
            raise CatalogError(f"migrations are not numbered 1..n: {[x.name for x in out]}")
    return out


def _loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class Catalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._connections = ThreadConnections(path, foreign_keys=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.schema_version = self.migrate()

    # --- connections --------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        try:
            return self._connections.get()
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.path}: {exc}") from None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self._connections.close()

    def migrate(self) -> int:
        """Apply the migrations this file lacks; return the schema version."""
        all_migrations = migrations()
        latest = all_migrations[-1].version
        conn = self._conn()
        try:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.path} is not a catalog database: {exc}") from None
        if current > latest:
            raise CatalogError(
                f"{self.path} has catalog schema {current}, newer than this hub's {latest}: upgrade paddock"
            )
        for m in all_migrations:
            if m.version <= current:
                continue
            try:
                conn.executescript(f"BEGIN IMMEDIATE;\n{m.sql}\n;PRAGMA user_version = {m.version};\nCOMMIT;")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise CatalogError(f"{self.path}: migration {m.name} failed: {exc}") from None
            current = m.version
        return current

    # --- cars ---------------------------------------------------------------------------------
    def apply_status(self, car: str, status: CarStatus, now: float | None = None) -> bool:
        """Record a birth or death. A death older than the current birth is ignored (returns False)."""
        now = now or time.time()
        doc = status.model_dump_json(exclude_none=True)
        with self._tx() as c:
            row = c.execute("SELECT state, bdseq FROM cars WHERE car=?", (car,)).fetchone()
            if status.state == "offline" and row is not None and status.bdseq < row["bdseq"]:
                c.execute("UPDATE cars SET stale_deaths = stale_deaths + 1 WHERE car=?", (car,))
                return False
            if row is None:
                c.execute(
                    "INSERT INTO cars (car, state, bdseq, status, first_seen, last_seen, births) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (car, status.state, status.bdseq, doc, now, now, int(status.state == "online")),
                )
            else:
                c.execute(
                    "UPDATE cars SET state=?, bdseq=?, status=?, last_seen=?, births=births+? WHERE car=?",
                    (status.state, status.bdseq, doc, now, int(status.state == "online"), car),
                )
        return True

    def set_model_state(self, car: str, state: dict[str, Any], slot: str = "pilot") -> None:
        """Record the ModelState a car reported for its pilot or its detector slot."""
        column = {"pilot": "model_state", "detector": "detector_state"}[slot]
        now = time.time()
        with self._tx() as c:
            cur = c.execute(f"UPDATE cars SET {column}=?, last_seen=? WHERE car=?", (_dumps(state), now, car))
            if cur.rowcount == 0:
                c.execute(
                    f"INSERT INTO cars (car, state, bdseq, status, {column}, first_seen, last_seen) "
                    'VALUES (?, \'offline\', 0, \'{"state":"offline","bdseq":0}\', ?, ?, ?)',
                    (car, _dumps(state), now, now),
                )

    def _car(self, row: sqlite3.Row) -> dict[str, Any]:
        return {
            "car": row["car"],
            "state": row["state"],
            "bdseq": row["bdseq"],
            "status": _loads(row["status"], {}),
            "model_state": _loads(row["model_state"]),
            "detector_state": _loads(row["detector_state"]),
            "first_seen": row["first_seen"],
            "last_seen": row["last_seen"],
            "births": row["births"],
            "stale_deaths": row["stale_deaths"],
        }

    def get_car(self, car: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT * FROM cars WHERE car=?", (car,)).fetchone()
        return self._car(row) if row else None

    def list_cars(self) -> list[dict[str, Any]]:
        return [self._car(r) for r in self._conn().execute("SELECT * FROM cars ORDER BY car")]

    # --- sessions -----------------------------------------------------------------------------
    _SESSION_JSON = ("sealed", "trimmed", "shards", "stats")

    def _session(self, row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        for key in self._SESSION_JSON:
            out[key] = json.loads(out[key])
        return out

    def get_session(self, car: str, session: str) -> dict[str, Any] | None:
        row = (
            self._conn()
            .execute("SELECT * FROM sessions WHERE car=? AND session=?", (car, session))
            .fetchone()
        )
        return self._session(row) if row else None

    def save_session(self, s: dict[str, Any]) -> None:
        values = dict(s)
        for key in self._SESSION_JSON:
            values[key] = _dumps(values[key])
        cols = (
            "car",
            "session",
            "state",
            "frame_count",
            "bytes",
            "seq_first",
            "seq_last",
            "sealed",
            "trimmed",
            "shards",
            "stats",
            "next_shard",
            "created",
            "updated",
        )
        with self._tx() as c:
            c.execute(
                f"INSERT OR REPLACE INTO sessions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                tuple(values[k] for k in cols),
            )

    def list_sessions(
        self, car: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        where, args = ("WHERE car=?", [car]) if car else ("", [])
        conn = self._conn()
        total = int(conn.execute(f"SELECT count(*) FROM sessions {where}", args).fetchone()[0])
        rows = conn.execute(
            f"SELECT * FROM sessions {where} ORDER BY created DESC, car, session LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
        return [self._session(r) for r in rows], total

    def all_sessions(self) -> list[dict[str, Any]]:
        return [self._session(r) for r in self._conn().execute("SELECT * FROM sessions")]

    def delete_session(self, car: str, session: str, position: tuple[int, int]) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM sessions WHERE car=? AND session=?", (car, session))
            c.execute(
                "INSERT OR REPLACE INTO session_tombstones VALUES (?, ?, ?, ?, ?)",
                (car, session, position[0], position[1], time.time()),
            )

    def tombstones(self) -> dict[tuple[str, str], tuple[int, int]]:
        rows = self._conn().execute("SELECT * FROM session_tombstones").fetchall()
        return {(r["car"], r["session"]): (r["spool_segment"], r["spool_offset"]) for r in rows}

    def clear_tombstone(self, car: str, session: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM session_tombstones WHERE car=? AND session=?", (car, session))

    # --- datasets -----------------------------------------------------------------------------
    def create_dataset(self, name: str, manifest: dict[str, Any]) -> None:
        with self._tx() as c:
            if c.execute("SELECT 1 FROM datasets WHERE name=?", (name,)).fetchone():
                raise Conflict(f"dataset {name!r} already exists")
            c.execute("INSERT INTO datasets VALUES (?, ?, ?)", (name, _dumps(manifest), time.time()))

    def get_dataset(self, name: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT manifest FROM datasets WHERE name=?", (name,)).fetchone()
        return json.loads(row["manifest"]) if row else None

    def list_datasets(self) -> list[dict[str, Any]]:
        rows = self._conn().execute("SELECT manifest FROM datasets ORDER BY created DESC, name").fetchall()
        return [json.loads(r["manifest"]) for r in rows]

    def delete_dataset(self, name: str) -> bool:
        with self._tx() as c:
            return c.execute("DELETE FROM datasets WHERE name=?", (name,)).rowcount > 0

    def datasets_using(self, car: str, session: str) -> list[str]:
        out = []
        for manifest in self.list_datasets():
            refs = manifest.get("train", []) + manifest.get("val", [])
            if any(r["car"] == car and r["session"] == session for r in refs):
                out.append(manifest["name"])
        return out

    # --- models -------------------------------------------------------------------------------
    def add_model(self, m: dict[str, Any]) -> None:
        with self._tx() as c:
            if c.execute(
                "SELECT 1 FROM models WHERE name=? AND version=?", (m["name"], m["version"])
            ).fetchone():
                raise Conflict(f"model {m['name']}:{m['version']} already exists")
            c.execute(
                "INSERT INTO models (name, version, format, sha256, size, card, lineage, description, "
                "artifact_key, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    m["name"],
                    m["version"],
                    m["format"],
                    m["sha256"],
                    m["size"],
                    _dumps(m["card"]),
                    _dumps(m.get("lineage", {})),
                    m.get("description", ""),
                    m["artifact_key"],
                    m["created"],
                ),
            )

    def _model(self, row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["card"] = json.loads(out["card"])
        out["lineage"] = json.loads(out["lineage"])
        return out

    def get_model(self, name: str, version: str) -> dict[str, Any] | None:
        row = (
            self._conn()
            .execute("SELECT * FROM models WHERE name=? AND version=?", (name, version))
            .fetchone()
        )
        return self._model(row) if row else None

    def list_models(self, name: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE name=?", [name]) if name else ("", [])
        rows = self._conn().execute(f"SELECT * FROM models {where} ORDER BY name, created", args)
        return [self._model(r) for r in rows]

    def next_version(self, name: str) -> str:
        rows = self._conn().execute("SELECT version FROM models WHERE name=?", (name,)).fetchall()
        numbers = [int(r["version"]) for r in rows if r["version"].isdigit()]
        return str(max(numbers, default=0) + 1)

    def add_evaluation(
        self, name: str, version: str, job: str | None, metrics: dict[str, Any], artifacts: dict[str, Any]
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO evaluations (model_name, model_version, job, metrics, artifacts, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, version, job, _dumps(metrics), _dumps(artifacts), time.time()),
            )

    def evaluations(self, name: str, version: str) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT job, metrics, artifacts, created FROM evaluations "
            "WHERE model_name=? AND model_version=? ORDER BY id",
            (name, version),
        )
        return [
            {
                "job": r["job"],
                "metrics": json.loads(r["metrics"]),
                "artifacts": json.loads(r["artifacts"]),
                "created": r["created"],
            }
            for r in rows
        ]

    # --- deployments --------------------------------------------------------------------------
    def add_deployment(self, d: dict[str, Any]) -> int:
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO deployments (target_kind, target, slot, action, model_name, model_version, "
                "sha256, inline, published, requested_by, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    d["target_kind"],
                    d["target"],
                    d.get("slot", "pilot"),
                    d["action"],
                    d.get("model_name"),
                    d.get("model_version"),
                    d.get("sha256"),
                    None if d.get("inline") is None else int(d["inline"]),
                    int(bool(d.get("published"))),
                    d.get("requested_by"),
                    d.get("created", time.time()),
                ),
            )
            return int(cur.lastrowid or 0)

    def set_deployment_published(self, deployment_id: int, published: bool) -> None:
        with self._tx() as c:
            c.execute("UPDATE deployments SET published=? WHERE id=?", (int(published), deployment_id))

    def deployment_history(self, kind: str, target: str, slot: str = "pilot") -> list[dict[str, Any]]:
        """The actions on one model slot (``pilot`` or ``detector``) of a target, oldest first."""
        rows = self._conn().execute(
            "SELECT * FROM deployments WHERE target_kind=? AND target=? AND slot=? ORDER BY id",
            (kind, target, slot),
        )
        return [self._deployment(r) for r in rows]

    def deployment_slots(self) -> list[tuple[str, str, str]]:
        """Every (target kind, target, slot) with a deployment."""
        rows = self._conn().execute(
            "SELECT DISTINCT target_kind, target, slot FROM deployments ORDER BY target_kind, target, slot"
        )
        return [(r["target_kind"], r["target"], r["slot"]) for r in rows]

    def deployments_of_model(self, name: str, version: str) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT * FROM deployments WHERE model_name=? AND model_version=? ORDER BY id", (name, version)
        )
        return [self._deployment(r) for r in rows]

    def next_model_sequence(self, kind: str, target: str, expires: float, slot: str = "pilot") -> int:
        """The next signing sequence of a target (1, 2, …; one sequence for both its model slots),
        recorded with the expiry of the envelope signed for ``slot``."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO model_sequences (target_kind, target, sequence, expires) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (target_kind, target) DO UPDATE SET sequence = sequence + 1, "
                "expires = excluded.expires",
                (kind, target, expires),
            )
            c.execute(
                "INSERT INTO model_slot_expiries (target_kind, target, slot, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (target_kind, target, slot) DO UPDATE SET expires = excluded.expires",
                (kind, target, slot, expires),
            )
            row = c.execute(
                "SELECT sequence FROM model_sequences WHERE target_kind=? AND target=?", (kind, target)
            ).fetchone()
            return int(row[0])

    def model_expiries(self) -> dict[tuple[str, str, str], float]:
        """When the last envelope signed for each target's slot expires, by (kind, target, slot)."""
        rows = self._conn().execute("SELECT target_kind, target, slot, expires FROM model_slot_expiries")
        return {(r["target_kind"], r["target"], r["slot"]): float(r["expires"]) for r in rows}

    def _deployment(self, r: sqlite3.Row) -> dict[str, Any]:
        out = dict(r)
        out["inline"] = None if out["inline"] is None else bool(out["inline"])
        out["published"] = bool(out["published"])
        return out

    # --- jobs ---------------------------------------------------------------------------------
    def create_job(self, job: str, kind: str, request: dict[str, Any]) -> None:
        now = time.time()
        with self._tx() as c:
            if c.execute("SELECT 1 FROM jobs WHERE job=?", (job,)).fetchone():
                raise Conflict(f"job {job!r} already exists")
            c.execute(
                "INSERT INTO jobs (job, kind, state, request, created, updated) "
                "VALUES (?, ?, 'queued', ?, ?, ?)",
                (job, kind, _dumps(request), now, now),
            )

    def set_job_published(self, job: str, published: bool) -> None:
        with self._tx() as c:
            c.execute("UPDATE jobs SET published=? WHERE job=?", (int(published), job))

    def job_progress(self, job: str, kind: str, progress: dict[str, Any]) -> None:
        now = time.time()
        state = progress.get("state", "running")
        with self._tx() as c:
            cur = c.execute(
                "UPDATE jobs SET progress=?, updated=?, "
                "state=CASE WHEN state IN ('succeeded', 'failed') THEN state ELSE ? END WHERE job=?",
                (_dumps(progress), now, state, job),
            )
            if cur.rowcount == 0:  # a job requested elsewhere: track it from its first report
                c.execute(
                    "INSERT INTO jobs (job, kind, state, progress, created, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (job, kind, state, _dumps(progress), now, now),
                )
            c.execute(
                "INSERT INTO job_progress (job, ts, progress) VALUES (?, ?, ?)",
                (job, progress.get("ts", now), _dumps(progress)),
            )
            c.execute(
                "DELETE FROM job_progress WHERE job=? AND id <= "
                "(SELECT id FROM job_progress WHERE job=? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (job, job, JOB_PROGRESS_KEPT),
            )

    def job_result(self, job: str, kind: str, result: dict[str, Any]) -> None:
        now = time.time()
        state = result.get("status", "failed")
        with self._tx() as c:
            cur = c.execute(
                "UPDATE jobs SET result=?, state=?, updated=? WHERE job=?", (_dumps(result), state, now, job)
            )
            if cur.rowcount == 0:
                c.execute(
                    "INSERT INTO jobs (job, kind, state, result, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
                    (job, kind, state, _dumps(result), now, now),
                )

    def claim_job(self, job: str, kind: str, trainer: str | None) -> str | None:
        """The trainer that took ``job``: ``trainer`` when the job had none (it takes it now), else the
        one that took it first. None: reported only without a trainer's name (a broker without ACLs)."""
        with self._tx() as c:
            row = c.execute("SELECT trainer FROM jobs WHERE job=?", (job,)).fetchone()
            if row is None:
                now = time.time()
                c.execute(
                    "INSERT INTO jobs (job, kind, state, trainer, created, updated) "
                    "VALUES (?, ?, 'running', ?, ?, ?)",
                    (job, kind, trainer, now, now),
                )
                return trainer
            if row["trainer"] is None and trainer is not None:
                c.execute("UPDATE jobs SET trainer=? WHERE job=?", (trainer, job))
                return trainer
            return str(row["trainer"]) if row["trainer"] is not None else None

    def _job(self, r: sqlite3.Row) -> dict[str, Any]:
        return {
            "job": r["job"],
            "kind": r["kind"],
            "state": r["state"],
            "trainer": r["trainer"],
            "request": _loads(r["request"]),
            "progress": _loads(r["progress"]),
            "result": _loads(r["result"]),
            "published": bool(r["published"]),
            "created": r["created"],
            "updated": r["updated"],
        }

    def get_job(self, job: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE job=?", (job,)).fetchone()
        return self._job(row) if row else None

    def list_jobs(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = ("WHERE kind=?", [kind]) if kind else ("", [])
        rows = self._conn().execute(
            f"SELECT * FROM jobs {where} ORDER BY created DESC LIMIT ?", [*args, limit]
        )
        return [self._job(r) for r in rows]

    def job_progress_history(self, job: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT progress FROM "
            "(SELECT id, progress FROM job_progress WHERE job=? ORDER BY id DESC LIMIT ?) "
            "ORDER BY id",
            (job, limit),
        )
        return [json.loads(r["progress"]) for r in rows]

    def jobs_of_model(self, name: str, version: str) -> list[str]:
        out = []
        for r in self._conn().execute("SELECT job, result FROM jobs WHERE result IS NOT NULL"):
            model = json.loads(r["result"]).get("model") or {}
            if model.get("name") == name and model.get("version") == version:
                out.append(r["job"])
        return out
