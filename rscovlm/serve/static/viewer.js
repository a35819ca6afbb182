// The viewer page: upload or pick an image, show it as Leaflet tiles (CRS.Simple, see rscovlm/serve/images.py),
// run a task through /api/run and draw the result in image pixels.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { image: null, map: null, tiles: null, overlay: null, scale: 1 };
const TEXT_LABELS = {
  "detect": "Categories (comma-separated; empty: the server's vocabulary)",
  "zoom-vqa": "Question", "ground": "Object to find", "vqa": "Question",
  "classify": "Classes (comma-separated)",
};

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(url, options) {
  const res = await fetch(url, options);
  let data = null;
  try { data = await res.json(); } catch (e) { data = { detail: res.statusText }; }
  if (!res.ok) throw new Error((data && data.detail) || `HTTP ${res.status}`);
  return data;
}

function latLng(x, y) { return L.latLng(-y / state.scale, x / state.scale); }

function showImage(info) {
  state.image = info;
  state.scale = Math.pow(2, info.native_zoom);
  if (!state.map) {
    state.map = L.map("map", { crs: L.CRS.Simple, minZoom: -4, attributionControl: false });
  }
  if (state.tiles) state.map.removeLayer(state.tiles);
  if (state.overlay) state.map.removeLayer(state.overlay);
  const bounds = L.latLngBounds(latLng(0, info.height), latLng(info.width, 0));
  state.tiles = L.tileLayer(`/api/images/${info.id}/tiles/{z}/{x}/{y}.png`, {
    tileSize: info.tile, noWrap: true, bounds: bounds, minNativeZoom: 0, maxNativeZoom: info.native_zoom,
    minZoom: -4, maxZoom: info.native_zoom + 3,
  }).addTo(state.map);
  state.map.setMaxZoom(info.native_zoom + 3);
  state.map.fitBounds(bounds);
  state.overlay = L.layerGroup().addTo(state.map);
  $("image-info").textContent = `${info.name}: ${info.width} x ${info.height} px` +
    (info.georeferenced ? " (georeferenced)" : "") + `, read ${info.access === "memory" ? "whole" : "by windows"}`;
  $("run").disabled = false;
  $("result").hidden = true;
  document.body.dataset.state = "image";
  document.body.dataset.image = info.id;
}

async function upload(file) {
  setStatus(`uploading ${file.name} (${(file.size / 1048576).toFixed(1)} MiB) ...`);
  document.body.dataset.state = "uploading";
  try {
    const info = await api(`/api/upload?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
    showImage(info);
    setStatus(`uploaded ${info.name}`);
    loadPicks();
  } catch (err) {
    document.body.dataset.state = "error";
    setStatus(err.message, true);
  }
}

async function loadPicks() {
  const data = await api("/api/images");
  const sel = $("pick");
  sel.innerHTML = '<option value="">-</option>';
  for (const im of data.images) sel.add(new Option(`${im.name} (open)`, `id:${im.id}`));
  for (const name of data.folder) sel.add(new Option(name, `file:${name}`));
}

async function pick(value) {
  if (!value) return;
  try {
    const info = value.startsWith("id:") ? await api(`/api/images/${value.slice(3)}`)
      : await api("/api/images/pick", { method: "POST", headers: { "Content-Type": "application/json" },
                                        body: JSON.stringify({ name: value.slice(5) }) });
    showImage(info);
    setStatus(`showing ${info.name}`);
  } catch (err) { setStatus(err.message, true); }
}

function quadLatLngs(q) { return [0, 2, 4, 6].map((i) => latLng(q[i], q[i + 1])); }
function rectLatLngs(b) { return [latLng(b[0], b[1]), latLng(b[2], b[3])]; }
function fmt(v, d) { return v === null || v === undefined ? "n/a" : Number(v).toFixed(d); }

function draw(result) {
  state.overlay.clearLayers();
  const tbody = $("objects").querySelector("tbody");
  tbody.innerHTML = "";
  const objects = result.objects || [];
  objects.forEach((o, i) => {
    const text = `${o.label} ${fmt(o.score, 2)}`;
    L.polygon(quadLatLngs(o.quad), { className: "det-box", color: "#ff0", weight: 2, fill: false })
      .bindTooltip(text, { permanent: true, direction: "top", className: "det-label" }).addTo(state.overlay);
    const row = tbody.insertRow();
    row.className = "object-row";
    row.insertCell().textContent = i + 1;
    row.insertCell().textContent = o.label;
    row.insertCell().textContent = fmt(o.score, 4);
  });
  $("objects").hidden = !objects.length && result.task !== "detect";
  (result.boxes || []).forEach((b) => {
    L.rectangle(rectLatLngs(b), { className: "ground-box", color: "#0ff", weight: 2, fill: false }).addTo(state.overlay);
  });
  let answer = result.answer;
  if (result.task === "detect") answer = `${objects.length} objects` + (result.mode === "split" ?
    ` (split into ${result.patches} patches, merged)` : "");
  if (result.task === "ground") answer = `${(result.boxes || []).length} boxes`;
  $("answer").textContent = answer === null || answer === undefined ? "" : answer;
  const zoom = result.zoom;
  $("zoom").hidden = !zoom;
  if (zoom) {
    const calls = zoom.calls || [];
    let info = `status ${zoom.status}, ${zoom.passes} passes`;
    calls.forEach((c) => {
      const r = c.region;
      L.rectangle(rectLatLngs(r), { className: "zoom-roi", color: "#f0a", weight: 3, fill: true, fillOpacity: 0.08 })
        .bindTooltip("region of interest", { permanent: true, direction: "top" }).addTo(state.overlay);
      info += `; region ${r.map((v) => Math.round(v)).join(", ")} (original px), read ${c.read_size ?
        c.read_size.join(" x ") : "n/a"}, model saw ${c.model_size.join(" x ")}`;
      $("crop").src = `/api/images/${state.image.id}/region.png?x0=${r[0]}&y0=${r[1]}&x1=${r[2]}&y1=${r[3]}&side=384`;
    });
    if (!calls.length) $("crop").removeAttribute("src");
    $("zoom-info").textContent = info;
  }
  const t = result.timing;
  $("timing").textContent = `waited ${fmt(t.waited_s, 2)} s in the queue, model ${fmt(t.run_s, 2)} s, total ` +
    `${fmt(t.total_s, 2)} s; ${result.n_passes} model answers`;
  const passes = result.passes || [];
  const more = result.n_passes > passes.length ? `\n(${result.n_passes - passes.length} more not shown)` : "";
  $("prompt").textContent = passes.map((p, i) => `--- answer ${i + 1} ---\n${p.prompt}`).join("\n\n") + more;
  $("raw").textContent = passes.map((p, i) => `--- answer ${i + 1} (${p.finish_reason}, ${p.n_new_tokens} tokens, ` +
    `${fmt(p.seconds, 2)} s) ---\n${p.raw}`).join("\n\n") + more;
  $("result").hidden = false;
}

async function run() {
  if (!state.image) return;
  const task = $("task").value;
  const text = $("text").value;
  const body = { image: state.image.id, task: task, text: text, category: $("category").value };
  if (task === "classify") body.classes = text;
  if (task === "detect") body.categories = text;
  $("run").disabled = true;
  document.body.dataset.state = "running";
  setStatus(`running ${task} ...`);
  try {
    const result = await api("/api/run", { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify(body) });
    window.lastResult = result;
    draw(result);
    setStatus(`${task} done`);
    document.body.dataset.state = "done";
  } catch (err) {
    setStatus(err.message, true);
    document.body.dataset.state = "error";
  } finally {
    $("run").disabled = false;
  }
}

function taskChanged() {
  const task = $("task").value;
  $("text-label").firstChild.textContent = TEXT_LABELS[task] + " ";
  $("category-label").hidden = task !== "zoom-vqa";
}

async function init() {
  $("file").addEventListener("change", (e) => { if (e.target.files.length) upload(e.target.files[0]); });
  $("pick").addEventListener("change", (e) => pick(e.target.value));
  $("task").addEventListener("change", taskChanged);
  $("run").addEventListener("click", run);
  taskChanged();
  try {
    const h = await api("/api/health");
    $("model").textContent = `${h.model} (${h.backend}); uploads up to ${h.limits.max_upload_mb} MiB and ` +
      `${h.limits.max_megapixels} megapixels`;
    await loadPicks();
    const wanted = new URLSearchParams(location.search).get("image");
    if (wanted) showImage(await api(`/api/images/${wanted}`));
    if (document.body.dataset.state === "loading") document.body.dataset.state = "ready";
  } catch (err) { setStatus(err.message, true); }
}
init();
