// ember dashboard: refresh the page's content, draw the overview's charts, tail a log.
// Plain JavaScript, no library; the server escapes every text it renders.
"use strict";

const REFRESH_MS = 2000;
const LOG_MS = 1000;
const CHART_MS = 1000;
const SAMPLES = 90;
const samples = []; // {t, finished, store, capacity}

function get(url, asJson) {
  return fetch(url, {credentials: "same-origin", cache: "no-store"}).then((r) => {
    if (r.status === 401) { window.location.href = "/login"; throw new Error("logged out"); }
    if (!r.ok) throw new Error(url + ": " + r.status);
    return asJson ? r.json() : r.text();
  });
}

function busy(main) {
  const a = document.activeElement;
  return a && main.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT");
}

function refreshContent() {
  const main = document.getElementById("content");
  if (!main || !main.dataset.refresh) return;
  setInterval(() => {
    if (busy(main) || document.hidden) return;
    const open = Array.from(main.querySelectorAll("details[open]")).length;
    if (open) return; // someone reads an error: leave it
    get(main.dataset.refresh, false).then((html) => {
      main.innerHTML = html;
      drawCharts();
    }).catch(() => {});
  }, REFRESH_MS);
}

function line(svg, values, max, cls) {
  const NS = "http://www.w3.org/2000/svg";
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const w = 300, h = 80;
  const step = w / (SAMPLES - 1);
  const pts = values.map((v, i) => {
    const x = (SAMPLES - values.length + i) * step;
    const y = h - 4 - (max > 0 ? (v / max) * (h - 8) : 0);
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  const pl = document.createElementNS(NS, "polyline");
  pl.setAttribute("points", pts.join(" "));
  pl.setAttribute("class", cls);
  svg.appendChild(pl);
  const label = document.createElementNS(NS, "text");
  label.setAttribute("x", "4");
  label.setAttribute("y", "12");
  label.setAttribute("class", "chart-label");
  label.textContent = values.length ? "now " + fmt(values[values.length - 1], cls) + ", max " + fmt(max, cls) : "";
  svg.appendChild(label);
}

function fmt(v, cls) {
  if (cls !== "store") return (Math.round(v * 10) / 10).toString() + "/s";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return v.toFixed(i ? 1 : 0) + " " + units[i];
}

function drawCharts() {
  const tp = document.getElementById("chart-throughput");
  const st = document.getElementById("chart-store");
  if (!tp || !st) return;
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i].t - samples[i - 1].t;
    rates.push(dt > 0 ? Math.max(0, samples[i].finished - samples[i - 1].finished) / dt : 0);
  }
  line(tp, rates, Math.max(1, ...rates), "rate");
  const used = samples.map((s) => s.store);
  const cap = samples.length ? samples[samples.length - 1].capacity : 0;
  line(st, used, Math.max(1, ...used, cap ? 0 : 1), "store");
  tp.dataset.samples = String(rates.length);
  st.dataset.samples = String(used.length);
}

function pollOverview() {
  if (!document.getElementById("chart-throughput")) return;
  const tick = () => get("/api/overview", true).then((o) => {
    samples.push({t: o.time, finished: o.tasks_finished_total, store: o.store.used, capacity: o.store.capacity});
    if (samples.length > SAMPLES) samples.shift();
    drawCharts();
  }).catch(() => {});
  tick();
  setInterval(tick, CHART_MS);
}

function tailLog() {
  const view = document.getElementById("log-view");
  if (!view) return;
  const follow = document.getElementById("log-follow");
  let offset = -1;
  let inflight = false;
  const tick = () => {
    if (inflight) return;
    inflight = true;
    get("/api/logs/" + encodeURIComponent(view.dataset.log) + "?offset=" + offset, true).then((c) => {
      offset = c.offset;
      if (c.data) {
        view.appendChild(document.createTextNode(c.data));
        if (view.textContent.length > 2000000) view.textContent = view.textContent.slice(-1000000);
        if (!follow || follow.checked) view.scrollTop = view.scrollHeight;
      }
      view.dataset.offset = String(offset);
    }).catch(() => {}).finally(() => { inflight = false; });
  };
  tick();
  setInterval(tick, LOG_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  refreshContent();
  pollOverview();
  tailLog();
});
