/*
 * The console's store: SQLite (WAL) with versioned schema migrations.
 *
 * Reads and writes run on one database thread of the store's own; each
 * asynchronous call queues a job and its callback runs later on the loop
 * thread (through a uv_async), so the loop never waits on the disk. The
 * synchronous calls (store_sync_*) are for the command-line tools, which
 * have no loop.
 *
 * Tenants are customer companies. Every query that reads customer data is
 * scoped by tenant id.
 */
#ifndef YAMORI_CONSOLE_STORE_H
#define YAMORI_CONSOLE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <sqlite3.h>
#include <stdint.h>
#include <uv.h>

typedef struct store store_t;

/* Opens (creating) data_dir/yamori.db and runs pending migrations. loop may
 * be NULL for synchronous use only. Returns 0, YM_ENOTSUP when the file
 * was written by a newer console, or another YM_E* code. */
int store_open(const char *data_dir, uv_loop_t *loop, store_t **out);
/* Waits for queued jobs, then closes. On the loop thread, not from a store
 * callback: the callbacks of every queued job run before it returns. The
 * loop must run once more (uv_run) to release the store's async handle.
 * store_close(NULL) does nothing. */
void store_close(store_t *s);

/* ---- tenants and tokens (synchronous: CLI) ---- */
int store_sync_tenant_add(store_t *s, const char *name, const char *display, int64_t *id);
/* Calls fn for each tenant. */
int store_sync_tenant_list(store_t *s,
                           void (*fn)(int64_t id, const char *name, const char *display,
                                      int64_t agents, void *d),
                           void *data);
/* Creates a token for tenant name: token_id (16 hex) and secret (43
 * base64url) are generated; only SHA-256(secret) is stored. expires_at: unix
 * seconds (0: never); max_uses 0: unlimited. */
int store_sync_token_create(store_t *s, const char *tenant, int64_t expires_at, int64_t max_uses,
                            char token_id[17], char secret[44]);
int store_sync_token_revoke(store_t *s, const char *token_id);
/* The same inside a module function (store_call): creates a token for
 * tenant_id with the connection db. kind: "manual" or "installer" (made
 * for one installer download). */
int store_token_create_db(sqlite3 *db, int64_t tenant_id, int64_t expires_at, int64_t max_uses,
                          const char *kind, char token_id[17], char secret[44]);
/* Writes the enrollment token string "ymt1." + base64url({url, pin, tok})
 * (docs/protocol.md) to out. Returns 0 or YM_ETOOBIG / YM_ENOMEM. */
int store_token_string(const char *url, const char *pin, const char *token_id, const char *secret,
                       char *out, size_t out_len);
/* First provider admin: creates user "admin" with a random password
 * (returned once, hashed with scrypt in the store) when no user exists.
 * Returns 1 when created, 0 when users exist, <0 on error. */
int store_sync_ensure_admin(store_t *s, char password[33]);
/* Checks password against a stored hash ("scrypt$N$r$p$salt$hash", salt and
 * hash in base64url without padding). Returns 1 for a match, 0 for no
 * match, YM_EINVAL for a malformed hash or YM_ECRYPTO. */
int store_password_verify(const char *hash, const char *password);
/* Hashes password with scrypt and a random salt into out (at most 128
 * bytes needed). Returns 0, YM_ECRYPTO or YM_ETOOBIG. Takes about 100 ms
 * and 32 MiB: never on the loop thread. */
int store_password_hash(const char *password, char *out, size_t out_len);

/* ---- agent API (asynchronous) ----
 * Loop thread only, and only when the store was opened with a loop (without
 * one, the callback runs at once with YM_EINVAL). The arguments are copied:
 * the caller's memory may be freed when the call returns. Each callback
 * runs exactly once, on the loop thread, after the call has returned
 * (except where said otherwise); requests that cannot be queued (arguments
 * out of bounds: YM_EINVAL, YM_ETOOBIG; YM_ENOMEM) get their error that
 * way too. */

/* An enrollment. With a token alone it always makes a new agent record
 * (several records of one tenant may then share a host id: the
 * enrollment hooks, below, say so). An agent that enrolls again proves
 * that it holds its current secret (agent_id and agent_secret): it then
 * keeps its id and gets a new secret, and needs no token. When the proof
 * fails, a token is used as if no proof had been offered; without a token
 * the attempt is refused ("agent_unknown"). */
typedef struct {
  const char *token_id;     /* NULL or "": none */
  const char *token_secret; /* NULL or "": none */
  const char *agent_id;     /* NULL or "": no proof offered */
  const char *agent_secret;
  const char *host_id; /* machine id; may be "" */
  const char *host_name;
  const char *host_json; /* the request's host object as JSON text */
  const char *version;
  const char *peer; /* the client's address, for the audit log */
} store_enroll_t;

/* result: 0 ok (agent_id, secret, tenant filled); YM_EPERM with reason
 * "token_invalid" / "token_expired" / "token_revoked" / "token_exhausted"
 * / "agent_unknown" (a proof that failed, and no token). */
typedef void (*store_enroll_cb)(int rc, const char *reason, const char *agent_id,
                                const char *secret, const char *tenant, void *data);
void store_enroll(store_t *s, const store_enroll_t *req, store_enroll_cb cb, void *data);

/* What an enrollment attempt did, for the enrollment hooks. Secrets are
 * never in it. */
typedef struct {
  const char *outcome;  /* "enroll" (a new record), "reenroll" (proof held) or "refused" */
  const char *reason;   /* refused: the reason; enroll: "proof_failed" when a proof was
                           offered and failed, else "" */
  int64_t tenant_id;    /* 0 when not known (an unknown token) */
  const char *agent_id; /* the record made or kept; "" when refused */
  const char *claimed;  /* the agent id whose secret was offered, or "" */
  const char *token_id; /* "" when none was given or it was malformed */
  const char *host_id, *host_name, *peer;
} store_enroll_info_t;

/* Called on the database thread for every enrollment attempt that reached
 * the database: for a success inside its transaction (a non-zero return
 * fails the enrollment), for a refusal after the rollback (the return is
 * ignored). */
typedef int (*store_enroll_hook)(sqlite3 *db, const store_enroll_info_t *info, void *data);
/* Registers an enrollment hook (at most 8), before the loop runs. */
void store_on_enroll(store_t *s, store_enroll_hook fn, void *data);

/* Authenticates agent_id + secret: rc 0 with tenant id, YM_EPERM otherwise.
 * Answered from an in-memory cache when possible (callback may then run
 * before store_auth returns); an id or secret of the wrong form is refused
 * the same way, without a database lookup. */
typedef void (*store_auth_cb)(int rc, int64_t tenant_id, void *data);
void store_auth(store_t *s, const char *agent_id, const char *secret, store_auth_cb cb, void *data);

/* Revokes the live agent agent_id of tenant scope (0: any) with the
 * connection db, inside the caller's transaction: a store_call function,
 * on the database thread. Its secret stops working at once: the
 * authentication cache is emptied before the next check, and a check that
 * ran before is not cached. Returns 0 with *tenant_id, YM_ENOENT when
 * scope holds no such live agent, or YM_EIO. */
int store_agent_revoke_db(store_t *s, sqlite3 *db, int64_t scope, const char *agent_id,
                          int64_t *tenant_id);

/* One validated event to insert. */
typedef struct {
  int64_t seq;      /* yamori.stream_seq */
  int64_t ts_ms;    /* @timestamp */
  const char *kind; /* event.kind */
  const char *dataset;
  const char *action;
  const char *json; /* the event as received */
  size_t json_len;
} store_event_t;

/* How far ahead of its stream's highest committed number an agent's batch
 * may reach: STORE_SEQ_AHEAD_MAX, plus STORE_SEQ_AHEAD_PER_S for every
 * second since that number was committed (an agent that was offline and
 * shed old events skips numbers in proportion to the time it was away). */
#define STORE_SEQ_AHEAD_MAX 1000000
#define STORE_SEQ_AHEAD_PER_S 10000

/* Inserts a batch in one transaction; duplicates (agent, stream, seq) are
 * ignored. cb runs after COMMIT with rc 0 and the count actually inserted;
 * YM_EPERM (nothing inserted) when agent_id is not an agent of tenant_id;
 * YM_ERANGE (nothing inserted) when the batch's last number is further
 * ahead of the stream's highest committed number than the bound above (an
 * agent's first batch of a stream sets that number). */
typedef void (*store_batch_cb)(int rc, size_t inserted, void *data);
void store_insert_batch(store_t *s, const char *agent_id, int64_t tenant_id, const char *stream,
                        const store_event_t *events, size_t n, store_batch_cb cb, void *data);

/* Records a check-in (last seen, version, rules version, counters JSON). */
typedef void (*store_done_cb)(int rc, void *data);
void store_checkin(store_t *s, const char *agent_id, const char *version, const char *rules_version,
                   const char *status_json, store_done_cb cb, void *data);

/* Counters. jobs_queued is the number of jobs waiting for or running on the
 * database thread now; the others count since store_open. commits counts
 * transactions that wrote event batches (several queued batches may share
 * one). */
typedef struct {
  uint64_t batches, events_inserted, events_duplicate, jobs_queued, commits;
} store_stats_t;
void store_stats(store_t *s, store_stats_t *out);

/* ---- Modules ----
 * Console modules (incidents, sessions, commands, releases, ...) keep their
 * own tables and their own constant SQL in their own files; the store runs
 * their functions on its connections. */

/* A function run with a database connection. It runs on the database
 * thread (store_call, store_sync_call) or on a libuv worker thread with a
 * read-only connection (store_read); it must not touch the loop. It opens
 * its own transaction when it needs one (BEGIN IMMEDIATE ... COMMIT); a
 * transaction it leaves open is rolled back. Returns 0 or YM_E*. */
typedef int (*store_fn)(sqlite3 *db, void *arg);

/* Runs fn(db, arg) on the database thread, in order with every other job
 * (so with every write), then cb(rc, data) on the loop thread (cb may be
 * NULL). Loop thread only. */
void store_call(store_t *s, store_fn fn, void *arg, store_done_cb cb, void *data);
/* Runs fn(db, arg) on a libuv worker thread with a read-only connection
 * of the store's pool (WAL: readers never wait for the writer, and see the
 * last committed state), then cb(rc, data) on the loop thread. Loop
 * thread only. Every read's callback must have run before store_close(). */
void store_read(store_t *s, store_fn fn, void *arg, store_done_cb cb, void *data);
/* Runs fn(db, arg) on the caller's thread with the store's connection
 * (command-line tools and tests). */
int store_sync_call(store_t *s, store_fn fn, void *arg);
/* Applies a module's own migrations in order: steps[i] is version i + 1,
 * SQL text run in one transaction together with its record in table
 * module_migrations(module, version). A step is never edited once
 * released. Call once after store_open(), before the loop runs.
 * Returns 0, YM_ENOTSUP (the file knows a newer version of module) or
 * YM_E*. */
int store_ensure_schema(store_t *s, const char *module, const char *const *steps, size_t n);

/* Called on the database thread inside the transaction that inserts a
 * batch (in the batch's savepoint), after its events were inserted, when
 * at least one was new: row_ids[i] is the new row's id in table events, or
 * 0 for an event already stored (a replay). A non-zero return rolls the
 * batch back and fails it. */
typedef int (*store_batch_hook)(sqlite3 *db, int64_t tenant_id, const char *agent_id,
                                const char *stream, const store_event_t *events,
                                const int64_t *row_ids, size_t n, void *data);
/* Registers a batch hook (at most 8), before the loop runs. */
void store_on_batch(store_t *s, store_batch_hook fn, void *data);

#endif
