// What every page shares: the API client, who is signed in, the live fleet stream, small DOM helpers.
export const auth = {
  token: localStorage.getItem("paddock-token") || "",
  scope: "read",
  get canOperate() { return this.scope === "operate" || this.scope === "admin"; },
};

export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

export async function api(path, { method = "GET", body, form } = {}) {
  const headers = {};
  if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const r = await fetch(path, { method, headers, body: payload });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail || detail; } catch { /* not JSON */ }
    throw new ApiError(r.status, `${r.status}: ${detail}`);
  }
  const type = r.headers.get("content-type") || "";
  return type.includes("json") ? r.json() : r;
}

export function withToken(path) {
  return auth.token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(auth.token)}` : path;
}

export function wsUrl(path) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${withToken(path)}`;
}

// --- the live fleet: one WebSocket, every page subscribes ----------------------------------------------
// A WebSocket, not an EventSource: an event stream holds one of the browser's six HTTP/1.1 connections
// to the hub, and six open pages would leave none for the buttons' commands.
const listeners = new Set();
export const live = { state: null, connected: false, socket: null };
const LIVE_RETRY_MS = 1000;

export function onLive(fn) {
  listeners.add(fn);
  if (live.state) fn(live.state);
  return () => listeners.delete(fn);
}

export function connectLive(onLink) {
  if (live.socket) { live.socket.onclose = null; live.socket.close(); }
  const socket = new WebSocket(wsUrl("/live"));
  live.socket = socket;
  socket.onmessage = (e) => {
    live.state = JSON.parse(e.data);
    if (!live.connected) { live.connected = true; onLink(true); }
    for (const fn of listeners) fn(live.state);
  };
  socket.onclose = () => {
    live.connected = false;
    onLink(false);
    if (live.socket === socket) setTimeout(() => { if (live.socket === socket) connectLive(onLink); }, LIVE_RETRY_MS);
  };
}

// --- DOM ---------------------------------------------------------------------------------------------
export function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function h(html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
}

export function num(v, digits = 1, unit = "") {
  return v === null || v === undefined || Number.isNaN(v) ? "–" : `${Number(v).toFixed(digits)}${unit}`;
}

export function ago(ts) {
  if (!ts) return "–";
  const s = Date.now() / 1000 - ts;
  if (s < 60) return `${Math.max(0, s).toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return new Date(ts * 1000).toLocaleString();
}

export async function confirmAction(title, text, yes = "confirm") {
  const dlg = document.getElementById("dlg-confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = yes;
  dlg.returnValue = "";
  dlg.showModal();
  return new Promise((resolve) => dlg.addEventListener("close", () => resolve(dlg.returnValue === "yes"), { once: true }));
}

export function toast(message, bad = false) {
  const el = h(`<div class="banner" style="position:fixed;bottom:1rem;left:1rem;right:1rem;z-index:9;background:${bad ? "var(--bad)" : "var(--ok)"}">${esc(message)}</div>`);
  document.body.append(el);
  setTimeout(() => el.remove(), bad ? 6000 : 2500);
}

// Runs an API call from a button; shows what went wrong instead of failing silently.
export async function act(fn, done) {
  try { const out = await fn(); if (done) toast(done); return out; }
  catch (e) { toast(e.message, true); return undefined; }
}
