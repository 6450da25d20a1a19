// Small DOM and formatting helpers shared by the pages. Elements are built with h(), never from
// HTML strings, so nothing the API returns is ever parsed as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function rate(bitsPerSecond) {
  if (!bitsPerSecond) return "0 bit/s";
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let i = 0;
  let v = bitsPerSecond;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${v.toFixed(v < 10 && i ? 1 : 0)} ${units[i]}`;
}

export function count(n) {
  return n === null || n === undefined ? "" : Number(n).toLocaleString("en");
}

export function dpidShort(dpid) {
  const trimmed = String(dpid).replace(/^0+/, "");
  return "0x" + (trimmed || "0");
}

export function switchLabel(sw) {
  return sw.name || dpidShort(sw.dpid);
}

// A table in a scrolling wrapper (focusable, so it scrolls from the keyboard): columns
// [{title, cell(row) -> node|string, className}]; rowAttrs(row) -> the attributes of its <tr>.
export function table(caption, columns, rows, {rowAttrs = () => ({}), attrs = {}} = {}) {
  return h("div", {class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption},
    h("table", attrs,
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map(c => h("th", {scope: "col", class: c.className}, c.title)))),
      h("tbody", {}, rows.length
        ? rows.map(row => h("tr", rowAttrs(row), columns.map(c => h("td", {class: c.className}, c.cell(row)))))
        : h("tr", {}, h("td", {colspan: columns.length, class: "empty"}, "none")))));
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

// Run `fn` once, `ms` from the first call (later calls meanwhile do not postpone it).
export function soon(fn, ms) {
  let timer = null;
  const wrapped = () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
  wrapped.cancel = () => { clearTimeout(timer); timer = null; };
  return wrapped;
}
