// Talking to the console's /api/ui/ routes (docs/dashboard.md).
//
// Every request is same-origin with the session cookie; every POST carries
// the CSRF token that login or /api/ui/me returned. Errors become ApiError
// with the console's error code, so pages can show a plain message.

let csrf = "";
let onLoginRequired = null;

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code || "HTTP " + status);
    this.status = status;
    this.code = code || "http_" + status;
    this.retryAfter = retryAfter || null;
  }
}

export function setCsrf(token) {
  csrf = typeof token === "string" ? token : "";
}

// fn() is called when a request other than login answers 401 (the session
// expired): the app goes back to the login page.
export function setLoginRequired(fn) {
  onLoginRequired = fn;
}

function query(params) {
  if (!params) return "";
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

async function request(method, path, params, body) {
  const headers = { Accept: "application/json" };
  const init = { method, credentials: "same-origin", headers, cache: "no-store", redirect: "error" };
  if (method === "POST") {
    headers["Content-Type"] = "application/json";
    if (csrf) headers["X-CSRF-Token"] = csrf;
    init.body = JSON.stringify(body || {});
  }
  let resp;
  try {
    resp = await fetch("/api/ui/" + path + query(params), init);
  } catch (e) {
    throw new ApiError(0, "network", String(e && e.message ? e.message : e));
  }
  let data = null;
  const type = resp.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
  }
  if (!resp.ok) {
    const code = data && typeof data.error === "string" ? data.error : null;
    const msg = data && typeof data.message === "string" ? data.message : null;
    const err = new ApiError(resp.status, code, msg, resp.headers.get("Retry-After"));
    if (resp.status === 401 && path !== "login" && path !== "password" && path !== "me" && onLoginRequired) {
      onLoginRequired();
    }
    throw err;
  }
  if (data === null || typeof data !== "object") throw new ApiError(resp.status, "bad_answer", "not JSON");
  return data;
}

export function get(path, params) {
  return request("GET", path, params);
}

export function post(path, body) {
  return request("POST", path, null, body);
}

// A download that changes state (it makes something, such as the token in
// an installer): a POST with the CSRF token whose answer is saved as a file
// under name. Errors become ApiError as for post().
export async function download(path, name) {
  const headers = { Accept: "application/octet-stream, application/json", "Content-Type": "application/json" };
  if (csrf) headers["X-CSRF-Token"] = csrf;
  let resp;
  try {
    resp = await fetch("/api/ui/" + path, { method: "POST", credentials: "same-origin", headers,
      cache: "no-store", redirect: "error", body: "{}" });
  } catch (e) {
    throw new ApiError(0, "network", String(e && e.message ? e.message : e));
  }
  if (!resp.ok) {
    let data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    const code = data && typeof data.error === "string" ? data.error : null;
    const msg = data && typeof data.message === "string" ? data.message : null;
    if (resp.status === 401 && onLoginRequired) onLoginRequired();
    throw new ApiError(resp.status, code, msg, resp.headers.get("Retry-After"));
  }
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// A URL for a plain link (downloads); the session cookie authenticates it.
export function href(path, params) {
  return "/api/ui/" + path + query(params);
}

// Segment of a path built from an id (agent UUIDs, numbers): always encoded.
export function seg(id) {
  return encodeURIComponent(String(id));
}
