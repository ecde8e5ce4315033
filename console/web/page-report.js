// The monthly report of one tenant: a printable page in plain words (PCs
// covered and how often online, detections, incidents and what was done,
// outdated agents, recommendations, whom to call). Print CSS in style.css
// hides the dashboard around it.

import { h, fill } from "./dom.js";
import { t } from "./i18n.js";
import * as api from "./api.js";
import { currentTenantId, table, fmtTime, fmtDate, fmtNum, tenantName, field, incStateBadge, incidentTitle } from "./ui.js";

function lastMonth() {
  const d = new Date();
  d.setDate(1);
  d.setMonth(d.getMonth() - 1);
  return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0");
}

function monthText(m) {
  const [y, mo] = String(m).split("-");
  return t("rep.month_text", { y, m: Number(mo) });
}

export async function render(main, args, ctx) {
  const id = currentTenantId();
  const month = /^\d{4}-\d{2}$/.test(ctx.params.get("month") || "") ? ctx.params.get("month") : lastMonth();
  const picker = h("input", { type: "month", id: "rep-month", value: month });
  const show = h("button", { type: "submit", class: "btn" }, t("rep.show"));
  const print = h("button", { type: "button", class: "btn primary", id: "rep-print", on: { click: () => window.print() } },
    t("rep.print"));
  const form = h("form", { class: "filters no-print", method: "get", action: "/" }, field(t("rep.month"), picker), show, print);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    ctx.go("#/report?month=" + encodeURIComponent(picker.value));
  });
  if (id === null || id === undefined) {
    fill(main, h("h1", { class: "no-print" }, t("nav.report")), h("p", { class: "muted" }, t("set.no_tenant")));
    return;
  }
  const r = await api.get("tenants/" + api.seg(id) + "/report", { month });
  if (!ctx.alive()) return;
  fill(main, form, reportView(r));
}

function reportView(r) {
  const pcs = Array.isArray(r.pcs) ? r.pcs : [];
  const det = r.detections || {};
  const incs = Array.isArray(r.incidents) ? r.incidents : [];
  const recs = Array.isArray(r.recommendations) ? r.recommendations : [];
  const tn = r.tenant || {};
  const avgOnline = pcs.length ? pcs.reduce((s, p) => s + (Number(p.online_pct) || 0), 0) / pcs.length : 0;
  const resolved = incs.filter((i) => i.state === "resolved").length;
  return h("article", { class: "report", id: "report" },
    h("header", { class: "report-head" },
      h("h1", null, t("rep.title", { month: monthText(r.month) })),
      h("p", { class: "report-tenant" }, tenantName(tn)),
      h("p", { class: "muted" }, t("rep.generated", { at: fmtTime(r.generated_ms) }))),
    h("section", { class: "report-summary" },
      h("h2", null, t("rep.summary")),
      h("ul", null,
        h("li", null, t("rep.sum.pcs", { n: fmtNum(pcs.length), pct: fmtNum(Math.round(avgOnline * 10) / 10) })),
        h("li", null, t("rep.sum.detections", { n: fmtNum(det.total || 0) })),
        h("li", null, t("rep.sum.incidents", { n: fmtNum(incs.length), r: fmtNum(resolved) })),
        h("li", null, t("rep.sum.outdated", { n: fmtNum(r.outdated_agents || 0), v: r.latest_version || "—" })))),
    h("section", null, h("h2", null, t("rep.recommendations")),
      h("ul", { class: "recs" }, (recs.length ? recs : ["none"]).map((k) =>
        h("li", null, t("rec." + k) !== "rec." + k ? t("rec." + k) : String(k))))),
    h("section", null, h("h2", null, t("rep.pcs")), table([
      { label: t("col.pc"), cell: (p) => p.host_name || p.id },
      { label: t("col.version"), cell: (p) => [p.version || "", p.outdated ? h("span", { class: "badge st-check" }, t("rep.outdated")) : null] },
      { label: t("rep.online"), cell: (p) => (p.online_pct === null || p.online_pct === undefined ? "—"
        : fmtNum(Math.round(Number(p.online_pct) * 10) / 10) + " %"), cls: "num" },
      { label: t("col.last_seen"), cell: (p) => fmtDate(p.last_seen_ms) },
    ], pcs)),
    h("section", null, h("h2", null, t("rep.detections")),
      h("p", null, t("rep.sum.detections", { n: fmtNum(det.total || 0) })),
      table([
        { label: t("inc.rule"), cell: (d) => d.title || d.rule || "" },
        { label: t("rep.rule_id"), cell: (d) => d.rule || "" },
        { label: t("col.count"), cell: (d) => fmtNum(d.count), cls: "num" },
      ], Array.isArray(det.by_rule) ? det.by_rule : [], { empty: t("rep.no_detections") })),
    h("section", null, h("h2", null, t("rep.incidents")), table([
      { label: t("col.incident"), cell: (i) => incidentTitle(i) },
      { label: t("col.pc"), cell: (i) => i.host_name || "" },
      { label: t("inc.first"), cell: (i) => fmtTime(i.first_ms) },
      { label: t("rep.notified"), cell: (i) => (i.notified_ms ? fmtTime(i.notified_ms) : "—") },
      { label: t("rep.acknowledged"), cell: (i) => (i.acknowledged_ms ? fmtTime(i.acknowledged_ms) : "—") },
      { label: t("col.state"), cell: (i) => incStateBadge(i.state) },
      { label: t("rep.resolved"), cell: (i) => (i.resolved_ms ? fmtTime(i.resolved_ms) : "—") },
      { label: t("rep.actions"), cell: (i) => (Array.isArray(i.actions) && i.actions.length
        ? i.actions.map((a) => (t("cmdkind." + a) !== "cmdkind." + a ? t("cmdkind." + a) : String(a))).join(t("list.sep"))
        : t("rep.no_actions")) },
    ], incs, { empty: t("rep.no_incidents") })),
    h("footer", { class: "report-foot" }, h("h2", null, t("rep.contact")), h("p", null, tn.helpdesk || t("rep.no_contact"))));
}
