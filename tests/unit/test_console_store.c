/*
 * Tests of the console store on a real SQLite file in a temporary
 * directory, with the asynchronous calls driven by a real libuv loop:
 * migrations, tenants, enrollment tokens and every refusal, re-enrollment,
 * agent authentication and its cache, idempotent batch inserts, tenant
 * isolation, check-in, the first admin account, and insert throughput.
 */
#include "incidents.h"
#include "store.h"
#include "yamori/err.h"
#include "yamori/sha256.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define THROUGHPUT_BATCHES 200
#define THROUGHPUT_EVENTS 1000

typedef struct {
  char dir[64];
  uv_loop_t loop;
  store_t *s;
} fixture_t;

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

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

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  snprintf(f->dir, sizeof(f->dir), "/tmp/ym-store-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(store_open(f->dir, &f->loop, &f->s), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  store_close(f->s);
  uv_run(&f->loop, UV_RUN_DEFAULT); /* releases the store's async handle */
  assert_int_equal(uv_loop_close(&f->loop), 0);
  remove_dir(f->dir);
  free(f);
  return 0;
}

/* Runs one query returning one integer on a separate connection. */
static int64_t query_int(const char *dir, const char *sql, const char *param) {
  char path[512];
  sqlite3 *db;
  sqlite3_stmt *st;
  snprintf(path, sizeof(path), "%s/yamori.db", dir);
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (param != NULL)
    sqlite3_bind_text(st, 1, param, -1, SQLITE_TRANSIENT);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

typedef struct {
  bool done;
  int rc;
  char reason[32];
  char agent_id[64];
  char secret[64];
  char tenant[64];
} enroll_result_t;

static void on_enroll(int rc, const char *reason, const char *agent_id, const char *secret,
                      const char *tenant, void *data) {
  enroll_result_t *r = data;
  r->done = true;
  r->rc = rc;
  snprintf(r->reason, sizeof(r->reason), "%s", reason ? reason : "");
  snprintf(r->agent_id, sizeof(r->agent_id), "%s", agent_id ? agent_id : "");
  snprintf(r->secret, sizeof(r->secret), "%s", secret ? secret : "");
  snprintf(r->tenant, sizeof(r->tenant), "%s", tenant ? tenant : "");
}

/* Enrolls with token "id.secret" parts and host_id; runs the loop until the
 * callback has run. */
static enroll_result_t enroll_as(fixture_t *f, const char *token_id, const char *token_secret,
                                 const char *agent_id, const char *agent_secret,
                                 const char *host_id) {
  enroll_result_t r;
  memset(&r, 0, sizeof(r));
  store_enroll_t req = {.token_id = token_id,
                        .token_secret = token_secret,
                        .agent_id = agent_id,
                        .agent_secret = agent_secret,
                        .host_id = host_id,
                        .host_name = "pc-01",
                        .host_json = "{\"name\":\"pc-01\"}",
                        .version = "0.1.0",
                        .peer = "192.0.2.7"};
  store_enroll(f->s, &req, on_enroll, &r);
  assert_false(r.done); /* never before the call returns */
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_true(r.done);
  return r;
}

static enroll_result_t enroll(fixture_t *f, const char *token_id, const char *token_secret,
                              const char *host_id) {
  return enroll_as(f, token_id, token_secret, NULL, NULL, host_id);
}

typedef struct {
  bool done;
  int rc;
  int64_t tenant_id;
} auth_result_t;

static void on_auth(int rc, int64_t tenant_id, void *data) {
  auth_result_t *r = data;
  r->done = true;
  r->rc = rc;
  r->tenant_id = tenant_id;
}

static auth_result_t auth(fixture_t *f, const char *agent_id, const char *secret) {
  auth_result_t r = {false, 0, 0};
  store_auth(f->s, agent_id, secret, on_auth, &r);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_true(r.done);
  return r;
}

typedef struct {
  int calls;
  int rc;
  size_t inserted;
} batch_result_t;

static void on_batch(int rc, size_t inserted, void *data) {
  batch_result_t *r = data;
  r->calls++;
  if (rc != 0)
    r->rc = rc;
  r->inserted += inserted;
}

/* Makes n events with seqs first.. (json and strings in *mem). */
static store_event_t *make_events(int64_t first, size_t n, char **mem) {
  store_event_t *ev = calloc(n, sizeof(*ev));
  size_t stride = 512;
  char *m = malloc(n * stride);
  assert_non_null(ev);
  assert_non_null(m);
  for (size_t i = 0; i < n; i++) {
    int64_t seq = first + (int64_t)i;
    char *p = m + i * stride;
    int len =
        snprintf(p, stride,
                 "{\"@timestamp\":\"2026-11-25T23:46:00.680Z\",\"event\":{\"kind\":\"event\","
                 "\"category\":[\"file\"],\"type\":[\"creation\"],\"dataset\":\"yamori.file\","
                 "\"action\":\"creation\"},\"file\":{\"path\":\"/home/user/Documents/report-"
                 "%lld.docx\",\"name\":\"report-%lld.docx\",\"extension\":\"docx\","
                 "\"size\":48213},\"process\":{\"pid\":4242,\"executable\":\"/usr/bin/"
                 "libreoffice\",\"entity_id\":\"e3b0c44298fc1c14\"},\"user\":{\"name\":"
                 "\"user\"},\"yamori\":{\"stream_seq\":%lld}}",
                 (long long)seq, (long long)seq, (long long)seq);
    assert_true(len > 0 && (size_t)len < stride);
    ev[i] = (store_event_t){.seq = seq,
                            .ts_ms = 1764114360680 + (int64_t)i,
                            .kind = "event",
                            .dataset = "yamori.file",
                            .action = "creation",
                            .json = p,
                            .json_len = (size_t)len};
  }
  *mem = m;
  return ev;
}

static batch_result_t insert(fixture_t *f, const char *agent_id, int64_t tenant_id,
                             const char *stream, int64_t first, size_t n) {
  batch_result_t r = {0, 0, 0};
  char *mem;
  store_event_t *ev = make_events(first, n, &mem);
  store_insert_batch(f->s, agent_id, tenant_id, stream, ev, n, on_batch, &r);
  /* The store copied the events: the caller's memory may go now. */
  memset(mem, 'x', n * 512);
  free(mem);
  free(ev);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  return r;
}

/* A tenant with a token; returns the tenant id. */
static int64_t tenant_with_token(fixture_t *f, const char *name, int64_t expires_at,
                                 int64_t max_uses, char token_id[17], char secret[44]) {
  int64_t id = 0;
  int rc = store_sync_tenant_add(f->s, name, name, &id);
  assert_true(rc == 0 || rc == YM_EEXIST);
  if (rc == YM_EEXIST)
    id = query_int(f->dir, "SELECT id FROM tenants WHERE name = ?1", name);
  assert_int_equal(store_sync_token_create(f->s, name, expires_at, max_uses, token_id, secret), 0);
  return id;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time (user + system) of the whole process, all threads. */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ------------------------------------------------------------------ */
/* Tests                                                                */

static void migrations_from_empty_and_reopen(void **state) {
  (void)state;
  char dir[] = "/tmp/ym-store-mig-XXXXXX";
  store_t *s;
  assert_non_null(mkdtemp(dir));
  assert_int_equal(store_open(dir, NULL, &s), 0);
  int64_t versions = query_int(dir, "SELECT COUNT(*) FROM schema_migrations", NULL);
  int64_t latest = query_int(dir, "SELECT MAX(version) FROM schema_migrations", NULL);
  assert_true(versions >= 1);
  assert_int_equal(versions, latest); /* 1..latest, each once */
  const char *tables[] = {"tenants", "tokens", "agents", "events", "users"};
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(query_int(dir,
                               "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'"
                               " AND name = ?1",
                               tables[i]),
                     1);
  assert_int_equal(query_int(dir,
                             "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index'"
                             " AND name = 'events_tenant_time'",
                             NULL),
                   1);
  int64_t id;
  assert_int_equal(store_sync_tenant_add(s, "acme", "ACME", &id), 0);
  store_close(s);

  /* Private file, WAL mode recorded in the file. */
  char path[128];
  struct stat st;
  snprintf(path, sizeof(path), "%s/yamori.db", dir);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  sqlite3 *db;
  sqlite3_stmt *q;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
  sqlite3_finalize(q);
  sqlite3_close(db);

  /* Reopening applies nothing twice and keeps the data. */
  assert_int_equal(store_open(dir, NULL, &s), 0);
  store_close(s);
  assert_int_equal(query_int(dir, "SELECT COUNT(*) FROM schema_migrations", NULL), versions);
  assert_int_equal(query_int(dir, "SELECT id FROM tenants WHERE name = ?1", "acme"), id);

  /* A file from a newer console is refused, not modified. */
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(db, "INSERT INTO schema_migrations VALUES(9999, 0)", NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(store_open(dir, NULL, &s), YM_ENOTSUP);
  remove_dir(dir);
}

typedef struct {
  int n;
  char names[4][64];
  int64_t agents[4];
} list_t;

static void on_tenant(int64_t id, const char *name, const char *display, int64_t agents, void *d) {
  list_t *l = d;
  (void)id;
  (void)display;
  assert_true(l->n < 4);
  snprintf(l->names[l->n], sizeof(l->names[0]), "%s", name);
  l->agents[l->n++] = agents;
}

static void tenants_add_and_list(void **state) {
  fixture_t *f = *state;
  int64_t a, b;
  assert_int_equal(store_sync_tenant_add(f->s, "zeta", "Zeta KK", &a), 0);
  assert_int_equal(store_sync_tenant_add(f->s, "acme", "\xe6\xa0\xaa\xe5\xbc\x8f", &b), 0);
  assert_true(a != b);
  assert_int_equal(store_sync_tenant_add(f->s, "acme", "again", NULL), YM_EEXIST);
  const char *bad[] = {"",      "Acme",
                       "-acme", "a b",
                       "a/b",   "0123456789012345678901234567890123456789012345678901234567890123"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(store_sync_tenant_add(f->s, bad[i], "", NULL), YM_EINVAL);
  assert_int_equal(store_sync_tenant_add(f->s, "bad-display", "\xff", NULL), YM_EINVAL);

  char tid[17], sec[44];
  assert_int_equal(store_sync_token_create(f->s, "acme", 0, 0, tid, sec), 0);
  assert_int_equal(enroll(f, tid, sec, "h1").rc, 0);

  list_t l;
  memset(&l, 0, sizeof(l));
  assert_int_equal(store_sync_tenant_list(f->s, on_tenant, &l), 0);
  assert_int_equal(l.n, 2);
  assert_string_equal(l.names[0], "acme"); /* by name */
  assert_int_equal(l.agents[0], 1);
  assert_string_equal(l.names[1], "zeta");
  assert_int_equal(l.agents[1], 0);
}

static void token_create_and_enroll(void **state) {
  fixture_t *f = *state;
  char tid[17], sec[44];
  int64_t tenant = tenant_with_token(f, "acme", 0, 0, tid, sec);
  assert_int_equal(strlen(tid), 16);
  assert_int_equal(strspn(tid, "0123456789abcdef"), 16);
  assert_int_equal(strlen(sec), 43);
  assert_int_equal(strspn(sec, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                   43);
  assert_int_equal(store_sync_token_create(f->s, "nobody", 0, 0, tid, sec), YM_ENOENT);
  assert_int_equal(tenant_with_token(f, "acme", 0, 0, tid, sec), tenant);

  enroll_result_t r = enroll(f, tid, sec, "3d1219c7c4c5404aaa1f6d2a48adfda4");
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.tenant, "acme");
  assert_int_equal(strlen(r.agent_id), 36);
  assert_int_equal(r.agent_id[14], '4'); /* UUID version 4 */
  assert_int_equal(strlen(r.secret), 43);
  assert_int_equal(query_int(f->dir, "SELECT uses FROM tokens WHERE id = ?1", tid), 1);
  assert_int_equal(query_int(f->dir, "SELECT tenant_id FROM agents WHERE id = ?1", r.agent_id),
                   tenant);

  /* Only the secret's hash is stored. */
  uint8_t h[YM_SHA256_LEN];
  char hex[YM_SHA256_HEX_LEN + 1];
  assert_int_equal(ym_sha256_mem(r.secret, 43, h), 0);
  ym_hex(h, sizeof(h), hex);
  assert_int_equal(
      query_int(f->dir, "SELECT COUNT(*) FROM agents WHERE lower(hex(secret_hash)) = ?1", hex), 1);
  assert_int_equal(ym_sha256_mem(sec, 43, h), 0);
  ym_hex(h, sizeof(h), hex);
  assert_int_equal(
      query_int(f->dir, "SELECT COUNT(*) FROM tokens WHERE lower(hex(secret_hash)) = ?1", hex), 1);

  auth_result_t a = auth(f, r.agent_id, r.secret);
  assert_int_equal(a.rc, 0);
  assert_int_equal(a.tenant_id, tenant);
}

static void enroll_refusals(void **state) {
  fixture_t *f = *state;
  char tid[17], sec[44];
  tenant_with_token(f, "acme", 0, 0, tid, sec);

  char wrong[44];
  memcpy(wrong, sec, sizeof(wrong));
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  enroll_result_t r = enroll(f, tid, wrong, "h");
  assert_int_equal(r.rc, YM_EPERM);
  assert_string_equal(r.reason, "token_invalid");
  assert_string_equal(r.agent_id, "");
  assert_string_equal(enroll(f, "0000000000000000", sec, "h").reason, "token_invalid");
  assert_string_equal(enroll(f, "not-a-token-id!!", sec, "h").reason, "token_invalid");
  assert_string_equal(enroll(f, "", "", "h").reason, "token_invalid");
  assert_int_equal(query_int(f->dir, "SELECT uses FROM tokens WHERE id = ?1", tid), 0);

  /* Revoked. */
  assert_int_equal(store_sync_token_revoke(f->s, tid), 0);
  r = enroll(f, tid, sec, "h");
  assert_int_equal(r.rc, YM_EPERM);
  assert_string_equal(r.reason, "token_revoked");
  /* Without the secret, a revoked token looks like any unknown one. */
  assert_string_equal(enroll(f, tid, wrong, "h").reason, "token_invalid");
  assert_int_equal(store_sync_token_revoke(f->s, "0123456789abcdef"), YM_ENOENT);
  assert_int_equal(store_sync_token_revoke(f->s, "xyz"), YM_EINVAL);

  /* Expired. */
  tenant_with_token(f, "acme", (int64_t)time(NULL) - 10, 0, tid, sec);
  r = enroll(f, tid, sec, "h");
  assert_int_equal(r.rc, YM_EPERM);
  assert_string_equal(r.reason, "token_expired");
  tenant_with_token(f, "acme", (int64_t)time(NULL) + 3600, 0, tid, sec);
  assert_int_equal(enroll(f, tid, sec, "h").rc, 0);

  /* Used up: max_uses 1, used twice. */
  tenant_with_token(f, "acme", 0, 1, tid, sec);
  assert_int_equal(enroll(f, tid, sec, "h2").rc, 0);
  r = enroll(f, tid, sec, "h3");
  assert_int_equal(r.rc, YM_EPERM);
  assert_string_equal(r.reason, "token_exhausted");
  assert_int_equal(query_int(f->dir, "SELECT uses FROM tokens WHERE id = ?1", tid), 1);

  /* Arguments out of bounds. */
  char big[300];
  memset(big, 'h', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  r = enroll(f, tid, sec, big);
  assert_int_equal(r.rc, YM_ETOOBIG);
  assert_string_equal(r.reason, "");
}

/* The takeover of issue 12: a second token of the same tenant and the
 * host id of an enrolled PC. The answer is a new record; the PC keeps its
 * id and secret. */
static void token_enrollment_never_takes_over(void **state) {
  fixture_t *f = *state;
  char tid[17], sec[44], tid2[17], sec2[44];
  int64_t tenant = tenant_with_token(f, "acme", 0, 0, tid, sec);
  tenant_with_token(f, "acme", 0, 0, tid2, sec2);
  enroll_result_t first = enroll(f, tid, sec, "machine-1");
  assert_int_equal(first.rc, 0);
  /* Authenticated once: now in the cache. */
  assert_int_equal(auth(f, first.agent_id, first.secret).rc, 0);
  auth_result_t cached = {false, -1, 0};
  store_auth(f->s, first.agent_id, first.secret, on_auth, &cached);
  assert_true(cached.done); /* answered from the cache, at once */
  assert_int_equal(cached.rc, 0);
  assert_int_equal(cached.tenant_id, tenant);

  enroll_result_t other = enroll(f, tid2, sec2, "machine-1");
  assert_int_equal(other.rc, 0);
  assert_string_not_equal(other.agent_id, first.agent_id);
  assert_int_equal(auth(f, first.agent_id, first.secret).rc, 0);
  assert_int_equal(auth(f, other.agent_id, other.secret).rc, 0);
  /* The same token again: still a new record. */
  enroll_result_t third = enroll(f, tid, sec, "machine-1");
  assert_string_not_equal(third.agent_id, first.agent_id);
  assert_string_not_equal(third.agent_id, other.agent_id);
  assert_int_equal(auth(f, first.agent_id, first.secret).rc, 0);
  assert_int_equal(query_int(f->dir,
                             "SELECT COUNT(*) FROM agents WHERE host_id = ?1 AND revoked = 0",
                             "machine-1"),
                   3);

  /* A machine without an id, the same id in another tenant: new agents. */
  enroll_result_t anon1 = enroll(f, tid, sec, ""), anon2 = enroll(f, tid, sec, "");
  assert_string_not_equal(anon1.agent_id, anon2.agent_id);
  char tid3[17], sec3[44];
  tenant_with_token(f, "beta", 0, 0, tid3, sec3);
  enroll_result_t beta = enroll(f, tid3, sec3, "machine-1");
  assert_int_equal(beta.rc, 0);
  assert_string_not_equal(beta.agent_id, first.agent_id);
  assert_string_equal(beta.tenant, "beta");

  /* Malformed or unknown ids and secrets are refused. */
  assert_int_equal(auth(f, "nope", first.secret).rc, YM_EPERM);
  assert_int_equal(auth(f, first.agent_id, "short").rc, YM_EPERM);
  assert_int_equal(auth(f, "00000000-0000-4000-8000-000000000000", first.secret).rc, YM_EPERM);
  assert_int_equal(auth(f, beta.agent_id, first.secret).rc, YM_EPERM);
}

/* An agent that proves it holds its secret keeps its id, gets a new
 * secret and uses up no token; a failed proof is a new record with a
 * token, and refused without one. */
static void reenrollment_needs_the_secret(void **state) {
  fixture_t *f = *state;
  char tid[17], sec[44];
  tenant_with_token(f, "acme", 0, 2, tid, sec);
  enroll_result_t first = enroll(f, tid, sec, "machine-1");
  assert_int_equal(first.rc, 0);
  assert_int_equal(auth(f, first.agent_id, first.secret).rc, 0); /* cached */

  enroll_result_t again = enroll_as(f, NULL, NULL, first.agent_id, first.secret, "machine-1");
  assert_int_equal(again.rc, 0);
  assert_string_equal(again.agent_id, first.agent_id);
  assert_string_equal(again.tenant, "acme");
  assert_string_not_equal(again.secret, first.secret);
  assert_int_equal(auth(f, first.agent_id, first.secret).rc, YM_EPERM);
  assert_int_equal(auth(f, again.agent_id, again.secret).rc, 0);
  assert_int_equal(query_int(f->dir, "SELECT uses FROM tokens WHERE id = ?1", tid), 1);
  /* With a token too: the proof wins, the token is not used. */
  enroll_result_t both = enroll_as(f, tid, sec, again.agent_id, again.secret, "machine-1");
  assert_string_equal(both.agent_id, first.agent_id);
  assert_int_equal(query_int(f->dir, "SELECT uses FROM tokens WHERE id = ?1", tid), 1);

  /* The old (replaced) secret proves nothing: refused without a token... */
  enroll_result_t stale = enroll_as(f, NULL, NULL, first.agent_id, first.secret, "machine-1");
  assert_int_equal(stale.rc, YM_EPERM);
  assert_string_equal(stale.reason, "agent_unknown");
  enroll_result_t unknown =
      enroll_as(f, "", "", "00000000-0000-4000-8000-000000000000", both.secret, "machine-1");
  assert_string_equal(unknown.reason, "agent_unknown");
  /* ...and a new record with one; the real agent keeps working. */
  enroll_result_t fresh = enroll_as(f, tid, sec, first.agent_id, first.secret, "machine-1");
  assert_int_equal(fresh.rc, 0);
  assert_string_not_equal(fresh.agent_id, first.agent_id);
  assert_int_equal(auth(f, both.agent_id, both.secret).rc, 0);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM agents", NULL), 2);

  /* A revoked agent is not brought back by its secret. */
  sqlite3 *db;
  char path[512];
  snprintf(path, sizeof(path), "%s/yamori.db", f->dir);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt *st;
  assert_int_equal(
      sqlite3_prepare_v2(db, "UPDATE agents SET revoked = 1 WHERE id = ?1", -1, &st, NULL),
      SQLITE_OK);
  sqlite3_bind_text(st, 1, fresh.agent_id, -1, SQLITE_TRANSIENT);
  assert_int_equal(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);
  enroll_result_t revoked = enroll_as(f, NULL, NULL, fresh.agent_id, fresh.secret, "machine-1");
  assert_int_equal(revoked.rc, YM_EPERM);
  assert_string_equal(revoked.reason, "agent_unknown");
}

typedef struct {
  int n;
  char line[16][256];
} hook_log_t;

static int record_enroll(sqlite3 *db, const store_enroll_info_t *e, void *data) {
  hook_log_t *l = data;
  (void)db;
  assert_true(l->n < 16);
  snprintf(l->line[l->n++], sizeof(l->line[0]), "%s|%s|%lld|%s|%s|%s|%s|%s", e->outcome, e->reason,
           (long long)e->tenant_id, e->agent_id, e->claimed, e->token_id, e->host_id, e->peer);
  return 0;
}

/* Every attempt that reaches the database is seen by the hooks, with the
 * token id and the address, never a secret. */
static void enroll_hooks_see_every_attempt(void **state) {
  fixture_t *f = *state;
  hook_log_t log;
  memset(&log, 0, sizeof(log));
  store_on_enroll(f->s, record_enroll, &log);
  char tid[17], sec[44], line[256];
  int64_t tenant = tenant_with_token(f, "acme", 0, 0, tid, sec);
  enroll_result_t a = enroll(f, tid, sec, "m1");
  enroll_result_t b = enroll_as(f, NULL, NULL, a.agent_id, a.secret, "m1");
  char wrong[44];
  memcpy(wrong, sec, sizeof(wrong));
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  enroll(f, tid, wrong, "m1");
  enroll_as(f, tid, sec, a.agent_id, a.secret, "m1"); /* a's secret was replaced */
  assert_int_equal(log.n, 4);
  snprintf(line, sizeof(line), "enroll||%lld|%s||%s|m1|192.0.2.7", (long long)tenant, a.agent_id,
           tid);
  assert_string_equal(log.line[0], line);
  snprintf(line, sizeof(line), "reenroll||%lld|%s|%s||m1|192.0.2.7", (long long)tenant, a.agent_id,
           a.agent_id);
  assert_string_equal(log.line[1], line);
  snprintf(line, sizeof(line), "refused|token_invalid|0|||%s|m1|192.0.2.7", tid);
  assert_string_equal(log.line[2], line);
  assert_true(strncmp(log.line[3], "enroll|proof_failed|", 20) == 0);
  for (int i = 0; i < log.n; i++) {
    assert_null(strstr(log.line[i], sec));
    assert_null(strstr(log.line[i], a.secret));
    assert_null(strstr(log.line[i], b.secret));
  }
}

/* Two records with one host id: each gets an open "duplicate" incident
 * (so the PC shows "check"); nothing is merged. */
static void duplicate_host_opens_incidents(void **state) {
  fixture_t *f = *state;
  assert_int_equal(incidents_schema(f->s), 0);
  incidents_t *m = NULL;
  incidents_opts_t io = {3600, NULL};
  assert_int_equal(incidents_new(&f->loop, f->s, &io, &m), 0);
  char tid[17], sec[44];
  tenant_with_token(f, "acme", 0, 0, tid, sec);
  enroll_result_t a = enroll(f, tid, sec, "m1");
  enroll(f, tid, sec, "m2");
  const char *dup = "SELECT COUNT(*) FROM incidents WHERE kind = 'duplicate' AND state = 'new'";
  assert_int_equal(query_int(f->dir, dup, NULL), 0);
  enroll_result_t b = enroll(f, tid, sec, "m1");
  assert_int_equal(query_int(f->dir, dup, NULL), 2);
  assert_int_equal(query_int(f->dir,
                             "SELECT COUNT(*) FROM incidents WHERE kind = 'duplicate'"
                             " AND agent_id = ?1 AND alert_json LIKE '%m1%'",
                             a.agent_id),
                   1);
  assert_int_equal(
      query_int(f->dir, "SELECT COUNT(*) FROM incidents WHERE agent_id = ?1", b.agent_id), 1);
  /* Re-enrollment with the secret does not add records or incidents. */
  enroll_as(f, NULL, NULL, a.agent_id, a.secret, "m1");
  assert_int_equal(query_int(f->dir, dup, NULL), 2);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM agents", NULL), 3);
  incidents_free(m);
}

/* Inserts one alert (json) of stream alerts with number seq. */
static void insert_alert(fixture_t *f, const char *agent_id, int64_t tenant, int64_t seq,
                         const char *json) {
  store_event_t ev = {seq,  1764124646000 + seq, "alert", "yamori.behaviour", "behaviour-detected",
                      json, strlen(json)};
  batch_result_t r = {0, 0, 0};
  store_insert_batch(f->s, agent_id, tenant, "alerts", &ev, 1, on_batch, &r);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.inserted, 1);
}

#define SIGMA_ALERT(id, name, tech)                                                                \
  "{\"event\":{\"kind\":\"alert\",\"action\":\"behaviour-detected\",\"severity\":47},"             \
  "\"rule\":{\"ruleset\":\"sigma\",\"id\":\"" id "\",\"name\":\"" name "\","                       \
  "\"description\":\"A long explanation of the rule.\"},"                                          \
  "\"threat\":{\"technique\":{\"id\":" tech "}},\"file\":{\"path\":\"/etc/cron.d/x\"}}"

static int notified;
static int count_notify(sqlite3 *db, int64_t incident_id, const char *change) {
  (void)db;
  (void)incident_id;
  (void)change;
  notified++;
  return 0;
}

#define SIGMA_ALERT_SEV(id, sev)                                                                   \
  "{\"event\":{\"kind\":\"alert\",\"action\":\"behaviour-detected\",\"severity\":" sev "},"        \
  "\"rule\":{\"ruleset\":\"sigma\",\"id\":\"" id "\",\"name\":\"A rule\"}}"

/* A behaviour incident of a low-level rule is shown, not sent: the
 * company is told of medium and higher ones only (YARA alerts of any
 * severity are told, as before). */
static void sigma_low_is_not_notified(void **state) {
  fixture_t *f = *state;
  assert_int_equal(incidents_schema(f->s), 0);
  incidents_t *m = NULL;
  incidents_opts_t io = {3600, count_notify};
  assert_int_equal(incidents_new(&f->loop, f->s, &io, &m), 0);
  char tid[17], sec[44];
  int64_t tenant = tenant_with_token(f, "acme", 0, 0, tid, sec);
  enroll_result_t a = enroll(f, tid, sec, "pc-a");
  notified = 0;
  insert_alert(f, a.agent_id, tenant, 1,
               SIGMA_ALERT_SEV("33333333-3333-4333-8333-333333333333", "21"));
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM incidents WHERE severity = 'low'", NULL),
                   1);
  assert_int_equal(notified, 0);
  insert_alert(f, a.agent_id, tenant, 2,
               SIGMA_ALERT_SEV("44444444-4444-4444-8444-444444444444", "47"));
  assert_int_equal(notified, 1);
  const char *yara_low = "{\"event\":{\"kind\":\"alert\",\"severity\":21},\"rule\":{\"name\":"
                         "\"Yamori_Low\"},\"file\":{\"path\":\"/tmp/x\"}}";
  insert_alert(f, a.agent_id, tenant, 3, yara_low);
  assert_int_equal(notified, 2);
  incidents_free(m);
}

/* Behaviour alerts group per PC and Sigma rule id (not title): two rules
 * with one title are two incidents, the same rule on another PC another
 * one; the incident keeps the rule's title, the ruleset and the ATT&CK
 * techniques (well-formed ids only). A YARA rule named like the Sigma id
 * stays apart. */
static void sigma_alerts_group_per_pc_and_rule(void **state) {
  fixture_t *f = *state;
  assert_int_equal(incidents_schema(f->s), 0);
  incidents_t *m = NULL;
  incidents_opts_t io = {3600, NULL};
  assert_int_equal(incidents_new(&f->loop, f->s, &io, &m), 0);
  char tid[17], sec[44];
  int64_t tenant = tenant_with_token(f, "acme", 0, 0, tid, sec);
  enroll_result_t a = enroll(f, tid, sec, "pc-a");
  enroll_result_t b = enroll(f, tid, sec, "pc-b");
  const char *r1 = "11111111-1111-4111-8111-111111111111";
  insert_alert(f, a.agent_id, tenant, 1,
               SIGMA_ALERT("11111111-1111-4111-8111-111111111111", "Cron job written",
                           "[\"T1053.003\",\"bad id\",\"T1059.004\"]"));
  insert_alert(
      f, a.agent_id, tenant, 2,
      SIGMA_ALERT("11111111-1111-4111-8111-111111111111", "Cron job written", "[\"T1053.003\"]"));
  insert_alert(
      f, a.agent_id, tenant, 3,
      SIGMA_ALERT("22222222-2222-4222-8222-222222222222", "Cron job written", "\"T1053.003\""));
  insert_alert(
      f, b.agent_id, tenant, 1,
      SIGMA_ALERT("11111111-1111-4111-8111-111111111111", "Cron job written", "[\"T1053.003\"]"));
  const char *yara = "{\"event\":{\"kind\":\"alert\",\"severity\":73},\"rule\":{\"name\":"
                     "\"11111111-1111-4111-8111-111111111111\"},\"file\":{\"path\":\"/tmp/x\"}}";
  insert_alert(f, a.agent_id, tenant, 4, yara);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM incidents", NULL), 4);
  assert_int_equal(query_int(f->dir,
                             "SELECT count FROM incidents WHERE agent_id = ?1 AND ruleset = 'sigma'"
                             " AND rule = '11111111-1111-4111-8111-111111111111'"
                             " AND title = 'Cron job written' AND severity = 'medium'"
                             " AND technique = 'T1053.003,T1059.004' AND kind = 'malware'",
                             a.agent_id),
                   2);
  assert_int_equal(
      query_int(f->dir, "SELECT COUNT(*) FROM incidents WHERE rule = ?1 AND ruleset = 'sigma'", r1),
      2);
  assert_int_equal(query_int(f->dir,
                             "SELECT COUNT(*) FROM incidents WHERE ruleset = 'sigma'"
                             " AND rule = '22222222-2222-4222-8222-222222222222'"
                             " AND technique = 'T1053.003'",
                             NULL),
                   1);
  assert_int_equal(query_int(f->dir,
                             "SELECT COUNT(*) FROM incidents WHERE ruleset = '' AND rule = ?1"
                             " AND technique = ''",
                             r1),
                   1);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM incident_alerts", NULL), 5);
  incidents_free(m);
}

static void batch_insert_is_idempotent(void **state) {
  fixture_t *f = *state;
  char tid[17], sec[44];
  int64_t tenant = tenant_with_token(f, "acme", 0, 0, tid, sec);
  enroll_result_t a = enroll(f, tid, sec, "h");
  batch_result_t r = insert(f, a.agent_id, tenant, "bulk", 1, 10);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.inserted, 10);
  r = insert(f, a.agent_id, tenant, "bulk", 1, 10); /* a replay */
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.inserted, 0);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM events", NULL), 10);
  r = insert(f, a.agent_id, tenant, "bulk", 6, 10); /* half new */
  assert_int_equal(r.inserted, 5);
  r = insert(f, a.agent_id, tenant, "alerts", 1, 3); /* another stream */
  assert_int_equal(r.inserted, 3);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM events", NULL), 18);
  assert_int_equal(query_int(f->dir,
                             "SELECT COUNT(*) FROM events WHERE kind = 'event' AND"
                             " dataset = 'yamori.file' AND action = 'creation' AND"
                             " json LIKE '{\"@timestamp\":%'",
                             NULL),
                   18);
  /* An empty batch commits nothing and succeeds. */
  r = insert(f, a.agent_id, tenant, "bulk", 100, 0);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.inserted, 0);
  /* Bad arguments. */
  r = insert(f, a.agent_id, tenant, "other", 1, 1);
  assert_int_equal(r.rc, YM_EINVAL);
  r = insert(f, "not-an-agent", tenant, "bulk", 1, 1);
  assert_int_equal(r.rc, YM_EINVAL);

  store_stats_t st;
  store_stats(f->s, &st);
  assert_int_equal(st.events_inserted, 18);
  assert_int_equal(st.events_duplicate, 15);
  assert_int_equal(st.jobs_queued, 0);
}

typedef struct {
  store_t *s;
  const char *agent_id;
  int64_t scope, tenant;
} revoke_arg_t;

static int revoke_fn(sqlite3 *db, void *arg) {
  revoke_arg_t *a = arg;
  return store_agent_revoke_db(a->s, db, a->scope, a->agent_id, &a->tenant);
}

static void on_revoked(int rc, void *data) {
  *(int *)data = rc;
}

/* A revoked agent's secret stops working at once, although the cache
 * knew it; only its tenant (or the provider, scope 0) can revoke it. */
static void revoke_empties_the_cache(void **state) {
  fixture_t *f = *state;
  char tid[17], sec[44], tid2[17], sec2[44];
  int64_t tenant = tenant_with_token(f, "acme", 0, 0, tid, sec);
  int64_t other = tenant_with_token(f, "beta", 0, 0, tid2, sec2);
  enroll_result_t a = enroll(f, tid, sec, "h1"), b = enroll(f, tid, sec, "h2");
  assert_int_equal(auth(f, a.agent_id, a.secret).rc, 0);
  assert_int_equal(auth(f, b.agent_id, b.secret).rc, 0);
  revoke_arg_t arg = {f->s, a.agent_id, other, 0};
  int rc = -1;
  store_call(f->s, revoke_fn, &arg, on_revoked, &rc);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(rc, YM_ENOENT); /* another tenant's scope */
  assert_int_equal(auth(f, a.agent_id, a.secret).rc, 0);
  arg.scope = tenant;
  store_call(f->s, revoke_fn, &arg, on_revoked, &rc);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(rc, 0);
  assert_int_equal(arg.tenant, tenant);
  assert_int_equal(auth(f, a.agent_id, a.secret).rc, YM_EPERM);
  assert_int_equal(auth(f, b.agent_id, b.secret).rc, 0);
  /* Its secret does not bring it back either. */
  assert_int_equal(enroll_as(f, NULL, NULL, a.agent_id, a.secret, "h1").rc, YM_EPERM);
}

/* Dedupe is per identity, and a batch far ahead of what its agent has
 * stored is refused; an agent's first batch sets the mark. */
static void seq_far_ahead_refused(void **state) {
  fixture_t *f = *state;
  char tid[17], sec[44];
  int64_t tenant = tenant_with_token(f, "acme", 0, 0, tid, sec);
  enroll_result_t a = enroll(f, tid, sec, "h1"), b = enroll(f, tid, sec, "h1");
  assert_int_equal(insert(f, a.agent_id, tenant, "bulk", 1, 10).inserted, 10);
  /* Another identity's numbers never hide a's, nor a's its own. */
  assert_int_equal(insert(f, b.agent_id, tenant, "bulk", 3000000, 5).inserted, 5);
  assert_int_equal(insert(f, b.agent_id, tenant, "bulk", 1, 10).inserted, 10);
  assert_int_equal(insert(f, a.agent_id, tenant, "bulk", 11, 5).inserted, 5);
  /* a's highest is 15: 15 + 1,000,000 + a few seconds' allowance. */
  batch_result_t r = insert(f, a.agent_id, tenant, "bulk", 1500000, 3);
  assert_int_equal(r.rc, YM_ERANGE);
  assert_int_equal(r.inserted, 0);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM events WHERE agent_id = ?1", a.agent_id),
                   15);
  assert_int_equal(insert(f, a.agent_id, tenant, "bulk", 500000, 3).inserted, 3);
  /* The mark moved: now 1,400,000 is within reach; other streams have
   * their own. */
  assert_int_equal(insert(f, a.agent_id, tenant, "bulk", 1400000, 1).rc, 0);
  assert_int_equal(insert(f, a.agent_id, tenant, "alerts", 7000000, 1).rc, 0);
  assert_int_equal(insert(f, a.agent_id, tenant, "alerts", 9000000, 1).rc, YM_ERANGE);
  /* The mark outlives the events (retention). */
  sqlite3 *db;
  char path[512];
  snprintf(path, sizeof(path), "%s/yamori.db", f->dir);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  assert_int_equal(sqlite3_exec(db, "DELETE FROM events", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(insert(f, a.agent_id, tenant, "bulk", 9000000, 1).rc, YM_ERANGE);
}

static void tenant_isolation(void **state) {
  fixture_t *f = *state;
  char tid_a[17], sec_a[44], tid_b[17], sec_b[44];
  int64_t ta = tenant_with_token(f, "tenant-a", 0, 0, tid_a, sec_a);
  int64_t tb = tenant_with_token(f, "tenant-b", 0, 0, tid_b, sec_b);
  enroll_result_t a = enroll(f, tid_a, sec_a, "same-host");
  enroll_result_t b = enroll(f, tid_b, sec_b, "same-host");
  auth_result_t aa = auth(f, a.agent_id, a.secret), ab = auth(f, b.agent_id, b.secret);
  assert_int_equal(aa.tenant_id, ta);
  assert_int_equal(ab.tenant_id, tb);
  assert_int_equal(insert(f, a.agent_id, aa.tenant_id, "bulk", 1, 20).inserted, 20);
  assert_int_equal(insert(f, b.agent_id, ab.tenant_id, "bulk", 1, 7).inserted, 7);
  /* Events filed under another tenant than the agent's are refused. */
  batch_result_t r = insert(f, a.agent_id, tb, "bulk", 100, 5);
  assert_int_equal(r.rc, YM_EPERM);
  assert_int_equal(r.inserted, 0);

  char ta_s[32];
  snprintf(ta_s, sizeof(ta_s), "%lld", (long long)ta);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM events WHERE tenant_id = ?1", ta_s), 20);
  assert_int_equal(query_int(f->dir,
                             "SELECT COUNT(*) FROM events WHERE tenant_id = ?1 AND agent_id != "
                             "(SELECT id FROM agents WHERE tenant_id = ?1)",
                             ta_s),
                   0);
  assert_int_equal(query_int(f->dir,
                             "SELECT COUNT(DISTINCT tenant_id) FROM events WHERE agent_id = ?1",
                             a.agent_id),
                   1);
  assert_int_equal(
      query_int(f->dir, "SELECT MIN(tenant_id) FROM events WHERE agent_id = ?1", a.agent_id), ta);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM events", NULL), 27);
}

typedef struct {
  bool done;
  int rc;
} done_result_t;

static void on_done(int rc, void *data) {
  done_result_t *r = data;
  r->done = true;
  r->rc = rc;
}

static void checkin_records_status(void **state) {
  fixture_t *f = *state;
  char tid[17], sec[44];
  tenant_with_token(f, "acme", 0, 0, tid, sec);
  enroll_result_t a = enroll(f, tid, sec, "h");
  done_result_t r = {false, -1};
  int64_t before = (int64_t)time(NULL) * 1000 - 1000;
  store_checkin(f->s, a.agent_id, "0.2.0", "02615eba569f6fdb", "{\"sensors\":{\"file\":true}}",
                on_done, &r);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_true(r.done);
  assert_int_equal(r.rc, 0);
  assert_true(query_int(f->dir, "SELECT last_seen FROM agents WHERE id = ?1", a.agent_id) >=
              before);
  assert_int_equal(query_int(f->dir,
                             "SELECT version = '0.2.0' AND rules_version = '02615eba569f6fdb' AND"
                             " json_extract(status_json, '$.sensors.file') = 1 FROM agents"
                             " WHERE id = ?1",
                             a.agent_id),
                   1);
  r.done = false;
  store_checkin(f->s, "00000000-0000-4000-8000-000000000000", "0.2.0", "", "{}", on_done, &r);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.rc, YM_ENOENT);
}

static void ensure_admin_once(void **state) {
  fixture_t *f = *state;
  char pw[33];
  assert_int_equal(store_sync_ensure_admin(f->s, pw), 1);
  assert_int_equal(strlen(pw), 32);
  char path[128], hash[256];
  snprintf(path, sizeof(path), "%s/yamori.db", f->dir);
  sqlite3 *db;
  sqlite3_stmt *q;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT password_hash, role, tenant_id IS NULL FROM users"
                                      " WHERE name = 'admin'",
                                      -1, &q, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  snprintf(hash, sizeof(hash), "%s", (const char *)sqlite3_column_text(q, 0));
  assert_string_equal((const char *)sqlite3_column_text(q, 1), "admin");
  assert_int_equal(sqlite3_column_int(q, 2), 1); /* provider staff */
  sqlite3_finalize(q);
  sqlite3_close(db);
  assert_int_equal(strncmp(hash, "scrypt$32768$8$1$", 17), 0);
  assert_null(strstr(hash, pw));
  assert_int_equal(store_password_verify(hash, pw), 1);
  pw[0] = pw[0] == 'a' ? 'b' : 'a';
  assert_int_equal(store_password_verify(hash, pw), 0);
  assert_int_equal(store_password_verify(hash, ""), 0);

  char again[33] = "unchanged";
  assert_int_equal(store_sync_ensure_admin(f->s, again), 0);
  assert_string_equal(again, "");
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM users", NULL), 1);

  /* Malformed hashes, and costs over the cap, are refused. */
  const char *bad[] = {"",
                       "bcrypt$x",
                       "scrypt$32768$8$1$",
                       "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAA",
                       "scrypt$1048576$64$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
                       "scrypt$32768$8$1$!!!!$AAAAAAAAAAAAAAAAAAAAAA"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(store_password_verify(bad[i], "x"), YM_EINVAL);
}

static void async_calls_need_a_loop(void **state) {
  (void)state;
  char dir[] = "/tmp/ym-store-sync-XXXXXX";
  store_t *s;
  assert_non_null(mkdtemp(dir));
  assert_int_equal(store_open(dir, NULL, &s), 0);
  enroll_result_t r;
  memset(&r, 0, sizeof(r));
  store_enroll_t req = {.token_id = "0123456789abcdef", .token_secret = "x"};
  store_enroll(s, &req, on_enroll, &r);
  assert_true(r.done);
  assert_int_equal(r.rc, YM_EINVAL);
  batch_result_t b = {0, 0, 0};
  store_insert_batch(s, "00000000-0000-4000-8000-000000000000", 1, "bulk", NULL, 0, on_batch, &b);
  assert_int_equal(b.calls, 1);
  assert_int_equal(b.rc, YM_EINVAL);
  store_close(s);
  remove_dir(dir);
}

static void close_delivers_pending_callbacks(void **state) {
  fixture_t *f = *state;
  char tid[17], sec[44];
  int64_t tenant = tenant_with_token(f, "acme", 0, 0, tid, sec);
  enroll_result_t a = enroll(f, tid, sec, "h");
  batch_result_t r = {0, 0, 0};
  char *mem;
  store_event_t *ev = make_events(1, 100, &mem);
  for (int i = 0; i < 10; i++)
    store_insert_batch(f->s, a.agent_id, tenant, "bulk", ev + i * 10, 10, on_batch, &r);
  free(mem);
  free(ev);
  store_close(f->s); /* without running the loop */
  f->s = NULL;
  assert_int_equal(r.calls, 10);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.inserted, 100);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM events", NULL), 100);
}

static void insert_throughput(void **state) {
  fixture_t *f = *state;
  char tid[17], sec[44];
  int64_t tenant = tenant_with_token(f, "acme", 0, 0, tid, sec);
  enroll_result_t a = enroll(f, tid, sec, "h-seq"), b = enroll(f, tid, sec, "h-pipe");
  char *mem;
  size_t total = (size_t)THROUGHPUT_BATCHES * THROUGHPUT_EVENTS;
  store_event_t *ev = make_events(1, total, &mem);

  /* One batch at a time: a transaction (and an fsync) per batch. Wall
   * time depends on the disk and on what else runs; CPU time (of the
   * database thread, mostly) says what one core can do. */
  batch_result_t r = {0, 0, 0};
  double t0 = now_s(), c0 = cpu_s();
  for (size_t i = 0; i < THROUGHPUT_BATCHES; i++) {
    store_insert_batch(f->s, a.agent_id, tenant, "bulk", ev + i * THROUGHPUT_EVENTS,
                       THROUGHPUT_EVENTS, on_batch, &r);
    uv_run(&f->loop, UV_RUN_DEFAULT);
  }
  double dt = now_s() - t0, dc = cpu_s() - c0;
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.inserted, total);
  store_stats_t st0, st1;
  store_stats(f->s, &st0);
  print_message("store: %d batches of %d events one at a time: %.0f events/s (%.2f s), "
                "%.0f events per CPU second\n",
                THROUGHPUT_BATCHES, THROUGHPUT_EVENTS, (double)total / dt, dt, (double)total / dc);

  /* All queued at once, as when many agents send together: batches share
   * transactions. */
  memset(&r, 0, sizeof(r));
  t0 = now_s();
  c0 = cpu_s();
  for (size_t i = 0; i < THROUGHPUT_BATCHES; i++)
    store_insert_batch(f->s, b.agent_id, tenant, "bulk", ev + i * THROUGHPUT_EVENTS,
                       THROUGHPUT_EVENTS, on_batch, &r);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  dt = now_s() - t0;
  dc = cpu_s() - c0;
  store_stats(f->s, &st1);
  assert_int_equal(r.calls, THROUGHPUT_BATCHES);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.inserted, total);
  print_message("store: %d batches of %d events queued together: %.0f events/s (%.2f s, "
                "%llu commits), %.0f events per CPU second\n",
                THROUGHPUT_BATCHES, THROUGHPUT_EVENTS, (double)total / dt, dt,
                (unsigned long long)(st1.commits - st0.commits), (double)total / dc);
  assert_int_equal(query_int(f->dir, "SELECT COUNT(*) FROM events", NULL), (int64_t)total * 2);
  free(mem);
  free(ev);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(migrations_from_empty_and_reopen),
      cmocka_unit_test_setup_teardown(tenants_add_and_list, setup, teardown),
      cmocka_unit_test_setup_teardown(token_create_and_enroll, setup, teardown),
      cmocka_unit_test_setup_teardown(enroll_refusals, setup, teardown),
      cmocka_unit_test_setup_teardown(token_enrollment_never_takes_over, setup, teardown),
      cmocka_unit_test_setup_teardown(reenrollment_needs_the_secret, setup, teardown),
      cmocka_unit_test_setup_teardown(enroll_hooks_see_every_attempt, setup, teardown),
      cmocka_unit_test_setup_teardown(duplicate_host_opens_incidents, setup, teardown),
      cmocka_unit_test_setup_teardown(sigma_alerts_group_per_pc_and_rule, setup, teardown),
      cmocka_unit_test_setup_teardown(sigma_low_is_not_notified, setup, teardown),
      cmocka_unit_test_setup_teardown(seq_far_ahead_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(revoke_empties_the_cache, setup, teardown),
      cmocka_unit_test_setup_teardown(batch_insert_is_idempotent, setup, teardown),
      cmocka_unit_test_setup_teardown(tenant_isolation, setup, teardown),
      cmocka_unit_test_setup_teardown(checkin_records_status, setup, teardown),
      cmocka_unit_test_setup_teardown(ensure_admin_once, setup, teardown),
      cmocka_unit_test(async_calls_need_a_loop),
      cmocka_unit_test_setup_teardown(close_delivers_pending_callbacks, setup, teardown),
      cmocka_unit_test_setup_teardown(insert_throughput, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
