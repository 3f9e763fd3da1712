"""``paddock hub cars|sessions|datasets|models|deploy|rollback|jobs|estop``: a thin client of the
hub's REST API, for the terminal and for scripts (``--json``).

The commands join ``paddock hub`` (defined in :mod:`deploy.commands.hub`); this module only adds
to that group. The token comes from ``--token`` / ``PADDOCK_TOKEN``, or from ``--token-file`` (the
hub writes ``{data_dir}/api-token``); reads need none unless the hub protects them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deploy.commands.hub import hub_app
from deploy.errors import UserError, WorkFailed
from deploy.options import CaFileOpt, JsonOpt, hub_option, token_option

if TYPE_CHECKING:
    import httpx

DEFAULT_HUB = "http://127.0.0.1:8080"
HubOpt = Annotated[str, hub_option("The hub's API address.")]
TokenOpt = Annotated[str | None, token_option("The hub's API token (needed to deploy, roll back, e-stop).")]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option("--token-file", envvar="PADDOCK_TOKEN_FILE", help="Read the token from this file."),
]


class HubClient:
    def __init__(
        self, url: str, token: str | None, token_file: Path | None, ca_file: Path | None = None
    ) -> None:
        import ssl

        import httpx

        from infra.tls import https_verify

        if token is None and token_file is not None:
            try:
                token = token_file.read_text().strip()
            except OSError as exc:
                raise UserError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        try:  # an https:// hub is verified with the fleet's CA (--ca-file, PADDOCK_CA_FILE)
            verify = https_verify(ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UserError(f"cannot use the CA file {ca_file}: {exc}") from None
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=verify)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The hub's JSON answer; an error status is one line (exit code 2, or 1 for the hub's own)."""
        return self.answer(self.request(method, path, **kwargs))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The hub's raw answer, whatever its status; unreachable: one line, exit code 2."""
        import httpx

        try:
            return self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise UserError(f"cannot reach the hub at {self.url}: {exc}") from None

    def answer(self, r: httpx.Response) -> Any:
        """An answer's JSON, or its error status as :meth:`call` reports it."""
        if r.status_code >= 500:
            raise WorkFailed(f"the hub answered {r.status_code}: {_detail(r)}")
        if r.status_code >= 400:
            hint = " (give --token or set PADDOCK_TOKEN)" if r.status_code == 401 else ""
            raise UserError(f"{r.status_code}: {_detail(r)}{hint}")
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else None


def _detail(r: Any) -> str:
    try:
        return str(r.json().get("detail", r.text))
    except ValueError:
        return str(r.text[:200])


def _client(hub: str, token: str | None, token_file: Path | None, ca_file: Path | None) -> HubClient:
    return HubClient(hub, token, token_file, ca_file)


def show_rows(data: Any, as_json: bool, columns: list[tuple[str, Any]], title: str) -> None:
    """``--json``: the API's answer as is; otherwise a table of ``columns`` (header, row → text)."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for header, _ in columns:
        table.add_column(header)
    for row in data:
        table.add_row(*(_text(get(row)) for _, get in columns))
    Console().print(table)


def _field(section: str) -> Callable[[str], Callable[[dict[str, Any]], Any]]:
    """``_field("telemetry")("mode")`` reads ``row["telemetry"]["mode"]``, ``None`` when absent."""

    def key(name: str) -> Callable[[dict[str, Any]], Any]:
        return lambda row: (row.get(section) or {}).get(name)

    return key


def _text(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


@hub_app.command("cars", short_help="Every car: state, mode, model, battery, loop timing.")
def cars(
    hub: HubOpt = DEFAULT_HUB,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    data = _client(hub, token, token_file, ca_file).call("GET", "/cars")
    tel = _field("telemetry")
    show_rows(data, as_json, [
        ("car", lambda c: c["car"]), ("state", lambda c: c["state"]), ("mode", tel("mode")),
        ("model", lambda c: (c.get("model_state") or {}).get("active")), ("battery V", tel("battery_v")),
        ("loop ms", tel("loop_period_ms")),
        ("error", lambda c: (c.get("model_state") or {}).get("last_error")),
    ], "cars")  # fmt: skip


@hub_app.command("sessions", short_help="Recorded sessions, newest first.")
def sessions(
    hub: HubOpt = DEFAULT_HUB,
    car: Annotated[str | None, typer.Option(help="Only this car's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    params: dict[str, Any] = {"limit": limit} | ({"car": car} if car else {})
    data = _client(hub, token, token_file, ca_file).call("GET", "/sessions", params=params)["sessions"]
    show_rows(data, as_json, [
        ("car", lambda s: s["car"]), ("session", lambda s: s["session"]),
        ("frames", lambda s: s["frame_count"]),
        ("state", lambda s: s["state"]), ("datasets", lambda s: ", ".join(s.get("datasets", []))),
    ], "sessions")  # fmt: skip


@hub_app.command("datasets", short_help="Named datasets.")
def datasets(
    hub: HubOpt = DEFAULT_HUB,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    data = _client(hub, token, token_file, ca_file).call("GET", "/datasets")
    show_rows(data, as_json, [
        ("name", lambda d: d["name"]), ("train", lambda d: len(d["train"])), ("val", lambda d: len(d["val"])),
    ], "datasets")  # fmt: skip


@hub_app.command("models", short_help="Registered models with their lineage.")
def models(
    hub: HubOpt = DEFAULT_HUB,
    name: Annotated[str | None, typer.Option(help="Only this model's versions.")] = None,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    data = _client(hub, token, token_file, ca_file).call(
        "GET", "/models", params={"name": name} if name else {}
    )
    show_rows(data, as_json, [
        ("name", lambda m: m["name"]), ("version", lambda m: m["version"]), ("format", lambda m: m["format"]),
        ("dataset", lambda m: m["lineage"].get("dataset")), ("job", lambda m: m["lineage"].get("job")),
        ("metrics", lambda m: " ".join(f"{k}={v:.4g}" for k, v in m["lineage"].get("metrics", {}).items())),
    ], "models")  # fmt: skip


def model_ref(model: str) -> tuple[str, str]:
    """``NAME:VERSION`` → ``(name, version)``; a one-line error otherwise."""
    name, sep, version = model.partition(":")
    if not sep or not name or not version:
        raise UserError(f"the model is NAME:VERSION, got {model!r}")
    return name, version


def _target(car: str | None, group: str | None) -> tuple[str, str]:
    if (car is None) == (group is None):
        raise UserError("give exactly one of --car and --group")
    return ("car", car) if car else ("group", group or "")


@hub_app.command("deploy", short_help="Deploy a model (NAME:VERSION) to a car or a group.")
def deploy(  # a classifier's card sends it to the detector slot (the hub decides)
    model: Annotated[str, typer.Argument(help="NAME:VERSION, e.g. pilot:3")],
    car: Annotated[str | None, typer.Option(help="Deploy to this car.")] = None,
    group: Annotated[str | None, typer.Option(help="Deploy to every car of this group.")] = None,
    hub: HubOpt = DEFAULT_HUB,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    name, version = model_ref(model)
    kind, target = _target(car, group)
    body = {"model": {"name": name, "version": version}, kind: target, "requested_by": "paddock hub deploy"}
    out = _client(hub, token, token_file, ca_file).call("POST", "/deployments", json=body)
    slot = out.get("slot", "pilot")
    _report(
        out,
        as_json,
        f"deployed {name}:{version} to {kind} {target}" + (" (detector)" if slot == "detector" else ""),
    )


@hub_app.command("rollback", short_help="Put a car or group back on its previous model.")
def rollback(
    car: Annotated[str | None, typer.Option(help="Roll back this car.")] = None,
    group: Annotated[str | None, typer.Option(help="Roll back this group.")] = None,
    detector: Annotated[
        bool, typer.Option("--detector", help="Roll back the detector slot, not the pilot.")
    ] = False,
    hub: HubOpt = DEFAULT_HUB,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    kind, target = _target(car, group)
    slot = "detector" if detector else "pilot"
    out = _client(hub, token, token_file, ca_file).call(
        "POST", f"/deployments/{kind}/{target}/rollback?slot={slot}"
    )
    current = out.get("current") or {}
    runs = f"{current.get('name', 'nothing')}:{current.get('version', '')}"
    _report(out, as_json, f"{kind} {target} now runs {runs}" + (" as its detector" if detector else ""))


def _report(out: Any, as_json: bool, line: str) -> None:
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    typer.echo(line + ("" if out.get("published", True) else " (the broker has not acknowledged it yet)"))


@hub_app.command("jobs", short_help="Jobs, newest first, with their progress.")
def jobs(
    hub: HubOpt = DEFAULT_HUB,
    kind: Annotated[str | None, typer.Option(help="train, evaluate or optimize.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 30,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    params: dict[str, Any] = {"limit": limit} | ({"kind": kind} if kind else {})
    data = _client(hub, token, token_file, ca_file).call("GET", "/jobs", params=params)
    prog = _field("progress")
    show_rows(data, as_json, [
        ("job", lambda j: j["job"]), ("kind", lambda j: j["kind"]), ("state", lambda j: j["state"]),
        ("stage", prog("stage")), ("epoch", prog("epoch")), ("loss", prog("loss")),
    ], "jobs")  # fmt: skip


@hub_app.command("estop", short_help="Set (on) or release (off) the fleet e-stop.")
def estop(
    state: Annotated[str, typer.Argument(help="on or off")],
    reason: Annotated[str, typer.Option(help="Shown to operators and in the cars' events.")] = "",
    hub: HubOpt = DEFAULT_HUB,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    ca_file: CaFileOpt = None,
) -> None:
    if state not in ("on", "off"):
        raise UserError(f"estop takes on or off, got {state!r}")
    body = {"active": state == "on", "reason": reason or ("paddock hub estop" if state == "on" else "")}
    _client(hub, token, token_file, ca_file).call("POST", "/fleet/estop", json=body)
    typer.echo(f"fleet e-stop {'set' if state == 'on' else 'released'}")


JOINS = "hub"
"""The group these commands belong to (``paddock hub --help`` lists them)."""


def register(app: typer.Typer) -> None:
    """Nothing to add at the top: these commands joined ``paddock hub`` when this module was imported."""
