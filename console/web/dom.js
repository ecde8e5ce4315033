// Building the page without HTML strings.
//
// Every element of the dashboard is made here with createElement, and every
// piece of text goes in through a text node: nothing a PC reported (host
// names, paths, command lines, rule metadata) is ever parsed as HTML. No
// attribute whose name starts with "on" and no "style" attribute can be set,
// and links only go to this origin.

// Control characters and the Unicode direction overrides are shown as
// visible escapes (\x1b, \u202e): a file name must not be able to reorder or
// hide the text around it.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function clean(s) {
  if (s === null || s === undefined) return "";
  s = String(s);
  return s.replace(CONTROL, (c) => {
    const n = c.charCodeAt(0);
    return n < 0x100 ? "\\x" + n.toString(16).padStart(2, "0") : "\\u" + n.toString(16).padStart(4, "0");
  });
}

// A same-origin path ("/api/ui/...", "#/incidents/7"); anything else is refused.
function safeHref(v) {
  v = String(v);
  if (/^#\//.test(v) || /^\/(?!\/)[^\\]*$/.test(v)) return v;
  return "#/";
}

// h("a", {href: "#/pcs", class: "x", dataset: {id: 1}, on: {click: fn}}, "text", child)
// Children are strings (added as text), numbers, nodes, arrays or null.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "on") {
        for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      } else if (k === "class") {
        el.className = Array.isArray(v) ? v.filter(Boolean).join(" ") : v;
      } else if (k === "dataset") {
        for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
      } else if (k === "value") {
        el.value = v;
      } else if (k === "selected") {
        el.defaultSelected = !!v;
        el.selected = !!v;
      } else if (k === "checked") {
        el.defaultChecked = !!v;
        el.checked = !!v;
      } else if (k === "disabled" || k === "required") {
        el[k] = !!v;
      } else if (/^on/i.test(k) || k === "style" || k === "srcdoc") {
        throw new Error("attribute not allowed: " + k);
      } else if (k === "href" || k === "src" || k === "action") {
        el.setAttribute(k, safeHref(v));
      } else {
        el.setAttribute(k, v === true ? "" : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(clean(c)));
  }
  return el;
}

// Replaces all children of el.
export function fill(el, ...children) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return append(el, children);
}

// Text in <pre> keeps its new lines (notes, pretty-printed JSON); other
// control characters are still shown as escapes.
export function pre(text, cls) {
  const el = document.createElement("pre");
  if (cls) el.className = cls;
  const lines = String(text === null || text === undefined ? "" : text).split("\n");
  el.textContent = lines.map(clean).join("\n");
  return el;
}
