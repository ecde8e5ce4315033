#include "incidents.h"

#include "sql.h"

#include "yamori/err.h"
#include "yamori/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    "CREATE INDEX incident_log_incident ON incident_log(incident_id, at_ms);"
    "CREATE TABLE agent_health("
    " agent_id TEXT PRIMARY KEY,"
    " last_gap_ms INTEGER NOT NULL DEFAULT 0"
    ") STRICT;"
    /* Hours in which an agent checked in, for the monthly report. */
    "CREATE TABLE agent_presence("
    " agent_id TEXT NOT NULL,"
    " hour INTEGER NOT NULL," /* unix hours */
    " PRIMARY KEY(agent_id, hour)"
    ") STRICT, WITHOUT ROWID;",
    /* 2: kind "duplicate": several agent records of one tenant name the
     * same host id. SQLite cannot change a CHECK in place: the table is
     * made again, its log kept aside meanwhile (its rows refer to it). */
    "CREATE TABLE incident_log_keep AS SELECT * FROM incident_log;"
    "DELETE FROM incident_log;"
    "CREATE TABLE incidents_v2("
    " id INTEGER PRIMARY KEY,"
    " tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
    " agent_id TEXT NOT NULL,"
    " kind TEXT NOT NULL CHECK(kind IN ('malware', 'silent', 'duplicate')),"
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
    "INSERT INTO incidents_v2 SELECT * FROM incidents;"
    "DROP TABLE incidents;"
    "ALTER TABLE incidents_v2 RENAME TO incidents;"
    "CREATE UNIQUE INDEX incidents_open ON incidents(agent_id, kind, rule)"
    " WHERE state != 'resolved';"
    "CREATE INDEX incidents_tenant_state ON incidents(tenant_id, state, last_ms);"
    "CREATE INDEX incidents_agent ON incidents(agent_id, state);"
    "INSERT INTO incident_log SELECT * FROM incident_log_keep;"
    "DROP TABLE incident_log_keep;",
    /* 3: behaviour alerts. ruleset is "sigma" for them ("" for YARA), and
     * their rule is the Sigma id (titles are not unique); technique holds
     * the ATT&CK ids of the alert, comma-separated. A PC's open incident is
     * one per kind, ruleset and rule. */
    "ALTER TABLE incidents ADD COLUMN ruleset TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE incidents ADD COLUMN technique TEXT NOT NULL DEFAULT '';"
    "DROP INDEX incidents_open;"
    "CREATE UNIQUE INDEX incidents_open ON incidents(agent_id, kind, ruleset, rule)"
    " WHERE state != 'resolved';",
};

int incidents_schema(store_t *s) {
  return store_ensure_schema(s, "incidents", schema, sizeof(schema) / sizeof(schema[0]));
}

/* ------------------------------------------------------------------ */
/* Running                                                              */

#define PRUNE_CHUNK 5000
#define INCIDENTS_ACTIVE_CHECKIN_S 10
#define TITLE_MAX 512
#define PATH_MAX_STORED 4096
#define LOG_ALERTS_MAX 50 /* alerts logged per incident; the count goes on */

struct incidents {
  uv_loop_t *loop;
  store_t *store;
  incidents_opts_t opts;
  uv_timer_t timer;
  bool busy;       /* a maintenance pass is queued */
  bool prune_more; /* the last pass stopped at its chunk limit */
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int log_entry(sqlite3 *db, int64_t incident, int64_t at_ms, const char *what,
                     const char *user, const char *detail) {
  sqlite3_stmt *st = sql_prep(db, "INSERT INTO incident_log(incident_id, at_ms, what, user, detail)"
                                  " VALUES(?1, ?2, ?3, ?4, ?5)");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, incident);
  sqlite3_bind_int64(st, 2, at_ms);
  sqlite3_bind_text(st, 3, what, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, user ? user : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, detail ? detail : "", -1, SQLITE_STATIC);
  return sql_done(st);
}

/* Tells the notifier about malware and silent incidents. Shown on the
 * dashboard only: duplicate-host incidents, and behaviour incidents of a
 * low-level rule (a hint for the provider, not a reason to alarm the
 * company). */
static int notify(incidents_t *m, sqlite3 *db, int64_t incident, const char *change) {
  if (m == NULL || m->opts.notify == NULL)
    return 0;
  sqlite3_stmt *st = sql_prep(db, "SELECT kind != 'duplicate'"
                                  " AND NOT (ruleset = 'sigma' AND severity = 'low')"
                                  " FROM incidents WHERE id = ?1");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, incident);
  bool tell = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) != 0;
  sqlite3_finalize(st);
  return tell ? m->opts.notify(db, incident, change) : 0;
}

/* Copies at most max bytes of s, cut at a UTF-8 boundary. */
static void bounded(const char *s, size_t max, char *out, size_t out_len) {
  size_t len = s != NULL ? strlen(s) : 0, n = len;
  if (n > max)
    n = max;
  if (n >= out_len)
    n = out_len - 1;
  while (n > 0 && n < len && ((unsigned char)s[n] & 0xC0) == 0x80)
    n--;
  if (n > 0)
    memcpy(out, s, n);
  out[n] = '\0';
}

static const char *severity_of(const cJSON *e) {
  const cJSON *ev = cJSON_GetObjectItemCaseSensitive(e, "event");
  const cJSON *sev = cJSON_IsObject(ev) ? cJSON_GetObjectItemCaseSensitive(ev, "severity") : NULL;
  if (!cJSON_IsNumber(sev))
    return "high";
  return sev->valuedouble >= 73 ? "high" : sev->valuedouble >= 47 ? "medium" : "low";
}

#define TECHNIQUES_MAX 8

/* True when s is an ATT&CK technique id: T and four digits, optionally a
 * dot and three digits. */
static bool technique_id_ok(const char *s) {
  size_t n = strlen(s);
  if ((n != 5 && n != 9) || s[0] != 'T')
    return false;
  for (size_t i = 1; i < n; i++)
    if (!(i == 5 ? s[i] == '.' : s[i] >= '0' && s[i] <= '9'))
      return false;
  return true;
}

/* The alert's threat.technique.id (an array, or one string), well-formed
 * ids only, at most TECHNIQUES_MAX, comma-separated into out. */
static void techniques_of(const cJSON *e, char *out, size_t cap) {
  out[0] = '\0';
  const cJSON *th = cJSON_GetObjectItemCaseSensitive(e, "threat");
  const cJSON *te = cJSON_IsObject(th) ? cJSON_GetObjectItemCaseSensitive(th, "technique") : NULL;
  const cJSON *ids = cJSON_IsObject(te) ? cJSON_GetObjectItemCaseSensitive(te, "id") : NULL;
  const cJSON *one = cJSON_IsString(ids) ? ids : NULL;
  const cJSON *it = cJSON_IsArray(ids) ? ids->child : one;
  size_t len = 0;
  for (unsigned n = 0; it != NULL && n < TECHNIQUES_MAX; it = one ? NULL : it->next) {
    if (!cJSON_IsString(it) || !technique_id_ok(it->valuestring) ||
        strstr(out, it->valuestring) != NULL)
      continue;
    int w = snprintf(out + len, cap - len, "%s%s", len ? "," : "", it->valuestring);
    if (w < 0 || (size_t)w >= cap - len) {
      out[len] = '\0';
      break;
    }
    len += (size_t)w;
    n++;
  }
}

/* One new alert: into its PC's open incident for the rule, or a new
 * incident. A YARA alert's rule is its rule name; a behaviour alert's
 * (rule.ruleset "sigma") is its Sigma id, with the rule's title as the
 * incident's title and the ATT&CK techniques kept. */
static int on_alert(incidents_t *m, sqlite3 *db, int64_t tenant, const char *agent,
                    const store_event_t *ev, int64_t row) {
  cJSON *e = NULL;
  if (ym_json_parse_lenient(ev->json, ev->json_len, ev->json_len + 1, &e) != 0 ||
      !cJSON_IsObject(e)) {
    cJSON_Delete(e);
    return 0; /* ingest validated it; nothing to group on */
  }
  const cJSON *rule = cJSON_GetObjectItemCaseSensitive(e, "rule");
  const cJSON *file = cJSON_GetObjectItemCaseSensitive(e, "file");
  const cJSON *hash = cJSON_IsObject(file) ? cJSON_GetObjectItemCaseSensitive(file, "hash") : NULL;
  char rname[256], title[TITLE_MAX + 1], path[PATH_MAX_STORED + 1], sha[65];
  char technique[TECHNIQUES_MAX * 10 + 1];
  const char *rs = cJSON_IsObject(rule) ? ym_json_get_str(rule, "ruleset") : NULL;
  const char *rid = cJSON_IsObject(rule) ? ym_json_get_str(rule, "id") : NULL;
  const char *name = cJSON_IsObject(rule) ? ym_json_get_str(rule, "name") : NULL;
  const char *desc = cJSON_IsObject(rule) ? ym_json_get_str(rule, "description") : NULL;
  bool sigma = rs != NULL && strcmp(rs, "sigma") == 0;
  if (sigma) {
    bounded(rid != NULL && rid[0] != '\0' ? rid : name, 255, rname, sizeof(rname));
    bounded(name != NULL && name[0] != '\0' ? name : desc, TITLE_MAX, title, sizeof(title));
    techniques_of(e, technique, sizeof(technique));
  } else {
    bounded(name, 255, rname, sizeof(rname));
    bounded(desc != NULL ? desc : rname, TITLE_MAX, title, sizeof(title));
    technique[0] = '\0';
  }
  const char *ruleset = sigma ? "sigma" : "";
  bounded(cJSON_IsObject(file) ? ym_json_get_str(file, "path") : NULL, PATH_MAX_STORED, path,
          sizeof(path));
  bounded(cJSON_IsObject(hash) ? ym_json_get_str(hash, "sha256") : NULL, 64, sha, sizeof(sha));
  const char *sev = severity_of(e);
  cJSON_Delete(e);

  int64_t ts = ev->ts_ms > 0 ? ev->ts_ms : now_ms();
  sqlite3_stmt *st = sql_prep(db, "UPDATE incidents SET count = count + 1,"
                                  " last_ms = max(last_ms, ?3), updated_ms = ?4"
                                  " WHERE agent_id = ?1 AND kind = 'malware' AND rule = ?2"
                                  " AND ruleset = ?5 AND state != 'resolved' RETURNING id, count");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, rname, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, ruleset, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, ts);
  sqlite3_bind_int64(st, 4, now_ms());
  int64_t id = 0, count = 0;
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) {
    id = sqlite3_column_int64(st, 0);
    count = sqlite3_column_int64(st, 1);
    r = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  if (r != SQLITE_DONE)
    return YM_EIO;
  int rc = 0;
  bool created = id == 0;
  if (created) {
    st = sql_prep(
        db, "INSERT INTO incidents(tenant_id, agent_id, kind, rule, title, severity,"
            " first_ms, last_ms, file_path, file_sha256, process_json, alert_json,"
            " updated_ms, ruleset, technique)"
            " VALUES(?1, ?2, 'malware', ?3, ?4, ?5, ?6, ?6, ?7, ?8, '[]', ?9, ?10, ?11, ?12)");
    if (st == NULL)
      return YM_EIO;
    sqlite3_bind_int64(st, 1, tenant);
    sqlite3_bind_text(st, 2, agent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, rname, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, title, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, sev, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, ts);
    sqlite3_bind_text(st, 7, path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, sha, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, ev->json, (int)ev->json_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, now_ms());
    sqlite3_bind_text(st, 11, ruleset, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 12, technique, -1, SQLITE_STATIC);
    rc = sql_done(st);
    id = sqlite3_last_insert_rowid(db);
    count = 1;
    if (rc == 0)
      rc = log_entry(db, id, ts, "created", "", title);
  }
  if (rc == 0 && row > 0) {
    st =
        sql_prep(db, "INSERT OR IGNORE INTO incident_alerts(incident_id, event_id) VALUES(?1, ?2)");
    if (st == NULL)
      return YM_EIO;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, row);
    rc = sql_done(st);
  }
  if (rc == 0 && !created && count <= LOG_ALERTS_MAX)
    rc = log_entry(db, id, ts, "alert", "", path);
  if (rc == 0 && created)
    rc = notify(m, db, id, "created");
  return rc;
}

static int on_gap(sqlite3 *db, const char *agent, int64_t ts) {
  sqlite3_stmt *st = sql_prep(db, "INSERT INTO agent_health(agent_id, last_gap_ms) VALUES(?1, ?2)"
                                  " ON CONFLICT(agent_id) DO UPDATE SET"
                                  " last_gap_ms = max(last_gap_ms, ?2)");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, ts);
  return sql_done(st);
}

static int batch_hook(sqlite3 *db, int64_t tenant_id, const char *agent_id, const char *stream,
                      const store_event_t *events, const int64_t *row_ids, size_t n, void *data) {
  incidents_t *m = data;
  (void)stream;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (row_ids[i] == 0)
      continue; /* a replay: counted the first time */
    const store_event_t *e = &events[i];
    if (e->kind != NULL && strcmp(e->kind, "alert") == 0)
      rc = on_alert(m, db, tenant_id, agent_id, e, row_ids[i]);
    else if (e->action != NULL && strcmp(e->action, "gap") == 0)
      rc = on_gap(db, agent_id, e->ts_ms);
  }
  return rc;
}

int incidents_checkin(sqlite3 *db, int64_t tenant_id, const char *agent_id, const cJSON *req,
                      cJSON *answer, void *data) {
  incidents_t *m = data;
  (void)req;
  int64_t now = now_ms();
  sqlite3_stmt *st = sql_prep(db, "INSERT OR IGNORE INTO agent_presence(agent_id, hour)"
                                  " VALUES(?1, ?2)");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, now / 3600000);
  int rc = sql_done(st);
  st = rc == 0 ? sql_prep(db, "UPDATE incidents SET state = 'resolved', resolved_ms = ?3,"
                              " updated_ms = ?3 WHERE agent_id = ?1 AND tenant_id = ?2"
                              " AND kind = 'silent' AND state != 'resolved' RETURNING id")
               : NULL;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  int64_t ids[8];
  size_t n = 0;
  if (rc == 0) {
    sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, tenant_id);
    sqlite3_bind_int64(st, 3, now);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
      if (n < 8)
        ids[n++] = sqlite3_column_int64(st, 0);
    rc = r == SQLITE_DONE ? 0 : YM_EIO;
    sqlite3_finalize(st);
  }
  for (size_t i = 0; rc == 0 && i < n; i++) {
    rc = log_entry(db, ids[i], now, "state", "", "resolved");
    if (rc == 0)
      rc = notify(m, db, ids[i], "resolved");
  }
  /* A PC with an open malware incident is likely to get response
   * commands: it checks in more often meanwhile. */
  st = rc == 0 ? sql_prep(db, "SELECT 1 FROM incidents WHERE agent_id = ?1 AND kind = 'malware'"
                              " AND state != 'resolved' LIMIT 1")
               : NULL;
  if (st != NULL) {
    sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
    cJSON *next = cJSON_GetObjectItemCaseSensitive(answer, "next_checkin_s");
    if (sqlite3_step(st) == SQLITE_ROW && cJSON_IsNumber(next) &&
        next->valuedouble > INCIDENTS_ACTIVE_CHECKIN_S)
      cJSON_SetNumberValue(next, INCIDENTS_ACTIVE_CHECKIN_S);
    sqlite3_finalize(st);
  }
  return rc;
}

int incidents_update_db(incidents_t *m, sqlite3 *db, int64_t scope, int64_t id, const char *user,
                        const char *state, const char *owner, const char *note, int64_t now_ms_,
                        int64_t *tenant_out) {
  sqlite3_stmt *st = sql_prep(db, "SELECT tenant_id, state, kind, agent_id, rule FROM incidents"
                                  " WHERE id = ?1 AND (?2 = 0 OR tenant_id = ?2)");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, scope);
  if (sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return YM_ENOENT;
  }
  *tenant_out = sqlite3_column_int64(st, 0);
  char old[16];
  snprintf(old, sizeof(old), "%s", (const char *)sqlite3_column_text(st, 1));
  sqlite3_finalize(st);
  int rc = 0;
  if (state != NULL && strcmp(state, old) != 0) {
    /* Reopening: another open incident of the same PC and rule may have
     * started meanwhile; the unique index says no. */
    st = sql_prep(db,
                  "UPDATE incidents SET state = ?2, updated_ms = ?3,"
                  " resolved_ms = CASE WHEN ?2 = 'resolved' THEN ?3 ELSE NULL END WHERE id = ?1");
    if (st == NULL)
      return YM_EIO;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms_);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    rc = r == SQLITE_DONE ? 0 : r == SQLITE_CONSTRAINT ? YM_EEXIST : YM_EIO;
    if (rc == 0)
      rc = log_entry(db, id, now_ms_, "state", user, state);
    const char *change = strcmp(state, "new") == 0 ? "reopened" : state;
    if (rc == 0)
      rc = notify(m, db, id, change);
  }
  if (rc == 0 && owner != NULL) {
    st = sql_prep(db, "UPDATE incidents SET owner = ?2, updated_ms = ?3 WHERE id = ?1");
    if (st == NULL)
      return YM_EIO;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms_);
    rc = sql_done(st);
    if (rc == 0)
      rc = log_entry(db, id, now_ms_, "owner", user, owner);
  }
  if (rc == 0 && note != NULL)
    rc = log_entry(db, id, now_ms_, "note", user, note);
  return rc;
}

/* The enrollment hook: when an enrollment leaves several live agent
 * records of one tenant with the same host id, each of them gets an open
 * "duplicate" incident (or its open one is counted again), so that the
 * PCs show "check" and a person decides which record is the real PC.
 * Records are never merged. */
static int enroll_hook(sqlite3 *db, const store_enroll_info_t *e, void *data) {
  (void)data;
  if (strcmp(e->outcome, "refused") == 0 || e->host_id[0] == '\0')
    return 0;
  int64_t now = now_ms();
  sqlite3_stmt *st = sql_prep(
      db, "WITH dup AS (SELECT id FROM agents WHERE tenant_id = ?1 AND host_id = ?2"
          " AND revoked = 0),"
          " facts AS (SELECT json_object('host_id', ?2, 'agents', json_group_array(id)) AS j"
          " FROM dup)"
          " INSERT INTO incidents(tenant_id, agent_id, kind, rule, title, severity, first_ms,"
          " last_ms, updated_ms, alert_json)"
          " SELECT ?1, d.id, 'duplicate', '', 'duplicate host', 'medium', ?3, ?3, ?3,"
          " (SELECT j FROM facts) FROM dup d WHERE (SELECT COUNT(*) FROM dup) > 1"
          " AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.agent_id = d.id"
          "  AND i.kind = 'duplicate' AND i.state != 'resolved')"
          " ORDER BY d.id RETURNING id");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, e->tenant_id);
  sqlite3_bind_text(st, 2, e->host_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, now);
  int64_t ids[64];
  size_t n = 0;
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW)
    if (n < sizeof(ids) / sizeof(ids[0]))
      ids[n++] = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  int rc = r == SQLITE_DONE ? 0 : YM_EIO;
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = log_entry(db, ids[i], now, "created", "", e->host_id);
  /* Open ones of records that were duplicates already: counted again. */
  st = rc == 0 ? sql_prep(db, "UPDATE incidents SET count = count + 1, last_ms = ?3,"
                              " updated_ms = ?3, alert_json = json_object('host_id', ?2,"
                              "  'agents', (SELECT json_group_array(id) FROM agents"
                              "  WHERE tenant_id = ?1 AND host_id = ?2 AND revoked = 0))"
                              " WHERE kind = 'duplicate' AND state != 'resolved' AND first_ms < ?3"
                              " AND agent_id IN (SELECT id FROM agents WHERE tenant_id = ?1"
                              "  AND host_id = ?2 AND revoked = 0)")
               : NULL;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, e->tenant_id);
    sqlite3_bind_text(st, 2, e->host_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    rc = sql_done(st);
  }
  return rc;
}

int incidents_agent_revoked_db(incidents_t *m, sqlite3 *db, const char *agent_id, const char *user,
                               int64_t now_ms_) {
  sqlite3_stmt *st =
      sql_prep(db, "SELECT i.id FROM incidents i WHERE i.state != 'resolved' AND (i.agent_id = ?1"
                   " OR (i.kind = 'duplicate' AND i.agent_id IN (SELECT b.id FROM agents a"
                   "  JOIN agents b ON b.tenant_id = a.tenant_id AND b.host_id = a.host_id"
                   "  WHERE a.id = ?1 AND a.host_id != '' AND b.revoked = 0"
                   "  AND (SELECT COUNT(*) FROM agents c WHERE c.tenant_id = a.tenant_id"
                   "   AND c.host_id = a.host_id AND c.revoked = 0) = 1)))"
                   " ORDER BY i.id LIMIT 256");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
  int64_t ids[256];
  size_t n = 0;
  while (n < sizeof(ids) / sizeof(ids[0]) && sqlite3_step(st) == SQLITE_ROW)
    ids[n++] = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    int64_t tenant;
    rc = incidents_update_db(m, db, 0, ids[i], user, "resolved", NULL,
                             "the PC's record was revoked", now_ms_, &tenant);
  }
  return rc;
}

/* One maintenance pass on the database thread: silent PCs become
 * incidents; events older than their tenant's retention are deleted, at
 * most PRUNE_CHUNK per tenant and pass (the timer comes back soon when
 * more is left), each tenant in its own transaction so that ingest waits
 * little. */
static int maintain_db(sqlite3 *db, void *arg) {
  incidents_t *m = arg;
  int64_t now = now_ms();
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : YM_EIO;
  sqlite3_stmt *st =
      rc == 0 ? sql_prep(db, "SELECT a.id, a.tenant_id, a.last_seen FROM agents a"
                             " LEFT JOIN tenant_settings s ON s.tenant_id = a.tenant_id"
                             " WHERE a.revoked = 0 AND a.last_seen > 0"
                             " AND a.last_seen < ?1 - COALESCE(s.silent_minutes, 30) * 60000"
                             " AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.agent_id = a.id"
                             "  AND i.kind = 'silent' AND i.state != 'resolved') LIMIT 1000")
              : NULL;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, now);
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
      sqlite3_stmt *ins =
          sql_prep(db, "INSERT INTO incidents(tenant_id, agent_id, kind, rule, title,"
                       " severity, first_ms, last_ms, updated_ms)"
                       " VALUES(?1, ?2, 'silent', '', 'agent silent', 'medium', ?3, ?3,"
                       " ?4)");
      if (ins == NULL) {
        rc = YM_EIO;
        break;
      }
      sqlite3_bind_int64(ins, 1, sqlite3_column_int64(st, 1));
      sqlite3_bind_text(ins, 2, (const char *)sqlite3_column_text(st, 0), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(ins, 3, sqlite3_column_int64(st, 2));
      sqlite3_bind_int64(ins, 4, now);
      rc = sql_done(ins);
      int64_t id = sqlite3_last_insert_rowid(db);
      if (rc == 0)
        rc = log_entry(db, id, now, "created", "", "agent silent");
      if (rc == 0)
        rc = notify(m, db, id, "created");
    }
    sqlite3_finalize(st);
  }
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (!sqlite3_get_autocommit(db))
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);

  /* Keeps the planner's statistics current (cheap when nothing changed). */
  sqlite3_exec(db, "PRAGMA optimize", NULL, NULL, NULL);

  /* Retention. */
  bool more = false;
  st = sql_prep(db, "SELECT t.id, COALESCE(s.retention_days, 90) FROM tenants t"
                    " LEFT JOIN tenant_settings s ON s.tenant_id = t.id");
  if (st == NULL)
    return YM_EIO;
  while (sqlite3_step(st) == SQLITE_ROW) {
    int64_t tenant = sqlite3_column_int64(st, 0);
    int64_t cutoff = now - sqlite3_column_int64(st, 1) * 86400000LL;
    sqlite3_stmt *del = sql_prep(db, "DELETE FROM events WHERE id IN (SELECT id FROM events"
                                     " WHERE tenant_id = ?1 AND ts_ms < ?2 LIMIT ?3)");
    if (del == NULL)
      break;
    sqlite3_bind_int64(del, 1, tenant);
    sqlite3_bind_int64(del, 2, cutoff);
    sqlite3_bind_int64(del, 3, PRUNE_CHUNK);
    if (sqlite3_step(del) == SQLITE_DONE && sqlite3_changes(db) >= PRUNE_CHUNK)
      more = true;
    sqlite3_finalize(del);
  }
  sqlite3_finalize(st);
  m->prune_more = more; /* read on the loop thread after the callback */
  return rc;
}

static void on_timer(uv_timer_t *t);

static void on_maintained(int rc, void *data) {
  incidents_t *m = data;
  m->busy = false;
  if (rc != 0)
    ym_log(YM_LOG_WARN, rc, "incident maintenance failed; trying again later");
  if (m->prune_more)
    uv_timer_start(&m->timer, on_timer, 1000, (uint64_t)m->opts.maintenance_s * 1000);
}

void incidents_maintain(incidents_t *m) {
  if (m->busy)
    return;
  m->busy = true;
  store_call(m->store, maintain_db, m, on_maintained, m);
}

static void on_timer(uv_timer_t *t) {
  incidents_maintain(t->data);
}

int incidents_new(uv_loop_t *loop, store_t *store, const incidents_opts_t *opts,
                  incidents_t **out) {
  incidents_t *m = calloc(1, sizeof(*m));
  if (m == NULL)
    return YM_ENOMEM;
  m->loop = loop;
  m->store = store;
  m->opts = *opts;
  if (m->opts.maintenance_s == 0)
    m->opts.maintenance_s = 60;
  uv_timer_init(loop, &m->timer);
  m->timer.data = m;
  uv_timer_start(&m->timer, on_timer, (uint64_t)m->opts.maintenance_s * 1000,
                 (uint64_t)m->opts.maintenance_s * 1000);
  uv_unref((uv_handle_t *)&m->timer);
  store_on_batch(store, batch_hook, m);
  store_on_enroll(store, enroll_hook, m);
  *out = m;
  return 0;
}

static void on_timer_closed(uv_handle_t *h) {
  free(h->data);
}

void incidents_free(incidents_t *m) {
  if (m == NULL)
    return;
  uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}
