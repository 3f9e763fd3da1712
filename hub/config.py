"""The hub's configuration: one validated pydantic model, loadable from TOML.

Every field has a default that suits one laptop (local data directory, SQLite, the embedded broker on
``mqtt://127.0.0.1:1883``), so ``HubConfig()`` is a working hub. ``paddock hub config`` prints the
whole file with each field's description. Relative paths in a TOML file are relative to that file.
"""

import os
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

import infra.config
from infra.store import ObjectStore, open_store
from infra.tls import client_context, require_key_pair
from schemas.errors import ContractError
from schemas.mqtt_url import BrokerUrl
from schemas.topics import Topics

MiB = 1024 * 1024
Seconds = Annotated[float, Field(gt=0)]


class HubConfigError(infra.config.ConfigError):
    """A hub configuration that cannot be used; the message names the file and the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MqttConfig(_Section):
    """How the hub reaches the broker."""

    url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="Broker URL: mqtt://[user[:password]@]host[:port], or mqtts:// for TLS.",
    )
    client_id: str = Field(
        default="paddock-hub",
        min_length=1,
        max_length=23,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="MQTT client id. The broker keeps the hub's persistent session (and queues frames "
        "while the hub is down) under this id, so keep it stable and unique per hub.",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    password_file: Path | None = Field(
        default=None,
        description="File holding the hub's broker password (mode 0600), instead of putting it in the url; "
        "the user name still comes from the url.",
    )
    ca_file: Path | None = Field(
        default=None, description="CA certificate (PEM) for mqtts:// brokers; the system's CAs when unset."
    )
    cert_file: Path | None = Field(
        default=None,
        description="The hub's client certificate (PEM, `paddock fleet ca`) for a broker that requires "
        "one (mqtts:// only); needs key_file.",
    )
    key_file: Path | None = Field(default=None, description="The private key of cert_file (PEM, mode 0600).")
    reconnect_min_s: int = Field(default=1, ge=1, le=3600, description="First reconnect delay in seconds.")
    reconnect_max_s: int = Field(default=10, ge=1, le=3600, description="Longest reconnect delay in seconds.")
    connect_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="How long start() waits for the first connection before going on in the "
        "background (the hub keeps retrying; the API serves meanwhile).",
    )
    publish_timeout_s: Seconds = Field(
        default=10.0, description="How long a deployment or job request waits for the broker's ack."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            BrokerUrl.parse(value)
        except ContractError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _key_pair(self) -> Self:
        require_key_pair(self.cert_file, self.key_file)
        return self

    @property
    def broker(self) -> BrokerUrl:
        return BrokerUrl.parse(self.url)

    def tls_context(self) -> ssl.SSLContext | None:
        """How the hub verifies an mqtts:// broker (and, with ``cert_file``, proves who it is)."""
        if not self.broker.tls:
            return None
        try:
            return client_context(self.ca_file, self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise HubConfigError(f"mqtt.ca_file/cert_file/key_file: {exc}") from None

    def password(self) -> str | None:
        """The broker password: ``password_file``'s content when set, else the url's."""
        if self.password_file is None:
            return self.broker.password
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise HubConfigError(f"mqtt.password_file: {self.password_file}: {exc.strerror}") from None


def read_secret(value: SecretStr | None, path: Path | None, what: str) -> str | None:
    """A secret given inline or as a file (``paddock fleet secrets``, compose secrets): the file's
    content, stripped; a file that cannot be read or is empty is the operator's error."""
    if value is not None:
        return value.get_secret_value()
    if path is None:
        return None
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise HubConfigError(f"{what}: {path}: {exc.strerror}") from None
    if not secret:
        raise HubConfigError(f"{what}: {path} is empty")
    return secret


class ApiToken(_Section):
    """A bearer token with a scope: ``token``, or ``token_file`` holding it."""

    token: SecretStr | None = Field(
        default=None, description="The secret (long and random: `openssl rand -hex 24`)."
    )
    token_file: Path | None = Field(default=None, description="A file holding the secret, instead of token.")
    scope: Literal["read", "operate", "admin"] = Field(description="What it may do.")
    name: str = Field(default="", description="Who holds it (for the operator's notes).")

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("an api token needs exactly one of token and token_file")
        return self

    def secret(self) -> str:
        value = read_secret(self.token, self.token_file, f"api token {self.name or self.scope}")
        assert value is not None
        return value


class ApiConfig(_Section):
    """The REST API (FastAPI; OpenAPI at /docs)."""

    host: str = Field(default="127.0.0.1", description="Address to listen on; 0.0.0.0 for the LAN.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on; 0 picks a free one.")
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token required on every mutating route. When unset, the environment "
        "variable PADDOCK_HUB_TOKEN is used, else a token is generated on first start and kept in "
        "{data_dir}/api-token (mode 0600).",
    )
    token_file: Path | None = Field(
        default=None, description="A file holding the admin token (mode 0600), instead of token."
    )
    protect_reads: bool | None = Field(
        default=None,
        description="Require a token on read-only routes. Default: yes, unless the API listens on "
        "loopback only.",
    )
    tokens: list[ApiToken] = Field(
        default_factory=list,
        description="More bearer tokens, each with a scope: read (GET routes), operate (commands, "
        "recordings, jobs, datasets) or admin (models, deployments, deletions). `token` is admin.",
    )
    public_url: str | None = Field(
        default=None,
        description="The URL cars and trainers use to reach this API (model downloads, api_url in "
        "the hub status). Default: http://{host}:{port} as bound.",
    )
    max_upload_mb: float = Field(
        default=512, gt=0, description="Largest model artifact or uploaded session tar accepted."
    )
    access_log: bool = Field(default=False, description="Log every HTTP request.")
    cert_file: Path | None = Field(
        default=None,
        description="Serve HTTPS with this certificate (PEM; `paddock fleet ca` writes tls/hub-api.crt, "
        "signed by the fleet's CA); needs key_file. Default: plain HTTP.",
    )
    key_file: Path | None = Field(default=None, description="The private key of cert_file (PEM, mode 0600).")

    @model_validator(mode="after")
    def _key_pair(self) -> Self:
        require_key_pair(self.cert_file, self.key_file)
        return self

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"public_url {value!r} must be an http:// or https:// URL")
        return value.rstrip("/")


class StoreConfig(_Section):
    """Object storage for shards, manifests and models."""

    url: str | None = Field(
        default=None,
        description="Where objects go: a directory path (or file:///path), or s3://bucket[/prefix] for "
        "any S3-compatible service. Default: {data_dir}/store.",
    )
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint, e.g. http://minio:9000 (AWS when unset)."
    )
    region: str = Field(default="us-east-1", description="S3 region.")
    access_key_id: str | None = Field(default=None, description="S3 access key (else the AWS_* environment).")
    secret_access_key: SecretStr | None = Field(default=None, description="S3 secret key.")
    create_bucket: bool = Field(default=True, description="Create the S3 bucket when it does not exist.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:
            return value
        scheme = value.split("://", 1)[0]
        if scheme not in ("file", "s3"):
            raise ValueError(f"store url {value!r}: use a path, file:///path or s3://bucket/prefix")
        if scheme == "s3" and not urlsplit(value).netloc:
            raise ValueError(f"store url {value!r} has no bucket")
        return value


class SpoolConfig(_Section):
    """The write-ahead spool: frames are acknowledged to the broker only once they are on disk."""

    dir: Path | None = Field(default=None, description="Spool directory. Default: {data_dir}/spool.")
    fsync: bool = Field(
        default=True,
        description="fsync each batch before acknowledging it. Turning this off trades crash safety "
        "(power loss) for speed; a killed process still loses nothing.",
    )
    segment_mb: float = Field(default=64, gt=0, description="Size at which a new spool segment starts.")
    max_batch_frames: int = Field(default=2000, ge=1, description="Most frames written per fsync.")
    commit_interval_ms: float = Field(
        default=0,
        ge=0,
        le=1000,
        description="Least time between two fsyncs. 0 commits as soon as the previous fsync ends (group "
        "commit); a few ms make batches larger and cost less CPU, and add that much to each acknowledgement.",
    )
    max_pending_mb: float = Field(
        default=256,
        gt=0,
        description="Frames received but not yet on disk, beyond which ingest stops reading from the "
        "broker (the broker keeps them) until the disk catches up.",
    )


class ShardsConfig(_Section):
    """Sealing spooled frames into WebDataset shards."""

    target_mb: float = Field(default=4, gt=0, description="A shard is sealed when it reaches this size.")
    idle_seal_s: Seconds = Field(
        default=3.0, description="Seal what a session has buffered after this long without a new frame."
    )
    session_close_s: Seconds = Field(
        default=30.0,
        description="A session without frames for this long is marked sealed (a later frame reopens it). "
        "A recording_stopped event closes it at once.",
    )
    max_frame_mb: float = Field(default=16, gt=0, description="Frames larger than this are malformed.")
    sealer: Literal["process", "thread"] = Field(
        default="process",
        description="Where sealing runs: its own process (uses another core; never slows the "
        "acknowledgement of frames) or a thread of the hub's process.",
    )
    sealer_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description='With sealer = "process": its niceness, so that on a busy machine the kernel '
        "runs ingest first.",
    )
    busy_share: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description='With sealer = "thread": while frames are arriving, the share of time sealing may '
        "take (acknowledging frames comes first; the spool holds the rest and sealing catches up when "
        "the burst ends). 1 seals at full speed always.",
    )
    max_lag_mb: float = Field(
        default=1024,
        gt=0,
        description="Spooled but unsealed data beyond which sealing runs at full speed even during a burst.",
    )
    record_preview: bool = Field(
        default=False,
        description="Also persist preview frames. By default only recording frames are persisted: a "
        "frame is a preview when it arrives with QoS 0 or its header says preview: true (brokers such as "
        "amqtt deliver at the subscription's QoS, so the header is the reliable sign). The latest preview "
        "of each car is kept in memory for the API.",
    )
    preview_cache_mb: float = Field(
        default=64,
        gt=0,
        description="Memory for the cars' latest previews and telemetry, all cars together: the least "
        "recently updated car is forgotten first, so invented car ids cannot fill the hub's memory.",
    )
    preview_ttl_s: Seconds = Field(
        default=600.0,
        description="A car's latest preview and telemetry are forgotten after this long without a new one.",
    )


class CatalogConfig(_Section):
    path: Path | None = Field(default=None, description="SQLite catalog. Default: {data_dir}/catalog.sqlite.")


class SinkQueueConfig(_Section):
    queue_size: int = Field(default=50_000, ge=1, description="Points buffered; the oldest drop beyond.")
    batch_size: int = Field(default=1000, ge=1, description="Most points per write.")
    flush_interval_s: Seconds = Field(default=1.0, description="Longest a point waits before a write.")
    retry_max_s: Seconds = Field(default=30.0, description="Longest pause between retries of a write.")


class SqliteSinkConfig(SinkQueueConfig):
    """Telemetry and events in SQLite: the embedded default, serving the hub's own views."""

    enabled: bool = Field(default=True, description="Keep telemetry and events in SQLite.")
    path: Path | None = Field(default=None, description="Default: {data_dir}/telemetry.sqlite.")
    retention_s: Seconds = Field(default=7 * 24 * 3600.0, description="Rows older than this are deleted.")
    max_rows: int = Field(default=1_000_000, ge=1000, description="Most telemetry rows kept (oldest go).")


class InfluxSinkConfig(SinkQueueConfig):
    """Telemetry to InfluxDB (measurements tagged car, session, model, mode; numeric fields)."""

    enabled: bool = Field(default=False, description="Write telemetry to InfluxDB.")
    url: str = Field(default="http://127.0.0.1:8086", description="InfluxDB (or compatible) base URL.")
    api: Literal["v2", "v1"] = Field(
        default="v2",
        description="v2: influxdb-client on /api/v2/write (InfluxDB 2.x/3.x, 1.8+, VictoriaMetrics). "
        "v1: line protocol on /write (InfluxDB 1.x before 1.8).",
    )
    token: SecretStr | None = Field(
        default=None, description="v2 API token (for InfluxDB 1.8 use 'user:password')."
    )
    token_file: Path | None = Field(default=None, description="A file holding the token, instead of token.")
    org: str = Field(default="paddock", description="v2 organisation.")
    bucket: str = Field(default="paddock", description="v2 bucket (for InfluxDB 1.8: 'database/rp').")
    database: str = Field(default="paddock", description="v1 database.")
    retention_policy: str | None = Field(default=None, description="v1 retention policy.")
    username: str | None = Field(default=None, description="v1 user.")
    password: SecretStr | None = Field(default=None, description="v1 password.")
    timeout_s: Seconds = Field(default=10.0, description="HTTP timeout of one write.")
    ingest_interval_s: Seconds = Field(
        default=10.0, description="How often the hub writes its own ingest counters (measurement 'ingest')."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"influxdb url {value!r} must be http:// or https://")
        return value.rstrip("/")


class SinksConfig(_Section):
    sqlite: SqliteSinkConfig = Field(default_factory=SqliteSinkConfig)
    influxdb: InfluxSinkConfig = Field(default_factory=InfluxSinkConfig)


class DeploymentsConfig(_Section):
    """Signed, retained model deployments."""

    inline_max_mb: float = Field(
        default=8,
        ge=0,
        description="Models up to this size travel inside the retained message; larger ones carry a "
        "download URL on this hub instead.",
    )
    republish_on_connect: bool = Field(
        default=True,
        description="Publish every current deployment again (retained) on each connection, so a "
        "broker that lost its retained messages gets them back.",
    )
    key_path: Path | None = Field(
        default=None,
        description="Ed25519 signing key (PEM, mode 0600), created on first start. "
        "Default: {data_dir}/keys/hub-ed25519.pem.",
    )
    envelope_ttl_s: float = Field(
        default=7 * 86400.0,
        ge=60,
        le=366 * 86400,
        description="A signed model envelope expires this long after signing (cars refuse it then); "
        "the hub signs each target's current model again when half of it has passed.",
    )


class MlopsConfig(_Section):
    """Model monitoring: when a model's live inputs or driving part from what it was trained on."""

    drift_threshold: float = Field(
        default=0.25,
        gt=0,
        description="Population stability index between a model's live input statistics and its "
        "card's training statistics above which the car's inputs have drifted (0.1: moderate, "
        "0.25: a major shift, by the usual PSI reading).",
    )
    feature_drift_threshold: float = Field(
        default=0.25,
        gt=0,
        description="Feature drift (the RMS mean shift of the network's features in pooled standard "
        "deviations, less sampling noise; schemas.input_stats.feature_drift) against the card's "
        "training features above "
        "which the car's inputs have drifted, also while the pixel PSI stays below its threshold "
        "(models whose card has no features: pixels only).",
    )
    drift_reports: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Reports in a row above the threshold before drift (and below, to clear it).",
    )
    rate_window_s: float = Field(
        default=60, ge=5, le=3600, description="Window for interventions and off-track moments per minute."
    )
    max_interventions_per_min: float = Field(
        default=2.0, gt=0, description="More interventions per minute than this: the model is degraded."
    )
    max_off_track_per_min: float = Field(
        default=2.0, gt=0, description="More off-track moments per minute than this: the model is degraded."
    )
    gate: bool = Field(
        default=False,
        description="Evaluation gate: refuse a deployment (409, with the figures) whose closed-loop "
        "evaluation is worse than the current model's on the target; `force` overrides it.",
    )
    gate_min_completion_pct: float = Field(
        default=100,
        ge=0,
        le=100,
        description="Completion needed where the target has no model yet.",
    )
    gate_lap_time_tolerance: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="How much slower than the current best lap still passes.",
    )
    gate_smoke_test: bool = Field(
        default=False,
        description="The gate also needs a passing car-side smoke test of the candidate, recorded "
        "by `paddock hub smoke-test` (the car's own check, run where its runtime is).",
    )
    retrain_on_drift: bool = Field(
        default=False, description="Queue a train job on the model's dataset when its inputs drift."
    )
    retrain_epochs: int = Field(default=10, ge=1, le=10_000, description="Epochs of a triggered train job.")
    retrain_architecture: str = Field(
        default="mobilenet", max_length=64, description="Architecture of a triggered job's model."
    )
    retrain_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Training options of a triggered job (the trainer's TrainConfig fields, e.g. "
        "`{model = {width = 80, height = 40}, batch_size = 64}`).",
    )
    retrain_evaluate_track: str | None = Field(
        default=None, description="Track of the triggered job's closed-loop evaluation (the gate's figures)."
    )
    retrain_evaluate_laps: int = Field(default=2, ge=0, le=100, description="Laps of that evaluation.")
    retrain_cooldown_s: float = Field(
        default=3600, ge=0, description="At most one triggered train job per model in this time."
    )
    retrain_on_degradation: bool = Field(
        default=False, description="Queue a train job when a car's model is degraded (the rates above)."
    )
    retrain_on_feedback_frames: int = Field(
        default=0,
        ge=0,
        description="Queue a train job once a model has this many new feedback frames (0: off).",
    )
    retrain_every_s: float = Field(
        default=0, ge=0, description="Retrain every deployed model this often (0: no schedule)."
    )
    feedback: bool = Field(
        default=True, description="Gather the frames where a model failed into the `feedback` dataset."
    )
    feedback_frames: int = Field(
        default=30, ge=1, le=100_000, description="Manual frames kept after each human takeover."
    )
    feedback_min_disagreement: float = Field(
        default=0.2, gt=0, le=2, description="Steering gap to a recorded teacher's label that makes feedback."
    )
    feedback_scan_s: float = Field(
        default=30, ge=0.1, le=86400, description="How often newly sealed sessions are read for feedback."
    )
    canary_cars: int = Field(
        default=1, ge=1, le=1000, description="Cars of the group that try a new model first."
    )
    canary_fraction: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Instead of `canary_cars`: this fraction of the group's cars (rounded up).",
    )
    canary_window_s: float = Field(
        default=300, ge=1, le=7 * 86400, description="How long the canary drives before the hub decides."
    )
    canary_min_laps: int = Field(
        default=1, ge=0, le=1000, description="Flying laps the canary must complete in the window."
    )
    canary_rate_margin_per_min: float = Field(
        default=0.5,
        ge=0,
        description="How many more off-track moments (and, apart, interventions) per minute than the "
        "group's cars on the current model the canary may have.",
    )
    canary_lap_time_tolerance: float = Field(
        default=0.10, ge=0, le=10, description="How much slower than the group's median lap a canary may be."
    )
    canary_evaluation_tolerance: float = Field(
        default=0.25,
        ge=0,
        le=10,
        description="How much slower than its own evaluation's best lap the canary's median lap may be.",
    )
    canary_max_incidents: int = Field(
        default=10,
        ge=1,
        description="Off-track moments and interventions on the canary that roll it back at once.",
    )
    canary_groups: list[Annotated[str, Field(pattern=r"^(\*|[a-z0-9-]{1,32})$")]] = Field(
        default_factory=list,
        description="Groups whose `POST /deployments` starts a canary (one car first, the hub decides) "
        "instead of deploying to every car; `*`: every group. A request's `canary` overrides it.",
    )
    auto_deploy: Literal["off", "canary", "group"] = Field(
        default="off",
        description="What happens to the model a triggered train job registers: `off`: registered "
        "only; `canary`: the gate (with the car-side smoke test the trainer agent records), then a "
        "canary on each group that drives the retrained model, promoted or rolled back by the hub; "
        "`group`: the gate, then deployed to those groups. Needs `gate` and `gate_smoke_test`.",
    )
    auto_deploy_smoke_wait_s: float = Field(
        default=120,
        ge=0,
        le=86400,
        description="How long a triggered job's model waits for its smoke test before the gate judges it.",
    )

    @model_validator(mode="after")
    def _auto_deploy_is_gated(self) -> Self:
        if self.auto_deploy != "off" and not (self.gate and self.gate_smoke_test):
            raise ValueError(
                f"auto_deploy = {self.auto_deploy!r} needs gate = true and gate_smoke_test = true: "
                "a model no human looked at is deployed only once it passed both"
            )
        return self

    def canaries_group(self, group: str) -> bool:
        """Whether a deployment to ``group`` starts a canary (``canary_groups``)."""
        return "*" in self.canary_groups or group in self.canary_groups


class HubConfig(_Section):
    """Everything the hub needs. Defaults give a self-contained hub in ./paddock-hub."""

    data_dir: Path = Field(
        default=Path("paddock-hub"), description="Where the spool, catalog, keys and local store live."
    )
    topic_prefix: str = Field(default="paddock", description="MQTT topic prefix (several fleets per broker).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    shards: ShardsConfig = Field(default_factory=ShardsConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    deployments: DeploymentsConfig = Field(default_factory=DeploymentsConfig)
    mlops: MlopsConfig = Field(default_factory=MlopsConfig)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        try:
            Topics(value)
        except ContractError as exc:
            raise ValueError(str(exc)) from None
        return value

    # --- derived paths ----------------------------------------------------------------------------
    @property
    def spool_dir(self) -> Path:
        return self.spool.dir or self.data_dir / "spool"

    @property
    def catalog_path(self) -> Path:
        return self.catalog.path or self.data_dir / "catalog.sqlite"

    @property
    def telemetry_path(self) -> Path:
        return self.sinks.sqlite.path or self.data_dir / "telemetry.sqlite"

    @property
    def key_path(self) -> Path:
        return self.deployments.key_path or self.data_dir / "keys" / "hub-ed25519.pem"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "api-token"

    @property
    def store_url(self) -> str:
        return self.store.url or str(self.data_dir / "store")

    # --- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | str) -> Self:
        """Load a TOML file; relative paths in it are taken relative to the file's directory."""
        path = Path(path)
        data = infra.config.read_toml(path, HubConfigError)
        return cls.from_dict(data, source=str(path), base_dir=path.parent)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config", base_dir: Path | None = None) -> Self:
        config = infra.config.validate(cls, data, source, HubConfigError)
        return config.resolve_paths(base_dir) if base_dir is not None else config

    def resolve_paths(self, base_dir: Path) -> Self:
        """Make relative paths absolute against ``base_dir`` (the config file's directory)."""

        def fix(p: Path | None) -> Path | None:
            if p is None:
                return None
            p = p.expanduser()
            return p if p.is_absolute() else (base_dir / p).resolve()

        data_dir = fix(self.data_dir)
        assert data_dir is not None
        update: dict[str, Any] = {"data_dir": data_dir}
        config = self.model_copy(update=update, deep=True)
        config.spool.dir = fix(self.spool.dir)
        config.catalog.path = fix(self.catalog.path)
        config.sinks.sqlite.path = fix(self.sinks.sqlite.path)
        config.deployments.key_path = fix(self.deployments.key_path)
        config.mqtt.ca_file = fix(self.mqtt.ca_file)
        config.api.token_file = fix(self.api.token_file)
        for token in config.api.tokens:
            token.token_file = fix(token.token_file)
        config.sinks.influxdb.token_file = fix(self.sinks.influxdb.token_file)
        config.api.cert_file = fix(self.api.cert_file)
        config.api.key_file = fix(self.api.key_file)
        config.mqtt.cert_file = fix(self.mqtt.cert_file)
        config.mqtt.key_file = fix(self.mqtt.key_file)
        config.mqtt.password_file = fix(self.mqtt.password_file)
        url = self.store.url
        if url is not None and "://" not in url:
            config.store.url = str(fix(Path(url)))
        return config

    def open_store(self) -> ObjectStore:
        """The object store ``[store]`` names (boto3 is imported only for ``s3://``)."""
        store = self.store
        return open_store(
            self.store_url,
            endpoint_url=store.endpoint_url,
            region=store.region,
            access_key_id=store.access_key_id,
            secret_access_key=store.secret_access_key.get_secret_value() if store.secret_access_key else None,
            create_bucket=store.create_bucket,
        )

    def api_token_from_env(self) -> str | None:
        """The admin token: ``api.token``, ``api.token_file``'s, else ``PADDOCK_HUB_TOKEN``."""
        given = read_secret(self.api.token, self.api.token_file, "api.token_file")
        return given or os.environ.get("PADDOCK_HUB_TOKEN") or None


def default_toml() -> str:
    """The default configuration as a commented TOML file (what ``paddock hub config`` prints)."""
    header = [
        "paddock hub configuration. Every value shown is the default; delete what you do not change.",
        "Relative paths are relative to this file.",
        "",
    ]
    return infra.config.commented_toml(HubConfig(), header)
