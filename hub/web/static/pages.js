// The pages. Each renders into `view` and returns its clean-up (sockets closed, driving stopped).
import { LineChart } from "./chart.js";
import { act, ago, api, auth, confirmAction, esc, h, num, onLive, toast, withToken, wsUrl } from "./core.js";
import { Driver, joystick } from "./drive.js";
import { lineageSvg } from "./lineage.js";

const enc = encodeURIComponent;

// --- fleet -------------------------------------------------------------------------------------------
function carCard(c) {
  const t = c.telemetry || {};
  const ms = c.model_state || {};
  const error = ms.last_error || (c.state === "offline" ? "offline" : "");
  return `<div class="card" data-car="${esc(c.car)}">
    <h3><a href="#/car/${enc(c.car)}">${esc(c.car)}</a><span class="pill ${c.state}">${c.state}</span></h3>
    <dl class="kv">
      <dt>mode</dt><dd class="mode">${esc(t.mode || c.status?.mode || "–")}${t.recording ? " · ● rec" : ""}</dd>
      <dt>model</dt><dd>${esc(ms.active || t.model || "none")}</dd>
      ${detectorRow(c)}
      <dt>battery</dt><dd>${num(t.battery_v, 2, " V")}</dd>
      <dt>loop</dt><dd>${num(t.loop_period_ms, 1, " ms")} · p99 late ${num(t.loop_late_p99_ms, 1, " ms")}</dd>
      <dt>speed</dt><dd>${num(t.speed, 2, " m/s")}</dd>
      <dt>seen</dt><dd>${ago(c.last_seen)}</dd>
    </dl>
    ${error ? `<p class="error">${esc(error)}</p>` : ""}
  </div>`;
}

// The detector slot, on cars that have one: its model and what it sees ahead (and a safety hold).
function detectorLine(c) {
  const t = c.telemetry || {};
  const active = c.detector_state?.active || t.detector;
  if (!active) return "";
  const seen = [t.obstacle && `ahead ${t.obstacle}`, t.surface].filter(Boolean).join(" · ");
  return `${active}${seen ? ` · ${seen}` : ""}${t.safety_hold ? " · ■ safety hold" : ""}`;
}

function detectorRow(c) {
  const line = detectorLine(c);
  return line ? `<dt>detector</dt><dd class="detector">${esc(line)}</dd>` : "";
}

export function fleet(view) {
  view.append(h(`<section><h1>Fleet <span id="fleet-count" class="pill"></span></h1><div id="cars" class="grid"></div></section>`));
  return onLive((s) => {
    const online = s.cars.filter((c) => c.state === "online").length;
    view.querySelector("#fleet-count").textContent = `${online}/${s.cars.length} online`;
    view.querySelector("#cars").innerHTML = s.cars.length ? s.cars.map(carCard).join("") : "<p>No car has been seen yet.</p>";
  });
}

// --- one car: camera, charts, mode, recording, driving --------------------------------------------------
function cameraFeed(canvas, car, stats) {
  const ws = new WebSocket(wsUrl(`/cars/${enc(car)}/camera`));
  ws.binaryType = "blob";
  const g = canvas.getContext("2d");
  const times = [];
  ws.onmessage = async (e) => {
    const bmp = await createImageBitmap(e.data);
    if (canvas.width !== bmp.width) { canvas.width = bmp.width; canvas.height = bmp.height; }
    g.drawImage(bmp, 0, 0);
    bmp.close();
    const now = performance.now();
    times.push(now);
    while (times.length && times[0] < now - 2000) times.shift();
    stats.frames += 1;
    stats.fps = times.length > 1 ? (times.length - 1) / ((now - times[0]) / 1000) : 0;
  };
  return ws;
}

const CAR_HTML = (car) => `<section>
  <h1><a href="#/fleet">Fleet</a> / ${esc(car)} <span id="car-state" class="pill"></span></h1>
  <div class="split">
    <div>
      <canvas id="camera" class="camera" width="160" height="120"></canvas>
      <p class="drive-state"><span id="fps">0.0</span> fps · <span id="car-line"></span></p>
      <h2>Telemetry</h2>
      <canvas id="chart-drive" class="chart"></canvas>
      <canvas id="chart-loop" class="chart" style="margin-top:.5rem"></canvas>
    </div>
    <div>
      <div class="card">
        <h3>Mode</h3>
        <div class="row" data-need="operate">
          <button data-mode="manual" class="ghost">manual</button><button data-mode="autopilot" class="ghost">autopilot</button>
          <button data-mode="stop" class="ghost">stop</button>
          <button id="rec" class="ghost">● record</button>
        </div>
        <p id="viewer-note" class="drive-state">Viewers watch; sign in with the operator token to drive.</p>
      </div>
      <div class="card" style="margin-top:1rem" data-need="operate">
        <h3>Drive <span id="drive-link" class="pill">idle</span></h3>
        <div class="joy" id="joy"><div class="knob"></div></div>
        <p class="drive-state" id="drive-state">arrows/WASD or a gamepad · space stops</p>
        <div class="row"><label>max throttle <input id="maxthr" type="range" min="0.1" max="1" step="0.05" value="0.5"></label></div>
        <div class="row"><button id="drive-start">start driving</button><button id="drive-stop" class="danger">stop</button></div>
      </div>
    </div>
  </div></section>`;

export async function car(view, carId) {
  view.append(h(CAR_HTML(carId)));
  document.getElementById("viewer-note").hidden = auth.canOperate;
  const stats = { frames: 0, fps: 0 };
  window.paddockCamera = stats; // read by the browser tests
  const cam = cameraFeed(view.querySelector("#camera"), carId, stats);
  const fpsTimer = setInterval(() => { view.querySelector("#fps").textContent = stats.fps.toFixed(1); }, 500);
  const driveChart = new LineChart(view.querySelector("#chart-drive"), { series: ["steering", "throttle", "speed"], window: 60 });
  const loopChart = new LineChart(view.querySelector("#chart-loop"), { series: ["loop ms", "late p99 ms", "inference ms"], window: 60 });
  let lastTs = 0;
  const addTelemetry = (t) => {
    if (!(t.ts > lastTs)) return; // one point per report, in time order
    lastTs = t.ts;
    driveChart.push(t.ts, [t.steering, t.throttle, t.speed]);
    loopChart.push(t.ts, [t.loop_period_ms, t.loop_late_p99_ms, t.inference_ms]);
  };
  // The controls work from the first moment the page shows them: the history below can be slow.
  let recording = false;
  const command = (name, body) => api(`/cars/${enc(carId)}/commands/${name}?wait=3`, { method: "POST", body });
  for (const b of view.querySelectorAll("[data-mode]")) {
    b.addEventListener("click", () => act(() => command("mode", { mode: b.dataset.mode }), `mode ${b.dataset.mode}`));
  }
  view.querySelector("#rec").addEventListener("click", () => act(() => command("record", { action: recording ? "stop" : "start" }), recording ? "recording stopped" : "recording"));
  const driver = setupDriving(view, carId);
  try {
    const rows = await api(`/cars/${enc(carId)}/telemetry?limit=300`);
    rows.sort((a, b) => a.ts - b.ts).forEach(addTelemetry);
  } catch { /* the SQLite sink is off: live values only */ }
  let lastSeq = null;
  const off = onLive((s) => {
    const c = s.cars.find((x) => x.car === carId);
    if (!c) return;
    const t = c.telemetry || {};
    view.querySelector("#car-state").textContent = c.state;
    view.querySelector("#car-state").className = `pill ${c.state}`;
    const detector = detectorLine(c);
    view.querySelector("#car-line").textContent = `${t.mode || "–"} · model ${c.model_state?.active || "none"}${detector ? ` · detector ${detector}` : ""} · battery ${num(t.battery_v, 2, " V")}`;
    recording = !!t.recording;
    view.querySelector("#rec").textContent = recording ? "■ stop recording" : "● record";
    for (const b of view.querySelectorAll("[data-mode]")) b.classList.toggle("ghost", b.dataset.mode !== t.mode);
    if (t.seq !== undefined && t.seq !== lastSeq) { lastSeq = t.seq; addTelemetry(t); }
    driveChart.draw(); loopChart.draw();
  });
  return () => { off(); cam.close(); clearInterval(fpsTimer); driver.close(); };
}

function setupDriving(view, carId) {
  const link = view.querySelector("#drive-link"), line = view.querySelector("#drive-state");
  const driver = new Driver(carId, {
    onState: (d) => {
      link.textContent = d.active ? "driving" : d.closedReason ? "refused" : "idle";
      link.className = `pill ${d.active ? "ok" : d.closedReason ? "bad" : ""}`;
      const l = d.last || { steering: 0, throttle: 0 };
      line.textContent = d.active
        ? `steering ${l.steering.toFixed(2)} · throttle ${l.throttle.toFixed(2)} · sent ${d.sent} · hub rtt ${d.rtt ?? "–"} ms`
        : d.closedReason || d.why || "arrows/WASD or a gamepad · space stops";
    },
  });
  window.paddockDriver = driver; // read by the browser tests
  joystick(view.querySelector("#joy"), driver);
  view.querySelector("#maxthr").addEventListener("input", (e) => { driver.maxThrottle = Number(e.target.value); });
  view.querySelector("#drive-start").addEventListener("click", () => driver.start());
  view.querySelector("#drive-stop").addEventListener("click", () => driver.halt("stopped"));
  return driver;
}

// --- sessions and datasets -------------------------------------------------------------------------------
export async function sessions(view) {
  const [list, sets] = await Promise.all([api("/sessions?limit=200"), api("/datasets")]);
  view.append(h(`<section><h1>Sessions <span class="pill">${list.total}</span></h1>
    <div class="row" data-need="operate"><input id="ds-name" placeholder="dataset name"> <button id="ds-make">dataset from selected</button></div>
    <div class="thumbs">${list.sessions.map((s) => `<div class="card">
      <a href="#/session/${enc(s.car)}/${enc(s.session)}"><img loading="lazy" alt="" src="${withToken(`/sessions/${enc(s.car)}/${enc(s.session)}/thumbnail?size=240`)}"></a>
      <label><input type="checkbox" data-car="${esc(s.car)}" data-session="${esc(s.session)}"> ${esc(s.car)} / ${esc(s.session)}</label>
      <div class="drive-state">${s.frame_count} frames · ${esc(s.state)}</div></div>`).join("") || "<p>No sessions recorded yet.</p>"}</div>
    <h2>Datasets</h2>
    <table><tr><th>name</th><th>train</th><th>val</th><th>frames</th><th></th></tr>
    ${sets.map((d) => `<tr><td>${esc(d.name)}</td><td>${d.train.length}</td><td>${d.val.length}</td><td>${d.frames ?? "–"}</td>
      <td><button class="ghost" data-need="operate" data-del-ds="${esc(d.name)}">delete</button></td></tr>`).join("")}</table></section>`));
  view.querySelector("#ds-make").addEventListener("click", async () => {
    const picked = [...view.querySelectorAll("input[type=checkbox]:checked")].map((c) => ({ car: c.dataset.car, session: c.dataset.session }));
    const name = view.querySelector("#ds-name").value.trim();
    if (!name || !picked.length) { toast("name the dataset and pick sessions", true); return; }
    if (await act(() => api("/datasets", { method: "POST", body: { name, sessions: picked } }), `dataset ${name} created`)) sessions(view.replaceChildren() || view);
  });
  for (const b of view.querySelectorAll("[data-del-ds]")) {
    b.addEventListener("click", async () => {
      if (await confirmAction(`Delete dataset ${b.dataset.delDs}?`, "Its sessions stay.", "delete")
          && await act(() => api(`/datasets/${enc(b.dataset.delDs)}`, { method: "DELETE" }), "deleted")) sessions(view.replaceChildren() || view);
    });
  }
}

export async function session(view, carId, sessionId) {
  const base = `/sessions/${enc(carId)}/${enc(sessionId)}`;
  const [m, frames] = await Promise.all([api(base), api(`${base}/frames?limit=2000`)]);
  view.append(h(`<section><h1><a href="#/sessions">Sessions</a> / ${esc(carId)} / ${esc(sessionId)}</h1>
    <div class="split"><div>
      <img id="frame" class="camera" alt="frame" src="${withToken(`${base}/thumbnail?size=480`)}">
      <input id="scrub" type="range" min="0" max="${Math.max(0, frames.length - 1)}" value="0">
      <p class="drive-state" id="frame-line"></p>
      <canvas id="chart-actions" class="chart"></canvas>
    </div><div class="card"><h3>Session</h3><dl class="kv">
      <dt>frames</dt><dd>${m.frame_count}</dd><dt>seq</dt><dd>${m.seq_first ?? "–"}–${m.seq_last ?? "–"}</dd>
      <dt>gaps</dt><dd>${m.gaps?.length ?? 0}</dd><dt>trimmed</dt><dd>${m.trimmed.map((r) => r.join("–")).join(", ") || "none"}</dd>
      <dt>datasets</dt><dd>${esc(m.datasets.join(", ") || "none")}</dd><dt>size</dt><dd>${num(m.bytes / 1e6, 1, " MB")}</dd></dl>
      <div data-need="operate"><h2>Trim</h2><div class="row"><input id="t0" type="number" placeholder="first seq" style="width:7rem"><input id="t1" type="number" placeholder="last seq" style="width:7rem">
        <button id="trim" class="ghost">trim</button></div>
        <div class="row"><button id="mark0" class="ghost">start here</button><button id="mark1" class="ghost">end here</button></div>
        <h2>Delete</h2><button id="delete" class="danger">delete session</button></div>
    </div></div></section>`));
  const chart = new LineChart(view.querySelector("#chart-actions"), { series: ["steering", "throttle"], window: null, min: -1, max: 1 });
  chart.set([frames.map((f) => [f.seq, f.steering]), frames.map((f) => [f.seq, f.throttle])]);
  chart.draw();
  const scrub = view.querySelector("#scrub"), img = view.querySelector("#frame");
  const show = () => {
    const f = frames[Number(scrub.value)];
    if (!f) return;
    img.src = withToken(`${base}/thumbnail?size=480&seq=${f.seq}`);
    view.querySelector("#frame-line").textContent = `seq ${f.seq} · steering ${num(f.steering, 2)} · throttle ${num(f.throttle, 2)} · ${f.mode} · ${num(f.speed, 2, " m/s")}`;
  };
  scrub.addEventListener("input", show);
  show();
  view.querySelector("#mark0").addEventListener("click", () => { view.querySelector("#t0").value = frames[Number(scrub.value)]?.seq ?? ""; });
  view.querySelector("#mark1").addEventListener("click", () => { view.querySelector("#t1").value = frames[Number(scrub.value)]?.seq ?? ""; });
  view.querySelector("#trim").addEventListener("click", async () => {
    const start = Number(view.querySelector("#t0").value), end = Number(view.querySelector("#t1").value);
    if (await confirmAction("Trim frames?", `Frames ${start}–${end} are removed for good.`, "trim")
        && await act(() => api(`${base}/trim`, { method: "POST", body: { start, end } }), "trimmed")) session(view.replaceChildren() || view, carId, sessionId);
  });
  view.querySelector("#delete").addEventListener("click", async () => {
    if (await confirmAction("Delete this session?", "Its shards and manifest are deleted.", "delete")
        && await act(() => api(`${base}?force=true`, { method: "DELETE" }), "session deleted")) location.hash = "#/sessions";
  });
}

// --- models ------------------------------------------------------------------------------------------
export async function models(view) {
  const list = await api("/models");
  const byName = Object.groupBy ? Object.groupBy(list, (m) => m.name) : list.reduce((a, m) => ((a[m.name] ||= []).push(m), a), {});
  view.append(h(`<section><h1>Models</h1>${Object.entries(byName).map(([name, versions]) => `<div class="card" style="margin-bottom:1rem"><h3>${esc(name)}</h3>
    ${compareTable(versions)}</div>`).join("") || "<p>No models registered yet.</p>"}</section>`));
}

function compareTable(versions) {
  const keys = [...new Set(versions.flatMap((v) => Object.keys(v.lineage?.metrics || {})))].slice(0, 6);
  return `<table><tr><th>version</th><th>format</th><th>size</th><th>dataset</th>${keys.map((k) => `<th>${esc(k)}</th>`).join("")}<th>created</th></tr>
    ${versions.map((v) => `<tr><td><a href="#/model/${enc(v.name)}/${enc(v.version)}">${esc(v.version)}</a></td><td>${v.format}</td>
      <td>${num(v.size / 1024, 0, " KB")}</td><td>${esc(v.lineage?.dataset || "–")}</td>
      ${keys.map((k) => `<td>${num(v.lineage?.metrics?.[k], 4)}</td>`).join("")}<td>${ago(v.created)}</td></tr>`).join("")}</table>`;
}

function targetPicker(cars, targets) {
  const groups = [...new Set(["fleet", ...targets.filter((t) => t.target_kind === "group").map((t) => t.target)])];
  return `<select id="target">${cars.map((c) => `<option value="car:${esc(c.car)}">car ${esc(c.car)}</option>`).join("")}
    ${groups.map((g) => `<option value="group:${esc(g)}">group ${esc(g)}</option>`).join("")}</select>
    <input id="group" placeholder="or a group" size="8">`;
}

function pickedTarget(view) {
  const group = view.querySelector("#group").value.trim();
  return group ? `group:${group}` : view.querySelector("#target").value;
}

async function deploy(name, version, target) {
  const [kind, id] = target.split(":");
  return api("/deployments", { method: "POST", body: { model: { name, version }, [kind]: id, requested_by: "web app" } });
}

export async function model(view, name, version) {
  const [m, cars, targets] = await Promise.all([api(`/models/${enc(name)}/${enc(version)}`), api("/cars"), api("/deployments")]);
  view.append(h(`<section><h1><a href="#/models">Models</a> / ${esc(name)} ${esc(version)}</h1>
    <div class="card"><h3>Lineage</h3><div id="lineage"></div></div>
    <div class="split" style="margin-top:1rem"><div class="card"><h3>Evaluations</h3><canvas id="chart-eval" class="chart"></canvas>
      <table>${m.evaluations.map((e) => `<tr><td>${esc(e.job || "")}</td><td>${esc(Object.entries(e.metrics || e.result?.metrics || {}).map(([k, v]) => `${k} ${num(v, 3)}`).join(" · "))}</td></tr>`).join("") || "<tr><td>none yet</td></tr>"}</table></div>
    <div class="card"><h3>Deploy</h3><dl class="kv"><dt>format</dt><dd>${m.format}</dd><dt>size</dt><dd>${num(m.size / 1024, 0, " KB")}</dd>
      <dt>sha256</dt><dd>${esc(m.sha256.slice(0, 16))}…</dd><dt>architecture</dt><dd>${esc(m.card.architecture || "–")}</dd></dl>
      <div class="row" data-need="operate">${targetPicker(cars, targets)}<button id="deploy">deploy</button></div>
      <p><a href="${esc(m.download_url)}">download</a></p></div></div>
    ${lapsCard(name, version, m.evaluations)}</section>`));
  view.querySelector("#lineage").append(lineageSvg(m));
  const keys = [...new Set(m.evaluations.flatMap((e) => Object.keys(e.metrics || {})))].slice(0, 4);
  const evalCanvas = view.querySelector("#chart-eval");
  evalCanvas.hidden = !m.evaluations.length;
  const evalChart = new LineChart(evalCanvas, { series: keys, window: null });
  evalChart.set(keys.map((k) => m.evaluations.map((e, i) => [i + 1, e.metrics?.[k]]).filter((p) => typeof p[1] === "number")));
  evalChart.draw();
  view.querySelector("#deploy")?.addEventListener("click", () => act(() => deploy(name, version, pickedTarget(view)), `deployed ${name}:${version}`));
}

// An evaluation's lap video and its track map (the driven line coloured by speed), newest first.
function lapsCard(name, version, evaluations) {
  const shown = evaluations.filter((e) => e.files?.video || e.files?.map).reverse();
  if (!shown.length) return "";
  const file = (e, label) => withToken(`/models/${enc(name)}/${enc(version)}/evaluations/${enc(e.job)}/files/${enc(label)}`);
  return `<div class="card" style="margin-top:1rem"><h3>Laps</h3>${shown.map((e) => `<h2>${esc(e.job)} <span class="pill">${ago(e.created)}</span></h2>
    <div class="laps">${e.files.video ? `<video class="lap" controls muted playsinline preload="metadata" src="${esc(file(e, "video"))}" data-job="${esc(e.job)}"></video>` : ""}
    ${e.files.map ? `<a href="${esc(file(e, "map"))}" target="_blank"><img class="lap-map" alt="track map of ${esc(e.job)}" src="${esc(file(e, "map"))}"></a>` : ""}</div>`).join("")}</div>`;
}

// --- deployments -------------------------------------------------------------------------------------------
export async function deployments(view) {
  const [targets, list, cars] = await Promise.all([api("/deployments"), api("/models"), api("/cars")]);
  view.append(h(`<section><h1>Deployments</h1>
    <div class="card row" data-need="operate"><select id="model">${list.map((m) => `<option value="${esc(m.name)}:${esc(m.version)}">${esc(m.name)} ${esc(m.version)}</option>`).join("")}</select>
      ${targetPicker(cars, targets)}<button id="deploy">deploy</button></div>
    <table style="margin-top:1rem"><tr><th>target</th><th>model</th><th>last action</th><th>when</th><th></th></tr>
    ${targets.map((t) => `<tr><td>${t.target_kind} ${esc(t.target)}</td><td>${t.current ? `${esc(t.current.name)} ${esc(t.current.version)}` : "none"}</td>
      <td>${esc(t.last_action || "")}</td><td>${ago(t.updated)}</td><td data-need="operate">
      <button class="ghost" data-rollback="${t.target_kind}/${esc(t.target)}" ${t.can_roll_back ? "" : "disabled"}>rollback</button>
      <button class="ghost" data-clear="${t.target_kind}/${esc(t.target)}">clear</button></td></tr>`).join("")}</table></section>`));
  const again = () => deployments(view.replaceChildren() || view);
  view.querySelector("#deploy").addEventListener("click", async () => {
    const [name, version] = view.querySelector("#model").value.split(":");
    if (await act(() => deploy(name, version, pickedTarget(view)), `deployed ${name}:${version}`)) again();
  });
  for (const b of view.querySelectorAll("[data-rollback]")) {
    b.addEventListener("click", async () => { if (await act(() => api(`/deployments/${b.dataset.rollback}/rollback`, { method: "POST" }), "rolled back")) again(); });
  }
  for (const b of view.querySelectorAll("[data-clear]")) {
    b.addEventListener("click", async () => {
      if (await confirmAction("Clear this deployment?", "The target's cars keep their cached model until told otherwise.", "clear")
          && await act(() => api(`/deployments/${b.dataset.clear}`, { method: "DELETE" }), "cleared")) again();
    });
  }
}

// --- jobs ----------------------------------------------------------------------------------------------
function progressOf(j) {
  const p = j.progress || {};
  if (p.total_steps) return p.step / p.total_steps;
  if (p.epochs) return (p.epoch || 0) / p.epochs;
  return j.state === "succeeded" ? 1 : 0;
}

export function jobs(view) {
  view.append(h(`<section><h1>Jobs</h1><table id="jobs"></table></section>`));
  return onLive((s) => {
    view.querySelector("#jobs").innerHTML = `<tr><th>job</th><th>kind</th><th>state</th><th>progress</th><th>loss</th><th>updated</th></tr>${s.jobs.map((j) => `<tr>
      <td><a href="#/job/${enc(j.job)}">${esc(j.job)}</a></td><td>${esc(j.kind)}</td><td>${esc(j.state)}</td>
      <td><div class="bar"><span style="width:${(progressOf(j) * 100).toFixed(0)}%"></span></div><small>${esc(j.progress?.stage || "")}</small></td>
      <td>${num(j.progress?.loss, 4)}</td><td>${ago(j.updated)}</td></tr>`).join("")}`;
  });
}

function logLine(p) {
  const parts = [new Date(p.ts * 1000).toLocaleTimeString(), p.state, p.stage || ""];
  if (p.epoch != null) parts.push(`epoch ${p.epoch + 1}/${p.epochs ?? "?"}`);
  if (p.step != null) parts.push(`step ${p.step}/${p.total_steps ?? "?"}`);
  if (p.loss != null) parts.push(`loss ${num(p.loss, 4)}`);
  if (p.val_loss != null) parts.push(`val ${num(p.val_loss, 4)}`);
  for (const [k, v] of Object.entries(p.metrics || {})) parts.push(`${k} ${num(v, 3)}`);
  if (p.message) parts.push(p.message);
  return parts.join("  ");
}

export async function job(view, jobId) {
  view.append(h(`<section><h1><a href="#/jobs">Jobs</a> / ${esc(jobId)} <span id="job-state" class="pill"></span></h1>
    <div class="card"><div class="bar"><span id="job-bar"></span></div><p id="job-line" class="drive-state"></p>
    <canvas id="chart-loss" class="chart"></canvas><canvas id="chart-metric" class="chart" style="margin-top:.5rem"></canvas></div>
    <h2>Log</h2><pre id="job-log" class="log"></pre><h2>Result</h2><pre id="job-result" class="log"></pre></section>`));
  const loss = new LineChart(view.querySelector("#chart-loss"), { series: ["loss", "val loss"], window: null });
  const metric = new LineChart(view.querySelector("#chart-metric"), { series: ["reward", "best fitness", "mean fitness"], window: null });
  const refresh = async () => {
    const j = await api(`/jobs/${enc(jobId)}?history=1000`);
    const hist = j.history || [];
    // x in epochs: a train report carries its epoch and its step within the epoch; others their order
    const x = (p, i) => (p.epoch != null ? p.epoch + (p.total_steps ? (p.step || 0) / p.total_steps : 0) : i);
    view.querySelector("#job-state").textContent = j.state;
    view.querySelector("#job-bar").style.width = `${(progressOf(j) * 100).toFixed(0)}%`;
    view.querySelector("#job-line").textContent = `${j.kind} · ${j.progress?.stage || ""} · updated ${ago(j.updated)}`;
    loss.set([hist.map((p, i) => [x(p, i), p.loss]).filter((p) => p[1] != null), hist.map((p, i) => [x(p, i), p.val_loss]).filter((p) => p[1] != null)]);
    const m = (k) => hist.map((p, i) => [x(p, i), p.metrics?.[k]]).filter((p) => p[1] != null);
    metric.set([m("reward"), m("best_fitness"), m("mean_fitness")]);
    loss.draw(); metric.draw();
    view.querySelector("#job-log").textContent = hist.map(logLine).join("\n");
    view.querySelector("#job-result").textContent = j.result ? JSON.stringify(j.result, null, 2) : "–";
  };
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 2000);
  return () => clearInterval(timer);
}
