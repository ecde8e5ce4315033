/*
 * Incidents: what a person acts on. Alerts become incidents grouped by PC
 * and rule (one infection is one incident, however many alerts it
 * raises); a PC that stops checking in becomes an "agent silent"
 * incident. Each incident has a state (new, acknowledged, resolved), an
 * owner, notes and a timeline (table incident_log).
 *
 * Tables (module "incidents", docs/console.md):
 *   tenant_settings(tenant_id, lang, emails, webhook_url, silent_minutes,
 *                   retention_days)      per-company settings; the help
 *                                        desk contact is tenants.helpdesk
 *   incidents(id, tenant_id, agent_id, kind, rule, title, severity, state,
 *             owner, count, first_ms, last_ms, resolved_ms, file_path,
 *             file_sha256, process_json, alert_json, updated_ms)
 *   incident_alerts(incident_id, event_id)
 *   incident_log(id, incident_id, at_ms, what, user, detail)
 * Incidents are never pruned with the events; alert_json keeps a copy of
 * the first alert.
 */
#ifndef YAMORI_CONSOLE_INCIDENTS_H
#define YAMORI_CONSOLE_INCIDENTS_H

#include "store.h"

#include <stdint.h>

/* Applies the module's schema. */
int incidents_schema(store_t *s);

#endif
