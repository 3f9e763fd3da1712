"""The real hub (``hub.HubService``) on its own event loop in a thread, so that synchronous clients
(the trainer's pipeline and agent) can talk to it from the test's thread."""

import asyncio
import threading
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from hub import HubConfig, HubService

TOKEN = "trainer-test-token"


class HubThread:
    def __init__(self, broker_url: str, data_dir: Path, mlops: dict[str, Any] | None = None) -> None:
        uid = uuid.uuid4().hex[:8]
        self.config = HubConfig.from_dict(
            {
                "data_dir": str(data_dir),
                "topic_prefix": f"t{uid}",  # its own topics: the trainer's agent uses the default prefix
                "mqtt": {"url": broker_url, "client_id": f"hub-{uid}", "connect_wait_s": 10},
                "api": {"port": 0, "token": TOKEN},
                "mlops": mlops or {},
            }
        )
        self.token = TOKEN
        self.url = ""
        self.service: HubService | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="hub", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with HubService(self.config) as service:
                self.service = service
                self.url = service.api_url
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def __enter__(self) -> "HubThread":
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the hub did not start within 60 s")
        if self._error is not None:
            raise RuntimeError(f"the hub failed to start: {self._error}")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def get(self, path: str) -> Any:
        import httpx

        response = httpx.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response.json()
