// A small line chart on a canvas: several series over a shared x axis, auto-scaled, with a legend.
const COLORS = ["#4ea1ff", "#f0883e", "#3fb950", "#d2a8ff", "#f85149", "#e3b341"];

export class LineChart {
  constructor(canvas, { series, window = 60, min, max } = {}) {
    this.canvas = canvas;
    this.series = series.map((name, i) => ({ name, color: COLORS[i % COLORS.length], points: [] }));
    this.window = window; // seconds of x shown when x is time; null: everything
    this.fixedMin = min; this.fixedMax = max;
  }

  push(x, values) {
    this.series.forEach((s, i) => {
      const v = values[i];
      if (v !== null && v !== undefined && !Number.isNaN(v)) s.points.push([x, v]);
      if (this.window) while (s.points.length && s.points[0][0] < x - this.window) s.points.shift();
    });
  }

  set(seriesPoints) { this.series.forEach((s, i) => { s.points = seriesPoints[i] || []; }); }

  draw() {
    const c = this.canvas, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, hgt = c.clientHeight;
    if (c.width !== w * dpr || c.height !== hgt * dpr) { c.width = w * dpr; c.height = hgt * dpr; }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    const all = this.series.flatMap((s) => s.points);
    if (!all.length) { g.fillStyle = "#8b98a5"; g.fillText("no data yet", 10, 20); return; }
    let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let y0 = this.fixedMin ?? Math.min(...all.map((p) => p[1]));
    let y1 = this.fixedMax ?? Math.max(...all.map((p) => p[1]));
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y0 -= 1; y1 += 1; }
    const pad = { l: 40, r: 8, t: 18, b: 14 };
    const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
    const Y = (y) => hgt - pad.b - ((y - y0) / (y1 - y0)) * (hgt - pad.t - pad.b);
    g.strokeStyle = "#2c353f"; g.fillStyle = "#8b98a5"; g.font = "11px system-ui"; g.lineWidth = 1;
    for (const y of [y0, (y0 + y1) / 2, y1]) {
      g.beginPath(); g.moveTo(pad.l, Y(y)); g.lineTo(w - pad.r, Y(y)); g.stroke();
      g.fillText(y.toPrecision(3), 2, Y(y) + 4);
    }
    let lx = pad.l;
    for (const s of this.series) {
      g.strokeStyle = s.color; g.lineWidth = 1.6; g.beginPath();
      s.points.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
      g.stroke();
      g.fillStyle = s.color; g.fillText(s.name, lx, 12); lx += g.measureText(s.name).width + 14;
    }
  }
}
