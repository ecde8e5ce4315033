/*
 * Tests of the login limits (auth.c) on a real SQLite file: attempts are
 * counted per (user name, address) and per address, never per name
 * alone, so failures from one address do not keep the name out from
 * another; repeated failures are slowed down on a growing schedule before
 * they are refused; a success gives the slots back; IPv6 addresses count
 * per /64; passed windows are swept.
 */
#include "auth.h"
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

#define T0 1700000000000LL

typedef struct {
  char dir[64];
  store_t *s;
  sqlite3 *db; /* a connection of the test's own, as the database thread's */
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

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  snprintf(f->dir, sizeof(f->dir), "/tmp/ym-auth-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(store_open(f->dir, NULL, &f->s), 0);
  assert_int_equal(auth_schema(f->s), 0);
  char path[128];
  snprintf(path, sizeof(path), "%s/yamori.db", f->dir);
  assert_int_equal(sqlite3_open(path, &f->db), SQLITE_OK);
  sqlite3_busy_timeout(f->db, 5000);
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

/* One attempt that fails: begin, then finish with a wrong password.
 * Returns begin's code; *delay the answer's delay. */
static int fail_once(fixture_t *f, const char *name, const char *peer, int64_t now,
                     int64_t *delay) {
  char hash[256];
  auth_user_t u;
  memset(&u, 0, sizeof(u));
  int64_t d = -1;
  int rc = auth_login_begin_db(f->db, name, peer, now, hash, sizeof(hash), &u, &d);
  if (delay != NULL)
    *delay = d;
  if (rc == 0 || rc == YM_ENOENT) {
    char token[AUTH_TOKEN_LEN + 1];
    assert_int_equal(auth_login_finish_db(f->db, &u, false, name, peer, now, token), 0);
  } else {
    assert_int_equal(d, 0); /* a refusal waits for nothing */
  }
  return rc;
}

static int64_t rows(fixture_t *f) {
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT count(*) FROM login_limits", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

/* The schedule itself: free failures, then doubling up to the cap. */
static void delay_schedule(void **state) {
  (void)state;
  for (int64_t n = 0; n < AUTH_DELAY_FREE_PAIR; n++)
    assert_int_equal(auth_login_delay_ms(n, 0), 0);
  assert_int_equal(auth_login_delay_ms(AUTH_DELAY_FREE_PAIR, 0), AUTH_DELAY_BASE_MS);
  assert_int_equal(auth_login_delay_ms(AUTH_DELAY_FREE_PAIR + 1, 0), 2 * AUTH_DELAY_BASE_MS);
  assert_int_equal(auth_login_delay_ms(AUTH_DELAY_FREE_PAIR + 3, 0), 8 * AUTH_DELAY_BASE_MS);
  assert_int_equal(auth_login_delay_ms(1000, 0), AUTH_DELAY_MAX_MS);
  assert_int_equal(auth_login_delay_ms(0, AUTH_DELAY_FREE_PEER - 1), 0);
  assert_int_equal(auth_login_delay_ms(0, AUTH_DELAY_FREE_PEER), AUTH_DELAY_BASE_MS);
  assert_int_equal(auth_login_delay_ms(INT64_MAX, INT64_MAX), AUTH_DELAY_MAX_MS);
}

/* A stranger's failures for a name from one address slow that address
 * down and then refuse it; the same name from another address is neither
 * slowed nor refused. */
static void failures_of_one_address_do_not_lock_the_name(void **state) {
  fixture_t *f = *state;
  int64_t d;
  for (int i = 0; i < AUTH_LIMIT_PAIR; i++) {
    assert_int_equal(fail_once(f, "admin", "127.0.0.2", T0 + i, &d), YM_ENOENT);
    assert_int_equal(d, auth_login_delay_ms(i, i));
  }
  assert_int_equal(d, AUTH_DELAY_MAX_MS);
  assert_int_equal(fail_once(f, "admin", "127.0.0.2", T0 + 100, &d), YM_EBUSY);
  assert_int_equal(fail_once(f, "admin", "127.0.0.1", T0 + 101, &d), YM_ENOENT);
  assert_int_equal(d, 0);
  /* Another name from the flooding address still has its address's slots. */
  assert_int_equal(fail_once(f, "alice", "127.0.0.2", T0 + 102, &d), YM_ENOENT);
  assert_int_equal(d, auth_login_delay_ms(0, AUTH_LIMIT_PAIR));
  /* The window passes: the address starts afresh and old rows are gone. */
  assert_true(rows(f) >= 3);
  assert_int_equal(fail_once(f, "admin", "127.0.0.2", T0 + AUTH_LIMIT_WINDOW_MS + 200, &d),
                   YM_ENOENT);
  assert_int_equal(d, 0);
  assert_int_equal(rows(f), 2); /* the new attempt's own two keys */
}

/* Spraying many names from one address meets the address's limit. */
static void spraying_names_meets_the_address_limit(void **state) {
  fixture_t *f = *state;
  int64_t d;
  char name[32];
  for (int i = 0; i < AUTH_LIMIT_PEER; i++) {
    snprintf(name, sizeof(name), "user%d", i);
    assert_int_equal(fail_once(f, name, "198.51.100.7", T0 + i, &d), YM_ENOENT);
    assert_int_equal(d, auth_login_delay_ms(0, i));
  }
  assert_int_equal(fail_once(f, "someone-new", "198.51.100.7", T0 + 50, &d), YM_EBUSY);
  assert_int_equal(fail_once(f, "someone-new", "198.51.100.8", T0 + 51, &d), YM_ENOENT);
  assert_int_equal(d, 0);
}

/* IPv6 clients count per /64; an IPv4-mapped address as its IPv4 one. */
static void ipv6_counts_per_64(void **state) {
  fixture_t *f = *state;
  char peer[64];
  int64_t d;
  for (int i = 0; i < AUTH_LIMIT_PEER; i++) {
    snprintf(peer, sizeof(peer), "2001:db8:1:2::%x", i + 1);
    char name[32];
    snprintf(name, sizeof(name), "n%d", i);
    assert_int_equal(fail_once(f, name, peer, T0 + i, &d), YM_ENOENT);
  }
  assert_int_equal(fail_once(f, "x", "2001:db8:1:2:ffff:ffff:ffff:ffff", T0 + 40, &d), YM_EBUSY);
  assert_int_equal(fail_once(f, "x", "2001:db8:1:3::1", T0 + 41, &d), YM_ENOENT);
  for (int i = 0; i < AUTH_LIMIT_PAIR; i++)
    assert_int_equal(fail_once(f, "y", "192.0.2.9", T0 + 50 + i, &d), YM_ENOENT);
  assert_int_equal(fail_once(f, "y", "::ffff:192.0.2.9", T0 + 70, &d), YM_EBUSY);
}

/* The right password after failures: accepted (after its delay), and it
 * gives the slots back, so the next attempt is not slowed. */
static void success_gives_the_slots_back(void **state) {
  fixture_t *f = *state;
  char pw[33], hash[256];
  assert_int_equal(store_sync_ensure_admin(f->s, pw), 1);
  int64_t d;
  for (int i = 0; i < AUTH_DELAY_FREE_PAIR + 2; i++)
    assert_int_equal(fail_once(f, "admin", "203.0.113.5", T0 + i, &d), 0);
  auth_user_t u;
  memset(&u, 0, sizeof(u));
  assert_int_equal(
      auth_login_begin_db(f->db, "admin", "203.0.113.5", T0 + 10, hash, sizeof(hash), &u, &d), 0);
  assert_int_equal(d, auth_login_delay_ms(AUTH_DELAY_FREE_PAIR + 2, AUTH_DELAY_FREE_PAIR + 2));
  assert_true(d > 0);
  assert_string_equal(u.name, "admin");
  char token[AUTH_TOKEN_LEN + 1];
  assert_int_equal(auth_login_finish_db(f->db, &u, true, "admin", "203.0.113.5", T0 + 10, token),
                   0);
  assert_int_equal(strlen(token), AUTH_TOKEN_LEN);
  memset(&u, 0, sizeof(u));
  assert_int_equal(
      auth_login_begin_db(f->db, "admin", "203.0.113.5", T0 + 20, hash, sizeof(hash), &u, &d), 0);
  /* The pair starts afresh; the address keeps its earlier failures. */
  assert_int_equal(d, auth_login_delay_ms(0, AUTH_DELAY_FREE_PAIR + 2));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(delay_schedule),
      cmocka_unit_test_setup_teardown(failures_of_one_address_do_not_lock_the_name, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(spraying_names_meets_the_address_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(ipv6_counts_per_64, setup, teardown),
      cmocka_unit_test_setup_teardown(success_gives_the_slots_back, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
