#include "dash.h"
#include "dist.h"

#include "commands.h"
#include "incidents.h"
#include "release.h"
#include "sql.h"
#include "technique.h"

#include "yamori/err.h"
#include "yamori/version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIST_MAX 500
#define EVENTS_MAX 500
#define TREE_MAX 5000
#define NOTE_MAX 4000
#define EMAILS_MAX 20
#define EMAIL_MAX 254
#define URL_MAX 2048
#define HELPDESK_MAX 500
#define DISPLAY_MAX 256
#define DAY_MS 86400000LL

/* ---------------------------------------------------------------- */
/* Helpers                                                            */

static void add_str(cJSON *o, const char *name, sqlite3_stmt *st, int c) {
  cJSON_AddStringToObject(o, name, sql_text(st, c));
}

static void add_int(cJSON *o, const char *name, sqlite3_stmt *st, int c) {
  cJSON_AddNumberToObject(o, name, (double)sqlite3_column_int64(st, c));
}

static void add_int_or_null(cJSON *o, const char *name, sqlite3_stmt *st, int c) {
  if (sqlite3_column_type(st, c) == SQLITE_NULL)
    cJSON_AddNullToObject(o, name);
  else
    add_int(o, name, st, c);
}

/* A column of a list: its member name and how to read it. */
typedef struct {
  const char *name;
  enum { COL_STR, COL_INT, COL_INT_OR_NULL } kind;
} col_t;

/* Appends one object per row of st (stepped to the end and finalized) to
 * items, with columns 0..n-1 as cols says. */
static void rows_json(sqlite3_stmt *st, const col_t *cols, int n, cJSON *items) {
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON *o = cJSON_CreateObject();
    for (int c = 0; c < n; c++) {
      if (cols[c].kind == COL_STR)
        add_str(o, cols[c].name, st, c);
      else if (cols[c].kind == COL_INT)
        add_int(o, cols[c].name, st, c);
      else
        add_int_or_null(o, cols[c].name, st, c);
    }
    cJSON_AddItemToArray(items, o);
  }
  sqlite3_finalize(st);
}

/* Adds the JSON text of column c as a value (endpoint JSON may hold
 * escaped invalid UTF-8: parsed leniently); {} when unreadable. */
static void add_json(cJSON *o, const char *name, sqlite3_stmt *st, int c) {
  const char *text = sql_text(st, c);
  cJSON *v = NULL;
  if (ym_json_parse_lenient(text, strlen(text), 4 * 1024 * 1024, &v) != 0 || v == NULL)
    v = cJSON_CreateObject();
  cJSON_AddItemToObject(o, name, v);
}

static int db_fail(web_req_t *q) {
  return web_fail(q, 503, "unavailable", "the database is busy; try again");
}

static int not_found(web_req_t *q) {
  return web_fail(q, 404, "not_found", "not found");
}

/* A path id that must be a positive integer. */
static bool id_num(web_req_t *q, int i, int64_t *out) {
  char *end;
  long long v = strtoll(q->id[i], &end, 10);
  if (*end != '\0' || v <= 0)
    return false;
  *out = v;
  return true;
}

static bool is_uuid(const char *s) {
  if (strlen(s) != 36)
    return false;
  for (int i = 0; i < 36; i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  }
  return true;
}

/* Text from a person: valid UTF-8 without control characters (tab and
 * newline allowed where multiline), at most max bytes. */
static bool text_ok(const char *s, size_t max, bool multiline) {
  if (s == NULL || strlen(s) > max || !ym_json_utf8_valid(s, strlen(s)))
    return false;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if ((*p < 0x20 && !(multiline && (*p == '\n' || *p == '\t'))) || *p == 0x7f)
      return false;
  return true;
}

static int audit(sqlite3 *db, web_req_t *q, int64_t tenant, const char *action, const char *target,
                 const char *detail) {
  return auth_audit_db(db, &q->user, tenant, action, target, detail, q->peer, q->now_ms);
}

/* The tenant of path id 0, when the person may see it: 0 otherwise. */
static int64_t path_tenant(sqlite3 *db, web_req_t *q) {
  int64_t t;
  if (!id_num(q, 0, &t) || (q->scope != 0 && t != q->scope))
    return 0;
  sqlite3_stmt *st = sql_prep(db, "SELECT id FROM tenants WHERE id = ?1 AND (?2 = 0 OR id = ?2)");
  if (st == NULL)
    return 0;
  sqlite3_bind_int64(st, 1, t);
  sqlite3_bind_int64(st, 2, q->scope);
  int64_t found = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_finalize(st);
  return found;
}

/* ---------------------------------------------------------------- */
/* Links to the modules of other parts (response, updates, installer)  */

/* The PC's update state (release.c), or YM_ENOENT when it never
 * reported one. */
static int agent_update_json(sqlite3 *db, const char *agent_id, cJSON **out) {
  *out = cJSON_CreateObject();
  int rc = release_agent_state_json(db, agent_id, *out);
  if (rc != 0) {
    cJSON_Delete(*out);
    *out = NULL;
  }
  return rc;
}

/* Response commands: the commands module (commands.h), scoped by tenant
 * in its SQL. */
static int commands_json(sqlite3 *db, int64_t scope, const char *agent, int64_t incident,
                         cJSON *items) {
  return commands_list_db(db, scope, agent, incident, items);
}

static int command_create(sqlite3 *db, int64_t scope, const char *agent_id, int64_t incident,
                          const char *kind, const cJSON *args, const char *user, int64_t now_ms,
                          cJSON **item, int64_t *tenant) {
  (void)now_ms;
  *tenant = 0;
  int rc = commands_create_db(db, scope, agent_id, incident, kind, args, user, item);
  sqlite3_stmt *st = rc == 0 ? sql_prep(db, "SELECT tenant_id FROM agents WHERE id = ?1") : NULL;
  if (st != NULL) {
    sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
      *tenant = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  return rc;
}

static int command_get(sqlite3 *db, int64_t scope, int64_t id, cJSON **item) {
  return commands_get_db(db, scope, id, item);
}

/* Bundles live in the database (table command_bundles), not in data_dir. */
static int command_bundle(sqlite3 *db, int64_t scope, int64_t id, const char *data_dir, void **raw,
                          size_t *len) {
  (void)data_dir;
  return commands_bundle_get_db(db, scope, id, raw, len);
}

/* The tenant's own installer: the generic one with the token and the help
 * desk contact inside (dist.h). */
static int installer_build(const char *file, const char *token, const char *helpdesk, void **raw,
                           size_t *len) {
  char line[DIST_HELPDESK_MAX + 1];
  dist_helpdesk_line(helpdesk, line, sizeof(line));
  ym_buf_t b;
  ym_buf_init(&b, DIST_TEMPLATE_MAX + DIST_CONFIG_MAX);
  int rc = dist_installer_ex(file, token, line, &b);
  if (rc != 0) {
    ym_buf_free(&b);
    *raw = NULL;
    *len = 0;
    return rc;
  }
  *raw = ym_buf_detach(&b, len);
  return 0;
}

/* What was done about an incident, for the report: state changes and
 * response commands, in order, each once. */
static void actions_json(sqlite3 *db, int64_t incident, cJSON *arr) {
  sqlite3_stmt *st = sql_prep(db, "SELECT CASE what WHEN 'state' THEN detail ELSE what END"
                                  " FROM incident_log WHERE incident_id = ?1"
                                  " AND what IN ('state', 'command') GROUP BY 1 ORDER BY MIN(id)");
  if (st == NULL)
    return;
  sqlite3_bind_int64(st, 1, incident);
  while (sqlite3_step(st) == SQLITE_ROW)
    cJSON_AddItemToArray(arr, cJSON_CreateString(sql_text(st, 0)));
  sqlite3_finalize(st);
}

/* ---------------------------------------------------------------- */
/* PCs and their state                                                */

/* One row per agent the scope holds, with its state: columns 0 id,
 * 1 tenant id, 2 tenant name, 3 tenant display, 4 host name, 5 host json,
 * 6 version, 7 rules version, 8 last seen, 9 state, 10 open incidents,
 * 11 enrolled at (s), 12 status json. ?1 scope tenant (0: all), ?2 now. */
#define AGENT_ROWS                                                                                 \
  "WITH x AS (SELECT a.id, a.tenant_id, t.name AS tname, t.display AS tdisplay, a.host_name,"      \
  " a.host_json, a.version, a.rules_version, a.last_seen, a.enrolled_at, a.status_json,"           \
  " (SELECT COUNT(*) FROM incidents i WHERE i.agent_id = a.id AND i.state != 'resolved'"           \
  "   AND i.kind = 'malware' AND (i.ruleset = '' OR i.severity = 'high')) AS mal,"                 \
  " (SELECT COUNT(*) FROM incidents i WHERE i.agent_id = a.id AND i.state != 'resolved'"           \
  "   AND i.kind = 'duplicate') AS dup,"                                                           \
  " (SELECT COUNT(*) FROM incidents i WHERE i.agent_id = a.id AND i.state != 'resolved')"          \
  "   AS open,"                                                                                    \
  " COALESCE((SELECT silent_minutes FROM tenant_settings s WHERE s.tenant_id = a.tenant_id), 30)"  \
  "   AS silent,"                                                                                  \
  " COALESCE((SELECT last_gap_ms FROM agent_health h WHERE h.agent_id = a.id), 0) AS gap,"         \
  " EXISTS (SELECT 1 FROM agent_update_state u WHERE u.agent_id = a.id AND u.failed != '')"        \
  "   AS upfail"                                                                                   \
  " FROM agents a JOIN tenants t ON t.id = a.tenant_id"                                            \
  " WHERE (?1 = 0 OR a.tenant_id = ?1) AND a.revoked = 0),"                                        \
  " y AS (SELECT *, CASE WHEN mal > 0 THEN 'danger' WHEN dup > 0 THEN 'check'"                     \
  "  WHEN last_seen < ?2 - silent * 60000 THEN 'offline'"                                          \
  "  WHEN open > 0 OR upfail OR gap > ?2 - 86400000 THEN 'check' ELSE 'safe' END AS state,"        \
  "  CASE WHEN mal > 0 THEN 0 WHEN dup > 0 THEN 1 WHEN last_seen < ?2 - silent * 60000 THEN 2"     \
  "  WHEN open > 0 OR upfail OR gap > ?2 - 86400000 THEN 1 ELSE 3 END AS rank FROM x)"

#define AGENT_COLS                                                                                 \
  " id, tenant_id, tname, tdisplay, host_name, host_json, version, rules_version, last_seen,"      \
  " state, open, enrolled_at, status_json"

/* "Debian GNU/Linux 12" from the host facts. */
static void os_text(const cJSON *host, char *out, size_t len) {
  const cJSON *os = cJSON_GetObjectItemCaseSensitive(host, "os");
  const char *name = cJSON_IsObject(os) ? ym_json_get_str(os, "name") : NULL;
  const char *ver = cJSON_IsObject(os) ? ym_json_get_str(os, "version") : NULL;
  snprintf(out, len, "%s%s%s", name ? name : "", name && ver ? " " : "", ver ? ver : "");
}

static cJSON *agent_item(sqlite3_stmt *st) {
  cJSON *o = cJSON_CreateObject();
  add_str(o, "id", st, 0);
  cJSON *t = cJSON_AddObjectToObject(o, "tenant");
  add_int(t, "id", st, 1);
  add_str(t, "name", st, 2);
  add_str(t, "display", st, 3);
  add_str(o, "host_name", st, 4);
  cJSON *host = NULL;
  const char *hj = sql_text(st, 5);
  char os[160] = "";
  if (ym_json_parse_lenient(hj, strlen(hj), 65536, &host) == 0)
    os_text(host, os, sizeof(os));
  cJSON_Delete(host);
  cJSON_AddStringToObject(o, "os", os);
  add_str(o, "version", st, 6);
  add_str(o, "rules_version", st, 7);
  add_int(o, "last_seen_ms", st, 8);
  add_str(o, "state", st, 9);
  add_int(o, "incidents_open", st, 10);
  return o;
}

int dash_overview(sqlite3 *db, web_req_t *q) {
  int64_t tenant = web_tenant_filter(q);
  if (tenant < 0)
    return -1;
  sqlite3_stmt *st = sql_prep(db, AGENT_ROWS " SELECT tenant_id, state, COUNT(*), SUM(open) FROM y"
                                             " GROUP BY tenant_id, state");
  sqlite3_stmt *tl = sql_prep(db, "SELECT id, name, display FROM tenants WHERE (?1 = 0 OR id = ?1)"
                                  " ORDER BY display, name");
  if (st == NULL || tl == NULL) {
    sqlite3_finalize(st);
    sqlite3_finalize(tl);
    return db_fail(q);
  }
  q->answer = cJSON_CreateObject();
  static const char *const states[] = {"safe", "check", "danger", "offline"};
  cJSON *tot = cJSON_AddObjectToObject(q->answer, "totals");
  cJSON_AddNumberToObject(tot, "pcs", 0);
  for (int i = 0; i < 4; i++)
    cJSON_AddNumberToObject(tot, states[i], 0);
  cJSON_AddNumberToObject(tot, "incidents_open", 0);
  cJSON *arr = cJSON_AddArrayToObject(q->answer, "tenants");
  sqlite3_bind_int64(tl, 1, tenant);
  while (sqlite3_step(tl) == SQLITE_ROW) {
    cJSON *t = cJSON_CreateObject();
    add_int(t, "id", tl, 0);
    add_str(t, "name", tl, 1);
    add_str(t, "display", tl, 2);
    cJSON_AddNumberToObject(t, "pcs", 0);
    for (int i = 0; i < 4; i++)
      cJSON_AddNumberToObject(t, states[i], 0);
    cJSON_AddNumberToObject(t, "incidents_open", 0);
    cJSON_AddItemToArray(arr, t);
  }
  sqlite3_finalize(tl);
  sqlite3_bind_int64(st, 1, tenant);
  sqlite3_bind_int64(st, 2, q->now_ms);
  while (sqlite3_step(st) == SQLITE_ROW) {
    int64_t tid = sqlite3_column_int64(st, 0);
    const char *state = sql_text(st, 1);
    double n = (double)sqlite3_column_int64(st, 2), open = (double)sqlite3_column_int64(st, 3);
    cJSON *t = NULL, *it;
    cJSON_ArrayForEach(it, arr) {
      if ((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "id")) == tid)
        t = it;
    }
    cJSON *targets[2] = {tot, t};
    for (int k = 0; k < 2; k++) {
      if (targets[k] == NULL)
        continue;
      cJSON *pcs = cJSON_GetObjectItem(targets[k], "pcs");
      cJSON *sn = cJSON_GetObjectItem(targets[k], state);
      cJSON *io = cJSON_GetObjectItem(targets[k], "incidents_open");
      cJSON_SetNumberValue(pcs, pcs->valuedouble + n);
      if (sn != NULL)
        cJSON_SetNumberValue(sn, sn->valuedouble + n);
      cJSON_SetNumberValue(io, io->valuedouble + open);
    }
  }
  sqlite3_finalize(st);
  /* Open incidents of PCs no longer enrolled still count. */
  return 0;
}

int dash_agents(sqlite3 *db, web_req_t *q) {
  int64_t tenant = web_tenant_filter(q), limit, offset;
  if (tenant < 0 || !web_param_int(q, "limit", 1, LIST_MAX, 50, &limit) ||
      !web_param_int(q, "offset", 0, 1000000000, 0, &offset))
    return -1;
  const char *search = web_param(q, "q");
  const char *state = web_param(q, "state");
  sqlite3_stmt *st =
      sql_prep(db, AGENT_ROWS " SELECT" AGENT_COLS ", COUNT(*) OVER () FROM y"
                              " WHERE (?3 IS NULL OR instr(lower(host_name), lower(?3)) > 0)"
                              " AND (?4 IS NULL OR state = ?4)"
                              " ORDER BY rank, host_name, id LIMIT ?5 OFFSET ?6");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, tenant);
  sqlite3_bind_int64(st, 2, q->now_ms);
  if (search != NULL)
    sqlite3_bind_text(st, 3, search, -1, SQLITE_STATIC);
  if (state != NULL)
    sqlite3_bind_text(st, 4, state, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, limit);
  sqlite3_bind_int64(st, 6, offset);
  q->answer = cJSON_CreateObject();
  cJSON *items = cJSON_AddArrayToObject(q->answer, "items");
  int64_t total = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON_AddItemToArray(items, agent_item(st));
    total = sqlite3_column_int64(st, 13);
  }
  sqlite3_finalize(st);
  cJSON_AddNumberToObject(q->answer, "total", (double)total);
  return 0;
}

static cJSON *incident_item(sqlite3_stmt *st);
#define INCIDENT_COLS                                                                              \
  "i.id, i.tenant_id, t.name, t.display, i.agent_id, COALESCE(a.host_name, ''), i.kind, i.title,"  \
  " i.rule, i.severity, i.state, i.owner, i.count, i.first_ms, i.last_ms, i.file_path,"            \
  " i.file_sha256, i.resolved_ms, i.ruleset, i.technique"
#define INCIDENT_FROM                                                                              \
  " FROM incidents i JOIN tenants t ON t.id = i.tenant_id LEFT JOIN agents a ON a.id = i.agent_id"

int dash_agent(sqlite3 *db, web_req_t *q) {
  if (!is_uuid(q->id[0]))
    return not_found(q);
  sqlite3_stmt *st = sql_prep(db, AGENT_ROWS " SELECT" AGENT_COLS " FROM y WHERE id = ?3");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, q->scope);
  sqlite3_bind_int64(st, 2, q->now_ms);
  sqlite3_bind_text(st, 3, q->id[0], -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return not_found(q);
  }
  q->answer = agent_item(st);
  add_json(q->answer, "host", st, 5);
  cJSON_AddNumberToObject(q->answer, "enrolled_ms", (double)sqlite3_column_int64(st, 11) * 1000);
  add_json(q->answer, "status", st, 12);
  int64_t tenant = sqlite3_column_int64(st, 1);
  sqlite3_finalize(st);

  st = sql_prep(db, "SELECT ts_ms, json FROM events WHERE agent_id = ?1 AND tenant_id = ?2"
                    " AND ts_ms > ?3 AND dataset = 'yamori.agent' AND action = 'gap'"
                    " ORDER BY ts_ms DESC LIMIT 20");
  cJSON *gaps = cJSON_AddArrayToObject(q->answer, "gaps");
  if (st != NULL) {
    sqlite3_bind_text(st, 1, q->id[0], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, tenant);
    sqlite3_bind_int64(st, 3, q->now_ms - 7 * DAY_MS);
    while (sqlite3_step(st) == SQLITE_ROW) {
      cJSON *g = cJSON_CreateObject();
      add_int(g, "ts_ms", st, 0);
      add_json(g, "event", st, 1);
      cJSON_AddItemToArray(gaps, g);
    }
    sqlite3_finalize(st);
  }
  st = sql_prep(db,
                "SELECT " INCIDENT_COLS INCIDENT_FROM " WHERE i.agent_id = ?1 AND i.tenant_id = ?2"
                " AND i.state != 'resolved' ORDER BY i.last_ms DESC LIMIT 50");
  cJSON *inc = cJSON_AddArrayToObject(q->answer, "incidents");
  if (st != NULL) {
    sqlite3_bind_text(st, 1, q->id[0], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, tenant);
    while (sqlite3_step(st) == SQLITE_ROW)
      cJSON_AddItemToArray(inc, incident_item(st));
    sqlite3_finalize(st);
  }
  cJSON *update = NULL;
  if (agent_update_json(db, q->id[0], &update) == 0 && update != NULL)
    cJSON_AddItemToObject(q->answer, "update", update);
  else
    cJSON_AddNullToObject(q->answer, "update");
  return 0;
}

/* The process tree of a PC from its process events in a window. */
int dash_processes(sqlite3 *db, web_req_t *q) {
  int64_t from, to;
  if (!is_uuid(q->id[0]))
    return not_found(q);
  if (!web_param_int(q, "to_ms", 0, INT64_MAX / 2, q->now_ms, &to) ||
      !web_param_int(q, "from_ms", 0, INT64_MAX / 2, to - 3600000, &from))
    return -1;
  /* One row per process: its start and end events folded by SQLite, the
   * facts taken from the start event when there is one. */
  sqlite3_stmt *st = sql_prep(
      db, "WITH p AS (SELECT e.action AS action, e.ts_ms AS ts,"
          " json_extract(e.json, '$.process.entity_id') AS eid,"
          " json_extract(e.json, '$.process.parent.entity_id') AS parent,"
          " json_extract(e.json, '$.process.pid') AS pid,"
          " json_extract(e.json, '$.process.name') AS name,"
          " json_extract(e.json, '$.process.executable') AS exe,"
          " json_extract(e.json, '$.process.args') AS args"
          " FROM events e JOIN agents a ON a.id = e.agent_id"
          " WHERE e.agent_id = ?1 AND (?2 = 0 OR a.tenant_id = ?2) AND e.tenant_id = a.tenant_id"
          " AND e.ts_ms BETWEEN ?3 AND ?4 AND e.dataset = 'yamori.process'"
          " ORDER BY e.ts_ms LIMIT ?5)"
          " SELECT eid,"
          " COALESCE(MAX(CASE WHEN action != 'end' THEN parent END), MAX(parent)),"
          " COALESCE(MAX(CASE WHEN action != 'end' THEN pid END), MAX(pid)),"
          " COALESCE(MAX(CASE WHEN action != 'end' THEN name END), MAX(name)),"
          " COALESCE(MAX(CASE WHEN action != 'end' THEN exe END), MAX(exe)),"
          " COALESCE(MAX(CASE WHEN action != 'end' THEN args END), MAX(args)),"
          " MIN(CASE WHEN action != 'end' THEN ts END), MAX(CASE WHEN action = 'end' THEN ts END)"
          " FROM p WHERE eid IS NOT NULL AND eid != '' GROUP BY eid ORDER BY MIN(ts) LIMIT ?6");
  sqlite3_stmt *chk =
      sql_prep(db, "SELECT 1 FROM agents WHERE id = ?1 AND (?2 = 0 OR tenant_id = ?2)");
  if (st == NULL || chk == NULL) {
    sqlite3_finalize(st);
    sqlite3_finalize(chk);
    return db_fail(q);
  }
  sqlite3_bind_text(chk, 1, q->id[0], -1, SQLITE_STATIC);
  sqlite3_bind_int64(chk, 2, q->scope);
  bool known = sqlite3_step(chk) == SQLITE_ROW;
  sqlite3_finalize(chk);
  if (!known) {
    sqlite3_finalize(st);
    return not_found(q);
  }
  sqlite3_bind_text(st, 1, q->id[0], -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, q->scope);
  sqlite3_bind_int64(st, 3, from);
  sqlite3_bind_int64(st, 4, to);
  sqlite3_bind_int64(st, 5, 4 * TREE_MAX);
  sqlite3_bind_int64(st, 6, TREE_MAX);
  q->answer = cJSON_CreateObject();
  cJSON *nodes = cJSON_AddArrayToObject(q->answer, "nodes");
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON *node = cJSON_CreateObject();
    add_str(node, "entity_id", st, 0);
    add_str(node, "parent_entity_id", st, 1);
    add_int(node, "pid", st, 2);
    add_str(node, "name", st, 3);
    add_str(node, "executable", st, 4);
    cJSON *args = NULL;
    const char *at = sql_text(st, 5);
    if (at[0] == '\0' || ym_json_parse_lenient(at, strlen(at), 65536, &args) != 0 ||
        !cJSON_IsArray(args)) {
      cJSON_Delete(args);
      args = cJSON_CreateArray();
    }
    cJSON_AddItemToObject(node, "args", args);
    add_int_or_null(node, "start_ms", st, 6);
    add_int_or_null(node, "end_ms", st, 7);
    cJSON_AddItemToArray(nodes, node);
  }
  sqlite3_finalize(st);
  return 0;
}

/* ---------------------------------------------------------------- */
/* Incidents                                                          */

static cJSON *incident_item(sqlite3_stmt *st) {
  cJSON *o = cJSON_CreateObject();
  add_int(o, "id", st, 0);
  cJSON *t = cJSON_AddObjectToObject(o, "tenant");
  add_int(t, "id", st, 1);
  add_str(t, "name", st, 2);
  add_str(t, "display", st, 3);
  cJSON *a = cJSON_AddObjectToObject(o, "agent");
  add_str(a, "id", st, 4);
  add_str(a, "host_name", st, 5);
  add_str(o, "kind", st, 6);
  add_str(o, "title", st, 7);
  add_str(o, "rule", st, 8);
  add_str(o, "severity", st, 9);
  add_str(o, "state", st, 10);
  add_str(o, "owner", st, 11);
  add_int(o, "count", st, 12);
  add_int(o, "first_ms", st, 13);
  add_int(o, "last_ms", st, 14);
  add_str(o, "file_path", st, 15);
  add_str(o, "file_sha256", st, 16);
  add_int_or_null(o, "resolved_ms", st, 17);
  /* A behaviour incident: its ruleset, its ATT&CK ids, and the first
   * known technique's title in both languages (the list shows it). */
  add_str(o, "ruleset", st, 18);
  add_str(o, "technique", st, 19);
  const technique_t *tq = technique_first(sql_text(st, 19));
  if (tq != NULL) {
    cJSON *tt = cJSON_AddObjectToObject(o, "technique_title");
    cJSON_AddStringToObject(tt, "ja", tq->title[TECHNIQUE_JA]);
    cJSON_AddStringToObject(tt, "en", tq->title[TECHNIQUE_EN]);
  }
  return o;
}

/* Every ATT&CK id of a behaviour incident with its texts in both
 * languages: [{id, ja: {title, text, todo}, en: {...}}] (an id without
 * texts has only its id). */
static cJSON *techniques_json(const char *ids) {
  cJSON *arr = cJSON_CreateArray();
  for (const char *p = ids; p != NULL && *p != '\0';) {
    size_t n = strcspn(p, ",");
    char id[16];
    if (n > 0 && n < sizeof(id)) {
      memcpy(id, p, n);
      id[n] = '\0';
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "id", id);
      const technique_t *tq = technique_find(id);
      static const char *const langs[] = {"ja", "en"};
      for (int l = 0; tq != NULL && l < 2; l++) {
        cJSON *x = cJSON_AddObjectToObject(o, langs[l]);
        cJSON_AddStringToObject(x, "title", tq->title[l]);
        cJSON_AddStringToObject(x, "text", tq->text[l]);
        cJSON_AddStringToObject(x, "todo", tq->todo[l]);
      }
      cJSON_AddItemToArray(arr, o);
    }
    p += n + (p[n] == ',');
  }
  return arr;
}

int dash_incidents(sqlite3 *db, web_req_t *q) {
  int64_t tenant = web_tenant_filter(q), limit, offset;
  if (tenant < 0 || !web_param_int(q, "limit", 1, LIST_MAX, 50, &limit) ||
      !web_param_int(q, "offset", 0, 1000000000, 0, &offset))
    return -1;
  const char *state = web_param(q, "state");
  const char *agent = web_param(q, "agent");
  if (state != NULL && strcmp(state, "open") != 0 && strcmp(state, "new") != 0 &&
      strcmp(state, "acknowledged") != 0 && strcmp(state, "resolved") != 0)
    return web_fail(q, 400, "bad_request", "state is open, new, acknowledged or resolved");
  sqlite3_stmt *st =
      sql_prep(db, "SELECT " INCIDENT_COLS ", COUNT(*) OVER ()" INCIDENT_FROM
                   " WHERE (?1 = 0 OR i.tenant_id = ?1)"
                   " AND (?2 IS NULL OR (?2 = 'open' AND i.state != 'resolved')"
                   "      OR i.state = ?2)"
                   " AND (?3 IS NULL OR i.agent_id = ?3)"
                   " ORDER BY CASE i.state WHEN 'new' THEN 0 WHEN 'acknowledged' THEN 1"
                   " ELSE 2 END, i.last_ms DESC, i.id DESC LIMIT ?4 OFFSET ?5");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, tenant);
  if (state != NULL)
    sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
  if (agent != NULL)
    sqlite3_bind_text(st, 3, agent, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, limit);
  sqlite3_bind_int64(st, 5, offset);
  q->answer = cJSON_CreateObject();
  cJSON *items = cJSON_AddArrayToObject(q->answer, "items");
  int64_t total = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON_AddItemToArray(items, incident_item(st));
    total = sqlite3_column_int64(st, 20);
  }
  sqlite3_finalize(st);
  cJSON_AddNumberToObject(q->answer, "total", (double)total);
  return 0;
}

/* The acting process and its parents from an alert. */
static cJSON *process_chain(const cJSON *alert) {
  cJSON *arr = cJSON_CreateArray();
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(alert, "process");
  for (int depth = 0; cJSON_IsObject(p) && depth < 8; depth++) {
    cJSON *o = cJSON_CreateObject();
    static const char *const strs[] = {"name", "executable", "entity_id"};
    for (size_t i = 0; i < 3; i++) {
      const char *v = ym_json_get_str(p, strs[i]);
      cJSON_AddStringToObject(o, strs[i], v ? v : "");
    }
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(p, "pid");
    cJSON_AddNumberToObject(o, "pid", cJSON_IsNumber(pid) ? pid->valuedouble : 0);
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(p, "args");
    cJSON_AddItemToObject(o, "args",
                          cJSON_IsArray(args) ? cJSON_Duplicate(args, true) : cJSON_CreateArray());
    cJSON_AddItemToArray(arr, o);
    p = cJSON_GetObjectItemCaseSensitive(p, "parent");
  }
  return arr;
}

/* A notification row about the webhook, "webhook <origin> (<change>)[:
 * error]", as a customer's people see it: "webhook (<change>)", without
 * the provider's host (an error text may name it too). */
static cJSON *webhook_detail_for_customer(const char *detail) {
  const char *open = strstr(detail, " (");
  const char *close = open != NULL ? strchr(open, ')') : NULL;
  char out[96];
  if (close != NULL && close - open < 64)
    snprintf(out, sizeof(out), "webhook%.*s", (int)(close + 1 - open), open);
  else
    snprintf(out, sizeof(out), "webhook");
  return cJSON_CreateString(out);
}

int dash_incident(sqlite3 *db, web_req_t *q) {
  int64_t id;
  if (!id_num(q, 0, &id))
    return not_found(q);
  sqlite3_stmt *st = sql_prep(db, "SELECT " INCIDENT_COLS ", i.alert_json" INCIDENT_FROM
                                  " WHERE i.id = ?1 AND (?2 = 0 OR i.tenant_id = ?2)");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, q->scope);
  if (sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return not_found(q);
  }
  q->answer = incident_item(st);
  int64_t tenant = sqlite3_column_int64(st, 1);
  cJSON *first = NULL;
  const char *aj = sql_text(st, 20);
  ym_json_parse_lenient(aj, strlen(aj), 4 * 1024 * 1024, &first);
  sqlite3_finalize(st);
  /* A duplicate host: its host id and the records that share it. */
  const char *kind = ym_json_get_str(q->answer, "kind");
  if (kind != NULL && strcmp(kind, "duplicate") == 0 && cJSON_IsObject(first))
    cJSON_AddItemToObject(q->answer, "duplicate", cJSON_Duplicate(first, 1));
  cJSON_AddItemToObject(q->answer, "process", process_chain(first));
  cJSON_AddItemToObject(q->answer, "techniques",
                        techniques_json(ym_json_get_str(q->answer, "technique")));
  cJSON *alerts = cJSON_AddArrayToObject(q->answer, "alerts");
  st = sql_prep(db, "SELECT e.id, e.ts_ms, e.json FROM incident_alerts x JOIN events e"
                    " ON e.id = x.event_id WHERE x.incident_id = ?1 AND e.tenant_id = ?2"
                    " ORDER BY e.id DESC LIMIT 20");
  if (st != NULL) {
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, tenant);
    while (sqlite3_step(st) == SQLITE_ROW) {
      cJSON *a = cJSON_CreateObject();
      add_int(a, "id", st, 0);
      add_int(a, "ts_ms", st, 1);
      add_json(a, "event", st, 2);
      cJSON_AddItemToArray(alerts, a);
    }
    sqlite3_finalize(st);
  }
  if (cJSON_GetArraySize(alerts) == 0 && cJSON_IsObject(first)) {
    /* The events were pruned; the incident kept its first alert. */
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", 0);
    cJSON_AddNumberToObject(a, "ts_ms",
                            cJSON_GetNumberValue(cJSON_GetObjectItem(q->answer, "first_ms")));
    cJSON_AddItemToObject(a, "event", first);
    first = NULL;
    cJSON_AddItemToArray(alerts, a);
  }
  cJSON_Delete(first);
  cJSON *notes = cJSON_AddArrayToObject(q->answer, "notes");
  cJSON *timeline = cJSON_AddArrayToObject(q->answer, "timeline");
  st = sql_prep(db, "SELECT at_ms, what, user, detail FROM incident_log WHERE incident_id = ?1"
                    " ORDER BY at_ms, id LIMIT 1000");
  if (st != NULL) {
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW) {
      cJSON *e = cJSON_CreateObject();
      add_int(e, "at_ms", st, 0);
      add_str(e, "what", st, 1);
      add_str(e, "user", st, 2);
      if (q->scope != 0 && strncmp(sql_text(st, 3), "webhook ", 8) == 0)
        cJSON_AddItemToObject(e, "detail", webhook_detail_for_customer(sql_text(st, 3)));
      else
        add_str(e, "detail", st, 3);
      if (strcmp(sql_text(st, 1), "note") == 0) {
        cJSON *n = cJSON_CreateObject();
        add_int(n, "at_ms", st, 0);
        add_str(n, "user", st, 2);
        add_str(n, "text", st, 3);
        cJSON_AddItemToArray(notes, n);
      }
      cJSON_AddItemToArray(timeline, e);
    }
    sqlite3_finalize(st);
  }
  cJSON *cmds = cJSON_AddArrayToObject(q->answer, "commands");
  commands_json(db, tenant, NULL, id, cmds);
  return 0;
}

int dash_incident_update(sqlite3 *db, web_req_t *q) {
  int64_t id;
  if (!id_num(q, 0, &id))
    return not_found(q);
  const char *state = ym_json_get_str(q->body, "state");
  const char *owner = ym_json_get_str(q->body, "owner");
  const char *note = ym_json_get_str(q->body, "note");
  if (state != NULL && strcmp(state, "new") != 0 && strcmp(state, "acknowledged") != 0 &&
      strcmp(state, "resolved") != 0)
    return web_fail(q, 400, "bad_request", "state is new, acknowledged or resolved");
  if (owner != NULL && !text_ok(owner, AUTH_NAME_MAX, false))
    return web_fail(q, 400, "bad_request", "owner: at most 64 characters, no control characters");
  if (note != NULL && (!text_ok(note, NOTE_MAX, true) || note[0] == '\0'))
    return web_fail(q, 400, "bad_request", "note: 1 to 4000 characters");
  if (state == NULL && owner == NULL && note == NULL)
    return web_fail(q, 400, "bad_request", "nothing to change: state, owner or note");
  int rc = sql_begin(db);
  int64_t tenant = 0;
  if (rc == 0)
    rc = incidents_update_db(web_opts(q->w)->incidents, db, q->scope, id, q->user.name, state,
                             owner, note, q->now_ms, &tenant);
  char target[32];
  snprintf(target, sizeof(target), "%lld", (long long)id);
  if (rc == 0 && state != NULL)
    rc = audit(db, q, tenant, "incident.state", target, state);
  if (rc == 0 && owner != NULL)
    rc = audit(db, q, tenant, "incident.owner", target, owner);
  if (rc == 0 && note != NULL)
    rc = audit(db, q, tenant, "incident.note", target, "");
  rc = sql_end(db, rc);
  if (rc == YM_ENOENT)
    return not_found(q);
  if (rc != 0)
    return db_fail(q);
  sqlite3_stmt *st = sql_prep(db, "SELECT " INCIDENT_COLS INCIDENT_FROM " WHERE i.id = ?1");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, id);
  if (sqlite3_step(st) == SQLITE_ROW)
    q->answer = incident_item(st);
  sqlite3_finalize(st);
  return q->answer != NULL ? 0 : db_fail(q);
}

/* ---------------------------------------------------------------- */
/* Events                                                             */

/* Three forms of one search, so that each can use its index: by PC, by
 * tenant, or (provider staff, no filter) everything newest first. The
 * filters are the same; ?1 is the scope, ?2 the PC. */
#define EVENT_FILTERS                                                                              \
  " AND (?5 IS NULL OR e.kind = ?5) AND (?6 IS NULL OR e.dataset = ?6)"                            \
  " AND (?7 IS NULL OR e.action = ?7)"                                                             \
  " AND (?8 IS NULL OR substr(json_extract(e.json, '$.file.path'), 1, length(?8)) = ?8)"           \
  " AND (?9 IS NULL OR instr(json_extract(e.json, '$.process.name'), ?9) > 0"                      \
  "      OR instr(json_extract(e.json, '$.process.executable'), ?9) > 0)"                          \
  " AND (?10 IS NULL OR e.ts_ms < (SELECT ts_ms FROM events WHERE id = ?10)"                       \
  "      OR (e.ts_ms = (SELECT ts_ms FROM events WHERE id = ?10) AND e.id < ?10))"
#define EVENT_SELECT                                                                               \
  "SELECT e.id, e.agent_id, COALESCE(a.host_name, ''), e.ts_ms, e.kind, e.dataset, e.action,"      \
  " e.json FROM events e LEFT JOIN agents a ON a.id = e.agent_id"

/* Forms of one search, each written so that SQLite takes the index that
 * fits: by PC (events_agent_time), by tenant (events_tenant_time), a
 * tenant's alerts (the partial index events_tenant_alerts), and provider
 * staff without a filter (the table backwards by id, which is arrival
 * order: "+" keeps the time filter off the tenant index). ?1 is the scope
 * or tenant, ?2 the PC. */
enum { EV_AGENT, EV_TENANT, EV_TENANT_ALERTS, EV_ALL };
static const char *const event_sql[] = {
    [EV_AGENT] = EVENT_SELECT " WHERE e.agent_id = ?2 AND (?1 = 0 OR e.tenant_id = ?1)"
                              " AND e.ts_ms BETWEEN ?3 AND ?4" EVENT_FILTERS
                              " ORDER BY e.ts_ms DESC, e.id DESC LIMIT ?11",
    [EV_TENANT] = EVENT_SELECT " WHERE e.tenant_id = ?1 AND ?2 IS NULL"
                               " AND e.ts_ms BETWEEN ?3 AND ?4" EVENT_FILTERS
                               " ORDER BY e.ts_ms DESC, e.id DESC LIMIT ?11",
    [EV_TENANT_ALERTS] = EVENT_SELECT " WHERE e.tenant_id = ?1 AND e.kind = 'alert' AND ?2 IS NULL"
                                      " AND e.ts_ms BETWEEN ?3 AND ?4" EVENT_FILTERS
                                      " ORDER BY e.ts_ms DESC, e.id DESC LIMIT ?11",
    [EV_ALL] =
        EVENT_SELECT " WHERE ?1 = 0 AND ?2 IS NULL AND +e.ts_ms BETWEEN ?3 AND ?4" EVENT_FILTERS
                     " ORDER BY e.id DESC LIMIT ?11",
};

int dash_events(sqlite3 *db, web_req_t *q) {
  int64_t tenant = web_tenant_filter(q), from, to, limit, before;
  if (tenant < 0 || !web_param_int(q, "from_ms", 0, INT64_MAX / 2, 0, &from) ||
      !web_param_int(q, "to_ms", 0, INT64_MAX / 2, INT64_MAX / 2, &to) ||
      !web_param_int(q, "limit", 1, EVENTS_MAX, 100, &limit) ||
      !web_param_int(q, "before_id", 1, INT64_MAX, 0, &before))
    return -1;
  const char *agent = web_param(q, "agent");
  const char *kind = web_param(q, "kind");
  int form = agent != NULL                                ? EV_AGENT
             : tenant == 0                                ? EV_ALL
             : kind != NULL && strcmp(kind, "alert") == 0 ? EV_TENANT_ALERTS
                                                          : EV_TENANT;
  sqlite3_stmt *st = sql_prep(db, event_sql[form]);
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, tenant);
  if (agent != NULL)
    sqlite3_bind_text(st, 2, agent, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, from);
  sqlite3_bind_int64(st, 4, to);
  static const char *const keys[] = {"kind", "dataset", "action", "path", "process"};
  for (int i = 0; i < 5; i++) {
    const char *v = web_param(q, keys[i]);
    if (v != NULL)
      sqlite3_bind_text(st, 5 + i, v, -1, SQLITE_STATIC);
  }
  if (before > 0)
    sqlite3_bind_int64(st, 10, before);
  sqlite3_bind_int64(st, 11, limit);
  q->answer = cJSON_CreateObject();
  cJSON *items = cJSON_AddArrayToObject(q->answer, "items");
  int64_t last = 0, n = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON *e = cJSON_CreateObject();
    add_int(e, "id", st, 0);
    add_str(e, "agent_id", st, 1);
    add_str(e, "host_name", st, 2);
    add_int(e, "ts_ms", st, 3);
    add_str(e, "kind", st, 4);
    add_str(e, "dataset", st, 5);
    add_str(e, "action", st, 6);
    add_json(e, "event", st, 7);
    cJSON_AddItemToArray(items, e);
    last = sqlite3_column_int64(st, 0);
    n++;
  }
  sqlite3_finalize(st);
  if (n == limit)
    cJSON_AddNumberToObject(q->answer, "next_before_id", (double)last);
  else
    cJSON_AddNullToObject(q->answer, "next_before_id");
  return 0;
}

/* ---------------------------------------------------------------- */
/* Response commands                                                  */

int dash_command_create(sqlite3 *db, web_req_t *q) {
  if (!is_uuid(q->id[0]))
    return not_found(q);
  const char *kind = ym_json_get_str(q->body, "kind");
  const cJSON *args = cJSON_GetObjectItemCaseSensitive(q->body, "args");
  long long incident = 0;
  if (cJSON_GetObjectItemCaseSensitive(q->body, "incident_id") != NULL &&
      !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(q->body, "incident_id")) &&
      (!ym_json_get_int(q->body, "incident_id", &incident) || incident <= 0))
    return web_fail(q, 400, "bad_request", "incident_id must be a positive number");
  if (kind == NULL)
    return web_fail(q, 400, "bad_request", "kind is required");
  sqlite3_stmt *chk =
      sql_prep(db, "SELECT 1 FROM agents WHERE id = ?1 AND (?2 = 0 OR tenant_id = ?2)"
                   " AND revoked = 0");
  if (chk == NULL)
    return db_fail(q);
  sqlite3_bind_text(chk, 1, q->id[0], -1, SQLITE_STATIC);
  sqlite3_bind_int64(chk, 2, q->scope);
  bool known = sqlite3_step(chk) == SQLITE_ROW;
  sqlite3_finalize(chk);
  if (!known)
    return not_found(q);
  int rc = sql_begin(db);
  cJSON *item = NULL;
  int64_t tenant = 0;
  if (rc == 0)
    rc = command_create(db, q->scope, q->id[0], incident, kind, args, q->user.name, q->now_ms,
                        &item, &tenant);
  if (rc == 0) {
    char *detail = cJSON_PrintUnformatted(args != NULL ? args : cJSON_GetObjectItem(item, "args"));
    char target[96];
    snprintf(target, sizeof(target), "%s", q->id[0]);
    char action[48];
    snprintf(action, sizeof(action), "command.%s", kind);
    rc = audit(db, q, tenant, action, target, detail != NULL ? detail : "");
    free(detail);
  }
  rc = sql_end(db, rc);
  if (rc != 0) {
    cJSON_Delete(item);
    if (rc == YM_ENOENT)
      return not_found(q);
    if (rc == YM_EINVAL)
      return web_fail(q, 400, "bad_request", "unknown kind or bad arguments for it");
    if (rc == YM_ENOTSUP)
      return web_fail(q, 501, "not_built", "remote response is not built into this console");
    return db_fail(q);
  }
  q->answer = item;
  return 0;
}

int dash_commands(sqlite3 *db, web_req_t *q) {
  int64_t incident;
  if (!web_param_int(q, "incident", 1, INT64_MAX, 0, &incident))
    return -1;
  q->answer = cJSON_CreateObject();
  cJSON *items = cJSON_AddArrayToObject(q->answer, "items");
  int rc = commands_json(db, q->scope, web_param(q, "agent"), incident, items);
  return rc == 0 || rc == YM_ENOTSUP ? 0 : db_fail(q);
}

int dash_command(sqlite3 *db, web_req_t *q) {
  int64_t id;
  if (!id_num(q, 0, &id))
    return not_found(q);
  cJSON *item = NULL;
  int rc = command_get(db, q->scope, id, &item);
  if (rc != 0)
    return rc == YM_ENOENT || rc == YM_ENOTSUP ? not_found(q) : db_fail(q);
  q->answer = item;
  return 0;
}

int dash_command_bundle(sqlite3 *db, web_req_t *q) {
  int64_t id;
  if (!id_num(q, 0, &id))
    return not_found(q);
  int rc = command_bundle(db, q->scope, id, web_opts(q->w)->data_dir, &q->raw, &q->raw_len);
  if (rc != 0)
    return rc == YM_ENOENT || rc == YM_ENOTSUP ? not_found(q) : db_fail(q);
  snprintf(q->ctype, sizeof(q->ctype), "application/gzip");
  snprintf(q->disp, sizeof(q->disp), "attachment; filename=\"triage-%lld.json.gz\"", (long long)id);
  return 0;
}

/* ---------------------------------------------------------------- */
/* Tenants, settings, tokens                                          */

int dash_tenants(sqlite3 *db, web_req_t *q) {
  sqlite3_stmt *st = sql_prep(db, "SELECT t.id, t.name, t.display,"
                                  " (SELECT COUNT(*) FROM agents a WHERE a.tenant_id = t.id"
                                  "  AND a.revoked = 0)"
                                  " FROM tenants t WHERE (?1 = 0 OR t.id = ?1) ORDER BY t.name");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, q->scope);
  q->answer = cJSON_CreateObject();
  cJSON *items = cJSON_AddArrayToObject(q->answer, "items");
  static const col_t cols[] = {
      {"id", COL_INT}, {"name", COL_STR}, {"display", COL_STR}, {"pcs", COL_INT}};
  rows_json(st, cols, 4, items);
  return 0;
}

int dash_tenant_create(sqlite3 *db, web_req_t *q) {
  const char *name = ym_json_get_str(q->body, "name");
  const char *display = ym_json_get_str(q->body, "display");
  if (name == NULL || strlen(name) == 0 || strlen(name) > 63 ||
      strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(name))
    return web_fail(q, 400, "bad_request", "name: 1 to 63 of a-z 0-9 - _");
  if (display == NULL)
    display = name;
  if (!text_ok(display, DISPLAY_MAX, false))
    return web_fail(q, 400, "bad_request", "display: at most 256 bytes of text");
  int rc = sql_begin(db);
  sqlite3_stmt *st = rc == 0 ? sql_prep(db, "INSERT INTO tenants(name, display, created_at)"
                                            " VALUES(?1, ?2, ?3)")
                             : NULL;
  int64_t id = 0;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, display, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, q->now_ms / 1000);
    int r = sqlite3_step(st);
    rc = r == SQLITE_DONE ? 0 : r == SQLITE_CONSTRAINT ? YM_EEXIST : YM_EIO;
    id = sqlite3_last_insert_rowid(db);
  }
  sqlite3_finalize(st);
  if (rc == 0)
    rc = audit(db, q, id, "tenant.create", name, display);
  rc = sql_end(db, rc);
  if (rc == YM_EEXIST)
    return web_fail(q, 409, "exists", "a tenant with this name exists");
  if (rc != 0)
    return db_fail(q);
  q->answer = cJSON_CreateObject();
  cJSON_AddNumberToObject(q->answer, "id", (double)id);
  cJSON_AddStringToObject(q->answer, "name", name);
  cJSON_AddStringToObject(q->answer, "display", display);
  cJSON_AddNumberToObject(q->answer, "pcs", 0);
  return 0;
}

static int settings_answer(sqlite3 *db, web_req_t *q, int64_t tenant) {
  sqlite3_stmt *st =
      sql_prep(db, "SELECT t.display, t.helpdesk, COALESCE(s.lang, 'ja'),"
                   " COALESCE(s.emails, '[]'), COALESCE(s.webhook_url, ''),"
                   " COALESCE(s.silent_minutes, 30), COALESCE(s.retention_days, 90)"
                   " FROM tenants t LEFT JOIN tenant_settings s ON s.tenant_id = t.id"
                   " WHERE t.id = ?1");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, tenant);
  if (sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return not_found(q);
  }
  cJSON_Delete(q->answer);
  q->answer = cJSON_CreateObject();
  add_str(q->answer, "display", st, 0);
  add_str(q->answer, "helpdesk", st, 1);
  add_str(q->answer, "lang", st, 2);
  cJSON *emails = NULL;
  const char *ej = sql_text(st, 3);
  if (ym_json_parse(ej, strlen(ej), 65536, &emails, NULL) != 0 || !cJSON_IsArray(emails)) {
    cJSON_Delete(emails);
    emails = cJSON_CreateArray();
  }
  cJSON_AddItemToObject(q->answer, "emails", emails);
  /* The webhook is the provider's: its URL often holds a token, and its
   * host is inside the provider's network. A customer's people learn only
   * whether there is one. */
  cJSON_AddBoolToObject(q->answer, "webhook_set", sql_text(st, 4)[0] != '\0');
  if (q->scope == 0)
    add_str(q->answer, "webhook_url", st, 4);
  add_int(q->answer, "silent_minutes", st, 5);
  add_int(q->answer, "retention_days", st, 6);
  sqlite3_finalize(st);
  return 0;
}

int dash_settings(sqlite3 *db, web_req_t *q) {
  int64_t t = path_tenant(db, q);
  return t == 0 ? not_found(q) : settings_answer(db, q, t);
}

static bool email_ok(const char *s) {
  const char *at = s != NULL ? strchr(s, '@') : NULL;
  if (at == NULL || at == s || at[1] == '\0' || strlen(s) > EMAIL_MAX || strchr(at + 1, '@'))
    return false;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p <= ' ' || *p >= 0x7f || *p == '<' || *p == '>' || *p == ',' || *p == ';' || *p == '"' ||
        *p == '\\')
      return false;
  return true;
}

int dash_settings_set(sqlite3 *db, web_req_t *q) {
  int64_t t = path_tenant(db, q);
  if (t == 0)
    return not_found(q);
  const cJSON *b = q->body;
  const char *display = ym_json_get_str(b, "display");
  const char *helpdesk = ym_json_get_str(b, "helpdesk");
  const char *lang = ym_json_get_str(b, "lang");
  const char *webhook = ym_json_get_str(b, "webhook_url");
  const cJSON *emails = cJSON_GetObjectItemCaseSensitive(b, "emails");
  long long silent = -1, retention = -1;
  if (cJSON_GetObjectItem(b, "silent_minutes") != NULL &&
      (!ym_json_get_int(b, "silent_minutes", &silent) || silent < 5 || silent > 10080))
    return web_fail(q, 400, "bad_request", "silent_minutes: 5 to 10080");
  if (cJSON_GetObjectItem(b, "retention_days") != NULL &&
      (!ym_json_get_int(b, "retention_days", &retention) || retention < 1 || retention > 3650))
    return web_fail(q, 400, "bad_request", "retention_days: 1 to 3650");
  if (display != NULL && (!text_ok(display, DISPLAY_MAX, false) || display[0] == '\0'))
    return web_fail(q, 400, "bad_request", "display: 1 to 256 bytes of text");
  if (helpdesk != NULL && !text_ok(helpdesk, HELPDESK_MAX, true))
    return web_fail(q, 400, "bad_request", "helpdesk: at most 500 bytes of text");
  if (lang != NULL && strcmp(lang, "ja") != 0 && strcmp(lang, "en") != 0)
    return web_fail(q, 400, "bad_request", "lang: ja or en");
  if (webhook != NULL && q->scope != 0)
    return web_fail(q, 403, "forbidden",
                    "the webhook is set by the provider (the console posts to it from inside"
                    " the provider's network)");
  if (webhook != NULL && webhook[0] != '\0' &&
      (!text_ok(webhook, URL_MAX, false) || strchr(webhook, ' ') != NULL ||
       (strncmp(webhook, "https://", 8) != 0 && strncmp(webhook, "http://", 7) != 0)))
    return web_fail(q, 400, "bad_request", "webhook_url: an http(s) URL");
  char *emails_text = NULL;
  if (emails != NULL) {
    if (!cJSON_IsArray(emails) || cJSON_GetArraySize(emails) > EMAILS_MAX)
      return web_fail(q, 400, "bad_request", "emails: a list of at most 20 addresses");
    const cJSON *e;
    cJSON_ArrayForEach(e, emails) {
      if (!cJSON_IsString(e) || !email_ok(e->valuestring))
        return web_fail(q, 400, "bad_request", "emails: each must be an e-mail address");
    }
    emails_text = cJSON_PrintUnformatted(emails);
  }
  int rc = sql_begin(db);
  sqlite3_stmt *st = rc == 0 ? sql_prep(db, "INSERT OR IGNORE INTO tenant_settings(tenant_id)"
                                            " VALUES(?1)")
                             : NULL;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, t);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  }
  sqlite3_finalize(st);
  st = rc == 0
           ? sql_prep(db, "UPDATE tenant_settings SET lang = COALESCE(?2, lang),"
                          " emails = COALESCE(?3, emails), webhook_url = COALESCE(?4, webhook_url),"
                          " silent_minutes = COALESCE(?5, silent_minutes),"
                          " retention_days = COALESCE(?6, retention_days) WHERE tenant_id = ?1")
           : NULL;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, t);
    if (lang != NULL)
      sqlite3_bind_text(st, 2, lang, -1, SQLITE_STATIC);
    if (emails_text != NULL)
      sqlite3_bind_text(st, 3, emails_text, -1, SQLITE_STATIC);
    if (webhook != NULL)
      sqlite3_bind_text(st, 4, webhook, -1, SQLITE_STATIC);
    if (silent >= 0)
      sqlite3_bind_int64(st, 5, silent);
    if (retention >= 0)
      sqlite3_bind_int64(st, 6, retention);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  }
  sqlite3_finalize(st);
  st = rc == 0 ? sql_prep(db, "UPDATE tenants SET display = COALESCE(?2, display),"
                              " helpdesk = COALESCE(?3, helpdesk) WHERE id = ?1")
               : NULL;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, t);
    if (display != NULL)
      sqlite3_bind_text(st, 2, display, -1, SQLITE_STATIC);
    if (helpdesk != NULL)
      sqlite3_bind_text(st, 3, helpdesk, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  }
  sqlite3_finalize(st);
  char target[32];
  snprintf(target, sizeof(target), "%lld", (long long)t);
  char *detail = cJSON_PrintUnformatted(q->body);
  if (rc == 0)
    rc = audit(db, q, t, "settings.change", target, detail != NULL ? detail : "");
  free(detail);
  free(emails_text);
  rc = sql_end(db, rc);
  if (rc != 0)
    return db_fail(q);
  return settings_answer(db, q, t);
}

/* Revokes a PC's record (a duplicate that is not the real PC, or a PC
 * given away): its secret stops working at once, its open incidents are
 * resolved, and so is the duplicate incident of the record left alone. */
int dash_agent_revoke(sqlite3 *db, web_req_t *q) {
  if (!is_uuid(q->id[0]))
    return not_found(q);
  int64_t t = 0;
  int rc = sql_begin(db);
  if (rc == 0)
    rc = store_agent_revoke_db(web_store(q->w), db, q->scope, q->id[0], &t);
  if (rc == 0)
    rc = incidents_agent_revoked_db(web_opts(q->w)->incidents, db, q->id[0], q->user.name,
                                    q->now_ms);
  if (rc == 0)
    rc = audit(db, q, t, "agent.revoke", q->id[0], "");
  rc = sql_end(db, rc);
  if (rc == YM_ENOENT)
    return not_found(q);
  if (rc != 0)
    return db_fail(q);
  q->answer = cJSON_CreateObject();
  return 0;
}

int dash_tokens(sqlite3 *db, web_req_t *q) {
  int64_t t = path_tenant(db, q);
  if (t == 0)
    return not_found(q);
  sqlite3_stmt *st = sql_prep(db, "SELECT id, created_at, expires_at, max_uses, uses, revoked,"
                                  " kind FROM tokens WHERE tenant_id = ?1"
                                  " ORDER BY created_at DESC, id LIMIT 200");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, t);
  q->answer = cJSON_CreateObject();
  cJSON *items = cJSON_AddArrayToObject(q->answer, "items");
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON *o = cJSON_CreateObject();
    add_str(o, "id", st, 0);
    cJSON_AddNumberToObject(o, "created_ms", (double)sqlite3_column_int64(st, 1) * 1000);
    cJSON_AddNumberToObject(o, "expires_ms", (double)sqlite3_column_int64(st, 2) * 1000);
    add_int(o, "max_uses", st, 3);
    add_int(o, "uses", st, 4);
    cJSON_AddBoolToObject(o, "revoked", sqlite3_column_int64(st, 5) != 0);
    add_str(o, "kind", st, 6);
    cJSON_AddItemToArray(items, o);
  }
  sqlite3_finalize(st);
  return 0;
}

/* Creates a token for tenant t inside the caller's transaction; the
 * string goes to out. */
static int token_new(sqlite3 *db, web_req_t *q, int64_t t, int64_t expires_days, int64_t max_uses,
                     const char *kind, char *out, size_t out_len, char id[17]) {
  const web_opts_t *o = web_opts(q->w);
  char secret[44];
  int64_t expires = expires_days > 0 ? q->now_ms / 1000 + expires_days * 86400 : 0;
  int rc = store_token_create_db(db, t, expires, max_uses, kind, id, secret);
  if (rc == 0)
    rc = store_token_string(o->console_url ? o->console_url : "", o->pin ? o->pin : "", id, secret,
                            out, out_len);
  memset(secret, 0, sizeof(secret));
  if (rc == 0)
    rc = audit(db, q, t, "token.create", id, kind);
  return rc;
}

int dash_token_create(sqlite3 *db, web_req_t *q) {
  int64_t t = path_tenant(db, q);
  if (t == 0)
    return not_found(q);
  long long days = 30, uses = 0;
  if ((cJSON_GetObjectItem(q->body, "expires_days") != NULL &&
       (!ym_json_get_int(q->body, "expires_days", &days) || days < 0 || days > 3650)) ||
      (cJSON_GetObjectItem(q->body, "max_uses") != NULL &&
       (!ym_json_get_int(q->body, "max_uses", &uses) || uses < 0 || uses > 1000000)))
    return web_fail(q, 400, "bad_request", "expires_days 0..3650, max_uses 0..1000000");
  char token[1024], id[17];
  int rc = sql_begin(db);
  if (rc == 0)
    rc = token_new(db, q, t, days, uses, "manual", token, sizeof(token), id);
  rc = sql_end(db, rc);
  if (rc != 0)
    return db_fail(q);
  q->answer = cJSON_CreateObject();
  cJSON_AddStringToObject(q->answer, "id", id);
  cJSON_AddStringToObject(q->answer, "token", token);
  memset(token, 0, sizeof(token));
  return 0;
}

int dash_token_revoke(sqlite3 *db, web_req_t *q) {
  if (strlen(q->id[0]) != 16 || strspn(q->id[0], "0123456789abcdef") != 16)
    return not_found(q);
  int rc = sql_begin(db);
  sqlite3_stmt *st = rc == 0 ? sql_prep(db, "UPDATE tokens SET revoked = 1 WHERE id = ?1"
                                            " AND (?2 = 0 OR tenant_id = ?2) RETURNING tenant_id")
                             : NULL;
  int64_t t = 0;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_text(st, 1, q->id[0], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, q->scope);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
      t = sqlite3_column_int64(st, 0);
    rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? YM_ENOENT : YM_EIO;
  }
  sqlite3_finalize(st);
  if (rc == 0)
    rc = audit(db, q, t, "token.revoke", q->id[0], "");
  rc = sql_end(db, rc);
  if (rc == YM_ENOENT)
    return not_found(q);
  if (rc != 0)
    return db_fail(q);
  q->answer = cJSON_CreateObject();
  return 0;
}

/* Each download builds the installer around a token of its own, kind
 * "installer", that enrolls at most DASH_INSTALLER_TOKEN_USES PCs within
 * DASH_INSTALLER_TOKEN_DAYS: an installer that leaks is worth little and
 * soon nothing, and the token list shows and revokes it. */
int dash_installer(sqlite3 *db, web_req_t *q) {
  int64_t t = path_tenant(db, q);
  if (t == 0)
    return not_found(q);
  const web_opts_t *o = web_opts(q->w);
  if (o->installer_file == NULL)
    return web_fail(q, 501, "not_built",
                    "no agent installer is configured on this console (--installer FILE)");
  char token[1024], id[17];
  int rc = sql_begin(db);
  if (rc == 0)
    rc = token_new(db, q, t, DASH_INSTALLER_TOKEN_DAYS, DASH_INSTALLER_TOKEN_USES, "installer",
                   token, sizeof(token), id);
  char helpdesk[HELPDESK_MAX + 1] = "";
  sqlite3_stmt *hs = rc == 0 ? sql_prep(db, "SELECT helpdesk FROM tenants WHERE id = ?1") : NULL;
  if (hs != NULL) {
    sqlite3_bind_int64(hs, 1, t);
    if (sqlite3_step(hs) == SQLITE_ROW)
      snprintf(helpdesk, sizeof(helpdesk), "%s", sql_text(hs, 0));
    sqlite3_finalize(hs);
  }
  if (rc == 0)
    rc = installer_build(o->installer_file, token, helpdesk, &q->raw, &q->raw_len);
  memset(token, 0, sizeof(token));
  rc = sql_end(db, rc);
  if (rc != 0) {
    free(q->raw);
    q->raw = NULL;
    if (rc == YM_ENOTSUP)
      return web_fail(q, 501, "not_built", "the installer builder is not built in");
    return web_fail(q, 500, "internal", "cannot build the installer");
  }
  snprintf(q->ctype, sizeof(q->ctype), "application/octet-stream");
  snprintf(q->disp, sizeof(q->disp), "attachment; filename=\"yamori-installer.run\"");
  return 0;
}

/* ---------------------------------------------------------------- */
/* Monthly report                                                     */

/* Unix ms of the first instant of month m (1-12) of year y, UTC. */
static int64_t month_start_ms(int y, int m) {
  struct tm tm = {0};
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = 1;
  return (int64_t)timegm(&tm) * 1000;
}

int dash_report(sqlite3 *db, web_req_t *q) {
  int64_t t = path_tenant(db, q);
  if (t == 0)
    return not_found(q);
  const char *month = web_param(q, "month");
  int y, m;
  char mtext[32];
  if (month == NULL) {
    time_t now = (time_t)(q->now_ms / 1000);
    struct tm tm;
    gmtime_r(&now, &tm);
    y = tm.tm_year + 1900;
    m = tm.tm_mon + 1;
  } else if (strlen(month) != 7 || sscanf(month, "%4d-%2d", &y, &m) != 2 || y < 2000 || y > 9999 ||
             m < 1 || m > 12) {
    return web_fail(q, 400, "bad_request", "month: YYYY-MM");
  }
  snprintf(mtext, sizeof(mtext), "%04d-%02d", y, m);
  int64_t from = month_start_ms(y, m),
          to = month_start_ms(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1);
  int64_t until = to < q->now_ms ? to : q->now_ms;
  const char *latest = ym_version();

  q->answer = cJSON_CreateObject();
  int rc = settings_answer(db, q, t);
  if (rc != 0)
    return rc;
  cJSON *settings = q->answer;
  q->answer = cJSON_CreateObject();
  cJSON *tenant = cJSON_AddObjectToObject(q->answer, "tenant");
  cJSON_AddNumberToObject(tenant, "id", (double)t);
  cJSON_AddStringToObject(tenant, "display", ym_json_get_str(settings, "display"));
  cJSON_AddStringToObject(tenant, "helpdesk", ym_json_get_str(settings, "helpdesk"));
  cJSON_AddStringToObject(q->answer, "lang", ym_json_get_str(settings, "lang"));
  cJSON_Delete(settings);
  cJSON_AddStringToObject(q->answer, "month", mtext);
  cJSON_AddNumberToObject(q->answer, "generated_ms", (double)q->now_ms);
  cJSON_AddStringToObject(q->answer, "latest_version", latest);

  /* PCs and how often they were online (hours with a check-in). */
  sqlite3_stmt *st = sql_prep(db, "SELECT a.id, a.host_name, a.version, a.last_seen, a.enrolled_at,"
                                  " (SELECT COUNT(*) FROM agent_presence p WHERE p.agent_id = a.id"
                                  "  AND p.hour >= ?2 / 3600000 AND p.hour <= ?3 / 3600000)"
                                  " FROM agents a WHERE a.tenant_id = ?1 AND a.revoked = 0"
                                  " AND a.enrolled_at * 1000 < ?3 ORDER BY a.host_name");
  sqlite3_stmt *nm = sql_prep(db, "SELECT name FROM tenants WHERE id = ?1");
  if (st == NULL || nm == NULL) {
    sqlite3_finalize(st);
    sqlite3_finalize(nm);
    return db_fail(q);
  }
  sqlite3_bind_int64(nm, 1, t);
  if (sqlite3_step(nm) == SQLITE_ROW)
    cJSON_AddStringToObject(tenant, "name", sql_text(nm, 0));
  sqlite3_finalize(nm);
  cJSON *pcs = cJSON_AddArrayToObject(q->answer, "pcs");
  int outdated = 0, offline = 0;
  sqlite3_bind_int64(st, 1, t);
  sqlite3_bind_int64(st, 2, from);
  sqlite3_bind_int64(st, 3, until);
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON *p = cJSON_CreateObject();
    add_str(p, "id", st, 0);
    add_str(p, "host_name", st, 1);
    add_str(p, "version", st, 2);
    add_int(p, "last_seen_ms", st, 3);
    int64_t start = sqlite3_column_int64(st, 4) * 1000;
    if (start < from)
      start = from;
    double hours = (double)(until / 3600000 - start / 3600000 + 1);
    double pct = hours > 0 ? 100.0 * (double)sqlite3_column_int64(st, 5) / hours : 0;
    cJSON_AddNumberToObject(p, "online_pct", pct > 100 ? 100 : (double)(int)(pct * 10) / 10);
    bool old = strcmp(sql_text(st, 2), latest) != 0;
    cJSON_AddBoolToObject(p, "outdated", old);
    outdated += old;
    offline += sqlite3_column_int64(st, 3) < q->now_ms - DAY_MS;
    cJSON_AddItemToArray(pcs, p);
  }
  sqlite3_finalize(st);

  /* Detections: alerts of the month by rule. */
  st = sql_prep(db, "SELECT COALESCE(json_extract(json, '$.rule.name'), ''),"
                    " COALESCE(json_extract(json, '$.rule.description'), ''), COUNT(*)"
                    " FROM events WHERE tenant_id = ?1 AND kind = 'alert' AND ts_ms >= ?2"
                    " AND ts_ms < ?3 GROUP BY 1 ORDER BY 3 DESC LIMIT 50");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, t);
  sqlite3_bind_int64(st, 2, from);
  sqlite3_bind_int64(st, 3, to);
  cJSON *det = cJSON_AddObjectToObject(q->answer, "detections");
  cJSON *by = cJSON_CreateArray();
  int64_t total = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON *r = cJSON_CreateObject();
    add_str(r, "rule", st, 0);
    add_str(r, "title", st, 1);
    add_int(r, "count", st, 2);
    total += sqlite3_column_int64(st, 2);
    cJSON_AddItemToArray(by, r);
  }
  sqlite3_finalize(st);
  cJSON_AddNumberToObject(det, "total", (double)total);
  cJSON_AddItemToObject(det, "by_rule", by);

  /* Incidents of the month and what was done. */
  st = sql_prep(
      db, "SELECT i.id, i.title, COALESCE(a.host_name, ''), i.kind, i.state, i.first_ms,"
          " i.resolved_ms,"
          " (SELECT MIN(at_ms) FROM incident_log l WHERE l.incident_id = i.id"
          "  AND l.what = 'notified'),"
          " (SELECT MIN(at_ms) FROM incident_log l WHERE l.incident_id = i.id"
          "  AND l.what = 'state' AND l.detail IN ('acknowledged', 'resolved'))"
          " FROM incidents i LEFT JOIN agents a ON a.id = i.agent_id"
          " WHERE i.tenant_id = ?1 AND i.first_ms < ?3"
          " AND (i.resolved_ms IS NULL OR i.resolved_ms >= ?2) ORDER BY i.first_ms LIMIT 500");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, t);
  sqlite3_bind_int64(st, 2, from);
  sqlite3_bind_int64(st, 3, to);
  cJSON *incs = cJSON_AddArrayToObject(q->answer, "incidents");
  int open = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON *i = cJSON_CreateObject();
    add_int(i, "id", st, 0);
    add_str(i, "title", st, 1);
    add_str(i, "host_name", st, 2);
    add_str(i, "kind", st, 3);
    add_str(i, "state", st, 4);
    add_int(i, "first_ms", st, 5);
    add_int_or_null(i, "resolved_ms", st, 6);
    add_int_or_null(i, "notified_ms", st, 7);
    add_int_or_null(i, "acknowledged_ms", st, 8);
    open += strcmp(sql_text(st, 4), "resolved") != 0;
    cJSON *actions = cJSON_AddArrayToObject(i, "actions");
    actions_json(db, sqlite3_column_int64(st, 0), actions);
    cJSON_AddItemToArray(incs, i);
  }
  sqlite3_finalize(st);
  cJSON_AddNumberToObject(q->answer, "outdated_agents", outdated);
  cJSON *rec = cJSON_AddArrayToObject(q->answer, "recommendations");
  if (outdated > 0)
    cJSON_AddItemToArray(rec, cJSON_CreateString("update_agents"));
  if (offline > 0)
    cJSON_AddItemToArray(rec, cJSON_CreateString("offline_pcs"));
  if (open > 0)
    cJSON_AddItemToArray(rec, cJSON_CreateString("open_incidents"));
  if (cJSON_GetArraySize(rec) == 0)
    cJSON_AddItemToArray(rec, cJSON_CreateString("none"));
  return 0;
}

/* ---------------------------------------------------------------- */
/* Users and audit                                                    */

int dash_users(sqlite3 *db, web_req_t *q) {
  sqlite3_stmt *st = sql_prep(db, "SELECT u.id, u.name, u.role, u.tenant_id, COALESCE(t.name, '')"
                                  " FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id"
                                  " WHERE (?1 = 0 OR u.tenant_id = ?1) ORDER BY u.name LIMIT 1000");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, q->scope);
  q->answer = cJSON_CreateObject();
  cJSON *items = cJSON_AddArrayToObject(q->answer, "items");
  static const col_t cols[] = {{"id", COL_INT},
                               {"name", COL_STR},
                               {"role", COL_STR},
                               {"tenant_id", COL_INT_OR_NULL},
                               {"tenant", COL_STR}};
  rows_json(st, cols, 5, items);
  return 0;
}

/* Checks a new user's fields before the password is hashed. */
int dash_user_check(sqlite3 *db, web_req_t *q) {
  const char *name = ym_json_get_str(q->body, "name");
  const char *role = ym_json_get_str(q->body, "role");
  const cJSON *tj = cJSON_GetObjectItemCaseSensitive(q->body, "tenant_id");
  if (name == NULL || strlen(name) < 2 || strlen(name) > AUTH_NAME_MAX ||
      strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@") !=
          strlen(name))
    return web_fail(q, 400, "bad_request", "name: 2 to 64 of letters, digits, - _ . @");
  if (auth_role_rank(role) == 0)
    return web_fail(q, 400, "bad_request", "role: admin, operator or viewer");
  long long t = 0;
  if (tj != NULL && !cJSON_IsNull(tj) && (!ym_json_get_int(q->body, "tenant_id", &t) || t < 1))
    return web_fail(q, 400, "bad_request", "tenant_id: a tenant id or null");
  if (q->scope != 0 && t != q->scope)
    return web_fail(q, 403, "forbidden", "you can add people of your own company only");
  if (t != 0) {
    sqlite3_stmt *st = sql_prep(db, "SELECT 1 FROM tenants WHERE id = ?1");
    if (st == NULL)
      return db_fail(q);
    sqlite3_bind_int64(st, 1, t);
    bool ok = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (!ok)
      return not_found(q);
  }
  q->num = t;
  return 0;
}

int dash_user_create(sqlite3 *db, web_req_t *q) {
  const char *name = ym_json_get_str(q->body, "name");
  const char *role = ym_json_get_str(q->body, "role");
  int rc = sql_begin(db);
  sqlite3_stmt *st = rc == 0
                         ? sql_prep(db, "INSERT INTO users(name, tenant_id, role, password_hash,"
                                        " created_at) VALUES(?1, ?2, ?3, ?4, ?5)")
                         : NULL;
  int64_t id = 0;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (q->num != 0)
      sqlite3_bind_int64(st, 2, q->num);
    sqlite3_bind_text(st, 3, role, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, q->scratch, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, q->now_ms / 1000);
    int r = sqlite3_step(st);
    rc = r == SQLITE_DONE ? 0 : r == SQLITE_CONSTRAINT ? YM_EEXIST : YM_EIO;
    id = sqlite3_last_insert_rowid(db);
  }
  sqlite3_finalize(st);
  if (rc == 0)
    rc = audit(db, q, q->num, "user.create", name, role);
  rc = sql_end(db, rc);
  if (rc == YM_EEXIST)
    return web_fail(q, 409, "exists", "a user with this name exists");
  if (rc != 0)
    return db_fail(q);
  q->answer = cJSON_CreateObject();
  cJSON_AddNumberToObject(q->answer, "id", (double)id);
  cJSON_AddStringToObject(q->answer, "name", name);
  cJSON_AddStringToObject(q->answer, "role", role);
  if (q->num != 0)
    cJSON_AddNumberToObject(q->answer, "tenant_id", (double)q->num);
  else
    cJSON_AddNullToObject(q->answer, "tenant_id");
  return 0;
}

/* A settings change made by the provider's staff records the body it was
 * given, webhook_url included; a customer's people see that it changed,
 * not what it is. */
static void audit_hide_webhook(cJSON *items) {
  cJSON *it;
  cJSON_ArrayForEach(it, items) {
    const char *action = ym_json_get_str(it, "action");
    const char *detail = ym_json_get_str(it, "detail");
    if (action == NULL || detail == NULL || strcmp(action, "settings.change") != 0 ||
        strstr(detail, "webhook") == NULL)
      continue;
    cJSON *d = NULL;
    char *text = NULL;
    if (ym_json_parse_lenient(detail, strlen(detail), WEB_BODY_MAX, &d) == 0 && cJSON_IsObject(d)) {
      cJSON_DeleteItemFromObjectCaseSensitive(d, "webhook_secret");
      if (cJSON_GetObjectItemCaseSensitive(d, "webhook_url") != NULL)
        cJSON_ReplaceItemInObjectCaseSensitive(d, "webhook_url",
                                               cJSON_CreateString("(set by the provider)"));
      text = cJSON_PrintUnformatted(d);
    }
    cJSON_Delete(d);
    /* Unreadable detail: none at all rather than the URL. */
    cJSON_ReplaceItemInObjectCaseSensitive(it, "detail", cJSON_CreateString(text ? text : ""));
    free(text);
  }
}

int dash_audit(sqlite3 *db, web_req_t *q) {
  int64_t tenant = web_tenant_filter(q), limit;
  if (tenant < 0 || !web_param_int(q, "limit", 1, LIST_MAX, 100, &limit))
    return -1;
  sqlite3_stmt *st = sql_prep(db, "SELECT at_ms, user, action, tenant_id, target, detail, peer"
                                  " FROM audit WHERE (?1 = 0 OR tenant_id = ?1)"
                                  " ORDER BY id DESC LIMIT ?2");
  if (st == NULL)
    return db_fail(q);
  sqlite3_bind_int64(st, 1, tenant);
  sqlite3_bind_int64(st, 2, limit);
  q->answer = cJSON_CreateObject();
  cJSON *items = cJSON_AddArrayToObject(q->answer, "items");
  static const col_t cols[] = {{"at_ms", COL_INT},     {"user", COL_STR},   {"action", COL_STR},
                               {"tenant_id", COL_INT}, {"target", COL_STR}, {"detail", COL_STR},
                               {"peer", COL_STR}};
  rows_json(st, cols, 7, items);
  if (q->scope != 0)
    audit_hide_webhook(items);
  return 0;
}
