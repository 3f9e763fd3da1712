// A model's lineage as a left-to-right graph in SVG: dataset → training run → model → evaluations,
// deployments. One column per stage; every node of a column links to every node of the next.
const NS = "http://www.w3.org/2000/svg";
const BOX = { w: 232, h: 38, gapX: 44, gapY: 14 };
const cut = (t, n) => (t.length > n ? `${t.slice(0, n - 1)}…` : t);

function node(label, sub, href) { return { label, sub, href }; }

export function columnsOf(m) {
  const l = m.lineage || {};
  const cols = [];
  if (l.dataset) cols.push([node(`dataset ${l.dataset}`, "", "#/sessions")]);
  if (l.job || l.run) cols.push([node(`run ${l.run || l.job}`, l.job ? `job ${l.job}` : "", l.job ? `#/job/${encodeURIComponent(l.job)}` : "")]);
  const metrics = Object.entries(l.metrics || {}).slice(0, 2).map(([k, v]) => `${k} ${Number(v).toPrecision(3)}`).join(" · ");
  cols.push([node(`model ${m.name} ${m.version}`, metrics, "")]);
  const evals = (m.evaluations || []).slice(0, 6).map((e) => node(`eval ${e.job || ""}`.slice(0, 28),
    Object.entries(e.metrics || {}).slice(0, 2).map(([k, v]) => `${k} ${Number(v).toPrecision(3)}`).join(" · "),
    e.job ? `#/job/${encodeURIComponent(e.job)}` : ""));
  if (evals.length) cols.push(evals);
  const deps = (m.deployments || []).slice(0, 6).map((d) => node(`${d.target_kind || d.kind || ""} ${d.target || ""}`, d.action || d.last_action || "", "#/deployments"));
  if (deps.length) cols.push(deps);
  return cols;
}

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export function lineageSvg(m) {
  const cols = columnsOf(m);
  const rows = Math.max(...cols.map((c) => c.length));
  const W = cols.length * (BOX.w + BOX.gapX), H = rows * (BOX.h + BOX.gapY) + BOX.gapY;
  const svg = el("svg", { class: "lineage", viewBox: `0 0 ${W} ${H}`, width: "100%", style: `max-height:${H}px`, role: "img" });
  const pos = cols.map((col, ci) => col.map((_, ri) => ({
    x: ci * (BOX.w + BOX.gapX) + 4,
    y: (H - col.length * (BOX.h + BOX.gapY)) / 2 + ri * (BOX.h + BOX.gapY) + BOX.gapY / 2,
  })));
  for (let ci = 0; ci + 1 < cols.length; ci++) {
    for (const a of pos[ci]) for (const b of pos[ci + 1]) {
      const x1 = a.x + BOX.w, y1 = a.y + BOX.h / 2, x2 = b.x, y2 = b.y + BOX.h / 2, mx = (x1 + x2) / 2;
      svg.append(el("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
    }
  }
  cols.forEach((col, ci) => col.forEach((n, ri) => {
    const { x, y } = pos[ci][ri];
    const g = el("g", { class: "node" });
    g.append(el("rect", { x, y, width: BOX.w, height: BOX.h, rx: 6 }));
    g.append(el("text", { x: x + 8, y: y + 15 }, cut(n.label, 31)));
    if (n.sub) g.append(el("text", { x: x + 8, y: y + 30, opacity: 0.65, "font-size": 10 }, cut(n.sub, 36)));
    g.append(el("title", {}, `${n.label}${n.sub ? `\n${n.sub}` : ""}`));
    if (n.href) { const a = el("a", { href: n.href }); a.append(g); svg.append(a); } else svg.append(g);
  }));
  return svg;
}
