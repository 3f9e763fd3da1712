"""A car downloads a large model from an https:// hub, verifying it with the fleet's CA (its
``broker.ca_file``); without the CA, or with another, the download is refused."""

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.fleet.tls import issue, load_or_make_ca
from edge.hotswap import ModelRejected, http_download
from tests.edge.modelkit import manifest

BLOB = b"model bytes " * 1000


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BLOB)))
        self.end_headers()
        self.wfile.write(BLOB)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server with a certificate of the fleet's CA; yields its URL and the CA file."""
    tls = tmp_path / "tls"
    ca, _ = load_or_make_ca(tls)
    issue(ca, tls / "hub-api.key", tls / "hub-api.crt", "paddock hub API", hosts=["127.0.0.1"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls / "hub-api.crt", tls / "hub-api.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", tls / "ca.crt"
    finally:
        server.shutdown()
        thread.join()


def test_a_car_verifies_an_https_hub_with_the_fleet_ca(
    https_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca = https_server
    m = manifest(BLOB, url=f"{url}/models/pilot/1/model.onnx")
    assert http_download(m, 1 << 20, 10, ca) == BLOB
    stranger = tmp_path / "stranger"
    load_or_make_ca(stranger, "someone else's CA")
    for ca_file in (None, stranger / "ca.crt"):
        with pytest.raises(ModelRejected, match="certificate verify failed"):
            http_download(m, 1 << 20, 10, ca_file)
