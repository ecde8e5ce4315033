// Tenant settings: contacts and help desk, notification recipients and
// webhook, silent minutes, retention days, enrollment tokens and the
// installer download. Provider admins can also add tenants.

import { h, fill } from "./dom.js";
import { t } from "./i18n.js";
import * as api from "./api.js";
import { session, isAdmin, isProvider, currentTenantId, table, section, fmtTime, fmtNum, field, errorBox, okBox,
  tenantName } from "./ui.js";

export async function render(main, args, ctx) {
  const id = currentTenantId();
  const parts = [h("h1", null, t("nav.settings"))];
  if (isProvider() && isAdmin()) parts.push(newTenantSection(ctx));
  if (id === null || id === undefined) {
    parts.push(h("p", { class: "muted" }, t("set.no_tenant")));
    fill(main, parts);
    return;
  }
  const tn = session.user.tenant || session.tenants.find((x) => x.id === id) || { id };
  const s = await api.get("tenants/" + api.seg(id) + "/settings");
  if (!ctx.alive()) return;
  parts.push(h("p", { class: "lead" }, t("set.for", { name: tenantName(tn) })));
  parts.push(settingsSection(id, s));
  if (isAdmin()) {
    const tokens = await tokensSection(id, ctx);
    parts.push(tokens.box);
    const status = h("div", { class: "status", role: "status" });
    const dl = h("button", { type: "button", class: "btn", id: "installer-link" }, t("set.installer_download"));
    dl.addEventListener("click", async () => {
      fill(status);
      try {
        await api.download("tenants/" + api.seg(id) + "/installer", "yamori-installer.run");
      } catch (e) {
        fill(status, errorBox(e));
      }
      await tokens.load();
    });
    parts.push(section(t("set.installer"), h("p", null, t("set.installer_hint")), dl, status));
  }
  if (!ctx.alive()) return;
  fill(main, parts);
}

function settingsSection(id, s) {
  const admin = isAdmin();
  const ro = admin ? null : true;
  const display = h("input", { id: "set-display", value: s.display || "", disabled: ro, maxlength: 200 });
  const helpdesk = h("textarea", { id: "set-helpdesk", rows: 2, disabled: ro, maxlength: 500 });
  helpdesk.value = s.helpdesk || "";
  const langSel = h("select", { id: "set-lang", disabled: ro }, ["ja", "en"].map((l) =>
    h("option", { value: l, selected: (s.lang || "ja") === l }, t("lang." + l))));
  const emails = h("textarea", { id: "set-emails", rows: 3, disabled: ro });
  emails.value = (Array.isArray(s.emails) ? s.emails : []).join("\n");
  // The console posts to the webhook from inside the provider's network, so
  // only the provider's staff choose it, and only they see its URL (which
  // often holds a token): a customer learns whether there is one.
  const hookRo = admin && isProvider() ? null : true;
  const hookHint = !hookRo ? null : s.webhook_set ? t("set.webhook_provider_on") : t("set.webhook_provider");
  const webhook = h("input", { id: "set-webhook", type: "url", value: s.webhook_url || "", disabled: hookRo,
    placeholder: "https://" });
  const silent = h("input", { id: "set-silent", type: "number", min: 1, value: s.silent_minutes || "", disabled: ro });
  const retention = h("input", { id: "set-retention", type: "number", min: 1, value: s.retention_days || "",
    disabled: ro });
  const status = h("div", { class: "status", role: "status" });
  const form = h("form", { class: "settings", method: "post", action: "/" },
    h("h3", null, t("set.contacts")),
    field(t("set.display"), display), field(t("set.helpdesk"), helpdesk, t("set.helpdesk_hint")),
    field(t("set.lang"), langSel),
    h("h3", null, t("set.notify")),
    field(t("set.emails"), emails, t("set.emails_hint")), field(t("set.webhook"), webhook, hookHint),
    h("h3", null, t("set.limits")),
    field(t("set.silent"), silent, t("set.silent_hint")), field(t("set.retention"), retention, t("set.retention_hint")),
    admin ? h("button", { type: "submit", class: "btn primary", id: "settings-save" }, t("save")) : null, status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(status);
    const body = {
      display: display.value,
      helpdesk: helpdesk.value,
      lang: langSel.value,
      emails: emails.value.split(/[\n,]+/).map((x) => x.trim()).filter(Boolean),
      silent_minutes: Number(silent.value),
      retention_days: Number(retention.value),
    };
    if (!hookRo) body.webhook_url = webhook.value.trim();
    try {
      await api.post("tenants/" + api.seg(id) + "/settings", body);
      fill(status, okBox(t("saved")));
    } catch (e) {
      fill(status, errorBox(e));
    }
  });
  return section(t("set.title"), form);
}

async function tokensSection(id, ctx) {
  const listBox = h("div", { id: "tokens" });
  const shown = h("div", { class: "token-shown", role: "status" });
  const load = async () => {
    try {
      const r = await api.get("tenants/" + api.seg(id) + "/tokens");
      if (!ctx.alive()) return;
      const items = Array.isArray(r.items) ? r.items : [];
      fill(listBox, table([
        { label: t("tok.id"), cell: (x) => h("code", null, x.id) },
        { label: t("tok.kind"), cell: (x) => (x.kind === "installer" ? t("tok.kind_installer") : t("tok.kind_manual")) },
        { label: t("tok.created"), cell: (x) => fmtTime(x.created_ms) },
        { label: t("tok.expires"), cell: (x) => (x.expires_ms ? fmtTime(x.expires_ms) : t("tok.never")) },
        { label: t("tok.uses"), cell: (x) => fmtNum(x.uses) + " / " + (x.max_uses ? fmtNum(x.max_uses) : "∞"), cls: "num" },
        { label: t("col.state"), cell: (x) => (x.revoked ? t("tok.revoked") : t("tok.active")) },
        { label: "", cell: (x) => (x.revoked ? "" : h("button", { type: "button", class: "btn small",
          dataset: { revoke: x.id }, on: { click: async () => {
            if (!window.confirm(t("tok.revoke_confirm"))) return;
            try {
              await api.post("tokens/" + api.seg(x.id) + "/revoke", {});
            } catch (e) {
              fill(shown, errorBox(e));
            }
            await load();
          } } }, t("tok.revoke"))) },
      ], items, { empty: t("tok.none") }));
    } catch (e) {
      fill(listBox, errorBox(e));
    }
  };
  const days = h("input", { id: "tok-days", type: "number", min: 1, value: 30 });
  const uses = h("input", { id: "tok-uses", type: "number", min: 0, value: 0 });
  const create = h("button", { type: "button", class: "btn primary", id: "tok-create" }, t("tok.create"));
  create.addEventListener("click", async () => {
    fill(shown);
    try {
      const r = await api.post("tenants/" + api.seg(id) + "/tokens",
        { expires_days: Number(days.value) || 30, max_uses: Number(uses.value) || 0 });
      const box = h("textarea", { class: "token", readonly: true, rows: 3, id: "token-value" });
      box.value = r.token || "";
      fill(shown, h("p", { class: "msg ok" }, t("tok.shown_once")), box);
      box.select();
    } catch (e) {
      fill(shown, errorBox(e));
    }
    await load();
  });
  await load();
  const box = section(t("tok.title"), h("p", null, t("tok.hint")),
    h("div", { class: "row" }, field(t("tok.days"), days), field(t("tok.max_uses"), uses, t("tok.max_uses_hint")), create),
    shown, listBox);
  return { box, load };
}

function newTenantSection(ctx) {
  const name = h("input", { id: "tenant-new-name", pattern: "[a-z0-9][a-z0-9-]*", maxlength: 63, required: true });
  const display = h("input", { id: "tenant-new-display", maxlength: 200 });
  const status = h("div", { class: "status", role: "status" });
  const form = h("form", { class: "row", method: "post", action: "/" }, field(t("tenant.name"), name, t("tenant.name_hint")),
    field(t("set.display"), display), h("button", { type: "submit", class: "btn" }, t("tenant.add")), status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const tn = await api.post("tenants", { name: name.value, display: display.value });
      const r = await api.get("tenants");
      session.tenants = Array.isArray(r.items) ? r.items : session.tenants;
      if (tn && tn.id !== undefined) session.tenant = tn.id;
      ctx.refresh();
    } catch (e) {
      fill(status, errorBox(e));
    }
  });
  return h("details", { class: "card" }, h("summary", null, t("tenant.new")), form);
}
