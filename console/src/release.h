/*
 * Signed agent releases and rules bundles on the console (docs/update.md):
 * their storage, the rollout per tenant, what the check-in tells each
 * agent, the agent's download routes, and the command-line tools
 * (`release`, `rollout`, `rules`).
 *
 * The console never signs anything while it serves: releases arrive signed
 * (`release import`), rules bundles are signed by `rules publish` with a
 * key file given on the command line. Agents verify everything with the
 * release keys installed with them.
 *
 * Tables (module "release"): releases, rule_bundles, rollouts,
 * agent_update_state.
 */
#ifndef YAMORI_CONSOLE_RELEASE_H
#define YAMORI_CONSOLE_RELEASE_H

#include "api.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>

typedef struct release release_t;

/* Applies the module's migrations (call after store_open, before serving
 * or any other call here). */
int release_ensure_schema(store_t *s);

/* Registers the check-in contributor (members "release" and "rules") and
 * the agent routes GET /api/v1/releases/<serial or version>/package and
 * GET /api/v1/rules/<version> on api. Loop thread, before the loop runs. */
int release_new(store_t *s, api_t *api, release_t **out);
void release_free(release_t *r);

/* The check-in contributor (api_checkin_fn): stores the agent's "update"
 * report and answers which release and rules bundles it should have. */
int release_checkin(sqlite3 *db, int64_t tenant_id, const char *agent_id, const cJSON *req,
                    cJSON *answer, void *data);

/* For the dashboard: fills out (an object) with the agent's update state as
 * last reported: {"running", "pending", "failed", "reason", "serial",
 * "rules"} (strings, "" when none; serial a number). Returns 0,
 * YM_ENOENT (the agent never reported) or YM_EIO. */
int release_agent_state_json(sqlite3 *db, const char *agent_id, cJSON *out);

/* A change of a tenant's rollout (for the dashboard): members left at
 * their "keep" value are not changed. tenant_id 0 is the default row for
 * tenants without one of their own. */
typedef struct {
  const char *channel; /* NULL: keep */
  int percent;         /* 0..100, -1: keep */
  const char *pin;     /* a version, "" to unpin, NULL: keep */
  int paused;          /* 0 or 1, -1: keep */
} release_rollout_t;
/* Applies r to the tenant's rollout row (created with channel "stable",
 * 100 %, not pinned, not paused). Returns 0, YM_EINVAL (percent out of
 * range, malformed pin or channel) or YM_EIO. Database thread. */
int release_rollout_set(sqlite3 *db, int64_t tenant_id, const release_rollout_t *r);
/* Fills out with the rollout that applies to the tenant: {"channel",
 * "percent", "pinned", "paused", "inherited"} (inherited: the default
 * row applies); no row at all: {"channel": null}. Returns 0 or YM_EIO. */
int release_rollout_json(sqlite3 *db, int64_t tenant_id, cJSON *out);
/* Appends one object per stored release to arr, newest first: {"serial",
 * "version", "channel", "platform", "architecture", "size",
 * "imported_at"}. Returns 0 or YM_EIO. */
int release_list_json(sqlite3 *db, cJSON *arr);

/* The stable bucket (0..99) of an agent in percentage rollouts: the first
 * four bytes of SHA-256(agent_id), big-endian, modulo 100. */
unsigned release_bucket(const char *agent_id);

/* The command-line tools: argv[0] is "release", "rollout" or "rules".
 * data_dir is the console's data directory. Returns a process exit code
 * (64: usage). */
int release_main(const char *data_dir, int argc, char **argv);

#endif
