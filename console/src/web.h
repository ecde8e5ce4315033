/*
 * The dashboard's side of the console: the static files of console/web
 * and the JSON API under /api/ui/ (docs/console-api.md), for people.
 *
 * A request runs as a short chain of steps: database reads (store_read, a
 * read-only connection on a worker thread), database writes (store_call,
 * the database thread) and CPU work (password hashing, on a worker
 * thread). The first database step checks the session (cookie ym_session,
 * SHA-256 looked up in table sessions), the CSRF header of every POST and
 * the route's minimum role, before the route's own code runs. Handlers
 * never see another tenant's rows: they get the person's scope (0 for
 * provider staff) and every query of dash.c filters by it in SQL.
 *
 * Loop thread only, except the step functions.
 */
#ifndef YAMORI_CONSOLE_WEB_H
#define YAMORI_CONSOLE_WEB_H

#include "auth.h"
#include "http.h"
#include "incidents.h"
#include "store.h"

#include "yamori/json.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define WEB_MAX_PARAMS 16
#define WEB_PARAM_MAX 512
#define WEB_BODY_MAX (256 * 1024)

typedef struct web web_t;

typedef struct {
  const char *web_dir;        /* the dashboard's files (console/web) */
  const char *console_url;    /* for enrollment tokens */
  const char *pin;            /* the certificate pin, for enrollment tokens */
  const char *installer_file; /* the generic agent installer, or NULL */
  const char *data_dir;       /* for files modules keep (bundles) */
  incidents_t *incidents;     /* incident changes go through it */
} web_opts_t;

typedef struct {
  char key[32];
  char value[WEB_PARAM_MAX + 1];
} web_param_t;

/* One request as the steps see it. */
typedef struct web_req {
  web_t *w;
  http_req_t *r;
  const struct web_route *route;
  unsigned step;
  char id[2][80]; /* the path's :id segments, in order */
  web_param_t params[WEB_MAX_PARAMS];
  size_t n_params;
  cJSON *body; /* POST: the parsed JSON object (never NULL for POST) */
  bool has_token;
  uint8_t token_hash[32];
  char csrf_header[AUTH_CSRF_LEN + 1];
  char peer[64];
  int64_t now_ms;
  auth_user_t user;
  bool authed;
  int64_t scope; /* the tenant the person may see; 0: every tenant (staff) */
  /* Scratch for chained steps. */
  char scratch[512];
  char token[AUTH_TOKEN_LEN + 1];
  int64_t num;
  int64_t delay_ms; /* the answer waits this long (a timer; login slow-down) */
  /* The answer. */
  int status;       /* 0: 200 */
  cJSON *answer;    /* JSON answer (an object), or */
  void *raw;        /* a raw body (malloc'd) with */
  size_t raw_len;   /* its length, */
  char ctype[64];   /* its content type and */
  char disp[160];   /* its Content-Disposition, or "" */
  char err[32];     /* error code when status >= 400 */
  char msg[160];    /* error message */
  char cookie[256]; /* a Set-Cookie value, or "" */
} web_req_t;

/* A step: returns 0 to go on, or sets q->status/err with web_fail() and
 * returns non-zero. */
typedef int (*web_step_fn)(sqlite3 *db, web_req_t *q);

int web_new(uv_loop_t *loop, http_t *http, store_t *store, const web_opts_t *opts, web_t **out);
void web_free(web_t *w);

/* Parses a request of the dashboard API, a pure function and the fuzzed
 * parser: finds the route of method and sub (the path below /api/ui/,
 * NUL-terminated) with its :id segments into q->route and q->id, the
 * query string (NUL-terminated, without '?') into q->params and, for a
 * POST, the body of blen bytes into q->body (a JSON object; an empty body
 * is {}; the caller frees it with cJSON_Delete). Returns 0, or the HTTP
 * status of the refusal (400, 404, 405, 413, 500 when out of memory) with
 * *code and *why set to static strings and q->body NULL. */
int web_parse(web_req_t *q, const char *method, const char *sub, const char *query,
              const char *body, size_t blen, const char **code, const char **why);

/* Helpers for steps. */
int web_fail(web_req_t *q, int status, const char *code, const char *msg);
/* A query parameter, or NULL. */
const char *web_param(const web_req_t *q, const char *key);
/* A query parameter as an integer in [min, max]; def when absent.
 * Returns false (and fails q with 400) when present but malformed. */
bool web_param_int(web_req_t *q, const char *key, int64_t min, int64_t max, int64_t def,
                   int64_t *out);
/* The tenant a list is about: the person's own, or for staff the tenant
 * parameter (0: all). */
int64_t web_tenant_filter(web_req_t *q);
const web_opts_t *web_opts(const web_t *w);
/* The store the dashboard runs on. */
store_t *web_store(const web_t *w);

#endif
