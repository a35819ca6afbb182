// The results browser: one benchmark of a harness run folder at a time, items with their per-item scores.
"use strict";
const $ = (id) => document.getElementById(id);
const PAGE = 50;
let offset = 0;

async function api(url, options) {
  const res = await fetch(url, options);
  let data = null;
  try { data = await res.json(); } catch (e) { data = { detail: res.statusText }; }
  if (!res.ok) throw new Error((data && data.detail) || `HTTP ${res.status}`);
  return data;
}

function text(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "string" ? v : JSON.stringify(v);
}

function cell(row, content, cls) {
  const td = row.insertCell();
  if (cls) td.className = cls;
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  return td;
}

function pre(v) { const p = document.createElement("pre"); p.textContent = text(v); return p; }

async function openItem(bench, index) {
  const info = await api(`/api/results/${encodeURIComponent(bench)}/items/${index}/open`, { method: "POST" });
  window.location.href = `/?image=${info.id}`;
}

async function show() {
  const bench = $("bench").value;
  if (!bench) return;
  document.body.dataset.state = "loading";
  $("status").textContent = `scoring ${bench} ...`;
  try {
    const wrong = $("wrong-only").checked;
    const data = await api(`/api/results/${encodeURIComponent(bench)}?wrong=${wrong}&offset=${offset}&limit=${PAGE}`);
    const metrics = Object.entries(data.metrics || {}).map(([k, v]) => `${k} ${v === null ? "n/a" :
      Number(v).toFixed(2)}`).join(", ");
    $("bench-summary").textContent = `${data.title} (rule ${data.rule}): ${data.n} items, ${data.n_wrong} wrong` +
      (data.per_item ? "" : " (this benchmark has no per-item score)") + (metrics ? `; ${metrics}` : "") +
      `; showing ${data.items.length ? offset + 1 : 0}-${offset + data.items.length} of ${data.n_shown}`;
    const tbody = $("items").querySelector("tbody");
    tbody.innerHTML = "";
    for (const it of data.items) {
      const row = tbody.insertRow();
      row.className = "item-row " + (it.correct === false ? "wrong" : it.correct === true ? "right" : "unscored");
      row.dataset.correct = String(it.correct);
      row.dataset.id = it.id;
      const img = document.createElement("img");
      img.src = `/api/results/${encodeURIComponent(bench)}/items/${it.index}/image.png?side=160`;
      img.alt = it.image; img.title = `${it.image} (click: open in the viewer)`;
      img.style.cursor = "pointer";
      img.addEventListener("click", () => openItem(bench, it.index));
      cell(row, img);
      cell(row, it.id);
      cell(row, pre(it.prompt));
      cell(row, pre(it.answer === null ? "(no answer)" : it.answer));
      const truth = it.target && typeof it.target === "object" && "answer" in it.target ? it.target.answer : it.target;
      cell(row, pre(truth)).title = text(it.target);
      const verdict = it.correct === null ? "" : it.correct ? "right" : "wrong";
      cell(row, `${verdict} ${it.score === null ? "" : `${it.metric} ${Number(it.score).toFixed(3)}`}`.trim(),
           "verdict");
    }
    $("prev").disabled = offset === 0;
    $("next").disabled = offset + PAGE >= data.n_shown;
    $("status").textContent = "";
    document.body.dataset.state = "done";
  } catch (err) {
    $("status").textContent = err.message;
    $("status").className = "error";
    document.body.dataset.state = "error";
  }
}

async function init() {
  $("bench").addEventListener("change", () => { offset = 0; show(); });
  $("wrong-only").addEventListener("change", () => { offset = 0; show(); });
  $("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); show(); });
  $("next").addEventListener("click", () => { offset += PAGE; show(); });
  try {
    const data = await api("/api/results");
    $("folder").textContent = data.folder || "(no --results folder given)";
    for (const b of data.benchmarks) $("bench").add(new Option(`${b.bench} (${b.answers} answers)`, b.bench));
    if (data.benchmarks.length) await show(); else document.body.dataset.state = "done";
  } catch (err) { $("status").textContent = err.message; document.body.dataset.state = "error"; }
}
init();
