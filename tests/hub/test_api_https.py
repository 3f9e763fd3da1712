"""The hub's API over HTTPS, with the certificate `paddock fleet ca` makes: the CLI and the trainer's
hub client verify it with the fleet's CA (``--ca-file`` or ``PADDOCK_CA_FILE``), and refuse it
without that CA or with another. The hub's tokens are the files `paddock fleet secrets` made."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from typer.testing import CliRunner

from deploy.cli import app
from deploy.fleet.tls import load_or_make_ca
from hub import HubConfig, HubService
from trainer.hub_client import HubClient, HubError

runner = CliRunner()


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    directory = tmp_path / "fleet"
    for args in (["add", "hub", "--role", "hub"], ["ca", "--host", "127.0.0.1"], ["secrets"]):
        result = runner.invoke(app, ["fleet", *args, "--dir", str(directory)])
        assert result.exit_code == 0, result.output
    return directory


@pytest.fixture
async def https_hub(
    fleet: Path, mosquitto: Any, make_config: Callable[..., HubConfig]
) -> AsyncIterator[HubService]:
    tls, secrets = fleet / "tls", fleet / "secrets"
    api = {
        "port": 0,
        "cert_file": str(tls / "hub-api.crt"),
        "key_file": str(tls / "hub-api.key"),
        # the tokens `paddock fleet secrets` generated, read from their files
        "token": None,  # instead of the test token make_config sets
        "token_file": str(secrets / "hub-token"),
        "tokens": [{"token_file": str(secrets / "prometheus-token"), "scope": "read"}],
        "protect_reads": True,
    }
    async with HubService(make_config(mosquitto.url, api=api)) as hub:
        yield hub


def test_fleet_ca_makes_the_api_certificate_for_the_api_hosts(fleet: Path) -> None:
    tls = fleet / "tls"
    cert = x509.load_pem_x509_certificate((tls / "hub-api.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes()))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert (tls / "hub-api.key").stat().st_mode & 0o077 == 0


async def _cli(*args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(runner.invoke, app, list(args))  # the hub answers on this loop
    return result.exit_code, result.output


async def test_clients_verify_the_https_api_with_the_fleet_ca(
    https_hub: HubService, fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = https_hub.api_url
    assert url.startswith("https://127.0.0.1:"), url
    ca = str(fleet / "tls" / "ca.crt")
    admin, read = (str(fleet / "secrets" / n) for n in ("hub-token", "prometheus-token"))
    monkeypatch.delenv("PADDOCK_CA_FILE", raising=False)
    for token in (admin, read):
        code, out = await _cli("hub", "cars", "--hub", url, "--token-file", token, "--ca-file", ca, "--json")
        assert code == 0, out
        assert json.loads(out) is not None
    code, out = await _cli("hub", "cars", "--hub", url, "--ca-file", ca)
    assert code == 2 and "401" in out, out
    token = (fleet / "secrets" / "hub-token").read_text().strip()

    stranger = tmp_path / "stranger"
    load_or_make_ca(stranger, "someone else's CA")
    for extra in ([], ["--ca-file", str(stranger / "ca.crt")]):
        code, out = await _cli("hub", "cars", "--hub", url, "--token", token, *extra)
        assert code == 2 and "certificate verify failed" in out, out

    def trainer_asks() -> str:
        with HubClient(url, token) as hub:
            try:
                hub.model("no-such-model", "v1")
            except HubError as exc:
                return str(exc)
        return "answered"

    refused = await asyncio.to_thread(trainer_asks)
    assert "not reachable" in refused and "certificate verify failed" in refused, refused
    monkeypatch.setenv("PADDOCK_CA_FILE", ca)  # what the trainer agent gives the jobs it starts
    answered = await asyncio.to_thread(trainer_asks)
    assert "404" in answered and "not reachable" not in answered, answered
