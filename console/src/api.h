/*
 * The agent API of protocol v1 (docs/protocol.md): enroll, events,
 * checkin. Routes are registered on the HTTP server; each handler checks
 * the request, authenticates the agent, decodes off the loop thread, writes
 * through the store's database thread, and answers only after the store
 * committed.
 */
#ifndef YAMORI_CONSOLE_API_H
#define YAMORI_CONSOLE_API_H

#include "http.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

#define API_MAX_CONTRIBUTORS 8
#define API_MAX_ROUTES 16

typedef struct api api_t;

typedef struct {
  unsigned checkin_s;      /* next_checkin_s returned to agents */
  unsigned rate_per_agent; /* requests per second per agent (burst 2x) */
} api_opts_t;

/* Adds members to the check-in answer. Runs on the database thread inside
 * the check-in's transaction, after the agent's row was updated; req is
 * the agent's check-in request. The answer starts as {"next_checkin_s",
 * "policy": null, "rules": null, "release": null, "commands": []}. A
 * non-zero return fails the check-in (503). */
typedef int (*api_checkin_fn)(sqlite3 *db, int64_t tenant_id, const char *agent_id,
                              const cJSON *req, cJSON *answer, void *data);
/* Registers a contributor (at most API_MAX_CONTRIBUTORS), before the loop
 * runs. Returns 0 or YM_ETOOBIG. */
int api_add_checkin(api_t *a, api_checkin_fn fn, void *data);

/* A handler of an agent route: runs after the agent authenticated (and
 * passed its rate limit) and must answer with http_reply*() once. */
typedef void (*api_agent_handler_t)(http_req_t *r, const char *agent_id, int64_t tenant_id,
                                    void *data);
/* Registers a route for agents (Authorization: Bearer <agent_id>.<secret>),
 * as http_route() does, at most API_MAX_ROUTES. */
int api_route_agent(api_t *a, const char *method, const char *prefix, api_agent_handler_t fn,
                    void *data);

/* An enrollment request's body (docs/protocol.md), parsed and bounded. */
typedef struct {
  cJSON *json;              /* owns the strings below */
  bool has_token;           /* the body carries a token */
  char token_id[17];        /* when has_token: the token's id (16 characters) */
  const char *token_secret; /* when has_token: its secret (43 characters) */
  const char *host_id;      /* "" when absent; at most 128 bytes */
  const char *host_name;    /* "" when absent; at most 255 bytes */
  const char *version;      /* agent.version, "" when absent */
  char *host_json;          /* the host object, compact, at most 16 KiB (malloc'd) */
} api_enroll_body_t;

/* Parses an enrollment body of len bytes: a JSON object with "host" (an
 * object) and, when present, "token" of the form <16 characters>.<43
 * characters>. A pure function, also the fuzzed parser. Returns 0 and
 * fills *out (freed with api_enroll_body_free), or YM_EINVAL with *why set
 * to the reply's message (a static string) and nothing in *out to free. */
int api_parse_enroll(const char *body, size_t len, api_enroll_body_t *out, const char **why);
void api_enroll_body_free(api_enroll_body_t *b);

/* A check-in request's body, parsed and bounded. */
typedef struct {
  cJSON *json;               /* the whole check-in (contributors read it) */
  const char *agent_id;      /* as the body names it; NULL when absent */
  const char *version;       /* "" when absent; at most 64 bytes */
  const char *rules_version; /* "" when absent; at most 64 bytes */
  char *status_json;         /* {"status":..,"counters":..} as sent, compact (malloc'd) */
} api_checkin_body_t;

/* Parses a check-in body of len bytes, as api_parse_enroll does; the body
 * must be a JSON object, "status" and "counters" are kept when they are
 * objects. Returns 0 (free with api_checkin_body_free) or YM_EINVAL with
 * *why set. */
int api_parse_checkin(const char *body, size_t len, api_checkin_body_t *out, const char **why);
void api_checkin_body_free(api_checkin_body_t *b);

int api_new(uv_loop_t *loop, http_t *http, store_t *store, const api_opts_t *opts, api_t **out);
void api_free(api_t *a);

typedef struct {
  uint64_t enrolled, enroll_refused, batches, events, duplicates, auth_failures, bad_batches,
      checkins, rate_limited;
} api_stats_t;
void api_stats(const api_t *a, api_stats_t *out);

#endif
