"""The local stack (embedded broker, the real hub, simulated cars) on its own event loop in a thread,
and headless Chromium driven by Selenium: what the web app's browser tests run against."""

import asyncio
import shutil
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from deploy.stack import LocalStack, StackConfig
from tests.missing import missing


class StackThread:
    def __init__(self, root: Path, **config: Any) -> None:
        self.config = StackConfig(root=root, trainer=False, **config)
        self.stack: LocalStack | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="stack", daemon=True)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with LocalStack(self.config) as stack:
                self.stack = stack
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    @property
    def url(self) -> str:
        assert self.stack is not None and self.stack.hub is not None
        return self.stack.hub.api_url

    @property
    def token(self) -> str:
        assert self.stack is not None and self.stack.hub is not None
        return self.stack.hub.api_token

    def car(self, car: str) -> Any:
        assert self.stack is not None
        return self.stack.cars[car]

    def __enter__(self) -> "StackThread":
        self._thread.start()
        if not self._ready.wait(90):
            raise RuntimeError("the stack did not start within 90 s")
        if self._error is not None:
            raise RuntimeError(f"the stack failed to start: {self._error}")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


def chromium() -> Any:
    """Headless Chromium from Debian (``chromium``, ``chromium-driver``) through Selenium."""
    try:
        from selenium import webdriver
    except ImportError:
        missing("selenium is not installed: script/setup dev (selenium>=4.20)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        missing("headless Chromium is not installed: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--disable-gpu",
        "--mute-audio",
        "--no-first-run",
    ):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service)


def poll(predicate: Any, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
