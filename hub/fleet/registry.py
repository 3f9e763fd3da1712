"""Models and datasets: registering model artifacts with their card and lineage, and building named
datasets (sets of sessions split into train and validation by session, never by frame)."""

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.storage.catalog import Catalog, Conflict
from infra.store import ObjectStore
from schemas.dataset import DatasetManifest, dataset_manifest_key, model_prefix
from schemas.errors import ContractError
from schemas.ids import check_name
from schemas.messages import SessionRef
from schemas.model_card import ModelCard

ModelFormat = Literal["onnx", "tflite"]


class Lineage(BaseModel):
    """Where a model comes from: dataset → run/job → model (evaluations and deployments are added
    by the hub as they happen)."""

    model_config = ConfigDict(extra="allow")

    dataset: str | None = Field(default=None, description="dataset name the model was trained on")
    run: str | None = Field(default=None, description="training run id (e.g. an experiment tracker's)")
    job: str | None = Field(default=None, description="hub job id that produced the model")
    parent: str | None = Field(default=None, description="name:version this model was fine-tuned from")
    metrics: dict[str, float] = Field(default_factory=dict, description="training/validation metrics")


def artifact_key(name: str, version: str, fmt: str) -> str:
    return model_prefix(name, version) + f"model.{fmt}"


def infer_format(filename: str | None, data_head: bytes) -> ModelFormat:
    if filename:
        lowered = filename.lower()
        if lowered.endswith(".onnx"):
            return "onnx"
        if lowered.endswith(".tflite"):
            return "tflite"
    if data_head[4:8] == b"TFL3":
        return "tflite"
    raise ContractError("cannot tell the model format: name the file *.onnx or *.tflite, or give format")


def register_model(
    catalog: Catalog,
    store: ObjectStore,
    *,
    name: str,
    artifact: Path,
    card: ModelCard,
    version: str | None = None,
    fmt: ModelFormat | None = None,
    filename: str | None = None,
    lineage: Lineage | None = None,
    description: str = "",
    report: bytes | None = None,
) -> dict[str, Any]:
    """Store the artifact (``models/{name}/{version}/model.{fmt}``), its card and manifest, and add
    the model to the catalog. Returns the catalog entry."""
    check_name(name, "model name")
    if version is not None:
        check_name(version, "model version")
    size = artifact.stat().st_size
    if size == 0:
        raise ContractError("the model artifact is empty")
    digest = hashlib.sha256()
    with artifact.open("rb") as fh:
        head = fh.read(8)
        digest.update(head)
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    fmt = fmt or infer_format(filename, head)
    if fmt == "tflite" and head[4:8] != b"TFL3":
        raise ContractError("the artifact is not a TFLite flatbuffer (no TFL3 identifier)")
    lineage = lineage or Lineage()
    if lineage.dataset is not None and catalog.get_dataset(lineage.dataset) is None:
        raise ContractError(f"lineage names an unknown dataset {lineage.dataset!r}")
    for _attempt in range(5):
        v = version or catalog.next_version(name)
        if catalog.get_model(name, v) is not None:
            if version is not None:
                raise Conflict(f"model {name}:{version} already exists")
            continue
        key = artifact_key(name, v, fmt)
        prefix = model_prefix(name, v)
        entry = {
            "name": name,
            "version": v,
            "format": fmt,
            "sha256": digest.hexdigest(),
            "size": size,
            "card": card.to_dict(),
            "lineage": lineage.model_dump(exclude_none=True),
            "description": description,
            "artifact_key": key,
            "created": time.time(),
        }
        store.put_file(key, artifact)
        store.put(prefix + "card.json", card.to_json())
        if report is not None:
            store.put(prefix + "report.json", report)
        try:
            catalog.add_model(entry)
        except Conflict:
            if version is not None:
                raise
            continue  # another registration took this version number: take the next
        store.put(prefix + "model.json", json.dumps(entry, indent=2).encode())
        return entry
    raise Conflict(f"could not allocate a version for model {name!r}")


class DatasetRequest(BaseModel):
    """A named set of sessions. Give ``sessions`` to split automatically (by session, seeded), or
    ``train`` and ``val`` explicitly."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
    sessions: list[SessionRef] = Field(default_factory=list, max_length=100_000)
    train: list[SessionRef] = Field(default_factory=list, max_length=100_000)
    val: list[SessionRef] = Field(default_factory=list, max_length=100_000)
    val_fraction: float = Field(default=0.2, ge=0.0, le=0.9)
    seed: int = 0
    description: str = Field(default="", max_length=10_000)


def split_sessions(
    refs: list[SessionRef], val_fraction: float, seed: int
) -> tuple[list[SessionRef], list[SessionRef]]:
    """Deterministic split by session: the same sessions, fraction and seed give the same split."""
    unique = sorted({(r.car, r.session) for r in refs})
    rng = random.Random(seed)
    rng.shuffle(unique)
    n_val = round(len(unique) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(unique) >= 2:
        n_val = 1
    val = sorted(unique[:n_val])
    train = sorted(unique[n_val:])
    return [SessionRef(car=c, session=s) for c, s in train], [SessionRef(car=c, session=s) for c, s in val]


def create_dataset(catalog: Catalog, store: ObjectStore, req: DatasetRequest) -> DatasetManifest:
    check_name(req.name, "dataset name")
    if req.sessions and (req.train or req.val):
        raise ContractError("give either sessions (split automatically) or train/val, not both")
    if req.sessions:
        train, val = split_sessions(req.sessions, req.val_fraction, req.seed)
    else:
        train, val = req.train, req.val
    if not train and not val:
        raise ContractError("a dataset needs at least one session")
    missing = [f"{r.car}/{r.session}" for r in train + val if catalog.get_session(r.car, r.session) is None]
    if missing:
        raise ContractError(f"unknown sessions: {', '.join(missing[:20])}")
    try:
        manifest = DatasetManifest(name=req.name, train=train, val=val, description=req.description)
    except ValueError as exc:
        raise ContractError(str(exc)) from None
    catalog.create_dataset(req.name, manifest.to_dict())
    store.put(dataset_manifest_key(req.name), manifest.to_json())
    return manifest
