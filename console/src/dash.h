/*
 * The dashboard's views and actions (docs/console-api.md): steps of the
 * routes web.c declares. Each runs with a database connection and the
 * person's scope (web_req_t.scope: their tenant, or 0 for provider staff),
 * and every statement filters by that scope in SQL, so that a row of
 * another tenant is not found, whatever id a request names.
 */
#ifndef YAMORI_CONSOLE_DASH_H
#define YAMORI_CONSOLE_DASH_H

#include "web.h"

/* The token inside each downloaded installer (dash_installer): a few
 * enrollments within a week. */
#define DASH_INSTALLER_TOKEN_USES 10
#define DASH_INSTALLER_TOKEN_DAYS 7

int dash_overview(sqlite3 *db, web_req_t *q);
int dash_agents(sqlite3 *db, web_req_t *q);
int dash_agent(sqlite3 *db, web_req_t *q);
int dash_processes(sqlite3 *db, web_req_t *q);
int dash_agent_revoke(sqlite3 *db, web_req_t *q);
int dash_command_create(sqlite3 *db, web_req_t *q);
int dash_incidents(sqlite3 *db, web_req_t *q);
int dash_incident(sqlite3 *db, web_req_t *q);
int dash_incident_update(sqlite3 *db, web_req_t *q);
int dash_events(sqlite3 *db, web_req_t *q);
int dash_commands(sqlite3 *db, web_req_t *q);
int dash_command(sqlite3 *db, web_req_t *q);
int dash_command_bundle(sqlite3 *db, web_req_t *q);
int dash_tenants(sqlite3 *db, web_req_t *q);
int dash_tenant_create(sqlite3 *db, web_req_t *q);
int dash_settings(sqlite3 *db, web_req_t *q);
int dash_settings_set(sqlite3 *db, web_req_t *q);
int dash_tokens(sqlite3 *db, web_req_t *q);
int dash_token_create(sqlite3 *db, web_req_t *q);
int dash_token_revoke(sqlite3 *db, web_req_t *q);
int dash_installer(sqlite3 *db, web_req_t *q);
int dash_report(sqlite3 *db, web_req_t *q);
int dash_users(sqlite3 *db, web_req_t *q);
int dash_user_check(sqlite3 *db, web_req_t *q);
int dash_user_create(sqlite3 *db, web_req_t *q);
int dash_audit(sqlite3 *db, web_req_t *q);

#endif
