"""The car's configuration: one TOML file (``/etc/paddock/car.toml``), every field documented here.

Build it from a file with :func:`load_config` or in code (``CarConfig(car={"id": "car-1"}, ...)``).
Unknown keys are errors (a typo must not silently fall back to a default), and every error names
the file and the field. ``paddock car config --example`` prints a complete, commented file made
from the descriptions below.
"""

from pathlib import Path
from typing import Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import infra.config
from edge import plugins
from infra.tls import require_key_pair
from schemas.ids import CarId, GroupId
from schemas.messages import Mode
from schemas.mqtt_url import BrokerUrl
from schemas.topics import Topics

DEFAULT_CONFIG_PATH = Path("/etc/paddock/car.toml")
RuntimeName = Literal["onnx", "tflite"]
RUNTIME_NAMES: tuple[RuntimeName, ...] = ("onnx", "tflite")


class ConfigError(infra.config.ConfigError):
    """A car configuration that cannot be used; the message names the file and the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


class CarSection(_Section):
    id: CarId = Field(description="This car's id: 1-32 of a-z, 0-9 and '-'. Appears in every topic.")
    group: GroupId | None = Field(
        default=None, description="Fleet group; the car also takes models assigned to this group."
    )
    description: str = Field(default="", description="Free text shown by the hub.")


class BrokerSection(_Section):
    url: str = Field(
        default="mqtt://localhost:1883",
        description="MQTT broker: mqtt://[user[:password]@]host[:port], or mqtts:// for TLS.",
    )
    prefix: str = Field(default="paddock", description="Topic prefix (the same for the whole fleet).")
    client_id: str | None = Field(default=None, description="MQTT client id; default paddock-car-{id}.")
    password_file: Path | None = Field(
        default=None, description="File holding the broker password (instead of putting it in the url)."
    )
    ca_file: Path | None = Field(default=None, description="CA certificate for mqtts:// brokers.")
    cert_file: Path | None = Field(
        default=None,
        description="This car's client certificate (PEM, from `paddock fleet ca`), for brokers that "
        "require one (mqtts:// only); needs key_file.",
    )
    key_file: Path | None = Field(default=None, description="The private key of cert_file (PEM, mode 0600).")
    keepalive_s: int = Field(
        default=10, ge=2, le=600, description="MQTT keepalive; the broker declares the car dead after 1.5x."
    )
    connect_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="Give up one connection attempt after this."
    )
    reconnect_min_s: float = Field(default=0.5, gt=0, le=60, description="First wait before reconnecting.")
    reconnect_max_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest wait between reconnects (the wait doubles up to it).",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        BrokerUrl.parse(v)
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        Topics(v)
        return v

    @model_validator(mode="after")
    def _backoff(self) -> Self:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        require_key_pair(self.cert_file, self.key_file)
        return self


class LoopSection(_Section):
    hz: float = Field(default=30.0, ge=1, le=100, description="Control rate in ticks per second (1-100).")
    deadman_ms: float = Field(
        default=250.0,
        ge=50,
        le=5000,
        description="Manual mode: throttle goes to 0 when no drive command came for this long.",
    )
    start_mode: Mode = Field(
        default="manual", description="Mode at boot: manual (throttle 0 until driven), autopilot or stop."
    )
    max_frame_age_ms: float = Field(
        default=200.0, gt=0, le=5000, description="Autopilot: a camera frame older than this stops the car."
    )
    autopilot: str = Field(
        default="model",
        description="Pilot in autopilot mode: 'model' (the deployed network) or a plugin, e.g. 'expert'.",
    )
    autopilot_throttle: float = Field(
        default=0.3, ge=0, le=1, description="Throttle in autopilot when the model has no throttle output."
    )
    max_throttle: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Autopilot throttle is scaled by this (before calibration limits).",
    )
    realtime_priority: int | None = Field(
        default=None,
        ge=1,
        le=99,
        description="SCHED_FIFO priority of the control thread (needs CAP_SYS_NICE; the unit grants it). "
        "Recommended on the car: 10.",
    )
    gil_switch_interval_ms: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="Python's thread switch interval (process-wide; Python's default is 5): how long "
        "the control thread may wait for the GIL.",
    )


def _plugin_name(group: str, name: str) -> str:
    installed = ["sim", *plugins.names(group)]
    if name not in installed:
        raise ValueError(f"no {plugins.KIND[group]} named {name!r}; installed: {', '.join(installed)}")
    return name


class CameraSection(_Section):
    kind: str = Field(
        default="picamera",
        description="picamera (Pi camera via picamera2), usb (OpenCV), test_pattern (no device), sim, "
        "or a camera plugin (`paddock plugins`).",
    )

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        return _plugin_name(plugins.CAMERAS, v)

    width: int = Field(default=160, ge=8, le=4096, description="Image width the loop and recorder get.")
    height: int = Field(default=120, ge=8, le=4096, description="Image height the loop and recorder get.")
    fps: float = Field(default=30.0, gt=0, le=240, description="Capture rate.")
    device: int | str = Field(default=0, description="usb: device index, /dev/videoN path or a video file.")
    camera_num: int = Field(default=0, ge=0, description="picamera: which camera on multi-camera boards.")
    hflip: bool = Field(default=False, description="picamera: mirror horizontally.")
    vflip: bool = Field(default=False, description="picamera: flip vertically (camera mounted upside down).")


class ActuatorsSection(_Section):
    kind: str = Field(
        default="pwm",
        description="pwm (servo + ESC via gpiozero), pca9685 (DonkeyCar's I²C PWM board: channels and "
        "board in the calibration), none (outputs off: bench), sim, "
        "or an actuators plugin (`paddock plugins`).",
    )

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        return _plugin_name(plugins.ACTUATORS, v)

    calibration: Path = Field(
        default=Path("/etc/paddock/calibration.toml"),
        description="Pulse widths, pins, trim and limits; written by `paddock car calibrate`.",
    )
    pin_factory: Literal["lgpio", "rpigpio", "pigpio", "native"] | None = Field(
        default=None,
        description="gpiozero pin driver; pigpio gives the steadiest servo pulses. Default: gpiozero picks.",
    )


class SensorsSection(_Section):
    cpu_temp: bool = Field(default=True, description="Report the SoC temperature (sysfs).")
    battery: Literal["none", "ina219"] = Field(default="none", description="Battery voltage sensor.")
    imu: Literal["none", "mpu6050"] = Field(
        default="none", description="IMU; its readings go into recorded frames."
    )
    i2c_bus: int = Field(default=1, ge=0, description="I²C bus number of battery and IMU sensors.")
    ina219_address: int = Field(default=0x40, ge=0x03, le=0x77, description="I²C address of the INA219.")
    mpu6050_address: int = Field(default=0x68, ge=0x03, le=0x77, description="I²C address of the MPU-6050.")


class PublishSection(_Section):
    telemetry_hz: float = Field(default=5.0, ge=0.1, le=50, description="Telemetry messages per second.")
    preview_hz: float = Field(
        default=2.0,
        ge=0,
        le=30,
        description="Preview frames per second while not recording (QoS 0); 0 turns them off.",
    )
    preview_jpeg_quality: int = Field(
        default=70, ge=10, le=100, description="JPEG quality of preview frames."
    )
    event_queue: int = Field(
        default=1000,
        ge=10,
        le=100_000,
        description="Events kept while offline; beyond it the oldest are dropped (counted).",
    )
    publish_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A QoS 1 publish not acknowledged in this time counts as a lost connection.",
    )


class RecorderSection(_Section):
    spool_dir: Path | None = Field(
        default=None, description="Store-and-forward spool; default {state_dir}/spool."
    )
    max_spool_mb: float = Field(
        default=512.0, gt=0, description="Disk the spool may use; when full, recording stops with an event."
    )
    segment_mb: float = Field(default=4.0, gt=0, le=256, description="Spool segment file size.")
    jpeg_quality: int = Field(default=90, ge=10, le=100, description="JPEG quality of recorded frames.")
    lidar: bool = Field(
        default=True,
        description="Where the body has a lidar, record its scan with every frame (the hub writes the "
        "session's lidar.csv).",
    )
    queue_frames: int = Field(
        default=256,
        ge=4,
        le=100_000,
        description="Frames waiting for the spool writer; beyond it frames are dropped (counted).",
    )
    fsync_interval_s: float = Field(
        default=1.0, ge=0, le=60, description="How often the spool is fsynced (0: after every frame)."
    )
    inflight: int = Field(
        default=32, ge=1, le=1000, description="Recorded frames sent but not yet acknowledged."
    )
    shutdown_flush_s: float = Field(
        default=3.0,
        ge=0,
        le=600,
        description="At shutdown, wait this long for the spool to drain; the rest stays on disk.",
    )


FeedbackMoment = Literal["intervention", "off_track", "low_confidence", "drifted_input"]
FEEDBACK_MOMENTS: tuple[FeedbackMoment, ...] = get_args(FeedbackMoment)


class FeedbackSection(_Section):
    """Feedback capture: the frames around a moment where the model failed, sent to the hub even
    when the car is not recording (edge.feedback). Off by default: it sends camera images nobody
    asked to record and keeps ``before_s`` of raw frames in memory."""

    enabled: bool = Field(
        default=False, description="Keep a ring buffer of frames and send the frames around each moment."
    )
    before_s: float = Field(default=3.0, ge=0, le=30, description="Seconds of frames kept before the moment.")
    after_s: float = Field(default=2.0, ge=0, le=30, description="Seconds of frames kept after the moment.")
    min_interval_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="At most one capture starts per this many seconds; moments in between are counted only.",
    )
    events: list[FeedbackMoment] = Field(
        default_factory=lambda: list(FEEDBACK_MOMENTS),
        description="The moments that start a capture.",
    )
    min_confidence: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="An autopilot output below this confidence (where the model gives one) is a moment.",
    )
    drift_psi: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="A telemetry window whose input PSI against the model card's training statistics "
        "is above this is a moment (a model without them: never).",
    )
    drift_features: float = Field(
        default=0.25,
        gt=0,
        le=100,
        description="A telemetry window whose feature drift (the network's features' RMS mean shift "
        "in pooled standard deviations, less sampling noise) against the model card is above this "
        "is a moment (a model without features: never).",
    )


class MetricsSection(_Section):
    """The car's own Prometheus ``/metrics`` (edge/metrics.py): loop lateness, ticks, inference,
    confidence, interventions, laps, input drift, the model and the outbox. Off by default; served
    by prometheus_client's HTTP server on its own thread, so a scrape never waits on the loop."""

    enabled: bool = Field(default=False, description="Serve /metrics.")
    bind: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address to listen on: loopback by default; 0.0.0.0 (or the car's LAN address) "
        "lets a Prometheus elsewhere scrape it.",
    )
    port: int = Field(default=9110, ge=0, le=65535, description="Port to listen on (0: any free port).")


class ModelsSection(_Section):
    cache_dir: Path | None = Field(default=None, description="Verified models; default {state_dir}/models.")
    public_key: Path | None = Field(
        default=Path("/etc/paddock/hub.pub"),
        description="The hub's Ed25519 public key (PEM) that signs models.",
    )
    allow_unsigned: bool = Field(
        default=False, description="DEVELOPMENT ONLY: accept models without a valid signature."
    )
    trusted_keys: list[Path] = Field(
        default_factory=list,
        description="More public keys models may be signed with (the next hub key, while rotating).",
    )
    clock_skew_s: float = Field(
        default=300.0, ge=0, le=30 * 86400, description="How far past its expiry a model is still taken."
    )
    max_model_mb: float = Field(default=64.0, gt=0, le=4096, description="Larger models are rejected.")
    threads: int = Field(
        default=1, ge=1, le=64, description="Inference threads (ONNX Runtime intra-op, LiteRT)."
    )
    warmup_runs: int = Field(default=5, ge=1, le=1000, description="Inferences run before a model may drive.")
    smoke_latency_ms: float | None = Field(
        default=None,
        gt=0,
        description="A new model's median latency (ms) must stay below this; default 80% of a tick. "
        "Raise it where inference is slow on purpose: under emulation (qemu) or on a bench board.",
    )
    download_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="Timeout for models sent by url."
    )
    keep: int = Field(
        default=3, ge=1, le=100, description="Models kept in the cache (the active one always stays)."
    )
    preload_runtimes: list[RuntimeName] = Field(
        default_factory=lambda: list(RUNTIME_NAMES),
        description="Runtimes imported at start, so the first hot-swap never stalls a tick.",
    )


class DetectorSection(_Section):
    """The detector: a classifier (model card kind ``classifier``) in a second model slot beside
    the pilot, deployed by the same signed hot-swap on ``cars/{id}/detector`` (docs/car.md,
    "The detector"). Its safety rule holds the car in autopilot when an obstacle is close ahead."""

    every_n_ticks: int = Field(
        default=1, ge=1, le=100, description="Run the detector on every Nth tick (1: every tick)."
    )
    worker: bool = Field(
        default=True,
        description="Run the detector's inference on a worker thread, off the control loop, on the "
        "latest frame; the rule acts on each result from the next tick on (false: on the tick itself).",
    )
    rule: bool = Field(default=True, description="Apply the safety rule (false: detect and report only).")
    kinds: list[str] = Field(
        default_factory=lambda: ["box", "cone", "wall", "car"],
        description="Obstacle classes the rule acts on.",
    )
    min_probability: float = Field(
        default=0.6, gt=0, le=1, description="The rule acts when the class's probability is at least this."
    )
    distance_m: float = Field(
        default=1.0,
        gt=0,
        le=20,
        description="How close is close: where the body measures the range ahead (a lidar), the rule "
        "acts only when it is at most this (from the car's nose). Without one, the classifier's "
        "obstacle-ahead class is the distance (its labels: within 1 m of the nose).",
    )
    action: Literal["stop", "slow"] = Field(
        default="stop", description="stop: throttle 0 (brake); slow: throttle at most slow_throttle."
    )
    slow_throttle: float = Field(default=0.12, ge=0, le=1, description="The throttle cap of action = slow.")
    confirm_ticks: int = Field(
        default=2, ge=1, le=100, description="Detections in a row before the rule acts (against flicker)."
    )
    clear_ticks: int = Field(
        default=15, ge=1, le=1000, description="Detector runs without the obstacle before the rule lets go."
    )


ObstacleKind = Literal["box", "cone", "wall", "car"]


class SimSection(_Section):
    """Used when camera.kind and actuators.kind are 'sim' (`paddock car run --sim`)."""

    track: str | None = Field(
        default=None, description="A built-in track (oval, s-curve, technical) or a DeepRacer .npy file."
    )
    seed: int = Field(default=0, description="Simulator seed (the same seed and commands give the same run).")
    clock: Literal["realtime", "lockstep"] = Field(
        default="realtime",
        description="realtime: the world follows the wall clock; lockstep: each tick advances it by one "
        "tick period (repeatable).",
    )
    speedup: float = Field(
        default=1.0,
        ge=0.1,
        le=100,
        description="lockstep only: ticks run this many times faster than real time.",
    )
    recover_after_s: float | None = Field(
        default=1.0, ge=0, description="Put the car back on the track after this long off it; unset: never."
    )
    randomize: bool = Field(default=False, description="Randomise light, colours and camera mount per reset.")
    expert_noise: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Steering perturbation the expert pilot adds while driving (stationary std of a "
        "slowly wandering noise); recorded frames keep the expert's own action as their `label`, so "
        "training data show how to come back to the line (noise injection, as in DART). 0: none.",
    )
    expert_noise_time_s: float = Field(
        default=0.6, gt=0, le=10, description="Correlation time of the expert's steering perturbation."
    )
    race_line: Path | None = Field(
        default=None,
        description="A racing line (`line.csv` from `paddock race optimize`) for the `race-line` pilot: "
        "the expert following that line at its speeds, with the same steering noise. Unset: no "
        "`race-line` pilot.",
    )
    obstacles: list[float] = Field(
        default_factory=list,
        description="Obstacles on the centre line at these progress percentages (0-100): an obstacle "
        "course for the detector. Empty: none.",
    )
    obstacle_kinds: list[ObstacleKind] = Field(
        default_factory=lambda: list[ObstacleKind](["box"]), min_length=1, description="Their kinds, in turn."
    )

    @field_validator("obstacles")
    @classmethod
    def _percent(cls, v: list[float]) -> list[float]:
        if any(not 0 <= p <= 100 for p in v):
            raise ValueError("obstacle positions are progress percentages in [0, 100]")
        return v


class CarConfig(_Section):
    """Everything the car daemon needs. ``car.id`` is the only required field."""

    state_dir: Path = Field(
        default=Path("/var/lib/paddock"),
        description="Where the car keeps its spool, model cache and counters.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Logging level."
    )
    car: CarSection
    broker: BrokerSection = Field(default_factory=BrokerSection)
    loop: LoopSection = Field(default_factory=LoopSection)
    camera: CameraSection = Field(default_factory=CameraSection)
    actuators: ActuatorsSection = Field(default_factory=ActuatorsSection)
    sensors: SensorsSection = Field(default_factory=SensorsSection)
    publish: PublishSection = Field(default_factory=PublishSection)
    recorder: RecorderSection = Field(default_factory=RecorderSection)
    feedback: FeedbackSection = Field(default_factory=FeedbackSection)
    models: ModelsSection = Field(default_factory=ModelsSection)
    sim: SimSection = Field(default_factory=SimSection)
    detector: DetectorSection = Field(default_factory=DetectorSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.camera.kind == "sim") != (self.actuators.kind == "sim"):
            raise ValueError("camera.kind and actuators.kind must both be 'sim' or neither")
        if self.camera.kind == "sim" and self.sim.track is None:
            raise ValueError("sim.track is required for a simulated car")
        if self.sim.speedup != 1.0 and self.sim.clock != "lockstep":
            raise ValueError("sim.speedup needs sim.clock = 'lockstep'")
        return self

    # --- derived paths --------------------------------------------------------------------------
    @property
    def spool_dir(self) -> Path:
        return self.recorder.spool_dir or self.state_dir / "spool"

    @property
    def model_cache_dir(self) -> Path:
        return self.models.cache_dir or self.state_dir / "models"

    @property
    def detector_cache_dir(self) -> Path:
        return self.model_cache_dir / "detector"

    @property
    def client_id(self) -> str:
        return self.broker.client_id or f"paddock-car-{self.car.id}"

    @property
    def is_sim(self) -> bool:
        return self.camera.kind == "sim"

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "CarConfig":
        return infra.config.validate(cls, data, source, ConfigError)

    def with_values(self, values: dict[str, Any], source: str = "config") -> "CarConfig":
        """A copy with dotted keys changed (``{"loop.hz": 50}``), validated as a whole."""
        data = self.model_dump()
        for key, value in values.items():
            node = data
            parts = key.split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"{source}: unknown setting {key!r}")
                node = node[part]
            if parts[-1] not in node:
                raise ConfigError(f"{source}: unknown setting {key!r}")
            node[parts[-1]] = value
        return CarConfig.from_dict(data, source)


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> CarConfig:
    """Read and validate a TOML config file; ``overrides`` are dotted keys applied on top."""
    data = infra.config.read_toml(path, ConfigError, hint=" (see `paddock car config --example`)")
    config = CarConfig.from_dict(data, str(path))
    if overrides:
        config = config.with_values(overrides, str(path))
    # Relative paths in the file are relative to the file, not to wherever the daemon starts.
    return _resolve_paths(config, path.parent)


def _resolve_paths(config: CarConfig, base: Path) -> CarConfig:
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p).resolve()

    data = config.model_dump()
    data["state_dir"] = fix(config.state_dir)
    data["broker"]["password_file"] = fix(config.broker.password_file)
    data["broker"]["ca_file"] = fix(config.broker.ca_file)
    data["broker"]["cert_file"] = fix(config.broker.cert_file)
    data["broker"]["key_file"] = fix(config.broker.key_file)
    data["actuators"]["calibration"] = fix(config.actuators.calibration)
    data["recorder"]["spool_dir"] = fix(config.recorder.spool_dir)
    data["models"]["cache_dir"] = fix(config.models.cache_dir)
    data["models"]["public_key"] = fix(config.models.public_key)
    data["models"]["trusted_keys"] = [fix(p) for p in config.models.trusted_keys]
    return CarConfig.model_validate(data)


def example_toml(car_id: str = "car-1") -> str:
    """A complete config file: every field with its description and default."""
    header = [
        "paddock car configuration (/etc/paddock/car.toml).",
        "Every setting is shown with its default; only [car] id is required.",
        "",
    ]
    return infra.config.commented_toml(CarConfig(car=CarSection(id=car_id)), header)
