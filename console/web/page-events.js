// Events: a search by PC, time, kind, path and process, newest first, with
// each event's full JSON on demand; and the process tree of one PC.

import { h, fill, pre } from "./dom.js";
import { t } from "./i18n.js";
import * as api from "./api.js";
import { tenantParam, table, section, fmtTime, field, link, errorBox } from "./ui.js";

const FIELDS = ["agent", "from", "to", "kind", "dataset", "action", "path", "process"];

function get(o, dotted) {
  let cur = o;
  for (const p of dotted.split(".")) {
    if (!cur || typeof cur !== "object" || !(p in cur)) return undefined;
    cur = cur[p];
  }
  return cur;
}

function str(v) {
  if (v === undefined || v === null) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

// datetime-local value <-> unix milliseconds (local time).
function toMs(v) {
  if (!v) return "";
  const ms = new Date(v).getTime();
  return Number.isFinite(ms) ? ms : "";
}

function toLocal(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + "T" + p(d.getHours()) + ":" + p(d.getMinutes());
}

function summary(ev) {
  const e = ev.event || {};
  const path = get(e, "file.path");
  const proc = get(e, "process.executable") || get(e, "process.name");
  const rule = get(e, "rule.name");
  return [rule ? h("span", { class: "rule" }, str(rule)) : null,
    path ? h("span", { class: "path" }, str(path)) : null,
    proc ? h("span", { class: "proc" }, str(proc) + (get(e, "process.pid") !== undefined ? " (" + str(get(e, "process.pid")) + ")" : "")) : null];
}

export async function render(main, args, ctx) {
  const p = ctx.params;
  const agents = await api.get("agents", { tenant: tenantParam(), limit: 200 }).catch(() => ({ items: [] }));
  if (!ctx.alive()) return;
  const agentSel = h("select", { id: "ev-agent", name: "agent" }, h("option", { value: "" }, t("filter.all_pcs")),
    (Array.isArray(agents.items) ? agents.items : []).map((a) =>
      h("option", { value: a.id, selected: a.id === p.get("agent") }, a.host_name || a.id)));
  if (p.get("agent") && agentSel.value !== p.get("agent")) {
    agentSel.appendChild(h("option", { value: p.get("agent"), selected: true }, p.get("agent")));
  }
  const from = h("input", { type: "datetime-local", id: "ev-from", value: p.get("from") ? toLocal(Number(p.get("from"))) : "" });
  const to = h("input", { type: "datetime-local", id: "ev-to", value: p.get("to") ? toLocal(Number(p.get("to"))) : "" });
  const kind = h("select", { id: "ev-kind" }, ["", "event", "alert"].map((k) =>
    h("option", { value: k, selected: k === (p.get("kind") || "") }, k ? t("evkind." + k) : t("filter.all"))));
  const dataset = h("select", { id: "ev-dataset" }, ["", "yamori.file", "yamori.process", "yamori.response", "yamori.agent"]
    .map((d) => h("option", { value: d, selected: d === (p.get("dataset") || "") }, d || t("filter.all"))));
  const action = h("input", { id: "ev-action", value: p.get("action") || "", placeholder: "creation" });
  const path = h("input", { id: "ev-path", value: p.get("path") || "", placeholder: "/home/" });
  const proc = h("input", { id: "ev-process", value: p.get("process") || "", placeholder: "bash" });
  const form = h("form", { class: "filters", role: "search", method: "get", action: "/" },
    field(t("col.pc"), agentSel), field(t("ev.from"), from), field(t("ev.to"), to), field(t("col.kind"), kind),
    field(t("ev.dataset"), dataset), field(t("ev.action"), action), field(t("ev.path"), path, t("ev.path_hint")),
    field(t("ev.process"), proc, t("ev.process_hint")),
    h("button", { type: "submit", class: "btn primary" }, t("filter.apply")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    const vals = { agent: agentSel.value, from: toMs(from.value), to: toMs(to.value), kind: kind.value,
      dataset: dataset.value, action: action.value, path: path.value, process: proc.value };
    for (const f of FIELDS) if (vals[f] !== "" && vals[f] !== undefined) q.set(f, String(vals[f]));
    if (p.get("tree") && agentSel.value) q.set("tree", "1");
    ctx.go("#/events?" + q.toString());
  });

  const params = { tenant: tenantParam(), agent: p.get("agent") || "", from_ms: p.get("from") || "", to_ms: p.get("to") || "",
    kind: p.get("kind") || "", dataset: p.get("dataset") || "", action: p.get("action") || "", path: p.get("path") || "",
    process: p.get("process") || "", limit: 100 };
  const listBox = h("div", { id: "event-list" });
  const more = h("div", { class: "pager" });
  const rows = [];
  const draw = () => fill(listBox, table([
    { label: t("col.time"), cell: (e) => fmtTime(e.ts_ms) },
    { label: t("col.pc"), cell: (e) => link("#/pcs/" + api.seg(e.agent_id), e.host_name || e.agent_id) },
    { label: t("col.kind"), cell: (e) => h("span", { class: ["badge", e.kind === "alert" ? "sev-high" : null] },
      t("evkind." + (e.kind === "alert" ? "alert" : "event"))) },
    { label: t("ev.dataset"), cell: (e) => str(e.dataset) },
    { label: t("ev.action"), cell: (e) => str(e.action) },
    { label: t("ev.detail"), cell: (e) => h("div", null, summary(e),
      h("details", { class: "raw" }, h("summary", null, t("inc.raw_event")), pre(JSON.stringify(e.event, null, 2), "json"))) },
  ], rows, { cls: "events", empty: t("ev.none") }));
  const load = async (before) => {
    const r = await api.get("events", Object.assign({}, params, { before_id: before || "" }));
    if (!ctx.alive()) return;
    for (const e of Array.isArray(r.items) ? r.items : []) rows.push(e);
    draw();
    fill(more);
    if (r.next_before_id !== null && r.next_before_id !== undefined) {
      more.appendChild(h("button", { type: "button", class: "btn", on: { click: () => load(r.next_before_id).catch((e) =>
        fill(more, errorBox(e))) } }, t("list.more")));
    }
  };
  const parts = [h("h1", null, t("nav.events")), form];
  if (p.get("agent")) {
    parts.push(h("p", null, p.get("tree") ? link("#/events?agent=" + api.seg(p.get("agent")), t("ev.hide_tree"))
      : link("#/events?agent=" + api.seg(p.get("agent")) + "&tree=1", t("pc.tree"))));
  }
  if (p.get("tree") && p.get("agent")) parts.push(await treeSection(p.get("agent"), p.get("from"), p.get("to"), ctx));
  parts.push(section(t("ev.results"), listBox, more));
  if (!ctx.alive()) return;
  fill(main, parts);
  await load(null);
}

// The process tree: roots are processes whose parent is not in the window.
async function treeSection(agentId, from, to, ctx) {
  let r;
  try {
    r = await api.get("agents/" + api.seg(agentId) + "/processes", { from_ms: from || "", to_ms: to || "" });
  } catch (e) {
    return section(t("ev.tree"), errorBox(e));
  }
  if (!ctx.alive()) return null;
  const nodes = Array.isArray(r.nodes) ? r.nodes : [];
  const byId = new Map();
  const kids = new Map();
  for (const n of nodes) if (n.entity_id) byId.set(n.entity_id, n);
  const roots = [];
  for (const n of nodes) {
    const parent = n.parent_entity_id;
    if (parent && byId.has(parent) && parent !== n.entity_id) {
      if (!kids.has(parent)) kids.set(parent, []);
      kids.get(parent).push(n);
    } else {
      roots.push(n);
    }
  }
  const seen = new Set();
  const item = (n, depth) => {
    if (seen.has(n) || depth > 64) return null;
    seen.add(n);
    const children = (kids.get(n.entity_id) || []).sort((a, b) => (a.start_ms || 0) - (b.start_ms || 0));
    return h("li", { class: n.end_ms ? "ended" : "running" },
      h("span", { class: "proc-name" }, str(n.name)), " ",
      h("span", { class: "proc-pid" }, "PID " + str(n.pid)), " ",
      h("span", { class: "muted" }, fmtTime(n.start_ms) + (n.end_ms ? " – " + fmtTime(n.end_ms) : "")),
      h("div", { class: "proc-args" }, Array.isArray(n.args) && n.args.length ? n.args.map(str).join(" ") : str(n.executable)),
      children.length ? h("ul", null, children.map((c) => item(c, depth + 1))) : null);
  };
  roots.sort((a, b) => (a.start_ms || 0) - (b.start_ms || 0));
  return section(t("ev.tree"), nodes.length ? h("ul", { class: "tree", id: "process-tree" }, roots.map((n) => item(n, 0)))
    : h("p", { class: "muted" }, t("ev.tree_none")));
}
