#include "auth.h"

#include "sql.h"

#include "yamori/err.h"
#include "yamori/sha256.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

static const char *const schema[] = {
    /* 1: sessions, login limits, audit log. */
    "CREATE TABLE sessions("
    " token_hash BLOB PRIMARY KEY CHECK(length(token_hash) = 32),"
    " user_id INTEGER NOT NULL REFERENCES users(id),"
    " csrf TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL,"
    " peer TEXT NOT NULL DEFAULT ''"
    ") STRICT;"
    "CREATE INDEX sessions_user ON sessions(user_id);"
    "CREATE TABLE login_limits("
    " key TEXT PRIMARY KEY,"
    " window_ms INTEGER NOT NULL,"
    " count INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE audit("
    " id INTEGER PRIMARY KEY,"
    " at_ms INTEGER NOT NULL,"
    " user_id INTEGER,"
    " user TEXT NOT NULL,"
    " tenant_id INTEGER NOT NULL DEFAULT 0,"
    " action TEXT NOT NULL,"
    " target TEXT NOT NULL DEFAULT '',"
    " detail TEXT NOT NULL DEFAULT '',"
    " peer TEXT NOT NULL DEFAULT ''"
    ") STRICT;"
    "CREATE INDEX audit_tenant_time ON audit(tenant_id, at_ms);",
    /* 2: limits per (name, address) and per address; the counts per name
     * alone (keys "u:...") are gone, old windows are swept by time. */
    "DELETE FROM login_limits WHERE key LIKE 'u:%';"
    "CREATE INDEX login_limits_window ON login_limits(window_ms);",
};

int auth_schema(store_t *s) {
  return store_ensure_schema(s, "auth", schema, sizeof(schema) / sizeof(schema[0]));
}

int auth_role_rank(const char *role) {
  if (role == NULL)
    return 0;
  if (strcmp(role, "admin") == 0)
    return 3;
  if (strcmp(role, "operator") == 0)
    return 2;
  if (strcmp(role, "viewer") == 0)
    return 1;
  return 0;
}

int auth_random_hex(char *out, size_t n) {
  uint8_t raw[64];
  if (n % 2 != 0 || n / 2 > sizeof(raw) || RAND_bytes(raw, (int)(n / 2)) != 1)
    return YM_ECRYPTO;
  for (size_t i = 0; i < n / 2; i++)
    snprintf(out + 2 * i, 3, "%02x", raw[i]);
  out[n] = '\0';
  OPENSSL_cleanse(raw, sizeof(raw));
  return 0;
}

void auth_token_hash(const char *token, uint8_t out[32]) {
  ym_sha256_mem(token, strlen(token), out);
}

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t len) {
  const unsigned char *v = sqlite3_column_text(st, col);
  snprintf(out, len, "%s", v != NULL ? (const char *)v : "");
}

/* Fills u from a row of USER_COLS starting at column 0. */
#define USER_COLS                                                                                  \
  "u.id, u.name, u.role, COALESCE(u.tenant_id, 0), COALESCE(t.name, ''), COALESCE(t.display, '')"

static void read_user(sqlite3_stmt *st, auth_user_t *u) {
  u->id = sqlite3_column_int64(st, 0);
  copy_col(st, 1, u->name, sizeof(u->name));
  copy_col(st, 2, u->role, sizeof(u->role));
  u->tenant_id = sqlite3_column_int64(st, 3);
  copy_col(st, 4, u->tenant_name, sizeof(u->tenant_name));
  copy_col(st, 5, u->tenant_display, sizeof(u->tenant_display));
}

int auth_session_db(sqlite3 *db, const uint8_t token_hash[32], int64_t now_ms, auth_user_t *u) {
  sqlite3_stmt *st = sql_prep(db, "SELECT " USER_COLS ", s.csrf FROM sessions s"
                                  " JOIN users u ON u.id = s.user_id"
                                  " LEFT JOIN tenants t ON t.id = u.tenant_id"
                                  " WHERE s.token_hash = ?1 AND s.expires_ms > ?2");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_blob(st, 1, token_hash, 32, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, now_ms);
  int r = sqlite3_step(st);
  int rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? YM_ENOENT : YM_EIO;
  if (rc == 0) {
    read_user(st, u);
    copy_col(st, 6, u->csrf, sizeof(u->csrf));
  }
  sqlite3_finalize(st);
  return rc;
}

/* The address part of a limit key: an IPv4 address as it is, an IPv6
 * address as its /64 (one subscriber usually holds a whole /64), an
 * IPv4-mapped IPv6 address as the IPv4 address. Anything else as given. */
static void peer_key(const char *peer, char *out, size_t len) {
  struct in6_addr a6;
  if (strchr(peer, ':') == NULL || inet_pton(AF_INET6, peer, &a6) != 1) {
    snprintf(out, len, "%s", peer);
    return;
  }
  char text[INET6_ADDRSTRLEN];
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(a6.s6_addr, mapped, sizeof(mapped)) == 0) {
    struct in_addr a4;
    memcpy(&a4, a6.s6_addr + 12, 4);
    inet_ntop(AF_INET, &a4, text, sizeof(text));
    snprintf(out, len, "%s", text);
    return;
  }
  memset(a6.s6_addr + 8, 0, 8);
  inet_ntop(AF_INET6, &a6, text, sizeof(text));
  snprintf(out, len, "%s/64", text);
}

/* The keys of an attempt: "a:<address>" and "n:<address>\n<name>" (the
 * address holds no newline, so the pair is unambiguous). */
typedef struct {
  char peer[80];
  char pair[80 + AUTH_NAME_MAX + 4];
} limit_keys_t;

static void limit_keys(const char *name, const char *peer, limit_keys_t *k) {
  char p[INET6_ADDRSTRLEN + 8];
  peer_key(peer, p, sizeof(p));
  snprintf(k->peer, sizeof(k->peer), "a:%s", p);
  snprintf(k->pair, sizeof(k->pair), "n:%s\n%s", p, name);
}

/* The attempts counted under key in the current window (0 when its
 * window has passed). Returns 0 or YM_EIO. */
static int limit_count(sqlite3 *db, const char *key, int64_t now_ms, int64_t *count) {
  sqlite3_stmt *st = sql_prep(db, "SELECT window_ms, count FROM login_limits WHERE key = ?1");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  int64_t window = 0;
  *count = 0;
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) {
    window = sqlite3_column_int64(st, 0);
    *count = sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
  if (r != SQLITE_ROW && r != SQLITE_DONE)
    return YM_EIO;
  if (now_ms - window >= AUTH_LIMIT_WINDOW_MS)
    *count = 0;
  return 0;
}

static int limit_take(sqlite3 *db, const char *key, int64_t now_ms) {
  sqlite3_stmt *st =
      sql_prep(db, "INSERT INTO login_limits(key, window_ms, count) VALUES(?1, ?2, 1)"
                   " ON CONFLICT(key) DO UPDATE SET"
                   " window_ms = CASE WHEN ?2 - window_ms >= ?3 THEN ?2 ELSE window_ms END,"
                   " count = CASE WHEN ?2 - window_ms >= ?3 THEN 1 ELSE count + 1 END");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, now_ms);
  sqlite3_bind_int64(st, 3, AUTH_LIMIT_WINDOW_MS);
  return sql_done(st);
}

/* Windows that have passed count nothing: their rows go, so that the
 * table holds no more than the addresses of the last 15 minutes. */
static int limit_sweep(sqlite3 *db, int64_t now_ms) {
  sqlite3_stmt *st = sql_prep(db, "DELETE FROM login_limits WHERE window_ms <= ?1");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, now_ms - AUTH_LIMIT_WINDOW_MS);
  return sql_done(st);
}

static int64_t delay_of(int64_t failures, int64_t free) {
  if (failures < free)
    return 0;
  int64_t d = AUTH_DELAY_BASE_MS;
  for (int64_t i = free; i < failures && d < AUTH_DELAY_MAX_MS; i++)
    d *= 2;
  return d < AUTH_DELAY_MAX_MS ? d : AUTH_DELAY_MAX_MS;
}

int64_t auth_login_delay_ms(int64_t pair, int64_t peer) {
  int64_t a = delay_of(pair, AUTH_DELAY_FREE_PAIR), b = delay_of(peer, AUTH_DELAY_FREE_PEER);
  return a > b ? a : b;
}

/*
 * A login attempt, before its password is checked, in one IMMEDIATE
 * transaction: sweep passed windows, read the (name, address) and address
 * counts, refuse at either limit, otherwise count the attempt under both
 * keys and derive its delay from the counts before it, then read the
 * user. Parallel attempts queue on the transaction, so each sees the
 * counts of all before it.
 */
int auth_login_begin_db(sqlite3 *db, const char *name, const char *peer, int64_t now_ms, char *hash,
                        size_t hash_len, auth_user_t *u, int64_t *delay_ms) {
  limit_keys_t k;
  limit_keys(name, peer, &k);
  *delay_ms = 0;
  int64_t n_pair = 0, n_peer = 0;
  int rc = sql_begin(db);
  if (rc == 0)
    rc = limit_sweep(db, now_ms);
  if (rc == 0)
    rc = limit_count(db, k.pair, now_ms, &n_pair);
  if (rc == 0)
    rc = limit_count(db, k.peer, now_ms, &n_peer);
  if (rc == 0 && (n_pair >= AUTH_LIMIT_PAIR || n_peer >= AUTH_LIMIT_PEER))
    rc = YM_EBUSY;
  if (rc == 0)
    rc = limit_take(db, k.pair, now_ms);
  if (rc == 0)
    rc = limit_take(db, k.peer, now_ms);
  int found = YM_ENOENT;
  if (rc == 0) {
    sqlite3_stmt *st = sql_prep(db, "SELECT " USER_COLS ", u.password_hash FROM users u"
                                    " LEFT JOIN tenants t ON t.id = u.tenant_id WHERE u.name = ?1");
    if (st == NULL) {
      rc = YM_EIO;
    } else {
      sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
      if (sqlite3_step(st) == SQLITE_ROW) {
        read_user(st, u);
        copy_col(st, 6, hash, hash_len);
        found = 0;
      }
      sqlite3_finalize(st);
    }
  }
  rc = sql_end(db, rc);
  if (rc == 0)
    *delay_ms = auth_login_delay_ms(n_pair, n_peer);
  return rc != 0 ? rc : found;
}

int auth_login_finish_db(sqlite3 *db, auth_user_t *u, bool ok, const char *name, const char *peer,
                         int64_t now_ms, char token[AUTH_TOKEN_LEN + 1]) {
  int rc = sql_begin(db);
  if (rc == 0 && ok) {
    uint8_t h[32];
    rc = auth_random_hex(token, AUTH_TOKEN_LEN);
    if (rc == 0)
      rc = auth_random_hex(u->csrf, AUTH_CSRF_LEN);
    auth_token_hash(token, h);
    sqlite3_stmt *st = rc == 0 ? sql_prep(db, "INSERT INTO sessions(token_hash, user_id, csrf,"
                                              " created_ms, expires_ms, peer)"
                                              " VALUES(?1, ?2, ?3, ?4, ?5, ?6)")
                               : NULL;
    if (rc == 0 && st == NULL)
      rc = YM_EIO;
    if (rc == 0) {
      sqlite3_bind_blob(st, 1, h, 32, SQLITE_TRANSIENT);
      sqlite3_bind_int64(st, 2, u->id);
      sqlite3_bind_text(st, 3, u->csrf, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 4, now_ms);
      sqlite3_bind_int64(st, 5, now_ms + AUTH_SESSION_MS);
      sqlite3_bind_text(st, 6, peer, -1, SQLITE_STATIC);
      rc = sql_done(st);
    }
    /* The right password gives the attempt's slots back. */
    limit_keys_t k;
    limit_keys(name, peer, &k);
    st = rc == 0 ? sql_prep(db, "DELETE FROM login_limits WHERE key = ?1") : NULL;
    if (st != NULL) {
      sqlite3_bind_text(st, 1, k.pair, -1, SQLITE_STATIC);
      rc = sql_done(st);
    }
    st = rc == 0 ? sql_prep(db, "UPDATE login_limits SET count = count - 1"
                                " WHERE key = ?1 AND count > 0")
                 : NULL;
    if (st != NULL) {
      sqlite3_bind_text(st, 1, k.peer, -1, SQLITE_STATIC);
      rc = sql_done(st);
    }
    /* Old sessions of everybody are swept now and then. */
    st = rc == 0 ? sql_prep(db, "DELETE FROM sessions WHERE expires_ms <= ?1") : NULL;
    if (st != NULL) {
      sqlite3_bind_int64(st, 1, now_ms);
      rc = sql_done(st);
    }
  }
  if (rc == 0) {
    auth_user_t anon = {0};
    snprintf(anon.name, sizeof(anon.name), "%s", name);
    rc = auth_audit_db(db, ok ? u : &anon, ok ? u->tenant_id : 0, ok ? "login" : "login.failed", "",
                       "", peer, now_ms);
  }
  return sql_end(db, rc);
}

int auth_logout_db(sqlite3 *db, const uint8_t token_hash[32], const auth_user_t *u,
                   const char *peer, int64_t now_ms) {
  int rc = sql_begin(db);
  sqlite3_stmt *st = rc == 0 ? sql_prep(db, "DELETE FROM sessions WHERE token_hash = ?1") : NULL;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_blob(st, 1, token_hash, 32, SQLITE_STATIC);
    rc = sql_done(st);
  }
  if (rc == 0)
    rc = auth_audit_db(db, u, u->tenant_id, "logout", "", "", peer, now_ms);
  return sql_end(db, rc);
}

int auth_password_get_db(sqlite3 *db, int64_t user_id, char *hash, size_t hash_len) {
  sqlite3_stmt *st = sql_prep(db, "SELECT password_hash FROM users WHERE id = ?1");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, user_id);
  int rc = sqlite3_step(st) == SQLITE_ROW ? 0 : YM_ENOENT;
  if (rc == 0)
    copy_col(st, 0, hash, hash_len);
  sqlite3_finalize(st);
  return rc;
}

int auth_password_set_db(sqlite3 *db, int64_t user_id, const char *new_hash,
                         const uint8_t keep_hash[32]) {
  sqlite3_stmt *st = sql_prep(db, "UPDATE users SET password_hash = ?2 WHERE id = ?1");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, user_id);
  sqlite3_bind_text(st, 2, new_hash, -1, SQLITE_STATIC);
  int rc = sql_done(st);
  st =
      rc == 0 ? sql_prep(db, "DELETE FROM sessions WHERE user_id = ?1 AND token_hash != ?2") : NULL;
  if (rc == 0 && st == NULL)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_blob(st, 2, keep_hash, 32, SQLITE_STATIC);
    rc = sql_done(st);
  }
  return rc;
}

int auth_audit_db(sqlite3 *db, const auth_user_t *u, int64_t tenant_id, const char *action,
                  const char *target, const char *detail, const char *peer, int64_t now_ms) {
  sqlite3_stmt *st =
      sql_prep(db, "INSERT INTO audit(at_ms, user_id, user, tenant_id, action, target,"
                   " detail, peer) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (st == NULL)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, now_ms);
  if (u->id != 0)
    sqlite3_bind_int64(st, 2, u->id);
  sqlite3_bind_text(st, 3, u->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, tenant_id);
  sqlite3_bind_text(st, 5, action, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, target ? target : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 7, detail ? detail : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 8, peer ? peer : "", -1, SQLITE_STATIC);
  return sql_done(st);
}
