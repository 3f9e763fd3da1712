"""``paddock train``: learn from recorded driving, evaluate, export, and run the trainer agent."""

import importlib.util
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from deploy.errors import UserError, as_user_error
from deploy.options import (
    broker_option,
    hub_option,
    mlflow_option,
    nested,
    parse_sets,
    set_option,
    store_option,
    token_option,
)
from schemas.release import install_hint

if importlib.util.find_spec("torch") is None:  # the CLI lists `train` only where it works
    raise ImportError(f"paddock train needs the train extra (torch): {install_hint('train')}")

train_app = typer.Typer(
    help="Train driving models from recorded sessions, evaluate them, export them for the car, "
    "and run the trainer agent that takes jobs from MQTT.",
    no_args_is_help=True,
)

StoreOpt = Annotated[str, store_option()]
TokenOpt = Annotated[str | None, token_option("The hub's API token (for registering).")]
SessionsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--session", "-s", help="CAR/SESSION to use (repeat); all sessions in the store if omitted."
    ),
]


def _sessions(values: list[str] | None) -> list[Any]:
    from schemas.messages import SessionRef

    refs = []
    for value in values or []:
        car, sep, session = value.partition("/")
        if not sep:
            raise typer.BadParameter(f"{value!r}: expected CAR/SESSION", param_hint="--session")
        with as_user_error(ValueError):
            refs.append(SessionRef(car=car, session=session))
    return refs


def _check_store(url: str | None) -> None:
    """Fail on a bad store URL before any work starts (a StoreError is reported as exit code 2)."""
    from infra.store import open_store

    if url:
        open_store(url)


def _checkpoint_sessions(ckpt: dict[str, Any]) -> list[Any]:
    """The run's validation sessions (its training sessions when it had none)."""
    from schemas.messages import SessionRef

    refs = ckpt.get("val_sessions") or ckpt.get("train_sessions") or []
    return [SessionRef.model_validate(r) for r in refs]


@train_app.command("train")
def train(
    store: StoreOpt,
    session: SessionsOpt = None,
    dataset: Annotated[str | None, typer.Option(help="A dataset named on the hub (needs --hub).")] = None,
    architecture: Annotated[
        str,
        typer.Option(
            "--architecture",
            "-a",
            help="mobilenet (default: fastest on a CPU), linear (DonkeyCar) or categorical.",
        ),
    ] = "mobilenet",
    epochs: Annotated[int, typer.Option(help="Most epochs to train (early stopping may end sooner).")] = 20,
    batch_size: Annotated[int, typer.Option(help="Batch size per process.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed: the same seed and data give the same model.")] = 0,
    launcher: Annotated[str, typer.Option(help="local, torchrun or horovod.")] = "local",
    workers: Annotated[int, typer.Option(help="Training processes (torchrun/horovod).")] = 1,
    hosts: Annotated[str | None, typer.Option(help="horovodrun hosts, e.g. 'a:2,b:2'.")] = None,
    name: Annotated[str, typer.Option(help="Model name in the store and on the hub.")] = "pilot",
    version: Annotated[str | None, typer.Option(help="Model version (default: UTC time).")] = None,
    work_dir: Annotated[Path, typer.Option(help="Where runs (checkpoints, plots, exports) go.")] = Path(
        "runs"
    ),
    formats: Annotated[str, typer.Option(help="Export formats, comma-separated.")] = "onnx,onnx-int8,tflite",
    set_: Annotated[
        list[str] | None,
        set_option("model.width=80 --set patience=3: any training setting (see docs/trainer.md)"),
    ] = None,
    evaluate_track: Annotated[
        str | None, typer.Option(help="Drive the trained model in the simulator on this track.")
    ] = None,
    evaluate_laps: Annotated[int, typer.Option(help="Laps for --evaluate-track.")] = 3,
    hub: Annotated[str | None, hub_option("Hub API base URL: register the model there.")] = None,
    token: TokenOpt = None,
    broker: Annotated[str | None, broker_option("MQTT URL: publish progress (with --job).")] = None,
    job: Annotated[str | None, typer.Option(help="Job id for progress events.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    mlflow: Annotated[
        str | None,
        mlflow_option("MLflow tracking URI (http://host:5000, sqlite:///mlflow.db): log the run there."),
    ] = None,
) -> None:
    """Train a model on recorded sessions, evaluate it, export it and upload it to the store
    (and log it to MLflow with --mlflow)."""
    from schemas.messages import TrainParams
    from trainer.pipeline import TrainerSettings, run_train_job

    _check_store(store)
    params = TrainParams(
        dataset=dataset,
        sessions=_sessions(session),
        architecture=architecture,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        seed=seed,
        model_name=name,
        model_version=version,
        workers=workers,
        launcher=launcher,
        evaluate_track=evaluate_track,
        evaluate_laps=evaluate_laps if evaluate_track else 0,
        options=nested(parse_sets(set_)),
    )
    settings = TrainerSettings(
        store=store,
        work_dir=str(work_dir),
        broker=broker,
        hub=hub,
        hub_token=token,
        hosts=hosts,
        export_formats=[f.strip() for f in formats.split(",") if f.strip()],
        progress_bar=progress,
        mlflow=mlflow,
    )
    with as_user_error(ValueError):  # the trainer's ValueErrors are about its inputs
        result = run_train_job(params, settings, job=job)
    typer.echo(json.dumps(result.to_dict(), indent=2))


@train_app.command("export")
def export(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A checkpoint (best.pt).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("export"),
    store: Annotated[
        str | None,
        typer.Option(
            envvar="PADDOCK_STORE", help="Store with frames for calibration and checks (default: the run's)."
        ),
    ] = None,
    session: SessionsOpt = None,
    formats: Annotated[
        str, typer.Option(help="Comma-separated: onnx, onnx-int8, tflite.")
    ] = "onnx,onnx-int8,tflite",
) -> None:
    """Export a checkpoint to ONNX, int8 ONNX and TFLite, checking each against torch."""
    from infra.store import open_store
    from trainer.data import load_frames, preprocessed_samples
    from trainer.export import export_all
    from trainer.train import load_checkpoint

    with as_user_error(ValueError):
        model, ckpt = load_checkpoint(checkpoint)
    store_url = store or ckpt.get("config", {}).get("store")
    if not store_url:
        raise UserError("no store to take calibration frames from: pass --store")
    st = open_store(str(store_url))
    sessions = _sessions(session) or _checkpoint_sessions(ckpt)
    table = load_frames(st, sessions)
    if len(table) == 0:
        raise UserError(f"no frames in {st.url} to calibrate and check with")
    result = export_all(  # an ExportError is a failure (exit 1), reported by the entry point
        model, out, preprocessed_samples(table, model.spec), formats=[f.strip() for f in formats.split(",")]
    )
    for fmt, f in result.files.items():
        diff = f"max |Δ| vs torch {f.max_abs_diff:.2e}" if f.max_abs_diff is not None else ""
        typer.echo(f"{fmt:10s} {f.path}  {f.size / 1024:.0f} KiB  {diff} {f.action_mae or ''}")
    for fmt, err in result.errors.items():
        typer.secho(f"{fmt:10s} skipped: {err}", fg="yellow")


@train_app.command("evaluate")
def evaluate(
    model: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="A checkpoint (best.pt) or an exported model.onnx."),
    ],
    track: Annotated[
        list[str] | None,
        typer.Option(
            help="Drive the model in the simulator on this track (built-in name or DeepRacer .npy); repeat "
            "for several tracks."
        ),
    ] = None,
    laps: Annotated[int, typer.Option(help="Consecutive laps to drive.")] = 3,
    recover: Annotated[
        bool, typer.Option(help="Put the car back after leaving the track instead of ending the run.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 0,
    video: Annotated[bool, typer.Option(help="Write run.mp4.")] = True,
    store: Annotated[
        str | None, typer.Option(envvar="PADDOCK_STORE", help="Store with the sessions (default: the run's).")
    ] = None,
    session: SessionsOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the report and plots go.")] = Path(
        "evaluation"
    ),
) -> None:
    """Evaluate a model: closed loop in the simulator (--track) and offline metrics on recorded sessions.

    Closed loop reports DeepRacer's metrics (completion %, lap times, off-track count, status) with
    the expert's lap time for reference, and writes simtrace.csv, run.mp4 and map.png. Offline
    metrics (MAE, R², accuracy) use the run's validation sessions unless --session is given.
    """
    from infra.store import open_store
    from trainer.data import load_frames
    from trainer.evaluate import OnnxPilot, TorchPilot, closed_loop, summary
    from trainer.report import offline_metrics, plot_predictions
    from trainer.train import load_checkpoint, write_json

    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"model": str(model)}
    checkpoint = None
    with as_user_error(ValueError):
        if model.suffix == ".onnx":
            pilot: Any = OnnxPilot(model)
        else:
            checkpoint = load_checkpoint(model)
            pilot = TorchPilot(checkpoint[0])
    if checkpoint is not None:
        net, ckpt = checkpoint
        store_url = store or ckpt.get("config", {}).get("store")
        sessions = _sessions(session) or _checkpoint_sessions(ckpt)
        if store_url and sessions:
            table = load_frames(open_store(str(store_url)), sessions)
            metrics = offline_metrics(net, table)
            plot_predictions(net, table, out / "predictions.png")
            report["offline"] = {"sessions": [s.to_dict() for s in sessions], "metrics": metrics,
                                 "data": table.report.to_dict()}  # fmt: skip
            typer.echo(f"offline ({table.report.summary()}):")
            for key, value in metrics.items():
                typer.echo(f"  {key:20s} {value:.4f}")
        elif not track:
            raise UserError(
                "nothing to evaluate: pass --track for the simulator or --store/--session for offline metrics"
            )
    elif session:
        raise UserError("offline metrics need a checkpoint (the .onnx file carries no training data)")
    elif not track:
        raise UserError("pass --track to drive the model in the simulator")
    unfinished = []
    if track:
        report["closed_loop"] = []
        for name in track:
            # One folder per track (named after the file for a DeepRacer .npy).
            folder = out / "closed-loop" / (Path(name).stem if len(track) > 1 else "")
            with as_user_error(ValueError):
                closed = closed_loop(
                    pilot, name, laps=laps, out_dir=folder, seed=seed, recover=recover, video=video
                )
            report["closed_loop"].append(closed.model_dump(mode="json"))
            typer.echo(summary(closed))
            for label, path in closed.files.items():
                typer.echo(f"  {label:9s} {path}")
            if closed.laps_completed < laps:
                unfinished.append(closed.track)
    write_json(out / "report.json", report)
    typer.echo(f"report: {out / 'report.json'}")
    if unfinished:
        typer.secho(f"did not finish {laps} laps on: {', '.join(unfinished)}", fg="yellow", err=True)
        raise typer.Exit(1)


@train_app.command("record")
def record(
    store: StoreOpt,
    track: Annotated[str, typer.Option(help="Built-in track name or a DeepRacer .npy file.")] = "oval",
    sessions: Annotated[int, typer.Option(help="Sessions to record (one drive each).")] = 4,
    laps: Annotated[float, typer.Option(help="Laps per session.")] = 2.0,
    seed: Annotated[int, typer.Option(help="First session's seed (then +1 per session).")] = 0,
    car: Annotated[str, typer.Option(help="Car id the sessions are stored under.")] = "sim-expert",
    noise: Annotated[float, typer.Option(help="Steering perturbation (std) for recovery examples.")] = 0.25,
    randomize: Annotated[
        bool, typer.Option(help="Randomise lighting, colours and camera per session.")
    ] = True,
) -> None:
    """Record the simulator's expert driver into the store, in the hub's dataset layout."""
    from infra.store import open_store
    from trainer.record import RecordConfig, record_expert

    with as_user_error(ValueError):
        manifests = record_expert(
            open_store(store), track, sessions=sessions, car=car, seed=seed,
            config=RecordConfig(laps=laps, noise_std=noise, randomize=randomize),
        )  # fmt: skip
    for m in manifests:
        typer.echo(f"{m.car}/{m.session}: {m.frame_count} frames in {len(m.shards)} shards")


@train_app.command("quickstart")
def quickstart(
    store: StoreOpt,
    work_dir: Annotated[Path, typer.Option(help="Where runs go.")] = Path("runs"),
    track: Annotated[str, typer.Option(help="Track to record, train and drive on.")] = "oval",
    seed: Annotated[int, typer.Option(help="Seed of the recording and the training.")] = 0,
) -> None:
    """Record expert laps in the simulator, train the demo's model, and drive it 3 laps (one command)."""
    from dataclasses import replace

    from trainer.quickstart import DEMO, run_quickstart

    _check_store(store)
    recipe = replace(DEMO, track=track, seed=seed)
    result = run_quickstart(store, work_dir, recipe)
    typer.echo(json.dumps(result.to_dict(), indent=2))
    if result.result.metrics.get("completion_pct", 0.0) < 100.0:
        raise typer.Exit(1)


@train_app.command("agent")
def agent(
    broker: Annotated[str, broker_option("MQTT URL the jobs come from.")],
    store: StoreOpt,
    work_dir: Annotated[Path, typer.Option(help="Where job logs, runs and results go.")] = Path(
        "trainer-agent"
    ),
    hub: Annotated[str | None, hub_option("Hub API base URL for registration.")] = None,
    token: TokenOpt = None,
    prefix: Annotated[str, typer.Option(help="MQTT topic prefix.")] = "paddock",
    client_id: Annotated[
        str | None, typer.Option(help="MQTT client id (keep it stable: jobs wait for it).")
    ] = None,
    share_group: Annotated[
        str | None, typer.Option(help="Share jobs with other agents (Mosquitto $share group).")
    ] = None,
    launcher: Annotated[
        str | None, typer.Option(help="Override the jobs' launcher: local, torchrun, horovod.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Override the jobs' worker count.")] = None,
    formats: Annotated[str, typer.Option(help="Export formats, comma-separated.")] = "onnx,onnx-int8,tflite",
    job_timeout: Annotated[float, typer.Option(help="Seconds before a job is stopped.")] = 6 * 3600,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="PADDOCK_CA_FILE", help="CA certificate of an mqtts:// broker (the fleet's ca.crt)."
        ),
    ] = None,
    cert_file: Annotated[
        Path | None,
        typer.Option(
            envvar="PADDOCK_CERT_FILE",
            help="This trainer's client certificate (its bundle's client.crt), for brokers that ask for one.",
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(envvar="PADDOCK_KEY_FILE", help="The private key of --cert-file (client.key)."),
    ] = None,
) -> None:
    """Take train and evaluate jobs from MQTT (jobs/train, jobs/evaluate) and run them one at a time."""
    from deploy import smoke
    from trainer.agent import AgentSettings, TrainerAgent

    _check_store(store)
    values: dict[str, Any] = {
        "broker": broker,
        "store": store,
        "work_dir": str(work_dir),
        "hub": hub,
        "hub_token": token,
        "topic_prefix": prefix,
        "share_group": share_group,
        "launcher": launcher,
        "workers": workers,
        "export_formats": [f.strip() for f in formats.split(",") if f.strip()],
        "job_timeout_s": job_timeout,
        "ca_file": str(ca_file) if ca_file else None,
        "cert_file": str(cert_file) if cert_file else None,
        "key_file": str(key_file) if key_file else None,
    }
    if client_id:
        values["client_id"] = client_id
    with as_user_error(ValueError):
        settings = AgentSettings.model_validate(values)
        check = smoke.after_train(hub, token) if hub else None
        agent = TrainerAgent(settings, after_train=check)
    agent.run_forever()


def register(app: typer.Typer) -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app.add_typer(train_app, name="train")
