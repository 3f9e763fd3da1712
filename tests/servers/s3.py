"""An S3-compatible server: moto's ThreadedMotoServer, in-process (correctness only, not speed)."""

from types import TracebackType

from deploy.broker import free_port


class MotoS3:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.host = "127.0.0.1"
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "MotoS3":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "MotoS3":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
