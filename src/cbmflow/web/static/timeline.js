// The parcel timeline (hand-written SVG): stacked panels on one date axis: S1 backscatter in dB
// by orbit, VH/VV, 6-day coherence and NDVI, with p25–p75 bands, the classifier's 5-day means,
// peers of the same crop, cloudy S2 observations apart, markers and the selected chip's date.
"use strict";
const CBMTimeline = (() => {
  const {svg, el, clear} = CBM;
  const DAY = 86400000;
  const C = {vvA: "#1f4e9c", vvD: "#6a9be0", vhA: "#1b7a3a", vhD: "#6cc283", ratioA: "#7b3fa0", ratioD: "#b98ad6",
             cohVV: "#0e7c86", cohVH: "#a0522d", ndvi: "#2e7d32", peer: "#7d8894", peer2: "#c2185b", per: "#e06c00", cloudy: "#8a96a3"};
  const MARKER_COLOURS = {mowing: "#2e9d4f", bare_soil: "#8d6e63", ploughing: "#6d4c41", harvest: "#e0a100", no_evidence: "#90a4ae"};
  const t = s => Date.parse(s.length === 10 ? s + "T12:00:00Z" : s);
  const orbitLabel = o => o === "ascending" ? "asc" : o === "descending" ? "desc" : "orbit ?";

  function buildSeries(d) {
    const S = [];
    const add = (s) => { S.push(Object.assign({visible: true}, s)); };
    const byOrbit = (rows, key) => { const m = new Map(); rows.forEach(r => { const k = r[key] || "unknown"; if (!m.has(k)) m.set(k, []); m.get(k).push(r); }); return m; };
    const peerSets = [["peer", "peers", d.peers || {}, C.peer, "declared crop"]];
    if (d.peers_predicted && d.peers_predicted.n_parcels) peerSets.push(["ppeer", "peers_predicted", d.peers_predicted, C.peer2, "predicted crop"]);
    for (const band of ["VV", "VH"]) {
      for (const [orbit, rows] of byOrbit(d.s1.filter(r => r.band === band), "orbit")) {
        const col = band === "VV" ? (orbit === "descending" ? C.vvD : C.vvA) : (orbit === "descending" ? C.vhD : C.vhA);
        const id = `${band}_${orbit}`;
        add({id, group: id, label: `${band} ${orbitLabel(orbit)}`, panel: "bs", kind: "line", color: col, dash: orbit === "descending",
             pts: rows.filter(r => r.mean_db !== null).map(r => ({t: t(r.date), y: r.mean_db, lo: r.p25_db, hi: r.p75_db}))});
        add({id: id + "_band", group: "iqr", label: "p25–p75 bands", panel: "bs", kind: "band", color: col, legend: false,
             pts: rows.filter(r => r.p25_db !== null && r.p75_db !== null).map(r => ({t: t(r.date), lo: r.p25_db, hi: r.p75_db}))});
      }
      const per = d.periods.filter(p => p.band === band);
      if (per.length) add({id: "per_" + band, group: "periods", label: "5-day means (classifier input)", panel: "bs", kind: "step", color: C.per, dash: band === "VH",
                           pts: per.map(p => ({t0: t(p.start), t1: t(p.end), y: p.value}))});
      for (const [pre, group, P, col, what] of peerSets) {
        for (const [orbit, rows] of byOrbit(P[band] || [], "orbit")) {
          add({id: `${pre}_${band}_${orbit}`, group, label: `${what} peers: ${P.crop_name || P.crop}, median, p25–p75`, panel: "bs", kind: "line", color: col, dash: true, thin: true,
               pts: rows.filter(r => r.median !== null).map(r => ({t: t(r.date), y: r.median}))});
          add({id: `${pre}_${band}_${orbit}_band`, group, panel: "bs", kind: "band", color: col, legend: false,
               pts: rows.filter(r => r.p25 !== null && r.p75 !== null).map(r => ({t: t(r.date), lo: r.p25, hi: r.p75}))});
        }
      }
    }
    for (const [orbit, rows] of byOrbit(d.ratio, "orbit")) {
      add({id: "ratio_" + orbit, group: "ratio_" + orbit, label: `VH/VV ${orbitLabel(orbit)}`, panel: "ratio", kind: "line", color: orbit === "descending" ? C.ratioD : C.ratioA, dash: orbit === "descending",
           pts: rows.map(r => ({t: t(r.date), y: r.value_db}))});
    }
    for (const band of ["COH_VV", "COH_VH"]) {
      const rows = d.coherence.filter(r => r.band === band);
      if (!rows.length) continue;
      const col = band === "COH_VV" ? C.cohVV : C.cohVH;
      add({id: band, group: band, label: band.replace("COH_", "coherence "), panel: "coh", kind: "line", color: col, pts: rows.map(r => ({t: t(r.date), y: r.mean}))});
      add({id: band + "_band", group: "iqr", panel: "coh", kind: "band", color: col, legend: false, pts: rows.map(r => ({t: t(r.date), lo: r.p25, hi: r.p75}))});
      const per = d.periods.filter(p => p.band === band);
      if (per.length) add({id: "per_" + band, group: "periods", panel: "coh", kind: "step", color: C.per, legend: false, pts: per.map(p => ({t0: t(p.start), t1: t(p.end), y: p.value}))});
    }
    const clearObs = d.ndvi.filter(r => r.cloudy !== true), cloudy = d.ndvi.filter(r => r.cloudy === true);
    add({id: "ndvi", group: "ndvi", label: "NDVI (clear)", panel: "ndvi", kind: "line", points: true, color: C.ndvi,
         pts: clearObs.map(r => ({t: t(r.date), y: r.value, unknown: r.cloudy === null}))});
    add({id: "ndvi_cloudy", group: "ndvi_cloudy", label: `NDVI cloudy (> ${Math.round(100 * d.cloud_max)} % SCL cloud)`, panel: "ndvi", kind: "rings", color: C.cloudy, visible: false,
         pts: cloudy.map(r => ({t: t(r.date), y: r.value}))});
    for (const [pre, group, P, col] of peerSets) {
      const pn = P.NDVI || [];
      if (!pn.length) continue;
      add({id: `${pre}_ndvi`, group, label: "", panel: "ndvi", kind: "line", color: col, dash: true, thin: true, legend: false, pts: pn.map(r => ({t: t(r.date), y: r.median}))});
      add({id: `${pre}_ndvi_band`, group, panel: "ndvi", kind: "band", color: col, legend: false, pts: pn.map(r => ({t: t(r.date), lo: r.p25, hi: r.p75}))});
    }
    return S.filter(s => s.pts.length);
  }

  function niceTicks(lo, hi, n) {
    const span = hi - lo || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => span / s <= n) || mag * 10;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }

  function create(node, legendNode, readout, opts) {
    const o = Object.assign({onPick: null}, opts);
    let data = null, series = [], groups = new Map(), selected = null, geom = null;
    const PANELS = [
      {key: "bs", title: "S1 backscatter γ⁰", unit: "dB", h: 190},
      {key: "ratio", title: "VH/VV", unit: "dB", h: 80},
      {key: "coh", title: "6-day coherence", unit: "0–1", h: 95, fixed: [0, 1]},
      {key: "ndvi", title: "S2 NDVI", unit: "(B08 − B04)/(B08 + B04)", axis: "NDVI", h: 120, fixed: [-0.2, 1]},
    ];

    function legend() {
      clear(legendNode);
      const seen = new Set();
      for (const s of series) {
        if (s.legend === false && seen.has(s.group)) continue;
        if (seen.has(s.group)) continue;
        const rep = series.find(x => x.group === s.group && x.legend !== false) || s;
        if (!rep.label) continue;
        seen.add(s.group);
        const on = groups.get(s.group);
        const box = el("input", {type: "checkbox", "data-group": s.group});
        box.checked = on;
        const key = el("span", {class: "key" + (rep.kind === "band" ? " band" : rep.kind === "rings" ? " ring" : rep.dash ? " dash" : "")});
        key.style.borderTopColor = rep.color; if (rep.kind === "band") key.style.background = rep.color;
        const lab = el("label", {class: on ? "" : "off"}, box, key, rep.label);
        box.addEventListener("change", () => { groups.set(s.group, box.checked); lab.classList.toggle("off", !box.checked); draw(); });
        legendNode.appendChild(lab);
      }
    }

    function draw() {
      clear(node);
      if (!data) return;
      const W = Math.max(480, node.parentNode.clientWidth - 28), L = 58, R = 14, top = 8, gap = 26, axisH = 26;
      const active = PANELS.filter(p => series.some(s => s.panel === p.key));
      if (!active.length) { node.setAttribute("viewBox", "0 0 600 40"); node.appendChild(svg("text", {x: 10, y: 24}, "No observations for this parcel yet.")); return; }
      const all = series.flatMap(s => s.pts.map(p => p.t !== undefined ? p.t : p.t0).concat(s.pts.filter(p => p.t1).map(p => p.t1)));
      (data.markers || []).forEach(m => ["event_date", "start_date", "end_date"].forEach(k => m[k] && all.push(t(m[k]))));
      const t0 = Math.min(...all) - 4 * DAY, t1 = Math.max(...all) + 4 * DAY;
      const X = v => L + (v - t0) / (t1 - t0) * (W - L - R);
      let y = top;
      const H = active.reduce((a, p) => a + p.h + gap, top) + axisH;
      node.setAttribute("viewBox", `0 0 ${W} ${H}`); node.setAttribute("height", H);
      geom = {X, t0, t1, L, R, W, panels: []};
      // month grid across all panels
      const months = [];
      for (let d = new Date(t0); d.getTime() <= t1; d = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1))) {
        const m = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1); if (m >= t0) months.push(m);
      }
      const bottom = H - axisH;
      months.forEach(m => node.appendChild(svg("line", {x1: X(m), x2: X(m), y1: top, y2: bottom, class: "grid"})));
      for (const p of active) {
        y += 16;
        const vis = series.filter(s => s.panel === p.key && groups.get(s.group));
        let lo = Infinity, hi = -Infinity;
        vis.forEach(s => s.pts.forEach(q => { [q.y, q.lo, q.hi].forEach(v => { if (v !== undefined && v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }); }));
        if (p.fixed) { lo = Math.min(p.fixed[0], lo === Infinity ? p.fixed[0] : lo); hi = Math.max(p.fixed[1], hi === -Infinity ? p.fixed[1] : hi); }
        if (lo === Infinity) { lo = 0; hi = 1; }
        const pad = (hi - lo) * 0.06 || 1; lo -= pad; hi += pad;
        const y0 = y, h = p.h;
        const Y = v => y0 + h - (v - lo) / (hi - lo) * h;
        geom.panels.push({key: p.key, y0, h, Y, lo, hi});
        node.appendChild(svg("text", {x: L, y: y0 - 5, class: "ptitle"}, `${p.title} (${p.unit})`));
        niceTicks(lo, hi, p.h > 100 ? 5 : 3).forEach(v => {
          node.appendChild(svg("line", {x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid"}));
          node.appendChild(svg("text", {x: L - 6, y: Y(v) + 4, "text-anchor": "end"}, String(v)));
        });
        node.appendChild(svg("rect", {x: L, y: y0, width: W - L - R, height: h, fill: "none", class: "axis"}));
        node.appendChild(svg("text", {x: 12, y: y0 + h / 2, transform: `rotate(-90 12 ${y0 + h / 2})`, "text-anchor": "middle"}, p.axis || p.unit));
        const order = {band: 0, step: 1, line: 2, rings: 3};
        vis.sort((a, b) => order[a.kind] - order[b.kind]).forEach(s => drawSeries(s, X, Y));
        y += h + gap - 16;
      }
      // date axis
      months.forEach(m => {
        const d = new Date(m);
        node.appendChild(svg("line", {x1: X(m), x2: X(m), y1: bottom, y2: bottom + 4, class: "axis"}));
        node.appendChild(svg("text", {x: X(m) + 3, y: bottom + 16}, d.toLocaleString("en", {month: "short", timeZone: "UTC"}) + (d.getUTCMonth() === 0 ? " " + d.getUTCFullYear() : "")));
      });
      // markers
      (data.markers || []).forEach(m => {
        const col = MARKER_COLOURS[m.marker] || "#455a64";
        const s = m.start_date ? t(m.start_date) : null, e = m.end_date ? t(m.end_date) : null, ev = m.event_date ? t(m.event_date) : (s || e);
        if (s && e && e > s) node.appendChild(svg("rect", {x: X(s), y: top, width: Math.max(1, X(e) - X(s)), height: bottom - top, fill: col, "fill-opacity": 0.08}));
        if (ev) {
          node.appendChild(svg("line", {x1: X(ev), x2: X(ev), y1: top, y2: bottom, stroke: col, class: "marker-line"}));
          node.appendChild(svg("text", {x: X(ev) + 3, y: top + 10, fill: col}, `${m.marker}${m.confidence !== null && m.confidence !== undefined ? " " + Math.round(100 * m.confidence) + "%" : ""}`));
        }
      });
      if (selected !== null) node.appendChild(svg("line", {x1: X(selected), x2: X(selected), y1: top, y2: bottom, class: "selected-date"}));
      const cursor = svg("line", {x1: -10, x2: -10, y1: top, y2: bottom, class: "cursor"});
      node.appendChild(cursor);
      geom.cursor = cursor; geom.top = top; geom.bottom = bottom;
    }

    function segments(pts) {
      const out = []; let cur = [];
      pts.forEach((p, i) => { if (i && p.t - pts[i - 1].t > 32 * DAY) { out.push(cur); cur = []; } cur.push(p); });
      if (cur.length) out.push(cur);
      return out;
    }
    function drawSeries(s, X, Y) {
      const attrs = {fill: "none", stroke: s.color, "stroke-width": s.thin ? 1.2 : 1.8, "stroke-dasharray": s.dash ? "5 3" : null, "stroke-linejoin": "round", "data-series": s.id};
      if (s.kind === "band") {
        segments(s.pts).forEach(seg => {
          if (seg.length < 2) return;
          const d = "M" + seg.map(p => `${X(p.t).toFixed(1)} ${Y(p.hi).toFixed(1)}`).join("L") + "L" + seg.slice().reverse().map(p => `${X(p.t).toFixed(1)} ${Y(p.lo).toFixed(1)}`).join("L") + "Z";
          node.appendChild(svg("path", {d, fill: s.color, "fill-opacity": s.group.startsWith("peers") ? 0.13 : 0.16, stroke: "none", "data-series": s.id}));
        });
      } else if (s.kind === "step") {
        const d = s.pts.map(p => `M${X(p.t0).toFixed(1)} ${Y(p.y).toFixed(1)}H${X(p.t1).toFixed(1)}`).join("");
        node.appendChild(svg("path", Object.assign({}, attrs, {d, "stroke-width": 2.4, "stroke-opacity": 0.85, "stroke-dasharray": s.dash ? "2 2" : null})));
      } else if (s.kind === "rings") {
        s.pts.forEach(p => node.appendChild(svg("circle", {cx: X(p.t), cy: Y(p.y), r: 3.2, fill: "#fff", stroke: s.color, "stroke-width": 1.4, "data-series": s.id})));
      } else {
        segments(s.pts).forEach(seg => node.appendChild(svg("path", Object.assign({}, attrs, {d: "M" + seg.map(p => `${X(p.t).toFixed(1)} ${Y(p.y).toFixed(1)}`).join("L")}))));
        if (s.points || s.pts.length < 40) s.pts.forEach(p => node.appendChild(svg("circle", {cx: X(p.t), cy: Y(p.y), r: s.thin ? 1.4 : 2.3, fill: p.unknown ? "#fff" : s.color, stroke: s.color, "data-series": s.id})));
      }
    }

    function nearestValues(tm) {
      const out = [];
      for (const s of series) {
        if (!groups.get(s.group) || s.kind === "band" || s.kind === "step") continue;
        let best = null;
        s.pts.forEach(p => { if (best === null || Math.abs(p.t - tm) < Math.abs(best.t - tm)) best = p; });
        if (best && Math.abs(best.t - tm) <= 3 * DAY) out.push(`${s.label}: ${best.y.toFixed(2)}`);
      }
      return out;
    }
    node.addEventListener("mousemove", ev => {
      if (!geom) return;
      const r = node.getBoundingClientRect(), vx = (ev.clientX - r.left) / r.width * node.viewBox.baseVal.width;
      if (vx < geom.L || vx > geom.W - geom.R) return;
      const tm = geom.t0 + (vx - geom.L) / (geom.W - geom.L - geom.R) * (geom.t1 - geom.t0);
      geom.cursor.setAttribute("x1", vx); geom.cursor.setAttribute("x2", vx);
      const vals = nearestValues(tm);
      readout.textContent = new Date(tm).toISOString().slice(0, 10) + (vals.length ? " · " + vals.join(" · ") : "");
    });
    node.addEventListener("click", ev => {
      if (!geom || !o.onPick) return;
      const r = node.getBoundingClientRect(), vx = (ev.clientX - r.left) / r.width * node.viewBox.baseVal.width;
      o.onPick(geom.t0 + (vx - geom.L) / (geom.W - geom.L - geom.R) * (geom.t1 - geom.t0));
    });
    window.addEventListener("resize", () => draw());

    return {
      setData(d) {
        data = d; series = buildSeries(d); groups = new Map();
        series.forEach(s => { if (!groups.has(s.group)) groups.set(s.group, s.visible); });
        legend(); draw();
      },
      select(tm) { selected = tm; draw(); },
      seriesIds() { return series.map(s => s.id); },
    };
  }
  return {create, parseDate: t};
})();
