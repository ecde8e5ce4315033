// The dashboard: the shell (header, menu, language and tenant choice), the
// hash router (#/overview, #/incidents/7 ...), login, logout and password
// change. The pages live in page-*.js; each exports render(main, args, ctx)
// and may register a stop function for its timers with ctx.onLeave(fn).

import { h, fill } from "./dom.js";
import { t, lang, setLang, LANGS } from "./i18n.js";
import * as api from "./api.js";
import { session, isProvider, isAdmin, errorBox, field, okBox, loading, tenantName } from "./ui.js";
import * as overview from "./page-overview.js";
import * as pcs from "./page-pcs.js";
import * as incidents from "./page-incidents.js";
import * as events from "./page-events.js";
import * as settings from "./page-settings.js";
import * as admin from "./page-admin.js";
import * as report from "./page-report.js";

const root = document.getElementById("app");

// Menu entries: [route, dictionary key, shown when].
const MENU = [
  ["overview", "nav.overview", () => true],
  ["pcs", "nav.pcs", () => true],
  ["incidents", "nav.incidents", () => true],
  ["events", "nav.events", () => true],
  ["settings", "nav.settings", () => true],
  ["users", "nav.users", () => isAdmin()],
  ["audit", "nav.audit", () => true],
  ["report", "nav.report", () => true],
];

const ROUTES = {
  overview: overview.render,
  pcs: pcs.render,
  incidents: incidents.render,
  events: events.render,
  settings: settings.render,
  users: admin.renderUsers,
  audit: admin.renderAudit,
  report: report.render,
  password: renderPassword,
};

let leaveFns = [];
let generation = 0;

function leave() {
  for (const fn of leaveFns) {
    try {
      fn();
    } catch (e) {
      /* a page's cleanup must not stop navigation */
    }
  }
  leaveFns = [];
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch (e) {
      return p;
    }
  });
  return { parts, params: new URLSearchParams(qs || "") };
}

function langSwitch() {
  const sel = h("select", { id: "lang", class: "lang", "aria-label": t("lang.label") },
    LANGS.map((l) => h("option", { value: l, selected: l === lang() }, t("lang." + l))));
  sel.addEventListener("change", () => {
    setLang(sel.value);
    route();
  });
  return sel;
}

function tenantSwitch() {
  if (!isProvider()) return null;
  const sel = h("select", { id: "tenant", class: "tenant-select", "aria-label": t("tenant.choose") },
    h("option", { value: "", selected: session.tenant === null }, t("tenant.all")),
    session.tenants.map((tn) => h("option", { value: String(tn.id), selected: session.tenant === tn.id },
      tenantName(tn))));
  sel.addEventListener("change", () => {
    session.tenant = sel.value === "" ? null : Number(sel.value);
    try {
      sessionStorage.setItem("yamori.tenant", sel.value);
    } catch (e) {
      /* storage may be off */
    }
    route();
  });
  return sel;
}

function shell(current) {
  const user = session.user;
  const menu = h("nav", { class: "menu", "aria-label": t("nav.label") },
    MENU.filter(([, , show]) => show()).map(([r, key]) =>
      h("a", { href: "#/" + r, class: r === current ? "active" : null, "aria-current": r === current ? "page" : null },
        t(key))));
  const who = h("div", { class: "who" },
    h("span", { class: "user", id: "user-name" }, user.name),
    h("span", { class: "role" }, t("role." + user.role)),
    user.tenant ? h("span", { class: "tenant-name" }, tenantName(user.tenant)) : null,
    h("a", { href: "#/password", class: "small" }, t("nav.password")),
    h("button", { type: "button", class: "btn small", id: "logout", on: { click: logout } }, t("nav.logout")));
  const header = h("header", { class: "top" },
    h("div", { class: "brand" }, h("a", { href: "#/overview" }, t("app.name"))),
    h("div", { class: "controls" }, tenantSwitch(), langSwitch()), who);
  const main = h("main", { id: "main", class: "page page-" + current });
  fill(root, header, menu, main);
  return main;
}

async function logout() {
  try {
    await api.post("logout", {});
  } catch (e) {
    /* the session is gone either way */
  }
  session.user = null;
  api.setCsrf("");
  location.hash = "#/login";
  route();
}

function renderLogin(nextHash) {
  leave();
  document.title = t("login.title") + " — " + t("app.name");
  const user = h("input", { name: "user", id: "login-user", autocomplete: "username", required: true });
  const pass = h("input", { name: "password", id: "login-password", type: "password", autocomplete: "current-password",
    required: true });
  const status = h("div", { class: "status" });
  const button = h("button", { type: "submit", class: "btn primary", id: "login-submit" }, t("login.submit"));
  const form = h("form", { class: "login-form", id: "login-form", method: "post", action: "/" },
    h("h1", null, t("app.name")),
    h("p", { class: "lead" }, t("login.lead")),
    field(t("login.user"), user), field(t("login.password"), pass), button, status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    fill(status);
    try {
      const r = await api.post("login", { user: user.value, password: pass.value });
      await startSession(r);
      location.hash = nextHash && !nextHash.startsWith("#/login") ? nextHash : "#/overview";
      route();
    } catch (e) {
      fill(status, errorBox(e.code === "bad_login" ? { code: "bad_login_form" } : e));
    } finally {
      button.disabled = false;
    }
  });
  fill(root, h("div", { class: "login-page" }, h("div", { class: "controls" }, langSwitch()), form));
  user.focus();
}

async function startSession(me) {
  session.user = me.user;
  api.setCsrf(me.csrf);
  session.tenants = [];
  if (me.user && me.user.tenant === null) {
    try {
      const r = await api.get("tenants");
      session.tenants = Array.isArray(r.items) ? r.items : [];
    } catch (e) {
      session.tenants = [];
    }
    let saved = null;
    try {
      saved = sessionStorage.getItem("yamori.tenant");
    } catch (e) {
      saved = null;
    }
    const id = saved ? Number(saved) : null;
    session.tenant = id !== null && session.tenants.some((tn) => tn.id === id) ? id : null;
  } else {
    session.tenant = null;
  }
}

function renderPassword(main) {
  const old = h("input", { type: "password", id: "pw-old", autocomplete: "current-password", required: true });
  const nw = h("input", { type: "password", id: "pw-new", autocomplete: "new-password", required: true,
    minlength: 12 });
  const again = h("input", { type: "password", id: "pw-again", autocomplete: "new-password", required: true });
  const status = h("div", { class: "status" });
  const form = h("form", { class: "card narrow", method: "post", action: "/", novalidate: true },
    h("h1", null, t("pw.title")),
    field(t("pw.old"), old), field(t("pw.new"), nw, t("pw.hint")), field(t("pw.again"), again),
    h("button", { type: "submit", class: "btn primary" }, t("pw.submit")), status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fill(status);
    if (nw.value !== again.value) {
      fill(status, errorBox({ code: "pw_mismatch" }));
      return;
    }
    if (nw.value.length < 12) {
      fill(status, errorBox({ code: "weak_password" }));
      return;
    }
    try {
      await api.post("password", { old: old.value, new: nw.value });
      form.reset();
      fill(status, okBox(t("pw.done")));
    } catch (e) {
      fill(status, errorBox(e));
    }
  });
  fill(main, form);
}

export async function route() {
  const gen = ++generation;
  leave();
  const { parts, params } = parseHash();
  document.documentElement.lang = lang();
  if (!session.user) {
    if (parts[0] !== "login") {
      // A page load with a live session: ask who we are first.
      try {
        const me = await api.get("me");
        if (gen !== generation) return;
        await startSession(me);
      } catch (e) {
        if (gen !== generation) return;
        renderLogin(location.hash);
        return;
      }
    } else {
      renderLogin("#/overview");
      return;
    }
  }
  if (parts[0] === "login") {
    location.hash = "#/overview";
    return;
  }
  const name = ROUTES[parts[0]] ? parts[0] : "overview";
  const main = shell(name);
  document.title = t(name === "password" ? "pw.title" : "nav." + name) + " — " + t("app.name");
  fill(main, loading());
  const ctx = {
    params,
    alive: () => gen === generation,
    onLeave: (fn) => leaveFns.push(fn),
    go: (hash) => {
      location.hash = hash;
    },
    refresh: () => route(),
  };
  try {
    await ROUTES[name](main, parts.slice(1), ctx);
  } catch (e) {
    if (gen === generation) fill(main, errorBox(e));
  }
}

api.setLoginRequired(() => {
  session.user = null;
  api.setCsrf("");
  leave();
  renderLogin(location.hash);
});

window.addEventListener("hashchange", route);
route();
