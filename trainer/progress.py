"""Where training and evaluation report progress: MQTT ``jobs/{kind}/{job}/progress`` when a broker is
configured, or nowhere. Publishing never stops the work: a broker that goes away costs events, not the run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Protocol

from infra.tls import client_context, fleet_ca
from schemas.messages import JobProgress, JobResult
from schemas.mqtt_url import BrokerUrl
from schemas.topics import DEFAULT_PREFIX, Topics

log = logging.getLogger(__name__)

# Set by the trainer agent for the jobs it starts: a job writes its progress there (JSON lines) and
# the agent publishes it, on its own connection. A second connection under the trainer's identity
# would take the agent's session over on a broker that ties client ids to identities.
PROGRESS_FILE_ENV = "PADDOCK_PROGRESS_FILE"


class ProgressSink(Protocol):
    def emit(self, progress: JobProgress) -> None: ...

    def close(self) -> None: ...


class NullSink:
    def emit(self, progress: JobProgress) -> None:
        pass

    def close(self) -> None:
        pass


class MqttPublisher:
    """A small synchronous MQTT 3.1.1 publisher (paho, network loop in a thread) for job updates."""

    def __init__(
        self,
        broker_url: str,
        prefix: str = DEFAULT_PREFIX,
        client_id: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.url = BrokerUrl.parse(broker_url)
        self.topics = Topics(prefix)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"paddock-trainer-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        if self.url.username:
            self._client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:  # the fleet's CA (the agent passes it to its jobs), else the system's
            self._client.tls_set_context(client_context(fleet_ca(ca_file)))
        self._connected = threading.Event()
        self._client.on_connect = lambda *_args: self._connected.set()
        self._client.connect_async(self.url.host, self.url.port, keepalive=30)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = 5.0) -> bool:
        """Publish and wait up to ``timeout`` for the broker's acknowledgement; False if it did not come."""
        if not self._connected.wait(timeout):
            log.warning("MQTT broker %s:%s not reachable; dropped %s", self.url.host, self.url.port, topic)
            return False
        info = self._client.publish(topic, payload, qos=qos)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            log.warning("publishing %s failed: %s", topic, exc)
            return False
        return info.is_published()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class _Throttle:
    """Step updates pass at most every ``min_interval_s``; state changes and epoch ends always do."""

    def __init__(self, min_interval_s: float) -> None:
        self.min_interval_s = min_interval_s
        self._last = 0.0

    def passes(self, progress: JobProgress) -> bool:
        now = time.monotonic()
        stepping = progress.step is not None and progress.stage == "train"
        if stepping and now - self._last < self.min_interval_s:
            return False
        self._last = now
        return True


class FileProgress:
    """Appends :class:`JobProgress` (one JSON line each) to the file the trainer agent relays."""

    def __init__(self, path: str, min_interval_s: float = 1.0) -> None:
        self.path = path
        self._throttle = _Throttle(min_interval_s)

    def emit(self, progress: JobProgress) -> None:
        if self._throttle.passes(progress):
            with open(self.path, "ab") as f:  # a whole line per write: the agent reads only whole lines
                f.write(progress.to_json() + b"\n")

    def close(self) -> None:
        pass


class MqttProgress:
    """Publishes :class:`JobProgress` for one job (QoS 1), at most every ``min_interval_s`` unless final."""

    def __init__(
        self,
        broker_url: str,
        job: str,
        kind: str = "train",
        prefix: str = DEFAULT_PREFIX,
        min_interval_s: float = 1.0,
        publisher: MqttPublisher | None = None,
    ) -> None:
        self._own = publisher is None
        self.publisher = publisher or MqttPublisher(broker_url, prefix)
        # on the trainer's own topic (its broker user name), as the broker's ACL requires
        self.topic = self.publisher.topics.job_progress(kind, job, self.publisher.url.username)
        self._throttle = _Throttle(min_interval_s)

    def emit(self, progress: JobProgress) -> None:
        if self._throttle.passes(progress):
            self.publisher.publish(self.topic, progress.to_json())

    def close(self) -> None:
        if self._own:
            self.publisher.close()


def job_sink(broker: str | None, job: str | None, kind: str, topic_prefix: str) -> ProgressSink:
    """Where a job's progress goes: the agent's relay file when the agent started the job, else the
    broker when there is one and the run is a job, else nowhere."""
    relay = os.environ.get(PROGRESS_FILE_ENV)
    if relay and job:
        return FileProgress(relay)
    if broker and job:
        return MqttProgress(broker, job, kind, topic_prefix)
    return NullSink()


def publish_result(publisher: MqttPublisher, result: JobResult) -> bool:
    topic = publisher.topics.job_result(result.kind, result.job, publisher.url.username)
    return publisher.publish(topic, result.to_json())
