// The flag list: red and yellow parcels of a classification run, sortable and filterable.
"use strict";
(() => {
  const {el, get, url, clear, parcelUrl, pct, ha, badge, showError} = CBM;
  CBM.header("flags");
  const qs = new URLSearchParams(location.search);
  const state = {run: qs.get("run"), sort: qs.get("sort") || "flag", order: qs.get("order") || "asc", offset: 0, limit: 100};
  const form = document.getElementById("filters");
  const COLS = [
    ["flag", "Flag"], ["parcel_id", "Parcel"], ["declared", "Declared crop"], ["predicted", "Predicted"],
    ["probability", "P(predicted)"], ["declared_probability", "P(declared)"], ["agree_count", "Agreement"],
    ["area_m2", "Area"],
  ];

  function filters() {
    const fd = new FormData(form);
    return {flag: fd.getAll("flag"), crop: fd.get("crop"), min_prob: fd.get("min_prob"),
            max_declared_prob: fd.get("max_declared_prob"), q: (fd.get("q") || "").trim()};
  }

  async function loadRuns() {
    const runs = await get("/api/runs");
    const sel = document.getElementById("run");
    clear(sel);
    runs.forEach(r => sel.appendChild(el("option", {value: r.run_id},
      `#${r.run_id} · ${r.aoi || "file"} ${r.year || ""} · ${r.created_at} · ${r.red} red, ${r.yellow} yellow`)));
    if (!runs.length) { showError(document.getElementById("out"), new Error("No classification run yet: run the classify_outliers DAG (or `make demo`).")); return false; }
    if (state.run && runs.some(r => String(r.run_id) === String(state.run))) sel.value = state.run; else state.run = sel.value;
    sel.addEventListener("change", () => { state.run = sel.value; state.offset = 0; document.getElementById("crop").value = ""; load(); });
    return true;
  }

  function exportLinks(f) {
    const params = {flag: f.flag, crop: f.crop, min_prob: f.min_prob, max_declared_prob: f.max_declared_prob, q: f.q};
    document.getElementById("csv").setAttribute("href", url(`/api/runs/${encodeURIComponent(state.run)}/flags.csv`, params));
    document.getElementById("gpkg").setAttribute("href", url(`/api/runs/${encodeURIComponent(state.run)}/flags.gpkg`, params));
  }

  async function load() {
    const out = document.getElementById("out");
    const f = filters();
    exportLinks(f);
    let data;
    try {
      data = await get(`/api/runs/${encodeURIComponent(state.run)}/flags`, {...f, sort: state.sort, order: state.order, limit: state.limit, offset: state.offset});
    } catch (e) { clear(out); showError(out, e); return; }
    const crop = document.getElementById("crop");
    if (crop.options.length <= 1) data.crops.forEach(c => crop.appendChild(el("option", {value: c.declared}, `${c.declared}${c.crop_name && c.crop_name !== c.declared ? " · " + c.crop_name : ""} (${c.n})`)));
    const counts = document.getElementById("counts");
    clear(counts).appendChild(el("span", {}, `${data.total} parcels match`));
    const head = el("tr", {}, COLS.map(([k, label]) => {
      const th = el("th", {class: "sortable" + (state.sort === k ? " sorted" + (state.order === "desc" ? " desc" : "") : ""), "data-key": k}, label);
      th.addEventListener("click", () => {
        state.order = state.sort === k && state.order === "asc" ? "desc" : "asc"; state.sort = k; state.offset = 0; load();
      });
      return th;
    }));
    const body = el("tbody", {}, data.rows.map(r => el("tr", {"data-flag": r.flag, "data-pid": r.pid},
      el("td", {}, badge(r.flag)),
      el("td", {}, el("a", {href: parcelUrl(r.pid, state.run), class: "parcel-link"}, r.parcel_id)),
      el("td", {}, r.declared, r.crop_name && r.crop_name !== r.declared ? el("div", {class: "muted small"}, r.crop_name) : null),
      el("td", {}, r.predicted, r.declared_class && r.declared_class !== r.declared ? el("div", {class: "muted small"}, "declared class: " + r.declared_class) : null),
      el("td", {class: "num"}, pct(r.probability)),
      el("td", {class: "num"}, pct(r.declared_probability)),
      el("td", {class: "num"}, `${r.agree_count} / ${r.n_predictions}`),
      el("td", {class: "num"}, ha(r.area_m2)))));
    clear(out).appendChild(el("div", {class: "card"}, el("table", {class: "data", id: "flags"}, el("thead", {}, head), body)));
    if (!data.rows.length) out.appendChild(el("p", {class: "muted"}, "No parcel matches these filters."));
    document.getElementById("page").textContent = data.total ? `${state.offset + 1}–${state.offset + data.rows.length} of ${data.total}` : "";
    document.getElementById("prev").disabled = state.offset === 0;
    document.getElementById("next").disabled = state.offset + data.rows.length >= data.total;
  }

  form.addEventListener("submit", ev => { ev.preventDefault(); state.offset = 0; load(); });
  document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); load(); });
  document.getElementById("next").addEventListener("click", () => { state.offset += state.limit; load(); });
  loadRuns().then(ok => ok && load()).catch(e => showError(document.getElementById("out"), e));
})();
