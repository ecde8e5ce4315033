/*
 * The agent's own files by identity (protect.h) through the quarantine:
 * a protected directory is refused whatever the path's spelling (repeated
 * slashes, a sub-directory, a bind mount of it) and a path through a
 * symbolic link or with ".." never reaches it; a protected file is refused
 * where its directory is not; a restore into a protected directory is
 * refused and the entry kept; processes are known by pid and start time.
 * Each test works in its own temporary directory.
 */
#include "protect.h"
#include "quarantine.h"

#include "yamori/err.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct {
  char base[PATH_MAX];  /* the test's directory, without symbolic links */
  char qdir[PATH_MAX];  /* base/q */
  char state[PATH_MAX]; /* base/state: protected, holds identity.json */
  char ident[PATH_MAX]; /* base/state/identity.json */
  char other[PATH_MAX]; /* base/other: not protected */
  protect_t prot;
} fixture_t;

static void join(char *out, const char *dir, const char *name) {
  int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
  assert_true(n > 0 && n < PATH_MAX);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  assert_int_equal(close(fd), 0);
}

static bool exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  char tmpl[] = "/tmp/ym-protect-XXXXXX";
  assert_non_null(f);
  assert_non_null(mkdtemp(tmpl));
  assert_non_null(realpath(tmpl, f->base));
  join(f->qdir, f->base, "q");
  join(f->state, f->base, "state");
  join(f->ident, f->state, "identity.json");
  join(f->other, f->base, "other");
  assert_int_equal(mkdir(f->state, 0700), 0);
  assert_int_equal(mkdir(f->other, 0755), 0);
  write_file(f->ident, "{\"agent_id\":\"a\",\"secret\":\"s\"}");
  protect_init(&f->prot);
  assert_int_equal(protect_add_dir(&f->prot, f->state), 0);
  *state = f;
  return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int teardown(void **state) {
  fixture_t *f = *state;
  nftw(f->base, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  free(f);
  return 0;
}

/* Quarantines path as the console command does: opened with O_NOFOLLOW
 * (the last component only, like open()), then the protected call. */
static int quarantine_path(fixture_t *f, const char *path, quarantine_entry_t *e) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return ym_err_from_errno(errno);
  int rc = quarantine_file_protected(f->qdir, fd, path, "test", &f->prot, e);
  close(fd);
  return rc;
}

static void spellings_of_a_protected_directory(void **state) {
  fixture_t *f = *state;
  quarantine_entry_t e;
  char p[PATH_MAX];
  /* The plain path, and the same with repeated slashes (a prefix
   * comparison of the text let this one through). */
  assert_int_equal(quarantine_path(f, f->ident, &e), YM_EPERM);
  join(p, f->base, "/state//identity.json");
  assert_int_equal(quarantine_path(f, p, &e), YM_EPERM);
  join(p, "", f->ident); /* "//tmp/..." */
  assert_int_equal(quarantine_path(f, p, &e), YM_EPERM);
  /* Below a protected directory. */
  char sub[PATH_MAX], deep[PATH_MAX];
  join(sub, f->state, "spool");
  assert_int_equal(mkdir(sub, 0700), 0);
  join(deep, sub, "head");
  write_file(deep, "7\n");
  assert_int_equal(quarantine_path(f, deep, &e), YM_EPERM);
  assert_true(exists(deep));
  assert_true(exists(f->ident));
  /* The same file elsewhere is quarantined normally. */
  join(p, f->other, "identity.json");
  write_file(p, "not the agent's");
  assert_int_equal(quarantine_path(f, p, &e), 0);
  assert_false(exists(p));
  quarantine_entry_free(&e);
}

static void dotdot_and_symlinks_never_reach_it(void **state) {
  fixture_t *f = *state;
  quarantine_entry_t e;
  char p[PATH_MAX], link[PATH_MAX];
  /* ".." is refused before anything is opened. */
  join(p, f->base, "other/../state/identity.json");
  assert_int_equal(quarantine_path(f, p, &e), YM_EINVAL);
  /* A symbolic link to the state directory above the file: open() follows
   * it, the walk without links does not. */
  join(link, f->other, "alias");
  assert_int_equal(symlink(f->state, link), 0);
  join(p, link, "identity.json");
  int rc = quarantine_path(f, p, &e);
  assert_true(rc == YM_EPERM || rc == YM_ESTALE);
  /* A symbolic link as the last component is never opened. */
  join(link, f->other, "ident-link");
  assert_int_equal(symlink(f->ident, link), 0);
  assert_int_not_equal(quarantine_path(f, link, &e), 0);
  assert_true(exists(f->ident));
}

/* A second path to the same directory (a bind mount): only its identity
 * tells. Needs root to mount; skipped otherwise. */
static void bind_mount_alias(void **state) {
  fixture_t *f = *state;
  quarantine_entry_t e;
  char alias[PATH_MAX], p[PATH_MAX];
  join(alias, f->other, "bound");
  assert_int_equal(mkdir(alias, 0755), 0);
  if (mount(f->state, alias, NULL, MS_BIND, NULL) != 0) {
    assert_true(errno == EPERM || errno == EACCES);
    skip();
  }
  join(p, alias, "identity.json");
  int rc = quarantine_path(f, p, &e);
  assert_int_equal(umount2(alias, MNT_DETACH), 0);
  assert_int_equal(rc, YM_EPERM);
  assert_true(exists(f->ident));
}

static void protected_file_and_restore(void **state) {
  fixture_t *f = *state;
  quarantine_entry_t e, r;
  char conf[PATH_MAX], victim[PATH_MAX];
  /* A protected file in a directory that is not. */
  join(conf, f->other, "agent.json");
  write_file(conf, "{}");
  assert_int_equal(protect_add_file(&f->prot, conf), 0);
  assert_int_equal(quarantine_path(f, conf, &e), YM_EPERM);
  assert_true(exists(conf));
  /* A file taken from a directory that becomes protected is not put
   * back there; the entry stays. */
  join(victim, f->other, "victim.txt");
  write_file(victim, "harmless");
  assert_int_equal(quarantine_path(f, victim, &e), 0);
  assert_int_equal(protect_add_dir(&f->prot, f->other), 0);
  assert_int_equal(quarantine_restore_protected(f->qdir, e.id, &f->prot, &r), YM_EPERM);
  assert_false(exists(victim));
  protect_t none;
  protect_init(&none);
  assert_int_equal(quarantine_restore_protected(f->qdir, e.id, &none, &r), 0);
  assert_true(exists(victim));
  quarantine_entry_free(&r);
  quarantine_entry_free(&e);
}

static void recording(void **state) {
  fixture_t *f = *state;
  char p[PATH_MAX];
  join(p, f->base, "missing");
  assert_int_equal(protect_add_dir(&f->prot, p), YM_ENOENT);
  assert_int_equal(protect_add_dir(&f->prot, f->ident), YM_EINVAL); /* not a directory */
  assert_int_equal(protect_add_file(&f->prot, f->state), YM_EINVAL);
  assert_int_equal(protect_add_dir(&f->prot, "/"), YM_EINVAL); /* would cover everything */
  size_t n = f->prot.ndirs;
  assert_int_equal(protect_add_dir(&f->prot, f->state), 0);
  assert_int_equal(f->prot.ndirs, n); /* once */
  /* Processes by pid and start time. */
  assert_int_equal(protect_add_proc(&f->prot, getpid()), 0);
  assert_true(protect_has_proc(&f->prot, getpid(), f->prot.procs[0].start_ticks));
  assert_false(protect_has_proc(&f->prot, getpid(), f->prot.procs[0].start_ticks + 1));
  assert_false(protect_has_proc(&f->prot, getppid(), f->prot.procs[0].start_ticks));
  assert_int_equal(protect_add_proc(&f->prot, 0), YM_ENOENT);
  /* The walk up from the root's own directory finds nothing. */
  int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  assert_true(root >= 0);
  assert_int_equal(protect_check_dir(&f->prot, root), 0);
  close(root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(spellings_of_a_protected_directory, setup, teardown),
      cmocka_unit_test_setup_teardown(dotdot_and_symlinks_never_reach_it, setup, teardown),
      cmocka_unit_test_setup_teardown(bind_mount_alias, setup, teardown),
      cmocka_unit_test_setup_teardown(protected_file_and_restore, setup, teardown),
      cmocka_unit_test_setup_teardown(recording, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
