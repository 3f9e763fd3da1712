"""The all-in-one local stack: a broker, the hub, a trainer agent and simulated cars in one program.

This is what ``paddock demo`` runs and what a laptop user keeps running with ``paddock demo --keep``.
Every part is the real one — the car daemon on a simulated body, the hub with its spool and
shards, the trainer agent running jobs in their own processes — wired together on loopback:

    EmbeddedBroker (amqtt, its own thread)  or  an existing broker (--broker mqtt://…)
                    with an identity each for the hub, the trainer agent, every car and an operator
    HubService      (ingest threads, sealer process, REST API on this event loop)
    TrainerAgent    (MQTT jobs → one process per job)
    CarDaemon × N   (one control thread each, MQTT on this event loop)

Stopping is ordered so nothing is lost or left behind: cars first (they stop recording, drain
their spools and publish their deaths), then the agent (its job process group is killed), then the
hub (it seals what it holds), then the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rich.console import Console

from deploy import smoke
from deploy.broker import EmbeddedBroker
from deploy.fleet.bundles import BUNDLES_DIR, with_credentials, write_bundle
from deploy.fleet.identities import FleetStore, Role
from deploy.fleet.mosquitto import write_broker_files
from edge.config import CarConfig
from edge.daemon import CarDaemon
from hub import HubConfig, HubService
from schemas.ids import check_car_id, check_group_id
from trainer.agent import AgentSettings, TrainerAgent
from trainer.pipeline import EXPORT_FORMATS

log = logging.getLogger(__name__)


@dataclass
class StackConfig:
    """What to run. Paths are created under ``root``."""

    root: Path
    cars: int = 2
    track: str = "oval"
    group: str = "demo"
    broker_url: str | None = None
    """An existing broker; ``None`` starts the embedded amqtt broker on a free port."""
    hub_port: int = 0
    """0 picks a free port."""
    seed: int = 0
    car_hz: float = 30.0
    preview_hz: float = 2.0
    """Live-view frames per second each car sends while not recording (the web app's camera)."""
    randomize: bool = False
    expert_noise: float = 0.25
    """Steering perturbation while the expert records, so the data show recoveries (0: none)."""
    trainer: bool = True
    export_formats: list[str] = field(default_factory=lambda: list(EXPORT_FORMATS))
    race_line: Path | None = None
    """A racing line (``line.csv``) the cars' ``race-line`` pilot drives; unset: no such pilot."""
    car_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.cars <= 16:
            raise ValueError(f"cars must be between 1 and 16, got {self.cars}")
        check_group_id(self.group)
        if not self.car_ids:
            self.car_ids = [f"car-{i + 1}" for i in range(self.cars)]
        for car in self.car_ids:
            check_car_id(car)


class LocalStack:
    """Start with ``async with LocalStack(config) as stack:``; everything stops on exit."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.broker: EmbeddedBroker | None = None
        self.hub: HubService | None = None
        self.agent: TrainerAgent | None = None
        self.cars: dict[str, CarDaemon] = {}
        self._agent_log_file: IO[str] | None = None
        self._passwords: dict[str, str] = {}

    @property
    def broker_url(self) -> str:
        if self.config.broker_url:
            return self.config.broker_url
        assert self.broker is not None, "the stack is not started"
        return self.broker.url

    @property
    def fleet_dir(self) -> Path:
        return self.config.root / "fleet"

    def _bundle(self, name: str) -> Path:
        return self.fleet_dir / BUNDLES_DIR / name

    def _client_url(self, name: str) -> str:
        """The broker URL for one of the stack's identities (with its password when it has one)."""
        password = self._passwords.get(name)
        return with_credentials(self.broker_url, name, password) if password else self.broker_url

    def _make_identities(self) -> None:
        """A fresh identity for every part of this run; the old ones stop working."""
        store = FleetStore(self.fleet_dir, broker_url=self.broker_url)
        parts: list[tuple[str, Role, tuple[str, ...]]] = [
            ("hub", Role.HUB, ()),
            ("trainer", Role.TRAINER, ()),
            ("operator", Role.OPERATOR, ()),
        ]
        parts += [(car, Role.CAR, (self.config.group,)) for car in self.config.car_ids]
        for name, role, groups in parts:
            identity, self._passwords[name] = store.add(name, role, groups)
            write_bundle(store, identity, self._passwords[name])
        store.save()
        write_broker_files(store)

    @property
    def hub_dir(self) -> Path:
        return self.config.root / "hub"

    @property
    def store_dir(self) -> Path:
        return self.hub_dir / "store"

    @property
    def public_key_path(self) -> Path:
        return self.config.root / "hub.pub"

    @property
    def agent_log_path(self) -> Path:
        return self.config.root / "trainer" / "agent.log"

    def _agent_log(self) -> IO[str]:
        self.agent_log_path.parent.mkdir(parents=True, exist_ok=True)
        self._agent_log_file = self.agent_log_path.open("a", encoding="utf-8", buffering=1)
        return self._agent_log_file

    # --- parts --------------------------------------------------------------------------------------
    async def start(self) -> LocalStack:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        cfg = self.config
        cfg.root.mkdir(parents=True, exist_ok=True)
        if cfg.broker_url is None:
            self.broker = EmbeddedBroker(log_file=cfg.root / "broker.log", fleet_dir=self.fleet_dir)
            self._make_identities()
            await asyncio.to_thread(self.broker.start)
        self.hub = HubService(
            HubConfig(
                data_dir=self.hub_dir,
                mqtt={"url": self._client_url("hub"), "client_id": "paddock-demo-hub"},
                api={"host": "127.0.0.1", "port": cfg.hub_port},
            )
        )
        await self.hub.start()
        if not await self.hub.wait_connected(15):
            raise RuntimeError(f"the hub could not reach the broker at {self.broker_url}")
        self.public_key_path.write_text(self.hub.public_key_pem)
        if cfg.trainer:
            self.agent = TrainerAgent(
                AgentSettings(
                    store=str(self.store_dir),
                    work_dir=str(cfg.root / "trainer"),
                    broker=self._client_url("trainer"),
                    hub=self.hub.api_url,
                    hub_token=self.hub.api_token,
                    client_id="paddock-demo-trainer",
                    progress_bar=False,
                    export_formats=cfg.export_formats,
                ),
                # the agent's own lines go to a file; the demo shows jobs through the hub
                console=Console(file=self._agent_log(), width=120, soft_wrap=True),
                after_train=smoke.after_train(self.hub.api_url, self.hub.api_token),
            )
            self.agent.start()
            # The embedded broker keeps no messages for clients that are away: a job requested
            # before the agent has subscribed would be lost, so wait for the subscription.
            if not await asyncio.to_thread(self.agent.subscribed.wait, 30):
                raise RuntimeError("the trainer agent did not subscribe to its job topics")
        for i, car in enumerate(cfg.car_ids):
            daemon = CarDaemon(self._car_config(car, i))
            await daemon.start()
            self.cars[car] = daemon
        # Likewise a command sent before a car has subscribed would be lost: the stack is ready
        # when every car is connected (its link sets `connected` after the broker's SUBACK).
        for car, daemon in self.cars.items():
            try:
                await asyncio.wait_for(daemon.link.connected.wait(), 30)
            except TimeoutError:
                raise RuntimeError(f"car {car} did not connect to the broker at {self.broker_url}") from None

    def _car_config(self, car: str, index: int) -> CarConfig:
        cfg = self.config
        # Each car drives its own simulated world (the cars never meet); seeds differ per car.
        return CarConfig.from_dict(
            {
                "state_dir": str(cfg.root / "cars" / car),
                "car": {"id": car, "group": cfg.group},
                "broker": self._car_broker(car),
                "loop": {"hz": cfg.car_hz},
                "camera": {"kind": "sim"},
                "actuators": {"kind": "sim"},
                "sim": {
                    "track": cfg.track,
                    "seed": cfg.seed + index,
                    "clock": "realtime",
                    "randomize": cfg.randomize,
                    "expert_noise": cfg.expert_noise,
                    "race_line": str(cfg.race_line) if cfg.race_line else None,
                },
                "models": {"public_key": str(self.public_key_path), "preload_runtimes": ["onnx"]},
                "publish": {"telemetry_hz": 5.0, "preview_hz": cfg.preview_hz},
            },
            source=f"demo car {car}",
        )

    def _car_broker(self, car: str) -> dict[str, str]:
        if car not in self._passwords:
            return {"url": self.broker_url}
        password_file = str(self._bundle(car) / "password")
        return {"url": with_credentials(self.broker_url, car), "password_file": password_file}

    async def stop(self) -> None:
        """Stop everything that was started, in order; safe to call twice and after a failed start."""
        for car, daemon in list(self.cars.items()):
            try:
                await daemon.shutdown()
            except Exception as exc:  # keep stopping the rest
                log.warning("car %s did not shut down cleanly: %s", car, exc)
        self.cars.clear()
        if self.agent is not None:
            agent, self.agent = self.agent, None
            await asyncio.to_thread(agent.stop, 10.0)
        if self._agent_log_file is not None:
            self._agent_log_file.close()
            self._agent_log_file = None
        if self.hub is not None:
            hub, self.hub = self.hub, None
            with contextlib.suppress(Exception):
                await hub.stop()
        if self.broker is not None:
            broker, self.broker = self.broker, None
            await asyncio.to_thread(broker.stop)

    async def __aenter__(self) -> LocalStack:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def describe(self) -> dict[str, Any]:
        """Addresses a user needs to talk to the running stack."""
        assert self.hub is not None
        return {
            "broker": self.broker_url,
            "api": self.hub.api_url,
            "api_docs": f"{self.hub.api_url}/docs",
            "api_token_file": str(self.hub_dir / "api-token"),
            "operator_credentials": str(self._bundle("operator")) if self._passwords else None,
            "store": str(self.store_dir),
            "trainer_log": str(self.agent_log_path),
            "cars": list(self.cars),
        }
