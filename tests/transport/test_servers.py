"""The test servers themselves: a broker stopped and restarted by PID keeps retained messages; a
server whose port another process took moves to a free one."""

import os
import signal
import socket
import sys
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from tests.servers import PortTaken, ServerProcess, listens
from tests.servers.clients import retained_payload
from tests.servers.mosquitto import Mosquitto


def test_mosquitto_restart_by_pid_keeps_retained_messages(mosquitto_factory: type[Mosquitto]) -> None:
    server = mosquitto_factory().start()
    pid = server.pid
    assert pid is not None
    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.connect(server.host, server.port)
    c.loop_start()
    c.publish("keep/me", b"still here", qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
    server.stop(signal.SIGTERM)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.start()
    assert server.pid != pid
    assert retained_payload(server.url, "keep/me") == b"still here"


def test_victoriametrics_and_influxdb_answer(victoriametrics, influxdb1) -> None:  # type: ignore[no-untyped-def]
    influxdb1.query("CREATE DATABASE smoke")
    influxdb1.write("smoke", "m,car=c1 v=1.5 1700000000000000000")
    res = influxdb1.query("SELECT v FROM m", db="smoke")
    assert res["results"][0]["series"][0]["values"][0][1] == 1.5
    import urllib.request

    req = urllib.request.Request(
        f"{victoriametrics.url}/write", data=b"smoke,car=c1 v=2.5 1700000000000000000", method="POST"
    )
    urllib.request.urlopen(req, timeout=5).close()
    series = victoriametrics.export('{__name__="smoke_v"}')
    assert series[0]["metric"]["car"] == "c1" and series[0]["values"] == [2.5]


def test_moto_s3_answers(s3_server) -> None:  # type: ignore[no-untyped-def]
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.url,
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="smoke")
    s3.put_object(Bucket="smoke", Key="a/b", Body=b"hello")
    assert s3.get_object(Bucket="smoke", Key="a/b")["Body"].read() == b"hello"


class _Listener(ServerProcess):
    """The smallest server: a Python process that listens on its port and waits."""

    def command(self) -> list[str]:
        code = (
            "import socket, time; s = socket.socket(); "
            f"s.bind(('127.0.0.1', {self.port})); s.listen(); time.sleep(600)"
        )
        return [sys.executable, "-c", code]


def test_a_server_whose_port_was_taken_starts_on_another(tmp_path: Path) -> None:
    """Another process listening on the port picked for a server (a Dask worker in CI once found its
    port taken) does not pass for the server: it moves to a free port, and is up there."""
    server = _Listener(tmp_path)
    squatter = socket.create_server(("127.0.0.1", server.port))
    taken = server.port
    try:
        server.start()
        assert server.pid is not None and server.port != taken
        assert listens(server.pid, server.port) and not listens(server.pid, taken)
        fixed = _Listener(tmp_path / "fixed", port=taken)  # a port the caller chose is not moved
        with pytest.raises(PortTaken):
            fixed.start()
    finally:
        squatter.close()
        server.stop()
