// PCs: the list with a host name search and a state filter, and one PC's
// detail (host facts, versions, last seen, health counters and gaps, update
// state, incidents, response commands).

import { h, fill } from "./dom.js";
import { t } from "./i18n.js";
import * as api from "./api.js";
import { isProvider, isAdmin, tenantParam, table, section, facts, fmtTime, fmtAgo, fmtNum, stateBadge, incStateBadge,
  severityBadge, tenantName, link, field, actionButton, incidentTitle } from "./ui.js";
import { commandPanel } from "./page-commands.js";

const PAGE = 50;

export async function render(main, args, ctx) {
  if (args[0]) return renderDetail(main, args[0], ctx);
  const q = ctx.params.get("q") || "";
  const state = ctx.params.get("state") || "";
  const offset = Math.max(0, Number(ctx.params.get("offset")) || 0);
  const r = await api.get("agents", { tenant: tenantParam(), q, state, limit: PAGE, offset });
  if (!ctx.alive()) return;
  const search = h("input", { type: "search", id: "pc-search", name: "q", value: q, placeholder: t("pcs.search") });
  const stateSel = h("select", { name: "state", id: "pc-state" },
    ["", "safe", "check", "danger", "offline"].map((s) =>
      h("option", { value: s, selected: s === state }, s ? t("state." + s) : t("filter.all"))));
  const form = h("form", { class: "filters", role: "search", method: "get", action: "/" },
    field(t("pcs.search_label"), search), field(t("col.state"), stateSel),
    h("button", { type: "submit", class: "btn" }, t("filter.apply")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    if (search.value) p.set("q", search.value);
    if (stateSel.value) p.set("state", stateSel.value);
    ctx.go("#/pcs" + (p.toString() ? "?" + p.toString() : ""));
  });
  const items = Array.isArray(r.items) ? r.items : [];
  const cols = [
    { label: t("col.pc"), cell: (a) => link("#/pcs/" + api.seg(a.id), a.host_name || a.id, "host") },
    { label: t("col.state"), cell: (a) => stateBadge(a.state) },
  ];
  if (isProvider()) cols.push({ label: t("col.tenant"), cell: (a) => tenantName(a.tenant) });
  cols.push(
    { label: t("col.os"), cell: (a) => a.os || "" },
    { label: t("col.version"), cell: (a) => a.version || "" },
    { label: t("col.last_seen"), cell: (a) => h("span", { title: fmtTime(a.last_seen_ms) }, fmtAgo(a.last_seen_ms)) },
    { label: t("col.incidents_open"), cell: (a) => fmtNum(a.incidents_open || 0), cls: "num" });
  const total = Number(r.total) || 0;
  const pager = h("div", { class: "pager" },
    h("span", null, t("list.count", { n: fmtNum(total) })),
    offset > 0 ? link(pageHash(q, state, Math.max(0, offset - PAGE)), t("list.prev")) : null,
    offset + PAGE < total ? link(pageHash(q, state, offset + PAGE), t("list.next")) : null);
  fill(main, h("h1", null, t("nav.pcs")), form, table(cols, items, { cls: "pcs", empty: t("pcs.none") }), pager);
}

function pageHash(q, state, offset) {
  const p = new URLSearchParams();
  if (q) p.set("q", q);
  if (state) p.set("state", state);
  if (offset) p.set("offset", String(offset));
  return "#/pcs?" + p.toString();
}

// Shows a JSON value's members as facts; nested values as compact JSON.
function objectFacts(obj) {
  if (!obj || typeof obj !== "object") return h("p", { class: "muted" }, t("none"));
  return facts(Object.entries(obj).map(([k, v]) =>
    [k, v !== null && typeof v === "object" ? JSON.stringify(v) : String(v)]));
}

async function renderDetail(main, id, ctx) {
  const a = await api.get("agents/" + api.seg(id));
  if (!ctx.alive()) return;
  const status = a.status && typeof a.status === "object" ? a.status : {};
  const counters = status.counters && typeof status.counters === "object" ? status.counters : null;
  const upd = a.update;
  const parts = [
    h("h1", { class: "host" }, a.host_name || a.id),
    h("p", null, stateBadge(a.state)),
    section(t("pc.summary"), facts([
      [t("col.pc"), a.host_name || ""],
      [t("pc.id"), a.id],
      isProvider() ? [t("col.tenant"), tenantName(a.tenant)] : null,
      [t("col.os"), a.os || ""],
      [t("col.version"), a.version || ""],
      [t("pc.rules_version"), a.rules_version || ""],
      [t("col.last_seen"), fmtTime(a.last_seen_ms) + " (" + fmtAgo(a.last_seen_ms) + ")"],
      [t("pc.enrolled"), fmtTime(a.enrolled_ms)],
    ])),
    section(t("pc.update"), upd ? facts([
      [t("pc.update.running"), upd.running || "—"],
      [t("pc.update.pending"), upd.pending || "—"],
      [t("pc.update.failed"), upd.failed || "—"],
      upd.reason ? [t("pc.update.reason"), upd.reason] : null,
    ]) : h("p", { class: "muted" }, t("pc.update.none"))),
    section(t("pc.health"),
      counters ? keyCounters(counters) : null,
      counters ? h("details", { class: "raw" }, h("summary", null, t("pc.all_counters")), objectFacts(counters)) : null,
      status.sensors ? h("h3", null, t("pc.sensors")) : null, status.sensors ? objectFacts(status.sensors) : null,
      status.policy ? h("h3", null, t("pc.policy")) : null, status.policy ? objectFacts(status.policy) : null,
      !counters && !status.sensors ? h("p", { class: "muted" }, t("none")) : null),
    section(t("pc.gaps"), table([
      { label: t("col.time"), cell: (g) => fmtTime(g.ts_ms) },
      { label: t("pc.gap.source"), cell: (g) => gapField(g, "source") },
      { label: t("pc.gap.count"), cell: (g) => gapField(g, "count"), cls: "num" },
      { label: t("pc.gap.reason"), cell: (g) => gapField(g, "reason") },
    ], Array.isArray(a.gaps) ? a.gaps : [], { empty: t("pc.gaps.none") })),
    section(t("nav.incidents"), table([
      { label: t("col.incident"), cell: (i) => link("#/incidents/" + api.seg(i.id), incidentTitle(i)) },
      { label: t("col.severity"), cell: (i) => severityBadge(i.severity) },
      { label: t("col.state"), cell: (i) => incStateBadge(i.state) },
      { label: t("col.last"), cell: (i) => fmtTime(i.last_ms) },
    ], Array.isArray(a.incidents) ? a.incidents : [])),
    h("p", null, link("#/events?agent=" + api.seg(a.id), t("pc.events")), " · ",
      link("#/events?agent=" + api.seg(a.id) + "&tree=1", t("pc.tree"))),
    await commandPanel(a.id, null, ctx, {}),
    section(t("pc.host_facts"), objectFacts(a.host)),
  ];
  // A record that is not the real PC (a duplicate) or a PC given away.
  if (isAdmin()) {
    parts.push(section(t("pc.revoke"), h("p", null, t("pc.revoke_hint")),
      actionButton(t("pc.revoke"), () => api.post("agents/" + api.seg(a.id) + "/revoke", {}),
        { data: { revoke: a.id }, confirm: t("pc.revoke_confirm"),
          done: () => { location.hash = "#/pcs"; return ""; } })));
  }
  if (!ctx.alive()) return;
  fill(main, parts);
}

// The counters that tell whether the PC is healthy, in words; the ones
// that mean lost or failed work are marked when they are not zero.
const KEY_COUNTERS = [
  ["events", false], ["alerts", false], ["quarantined", false], ["gaps", true], ["dropped", true],
  ["spool_pending", false], ["spool_shed", true], ["spool_corrupt", true], ["uplink_failures", true],
  ["scan_errors", true], ["write_scans_dropped", true], ["exec_denied", false],
];

function keyCounters(c) {
  return h("dl", { class: "facts counters" }, KEY_COUNTERS.filter(([k]) => c[k] !== undefined).map(([k, bad]) => {
    const v = Number(c[k]);
    return [h("dt", null, t("ctr." + k)),
      h("dd", { class: bad && v > 0 ? "warn" : null, dataset: { counter: k } }, fmtNum(Number.isFinite(v) ? v : c[k]))];
  }));
}

function gapField(g, name) {
  const e = g && g.event;
  const gap = e && e.yamori && e.yamori.gap ? e.yamori.gap : null;
  if (!gap || gap[name] === undefined || gap[name] === null) return "";
  return typeof gap[name] === "object" ? JSON.stringify(gap[name]) : String(gap[name]);
}

