// nationmap's web map: the products runs the server found, one layer at a time over the 1-degree
// cells, with the legend from the COG's colour table, the area table and a click that reads a pixel.
"use strict";

const state = { maps: [], current: null, product: "lulc", tiles: null, grid: null };
const map = L.map("map", { zoomSnap: 0.5, attributionControl: false });
L.control.scale({ imperial: false }).addTo(map);

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function mapLabel(m) {
  const label = `${m.region} ${m.month} ${m.version}` + (m.latest && m.version !== "run" ? " (latest)" : "");
  return m.available ? label : `${label} (unavailable: ${m.reason})`;
}

function defaultMap(maps) {
  // the newest month's latest version (maps arrive newest first); a damaged one is never shown
  const shown = maps.filter((m) => m.available);
  return shown.find((m) => m.latest) || shown[0];
}

async function getJson(url) {
  // the server answers what it cannot serve with a status and {"error": reason}
  const response = await fetch(url);
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `${response.status}`);
  return answer;
}

function showError(box, error) {
  box.replaceChildren(el("p", { class: "error" }, `not available: ${error.message}`));
}

function drawGrid(m) {
  if (state.grid) state.grid.remove();
  const cells = m.cells.map((c) => {
    const [w, s, e, n] = c.bounds;
    const rect = L.rectangle([[s, w], [n, e]], { color: "#455a64", weight: 1, fill: false, interactive: false });
    rect.bindTooltip(c.name, { permanent: true, direction: "center", className: "cell-label" });
    return rect;
  });
  state.grid = L.layerGroup(cells).addTo(map);
}

function drawTiles(m) {
  if (state.tiles) state.tiles.remove();
  const url = `/tiles/${state.product}/{z}/{x}/{y}.png?map=${encodeURIComponent(m.id)}`;
  state.tiles = L.tileLayer(url, { maxZoom: 18, className: "product-tiles" }).addTo(map);
}

function drawLegend(m) {
  const legend = m.legends[state.product];
  const box = document.getElementById("legend");
  box.replaceChildren();
  document.getElementById("legend-title").textContent = `Legend: ${legend.description}`;
  if (legend.classes.length) {
    for (const c of legend.classes) {
      const row = el("div", { class: "entry", "data-value": c.value });
      row.append(el("span", { class: "swatch", style: `background:${c.colour}` }), el("span", { class: "name" }, c.name));
      box.append(row);
    }
  } else {
    box.append(el("div", { class: "ramp", style: `background:linear-gradient(to right, ${legend.colours.join(",")})` }));
    const labels = el("div", { class: "ramp-labels" });
    labels.append(el("span", {}, String(legend.range[0])), el("span", {}, `${legend.range[1]} ${legend.unit || ""}`));
    box.append(labels);
  }
}

function drawProducts(m) {
  const box = document.getElementById("products");
  box.querySelectorAll("label").forEach((n) => n.remove());
  if (!m.products.includes(state.product)) state.product = m.products[0];
  for (const p of m.products) {
    const input = el("input", { type: "radio", name: "product", value: p, id: `product-${p}` });
    input.checked = p === state.product;
    input.addEventListener("change", () => { state.product = p; drawTiles(m); drawLegend(m); });
    const label = el("label", { for: `product-${p}` });
    label.append(input, document.createTextNode(` ${p} `));
    box.append(label);
  }
}

async function drawAreas(m) {
  const body = document.querySelector("#areas tbody");
  body.replaceChildren();
  if (!m.areas) return;
  let rows, accuracy;
  try {
    ({ rows, accuracy } = await getJson(`/api/areas?map=${encodeURIComponent(m.id)}`));
  } catch (error) {
    const tr = el("tr");
    tr.append(el("td", { class: "error" }, `not available: ${error.message}`));
    body.append(tr);
    return;
  }
  const km2 = (v) => v.toLocaleString("en", { maximumFractionDigits: 1 });
  if (accuracy && accuracy.overall !== null && accuracy.overall_ci95 !== null) {  // estimates with 95 % intervals
    const tr = el("tr", { class: "accuracy" });
    tr.append(el("td", { colspan: "5" }, `LULC overall accuracy ${accuracy.overall.toFixed(3)} ± `
      + `${accuracy.overall_ci95.toFixed(3)} (95 %, ${accuracy.points} sample points); estimated areas ± 95 %:`));
    body.append(tr);
  }
  for (const r of rows) {
    const tr = el("tr", { "data-layer": r.layer, "data-code": r.code });
    const estimate = r.layer === "lulc" && accuracy ? accuracy.classes[String(r.code)] : null;
    tr.append(el("td", {}, r.layer), el("td", {}, r.class),
      el("td", { class: "num" }, km2(r.area_km2)),
      el("td", { class: "num" }, `${(100 * r.share).toFixed(1)} %`),
      el("td", { class: "num estimate" }, estimate && estimate.estimate_km2 !== null && estimate.ci95_km2 !== null
        ? `${km2(estimate.estimate_km2)} ± ${km2(estimate.ci95_km2)}` : ""));
    body.append(tr);
  }
}

function show(m) {
  state.current = m;
  document.getElementById("status").textContent = `${m.status}, ${m.cells.length} cells`;
  drawProducts(m);
  drawGrid(m);
  drawTiles(m);
  drawLegend(m);
  drawAreas(m);
  const [w, s, e, n] = m.bounds;
  map.fitBounds([[s, w], [n, e]]);
}

async function readPixel(event) {
  const m = state.current;
  const { lat, lng } = event.latlng;
  const q = `map=${encodeURIComponent(m.id)}&lon=${lng}&lat=${lat}`;
  const box = document.getElementById("pixel");
  let answer;
  try {
    answer = await getJson(`/api/point?${q}`);
  } catch (error) {
    showError(box, error);
    return;
  }
  const list = el("dl", { "data-lon": lng, "data-lat": lat });
  for (const [product, v] of Object.entries(answer.values)) {
    list.append(el("dt", {}, product), el("dd", { "data-product": product, "data-value": v.value ?? "" }, v.label));
  }
  box.replaceChildren(list);
  L.popup().setLatLng(event.latlng).setContent(list.cloneNode(true)).openOn(map);
}

async function start() {
  const { maps } = await getJson("/api/maps");
  state.maps = maps;
  const select = document.getElementById("map-select");
  for (const m of maps) {
    const option = el("option", { value: m.id }, mapLabel(m));
    option.disabled = !m.available;
    select.append(option);
  }
  if (!maps.some((m) => m.available)) {
    document.getElementById("status").textContent = maps.length ? "no map can be shown (see the list for why)" : "no products found";
    return;
  }
  const first = defaultMap(maps);
  select.value = first.id;
  select.addEventListener("change", () => show(state.maps.find((m) => m.id === select.value)));
  map.on("click", readPixel);
  show(first);
  document.body.dataset.ready = "true";
}

start();
