"""The trainer agent: takes job requests from MQTT, runs them, reports progress and results.

It subscribes (QoS 1) to ``{prefix}/v1/jobs/train``, ``…/evaluate`` and ``…/optimize`` and runs one
job at a time, each in its own process (``python -m trainer.job``), so a job that fails or
crashes costs that job only: the agent publishes a ``failed`` :class:`~schemas.messages.JobResult`
with the reason and takes the next one.

Nothing is lost when the agent itself stops: its MQTT session is persistent (a fixed client id,
``clean_session`` off) and a job request is acknowledged only after its result is published, so
the broker delivers an unfinished job again when the agent comes back. A job whose result is
already on disk (``{work_dir}/jobs/{job}/result.json``) is not run twice; its result is published again.

A request that is not valid JSON or not a valid job is answered with a ``failed`` result when its
job id can be read, and otherwise logged and dropped (there is no topic to answer on).

A train job's model can be checked further in the agent before its result goes out: ``after_train``
(the composition root passes the car's own smoke test, ``deploy.smoke``, which records the outcome on
the hub for the evaluation gate); what it returns joins the result's metrics.

Several agents can share the work on Mosquitto through a shared subscription
(``share_group``: ``$share/{group}/…``); without it every agent receives every job.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field
from rich.console import Console

from infra.tls import CA_FILE_ENV, client_context, require_key_pair
from schemas.errors import ContractError
from schemas.ids import check_name
from schemas.messages import JobProgress, JobResult, parse_job
from schemas.mqtt_url import BrokerUrl
from schemas.topics import TopicKind, Topics
from trainer.pipeline import TrainerSettings
from trainer.progress import PROGRESS_FILE_ENV

log = logging.getLogger(__name__)
KINDS = ("train", "evaluate", "optimize", "rl")  # rl: trainer/rl/job.py
AfterTrain = Callable[[JobResult], dict[str, float]]  # a registered model's check -> its metrics

CLAIM_WAIT_S = 10.0  # how long the agent waits to see the first claim on a job before it runs it anyway
RELAY_EVERY_S = 0.5  # how often the agent publishes what its job process reported


class _Claim:
    """The first trainer seen reporting on one job, since the agent subscribed to its reports."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.seen = threading.Event()


class AgentSettings(TrainerSettings):
    broker: str | None = Field(default=None, description="MQTT URL of the broker the jobs come from")
    client_id: str = Field(default_factory=lambda: f"paddock-trainer-{socket.gethostname()[:40]}")
    share_group: str | None = Field(default=None, description="Mosquitto shared-subscription group")
    job_timeout_s: float | None = Field(default=6 * 3600, gt=0)
    kinds: list[str] = Field(default_factory=lambda: list(KINDS))
    ca_file: str | None = Field(default=None, description="CA certificate for mqtts:// (the fleet's CA)")
    cert_file: str | None = Field(
        default=None, description="The trainer's client certificate (PEM) for a broker that requires one"
    )
    key_file: str | None = Field(default=None, description="The private key of cert_file (PEM)")


class TrainerAgent:
    def __init__(
        self, settings: AgentSettings, console: Console | None = None, after_train: AfterTrain | None = None
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        if not settings.broker:
            raise ValueError("the trainer agent needs a broker URL")
        for kind in settings.kinds:
            if kind not in KINDS:
                raise ValueError(f"this agent runs {', '.join(KINDS)} jobs, not {kind!r}")
        self.settings = settings
        self.after_train = after_train
        self.console = console or Console(stderr=True)
        self.topics = Topics(settings.topic_prefix)
        self.url = BrokerUrl.parse(settings.broker)
        self.work_dir = Path(settings.work_dir)
        self.results: list[JobResult] = []
        self.left: list[str] = []  # jobs another trainer claimed first
        self.subscribed = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._current: subprocess.Popen[bytes] | None = None
        self._claims: dict[tuple[str | None, str | None], _Claim] = {}  # (kind, job) -> its claim
        self._subacks: set[int] = set()
        self._subacked = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if self.url.username:
            self._client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            require_key_pair(settings.cert_file, settings.key_file)
            context = client_context(settings.ca_file, settings.cert_file, settings.key_file)
            self._client.tls_set_context(context)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._worker = threading.Thread(target=self._work, name="trainer-agent", daemon=True)

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> TrainerAgent:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._client.connect_async(self.url.host, self.url.port, keepalive=30)
        self._client.loop_start()
        self._worker.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the job in progress (which is stopped too after ``timeout``)."""
        self._stop.set()
        self._queue.put(None)
        self._worker.join(timeout)
        proc = self._current
        if proc is not None and proc.poll() is None:
            _kill_group(proc)
        self._client.loop_stop()
        self._client.disconnect()

    def run_forever(self) -> None:
        """Run until SIGINT or SIGTERM."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        self.console.print(
            f"[bold]trainer agent[/] {self.settings.client_id}: waiting for jobs on "
            f"{self.url.host}:{self.url.port} ({', '.join(self._filters())})"
        )
        done.wait()
        self.console.print("stopping")
        self.stop()

    def _filters(self) -> list[str]:
        filters = [self.topics.job_request(kind) for kind in self.settings.kinds]
        if self.settings.share_group:
            filters = [f"$share/{self.settings.share_group}/{f}" for f in filters]
        return filters

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the connection: %s", reason)
            return
        client.subscribe([(f, 1) for f in self._filters()])

    def _on_subscribe(self, _client: Any, _userdata: Any, mid: int, _codes: Any, _props: Any) -> None:
        self.subscribed.set()
        with self._subacked:
            self._subacks.add(mid)
            self._subacked.notify_all()

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        """Job requests go to the worker; trainers' reports decide claims (and are never jobs)."""
        try:
            parsed = self.topics.parse(msg.topic)
        except ContractError:  # the worker answers it (handle parses it again)
            parsed = None
        if parsed is not None and parsed.kind == TopicKind.JOB_PROGRESS:
            claim = self._claims.get((parsed.job_kind, parsed.job))
            if claim is not None and msg.payload and claim.first is None:
                claim.first = parsed.trainer
                claim.seen.set()
            self._client.ack(msg.mid, msg.qos)
            return
        self._queue.put(msg)

    # --- claims -----------------------------------------------------------------------------------
    def _claim(self, kind: str, job: str) -> str:
        """Claim ``job``: returns the trainer that took it, this one's name when it did.

        The first trainer to report on a job takes it (the hub counts only its reports). Each
        agent subscribes to every trainer's reports on the job, then publishes its claim, retained:
        Mosquitto hands every subscriber the messages in one order, so each agent sees the same
        claim first, and an agent that comes later gets the retained ones as it subscribes."""
        me = self.url.username or ""
        base = self.topics.job_progress(kind, job)
        claim = self._claims[(kind, job)] = _Claim()
        try:
            _, mid = self._client.subscribe(f"{base}/+", qos=1)
            with self._subacked:
                self._subacked.wait_for(lambda: mid in self._subacks, CLAIM_WAIT_S)
                self._subacks.discard(mid)
            claiming = JobProgress(job=job, kind=kind, state="running", stage="starting", ts=time.time())
            self._publish(self.topics.job_progress(kind, job, me), claiming.to_json(), retain=True)
            if not claim.seen.wait(CLAIM_WAIT_S):
                log.warning("job %s: no claim came back (can this trainer read jobs/+/+/progress/+?)", job)
                return me
        finally:
            self._client.unsubscribe(f"{base}/+")
            self._claims.pop((kind, job), None)
        winner = claim.first or me
        if winner != me:  # withdraw the claim: a later agent must not take it for the first
            self._publish(self.topics.job_progress(kind, job, me), b"", retain=True)
        return winner

    # --- jobs -------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            msg = self._queue.get()
            if msg is None:
                return
            try:
                result = self.handle(msg.topic, msg.payload)
                if result is not None:
                    self._publish_result(result)
            except Exception:  # the agent outlives any one job
                log.exception("handling a job request on %s failed", msg.topic)
            finally:
                self._client.ack(msg.mid, msg.qos)

    def handle(self, topic: str, payload: bytes) -> JobResult | None:
        """Run one request; return its result (``None`` if it cannot be answered)."""
        try:
            parsed = self.topics.parse(topic)
            if parsed.kind != TopicKind.JOB_REQUEST or parsed.job_kind not in self.settings.kinds:
                raise ContractError(f"not a {'/'.join(self.settings.kinds)} job topic")
            job = parse_job(payload)
            if job.kind != parsed.job_kind:
                raise ContractError(f"a {job.kind} job on the {parsed.job_kind} topic")
        except ContractError as exc:
            return self._invalid(topic, payload, str(exc))
        job_dir = self.work_dir / "jobs" / job.job
        result_path = job_dir / "result.json"
        if result_path.exists():
            self.console.print(f"job {job.job}: already done, publishing its result again")
            return JobResult.from_json(result_path.read_bytes())
        if self.url.username:  # a broker with identities: several trainers may see this job
            winner = self._claim(job.kind, job.job)
            if winner != self.url.username:
                self.console.print(f"job {job.job}: trainer {winner} took it; leaving it")
                self.left.append(job.job)
                return None
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "job.json").write_bytes(payload)
        settings = self.settings.model_dump(mode="json", include=set(TrainerSettings.model_fields)) | {
            "work_dir": str(self.work_dir / "runs"),
            "progress_bar": False,
        }
        (job_dir / "settings.json").write_text(json.dumps(settings))
        if not self.url.username:  # with identities, the claim said so
            self._progress(
                JobProgress(job=job.job, kind=job.kind, state="running", stage="starting", ts=time.time())
            )
        self.console.print(f"[bold]job {job.job}[/] ({job.kind}) started; log: {job_dir / 'log.txt'}")
        started = time.monotonic()
        result = self._run(job.job, job.kind, job_dir)
        result = result.model_copy(update={"duration_s": result.duration_s or time.monotonic() - started})
        if result.status == "succeeded" and result.kind == "train" and result.model is not None:
            result = self._after_train(result, result_path)
        colour = "green" if result.status == "succeeded" else "red"
        self.console.print(
            f"[{colour}]job {job.job} {result.status}[/]" + (f": {result.error}" if result.error else "")
        )
        return result

    def _run(self, job: str, kind: str, job_dir: Path) -> JobResult:
        result_path = job_dir / "result.json"
        cmd = [sys.executable, "-m", "trainer.job", str(job_dir / "job.json"), str(job_dir / "settings.json"),
               str(result_path)]  # fmt: skip
        relay = job_dir / "progress.jsonl"
        relay.unlink(missing_ok=True)
        with open(job_dir / "log.txt", "ab") as logf:
            env = {**os.environ, "PADDOCK_AGENT_PID": str(os.getpid())}
            env[PROGRESS_FILE_ENV] = str(relay.resolve())  # the job reports there, the agent publishes
            if self.settings.ca_file:
                env[CA_FILE_ENV] = str(Path(self.settings.ca_file).resolve())
            proc = subprocess.Popen(
                cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
            self._current = proc
            try:
                code = self._wait_relaying(proc, relay)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return self._failed(job, kind, f"timed out after {self.settings.job_timeout_s:g} s")
            finally:
                self._current = None
        if result_path.exists():
            return JobResult.from_json(result_path.read_bytes())
        tail = _tail(job_dir / "log.txt")
        return self._failed(job, kind, f"job process exited with status {code} without a result; log: {tail}")

    def _wait_relaying(self, proc: subprocess.Popen[bytes], relay: Path) -> int:
        """Wait for the job process, publishing the progress it writes to ``relay`` meanwhile."""
        timeout = self.settings.job_timeout_s
        deadline = None if timeout is None else time.monotonic() + timeout
        offset = 0
        while True:
            try:
                code = proc.wait(timeout=RELAY_EVERY_S)
            except subprocess.TimeoutExpired:
                code = None
            offset = self._relay(relay, offset)
            if code is not None:
                return code
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout or 0)

    def _relay(self, relay: Path, offset: int) -> int:
        """Publish the whole lines written to ``relay`` after ``offset``; returns the new offset."""
        try:
            with open(relay, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return offset
        lines = data.split(b"\n")[:-1]  # an unfinished last line waits for the next look
        for line in lines:
            try:
                self._progress(JobProgress.from_json(line))
            except ContractError as exc:
                log.warning("the job process reported nonsense: %s", exc)
        return offset + sum(len(line) + 1 for line in lines)

    def _after_train(self, result: JobResult, result_path: Path) -> JobResult:
        """The ``after_train`` check of the model a train job registered; a check that fails to run
        is a warning, never a failed job (the gate refuses a model that has no check)."""
        if self.after_train is None or not self.settings.hub:
            return result
        try:
            extra = self.after_train(result)
        except Exception as exc:
            log.warning("job %s: checking its model failed: %s", result.job, exc)
            self.console.print(f"[yellow]job {result.job}: checking its model failed[/]: {exc}")
            return result
        checked = result.model_copy(update={"metrics": result.metrics | extra})
        result_path.write_bytes(checked.to_json())
        self.console.print(f"job {result.job}: model checked: {extra}")
        return checked

    def _failed(self, job: str, kind: str, error: str) -> JobResult:
        result = JobResult(job=job, kind=kind, status="failed", error=error, ts=time.time())
        path = self.work_dir / "jobs" / job / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(result.to_json())
        return result

    def _invalid(self, topic: str, payload: bytes, reason: str) -> JobResult | None:
        job_id, kind = None, topic.rsplit("/", 1)[-1]
        try:
            data = json.loads(payload)
            if isinstance(data, dict) and isinstance(data.get("job"), str):
                job_id = check_name(data["job"], "job id")
        except (ValueError, ContractError):
            job_id = None
        if job_id is None or kind not in KINDS:
            self.console.print(f"[red]ignored a request on {topic}[/]: {reason} (no job id to answer to)")
            return None
        self.console.print(f"[red]job {job_id} rejected[/]: {reason}")
        return JobResult(job=job_id, kind=kind, status="failed", error=reason, ts=time.time())

    # --- publishing -------------------------------------------------------------------------------
    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(10)
        except (RuntimeError, ValueError) as exc:
            log.warning("publishing %s failed: %s", topic, exc)

    def _progress(self, progress: JobProgress, retain: bool = False) -> None:
        topic = self.topics.job_progress(progress.kind, progress.job, self.url.username)
        self._publish(topic, progress.to_json(), retain)

    def _publish_result(self, result: JobResult) -> None:
        state = "succeeded" if result.status == "succeeded" else "failed"
        self._progress(
            JobProgress(
                job=result.job,
                kind=result.kind,
                state=state,
                stage="done",
                message=result.error,
                ts=time.time(),
            ),
            retain=bool(self.url.username),  # replaces the retained claim: the job's last word
        )
        self._publish(self.topics.job_result(result.kind, result.job, self.url.username), result.to_json())
        self.results.append(result)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the job process and the launcher's workers it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:])
