// Offline API documentation rendered from the app's own OpenAPI document.
"use strict";
(() => {
  const {el, get, clear, showError, base} = CBM;
  CBM.header("docs");
  document.getElementById("spec").setAttribute("href", base + "/openapi.json");
  function typeOf(s) {
    if (!s) return "";
    if (s.anyOf) return s.anyOf.map(typeOf).join(" | ");
    if (s.enum) return s.enum.map(v => JSON.stringify(v)).join(" | ");
    let t = s.type || (s.$ref ? s.$ref.split("/").pop() : "");
    if (t === "array") t = typeOf(s.items) + "[]";
    const lim = [];
    if (s.minimum !== undefined) lim.push("≥ " + s.minimum);
    if (s.maximum !== undefined) lim.push("≤ " + s.maximum);
    if (s.pattern) lim.push("pattern " + s.pattern);
    if (s.maxLength !== undefined) lim.push("max length " + s.maxLength);
    return t + (lim.length ? " (" + lim.join(", ") + ")" : "");
  }
  get("/openapi.json").then(spec => {
    document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}`;
    document.getElementById("desc").textContent = spec.info.description || "";
    const out = document.getElementById("out");
    clear(out);
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const params = (op.parameters || []).map(p => el("tr", {},
          el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, p.required ? "required" : "optional"),
          el("td", {}, typeOf(p.schema)), el("td", {}, p.description || (p.schema && p.schema.description) || "")));
        out.appendChild(el("section", {class: "card endpoint"},
          el("div", {}, el("span", {class: "method"}, method.toUpperCase()), el("code", {class: "path"}, base + path),
            (op.tags || []).length ? el("span", {class: "muted small"}, "  · " + op.tags.join(", ")) : null),
          el("p", {}, op.summary || ""), op.description && op.description !== op.summary ? el("p", {class: "muted"}, op.description) : null,
          params.length ? el("table", {class: "data"}, el("thead", {}, el("tr", {}, ["parameter", "in", "", "type", "description"].map(h => el("th", {}, h)))), el("tbody", {}, params)) : null));
      }
    }
  }).catch(e => showError(document.getElementById("out"), e));
})();
