// Overview: one plain verdict, the PCs by state in big numbers, open
// incidents, and for the provider's staff a table of tenants.

import { h, fill } from "./dom.js";
import { t } from "./i18n.js";
import * as api from "./api.js";
import { session, isProvider, tenantParam, table, section, fmtNum, fmtTime, incStateBadge, severityBadge,
  tenantName, link, incidentTitle } from "./ui.js";

function verdict(tot) {
  if (!tot || !tot.pcs) return ["verdict-none", t("ov.verdict.none")];
  if (tot.danger > 0) return ["verdict-danger", t("ov.verdict.danger")];
  if (tot.offline > 0 || tot.check > 0 || tot.incidents_open > 0) return ["verdict-check", t("ov.verdict.check")];
  return ["verdict-safe", t("ov.verdict.safe")];
}

function tile(state, n) {
  return h("a", { class: ["tile", "st-" + state], href: "#/pcs?state=" + state, dataset: { state } },
    h("span", { class: "tile-num" }, fmtNum(n || 0)),
    h("span", { class: "tile-label" }, t("state." + state)),
    h("span", { class: "tile-hint" }, t("state." + state + ".hint")));
}

export async function render(main, args, ctx) {
  const [ov, inc] = await Promise.all([
    api.get("overview", { tenant: tenantParam() }),
    api.get("incidents", { tenant: tenantParam(), state: "open", limit: 10 }),
  ]);
  if (!ctx.alive()) return;
  const tot = ov.totals || {};
  const [vcls, vtext] = verdict(tot);
  const parts = [
    h("div", { class: ["verdict", vcls], id: "verdict", role: "status" }, vtext),
    h("div", { class: "tiles" }, ["safe", "check", "danger", "offline"].map((s) => tile(s, tot[s]))),
    h("p", { class: "summary" }, t("ov.pcs_total", { n: fmtNum(tot.pcs || 0) }), " · ",
      link("#/incidents?state=open", t("ov.incidents_open", { n: fmtNum(tot.incidents_open || 0) }))),
  ];
  const items = Array.isArray(inc.items) ? inc.items : [];
  parts.push(section(t("ov.open_incidents"),
    table([
      { label: t("col.incident"), cell: (i) => link("#/incidents/" + api.seg(i.id), incidentTitle(i)) },
      { label: t("col.pc"), cell: (i) => (i.agent ? i.agent.host_name : "") },
      { label: t("col.severity"), cell: (i) => severityBadge(i.severity) },
      { label: t("col.state"), cell: (i) => incStateBadge(i.state) },
      { label: t("col.last"), cell: (i) => fmtTime(i.last_ms) },
    ], items, { empty: t("ov.no_open_incidents") })));
  if (isProvider() && Array.isArray(ov.tenants)) {
    parts.push(section(t("ov.tenants"),
      table([
        { label: t("col.tenant"), cell: (tn) => {
          const a = h("a", { href: "#/overview", class: "tenant-link" }, tenantName(tn));
          a.addEventListener("click", (ev) => {
            ev.preventDefault();
            session.tenant = tn.id;
            ctx.refresh();
          });
          return a;
        } },
        { label: t("col.pcs"), cell: (tn) => fmtNum(tn.pcs), cls: "num" },
        { label: t("state.safe"), cell: (tn) => fmtNum(tn.safe), cls: "num" },
        { label: t("state.check"), cell: (tn) => fmtNum(tn.check), cls: "num" },
        { label: t("state.danger"), cell: (tn) => fmtNum(tn.danger), cls: "num" },
        { label: t("state.offline"), cell: (tn) => fmtNum(tn.offline), cls: "num" },
        { label: t("col.incidents_open"), cell: (tn) => fmtNum(tn.incidents_open), cls: "num" },
      ], ov.tenants, {
        rowClass: (tn) => (tn.danger > 0 ? "row-danger" : tn.check > 0 || tn.offline > 0 ? "row-check" : null),
      })));
  }
  fill(main, h("h1", null, t("nav.overview")), parts);
}
