// A small vector map (hand-written SVG, Web Mercator): parcels coloured by flag, pan, zoom,
// click a parcel to open it, optional XYZ basemap. Works offline without the basemap.
"use strict";
const CBMMap = (() => {
  const {svg, clear} = CBM;
  const S = Math.pow(2, 24);  // SVG units per world (Mercator 0..1) unit: ~2.4 m at the equator

  function merc(lon, lat) {
    const s = Math.sin(lat * Math.PI / 180);
    return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
  }

  function create(node, opts) {
    const o = Object.assign({onSelect: null, basemap: null}, opts);
    let origin = null, view = null, features = [], selectedPid = null, selectedBounds = null;
    const gTiles = svg("g", {class: "tiles"}), gParcels = svg("g", {class: "parcels"});
    node.appendChild(gTiles); node.appendChild(gParcels);

    const project = (lon, lat) => { const [x, y] = merc(lon, lat); return [(x - origin[0]) * S, (y - origin[1]) * S]; };
    function ringsOf(geom) {
      if (!geom) return [];
      if (geom.type === "Polygon") return geom.coordinates;
      if (geom.type === "MultiPolygon") return geom.coordinates.flat();
      return [];
    }
    function pathD(geom) {
      return ringsOf(geom).map(r => "M" + r.map(([lon, lat]) => project(lon, lat).map(v => v.toFixed(2)).join(" ")).join("L") + "Z").join("");
    }
    function bounds(geom) {
      let b = [Infinity, Infinity, -Infinity, -Infinity];
      ringsOf(geom).forEach(r => r.forEach(([lon, lat]) => { const [x, y] = project(lon, lat); b = [Math.min(b[0], x), Math.min(b[1], y), Math.max(b[2], x), Math.max(b[3], y)]; }));
      return b;
    }
    function aspect() { const r = node.getBoundingClientRect(); return (r.width || 400) / (r.height || 300); }
    function setView(v) {
      view = v;
      node.setAttribute("viewBox", `${v[0]} ${v[1]} ${v[2]} ${v[3]}`);
      drawTiles();
    }
    function fit(b, pad) {
      const w = Math.max(b[2] - b[0], 20), h = Math.max(b[3] - b[1], 20), cx = (b[0] + b[2]) / 2, cy = (b[1] + b[3]) / 2;
      let vw = w * (1 + 2 * pad), vh = h * (1 + 2 * pad);
      const a = aspect();
      if (vw / vh < a) vw = vh * a; else vh = vw / a;
      setView([cx - vw / 2, cy - vh / 2, vw, vh]);
    }
    function zoom(factor, cx, cy) {
      if (!view) return;
      const [x, y, w, h] = view;
      cx = cx === undefined ? x + w / 2 : cx; cy = cy === undefined ? y + h / 2 : cy;
      setView([cx - (cx - x) * factor, cy - (cy - y) * factor, w * factor, h * factor]);
    }
    function toView(ev) {
      const r = node.getBoundingClientRect();
      return [view[0] + (ev.clientX - r.left) / r.width * view[2], view[1] + (ev.clientY - r.top) / r.height * view[3]];
    }
    function drawTiles() {
      clear(gTiles);
      if (!o.basemap || !view) return;
      const r = node.getBoundingClientRect();
      const worldPerPx = view[2] / (r.width || 400) / S;
      const z = Math.max(0, Math.min(19, Math.round(Math.log2(1 / (256 * worldPerPx)))));
      const n = Math.pow(2, z);
      const wx0 = view[0] / S + origin[0], wy0 = view[1] / S + origin[1];
      const wx1 = wx0 + view[2] / S, wy1 = wy0 + view[3] / S;
      const tiles = [];
      for (let tx = Math.floor(wx0 * n); tx <= Math.floor(wx1 * n); tx++) {
        for (let ty = Math.max(0, Math.floor(wy0 * n)); ty <= Math.min(n - 1, Math.floor(wy1 * n)); ty++) tiles.push([tx, ty]);
      }
      if (tiles.length > 64) return;
      tiles.forEach(([tx, ty], i) => {
        const href = o.basemap.replace("{z}", z).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty).replace("{s}", "abc"[i % 3]);
        gTiles.appendChild(svg("image", {href, x: (tx / n - origin[0]) * S, y: (ty / n - origin[1]) * S, width: S / n, height: S / n, preserveAspectRatio: "none"}));
      });
    }

    // pan / zoom / click
    let drag = null;
    node.addEventListener("pointerdown", ev => { if (!view) return; drag = {x: ev.clientX, y: ev.clientY, v: view.slice(), moved: false}; node.setPointerCapture(ev.pointerId); });
    node.addEventListener("pointermove", ev => {
      if (!drag) return;
      const r = node.getBoundingClientRect(), dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; node.classList.add("dragging"); }
      if (drag.moved) setView([drag.v[0] - dx / r.width * drag.v[2], drag.v[1] - dy / r.height * drag.v[3], drag.v[2], drag.v[3]]);
    });
    node.addEventListener("pointerup", ev => {
      const d = drag; drag = null; node.classList.remove("dragging");
      if (!d || d.moved) return;
      const hit = document.elementFromPoint(ev.clientX, ev.clientY);
      if (hit && hit.dataset && hit.dataset.pid && o.onSelect) o.onSelect(Number(hit.dataset.pid));
    });
    // keyboard: arrows pan, + / - zoom, 0 fits; Enter on a focused parcel opens it
    node.addEventListener("keydown", ev => {
      if (!view) return;
      const step = {ArrowLeft: [-0.15, 0], ArrowRight: [0.15, 0], ArrowUp: [0, -0.15], ArrowDown: [0, 0.15]}[ev.key];
      if (step) { ev.preventDefault(); setView([view[0] + step[0] * view[2], view[1] + step[1] * view[3], view[2], view[3]]); return; }
      if (ev.key === "+" || ev.key === "=") { ev.preventDefault(); zoom(0.7); return; }
      if (ev.key === "-" || ev.key === "_") { ev.preventDefault(); zoom(1.4); return; }
      if (ev.key === "0") { ev.preventDefault(); api.zoomToParcel(); return; }
      const t = ev.target;
      if (ev.key === "Enter" && t && t.dataset && t.dataset.pid && o.onSelect) { ev.preventDefault(); o.onSelect(Number(t.dataset.pid)); }
    });
    node.addEventListener("wheel", ev => { if (!view) return; ev.preventDefault(); const [cx, cy] = toView(ev); zoom(ev.deltaY > 0 ? 1.25 : 0.8, cx, cy); }, {passive: false});

    let colouring = "flag";
    function classOf(p) {
      const key = colouring === "decision" ? "dec-" + (p.decision || "none") : (p.flag || "nodata");
      return `parcel ${key}${p.pid === selectedPid ? " selected" : ""}`;
    }
    function allBounds() {
      return features.map(f => bounds(f.geometry)).reduce((a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])]);
    }
    const api = {
      setData(fc, pid, focusGeom) {
        features = fc.features || [];
        selectedPid = pid;
        const [lon, lat] = focusGeom ? ringsOf(focusGeom)[0][0] : features.length ? ringsOf(features[0].geometry)[0][0] : [0, 0];
        origin = merc(lon, lat);
        clear(gParcels);
        let sel = null;
        for (const f of features) {
          const p = f.properties || {};
          const flagged = p.flag === "red" || p.flag === "yellow";
          const path = svg("path", {d: pathD(f.geometry), class: classOf(p), "data-pid": p.pid, "fill-rule": "evenodd",
                                    tabindex: flagged && p.pid !== pid ? 0 : null, role: flagged ? "link" : null,
                                    "aria-label": flagged ? `${p.parcel_id}: ${p.flag}${p.decision ? ", " + p.decision : ""}` : null},
            svg("title", {}, `${p.parcel_id} · ${p.crop_name || p.crop_code || "?"} · ${p.flag || "no flag"}${p.decision ? " · " + p.decision : ""}`));
          path.__props = p;
          if (p.pid === pid) sel = path; else gParcels.appendChild(path);
        }
        if (focusGeom && !sel) sel = svg("path", {d: pathD(focusGeom), class: "parcel nodata selected", "fill-rule": "evenodd"});
        if (sel) gParcels.appendChild(sel);  // on top
        selectedBounds = focusGeom ? bounds(focusGeom) : null;
        this.zoomToParcel();
      },
      zoomToParcel() {
        if (selectedBounds) fit(selectedBounds, 1.6);
        else if (features.length) fit(allBounds(), 0.05);
      },
      fitAll() { if (features.length) fit(allBounds(), 0.05); },
      colourBy(mode) {
        colouring = mode === "decision" ? "decision" : "flag";
        gParcels.querySelectorAll("path.parcel").forEach(n => { if (n.__props) n.setAttribute("class", classOf(n.__props)); });
      },
      zoom,
      count() { return features.length; },
    };
    return api;
  }
  return {create};
})();
