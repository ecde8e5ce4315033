/*
 * Tests of the response commands module on a real SQLite store in a
 * temporary directory: strict argument checks, tenant scoping of every
 * function (another tenant's ids are "not found"), the check-in hand-out
 * (queued -> sent, at most COMMANDS_PER_CHECKIN, re-sent after the
 * timeout, expired after a day), idempotent results only from the
 * command's own agent, and triage bundles.
 */
#include "commands.h"
#include "incidents.h"
#include "store.h"
#include "yamori/err.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cmocka.h>

#define AGENT_A "aaaaaaaa-0000-4000-8000-000000000001"
#define AGENT_A2 "aaaaaaaa-0000-4000-8000-000000000002"
#define AGENT_B "bbbbbbbb-0000-4000-8000-000000000001"

typedef struct {
  char dir[64];
  store_t *s;
  sqlite3 *db; /* a second connection of the test's own */
  int64_t ta, tb;
} fixture_t;

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[512];
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

static void exec_sql(sqlite3 *db, const char *sql) {
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  if (rc != SQLITE_OK)
    fail_msg("%s: %s", sql, err ? err : "?");
}

static void add_agent(sqlite3 *db, const char *id, int64_t tenant) {
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "INSERT INTO agents(id, tenant_id, secret_hash, enrolled_at)"
                                      " VALUES(?1, ?2, zeroblob(32), 0)",
                                      -1, &st, NULL),
                   SQLITE_OK);
  sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, tenant);
  assert_int_equal(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  snprintf(f->dir, sizeof(f->dir), "/tmp/ym-cmds-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(store_open(f->dir, NULL, &f->s), 0);
  assert_int_equal(incidents_schema(f->s), 0);
  assert_int_equal(commands_schema(f->s), 0);
  assert_int_equal(store_sync_tenant_add(f->s, "acme", "ACME", &f->ta), 0);
  assert_int_equal(store_sync_tenant_add(f->s, "beta", "Beta", &f->tb), 0);
  char path[128];
  snprintf(path, sizeof(path), "%s/yamori.db", f->dir);
  assert_int_equal(sqlite3_open(path, &f->db), SQLITE_OK);
  sqlite3_busy_timeout(f->db, 5000);
  add_agent(f->db, AGENT_A, f->ta);
  add_agent(f->db, AGENT_A2, f->ta);
  add_agent(f->db, AGENT_B, f->tb);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  sqlite3_close(f->db);
  store_close(f->s);
  remove_dir(f->dir);
  free(f);
  return 0;
}

static cJSON *args(const char *json) {
  cJSON *j = cJSON_Parse(json);
  assert_non_null(j);
  return j;
}

static int64_t create(fixture_t *f, int64_t tenant, const char *agent, const char *kind,
                      const char *json, int want) {
  cJSON *a = args(json), *item = NULL;
  int rc = commands_create_db(f->db, tenant, agent, 0, kind, a, "alice", &item);
  cJSON_Delete(a);
  assert_int_equal(rc, want);
  if (rc != 0) {
    assert_null(item);
    return 0;
  }
  int64_t id = (int64_t)cJSON_GetObjectItem(item, "id")->valuedouble;
  cJSON_Delete(item);
  return id;
}

/* ------------------------------------------------------------------ */

static void test_validate(void **state) {
  (void)state;
  static const struct {
    const char *kind, *args;
    int ok;
  } cases[] = {
      {"scan", "{\"path\": \"/home\"}", 1},
      {"quarantine", "{\"path\": \"/tmp/x y\"}", 1},
      {"quarantine", "{\"path\": \"tmp/x\"}", 0},
      {"quarantine", "{\"path\": \"\"}", 0},
      {"quarantine", "{\"path\": \"/tmp/a\\nb\"}", 0},
      {"quarantine", "{\"path\": \"/tmp/a\\u001bb\"}", 0},
      {"quarantine", "{\"path\": \"/tmp/../etc/passwd\"}", 0},
      {"quarantine", "{\"path\": \"/tmp/./x\"}", 0},
      {"quarantine", "{\"path\": \"/tmp/x\", \"force\": true}", 0},
      {"quarantine", "{\"path\": 5}", 0},
      {"quarantine", "{}", 0},
      {"restore", "{\"id\": \"0123456789abcdef0123456789abcdef\"}", 1},
      {"restore", "{\"id\": \"0123456789ABCDEF0123456789abcdef\"}", 0},
      {"restore", "{\"id\": \"../x\"}", 0},
      {"kill", "{\"pid\": 123}", 1},
      {"kill", "{\"pid\": 123, \"entity_id\": \"0123456789abcdef0123456789abcdef\"}", 1},
      {"kill", "{\"pid\": 1}", 0},
      {"kill", "{\"pid\": 0}", 0},
      {"kill", "{\"pid\": -5}", 0},
      {"kill", "{\"pid\": 12.5}", 0},
      {"kill", "{\"pid\": \"12\"}", 0},
      {"kill", "{\"pid\": 99999999}", 0},
      {"kill", "{\"pid\": 1e300}", 0},
      {"kill", "{\"pid\": -3.3e56}", 0},
      {"kill", "{\"pid\": 12, \"entity_id\": \"x\"}", 0},
      {"triage", "{}", 1},
      {"triage", "{\"x\": 1}", 0},
      {"shell", "{}", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cJSON *a = args(cases[i].args);
    char msg[128] = "";
    int rc = commands_validate(cases[i].kind, a, msg, sizeof(msg));
    if ((rc == 0) != cases[i].ok)
      fail_msg("case %zu (%s %s): got %d (%s)", i, cases[i].kind, cases[i].args, rc, msg);
    cJSON_Delete(a);
  }
  /* A path at the limit passes, one byte more does not. */
  char *p = malloc(COMMANDS_PATH_MAX + 2);
  memset(p, 'a', COMMANDS_PATH_MAX + 1);
  p[0] = '/';
  p[COMMANDS_PATH_MAX] = '\0';
  cJSON *a = cJSON_CreateObject();
  cJSON_AddStringToObject(a, "path", p);
  assert_int_equal(commands_validate("scan", a, NULL, 0), 0);
  cJSON_Delete(a);
  p[COMMANDS_PATH_MAX] = 'a';
  p[COMMANDS_PATH_MAX + 1] = '\0';
  a = cJSON_CreateObject();
  cJSON_AddStringToObject(a, "path", p);
  assert_int_equal(commands_validate("scan", a, NULL, 0), YM_EINVAL);
  cJSON_Delete(a);
  free(p);
}

static void test_tenant_scoping(void **state) {
  fixture_t *f = *state;
  /* Another tenant's agent is not found; provider staff (0) reach all. */
  create(f, f->tb, AGENT_A, "triage", "{}", YM_ENOENT);
  int64_t ida = create(f, f->ta, AGENT_A, "scan", "{\"path\": \"/home\"}", 0);
  int64_t idb = create(f, 0, AGENT_B, "triage", "{}", 0);
  create(f, f->ta, AGENT_A, "kill", "{\"pid\": 1}", YM_EINVAL);
  create(f, f->ta, "not-an-agent", "triage", "{}", YM_EINVAL);

  cJSON *item = NULL;
  assert_int_equal(commands_get_db(f->db, f->tb, ida, &item), YM_ENOENT);
  assert_null(item);
  assert_int_equal(commands_get_db(f->db, f->ta, idb, &item), YM_ENOENT);
  assert_int_equal(commands_get_db(f->db, f->ta, ida, &item), 0);
  /* The item has the documented shape. */
  assert_string_equal(cJSON_GetObjectItem(item, "agent_id")->valuestring, AGENT_A);
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(item, "incident_id")));
  assert_string_equal(cJSON_GetObjectItem(item, "kind")->valuestring, "scan");
  assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(item, "args"), "path")->valuestring,
                      "/home");
  assert_string_equal(cJSON_GetObjectItem(item, "state")->valuestring, "queued");
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(item, "result")));
  assert_string_equal(cJSON_GetObjectItem(item, "error")->valuestring, "");
  assert_string_equal(cJSON_GetObjectItem(item, "user")->valuestring, "alice");
  assert_true(cJSON_GetObjectItem(item, "created_ms")->valuedouble > 0);
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(item, "done_ms")));
  assert_true(cJSON_IsFalse(cJSON_GetObjectItem(item, "has_bundle")));
  cJSON_Delete(item);
  assert_int_equal(commands_get_db(f->db, 0, idb, &item), 0);
  cJSON_Delete(item);

  cJSON *arr = cJSON_CreateArray();
  assert_int_equal(commands_list_db(f->db, f->ta, NULL, 0, arr), 0);
  assert_int_equal(cJSON_GetArraySize(arr), 1);
  assert_int_equal((int64_t)cJSON_GetArrayItem(arr, 0)->child->valuedouble, ida);
  cJSON_Delete(arr);
  arr = cJSON_CreateArray();
  assert_int_equal(commands_list_db(f->db, f->ta, AGENT_B, 0, arr), 0);
  assert_int_equal(cJSON_GetArraySize(arr), 0); /* naming B's agent does not help */
  cJSON_Delete(arr);
  arr = cJSON_CreateArray();
  assert_int_equal(commands_list_db(f->db, 0, NULL, 0, arr), 0);
  assert_int_equal(cJSON_GetArraySize(arr), 2);
  cJSON_Delete(arr);

  /* Bundles: stored for B's triage by B's agent only, read by B or staff. */
  assert_int_equal(commands_bundle_put_db(f->db, f->tb, AGENT_B, idb, "\x1f\x8bxyz", 5), 0);
  assert_int_equal(commands_bundle_put_db(f->db, f->ta, AGENT_A, idb, "\x1f\x8bxyz", 5), YM_ENOENT);
  assert_int_equal(commands_bundle_put_db(f->db, f->ta, AGENT_A, ida, "\x1f\x8bxyz", 5),
                   YM_ENOENT); /* not a triage */
  void *data = NULL;
  size_t len = 0;
  assert_int_equal(commands_bundle_get_db(f->db, f->ta, idb, &data, &len), YM_ENOENT);
  assert_null(data);
  assert_int_equal(commands_bundle_get_db(f->db, f->tb, idb, &data, &len), 0);
  assert_int_equal(len, 5);
  assert_memory_equal(data, "\x1f\x8bxyz", 5);
  free(data);
  assert_int_equal(commands_get_db(f->db, 0, idb, &item), 0);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(item, "has_bundle")));
  cJSON_Delete(item);

  /* Results: only from the command's own agent. */
  cJSON *res = args("{\"files\": 3}");
  assert_int_equal(commands_result_db(f->db, f->tb, AGENT_B, ida, "done", res, NULL), YM_ENOENT);
  assert_int_equal(commands_result_db(f->db, f->ta, AGENT_A2, ida, "done", res, NULL), YM_ENOENT);
  assert_int_equal(commands_result_db(f->db, f->ta, AGENT_A, ida, "done", res, NULL), 0);
  cJSON_Delete(res);
  /* Idempotent: a second result does not replace the first. */
  res = args("{\"files\": 99}");
  assert_int_equal(commands_result_db(f->db, f->ta, AGENT_A, ida, "failed", res, "late"), 0);
  cJSON_Delete(res);
  assert_int_equal(commands_get_db(f->db, f->ta, ida, &item), 0);
  assert_string_equal(cJSON_GetObjectItem(item, "state")->valuestring, "done");
  assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(item, "result"), "files")->valueint, 3);
  assert_false(cJSON_IsNull(cJSON_GetObjectItem(item, "done_ms")));
  cJSON_Delete(item);
  assert_int_equal(commands_result_db(f->db, f->ta, AGENT_A, ida, "maybe", NULL, NULL), YM_EINVAL);
}

static void test_incident(void **state) {
  fixture_t *f = *state;
  char sql[256];
  snprintf(sql, sizeof(sql),
           "INSERT INTO incidents(id, tenant_id, agent_id, kind, first_ms, last_ms, updated_ms)"
           " VALUES(7, %lld, '" AGENT_A "', 'malware', 1, 1, 1)",
           (long long)f->ta);
  exec_sql(f->db, sql);
  cJSON *a = args("{\"path\": \"/tmp/x\"}"), *item = NULL;
  /* Another agent's incident, another tenant's view: not found. */
  assert_int_equal(commands_create_db(f->db, f->ta, AGENT_A2, 7, "quarantine", a, "bob", NULL),
                   YM_ENOENT);
  assert_int_equal(commands_create_db(f->db, f->tb, AGENT_A, 7, "quarantine", a, "bob", NULL),
                   YM_ENOENT);
  assert_int_equal(commands_create_db(f->db, f->ta, AGENT_A, 7, "quarantine", a, "bob", &item), 0);
  assert_int_equal(cJSON_GetObjectItem(item, "incident_id")->valueint, 7);
  int64_t id = (int64_t)cJSON_GetObjectItem(item, "id")->valuedouble;
  cJSON_Delete(item);
  cJSON_Delete(a);
  cJSON *arr = cJSON_CreateArray();
  assert_int_equal(commands_list_db(f->db, f->ta, NULL, 7, arr), 0);
  assert_int_equal(cJSON_GetArraySize(arr), 1);
  cJSON_Delete(arr);
  assert_int_equal(commands_result_db(f->db, f->ta, AGENT_A, id, "done", NULL, NULL), 0);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(f->db,
                                      "SELECT count(*) FROM incident_log WHERE incident_id = 7"
                                      " AND what = 'command'",
                                      -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 2); /* queued, done */
  sqlite3_finalize(st);
}

static cJSON *checkin(fixture_t *f, int64_t tenant, const char *agent) {
  cJSON *answer = cJSON_CreateObject();
  cJSON_AddArrayToObject(answer, "commands");
  exec_sql(f->db, "BEGIN IMMEDIATE");
  assert_int_equal(commands_checkin_db(f->db, tenant, agent, NULL, answer, NULL), 0);
  exec_sql(f->db, "COMMIT");
  return cJSON_GetObjectItem(answer, "commands") ? answer : NULL;
}

static const char *state_of(fixture_t *f, int64_t id) {
  static char buf[16];
  cJSON *item = NULL;
  assert_int_equal(commands_get_db(f->db, 0, id, &item), 0);
  snprintf(buf, sizeof(buf), "%s", cJSON_GetObjectItem(item, "state")->valuestring);
  cJSON_Delete(item);
  return buf;
}

static void test_checkin(void **state) {
  fixture_t *f = *state;
  int64_t first = 0;
  for (int i = 0; i < COMMANDS_PER_CHECKIN + 3; i++) {
    int64_t id = create(f, f->ta, AGENT_A, "kill", "{\"pid\": 4242}", 0);
    if (i == 0)
      first = id;
  }
  int64_t other = create(f, f->tb, AGENT_B, "triage", "{}", 0);
  /* The agent gets at most COMMANDS_PER_CHECKIN, oldest first, only its own. */
  cJSON *ans = checkin(f, f->ta, AGENT_A);
  cJSON *cmds = cJSON_GetObjectItem(ans, "commands");
  assert_int_equal(cJSON_GetArraySize(cmds), COMMANDS_PER_CHECKIN);
  cJSON *c0 = cJSON_GetArrayItem(cmds, 0);
  assert_int_equal((int64_t)cJSON_GetObjectItem(c0, "id")->valuedouble, first);
  assert_string_equal(cJSON_GetObjectItem(c0, "kind")->valuestring, "kill");
  assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "args"), "pid")->valueint, 4242);
  cJSON_Delete(ans);
  assert_string_equal(state_of(f, first), "sent");
  assert_string_equal(state_of(f, other), "queued");
  /* The next check-in gets the rest, not those already sent. */
  ans = checkin(f, f->ta, AGENT_A);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(ans, "commands")), 3);
  cJSON_Delete(ans);
  ans = checkin(f, f->ta, AGENT_A);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(ans, "commands")), 0);
  cJSON_Delete(ans);
  /* A command sent long ago without a result goes again. */
  char sql[256];
  snprintf(sql, sizeof(sql), "UPDATE commands SET sent_ms = sent_ms - %lld WHERE id = %lld",
           COMMANDS_RESEND_MS + 1000, (long long)first);
  exec_sql(f->db, sql);
  ans = checkin(f, f->ta, AGENT_A);
  cmds = cJSON_GetObjectItem(ans, "commands");
  assert_int_equal(cJSON_GetArraySize(cmds), 1);
  assert_int_equal((int64_t)cJSON_GetObjectItem(cJSON_GetArrayItem(cmds, 0), "id")->valuedouble,
                   first);
  cJSON_Delete(ans);
  /* A day-old command expires instead of acting late; done ones stay. */
  assert_int_equal(commands_result_db(f->db, f->ta, AGENT_A, first, "done", NULL, NULL), 0);
  snprintf(sql, sizeof(sql), "UPDATE commands SET created_ms = created_ms - %lld",
           COMMANDS_EXPIRE_MS + 1000);
  exec_sql(f->db, sql);
  ans = checkin(f, f->ta, AGENT_A);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(ans, "commands")), 0);
  cJSON_Delete(ans);
  assert_string_equal(state_of(f, first), "done");
  assert_string_equal(state_of(f, first + 1), "expired");
  assert_string_equal(state_of(f, other), "queued"); /* B's agent has not checked in */
  /* A result that arrives for an expired command is still recorded. */
  assert_int_equal(commands_result_db(f->db, f->ta, AGENT_A, first + 1, "done", NULL, NULL), 0);
  assert_string_equal(state_of(f, first + 1), "done");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_validate),
      cmocka_unit_test_setup_teardown(test_tenant_scoping, setup, teardown),
      cmocka_unit_test_setup_teardown(test_incident, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkin, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
