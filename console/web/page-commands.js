// Response commands of one PC (optionally tied to an incident): the buttons
// that send them and the list of commands with their results, refreshed
// every two seconds while any of them is still queued or sent.

import { h, fill } from "./dom.js";
import { t } from "./i18n.js";
import * as api from "./api.js";
import { canOperate, section, table, fmtTime, cmdStateBadge, errorBox, field } from "./ui.js";

const POLL_MS = 2000;

function argsText(c) {
  const a = c.args && typeof c.args === "object" ? c.args : {};
  if (a.path) return a.path;
  if (a.id) return a.id;
  if (a.pid !== undefined) return "PID " + a.pid;
  return "";
}

function resultView(c, send) {
  const out = [];
  if (c.error) out.push(h("div", { class: "cmd-error" }, c.error));
  const r = c.result;
  if (r && typeof r === "object") {
    const rows = Object.entries(r).filter(([, v]) => v !== null && v !== undefined);
    out.push(h("dl", { class: "facts small" }, rows.map(([k, v]) =>
      [h("dt", null, t("res." + k) !== "res." + k ? t("res." + k) : k),
        h("dd", null, typeof v === "object" ? JSON.stringify(v) : String(v))])));
  }
  if (c.kind === "quarantine" && c.state === "done" && r && r.id && canOperate()) {
    out.push(h("button", { type: "button", class: "btn small", dataset: { restore: r.id },
      on: { click: () => send("restore", { id: String(r.id) }) } }, t("cmd.restore_this")));
  }
  if (c.has_bundle) {
    out.push(h("a", { class: "btn small", href: api.href("commands/" + api.seg(c.id) + "/bundle"), download: "",
      dataset: { bundle: c.id } }, t("cmd.download_bundle")));
  }
  return out;
}

// agentId: the PC; incident: the incident item or null; opts.process: the
// acting process (for kill); opts.path: the file (for scan and quarantine);
// opts.quarantineId: a quarantine entry to offer for restore.
export async function commandPanel(agentId, incident, ctx, opts) {
  opts = opts || {};
  const listBox = h("div", { class: "commands", id: "commands" });
  const status = h("div", { class: "status", id: "command-status", role: "status" });
  let timer = null;
  let stopped = false;
  ctx.onLeave(() => {
    stopped = true;
    if (timer) clearTimeout(timer);
  });

  async function load() {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    let items;
    try {
      const r = await api.get("commands", incident ? { incident: incident.id } : { agent: agentId });
      items = Array.isArray(r.items) ? r.items : [];
    } catch (e) {
      if (!stopped) fill(listBox, errorBox(e));
      return;
    }
    if (stopped || !ctx.alive()) return;
    items.sort((a, b) => (b.id || 0) - (a.id || 0));
    const pending = items.some((c) => c.state === "queued" || c.state === "sent");
    fill(listBox,
      pending ? h("p", { class: "pending", id: "commands-pending" }, t("cmd.pending")) : null,
      table([
        { label: t("col.time"), cell: (c) => fmtTime(c.created_ms) },
        { label: t("col.command"), cell: (c) => t("cmdkind." + c.kind) !== "cmdkind." + c.kind ? t("cmdkind." + c.kind) : c.kind },
        { label: t("col.target"), cell: (c) => argsText(c) },
        { label: t("col.state"), cell: (c) => cmdStateBadge(c.state) },
        { label: t("col.user"), cell: (c) => c.user || "" },
        { label: t("col.result"), cell: (c) => resultView(c, send) },
      ], items, {
        cls: "command-list", empty: t("cmd.none"),
        rowData: (c) => ({ cmd: c.id, kind: c.kind, state: c.state }),
      }));
    if (pending) timer = setTimeout(load, POLL_MS);
  }

  async function send(kind, args) {
    fill(status);
    const body = { kind, args };
    if (incident) body.incident_id = incident.id;
    try {
      const c = await api.post("agents/" + api.seg(agentId) + "/commands", body);
      fill(status, h("div", { class: "msg ok" }, t("cmd.sent", { kind: t("cmdkind." + kind), id: c && c.id ? c.id : "" })));
    } catch (e) {
      fill(status, errorBox(e));
    }
    await load();
  }

  const children = [];
  if (canOperate()) {
    const proc = opts.process || null;
    const scanPath = h("input", { id: "cmd-scan-path", value: opts.path || "/home", required: true });
    const qPath = h("input", { id: "cmd-quarantine-path", value: opts.path || "", required: true });
    const rId = h("input", { id: "cmd-restore-id", value: opts.quarantineId || "", placeholder: t("cmd.restore_id_hint") });
    const kPid = h("input", { id: "cmd-kill-pid", type: "number", min: 1, value: proc && proc.pid ? proc.pid : "" });
    const btn = (kind, label, fn, confirmText) => {
      const b = h("button", { type: "button", class: "btn", dataset: { cmd: kind } }, label);
      b.addEventListener("click", async () => {
        const args = fn();
        if (!args) return;
        if (confirmText && !window.confirm(confirmText)) return;
        b.disabled = true;
        try {
          await send(kind, args);
        } finally {
          b.disabled = false;
        }
      });
      return b;
    };
    const need = (input, key) => {
      if (!input.value.trim()) {
        fill(status, errorBox({ code: key }));
        input.focus();
        return false;
      }
      return true;
    };
    children.push(h("div", { class: "cmd-forms" },
      h("div", { class: "cmd-form" }, field(t("cmd.scan_path"), scanPath),
        btn("scan", t("cmdkind.scan"), () => (need(scanPath, "need_path") ? { path: scanPath.value } : null))),
      h("div", { class: "cmd-form" }, field(t("cmd.quarantine_path"), qPath),
        btn("quarantine", t("cmdkind.quarantine"), () => (need(qPath, "need_path") ? { path: qPath.value } : null))),
      h("div", { class: "cmd-form" }, field(t("cmd.restore_id"), rId),
        btn("restore", t("cmdkind.restore"), () => (need(rId, "need_id") ? { id: rId.value.trim() } : null))),
      h("div", { class: "cmd-form" }, field(t("cmd.kill_pid"), kPid),
        btn("kill", t("cmdkind.kill"), () => {
          if (!need(kPid, "need_pid")) return null;
          const a = { pid: Number(kPid.value) };
          if (proc && proc.entity_id && Number(proc.pid) === a.pid) a.entity_id = proc.entity_id;
          return a;
        }, t("cmd.kill_confirm"))),
      h("div", { class: "cmd-form" }, h("p", { class: "hint" }, t("cmd.triage_hint")),
        btn("triage", t("cmdkind.triage"), () => ({})))),
    status);
  }
  children.push(listBox);
  await load();
  return section(t("cmd.title"), children);
}
