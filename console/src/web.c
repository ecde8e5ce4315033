#include "web.h"

#include "dash.h"

#include "yamori/err.h"
#include "yamori/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATIC_MAX_FILES 64
#define STATIC_FILE_MAX (2 * 1024 * 1024)
#define MAX_STEPS 3

/* The dashboard's policy: nothing inline, nothing from elsewhere. */
#define DASHBOARD_CSP                                                                              \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"                 \
  " connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none';"                 \
  " form-action 'self'; report-uri /api/ui/csp-report"

typedef enum { STEP_NONE, STEP_READ, STEP_WRITE, STEP_WORK } step_kind_t;

typedef struct {
  step_kind_t kind;
  web_step_fn fn;
} step_t;

enum {
  R_AUTH = 1,   /* needs a session */
  R_STAFF = 2,  /* provider staff only */
  R_ORIGIN = 4, /* a same-origin JSON request only (login: no CSRF token yet) */
};

typedef struct web_route {
  const char *method;
  const char *pattern; /* below /api/ui/, ":id" captures a segment */
  unsigned flags;
  int min_rank; /* auth_role_rank() */
  step_t steps[MAX_STEPS];
} web_route_t;

typedef struct {
  char name[128];
  char *data;
  size_t len;
  const char *ctype;
} static_file_t;

/* An answer that waits (the login slow-down): a timer on the loop, never
 * a sleep. Listed in its web_t so that web_free() answers those still
 * waiting at once. */
typedef struct delayed {
  uv_timer_t timer; /* first: the handle is the struct */
  web_req_t *q;
  struct delayed *prev, *next;
} delayed_t;

struct web {
  uv_loop_t *loop;
  store_t *store;
  web_opts_t opts;
  static_file_t files[STATIC_MAX_FILES];
  size_t n_files;
  uint64_t csp_reports;
  delayed_t *delayed; /* answers waiting for their timer */
};

/* ---------------------------------------------------------------- */
/* Steps of the people's own routes                                   */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int web_fail(web_req_t *q, int status, const char *code, const char *msg) {
  q->status = status;
  snprintf(q->err, sizeof(q->err), "%s", code);
  snprintf(q->msg, sizeof(q->msg), "%s", msg);
  return -1;
}

static cJSON *user_json(const auth_user_t *u) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "name", u->name);
  cJSON_AddStringToObject(j, "role", u->role);
  if (u->tenant_id == 0) {
    cJSON_AddNullToObject(j, "tenant");
  } else {
    cJSON *t = cJSON_AddObjectToObject(j, "tenant");
    cJSON_AddNumberToObject(t, "id", (double)u->tenant_id);
    cJSON_AddStringToObject(t, "name", u->tenant_name);
    cJSON_AddStringToObject(t, "display", u->tenant_display);
  }
  return j;
}

static int me_answer(web_req_t *q) {
  q->answer = cJSON_CreateObject();
  cJSON_AddItemToObject(q->answer, "user", user_json(&q->user));
  cJSON_AddStringToObject(q->answer, "csrf", q->user.csrf);
  return 0;
}

static int step_me(sqlite3 *db, web_req_t *q) {
  (void)db;
  return me_answer(q);
}

/* Login: take the attempt's slots (database thread), check the password
 * (worker), then open the session (database thread). */
static int step_login_begin(sqlite3 *db, web_req_t *q) {
  const char *name = ym_json_get_str(q->body, "user");
  const char *pw = ym_json_get_str(q->body, "password");
  if (name == NULL || pw == NULL || strlen(name) == 0 || strlen(name) > AUTH_NAME_MAX ||
      strlen(pw) > AUTH_PASSWORD_MAX)
    return web_fail(q, 400, "bad_request", "user and password are required");
  int rc = auth_login_begin_db(db, name, q->peer, q->now_ms, q->scratch, sizeof(q->scratch),
                               &q->user, &q->delay_ms);
  if (rc == YM_EBUSY)
    return web_fail(q, 429, "rate_limited",
                    "too many failed logins from this address; wait 15 minutes");
  if (rc == YM_ENOENT) {
    q->user.id = 0; /* checked against a dummy hash all the same, below */
    snprintf(q->scratch, sizeof(q->scratch), "%s",
             "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    return 0;
  }
  return rc == 0 ? 0 : web_fail(q, 503, "unavailable", "try again");
}

static int step_login_verify(sqlite3 *db, web_req_t *q) {
  (void)db;
  const char *pw = ym_json_get_str(q->body, "password");
  int ok = store_password_verify(q->scratch, pw != NULL ? pw : "");
  q->num = ok == 1 && q->user.id != 0;
  return 0;
}

static int step_login_finish(sqlite3 *db, web_req_t *q) {
  const char *name = ym_json_get_str(q->body, "user");
  int rc = auth_login_finish_db(db, &q->user, q->num != 0, name, q->peer, q->now_ms, q->token);
  if (rc != 0)
    return web_fail(q, 503, "unavailable", "try again");
  if (!q->num)
    return web_fail(q, 401, "bad_login", "wrong user name or password");
  snprintf(q->cookie, sizeof(q->cookie),
           "ym_session=%s; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=%lld", q->token,
           (long long)(AUTH_SESSION_MS / 1000));
  return me_answer(q);
}

static int step_logout(sqlite3 *db, web_req_t *q) {
  if (auth_logout_db(db, q->token_hash, &q->user, q->peer, q->now_ms) != 0)
    return web_fail(q, 503, "unavailable", "try again");
  snprintf(q->cookie, sizeof(q->cookie),
           "ym_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
  q->answer = cJSON_CreateObject();
  return 0;
}

/* Password change: read the hash, check the old one and hash the new one
 * (worker), store it and end the person's other sessions. */
static int step_password_get(sqlite3 *db, web_req_t *q) {
  const char *old = ym_json_get_str(q->body, "old");
  const char *nw = ym_json_get_str(q->body, "new");
  if (old == NULL || nw == NULL || strlen(old) > AUTH_PASSWORD_MAX)
    return web_fail(q, 400, "bad_request", "old and new are required");
  if (strlen(nw) < AUTH_PASSWORD_MIN || strlen(nw) > AUTH_PASSWORD_MAX)
    return web_fail(q, 400, "weak_password", "the new password needs at least 12 characters");
  if (auth_password_get_db(db, q->user.id, q->scratch, sizeof(q->scratch)) != 0)
    return web_fail(q, 503, "unavailable", "try again");
  return 0;
}

static int step_password_work(sqlite3 *db, web_req_t *q) {
  (void)db;
  if (store_password_verify(q->scratch, ym_json_get_str(q->body, "old")) != 1)
    return web_fail(q, 403, "bad_login", "the old password is wrong");
  if (store_password_hash(ym_json_get_str(q->body, "new"), q->scratch, sizeof(q->scratch)) != 0)
    return web_fail(q, 500, "internal", "cannot hash the password");
  return 0;
}

static int step_password_set(sqlite3 *db, web_req_t *q) {
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : YM_EIO;
  if (rc == 0)
    rc = auth_password_set_db(db, q->user.id, q->scratch, q->token_hash);
  if (rc == 0)
    rc = auth_audit_db(db, &q->user, q->user.tenant_id, "password.change", q->user.name, "",
                       q->peer, q->now_ms);
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (rc != 0)
    return web_fail(q, 503, "unavailable", "try again");
  q->answer = cJSON_CreateObject();
  return 0;
}

/* New user: hash the password on a worker, then insert. */
static int step_user_hash(sqlite3 *db, web_req_t *q) {
  (void)db;
  const char *pw = ym_json_get_str(q->body, "password");
  if (pw == NULL || strlen(pw) < AUTH_PASSWORD_MIN || strlen(pw) > AUTH_PASSWORD_MAX)
    return web_fail(q, 400, "weak_password", "a password needs at least 12 characters");
  if (store_password_hash(pw, q->scratch, sizeof(q->scratch)) != 0)
    return web_fail(q, 500, "internal", "cannot hash the password");
  return 0;
}

/* ---------------------------------------------------------------- */
/* Routes                                                             */

#define RD(f)                                                                                      \
  { STEP_READ, f }
#define WR(f)                                                                                      \
  { STEP_WRITE, f }
#define WK(f)                                                                                      \
  { STEP_WORK, f }
#define VIEWER 1
#define OPERATOR 2
#define ADMIN 3

static const web_route_t routes[] = {
    {"POST",
     "login",
     R_ORIGIN,
     0,
     {WR(step_login_begin), WK(step_login_verify), WR(step_login_finish)}},
    {"POST", "logout", R_AUTH, VIEWER, {WR(step_logout)}},
    {"GET", "me", R_AUTH, VIEWER, {RD(step_me)}},
    {"POST",
     "password",
     R_AUTH,
     VIEWER,
     {RD(step_password_get), WK(step_password_work), WR(step_password_set)}},
    {"GET", "overview", R_AUTH, VIEWER, {RD(dash_overview)}},
    {"GET", "agents", R_AUTH, VIEWER, {RD(dash_agents)}},
    {"GET", "agents/:id", R_AUTH, VIEWER, {RD(dash_agent)}},
    {"GET", "agents/:id/processes", R_AUTH, VIEWER, {RD(dash_processes)}},
    {"POST", "agents/:id/commands", R_AUTH, OPERATOR, {WR(dash_command_create)}},
    {"POST", "agents/:id/revoke", R_AUTH, ADMIN, {WR(dash_agent_revoke)}},
    {"GET", "incidents", R_AUTH, VIEWER, {RD(dash_incidents)}},
    {"GET", "incidents/:id", R_AUTH, VIEWER, {RD(dash_incident)}},
    {"POST", "incidents/:id", R_AUTH, OPERATOR, {WR(dash_incident_update)}},
    {"GET", "events", R_AUTH, VIEWER, {RD(dash_events)}},
    {"GET", "commands", R_AUTH, VIEWER, {RD(dash_commands)}},
    {"GET", "commands/:id", R_AUTH, VIEWER, {RD(dash_command)}},
    {"GET", "commands/:id/bundle", R_AUTH, OPERATOR, {RD(dash_command_bundle)}},
    {"GET", "tenants", R_AUTH, VIEWER, {RD(dash_tenants)}},
    {"POST", "tenants", R_AUTH | R_STAFF, ADMIN, {WR(dash_tenant_create)}},
    {"GET", "tenants/:id/settings", R_AUTH, VIEWER, {RD(dash_settings)}},
    {"POST", "tenants/:id/settings", R_AUTH, ADMIN, {WR(dash_settings_set)}},
    {"GET", "tenants/:id/tokens", R_AUTH, ADMIN, {RD(dash_tokens)}},
    {"POST", "tenants/:id/tokens", R_AUTH, ADMIN, {WR(dash_token_create)}},
    {"POST", "tokens/:id/revoke", R_AUTH, ADMIN, {WR(dash_token_revoke)}},
    {"POST", "tenants/:id/installer", R_AUTH, ADMIN, {WR(dash_installer)}},
    {"GET", "tenants/:id/report", R_AUTH, VIEWER, {RD(dash_report)}},
    {"GET", "users", R_AUTH, ADMIN, {RD(dash_users)}},
    {"POST",
     "users",
     R_AUTH,
     ADMIN,
     {RD(dash_user_check), WK(step_user_hash), WR(dash_user_create)}},
    {"GET", "audit", R_AUTH, ADMIN, {RD(dash_audit)}},
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

/* Matches path (below /api/ui/) against pattern; fills ids. */
static bool route_match(const char *pattern, const char *path, web_req_t *q) {
  unsigned n_id = 0;
  while (*pattern != '\0' && *path != '\0') {
    size_t pl = strcspn(pattern, "/"), sl = strcspn(path, "/");
    if (pattern[0] == ':') {
      if (sl == 0 || sl >= sizeof(q->id[0]) || n_id >= 2)
        return false;
      memcpy(q->id[n_id], path, sl);
      q->id[n_id][sl] = '\0';
      n_id++;
    } else if (pl != sl || memcmp(pattern, path, pl) != 0) {
      return false;
    }
    pattern += pl;
    path += sl;
    if (*pattern == '/' && *path == '/') {
      pattern++;
      path++;
    } else if (*pattern != *path) {
      return false;
    }
  }
  return *pattern == '\0' && *path == '\0';
}

/* ---------------------------------------------------------------- */
/* Parsing the request                                                */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decodes [s, s + n) into out (NUL-terminated); '+' is a space.
 * Returns false when malformed, too long, or holding NUL or control
 * characters. */
static bool url_decode(const char *s, size_t n, char *out, size_t out_len) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= n)
        return false;
      int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      c = hi * 16 + lo;
      i += 2;
    }
    if (c < 0x20 || c == 0x7f || o + 1 >= out_len)
      return false;
    out[o++] = (char)c;
  }
  out[o] = '\0';
  return true;
}

static bool parse_query(web_req_t *q, const char *qs) {
  while (*qs != '\0') {
    size_t n = strcspn(qs, "&");
    const char *eq = memchr(qs, '=', n);
    if (n > 0) {
      if (q->n_params >= WEB_MAX_PARAMS)
        return false;
      web_param_t *p = &q->params[q->n_params];
      size_t kl = eq != NULL ? (size_t)(eq - qs) : n;
      if (!url_decode(qs, kl, p->key, sizeof(p->key)))
        return false;
      if (eq != NULL && !url_decode(eq + 1, n - kl - 1, p->value, sizeof(p->value)))
        return false;
      q->n_params++;
    }
    qs += n;
    if (*qs == '&')
      qs++;
  }
  return true;
}

int web_parse(web_req_t *q, const char *method, const char *sub, const char *query,
              const char *body, size_t blen, const char **code, const char **why) {
  bool path_known = false;
  for (size_t i = 0; i < N_ROUTES; i++) {
    web_req_t probe;
    if (!route_match(routes[i].pattern, sub, &probe))
      continue;
    path_known = true;
    if (strcmp(routes[i].method, method) == 0 ||
        (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0)) {
      q->route = &routes[i];
      route_match(routes[i].pattern, sub, q);
      break;
    }
  }
  if (q->route == NULL) {
    *code = path_known ? "method_not_allowed" : "not_found";
    *why = path_known ? "method not allowed" : "no such route";
    return path_known ? 405 : 404;
  }
  if (!parse_query(q, query)) {
    *code = "bad_request";
    *why = "malformed query string";
    return 400;
  }
  if (strcmp(q->route->method, "POST") != 0)
    return 0;
  if (blen > WEB_BODY_MAX) {
    *code = "too_large";
    *why = "the request body is too large";
    return 413;
  }
  if (blen == 0) {
    q->body = cJSON_CreateObject();
  } else if (ym_json_parse(body, blen, WEB_BODY_MAX, &q->body, NULL) != 0 ||
             !cJSON_IsObject(q->body)) {
    cJSON_Delete(q->body);
    q->body = NULL;
    *code = "bad_request";
    *why = "the body must be a JSON object";
    return 400;
  }
  if (q->body == NULL) {
    *code = "internal";
    *why = "out of memory";
    return 500;
  }
  return 0;
}

const char *web_param(const web_req_t *q, const char *key) {
  for (size_t i = 0; i < q->n_params; i++)
    if (strcmp(q->params[i].key, key) == 0)
      return q->params[i].value[0] != '\0' ? q->params[i].value : NULL;
  return NULL;
}

bool web_param_int(web_req_t *q, const char *key, int64_t min, int64_t max, int64_t def,
                   int64_t *out) {
  const char *v = web_param(q, key);
  *out = def;
  if (v == NULL)
    return true;
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno != 0 || *end != '\0' || end == v || x < min || x > max) {
    char msg[96];
    snprintf(msg, sizeof(msg), "parameter %s must be a number in range", key);
    web_fail(q, 400, "bad_request", msg);
    return false;
  }
  *out = x;
  return true;
}

int64_t web_tenant_filter(web_req_t *q) {
  if (q->scope != 0)
    return q->scope;
  int64_t t = 0;
  if (!web_param_int(q, "tenant", 0, INT64_MAX, 0, &t))
    return -1;
  return t;
}

const web_opts_t *web_opts(const web_t *w) {
  return &w->opts;
}

store_t *web_store(const web_t *w) {
  return w->store;
}

/* Finds ym_session=<64 hex> in the Cookie header. */
static void read_cookie(web_req_t *q) {
  const char *c = http_req_header(q->r, "cookie");
  while (c != NULL && *c != '\0') {
    while (*c == ' ' || *c == ';')
      c++;
    size_t n = strcspn(c, ";");
    if (n == 11 + AUTH_TOKEN_LEN && strncmp(c, "ym_session=", 11) == 0) {
      char tok[AUTH_TOKEN_LEN + 1];
      memcpy(tok, c + 11, AUTH_TOKEN_LEN);
      tok[AUTH_TOKEN_LEN] = '\0';
      if (strspn(tok, "0123456789abcdef") == AUTH_TOKEN_LEN) {
        auth_token_hash(tok, q->token_hash);
        q->has_token = true;
      }
      return;
    }
    c += n;
  }
}

/* Whether origin ("scheme://host[:port]", any case) is scheme:// and the
 * n bytes of authority ("host[:port]"). An explicit :443 of https is the
 * same as none. */
static bool same_origin(const char *origin, const char *scheme, const char *authority, size_t n) {
  size_t sl = strlen(scheme);
  if (n > 4 && strcmp(scheme, "https") == 0 && memcmp(authority + n - 4, ":443", 4) == 0)
    n -= 4;
  size_t ol = strlen(origin);
  if (ol > 4 && strcmp(scheme, "https") == 0 && strcmp(origin + ol - 4, ":443") == 0)
    ol -= 4;
  return n > 0 && ol == sl + 3 + n && strncasecmp(origin, scheme, sl) == 0 &&
         memcmp(origin + sl, "://", 3) == 0 && strncasecmp(origin + sl + 3, authority, n) == 0;
}

/* Login has no CSRF token to check, so a browser on another site must not
 * be able to post one (login CSRF: signing the victim into the attacker's
 * account). Refused: an Origin that is not the console's own (the Host
 * the request was sent to, or the configured console URL), and a
 * Sec-Fetch-Site other than same-origin or none; then any body that is
 * not application/json, which a page elsewhere cannot send without a
 * CORS preflight the console never grants. Requests without these
 * headers (scripts, curl) are not from a browser and pass. Returns 0 or
 * the status to answer (403, 415) with code and msg set. */
static int check_same_origin(web_t *w, http_req_t *r, const char **code, const char **msg) {
  const char *origin = http_req_header(r, "origin");
  const char *site = http_req_header(r, "sec-fetch-site");
  const char *host = http_req_header(r, "host");
  const char *url = w->opts.console_url;
  bool own = false;
  if (origin != NULL && host != NULL)
    own = same_origin(origin, "https", host, strlen(host));
  if (origin != NULL && !own && url != NULL && strstr(url, "://") != NULL) {
    const char *sep = strstr(url, "://");
    char scheme[8];
    const char *auth = sep + 3;
    if ((size_t)(sep - url) < sizeof(scheme)) {
      memcpy(scheme, url, (size_t)(sep - url));
      scheme[sep - url] = '\0';
      own = same_origin(origin, scheme, auth, strcspn(auth, "/?#"));
    }
  }
  if ((origin != NULL && !own) ||
      (site != NULL && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)) {
    *code = "cross_origin";
    *msg = "login is accepted from the console's own pages only";
    return 403;
  }
  const char *ctype = http_req_header(r, "content-type");
  size_t jl = strlen("application/json");
  if (ctype == NULL || strncasecmp(ctype, "application/json", jl) != 0 ||
      (ctype[jl] != '\0' && ctype[jl] != ';' && ctype[jl] != ' ' && ctype[jl] != '\t')) {
    *code = "unsupported_media_type";
    *msg = "the body must be sent as application/json";
    return 415;
  }
  return 0;
}

/* ---------------------------------------------------------------- */
/* Running the steps                                                  */

static void run_next(web_req_t *q);

/* The checks every route's first database step makes. */
static int check_access(sqlite3 *db, web_req_t *q) {
  const web_route_t *rt = q->route;
  if (!(rt->flags & R_AUTH) || q->authed)
    return 0;
  if (!q->has_token || auth_session_db(db, q->token_hash, q->now_ms, &q->user) != 0)
    return web_fail(q, 401, "login_required", "please log in");
  q->authed = true;
  q->scope = q->user.tenant_id;
  if (strcmp(rt->method, "POST") == 0 &&
      (strlen(q->csrf_header) != AUTH_CSRF_LEN || strcmp(q->csrf_header, q->user.csrf) != 0))
    return web_fail(q, 403, "csrf", "missing or wrong CSRF token; reload the page");
  if ((rt->flags & R_STAFF) && q->user.tenant_id != 0)
    return web_fail(q, 403, "forbidden", "provider staff only");
  if (auth_role_rank(q->user.role) < rt->min_rank)
    return web_fail(q, 403, "forbidden", "your role does not allow this");
  return 0;
}

static int run_step(sqlite3 *db, void *arg) {
  web_req_t *q = arg;
  const step_t *st = &q->route->steps[q->step];
  if (st->kind != STEP_WORK && check_access(db, q) != 0)
    return -1;
  if (st->kind == STEP_WORK && (q->route->flags & R_AUTH) && !q->authed)
    return web_fail(q, 401, "login_required", "please log in");
  return st->fn(db, q);
}

static void finish(web_req_t *q);

static void delayed_unlink(web_t *w, delayed_t *d) {
  if (d->prev != NULL)
    d->prev->next = d->next;
  else
    w->delayed = d->next;
  if (d->next != NULL)
    d->next->prev = d->prev;
}

static void delayed_closed(uv_handle_t *h) {
  free(h); /* the delayed_t, whose first member is the handle */
}

static void delayed_fire(uv_timer_t *t) {
  delayed_t *d = (delayed_t *)t;
  web_req_t *q = d->q;
  delayed_unlink(q->w, d);
  uv_close((uv_handle_t *)&d->timer, delayed_closed);
  finish(q);
}

/* Puts q's answer off by q->delay_ms on a timer; finish() runs again when
 * it fires. Returns false when there is nothing to wait for. The timer
 * does not keep the loop alive: at shutdown web_free() answers at once. */
static bool delay_answer(web_req_t *q) {
  if (q->delay_ms <= 0)
    return false;
  uint64_t ms = (uint64_t)q->delay_ms;
  q->delay_ms = 0;
  delayed_t *d = calloc(1, sizeof(*d));
  if (d == NULL) {
    /* No timer, no early answer: refused instead. */
    q->cookie[0] = '\0';
    web_fail(q, 503, "unavailable", "try again");
    return false;
  }
  uv_timer_init(q->w->loop, &d->timer);
  d->q = q;
  d->next = q->w->delayed;
  if (d->next != NULL)
    d->next->prev = d;
  q->w->delayed = d;
  uv_timer_start(&d->timer, delayed_fire, ms, 0);
  uv_unref((uv_handle_t *)&d->timer);
  return true;
}

static void finish(web_req_t *q) {
  if (delay_answer(q))
    return;
  if (q->status >= 400 || (q->answer == NULL && q->raw == NULL)) {
    if (q->status < 400)
      web_fail(q, 500, "internal", "no answer");
    cJSON_Delete(q->answer);
    q->answer = cJSON_CreateObject();
    cJSON_AddStringToObject(q->answer, "error", q->err);
    cJSON_AddStringToObject(q->answer, "message", q->msg);
  }
  http_header_t hdrs[3];
  size_t nh = 0;
  if (q->cookie[0] != '\0')
    hdrs[nh++] = (http_header_t){"set-cookie", q->cookie};
  if (q->disp[0] != '\0')
    hdrs[nh++] = (http_header_t){"content-disposition", q->disp};
  if (q->status == 429)
    hdrs[nh++] = (http_header_t){"retry-after", "60"};
  int status = q->status != 0 ? q->status : 200;
  if (q->raw != NULL && status < 400) {
    http_reply_ex(q->r, status, q->ctype, hdrs, nh, q->raw, q->raw_len);
  } else {
    char *text = cJSON_PrintUnformatted(q->answer);
    if (text != NULL)
      http_reply_ex(q->r, status, "application/json", hdrs, nh, text, strlen(text));
    else
      http_reply_error(q->r, 500, "internal", "out of memory");
    free(text);
  }
  cJSON_Delete(q->answer);
  cJSON_Delete(q->body);
  free(q->raw);
  memset(q->token, 0, sizeof(q->token));
  memset(q->scratch, 0, sizeof(q->scratch));
  free(q);
}

static void on_step_done(int rc, void *data) {
  web_req_t *q = data;
  if (rc != 0 && q->status < 400)
    web_fail(q, rc == YM_ENOENT ? 404 : 503, rc == YM_ENOENT ? "not_found" : "unavailable",
             rc == YM_ENOENT ? "not found" : "try again");
  if (q->status >= 400) {
    finish(q);
    return;
  }
  q->step++;
  run_next(q);
}

static void work_cb(uv_work_t *w) {
  web_req_t *q = w->data;
  int rc = run_step(NULL, q);
  if (rc != 0 && q->status < 400)
    web_fail(q, 500, "internal", "step failed");
}

static void work_after(uv_work_t *w, int status) {
  web_req_t *q = w->data;
  free(w);
  on_step_done(status == 0 ? 0 : YM_ECANCELED, q);
}

static void run_next(web_req_t *q) {
  if (q->step >= MAX_STEPS || q->route->steps[q->step].kind == STEP_NONE) {
    finish(q);
    return;
  }
  switch (q->route->steps[q->step].kind) {
  case STEP_READ:
    store_read(q->w->store, run_step, q, on_step_done, q);
    break;
  case STEP_WRITE:
    store_call(q->w->store, run_step, q, on_step_done, q);
    break;
  case STEP_WORK: {
    uv_work_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
      web_fail(q, 500, "internal", "out of memory");
      finish(q);
      return;
    }
    w->data = q;
    if (uv_queue_work(q->w->loop, w, work_cb, work_after) != 0) {
      free(w);
      web_fail(q, 500, "internal", "cannot queue work");
      finish(q);
    }
    break;
  }
  case STEP_NONE:
    finish(q);
    break;
  }
}

static void on_api(http_req_t *r, void *data) {
  web_t *w = data;
  size_t plen;
  const char *path = http_req_path(r, &plen);
  const char *method = http_req_method(r);
  web_req_t *q = calloc(1, sizeof(*q));
  if (q == NULL) {
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  q->w = w;
  q->r = r;
  q->now_ms = now_ms();
  snprintf(q->peer, sizeof(q->peer), "%s", http_req_peer(r));
  if (plen < strlen("/api/ui/")) {
    free(q);
    http_reply_error(r, 404, "not_found", "no such route");
    return;
  }
  size_t blen;
  const char *body = http_req_body(r, &blen);
  const char *code, *why;
  int status =
      web_parse(q, method, path + strlen("/api/ui/"), http_req_query(r), body, blen, &code, &why);
  if (status != 0) {
    free(q);
    http_reply_error(r, status, code, why);
    return;
  }
  if (q->route->flags & R_ORIGIN) {
    const char *ocode = NULL, *msg = NULL;
    int ostatus = check_same_origin(w, r, &ocode, &msg);
    if (ostatus != 0) {
      cJSON_Delete(q->body);
      free(q);
      http_reply_error(r, ostatus, ocode, msg);
      return;
    }
  }
  if (strcmp(q->route->method, "POST") == 0) {
    const char *csrf = http_req_header(r, "x-csrf-token");
    if (csrf != NULL)
      snprintf(q->csrf_header, sizeof(q->csrf_header), "%s", csrf);
  }
  read_cookie(q);
  run_next(q);
}

/* Browsers send Content-Security-Policy violation reports here: counted
 * and logged (bounded), nothing else. */
static void on_csp_report(http_req_t *r, void *data) {
  web_t *w = data;
  w->csp_reports++;
  ym_log(YM_LOG_WARN, 0, "content-security-policy violation reported by %s", http_req_peer(r));
  http_reply(r, 200, "{}", 2, 0);
}

/* ---------------------------------------------------------------- */
/* Static files                                                       */

static const char *ctype_of(const char *name) {
  const char *dot = strrchr(name, '.');
  static const struct {
    const char *ext, *type;
  } types[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
      {".woff2", "font/woff2"},
  };
  for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++)
    if (strcmp(dot, types[i].ext) == 0)
      return types[i].type;
  return NULL;
}

/* Loads the regular files of dir (one level, known types only) into
 * memory: the dashboard is small and served from memory. */
static int load_static(web_t *w, const char *dir) {
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return ym_err_from_errno(errno);
  DIR *d = fdopendir(dfd);
  if (d == NULL) {
    close(dfd);
    return YM_EIO;
  }
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    const char *type = ctype_of(e->d_name);
    if (e->d_name[0] == '.' || type == NULL || strlen(e->d_name) >= sizeof(w->files[0].name))
      continue;
    if (w->n_files >= STATIC_MAX_FILES) {
      rc = YM_ETOOBIG;
      break;
    }
    int fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > STATIC_FILE_MAX) {
      if (fd >= 0)
        close(fd);
      continue;
    }
    static_file_t *f = &w->files[w->n_files];
    f->data = malloc((size_t)sb.st_size + 1);
    size_t got = 0;
    while (f->data != NULL && got < (size_t)sb.st_size) {
      ssize_t n = read(fd, f->data + got, (size_t)sb.st_size - got);
      if (n <= 0)
        break;
      got += (size_t)n;
    }
    close(fd);
    if (f->data == NULL || got != (size_t)sb.st_size) {
      free(f->data);
      f->data = NULL;
      continue;
    }
    memcpy(f->name, e->d_name, strlen(e->d_name) + 1); /* length checked above */
    f->len = got;
    f->ctype = type;
    w->n_files++;
  }
  closedir(d);
  return rc;
}

static void serve_file(web_t *w, http_req_t *r, const char *name) {
  for (size_t i = 0; i < w->n_files; i++) {
    static_file_t *f = &w->files[i];
    if (strcmp(f->name, name) != 0)
      continue;
    http_header_t h[] = {{"content-security-policy", DASHBOARD_CSP},
                         {"cross-origin-opener-policy", "same-origin"}};
    http_reply_ex(r, 200, f->ctype, h, 2, f->data, f->len);
    return;
  }
  http_reply_error(r, 404, "not_found", "no such file");
}

static void on_index(http_req_t *r, void *data) {
  size_t len;
  const char *path = http_req_path(r, &len);
  if (strcmp(path, "/") != 0 && strcmp(path, "/index.html") != 0) {
    http_reply_error(r, 404, "not_found", "no such page");
    return;
  }
  serve_file(data, r, "index.html");
}

static void on_static(http_req_t *r, void *data) {
  size_t len;
  const char *path = http_req_path(r, &len);
  const char *name = path + strlen("/static/");
  if (len <= strlen("/static/") || strchr(name, '/') != NULL) {
    http_reply_error(r, 404, "not_found", "no such file");
    return;
  }
  serve_file(data, r, name);
}

/* ---------------------------------------------------------------- */
/* Handle                                                             */

int web_new(uv_loop_t *loop, http_t *http, store_t *store, const web_opts_t *opts, web_t **out) {
  web_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return YM_ENOMEM;
  w->loop = loop;
  w->store = store;
  w->opts = *opts;
  int rc = 0;
  if (opts->web_dir != NULL) {
    rc = load_static(w, opts->web_dir);
    if (rc != 0)
      ym_log(YM_LOG_WARN, rc, "no dashboard files in %s: the API works, the pages do not",
             opts->web_dir);
    rc = 0;
  }
  static const char *const methods[] = {"GET", "POST"};
  for (size_t i = 0; rc == 0 && i < 2; i++)
    rc = http_route(http, methods[i], "/api/ui/csp-report", on_csp_report, w);
  for (size_t i = 0; rc == 0 && i < 2; i++)
    rc = http_route(http, methods[i], "/api/ui/", on_api, w);
  if (rc == 0)
    rc = http_route(http, "GET", "/static/", on_static, w);
  if (rc == 0)
    rc = http_route(http, "GET", "/", on_index, w);
  if (rc != 0) {
    web_free(w);
    return rc;
  }
  *out = w;
  return 0;
}

void web_free(web_t *w) {
  if (w == NULL)
    return;
  while (w->delayed != NULL) {
    delayed_t *d = w->delayed;
    delayed_unlink(w, d);
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, delayed_closed);
    finish(d->q);
  }
  for (size_t i = 0; i < w->n_files; i++)
    free(w->files[i].data);
  free(w);
}
