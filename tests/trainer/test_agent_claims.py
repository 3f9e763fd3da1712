"""Two real trainer agents see the same job (no shared subscription): the first to claim it runs
it; the other leaves it, starts nothing and publishes no result, also when the job comes again."""

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.fleet.identities import FleetStore, Role
from deploy.fleet.mosquitto import ACL_FILE, PASSWORD_FILE, write_broker_files
from infra.store import LocalStore
from schemas.messages import JobProgress, TrainJob, TrainParams
from tests.servers.mosquitto import Mosquitto
from tests.transport.acl_matrix import Client
from trainer.agent import AgentSettings, TrainerAgent

P = "paddock/v1"
TRAINERS = ("gpu-1", "gpu-2")


@pytest.fixture
def fleet_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, dict[str, str]]]:
    """Mosquitto with the fleet's password and ACL files and the shipped client-id rule."""
    store = FleetStore.open(tmp_path / "fleet")
    roles = {"hub": Role.HUB, "ops": Role.OPERATOR, **{t: Role.TRAINER for t in TRAINERS}}
    passwords = {name: store.add(name, role)[1] for name, role in roles.items()}
    store.save()
    write_broker_files(store)
    server = Mosquitto(
        tmp_path / "mosquitto",
        extra_config="use_username_as_clientid true\n",
        password_file=store.directory / PASSWORD_FILE,
        acl_file=store.directory / ACL_FILE,
    )
    server.start()
    try:
        yield server, passwords
    finally:
        server.stop()


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_of_two_agents_only_the_first_to_claim_a_job_runs_it(
    fleet_broker: tuple[Mosquitto, dict[str, str]], small_store: LocalStore, tmp_path: Path
) -> None:
    server, passwords = fleet_broker
    ops, hub = Client(server.url, "ops", passwords["ops"]), Client(server.url, "hub", passwords["hub"])
    assert ops.connect() == 0 and hub.connect() == 0
    assert ops.subscribe(f"{P}/jobs/+/+/+/+") == 1
    agents = {
        name: TrainerAgent(
            AgentSettings(
                broker=f"mqtt://{name}:{passwords[name]}@127.0.0.1:{server.port}",
                store=small_store.url,
                work_dir=str(tmp_path / name),
                export_formats=["onnx"],
                job_timeout_s=180,
            )
        ).start()
        for name in TRAINERS
    }
    try:
        assert all(a.subscribed.wait(10) for a in agents.values())
        # a job that fails in the job process (no such session): a real run, over in seconds
        job = TrainJob(job="claimed-1", params=TrainParams(sessions=[{"car": "car-9", "session": "none"}]))
        for attempt in (1, 2):  # the second time, the job is done and its claim retained
            assert hub.publish(f"{P}/jobs/train", job.to_json())
            _wait(lambda n=attempt: _handled(agents) == (n, n), 180, f"request {attempt}")
        seen = _drain(ops)
        late = Client(server.url, "ops", passwords["ops"])  # replaces the first ops connection
        assert late.connect() == 0 and late.subscribe(f"{P}/jobs/train/{job.job}/progress/+") == 1
        retained = _drain(late, 1.0)
        late.close()
    finally:
        for agent in agents.values():
            agent.stop(10)
        ops.close()
        hub.close()
    winner = next(n for n, a in agents.items() if a.results)
    loser = next(n for n in TRAINERS if n != winner)
    assert agents[winner].left == [] and agents[loser].left == [job.job, job.job]
    assert agents[loser].results == [] and not (tmp_path / loser / "jobs" / job.job).exists()
    assert agents[winner].results[0].status == "failed"  # the job's own verdict: no usable frames
    results = [t for t, _ in seen if "/result/" in t]
    assert results == [f"{P}/jobs/train/{job.job}/result/{winner}"] * 2, results
    claims = [
        (t.rsplit("/", 1)[1], JobProgress.from_json(p).stage) for t, p in seen if "/progress/" in t and p
    ]
    assert claims[0] == (winner, "starting"), claims  # the claim everyone saw first
    assert [c for c in claims if c[0] == loser] == [(loser, "starting")] * 2, claims  # its claims only
    # what a later agent finds: the winner's last word, and no claim of the loser's
    assert [(t.rsplit("/", 1)[1], JobProgress.from_json(p).stage) for t, p in retained] == [(winner, "done")]


def _handled(agents: dict[str, TrainerAgent]) -> tuple[int, int]:
    """How many requests the agents answered with a result, and how many they left to another."""
    return sum(len(a.results) for a in agents.values()), sum(len(a.left) for a in agents.values())


def _drain(client: Client, quiet_s: float = 2.0) -> list[tuple[str, bytes]]:
    """Everything the client received until nothing came for ``quiet_s``."""
    seen = []
    while True:
        try:
            seen.append(client.messages.get(timeout=quiet_s))
        except queue.Empty:
            return seen
