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
    if (flag) {
      const back = new URLSearchParams(location.search);
      back.set("run", flag.run_id);
      h.appendChild(el("a", {href: base + "/flags?" + back.toString(), id: "back-to-list"}, "← flag list of run #" + flag.run_id));
    }
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
    const named = (code, name) => name && name !== code ? [el("strong", {}, name), el("span", {class: "muted"}, " · " + code)] : [el("strong", {}, code)];
    row("Declared crop", ...named(f.declared, f.declared_name || p.crop_name));
    if (f.declared_class && f.declared_class !== f.declared) row("Declared class", f.declared_class);
    row("Predicted", ...named(f.predicted, f.predicted_name));
    row("P(declared crop)", el("strong", {id: "declared-prob"}, pct(f.declared_probability)));
    row("P(predicted)", pct(f.probability));
    row("Agreement", `${f.agree_count} of ${f.n_predictions} out-of-fold predictions`);
    if (f.best_other) row("Best other crop", ...named(f.best_other, f.best_other_name), ` (${pct(f.best_other_probability)})`);
    if (f.score !== undefined && f.score !== null) row("Suspicion score", el("strong", {id: "score"}, Number(f.score).toFixed(2)), f.rank ? ` · rank ${f.rank} in the run` : "");
    else if (f.rank) row("Suspicion rank", `${f.rank} in the run`);
    document.getElementById("score-note").textContent = f.score !== undefined && f.score !== null ? (f.score_scale || "") : "";
    evidenceTable(f.evidence);
    row("Flag", badge(f.flag), el("span", {class: "muted"}, ` run #${f.run_id}`));
    reason.className = "reason " + f.flag;
    reason.id = "reason";
    reason.textContent = f.reason;
  }

  function evidenceTable(ev) {
    const box = clear(document.getElementById("evidence"));
    if (!Array.isArray(ev) || !ev.length) return;
    const n = v => v === null || v === undefined || !Number.isFinite(Number(v)) ? "–" : Number(v).toFixed(2);
    box.appendChild(el("table", {class: "data evidence", id: "evidence-table"},
      el("caption", {class: "muted small"}, "Most contradicting observations (value against the declared crop's p25–p75)"),
      el("thead", {}, el("tr", {}, ["Period", "Band", "Value", "declared p25–p75", "predicted median", "z"].map(h => el("th", {}, h)))),
      el("tbody", {}, ev.slice(0, 5).map(e => el("tr", {},
        el("td", {}, String(e.period || "")), el("td", {}, String(e.band || "")), el("td", {class: "num"}, n(e.value)),
        el("td", {class: "num"}, `${n(e.declared_p25)} – ${n(e.declared_p75)}`), el("td", {class: "num"}, n(e.predicted_median)),
        el("td", {class: "num"}, n(e.z)))))));
  }

  // --- the queue: previous / next parcel with the flag list's filters and sort (from the URL) ---
  function queueParams() {
    const q = new URLSearchParams(location.search);
    q.delete("run");
    return q;
  }
  let queueNav = {prev: null, next: null};
  async function loadQueue(pid, run) {
    const pos = document.getElementById("queue-pos");
    if (!run) { pos.textContent = "no classification run: no queue"; return; }
    const params = {};
    for (const [k, v] of queueParams()) { if (params[k]) params[k] = [].concat(params[k], v); else params[k] = v; }
    try {
      const q = await get(`/api/runs/${encodeURIComponent(run)}/queue/${pid}`, params);
      const go = it => it ? url("/parcel/" + encodeURIComponent(it.pid), Object.assign({run}, params)) : null;
      queueNav = {prev: go(q.prev), next: go(q.next)};
      const what = params.flag ? [].concat(params.flag).join("/") : "red";
      pos.textContent = q.position ? `${q.position} of ${q.total} ${what} parcels${params.decision ? " (" + params.decision + ")" : ""}` : `not in the queue (${q.total} ${what} parcels); next: its first`;
      const bp = document.getElementById("queue-prev"), bn = document.getElementById("queue-next");
      bp.disabled = !queueNav.prev; bn.disabled = !queueNav.next;
      if (q.prev) bp.title = q.prev.parcel_id; if (q.next) bn.title = q.next.parcel_id;
    } catch (e) { pos.textContent = "queue unavailable: " + e.message; }
  }
  document.getElementById("queue-prev").addEventListener("click", () => { if (queueNav.prev) location.assign(queueNav.prev); });
  document.getElementById("queue-next").addEventListener("click", () => { if (queueNav.next) location.assign(queueNav.next); });

  // --- decisions: the form (users who may edit) and the history --------------------------------
  function historyList(items, outcomes) {
    const ul = clear(document.getElementById("history"));
    if (!items.length) { ul.appendChild(el("li", {class: "muted"}, "No decision yet.")); return; }
    items.forEach((d, i) => ul.appendChild(el("li", {"data-outcome": d.outcome, class: i === 0 ? "latest" : null},
      el("span", {class: "decision " + d.outcome}, outcomes[d.outcome] || d.outcome),
      d.corrected_crop ? el("strong", {}, " crop found: " + d.corrected_crop) : null,
      el("span", {class: "muted small"}, ` · ${d.decided_by} · ${String(d.decided_at).replace("T", " ").replace("Z", " UTC")}${d.run_id ? " · run #" + d.run_id : ""}`),
      d.note ? el("div", {class: "small note-text"}, d.note) : null)));
  }
  function decisionForm(p, flag, me) {
    const box = clear(document.getElementById("decision-box"));
    const outcomes = me.outcomes || {};
    if (!me.can_decide) {
      box.appendChild(el("p", {class: "muted", id: "read-only"}, `Signed in as ${me.user}: your Airflow role may only read, so you cannot record a decision here.`));
      return;
    }
    const radios = Object.entries(outcomes).map(([k, label], i) => el("label", {},
      el("input", {type: "radio", name: "outcome", value: k, required: true, "data-key": i + 1}), ` ${i + 1} · ${label}`));
    const crop = el("input", {type: "text", name: "corrected_crop", maxlength: 100, size: 18, disabled: true, "aria-label": "crop found"});
    const note = el("textarea", {name: "note", maxlength: 4000, "aria-label": "note", placeholder: "note (optional)"});
    const status = el("span", {class: "small", id: "decision-status", role: "status"});
    const save = el("button", {type: "submit", class: "primary", id: "decide-save"}, "Record");
    const saveNext = el("button", {type: "button", id: "decide-next"}, "Record and next");
    const form = el("form", {class: "decide", id: "decide"},
      el("fieldset", {}, el("legend", {class: "small muted"}, "Outcome (keys 1–5 when the form has focus)"), radios),
      el("div", {class: "row2"}, el("label", {}, "Crop found ", crop)),
      note, el("div", {class: "row2"}, save, saveNext, status));
    box.appendChild(form);
    form.addEventListener("change", () => {
      const v = new FormData(form).get("outcome");
      crop.disabled = v !== "wrong_declaration";
      crop.required = v === "wrong_declaration";
      if (v === "wrong_declaration" && !crop.value && flag && (flag.best_other || flag.predicted)) crop.value = flag.best_other || flag.predicted;
    });
    form.addEventListener("keydown", ev => {
      if (ev.target.tagName !== "TEXTAREA" && ev.target.type !== "text" && /^[1-9]$/.test(ev.key)) {
        const r = form.querySelector(`input[data-key="${ev.key}"]`);
        if (r) { ev.preventDefault(); r.checked = true; r.focus(); form.dispatchEvent(new Event("change")); }
      }
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); submit(false); }
    });
    async function submit(andNext) {
      if (!form.reportValidity()) return;
      const fd = new FormData(form);
      const body = {outcome: fd.get("outcome"), note: fd.get("note") || "", run_id: flag ? flag.run_id : null,
                    corrected_crop: fd.get("outcome") === "wrong_declaration" ? (fd.get("corrected_crop") || "").trim() : null};
      status.textContent = "recording…"; status.className = "small";
      try {
        await CBM.post(`/api/parcels/${p.pid}/decisions`, body);
        status.textContent = "recorded ✔"; status.className = "small ok";
        form.reset(); crop.disabled = true;
        const hist = await get(`/api/parcels/${p.pid}/decisions`);
        historyList(hist, outcomes);
        if (andNext && queueNav.next) location.assign(queueNav.next);
      } catch (e) { status.textContent = String(e.message || e); status.className = "small error"; }
    }
    form.addEventListener("submit", ev => { ev.preventDefault(); submit(false); });
    saveNext.addEventListener("click", () => submit(true));
  }

  function seasonsList(items, runId) {
    const ul = clear(document.getElementById("seasons"));
    if (!items.length) { ul.appendChild(el("li", {class: "muted"}, "No other season of this field in the database.")); return; }
    items.forEach(s => ul.appendChild(el("li", {},
      el("a", {href: parcelUrl(s.pid)}, `${s.year}`), " · ", s.crop_name || s.crop_code || "?", " ",
      s.flag ? badge(s.flag) : el("span", {class: "muted small"}, "no flag"),
      s.decision ? el("span", {class: "decision " + s.decision}, s.decision) : null,
      el("span", {class: "muted small"}, s.same_id ? ` · ${s.parcel_id}` : ` · ${s.parcel_id} (overlapping)`))));
  }

  // keys: n / p next / previous, d decision form, m map (not while typing)
  document.addEventListener("keydown", ev => {
    const t = ev.target, typing = t && (t.tagName === "INPUT" && t.type !== "radio" && t.type !== "checkbox" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "n" && queueNav.next) { ev.preventDefault(); location.assign(queueNav.next); }
    else if (ev.key === "p" && queueNav.prev) { ev.preventDefault(); location.assign(queueNav.prev); }
    else if (ev.key === "d") { const r = document.querySelector("#decide input[name=outcome]"); if (r) { ev.preventDefault(); r.focus(); } }
    else if (ev.key === "m") { ev.preventDefault(); document.getElementById("map").focus(); }
  });

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
      card.addEventListener("keydown", ev => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(c); } });
      card.setAttribute("role", "button");
      card.setAttribute("aria-label", `${c.date.slice(0, 10)} ${label}: show this date on the timeline`);
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
    const [p, cfg, me] = await Promise.all([get(`/api/parcels/${pid}`, {run_id: runId}), get("/api/config"), get("/api/me")]);
    head(p, p.flag);
    facts(p, p.flag);
    decisionForm(p, p.flag, me);
    historyList(p.decisions || [], me.outcomes || {});
    const queueLoad = loadQueue(pid, p.flag ? p.flag.run_id : runId);
    get(`/api/parcels/${pid}/seasons`).then(items => seasonsList(items, runId)).catch(e => showError(document.getElementById("seasons"), e));
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
      `Peers: the ${peers.n_parcels || 0} nearest parcels declared ${peers.crop_name || peers.crop || "–"} in ${p.aoi} ${p.year}` +
      (chart.peers_predicted ? ` and the ${chart.peers_predicted.n_parcels} nearest declared ${chart.peers_predicted.crop_name || chart.peers_predicted.crop} (the predicted crop), each as median and p25–p75.` : ".");
    await Promise.all([mapLoad, queueLoad]);
    document.body.setAttribute("data-ready", "1");
  }
  main_().catch(e => { showError(main, e); document.body.setAttribute("data-ready", "error"); });
})();
