// Drives the dashboard in Debian's chromium (headless) with playwright-core.
// Started by tests/integration/test_dashboard_browser.py with a JSON file
// describing the running console, agent, incident and hostile strings.
// Prints "ok - ..." / "FAIL - ..." lines; exits 0 when it could run to the
// end (the Python test counts the lines), 2 on a crash.

import { readFileSync, existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const T = 20000; // ordinary waits (ms)

let failures = 0;
function ok(cond, what) {
  if (cond) console.log("ok - " + what);
  else {
    failures++;
    console.log("FAIL - " + what);
  }
  return cond;
}

// What the dashboard shows for an endpoint string (dom.js clean()):
// control characters and direction overrides as visible escapes.
function shown(s) {
  return String(s).replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const n = c.charCodeAt(0);
    return n < 0x100 ? "\\x" + n.toString(16).padStart(2, "0") : "\\u" + n.toString(16).padStart(4, "0");
  });
}

const violations = [];
const pageErrors = [];
const cspConsole = [];
const dialogs = [];

const browser = await chromium.launch({ executablePath: cfg.chromium, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"] });
const context = await browser.newContext({ ignoreHTTPSErrors: true, locale: "ja-JP", viewport: { width: 1280, height: 900 } });
// Every page of a context reports Content-Security-Policy violations.
async function instrument(ctx) {
  await ctx.exposeBinding("__ymViolation", (src, v) => violations.push(v));
  await ctx.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__ymViolation(e.violatedDirective + " blocked=" + e.blockedURI + " at " + e.sourceFile + ":" + e.lineNumber);
    });
  });
}
await instrument(context);
const page = await context.newPage();
page.setDefaultTimeout(T);
page.on("pageerror", (e) => pageErrors.push(String(e)));
page.on("console", (m) => {
  const txt = m.text();
  if (/Content.Security.Policy|Refused to (execute|load|apply|evaluate)/i.test(txt)) cspConsole.push(txt);
});
page.on("dialog", async (d) => {
  dialogs.push(d.type() + ": " + d.message());
  await d.dismiss().catch(() => {});
});

async function shot(name) {
  await page.screenshot({ path: join(cfg.shots, name + ".png"), fullPage: true }).catch(() => {});
}

async function step(name, fn) {
  try {
    await fn();
  } catch (e) {
    ok(false, name + ": " + String(e && e.message ? e.message : e).split("\n")[0]);
    await shot("fail-" + name.replace(/[^a-z0-9]+/gi, "-"));
  }
}

// The wait decides the check: a wait that times out is a failed check.
async function seen(wait, what) {
  ok(await wait.then(() => true, () => false), what);
}

async function visibleText(text, timeout) {
  await page.getByText(text, { exact: false }).filter({ visible: true }).first().waitFor({ state: "visible", timeout: timeout || T });
  return true;
}

// True when the page has no horizontal scrolling (long strings wrap).
async function fitsWidth() {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
}

async function go(hash) {
  await page.evaluate((h) => {
    location.hash = h;
  }, hash);
}

// ---------------------------------------------------------------- login
await step("login", async () => {
  const resp = await page.goto(cfg.url + "/", { waitUntil: "load" });
  ok(resp && resp.status() === 200, "GET / answers 200");
  const csp = (resp && resp.headers()["content-security-policy"]) || "";
  ok(/script-src 'self'/.test(csp) && !/unsafe-inline|unsafe-eval/.test(csp),
    "the dashboard is served with a strict Content-Security-Policy (" + csp + ")");
  await page.locator("#login-user").waitFor({ timeout: T });
  ok(await visibleText("ユーザー名とパスワードを入力してください"), "the login page is in Japanese by default");
  await page.fill("#login-user", cfg.user);
  await page.fill("#login-password", "wrong password 123");
  await page.click("#login-submit");
  ok(await visibleText("ユーザー名またはパスワードが正しくありません"), "a wrong password is refused with a plain message");
  await page.fill("#login-password", cfg.password);
  await page.click("#login-submit");
  await page.locator("#verdict").waitFor({ timeout: T });
  const verdict = await page.locator("#verdict").textContent();
  ok(["すべてのPCは安全です", "確認が必要なPCがあります", "対応が必要なPCがあります"].includes(verdict),
    "the overview gives a one-line verdict (" + verdict + ")");
  ok(verdict === "対応が必要なPCがあります", "with an open malware incident the verdict asks for action");
  const danger = await page.locator('.tile[data-state="danger"] .tile-num').textContent();
  ok(Number(danger) >= 1, "the overview counts the PC with the incident as danger (" + danger + ")");
  ok((await page.locator("a.tenant-link", { hasText: "acme" }).count()) === 1, "provider staff see the table of companies");
  await shot("overview");
});

// ---------------------------------------------------------------- PCs
await step("pcs", async () => {
  await go("#/pcs");
  await page.locator("table.pcs").waitFor({ timeout: T });
  ok(await visibleText(cfg.real_host), "the PC list shows the real agent (" + cfg.real_host + ")");
  await page.fill("#pc-search", cfg.real_host);
  await page.press("#pc-search", "Enter");
  await page.waitForFunction(() => location.hash.includes("q="), null, { timeout: T });
  await page.locator("table.pcs a.host").first().waitFor({ timeout: T });
  const hosts = await page.locator("table.pcs a.host").allTextContents();
  ok(hosts.length >= 1 && hosts.every((x) => x.includes(cfg.real_host)), "the search narrows the list to the host");
  await page.locator("table.pcs a.host", { hasText: cfg.real_host }).first().click();
  await page.locator("h1.host").waitFor({ timeout: T });
  ok(await visibleText(cfg.real_agent), "the PC detail shows the agent id");
  ok(await visibleText("検知ルール版"), "the PC detail shows the rules version row");
  await shot("pc-detail");
});

// ---------------------------------------------------------------- incident: quarantine and restore
await step("incident", async () => {
  if (!ok(cfg.incident !== null, "an incident exists for the EICAR detection")) return;
  await go("#/incidents");
  await page.locator("table.incidents").waitFor({ timeout: T });
  await page.locator('tr[data-incident="' + cfg.incident + '"] a.incident-link').click();
  await page.locator("#incident-file").waitFor({ timeout: T });
  ok((await page.locator("#incident-file").textContent()) === cfg.eicar_path, "the incident shows the file's path");
  ok(await visibleText("実行したプロセス"), "the incident shows the acting process");
  await shot("incident");

});

await step("incident state and notes", async () => {
  if (cfg.incident === null) return;
  await go("#/incidents/" + cfg.incident);
  await page.locator("#incident-file").waitFor();
  await page.click('button[data-state="acknowledged"]');
  await seen(page.locator(".badges .inc-acknowledged").waitFor(), "the incident can be acknowledged from the dashboard");
  await page.click("text=自分が担当する");
  await seen(page.waitForFunction(() => document.querySelector("#incident-owner") && document.querySelector("#incident-owner").value === "admin"), "the incident can be taken by the user");
  await page.fill("#incident-note", "確認しました <b>note</b>");
  await page.click("text=メモを追加");
  ok(await visibleText("確認しました <b>note</b>"), "a note is added and shown as text");
  ok((await page.locator(".timeline li").count()) >= 3, "the timeline shows the changes");
});

await step("quarantine and restore", async () => {
  if (cfg.incident === null) return;
  await go("#/incidents/" + cfg.incident);
  await page.locator("#incident-file").waitFor();
  ok((await page.inputValue("#cmd-quarantine-path")) === cfg.eicar_path, "the quarantine field holds the file's path");
  let t0 = Date.now();
  await page.click('button[data-cmd="quarantine"]');
  await page.locator('#command-status .msg').first().waitFor();
  const sent = await page.locator("#command-status .msg").first().textContent();
  if (!ok(sent.includes("を送りました"), "the quarantine command was sent (" + sent + ")")) return;
  const qRow = page.locator('tr[data-kind="quarantine"]').first();
  await qRow.waitFor({ timeout: T });
  await page.locator('tr[data-kind="quarantine"][data-state="done"], tr[data-kind="quarantine"][data-state="failed"], tr[data-kind="quarantine"][data-state="expired"]')
    .first().waitFor({ timeout: cfg.command_timeout_ms });
  const qState = await qRow.getAttribute("data-state");
  console.log("info: quarantine from click to result on the page: " + (Date.now() - t0) + " ms");
  ok(qState === "done", "the quarantine finished on the PC (state " + qState + ")");
  ok((await qRow.textContent()).includes("完了"), "the dashboard shows the result as 完了");
  ok(!existsSync(cfg.eicar_path), "the file left its directory");
  await shot("quarantined");

  const restore = qRow.locator("button[data-restore]");
  await restore.waitFor({ timeout: T });
  t0 = Date.now();
  await restore.click();
  await page.locator('tr[data-kind="restore"]').first().waitFor({ timeout: T });
  await page.locator('tr[data-kind="restore"][data-state="done"], tr[data-kind="restore"][data-state="failed"], tr[data-kind="restore"][data-state="expired"]')
    .first().waitFor({ timeout: cfg.command_timeout_ms });
  const rState = await page.locator('tr[data-kind="restore"]').first().getAttribute("data-state");
  console.log("info: restore from click to result on the page: " + (Date.now() - t0) + " ms");
  ok(rState === "done", "the restore finished on the PC (state " + rState + ")");
  ok(existsSync(cfg.eicar_path) && statSync(cfg.eicar_path).size === cfg.eicar_size, "the file is back with its size");
  await shot("restored");

  // A triage bundle, collected on the PC and downloaded through the link.
  t0 = Date.now();
  await page.click('button[data-cmd="triage"]');
  await page.locator('tr[data-kind="triage"]').first().waitFor();
  await page.locator('tr[data-kind="triage"][data-state="done"], tr[data-kind="triage"][data-state="failed"], tr[data-kind="triage"][data-state="expired"]')
    .first().waitFor({ timeout: cfg.command_timeout_ms });
  const tRow = page.locator('tr[data-kind="triage"]').first();
  console.log("info: triage from click to result on the page: " + (Date.now() - t0) + " ms");
  ok((await tRow.getAttribute("data-state")) === "done", "the triage bundle was collected");
  const link = tRow.locator("a[data-bundle]");
  await link.waitFor();
  const resp = await page.request.get(new URL(await link.getAttribute("href"), cfg.url).href);
  const body = await resp.body();
  ok(resp.status() === 200 && body.length > 20 && body[0] === 0x1f && body[1] === 0x8b,
    "the bundle downloads as gzip (" + resp.status() + ", " + body.length + " bytes)");
});

// ---------------------------------------------------------------- language
await step("language", async () => {
  await go("#/overview");
  await page.locator("#verdict").waitFor({ timeout: T });
  const nav = page.locator('nav.menu a[href="#/incidents"]');
  ok((await nav.textContent()) === "インシデント", "the menu is in Japanese");
  await page.selectOption("#lang", "en");
  await seen(page.waitForFunction(() => document.querySelector('nav.menu a[href="#/incidents"]').textContent === "Incidents",
    null, { timeout: T }), "after switching, the menu is in English");
  ok((await page.locator("#verdict").textContent()) === "Some PCs need action now", "the verdict is in English");
  ok((await page.evaluate(() => document.documentElement.lang)) === "en", "the document language is en");
  await page.reload({ waitUntil: "load" });
  await page.locator("#verdict").waitFor({ timeout: T });
  ok((await nav.textContent()) === "Incidents", "the choice is kept over a reload");
  await page.selectOption("#lang", "ja");
  await seen(page.waitForFunction(() => document.querySelector('nav.menu a[href="#/incidents"]').textContent === "インシデント",
    null, { timeout: T }), "switching back gives Japanese again");
});

// ---------------------------------------------------------------- events, settings, report
await step("events", async () => {
  await go("#/events?agent=" + encodeURIComponent(cfg.real_agent) + "&tree=1");
  await page.locator("table.events").waitFor();
  ok((await page.locator("table.events tbody tr").count()) >= 1, "the real PC's events are listed");
  await page.locator("#process-tree").waitFor();
  ok((await page.locator("#process-tree .proc-name").count()) >= 1, "the process tree of the real PC has processes");
  await go("#/events?kind=alert&agent=" + encodeURIComponent(cfg.real_agent));
  await page.locator("table.events").waitFor();
  ok(await visibleText(cfg.eicar_path), "the alert filter shows the EICAR alert");
  await go("#/events?agent=" + encodeURIComponent(cfg.real_agent) + "&from=" + (Date.now() + 3600 * 1000));
  await seen(page.locator("table.events td.empty").waitFor(), "a time window in the future finds no events");

  // The incident list's state tabs (the EICAR incident was acknowledged).
  if (cfg.incident !== null) {
    await go("#/incidents?state=acknowledged");
    await page.locator('nav.tabs a.active[data-filter="acknowledged"]').waitFor();
    await seen(page.locator('tr[data-incident="' + cfg.incident + '"]').waitFor(), "the acknowledged tab lists the acknowledged incident");
    await go("#/incidents?state=resolved");
    await page.locator('nav.tabs a.active[data-filter="resolved"]').waitFor();
    await page.locator("table.incidents").waitFor();
    ok((await page.locator('tr[data-incident="' + cfg.incident + '"]').count()) === 0,
      "the resolved tab does not list it");
  }
});

await step("settings", async () => {
  await go("#/settings");
  await page.locator("#set-helpdesk").waitFor();
  await page.fill("#set-helpdesk", "0120-000-000 (平日 9-18時)");
  await page.click("#settings-save");
  ok(await visibleText("保存しました"), "tenant settings are saved");
  await page.click("#tok-create");
  await page.locator("#token-value").waitFor();
  ok((await page.inputValue("#token-value")).startsWith("ymt1."), "a new enrollment token is shown once");
  // The download is a POST with the CSRF token (a GET answers 405), saved
  // as a file; its token is listed as an installer token.
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#installer-link")]);
  const body = readFileSync(await dl.path());
  ok(dl.suggestedFilename() === "yamori-installer.run" && body.subarray(0, 9).toString() === "#!/bin/sh" &&
    body.includes("0120-000-000"),
    "the installer downloads with the company's help desk in it (" + body.length + " bytes)");
  const tenants = await page.evaluate(() => fetch("/api/ui/tenants").then((r) => r.json()));
  const acme = tenants.items.find((x) => x.name === "acme");
  const get = await page.request.get(cfg.url + "/api/ui/tenants/" + acme.id + "/installer");
  ok(get.status() === 405, "a GET of the installer answers 405 (" + get.status() + ")");
  await seen(page.locator("#tokens td", { hasText: "インストーラー" }).first().waitFor(), "the installer's token is listed as such");
  await shot("tokens");
});

await step("report", async () => {
  const d = new Date();
  const month = d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0");
  await go("#/report?month=" + month);
  await page.locator("#report").waitFor();
  ok((await page.locator("#report h1").textContent()).includes("セキュリティ月次レポート"), "the monthly report is in Japanese");
  ok(await visibleText("0120-000-000"), "the report names the help desk");
  await page.emulateMedia({ media: "print" });
  ok(!(await page.locator("nav.menu").isVisible()) && (await page.locator("#report").isVisible()),
    "printing shows the report without the menu");
  await page.emulateMedia({ media: "screen" });
});

// ---------------------------------------------------------------- hostile strings
await step("hostile", async () => {
  if (!ok(cfg.hostile_agent, "the hostile PC was enrolled")) return;
  const host = shown(cfg.hostile_host);
  await go("#/pcs");
  await page.locator("table.pcs").waitFor({ timeout: T });
  ok(await visibleText(host), "the hostile host name is shown literally in the PC list");
  await page.locator("table.pcs a.host", { hasText: "pc-<img" }).first().click();
  await page.locator("h1.host").waitFor({ timeout: T });
  ok((await page.locator("h1.host").textContent()) === host, "the PC detail heading is the literal host name");
  ok(await visibleText('0.1.0"><img src=x>'), "the hostile agent version is literal text");
  await shot("hostile-pc");

  if (ok(cfg.hostile_incident !== null, "the hostile alert became an incident")) {
    await go("#/incidents/" + cfg.hostile_incident);
    await page.locator("#incident-file").waitFor({ timeout: T });
    ok((await page.locator("#incident-file").textContent()) === shown(cfg.hostile_path),
      "the hostile path is the incident's file, as text");
    ok(await visibleText(shown(cfg.hostile_proc)), "the hostile process is shown as text");
    ok(await visibleText("init\\x1b[2J"), "a control character in a parent's name is shown escaped");
    await page.locator("details.raw summary").first().click();
    ok(await visibleText("<b>desc</b></script>"), "the raw event shows the hostile rule text literally");
    await shot("hostile-incident");
  }

  await go("#/events?agent=" + encodeURIComponent(cfg.hostile_agent));
  await page.locator("table.events").waitFor({ timeout: T });
  ok(await visibleText(shown(cfg.hostile_path)), "the hostile path is shown in the event list");

  await go("#/events?path=" + encodeURIComponent(cfg.real_hostile_path.slice(0, cfg.real_hostile_path.lastIndexOf("/") + 1)));
  await page.locator("table.events").waitFor({ timeout: T });
  ok(await visibleText(shown(cfg.real_hostile_path), 60000), "a real hostile file name seen by the agent is shown as text");
  await shot("hostile-events");
  ok(await fitsWidth(), "long hostile strings do not widen the page beyond the window");

  await go("#/overview");
  await page.locator("#verdict").waitFor({ timeout: T });
  ok(await visibleText(host), "the hostile host name is literal in the overview's incident list");
});

// ---------------------------------------------------------------- a duplicate host
await step("duplicate host", async () => {
  if (!ok(cfg.dup_incident !== null, "the shared machine id opened a duplicate-host incident")) return;
  await go("#/incidents/" + cfg.dup_incident);
  await seen(page.getByText("dup-machine-id", { exact: true }).first().waitFor(), "the incident names the machine id");
  for (const id of cfg.dup_agents)
    ok((await page.locator('a[href="#/pcs/' + id + '"]').count()) >= 1, "the incident links record " + id);
  ok((await page.locator("#incident-title").textContent()) === "PCの重複登録", "the incident's title is in Japanese");
  await shot("duplicate-incident");
  await go("#/pcs/" + cfg.dup_agents[0]);
  await page.locator("h1.host").waitFor();
  ok(await visibleText("要確認"), "a record of a duplicate host is in state 要確認 (check)");
  ok((await page.locator('a[href^="#/incidents/"]', { hasText: "PCの重複登録" }).count()) === 1,
    "the PC page lists its own duplicate-host incident by its Japanese title");
  await shot("duplicate-pc");
});

// ---------------------------------------------------------------- a behaviour incident
// A Sigma rule's alert (posted through the agent API): the incident is
// named by its ATT&CK technique in Japanese, with the plain explanation
// and what to do; English when chosen; readable on a phone.
await step("behaviour incident", async () => {
  if (!ok(cfg.sigma_incident !== null, "the behaviour alert became an incident")) return;
  await go("#/incidents/" + cfg.sigma_incident);
  await seen(page.waitForFunction(() => {
    const el = document.querySelector("#incident-title");
    return el && el.textContent === "cron による自動実行の設定";
  }, null, { timeout: T }), "the behaviour incident's title is the technique's Japanese title");
  const tech = page.locator('#incident-techniques .technique[data-technique="T1053.003"]');
  ok((await tech.count()) === 1, "the technique T1053.003 is listed");
  ok((await tech.locator(".technique-text").textContent()).includes("定期的にコマンドを自動実行する設定（cron）"),
    "its plain explanation is in Japanese");
  ok(await visibleText("追加された設定の内容を確認し"), "what to do is said in Japanese");
  ok(await visibleText("不審な動き"), "the kind badge says suspicious behaviour (不審な動き)");
  ok(await visibleText(cfg.sigma_rule_title), "the rule's own title is shown as the rule");
  await shot("behaviour-incident");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  ok(await fitsWidth(), "on a phone-sized window the behaviour incident needs no sideways scrolling");
  await shot("behaviour-incident-phone");
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.selectOption("#lang", "en");
  await seen(page.waitForFunction(() => {
    const el = document.querySelector("#incident-title");
    return el && el.textContent === "Scheduled job added with cron";
  }, null, { timeout: T }), "in English the title is the technique's English title");
  ok(await visibleText("Look at the job that was added"), "what to do is said in English");
  await page.selectOption("#lang", "ja");
  await go("#/incidents?state=open");
  await seen(page.locator('a[href="#/incidents/' + cfg.sigma_incident + '"]', { hasText: "cron による自動実行の設定" })
    .first().waitFor({ timeout: T }), "the incident list names it by the technique's Japanese title");
});

// ---------------------------------------------------------------- a phone
await step("phone", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  for (const hash of ["#/overview", "#/pcs", "#/incidents/" + cfg.incident]) {
    await go(hash);
    await page.locator("main.page-" + hash.split("/")[1] + " h1").first().waitFor();
    await page.waitForTimeout(300);
    ok(await fitsWidth(), "on a phone-sized window " + hash + " needs no sideways scrolling");
  }
  await shot("phone-incident");
  await page.setViewportSize({ width: 1280, height: 900 });
});

// ---------------------------------------------------------------- nothing ran
await step("no script ran", async () => {
  const pwned = await page.evaluate(() => window.__pwned);
  ok(pwned === undefined, "no injected script ran (window.__pwned is " + pwned + ")");
  ok((await page.locator("img, svg, script:not([src])").count()) === 0, "no injected element exists in the page");
});
// ---------------------------------------------------------------- a customer's viewer
await step("viewer", async () => {
  const vctx = await browser.newContext({ ignoreHTTPSErrors: true });
  await instrument(vctx);
  const vp = await vctx.newPage();
  vp.setDefaultTimeout(T);
  vp.on("pageerror", (e) => pageErrors.push("viewer: " + String(e)));
  vp.on("dialog", async (d) => {
    dialogs.push("viewer " + d.type());
    await d.dismiss().catch(() => {});
  });
  await vp.goto(cfg.url + "/#/incidents/" + cfg.incident);
  await vp.fill("#login-user", cfg.viewer);
  await vp.fill("#login-password", cfg.viewer_password);
  await vp.click("#login-submit");
  await seen(vp.locator("#incident-file").waitFor(), "the viewer lands on the page asked for before the login");
  ok((await vp.locator("#tenant").count()) === 0, "a customer's user has no company selector");
  ok((await vp.locator("button[data-cmd], button[data-state]").count()) === 0, "a viewer gets no response or state buttons");
  ok((await vp.locator('nav.menu a[href="#/users"]').count()) === 0, "a viewer has no users page in the menu");
  await vp.evaluate(() => {
    location.hash = "#/overview";
  });
  await vp.locator("#verdict").waitFor();
  ok((await vp.locator("table.list").count()) === 1, "the viewer's overview has no table of companies");

  // Password change, then a login with the new password.
  const newPassword = cfg.viewer_password + "-changed";
  await vp.evaluate(() => {
    location.hash = "#/password";
  });
  await vp.locator("#pw-old").waitFor();
  await vp.fill("#pw-old", cfg.viewer_password);
  await vp.fill("#pw-new", "short");
  await vp.fill("#pw-again", "short");
  await vp.click("form button[type=submit]");
  await vp.locator(".msg.error").waitFor();
  ok((await vp.locator(".msg.error").textContent()).includes("12文字以上"), "a short new password is refused");
  await vp.fill("#pw-new", newPassword);
  await vp.fill("#pw-again", newPassword);
  await vp.click("form button[type=submit]");
  await seen(vp.locator(".msg.ok").waitFor(), "the viewer changed the password");
  await vp.click("#logout");
  await vp.locator("#login-user").waitFor();
  await vp.fill("#login-user", cfg.viewer);
  await vp.fill("#login-password", newPassword);
  await vp.click("#login-submit");
  await seen(vp.locator("#verdict").waitFor(), "the new password logs in");
  await vctx.close();
});

// ---------------------------------------------------------------- a customer's administrator
await step("customer admin", async () => {
  const actx = await browser.newContext({ ignoreHTTPSErrors: true });
  await instrument(actx);
  const ap = await actx.newPage();
  ap.setDefaultTimeout(T);
  ap.on("pageerror", (e) => pageErrors.push("customer admin: " + String(e)));
  await ap.goto(cfg.url + "/#/settings");
  await ap.fill("#login-user", cfg.shop_admin);
  await ap.fill("#login-password", cfg.shop_admin_password);
  await ap.click("#login-submit");
  await ap.locator("#set-helpdesk").waitFor();
  ok(await ap.locator("#set-webhook").isDisabled(), "a customer's administrator cannot choose the webhook");
  await ap.getByText("設定済みです（URL はサービス提供者が管理します）").first().waitFor({ state: "visible" });
  ok((await ap.locator("#set-webhook").inputValue()) === "" && !(await ap.content()).includes(cfg.webhook_url),
    "a customer's administrator sees that a webhook is set, not its URL");
  await ap.fill("#set-silent", "45");
  await ap.click("#settings-save");
  await ap.locator("form.settings .msg").waitFor();
  ok((await ap.locator("form.settings .msg").textContent()) === "保存しました",
    "a customer's administrator saves the company's settings");
  ok((await ap.locator("#tok-create").count()) === 1, "a customer's administrator can make enrollment tokens");
  await actx.close();
});

// ---------------------------------------------------------------- logout
await step("logout", async () => {
  await page.click("#logout");
  await page.locator("#login-user").waitFor({ timeout: T });
  await go("#/incidents");
  await page.reload({ waitUntil: "load" });
  await seen(page.locator("#login-user").waitFor({ timeout: T }), "after logging out the dashboard asks for a login again");
});

ok(dialogs.length === 0, "no dialog opened" + (dialogs.length ? ": " + dialogs.join(" | ") : ""));
ok(violations.length === 0, "no Content-Security-Policy violation was reported" +
  (violations.length ? ": " + violations.slice(0, 5).join(" | ") : ""));
ok(cspConsole.length === 0, "no CSP message on the console" + (cspConsole.length ? ": " + cspConsole.slice(0, 3).join(" | ") : ""));
ok(pageErrors.length === 0, "no uncaught error in the page" + (pageErrors.length ? ": " + pageErrors.slice(0, 3).join(" | ") : ""));

await browser.close();
console.log("browser script: " + failures + " failed checks");
process.exit(0);
