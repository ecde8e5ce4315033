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

typedef struct api api_t;

typedef struct {
  unsigned checkin_s;      /* next_checkin_s returned to agents */
  unsigned rate_per_agent; /* requests per second per agent (burst 2x) */
} api_opts_t;

int api_new(uv_loop_t *loop, http_t *http, store_t *store, const api_opts_t *opts, api_t **out);
void api_free(api_t *a);

typedef struct {
  uint64_t enrolled, enroll_refused, batches, events, duplicates, auth_failures, bad_batches,
      checkins, rate_limited;
} api_stats_t;
void api_stats(const api_t *a, api_stats_t *out);

#endif
