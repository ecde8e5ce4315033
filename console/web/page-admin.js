// Users (admins) and the audit log.

import { h, fill } from "./dom.js";
import { t } from "./i18n.js";
import * as api from "./api.js";
import { session, isProvider, tenantParam, table, section, fmtTime, field, errorBox, tenantName } from "./ui.js";

function tenantOf(id) {
  if (id === null || id === undefined) return t("tenant.provider");
  const tn = session.tenants.find((x) => x.id === id);
  return tn ? tenantName(tn) : session.user.tenant && session.user.tenant.id === id ? tenantName(session.user.tenant) : String(id);
}

export async function renderUsers(main, args, ctx) {
  const r = await api.get("users");
  if (!ctx.alive()) return;
  const items = Array.isArray(r.items) ? r.items : [];
  const name = h("input", { id: "user-new-name", required: true, maxlength: 64, autocomplete: "off" });
  const pass = h("input", { id: "user-new-password", type: "password", required: true, minlength: 12,
    autocomplete: "new-password" });
  const role = h("select", { id: "user-new-role" }, ["viewer", "operator", "admin"].map((x) =>
    h("option", { value: x }, t("role." + x))));
  let tenantSel = null;
  if (isProvider()) {
    tenantSel = h("select", { id: "user-new-tenant" }, h("option", { value: "" }, t("tenant.provider")),
      session.tenants.map((tn) => h("option", { value: String(tn.id), selected: session.tenant === tn.id }, tenantName(tn))));
  }
  const status = h("div", { class: "status", role: "status" });
  const form = h("form", { class: "row", method: "post", action: "/", novalidate: true }, field(t("user.name"), name),
    field(t("login.password"), pass, t("pw.hint")), field(t("user.role"), role),
    tenantSel ? field(t("col.tenant"), tenantSel) : null,
    h("button", { type: "submit", class: "btn primary" }, t("user.add")), status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(status);
    const tid = tenantSel ? (tenantSel.value === "" ? null : Number(tenantSel.value))
      : session.user.tenant ? session.user.tenant.id : null;
    try {
      await api.post("users", { name: name.value, password: pass.value, role: role.value, tenant_id: tid });
      ctx.refresh();
    } catch (e) {
      fill(status, errorBox(e));
    }
  });
  fill(main, h("h1", null, t("nav.users")),
    section(t("user.list"), table([
      { label: t("user.name"), cell: (u) => u.name },
      { label: t("user.role"), cell: (u) => (["viewer", "operator", "admin"].includes(u.role) ? t("role." + u.role) : u.role) },
      { label: t("col.tenant"), cell: (u) => (u.tenant && typeof u.tenant === "object" ? tenantName(u.tenant)
        : u.tenant_id === null || u.tenant_id === undefined ? t("tenant.provider")
          : session.tenants.some((x) => x.id === u.tenant_id) ? tenantOf(u.tenant_id) : String(u.tenant || u.tenant_id)) },
    ], items)),
    section(t("user.add"), form));
}

export async function renderAudit(main, args, ctx) {
  const r = await api.get("audit", { tenant: tenantParam(), limit: 200 });
  if (!ctx.alive()) return;
  const items = Array.isArray(r.items) ? r.items : [];
  fill(main, h("h1", null, t("nav.audit")), table([
    { label: t("col.time"), cell: (a) => fmtTime(a.at_ms) },
    { label: t("col.user"), cell: (a) => a.user || "" },
    { label: t("audit.action"), cell: (a) => h("code", null, a.action || "") },
    isProvider() ? { label: t("col.tenant"), cell: (a) => (a.tenant_id === null || a.tenant_id === undefined ? "—" : tenantOf(a.tenant_id)) } : null,
    { label: t("audit.target"), cell: (a) => a.target || "" },
    { label: t("audit.detail"), cell: (a) => a.detail || "" },
  ].filter(Boolean), items, { cls: "audit" }));
}

