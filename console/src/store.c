/*
 * The console's store on SQLite.
 *
 * One connection, opened by store_open() on data_dir/yamori.db (created
 * with mode 0600: it holds secret hashes and customer events), in WAL mode
 * with synchronous=FULL, foreign keys on and a busy timeout for the
 * command-line tools that open the same file. store_open() then applies the
 * pending schema migrations, each in one transaction.
 *
 * Durability: the console acknowledges a batch only after its COMMIT has
 * returned, and the agent then deletes the batch from its spool. With
 * synchronous=NORMAL a WAL commit survives a crash of the console process
 * but not a power loss or kernel crash (the WAL is synced only at
 * checkpoints), so an acknowledged batch could be lost for good. FULL syncs
 * the WAL at every commit; the cost is one fsync per transaction, which the
 * database thread spreads over several batches when they queue up (group
 * commit, below).
 *
 * Threads: with a loop, the store starts one database thread. Each
 * asynchronous call copies its arguments into a job, queues it (mutex and
 * condition variable) and returns; the database thread runs jobs in order
 * and queues the finished ones back; a uv_async wakes the loop thread, which
 * runs the callbacks in the same order. The async handle is referenced only
 * while jobs are outstanding, so uv_run() returns once every callback has
 * run. Consecutive event batches waiting in the queue are written in one
 * transaction, each inside its own savepoint: a batch is still all or
 * nothing, and its callback still runs only after the COMMIT that holds it.
 * The synchronous calls run on the caller's thread; every use of the
 * connection holds db_lock, so they may also be used while the thread runs.
 *
 * Agent authentication is answered from an in-memory cache (agent id ->
 * SHA-256 of the secret, tenant) kept on the loop thread: filled by a
 * successful database check, invalidated when the agent enrolls again.
 * Because callbacks run in job order, a check queued before a re-enrollment
 * fills the cache before the re-enrollment's callback empties it.
 *
 * All SQL is constant text; values are bound parameters.
 */
#include "store.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DB_FILE "yamori.db"
#define BUSY_TIMEOUT_MS 5000

#define TOKEN_ID_LEN 16
#define SECRET_BYTES 32
#define SECRET_LEN 43 /* base64url of 32 bytes, no padding */
#define AGENT_ID_LEN 36
#define TENANT_NAME_MAX 63
#define TENANT_DISPLAY_MAX 256
#define ADMIN_PASSWORD_BYTES 24 /* 32 base64url characters */

/* Caps on strings that agents send; larger requests are refused with
 * YM_ETOOBIG. */
#define HOST_ID_MAX 128
#define HOSTNAME_MAX 256
#define VERSION_MAX 64
#define JSON_FIELD_MAX (64 * 1024)
#define ENROLL_AGENT_FIELD_MAX 128 /* agent id and secret offered as proof */

/* Group commit: at most this many queued batches (and events) share one
 * transaction, so that a transaction stays well within the page cache
 * (cache_size, 64 MiB). */
#define GROUP_MAX_BATCHES 32
#define GROUP_MAX_EVENTS 20000

#define STORE_MAX_HOOKS 8
#define STORE_MAX_READERS 8
#define MODULE_NAME_MAX 32

/* The authentication cache: AUTH_CACHE_SLOTS entries (a power of two); an
 * agent id may live in AUTH_CACHE_WAYS consecutive slots from its hash. */
#define AUTH_CACHE_SLOTS 16384
#define AUTH_CACHE_WAYS 8

/* Password hashing (scrypt). N * r * 128 bytes = 32 MiB of memory. */
#define SCRYPT_N 32768
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_SALT_LEN 16
#define SCRYPT_KEY_LEN 32
#define SCRYPT_MAXMEM (128u * 1024 * 1024)

/* ------------------------------------------------------------------ */
/* Schema                                                               */

/*
 * Migrations, applied in order, each in one transaction that also records
 * its number in schema_migrations. A migration is never edited once
 * released; a change to the schema is a new entry at the end.
 *
 * Times: *_at columns are unix seconds; last_seen, received_ms and ts_ms
 * are unix milliseconds. Secrets are stored as SHA-256 (32-byte blobs),
 * passwords as scrypt strings (store_password_verify()).
 */
static const char *const migrations[] = {
    /* 1: tenants, enrollment tokens, agents, events and people. */
    "CREATE TABLE tenants("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " display TEXT NOT NULL DEFAULT '',"
    " helpdesk TEXT NOT NULL DEFAULT '',"
    " created_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE tokens("
    " id TEXT PRIMARY KEY CHECK(length(id) = 16),"
    " tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
    " secret_hash BLOB NOT NULL CHECK(length(secret_hash) = 32),"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL DEFAULT 0," /* 0: never */
    " max_uses INTEGER NOT NULL DEFAULT 0,"   /* 0: unlimited */
    " uses INTEGER NOT NULL DEFAULT 0,"
    " revoked INTEGER NOT NULL DEFAULT 0"
    ") STRICT;"
    "CREATE INDEX tokens_tenant ON tokens(tenant_id);"
    "CREATE TABLE agents("
    " id TEXT PRIMARY KEY CHECK(length(id) = 36),"
    " tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
    " host_id TEXT NOT NULL DEFAULT '',"
    " host_name TEXT NOT NULL DEFAULT '',"
    " host_json TEXT NOT NULL DEFAULT '{}',"
    " secret_hash BLOB NOT NULL CHECK(length(secret_hash) = 32),"
    " token_id TEXT," /* the token of the last enrollment */
    " version TEXT NOT NULL DEFAULT '',"
    " rules_version TEXT NOT NULL DEFAULT '',"
    " enrolled_at INTEGER NOT NULL,"
    " last_seen INTEGER NOT NULL DEFAULT 0,"
    " status_json TEXT NOT NULL DEFAULT '{}',"
    " revoked INTEGER NOT NULL DEFAULT 0"
    ") STRICT;"
    "CREATE UNIQUE INDEX agents_tenant_host ON agents(tenant_id, host_id) WHERE host_id != '';"
    "CREATE INDEX agents_tenant_seen ON agents(tenant_id, last_seen);"
    /* No foreign keys on events: a per-row check costs about a tenth of
     * the insert rate, and insert_events() checks the agent and its
     * tenant once per batch instead. */
    "CREATE TABLE events("
    " id INTEGER PRIMARY KEY,"
    " tenant_id INTEGER NOT NULL,"
    " agent_id TEXT NOT NULL,"
    " stream TEXT NOT NULL CHECK(stream IN ('alerts', 'bulk')),"
    " seq INTEGER NOT NULL,"
    " ts_ms INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL,"
    " kind TEXT,"
    " dataset TEXT,"
    " action TEXT,"
    " json TEXT NOT NULL,"
    " UNIQUE(agent_id, stream, seq)"
    ") STRICT;"
    "CREATE INDEX events_tenant_time ON events(tenant_id, ts_ms);"
    "CREATE INDEX events_agent_time ON events(agent_id, ts_ms);"
    "CREATE INDEX events_tenant_alerts ON events(tenant_id, ts_ms) WHERE kind = 'alert';"
    "CREATE TABLE users("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " tenant_id INTEGER REFERENCES tenants(id)," /* NULL: provider staff */
    " role TEXT NOT NULL CHECK(role IN ('admin', 'operator', 'viewer')),"
    " password_hash TEXT NOT NULL,"
    " created_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX users_tenant ON users(tenant_id);",
    /* 2: an enrollment with a token alone makes a new record, so several
     * agents of a tenant may share a host id (shown as duplicates, never
     * merged); tokens say what they were made for; the highest committed
     * sequence number of each agent's stream, which later batches may
     * not run far ahead of (kept when events are pruned). */
    "DROP INDEX agents_tenant_host;"
    "CREATE INDEX agents_tenant_host ON agents(tenant_id, host_id) WHERE host_id != '';"
    "ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'manual'"
    " CHECK(kind IN ('manual', 'installer'));"
    "CREATE TABLE agent_streams("
    " agent_id TEXT NOT NULL,"
    " stream TEXT NOT NULL,"
    " high INTEGER NOT NULL,"
    " high_ms INTEGER NOT NULL,"
    " PRIMARY KEY(agent_id, stream)"
    ") STRICT, WITHOUT ROWID;"
    "INSERT INTO agent_streams(agent_id, stream, high, high_ms)"
    " SELECT agent_id, stream, MAX(seq), MAX(received_ms) FROM events GROUP BY agent_id, stream;",
};

#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

/* Prepared statements, made on first use and kept until store_close. */
enum {
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_SAVEPOINT,
  ST_RELEASE,
  ST_ROLLBACK_TO,
  ST_SCHEMA_VERSION,
  ST_SCHEMA_RECORD,
  ST_TENANT_ADD,
  ST_TENANT_LIST,
  ST_TENANT_BY_NAME,
  ST_TOKEN_ADD,
  ST_TOKEN_REVOKE,
  ST_TOKEN_GET,
  ST_TOKEN_USE,
  ST_AGENT_PROOF,
  ST_AGENT_ADD,
  ST_AGENT_REENROLL,
  ST_AGENT_AUTH,
  ST_AGENT_CHECKIN,
  ST_AGENT_TENANT,
  ST_EVENT_ADD,
  ST_STREAM_HIGH,
  ST_STREAM_SET,
  ST_USER_ANY,
  ST_USER_ADD,
  ST_COUNT_
};

static const char *const stmt_sql[ST_COUNT_] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT batch",
    [ST_RELEASE] = "RELEASE batch",
    [ST_ROLLBACK_TO] = "ROLLBACK TO batch",
    [ST_SCHEMA_VERSION] = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
    [ST_SCHEMA_RECORD] = "INSERT INTO schema_migrations(version, applied_at) VALUES(?1, ?2)",
    [ST_TENANT_ADD] = "INSERT INTO tenants(name, display, created_at) VALUES(?1, ?2, ?3)",
    [ST_TENANT_LIST] = "SELECT t.id, t.name, t.display,"
                       " (SELECT COUNT(*) FROM agents a WHERE a.tenant_id = t.id)"
                       " FROM tenants t ORDER BY t.name",
    [ST_TENANT_BY_NAME] = "SELECT id FROM tenants WHERE name = ?1",
    [ST_TOKEN_ADD] = "INSERT INTO tokens(id, tenant_id, secret_hash, created_at, expires_at,"
                     " max_uses, kind) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_TOKEN_REVOKE] = "UPDATE tokens SET revoked = 1 WHERE id = ?1",
    [ST_TOKEN_GET] = "SELECT t.tenant_id, t.secret_hash, t.expires_at, t.max_uses, t.uses,"
                     " t.revoked, n.name FROM tokens t JOIN tenants n ON n.id = t.tenant_id"
                     " WHERE t.id = ?1",
    [ST_TOKEN_USE] = "UPDATE tokens SET uses = uses + 1 WHERE id = ?1",
    [ST_AGENT_PROOF] = "SELECT a.tenant_id, a.secret_hash, a.revoked, n.name FROM agents a"
                       " JOIN tenants n ON n.id = a.tenant_id WHERE a.id = ?1",
    [ST_AGENT_ADD] = "INSERT INTO agents(id, tenant_id, host_id, host_name, host_json,"
                     " secret_hash, token_id, version, enrolled_at)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_AGENT_REENROLL] = "UPDATE agents SET host_name = ?2, host_json = ?3, secret_hash = ?4,"
                          " version = ?5, enrolled_at = ?6 WHERE id = ?1 AND revoked = 0",
    [ST_AGENT_AUTH] = "SELECT tenant_id, secret_hash FROM agents WHERE id = ?1 AND revoked = 0",
    [ST_AGENT_CHECKIN] = "UPDATE agents SET last_seen = ?2, version = ?3, rules_version = ?4,"
                         " status_json = ?5 WHERE id = ?1",
    [ST_AGENT_TENANT] = "SELECT tenant_id FROM agents WHERE id = ?1",
    [ST_EVENT_ADD] = "INSERT OR IGNORE INTO events(tenant_id, agent_id, stream, seq, ts_ms,"
                     " received_ms, kind, dataset, action, json)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_STREAM_HIGH] =
        "SELECT high, high_ms FROM agent_streams WHERE agent_id = ?1 AND stream = ?2",
    [ST_STREAM_SET] = "INSERT INTO agent_streams(agent_id, stream, high, high_ms)"
                      " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(agent_id, stream) DO UPDATE"
                      " SET high = excluded.high, high_ms = excluded.high_ms"
                      " WHERE excluded.high > agent_streams.high",
    [ST_USER_ANY] = "SELECT EXISTS(SELECT 1 FROM users)",
    [ST_USER_ADD] = "INSERT INTO users(name, tenant_id, role, password_hash, created_at)"
                    " VALUES(?1, NULL, 'admin', ?2, ?3)",
};

/* ------------------------------------------------------------------ */
/* Types                                                                */

typedef enum { JOB_ENROLL, JOB_AUTH, JOB_BATCH, JOB_CHECKIN, JOB_CALL } job_kind_t;

typedef struct job {
  struct job *next;
  job_kind_t kind;
  int rc;
  void *data;
  union {
    store_enroll_cb enroll;
    store_auth_cb auth;
    store_batch_cb batch;
    store_done_cb done;
  } cb;
  void *mem; /* copies of the caller's strings and events; freed with the job */
  union {
    struct {
      store_enroll_t req; /* strings point into mem */
      const char *reason;
      char agent_id[AGENT_ID_LEN + 1];
      char secret[SECRET_LEN + 1];
      char tenant[TENANT_NAME_MAX + 1];
    } enroll;
    struct {
      char agent_id[AGENT_ID_LEN + 1];
      uint8_t hash[YM_SHA256_LEN];
      int64_t tenant_id;
      uint64_t epoch; /* revocations when the check ran */
    } auth;
    struct {
      char agent_id[AGENT_ID_LEN + 1];
      char stream[16];
      int64_t tenant_id;
      store_event_t *events; /* in mem */
      int64_t *row_ids;      /* in mem: the new rows' ids, 0 for duplicates */
      size_t n, inserted;
    } batch;
    struct {
      char agent_id[AGENT_ID_LEN + 1];
      const char *version, *rules_version, *status_json; /* in mem */
    } checkin;
    struct {
      store_fn fn;
      void *arg;
    } call;
  } u;
} job_t;

typedef struct {
  job_t *head, *tail;
} job_list_t;

typedef struct {
  char agent_id[AGENT_ID_LEN + 1]; /* "" when the slot is free */
  uint8_t hash[YM_SHA256_LEN];
  int64_t tenant_id;
} cache_entry_t;

struct store {
  sqlite3 *db;
  sqlite3_stmt *stmts[ST_COUNT_];
  uv_mutex_t db_lock; /* held by every use of db and stmts */

  /* Asynchronous use (loop != NULL). */
  uv_loop_t *loop;
  uv_async_t *async; /* allocated: freed by its close callback */
  uv_thread_t thread;
  bool thread_started;
  uv_mutex_t lock; /* protects jobs, done, stopping and stats */
  uv_cond_t cond;
  job_list_t jobs, done;
  bool stopping;
  store_stats_t stats;

  /* Batch hooks (set before the first batch; read on the database thread). */
  struct {
    store_batch_hook fn;
    void *data;
  } hooks[STORE_MAX_HOOKS];
  size_t n_hooks;
  struct {
    store_enroll_hook fn;
    void *data;
  } enroll_hooks[STORE_MAX_HOOKS];
  size_t n_enroll_hooks;

  /* Read-only connections for store_read(), kept for reuse. */
  char *path;
  uv_mutex_t readers_lock;
  sqlite3 *readers[STORE_MAX_READERS];
  size_t n_readers;

  /* Loop thread only. */
  size_t pending; /* jobs submitted whose callback has not run */
  bool async_refd;
  cache_entry_t *cache;
  unsigned cache_clock;
  uint64_t cache_seen; /* the revocation epoch the cache was emptied for */

  /* Bumped (any thread) when an agent is revoked: the loop thread empties
   * the cache when it sees a new value, and an authentication checked
   * under an older one is not cached. */
  _Atomic uint64_t revocations;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_s(void) {
  return now_ms() / 1000;
}

/* Translates an SQLite result code (primary or extended) into a YM_E* code. */
static int db_err(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_DONE:
  case SQLITE_ROW:
    return 0;
  case SQLITE_NOMEM:
    return YM_ENOMEM;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return YM_EBUSY;
  case SQLITE_FULL:
    return YM_ENOSPC;
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB:
    return YM_ECORRUPT;
  case SQLITE_CONSTRAINT:
    return YM_EEXIST;
  case SQLITE_READONLY:
  case SQLITE_PERM:
  case SQLITE_AUTH:
    return YM_EPERM;
  case SQLITE_TOOBIG:
    return YM_ETOOBIG;
  case SQLITE_MISUSE:
  case SQLITE_RANGE:
    return YM_EINVAL;
  default:
    return YM_EIO;
  }
}

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Writes base64url of in[0..n) without padding to out (4n/3 rounded up
 * characters, then a NUL). */
static void b64url_encode(const uint8_t *in, size_t n, char *out) {
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64url_chars[v >> 18];
    out[o++] = b64url_chars[(v >> 12) & 63];
    out[o++] = b64url_chars[(v >> 6) & 63];
    out[o++] = b64url_chars[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = b64url_chars[v >> 18];
    out[o++] = b64url_chars[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = b64url_chars[v >> 18];
    out[o++] = b64url_chars[(v >> 12) & 63];
    out[o++] = b64url_chars[(v >> 6) & 63];
  }
  out[o] = '\0';
}

static int b64url_value(char c) {
  const char *p = c != '\0' ? strchr(b64url_chars, c) : NULL;
  return p != NULL ? (int)(p - b64url_chars) : -1;
}

/* Decodes base64url without padding from in[0..len) into out (at most max
 * bytes). Returns the number of bytes, or -1 when the text is not
 * canonical base64url or does not fit. */
static long b64url_decode(const char *in, size_t len, uint8_t *out, size_t max) {
  if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > max)
    return -1;
  size_t o = 0;
  uint32_t acc = 0;
  unsigned bits = 0;
  for (size_t i = 0; i < len; i++) {
    int v = b64url_value(in[i]);
    if (v < 0)
      return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) /* leftover bits must be zero */
    return -1;
  return (long)o;
}

/* True when s is exactly n lower-case hex digits (reading stops at a NUL,
 * which is not a digit). */
static bool is_lower_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  }
  return s[n] == '\0';
}

/* True for the agent ids this store hands out: a lower-case UUID. */
static bool is_agent_id(const char *s) {
  if (s == NULL || strlen(s) != AGENT_ID_LEN)
    return false;
  for (size_t i = 0; i < AGENT_ID_LEN; i++) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    bool hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
    if (dash ? s[i] != '-' : !hex)
      return false;
  }
  return true;
}

/* Tenant names are slugs: 1 to 63 characters of [a-z0-9._-], starting with
 * a letter or digit. */
static bool is_tenant_name(const char *s) {
  size_t n = s != NULL ? strlen(s) : 0;
  if (n == 0 || n > TENANT_NAME_MAX)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
      return false;
  }
  return true;
}

/* Writes a new random UUID (version 4) to out. Returns 0 or YM_ECRYPTO. */
static int uuid_v4(char out[AGENT_ID_LEN + 1]) {
  uint8_t b[16];
  char hex[33];
  if (RAND_bytes(b, sizeof(b)) != 1)
    return YM_ECRYPTO;
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
  ym_hex(b, sizeof(b), hex);
  snprintf(out, AGENT_ID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
           hex + 20);
  return 0;
}

/* Makes a new secret: 32 random bytes as 43 base64url characters, and its
 * SHA-256. Returns 0, YM_ECRYPTO. */
static int secret_new(char secret[SECRET_LEN + 1], uint8_t hash[YM_SHA256_LEN]) {
  uint8_t raw[SECRET_BYTES];
  if (RAND_bytes(raw, sizeof(raw)) != 1)
    return YM_ECRYPTO;
  b64url_encode(raw, sizeof(raw), secret);
  OPENSSL_cleanse(raw, sizeof(raw));
  return ym_sha256_mem(secret, SECRET_LEN, hash);
}

static size_t str_len_or_0(const char *s) {
  return s != NULL ? strlen(s) : 0;
}

/* ------------------------------------------------------------------ */
/* Statements and transactions (db_lock held)                           */

/* Returns the prepared statement id, preparing it on first use, or NULL
 * (out of memory or a schema error: a bug). */
static sqlite3_stmt *stmt(store_t *s, int id) {
  if (s->stmts[id] == NULL && sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                                 &s->stmts[id], NULL) != SQLITE_OK)
    return NULL;
  return s->stmts[id];
}

/* Readies a statement for its next use. */
static void stmt_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Runs a statement that returns no row. Returns 0 or a YM_E* code. */
static int exec_stmt(store_t *s, int id) {
  sqlite3_stmt *st = stmt(s, id);
  if (st == NULL)
    return db_err(sqlite3_errcode(s->db));
  int rc = sqlite3_step(st);
  stmt_done(st);
  return rc == SQLITE_DONE ? 0 : db_err(rc);
}

/* Runs a statement that returns no row with ?1 bound to text. */
static int exec_stmt_text(store_t *s, int id, const char *text) {
  sqlite3_stmt *st = stmt(s, id);
  if (st == NULL)
    return db_err(sqlite3_errcode(s->db));
  sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  stmt_done(st);
  return rc == SQLITE_DONE ? 0 : db_err(rc);
}

static int tx_begin(store_t *s) {
  return exec_stmt(s, ST_BEGIN);
}

static int tx_commit(store_t *s) {
  int rc = exec_stmt(s, ST_COMMIT);
  if (rc != 0 && !sqlite3_get_autocommit(s->db))
    exec_stmt(s, ST_ROLLBACK);
  return rc;
}

static void tx_rollback(store_t *s) {
  if (!sqlite3_get_autocommit(s->db))
    exec_stmt(s, ST_ROLLBACK);
}

static int bind_text(sqlite3_stmt *st, int i, const char *v) {
  return v != NULL ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* ------------------------------------------------------------------ */
/* Opening and migrations                                               */

/* Applies the migrations the database lacks, each in its own IMMEDIATE
 * transaction (so that two processes opening a new file at once do not
 * both apply one). Returns 0, YM_ENOTSUP when the file was written by a
 * newer console (its schema is unknown here), or a YM_E* code. */
static int migrate(store_t *s) {
  int rc = db_err(sqlite3_exec(s->db,
                               "CREATE TABLE IF NOT EXISTS schema_migrations("
                               " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
                               NULL, NULL, NULL));
  for (size_t v = 1; rc == 0 && v <= N_MIGRATIONS; v++) {
    rc = tx_begin(s);
    if (rc != 0)
      break;
    sqlite3_stmt *st = stmt(s, ST_SCHEMA_VERSION);
    int64_t cur = -1;
    if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
      cur = sqlite3_column_int64(st, 0);
    if (st != NULL)
      stmt_done(st);
    if (cur < 0)
      rc = YM_EIO;
    else if (cur > (int64_t)N_MIGRATIONS)
      rc = YM_ENOTSUP;
    else if (cur < (int64_t)v) {
      rc = db_err(sqlite3_exec(s->db, migrations[v - 1], NULL, NULL, NULL));
      st = rc == 0 ? stmt(s, ST_SCHEMA_RECORD) : NULL;
      if (rc == 0 && st == NULL)
        rc = YM_EIO;
      if (rc == 0) {
        sqlite3_bind_int64(st, 1, (int64_t)v);
        sqlite3_bind_int64(st, 2, now_s());
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(sqlite3_errcode(s->db));
        stmt_done(st);
      }
    }
    if (rc == 0)
      rc = tx_commit(s);
    else
      tx_rollback(s);
  }
  return rc;
}

/* Sets the connection's options. journal_mode answers with the mode in
 * effect, which must be WAL. */
static int configure(store_t *s) {
  sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
  sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
  sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
  if (rc != SQLITE_OK)
    return db_err(rc);
  rc = sqlite3_step(st);
  const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
  bool wal = mode != NULL && strcmp((const char *)mode, "wal") == 0;
  rc = rc == SQLITE_ROW ? 0 : db_err(rc);
  sqlite3_finalize(st);
  if (rc != 0)
    return rc;
  if (!wal)
    return YM_ENOTSUP;
  return db_err(sqlite3_exec(s->db,
                             "PRAGMA synchronous=FULL;"
                             "PRAGMA foreign_keys=ON;"
                             "PRAGMA temp_store=MEMORY;"
                             "PRAGMA cache_size=-65536",
                             NULL, NULL, NULL));
}

static void on_async(uv_async_t *h);
static void db_thread(void *arg);

int store_open(const char *data_dir, uv_loop_t *loop, store_t **out) {
  char path[4096];
  *out = NULL;
  int n = snprintf(path, sizeof(path), "%s/%s", data_dir, DB_FILE);
  if (n < 0 || (size_t)n >= sizeof(path))
    return YM_EINVAL;
  /* Create the file 0600 before SQLite does (it would use 0644); the WAL
   * and shared-memory files take the database file's mode. */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return ym_err_from_errno(errno);
  close(fd);

  store_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return YM_ENOMEM;
  int rc = db_err(sqlite3_open_v2(path, &s->db,
                                  SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                      SQLITE_OPEN_NOFOLLOW,
                                  NULL));
  if (rc == 0 && s->db == NULL)
    rc = YM_ENOMEM;
  if (rc != 0)
    goto out_close_db;
  sqlite3_extended_result_codes(s->db, 1);
  rc = configure(s);
  if (rc == 0)
    rc = migrate(s);
  if (rc != 0)
    goto out_close_db;

  s->path = strdup(path);
  if (s->path == NULL) {
    rc = YM_ENOMEM;
    goto out_close_db;
  }
  uv_mutex_init(&s->db_lock);
  uv_mutex_init(&s->readers_lock);
  uv_mutex_init(&s->lock);
  uv_cond_init(&s->cond);
  if (loop != NULL) {
    s->loop = loop;
    s->cache = calloc(AUTH_CACHE_SLOTS, sizeof(*s->cache));
    s->async = calloc(1, sizeof(*s->async));
    if (s->cache == NULL || s->async == NULL)
      abort(); /* fixed-size control structures */
    uv_async_init(loop, s->async, on_async);
    s->async->data = s;
    uv_unref((uv_handle_t *)s->async);
    if (uv_thread_create(&s->thread, db_thread, s) != 0)
      abort(); /* no thread at start: nothing useful can follow */
    s->thread_started = true;
  }
  *out = s;
  return 0;

out_close_db:
  for (int i = 0; i < ST_COUNT_; i++)
    sqlite3_finalize(s->stmts[i]);
  sqlite3_close_v2(s->db);
  free(s);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Synchronous calls                                                    */

int store_sync_tenant_add(store_t *s, const char *name, const char *display, int64_t *id) {
  if (!is_tenant_name(name))
    return YM_EINVAL;
  if (display == NULL)
    display = "";
  if (strlen(display) > TENANT_DISPLAY_MAX || !ym_json_utf8_valid(display, strlen(display)))
    return YM_EINVAL;
  uv_mutex_lock(&s->db_lock);
  int rc = YM_EIO;
  sqlite3_stmt *st = stmt(s, ST_TENANT_ADD);
  if (st != NULL) {
    bind_text(st, 1, name);
    bind_text(st, 2, display);
    sqlite3_bind_int64(st, 3, now_s());
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(sqlite3_extended_errcode(s->db));
    stmt_done(st);
    if (rc == 0 && id != NULL)
      *id = sqlite3_last_insert_rowid(s->db);
  }
  uv_mutex_unlock(&s->db_lock);
  return rc;
}

int store_sync_tenant_list(store_t *s,
                           void (*fn)(int64_t id, const char *name, const char *display,
                                      int64_t agents, void *d),
                           void *data) {
  uv_mutex_lock(&s->db_lock);
  int rc = YM_EIO;
  sqlite3_stmt *st = stmt(s, ST_TENANT_LIST);
  if (st != NULL) {
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
      fn(sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
         (const char *)sqlite3_column_text(st, 2), sqlite3_column_int64(st, 3), data);
    rc = r == SQLITE_DONE ? 0 : db_err(r);
    stmt_done(st);
  }
  uv_mutex_unlock(&s->db_lock);
  return rc;
}

/* Looks up a tenant's id by name. Returns 0, YM_ENOENT or a YM_E* code. */
static int tenant_id_of(store_t *s, const char *name, int64_t *id) {
  sqlite3_stmt *st = stmt(s, ST_TENANT_BY_NAME);
  if (st == NULL)
    return YM_EIO;
  bind_text(st, 1, name);
  int r = sqlite3_step(st);
  int rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? YM_ENOENT : db_err(r);
  if (rc == 0)
    *id = sqlite3_column_int64(st, 0);
  stmt_done(st);
  return rc;
}

int store_sync_token_create(store_t *s, const char *tenant, int64_t expires_at, int64_t max_uses,
                            char token_id[17], char secret[44]) {
  uint8_t raw_id[TOKEN_ID_LEN / 2], hash[YM_SHA256_LEN];
  if (!is_tenant_name(tenant) || expires_at < 0 || max_uses < 0)
    return YM_EINVAL;
  if (RAND_bytes(raw_id, sizeof(raw_id)) != 1)
    return YM_ECRYPTO;
  ym_hex(raw_id, sizeof(raw_id), token_id);
  int rc = secret_new(secret, hash);
  if (rc != 0)
    return rc;
  uv_mutex_lock(&s->db_lock);
  int64_t tenant_id;
  rc = tenant_id_of(s, tenant, &tenant_id);
  sqlite3_stmt *st = rc == 0 ? stmt(s, ST_TOKEN_ADD) : NULL;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    bind_text(st, 1, token_id);
    sqlite3_bind_int64(st, 2, tenant_id);
    sqlite3_bind_blob(st, 3, hash, sizeof(hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_s());
    sqlite3_bind_int64(st, 5, expires_at);
    sqlite3_bind_int64(st, 6, max_uses);
    bind_text(st, 7, "manual");
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(sqlite3_extended_errcode(s->db));
    stmt_done(st);
  }
  uv_mutex_unlock(&s->db_lock);
  if (rc != 0) {
    OPENSSL_cleanse(secret, SECRET_LEN + 1);
    token_id[0] = secret[0] = '\0';
  }
  return rc;
}

int store_token_create_db(sqlite3 *db, int64_t tenant_id, int64_t expires_at, int64_t max_uses,
                          const char *kind, char token_id[17], char secret[44]) {
  uint8_t raw_id[TOKEN_ID_LEN / 2], hash[YM_SHA256_LEN];
  if (expires_at < 0 || max_uses < 0 || kind == NULL ||
      (strcmp(kind, "manual") != 0 && strcmp(kind, "installer") != 0))
    return YM_EINVAL;
  if (RAND_bytes(raw_id, sizeof(raw_id)) != 1)
    return YM_ECRYPTO;
  ym_hex(raw_id, sizeof(raw_id), token_id);
  int rc = secret_new(secret, hash);
  if (rc != 0)
    return rc;
  sqlite3_stmt *st = NULL;
  rc = db_err(sqlite3_prepare_v2(db, stmt_sql[ST_TOKEN_ADD], -1, &st, NULL));
  if (rc == 0) {
    bind_text(st, 1, token_id);
    sqlite3_bind_int64(st, 2, tenant_id);
    sqlite3_bind_blob(st, 3, hash, sizeof(hash), SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_s());
    sqlite3_bind_int64(st, 5, expires_at);
    sqlite3_bind_int64(st, 6, max_uses);
    bind_text(st, 7, kind);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(sqlite3_extended_errcode(db));
  }
  sqlite3_finalize(st);
  if (rc != 0) {
    OPENSSL_cleanse(secret, SECRET_LEN + 1);
    token_id[0] = secret[0] = '\0';
  }
  return rc;
}

int store_token_string(const char *url, const char *pin, const char *token_id, const char *secret,
                       char *out, size_t out_len) {
  char tok[TOKEN_ID_LEN + SECRET_LEN + 2];
  snprintf(tok, sizeof(tok), "%s.%s", token_id, secret);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "url", url);
  cJSON_AddStringToObject(j, "pin", pin);
  cJSON_AddStringToObject(j, "tok", tok);
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  OPENSSL_cleanse(tok, sizeof(tok));
  if (text == NULL)
    return YM_ENOMEM;
  size_t n = strlen(text);
  int rc = 5 + 4 * ((n + 2) / 3) + 1 <= out_len ? 0 : YM_ETOOBIG;
  if (rc == 0) {
    memcpy(out, "ymt1.", 5);
    b64url_encode((const uint8_t *)text, n, out + 5);
  }
  OPENSSL_cleanse(text, n);
  free(text);
  return rc;
}

int store_sync_token_revoke(store_t *s, const char *token_id) {
  if (token_id == NULL || !is_lower_hex(token_id, TOKEN_ID_LEN))
    return YM_EINVAL;
  uv_mutex_lock(&s->db_lock);
  int rc = YM_EIO;
  sqlite3_stmt *st = stmt(s, ST_TOKEN_REVOKE);
  if (st != NULL) {
    bind_text(st, 1, token_id);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(sqlite3_extended_errcode(s->db));
    if (rc == 0 && sqlite3_changes(s->db) == 0)
      rc = YM_ENOENT;
    stmt_done(st);
  }
  uv_mutex_unlock(&s->db_lock);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Passwords                                                            */

/* Writes "scrypt$N$r$p$<salt>$<hash>" (base64url without padding) for
 * password into out (out_len bytes). Returns 0, YM_ECRYPTO or YM_ETOOBIG. */
int store_password_hash(const char *password, char *out, size_t out_len) {
  uint8_t salt[SCRYPT_SALT_LEN], key[SCRYPT_KEY_LEN];
  char salt_b64[32], key_b64[48];
  if (RAND_bytes(salt, sizeof(salt)) != 1 ||
      EVP_PBE_scrypt(password, strlen(password), salt, sizeof(salt), SCRYPT_N, SCRYPT_R, SCRYPT_P,
                     SCRYPT_MAXMEM, key, sizeof(key)) != 1)
    return YM_ECRYPTO;
  b64url_encode(salt, sizeof(salt), salt_b64);
  b64url_encode(key, sizeof(key), key_b64);
  OPENSSL_cleanse(key, sizeof(key));
  int n = snprintf(out, out_len, "scrypt$%d$%d$%d$%s$%s", SCRYPT_N, SCRYPT_R, SCRYPT_P, salt_b64,
                   key_b64);
  return n > 0 && (size_t)n < out_len ? 0 : YM_ETOOBIG;
}

/* Reads a decimal field of a password hash ending at '$'. */
static bool parse_field(const char **p, uint64_t max, uint64_t *out) {
  uint64_t v = 0;
  const char *q = *p;
  if (*q < '0' || *q > '9')
    return false;
  while (*q >= '0' && *q <= '9') {
    v = v * 10 + (uint64_t)(*q - '0');
    if (v > max)
      return false;
    q++;
  }
  if (*q != '$')
    return false;
  *out = v;
  *p = q + 1;
  return true;
}

int store_password_verify(const char *hash, const char *password) {
  uint64_t n, r, p;
  uint8_t salt[64], want[64], got[64];
  if (hash == NULL || password == NULL || strncmp(hash, "scrypt$", 7) != 0)
    return YM_EINVAL;
  const char *q = hash + 7;
  if (!parse_field(&q, 1u << 20, &n) || !parse_field(&q, 64, &r) || !parse_field(&q, 16, &p))
    return YM_EINVAL;
  if (n < 2 || (n & (n - 1)) != 0 || r == 0 || p == 0)
    return YM_EINVAL;
  /* Memory scrypt needs (OpenSSL's own estimate), refused over our cap. */
  uint64_t need = 128 * r * (n + 2) + 128 * r * p + 1024;
  if (need > SCRYPT_MAXMEM)
    return YM_EINVAL;
  const char *dollar = strchr(q, '$');
  if (dollar == NULL)
    return YM_EINVAL;
  long salt_len = b64url_decode(q, (size_t)(dollar - q), salt, sizeof(salt));
  long key_len = b64url_decode(dollar + 1, strlen(dollar + 1), want, sizeof(want));
  if (salt_len < 8 || key_len < 16)
    return YM_EINVAL;
  if (EVP_PBE_scrypt(password, strlen(password), salt, (size_t)salt_len, n, r, p, SCRYPT_MAXMEM,
                     got, (size_t)key_len) != 1)
    return YM_ECRYPTO;
  int match = CRYPTO_memcmp(got, want, (size_t)key_len) == 0;
  OPENSSL_cleanse(got, sizeof(got));
  return match;
}

int store_sync_ensure_admin(store_t *s, char password[33]) {
  uint8_t raw[ADMIN_PASSWORD_BYTES];
  char hash[160];
  password[0] = '\0';
  uv_mutex_lock(&s->db_lock);
  int rc = tx_begin(s);
  if (rc != 0)
    goto out_unlock;
  sqlite3_stmt *st = stmt(s, ST_USER_ANY);
  if (st == NULL) {
    rc = YM_EIO;
    goto out_rollback;
  }
  int r = sqlite3_step(st);
  bool any = r == SQLITE_ROW && sqlite3_column_int(st, 0) != 0;
  rc = r == SQLITE_ROW ? 0 : db_err(r);
  stmt_done(st);
  if (rc != 0)
    goto out_rollback;
  if (any) {
    rc = tx_commit(s);
    goto out_unlock;
  }
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    rc = YM_ECRYPTO;
    goto out_rollback;
  }
  b64url_encode(raw, sizeof(raw), password);
  OPENSSL_cleanse(raw, sizeof(raw));
  rc = store_password_hash(password, hash, sizeof(hash));
  st = rc == 0 ? stmt(s, ST_USER_ADD) : NULL;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc != 0)
    goto out_rollback;
  bind_text(st, 1, "admin");
  bind_text(st, 2, hash);
  sqlite3_bind_int64(st, 3, now_s());
  rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(sqlite3_extended_errcode(s->db));
  stmt_done(st);
  if (rc == 0)
    rc = tx_commit(s);
  if (rc == 0) {
    uv_mutex_unlock(&s->db_lock);
    return 1;
  }
out_rollback:
  tx_rollback(s);
  OPENSSL_cleanse(password, 33);
  password[0] = '\0';
out_unlock:
  uv_mutex_unlock(&s->db_lock);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Jobs on the database thread (db_lock held)                           */

/* Calls the enrollment hooks (see store_on_enroll). */
static int enroll_hooks(store_t *s, job_t *j, const char *outcome, const char *reason,
                        int64_t tenant_id) {
  const store_enroll_t *req = &j->u.enroll.req;
  store_enroll_info_t info = {
      .outcome = outcome,
      .reason = reason,
      .tenant_id = tenant_id,
      .agent_id = strcmp(outcome, "refused") != 0 ? j->u.enroll.agent_id : "",
      .claimed = req->agent_id,
      .token_id = is_lower_hex(req->token_id, TOKEN_ID_LEN) ? req->token_id : "",
      .host_id = req->host_id,
      .host_name = req->host_name,
      .peer = req->peer,
  };
  int rc = 0;
  for (size_t h = 0; rc == 0 && h < s->n_enroll_hooks; h++)
    rc = s->enroll_hooks[h].fn(s->db, &info, s->enroll_hooks[h].data);
  return rc;
}

/* The proof of possession: the agent req->agent_id exists, is not revoked
 * and its secret hashes to the stored hash. Returns 0 (proven, tenant
 * filled), YM_EPERM (not proven; *claimed_tenant is the claimed agent's
 * tenant when it exists, for the audit log) or a YM_E* code. */
static int enroll_proof(store_t *s, job_t *j, int64_t *tenant_id, int64_t *claimed_tenant) {
  const store_enroll_t *req = &j->u.enroll.req;
  uint8_t given[YM_SHA256_LEN];
  if (!is_agent_id(req->agent_id) || strlen(req->agent_secret) != SECRET_LEN)
    return YM_EPERM;
  int rc = ym_sha256_mem(req->agent_secret, SECRET_LEN, given);
  if (rc != 0)
    return rc;
  sqlite3_stmt *st = stmt(s, ST_AGENT_PROOF);
  if (st == NULL)
    return YM_EIO;
  bind_text(st, 1, req->agent_id);
  int r = sqlite3_step(st);
  rc = r == SQLITE_DONE ? YM_EPERM : db_err(r);
  if (r == SQLITE_ROW) {
    const void *h = sqlite3_column_blob(st, 1);
    const char *tenant = (const char *)sqlite3_column_text(st, 3);
    *claimed_tenant = sqlite3_column_int64(st, 0);
    rc = h != NULL && sqlite3_column_bytes(st, 1) == YM_SHA256_LEN &&
                 CRYPTO_memcmp(h, given, YM_SHA256_LEN) == 0 && sqlite3_column_int(st, 2) == 0
             ? 0
             : YM_EPERM;
    if (rc == 0) {
      *tenant_id = *claimed_tenant;
      snprintf(j->u.enroll.tenant, sizeof(j->u.enroll.tenant), "%s", tenant ? tenant : "");
    }
  }
  stmt_done(st);
  return rc;
}

/* Checks the token of an enrollment and counts its use. Returns 0 (tenant
 * filled), YM_EPERM with the reason set, or a YM_E* code. */
static int enroll_token(store_t *s, job_t *j, int64_t *tenant_id) {
  const store_enroll_t *req = &j->u.enroll.req;
  uint8_t given[YM_SHA256_LEN];
  /* The reason is reported with YM_EPERM only. */
  j->u.enroll.reason = "token_invalid";
  if (!is_lower_hex(req->token_id, TOKEN_ID_LEN) || strlen(req->token_secret) != SECRET_LEN)
    return YM_EPERM;
  int rc = ym_sha256_mem(req->token_secret, SECRET_LEN, given);
  if (rc != 0)
    return rc;
  sqlite3_stmt *st = stmt(s, ST_TOKEN_GET);
  if (st == NULL)
    return YM_EIO;
  bind_text(st, 1, req->token_id);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) {
    const void *h = sqlite3_column_blob(st, 1);
    int64_t expires_at = sqlite3_column_int64(st, 2), max_uses = sqlite3_column_int64(st, 3);
    int64_t uses = sqlite3_column_int64(st, 4);
    const char *tenant = (const char *)sqlite3_column_text(st, 6);
    *tenant_id = sqlite3_column_int64(st, 0);
    rc = YM_EPERM;
    if (h == NULL || sqlite3_column_bytes(st, 1) != YM_SHA256_LEN ||
        CRYPTO_memcmp(h, given, YM_SHA256_LEN) != 0) {
      j->u.enroll.reason = "token_invalid";
      *tenant_id = 0; /* only the secret's holder learns whose token it is */
    } else if (sqlite3_column_int(st, 5) != 0)
      j->u.enroll.reason = "token_revoked";
    else if (expires_at != 0 && now_s() >= expires_at)
      j->u.enroll.reason = "token_expired";
    else if (max_uses > 0 && uses >= max_uses)
      j->u.enroll.reason = "token_exhausted";
    else {
      rc = 0;
      snprintf(j->u.enroll.tenant, sizeof(j->u.enroll.tenant), "%s", tenant ? tenant : "");
    }
  } else {
    rc = r == SQLITE_DONE ? YM_EPERM : db_err(r);
  }
  stmt_done(st);
  if (rc == 0)
    rc = exec_stmt_text(s, ST_TOKEN_USE, req->token_id);
  return rc;
}

/* Enrollment, in one transaction: an agent that proves it holds its
 * current secret keeps its id and gets a new secret (no token needed, none
 * used up). Otherwise the token is looked up and its secret compared
 * (before its state is revealed, so that only the secret's holder learns
 * that a token is revoked, expired or used up), its use counted, and a new
 * agent record made: a token never gives access to an existing record,
 * whatever host id the request names. The hooks see every outcome. */
static int run_enroll(store_t *s, job_t *j) {
  const store_enroll_t *req = &j->u.enroll.req;
  uint8_t hash[YM_SHA256_LEN];
  int64_t tenant_id = 0, claimed_tenant = 0;
  bool proven = false;
  const char *note = "";
  int rc = tx_begin(s);
  if (rc != 0)
    return rc;
  if (req->agent_id[0] != '\0') {
    rc = enroll_proof(s, j, &tenant_id, &claimed_tenant);
    proven = rc == 0;
    if (rc == YM_EPERM) {
      note = "proof_failed";
      rc = 0;
    }
    if (rc != 0)
      goto out_rollback;
  }
  if (!proven) {
    if (req->token_id[0] == '\0' && req->agent_id[0] != '\0') {
      j->u.enroll.reason = "agent_unknown";
      tenant_id = claimed_tenant;
      rc = YM_EPERM;
    } else {
      rc = enroll_token(s, j, &tenant_id);
    }
    if (rc != 0)
      goto out_rollback;
  }
  rc = secret_new(j->u.enroll.secret, hash);
  if (rc == 0 && proven)
    memcpy(j->u.enroll.agent_id, req->agent_id, AGENT_ID_LEN + 1);
  else if (rc == 0)
    rc = uuid_v4(j->u.enroll.agent_id);
  if (rc != 0)
    goto out_rollback;
  sqlite3_stmt *st = stmt(s, proven ? ST_AGENT_REENROLL : ST_AGENT_ADD);
  if (st == NULL) {
    rc = YM_EIO;
    goto out_rollback;
  }
  if (proven) {
    bind_text(st, 1, j->u.enroll.agent_id);
    bind_text(st, 2, req->host_name);
    bind_text(st, 3, req->host_json);
    sqlite3_bind_blob(st, 4, hash, sizeof(hash), SQLITE_STATIC);
    bind_text(st, 5, req->version);
    sqlite3_bind_int64(st, 6, now_s());
  } else {
    bind_text(st, 1, j->u.enroll.agent_id);
    sqlite3_bind_int64(st, 2, tenant_id);
    bind_text(st, 3, req->host_id);
    bind_text(st, 4, req->host_name);
    bind_text(st, 5, req->host_json);
    sqlite3_bind_blob(st, 6, hash, sizeof(hash), SQLITE_STATIC);
    bind_text(st, 7, req->token_id);
    bind_text(st, 8, req->version);
    sqlite3_bind_int64(st, 9, now_s());
  }
  rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(sqlite3_extended_errcode(s->db));
  if (rc == 0 && sqlite3_changes(s->db) != 1)
    rc = YM_ESTALE;
  stmt_done(st);
  if (rc == 0)
    rc = enroll_hooks(s, j, proven ? "reenroll" : "enroll", note, tenant_id);
  if (rc == 0)
    rc = tx_commit(s);
  if (rc == 0)
    return 0;
out_rollback:
  tx_rollback(s);
  OPENSSL_cleanse(j->u.enroll.secret, sizeof(j->u.enroll.secret));
  j->u.enroll.secret[0] = j->u.enroll.agent_id[0] = j->u.enroll.tenant[0] = '\0';
  if (rc == YM_EPERM)
    enroll_hooks(s, j, "refused", j->u.enroll.reason, tenant_id);
  return rc;
}

/* Checks an agent's secret (its SHA-256 is in the job) against the stored
 * hash. Returns 0 with the tenant id, YM_EPERM (unknown, revoked, wrong
 * secret) or a YM_E* code. */
static int run_auth(store_t *s, job_t *j) {
  j->u.auth.epoch = atomic_load(&s->revocations);
  sqlite3_stmt *st = stmt(s, ST_AGENT_AUTH);
  if (st == NULL)
    return YM_EIO;
  bind_text(st, 1, j->u.auth.agent_id);
  int r = sqlite3_step(st);
  int rc = r == SQLITE_DONE ? YM_EPERM : db_err(r);
  if (r == SQLITE_ROW) {
    const void *h = sqlite3_column_blob(st, 1);
    rc = h != NULL && sqlite3_column_bytes(st, 1) == YM_SHA256_LEN &&
                 CRYPTO_memcmp(h, j->u.auth.hash, YM_SHA256_LEN) == 0
             ? 0
             : YM_EPERM;
    j->u.auth.tenant_id = sqlite3_column_int64(st, 0);
  }
  stmt_done(st);
  return rc;
}

static int run_checkin(store_t *s, job_t *j) {
  sqlite3_stmt *st = stmt(s, ST_AGENT_CHECKIN);
  if (st == NULL)
    return YM_EIO;
  bind_text(st, 1, j->u.checkin.agent_id);
  sqlite3_bind_int64(st, 2, now_ms());
  bind_text(st, 3, j->u.checkin.version);
  bind_text(st, 4, j->u.checkin.rules_version);
  bind_text(st, 5, j->u.checkin.status_json);
  int r = sqlite3_step(st);
  int rc = r == SQLITE_DONE ? 0 : db_err(r);
  if (rc == 0 && sqlite3_changes(s->db) == 0)
    rc = YM_ENOENT;
  stmt_done(st);
  return rc;
}

/* Refuses (YM_ERANGE) a batch whose last number is further ahead of the
 * stream's highest committed number than STORE_SEQ_AHEAD_MAX plus
 * STORE_SEQ_AHEAD_PER_S per second since it was committed. The first
 * batch of a stream is not checked: there is nothing to run ahead of. */
static int stream_check(store_t *s, job_t *j, int64_t last, int64_t received_ms) {
  sqlite3_stmt *st = stmt(s, ST_STREAM_HIGH);
  if (st == NULL)
    return YM_EIO;
  bind_text(st, 1, j->u.batch.agent_id);
  bind_text(st, 2, j->u.batch.stream);
  int r = sqlite3_step(st);
  int rc = r == SQLITE_ROW || r == SQLITE_DONE ? 0 : db_err(r);
  if (r == SQLITE_ROW) {
    int64_t high = sqlite3_column_int64(st, 0), high_ms = sqlite3_column_int64(st, 1);
    int64_t secs = received_ms > high_ms ? (received_ms - high_ms) / 1000 : 0;
    if (secs > INT64_MAX / 2 / STORE_SEQ_AHEAD_PER_S)
      secs = INT64_MAX / 2 / STORE_SEQ_AHEAD_PER_S;
    int64_t allowed = STORE_SEQ_AHEAD_MAX + secs * STORE_SEQ_AHEAD_PER_S;
    if (last > high && last - high > allowed)
      rc = YM_ERANGE;
  }
  stmt_done(st);
  return rc;
}

/* Raises the stream's highest committed number to last. */
static int stream_set(store_t *s, job_t *j, int64_t last, int64_t received_ms) {
  sqlite3_stmt *st = stmt(s, ST_STREAM_SET);
  if (st == NULL)
    return YM_EIO;
  bind_text(st, 1, j->u.batch.agent_id);
  bind_text(st, 2, j->u.batch.stream);
  sqlite3_bind_int64(st, 3, last);
  sqlite3_bind_int64(st, 4, received_ms);
  int r = sqlite3_step(st);
  stmt_done(st);
  return r == SQLITE_DONE ? 0 : db_err(r);
}

/* Inserts one batch's events inside the current transaction, after
 * checking that the agent belongs to the tenant the events are filed
 * under (YM_EPERM otherwise): tenant isolation does not rest on the
 * caller alone. The values that are the same for every row are bound once
 * (sqlite3_reset keeps bindings). Sets j->u.batch.inserted. */
static int insert_events(store_t *s, job_t *j, int64_t received_ms) {
  sqlite3_stmt *st = stmt(s, ST_AGENT_TENANT);
  if (st == NULL)
    return YM_EIO;
  bind_text(st, 1, j->u.batch.agent_id);
  int r = sqlite3_step(st);
  int rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? YM_EPERM : db_err(r);
  if (rc == 0 && sqlite3_column_int64(st, 0) != j->u.batch.tenant_id)
    rc = YM_EPERM;
  stmt_done(st);
  if (rc != 0)
    return rc;
  int64_t last = j->u.batch.n > 0 ? j->u.batch.events[j->u.batch.n - 1].seq : 0;
  rc = stream_check(s, j, last, received_ms);
  if (rc != 0)
    return rc;
  st = stmt(s, ST_EVENT_ADD);
  if (st == NULL)
    return YM_EIO;
  size_t inserted = 0;
  sqlite3_bind_int64(st, 1, j->u.batch.tenant_id);
  bind_text(st, 2, j->u.batch.agent_id);
  bind_text(st, 3, j->u.batch.stream);
  sqlite3_bind_int64(st, 6, received_ms);
  for (size_t i = 0; i < j->u.batch.n; i++) {
    const store_event_t *e = &j->u.batch.events[i];
    sqlite3_bind_int64(st, 4, e->seq);
    sqlite3_bind_int64(st, 5, e->ts_ms);
    bind_text(st, 7, e->kind);
    bind_text(st, 8, e->dataset);
    bind_text(st, 9, e->action);
    sqlite3_bind_text(st, 10, e->json, (int)e->json_len, SQLITE_STATIC);
    r = sqlite3_step(st);
    sqlite3_reset(st);
    if (r != SQLITE_DONE) {
      rc = db_err(r);
      break;
    }
    int changed = sqlite3_changes(s->db);
    inserted += (size_t)changed;
    j->u.batch.row_ids[i] = changed > 0 ? sqlite3_last_insert_rowid(s->db) : 0;
  }
  sqlite3_clear_bindings(st);
  if (rc == 0 && j->u.batch.n > 0)
    rc = stream_set(s, j, last, received_ms);
  for (size_t h = 0; rc == 0 && inserted > 0 && h < s->n_hooks; h++)
    rc = s->hooks[h].fn(s->db, j->u.batch.tenant_id, j->u.batch.agent_id, j->u.batch.stream,
                        j->u.batch.events, j->u.batch.row_ids, j->u.batch.n, s->hooks[h].data);
  j->u.batch.inserted = rc == 0 ? inserted : 0;
  return rc;
}

/* Writes k batches in one transaction, each in a savepoint of its own: a
 * batch that fails is rolled back alone and gets its error; the others
 * commit together. When the COMMIT fails, every batch gets its error.
 * Returns true when a transaction was committed. */
static bool run_batches(store_t *s, job_t **jobs, size_t k) {
  int64_t received_ms = now_ms();
  int rc = tx_begin(s);
  for (size_t i = 0; i < k; i++) {
    job_t *j = jobs[i];
    j->u.batch.inserted = 0;
    j->rc = rc;
    if (rc != 0)
      continue;
    j->rc = exec_stmt(s, ST_SAVEPOINT);
    if (j->rc == 0)
      j->rc = insert_events(s, j, received_ms);
    if (j->rc != 0 && !sqlite3_get_autocommit(s->db))
      exec_stmt(s, ST_ROLLBACK_TO);
    if (!sqlite3_get_autocommit(s->db))
      exec_stmt(s, ST_RELEASE);
    else if (rc == 0)
      rc = j->rc != 0 ? j->rc : YM_EIO; /* SQLite rolled the transaction back */
  }
  if (rc == 0)
    rc = tx_commit(s);
  else
    tx_rollback(s);
  if (rc != 0) {
    for (size_t i = 0; i < k; i++) {
      if (jobs[i]->rc == 0)
        jobs[i]->rc = rc;
      jobs[i]->u.batch.inserted = 0;
    }
  }
  return rc == 0;
}

/* Takes the next job, and with a batch the batches queued right behind it
 * (at most GROUP_MAX_BATCHES and GROUP_MAX_EVENTS), off the queue. Returns
 * the number taken, 0 when the queue is empty. s->lock held. */
static size_t take_jobs(store_t *s, job_t **out) {
  job_t *j = s->jobs.head;
  size_t k = 0, events = 0;
  while (j != NULL && k < GROUP_MAX_BATCHES) {
    if (k > 0 && (j->kind != JOB_BATCH || out[0]->kind != JOB_BATCH ||
                  events + j->u.batch.n > GROUP_MAX_EVENTS))
      break;
    if (j->kind == JOB_BATCH)
      events += j->u.batch.n;
    out[k++] = j;
    j = j->next;
  }
  s->jobs.head = j;
  if (j == NULL)
    s->jobs.tail = NULL;
  return k;
}

/* Runs jobs[0..k) (as take_jobs() grouped them) and moves them to the done
 * list. Called on the database thread, or by store_close() once the thread
 * has ended. */
static void run_jobs(store_t *s, job_t **jobs, size_t k) {
  bool committed = false;
  uv_mutex_lock(&s->db_lock);
  if (jobs[0]->kind == JOB_BATCH) {
    committed = run_batches(s, jobs, k);
  } else {
    job_t *j = jobs[0];
    switch (j->kind) {
    case JOB_ENROLL:
      j->rc = run_enroll(s, j);
      break;
    case JOB_AUTH:
      j->rc = run_auth(s, j);
      break;
    case JOB_CHECKIN:
      j->rc = run_checkin(s, j);
      break;
    case JOB_CALL:
      j->rc = j->u.call.fn(s->db, j->u.call.arg);
      if (!sqlite3_get_autocommit(s->db)) /* a transaction left open: a bug */
        exec_stmt(s, ST_ROLLBACK);
      break;
    case JOB_BATCH:
      break;
    }
  }
  uv_mutex_unlock(&s->db_lock);

  uv_mutex_lock(&s->lock);
  for (size_t i = 0; i < k; i++) {
    job_t *j = jobs[i];
    if (j->kind == JOB_BATCH && j->rc == 0) {
      s->stats.batches++;
      s->stats.events_inserted += j->u.batch.inserted;
      s->stats.events_duplicate += j->u.batch.n - j->u.batch.inserted;
    }
    j->next = NULL;
    if (s->done.tail != NULL)
      s->done.tail->next = j;
    else
      s->done.head = j;
    s->done.tail = j;
    s->stats.jobs_queued--;
  }
  if (committed)
    s->stats.commits++;
  uv_mutex_unlock(&s->lock);
}

static void db_thread(void *arg) {
  store_t *s = arg;
  job_t *jobs[GROUP_MAX_BATCHES];
  uv_mutex_lock(&s->lock);
  for (;;) {
    while (s->jobs.head == NULL && !s->stopping)
      uv_cond_wait(&s->cond, &s->lock);
    size_t k = take_jobs(s, jobs);
    if (k == 0)
      break; /* stopping, and nothing left */
    uv_mutex_unlock(&s->lock);
    run_jobs(s, jobs, k);
    uv_async_send(s->async);
    uv_mutex_lock(&s->lock);
  }
  uv_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------ */
/* Authentication cache (loop thread)                                   */

static size_t cache_slot(const char *agent_id) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const char *p = agent_id; *p != '\0'; p++)
    h = (h ^ (uint8_t)*p) * 1099511628211ull;
  return (size_t)(h & (AUTH_CACHE_SLOTS - 1));
}

static cache_entry_t *cache_find(store_t *s, const char *agent_id) {
  size_t slot = cache_slot(agent_id);
  for (size_t w = 0; w < AUTH_CACHE_WAYS; w++) {
    cache_entry_t *e = &s->cache[(slot + w) & (AUTH_CACHE_SLOTS - 1)];
    if (strcmp(e->agent_id, agent_id) == 0)
      return e;
  }
  return NULL;
}

/* Remembers an agent's secret hash and tenant. When the agent's slots are
 * all taken, one of them (in turn) is replaced: the cache never grows. */
static void cache_put(store_t *s, const char *agent_id, const uint8_t *hash, int64_t tenant_id) {
  cache_entry_t *e = cache_find(s, agent_id);
  size_t slot = cache_slot(agent_id);
  for (size_t w = 0; e == NULL && w < AUTH_CACHE_WAYS; w++) {
    cache_entry_t *c = &s->cache[(slot + w) & (AUTH_CACHE_SLOTS - 1)];
    if (c->agent_id[0] == '\0')
      e = c;
  }
  if (e == NULL)
    e = &s->cache[(slot + s->cache_clock++ % AUTH_CACHE_WAYS) & (AUTH_CACHE_SLOTS - 1)];
  memcpy(e->agent_id, agent_id, AGENT_ID_LEN + 1);
  memcpy(e->hash, hash, YM_SHA256_LEN);
  e->tenant_id = tenant_id;
}

static void cache_remove(store_t *s, const char *agent_id) {
  cache_entry_t *e = cache_find(s, agent_id);
  if (e != NULL)
    memset(e, 0, sizeof(*e));
}

/* ------------------------------------------------------------------ */
/* Submitting jobs and delivering results (loop thread)                 */

/* Keeps the loop alive exactly while callbacks are outstanding. */
static void update_ref(store_t *s) {
  if (s->pending > 0 && !s->async_refd) {
    uv_ref((uv_handle_t *)s->async);
    s->async_refd = true;
  } else if (s->pending == 0 && s->async_refd) {
    uv_unref((uv_handle_t *)s->async);
    s->async_refd = false;
  }
}

static job_t *job_new(job_kind_t kind, void *data) {
  job_t *j = calloc(1, sizeof(*j));
  if (j == NULL)
    abort(); /* a small control structure */
  j->kind = kind;
  j->data = data;
  return j;
}

static void job_free(job_t *j) {
  if (j->kind == JOB_ENROLL) {
    const store_enroll_t *req = &j->u.enroll.req;
    OPENSSL_cleanse(j->u.enroll.secret, sizeof(j->u.enroll.secret));
    if (req->token_secret != NULL)
      OPENSSL_cleanse((char *)req->token_secret, strlen(req->token_secret));
    if (req->agent_secret != NULL)
      OPENSSL_cleanse((char *)req->agent_secret, strlen(req->agent_secret));
  }
  free(j->mem);
  free(j);
}

/* Queues j for the database thread. */
static void submit(store_t *s, job_t *j) {
  s->pending++;
  update_ref(s);
  uv_mutex_lock(&s->lock);
  j->next = NULL;
  if (s->jobs.tail != NULL)
    s->jobs.tail->next = j;
  else
    s->jobs.head = j;
  s->jobs.tail = j;
  s->stats.jobs_queued++;
  uv_cond_signal(&s->cond);
  uv_mutex_unlock(&s->lock);
}

/* Completes j with rc without database work: its callback runs from the
 * loop like any other (never before the submitting call returns). */
static void submit_done(store_t *s, job_t *j, int rc) {
  j->rc = rc;
  s->pending++;
  update_ref(s);
  uv_mutex_lock(&s->lock);
  j->next = NULL;
  if (s->done.tail != NULL)
    s->done.tail->next = j;
  else
    s->done.head = j;
  s->done.tail = j;
  uv_mutex_unlock(&s->lock);
  uv_async_send(s->async);
}

static void complete(store_t *s, job_t *j) {
  switch (j->kind) {
  case JOB_ENROLL: {
    bool ok = j->rc == 0;
    if (ok)
      cache_remove(s, j->u.enroll.agent_id); /* the old secret stops working */
    j->cb.enroll(j->rc, j->rc == YM_EPERM ? j->u.enroll.reason : NULL,
                 ok ? j->u.enroll.agent_id : NULL, ok ? j->u.enroll.secret : NULL,
                 ok ? j->u.enroll.tenant : NULL, j->data);
    break;
  }
  case JOB_AUTH:
    if (j->rc == 0 && j->u.auth.epoch == atomic_load(&s->revocations))
      cache_put(s, j->u.auth.agent_id, j->u.auth.hash, j->u.auth.tenant_id);
    j->cb.auth(j->rc, j->rc == 0 ? j->u.auth.tenant_id : 0, j->data);
    break;
  case JOB_BATCH:
    j->cb.batch(j->rc, j->u.batch.inserted, j->data);
    break;
  case JOB_CHECKIN:
  case JOB_CALL:
    if (j->cb.done != NULL)
      j->cb.done(j->rc, j->data);
    break;
  }
}

/* Runs the callbacks of finished jobs, in order. Returns the number run. */
static size_t deliver(store_t *s) {
  uv_mutex_lock(&s->lock);
  job_t *j = s->done.head;
  s->done.head = s->done.tail = NULL;
  uv_mutex_unlock(&s->lock);
  size_t n = 0;
  while (j != NULL) {
    job_t *next = j->next;
    s->pending--;
    complete(s, j);
    job_free(j);
    j = next;
    n++;
  }
  update_ref(s);
  return n;
}

static void on_async(uv_async_t *h) {
  deliver(h->data);
}

/* ------------------------------------------------------------------ */
/* Asynchronous calls                                                   */

/* Copies n strings (NULL stays NULL) into one new block; out[i] points at
 * the copy of in[i]. Returns the block (free() it), or NULL when out of
 * memory. */
static char *copy_strings(const char *const *in, const char **out, size_t n) {
  size_t total = 1;
  for (size_t i = 0; i < n; i++)
    total += str_len_or_0(in[i]) + 1;
  char *mem = malloc(total), *p = mem;
  if (mem == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (in[i] == NULL) {
      out[i] = NULL;
      continue;
    }
    size_t len = strlen(in[i]) + 1;
    memcpy(p, in[i], len);
    out[i] = p;
    p += len;
  }
  return mem;
}

void store_enroll(store_t *s, const store_enroll_t *req, store_enroll_cb cb, void *data) {
  if (s->loop == NULL) {
    cb(YM_EINVAL, NULL, NULL, NULL, NULL, data);
    return;
  }
  job_t *j = job_new(JOB_ENROLL, data);
  j->cb.enroll = cb;
  const char *in[9] = {req->token_id ? req->token_id : "",
                       req->token_secret ? req->token_secret : "",
                       req->host_id ? req->host_id : "",
                       req->host_name ? req->host_name : "",
                       req->host_json ? req->host_json : "{}",
                       req->version ? req->version : "",
                       req->agent_id ? req->agent_id : "",
                       req->agent_secret ? req->agent_secret : "",
                       req->peer ? req->peer : ""};
  const char *out[9];
  if (req->token_id == NULL && in[6][0] == '\0') {
    submit_done(s, j, YM_EINVAL); /* neither a token nor a proof */
    return;
  }
  /* A token or an agent id of the wrong form is refused on the database
   * thread like any other (the hooks see it); only what is far too long
   * to be either is refused here. */
  if (strlen(in[0]) > TOKEN_ID_LEN || strlen(in[1]) > SECRET_LEN ||
      strlen(in[6]) > ENROLL_AGENT_FIELD_MAX || strlen(in[7]) > ENROLL_AGENT_FIELD_MAX) {
    j->u.enroll.reason = in[6][0] != '\0' && in[0][0] == '\0' ? "agent_unknown" : "token_invalid";
    submit_done(s, j, YM_EPERM);
    return;
  }
  if (strlen(in[2]) > HOST_ID_MAX || strlen(in[3]) > HOSTNAME_MAX ||
      strlen(in[4]) > JSON_FIELD_MAX || strlen(in[5]) > VERSION_MAX || strlen(in[8]) > 64) {
    submit_done(s, j, YM_ETOOBIG);
    return;
  }
  j->mem = copy_strings(in, out, 9);
  if (j->mem == NULL) {
    submit_done(s, j, YM_ENOMEM);
    return;
  }
  j->u.enroll.req = (store_enroll_t){.token_id = out[0],
                                     .token_secret = out[1],
                                     .host_id = out[2],
                                     .host_name = out[3],
                                     .host_json = out[4],
                                     .version = out[5],
                                     .agent_id = out[6],
                                     .agent_secret = out[7],
                                     .peer = out[8]};
  submit(s, j);
}

void store_auth(store_t *s, const char *agent_id, const char *secret, store_auth_cb cb,
                void *data) {
  uint8_t hash[YM_SHA256_LEN];
  if (s->loop == NULL) {
    cb(YM_EINVAL, 0, data);
    return;
  }
  /* Anything but one of our ids and a well-formed secret fails at once. */
  if (!is_agent_id(agent_id) || secret == NULL || strlen(secret) != SECRET_LEN ||
      ym_sha256_mem(secret, SECRET_LEN, hash) != 0) {
    cb(YM_EPERM, 0, data);
    return;
  }
  uint64_t epoch = atomic_load(&s->revocations);
  if (epoch != s->cache_seen) {
    memset(s->cache, 0, AUTH_CACHE_SLOTS * sizeof(*s->cache));
    s->cache_seen = epoch;
  }
  cache_entry_t *e = cache_find(s, agent_id);
  if (e != NULL && CRYPTO_memcmp(e->hash, hash, YM_SHA256_LEN) == 0) {
    cb(0, e->tenant_id, data);
    return;
  }
  /* Not cached, or cached with another secret: the database decides (the
   * agent may have enrolled again through another console process). */
  job_t *j = job_new(JOB_AUTH, data);
  j->cb.auth = cb;
  memcpy(j->u.auth.agent_id, agent_id, AGENT_ID_LEN + 1);
  memcpy(j->u.auth.hash, hash, YM_SHA256_LEN);
  submit(s, j);
}

void store_insert_batch(store_t *s, const char *agent_id, int64_t tenant_id, const char *stream,
                        const store_event_t *events, size_t n, store_batch_cb cb, void *data) {
  if (s->loop == NULL) {
    cb(YM_EINVAL, 0, data);
    return;
  }
  job_t *j = job_new(JOB_BATCH, data);
  j->cb.batch = cb;
  if (!is_agent_id(agent_id) || stream == NULL ||
      (strcmp(stream, "alerts") != 0 && strcmp(stream, "bulk") != 0) || (n > 0 && events == NULL)) {
    submit_done(s, j, YM_EINVAL);
    return;
  }
  memcpy(j->u.batch.agent_id, agent_id, AGENT_ID_LEN + 1);
  snprintf(j->u.batch.stream, sizeof(j->u.batch.stream), "%s", stream);
  j->u.batch.tenant_id = tenant_id;
  j->u.batch.n = n;

  /* One block: the event array, then each event's strings. */
  size_t bytes = n * (sizeof(store_event_t) + sizeof(int64_t));
  for (size_t i = 0; i < n; i++) {
    const store_event_t *e = &events[i];
    if (e->json == NULL || e->json_len > INT32_MAX) {
      submit_done(s, j, YM_EINVAL);
      return;
    }
    bytes += e->json_len + 1 + str_len_or_0(e->kind) + 1 + str_len_or_0(e->dataset) + 1 +
             str_len_or_0(e->action) + 1;
  }
  char *mem = malloc(bytes > 0 ? bytes : 1);
  if (mem == NULL) {
    submit_done(s, j, YM_ENOMEM);
    return;
  }
  j->mem = mem;
  store_event_t *copy = (store_event_t *)(void *)mem;
  j->u.batch.row_ids = (int64_t *)(void *)(mem + n * sizeof(store_event_t));
  char *p = mem + n * (sizeof(store_event_t) + sizeof(int64_t));
  for (size_t i = 0; i < n; i++) {
    const store_event_t *e = &events[i];
    const char *strs[3] = {e->kind, e->dataset, e->action};
    const char *dst[3];
    copy[i] = *e;
    memcpy(p, e->json, e->json_len);
    p[e->json_len] = '\0';
    copy[i].json = p;
    p += e->json_len + 1;
    for (int k = 0; k < 3; k++) {
      dst[k] = NULL;
      if (strs[k] != NULL) {
        size_t len = strlen(strs[k]) + 1;
        memcpy(p, strs[k], len);
        dst[k] = p;
        p += len;
      }
    }
    copy[i].kind = dst[0];
    copy[i].dataset = dst[1];
    copy[i].action = dst[2];
  }
  j->u.batch.events = copy;
  submit(s, j);
}

void store_checkin(store_t *s, const char *agent_id, const char *version, const char *rules_version,
                   const char *status_json, store_done_cb cb, void *data) {
  if (s->loop == NULL) {
    cb(YM_EINVAL, data);
    return;
  }
  job_t *j = job_new(JOB_CHECKIN, data);
  j->cb.done = cb;
  const char *in[3] = {version ? version : "", rules_version ? rules_version : "",
                       status_json ? status_json : "{}"};
  const char *out[3];
  if (!is_agent_id(agent_id)) {
    submit_done(s, j, YM_EINVAL);
    return;
  }
  if (strlen(in[0]) > VERSION_MAX || strlen(in[1]) > VERSION_MAX ||
      strlen(in[2]) > JSON_FIELD_MAX) {
    submit_done(s, j, YM_ETOOBIG);
    return;
  }
  j->mem = copy_strings(in, out, 3);
  if (j->mem == NULL) {
    submit_done(s, j, YM_ENOMEM);
    return;
  }
  memcpy(j->u.checkin.agent_id, agent_id, AGENT_ID_LEN + 1);
  j->u.checkin.version = out[0];
  j->u.checkin.rules_version = out[1];
  j->u.checkin.status_json = out[2];
  submit(s, j);
}

void store_stats(store_t *s, store_stats_t *out) {
  uv_mutex_lock(&s->lock);
  *out = s->stats;
  uv_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------ */
/* Module calls                                                         */

void store_on_batch(store_t *s, store_batch_hook fn, void *data) {
  if (s->n_hooks >= STORE_MAX_HOOKS)
    abort(); /* a fixed number of modules register at start */
  s->hooks[s->n_hooks].fn = fn;
  s->hooks[s->n_hooks].data = data;
  s->n_hooks++;
}

int store_agent_revoke_db(store_t *s, sqlite3 *db, int64_t scope, const char *agent_id,
                          int64_t *tenant_id) {
  if (!is_agent_id(agent_id))
    return YM_ENOENT;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "UPDATE agents SET revoked = 1 WHERE id = ?1 AND revoked = 0"
                         " AND (?2 = 0 OR tenant_id = ?2) RETURNING tenant_id",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, scope);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW)
    *tenant_id = sqlite3_column_int64(st, 0);
  int rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? YM_ENOENT : YM_EIO;
  if (rc == 0 && sqlite3_step(st) != SQLITE_DONE)
    rc = YM_EIO;
  sqlite3_finalize(st);
  if (rc == 0)
    atomic_fetch_add(&s->revocations, 1);
  return rc;
}

void store_on_enroll(store_t *s, store_enroll_hook fn, void *data) {
  if (s->n_enroll_hooks >= STORE_MAX_HOOKS)
    abort(); /* a fixed number of modules register at start */
  s->enroll_hooks[s->n_enroll_hooks].fn = fn;
  s->enroll_hooks[s->n_enroll_hooks].data = data;
  s->n_enroll_hooks++;
}

void store_call(store_t *s, store_fn fn, void *arg, store_done_cb cb, void *data) {
  job_t *j = job_new(JOB_CALL, data);
  j->cb.done = cb;
  j->u.call.fn = fn;
  j->u.call.arg = arg;
  if (s->loop == NULL) {
    if (cb != NULL)
      cb(YM_EINVAL, data);
    free(j);
    return;
  }
  submit(s, j);
}

int store_sync_call(store_t *s, store_fn fn, void *arg) {
  uv_mutex_lock(&s->db_lock);
  int rc = fn(s->db, arg);
  tx_rollback(s); /* a transaction left open: a bug */
  uv_mutex_unlock(&s->db_lock);
  return rc;
}

typedef struct {
  uv_work_t work;
  store_t *s;
  store_fn fn;
  void *arg;
  store_done_cb cb;
  void *data;
  int rc;
} read_req_t;

/* Takes a read-only connection from the pool or opens one. */
static sqlite3 *reader_get(store_t *s) {
  uv_mutex_lock(&s->readers_lock);
  sqlite3 *db = s->n_readers > 0 ? s->readers[--s->n_readers] : NULL;
  uv_mutex_unlock(&s->readers_lock);
  if (db != NULL)
    return db;
  if (sqlite3_open_v2(s->path, &db,
                      SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                      NULL) != SQLITE_OK) {
    sqlite3_close_v2(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
  sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
  sqlite3_exec(db, "PRAGMA query_only=ON; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-32768", NULL,
               NULL, NULL);
  return db;
}

static void reader_put(store_t *s, sqlite3 *db) {
  if (!sqlite3_get_autocommit(db))
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  uv_mutex_lock(&s->readers_lock);
  if (s->n_readers < STORE_MAX_READERS) {
    s->readers[s->n_readers++] = db;
    db = NULL;
  }
  uv_mutex_unlock(&s->readers_lock);
  sqlite3_close_v2(db);
}

static void read_work(uv_work_t *w) {
  read_req_t *r = w->data;
  sqlite3 *db = reader_get(r->s);
  if (db == NULL) {
    r->rc = YM_EIO;
    return;
  }
  r->rc = r->fn(db, r->arg);
  reader_put(r->s, db);
}

static void read_after(uv_work_t *w, int status) {
  read_req_t *r = w->data;
  store_t *s = r->s;
  s->pending--;
  update_ref(s);
  if (r->cb != NULL)
    r->cb(status == 0 ? r->rc : YM_ECANCELED, r->data);
  free(r);
}

void store_read(store_t *s, store_fn fn, void *arg, store_done_cb cb, void *data) {
  read_req_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    abort(); /* a small control structure */
  if (s->loop == NULL) {
    free(r);
    if (cb != NULL)
      cb(YM_EINVAL, data);
    return;
  }
  r->s = s;
  r->fn = fn;
  r->arg = arg;
  r->cb = cb;
  r->data = data;
  r->work.data = r;
  s->pending++;
  update_ref(s);
  if (uv_queue_work(s->loop, &r->work, read_work, read_after) != 0) {
    s->pending--;
    update_ref(s);
    free(r);
    if (cb != NULL)
      cb(YM_EIO, data);
  }
}

/* Applies module's migrations: steps[i] is version i + 1. */
int store_ensure_schema(store_t *s, const char *module, const char *const *steps, size_t n) {
  if (module == NULL || strlen(module) == 0 || strlen(module) > MODULE_NAME_MAX)
    return YM_EINVAL;
  uv_mutex_lock(&s->db_lock);
  int rc = db_err(sqlite3_exec(s->db,
                               "CREATE TABLE IF NOT EXISTS module_migrations("
                               " module TEXT NOT NULL, version INTEGER NOT NULL,"
                               " applied_at INTEGER NOT NULL, PRIMARY KEY(module, version))"
                               " STRICT",
                               NULL, NULL, NULL));
  for (size_t v = 1; rc == 0 && v <= n; v++) {
    rc = tx_begin(s);
    if (rc != 0)
      break;
    sqlite3_stmt *st = NULL;
    int64_t cur = -1;
    rc = db_err(sqlite3_prepare_v2(
        s->db, "SELECT COALESCE(MAX(version), 0) FROM module_migrations WHERE module = ?1", -1, &st,
        NULL));
    if (rc == 0) {
      sqlite3_bind_text(st, 1, module, -1, SQLITE_STATIC);
      if (sqlite3_step(st) == SQLITE_ROW)
        cur = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (rc == 0 && cur < 0)
      rc = YM_EIO;
    else if (rc == 0 && cur > (int64_t)n)
      rc = YM_ENOTSUP; /* written by a newer console */
    else if (rc == 0 && cur < (int64_t)v) {
      rc = db_err(sqlite3_exec(s->db, steps[v - 1], NULL, NULL, NULL));
      if (rc == 0)
        rc = db_err(sqlite3_prepare_v2(s->db,
                                       "INSERT INTO module_migrations(module, version, applied_at)"
                                       " VALUES(?1, ?2, ?3)",
                                       -1, &st, NULL));
      if (rc == 0) {
        sqlite3_bind_text(st, 1, module, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t)v);
        sqlite3_bind_int64(st, 3, now_s());
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(sqlite3_errcode(s->db));
        sqlite3_finalize(st);
      }
    }
    if (rc == 0)
      rc = tx_commit(s);
    else
      tx_rollback(s);
  }
  uv_mutex_unlock(&s->db_lock);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Closing                                                              */

static void on_async_closed(uv_handle_t *h) {
  free(h);
}

/* In order: the database thread finishes the queued jobs and ends; their
 * callbacks run here; jobs those callbacks queue are run here too, until
 * nothing is left. Then the connection is closed. */
void store_close(store_t *s) {
  if (s == NULL)
    return;
  if (s->thread_started) {
    uv_mutex_lock(&s->lock);
    s->stopping = true;
    uv_cond_signal(&s->cond);
    uv_mutex_unlock(&s->lock);
    uv_thread_join(&s->thread);
    job_t *jobs[GROUP_MAX_BATCHES];
    for (;;) {
      size_t ran = deliver(s);
      uv_mutex_lock(&s->lock);
      size_t k = take_jobs(s, jobs);
      uv_mutex_unlock(&s->lock);
      if (k > 0)
        run_jobs(s, jobs, k);
      else if (ran == 0)
        break;
    }
    uv_close((uv_handle_t *)s->async, on_async_closed);
  }
  for (size_t i = 0; i < s->n_readers; i++)
    sqlite3_close_v2(s->readers[i]);
  uv_mutex_destroy(&s->readers_lock);
  free(s->path);
  for (int i = 0; i < ST_COUNT_; i++)
    sqlite3_finalize(s->stmts[i]);
  sqlite3_close_v2(s->db);
  uv_cond_destroy(&s->cond);
  uv_mutex_destroy(&s->lock);
  uv_mutex_destroy(&s->db_lock);
  free(s->cache);
  free(s);
}
