// The flag list: the inspection queue of a classification run (suspicion rank by default),
// filterable and sortable, with the latest decision; every filter and the sort live in the URL.
"use strict";
(() => {
  const {el, get, url, clear, parcelUrl, pct, ha, badge, showError} = CBM;
  CBM.header("flags");
  const qs = new URLSearchParams(location.search);
  const state = {run: qs.get("run"), sort: qs.get("sort") || "rank", order: qs.get("order") || "asc",
                 offset: Math.max(0, Number(qs.get("offset")) || 0), limit: 100};
  const form = document.getElementById("filters");
  const COLS = [
    ["rank", "Rank"], ["flag", "Flag"], ["parcel_id", "Parcel"], ["declared", "Declared crop"], ["predicted", "Predicted"],
    ["score", "Score"], ["probability", "P(predicted)"], ["declared_probability", "P(declared)"], ["agree_count", "Agreement"],
    ["area_m2", "Area"], ["decision", "Decision"],
  ];
  const FILTER_KEYS = ["flag", "decision", "crop", "min_prob", "max_declared_prob", "q"];

  // the form from the URL (the URL wins over the HTML defaults)
  if (FILTER_KEYS.some(k => qs.has(k))) {
    const flags = qs.getAll("flag");
    form.querySelectorAll("input[name=flag]").forEach(i => { i.checked = flags.includes(i.value); });
    for (const k of ["min_prob", "max_declared_prob", "q"]) if (qs.has(k)) form.elements[k].value = qs.get(k);
  }

  function filters() {
    const fd = new FormData(form);
    return {flag: fd.getAll("flag"), decision: fd.get("decision"), crop: fd.get("crop"), min_prob: fd.get("min_prob"),
            max_declared_prob: fd.get("max_declared_prob"), q: (fd.get("q") || "").trim()};
  }
  function queueParams(f) { return {...f, sort: state.sort === "rank" ? null : state.sort, order: state.order === "asc" ? null : state.order}; }
  function syncUrl(f) {
    history.replaceState(null, "", url("/flags", {run: state.run, ...queueParams(f), offset: state.offset || null}));
  }

  async function loadRuns() {
    const runs = await get("/api/runs");
    const sel = document.getElementById("run");
    clear(sel);
    runs.forEach(r => sel.appendChild(el("option", {value: r.run_id},
      `#${r.run_id} · ${r.aoi || "file"} ${r.year || ""} · ${r.created_at} · ${r.red} red, ${r.yellow} yellow`)));
    if (!runs.length) { showError(document.getElementById("out"), new Error("No classification run yet: run the classify_outliers DAG (or `make demo`).")); return null; }
    if (state.run && runs.some(r => String(r.run_id) === String(state.run))) sel.value = state.run; else state.run = sel.value;
    sel.addEventListener("change", () => { state.run = sel.value; state.offset = 0; document.getElementById("crop").value = ""; load(); loadMap(); });
    return runs;
  }

  function exportLinks(f) {
    const params = queueParams(f);
    document.getElementById("csv").setAttribute("href", url(`/api/runs/${encodeURIComponent(state.run)}/flags.csv`, params));
    document.getElementById("gpkg").setAttribute("href", url(`/api/runs/${encodeURIComponent(state.run)}/flags.gpkg`, params));
  }

  let outcomes = {};
  function decisionCell(r) {
    if (!r.decision) return el("span", {class: "muted"}, "undecided");
    return el("span", {}, el("span", {class: "decision " + r.decision}, outcomes[r.decision] || r.decision),
      r.corrected_crop ? el("div", {class: "small"}, "crop found: " + r.corrected_crop) : null,
      el("div", {class: "muted small"}, `${r.decided_by} · ${String(r.decided_at || "").slice(0, 16).replace("T", " ")}`));
  }
  const cropCell = (code, name) => [name && name !== code ? name : code, name && name !== code ? el("div", {class: "muted small"}, code) : null];

  async function load() {
    const out = document.getElementById("out");
    const f = filters();
    exportLinks(f);
    syncUrl(f);
    let data;
    try {
      data = await get(`/api/runs/${encodeURIComponent(state.run)}/flags`, {...f, sort: state.sort, order: state.order, limit: state.limit, offset: state.offset});
    } catch (e) { clear(out); showError(out, e); return; }
    const crop = document.getElementById("crop");
    if (crop.options.length <= 1) {
      data.crops.forEach(c => crop.appendChild(el("option", {value: c.declared}, `${c.crop_name && c.crop_name !== c.declared ? c.crop_name + " · " : ""}${c.declared} (${c.n})`)));
      if (qs.get("crop")) crop.value = qs.get("crop");
    }
    document.getElementById("counts").textContent = `${data.total} parcels match`;
    const cols = COLS.filter(([k]) => data.sortable.includes(k) || k === "flag");
    const head = el("tr", {}, cols.map(([k, label]) => {
      const sorted = state.sort === k;
      const btn = el("button", {type: "button", class: "sort", "aria-label": `sort by ${label}`}, label);
      btn.addEventListener("click", () => {
        state.order = state.sort === k && state.order === "asc" ? "desc" : "asc"; state.sort = k; state.offset = 0; load();
      });
      return el("th", {class: "sortable" + (sorted ? " sorted" + (state.order === "desc" ? " desc" : "") : ""), "data-key": k,
                       "aria-sort": sorted ? (state.order === "desc" ? "descending" : "ascending") : "none"}, btn);
    }));
    const qp = queueParams(f);
    const link = pid => url("/parcel/" + encodeURIComponent(pid), {run: state.run, ...qp});
    const cells = {
      rank: r => el("td", {class: "num"}, r.rank),
      flag: r => el("td", {}, badge(r.flag)),
      parcel_id: r => el("td", {}, el("a", {href: link(r.pid), class: "parcel-link"}, r.parcel_id)),
      declared: r => el("td", {}, ...cropCell(r.declared, r.crop_name || r.declared_name)),
      predicted: r => el("td", {}, ...cropCell(r.predicted, r.predicted_name)),
      score: r => el("td", {class: "num"}, r.score === null || r.score === undefined ? "–" : Number(r.score).toFixed(2)),
      probability: r => el("td", {class: "num"}, pct(r.probability)),
      declared_probability: r => el("td", {class: "num"}, pct(r.declared_probability)),
      agree_count: r => el("td", {class: "num"}, `${r.agree_count} / ${r.n_predictions}`),
      area_m2: r => el("td", {class: "num"}, ha(r.area_m2)),
      decision: r => el("td", {class: "decision-cell"}, decisionCell(r)),
    };
    const body = el("tbody", {}, data.rows.map(r => el("tr", {"data-flag": r.flag, "data-pid": r.pid, "data-decision": r.decision || ""},
      cols.map(([k]) => cells[k](r)))));
    clear(out).appendChild(el("div", {class: "card"}, el("table", {class: "data", id: "flags"}, el("thead", {}, head), body)));
    if (!data.rows.length) out.appendChild(el("p", {class: "muted"}, "No parcel matches these filters."));
    document.getElementById("page").textContent = data.total ? `${state.offset + 1}–${state.offset + data.rows.length} of ${data.total}` : "";
    document.getElementById("prev").disabled = state.offset === 0;
    document.getElementById("next").disabled = state.offset + data.rows.length >= data.total;
    document.body.setAttribute("data-ready", "1");
  }

  // the whole AOI on a map, coloured by flag or decision (offline: outlines; basemap if configured)
  let aoiMap = null, runsById = new Map(), cfg = {};
  async function loadMap() {
    const run = runsById.get(String(state.run));
    const note = document.getElementById("aoi-map-note");
    if (!run || !run.aoi) { note.textContent = "This run has no AOI: no map."; return; }
    if (!aoiMap) {
      aoiMap = CBMMap.create(document.getElementById("aoi-map"), {
        basemap: cfg.basemap && cfg.basemap.url,
        onSelect: pid => location.assign(url("/parcel/" + encodeURIComponent(pid), {run: state.run, ...queueParams(filters())})),
      });
      document.getElementById("aoi-fit").addEventListener("click", () => aoiMap.fitAll());
      document.getElementById("aoi-zoom-in").addEventListener("click", () => aoiMap.zoom(0.7));
      document.getElementById("aoi-zoom-out").addEventListener("click", () => aoiMap.zoom(1.4));
      document.getElementById("colour-by").addEventListener("change", ev => aoiMap.colourBy(ev.target.value));
    }
    try {
      const fc = await get(`/api/aois/${encodeURIComponent(run.aoi)}/${run.year}/parcels.geojson`, {run_id: state.run, limit: 20000});
      aoiMap.setData(fc, null, null);
      aoiMap.colourBy(document.getElementById("colour-by").value);
      note.textContent = `${fc.features.length} parcels of ${run.aoi} ${run.year}${fc.truncated ? " (the first 20000)" : ""} · click or Enter opens one · wheel/drag or arrows and +/− to pan and zoom` +
        (cfg.basemap && cfg.basemap.url ? ` · basemap ${cfg.basemap.attribution || ""}` : " · parcel outlines only, no basemap (set CBMFLOW_BASEMAP_URL for one)");
    } catch (e) { showError(note, e); }
  }

  form.addEventListener("submit", ev => { ev.preventDefault(); state.offset = 0; load(); });
  form.addEventListener("change", ev => { if (ev.target.type === "checkbox" || ev.target.tagName === "SELECT") { state.offset = 0; load(); } });
  document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); load(); });
  document.getElementById("next").addEventListener("click", () => { state.offset += state.limit; load(); });
  Promise.all([loadRuns(), get("/api/me"), get("/api/config")]).then(([runs, me, config]) => {
    if (!runs) return;
    cfg = config;
    outcomes = me.outcomes || {};
    const dsel = document.getElementById("decision");
    Object.entries(outcomes).forEach(([k, label]) => dsel.appendChild(el("option", {value: k}, label)));
    if (qs.get("decision")) dsel.value = qs.get("decision");
    runs.forEach(r => runsById.set(String(r.run_id), r));
    return Promise.all([load(), loadMap()]);
  }).catch(e => showError(document.getElementById("out"), e));
})();
