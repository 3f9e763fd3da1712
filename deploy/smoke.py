"""The car's smoke test (``edge.hotswap.load_and_test``) run off the car: by ``paddock hub smoke-test``
on a registered model, and by the trainer agent on every model a train job registers
(:func:`after_train`), so a triggered job's model reaches the evaluation gate with its smoke test
recorded. The hub cannot run it itself: it has no model runtime."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

from schemas.messages import JobResult
from trainer.agent import AfterTrain
from trainer.hub_client import HubClient

if TYPE_CHECKING:
    from deploy.commands.hubctl import HubClient as CliClient

DEFAULT_LATENCY_MS = 40.0  # a car's default budget: 80% of a 20 Hz tick


def run_smoke_test(row: dict[str, Any], data: bytes, latency_ms: float) -> dict[str, Any]:
    """The car's smoke test on a model file (``row``: its hub catalog entry): the result to record."""
    from edge.hotswap import ModelRejected, load_and_test
    from edge.runtimes import preload
    from schemas.model_card import ModelCard, ModelManifest

    manifest = ModelManifest(
        name=row["name"],
        version=row["version"],
        sha256=row["sha256"],
        size=row["size"],
        format=row["format"],
        card=ModelCard.from_dict(row["card"]),
        created=row["created"],
    )
    preload([manifest.format])
    runtime = f"{manifest.format} on {platform.machine()}"
    try:
        loaded = load_and_test(
            manifest, data, threads=1, warmup_runs=5, max_latency_ms=latency_ms, frame=None
        )
    except ModelRejected as exc:
        return {"passed": False, "reason": exc.reason, "runtime": runtime}
    loaded.pilot.close()
    return {"passed": True, "latency_ms": round(loaded.latency_ms, 3), "runtime": runtime}


def smoke_test_on_hub(
    client: CliClient,
    name: str,
    version: str,
    latency_ms: float,
    tested_by: str,
    download_failed: type[Exception],
) -> dict[str, Any]:
    """A registered model downloaded as a car would, smoke-tested, the result recorded on the hub
    (``paddock hub smoke-test``, the pipeline's gate step); ``download_failed`` says how the caller
    reports a model file the hub does not hand out."""
    row = client.call("GET", f"/models/{name}/{version}")
    r = client.request("GET", f"/models/{name}/{version}/artifact")
    if r.status_code != 200:
        raise download_failed(f"cannot download {name}:{version}: {r.status_code}")
    result = run_smoke_test(row, r.content, latency_ms) | {"tested_by": tested_by}
    client.call("POST", f"/models/{name}/{version}/smoke-tests", json=result)
    return result


def after_train(hub: str, token: str | None, latency_ms: float = DEFAULT_LATENCY_MS) -> AfterTrain:
    """The trainer agent's check of a registered model: download it from the hub as a car would,
    smoke-test it, record the result on the hub; the figures join the job's metrics."""

    def check(result: JobResult) -> dict[str, float]:
        assert result.model is not None
        name, version = result.model.name, result.model.version
        with HubClient(hub, token) as client:
            row = client.model(name, version)
            outcome = run_smoke_test(row, client.artifact(name, version), latency_ms)
            client.record_smoke_test(
                name, version, outcome | {"tested_by": f"trainer agent, job {result.job}"}
            )
        metrics = {"smoke_test_passed": 1.0 if outcome["passed"] else 0.0}
        return metrics | ({"smoke_latency_ms": outcome["latency_ms"]} if "latency_ms" in outcome else {})

    return check
