/*
 * People: sessions, login limits, users and the audit log (module "auth").
 *
 * Every function here runs with a database connection (store_call or
 * store_read, or store_sync_call in the command-line tools) and never
 * touches the loop. Secrets are never stored in the clear: a session is
 * known by SHA-256 of its token, passwords by their scrypt hash.
 *
 * Login limits are counted before the password is checked: an attempt
 * takes its slots in one IMMEDIATE transaction (auth_login_begin_db), so
 * that parallel attempts cannot exceed the limits, and a success gives
 * them back (auth_login_finish_db). Attempts are counted per (user name,
 * client address) and per client address (IPv6: per /64), never per user
 * name alone: a stranger's failures from one address must not keep the
 * right person out from another. Repeated failures are slowed down first
 * (the answer waits a growing delay), refused (429) only at the limits
 * below; docs/console-api.md "Login limits" gives the schedule.
 */
#ifndef YAMORI_CONSOLE_AUTH_H
#define YAMORI_CONSOLE_AUTH_H

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define AUTH_NAME_MAX 64
#define AUTH_TOKEN_LEN 64 /* hex characters of a session token */
#define AUTH_CSRF_LEN 32  /* hex characters of a CSRF token */
#define AUTH_SESSION_MS (12LL * 3600 * 1000)
#define AUTH_LIMIT_WINDOW_MS (15LL * 60 * 1000)
#define AUTH_LIMIT_PAIR 10        /* attempts per (user name, address) in a window */
#define AUTH_LIMIT_PEER 20        /* attempts per address, any user names */
#define AUTH_DELAY_FREE_PAIR 3    /* failures of a (name, address) answered at once */
#define AUTH_DELAY_FREE_PEER 5    /* failures of an address answered at once */
#define AUTH_DELAY_BASE_MS 1000LL /* the first delay, doubled per failure after */
#define AUTH_DELAY_MAX_MS 16000LL
#define AUTH_PASSWORD_MIN 12
#define AUTH_PASSWORD_MAX 256

/* A signed-in person. tenant_id 0: provider staff (every tenant). */
typedef struct {
  int64_t id;
  char name[AUTH_NAME_MAX + 1];
  char role[16]; /* admin, operator, viewer */
  int64_t tenant_id;
  char tenant_name[64];
  char tenant_display[257];
  char csrf[AUTH_CSRF_LEN + 1];
} auth_user_t;

int auth_schema(store_t *s);

/* Rank of a role: viewer 1, operator 2, admin 3, unknown 0. */
int auth_role_rank(const char *role);

/* Looks up the session whose token hashes to token_hash. Returns 0 with u
 * filled, YM_ENOENT when there is none or it has expired. */
int auth_session_db(sqlite3 *db, const uint8_t token_hash[32], int64_t now_ms, auth_user_t *u);

/* Takes a login attempt's slots for (user name, peer address) and for
 * the peer address, and sets *delay_ms to how long the answer must wait
 * (0 while the failures before it are few; see auth_login_delay_ms).
 * Returns 0 with the stored password hash copied to hash (u filled),
 * YM_ENOENT for an unknown name (the slots are taken all the same), or
 * YM_EBUSY when a limit is reached (nothing taken, *delay_ms 0). */
int auth_login_begin_db(sqlite3 *db, const char *name, const char *peer, int64_t now_ms, char *hash,
                        size_t hash_len, auth_user_t *u, int64_t *delay_ms);
/* The delay of an attempt after `pair` failures of its (name, address)
 * and `peer` failures of its address in the window: the larger of the
 * two schedules, each AUTH_DELAY_BASE_MS doubled per failure past its
 * free ones, at most AUTH_DELAY_MAX_MS. */
int64_t auth_login_delay_ms(int64_t pair, int64_t peer);
/* Ends a login attempt: on success creates a session (token and csrf out,
 * hex) and gives back the attempt's slots (the (name, address) count is
 * cleared, the address count lowered by one); either way writes the audit
 * log. */
int auth_login_finish_db(sqlite3 *db, auth_user_t *u, bool ok, const char *name, const char *peer,
                         int64_t now_ms, char token[AUTH_TOKEN_LEN + 1]);
/* Ends the session. */
int auth_logout_db(sqlite3 *db, const uint8_t token_hash[32], const auth_user_t *u,
                   const char *peer, int64_t now_ms);
/* Replaces the password hash of user id and ends the user's other
 * sessions (all but keep_hash). */
int auth_password_set_db(sqlite3 *db, int64_t user_id, const char *new_hash,
                         const uint8_t keep_hash[32]);
/* The password hash of user id (for checking the old password). */
int auth_password_get_db(sqlite3 *db, int64_t user_id, char *hash, size_t hash_len);

/* Appends to the audit log. tenant_id 0: not about one tenant. */
int auth_audit_db(sqlite3 *db, const auth_user_t *u, int64_t tenant_id, const char *action,
                  const char *target, const char *detail, const char *peer, int64_t now_ms);

/* Fills a random token of n hex characters (n even) plus NUL. */
int auth_random_hex(char *out, size_t n);
/* SHA-256 of a session token. */
void auth_token_hash(const char *token, uint8_t out[32]);

#endif
