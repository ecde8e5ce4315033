#include "api.h"

#include "auth.h"
#include "ingest.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ENROLL_MAX_BODY (64 * 1024)
#define CHECKIN_MAX_BODY (64 * 1024)
#define AGENT_BUCKETS 4096

typedef struct {
  char agent_id[40];
  double tokens;
  uint64_t last_ns;
} bucket_t;

typedef struct {
  api_t *a;
  api_agent_handler_t fn;
  void *data;
} agent_route_t;

struct api {
  uv_loop_t *loop;
  http_t *http;
  store_t *store;
  api_opts_t opts;
  bucket_t buckets[AGENT_BUCKETS];
  api_stats_t stats;
  struct {
    api_checkin_fn fn;
    void *data;
  } checkin[API_MAX_CONTRIBUTORS];
  size_t n_checkin;
  agent_route_t routes[API_MAX_ROUTES];
  size_t n_routes;
};

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Token bucket per agent (hashed into a fixed table; a collision only
 * shares a bucket). Returns true when the request may go on. */
static bool agent_allowed(api_t *a, const char *agent_id) {
  if (a->opts.rate_per_agent == 0)
    return true;
  uint32_t h = 2166136261u;
  for (const char *p = agent_id; *p; p++)
    h = (h ^ (unsigned char)*p) * 16777619u;
  bucket_t *b = &a->buckets[h % AGENT_BUCKETS];
  uint64_t now = mono_ns();
  double burst = 2.0 * a->opts.rate_per_agent;
  if (strcmp(b->agent_id, agent_id) != 0) {
    snprintf(b->agent_id, sizeof(b->agent_id), "%s", agent_id);
    b->tokens = burst;
    b->last_ns = now;
  }
  b->tokens += (double)(now - b->last_ns) / 1e9 * a->opts.rate_per_agent;
  if (b->tokens > burst)
    b->tokens = burst;
  b->last_ns = now;
  if (b->tokens < 1.0)
    return false;
  b->tokens -= 1.0;
  return true;
}

static void reply_json(http_req_t *r, int status, cJSON *j) {
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (text == NULL) {
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  http_reply(r, status, text, strlen(text), 0);
  free(text);
}

/* ---------------------------------------------------------------- */
/* Authentication                                                     */

typedef void (*authed_fn)(api_t *a, http_req_t *r, const char *agent_id, int64_t tenant,
                          void *extra);

typedef struct {
  api_t *a;
  http_req_t *r;
  authed_fn next;
  void *extra;
  char agent_id[40];
} auth_ctx_t;

static void on_auth(int rc, int64_t tenant, void *data) {
  auth_ctx_t *c = data;
  if (rc != 0) {
    c->a->stats.auth_failures++;
    http_reply_error(c->r, 401, "unauthorized", "unknown agent or wrong secret: enroll again");
  } else if (!agent_allowed(c->a, c->agent_id)) {
    c->a->stats.rate_limited++;
    http_reply(c->r, 429, "{\"error\":\"rate_limited\"}", 24, 1);
  } else {
    c->next(c->a, c->r, c->agent_id, tenant, c->extra);
  }
  free(c);
}

/* Parses "Authorization: Bearer <agent_id>.<secret>" and authenticates. */
static void authenticate(api_t *a, http_req_t *r, authed_fn next, void *extra) {
  const char *h = http_req_header(r, "authorization");
  const char *dot;
  if (h == NULL || strncmp(h, "Bearer ", 7) != 0 || (dot = strchr(h + 7, '.')) == NULL ||
      dot - (h + 7) > 39 || dot - (h + 7) < 1 || strlen(dot + 1) > 128) {
    a->stats.auth_failures++;
    http_reply_error(r, 401, "unauthorized", "missing or malformed Authorization header");
    return;
  }
  auth_ctx_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  c->a = a;
  c->r = r;
  c->next = next;
  c->extra = extra;
  memcpy(c->agent_id, h + 7, (size_t)(dot - (h + 7)));
  store_auth(a->store, c->agent_id, dot + 1, on_auth, c);
}

/* ---------------------------------------------------------------- */
/* POST /api/v1/enroll                                                */

typedef struct {
  api_t *a;
  http_req_t *r;
} enroll_ctx_t;

/* The enrollment hook: every attempt that reached the database goes to
 * the audit log (action agent.enroll, agent.reenroll or
 * agent.enroll_refused), with the token id and the client's address,
 * never a secret. */
static int audit_enrollment(sqlite3 *db, const store_enroll_info_t *e, void *data) {
  (void)data;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  auth_user_t who = {0};
  snprintf(who.name, sizeof(who.name), "agent");
  const char *action = strcmp(e->outcome, "enroll") == 0     ? "agent.enroll"
                       : strcmp(e->outcome, "reenroll") == 0 ? "agent.reenroll"
                                                             : "agent.enroll_refused";
  cJSON *d = cJSON_CreateObject();
  if (d == NULL)
    return YM_ENOMEM;
  cJSON_AddStringToObject(d, "token", e->token_id);
  if (e->claimed[0] != '\0')
    cJSON_AddStringToObject(d, "claimed_agent", e->claimed);
  if (e->reason[0] != '\0')
    cJSON_AddStringToObject(d, "reason", e->reason);
  cJSON_AddStringToObject(d, "host_id", e->host_id);
  cJSON_AddStringToObject(d, "host_name", e->host_name);
  char *detail = cJSON_PrintUnformatted(d);
  cJSON_Delete(d);
  if (detail == NULL)
    return YM_ENOMEM;
  int rc = auth_audit_db(db, &who, e->tenant_id, action,
                         e->agent_id[0] != '\0' ? e->agent_id : e->claimed, detail, e->peer,
                         (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
  free(detail);
  return rc;
}

static void on_enrolled(int rc, const char *reason, const char *agent_id, const char *secret,
                        const char *tenant, void *data) {
  enroll_ctx_t *c = data;
  if (rc != 0) {
    c->a->stats.enroll_refused++;
    http_reply_error(c->r, rc == YM_EPERM ? 401 : 500, reason ? reason : "internal",
                     "enrollment refused");
  } else {
    c->a->stats.enrolled++;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "agent_id", agent_id);
    cJSON_AddStringToObject(j, "secret", secret);
    cJSON_AddStringToObject(j, "tenant", tenant);
    cJSON_AddNumberToObject(j, "checkin_s", c->a->opts.checkin_s);
    reply_json(c->r, 200, j);
  }
  free(c);
}

static int refuse(const char **why, const char *msg) {
  *why = msg;
  return YM_EINVAL;
}

int api_parse_enroll(const char *body, size_t len, api_enroll_body_t *out, const char **why) {
  memset(out, 0, sizeof(*out));
  if (len > ENROLL_MAX_BODY || ym_json_parse_lenient(body, len, ENROLL_MAX_BODY, &out->json) != 0 ||
      !cJSON_IsObject(out->json)) {
    api_enroll_body_free(out);
    return refuse(why, "the body must be a JSON object");
  }
  const cJSON *tokj = cJSON_GetObjectItemCaseSensitive(out->json, "token");
  const char *tok = ym_json_get_str(out->json, "token");
  const cJSON *host = cJSON_GetObjectItemCaseSensitive(out->json, "host");
  const char *dot = tok ? strchr(tok, '.') : NULL;
  if ((tokj != NULL && (dot == NULL || dot - tok != 16 || strlen(dot + 1) != 43)) ||
      !cJSON_IsObject(host)) {
    api_enroll_body_free(out);
    return refuse(why, "token and host are required");
  }
  if (tok != NULL) {
    out->has_token = true;
    memcpy(out->token_id, tok, 16);
    out->token_secret = dot + 1;
  }
  out->host_id = ym_json_get_str(host, "id");
  out->host_name = ym_json_get_str(host, "name");
  out->version = ym_json_get_str(cJSON_GetObjectItemCaseSensitive(out->json, "agent"), "version");
  out->host_json = cJSON_PrintUnformatted(host);
  if ((out->host_id && strlen(out->host_id) > 128) ||
      (out->host_name && strlen(out->host_name) > 255) || out->host_json == NULL ||
      strlen(out->host_json) > 16384) {
    api_enroll_body_free(out);
    return refuse(why, "host facts too large");
  }
  if (out->host_id == NULL)
    out->host_id = "";
  if (out->host_name == NULL)
    out->host_name = "";
  if (out->version == NULL)
    out->version = "";
  return 0;
}

void api_enroll_body_free(api_enroll_body_t *b) {
  cJSON_Delete(b->json);
  free(b->host_json);
  memset(b, 0, sizeof(*b));
}

static void on_enroll(http_req_t *r, void *data) {
  api_t *a = data;
  size_t len;
  const char *body = http_req_body(r, &len);
  api_enroll_body_t e;
  const char *why;
  if (api_parse_enroll(body, len, &e, &why) != 0) {
    http_reply_error(r, 400, "bad_request", why);
    return;
  }
  /* An agent that enrolls again proves it holds its current secret with
   * the header every other request carries; a token is then optional. */
  const char *auth = http_req_header(r, "authorization");
  const char *adot =
      auth != NULL && strncmp(auth, "Bearer ", 7) == 0 ? strchr(auth + 7, '.') : NULL;
  char agent_id[40] = "";
  if (auth != NULL &&
      (adot == NULL || adot - (auth + 7) < 1 || adot - (auth + 7) > 39 || strlen(adot + 1) > 128)) {
    api_enroll_body_free(&e);
    http_reply_error(r, 400, "bad_request", "malformed Authorization header");
    return;
  }
  if (adot != NULL)
    memcpy(agent_id, auth + 7, (size_t)(adot - (auth + 7)));
  if (!e.has_token && adot == NULL) {
    api_enroll_body_free(&e);
    http_reply_error(r, 400, "bad_request",
                     "a token (or the agent's Authorization) and host are required");
    return;
  }
  enroll_ctx_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    api_enroll_body_free(&e);
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  c->a = a;
  c->r = r;
  store_enroll_t req = {.token_id = e.token_id,
                        .token_secret = e.has_token ? e.token_secret : "",
                        .agent_id = agent_id,
                        .agent_secret = adot != NULL ? adot + 1 : "",
                        .host_id = e.host_id,
                        .host_name = e.host_name,
                        .host_json = e.host_json,
                        .version = e.version,
                        .peer = http_req_peer(r)};
  store_enroll(a->store, &req, on_enrolled, c);
  api_enroll_body_free(&e);
}

/* ---------------------------------------------------------------- */
/* POST /api/v1/events                                                */

typedef struct {
  uv_work_t work;
  api_t *a;
  http_req_t *r;
  char agent_id[40];
  int64_t tenant;
  void *body; /* a copy: the request's memory may go if the client does */
  size_t len;
  int rc;
  ingest_batch_t batch;
} batch_ctx_t;

static void batch_ctx_free(batch_ctx_t *c) {
  ingest_batch_free(&c->batch);
  free(c->body);
  free(c);
}

static void decode_work(uv_work_t *w) {
  batch_ctx_t *c = w->data;
  c->rc = ingest_decode(c->body, c->len, &c->batch);
}

static void on_committed(int rc, size_t inserted, void *data) {
  batch_ctx_t *c = data;
  if (rc == YM_ERANGE) {
    c->a->stats.bad_batches++;
    http_reply_error(c->r, 409, "seq_too_far",
                     "the batch's stream_seq runs too far ahead of what this agent has stored");
  } else if (rc != 0) {
    http_reply_error(c->r, 503, "unavailable", "the store could not commit; retry");
  } else {
    c->a->stats.batches++;
    c->a->stats.events += inserted;
    c->a->stats.duplicates += c->batch.n - inserted;
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"acked\":%lld}", (long long)c->batch.last_seq);
    http_reply(c->r, 200, body, (size_t)n, 0);
  }
  batch_ctx_free(c);
}

static void decode_done(uv_work_t *w, int status) {
  batch_ctx_t *c = w->data;
  (void)status;
  if (c->rc != 0) {
    c->a->stats.bad_batches++;
    if (c->rc == YM_ETOOBIG)
      http_reply_error(c->r, 413, "too_large", "split the batch");
    else
      http_reply_error(c->r, 400, "bad_request", c->batch.error[0] ? c->batch.error : "malformed");
    batch_ctx_free(c);
    return;
  }
  if (strcmp(c->batch.agent_id, c->agent_id) != 0) {
    c->a->stats.bad_batches++;
    http_reply_error(c->r, 403, "agent_mismatch", "the batch names another agent");
    batch_ctx_free(c);
    return;
  }
  store_insert_batch(c->a->store, c->agent_id, c->tenant, c->batch.stream, c->batch.events,
                     c->batch.n, on_committed, c);
}

static void events_authed(api_t *a, http_req_t *r, const char *agent_id, int64_t tenant,
                          void *extra) {
  (void)extra;
  const char *enc = http_req_header(r, "content-encoding");
  if (enc == NULL || strcmp(enc, "gzip") != 0) {
    http_reply_error(r, 415, "unsupported_encoding", "batches must be gzip");
    return;
  }
  batch_ctx_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  c->a = a;
  c->r = r;
  c->tenant = tenant;
  snprintf(c->agent_id, sizeof(c->agent_id), "%s", agent_id);
  const void *body = http_req_body(r, &c->len);
  c->body = malloc(c->len ? c->len : 1);
  if (c->body == NULL) {
    free(c);
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  memcpy(c->body, body, c->len);
  c->work.data = c;
  /* Decompressing and checking up to 32 MiB is CPU work: off the loop. */
  uv_queue_work(a->loop, &c->work, decode_work, decode_done);
}

static void on_events(http_req_t *r, void *data) {
  authenticate(data, r, events_authed, NULL);
}

/* ---------------------------------------------------------------- */
/* POST /api/v1/checkin                                               */

typedef struct {
  api_t *a;
  http_req_t *r;
  cJSON *req; /* the agent's check-in */
  char agent_id[40];
  int64_t tenant_id;
  char *version, *rules_version, *status_json;
  cJSON *answer;
} checkin_ctx_t;

static void checkin_free(checkin_ctx_t *c) {
  cJSON_Delete(c->req);
  cJSON_Delete(c->answer);
  free(c->version);
  free(c->rules_version);
  free(c->status_json);
  free(c);
}

/* On the database thread: the agent's row, then the contributors, in one
 * transaction. */
static int checkin_db(sqlite3 *db, void *arg) {
  checkin_ctx_t *c = arg;
  api_t *a = c->a;
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : YM_EIO;
  if (rc == 0 && sqlite3_prepare_v2(db,
                                    "UPDATE agents SET last_seen = ?2, version = ?3,"
                                    " rules_version = ?4, status_json = ?5"
                                    " WHERE id = ?1 AND tenant_id = ?6",
                                    -1, &st, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (rc == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sqlite3_bind_text(st, 1, c->agent_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    sqlite3_bind_text(st, 3, c->version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, c->rules_version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, c->status_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, c->tenant_id);
    if (sqlite3_step(st) != SQLITE_DONE)
      rc = YM_EIO;
    else if (sqlite3_changes(db) == 0)
      rc = YM_ENOENT;
  }
  sqlite3_finalize(st);
  for (size_t i = 0; rc == 0 && i < a->n_checkin; i++)
    rc = a->checkin[i].fn(db, c->tenant_id, c->agent_id, c->req, c->answer, a->checkin[i].data);
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (rc != 0 && !sqlite3_get_autocommit(db))
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

static void on_checked_in(int rc, void *data) {
  checkin_ctx_t *c = data;
  if (rc != 0) {
    http_reply_error(c->r, rc == YM_ENOENT ? 401 : 503,
                     rc == YM_ENOENT ? "unauthorized" : "unavailable",
                     rc == YM_ENOENT ? "unknown agent" : "retry");
  } else {
    c->a->stats.checkins++;
    reply_json(c->r, 200, c->answer);
    c->answer = NULL;
  }
  checkin_free(c);
}

int api_parse_checkin(const char *body, size_t len, api_checkin_body_t *out, const char **why) {
  memset(out, 0, sizeof(*out));
  if (len > CHECKIN_MAX_BODY ||
      ym_json_parse_lenient(body, len, CHECKIN_MAX_BODY, &out->json) != 0 ||
      !cJSON_IsObject(out->json)) {
    api_checkin_body_free(out);
    return refuse(why, "the body must be a JSON object");
  }
  out->agent_id = ym_json_get_str(out->json, "agent_id");
  out->version = ym_json_get_str(out->json, "version");
  out->rules_version = ym_json_get_str(out->json, "rules_version");
  cJSON *status = cJSON_CreateObject();
  cJSON *s = cJSON_GetObjectItemCaseSensitive(out->json, "status");
  cJSON *k = cJSON_GetObjectItemCaseSensitive(out->json, "counters");
  if (cJSON_IsObject(s))
    cJSON_AddItemToObject(status, "status", cJSON_Duplicate(s, true));
  if (cJSON_IsObject(k))
    cJSON_AddItemToObject(status, "counters", cJSON_Duplicate(k, true));
  out->status_json = cJSON_PrintUnformatted(status);
  cJSON_Delete(status);
  if (out->status_json == NULL || (out->version && strlen(out->version) > 64) ||
      (out->rules_version && strlen(out->rules_version) > 64)) {
    api_checkin_body_free(out);
    return refuse(why, "check-in fields too large");
  }
  if (out->version == NULL)
    out->version = "";
  if (out->rules_version == NULL)
    out->rules_version = "";
  return 0;
}

void api_checkin_body_free(api_checkin_body_t *b) {
  cJSON_Delete(b->json);
  free(b->status_json);
  memset(b, 0, sizeof(*b));
}

static void checkin_authed(api_t *a, http_req_t *r, const char *agent_id, int64_t tenant,
                           void *extra) {
  (void)extra;
  size_t len;
  const char *body = http_req_body(r, &len);
  api_checkin_body_t b;
  const char *why;
  if (api_parse_checkin(body, len, &b, &why) != 0) {
    http_reply_error(r, 400, "bad_request", why);
    return;
  }
  if (b.agent_id != NULL && strcmp(b.agent_id, agent_id) != 0) {
    api_checkin_body_free(&b);
    http_reply_error(r, 403, "agent_mismatch", "the check-in names another agent");
    return;
  }
  checkin_ctx_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    api_checkin_body_free(&b);
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  c->a = a;
  c->r = r;
  c->tenant_id = tenant;
  snprintf(c->agent_id, sizeof(c->agent_id), "%s", agent_id);
  c->version = strdup(b.version);
  c->rules_version = strdup(b.rules_version);
  c->req = b.json; /* the strings above are copied: the context owns the rest */
  c->status_json = b.status_json;
  c->answer = cJSON_CreateObject();
  if (c->version == NULL || c->rules_version == NULL || c->answer == NULL) {
    checkin_free(c);
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  cJSON_AddNumberToObject(c->answer, "next_checkin_s", a->opts.checkin_s);
  cJSON_AddNullToObject(c->answer, "policy");
  cJSON_AddNullToObject(c->answer, "rules");
  cJSON_AddNullToObject(c->answer, "release");
  cJSON_AddArrayToObject(c->answer, "commands");
  store_call(a->store, checkin_db, c, on_checked_in, c);
}

int api_add_checkin(api_t *a, api_checkin_fn fn, void *data) {
  if (a->n_checkin >= API_MAX_CONTRIBUTORS)
    return YM_ETOOBIG;
  a->checkin[a->n_checkin].fn = fn;
  a->checkin[a->n_checkin].data = data;
  a->n_checkin++;
  return 0;
}

/* ---------------------------------------------------------------- */
/* Routes of other modules for agents                                 */

static void agent_route_authed(api_t *a, http_req_t *r, const char *agent_id, int64_t tenant,
                               void *extra) {
  (void)a;
  agent_route_t *route = extra;
  route->fn(r, agent_id, tenant, route->data);
}

static void on_agent_route(http_req_t *r, void *data) {
  agent_route_t *route = data;
  authenticate(route->a, r, agent_route_authed, route);
}

int api_route_agent(api_t *a, const char *method, const char *prefix, api_agent_handler_t fn,
                    void *data) {
  if (a->n_routes >= API_MAX_ROUTES)
    return YM_ETOOBIG;
  agent_route_t *route = &a->routes[a->n_routes];
  route->a = a;
  route->fn = fn;
  route->data = data;
  int rc = http_route(a->http, method, prefix, on_agent_route, route);
  if (rc == 0)
    a->n_routes++;
  return rc;
}

static void on_checkin(http_req_t *r, void *data) {
  authenticate(data, r, checkin_authed, NULL);
}

static void on_health(http_req_t *r, void *data) {
  (void)data;
  http_reply(r, 200, "{\"status\":\"ok\"}", 15, 0);
}

int api_new(uv_loop_t *loop, http_t *http, store_t *store, const api_opts_t *opts, api_t **out) {
  api_t *a = calloc(1, sizeof(*a));
  if (a == NULL)
    return YM_ENOMEM;
  a->loop = loop;
  a->http = http;
  a->store = store;
  a->opts = *opts;
  store_on_enroll(store, audit_enrollment, a);
  int rc = http_route(http, "POST", "/api/v1/enroll", on_enroll, a);
  if (rc == 0)
    rc = http_route(http, "POST", "/api/v1/events", on_events, a);
  if (rc == 0)
    rc = http_route(http, "POST", "/api/v1/checkin", on_checkin, a);
  if (rc == 0)
    rc = http_route(http, "GET", "/api/v1/health", on_health, a);
  if (rc != 0) {
    free(a);
    return rc;
  }
  *out = a;
  return 0;
}

void api_free(api_t *a) {
  free(a);
}

void api_stats(const api_t *a, api_stats_t *out) {
  *out = a->stats;
}
