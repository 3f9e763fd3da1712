"""The operator's web app in a real browser (headless Chromium through Selenium) against the real
hub and simulated cars: one stack and one browser for the whole file, to keep it short.

Prints the camera's frame rate as the page measured it and the drive latency from the page's send
to the first car tick that applied it (loopback, on a machine shared with other work)."""

import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.edge.modelkit import card, classifier, onnx_model
from tests.hub.webstack import StackThread, chromium, poll

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackThread]:
    with StackThread(tmp_path_factory.mktemp("webapp"), cars=2, preview_hz=20) as st:
        yield st


@pytest.fixture(scope="module")
def browser(stack: StackThread) -> Iterator[Any]:
    b = chromium()
    try:
        b.get(stack.url + "/")
        yield b
    finally:
        b.quit()


def open_page(browser: Any, stack: StackThread, page: str, token: str | None) -> None:
    """Load ``page`` signed in with ``token`` (None: as a viewer), as a fresh document."""
    browser.get(stack.url + "/")
    if token:
        browser.execute_script("localStorage.setItem('paddock-token', arguments[0])", token)
    else:
        browser.execute_script("localStorage.removeItem('paddock-token')")
    browser.get(f"{stack.url}/?t={time.monotonic_ns()}#/{page}")
    poll(lambda: browser.execute_script("return document.querySelector('#view').children.length > 0"), 10)


def js(browser: Any, script: str, *args: Any) -> Any:
    return browser.execute_script(script, *args)


def visible(browser: Any, selector: str) -> bool:
    return bool(js(browser, "return document.querySelector(arguments[0]).offsetParent !== null", selector))


class TickWatch:
    """Polls a car's control loop and notes when a tick first applies a throttle (wall clock)."""

    def __init__(self, daemon: Any) -> None:
        self.loop = daemon.loop
        self.moving_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            last = self.loop.last
            if last is not None and last.throttle > 0 and self.moving_since is None:
                # the tick's own start, in wall-clock time
                self.moving_since = time.time() - (time.monotonic_ns() - last.t_ns) / 1e9
            time.sleep(0.0005)

    def throttle(self) -> float:
        return 0.0 if self.loop.last is None else float(self.loop.last.throttle)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


def test_fleet_page_lists_every_car_live(browser: Any, stack: StackThread) -> None:
    open_page(browser, stack, "fleet", stack.token)
    cars = poll(
        lambda: js(browser, "return [...document.querySelectorAll('[data-car]')].map(e => e.dataset.car)"), 15
    )
    assert sorted(cars) == ["car-1", "car-2"]
    assert js(browser, "return document.querySelector('#estop').offsetParent !== null"), (
        "operators see the e-stop"
    )
    text = browser.find_element("css selector", "#cars").text
    assert "manual" in text and "online" in text


def test_car_camera_shows_frames_that_change(browser: Any, stack: StackThread) -> None:
    open_page(browser, stack, "car/car-1", stack.token)
    poll(lambda: js(browser, "return window.paddockCamera && window.paddockCamera.frames >= 3"), 15)
    first = js(browser, "return document.querySelector('#camera').toDataURL()")
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.token}"}) as http:
        for _ in range(30):  # a parked car sees the same picture: roll it forward for 3 s
            http.post(
                "/cars/car-1/commands/drive", json={"steering": 0.2, "throttle": 0.5}
            ).raise_for_status()
            time.sleep(0.1)
    stats = js(browser, "return window.paddockCamera")
    second = js(browser, "return document.querySelector('#camera').toDataURL()")
    print(f"\ncamera in the browser: {stats['fps']:.1f} frames/s (car sends 20/s), {stats['frames']} frames")
    assert stats["frames"] >= 15
    assert first != second, "the camera image did not change"


def drive_with_the_up_key(browser: Any, daemon: Any) -> float:
    """Hold ↑ past the deadman, release; the ms from the page's first send to the tick that applied it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    watch = TickWatch(daemon)
    try:
        ActionChains(browser).key_down(Keys.ARROW_UP).perform()
        moved_at = poll(lambda: watch.moving_since, 5, what="a tick with throttle")
        sent_ms = js(browser, "return window.paddockDriver.firstMoveAt")
        time.sleep(0.6)  # longer than the deadman: the page keeps it alive
        assert watch.throttle() > 0, "the deadman stopped a car the page kept driving"
        ActionChains(browser).key_up(Keys.ARROW_UP).perform()
        poll(lambda: watch.throttle() == 0, 3, what="throttle back to 0 after the key")
    finally:
        watch.close()
    return float((moved_at - sent_ms / 1000) * 1000)


def test_manual_driving_moves_the_car_and_closing_the_page_stops_it(browser: Any, stack: StackThread) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    daemon = stack.car("car-2")
    main = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        open_page(browser, stack, "car/car-2", stack.token)
        poll(lambda: js(browser, "return !!window.paddockDriver"), 10)
        latencies = [drive_with_the_up_key(browser, daemon) for _ in range(4)]
        speeds = [daemon.loop.last.body.speed]  # the simulated car rolls on from its last push
        # drive again and close the tab while the key is held
        watch = TickWatch(daemon)
        ActionChains(browser).key_down(Keys.ARROW_UP).perform()
        poll(lambda: watch.moving_since, 5)
        time.sleep(0.5)
        closed = time.monotonic()
        browser.close()
        poll(lambda: watch.throttle() == 0, 3, what="the car stopping after the page closed")
        stopped_ms = (time.monotonic() - closed) * 1000
        watch.close()
    finally:
        browser.switch_to.window(main)
    print(
        f"\ndrive latency page → car tick: median {statistics.median(latencies):.1f} ms, "
        f"max {max(latencies):.1f} ms over {len(latencies)}; "
        f"stopped {stopped_ms:.0f} ms after the page closed"
    )
    assert speeds[0] is not None and speeds[0] > 0.05, f"the simulated car did not move: {speeds}"


def test_a_deployment_made_in_the_page_hot_swaps_a_car(browser: Any, stack: StackThread) -> None:
    r = httpx.post(
        f"{stack.url}/models",
        data={"name": "pilot", "card": card().model_dump_json(), "description": "web app test"},
        files={"artifact": ("pilot.onnx", onnx_model())},
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    version = r.json()["version"]
    open_page(browser, stack, "deployments", stack.token)
    from selenium.webdriver.support.ui import Select

    poll(lambda: browser.find_elements("css selector", "#model option"), 10)
    Select(browser.find_element("css selector", "#model")).select_by_value(f"pilot:{version}")
    Select(browser.find_element("css selector", "#target")).select_by_value("car:car-1")
    browser.find_element("css selector", "#deploy").click()

    def running() -> bool:
        state = httpx.get(f"{stack.url}/cars/car-1", timeout=10).json().get("model_state") or {}
        return bool(state.get("active") == f"pilot:{version}")

    try:
        poll(running, 60)
    except AssertionError:
        car = httpx.get(f"{stack.url}/cars/car-1", timeout=10).json()
        deployed = httpx.get(f"{stack.url}/deployments/car/car-1", timeout=10).json()
        state = car["model_state"]
        raise AssertionError(f"car-1 is not running pilot:{version}: {state}; {deployed}") from None
    rows = poll(
        lambda: [e.text for e in browser.find_elements("css selector", "table tr") if "car-1" in e.text], 10
    )
    assert f"pilot {version}" in rows[0]


def test_a_viewer_cannot_drive(browser: Any, stack: StackThread) -> None:
    open_page(browser, stack, "car/car-1", None)
    poll(lambda: js(browser, "return window.paddockCamera && window.paddockCamera.frames >= 1"), 15)
    assert js(browser, "return document.body.classList.contains('viewer')")
    assert not js(browser, "return document.querySelector('#joy').offsetParent !== null"), (
        "viewers see no joystick"
    )
    assert not js(browser, "return document.querySelector('#estop').offsetParent !== null")
    # even a hand-made socket is refused, and the car never moves
    watch = TickWatch(stack.car("car-1"))
    js(
        browser,
        """
      window.refused = null;
      const ws = new WebSocket(`ws://${location.host}/cars/car-1/drive`);
      const push = JSON.stringify({steering: 0, throttle: 1});
      ws.onopen = () => setInterval(() => ws.readyState === 1 && ws.send(push), 50);
      ws.onclose = (e) => { window.refused = {code: e.code, reason: e.reason}; };
    """,
    )
    refused = poll(lambda: js(browser, "return window.refused"), 5)
    assert refused["code"] == 4403 and "viewer" in refused["reason"]
    time.sleep(0.5)
    assert watch.moving_since is None
    watch.close()
    r = httpx.post(f"{stack.url}/cars/car-1/commands/drive", json={"steering": 0, "throttle": 1}, timeout=10)
    assert r.status_code == 401


def lap_files(hub: Any, job: str) -> dict[str, str]:
    """A lap video and track map as an evaluate job writes them (the trainer's own writer), in the
    hub's store."""
    from firmware.sim.media import VideoWriter, plot_track_map
    from firmware.sim.world import World

    work = hub.config.data_dir / "lap-work"
    world, trace = World("oval"), []
    with VideoWriter(work / "run.mp4", world.track, fps=15, scale=2) as video:
        for _ in range(30):  # 2 s
            world.step(0.1, 0.6)
            trace.append(world.car.front_point())
            video.add(world.render(), *trace[-1], hud="lap 1/1")
    plot_track_map(world.track, work / "map.png", trace=trace, title="oval")
    keys = {"video": f"evals/{job}/run.mp4", "map": f"evals/{job}/map.png"}
    for label, key in keys.items():
        hub.store.put_file(key, work / ("run.mp4" if label == "video" else "map.png"))
    return keys


def test_the_model_page_plays_an_evaluations_lap_video(browser: Any, stack: StackThread) -> None:
    r = httpx.post(
        f"{stack.url}/models",
        data={"name": "lapper", "card": card().model_dump_json()},
        files={"artifact": ("lapper.onnx", onnx_model())},
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    version = r.json()["version"]
    assert stack.stack is not None and stack.stack.hub is not None
    hub = stack.stack.hub
    hub.catalog.add_evaluation(
        "lapper", version, "eval-lap", {"completion_pct": 100.0}, lap_files(hub, "eval-lap")
    )
    browser.switch_to.window(browser.current_window_handle)  # in front: a hidden tab defers media loading
    open_page(browser, stack, f"model/lapper/{version}", None)  # a viewer may watch
    poll(lambda: js(browser, "return document.querySelector('video.lap')"), 10, what="the lap video")
    js(browser, "document.querySelector('video.lap').load()")  # preload=metadata is only a hint
    loaded = poll(
        lambda: js(
            browser,
            """const v = document.querySelector('video.lap');
               return v.readyState >= 1 && v.duration > 0 && {duration: v.duration, width: v.videoWidth};""",
        ),
        30,
        what="the video's metadata",
    )
    assert 1.5 < loaded["duration"] < 2.5 and loaded["width"] == 320, loaded  # 160 px camera × 2
    js(browser, "document.querySelector('video.lap').play()")
    played = poll(
        lambda: js(browser, "return document.querySelector('video.lap').currentTime"), 10, what="playing"
    )
    assert played > 0 and not js(browser, "return document.querySelector('video.lap').error")
    assert (
        poll(
            lambda: js(
                browser,
                "const i = document.querySelector('img.lap-map'); return i.complete && i.naturalWidth",
            ),
            10,
        )
        > 300
    )


def test_every_page_shows_an_e_stop_set_at_the_broker(browser: Any, stack: StackThread) -> None:
    """The banner follows the retained ``fleet/estop`` itself (what a restarted hub reads back), not
    only what this hub set: here a marshal sets it straight at the broker."""
    import json

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from schemas.mqtt_url import BrokerUrl

    assert stack.stack is not None and stack.stack.hub is not None
    topic = stack.stack.hub.topics.fleet_estop()
    url = BrokerUrl.parse(stack.stack._client_url("operator"))
    marshal = paho.Client(CallbackAPIVersion.VERSION2, client_id="webapp-marshal")
    if url.username:
        marshal.username_pw_set(url.username, url.password)
    marshal.connect(url.host, url.port)
    marshal.loop_start()
    open_page(browser, stack, "models", None)
    banner = "return document.querySelector('#estop-banner')"
    try:
        assert js(browser, banner + ".hidden")
        payload = json.dumps({"active": True, "reason": "marshal", "ts": time.time()})
        marshal.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
        poll(lambda: not js(browser, banner + ".hidden"), 10, what="the e-stop banner")
        assert "marshal" in js(browser, banner + ".textContent")
    finally:
        release = json.dumps({"active": False, "reason": "", "ts": time.time()})
        marshal.publish(topic, release, qos=1, retain=True).wait_for_publish(5)
        marshal.disconnect()
        marshal.loop_stop()
    poll(lambda: js(browser, banner + ".hidden"), 10, what="the banner gone after the release")


def driving(daemon: Any, ok: Any) -> Any:
    """The car's last tick when ``ok(tick)`` holds for it (a poll predicate)."""
    last = daemon.loop.last
    return last if last is not None and ok(last) else None


def click_mode(browser: Any, daemon: Any, mode: str, stack: StackThread | None = None) -> None:
    """Click the page's ``mode`` button once; wait for the car to take it and the page to mark it."""
    button = browser.find_element("css selector", f"[data-mode={mode}]")
    button.click()
    try:
        poll(lambda: daemon.loop.last.mode == mode, 10, what=f"the car in {mode} mode after the click")
    except AssertionError as timeout:  # say what the car and the page knew
        said = js(
            browser, "return [...document.querySelectorAll('body > .banner')].map((b) => b.textContent)"
        )
        state = f"mode {daemon.loop.last.mode}, e-stop {daemon.loop.estop}, the page said {said}"
        if stack is not None:  # the same command sent to the hub directly
            import httpx

            r = httpx.post(
                f"{stack.url}/cars/car-2/commands/mode?wait=3",
                json={"mode": mode},
                headers={"Authorization": f"Bearer {stack.token}"},
                timeout=10,
            )
            state += f"; sent directly: {r.status_code} {r.text[:300]}, car now {daemon.loop.last.mode}"
        raise AssertionError(f"{timeout}: {state}") from None
    poll(lambda: "ghost" not in button.get_attribute("class"), 10, what=f"the page marking {mode}")


def test_the_mode_buttons_set_the_cars_mode(browser: Any, stack: StackThread) -> None:
    """Each of the car page's mode buttons changes the car's own mode, and the page then marks it."""
    daemon, main = stack.car("car-2"), browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        open_page(browser, stack, "car/car-2", stack.token)
        poll(lambda: js(browser, "return !!window.paddockDriver"), 10, what="the drive controls")
        first = "manual" if daemon.loop.last.mode == "stop" else "stop"  # each click must change it
        click_mode(browser, daemon, first, stack)
        click_mode(browser, daemon, "stop" if first == "manual" else "manual", stack)
    finally:
        browser.close()
        browser.switch_to.window(main)


def test_many_open_pages_do_not_hold_up_a_pages_commands(browser: Any, stack: StackThread) -> None:
    """Six pages open on the hub (a car page per car, say) and a seventh still loads, goes live and
    sends its mode command at once: the live stream is a WebSocket, outside the browser's six
    HTTP/1.1 connections a host gets (six event streams took all six)."""
    daemon, main = stack.car("car-2"), browser.current_window_handle
    opened = []
    browser.set_page_load_timeout(20)  # held up, a page would load only once a stream closes: never
    try:
        for _ in range(6):
            browser.switch_to.new_window("tab")
            opened.append(browser.current_window_handle)
            open_page(browser, stack, "fleet", None)
            poll(lambda: js(browser, "return document.querySelectorAll('#cars .card').length") == 2, 10)
        browser.switch_to.new_window("tab")
        opened.append(browser.current_window_handle)
        open_page(browser, stack, "car/car-2", stack.token)
        poll(lambda: js(browser, "return document.getElementById('link').textContent") == "live", 10)
        wanted = "manual" if daemon.loop.last.mode == "stop" else "stop"
        browser.find_element("css selector", f"[data-mode={wanted}]").click()
        poll(lambda: daemon.loop.last.mode == wanted, 6, what=f"the car in {wanted} mode")
    finally:
        for handle in opened:
            browser.switch_to.window(handle)
            browser.close()
        browser.switch_to.window(main)
        browser.set_page_load_timeout(300)  # Selenium's default


def manual_mode(browser: Any, daemon: Any) -> None:
    """Put the car in manual (an e-stop released earlier in the file leaves it stopped) once the page's
    drive controls are there. Set on the car itself: these tests are about the stick and the pad;
    test_the_mode_buttons_set_the_cars_mode clicks the page's mode buttons."""
    poll(lambda: js(browser, "return !!window.paddockDriver"), 10, what="the drive controls")
    daemon.set_mode("manual")
    poll(lambda: daemon.loop.last.mode == "manual", 5, what="the car in manual mode")


def test_the_on_screen_joystick_drives_and_centres_on_release(browser: Any, stack: StackThread) -> None:
    """A finger (W3C touch pointer actions) drags the knob up and right and holds it past the
    deadman; the car steers right and drives; lifting the finger brings it back to neutral."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    daemon, main = stack.car("car-2"), browser.current_window_handle
    browser.switch_to.new_window("tab")
    watch = TickWatch(daemon)
    try:
        open_page(browser, stack, "car/car-2", stack.token)
        manual_mode(browser, daemon)
        joy = browser.find_element("css selector", "#joy")
        half = joy.size["width"] / 2
        # one gesture (chromedriver lifts a touch between performs): the car is read while it is held
        drag = ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
        drag.pointer_action.move_to(joy).pointer_down().move_to(joy, int(half * 0.5), -int(half * 0.8))
        drag.pointer_action.pause(2.0).pointer_up()
        gesture = threading.Thread(target=drag.perform)
        gesture.start()
        poll(lambda: watch.moving_since, 2, what="a tick with throttle from the joystick")
        time.sleep(0.3)
        # right and forward (× max throttle 0.5), rolling: a tick that shows it, while the finger is down
        last = poll(lambda: driving(daemon, lambda t: t.steering > 0.3 and 0.25 < t.throttle <= 0.5), 1.5)
        gesture.join(10)
        assert last.body.speed > 0.05, f"the simulated car did not move: {last}"
        poll(lambda: daemon.loop.last.throttle == 0 and daemon.loop.last.steering == 0, 3, what="neutral")
        knob = js(browser, "const k = document.querySelector('#joy .knob').style; return [k.left, k.top]")
        assert knob == ["75px", "75px"], knob
        assert js(browser, "return window.paddockDriver.active"), "releasing the stick is not a stop"
    finally:
        watch.close()
        browser.close()
        browser.switch_to.window(main)


# Headless Chromium has no gamepad and no way to plug a virtual one in, so the page gets a synthetic
# W3C "standard" pad: navigator.getGamepads returns what window.__pad says, read afresh at each poll.
SYNTHETIC_PAD = """
window.__pad = null;
const snapshot = (p) => ({ id: "synthetic pad", index: 0, connected: true, mapping: p.mapping ?? "standard",
  timestamp: performance.now(), axes: p.axes.slice(),
  buttons: p.buttons.map((v) => ({ pressed: v > 0.5, touched: v > 0, value: v })) });
Object.defineProperty(navigator, "getGamepads", { configurable: true,
  value: () => [window.__pad ? snapshot(window.__pad) : null, null, null, null] });
window.__plug = (p) => {
  const was = window.__pad; window.__pad = p;
  const ev = new Event(p ? "gamepadconnected" : "gamepaddisconnected");
  Object.defineProperty(ev, "gamepad", { value: snapshot(p || was) });
  if (!was !== !p) window.dispatchEvent(ev);
};
"""


def pad(browser: Any, steer: float = 0.0, forward: float = 0.0, back: float = 0.0, **extra: Any) -> None:
    """Set the synthetic pad: left stick x, right trigger (button 7), left trigger (button 6)."""
    buttons = [0.0] * 17
    buttons[6], buttons[7] = back, forward
    js(browser, "window.__plug(arguments[0])", {"axes": [steer, 0.0, 0.0, 0.0], "buttons": buttons, **extra})


def test_a_gamepad_drives_and_stops_on_disconnect_and_focus_loss(browser: Any, stack: StackThread) -> None:
    """The Gamepad API path with a synthetic pad (headless Chromium has no gamepad device): pulling
    the trigger starts driving by itself; unplugging the pad stops the car, and so does the page losing
    focus, after which a trigger still held does not start the car again; a pad without the standard
    mapping does not drive."""
    daemon, main = stack.car("car-2"), browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": SYNTHETIC_PAD})
    # a tab Selenium opens in headless Chromium never has focus: emulate it while the pad drives
    browser.execute_cdp_cmd("Emulation.setFocusEmulationEnabled", {"enabled": True})
    watch = TickWatch(daemon)
    try:
        open_page(browser, stack, "car/car-2", stack.token)
        manual_mode(browser, daemon)
        pad(browser)  # plugged in at rest: nothing moves yet
        poll(lambda: js(browser, "return window.paddockDriver?.padArmed"), 2, what="the pad seen at rest")
        pad(browser, steer=-0.6, forward=0.8)
        poll(lambda: watch.moving_since, 5, what="a tick with throttle from the pad")
        time.sleep(0.3)
        poll(lambda: driving(daemon, lambda t: t.steering < -0.5 and abs(t.throttle - 0.4) < 0.01), 1.5)
        js(browser, "window.__plug(null)")
        poll(lambda: daemon.loop.last.throttle == 0, 3, what="stopping when the pad is unplugged")
        assert js(browser, "return window.paddockDriver.why") == "gamepad disconnected"
        pad(browser)
        poll(lambda: js(browser, "return window.paddockDriver?.padArmed"), 2, what="the pad back at rest")
        pad(browser, forward=1.0)
        poll(lambda: daemon.loop.last.throttle > 0, 5, what="driving again with the pad back")
        car_tab = browser.current_window_handle
        browser.execute_cdp_cmd("Emulation.setFocusEmulationEnabled", {"enabled": False})
        browser.switch_to.new_window("tab")  # the car's page loses focus and is hidden
        poll(lambda: daemon.loop.last.throttle == 0, 3, what="stopping when the page loses focus")
        browser.close()
        browser.switch_to.window(car_tab)
        browser.execute_cdp_cmd("Emulation.setFocusEmulationEnabled", {"enabled": True})
        time.sleep(0.5)
        assert daemon.loop.last.throttle == 0, "a trigger held through the focus loss restarted the car"
        # a pad with no standard mapping: its axis 3 may be a trigger resting at -1, not a stick
        pad(browser, axes=[0.0, 0.0, 0.0, -1.0], mapping="")
        browser.find_element("css selector", "#drive-start").click()
        time.sleep(0.5)
        assert js(browser, "return window.paddockDriver.active")
        assert daemon.loop.last.throttle == 0, "an unmapped pad's resting axis drove the car"
    finally:
        watch.close()
        browser.close()
        browser.switch_to.window(main)


def test_the_fleet_and_car_pages_show_a_cars_detector(browser: Any, stack: StackThread) -> None:
    """A classifier deployed to car-1's detector slot shows on its fleet card and its page, with what
    it sees ahead (this one always sees the road clear: its rule never holds car-1)."""
    model, detector_card = classifier(
        {"obstacle": {"none": 0.9, "box": 0.1}, "surface": {"asphalt": 0.8, "carpet": 0.2}}
    )
    auth = {"Authorization": f"Bearer {stack.token}"}
    r = httpx.post(
        f"{stack.url}/models",
        data={"name": "eyes", "card": detector_card.model_dump_json()},
        files={"artifact": ("eyes.onnx", model)},
        headers=auth,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    ref = f"eyes:{r.json()['version']}"
    body = {"model": {"name": "eyes", "version": r.json()["version"]}, "car": "car-1"}
    deployed = httpx.post(f"{stack.url}/deployments", json=body, headers=auth, timeout=30)
    assert deployed.status_code == 201 and deployed.json()["slot"] == "detector", deployed.text
    try:
        open_page(browser, stack, "fleet", None)
        card_line = poll(
            lambda: js(browser, "return document.querySelector('[data-car=car-1] .detector')?.textContent"),
            30,
            what="the detector on car-1's card",
        )
        assert card_line == f"{ref} · ahead none · asphalt", card_line
        assert not js(browser, "return document.querySelector('[data-car=car-2] .detector')")
        open_page(browser, stack, "car/car-1", None)
        line = poll(lambda: js(browser, "return document.getElementById('car-line').textContent"), 10)
        assert f"detector {ref}" in line, line
    finally:
        httpx.delete(f"{stack.url}/deployments/car/car-1", params={"slot": "detector"}, headers=auth)
