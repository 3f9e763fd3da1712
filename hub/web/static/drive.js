// Manual driving: joystick, keyboard and gamepad feed one (steering, throttle); a WebSocket to the hub
// carries it at SEND_HZ (the car's deadman needs a command at least every 250 ms). Losing focus,
// hiding the page or losing the link stops the car: the page sends neutral, the hub does on close.
import { wsUrl } from "./core.js";

const SEND_HZ = 20;  // 50 ms apart: a late timer (a busy phone, a background tab) still beats the 250 ms deadman
const KEY_RATE = { steering: 1.0, throttle: 0.5 }; // keyboard: full steering, half throttle
const PAD_DEADZONE = 0.05;
const deflected = (c) => Math.abs(c.steering) > PAD_DEADZONE || Math.abs(c.throttle) > PAD_DEADZONE;

export class Driver {
  constructor(car, { onState } = {}) {
    this.car = car;
    this.onState = onState || (() => {});
    this.input = { joystick: null, keys: new Set(), pad: null };
    this.sent = 0; this.acked = 0; this.rtt = null; this.closedReason = "";
    this.maxThrottle = 0.5;
    this._stop = () => this.halt("page lost focus");
    window.addEventListener("blur", this._stop);
    document.addEventListener("visibilitychange", this._onVisibility = () => { if (document.hidden) this._stop(); });
    window.addEventListener("keydown", this._onKey = (e) => this.key(e, true));
    window.addEventListener("keyup", this._onKeyUp = (e) => this.key(e, false));
    window.addEventListener("pagehide", this._stop);
    // A pad starts driving as a key does, but only once seen at rest since the last stop: a trigger
    // held through a focus loss, a stop or a reconnection does not launch the car.
    this.padArmed = false;
    this.padWatch = setInterval(() => this.watchPad(), 1000 / SEND_HZ);
    window.addEventListener("gamepaddisconnected", this._onPadGone = () => {
      if (this.active && this.byPad && !readGamepad()) this.halt("gamepad disconnected");
    });
  }

  watchPad() {
    const pad = readGamepad();
    if (!pad || !deflected(pad)) { this.padArmed = !!pad; return; }
    if (!this.active && this.padArmed && document.hasFocus() && !document.hidden) this.start();
  }

  start() {
    if (this.ws && this.ws.readyState <= 1) return;
    this.closedReason = "";
    this.ws = new WebSocket(wsUrl(`/cars/${encodeURIComponent(this.car)}/drive`));
    this.ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.ack !== undefined && m.ack !== null) { this.acked += 1; this.rtt = Date.now() - m.ack * 1000; }
    };
    this.ws.onclose = (e) => {
      this.closedReason = e.reason || (e.code === 1000 ? "" : `link closed (${e.code})`);
      this.halt(this.closedReason || "stopped");
    };
    this.timer = setInterval(() => this.tick(), 1000 / SEND_HZ);
    this.active = true;
    this.onState(this);
  }

  halt(why) {
    if (this.ws && this.ws.readyState === 1) this.send(0, 0);
    clearInterval(this.timer);
    this.active = false;
    this.input.joystick = null; this.input.keys.clear(); this.padArmed = false;
    if (this.ws && this.ws.readyState <= 1) this.ws.close(1000, why);
    this.why = why;
    this.onState(this);
  }

  close() {
    this.halt("left the page");
    window.removeEventListener("blur", this._stop);
    document.removeEventListener("visibilitychange", this._onVisibility);
    window.removeEventListener("keydown", this._onKey);
    window.removeEventListener("keyup", this._onKeyUp);
    window.removeEventListener("pagehide", this._stop);
    window.removeEventListener("gamepaddisconnected", this._onPadGone);
    clearInterval(this.padWatch);
  }

  key(e, down) {
    const k = e.key.toLowerCase();
    if (!["arrowup", "arrowdown", "arrowleft", "arrowright", "w", "a", "s", "d", " "].includes(k)) return;
    if (e.target instanceof HTMLInputElement) return;
    e.preventDefault();
    if (k === " ") { this.halt("space: stop"); return; }
    if (down) { this.input.keys.add(k); if (!this.active) this.start(); } else this.input.keys.delete(k);
  }

  // The command now: joystick wins, then gamepad, then keys.
  command() {
    const { joystick, keys } = this.input;
    if (joystick) return joystick;
    const pad = readGamepad();
    this.byPad = !!pad && deflected(pad);
    if (this.byPad) return pad;
    const has = (...ks) => ks.some((x) => keys.has(x));
    const steering = (has("arrowright", "d") ? 1 : 0) - (has("arrowleft", "a") ? 1 : 0);
    const throttle = (has("arrowup", "w") ? 1 : 0) - (has("arrowdown", "s") ? 1 : 0);
    return { steering: steering * KEY_RATE.steering, throttle: throttle * KEY_RATE.throttle * 2 };
  }

  tick() {
    const c = this.command();
    this.send(c.steering, c.throttle * this.maxThrottle);
  }

  send(steering, throttle) {
    if (!this.ws || this.ws.readyState !== 1) return;
    const clip = (v) => Math.max(-1, Math.min(1, v));
    const wasStill = !this.last || this.last.throttle === 0;
    this.last = { steering: clip(steering), throttle: clip(throttle) };
    if (wasStill && this.last.throttle !== 0) this.firstMoveAt = Date.now(); // read by the latency test
    this.ws.send(JSON.stringify({ ...this.last, ts: Date.now() / 1000 }));
    this.sent += 1;
    this.onState(this);
  }
}

function readGamepad() {
  const pads = navigator.getGamepads ? navigator.getGamepads() : [];
  for (const p of pads) {
    // only a "standard" layout says which axis is what: elsewhere axis 3 may be a trigger resting at -1
    if (!p || !p.connected || p.mapping !== "standard") continue;
    // standard mapping: left stick x steers; right trigger forward, left trigger back (or right stick y)
    const trig = (p.buttons[7]?.value || 0) - (p.buttons[6]?.value || 0);
    const stickY = -(p.axes[3] || 0);
    return { steering: p.axes[0] || 0, throttle: Math.abs(trig) > 0.05 ? trig : stickY };
  }
  return null;
}

// An on-screen joystick: drag the knob; x steers, up drives. Releasing it centres (throttle 0).
export function joystick(el, driver) {
  const knob = el.querySelector(".knob");
  const centre = () => { knob.style.left = "75px"; knob.style.top = "75px"; };
  const move = (e) => {
    const r = el.getBoundingClientRect();
    let x = (e.clientX - r.left - r.width / 2) / (r.width / 2);
    let y = (e.clientY - r.top - r.height / 2) / (r.height / 2);
    const m = Math.hypot(x, y);
    if (m > 1) { x /= m; y /= m; }
    knob.style.left = `${75 + x * 75}px`; knob.style.top = `${75 + y * 75}px`;
    driver.input.joystick = { steering: x, throttle: -y };
  };
  el.addEventListener("pointerdown", (e) => { el.setPointerCapture(e.pointerId); if (!driver.active) driver.start(); move(e); });
  el.addEventListener("pointermove", (e) => { if (el.hasPointerCapture(e.pointerId)) move(e); });
  const up = () => { driver.input.joystick = null; centre(); };
  el.addEventListener("pointerup", up);
  el.addEventListener("pointercancel", up);
}
