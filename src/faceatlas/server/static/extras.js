// faceatlas web page, part 2: enrolment with face picking, plain-word rejections, camera, drag-and-drop,
// 1:1 comparison and the "why this result" occlusion maps. Uses the helpers of app.js ($, api, setStatus, busy).
"use strict";

// -- rejections in plain words ---------------------------------------------------------------------------------

const REASONS = {
  no_face: "no face was found in it",
  multiple_faces: "it shows several faces — choose one photo per person, or pick the face on the photo",
  face_too_small: "the face is too small; use a closer photo",
  low_detection_score: "the face is hard to make out (blurred, dark or partly hidden)",
  low_quality: "the face is too blurred, dark or turned away",
  duplicate_image: "this exact photo (or face) is already enrolled",
  pose_out_of_range: "the head is turned too far; use a photo facing the camera",
  eyes_closed: "the eyes look closed",
  spoof_suspected: "it looks like a photo of a photo or of a screen",
  too_many_faces: "it has more faces than the server accepts",
  invalid_face_index: "that face is not in the photo",
  image_unsupported: "the file is not an image the server can read (use JPEG, PNG or WebP)",
  image_corrupt: "the image file is damaged or cut short",
  image_empty: "the file is empty",
  image_too_large: "the image is too large",
};

function reasonOf(code, fallback) { return REASONS[code] || fallback || code; }

function humanError(err) {
  const rejected = (err.details && err.details.rejected) || [];
  if (rejected.length) return rejected.map((r) => `${r.image}: ${reasonOf(r.code, r.message)}`).join("; ");
  return `${reasonOf(err.code, err.message)} [${err.code}]`;
}

function showRejections(el, rejected) {
  const list = document.createElement("ul");
  list.className = "rejections";
  for (const r of rejected) {
    const li = document.createElement("li");
    li.className = "bad";
    li.textContent = `${r.image} was not used: ${reasonOf(r.code, r.message)}.`;
    list.append(li);
  }
  el.append(list);
}

// -- enrol (with face picking on group photos) -----------------------------------------------------------------

let pickState = null;

async function enrol(event) {
  event.preventDefault();
  const person = $("enrol-person").value.trim();
  const files = Array.from($("enrol-files").files);
  const out = $("enrol-result");
  hidePicker();
  if (!person || !files.length) { setStatus(out, "Give a person id and at least one photo.", "bad"); return; }
  busy($("enrol-btn"), true);
  try {
    if (files.length === 1) {
      setStatus(out, "Looking for faces…", null);
      const form = new FormData();
      form.append("image", files[0], files[0].name);
      const det = await api("POST", "/v1/detect", form);
      if (det.faces.length > 1) { await showPicker(files[0], det, person); return; }
    }
    await sendEnrol(files, null);
  } catch (err) {
    setStatus(out, "Not enrolled: " + humanError(err) + ".", "bad");
  } finally {
    busy($("enrol-btn"), false);
  }
}

async function sendEnrol(files, faceIndex) {
  const person = $("enrol-person").value.trim();
  const out = $("enrol-result");
  const form = new FormData();
  form.append("person", person);
  const name = $("enrol-name").value.trim();
  if (name) form.append("name", name);
  for (const f of files) form.append("images", f, f.name);
  if (faceIndex !== null) form.append("face_index", String(faceIndex));
  if ($("enrol-keep").checked) form.append("keep_crops", "true");
  setStatus(out, `Enrolling ${person}…`, null);
  try {
    const r = await api("POST", collectionPath() + "/enroll", form);
    const which = faceIndex !== null ? ` (face ${faceIndex + 1} of the photo)` : "";
    setStatus(out, `Enrolled ${r.person}${which}: ${r.accepted.length} photo(s) accepted` +
      (r.rejected.length ? `, ${r.rejected.length} not used:` : "."), "ok");
    if (r.rejected.length) showRejections(out, r.rejected);
    hidePicker();
    $("enrol-form").reset();
    await loadPeople();
  } catch (err) {
    setStatus(out, "Not enrolled: " + humanError(err) + ".", "bad");
  }
}

function hidePicker() {
  $("enrol-picker").hidden = true;
  $("enrol-faces").replaceChildren();
  pickState = null;
}

async function showPicker(file, det, person) {
  const shown = await loadImage(file);
  const canvas = $("enrol-canvas");
  const w = det.image.width, h = det.image.height;
  const scale = Math.min(2, 560 / w);
  canvas.width = Math.round(w * scale);
  canvas.height = Math.round(h * scale);
  pickState = { file, faces: det.faces, scale, img: shown.img };
  drawPicker(-1);
  URL.revokeObjectURL(shown.url);
  const group = $("enrol-faces");
  group.replaceChildren();
  det.faces.forEach((face, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "secondary";
    b.dataset.faceIndex = String(i);
    b.textContent = `Face ${i + 1}`;
    b.setAttribute("aria-label", `Enrol face ${i + 1} as ${person}`);
    b.addEventListener("click", () => sendEnrol([file], i));
    b.addEventListener("focus", () => drawPicker(i));
    b.addEventListener("mouseenter", () => drawPicker(i));
    group.append(b);
  });
  $("enrol-picker").hidden = false;
  setStatus($("enrol-result"), `${det.faces.length} faces in this photo: click the one that is ${person}.`, null);
}

function drawPicker(active) {
  if (!pickState) return;
  const { faces, scale, img } = pickState;
  const canvas = $("enrol-canvas");
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const size = Math.max(14, Math.round(canvas.width / 30));
  ctx.font = `bold ${size}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box.map((v) => v * scale);
    const color = i === active ? "#0b4fc2" : "#ffb000";
    ctx.lineWidth = i === active ? 4 : 3;
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = String(i + 1);
    const tw = ctx.measureText(label).width + size * 0.5;
    ctx.fillStyle = color;
    ctx.fillRect(x1, Math.max(0, y1 - size * 1.3), tw, size * 1.3);
    ctx.fillStyle = i === active ? "#ffffff" : "#1d2330";
    ctx.fillText(label, x1 + size * 0.25, Math.max(0, y1 - size * 1.3) + size * 0.15);
  });
}

function pickAt(event) {
  if (!pickState) return;
  const canvas = $("enrol-canvas");
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * (canvas.width / rect.width) / pickState.scale;
  const y = (event.clientY - rect.top) * (canvas.height / rect.height) / pickState.scale;
  // the smallest box containing the point (nested boxes: the inner one was meant)
  let best = -1, area = Infinity;
  pickState.faces.forEach((f, i) => {
    const [x1, y1, x2, y2] = f.box;
    const a = (x2 - x1) * (y2 - y1);
    if (x >= x1 && x <= x2 && y >= y1 && y <= y2 && a < area) { best = i; area = a; }
  });
  if (best >= 0) sendEnrol([pickState.file], best);
}

// -- drag and drop ---------------------------------------------------------------------------------------------

function setFiles(input, files) {
  const dt = new DataTransfer();
  for (const f of files) if (f.type.startsWith("image/")) dt.items.add(f);
  if (!input.multiple) while (dt.items.length > 1) dt.items.remove(1);
  input.files = dt.files;
  input.dispatchEvent(new Event("change", { bubbles: true }));
}

function setupDrop(zone) {
  const input = $(zone.dataset.target);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) setFiles(input, Array.from(e.dataTransfer.files));
  });
}

// -- camera ----------------------------------------------------------------------------------------------------

let camera = { stream: null, target: null };

async function openCamera(targetId) {
  const dialog = $("camera");
  camera.target = targetId;
  setStatus($("camera-status"), "Starting the camera…", null);
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus($(targetId === "enrol-files" ? "enrol-result" : "identify-status"),
      "This browser gives no camera here (a camera needs https or localhost).", "bad");
    return;
  }
  dialog.showModal();
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    const video = $("camera-video");
    video.onplaying = () => { video.dataset.playing = "1"; };
    video.srcObject = camera.stream;
    setStatus($("camera-status"), "Look at the camera, then press Take photo.", null);
    $("camera-take").focus();
  } catch (err) {
    setStatus($("camera-status"), "The camera is not available: " + err.message, "bad");
  }
}

function closeCamera() {
  if (camera.stream) camera.stream.getTracks().forEach((t) => t.stop());
  camera.stream = null;
  $("camera-video").srcObject = null;
  delete $("camera-video").dataset.playing;
  if ($("camera").open) $("camera").close();
}

function takePhoto() {
  const video = $("camera-video");
  if (!camera.stream || !video.videoWidth) return;
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  const target = $(camera.target);
  canvas.toBlob((blob) => {
    const file = new File([blob], `camera-${Date.now()}.jpg`, { type: "image/jpeg" });
    setFiles(target, [file]);
    closeCamera();
    const out = camera.target === "enrol-files" ? $("enrol-result") : $("identify-status");
    setStatus(out, "Photo taken from the camera.", null);
    if (camera.target === "identify-file") $("identify-form").requestSubmit();
    else $("enrol-btn").focus();
  }, "image/jpeg", 0.92);
}

// -- 1:1 comparison and "why this result" ----------------------------------------------------------------------

function preview(inputId, imgId) {
  const input = $(inputId), img = $(imgId);
  input.addEventListener("change", () => {
    if (img.src) URL.revokeObjectURL(img.src);
    const f = input.files[0];
    img.hidden = !f;
    if (f) img.src = URL.createObjectURL(f);
    $("verify-result").replaceChildren();
    $("explain-view").hidden = true;
    $("explain-btn").disabled = true;
  });
}

function pairForm() {
  const a = $("verify-a").files[0], b = $("verify-b").files[0];
  if (!a || !b) return null;
  const form = new FormData();
  form.append("image_a", a, a.name);
  form.append("image_b", b, b.name);
  return form;
}

async function verifyPair(event) {
  event.preventDefault();
  const out = $("verify-result");
  const form = pairForm();
  $("explain-view").hidden = true;
  if (!form) { out.replaceChildren(span("bad", "Choose two photos.")); return; }
  busy($("verify-btn"), true);
  out.replaceChildren(span(null, "Comparing…"));
  try {
    const r = await api("POST", "/v1/verify", form);
    out.replaceChildren(
      span(r.same ? "same" : "different", r.same ? "Same person" : "Different people"),
      span(null, ` — score ${r.score.toFixed(3)} ${r.same ? "≥" : "<"} threshold ${r.threshold.toFixed(3)}` +
        (r.far !== null && r.far !== undefined ? ` (estimated false-accept rate ${r.far.toExponential(1)})` : "") + "."),
    );
    $("explain-btn").disabled = false;
  } catch (err) {
    out.replaceChildren(span("bad", "Cannot compare: " + humanError(err) + "."));
    $("explain-btn").disabled = true;
  } finally {
    busy($("verify-btn"), false);
  }
}

function span(cls, text) {
  const s = document.createElement("span");
  if (cls) s.className = cls;
  s.textContent = text;
  return s;
}

async function explainPair() {
  const form = pairForm();
  if (!form) return;
  busy($("explain-btn"), true);
  $("explain-view").hidden = false;
  setStatus($("explain-status"), "Greying out each patch of both faces and measuring the score…", null);
  try {
    const r = await api("POST", "/v1/explain", form);
    await Promise.all([paintMap($("explain-a"), r.crop_a_png, r.map_a, r.max_drop),
                       paintMap($("explain-b"), r.crop_b_png, r.map_b, r.max_drop)]);
    $("explain-a").setAttribute("aria-label", describeMap(r.map_a, "first"));
    $("explain-b").setAttribute("aria-label", describeMap(r.map_b, "second"));
    setStatus($("explain-status"), `Score ${r.score.toFixed(3)}; the most important patch lowers it by ` +
      `${r.max_drop.toFixed(3)} when hidden (${r.grid}×${r.grid} patches, ${Math.round(r.ms)} ms).`, "ok");
  } catch (err) {
    setStatus($("explain-status"), "Cannot explain: " + humanError(err) + ".", "bad");
  } finally {
    busy($("explain-btn"), false);
  }
}

function describeMap(map, which) {
  const g = map.length;
  let best = [0, 0];
  map.forEach((row, i) => row.forEach((v, j) => { if (v > map[best[0]][best[1]]) best = [i, j]; }));
  const vert = ["top", "middle", "bottom"][Math.min(2, Math.floor(3 * best[0] / g))];
  const horiz = ["left", "centre", "right"][Math.min(2, Math.floor(3 * best[1] / g))];
  return `${which} face: the match relies most on the ${vert} ${horiz} of the face`;
}

function paintMap(canvas, png, map, maxDrop) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      const ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      const g = map.length, cell = canvas.width / g;
      const top = Math.max(maxDrop, 1e-6);
      for (let i = 0; i < g; i++) {
        for (let j = 0; j < g; j++) {
          const v = Math.max(0, map[i][j]) / top;
          if (v <= 0.02) continue;
          ctx.fillStyle = `rgba(230, 20, 20, ${(0.65 * v).toFixed(3)})`;
          ctx.fillRect(j * cell, i * cell, cell, cell);
        }
      }
      canvas.dataset.painted = "1";
      resolve();
    };
    img.src = "data:image/png;base64," + png;
  });
}

// -- wiring ----------------------------------------------------------------------------------------------------

function setupExtras() {
  document.querySelectorAll(".drop").forEach(setupDrop);
  document.querySelectorAll(".camera-btn").forEach((b) => b.addEventListener("click", () => openCamera(b.dataset.target)));
  $("camera-take").addEventListener("click", takePhoto);
  $("camera-close").addEventListener("click", closeCamera);
  $("camera").addEventListener("close", closeCamera);
  $("enrol-canvas").addEventListener("click", pickAt);
  $("enrol-canvas").addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      const first = $("enrol-faces").querySelector("button");
      if (first) { e.preventDefault(); first.focus(); }
    }
  });
  preview("verify-a", "verify-a-preview");
  preview("verify-b", "verify-b-preview");
  $("verify-form").addEventListener("submit", verifyPair);
  $("explain-btn").addEventListener("click", explainPair);
}
