// faceatlas web page, part 3: thumbnails of each person's enrolled faces (only faces enrolled with "keep crops").
"use strict";

const MAX_THUMB_PEOPLE = 50;  // one extra request per person: only the first people of a long list get a strip
let thumbUrls = [];
let thumbPeople = 0;

function forgetThumbs() {
  for (const url of thumbUrls) URL.revokeObjectURL(url);
  thumbUrls = [];
  thumbPeople = 0;
}

async function fetchCrop(person, faceId) {
  const headers = {};
  const key = currentKey();
  if (key) headers["Authorization"] = "Bearer " + key;
  const path = collectionPath() + "/persons/" + encodeURIComponent(person) + "/faces/" + faceId + "/crop";
  const resp = await fetch(path, { headers, cache: "no-store" });
  if (!resp.ok) return null;
  return URL.createObjectURL(await resp.blob());
}

async function showThumbs(person, row) {
  if (!person.samples || ++thumbPeople > MAX_THUMB_PEOPLE) return;
  const detail = await api("GET", collectionPath() + "/persons/" + encodeURIComponent(person.external_id));
  const kept = detail.faces.filter((f) => f.has_crop);
  if (!kept.length || !row.isConnected) return;
  const tr = document.createElement("tr");
  tr.className = "thumbs-row";
  const td = document.createElement("td");
  td.colSpan = 4;
  const strip = document.createElement("ul");
  strip.className = "thumbs";
  strip.setAttribute("aria-label", `enrolled faces of ${person.external_id}`);
  td.append(strip);
  tr.append(td);
  row.after(tr);
  const label = person.name || person.external_id;
  for (const [i, face] of kept.entries()) {
    const url = await fetchCrop(person.external_id, face.id);
    if (!url) continue;
    thumbUrls.push(url);
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = url;
    img.alt = `${label}, enrolled face ${i + 1} of ${kept.length}`;
    img.width = 64;
    img.height = 64;
    li.append(img);
    strip.append(li);
  }
}
