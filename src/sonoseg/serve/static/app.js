// sonoseg viewer: plain JS over the /api/v1 endpoints. The access token lives in sessionStorage
// only; images are fetched with it and shown through object URLs. Text from the server is always
// inserted with textContent (never as HTML).
"use strict";
const API = "/api/v1";
const $ = (id) => document.getElementById(id);
let me = null, current = null, pollTimer = null, objectUrls = [], measRows = [], measPage = 0;
const MEAS_PAGE = 10;  // measurement rows per page (a cine has one or more per frame)

function token() { return sessionStorage.getItem("sonoseg-token"); }

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {}, {Authorization: "Bearer " + token()});
  const r = await fetch(API + path, Object.assign({}, opts, {headers}));
  if (r.status === 401) { logout(); throw new Error("signed out"); }
  if (!r.ok) {
    let msg = r.status + "";
    try { msg = (await r.json()).detail || msg; } catch (e) { /* not JSON */ }
    throw new Error(typeof msg === "string" ? msg : JSON.stringify(msg));
  }
  return r;
}

async function blobUrl(path) {
  const url = URL.createObjectURL(await (await api(path)).blob());
  objectUrls.push(url);
  return url;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function fmt(v, digits = 1) { return (v === null || v === undefined) ? "–" : Number(v).toFixed(digits); }

// ---- sign in / out -------------------------------------------------------------------------
$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  const body = new URLSearchParams({username: $("username").value, password: $("password").value});
  const r = await fetch(API + "/auth/token", {method: "POST", body});
  if (!r.ok) {
    $("login-error").textContent = r.status === 429 ? "Too many attempts; wait a minute." : "Wrong user name or password.";
    return;
  }
  sessionStorage.setItem("sonoseg-token", (await r.json()).access_token);
  $("password").value = "";
  start();
});

function logout() {
  sessionStorage.removeItem("sonoseg-token");
  clearTimeout(pollTimer);
  $("app-view").hidden = true; $("logout").hidden = true; $("who").textContent = "";
  $("login-view").hidden = false;
}
$("logout").addEventListener("click", logout);

async function start() {
  if (!token()) return logout();
  me = await (await api("/me")).json();
  $("who").textContent = me.username + " (" + me.role + (me.classes ? ": " + me.classes.join(", ") : "") + ")";
  $("login-view").hidden = true; $("app-view").hidden = false; $("logout").hidden = false;
  $("upload-box").hidden = !(me.role === "operator" || me.role === "admin");
  loadWorklist();
}

// ---- upload --------------------------------------------------------------------------------
$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const files = $("upload-files").files;
  if (!files.length) return;
  const fd = new FormData();
  for (const f of files) fd.append("files", f, f.name);
  $("upload-msg").textContent = "uploading…";
  try {
    const r = await (await api("/jobs", {method: "POST", body: fd})).json();
    $("upload-msg").textContent = r.jobs.length + " job(s) queued";
    $("upload-files").value = "";
  } catch (e) {
    $("upload-msg").textContent = "refused: " + e.message;
  }
  loadWorklist();
});

// ---- worklist ------------------------------------------------------------------------------
async function loadWorklist() {
  clearTimeout(pollTimer);
  const q = new URLSearchParams({limit: "100"});
  if ($("filter-class").value) q.set("label", $("filter-class").value);
  if ($("filter-status").value) q.set("status", $("filter-status").value);
  let data;
  try { data = await (await api("/jobs?" + q)).json(); } catch (e) { return; }
  const tbody = $("jobs").querySelector("tbody");
  tbody.replaceChildren();
  for (const j of data.items) {
    const tr = el("tr");
    tr.dataset.job = j.id;
    tr.dataset.status = j.status;
    tr.append(el("td", j.id.slice(0, 8)), el("td", new Date(j.created_at).toLocaleString()),
              el("td", j.status, "status-" + j.status),
              el("td", j.in_scope === false ? "out of scope" : j.label || (j.status === "done" ? "unclassified" : "")),
              el("td", j.error || ""));
    if (j.result_id) {
      tr.className = "clickable";
      tr.addEventListener("click", () => openStudy(j.result_id));
    }
    tbody.append(tr);
  }
  if (data.items.some((j) => j.status === "queued" || j.status === "running")) pollTimer = setTimeout(loadWorklist, 1500);
}
$("refresh").addEventListener("click", loadWorklist);
$("filter-class").addEventListener("change", loadWorklist);
$("filter-status").addEventListener("change", loadWorklist);

// ---- study view ----------------------------------------------------------------------------
async function openStudy(resultId) {
  objectUrls.forEach(URL.revokeObjectURL); objectUrls = [];
  current = await (await api("/results/" + resultId)).json();
  $("study").hidden = false;
  $("study-id").textContent = current.study + " · result " + current.id;
  // out of scope: no verdict (no class, probability, measurement or mask), only the reason
  const outOfScope = current.in_scope === false;
  $("scope-note").hidden = !outOfScope;
  $("scope-reason").textContent = outOfScope ? current.scope_reason || "" : "";
  // class and probabilities (present when the model classifies)
  const cl = $("class-label");
  cl.textContent = outOfScope ? "out of scope: no class" : current.label || "not classified by this model";
  cl.className = current.label ? "class" : "class none";
  cl.dataset.label = current.label || "";
  // the malignancy operating point: shown whatever the arg-max class says
  const sf = $("suspicious-flag"), op = (current.summary || {}).suspicious_threshold;
  sf.hidden = current.suspicious !== true;
  sf.textContent = current.suspicious === true
    ? "Suspicious for " + (op ? op.class + " (P ≥ " + op.threshold.toFixed(2) + ")" : "malignancy") : "";
  // the mask is a tentative outline (docs/breast_v4/tentative_outline_rule.md): say so beside the class
  $("tentative-note").hidden = outOfScope || (current.summary || {}).outline !== "tentative";
  const pb = $("probabilities").querySelector("tbody");
  pb.replaceChildren();
  for (const [k, v] of Object.entries(current.probabilities || {})) {
    const tr = el("tr"); tr.append(el("td", k), el("td", (100 * v).toFixed(1) + " %")); pb.append(tr);
  }
  renderMeasurements(current);
  // the model's version names itself ("busi_default v3"): no "v" in front of it
  $("model-line").textContent = "model " + current.model.name + " · " + current.model.version +
    " · sha256 " + current.model.sha256.slice(0, 12) + "… · " + current.kind + ", " + current.frames + " frame(s)";
  $("seg-download").hidden = !current.files.seg;
  $("overlay-ctl").hidden = outOfScope;
  $("frame-mask").hidden = outOfScope || !$("overlay-toggle").checked;
  const frames = current.view_frames;
  $("frame-slider").max = String(Math.max(frames.length - 1, 0));
  $("frame-slider").value = "0";
  $("frame-ctl").hidden = frames.length < 2;
  await showFrame(0);
  $("study").scrollIntoView();
}

async function showFrame(i) {
  const f = current.view_frames[i];
  $("frame-label").textContent = (i + 1) + " / " + current.view_frames.length + " (frame " + f + ")";
  const base = "/results/" + current.id + "/frames/" + f + "/";
  if (current.in_scope === false) {  // no mask layer: the picture only
    $("frame-img").src = await blobUrl(base + "image");
  } else {
    const [img, mask] = await Promise.all([blobUrl(base + "image"), blobUrl(base + "mask")]);
    $("frame-img").src = img;
    $("frame-mask").src = mask;
  }
  followFrame(f);
}

// Measurements: one row per structure, or one "no structure" row per frame, in pages of MEAS_PAGE
// rows; the page follows the frame slider and the shown frame's rows are marked.
function renderMeasurements(r) {
  const m = r.measurements || {};
  const unit = m.unit || r.unit;
  const head = $("measurements").querySelector("thead tr").children;
  head[2].textContent = "Area (" + unit + "²)";
  head[3].textContent = "Max diameter (" + unit + ")";
  head[4].textContent = "Perpendicular (" + unit + ")";
  measRows = [];
  if (r.in_scope !== false) {
    const frames = m.frames || m.slices || [{index: 0, structures: m.structures || []}];
    for (const fr of frames) {
      const f = fr.index ?? fr.frame ?? fr.slice ?? 0;
      const ss = fr.structures || [];
      if (!ss.length && frames.length > 1) measRows.push({frame: f, cells: [String(f), "–", "no structure", "", ""]});
      for (const s of ss) {
        measRows.push({frame: f, cells: [String(f), String(s.component), fmt(s.area), fmt(s.max_diameter),
                                         fmt(s.perpendicular_diameter)]});
      }
    }
  }
  measPage = 0;
  drawMeasurements(null);
}

function measPages() { return Math.max(1, Math.ceil(measRows.length / MEAS_PAGE)); }

function drawMeasurements(frame) {
  const tb = $("measurements").querySelector("tbody");
  tb.replaceChildren();
  for (const row of measRows.slice(measPage * MEAS_PAGE, (measPage + 1) * MEAS_PAGE)) {
    const tr = el("tr", undefined, row.frame === frame ? "current" : "");
    tr.dataset.frame = String(row.frame);
    for (const c of row.cells) tr.append(el("td", c));
    tb.append(tr);
  }
  if (!measRows.length) {
    const tr = el("tr");
    tr.append(el("td", current && current.in_scope === false ? "not shown: out of scope" : "no structure found"));
    tb.append(tr);
  }
  $("meas-pager").hidden = measPages() < 2;
  $("meas-page").textContent = "page " + (measPage + 1) + " / " + measPages();
  $("meas-prev").disabled = measPage === 0;
  $("meas-next").disabled = measPage >= measPages() - 1;
}

function followFrame(frame) {
  const at = measRows.findIndex((r) => r.frame === frame);
  if (at >= 0) measPage = Math.floor(at / MEAS_PAGE);
  drawMeasurements(frame);
}

function currentFrame() { return current ? current.view_frames[Number($("frame-slider").value)] : null; }
$("meas-prev").addEventListener("click", () => { measPage = Math.max(0, measPage - 1); drawMeasurements(currentFrame()); });
$("meas-next").addEventListener("click", () => { measPage = Math.min(measPages() - 1, measPage + 1); drawMeasurements(currentFrame()); });

$("frame-slider").addEventListener("input", (ev) => showFrame(Number(ev.target.value)));
$("overlay-toggle").addEventListener("change", (ev) => {
  $("frame-mask").hidden = !ev.target.checked || (current && current.in_scope === false);
});
$("overlay-opacity").addEventListener("input", (ev) => { $("frame-mask").style.opacity = String(ev.target.value / 100); });
$("close-study").addEventListener("click", () => { $("study").hidden = true; loadWorklist(); });
$("seg-download").addEventListener("click", async () => {
  const a = el("a");
  a.href = await blobUrl("/results/" + current.id + "/seg");
  a.download = "result-" + current.id + "-seg.dcm";
  document.body.append(a); a.click(); a.remove();
});

start();
