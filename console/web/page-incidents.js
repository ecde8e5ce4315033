// Incidents: the list with a state filter, and one incident's detail: the
// alert, the file, the process and its parents, state and owner, notes,
// timeline and the response commands.

import { h, fill, pre } from "./dom.js";
import { t, lang } from "./i18n.js";
import * as api from "./api.js";
import { session, isProvider, canOperate, tenantParam, table, section, facts, fmtTime, fmtNum, incStateBadge,
  severityBadge, tenantName, link, field, errorBox, incidentTitle } from "./ui.js";
import { commandPanel } from "./page-commands.js";

const PAGE = 50;
const FILTERS = ["open", "new", "acknowledged", "resolved", ""];

function kindText(k, ruleset) {
  if (k === "malware" && ruleset === "sigma") return t("kind.behaviour");
  return k === "malware" || k === "silent" || k === "duplicate" ? t("kind." + k) : String(k || "");
}

// A behaviour incident: each ATT&CK technique of its rule, told in plain
// words in the reader's language (texts from the console's table).
function techniqueSection(inc) {
  const ts = Array.isArray(inc.techniques) ? inc.techniques : [];
  if (!ts.length) return null;
  return section(t("inc.technique"), h("div", { class: "techniques", id: "incident-techniques" }, ts.map((x) => {
    const txt = x && x[lang()] && typeof x[lang()] === "object" ? x[lang()] : null;
    return h("div", { class: "technique", dataset: { technique: str(x.id) } },
      h("h3", { class: "technique-title" }, txt ? str(txt.title) : str(x.id)),
      txt ? h("p", { class: "technique-text" }, str(txt.text)) : null,
      txt ? h("p", { class: "technique-todo" }, h("strong", null, t("inc.technique_todo") + ": "), str(txt.todo)) : null,
      h("p", { class: "technique-id muted" }, t("inc.technique_id") + ": " + str(x.id)));
  })));
}

// What to do now: a behaviour incident's first known technique says it.
function todoText(inc) {
  if (inc.kind === "silent" || inc.kind === "duplicate") return t("inc.todo." + inc.kind);
  if (inc.ruleset === "sigma") {
    const x = (Array.isArray(inc.techniques) ? inc.techniques : []).find((y) => y && y[lang()]);
    return x ? str(x[lang()].todo) : t("inc.todo.behaviour");
  }
  return t("inc.todo.malware");
}

export async function render(main, args, ctx) {
  if (args[0]) return renderDetail(main, args[0], ctx);
  const state = ctx.params.has("state") ? ctx.params.get("state") : "open";
  const offset = Math.max(0, Number(ctx.params.get("offset")) || 0);
  const agent = ctx.params.get("agent") || "";
  const r = await api.get("incidents", { tenant: tenantParam(), state, agent, limit: PAGE, offset });
  if (!ctx.alive()) return;
  const tabs = h("nav", { class: "tabs", "aria-label": t("col.state") }, FILTERS.map((f) =>
    h("a", { href: "#/incidents?state=" + f, class: f === state ? "active" : null, dataset: { filter: f || "all" } },
      f ? t("filter." + f) : t("filter.all"))));
  const cols = [
    { label: t("col.incident"), cell: (i) => link("#/incidents/" + api.seg(i.id), incidentTitle(i),
      "incident-link") },
    { label: t("col.pc"), cell: (i) => (i.agent ? link("#/pcs/" + api.seg(i.agent.id), i.agent.host_name || i.agent.id) : "") },
  ];
  if (isProvider()) cols.push({ label: t("col.tenant"), cell: (i) => tenantName(i.tenant) });
  cols.push(
    { label: t("col.kind"), cell: (i) => kindText(i.kind, i.ruleset) },
    { label: t("col.severity"), cell: (i) => severityBadge(i.severity) },
    { label: t("col.state"), cell: (i) => incStateBadge(i.state) },
    { label: t("col.owner"), cell: (i) => i.owner || "—" },
    { label: t("col.count"), cell: (i) => fmtNum(i.count), cls: "num" },
    { label: t("col.file"), cell: (i) => i.file_path || "", cls: "path" },
    { label: t("col.last"), cell: (i) => fmtTime(i.last_ms) });
  const items = Array.isArray(r.items) ? r.items : [];
  const total = Number(r.total) || 0;
  const page = (o) => "#/incidents?state=" + state + (o ? "&offset=" + o : "");
  const pager = h("div", { class: "pager" }, h("span", null, t("list.count", { n: fmtNum(total) })),
    offset > 0 ? link(page(Math.max(0, offset - PAGE)), t("list.prev")) : null,
    offset + PAGE < total ? link(page(offset + PAGE), t("list.next")) : null);
  fill(main, h("h1", null, t("nav.incidents")), tabs,
    table(cols, items, { cls: "incidents", empty: t("inc.none"), rowData: (i) => ({ incident: i.id }) }), pager);
}

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

function alertSection(inc) {
  const alerts = Array.isArray(inc.alerts) ? inc.alerts : [];
  const latest = alerts.length ? alerts[0] : null;
  const e = latest && latest.event && typeof latest.event === "object" ? latest.event : {};
  const raw = h("details", { class: "raw" }, h("summary", null, t("inc.raw_event")), pre(JSON.stringify(e, null, 2), "json"));
  return section(t("inc.alert"),
    facts([
      [t("inc.rule"), str(get(e, "rule.name") || inc.rule)],
      get(e, "rule.description") ? [t("inc.rule_desc"), str(get(e, "rule.description"))] : null,
      [t("col.time"), latest ? fmtTime(latest.ts_ms) : fmtTime(inc.last_ms)],
      [t("inc.action"), str(get(e, "event.action"))],
      get(e, "event.outcome") ? [t("inc.outcome"), str(get(e, "event.outcome"))] : null,
      [t("inc.alert_count"), fmtNum(inc.count)],
    ]),
    latest ? raw : null,
    alerts.length > 1 ? h("details", { class: "raw" }, h("summary", null, t("inc.more_alerts", { n: alerts.length - 1 })),
      table([
        { label: t("col.time"), cell: (a) => fmtTime(a.ts_ms) },
        { label: t("col.file"), cell: (a) => str(get(a.event, "file.path")), cls: "path" },
        { label: t("inc.action"), cell: (a) => str(get(a.event, "event.action")) },
      ], alerts.slice(1))) : null);
}

function fileSection(inc) {
  const alerts = Array.isArray(inc.alerts) ? inc.alerts : [];
  const e = alerts.length && alerts[0].event ? alerts[0].event : {};
  return section(t("inc.file"), facts([
    [t("inc.path"), h("span", { class: "path", id: "incident-file" }, inc.file_path || str(get(e, "file.path")))],
    [t("inc.sha256"), h("span", { class: "hash" }, inc.file_sha256 || str(get(e, "file.hash.sha256")))],
    get(e, "file.size") !== undefined ? [t("inc.size"), fmtNum(get(e, "file.size"))] : null,
    get(e, "file.owner") || get(e, "file.uid") ? [t("inc.owner_user"), str(get(e, "file.owner") || get(e, "file.uid"))] : null,
    get(e, "yamori.quarantine.id") ? [t("inc.quarantine_id"), str(get(e, "yamori.quarantine.id"))] : null,
  ]));
}

function processSection(inc) {
  const procs = Array.isArray(inc.process) ? inc.process : [];
  return section(t("inc.process"), procs.length ? h("ol", { class: "proc-chain" }, procs.map((p, i) =>
    h("li", { class: i === 0 ? "actor" : "parent" },
      h("span", { class: "proc-role" }, i === 0 ? t("inc.actor") : t("inc.parent")),
      h("span", { class: "proc-name" }, str(p.name)),
      h("span", { class: "proc-pid" }, "PID " + str(p.pid)),
      h("div", { class: "proc-exe path" }, str(p.executable)),
      Array.isArray(p.args) && p.args.length ? h("div", { class: "proc-args" }, p.args.map(str).join(" ")) : null)))
    : h("p", { class: "muted" }, t("inc.process_unknown")));
}

function manageSection(inc, reload) {
  const status = h("div", { class: "status", role: "status" });
  const update = async (body) => {
    fill(status);
    try {
      await api.post("incidents/" + api.seg(inc.id), body);
      await reload();
    } catch (e) {
      fill(status, errorBox(e));
    }
  };
  const buttons = ["new", "acknowledged", "resolved"].filter((s) => s !== inc.state).map((s) =>
    h("button", { type: "button", class: "btn", dataset: { state: s }, on: { click: () => update({ state: s }) } },
      t("inc.set." + s)));
  const owner = h("input", { id: "incident-owner", value: inc.owner || "", placeholder: t("col.owner") });
  const ownerBtn = h("button", { type: "button", class: "btn", on: { click: () => update({ owner: owner.value }) } },
    t("inc.set_owner"));
  const mine = h("button", { type: "button", class: "btn", on: { click: () => update({ owner: session.user.name }) } },
    t("inc.take"));
  const note = h("textarea", { id: "incident-note", rows: 3, maxlength: 4000 });
  const noteBtn = h("button", { type: "button", class: "btn", on: { click: async () => {
    if (!note.value.trim()) return;
    await update({ note: note.value });
  } } }, t("inc.add_note"));
  return section(t("inc.manage"), h("div", { class: "row" }, buttons),
    h("div", { class: "row" }, field(t("col.owner"), owner), ownerBtn, mine),
    h("div", { class: "row" }, field(t("inc.note"), note), noteBtn), status);
}

function notesSection(inc) {
  const notes = Array.isArray(inc.notes) ? inc.notes : [];
  return section(t("inc.notes"), notes.length ? h("ul", { class: "notes" }, notes.map((n) =>
    h("li", null, h("div", { class: "note-head" }, fmtTime(n.at_ms), " · ", str(n.user)), pre(n.text, "note-text"))))
    : h("p", { class: "muted" }, t("none")));
}

function timelineSection(inc) {
  const tl = Array.isArray(inc.timeline) ? inc.timeline : [];
  return section(t("inc.timeline"), h("ol", { class: "timeline" }, tl.map((x) =>
    h("li", null, h("span", { class: "tl-time" }, fmtTime(x.at_ms)),
      h("span", { class: "tl-what" }, t("tl." + x.what) !== "tl." + x.what ? t("tl." + x.what) : str(x.what)),
      x.user ? h("span", { class: "tl-user" }, str(x.user)) : null,
      x.detail ? h("span", { class: "tl-detail" }, str(x.detail)) : null))));
}

async function renderDetail(main, id, ctx) {
  // The command panel of the previous rendering stops polling when the
  // incident is shown again after a change.
  let stopPanel = [];
  ctx.onLeave(() => stopPanel.forEach((fn) => fn()));
  const reload = async () => {
    const inc = await api.get("incidents/" + api.seg(id));
    if (!ctx.alive()) return;
    stopPanel.forEach((fn) => fn());
    stopPanel = [];
    const sub = { alive: ctx.alive, onLeave: (fn) => stopPanel.push(fn) };
    const agent = inc.agent || {};
    const procs = Array.isArray(inc.process) ? inc.process : [];
    const parts = [
      h("p", { class: "crumbs" }, link("#/incidents", t("nav.incidents")), " / #" + str(inc.id)),
      h("h1", { id: "incident-title" }, incidentTitle(inc)),
      h("div", { class: "badges" }, incStateBadge(inc.state), severityBadge(inc.severity),
        h("span", { class: "badge" }, kindText(inc.kind, inc.ruleset))),
      section(t("inc.summary"), facts([
        [t("col.pc"), agent.id ? link("#/pcs/" + api.seg(agent.id), agent.host_name || agent.id, "host") : ""],
        isProvider() ? [t("col.tenant"), tenantName(inc.tenant)] : null,
        [t("col.owner"), inc.owner || "—"],
        [t("inc.first"), fmtTime(inc.first_ms)],
        [t("inc.last"), fmtTime(inc.last_ms)],
        [t("inc.what_to_do"), todoText(inc)],
      ])),
    ];
    const techniques = inc.kind === "malware" && inc.ruleset === "sigma" ? techniqueSection(inc) : null;
    if (techniques) parts.push(techniques);
    if (inc.kind === "malware") parts.push(alertSection(inc), fileSection(inc), processSection(inc));
    if (inc.kind === "duplicate") parts.push(duplicateSection(inc));
    if (agent.id) {
      // A file the agent quarantined by itself names its quarantine entry.
      const quarantined = (Array.isArray(inc.alerts) ? inc.alerts : []).map((a) => get(a.event, "yamori.quarantine.id"))
        .find((q) => typeof q === "string" && q);
      parts.push(await commandPanel(agent.id, inc, sub, { path: inc.file_path || "", process: procs[0] || null,
        quarantineId: quarantined || "" }));
    }
    if (canOperate()) parts.push(manageSection(inc, reload));
    parts.push(notesSection(inc), timelineSection(inc));
    if (!ctx.alive()) return;
    fill(main, parts);
  };
  await reload();
}

// A duplicate host: the machine id and every record that names it.
function duplicateSection(inc) {
  const d = inc.duplicate || {};
  const ids = Array.isArray(d.agents) ? d.agents.filter((x) => typeof x === "string") : [];
  return section(t("inc.duplicate"), facts([
    [t("inc.host_id"), h("code", null, str(d.host_id))],
    [t("inc.records"), h("ul", null, ids.map((x) => h("li", null, link("#/pcs/" + api.seg(x), x))))],
  ]));
}
