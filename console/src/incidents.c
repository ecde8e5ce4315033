#include "incidents.h"

#include "yamori/err.h"

static const char *const schema[] = {
    /* 1: settings, incidents and their logs. */
    "CREATE TABLE tenant_settings("
    " tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id),"
    " lang TEXT NOT NULL DEFAULT 'ja' CHECK(lang IN ('ja', 'en')),"
    " emails TEXT NOT NULL DEFAULT '[]'," /* JSON array of addresses */
    " webhook_url TEXT NOT NULL DEFAULT '',"
    " silent_minutes INTEGER NOT NULL DEFAULT 30,"
    " retention_days INTEGER NOT NULL DEFAULT 90"
    ") STRICT;"
    "CREATE TABLE incidents("
    " id INTEGER PRIMARY KEY,"
    " tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
    " agent_id TEXT NOT NULL,"
    " kind TEXT NOT NULL CHECK(kind IN ('malware', 'silent')),"
    " rule TEXT NOT NULL DEFAULT '',"
    " title TEXT NOT NULL DEFAULT '',"
    " severity TEXT NOT NULL DEFAULT 'high' CHECK(severity IN ('high', 'medium', 'low')),"
    " state TEXT NOT NULL DEFAULT 'new' CHECK(state IN ('new', 'acknowledged', 'resolved')),"
    " owner TEXT NOT NULL DEFAULT '',"
    " count INTEGER NOT NULL DEFAULT 1,"
    " first_ms INTEGER NOT NULL,"
    " last_ms INTEGER NOT NULL,"
    " resolved_ms INTEGER,"
    " file_path TEXT NOT NULL DEFAULT '',"
    " file_sha256 TEXT NOT NULL DEFAULT '',"
    " process_json TEXT NOT NULL DEFAULT '[]',"
    " alert_json TEXT NOT NULL DEFAULT '{}',"
    " updated_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE UNIQUE INDEX incidents_open ON incidents(agent_id, kind, rule)"
    " WHERE state != 'resolved';"
    "CREATE INDEX incidents_tenant_state ON incidents(tenant_id, state, last_ms);"
    "CREATE INDEX incidents_agent ON incidents(agent_id, state);"
    "CREATE TABLE incident_alerts("
    " incident_id INTEGER NOT NULL,"
    " event_id INTEGER NOT NULL,"
    " PRIMARY KEY(incident_id, event_id)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE incident_log("
    " id INTEGER PRIMARY KEY,"
    " incident_id INTEGER NOT NULL REFERENCES incidents(id),"
    " at_ms INTEGER NOT NULL,"
    " what TEXT NOT NULL,"
    " user TEXT NOT NULL DEFAULT '',"
    " detail TEXT NOT NULL DEFAULT ''"
    ") STRICT;"
    "CREATE INDEX incident_log_incident ON incident_log(incident_id, at_ms);",
};

int incidents_schema(store_t *s) {
  return store_ensure_schema(s, "incidents", schema, sizeof(schema) / sizeof(schema[0]));
}
