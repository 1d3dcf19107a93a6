// faceatlas web page: vanilla JS over the REST API. The API key lives in sessionStorage (this tab only).
"use strict";

const store = window.sessionStorage;
const $ = (id) => document.getElementById(id);

function setStatus(el, text, kind) {
  el.textContent = text;
  el.classList.remove("ok", "bad");
  if (kind) el.classList.add(kind);
}

function currentKey() { return store.getItem("faceatlas.key") || ""; }
function currentCollection() { return store.getItem("faceatlas.collection") || "default"; }
function collectionPath() { return "/v1/collections/" + encodeURIComponent(currentCollection()); }

class ApiError extends Error {
  constructor(status, code, message, requestId, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details || {};
  }
  describe() { return `${this.message} [${this.code}]`; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  const key = currentKey();
  if (key) headers["Authorization"] = "Bearer " + key;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: payload });
  } catch (err) {
    throw new ApiError(0, "network", "cannot reach the server", null);
  }
  let data = null;
  try { data = await resp.json(); } catch (err) { data = null; }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(resp.status, e.code || "http_" + resp.status, e.message || resp.statusText, e.request_id || null,
                       e.details);
  }
  return data;
}

function busy(button, on) { button.disabled = on; }

// -- connect ---------------------------------------------------------------------------------------------------

async function connect(event) {
  if (event) event.preventDefault();
  const key = $("api-key").value.trim() || currentKey();
  const collection = $("collection").value.trim() || "default";
  if (!key) { setStatus($("connect-status"), "Enter an API key.", "bad"); return; }
  store.setItem("faceatlas.key", key);
  store.setItem("faceatlas.collection", collection);
  $("api-key").value = "";
  $("api-key").placeholder = "key saved for this tab";
  busy($("connect"), true);
  try {
    const me = await api("GET", "/v1/whoami");
    const colls = me.collections ? me.collections.join(", ") : "all collections";
    setStatus($("connect-status"), `Connected: key ${me.key_id} (${me.scopes.join(", ")}; ${colls}). Collection “${collection}”.`, "ok");
    await loadPeople();
  } catch (err) {
    setStatus($("connect-status"), "Not connected: " + err.describe(), "bad");
  } finally {
    busy($("connect"), false);
  }
}

function forget() {
  store.removeItem("faceatlas.key");
  $("api-key").value = "";
  $("api-key").placeholder = "fak_…";
  setStatus($("connect-status"), "Key forgotten.", null);
}

// -- enrol: see enrol.js (face picking, rejections in plain words) ------------------------------------------------

function clearIdentify() {
  const canvas = $("identify-canvas");
  canvas.width = 0;
  canvas.height = 0;
  delete canvas.dataset.imageWidth;
  delete canvas.dataset.imageHeight;
  $("identify-results").replaceChildren();
}

// -- identify --------------------------------------------------------------------------------------------------

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve({ img, url });
    img.onerror = () => { URL.revokeObjectURL(url); reject(new Error("the browser cannot show this image")); };
    img.src = url;
  });
}

function labelOf(face) {
  if (face.person === null) return "unknown";
  return face.name || face.person;
}

function draw(img, result) {
  const canvas = $("identify-canvas");
  const w = result.image.width, h = result.image.height;
  // small photos are drawn larger (up to 2x) so that boxes and names stay readable
  const scale = Math.min(2, Math.max(1, 520 / w));
  canvas.width = Math.round(w * scale);
  canvas.height = Math.round(h * scale);
  canvas.dataset.imageWidth = String(w);
  canvas.dataset.imageHeight = String(h);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const line = Math.max(2, Math.round(canvas.width / 200));
  const size = Math.max(14, Math.round(canvas.width / 26));
  ctx.font = `bold ${size}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  for (const face of result.faces) {
    const [x1, y1, x2, y2] = face.box.map((v) => v * scale);
    const known = face.person !== null;
    const color = known ? "#1a7f37" : "#c62828";
    ctx.lineWidth = line;
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    // an unknown face gets no number: the best score belongs to someone else
    const text = known ? `${labelOf(face)} ${face.score.toFixed(2)}` : "unknown";
    const tw = ctx.measureText(text).width + size * 0.5;
    const th = size * 1.3;
    const ty = y1 - th >= 0 ? y1 - th : Math.min(y2, canvas.height - th);
    const tx = Math.min(Math.max(0, x1), Math.max(0, canvas.width - tw));
    ctx.fillStyle = color;
    ctx.fillRect(tx, ty, tw, th);
    ctx.fillStyle = "#ffffff";
    ctx.fillText(text, tx + size * 0.25, ty + size * 0.15);
  }
}

function listResults(result) {
  const list = $("identify-results");
  list.replaceChildren();
  for (const face of result.faces) {
    const li = document.createElement("li");
    const who = document.createElement("span");
    who.className = face.person === null ? "unknown" : "who";
    who.textContent = labelOf(face);
    const meta = document.createElement("span");
    meta.className = "meta";
    if (face.person !== null) {
      meta.textContent = ` — score ${face.score.toFixed(3)}, threshold ${face.threshold.toFixed(3)}`;
    } else {
      meta.textContent = face.candidates.length
        ? ` — no enrolled person reaches the threshold ${face.threshold.toFixed(3)}`
        : " — no one is enrolled yet";
    }
    li.append(who, meta);
    const est = analysisText(face);
    if (est) {
      const line = document.createElement("span");
      line.className = "analysis";
      line.textContent = est;
      li.append(line);
    }
    list.append(li);
  }
}

// face-analysis estimates of a face (only present when "Analyse" was ticked), as one short line
function analysisText(face) {
  const parts = [];
  if (face.age) parts.push(`age ≈ ${Math.round(face.age.years)}`);
  if (face.gender) parts.push(face.gender.label);
  if (face.expression) parts.push(face.expression.label);
  if (face.pose) parts.push(`yaw ${face.pose.yaw > 0 ? "+" : ""}${Math.round(face.pose.yaw)}°`);
  if (face.eyes) parts.push(face.eyes.open ? "eyes open" : "eyes closed?");
  if (face.liveness) parts.push(face.liveness.live ? `live ${face.liveness.score.toFixed(2)}` : `possible replay ${face.liveness.score.toFixed(2)}`);
  return parts.length ? "Estimates: " + parts.join(" · ") : "";
}

async function identify(event) {
  event.preventDefault();
  const file = $("identify-file").files[0];
  const out = $("identify-status");
  if (!file) { setStatus(out, "Choose a photo.", "bad"); return; }
  const form = new FormData();
  form.append("image", file, file.name);
  if ($("identify-analyse").checked) form.append("heads", "age,gender,expression,pose,eyes,liveness");
  busy($("identify-btn"), true);
  setStatus(out, "Identifying…", null);
  clearIdentify();
  try {
    const [result, shown] = await Promise.all([api("POST", collectionPath() + "/identify", form), loadImage(file)]);
    draw(shown.img, result);
    URL.revokeObjectURL(shown.url);
    listResults(result);
    const n = result.faces.length;
    const known = result.faces.filter((f) => f.person !== null).length;
    setStatus(out, n ? `${n} face(s), ${known} recognised (model ${result.model_id}).` : "No face found in this photo.", n ? "ok" : null);
  } catch (err) {
    clearIdentify();
    setStatus(out, "Identification failed: " + (err.describe ? humanError(err) : err.message), "bad");
  } finally {
    busy($("identify-btn"), false);
  }
}

// -- people ----------------------------------------------------------------------------------------------------

let peopleListing = 0;  // only the newest listing renders: an older reply arriving late must not overwrite it

async function loadPeople() {
  const body = $("people-body");
  const out = $("people-status");
  if (!currentKey()) return;
  const mine = ++peopleListing;
  try {
    const r = await api("GET", collectionPath() + "/persons?limit=1000");
    if (mine !== peopleListing) return;
    forgetThumbs();
    body.replaceChildren();
    if (!r.persons.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 4;
      td.className = "muted";
      td.textContent = "No one enrolled yet.";
      tr.append(td);
      body.append(tr);
    }
    for (const p of r.persons) {
      const tr = document.createElement("tr");
      tr.dataset.person = p.external_id;
      for (const value of [p.external_id, p.name || "", String(p.samples)]) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.append(td);
      }
      const td = document.createElement("td");
      const del = document.createElement("button");
      del.type = "button";
      del.className = "danger";
      del.textContent = "Delete";
      del.setAttribute("aria-label", "Delete " + p.external_id);
      del.addEventListener("click", () => removePerson(p.external_id, del));
      td.append(del);
      tr.append(td);
      body.append(tr);
      showThumbs(p, tr).catch(() => {});
    }
    setStatus(out, `${r.persons.length} person(s) in “${currentCollection()}”.`, null);
  } catch (err) {
    if (mine !== peopleListing) return;
    if (err.code === "not_found") {
      body.replaceChildren();
      setStatus(out, `Collection “${currentCollection()}” is empty; enrol someone to create it.`, null);
    } else {
      setStatus(out, "Cannot list people: " + err.describe(), "bad");
    }
  }
}

async function removePerson(person, button) {
  if (!window.confirm(`Delete ${person} and every enrolled face of this person?`)) return;
  busy(button, true);
  try {
    const r = await api("DELETE", collectionPath() + "/persons/" + encodeURIComponent(person));
    await loadPeople();
    clearIdentify();
    setStatus($("identify-status"), "Earlier results were cleared because the people changed.", null);
    setStatus($("people-status"), `Deleted ${person} (${r.deleted.faces} face(s)).`, "ok");
  } catch (err) {
    setStatus($("people-status"), "Delete failed: " + err.describe(), "bad");
    busy(button, false);
  }
}

// -- start -----------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("collection").value = currentCollection();
  $("connect-form").addEventListener("submit", connect);
  $("forget").addEventListener("click", forget);
  $("enrol-form").addEventListener("submit", enrol);
  setupExtras();
  $("identify-form").addEventListener("submit", identify);
  $("refresh-people").addEventListener("click", loadPeople);
  if (currentKey()) {
    $("api-key").placeholder = "key saved for this tab";
    connect(null);
  }
});
