/*
 * Remote response commands (see commands.h): schema, validation, the
 * functions the dashboard and the CLI call, the check-in contributor and
 * the agent routes for results and triage bundles.
 */
#include "commands.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define USER_MAX 128
#define ERROR_MAX 4096
#define RESULT_BODY_MAX (COMMANDS_RESULT_MAX + 8192)

static const char *const schema[] = {
    /* 1: commands and triage bundles. */
    "CREATE TABLE commands("
    " id INTEGER PRIMARY KEY,"
    " tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
    " agent_id TEXT NOT NULL,"
    " incident_id INTEGER,"
    " kind TEXT NOT NULL CHECK(kind IN ('scan', 'quarantine', 'restore', 'kill', 'triage')),"
    " args_json TEXT NOT NULL DEFAULT '{}',"
    " state TEXT NOT NULL DEFAULT 'queued'"
    "  CHECK(state IN ('queued', 'sent', 'done', 'failed', 'expired')),"
    " result_json TEXT,"
    " error TEXT NOT NULL DEFAULT '',"
    " user TEXT NOT NULL DEFAULT '',"
    " created_ms INTEGER NOT NULL,"
    " sent_ms INTEGER,"
    " done_ms INTEGER,"
    " bundle_size INTEGER"
    ") STRICT;"
    "CREATE INDEX commands_agent_state ON commands(agent_id, state);"
    "CREATE INDEX commands_tenant_created ON commands(tenant_id, created_ms);"
    "CREATE INDEX commands_incident ON commands(incident_id) WHERE incident_id IS NOT NULL;"
    "CREATE TABLE command_bundles("
    " command_id INTEGER PRIMARY KEY REFERENCES commands(id),"
    " data BLOB NOT NULL"
    ") STRICT;",
};

int commands_schema(store_t *s) {
  return store_ensure_schema(s, "commands", schema, sizeof(schema) / sizeof(schema[0]));
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- */
/* Validation                                                         */

static bool is_hex32(const char *s) {
  return s != NULL && strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

static int bad(char *msg, size_t msglen, const char *why) {
  if (msg != NULL && msglen > 0)
    snprintf(msg, msglen, "%s", why);
  return YM_EINVAL;
}

/* An absolute path without control characters and without "." or ".."
 * components. */
static int check_path(const char *p, char *msg, size_t msglen) {
  size_t n = strlen(p);
  if (n == 0 || p[0] != '/')
    return bad(msg, msglen, "path must be absolute");
  if (n > COMMANDS_PATH_MAX)
    return bad(msg, msglen, "path is too long");
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
      return bad(msg, msglen, "path contains a control character");
  for (const char *c = p; *c;) {
    while (*c == '/')
      c++;
    size_t len = strcspn(c, "/");
    if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
      return bad(msg, msglen, "path has a . or .. component");
    c += len;
  }
  return 0;
}

/* Only the members in allowed[] may appear. */
static bool only_members(const cJSON *args, const char *const *allowed, size_t n) {
  const cJSON *it;
  cJSON_ArrayForEach(it, args) {
    bool ok = false;
    for (size_t i = 0; i < n && !ok; i++)
      ok = it->string != NULL && strcmp(it->string, allowed[i]) == 0;
    if (!ok)
      return false;
  }
  return true;
}

int commands_validate(const char *kind, const cJSON *args, char *msg, size_t msglen) {
  if (args != NULL && !cJSON_IsObject(args))
    return bad(msg, msglen, "args must be an object");
  if (kind == NULL)
    return bad(msg, msglen, "kind is required");
  if (strcmp(kind, "scan") == 0 || strcmp(kind, "quarantine") == 0) {
    static const char *const m[] = {"path"};
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(args, "path");
    if (!cJSON_IsString(p))
      return bad(msg, msglen, "args.path (string) is required");
    if (!only_members(args, m, 1))
      return bad(msg, msglen, "args has unknown members");
    return check_path(p->valuestring, msg, msglen);
  }
  if (strcmp(kind, "restore") == 0) {
    static const char *const m[] = {"id"};
    if (!is_hex32(ym_json_get_str(args, "id")))
      return bad(msg, msglen, "args.id must be a quarantine id (32 hex characters)");
    if (!only_members(args, m, 1))
      return bad(msg, msglen, "args has unknown members");
    return 0;
  }
  if (strcmp(kind, "kill") == 0) {
    static const char *const m[] = {"pid", "entity_id"};
    long long pid;
    if (!ym_json_get_int(args, "pid", &pid) || pid < 2 || pid > 4194304)
      return bad(msg, msglen, "args.pid must be an integer from 2 to 4194304");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(args, "entity_id");
    if (e != NULL && !(cJSON_IsString(e) && is_hex32(e->valuestring)))
      return bad(msg, msglen, "args.entity_id must be 32 hex characters");
    if (!only_members(args, m, 2))
      return bad(msg, msglen, "args has unknown members");
    return 0;
  }
  if (strcmp(kind, "triage") == 0) {
    if (args != NULL && cJSON_GetArraySize(args) != 0)
      return bad(msg, msglen, "triage takes no arguments");
    return 0;
  }
  return bad(msg, msglen, "kind must be scan, quarantine, restore, kill or triage");
}

/* ---------------------------------------------------------------- */
/* Transactions: our own when the caller has none, else a savepoint    */

static bool txn_begin(sqlite3 *db) {
  if (sqlite3_get_autocommit(db))
    return sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
  return sqlite3_exec(db, "SAVEPOINT commands_txn", NULL, NULL, NULL) == SQLITE_OK;
}

/* Commits (rc 0) or undoes (rc != 0) what txn_begin started; own says
 * whether it was a transaction of ours. Returns rc, or YM_EIO when the
 * commit failed. */
static int txn_end(sqlite3 *db, bool own, int rc) {
  if (own) {
    if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
      rc = YM_EIO;
    if (rc != 0 && !sqlite3_get_autocommit(db))
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
  }
  if (rc != 0)
    sqlite3_exec(db, "ROLLBACK TO commands_txn", NULL, NULL, NULL);
  sqlite3_exec(db, "RELEASE commands_txn", NULL, NULL, NULL);
  return rc;
}

/* ---------------------------------------------------------------- */
/* Items                                                              */

#define ITEM_COLUMNS                                                                               \
  "id, agent_id, incident_id, kind, args_json, state, result_json, error, user, created_ms,"       \
  " done_ms, bundle_size"

/* Adds stored JSON text as a member (null when absent or unreadable). */
static void add_stored_json(cJSON *o, const char *key, const unsigned char *text, int len) {
  cJSON *v = NULL;
  if (text != NULL && len > 0)
    ym_json_parse_lenient((const char *)text, (size_t)len, (size_t)len, &v);
  if (v == NULL)
    v = cJSON_CreateNull();
  cJSON_AddItemToObject(o, key, v);
}

/* Text columns become plain cJSON strings (callers may read valuestring);
 * only text that is not valid UTF-8 is added escaped, as a raw item. */
static void add_text(cJSON *o, const char *key, sqlite3_stmt *st, int col) {
  const char *t = (const char *)sqlite3_column_text(st, col);
  size_t n = t != NULL ? (size_t)sqlite3_column_bytes(st, col) : 0;
  if (t == NULL)
    t = "";
  if (ym_json_utf8_valid(t, n) && strlen(t) == n)
    cJSON_AddStringToObject(o, key, t);
  else
    ym_json_add_bytes(o, key, t, n);
}

static void add_int_or_null(cJSON *o, const char *key, sqlite3_stmt *st, int col) {
  if (sqlite3_column_type(st, col) == SQLITE_NULL)
    cJSON_AddNullToObject(o, key);
  else
    cJSON_AddNumberToObject(o, key, (double)sqlite3_column_int64(st, col));
}

/* The item of the current row of a statement selecting ITEM_COLUMNS. */
static cJSON *row_item(sqlite3_stmt *st) {
  cJSON *o = cJSON_CreateObject();
  if (o == NULL)
    return NULL;
  cJSON_AddNumberToObject(o, "id", (double)sqlite3_column_int64(st, 0));
  add_text(o, "agent_id", st, 1);
  add_int_or_null(o, "incident_id", st, 2);
  add_text(o, "kind", st, 3);
  add_stored_json(o, "args", sqlite3_column_text(st, 4), sqlite3_column_bytes(st, 4));
  add_text(o, "state", st, 5);
  add_stored_json(o, "result", sqlite3_column_text(st, 6), sqlite3_column_bytes(st, 6));
  add_text(o, "error", st, 7);
  add_text(o, "user", st, 8);
  cJSON_AddNumberToObject(o, "created_ms", (double)sqlite3_column_int64(st, 9));
  add_int_or_null(o, "done_ms", st, 10);
  cJSON_AddBoolToObject(o, "has_bundle", sqlite3_column_type(st, 11) != SQLITE_NULL);
  return o;
}

int commands_get_db(sqlite3 *db, int64_t tenant_id, int64_t id, cJSON **item_out) {
  sqlite3_stmt *st = NULL;
  *item_out = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT " ITEM_COLUMNS " FROM commands"
                         " WHERE id = ?1 AND (?2 = 0 OR tenant_id = ?2)",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, tenant_id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *item_out = row_item(st);
    rc = *item_out != NULL ? 0 : YM_ENOMEM;
  } else {
    rc = rc == SQLITE_DONE ? YM_ENOENT : YM_EIO;
  }
  sqlite3_finalize(st);
  return rc;
}

int commands_list_db(sqlite3 *db, int64_t tenant_id, const char *agent_id, int64_t incident_id,
                     cJSON *items_array) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT " ITEM_COLUMNS " FROM commands"
                         " WHERE (?1 = 0 OR tenant_id = ?1) AND (?2 IS NULL OR agent_id = ?2)"
                         " AND (?3 = 0 OR incident_id = ?3)"
                         " ORDER BY id DESC LIMIT ?4",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, tenant_id);
  if (agent_id != NULL)
    sqlite3_bind_text(st, 2, agent_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, incident_id);
  sqlite3_bind_int(st, 4, COMMANDS_LIST_MAX);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    cJSON *o = row_item(st);
    if (o == NULL) {
      sqlite3_finalize(st);
      return YM_ENOMEM;
    }
    cJSON_AddItemToArray(items_array, o);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : YM_EIO;
}

/* Adds a line to an incident's log (the incidents module's table). */
static int incident_log(sqlite3 *db, int64_t incident_id, const char *user, const char *detail) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO incident_log(incident_id, at_ms, what, user, detail)"
                         " VALUES(?1, ?2, 'command', ?3, ?4)",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, incident_id);
  sqlite3_bind_int64(st, 2, now_ms());
  sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, detail, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  sqlite3_finalize(st);
  return rc;
}

int commands_create_db(sqlite3 *db, int64_t tenant_id, const char *agent_id, int64_t incident_id,
                       const char *kind, const cJSON *args, const char *user, cJSON **item_out) {
  if (item_out != NULL)
    *item_out = NULL;
  if (commands_validate(kind, args, NULL, 0) != 0 || agent_id == NULL || strlen(agent_id) != 36 ||
      incident_id < 0 || (user != NULL && strlen(user) > USER_MAX))
    return YM_EINVAL;
  char *args_json = args != NULL ? cJSON_PrintUnformatted(args) : strdup("{}");
  if (args_json == NULL)
    return YM_ENOMEM;
  bool own = sqlite3_get_autocommit(db) != 0;
  if (!txn_begin(db)) {
    free(args_json);
    return YM_EIO;
  }
  sqlite3_stmt *st = NULL;
  int64_t agent_tenant = 0, id = 0;
  int rc = YM_EIO;
  /* The agent, seen from tenant_id. */
  if (sqlite3_prepare_v2(
          db, "SELECT tenant_id FROM agents WHERE id = ?1 AND (?2 = 0 OR tenant_id = ?2)", -1, &st,
          NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, tenant_id);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
      agent_tenant = sqlite3_column_int64(st, 0);
      rc = 0;
    } else if (s == SQLITE_DONE) {
      rc = YM_ENOENT;
    }
  }
  sqlite3_finalize(st);
  st = NULL;
  /* The incident must be this agent's. */
  if (rc == 0 && incident_id > 0) {
    rc = YM_EIO;
    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM incidents WHERE id = ?1 AND agent_id = ?2"
                           " AND tenant_id = ?3",
                           -1, &st, NULL) == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, incident_id);
      sqlite3_bind_text(st, 2, agent_id, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 3, agent_tenant);
      int s = sqlite3_step(st);
      rc = s == SQLITE_ROW ? 0 : (s == SQLITE_DONE ? YM_ENOENT : YM_EIO);
    }
    sqlite3_finalize(st);
    st = NULL;
  }
  if (rc == 0) {
    rc = YM_EIO;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO commands(tenant_id, agent_id, incident_id, kind, args_json,"
                           " user, created_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           -1, &st, NULL) == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, agent_tenant);
      sqlite3_bind_text(st, 2, agent_id, -1, SQLITE_STATIC);
      if (incident_id > 0)
        sqlite3_bind_int64(st, 3, incident_id);
      sqlite3_bind_text(st, 4, kind, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 5, args_json, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 6, user ? user : "", -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 7, now_ms());
      if (sqlite3_step(st) == SQLITE_DONE) {
        id = sqlite3_last_insert_rowid(db);
        rc = 0;
      }
    }
    sqlite3_finalize(st);
  }
  if (rc == 0 && incident_id > 0) {
    char detail[256];
    snprintf(detail, sizeof(detail), "command %lld: %s queued", (long long)id, kind);
    rc = incident_log(db, incident_id, user ? user : "", detail);
  }
  rc = txn_end(db, own, rc);
  free(args_json);
  if (rc == 0 && item_out != NULL)
    rc = commands_get_db(db, 0, id, item_out);
  return rc;
}

int commands_bundle_get_db(sqlite3 *db, int64_t tenant_id, int64_t id, void **data, size_t *len) {
  sqlite3_stmt *st = NULL;
  *data = NULL;
  *len = 0;
  if (sqlite3_prepare_v2(db,
                         "SELECT b.data FROM command_bundles b JOIN commands c"
                         " ON c.id = b.command_id WHERE c.id = ?1 AND (?2 = 0 OR c.tenant_id = ?2)",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, tenant_id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    int n = sqlite3_column_bytes(st, 0);
    const void *b = sqlite3_column_blob(st, 0);
    *data = malloc(n > 0 ? (size_t)n : 1);
    if (*data == NULL) {
      rc = YM_ENOMEM;
    } else {
      if (n > 0)
        memcpy(*data, b, (size_t)n);
      *len = (size_t)n;
      rc = 0;
    }
  } else {
    rc = rc == SQLITE_DONE ? YM_ENOENT : YM_EIO;
  }
  sqlite3_finalize(st);
  return rc;
}

/* ---------------------------------------------------------------- */
/* The agent's side                                                   */

int commands_checkin_db(sqlite3 *db, int64_t tenant_id, const char *agent_id, const cJSON *req,
                        cJSON *answer, void *data) {
  (void)req;
  (void)data;
  int64_t now = now_ms();
  sqlite3_stmt *st = NULL;
  int rc = YM_EIO;
  /* Old commands expire rather than act on a PC a day later. */
  if (sqlite3_prepare_v2(db,
                         "UPDATE commands SET state = 'expired', done_ms = ?3"
                         " WHERE agent_id = ?1 AND tenant_id = ?2"
                         " AND state IN ('queued', 'sent') AND created_ms < ?4",
                         -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, tenant_id);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, now - COMMANDS_EXPIRE_MS);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  }
  sqlite3_finalize(st);
  if (rc != 0)
    return rc;
  cJSON *arr = cJSON_GetObjectItemCaseSensitive(answer, "commands");
  if (!cJSON_IsArray(arr)) {
    cJSON_DeleteItemFromObjectCaseSensitive(answer, "commands");
    arr = cJSON_AddArrayToObject(answer, "commands");
    if (arr == NULL)
      return YM_ENOMEM;
  }
  int64_t ids[COMMANDS_PER_CHECKIN];
  size_t n = 0, bytes = 0;
  if (sqlite3_prepare_v2(db,
                         "SELECT id, kind, args_json FROM commands"
                         " WHERE agent_id = ?1 AND tenant_id = ?2"
                         " AND (state = 'queued' OR (state = 'sent' AND sent_ms < ?3))"
                         " ORDER BY id LIMIT ?4",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, tenant_id);
  sqlite3_bind_int64(st, 3, now - COMMANDS_RESEND_MS);
  sqlite3_bind_int(st, 4, COMMANDS_PER_CHECKIN);
  int s;
  while ((s = sqlite3_step(st)) == SQLITE_ROW) {
    int len = sqlite3_column_bytes(st, 2);
    if (n > 0 && bytes + (size_t)len > COMMANDS_CHECKIN_ARGS_MAX)
      break; /* the rest goes with the next check-in */
    cJSON *args = NULL;
    ym_json_parse_lenient((const char *)sqlite3_column_text(st, 2), (size_t)len, (size_t)len,
                          &args);
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || args == NULL) {
      cJSON_Delete(args);
      cJSON_Delete(o);
      continue; /* unreadable stored arguments are never sent */
    }
    ids[n] = sqlite3_column_int64(st, 0);
    cJSON_AddNumberToObject(o, "id", (double)ids[n]);
    cJSON_AddStringToObject(o, "kind", (const char *)sqlite3_column_text(st, 1));
    cJSON_AddItemToObject(o, "args", args);
    cJSON_AddItemToArray(arr, o);
    bytes += (size_t)len;
    n++;
  }
  sqlite3_finalize(st);
  if (s != SQLITE_ROW && s != SQLITE_DONE)
    return YM_EIO;
  if (n == 0)
    return 0;
  if (sqlite3_prepare_v2(db, "UPDATE commands SET state = 'sent', sent_ms = ?2 WHERE id = ?1", -1,
                         &st, NULL) != SQLITE_OK)
    return YM_EIO;
  rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    sqlite3_bind_int64(st, 1, ids[i]);
    sqlite3_bind_int64(st, 2, now);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  return rc;
}

/* The command id of the agent: its kind and state and incident. */
static int find_agent_command(sqlite3 *db, int64_t tenant_id, const char *agent_id, int64_t id,
                              char kind[16], char state[16], int64_t *incident_id) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT kind, state, incident_id FROM commands"
                         " WHERE id = ?1 AND agent_id = ?2 AND tenant_id = ?3",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_text(st, 2, agent_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, tenant_id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    snprintf(kind, 16, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(state, 16, "%s", (const char *)sqlite3_column_text(st, 1));
    *incident_id = sqlite3_column_int64(st, 2);
    rc = 0;
  } else {
    rc = rc == SQLITE_DONE ? YM_ENOENT : YM_EIO;
  }
  sqlite3_finalize(st);
  return rc;
}

int commands_result_db(sqlite3 *db, int64_t tenant_id, const char *agent_id, int64_t id,
                       const char *state, const cJSON *result, const char *error) {
  if (state == NULL || (strcmp(state, "done") != 0 && strcmp(state, "failed") != 0) ||
      (result != NULL && !cJSON_IsObject(result)) || (error != NULL && strlen(error) > ERROR_MAX))
    return YM_EINVAL;
  char *text = result != NULL ? cJSON_PrintUnformatted(result) : NULL;
  if (result != NULL && text == NULL)
    return YM_ENOMEM;
  if (text != NULL && strlen(text) > COMMANDS_RESULT_MAX) {
    free(text);
    return YM_ETOOBIG;
  }
  bool own = sqlite3_get_autocommit(db) != 0;
  if (!txn_begin(db)) {
    free(text);
    return YM_EIO;
  }
  char kind[16], cur[16];
  int64_t incident = 0;
  int rc = find_agent_command(db, tenant_id, agent_id, id, kind, cur, &incident);
  bool already = rc == 0 && (strcmp(cur, "done") == 0 || strcmp(cur, "failed") == 0);
  if (rc == 0 && !already) {
    sqlite3_stmt *st = NULL;
    rc = YM_EIO;
    if (sqlite3_prepare_v2(db,
                           "UPDATE commands SET state = ?2, result_json = ?3, error = ?4,"
                           " done_ms = ?5 WHERE id = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, id);
      sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
      if (text != NULL)
        sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 4, error ? error : "", -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 5, now_ms());
      rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
    }
    sqlite3_finalize(st);
    if (rc == 0 && incident > 0) {
      char detail[256];
      snprintf(detail, sizeof(detail), "command %lld: %s %s", (long long)id, kind, state);
      rc = incident_log(db, incident, "", detail);
    }
  }
  rc = txn_end(db, own, rc);
  free(text);
  return rc;
}

int commands_bundle_put_db(sqlite3 *db, int64_t tenant_id, const char *agent_id, int64_t id,
                           const void *data, size_t len) {
  if (len > COMMANDS_BUNDLE_MAX)
    return YM_ETOOBIG;
  bool own = sqlite3_get_autocommit(db) != 0;
  if (!txn_begin(db))
    return YM_EIO;
  char kind[16], cur[16];
  int64_t incident = 0;
  int rc = find_agent_command(db, tenant_id, agent_id, id, kind, cur, &incident);
  if (rc == 0 && strcmp(kind, "triage") != 0)
    rc = YM_ENOENT;
  sqlite3_stmt *st = NULL;
  if (rc == 0) {
    rc = YM_EIO;
    if (sqlite3_prepare_v2(
            db, "INSERT OR REPLACE INTO command_bundles(command_id, data) VALUES(?1, ?2)", -1, &st,
            NULL) == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, id);
      sqlite3_bind_blob(st, 2, len ? data : "", (int)len, SQLITE_STATIC);
      rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
    }
    sqlite3_finalize(st);
    st = NULL;
  }
  if (rc == 0) {
    rc = YM_EIO;
    if (sqlite3_prepare_v2(db, "UPDATE commands SET bundle_size = ?2 WHERE id = ?1", -1, &st,
                           NULL) == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, id);
      sqlite3_bind_int64(st, 2, (int64_t)len);
      rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
    }
    sqlite3_finalize(st);
  }
  return txn_end(db, own, rc);
}

/* ---------------------------------------------------------------- */
/* Agent routes                                                       */

typedef struct {
  http_req_t *r;
  char agent_id[40];
  int64_t tenant_id;
  int64_t id;
  bool bundle;
  /* result */
  char state[8];
  cJSON *result;
  char *error;
  /* bundle */
  void *data;
  size_t len;
} route_ctx_t;

static void route_ctx_free(route_ctx_t *c) {
  cJSON_Delete(c->result);
  free(c->error);
  free(c->data);
  free(c);
}

static int route_db(sqlite3 *db, void *arg) {
  route_ctx_t *c = arg;
  if (c->bundle)
    return commands_bundle_put_db(db, c->tenant_id, c->agent_id, c->id, c->data, c->len);
  return commands_result_db(db, c->tenant_id, c->agent_id, c->id, c->state, c->result, c->error);
}

static void route_done(int rc, void *data) {
  route_ctx_t *c = data;
  if (rc == 0)
    http_reply(c->r, 200, "{}", 2, 0);
  else if (rc == YM_ENOENT)
    http_reply_error(c->r, 404, "not_found", "no such command of this agent");
  else if (rc == YM_EINVAL)
    http_reply_error(c->r, 400, "bad_request", "malformed result");
  else if (rc == YM_ETOOBIG)
    http_reply_error(c->r, 413, "too_large", "result or bundle too large");
  else
    http_reply_error(c->r, 503, "unavailable", "retry");
  route_ctx_free(c);
}

/* Parses "/api/v1/commands/<id>/<what>". */
static bool parse_path(http_req_t *r, int64_t *id, const char **what) {
  size_t len;
  const char *p = http_req_path(r, &len);
  static const char prefix[] = "/api/v1/commands/";
  if (len <= sizeof(prefix) - 1 || strncmp(p, prefix, sizeof(prefix) - 1) != 0)
    return false;
  const char *d = p + sizeof(prefix) - 1;
  size_t nd = strspn(d, "0123456789");
  if (nd == 0 || nd > 15 || d[nd] != '/')
    return false;
  *id = strtoll(d, NULL, 10);
  *what = d + nd + 1;
  return *id > 0;
}

static void on_command_route(http_req_t *r, const char *agent_id, int64_t tenant_id, void *data) {
  store_t *store = data;
  int64_t id;
  const char *what;
  if (!parse_path(r, &id, &what) || (strcmp(what, "result") != 0 && strcmp(what, "bundle") != 0)) {
    http_reply_error(r, 404, "not_found", "no such route");
    return;
  }
  route_ctx_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  c->r = r;
  c->tenant_id = tenant_id;
  c->id = id;
  snprintf(c->agent_id, sizeof(c->agent_id), "%s", agent_id);
  size_t len;
  const char *body = http_req_body(r, &len);
  if (strcmp(what, "bundle") == 0) {
    c->bundle = true;
    if (len > COMMANDS_BUNDLE_MAX) {
      route_ctx_free(c);
      http_reply_error(r, 413, "too_large", "the bundle is too large");
      return;
    }
    if (len < 18 || (unsigned char)body[0] != 0x1f || (unsigned char)body[1] != 0x8b) {
      route_ctx_free(c);
      http_reply_error(r, 400, "bad_request", "the bundle must be gzip");
      return;
    }
    c->data = malloc(len);
    if (c->data == NULL) {
      route_ctx_free(c);
      http_reply_error(r, 500, "internal", "out of memory");
      return;
    }
    memcpy(c->data, body, len);
    c->len = len;
    store_call(store, route_db, c, route_done, c);
    return;
  }
  cJSON *j = NULL;
  if (len > RESULT_BODY_MAX || ym_json_parse_lenient(body, len, RESULT_BODY_MAX, &j) != 0 ||
      !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    route_ctx_free(c);
    http_reply_error(r, len > RESULT_BODY_MAX ? 413 : 400,
                     len > RESULT_BODY_MAX ? "too_large" : "bad_request",
                     "the body must be a JSON object");
    return;
  }
  const char *state = ym_json_get_str(j, "state");
  const char *error = ym_json_get_str(j, "error");
  cJSON *result = cJSON_GetObjectItemCaseSensitive(j, "result");
  if (state == NULL || (strcmp(state, "done") != 0 && strcmp(state, "failed") != 0) ||
      (result != NULL && !cJSON_IsObject(result) && !cJSON_IsNull(result)) ||
      (error != NULL && strlen(error) > ERROR_MAX)) {
    cJSON_Delete(j);
    route_ctx_free(c);
    http_reply_error(r, 400, "bad_request", "state (done or failed), result, error");
    return;
  }
  snprintf(c->state, sizeof(c->state), "%s", state);
  if (cJSON_IsObject(result))
    c->result = cJSON_DetachItemViaPointer(j, result);
  c->error = error != NULL ? strdup(error) : NULL;
  cJSON_Delete(j);
  store_call(store, route_db, c, route_done, c);
}

int commands_attach(api_t *api, store_t *store) {
  int rc = api_add_checkin(api, commands_checkin_db, NULL);
  if (rc == 0)
    rc = api_route_agent(api, "POST", "/api/v1/commands/", on_command_route, store);
  return rc;
}

/* ---------------------------------------------------------------- */
/* Command line                                                       */

typedef struct {
  const commands_cli_t *o;
  int64_t id;
  cJSON *args;
  cJSON *item; /* add, show */
  cJSON *list; /* list */
  void *data;  /* bundle */
  size_t len;
} cli_ctx_t;

static int cli_add(sqlite3 *db, void *arg) {
  cli_ctx_t *c = arg;
  return commands_create_db(db, 0, c->o->agent, c->o->incident, c->o->kind, c->args,
                            c->o->user ? c->o->user : "cli", &c->item);
}

static int cli_list(sqlite3 *db, void *arg) {
  cli_ctx_t *c = arg;
  return commands_list_db(db, 0, c->o->agent, c->o->incident, c->list);
}

static int cli_show(sqlite3 *db, void *arg) {
  cli_ctx_t *c = arg;
  return commands_get_db(db, 0, c->id, &c->item);
}

static int cli_bundle(sqlite3 *db, void *arg) {
  cli_ctx_t *c = arg;
  return commands_bundle_get_db(db, 0, c->id, &c->data, &c->len);
}

static void print_json(const cJSON *j) {
  char *text = cJSON_Print(j);
  if (text != NULL)
    printf("%s\n", text);
  free(text);
}

static bool parse_id(const char *s, int64_t *id) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v <= 0)
    return false;
  *id = v;
  return true;
}

static int write_new_file(const char *path, const void *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return ym_err_from_errno(errno);
  const char *p = data;
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(fd, p + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      close(fd);
      unlink(path);
      return YM_EIO;
    }
    off += (size_t)n;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    unlink(path);
    return YM_EIO;
  }
  return 0;
}

int commands_cli(store_t *s, const commands_cli_t *o, int argc, char **argv) {
  cli_ctx_t c = {0};
  c.o = o;
  int rc;
  if (argc < 1)
    return 64;
  if (strcmp(argv[0], "add") == 0 && argc == 1) {
    if (o->agent == NULL || o->kind == NULL) {
      fprintf(stderr, "yamori-console: command add needs --agent ID and --kind KIND\n");
      return 64;
    }
    if (o->args != NULL && (ym_json_parse(o->args, strlen(o->args), 65536, &c.args, NULL) != 0 ||
                            !cJSON_IsObject(c.args))) {
      cJSON_Delete(c.args);
      fprintf(stderr, "yamori-console: --args must be a JSON object\n");
      return 64;
    }
    char msg[128];
    if (commands_validate(o->kind, c.args, msg, sizeof(msg)) != 0) {
      cJSON_Delete(c.args);
      fprintf(stderr, "yamori-console: %s\n", msg);
      return 1;
    }
    rc = store_sync_call(s, cli_add, &c);
    cJSON_Delete(c.args);
    if (rc != 0) {
      fprintf(stderr, "yamori-console: cannot queue the command: %s\n",
              rc == YM_ENOENT ? "no such agent (or incident of that agent)" : ym_strerror(rc));
      return 1;
    }
    print_json(c.item);
    cJSON_Delete(c.item);
    return 0;
  }
  if (strcmp(argv[0], "list") == 0 && argc == 1) {
    cJSON *j = cJSON_CreateObject();
    c.list = cJSON_AddArrayToObject(j, "items");
    rc = store_sync_call(s, cli_list, &c);
    if (rc == 0)
      print_json(j);
    cJSON_Delete(j);
    if (rc != 0)
      fprintf(stderr, "yamori-console: cannot list commands: %s\n", ym_strerror(rc));
    return rc == 0 ? 0 : 1;
  }
  if (strcmp(argv[0], "show") == 0 && argc == 2) {
    if (!parse_id(argv[1], &c.id))
      return 64;
    rc = store_sync_call(s, cli_show, &c);
    if (rc != 0) {
      fprintf(stderr, "yamori-console: command %s: %s\n", argv[1],
              rc == YM_ENOENT ? "not found" : ym_strerror(rc));
      return 1;
    }
    print_json(c.item);
    cJSON_Delete(c.item);
    return 0;
  }
  if (strcmp(argv[0], "bundle") == 0 && argc == 2) {
    if (!parse_id(argv[1], &c.id) || o->out == NULL) {
      fprintf(stderr, "yamori-console: command bundle ID needs --out FILE\n");
      return 64;
    }
    rc = store_sync_call(s, cli_bundle, &c);
    if (rc == 0)
      rc = write_new_file(o->out, c.data, c.len);
    free(c.data);
    if (rc != 0) {
      fprintf(stderr, "yamori-console: bundle of command %s: %s\n", argv[1],
              rc == YM_ENOENT ? "not found (no such command or no bundle yet)" : ym_strerror(rc));
      return 1;
    }
    fprintf(stderr, "%zu bytes written to %s\n", c.len, o->out);
    return 0;
  }
  return 64;
}
