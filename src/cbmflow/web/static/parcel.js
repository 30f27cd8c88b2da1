// The parcel view: header with flag, map, declaration vs evidence, timeline, chips, markers.
"use strict";
(() => {
  const {el, get, clear, url, parcelUrl, pct, ha, badge, showError, base} = CBM;
  CBM.header("parcel");
  const main = document.getElementById("main");
  const qs = new URLSearchParams(location.search);
  const runId = qs.get("run") || null;

  async function resolvePid() {
    const rest = location.pathname.slice((base + "/parcel/").length).split("/");
    if (rest.length === 1) return Number(rest[0]);
    const [aoi, year, ...idParts] = rest;
    const pidText = decodeURIComponent(idParts.join("/"));
    const hits = await get("/api/search", {q: pidText, aoi: decodeURIComponent(aoi), year, limit: 5});
    const hit = hits.find(h => h.parcel_id === pidText);
    if (!hit) throw new Error(`parcel ${pidText} not found in ${decodeURIComponent(aoi)} ${year}`);
    return hit.pid;
  }

  function head(p, flag) {
    const h = document.getElementById("head");
    clear(h);
    document.title = `${p.parcel_id} · parcel · cbmflow`;
    h.appendChild(el("span", {class: "id", id: "parcel-id"}, p.parcel_id));
    h.appendChild(badge(flag ? flag.flag : null, true));
    h.appendChild(el("span", {class: "muted"}, `${p.aoi} ${p.year} · ${p.crop_name || ""}${p.crop_code ? " (" + p.crop_code + ")" : ""} · ${ha(p.area_m2)} · pid ${p.pid}`));
    h.appendChild(el("span", {class: "grow"}));
    h.appendChild(el("a", {href: url(`/parcel/${encodeURIComponent(p.aoi)}/${p.year}/${encodeURIComponent(p.parcel_id)}`), title: "link by AOI, year and declared parcel id"}, "permalink"));
    if (flag) h.appendChild(el("a", {href: url("/flags", {run: flag.run_id})}, "← flag list of run #" + flag.run_id));
  }

  function facts(p, f) {
    const t = document.getElementById("facts");
    clear(t);
    const row = (k, ...v) => t.appendChild(el("tr", {}, el("td", {}, k), el("td", {}, ...v)));
    const reason = document.getElementById("reason");
    if (!f) {
      row("Declared crop", `${p.crop_code || ""} ${p.crop_name || ""}`);
      reason.className = "reason";
      reason.textContent = "No classification run covers this parcel yet: no flag.";
      return;
    }
    row("Declared crop", f.declared, f.declared_name && f.declared_name !== f.declared ? el("span", {class: "muted"}, " · " + f.declared_name) : null);
    if (f.declared_class && f.declared_class !== f.declared) row("Declared class", f.declared_class);
    row("Predicted", el("strong", {}, f.predicted), f.predicted_name && f.predicted_name !== f.predicted ? el("span", {class: "muted"}, " · " + f.predicted_name) : null);
    row("P(declared crop)", el("strong", {id: "declared-prob"}, pct(f.declared_probability)));
    row("P(predicted)", pct(f.probability));
    row("Agreement", `${f.agree_count} of ${f.n_predictions} out-of-fold predictions`);
    if (f.best_other) row("Best other crop", `${f.best_other}${f.best_other_name && f.best_other_name !== f.best_other ? " · " + f.best_other_name : ""} (${pct(f.best_other_probability)})`);
    if (f.score !== undefined && f.score !== null) row("Suspicion score", `${Number(f.score).toFixed(2)}${f.suspicion_rank ? " · rank " + f.suspicion_rank + " in the run" : ""}`);
    row("Flag", badge(f.flag), el("span", {class: "muted"}, ` run #${f.run_id}`));
    reason.className = "reason " + f.flag;
    reason.id = "reason";
    reason.textContent = f.reason;
  }

  function markersList(ms) {
    const ul = document.getElementById("markers");
    clear(ul);
    if (!ms.length) { ul.appendChild(el("li", {class: "muted"}, "No activity markers for this parcel (none computed, or no evidence).")); return; }
    ms.forEach(m => ul.appendChild(el("li", {},
      el("strong", {}, m.marker), " ", m.event_date || `${m.start_date || "?"} – ${m.end_date || "?"}`,
      m.confidence !== null && m.confidence !== undefined ? el("span", {class: "muted"}, ` · confidence ${pct(m.confidence)}`) : null,
      m.sources ? el("span", {class: "muted"}, ` · ${[].concat(m.sources).join(", ")}`) : null)));
  }

  function chipStrip(pid, chips, ndvi, timeline) {
    const box = document.getElementById("chips");
    clear(box);
    const cloud = new Map(ndvi.map(n => [n.obsid, n]));
    const note = document.getElementById("chips-note");
    if (!chips.length) { note.textContent = "No CARD raster with this parcel in the catalogue (chips come from the scenes that gave it a signature)."; return {pick() {}}; }
    note.textContent = `${chips.length} scenes · S1 chips show VV γ⁰ (−25…0 dB), S2 chips true colour; read from the CARD COGs by window, cached.`;
    const cards = chips.map(c => {
      const n = cloud.get(c.obsid);
      const label = c.card_type === "bs" ? `S1 VV ${c.orbit === "descending" ? "desc" : c.orbit === "ascending" ? "asc" : ""}` : "S2 RGB" + (n && n.cloud_fraction !== null ? ` · cloud ${pct(n.cloud_fraction)}` : "");
      const img = el("img", {src: url(`/api/parcels/${pid}/chips/${c.obsid}.png`), alt: `${c.product_id}`, loading: "lazy", width: 122, height: 122, title: c.product_id});
      const card = el("div", {class: "chip" + (n && n.cloudy ? " cloudy" : ""), "data-obsid": c.obsid, "data-date": c.date, tabindex: 0}, img,
        el("span", {class: "t"}, c.date.slice(0, 10)), el("span", {class: "t"}, label));
      card.addEventListener("click", () => select(c));
      box.appendChild(card);
      return [c, card];
    });
    function select(c) {
      cards.forEach(([x, card]) => card.classList.toggle("selected", x === c));
      const card = cards.find(([x]) => x === c)[1];
      box.scrollLeft = card.offsetLeft - box.clientWidth / 2 + card.clientWidth / 2;
      timeline.select(CBMTimeline.parseDate(c.date));
    }
    return {
      pick(tm) {
        let best = null;
        chips.forEach(c => { const d = Math.abs(CBMTimeline.parseDate(c.date) - tm); if (!best || d < best[0]) best = [d, c]; });
        if (best) select(best[1]);
      },
    };
  }

  async function main_() {
    const pid = await resolvePid();
    if (!Number.isInteger(pid) || pid < 1) throw new Error("not a parcel id: " + location.pathname);
    const [p, cfg] = await Promise.all([get(`/api/parcels/${pid}`, {run_id: runId}), get("/api/config")]);
    head(p, p.flag);
    facts(p, p.flag);
    // map: the parcels around this one (about 1.5 km), coloured by flag of the same run
    const [x0, y0, x1, y1] = p.bbox, dx = Math.max(x1 - x0, 0.004) * 4, dy = Math.max(y1 - y0, 0.003) * 4;
    const bbox = [x0 - dx, y0 - dy, x1 + dx, y1 + dy].map(v => v.toFixed(6)).join(",");
    const map = CBMMap.create(document.getElementById("map"), {
      basemap: cfg.basemap && cfg.basemap.url,
      onSelect: other => { if (other !== pid) location.assign(parcelUrl(other, p.flag ? p.flag.run_id : runId)); },
    });
    document.getElementById("zoom-parcel").addEventListener("click", () => map.zoomToParcel());
    document.getElementById("zoom-in").addEventListener("click", () => map.zoom(0.7));
    document.getElementById("zoom-out").addEventListener("click", () => map.zoom(1.4));
    const mapLoad = get(`/api/aois/${encodeURIComponent(p.aoi)}/${p.year}/parcels.geojson`, {bbox, run_id: p.flag ? p.flag.run_id : runId, limit: 4000})
      .then(fc => {
        map.setData(fc, pid, p.geometry);
        document.getElementById("map-note").textContent = `${fc.features.length} parcels around this one${fc.truncated ? " (first 4000)" : ""} · click one to open it · wheel to zoom, drag to pan` +
          (cfg.basemap && cfg.basemap.url ? ` · basemap ${cfg.basemap.attribution || ""}` : " · vector only (set CBMFLOW_BASEMAP_URL for a basemap)");
      });
    const timeline = CBMTimeline.create(document.getElementById("timeline"), document.getElementById("legend"), document.getElementById("readout"),
      {onPick: tm => strip.pick(tm)});
    let strip = {pick() {}};
    const [chart, chips] = await Promise.all([get(`/api/parcels/${pid}/chart`, {run_id: p.flag ? p.flag.run_id : runId}), get(`/api/parcels/${pid}/chips`)]);
    timeline.setData(chart);
    markersList(chart.markers || []);
    strip = chipStrip(pid, chips, chart.ndvi || [], timeline);
    const peers = chart.peers || {};
    document.getElementById("foot").textContent =
      `Units: S1 ${chart.units.s1}; VH/VV ${chart.units.ratio}; coherence ${chart.units.coherence}; ${chart.units.ndvi}. ` +
      `S2 observations count as cloudy above ${Math.round(100 * chart.cloud_max)} % cloudy pixels in the parcel's SCL histogram (hidden by default; tick them in the legend). ` +
      `Peers: ${peers.n_parcels || 0} parcels declared ${peers.crop || "–"} in ${p.aoi} ${p.year}.`;
    await mapLoad;
    document.body.setAttribute("data-ready", "1");
  }
  main_().catch(e => { showError(main, e); document.body.setAttribute("data-ready", "error"); });
})();
