// Shared pieces of the pages: the session state, formatting of times and
// states, tables, forms and error messages.

import { h, fill } from "./dom.js";
import { t, lang } from "./i18n.js";

// The logged-in user ({name, role, tenant}) and the tenant the provider's
// staff chose to look at (null: every tenant).
export const session = { user: null, tenant: null, tenants: [] };

export function isProvider() {
  return !!session.user && session.user.tenant === null;
}

export function canOperate() {
  return !!session.user && (session.user.role === "operator" || session.user.role === "admin");
}

export function isAdmin() {
  return !!session.user && session.user.role === "admin";
}

// The tenant id to pass as ?tenant= (the chosen one for provider staff).
export function tenantParam() {
  if (session.user && session.user.tenant) return session.user.tenant.id;
  return session.tenant;
}

// The tenant whose settings and report are shown: the user's own, or the
// chosen one, or the first one there is.
export function currentTenantId() {
  if (session.user && session.user.tenant) return session.user.tenant.id;
  if (session.tenant !== null && session.tenant !== undefined) return session.tenant;
  return session.tenants.length ? session.tenants[0].id : null;
}

export function tenantName(tn) {
  if (!tn) return "";
  return tn.display || tn.name || String(tn.id);
}

function locale() {
  return lang() === "en" ? "en-GB" : "ja-JP";
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined || ms === 0 || !Number.isFinite(Number(ms))) return "—";
  return new Intl.DateTimeFormat(locale(), {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).format(new Date(Number(ms)));
}

export function fmtDate(ms) {
  if (!ms) return "—";
  return new Intl.DateTimeFormat(locale(), { year: "numeric", month: "2-digit", day: "2-digit" }).format(
    new Date(Number(ms)));
}

// "3 minutes ago" in the chosen language.
export function fmtAgo(ms) {
  if (!ms) return t("never");
  const s = Math.max(0, Math.round((Date.now() - Number(ms)) / 1000));
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto" });
  if (s < 60) return rtf.format(-s, "second");
  if (s < 3600) return rtf.format(-Math.floor(s / 60), "minute");
  if (s < 86400) return rtf.format(-Math.floor(s / 3600), "hour");
  return rtf.format(-Math.floor(s / 86400), "day");
}

export function fmtNum(n) {
  if (n === null || n === undefined || n === "") return "—";
  if (typeof n !== "number") return String(n);
  return new Intl.NumberFormat(locale()).format(n);
}

const STATES = ["safe", "check", "danger", "offline"];

// A PC state badge: the colour is a class, the word comes from the dictionary.
// An incident's title for people: the kinds the console makes itself (an
// agent gone silent, a duplicate PC record) are named in the reader's
// language; a behaviour detection is named by its ATT&CK technique in the
// reader's language (the console's table); a file detection keeps the
// rule's own title.
export function incidentTitle(i) {
  if (i.kind === "silent" || i.kind === "duplicate") return t("kind." + i.kind);
  const tt = i.technique_title;
  if (i.ruleset === "sigma" && tt && typeof tt[lang()] === "string" && tt[lang()]) return tt[lang()];
  return i.title || i.rule || "#" + i.id;
}

export function stateBadge(state) {
  const s = STATES.includes(state) ? state : "unknown";
  return h("span", { class: ["badge", "st-" + s] }, t("state." + s));
}

const INC_STATES = ["new", "acknowledged", "resolved"];

export function incStateBadge(state) {
  const s = INC_STATES.includes(state) ? state : "unknown";
  return h("span", { class: ["badge", "inc-" + s] }, t("inc." + s));
}

export function severityBadge(sev) {
  const s = ["high", "medium", "low"].includes(sev) ? sev : "unknown";
  return h("span", { class: ["badge", "sev-" + s] }, t("sev." + s));
}

const CMD_STATES = ["queued", "sent", "done", "failed", "expired"];

export function cmdStateBadge(state) {
  const s = CMD_STATES.includes(state) ? state : "unknown";
  return h("span", { class: ["badge", "cmd-" + s] }, t("cmdst." + s));
}

// A table: columns [{label, cell(item) -> node|string, cls}], rows items.
export function table(columns, items, opts) {
  opts = opts || {};
  const head = h("tr", null, columns.map((c) => h("th", { class: c.cls, scope: "col" }, c.label)));
  const body = items.map((it) =>
    h("tr", { class: opts.rowClass ? opts.rowClass(it) : null, dataset: opts.rowData ? opts.rowData(it) : null },
      columns.map((c) => h("td", { class: c.cls, dataset: { label: c.label } }, c.cell(it)))));
  if (!items.length) {
    body.push(h("tr", null, h("td", { class: "empty", colspan: columns.length }, opts.empty || t("none"))));
  }
  return h("div", { class: "table-wrap" }, h("table", { class: ["list", opts.cls] }, h("thead", null, head),
    h("tbody", null, body)));
}

// A definition list of [label, value] pairs.
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", null, title), children);
}

// A plain message for an error from the API (or anything thrown).
export function errorText(e) {
  if (e && e.code) {
    const key = "err." + e.code;
    const msg = t(key);
    if (msg !== key) return msg;
    return t("err.generic") + " (" + e.code + (e.message && e.message !== e.code ? ": " + e.message : "") + ")";
  }
  return t("err.generic") + " (" + String(e) + ")";
}

export function errorBox(e) {
  return h("div", { class: "msg error", role: "alert" }, errorText(e));
}

export function okBox(text) {
  return h("div", { class: "msg ok", role: "status" }, text);
}

// A form field with its label.
export function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", { class: "label" }, label), input,
    hint ? h("span", { class: "hint" }, hint) : null);
}

// A button that runs an async action, disabled while it runs; the result or
// the error goes into the status element next to it.
export function actionButton(label, fn, opts) {
  opts = opts || {};
  const status = h("span", { class: "action-status", role: "status" });
  const btn = h("button", { type: "button", class: opts.cls || "btn", dataset: opts.data || null });
  btn.textContent = label;
  btn.addEventListener("click", async () => {
    if (opts.confirm && !window.confirm(opts.confirm)) return;
    btn.disabled = true;
    fill(status);
    try {
      const r = await fn();
      if (opts.done) fill(status, opts.done(r) || "");
    } catch (e) {
      fill(status, errorBox(e));
    } finally {
      btn.disabled = false;
    }
  });
  return h("span", { class: "action" }, btn, status);
}

export function link(hrefValue, text, cls) {
  return h("a", { href: hrefValue, class: cls }, text);
}

export function loading() {
  return h("p", { class: "loading" }, t("loading"));
}
