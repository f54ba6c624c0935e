// trakr console: the little JavaScript the server-rendered pages need (no build step, no libraries).
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function api(method, url, body) {
  const opts = { method, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(url, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  return { status: r.status, ok: r.ok, data };
}

const fmt = (v) => (v === null || v === undefined ? "…" : Number(v).toFixed(1));
const stateText = (c) => c.state + (c.reason ? ` (${c.reason})` : "");

// ------------------------------------------------------------------------------ live grid

function refreshImage(img, periodMs, onFrame) {
  const base = img.dataset.src;
  const load = () => {
    if (document.hidden) { setTimeout(load, 1000); return; } // nobody watching: fetch nothing
    img.src = base + (base.includes("?") ? "&" : "?") + "t=" + Date.now();
  };
  img.addEventListener("load", () => { img.classList.remove("broken"); onFrame(); setTimeout(load, periodMs); });
  img.addEventListener("error", () => { img.classList.add("broken"); setTimeout(load, 1000); });
  load();
}

async function pollCameras(update) {
  try {
    const r = await api("GET", "/api/cameras");
    if (r.ok) update(r.data);
  } catch (e) { /* server restarting: try again */ }
  setTimeout(() => pollCameras(update), 2000);
}

function initLive() {
  const grid = $("#grid");
  const period = 1000 / Math.max(0.2, Number(grid.dataset.fps || 2));
  for (const tile of $$(".tile", grid)) {
    refreshImage($("img.preview", tile), period, () => tile.classList.add("has-frame"));
  }
  pollCameras((cams) => {
    for (const c of cams) {
      const tile = $(`.tile[data-camera="${c.camera_id}"]`, grid);
      if (!tile) continue;
      const st = $('[data-field="state"]', tile);
      st.textContent = stateText(c);
      st.className = `state state-${c.state}`;
      $('[data-field="fps"]', tile).textContent = `capture ${fmt(c.capture_fps)} fps · analysed ${fmt(c.analysed_fps)} fps`;
      $('[data-field="problems"]', tile).textContent = c.zone_problems.join("; ");
    }
  });
}

function initCamera() {
  const id = Number($("#full").dataset.camera);
  pollCameras((cams) => {
    const c = cams.find((x) => x.camera_id === id);
    if (!c) return;
    const st = $("#cam-state");
    st.textContent = stateText(c);
    st.className = `state state-${c.state}`;
    $("#cam-fps").textContent = `capture ${fmt(c.capture_fps)} fps · analysed ${fmt(c.analysed_fps)} fps`;
    $("#cam-problems").textContent = c.zone_problems.join("; ");
  });
}

// ------------------------------------------------------------------------------ ROI editor

const COMMON_TRIGGERS = ["person", "car", "truck", "bus", "motorcycle", "bicycle", "social_distancing"];

function initRoi() {
  const root = $("#roi-editor");
  const cameraId = Number(root.dataset.camera);
  const img = $("#snapshot"), canvas = $("#canvas"), stage = $("#stage");
  const ctx = canvas.getContext("2d");
  let zones = [], sel = 0, sha = null, known = [], drag = null;
  const changed = () => status("unsaved changes");

  $("#camera-pick").addEventListener("change", (e) => { location.href = `/roi/${e.target.value}`; });

  function status(text, ok) {
    const s = $("#roi-status");
    s.textContent = text;
    s.className = ok === undefined ? "" : ok ? "ok" : "bad";
  }

  function showProblems(problems) {
    const ul = $("#roi-problems");
    ul.replaceChildren(...(problems || []).map((p) => el("li", {}, p.text || `${p.where}: ${p.field}: ${p.message}`)));
  }

  function loadSnapshot() {
    img.src = `/api/cameras/${cameraId}/snapshot.jpg?t=${Date.now()}`;
  }
  img.addEventListener("error", () => setTimeout(loadSnapshot, 1000));
  img.addEventListener("load", async () => {
    stage.classList.add("ready");
    if (!zones.length) await loadModel();
    fitCanvas();
  });

  async function loadModel() {
    const r = await api("GET", `/api/cameras/${cameraId}/rois`);
    if (!r.ok) { status(r.data?.detail || `error ${r.status}`, false); return; }
    sha = r.data.config_sha;
    known = r.data.known_triggers || [];
    const copy = (z, kind) => ({ ...z, kind, points: z.points ? z.points.map((p) => [...p]) : null });
    zones = [...r.data.zones.map((z) => copy(z, z.name === null ? "camera" : "roi")),
             ...(r.data.lines || []).map((z) => copy(z, "line"))];
    sel = zones.length > 1 ? 1 : 0;

    $("#known-triggers").replaceChildren(...known.map((k) => el("option", { value: k })));
    renderList();
    renderForm();
    draw();
  }

  function fitCanvas() {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(img.clientWidth * dpr);
    canvas.height = Math.round(img.clientHeight * dpr);
    canvas.style.width = img.clientWidth + "px";
    canvas.style.height = img.clientHeight + "px";
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    draw();
  }
  window.addEventListener("resize", fitCanvas);

  const zoneLabel = (z) => (z.kind === "camera" ? "camera polygon" : (z.name || "(unnamed)") + (z.kind === "line" ? " (line)" : ""));

  function renderList() {
    const items = zones.map((z, i) => {
      const pts = z.kind === "line" ? `${z.points ? z.points.length : 0} of 2 points · ${z.direction || "both"}`
        : z.points ? `${z.points.length} points` : "whole frame";
      const li = el("li", { class: i === sel ? "selected" : "", "data-zone": i, onclick: () => { sel = i; renderList(); renderForm(); draw(); } },
        el("b", {}, zoneLabel(z)), ` · ${pts} · ${z.triggers.join(":") || "no triggers"}`,
        z.problem ? el("span", { class: "problem" }, z.problem) : null);
      return li;
    });
    $("#zone-list").replaceChildren(...items);
  }

  function renderForm() {
    const z = zones[sel];
    if (!z) return;
    $("#zone-title").textContent = zoneLabel(z);
    $("#name-row").hidden = z.kind === "camera";
    $("#speaker-row").hidden = z.kind !== "roi";
    $("#direction-row").hidden = z.kind !== "line";
    $("#direction").value = z.direction || "both";
    $("#delete-zone").hidden = z.kind === "camera";
    $("#clear-points").textContent = z.kind === "line" ? "Clear the line's points" : "Remove polygon (whole frame)";
    $("#zone-name").value = z.name || "";
    $("#zone-speaker").value = z.speaker_ip || "";
    const offered = [...new Set([...COMMON_TRIGGERS.filter((t) => !known.length || known.includes(t)), ...z.triggers])];
    $("#zone-triggers").replaceChildren(...offered.map((t) => el("label", {},
      el("input", { type: "checkbox", value: t, checked: z.triggers.includes(t), onchange: (e) => {
        z.triggers = e.target.checked ? [...z.triggers, t] : z.triggers.filter((x) => x !== t);
        changed(); renderList();
      } }), " " + t)));
  }

  $("#zone-name").addEventListener("input", (e) => { zones[sel].name = e.target.value; changed(); renderList(); $("#zone-title").textContent = zoneLabel(zones[sel]); });
  $("#zone-speaker").addEventListener("input", (e) => { zones[sel].speaker_ip = e.target.value; changed(); });
  $("#add-trigger").addEventListener("click", () => {
    const t = $("#trigger-extra").value.trim();
    const z = zones[sel];
    if (t && !z.triggers.includes(t)) { z.triggers.push(t); changed(); }
    $("#trigger-extra").value = "";
    renderForm(); renderList();
  });
  $("#add-roi").addEventListener("click", () => {
    let n = 1;
    while (zones.some((z) => z.name === `roi${n}`)) n++;
    zones.push({ name: `roi${n}`, points: null, triggers: ["person"], speaker_ip: null, kind: "roi", problem: null });
    sel = zones.length - 1;
    changed();
    renderList(); renderForm(); draw();
    $("#zone-name").focus();
  });
  $("#add-line").addEventListener("click", () => {
    let n = 1;
    while (zones.some((z) => z.name === `line${n}`)) n++;
    zones.push({ name: `line${n}`, points: null, triggers: ["person"], direction: "both", kind: "line", problem: null });
    sel = zones.length - 1;
    changed();
    renderList(); renderForm(); draw();
    $("#zone-name").focus();
  });
  $("#direction").addEventListener("change", (e) => { zones[sel].direction = e.target.value; changed(); renderList(); });
  $("#delete-zone").addEventListener("click", () => {
    if (zones[sel].kind === "camera") return;
    zones.splice(sel, 1);
    sel = Math.min(sel, zones.length - 1);
    changed();
    renderList(); renderForm(); draw();
  });
  $("#clear-points").addEventListener("click", () => { zones[sel].points = null; zones[sel].problem = null; changed(); renderList(); draw(); });
  $("#refresh-snapshot").addEventListener("click", loadSnapshot);

  // drawing
  function toCanvas(p) { return [p[0] * img.clientWidth, p[1] * img.clientHeight]; }
  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    zones.forEach((z, i) => {
      if (!z.points || !z.points.length) return;
      const on = i === sel;
      ctx.beginPath();
      z.points.forEach((p, k) => { const [x, y] = toCanvas(p); if (k) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
      if (z.kind !== "line") ctx.closePath();
      ctx.fillStyle = on ? "rgba(59,130,246,0.25)" : "rgba(250,204,21,0.12)";
      ctx.strokeStyle = on ? "#3b82f6" : z.kind === "line" ? "#e879f9" : "#facc15";
      ctx.lineWidth = on ? 2.5 : 1.5;
      if (z.kind !== "line" && z.points.length >= 3) ctx.fill();
      ctx.stroke();
      if (z.kind === "line" && z.points.length === 2) { // arrow head at B: 'in' crosses from its right to its left
        const [ax, ay] = toCanvas(z.points[0]), [bx, by] = toCanvas(z.points[1]);
        const a = Math.atan2(by - ay, bx - ax);
        ctx.beginPath();
        ctx.moveTo(bx, by); ctx.lineTo(bx - 12 * Math.cos(a - 0.4), by - 12 * Math.sin(a - 0.4));
        ctx.moveTo(bx, by); ctx.lineTo(bx - 12 * Math.cos(a + 0.4), by - 12 * Math.sin(a + 0.4));
        ctx.stroke();
      }
      const [lx, ly] = toCanvas(z.points[0]);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = "13px system-ui, sans-serif";
      ctx.fillText(zoneLabel(z), lx + 6, ly - 6);
      if (on) z.points.forEach((p) => {
        const [x, y] = toCanvas(p);
        ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI);
        ctx.fillStyle = "#fff"; ctx.fill(); ctx.strokeStyle = "#3b82f6"; ctx.stroke();
      });
    });
  }

  function mouse(e) {
    const r = canvas.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (e.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (e.clientY - r.top) / r.height));
    return [x, y];
  }
  function hit(z, e) {
    if (!z.points) return -1;
    const r = canvas.getBoundingClientRect();
    let best = -1, bestD = 10;
    z.points.forEach((p, k) => {
      const d = Math.hypot(p[0] * r.width - (e.clientX - r.left), p[1] * r.height - (e.clientY - r.top));
      if (d <= bestD) { best = k; bestD = d; }
    });
    return best;
  }
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("mousedown", (e) => {
    const z = zones[sel];
    if (!z) return;
    const k = hit(z, e);
    if (k >= 0 && (e.button === 2 || e.altKey)) {
      z.points.splice(k, 1);
      if (!z.points.length) z.points = null;
    } else if (k >= 0 && e.button === 0) {
      drag = k;
    } else if (e.button === 0) {
      z.points = z.points || [];
      if (z.kind === "line" && z.points.length >= 2) { status("a line has 2 points: drag them to move it"); return; }
      z.points.push(mouse(e));
    } else {
      return;
    }
    z.problem = null;
    changed();
    renderList(); draw();
  });
  canvas.addEventListener("mousemove", (e) => {
    if (drag === null) return;
    zones[sel].points[drag] = mouse(e);
    draw();
  });
  window.addEventListener("mouseup", () => { if (drag !== null) { drag = null; renderList(); } });

  $("#save").addEventListener("click", async () => {
    const unknown = zones.find((z) => z.pixel_points && !z.points);
    if (unknown) { status(`${zoneLabel(unknown)}: pixel polygon of unknown frame size; wait for a snapshot`, false); return; }
    const body = {
      camera: { points: zones[0].points, triggers: zones[0].triggers },
      rois: zones.filter((z) => z.kind === "roi").map((z) => ({ name: z.name, points: z.points, triggers: z.triggers, speaker_ip: z.speaker_ip || null })),
      lines: zones.filter((z) => z.kind === "line").map((z) => ({ name: z.name, points: z.points || [], triggers: z.triggers, direction: z.direction || null })),
      config_sha: sha,
    };
    status("saving…");
    showProblems([]);
    const r = await api("PUT", `/api/cameras/${cameraId}/rois`, body);
    if (r.ok) {
      status("Saved: " + r.data.message, true);
      showProblems(r.data.warnings);
      const keep = sel;
      zones = [];
      await loadModel();
      sel = Math.min(keep, zones.length - 1);
      renderList(); renderForm(); draw();
    } else {
      status((r.data && r.data.detail) || `error ${r.status}`, false);
      showProblems(r.data && r.data.problems);
    }
  });

  loadSnapshot();
}

// ------------------------------------------------------------------------------ pages

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "live") initLive();
  else if (page === "camera") initCamera();
  else if (page === "roi") initRoi();
  else if (page === "health") setTimeout(() => location.reload(), 10000);
});
