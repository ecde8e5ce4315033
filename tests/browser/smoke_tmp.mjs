import { chromium } from "playwright-core";
const url = process.argv[2];
const b = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"] });
const ctx = await b.newContext({ ignoreHTTPSErrors: true, viewport: { width: +(process.argv[3]||1280), height: 900 } });
const page = await ctx.newPage();
const errs = [];
await page.exposeBinding("__v", (s, v) => errs.push("CSP " + v));
await page.addInitScript(() => document.addEventListener("securitypolicyviolation", (e) => window.__v(e.violatedDirective + " " + e.sourceFile + ":" + e.lineNumber)));
page.on("pageerror", (e) => errs.push("pageerror " + e));
page.on("console", (m) => { if (m.type() === "error") errs.push("console " + m.text()); });
await page.goto(url + "/");
await page.fill("#login-user", "admin"); await page.fill("#login-password", "pw"); await page.click("#login-submit");
await page.waitForSelector("#verdict");
for (const r of ["overview", "pcs", "pcs/a1", "incidents", "incidents/7", "events", "events?agent=a1&tree=1", "settings", "users", "audit", "report", "password"]) {
  await page.evaluate((h) => { location.hash = h; }, "#/" + r);
  await page.waitForTimeout(700);
  await page.screenshot({ path: "/tmp/webdev/" + r.replace(/[^a-z0-9]/g, "_") + (process.argv[3]||"") + ".png", fullPage: true });
  const txt = await page.evaluate(() => document.querySelector("main") ? document.querySelector("main").innerText.slice(0, 150).replace(/\n/g, " | ") : "NO MAIN");
  console.log(r, "=>", txt);
}
await page.evaluate(() => { location.hash = "#/incidents/7"; });
await page.waitForSelector('button[data-cmd="quarantine"]');
await page.click('button[data-cmd="quarantine"]');
await page.waitForSelector('tr[data-kind="quarantine"][data-state="done"]', { timeout: 15000 });
await page.click("button[data-restore]");
await page.waitForSelector('tr[data-kind="restore"][data-state="done"]', { timeout: 15000 });
console.log("commands ok; pwned=", await page.evaluate(() => window.__pwned));
console.log("ERRORS", errs);
await b.close();
