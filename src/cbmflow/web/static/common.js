// cbmflow workbench: shared helpers. Every value from the API reaches the page through
// textContent or setAttribute, never through innerHTML (a STAC id with HTML stays text).
"use strict";
const CBM = (() => {
  const base = document.querySelector('meta[name="cbm-base"]').getAttribute("content") || "";
  const airflow = base.replace(/\/[^/]*$/, "");  // the api-server root the plugin is mounted under
  const SVGNS = "http://www.w3.org/2000/svg";

  function add(node, kids) {
    for (const k of kids.flat()) {
      if (k === null || k === undefined || k === false) continue;
      node.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return node;
  }
  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.setAttribute("class", v);
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    return node;
  }
  function el(tag, attrs, ...kids) { return add(setAttrs(document.createElement(tag), attrs), kids); }
  function svg(tag, attrs, ...kids) { return add(setAttrs(document.createElementNS(SVGNS, tag), attrs), kids); }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  class ApiError extends Error { constructor(status, msg) { super(msg); this.status = status; } }
  async function get(path, params) {
    const url = new URL(base + path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v === null || v === undefined || v === "") continue;
      if (Array.isArray(v)) v.forEach(x => url.searchParams.append(k, x)); else url.searchParams.set(k, v);
    }
    const r = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (r.status === 401 || r.status === 403) {
      location.assign(airflow + "/auth/login?next=" + encodeURIComponent(location.pathname + location.search));
      throw new ApiError(r.status, "not logged in");
    }
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { const j = await r.json(); if (j.detail) msg = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) { /* not JSON */ }
      throw new ApiError(r.status, msg);
    }
    return r.json();
  }
  async function post(path, body) {
    const r = await fetch(new URL(base + path, location.origin), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", Accept: "application/json"}, body: JSON.stringify(body)});
    if (r.status === 401) {
      location.assign(airflow + "/auth/login?next=" + encodeURIComponent(location.pathname + location.search));
      throw new ApiError(r.status, "not logged in");
    }
    let j = {};
    try { j = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) throw new ApiError(r.status, j.detail ? (typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail)) : r.status + " " + r.statusText);
    return j;
  }
  function url(path, params) {
    const u = new URL(base + path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v === null || v === undefined || v === "") continue;
      if (Array.isArray(v)) v.forEach(x => u.searchParams.append(k, x)); else u.searchParams.set(k, v);
    }
    return u.pathname + u.search;
  }
  function parcelUrl(pid, runId) { return url("/parcel/" + encodeURIComponent(pid), runId ? {run: runId} : {}); }
  function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(0) + " %"; }
  function num(x, d) { return x === null || x === undefined ? "–" : Number(x).toFixed(d === undefined ? 2 : d); }
  function ha(m2) { return m2 === null || m2 === undefined ? "–" : (m2 / 1e4).toFixed(2) + " ha"; }
  function badge(flag, big) { return el("span", {class: "badge " + (flag || "nodata") + (big ? " big" : "")}, flag || "no flag"); }
  function showError(where, e) {
    const box = el("div", {class: "error"}, String(e && e.message ? e.message : e));
    if (where) where.prepend(box); else document.body.prepend(box);
  }
  function header(active) {
    const nav = el("nav", {},
      el("a", {href: base + "/flags", class: active === "flags" ? "active" : null}, "Flag list"),
      el("a", {href: base + "/scenes", class: active === "scenes" ? "active" : null}, "Failed scenes"),
      el("a", {href: base + "/docs", class: active === "docs" ? "active" : null}, "API"),
      el("a", {href: airflow + "/", target: "_top"}, "Airflow"));
    const input = el("input", {type: "search", name: "q", placeholder: "parcel id or pid…", "aria-label": "find parcel", autocomplete: "off", list: "cbm-search-list"});
    const list = el("datalist", {id: "cbm-search-list"});
    let timer = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      const q = input.value.trim();
      if (!q) return;
      timer = setTimeout(async () => {
        try {
          const hits = await get("/api/search", {q, limit: 12});
          clear(list);
          hits.forEach(h => list.appendChild(el("option", {value: h.parcel_id}, `${h.aoi} ${h.year} · ${h.crop_name || h.crop_code || ""}`)));
        } catch (e) { /* typing: ignore */ }
      }, 200);
    });
    const form = el("form", {role: "search"}, input, list, el("button", {type: "submit"}, "Find"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const q = input.value.trim();
      if (!q) return;
      try {
        const hits = await get("/api/search", {q, limit: 2});
        const exact = hits.find(h => h.parcel_id === q || String(h.pid) === q) || hits[0];
        if (exact) location.assign(parcelUrl(exact.pid)); else showError(document.querySelector("main"), new Error("no parcel matches " + q));
      } catch (e) { showError(document.querySelector("main"), e); }
    });
    const h = el("header", {class: "top"},
      el("span", {class: "brand"}, "cbmflow", el("small", {}, "Checks by Monitoring")), nav, form);
    document.body.prepend(h);
  }
  return {base, airflow, el, svg, clear, get, post, url, parcelUrl, pct, num, ha, badge, showError, header, ApiError};
})();
