// Static checks of the dashboard (console/web), run by ctest without a
// browser:
//  - no HTML parsing or code evaluation from strings anywhere (innerHTML,
//    outerHTML, insertAdjacentHTML, document.write, eval, new Function,
//    setTimeout with a string, javascript: URLs);
//  - no inline script, inline style or style attribute in index.html, and
//    no element.style / setAttribute("style") in the scripts;
//  - every file name is flat (the console serves /static/<file>);
//  - every dictionary key written in the code exists in both languages,
//    both languages have the same keys, and every key family used with a
//    computed suffix ("state." + s) has its members in both.
// Prints "N passed, N failed" and exits 1 on any failure.

import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const web = process.env.YAMORI_WEB_DIR || join(here, "..", "..", "console", "web");
let passed = 0;
let failed = 0;

function check(ok, what) {
  if (ok) {
    passed++;
    console.log("ok - " + what);
  } else {
    failed++;
    console.log("FAIL - " + what);
  }
}

const files = readdirSync(web);
for (const f of files) {
  check(statSync(join(web, f)).isFile(), "console/web/" + f + " is a plain file (no sub-directories)");
}
const scripts = files.filter((f) => f.endsWith(".js"));
const texts = files.filter((f) => /\.(js|html|css|svg)$/.test(f));

const FORBIDDEN = [
  [/\binnerHTML\b/, "innerHTML"],
  [/\bouterHTML\b/, "outerHTML"],
  [/\binsertAdjacentHTML\b/, "insertAdjacentHTML"],
  [/\bdocument\s*\.\s*write(ln)?\b/, "document.write"],
  [/\beval\s*\(/, "eval("],
  [/\bnew\s+Function\s*\(/, "new Function("],
  [/\bFunction\s*\(\s*["'`]/, "Function(string)"],
  [/\bset(Timeout|Interval)\s*\(\s*["'`]/, "setTimeout/setInterval with a string"],
  [/javascript:/i, "javascript: URL"],
  [/\bcreateContextualFragment\b/, "createContextualFragment"],
  [/\bDOMParser\b/, "DOMParser"],
  [/\.style\s*[.=[]/, "element.style"],
  [/setAttribute\(\s*["'](style|on[a-z]+)["']/i, "setAttribute(style|on*)"],
  [/\bsrcdoc\b(?!["'] *\|\|)/, "srcdoc"],
];

for (const f of texts) {
  const src = readFileSync(join(web, f), "utf8");
  for (const [re, name] of FORBIDDEN) {
    if (f === "dom.js" && (name === "srcdoc")) continue; // dom.js refuses the attribute by name
    const lines = src.split("\n").map((l, i) => [i + 1, l]).filter(([, l]) => re.test(l));
    check(lines.length === 0, f + ": no " + name + (lines.length ? " (line " + lines.map((x) => x[0]).join(", ") + ")" : ""));
  }
}

const html = readFileSync(join(web, "index.html"), "utf8");
check(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html), "index.html: no inline script");
check(!/<style\b/i.test(html), "index.html: no <style> element");
check(!/\sstyle\s*=/i.test(html), "index.html: no style attribute");
check(!/\son[a-z]+\s*=/i.test(html), "index.html: no event handler attribute");
for (const m of html.matchAll(/\b(?:src|href)="([^"]+)"/g)) {
  check(m[1].startsWith("/static/"), "index.html: " + m[1] + " is served from /static/");
  const name = m[1].slice("/static/".length);
  check(files.includes(name), "index.html: " + name + " exists");
}
for (const f of scripts) {
  const src = readFileSync(join(web, f), "utf8");
  for (const m of src.matchAll(/from\s+"\.\/([^"]+)"/g)) {
    check(files.includes(m[1]), f + ": imports " + m[1] + " which exists");
  }
}

// The dictionary.
const i18n = await import(pathToFileURL(join(web, "i18n.js")).href);
const ja = new Set(i18n.keys("ja"));
const en = new Set(i18n.keys("en"));
const onlyJa = [...ja].filter((k) => !en.has(k));
const onlyEn = [...en].filter((k) => !ja.has(k));
check(onlyJa.length === 0, "every Japanese string has an English one" + (onlyJa.length ? ": " + onlyJa.join(" ") : ""));
check(onlyEn.length === 0, "every English string has a Japanese one" + (onlyEn.length ? ": " + onlyEn.join(" ") : ""));

const used = new Set();
for (const f of scripts) {
  if (f === "i18n.js") continue;
  const src = readFileSync(join(web, f), "utf8");
  for (const m of src.matchAll(/\bt\(\s*"([a-z0-9_.]+)"\s*[,)]/g)) used.add(m[1]);
  for (const m of src.matchAll(/\bkey\s*=\s*"([a-z0-9_.]*[a-z0-9_])"/g)) used.add(m[1]);
}
const missing = [...used].filter((k) => !ja.has(k));
check(used.size > 100, "found the dictionary keys in the code (" + used.size + ")");
check(missing.length === 0, "every key used in the code is in the dictionary" + (missing.length ? ": " + missing.join(" ") : ""));

// Families used with a computed suffix and the members the code relies on.
const FAMILIES = {
  "state.": ["safe", "check", "danger", "offline", "unknown", "safe.hint", "check.hint", "danger.hint", "offline.hint"],
  "inc.": ["new", "acknowledged", "resolved", "unknown"],
  "inc.set.": ["new", "acknowledged", "resolved"],
  "sev.": ["high", "medium", "low", "unknown"],
  "cmdst.": ["queued", "sent", "done", "failed", "expired", "unknown"],
  "cmdkind.": ["scan", "quarantine", "restore", "kill", "triage"],
  "kind.": ["malware", "silent"],
  "role.": ["admin", "operator", "viewer"],
  "lang.": ["ja", "en"],
  "filter.": ["open", "new", "acknowledged", "resolved", "all"],
  "evkind.": ["event", "alert"],
  "tl.": ["created", "alert", "state", "owner", "note", "command", "notified"],
  "rec.": ["update_agents", "offline_pcs", "open_incidents", "none"],
  "err.": ["generic", "bad_login", "csrf", "forbidden", "not_found", "weak_password", "network", "not_built",
    "rate_limited"],
  "ctr.": ["events", "alerts", "quarantined", "gaps", "dropped", "spool_pending", "spool_shed", "spool_corrupt",
    "uplink_failures", "scan_errors", "write_scans_dropped", "exec_denied"],
};
for (const [prefix, members] of Object.entries(FAMILIES)) {
  const gone = members.filter((m) => !ja.has(prefix + m) || !en.has(prefix + m));
  check(gone.length === 0, "dictionary family " + prefix + "* complete" + (gone.length ? ": missing " + gone.join(" ") : ""));
}

console.log(passed + " passed, " + failed + " failed");
process.exit(failed ? 1 : 0);
