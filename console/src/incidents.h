/*
 * Incidents: what a person acts on. Alerts become incidents grouped by PC
 * and rule (one infection is one incident, however many alerts it
 * raises); a PC that stops checking in becomes an "agent silent"
 * incident; several live agent records of one tenant with the same host
 * id each get a "duplicate" incident (an enrollment hook of the store).
 * Each incident has a state (new, acknowledged, resolved), an
 * owner, notes and a timeline (table incident_log).
 *
 * Tables (module "incidents", docs/console.md):
 *   tenant_settings(tenant_id, lang, emails, webhook_url, silent_minutes,
 *                   retention_days)      per-company settings; the help
 *                                        desk contact is tenants.helpdesk
 *   incidents(id, tenant_id, agent_id, kind, rule, title, severity, state,
 *             owner, count, first_ms, last_ms, resolved_ms, file_path,
 *             file_sha256, process_json, alert_json, updated_ms, ruleset,
 *             technique)         ruleset "sigma": a behaviour rule's
 *                                incident, rule is its Sigma id and
 *                                technique its ATT&CK ids ("T1053.003,...")
 *   incident_alerts(incident_id, event_id)
 *   incident_log(id, incident_id, at_ms, what, user, detail)
 * Incidents are never pruned with the events; alert_json keeps a copy of
 * the first alert.
 */
#ifndef YAMORI_CONSOLE_INCIDENTS_H
#define YAMORI_CONSOLE_INCIDENTS_H

#include "store.h"

#include "yamori/json.h"

#include <stdint.h>

/* Applies the module's schema. */
int incidents_schema(store_t *s);

/* Told when an incident is created or changes state ("created",
 * "acknowledged", "resolved", "reopened"), on the database thread inside
 * the transaction that made the change (notifications queue there). */
typedef int (*incidents_notify_fn)(sqlite3 *db, int64_t incident_id, const char *change);

typedef struct incidents incidents_t;

typedef struct {
  unsigned maintenance_s;     /* silent PCs and retention checked this often (0: 60) */
  incidents_notify_fn notify; /* may be NULL */
} incidents_opts_t;

/* Starts the module on a loop: the batch hook that turns alerts into
 * incidents (store_on_batch), the enrollment hook that marks duplicate
 * hosts (store_on_enroll), and a timer for silent PCs and event
 * retention. Register before the loop runs. */
int incidents_new(uv_loop_t *loop, store_t *store, const incidents_opts_t *opts, incidents_t **out);
void incidents_free(incidents_t *m);

/* The check-in contributor (api_add_checkin): records the hour of
 * presence, resolves the PC's open "agent silent" incident, and asks a PC
 * with an open malware incident to check in every 10 s (response
 * commands travel with check-ins). */
int incidents_checkin(sqlite3 *db, int64_t tenant_id, const char *agent_id, const cJSON *req,
                      cJSON *answer, void *data);

/* Changes an incident within the caller's transaction: state, owner
 * and/or a note (NULL: unchanged), logged with user. scope 0: any tenant;
 * else the incident must be the scope's (YM_ENOENT otherwise). tenant_out
 * gets the incident's tenant. */
int incidents_update_db(incidents_t *m, sqlite3 *db, int64_t scope, int64_t id, const char *user,
                        const char *state, const char *owner, const char *note, int64_t now_ms,
                        int64_t *tenant_out);

/* After agent_id was revoked, within the caller's transaction: resolves
 * its open incidents, and the duplicate incident of a record that is now
 * alone with its host id, logged with user. */
int incidents_agent_revoked_db(incidents_t *m, sqlite3 *db, const char *agent_id, const char *user,
                               int64_t now_ms);

/* Runs one maintenance pass now (silent PCs, retention): for tests and
 * the timer. */
void incidents_maintain(incidents_t *m);

#endif
