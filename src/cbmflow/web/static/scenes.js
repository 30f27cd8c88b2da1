// Failed and no-data scenes per AOI and day, with their error and a re-run through Airflow's API.
"use strict";
(() => {
  const {el, get, clear, badge, showError, airflow} = CBM;
  CBM.header("scenes");
  const out = document.getElementById("out");

  async function rerun(item, cell) {
    const {dag_id, conf} = item.rerun;
    clear(cell).appendChild(el("span", {class: "muted"}, "triggering…"));
    try {
      const r = await fetch(`${airflow}/api/v2/dags/${encodeURIComponent(dag_id)}/dagRuns`, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", Accept: "application/json"},
        body: JSON.stringify({logical_date: null, conf, note: `re-run of ${item.product_id} for ${item.aoi || "all AOIs"} from the cbmflow scenes page`}),
      });
      const j = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(`${r.status}: ${typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail || j)}`);
      clear(cell).appendChild(el("a", {href: `${airflow}/dags/${encodeURIComponent(dag_id)}/runs/${encodeURIComponent(j.dag_run_id)}`, target: "_top"}, `${dag_id}: ${j.dag_run_id} (${j.state})`));
      // a paused DAG only queues the run: say so (Airflow would not)
      try {
        const d = await fetch(`${airflow}/api/v2/dags/${encodeURIComponent(dag_id)}`, {credentials: "same-origin", headers: {Accept: "application/json"}});
        const dag = d.ok ? await d.json() : null;
        if (dag && dag.is_paused) {
          cell.appendChild(el("div", {class: "warn", "data-warning": "paused"},
            `The DAG ${dag_id} is paused: this run stays queued until you unpause it in Airflow (or run \`airflow dags unpause ${dag_id}\`).`));
        }
      } catch (e) { /* the run is triggered; the pause check is advisory */ }
    } catch (e) { clear(cell).appendChild(el("span", {class: "error"}, String(e.message || e))); }
  }

  async function load() {
    const aoi = document.getElementById("aoi").value;
    let data;
    try { data = await get("/api/scenes/problems", {aoi}); } catch (e) { clear(out); showError(out, e); return; }
    document.getElementById("source").textContent = data.source === "catalogue"
      ? "source: catalogue status (failed) and extracted scenes without any signature over the AOI"
      : `source: per-scene extraction status (${data.source})`;
    if (!data.items.length) { clear(out).appendChild(el("p", {class: "card"}, "No failed or no-data scene. ✔")); return; }
    const rows = data.items.map(it => {
      const action = el("td", {});
      const cli = `airflow dags trigger ${it.rerun.dag_id} --conf '${JSON.stringify(it.rerun.conf)}'`;
      const btn = el("button", {type: "button"}, "Re-run");
      btn.addEventListener("click", () => rerun(it, action));
      action.appendChild(btn);
      action.appendChild(el("pre", {class: "code"}, cli));
      return el("tr", {"data-status": it.status},
        el("td", {}, it.day), el("td", {}, it.aoi || "?"), el("td", {}, badge(it.status)),
        el("td", {}, it.product_id, el("div", {class: "muted small"}, `${it.card_type} · ${it.product_type} · scene ${it.obsid} (${it.scene_status})`)),
        el("td", {}, it.error || "–"), action);
    });
    clear(out).appendChild(el("div", {class: "card"}, el("table", {class: "data"},
      el("thead", {}, el("tr", {}, ["Day", "AOI", "Status", "Scene", "Error", "Re-run"].map(h => el("th", {}, h)))),
      el("tbody", {}, rows))));
  }

  get("/api/aois").then(aois => {
    const sel = document.getElementById("aoi");
    [...new Set(aois.map(a => a.name))].forEach(n => sel.appendChild(el("option", {value: n}, n)));
    sel.addEventListener("change", load);
    return load();
  }).catch(e => showError(out, e));
})();
