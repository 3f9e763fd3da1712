"""HubConfig: defaults, TOML loading with paths relative to the file, errors naming file and field."""

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from hub.config import HubConfig, HubConfigError, default_toml


def test_defaults_are_a_self_contained_hub() -> None:
    cfg = HubConfig()
    assert cfg.mqtt.broker.port == 1883
    assert cfg.store_url == str(Path("paddock-hub") / "store")
    assert cfg.sinks.sqlite.enabled and not cfg.sinks.influxdb.enabled
    assert cfg.spool.fsync


def test_the_printed_default_file_loads_back_to_the_defaults(tmp_path: Path) -> None:
    text = default_toml()
    assert tomllib.loads(text)  # valid TOML
    path = tmp_path / "hub.toml"
    path.write_text(text)
    loaded = HubConfig.load(path)
    assert loaded.model_dump(exclude={"data_dir"}) == HubConfig().model_dump(exclude={"data_dir"})
    assert loaded.data_dir == tmp_path / "paddock-hub"
    for section in (
        "[mqtt]",
        "[api]",
        "[store]",
        "[spool]",
        "[shards]",
        "[sinks.sqlite]",
        "[sinks.influxdb]",
    ):
        assert section in text


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "hub.toml"
    path.parent.mkdir()
    path.write_text('data_dir = "../data"\n[store]\nurl = "objects"\n[spool]\ndir = "/var/spool/x"\n')
    cfg = HubConfig.load(path)
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.store_url == str(tmp_path / "etc" / "objects")
    assert cfg.spool_dir == Path("/var/spool/x")
    assert cfg.catalog_path == tmp_path / "data" / "catalog.sqlite"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[mqtt]\nurl = "http://x"\n', "mqtt.url"),
        ("[api]\nport = 70000\n", "api.port"),
        ("[sinks.influxdb]\nbatch_size = 0\n", "sinks.influxdb.batch_size"),
        ('[store]\nurl = "ftp://x/y"\n', "store.url"),
        ("[shards]\ntarget_mb = -1\n", "shards.target_mb"),
        ("[mqtt]\nclient_idd = 'x'\n", "mqtt.client_idd"),
        ('topic_prefix = "a/#"\n', "topic_prefix"),
        ('[mlops]\nauto_deploy = "canary"\n', "needs gate = true and gate_smoke_test = true"),
        ('[mlops]\ncanary_groups = ["Fleet"]\n', "mlops.canary_groups"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(HubConfigError) as err:
        HubConfig.load(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.toml"
    bad.write_text("[mqtt\n")
    with pytest.raises(HubConfigError, match="not valid TOML"):
        HubConfig.load(bad)
    with pytest.raises(HubConfigError, match="no such file"):
        HubConfig.load(tmp_path / "missing.toml")


def test_cli_prints_and_checks_configs(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["hub", "config"])
    assert out.exit_code == 0 and "[sinks.influxdb]" in out.output
    path = tmp_path / "hub.toml"
    path.write_text(out.output)
    out = runner.invoke(app, ["hub", "config", "--check", str(path)])
    assert out.exit_code == 0 and "store:" in out.output
    path.write_text("[api]\nport = -1\n")
    out = runner.invoke(app, ["hub", "config", "--check", str(path)])
    assert out.exit_code == 2 and "api.port" in out.output


async def test_a_failed_start_says_why_and_leaves_nothing_running(tmp_path: Path) -> None:
    import threading

    from hub import HubService
    from infra.store import StoreError

    def ours() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith(("hub-", "paho"))]

    before = ours()
    cfg = HubConfig.from_dict(
        {
            "data_dir": str(tmp_path / "hub"),
            "api": {"port": 0},
            "mqtt": {"connect_wait_s": 0},
            "store": {"url": "s3://bucket", "endpoint_url": "http://127.0.0.1:9", "create_bucket": False},
        }
    )
    hub = HubService(cfg)
    with pytest.raises(StoreError, match="bucket"):
        await hub.start()
    assert ours() == before
    assert not hub.running
