"""Web app benchmark, in headless Chromium against the local stack (embedded broker, the hub, one
simulated car), side by side in one run:

* camera: frames/s the page drew, next to the preview frames/s the hub received from the car over
  the same window (the page can only show what arrives);
* drive latency, page → first car tick that applied it: over the drive WebSocket (what the app
  uses) and over ``POST /cars/{car}/commands/drive`` from the same page (one HTTP request each).

    python -m pytest tests/bench/bench_webapp.py -s -p no:cacheprovider -o python_files='bench_*.py'
    python tests/bench/bench_webapp.py --preview-hz 30 --presses 20
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.hub.test_webapp import TickWatch, js, open_page
from tests.hub.webstack import StackThread, chromium, poll

SEND_WS = """
  window.benchWs = window.benchWs || await new Promise((ok) => {
    const ws = new WebSocket(`ws://${location.host}/cars/car-1/drive?token=${arguments[0]}`);
    ws.onopen = () => ok(ws);
  });
  const t = Date.now();
  window.benchWs.send(JSON.stringify({steering: 0, throttle: arguments[1], ts: t / 1000}));
  return t;
"""
SEND_REST = """
  const t = Date.now();
  fetch(`/cars/car-1/commands/drive`, {method: "POST", headers: {"Authorization": `Bearer ${arguments[0]}`,
    "Content-Type": "application/json"}, body: JSON.stringify({steering: 0, throttle: arguments[1]})});
  return t;
"""


def camera_rate(browser: Any, stack: StackThread, seconds: float) -> tuple[float, float]:
    counters = stack.stack.hub.ingest_stats().cars  # type: ignore[union-attr]
    before, frames0, t0 = (
        counters["car-1"].preview_frames,
        js(browser, "return window.paddockCamera.frames"),
        time.time(),
    )
    time.sleep(seconds)
    counters = stack.stack.hub.ingest_stats().cars  # type: ignore[union-attr]
    elapsed = time.time() - t0
    drawn = js(browser, "return window.paddockCamera.frames") - frames0
    return drawn / elapsed, (counters["car-1"].preview_frames - before) / elapsed


def latency(browser: Any, stack: StackThread, script: str, presses: int) -> list[float]:
    daemon = stack.car("car-1")
    out = []
    for _ in range(presses):
        watch = TickWatch(daemon)
        sent = browser.execute_async_script(
            f"const done = arguments[arguments.length - 1]; (async () => {{ {script} }})().then(done);",
            stack.token,
            0.4,
        )
        moved = poll(lambda w=watch: w.moving_since, 5)
        out.append((moved - sent / 1000) * 1000)
        browser.execute_async_script(
            f"const done = arguments[arguments.length - 1]; (async () => {{ {script} }})().then(done);",
            stack.token,
            0.0,
        )
        poll(lambda w=watch: w.throttle() == 0, 3)
        watch.close()
        time.sleep(0.3)
    return out


def run(preview_hz: float, presses: int, seconds: float) -> None:
    with StackThread(Path(tempfile.mkdtemp()), cars=1, preview_hz=preview_hz) as stack:
        browser = chromium()
        try:
            open_page(browser, stack, "car/car-1", stack.token)
            poll(lambda: js(browser, "return window.paddockCamera && window.paddockCamera.frames >= 5"), 20)
            drawn, received = camera_rate(browser, stack, seconds)
            ws = latency(browser, stack, SEND_WS, presses)
            rest = latency(browser, stack, SEND_REST, presses)
        finally:
            browser.quit()
    print(
        f"\ncamera ({seconds:.0f} s, car set to {preview_hz:g}/s): page drew {drawn:.1f} frames/s, "
        f"hub received {received:.1f}/s (ratio {drawn / received if received else 0:.2f}; goal >= 10 drawn)"
    )
    for name, values in (("websocket", ws), ("REST POST", rest)):
        print(
            f"drive latency page → car tick over {name:9}: median {statistics.median(values):5.1f} ms, "
            f"p90 {sorted(values)[int(0.9 * (len(values) - 1))]:5.1f} ms, "
            f"max {max(values):5.1f} ms ({len(values)} presses)"
        )


def test_bench_webapp() -> None:
    run(preview_hz=30, presses=10, seconds=8)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preview-hz", type=float, default=30)
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    run(args.preview_hz, args.presses, args.seconds)
    sys.exit(0)
