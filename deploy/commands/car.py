"""``paddock car``: run the car daemon, calibrate steering and throttle, config and service files."""

import asyncio
import logging
import shutil
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from deploy.errors import UserError
from deploy.options import broker_option, parse_sets, set_option
from deploy.systemd import car_unit
from edge.config import DEFAULT_CONFIG_PATH, CarConfig, ConfigError, example_toml, load_config
from firmware.calibration import (
    DEFAULT_CALIBRATION_PATH,
    Calibration,
    load_calibration,
    save_calibration,
)

car_app = typer.Typer(
    help="The car daemon: drive, record, hot-swap models; calibration and service files.",
    no_args_is_help=True,
)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("amqtt", "transitions", "mqtt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@car_app.command("run")
def run(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help=f"The car's TOML config file [default: {DEFAULT_CONFIG_PATH}]."),
    ] = None,
    sim: Annotated[
        bool, typer.Option("--sim", help="Drive a simulated body instead of the hardware.")
    ] = False,
    track: Annotated[
        str | None, typer.Option("--track", "-t", help="--sim: built-in track name or DeepRacer .npy file.")
    ] = None,
    car_id: Annotated[str | None, typer.Option("--car-id", help="Car id (--sim default: sim-1).")] = None,
    broker: Annotated[
        str | None, broker_option("Broker URL, e.g. mqtt://127.0.0.1:1883 (default: the config's).")
    ] = None,
    clock: Annotated[
        str | None, typer.Option("--clock", help="--sim: realtime (default) or lockstep.")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="--sim without --config: where spool and model cache go."),
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="The hub's public key that signs models.")
    ] = None,
    allow_unsigned: Annotated[
        bool, typer.Option("--allow-unsigned", help="DEVELOPMENT ONLY: accept unsigned models.")
    ] = False,
    set_: Annotated[list[str] | None, set_option("loop.hz=50")] = None,
) -> None:
    """Run the car daemon until SIGINT/SIGTERM (under systemd: Type=notify with a watchdog).

    On a car: `paddock car run --config /etc/paddock/car.toml`. In the simulator:
    `paddock car run --sim --track oval --broker mqtt://127.0.0.1:1883` (a config file is optional;
    its [sim] section and camera settings apply).
    """
    overrides = parse_sets(set_)
    if sim:
        overrides |= {"camera.kind": "sim", "actuators.kind": "sim"}
    if track is not None:
        overrides["sim.track"] = track
    if clock is not None:
        overrides["sim.clock"] = clock
    if car_id is not None:
        overrides["car.id"] = car_id
    if broker is not None:
        overrides["broker.url"] = broker
    if public_key is not None:
        overrides["models.public_key"] = str(public_key.resolve())
    if allow_unsigned:
        overrides["models.allow_unsigned"] = True
    if config is None and sim:
        cfg = _sim_config(car_id or "sim-1", state_dir, public_key).with_values(overrides, "--sim")
    else:
        cfg = load_config(config or DEFAULT_CONFIG_PATH, overrides)
    _setup_logging(cfg.log_level)
    raise typer.Exit(asyncio.run(_run(cfg)))


def _sim_config(car_id: str, state_dir: Path | None, public_key: Path | None) -> CarConfig:
    """Defaults for a simulated car run without a config file: state under the user's home."""
    import os

    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    state = state_dir or base / "paddock" / "cars" / car_id
    return CarConfig.from_dict(
        {
            "state_dir": str(state),
            "car": {"id": car_id},
            "camera": {"kind": "sim"},
            "actuators": {"kind": "sim"},
            "sim": {"track": "oval"},
            "models": {"public_key": str(public_key) if public_key else None},
        },
        "--sim",
    )


async def _run(cfg: CarConfig, body: Any = None) -> int:
    from edge.daemon import CarDaemon

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await CarDaemon(cfg, body=body).run(stop)
    except ConfigError as exc:
        logging.getLogger("paddock.car").error("%s", exc)
        return 2
    except Exception as exc:
        logging.getLogger("paddock.car").critical("car daemon failed: %s", exc, exc_info=True)
        return 1
    return 0


@car_app.command("config")
def config_cmd(
    example: Annotated[
        bool, typer.Option("--example", help="Print a complete, commented config file (the default).")
    ] = False,
    check: Annotated[
        Path | None,
        typer.Option("--check", metavar="FILE", help="Validate this config file and print it resolved."),
    ] = None,
    car_id: Annotated[str, typer.Option("--car-id", help="Car id to put in the example.")] = "car-1",
) -> None:
    """Print a complete, commented config file, or check one (`--check FILE`, printed as JSON)."""
    if example and check is not None:
        raise UserError("use either --example or --check FILE")
    if check is None:
        typer.echo(example_toml(car_id), nl=False)
        return
    typer.echo(load_config(check).model_dump_json(indent=2))


@car_app.command("calibrate")
def calibrate(
    calibration: Annotated[
        Path, typer.Option("--calibration", help="Calibration file to read (if present) and write.")
    ] = DEFAULT_CALIBRATION_PATH,
    pin_factory: Annotated[
        str | None,
        typer.Option(
            "--pin-factory",
            help="gpiozero pin driver: lgpio, rpigpio, pigpio, native, or mock (no hardware).",
        ),
    ] = None,
    steering_pin: Annotated[
        str | None, typer.Option(help="Steering servo pin (default: from the file).")
    ] = None,
    throttle_pin: Annotated[str | None, typer.Option(help="ESC pin (default: from the file).")] = None,
) -> None:
    """Walk through steering and throttle calibration on the real outputs and save the result.

    Put the car on a stand first: the throttle steps spin the wheels.
    """
    from firmware.hardware.calibrate import CalibrationAborted, CalibrationWizard

    cal = load_calibration(calibration) if calibration.exists() else Calibration()
    if steering_pin is not None or throttle_pin is not None:
        cal = Calibration.model_validate(
            cal.model_dump()
            | {
                "steering": cal.steering.model_dump() | ({"pin": _pin(steering_pin)} if steering_pin else {}),
                "throttle": cal.throttle.model_dump() | ({"pin": _pin(throttle_pin)} if throttle_pin else {}),
            }
        )
    actuators = _calibration_actuators(cal, pin_factory)
    actuators.connect()  # an ActuatorError is a failure (exit 1), reported by the entry point
    wizard = CalibrationWizard(
        actuators, ask=lambda q: typer.prompt(q, default="", show_default=False), say=typer.echo
    )
    try:
        new = wizard.run()
    except (CalibrationAborted, typer.Abort) as exc:
        typer.echo(str(exc) or "aborted; nothing saved", err=True)
        raise typer.Exit(1) from None
    finally:
        actuators.disconnect()
    save_calibration(new, calibration)
    typer.echo(f"saved {calibration}")


def _calibration_actuators(cal: Calibration, pin_factory: str | None) -> Any:
    """The PCA9685 board when the calibration names one (its [pca9685] table), else GPIO PWM."""
    from firmware.hardware.pca9685 import Pca9685Actuators
    from firmware.hardware.pulse import ActuatorError
    from firmware.hardware.pwm import PwmActuators

    try:
        return Pca9685Actuators(cal) if cal.pca9685 else PwmActuators(cal, pin_factory=pin_factory)
    except ActuatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _pin(value: str) -> int | str:
    return int(value) if value.isdigit() else value


@car_app.command("unit")
def unit(
    paddock: Annotated[
        str | None, typer.Option(help="Path of the paddock command for ExecStart (default: this one).")
    ] = None,
    config: Annotated[str, typer.Option(help="Config file the service runs with.")] = str(
        DEFAULT_CONFIG_PATH
    ),
) -> None:
    """Print the systemd unit (Type=notify, watchdog) for this installation."""
    exe = paddock or shutil.which("paddock") or str(Path(sys.executable).with_name("paddock"))
    typer.echo(car_unit(exe, config), nl=False)


@car_app.command("import-donkeycar")
def import_donkeycar(
    myconfig: Annotated[Path, typer.Argument(help="DonkeyCar's myconfig.py (read, never run).")],
    calibration: Annotated[
        Path, typer.Option("--calibration", help="Calibration file to write.")
    ] = DEFAULT_CALIBRATION_PATH,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing calibration file.")] = False,
) -> None:
    """Turn DonkeyCar's steering and throttle calibration (STEERING_LEFT_PWM, ...) into paddock's.

    Reads PWM_STEERING_THROTTLE (DonkeyCar 4.4+/5.x) or the older STEERING_CHANNEL/..._PWM names;
    PCA9685 pins (e.g. "PCA9685.1:40.1") give actuators.kind = "pca9685", GPIO pins give "pwm".
    """
    from firmware.calibration import CalibrationError
    from firmware.donkeycar_calibration import calibration_from_donkeycar, read_myconfig

    if calibration.exists() and not force:
        typer.echo(f"error: {calibration} exists; pass --force to replace it", err=True)
        raise typer.Exit(2)
    try:
        cal, kind = calibration_from_donkeycar(read_myconfig(myconfig))
    except CalibrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    save_calibration(cal, calibration)
    typer.echo(f'saved {calibration}; set actuators.kind = "{kind}" in the car\'s config')
    typer.echo(cal.to_toml(), nl=False)


@car_app.command("provision")
def provision_cmd(
    out: Annotated[
        Path, typer.Argument(help="A directory, or the SD card's boot partition (e.g. /media/$USER/bootfs).")
    ],
    car_id: Annotated[str, typer.Option("--car-id", help="The new car's id ([a-z0-9-], at most 32).")],
    broker: Annotated[
        str, typer.Option("--broker", envvar="PADDOCK_BROKER", help="Broker URL the car connects to.")
    ],
    hub_key: Annotated[Path, typer.Option("--hub-key", help="The hub's public key (GET /keys/public.pem).")],
    broker_user: Annotated[
        str, typer.Option("--broker-user", help="The car's broker user (default: the car id).")
    ] = "",
    broker_password: Annotated[
        str | None,
        typer.Option(
            "--broker-password",
            envvar="PADDOCK_BROKER_PASSWORD",
            help="Its password (default: a new random one).",
        ),
    ] = None,
    actuators: Annotated[
        str, typer.Option("--actuators", help="pwm (GPIO) or pca9685 (DonkeyCar's board).")
    ] = "pwm",
    wheel: Annotated[
        Path | None, typer.Option("--wheel", help="paddock's wheel, copied for the first boot to install.")
    ] = None,
    hostname: Annotated[
        str | None, typer.Option("--hostname", help="The Pi's hostname (default: the car id).")
    ] = None,
    cloud_init: Annotated[
        bool, typer.Option(help="Write user-data, the first-boot recipe for Raspberry Pi OS.")
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing user-data.")] = False,
) -> None:
    """Write what a new car needs: config, hub key, broker password, unit file, first-boot recipe.

    Pointed at a freshly flashed SD card's boot partition, the Pi installs paddock and starts the
    car daemon on its first boot (docs/car.md). Add the printed broker user to the broker's password file.
    """
    import secrets

    from deploy.provision import CarProvision, ProvisionError, provision

    password = broker_password or secrets.token_urlsafe(24)
    spec = CarProvision(
        car_id=car_id,
        broker_url=broker,
        broker_user=broker_user or car_id,
        broker_password=password,
        hub_key=hub_key,
        actuators=actuators,
        wheel=wheel,
        hostname=hostname or car_id,
    )
    try:
        written = provision(spec, out, cloud_init=cloud_init, force=force)
    except ProvisionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(f"wrote {path}")
    if broker_password is None:
        typer.echo(
            f"broker user {spec.broker_user}: add it on the broker with "
            f"`mosquitto_passwd -b /etc/mosquitto/passwd {spec.broker_user} {password}`"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(car_app, name="car")
