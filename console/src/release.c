/*
 * Releases, rules bundles and rollouts on the console (release.h).
 */
#include "release.h"

#include "sigma_compile.h"
#include "sql.h"

#include "yamori/buf.h"
#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/log.h"
#include "yamori/manifest.h"
#include "yamori/sha256.h"
#include "yamori/sign.h"
#include "yamori/unpack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define PACKAGE_MAX (256ull * 1024 * 1024)
#define RULES_BUNDLE_MAX (32ull * 1024 * 1024)
#define EXIT_USAGE 64

struct release {
  store_t *store;
  api_t *api;
};

/* ---------------------------------------------------------------- */
/* Schema                                                             */

static const char *const schema[] = {
    /* 1: releases, rules bundles, rollouts, what each agent reports. */
    "CREATE TABLE releases("
    " serial INTEGER PRIMARY KEY CHECK(serial > 0),"
    " version TEXT NOT NULL,"
    " product TEXT NOT NULL,"
    " channel TEXT NOT NULL,"
    " platform TEXT NOT NULL,"
    " architecture TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " expires INTEGER NOT NULL,"
    " envelope TEXT NOT NULL,"
    " package BLOB NOT NULL,"
    " imported_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX releases_channel ON releases(channel, platform, architecture, serial);"
    "CREATE INDEX releases_version ON releases(version, serial);"
    "CREATE TABLE rule_bundles("
    " serial INTEGER PRIMARY KEY CHECK(serial > 0),"
    " tenant_id INTEGER NOT NULL," /* 0: the default set for every tenant */
    " version TEXT NOT NULL UNIQUE,"
    " size INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " envelope TEXT NOT NULL,"
    " bundle BLOB NOT NULL,"
    " published_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX rule_bundles_tenant ON rule_bundles(tenant_id, serial);"
    "CREATE TABLE rollouts("
    " tenant_id INTEGER PRIMARY KEY," /* 0: every tenant without a row of its own */
    " channel TEXT NOT NULL DEFAULT 'stable',"
    " percent INTEGER NOT NULL DEFAULT 100 CHECK(percent BETWEEN 0 AND 100),"
    " pinned TEXT NOT NULL DEFAULT '',"
    " paused INTEGER NOT NULL DEFAULT 0,"
    " updated_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE agent_update_state("
    " agent_id TEXT PRIMARY KEY,"
    " tenant_id INTEGER NOT NULL,"
    " running TEXT NOT NULL DEFAULT '',"
    " pending TEXT NOT NULL DEFAULT '',"
    " failed TEXT NOT NULL DEFAULT '',"
    " reason TEXT NOT NULL DEFAULT '',"
    " serial INTEGER NOT NULL DEFAULT 0,"
    " rules_json TEXT NOT NULL DEFAULT '{}',"
    " updated_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX agent_update_tenant ON agent_update_state(tenant_id);",
};

int release_ensure_schema(store_t *s) {
  return store_ensure_schema(s, "release", schema, sizeof(schema) / sizeof(schema[0]));
}

unsigned release_bucket(const char *agent_id) {
  uint8_t d[YM_SHA256_LEN];
  if (ym_sha256_mem(agent_id, strlen(agent_id), d) != 0)
    return 0;
  uint32_t v = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
  return v % 100;
}

/* ---------------------------------------------------------------- */
/* Check-in                                                           */

static void bounded(const cJSON *o, const char *key, char *out, size_t cap) {
  const char *s = ym_json_get_str(o, key);
  snprintf(out, cap, "%s", s && strlen(s) < cap ? s : "");
}

/* Stores the agent's "update" report. */
static int store_report(sqlite3 *db, int64_t tenant_id, const char *agent_id, const cJSON *up) {
  static const char sql[] =
      "INSERT INTO agent_update_state(agent_id, tenant_id, running, pending, failed, reason, "
      "serial, rules_json, updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
      "ON CONFLICT(agent_id) DO UPDATE SET tenant_id = ?2, running = ?3, pending = ?4, "
      "failed = ?5, reason = ?6, serial = ?7, rules_json = ?8, updated_at = ?9";
  char running[64], pending[64], failed[64], reason[256];
  bounded(up, "running", running, sizeof(running));
  bounded(up, "pending", pending, sizeof(pending));
  bounded(up, "failed", failed, sizeof(failed));
  bounded(up, "reason", reason, sizeof(reason));
  long long serial = 0;
  ym_json_get_int(up, "serial", &serial);
  const cJSON *rules = cJSON_GetObjectItemCaseSensitive(up, "rules");
  char *rules_json = cJSON_IsObject(rules) ? cJSON_PrintUnformatted(rules) : NULL;
  if (rules_json != NULL && strlen(rules_json) > 4096) {
    free(rules_json);
    rules_json = NULL;
  }
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK ? 0 : YM_EIO;
  if (rc == 0) {
    sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, tenant_id);
    sqlite3_bind_text(st, 3, running, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, pending, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, failed, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, serial);
    sqlite3_bind_text(st, 8, rules_json ? rules_json : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, (int64_t)time(NULL));
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  }
  sqlite3_finalize(st);
  free(rules_json);
  return rc;
}

/* Adds {"version", "serial", "signed": envelope} under key of answer from
 * the first row of st (columns version, serial, envelope); null when there
 * is no row. */
static int add_offer(sqlite3_stmt *st, cJSON *answer, const char *key) {
  int step = sqlite3_step(st);
  if (step == SQLITE_DONE) {
    cJSON_AddNullToObject(answer, key);
    return 0;
  }
  if (step != SQLITE_ROW)
    return YM_EIO;
  cJSON *env = cJSON_Parse(sql_text(st, 2));
  if (env == NULL) {
    cJSON_AddNullToObject(answer, key);
    return 0;
  }
  cJSON *o = cJSON_AddObjectToObject(answer, key);
  cJSON_AddStringToObject(o, "version", sql_text(st, 0));
  cJSON_AddNumberToObject(o, "serial", (double)sqlite3_column_int64(st, 1));
  cJSON_AddItemToObject(o, "signed", env);
  return 0;
}

static int offer_release(sqlite3 *db, int64_t tenant_id, const char *agent_id, const cJSON *up,
                         cJSON *answer) {
  static const char rollout_sql[] =
      "SELECT channel, percent, pinned, paused FROM rollouts WHERE tenant_id IN (?1, 0) "
      "ORDER BY tenant_id DESC LIMIT 1";
  static const char pinned_sql[] =
      "SELECT version, serial, envelope FROM releases WHERE version = ?1 AND platform = ?2 "
      "AND architecture IN (?3, 'any') ORDER BY serial DESC LIMIT 1";
  static const char channel_sql[] =
      "SELECT version, serial, envelope FROM releases WHERE channel = ?1 AND platform = ?2 "
      "AND architecture IN (?3, 'any') ORDER BY serial DESC LIMIT 1";
  char platform[16], arch[16], channel[64] = "", pinned[64] = "";
  bounded(up, "platform", platform, sizeof(platform));
  bounded(up, "architecture", arch, sizeof(arch));
  if (platform[0] == '\0')
    snprintf(platform, sizeof(platform), "linux");
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, rollout_sql, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, tenant_id);
  int step = sqlite3_step(st);
  bool offer = false;
  if (step == SQLITE_ROW) {
    snprintf(channel, sizeof(channel), "%s", sql_text(st, 0));
    snprintf(pinned, sizeof(pinned), "%s", sql_text(st, 2));
    unsigned percent = (unsigned)sqlite3_column_int(st, 1);
    bool paused = sqlite3_column_int(st, 3) != 0;
    /* A pinned version goes to every PC of the tenant; otherwise only the
     * PCs whose bucket is inside the percentage get the newest release. */
    offer = !paused && (pinned[0] != '\0' || release_bucket(agent_id) < percent);
  }
  sqlite3_finalize(st);
  if (step != SQLITE_ROW && step != SQLITE_DONE)
    return YM_EIO;
  if (!offer) {
    cJSON_AddNullToObject(answer, "release");
    return 0;
  }
  if (sqlite3_prepare_v2(db, pinned[0] ? pinned_sql : channel_sql, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_text(st, 1, pinned[0] ? pinned : channel, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, platform, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, arch, -1, SQLITE_STATIC);
  int rc = add_offer(st, answer, "release");
  sqlite3_finalize(st);
  return rc;
}

static int offer_rules(sqlite3 *db, int64_t tenant_id, cJSON *answer) {
  static const char sql[] =
      "SELECT version, serial, envelope FROM rule_bundles WHERE tenant_id = ?1 "
      "ORDER BY serial DESC LIMIT 1";
  cJSON *rules = cJSON_AddObjectToObject(answer, "rules");
  int rc = 0;
  for (int i = 0; i < 2 && rc == 0; i++) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
      return YM_EIO;
    sqlite3_bind_int64(st, 1, i == 0 ? 0 : tenant_id);
    rc = add_offer(st, rules, i == 0 ? "default" : "tenant");
    sqlite3_finalize(st);
  }
  return rc;
}

int release_checkin(sqlite3 *db, int64_t tenant_id, const char *agent_id, const cJSON *req,
                    cJSON *answer, void *data) {
  (void)data;
  const cJSON *up = cJSON_GetObjectItemCaseSensitive(req, "update");
  int rc = 0;
  if (cJSON_IsObject(up))
    rc = store_report(db, tenant_id, agent_id, up);
  /* The members are replaced, not added twice. */
  cJSON_DeleteItemFromObjectCaseSensitive(answer, "release");
  cJSON_DeleteItemFromObjectCaseSensitive(answer, "rules");
  if (rc == 0)
    rc = offer_release(db, tenant_id, agent_id, cJSON_IsObject(up) ? up : NULL, answer);
  if (rc == 0)
    rc = offer_rules(db, tenant_id, answer);
  return rc;
}

int release_agent_state_json(sqlite3 *db, const char *agent_id, cJSON *out) {
  static const char sql[] = "SELECT running, pending, failed, reason, serial, rules_json "
                            "FROM agent_update_state WHERE agent_id = ?1";
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
  int step = sqlite3_step(st);
  int rc = step == SQLITE_ROW ? 0 : (step == SQLITE_DONE ? YM_ENOENT : YM_EIO);
  if (rc == 0) {
    cJSON_AddStringToObject(out, "running", sql_text(st, 0));
    cJSON_AddStringToObject(out, "pending", sql_text(st, 1));
    cJSON_AddStringToObject(out, "failed", sql_text(st, 2));
    cJSON_AddStringToObject(out, "reason", sql_text(st, 3));
    cJSON_AddNumberToObject(out, "serial", (double)sqlite3_column_int64(st, 4));
    cJSON *rules = cJSON_Parse(sql_text(st, 5));
    cJSON_AddItemToObject(out, "rules", rules ? rules : cJSON_CreateObject());
  }
  sqlite3_finalize(st);
  return rc;
}

/* ---------------------------------------------------------------- */
/* Downloads                                                          */

typedef struct {
  http_req_t *r;
  int64_t tenant_id;
  bool rules;
  int64_t serial; /* > 0: by serial */
  char version[64];
  uint64_t from; /* Range: bytes=from- */
  bool ranged;
  /* results */
  int status;
  uint8_t *body;
  size_t len;
  uint64_t total;
} fetch_t;

static int fetch_fn(sqlite3 *db, void *arg) {
  fetch_t *f = arg;
  static const char by_serial[] = "SELECT package FROM releases WHERE serial = ?1";
  static const char by_version[] =
      "SELECT package FROM releases WHERE version = ?1 ORDER BY serial DESC LIMIT 1";
  static const char rules_sql[] =
      "SELECT bundle FROM rule_bundles WHERE version = ?1 AND tenant_id IN (0, ?2)";
  const char *sql = f->rules ? rules_sql : (f->serial > 0 ? by_serial : by_version);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  if (!f->rules && f->serial > 0)
    sqlite3_bind_int64(st, 1, f->serial);
  else
    sqlite3_bind_text(st, 1, f->version, -1, SQLITE_STATIC);
  if (f->rules)
    sqlite3_bind_int64(st, 2, f->tenant_id);
  int step = sqlite3_step(st);
  int rc = 0;
  if (step == SQLITE_ROW) {
    const uint8_t *p = sqlite3_column_blob(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    f->total = n;
    if (f->from > n || (f->ranged && f->from == n && n > 0)) {
      f->status = 416;
    } else {
      f->len = n - (size_t)f->from;
      f->body = malloc(f->len ? f->len : 1);
      if (f->body == NULL)
        rc = YM_ENOMEM;
      else {
        if (f->len)
          memcpy(f->body, p + f->from, f->len);
        f->status = f->ranged ? 206 : 200;
      }
    }
  } else if (step == SQLITE_DONE) {
    f->status = 404;
  } else {
    rc = YM_EIO;
  }
  sqlite3_finalize(st);
  return rc;
}

static void fetch_done(int rc, void *data) {
  fetch_t *f = data;
  if (rc != 0)
    http_reply_error(f->r, 503, "unavailable", "retry");
  else if (f->status == 404)
    http_reply_error(f->r, 404, "not_found", "no such release or bundle");
  else if (f->status == 416)
    http_reply_error(f->r, 416, "range_not_satisfiable", "the range starts after the end");
  else {
    char range[96];
    snprintf(range, sizeof(range), "bytes %llu-%llu/%llu", (unsigned long long)f->from,
             (unsigned long long)(f->total ? f->total - 1 : 0), (unsigned long long)f->total);
    http_header_t h = {"content-range", range};
    http_reply_ex(f->r, f->status, "application/octet-stream", &h, f->status == 206 ? 1 : 0,
                  f->body, f->len);
  }
  free(f->body);
  free(f);
}

/* Parses "bytes=N-" (the only form agents send). */
static int parse_range(const char *h, uint64_t *from) {
  if (strncmp(h, "bytes=", 6) != 0)
    return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(h + 6, &end, 10);
  if (errno != 0 || end == h + 6 || strcmp(end, "-") != 0)
    return -1;
  *from = v;
  return 0;
}

static void start_fetch(release_t *rl, http_req_t *r, int64_t tenant_id, bool rules, const char *id,
                        size_t id_len) {
  if (id_len == 0 || id_len >= 64) {
    http_reply_error(r, 404, "not_found", "no such release or bundle");
    return;
  }
  fetch_t *f = calloc(1, sizeof(*f));
  if (f == NULL) {
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  f->r = r;
  f->tenant_id = tenant_id;
  f->rules = rules;
  memcpy(f->version, id, id_len);
  if (!ym_manifest_version_ok(f->version)) {
    free(f);
    http_reply_error(r, 404, "not_found", "no such release or bundle");
    return;
  }
  if (!rules && strspn(f->version, "0123456789") == id_len)
    f->serial = strtoll(f->version, NULL, 10);
  const char *range = http_req_header(r, "range");
  if (range != NULL) {
    if (parse_range(range, &f->from) != 0) {
      free(f);
      http_reply_error(r, 416, "range_not_satisfiable", "only bytes=N- is supported");
      return;
    }
    f->ranged = true;
  }
  store_read(rl->store, fetch_fn, f, fetch_done, f);
}

static void on_release_package(http_req_t *r, const char *agent_id, int64_t tenant_id, void *data) {
  (void)agent_id;
  size_t len;
  const char *path = http_req_path(r, &len);
  const char *prefix = "/api/v1/releases/";
  size_t pl = strlen(prefix);
  const char *slash = len > pl ? memchr(path + pl, '/', len - pl) : NULL;
  if (slash == NULL || (size_t)(path + len - slash) != 8 || memcmp(slash, "/package", 8) != 0) {
    http_reply_error(r, 404, "not_found", "GET /api/v1/releases/<serial>/package");
    return;
  }
  start_fetch(data, r, tenant_id, false, path + pl, (size_t)(slash - (path + pl)));
}

static void on_rules_bundle(http_req_t *r, const char *agent_id, int64_t tenant_id, void *data) {
  (void)agent_id;
  size_t len;
  const char *path = http_req_path(r, &len);
  size_t pl = strlen("/api/v1/rules/");
  if (len <= pl || memchr(path + pl, '/', len - pl) != NULL) {
    http_reply_error(r, 404, "not_found", "GET /api/v1/rules/<version>");
    return;
  }
  start_fetch(data, r, tenant_id, true, path + pl, len - pl);
}

typedef struct {
  http_req_t *r;
  int64_t tenant_id;
  char agent_id[40];
  cJSON *up;
} report_t;

static int report_fn(sqlite3 *db, void *arg) {
  report_t *p = arg;
  return store_report(db, p->tenant_id, p->agent_id, p->up);
}

static void report_done(int rc, void *data) {
  report_t *p = data;
  if (rc != 0)
    http_reply_error(p->r, 503, "unavailable", "retry");
  else
    http_reply(p->r, 200, "{}", 2, 0);
  cJSON_Delete(p->up);
  free(p);
}

/* POST /api/v1/update/report: {"update": {...}} as in the check-in, sent
 * by the agent as soon as its update state changes. */
static void on_update_report(http_req_t *r, const char *agent_id, int64_t tenant_id, void *data) {
  release_t *rl = data;
  size_t len;
  const char *body = http_req_body(r, &len);
  cJSON *j = NULL;
  if (ym_json_parse_lenient(body, len, 16384, &j) != 0 || !cJSON_IsObject(j) ||
      !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "update"))) {
    cJSON_Delete(j);
    http_reply_error(r, 400, "bad_request", "the body must be {\"update\": {...}}");
    return;
  }
  report_t *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    cJSON_Delete(j);
    http_reply_error(r, 500, "internal", "out of memory");
    return;
  }
  p->r = r;
  p->tenant_id = tenant_id;
  snprintf(p->agent_id, sizeof(p->agent_id), "%s", agent_id);
  p->up = cJSON_DetachItemFromObjectCaseSensitive(j, "update");
  cJSON_Delete(j);
  store_call(rl->store, report_fn, p, report_done, p);
}

int release_new(store_t *s, api_t *api, release_t **out) {
  release_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return YM_ENOMEM;
  r->store = s;
  r->api = api;
  int rc = api_add_checkin(api, release_checkin, r);
  if (rc == 0)
    rc = api_route_agent(api, "GET", "/api/v1/releases/", on_release_package, r);
  if (rc == 0)
    rc = api_route_agent(api, "GET", "/api/v1/rules/", on_rules_bundle, r);
  if (rc == 0)
    rc = api_route_agent(api, "POST", "/api/v1/update/report", on_update_report, r);
  if (rc != 0) {
    free(r);
    return rc;
  }
  *out = r;
  return 0;
}

void release_free(release_t *r) {
  free(r);
}

/* ---------------------------------------------------------------- */
/* Command-line tools                                                 */

typedef struct {
  const char *data_dir;
  const char *key, *out, *manifest, *package, *version, *channel, *platform, *arch, *product;
  const char *url, *tenant, *pin;
  long long serial, expires_days, percent;
  bool unchecked, unpin, pause, resume;
} cli_t;

static int read_file(const char *path, size_t max, ym_buf_t *b) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ym_err_from_errno(errno);
  ym_buf_init(b, max);
  char chunk[65536];
  int rc = 0;
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      rc = YM_EIO;
    if (n <= 0)
      break;
    if ((rc = ym_buf_append(b, chunk, (size_t)n)) != 0)
      break;
  }
  close(fd);
  return rc;
}

static int write_file(const char *path, const void *p, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    return ym_err_from_errno(errno);
  int rc = write(fd, p, n) == (ssize_t)n && fsync(fd) == 0 ? 0 : YM_EIO;
  close(fd);
  return rc;
}

static int cmd_keygen(const cli_t *c) {
  if (c->out == NULL) {
    fprintf(stderr, "yamori-console: release keygen needs --out DIR\n");
    return EXIT_USAGE;
  }
  if (mkdir(c->out, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "yamori-console: cannot create %s: %s\n", c->out, strerror(errno));
    return 1;
  }
  uint8_t priv[YM_SIGN_KEY_LEN], pub[YM_SIGN_KEY_LEN];
  char kp[1100], pp[1100], id[YM_SIGN_ID_LEN + 1];
  snprintf(kp, sizeof(kp), "%s/release.key", c->out);
  snprintf(pp, sizeof(pp), "%s/release.pub", c->out);
  int rc = ym_sign_keygen(priv, pub);
  if (rc == 0)
    rc = ym_sign_write_private(kp, priv);
  if (rc == 0)
    rc = ym_sign_write_public(pp, pub);
  memset(priv, 0, sizeof(priv));
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot write the key pair in %s: %s\n", c->out,
            rc == YM_EEXIST ? "a key exists already" : ym_strerror(rc));
    return 1;
  }
  ym_sign_key_id(pub, id);
  printf("key %s\nprivate key %s (keep it offline)\npublic key %s (install it with the agent)\n",
         id, kp, pp);
  return 0;
}

static const char *host_arch(void) {
  static struct utsname u;
  return uname(&u) == 0 ? u.machine : "x86_64";
}

/* Signs manifest text with the key file and writes the envelope. */
static int sign_to(const char *key, const ym_buf_t *manifest, const char *out) {
  uint8_t priv[YM_SIGN_KEY_LEN];
  int rc = ym_sign_read_private(key, priv);
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot read the private key %s: %s\n", key,
            rc == YM_EPERM ? "not a regular file readable only by its owner" : ym_strerror(rc));
    return 1;
  }
  ym_buf_t env;
  ym_buf_init(&env, YM_SIGN_ENVELOPE_MAX);
  rc = ym_sign_envelope(priv, manifest->data, manifest->len, &env);
  memset(priv, 0, sizeof(priv));
  if (rc == 0)
    rc = write_file(out, env.data, env.len);
  ym_buf_free(&env);
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot write the signature %s: %s\n", out, ym_strerror(rc));
    return 1;
  }
  printf("signature %s\n", out);
  return 0;
}

static int cmd_sign(const cli_t *c) {
  if (c->key == NULL || (c->manifest == NULL) == (c->package == NULL)) {
    fprintf(stderr, "yamori-console: release sign needs --key K and --manifest M or --package P\n");
    return EXIT_USAGE;
  }
  char out[1100];
  ym_buf_t m;
  if (c->manifest != NULL) {
    int rc = read_file(c->manifest, 16 * 1024, &m);
    ym_manifest_t man;
    const char *why;
    if (rc == 0 && ym_manifest_parse(m.data, m.len, &man, &why) != 0)
      rc = YM_EPARSE;
    if (rc != 0) {
      fprintf(stderr, "yamori-console: %s is not a valid manifest: %s\n", c->manifest,
              ym_strerror(rc));
      ym_buf_free(&m);
      return 1;
    }
    snprintf(out, sizeof(out), "%s.sig", c->manifest);
  } else {
    if (c->version == NULL || c->serial <= 0 || !ym_manifest_version_ok(c->version)) {
      fprintf(stderr, "yamori-console: signing a package needs --version V and --serial N\n");
      return EXIT_USAGE;
    }
    ym_manifest_t man = {0};
    int fd = open(c->package, O_RDONLY | O_CLOEXEC);
    uint64_t size = 0;
    int rc = fd < 0 ? ym_err_from_errno(errno) : ym_sha256_fd(fd, PACKAGE_MAX, man.sha256, &size);
    if (fd >= 0)
      close(fd);
    if (rc != 0) {
      fprintf(stderr, "yamori-console: cannot read %s: %s\n", c->package, ym_strerror(rc));
      return 1;
    }
    snprintf(man.product, sizeof(man.product), "%s",
             c->product ? c->product : YM_MANIFEST_PRODUCT_AGENT);
    snprintf(man.platform, sizeof(man.platform), "%s", c->platform ? c->platform : "linux");
    const char *arch = c->arch ? c->arch : host_arch();
    if (strlen(arch) >= sizeof(man.arch)) {
      fprintf(stderr, "yamori-console: architecture name too long: %s\n", arch);
      return 1;
    }
    memcpy(man.arch, arch, strlen(arch) + 1);
    snprintf(man.version, sizeof(man.version), "%s", c->version);
    snprintf(man.channel, sizeof(man.channel), "%s", c->channel ? c->channel : "stable");
    man.serial = (uint64_t)c->serial;
    man.size = size;
    man.expires = (int64_t)time(NULL) + (c->expires_days ? c->expires_days : 90) * 86400;
    if (c->url)
      snprintf(man.url, sizeof(man.url), "%s", c->url);
    else
      snprintf(man.url, sizeof(man.url), "/api/v1/releases/%llu/package",
               (unsigned long long)c->serial);
    ym_buf_init(&m, 16 * 1024);
    ym_manifest_write(&man, &m);
    char mpath[1100];
    snprintf(mpath, sizeof(mpath), "%s.manifest.json", c->out ? c->out : c->package);
    write_file(mpath, m.data, m.len);
    printf("manifest %s\n", mpath);
    snprintf(out, sizeof(out), "%s.sig", c->package);
  }
  int rc = sign_to(c->key, &m, c->out ? c->out : out);
  ym_buf_free(&m);
  return rc;
}

typedef struct {
  const ym_manifest_t *m;
  const ym_buf_t *env, *pkg;
  int64_t tenant_id;
  bool rules;
} insert_t;

static int insert_release_fn(sqlite3 *db, void *arg) {
  insert_t *in = arg;
  static const char sql[] =
      "INSERT INTO releases(serial, version, product, channel, platform, architecture, size, "
      "sha256, expires, envelope, package, imported_at) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
  char sha[YM_SHA256_HEX_LEN + 1];
  ym_hex(in->m->sha256, sizeof(in->m->sha256), sha);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, (int64_t)in->m->serial);
  sqlite3_bind_text(st, 2, in->m->version, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, in->m->product, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, in->m->channel, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, in->m->platform, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, in->m->arch, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 7, (int64_t)in->m->size);
  sqlite3_bind_text(st, 8, sha, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 9, in->m->expires);
  sqlite3_bind_text(st, 10, in->env->data, (int)in->env->len, SQLITE_STATIC);
  sqlite3_bind_blob(st, 11, in->pkg->data ? in->pkg->data : "", (int)in->pkg->len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 12, (int64_t)time(NULL));
  int step = sqlite3_step(st);
  sqlite3_finalize(st);
  return step == SQLITE_DONE ? 0 : (step == SQLITE_CONSTRAINT ? YM_EEXIST : YM_EIO);
}

static int open_store(const cli_t *c, store_t **s) {
  int rc = store_open(c->data_dir, NULL, s);
  if (rc == 0)
    rc = release_ensure_schema(*s);
  if (rc != 0)
    fprintf(stderr, "yamori-console: cannot open the database in %s: %s\n", c->data_dir,
            ym_strerror(rc));
  return rc;
}

static int cmd_import(const cli_t *c, int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "yamori-console: release import PACKAGE SIGNATURE\n");
    return EXIT_USAGE;
  }
  ym_buf_t pkg, env, mtext;
  ym_manifest_t m;
  const char *why = NULL;
  int rc = read_file(argv[0], PACKAGE_MAX, &pkg);
  if (rc == 0)
    rc = read_file(argv[1], YM_SIGN_ENVELOPE_MAX, &env);
  else
    ym_buf_init(&env, 1);
  ym_buf_init(&mtext, YM_SIGN_ENVELOPE_MAX);
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot read %s or %s: %s\n", argv[0], argv[1],
            ym_strerror(rc));
    goto out;
  }
  if (c->unchecked) {
    /* Stores what the envelope claims, verified or not: for testing how
     * agents refuse bad releases. */
    rc = ym_sign_peek(env.data, env.len, &mtext);
    if (rc == 0)
      rc = ym_manifest_parse(mtext.data, mtext.len, &m, &why);
  } else {
    char dir[1100];
    ym_sign_pub_t keys[16];
    snprintf(dir, sizeof(dir), "%s/keys", c->data_dir);
    int n = ym_sign_load_keys(dir, keys, 16);
    if (n <= 0) {
      fprintf(stderr, "yamori-console: no release public keys in %s (copy release.pub there)\n",
              dir);
      rc = YM_ENOENT;
      goto out;
    }
    rc = ym_manifest_open(env.data, env.len, keys, (size_t)n, &m, &why);
    uint8_t d[YM_SHA256_LEN];
    ym_unpack_limits_t lim;
    ym_unpack_result_t res;
    ym_unpack_default_limits(&lim);
    if (rc == 0 && strcmp(m.product, YM_MANIFEST_PRODUCT_AGENT) != 0)
      why = "wrong_product", rc = YM_EINVAL;
    else if (rc == 0 && m.size != pkg.len)
      why = "size_mismatch", rc = YM_EINVAL;
    else if (rc == 0 && (ym_sha256_mem(pkg.data, pkg.len, d) != 0 || memcmp(d, m.sha256, 32) != 0))
      why = "hash_mismatch", rc = YM_EINVAL;
    else if (rc == 0 && ym_unpack_mem(pkg.data, pkg.len, -1, &lim, &res) != 0)
      why = res.reason, rc = YM_EINVAL;
  }
  if (rc != 0) {
    fprintf(stderr, "yamori-console: release refused: %s\n", why ? why : ym_strerror(rc));
    goto out;
  }
  store_t *s = NULL;
  if ((rc = open_store(c, &s)) != 0)
    goto out;
  insert_t in = {&m, &env, &pkg, 0, false};
  rc = store_sync_call(s, insert_release_fn, &in);
  store_close(s);
  if (rc != 0)
    fprintf(stderr, "yamori-console: cannot store the release: %s\n",
            rc == YM_EEXIST ? "a release with this serial exists" : ym_strerror(rc));
  else
    printf("release %s (serial %llu, channel %s, %s/%s, %zu bytes) imported\n", m.version,
           (unsigned long long)m.serial, m.channel, m.platform, m.arch, pkg.len);
out:
  ym_buf_free(&pkg);
  ym_buf_free(&env);
  ym_buf_free(&mtext);
  return rc == 0 ? 0 : 1;
}

static int list_releases_fn(sqlite3 *db, void *arg) {
  (void)arg;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT serial, version, channel, platform, architecture, size "
                         "FROM releases ORDER BY serial",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  while (sqlite3_step(st) == SQLITE_ROW)
    printf("%lld\t%s\t%s\t%s/%s\t%lld bytes\n", (long long)sqlite3_column_int64(st, 0),
           sql_text(st, 1), sql_text(st, 2), sql_text(st, 3), sql_text(st, 4),
           (long long)sqlite3_column_int64(st, 5));
  sqlite3_finalize(st);
  return 0;
}

/* ---- rollout ---- */

static int tenant_id_of(sqlite3 *db, const char *name, int64_t *id) {
  if (strcmp(name, "*") == 0 || strcmp(name, "default") == 0) {
    *id = 0;
    return 0;
  }
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT id FROM tenants WHERE name = ?1", -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st) == SQLITE_ROW ? 0 : YM_ENOENT;
  if (rc == 0)
    *id = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc;
}

int release_rollout_set(sqlite3 *db, int64_t tid, const release_rollout_t *r) {
  if (r->percent > 100 || r->percent < -1 || r->paused > 1 || r->paused < -1 ||
      (r->pin != NULL && r->pin[0] != '\0' && !ym_manifest_version_ok(r->pin)) ||
      (r->channel != NULL && !ym_manifest_version_ok(r->channel)))
    return YM_EINVAL;
  char channel[64] = "stable", pinned[64] = "";
  long long percent = 100;
  int paused = 0;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(
          db, "SELECT channel, percent, pinned, paused FROM rollouts WHERE tenant_id = ?1", -1, &st,
          NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, tid);
  if (sqlite3_step(st) == SQLITE_ROW) {
    snprintf(channel, sizeof(channel), "%s", sql_text(st, 0));
    percent = sqlite3_column_int64(st, 1);
    snprintf(pinned, sizeof(pinned), "%s", sql_text(st, 2));
    paused = sqlite3_column_int(st, 3);
  }
  sqlite3_finalize(st);
  if (r->channel)
    snprintf(channel, sizeof(channel), "%s", r->channel);
  if (r->percent >= 0)
    percent = r->percent;
  if (r->pin)
    snprintf(pinned, sizeof(pinned), "%s", r->pin);
  if (r->paused >= 0)
    paused = r->paused;
  if (sqlite3_prepare_v2(db,
                         "INSERT OR REPLACE INTO rollouts(tenant_id, channel, percent, pinned, "
                         "paused, updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, tid);
  sqlite3_bind_text(st, 2, channel, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, percent);
  sqlite3_bind_text(st, 4, pinned, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 5, paused);
  sqlite3_bind_int64(st, 6, (int64_t)time(NULL));
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  sqlite3_finalize(st);
  return rc;
}

static int rollout_set_fn(sqlite3 *db, void *arg) {
  const cli_t *c = arg;
  int64_t tid;
  int rc = tenant_id_of(db, c->tenant, &tid);
  if (rc != 0)
    return rc;
  release_rollout_t r = {c->channel, (int)c->percent, c->unpin ? "" : c->pin,
                         c->pause ? 1 : (c->resume ? 0 : -1)};
  if ((rc = release_rollout_set(db, tid, &r)) != 0)
    return rc;
  cJSON *j = cJSON_CreateObject();
  release_rollout_json(db, tid, j);
  char *text = cJSON_PrintUnformatted(j);
  printf("rollout for %s: %s\n", c->tenant, text ? text : "?");
  free(text);
  cJSON_Delete(j);
  return 0;
}

int release_rollout_json(sqlite3 *db, int64_t tenant_id, cJSON *out) {
  static const char sql[] = "SELECT channel, percent, pinned, paused, tenant_id FROM rollouts "
                            "WHERE tenant_id IN (?1, 0) ORDER BY tenant_id DESC LIMIT 1";
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, tenant_id);
  int step = sqlite3_step(st);
  if (step == SQLITE_ROW) {
    cJSON_AddStringToObject(out, "channel", sql_text(st, 0));
    cJSON_AddNumberToObject(out, "percent", sqlite3_column_int(st, 1));
    cJSON_AddStringToObject(out, "pinned", sql_text(st, 2));
    cJSON_AddBoolToObject(out, "paused", sqlite3_column_int(st, 3) != 0);
    cJSON_AddBoolToObject(out, "inherited", sqlite3_column_int64(st, 4) != tenant_id);
  } else {
    cJSON_AddNullToObject(out, "channel");
  }
  sqlite3_finalize(st);
  return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : YM_EIO;
}

int release_list_json(sqlite3 *db, cJSON *arr) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT serial, version, channel, platform, architecture, size, "
                         "imported_at FROM releases ORDER BY serial DESC",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "serial", (double)sqlite3_column_int64(st, 0));
    cJSON_AddStringToObject(o, "version", sql_text(st, 1));
    cJSON_AddStringToObject(o, "channel", sql_text(st, 2));
    cJSON_AddStringToObject(o, "platform", sql_text(st, 3));
    cJSON_AddStringToObject(o, "architecture", sql_text(st, 4));
    cJSON_AddNumberToObject(o, "size", (double)sqlite3_column_int64(st, 5));
    cJSON_AddNumberToObject(o, "imported_at", (double)sqlite3_column_int64(st, 6));
    cJSON_AddItemToArray(arr, o);
  }
  sqlite3_finalize(st);
  return step == SQLITE_DONE ? 0 : YM_EIO;
}

static int rollout_list_fn(sqlite3 *db, void *arg) {
  (void)arg;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT coalesce(t.name, '*'), r.channel, r.percent, r.pinned, r.paused "
                         "FROM rollouts r LEFT JOIN tenants t ON t.id = r.tenant_id "
                         "ORDER BY r.tenant_id",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  while (sqlite3_step(st) == SQLITE_ROW)
    printf("%s\t%s\t%d%%\t%s\t%s\n", sql_text(st, 0), sql_text(st, 1), sqlite3_column_int(st, 2),
           sql_text(st, 3)[0] ? sql_text(st, 3) : "-", sqlite3_column_int(st, 4) ? "paused" : "on");
  sqlite3_finalize(st);
  return 0;
}

/* ---- rules ---- */

/* Appends one ustar entry (a regular file) to t. */
static int tar_add(ym_buf_t *t, const char *name, const void *p, size_t n) {
  char h[512];
  memset(h, 0, sizeof(h));
  if (strlen(name) >= 100)
    return YM_ETOOBIG;
  memcpy(h, name, strlen(name));
  snprintf(h + 100, 8, "%07o", 0644);
  snprintf(h + 108, 8, "%07o", 0);
  snprintf(h + 116, 8, "%07o", 0);
  snprintf(h + 124, 12, "%011llo", (unsigned long long)n);
  snprintf(h + 136, 12, "%011llo", (unsigned long long)time(NULL));
  memset(h + 148, ' ', 8);
  h[156] = '0';
  memcpy(h + 257,
         "ustar\0"
         "00",
         8);
  unsigned sum = 0;
  for (size_t i = 0; i < 512; i++)
    sum += (unsigned char)h[i];
  snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
  static const char zero[512];
  int rc = ym_buf_append(t, h, 512);
  if (rc == 0 && n > 0)
    rc = ym_buf_append(t, p, n);
  if (rc == 0 && n % 512)
    rc = ym_buf_append(t, zero, 512 - n % 512);
  return rc;
}

static int gzip_buf(const ym_buf_t *in, ym_buf_t *out) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return YM_ENOMEM;
  uLong bound = deflateBound(&z, in->len);
  int rc = ym_buf_reserve(out, bound + 1);
  if (rc == 0) {
    z.next_in = (Bytef *)in->data;
    z.avail_in = (uInt)in->len;
    z.next_out = (Bytef *)out->data;
    z.avail_out = (uInt)bound;
    rc = deflate(&z, Z_FINISH) == Z_STREAM_END ? 0 : YM_EIO;
    out->len = z.total_out;
  }
  deflateEnd(&z);
  return rc;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of a bundle before they are packed: bundle path and content. */
#define PACK_MAX_FILES 1000
#define PACK_MAX_FILE_BYTES (4 * 1024 * 1024)
/* An agent loads at most this many compiled behaviour rule files from one
 * directory (BEHAVE_MAX_FILES in agent/src/behave.h): a bundle with more
 * would be refused by every agent, so it is refused here. */
#define PACK_MAX_SIGMA_FILES 64

typedef struct {
  char *name; /* path in the bundle: "a.yar", "sigma/linux.json" */
  char *data;
  size_t len;
} packed_t;

typedef struct {
  packed_t *v;
  size_t n;
  unsigned yara, sigma; /* files of each kind */
} packlist_t;

static void packlist_free(packlist_t *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].name);
    free(l->v[i].data);
  }
  free(l->v);
}

/* Adds name (or replaces the entry of that name); takes ownership of data,
 * even on error. A file over the agent's per-file limit
 * (PACK_MAX_FILE_BYTES, RULES_MAX_FILE_BYTES on the agent) is refused
 * here rather than by every agent. */
static int pack_put(packlist_t *l, const char *name, char *data, size_t len) {
  if (len > PACK_MAX_FILE_BYTES) {
    fprintf(stderr, "yamori-console: %s would be %zu bytes, over the %d bytes an agent accepts\n",
            name, len, PACK_MAX_FILE_BYTES);
    free(data);
    return YM_ETOOBIG;
  }
  for (size_t i = 0; i < l->n; i++) {
    if (strcmp(l->v[i].name, name) == 0) {
      free(l->v[i].data);
      l->v[i].data = data;
      l->v[i].len = len;
      return 0;
    }
  }
  if (l->n >= PACK_MAX_FILES || strlen(name) >= 100) {
    free(data);
    return YM_ETOOBIG;
  }
  if (l->v == NULL && (l->v = calloc(PACK_MAX_FILES, sizeof(packed_t))) == NULL) {
    free(data);
    return YM_ENOMEM;
  }
  if ((l->v[l->n].name = strdup(name)) == NULL) {
    free(data);
    return YM_ENOMEM;
  }
  l->v[l->n].data = data;
  l->v[l->n].len = len;
  l->n++;
  return 0;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n > k && strcmp(s + n - k, suffix) == 0;
}

/* Bundle names hold only A-Z a-z 0-9 . _ - and never start with a dot, so
 * the agent's unpacker has nothing to refuse and no name can be a trick. */
static bool bundle_name_ok(const char *name) {
  if (name[0] == '.' || name[0] == '\0' || strlen(name) > 64)
    return false;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '.' || *p == '_' || *p == '-'))
      return false;
  return true;
}

/* Reads a regular file (not a symbolic link) of at most
 * PACK_MAX_FILE_BYTES into a malloc'd buffer. */
static int read_regular(const char *path, char **data, size_t *len) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return ym_err_from_errno(errno);
  if (!S_ISREG(st.st_mode))
    return YM_EPERM;
  ym_buf_t b;
  int rc = read_file(path, PACK_MAX_FILE_BYTES, &b);
  if (rc != 0) {
    ym_buf_free(&b);
    return rc;
  }
  *len = b.len;
  *data = malloc(b.len + 1);
  if (*data == NULL) {
    ym_buf_free(&b);
    return YM_ENOMEM;
  }
  if (b.len > 0)
    memcpy(*data, b.data, b.len);
  (*data)[b.len] = '\0';
  ym_buf_free(&b);
  return 0;
}

/* True when text is the agent's compiled Sigma form
 * ({"format": "yamori-sigma", "version": 1, "rules": [...]}). */
static bool sigma_compiled_ok(const char *text, size_t len) {
  cJSON *j = cJSON_ParseWithLength(text, len);
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
  bool ok = cJSON_IsString(f) && strcmp(f->valuestring, "yamori-sigma") == 0 && cJSON_IsNumber(v) &&
            v->valuedouble == 1 && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "rules"));
  cJSON_Delete(j);
  return ok;
}

/* Compiles the Sigma YAML at path (a file or a directory tree) with the
 * strict compiler into bundle entry sigma/<group>.json, the rules' files
 * named relative to dir. A refused rule refuses the publish: every refusal
 * is printed with its file and line. */
static int pack_sigma_yaml(const char *dir, const char *path, const char *group, packlist_t *l) {
  sigma_compiler_t *c = sigma_compiler_new(SIGMA_STRICT);
  if (c == NULL)
    return YM_ENOMEM;
  size_t files = 0;
  int rc = sigma_compile_tree(c, path, dir, &files);
  char *text = rc == YM_ENOMEM ? NULL : sigma_compiler_output(c);
  if (rc != YM_ENOMEM && text == NULL)
    rc = YM_ENOMEM;
  for (size_t i = 0; i < sigma_compiler_report_count(c); i++) {
    const sigma_report_t *r = sigma_compiler_report(c, i);
    if (!r->accepted) {
      fprintf(stderr, "yamori-console: %s:%u: %s%s%s\n", r->file, r->line, r->id,
              r->id[0] ? ": " : "", r->reason);
      rc = rc ? rc : YM_EPARSE;
    }
  }
  sigma_compiler_free(c);
  if (rc != 0 || files == 0) {
    free(text);
    return rc;
  }
  char name[100];
  snprintf(name, sizeof(name), "sigma/%s.json", group);
  return pack_put(l, name, text, strlen(text));
}

/* The behaviour rules of dir/sigma: compiled files sigma/NAME.json as
 * they are (checked to be the compiled form), and Sigma YAML compiled here:
 * the YAML below sigma/NAME/ into sigma/NAME.json (replacing a compiled file of
 * that name beside it, so YAML and its committed compiled form are not
 * packed twice), YAML directly in sigma/ into sigma/rules.json. */
static int pack_sigma(const char *dir, packlist_t *l) {
  char sdir[4200];
  if ((size_t)snprintf(sdir, sizeof(sdir), "%s/sigma", dir) >= sizeof(sdir))
    return YM_ETOOBIG;
  struct stat st;
  if (lstat(sdir, &st) != 0)
    return errno == ENOENT ? 0 : ym_err_from_errno(errno);
  if (!S_ISDIR(st.st_mode))
    return YM_EPERM;
  DIR *d = opendir(sdir);
  if (d == NULL)
    return ym_err_from_errno(errno);
  char *names[PACK_MAX_FILES];
  size_t n = 0;
  struct dirent *de;
  int rc = 0;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    if (n == PACK_MAX_FILES) {
      rc = YM_ETOOBIG;
      break;
    }
    if ((names[n] = strdup(de->d_name)) == NULL) {
      rc = YM_ENOMEM;
      break;
    }
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof(char *), cmp_names);
  bool loose_yaml = false;
  /* Compiled files first, so that YAML compiled below replaces them. */
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    for (size_t i = 0; i < n && rc == 0; i++) {
      char path[4400], stem[80];
      snprintf(path, sizeof(path), "%s/%s", sdir, names[i]);
      if (lstat(path, &st) != 0) {
        rc = ym_err_from_errno(errno);
        break;
      }
      bool yaml = ends_with(names[i], ".yml") || ends_with(names[i], ".yaml");
      if (pass == 0 && S_ISREG(st.st_mode) && ends_with(names[i], ".json")) {
        if (!bundle_name_ok(names[i])) {
          fprintf(stderr, "yamori-console: %s: a bundle file name holds only A-Z a-z 0-9 . _ -\n",
                  path);
          rc = YM_EPERM;
          break;
        }
        char *data = NULL;
        size_t len = 0;
        if ((rc = read_regular(path, &data, &len)) != 0)
          break;
        if (!sigma_compiled_ok(data, len)) {
          fprintf(stderr, "yamori-console: %s is not compiled Sigma (rules compile-sigma)\n", path);
          free(data);
          rc = YM_EPARSE;
          break;
        }
        snprintf(stem, sizeof(stem), "sigma/%s", names[i]);
        rc = pack_put(l, stem, data, len);
      } else if (pass == 1 && S_ISDIR(st.st_mode)) {
        if (!bundle_name_ok(names[i])) {
          fprintf(stderr, "yamori-console: %s: a bundle file name holds only A-Z a-z 0-9 . _ -\n",
                  path);
          rc = YM_EPERM;
          break;
        }
        rc = pack_sigma_yaml(dir, path, names[i], l);
      } else if (pass == 1 && S_ISREG(st.st_mode) && yaml) {
        loose_yaml = true;
      }
    }
  }
  if (rc == 0 && loose_yaml) {
    /* Only the files directly in sigma/ (the directories were done). */
    sigma_compiler_t *c = sigma_compiler_new(SIGMA_STRICT);
    if (c == NULL)
      rc = YM_ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
      char path[4400];
      snprintf(path, sizeof(path), "%s/%s", sdir, names[i]);
      size_t found = 0;
      if ((ends_with(names[i], ".yml") || ends_with(names[i], ".yaml")) && lstat(path, &st) == 0 &&
          S_ISREG(st.st_mode) && sigma_compile_tree(c, path, dir, &found) == YM_ENOMEM)
        rc = YM_ENOMEM;
    }
    char *text = rc == 0 ? sigma_compiler_output(c) : NULL;
    if (rc == 0 && text == NULL)
      rc = YM_ENOMEM;
    for (size_t i = 0; c != NULL && i < sigma_compiler_report_count(c); i++) {
      const sigma_report_t *r = sigma_compiler_report(c, i);
      if (!r->accepted) {
        fprintf(stderr, "yamori-console: %s:%u: %s%s%s\n", r->file, r->line, r->id,
                r->id[0] ? ": " : "", r->reason);
        rc = rc ? rc : YM_EPARSE;
      }
    }
    sigma_compiler_free(c);
    if (rc == 0) {
      rc = pack_put(l, "sigma/rules.json", text, strlen(text));
    } else {
      free(text);
    }
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  return rc;
}

/* Packs the *.yar / *.yara files directly in dir, and its behaviour rules
 * (pack_sigma), into a gzip'd ustar. */
static int pack_rules(const char *dir, ym_buf_t *gz, packlist_t *l) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return ym_err_from_errno(errno);
  char *names[PACK_MAX_FILES];
  size_t n = 0;
  struct dirent *de;
  int rc = 0;
  while ((de = readdir(d)) != NULL) {
    size_t len = strlen(de->d_name);
    if (de->d_name[0] == '.' || !((len > 4 && strcmp(de->d_name + len - 4, ".yar") == 0) ||
                                  (len > 5 && strcmp(de->d_name + len - 5, ".yara") == 0)))
      continue;
    if (n == PACK_MAX_FILES) {
      rc = YM_ETOOBIG;
      break;
    }
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof(char *), cmp_names);
  for (size_t i = 0; i < n && rc == 0; i++) {
    char path[4200];
    ym_buf_t src;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path)) {
      rc = YM_ETOOBIG;
      break;
    }
    rc = read_file(path, PACK_MAX_FILE_BYTES, &src);
    char *copy = rc == 0 ? malloc(src.len + 1) : NULL;
    if (rc == 0 && copy == NULL)
      rc = YM_ENOMEM;
    if (rc == 0) {
      if (src.len > 0)
        memcpy(copy, src.data, src.len);
      rc = pack_put(l, names[i], copy, src.len);
      l->yara++;
    }
    ym_buf_free(&src);
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  if (rc == 0)
    rc = pack_sigma(dir, l);
  for (size_t i = 0; i < l->n; i++)
    l->sigma += strncmp(l->v[i].name, "sigma/", 6) == 0;
  if (rc == 0 && l->sigma > PACK_MAX_SIGMA_FILES) {
    fprintf(stderr,
            "yamori-console: %zu behaviour rule files, over the %d an agent loads from one"
            " directory (put more rules into fewer files)\n",
            (size_t)l->sigma, PACK_MAX_SIGMA_FILES);
    rc = YM_ETOOBIG;
  }
  if (rc == 0 && l->n == 0)
    rc = YM_ENOENT;
  ym_buf_t tar;
  ym_buf_init(&tar, RULES_BUNDLE_MAX);
  for (size_t i = 0; i < l->n && rc == 0; i++)
    rc = tar_add(&tar, l->v[i].name, l->v[i].data, l->v[i].len);
  static const char zero[1024];
  if (rc == 0)
    rc = ym_buf_append(&tar, zero, sizeof(zero));
  if (rc == 0)
    rc = gzip_buf(&tar, gz);
  ym_buf_free(&tar);
  return rc;
}

typedef struct {
  const cli_t *c;
  const ym_buf_t *bundle;
  char version[64];
  uint64_t serial;
} publish_t;

static int publish_fn(sqlite3 *db, void *arg) {
  publish_t *p = arg;
  const cli_t *c = p->c;
  int64_t tid = 0;
  int rc = c->tenant ? tenant_id_of(db, c->tenant, &tid) : 0;
  if (rc != 0)
    return rc;
  sqlite3_stmt *st = NULL;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return YM_EIO;
  p->serial = (uint64_t)c->serial;
  if (p->serial == 0) {
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(serial), 0) + 1 FROM rule_bundles", -1, &st,
                           NULL) != SQLITE_OK)
      goto fail;
    sqlite3_step(st);
    p->serial = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  if (c->version)
    snprintf(p->version, sizeof(p->version), "%s", c->version);
  else
    snprintf(p->version, sizeof(p->version), "r%llu", (unsigned long long)p->serial);
  ym_manifest_t m = {0};
  snprintf(m.product, sizeof(m.product), YM_MANIFEST_PRODUCT_RULES);
  snprintf(m.platform, sizeof(m.platform), "any");
  snprintf(m.arch, sizeof(m.arch), "any");
  snprintf(m.version, sizeof(m.version), "%s", p->version);
  snprintf(m.channel, sizeof(m.channel), "stable");
  snprintf(m.scope, sizeof(m.scope), "%s", tid ? "tenant" : "default");
  /* The company is signed into the manifest: agents of other companies
   * refuse the bundle even if it is offered to them. */
  snprintf(m.tenant, sizeof(m.tenant), "%s", tid ? c->tenant : YM_MANIFEST_TENANT_ALL);
  snprintf(m.url, sizeof(m.url), "/api/v1/rules/%s", p->version);
  m.serial = p->serial;
  m.size = p->bundle->len;
  m.expires = (int64_t)time(NULL) + (c->expires_days ? c->expires_days : 365) * 86400;
  ym_sha256_mem(p->bundle->data, p->bundle->len, m.sha256);
  ym_buf_t mt, env;
  ym_buf_init(&mt, 16384);
  ym_buf_init(&env, YM_SIGN_ENVELOPE_MAX);
  uint8_t priv[YM_SIGN_KEY_LEN];
  rc = ym_manifest_write(&m, &mt);
  if (rc == 0)
    rc = ym_sign_read_private(c->key, priv);
  if (rc == 0)
    rc = ym_sign_envelope(priv, mt.data, mt.len, &env);
  memset(priv, 0, sizeof(priv));
  if (rc == 0) {
    char sha[YM_SHA256_HEX_LEN + 1];
    ym_hex(m.sha256, 32, sha);
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO rule_bundles(serial, tenant_id, version, size, sha256, "
                           "envelope, bundle, published_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                           -1, &st, NULL) != SQLITE_OK)
      rc = YM_EIO;
    else {
      sqlite3_bind_int64(st, 1, (int64_t)p->serial);
      sqlite3_bind_int64(st, 2, tid);
      sqlite3_bind_text(st, 3, p->version, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 4, (int64_t)m.size);
      sqlite3_bind_text(st, 5, sha, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 6, env.data, (int)env.len, SQLITE_STATIC);
      sqlite3_bind_blob(st, 7, p->bundle->data, (int)p->bundle->len, SQLITE_STATIC);
      sqlite3_bind_int64(st, 8, (int64_t)time(NULL));
      int step = sqlite3_step(st);
      rc = step == SQLITE_DONE ? 0 : (step == SQLITE_CONSTRAINT ? YM_EEXIST : YM_EIO);
      sqlite3_finalize(st);
    }
  }
  ym_buf_free(&mt);
  ym_buf_free(&env);
  if (rc != 0)
    goto fail_rc;
  return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : YM_EIO;
fail:
  rc = YM_EIO;
fail_rc:
  sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

static int cmd_publish(const cli_t *c, int argc, char **argv) {
  char tdir[4200];
  const char *dir = argc == 1 ? argv[0] : NULL;
  if (argc == 0 && c->tenant != NULL && bundle_name_ok(c->tenant)) {
    /* What `rules import-sigma --tenant T` wrote. */
    snprintf(tdir, sizeof(tdir), "%s/rules/%s", c->data_dir, c->tenant);
    dir = tdir;
  }
  if (c->key == NULL || dir == NULL) {
    fprintf(stderr, "yamori-console: rules publish --key K [--tenant T] [--version V] DIR\n");
    return EXIT_USAGE;
  }
  if (c->version != NULL && !ym_manifest_version_ok(c->version)) {
    fprintf(stderr, "yamori-console: --version may hold only 0-9 A-Z a-z . _ + -\n");
    return EXIT_USAGE;
  }
  ym_buf_t gz;
  packlist_t files = {0};
  ym_buf_init(&gz, RULES_BUNDLE_MAX);
  int rc = pack_rules(dir, &gz, &files);
  /* A default set replaces the agent's installed rules, so it must hold
   * YARA rules (the agent refuses a rule set without any). */
  if (rc == 0 && c->tenant == NULL && files.yara == 0)
    rc = YM_ENOENT;
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot pack the rules in %s: %s\n", dir,
            rc == YM_ENOENT   ? (c->tenant ? "no *.yar, *.yara or sigma/ files"
                                           : "no *.yar or *.yara files (a default set needs them)")
            : rc == YM_EPARSE ? "behaviour rules refused (above)"
                              : ym_strerror(rc));
    ym_buf_free(&gz);
    packlist_free(&files);
    return 1;
  }
  store_t *s = NULL;
  if ((rc = open_store(c, &s)) != 0) {
    ym_buf_free(&gz);
    packlist_free(&files);
    return 1;
  }
  publish_t p = {c, &gz, "", 0};
  rc = store_sync_call(s, publish_fn, &p);
  store_close(s);
  ym_buf_free(&gz);
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot publish: %s\n",
            rc == YM_ENOENT   ? "no such tenant"
            : rc == YM_EEXIST ? "that version or serial exists"
                              : ym_strerror(rc));
    packlist_free(&files);
    return 1;
  }
  if (c->tenant == NULL && files.sigma == 0)
    fprintf(stderr, "yamori-console: warning: this default set holds no behaviour rules (sigma/); "
                    "agents that accept it no longer load the installed default behaviour rules\n");
  printf("rules %s (serial %llu, %zu files: %u YARA, %u behaviour) published for %s\n", p.version,
         (unsigned long long)p.serial, files.n, files.yara, files.sigma,
         c->tenant ? c->tenant : "every tenant");
  packlist_free(&files);
  return 0;
}

static int list_rules_fn(sqlite3 *db, void *arg) {
  (void)arg;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT b.serial, b.version, coalesce(t.name, '*'), b.size FROM "
                         "rule_bundles b LEFT JOIN tenants t ON t.id = b.tenant_id ORDER BY serial",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  while (sqlite3_step(st) == SQLITE_ROW)
    printf("%lld\t%s\t%s\t%lld bytes\n", (long long)sqlite3_column_int64(st, 0), sql_text(st, 1),
           sql_text(st, 2), (long long)sqlite3_column_int64(st, 3));
  sqlite3_finalize(st);
  return 0;
}

static int run_sync(const cli_t *c, store_fn fn, void *arg) {
  store_t *s = NULL;
  if (open_store(c, &s) != 0)
    return 1;
  int rc = store_sync_call(s, fn, arg);
  store_close(s);
  if (rc != 0)
    fprintf(stderr, "yamori-console: %s\n", rc == YM_ENOENT ? "no such tenant" : ym_strerror(rc));
  return rc == 0 ? 0 : 1;
}

int release_main(const char *data_dir, int argc, char **argv) {
  enum {
    O_KEY = 256,
    O_OUT,
    O_MANIFEST,
    O_PACKAGE,
    O_VERSION,
    O_SERIAL,
    O_CHANNEL,
    O_PLATFORM,
    O_ARCH,
    O_PRODUCT,
    O_URL,
    O_EXPIRES,
    O_UNCHECKED,
    O_TENANT,
    O_PERCENT,
    O_PIN,
    O_UNPIN,
    O_PAUSE,
    O_RESUME
  };
  static const struct option longopts[] = {{"data-dir", required_argument, NULL, 'd'},
                                           {"key", required_argument, NULL, O_KEY},
                                           {"out", required_argument, NULL, O_OUT},
                                           {"manifest", required_argument, NULL, O_MANIFEST},
                                           {"package", required_argument, NULL, O_PACKAGE},
                                           {"version", required_argument, NULL, O_VERSION},
                                           {"serial", required_argument, NULL, O_SERIAL},
                                           {"channel", required_argument, NULL, O_CHANNEL},
                                           {"platform", required_argument, NULL, O_PLATFORM},
                                           {"arch", required_argument, NULL, O_ARCH},
                                           {"product", required_argument, NULL, O_PRODUCT},
                                           {"url", required_argument, NULL, O_URL},
                                           {"expires", required_argument, NULL, O_EXPIRES},
                                           {"unchecked", no_argument, NULL, O_UNCHECKED},
                                           {"tenant", required_argument, NULL, O_TENANT},
                                           {"percent", required_argument, NULL, O_PERCENT},
                                           {"pin", required_argument, NULL, O_PIN},
                                           {"unpin", no_argument, NULL, O_UNPIN},
                                           {"pause", no_argument, NULL, O_PAUSE},
                                           {"resume", no_argument, NULL, O_RESUME},
                                           {NULL, 0, NULL, 0}};
  cli_t c = {0};
  c.data_dir = data_dir;
  c.percent = -1;
  const char *what = argv[0];
  if (argc < 2)
    return EXIT_USAGE;
  const char *sub = argv[1];
  int opt;
  optind = 2;
  while ((opt = getopt_long(argc, argv, "d:", longopts, NULL)) != -1) {
    switch (opt) {
    case 'd':
      c.data_dir = optarg;
      break;
    case O_KEY:
      c.key = optarg;
      break;
    case O_OUT:
      c.out = optarg;
      break;
    case O_MANIFEST:
      c.manifest = optarg;
      break;
    case O_PACKAGE:
      c.package = optarg;
      break;
    case O_VERSION:
      c.version = optarg;
      break;
    case O_SERIAL:
      c.serial = strtoll(optarg, NULL, 10);
      break;
    case O_CHANNEL:
      c.channel = optarg;
      break;
    case O_PLATFORM:
      c.platform = optarg;
      break;
    case O_ARCH:
      c.arch = optarg;
      break;
    case O_PRODUCT:
      c.product = optarg;
      break;
    case O_URL:
      c.url = optarg;
      break;
    case O_EXPIRES:
      c.expires_days = strtoll(optarg, NULL, 10);
      break;
    case O_UNCHECKED:
      c.unchecked = true;
      break;
    case O_TENANT:
      c.tenant = optarg;
      break;
    case O_PERCENT:
      c.percent = strtoll(optarg, NULL, 10);
      break;
    case O_PIN:
      c.pin = optarg;
      break;
    case O_UNPIN:
      c.unpin = true;
      break;
    case O_PAUSE:
      c.pause = true;
      break;
    case O_RESUME:
      c.resume = true;
      break;
    default:
      return EXIT_USAGE;
    }
  }
  int nargs = argc - optind;
  char **args = argv + optind;
  if (strcmp(what, "release") == 0) {
    if (strcmp(sub, "keygen") == 0 && nargs == 0)
      return cmd_keygen(&c);
    if (strcmp(sub, "sign") == 0 && nargs == 0)
      return cmd_sign(&c);
    if (strcmp(sub, "import") == 0)
      return cmd_import(&c, nargs, args);
    if (strcmp(sub, "list") == 0 && nargs == 0)
      return run_sync(&c, list_releases_fn, NULL);
  } else if (strcmp(what, "rollout") == 0) {
    if (strcmp(sub, "set") == 0 && nargs == 0) {
      if (c.tenant == NULL || c.percent > 100 || (c.pin && !ym_manifest_version_ok(c.pin))) {
        fprintf(stderr, "yamori-console: rollout set --tenant T|'*' [--channel C] [--percent "
                        "0-100] [--pin V|--unpin] [--pause|--resume]\n");
        return EXIT_USAGE;
      }
      return run_sync(&c, rollout_set_fn, &c);
    }
    if (strcmp(sub, "list") == 0 && nargs == 0)
      return run_sync(&c, rollout_list_fn, NULL);
  } else if (strcmp(what, "rules") == 0) {
    if (strcmp(sub, "publish") == 0)
      return cmd_publish(&c, nargs, args);
    if (strcmp(sub, "list") == 0 && nargs == 0)
      return run_sync(&c, list_rules_fn, NULL);
  }
  return EXIT_USAGE;
}
