/*
 * Tests of the quarantine on this machine's real file system: round trips
 * that check content, owner, mode and mtime byte for byte, hostile names,
 * every refusal, damaged quarantine files, and races in which another
 * thread keeps swapping the detected file's directory entry (or its
 * directory) with a symbolic link to a protected file while the quarantine
 * runs. Each test works in its own temporary directory.
 */
#include "quarantine.h"
#include "yamori/err.h"
#include "yamori/sha256.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

/* Iterations of the race tests. */
#define RACE_FILE_ITERATIONS 2000
#define RACE_DIR_ITERATIONS 1000

typedef struct {
  char base[PATH_MAX]; /* the test's temporary directory, without symlinks */
  char qdir[PATH_MAX]; /* base/q */
} fixture_t;

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static void join(char *out, const char *dir, const char *name) {
  int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
  assert_true(n > 0 && n < PATH_MAX);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  char tmpl[] = "/tmp/ym-quarantine-XXXXXX";
  assert_non_null(f);
  assert_non_null(mkdtemp(tmpl));
  assert_non_null(realpath(tmpl, f->base));
  join(f->qdir, f->base, "q");
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
  nftw(f->base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(f);
  return 0;
}

static void make_dir(const char *path) {
  assert_int_equal(mkdir(path, 0755), 0);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  assert_true(fd >= 0);
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    assert_true(n > 0);
    p += n;
    len -= (size_t)n;
  }
  assert_int_equal(fchmod(fd, mode), 0);
  assert_int_equal(close(fd), 0);
}

/* Reads a whole file into a new buffer. */
static unsigned char *read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  assert_true(fd >= 0);
  assert_int_equal(fstat(fd, &st), 0);
  unsigned char *buf = malloc((size_t)st.st_size + 1);
  assert_non_null(buf);
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size + 1 - got);
    assert_true(n >= 0);
    if (n == 0)
      break;
    got += (size_t)n;
    assert_true(got <= (size_t)st.st_size);
  }
  close(fd);
  buf[got] = '\0';
  *len = got;
  return buf;
}

static void hash_mem(const void *p, size_t n, char hex[YM_SHA256_HEX_LEN + 1]) {
  uint8_t d[YM_SHA256_LEN];
  assert_int_equal(ym_sha256_mem(p, n, d), 0);
  ym_hex(d, sizeof(d), hex);
}

static void hash_file(const char *path, char hex[YM_SHA256_HEX_LEN + 1]) {
  uint8_t d[YM_SHA256_LEN];
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(ym_sha256_fd(fd, 0, d, NULL), 0);
  close(fd);
  ym_hex(d, sizeof(d), hex);
}

/* Hashes the decompressed content of a .gz file. */
static void hash_gz(const char *path, char hex[YM_SHA256_HEX_LEN + 1], size_t *size) {
  gzFile g = gzopen(path, "rb");
  assert_non_null(g);
  size_t cap = 1 << 16, len = 0;
  unsigned char *buf = malloc(cap);
  assert_non_null(buf);
  for (;;) {
    if (len == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
    int n = gzread(g, buf + len, (unsigned)(cap - len));
    assert_true(n >= 0);
    if (n == 0)
      break;
    len += (size_t)n;
  }
  assert_int_equal(gzclose(g), Z_OK);
  hash_mem(buf, len, hex);
  free(buf);
  *size = len;
}

/* Fills buf with deterministic pseudo-random bytes. */
static void fill_random(unsigned char *buf, size_t n, uint64_t seed) {
  uint64_t x = seed | 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    buf[i] = (unsigned char)(x >> 24);
  }
}

/* Number of entries in a directory, "." and ".." excluded; when prefix is
 * not NULL, only names starting with it are counted. */
static size_t count_entries(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  struct dirent *de;
  size_t n = 0;
  assert_non_null(d);
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (prefix == NULL || strncmp(de->d_name, prefix, strlen(prefix)) == 0)
      n++;
  }
  closedir(d);
  return n;
}

static bool exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static void qfile(char *out, const fixture_t *f, const char *id, const char *suffix) {
  int n = snprintf(out, PATH_MAX, "%s/%s%s", f->qdir, id, suffix);
  assert_true(n > 0 && n < PATH_MAX);
}

static bool id_ok(const char *id) {
  if (strlen(id) != QUARANTINE_ID_LEN)
    return false;
  for (size_t i = 0; i < QUARANTINE_ID_LEN; i++) {
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return false;
  }
  return true;
}

static int open_scan(const char *path) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  assert_true(fd >= 0);
  return fd;
}

/* Quarantines path (opened here) and checks success. */
static void quarantine_ok(const fixture_t *f, const char *path, quarantine_entry_t *e) {
  int fd = open_scan(path);
  assert_int_equal(quarantine_file(f->qdir, fd, path, "Test_Rule", e), 0);
  close(fd);
}

/* ------------------------------------------------------------------ */
/* Round trips                                                          */

static void round_trip(void **state) {
  fixture_t *f = *state;
  if (geteuid() != 0) {
    printf("SKIP: needs root\n");
    skip();
  }
  char dir[PATH_MAX], path[PATH_MAX], gz[PATH_MAX], js[PATH_MAX], hex[YM_SHA256_HEX_LEN + 1];
  size_t len = 1024 * 1024 + 37;
  unsigned char *content = malloc(len);
  assert_non_null(content);
  fill_random(content, len, 42);
  hash_mem(content, len, hex);
  join(dir, f->base, "d");
  join(path, dir, "sample.bin");
  make_dir(dir);
  write_file(path, content, len, 0640);
  assert_int_equal(chown(path, 1234, 5678), 0);
  struct timespec times[2] = {{.tv_sec = 1500000000, .tv_nsec = 0},
                              {.tv_sec = 1600000000, .tv_nsec = 123456789}};
  assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
  struct stat before, dst, st;
  assert_int_equal(stat(path, &before), 0);
  assert_int_equal(stat(dir, &dst), 0);

  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t t0 = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
  int fd = open_scan(path);
  quarantine_entry_t e;
  assert_int_equal(quarantine_file(f->qdir, fd, path, "Test_Rule", &e), 0);
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t t1 = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;

  /* The entry describes the file. */
  assert_true(id_ok(e.id));
  assert_string_equal(e.original_path, path);
  assert_int_equal(e.dev, before.st_dev);
  assert_int_equal(e.ino, before.st_ino);
  assert_int_equal(e.dir_dev, dst.st_dev);
  assert_int_equal(e.dir_ino, dst.st_ino);
  assert_int_equal(e.uid, 1234);
  assert_int_equal(e.gid, 5678);
  assert_int_equal(e.mode, S_IFREG | 0640);
  assert_int_equal(e.mtime_ns, 1600000000123456789LL);
  assert_int_equal(e.size, (int64_t)len);
  assert_string_equal(e.sha256, hex);
  assert_string_equal(e.rule, "Test_Rule");
  assert_true(e.quarantined_ns >= t0 && e.quarantined_ns <= t1);

  /* The original is gone, the scanned inode has no link left, the
   * directory holds nothing else. */
  assert_false(exists(path));
  assert_int_equal(fstat(fd, &st), 0);
  assert_int_equal(st.st_nlink, 0);
  close(fd);
  assert_int_equal(count_entries(dir, NULL), 0);

  /* The quarantine directory: 0700, exactly the .gz and the sidecar, both
   * 0600; the .gz holds the content. */
  assert_int_equal(stat(f->qdir, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0700);
  assert_int_equal(count_entries(f->qdir, NULL), 2);
  qfile(gz, f, e.id, ".gz");
  qfile(js, f, e.id, ".json");
  assert_int_equal(stat(gz, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(stat(js, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0600);
  char gzhex[YM_SHA256_HEX_LEN + 1];
  size_t gzlen;
  hash_gz(gz, gzhex, &gzlen);
  assert_int_equal(gzlen, len);
  assert_string_equal(gzhex, hex);

  /* The list shows it with the same fields. */
  quarantine_entry_t *list;
  size_t n, bad;
  assert_int_equal(quarantine_list(f->qdir, &list, &n, &bad), 0);
  assert_int_equal(n, 1);
  assert_int_equal(bad, 0);
  assert_string_equal(list[0].id, e.id);
  assert_string_equal(list[0].original_path, path);
  assert_int_equal(list[0].dev, e.dev);
  assert_int_equal(list[0].ino, e.ino);
  assert_int_equal(list[0].dir_dev, e.dir_dev);
  assert_int_equal(list[0].dir_ino, e.dir_ino);
  assert_int_equal(list[0].uid, e.uid);
  assert_int_equal(list[0].gid, e.gid);
  assert_int_equal(list[0].mode, e.mode);
  assert_int_equal(list[0].mtime_ns, e.mtime_ns);
  assert_int_equal(list[0].size, e.size);
  assert_string_equal(list[0].sha256, e.sha256);
  assert_string_equal(list[0].rule, "Test_Rule");
  assert_int_equal(list[0].quarantined_ns, e.quarantined_ns);
  quarantine_list_free(list, n);

  /* Restore: same bytes, owner, mode and mtime; the quarantine is empty. */
  quarantine_entry_t r;
  assert_int_equal(quarantine_restore(f->qdir, e.id, &r), 0);
  assert_string_equal(r.id, e.id);
  assert_string_equal(r.original_path, path);
  size_t rlen;
  unsigned char *back = read_file(path, &rlen);
  assert_int_equal(rlen, len);
  assert_memory_equal(back, content, len);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_uid, 1234);
  assert_int_equal(st.st_gid, 5678);
  assert_int_equal(st.st_mode, S_IFREG | 0640);
  assert_int_equal(st.st_mtim.tv_sec, 1600000000);
  assert_int_equal(st.st_mtim.tv_nsec, 123456789);
  assert_int_equal(st.st_nlink, 1);
  assert_int_equal(count_entries(dir, NULL), 1);
  assert_int_equal(count_entries(f->qdir, NULL), 0);
  assert_int_equal(quarantine_list(f->qdir, &list, &n, &bad), 0);
  assert_int_equal(n, 0);
  assert_null(list);
  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), YM_ENOENT);

  free(back);
  free(content);
  quarantine_entry_free(&r);
  quarantine_entry_free(&e);
  quarantine_entry_free(&e); /* safe twice */
  quarantine_entry_free(NULL);
}

/* Names with bytes that are not UTF-8, a newline, a quote and a backslash
 * (in the directory and in the file name) survive the sidecar exactly. */
static void hostile_names(void **state) {
  fixture_t *f = *state;
  char dir[PATH_MAX], path[PATH_MAX], js[PATH_MAX], hex[YM_SHA256_HEX_LEN + 1];
  static const char content[] = "hostile\0name\ncontent";
  join(dir, f->base, "dir\xfe\xc3(");
  join(path, dir, "bad\xff\xc3\x28\n\"\\\xc3\xa9\x01.txt");
  make_dir(dir);
  write_file(path, content, sizeof(content), 0600);
  hash_mem(content, sizeof(content), hex);

  int fd = open_scan(path);
  quarantine_entry_t e;
  assert_int_equal(quarantine_file(f->qdir, fd, path, "rule\xff\n", &e), 0);
  close(fd);
  assert_false(exists(path));
  assert_string_equal(e.sha256, hex);

  /* The sidecar is valid UTF-8 text with the bytes escaped as in json.h. */
  size_t jlen;
  qfile(js, f, e.id, ".json");
  unsigned char *text = read_file(js, &jlen);
  text[jlen] = '\0';
  assert_non_null(strstr((char *)text, "bad\\udcff\\udcc3(\\n\\\"\\\\\xc3\xa9\\u0001.txt"));
  assert_non_null(strstr((char *)text, "dir\\udcfe\\udcc3("));
  assert_non_null(strstr((char *)text, "\"rule\":\"rule\\udcff\\n\""));
  free(text);

  quarantine_entry_t *list;
  size_t n, bad;
  assert_int_equal(quarantine_list(f->qdir, &list, &n, &bad), 0);
  assert_int_equal(n, 1);
  assert_int_equal(bad, 0);
  assert_string_equal(list[0].original_path, path);
  assert_string_equal(list[0].rule, "rule\xff\n");
  quarantine_list_free(list, n);

  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), 0);
  size_t len;
  unsigned char *back = read_file(path, &len);
  assert_int_equal(len, sizeof(content));
  assert_memory_equal(back, content, len);
  free(back);
  quarantine_entry_free(&e);
}

/* ------------------------------------------------------------------ */
/* Refusals                                                             */

/* Checks that path still holds content and nothing is in quarantine. */
static void assert_untouched(const fixture_t *f, const char *path, const char *content) {
  size_t len;
  unsigned char *back = read_file(path, &len);
  assert_int_equal(len, strlen(content));
  assert_memory_equal(back, content, len);
  free(back);
  if (exists(f->qdir))
    assert_int_equal(count_entries(f->qdir, NULL), 0);
}

static void refuse_fd_path_mismatch(void **state) {
  fixture_t *f = *state;
  char a[PATH_MAX], b[PATH_MAX];
  join(a, f->base, "a");
  join(b, f->base, "b");
  write_file(a, "file a", 6, 0644);
  write_file(b, "file b", 6, 0644);
  int fd = open_scan(a);
  quarantine_entry_t e;
  assert_int_equal(quarantine_file(f->qdir, fd, b, NULL, &e), YM_ESTALE);
  assert_null(e.original_path);
  close(fd);
  assert_untouched(f, a, "file a");
  assert_untouched(f, b, "file b");
  assert_int_equal(count_entries(f->base, ".yamori"), 0);
}

static void refuse_symlinks(void **state) {
  fixture_t *f = *state;
  char real[PATH_MAX], link[PATH_MAX], file[PATH_MAX], via[PATH_MAX], sl[PATH_MAX];
  quarantine_entry_t e;
  join(real, f->base, "real");
  join(link, f->base, "link");
  join(file, real, "f");
  join(via, link, "f");
  join(sl, real, "sl");
  make_dir(real);
  write_file(file, "target", 6, 0644);
  assert_int_equal(symlink(real, link), 0);
  assert_int_equal(symlink(file, sl), 0);
  int fd = open_scan(file);

  /* A symbolic link to the directory in the path. */
  assert_int_equal(quarantine_file(f->qdir, fd, via, NULL, &e), YM_ESTALE);
  /* A symbolic link to the file as the last component. */
  assert_int_equal(quarantine_file(f->qdir, fd, sl, NULL, &e), YM_ESTALE);
  /* A missing component. */
  char missing[PATH_MAX];
  join(missing, f->base, "nowhere/f");
  assert_int_equal(quarantine_file(f->qdir, fd, missing, NULL, &e), YM_ESTALE);
  close(fd);
  assert_untouched(f, file, "target");
  char buf[PATH_MAX];
  ssize_t n = readlink(sl, buf, sizeof(buf) - 1);
  assert_true(n > 0);
  buf[n] = '\0';
  assert_string_equal(buf, file);
  assert_int_equal(count_entries(real, NULL), 2);
}

static void refuse_hard_link(void **state) {
  fixture_t *f = *state;
  char a[PATH_MAX], b[PATH_MAX];
  quarantine_entry_t e;
  join(a, f->base, "a");
  join(b, f->base, "b");
  write_file(a, "linked", 6, 0644);
  assert_int_equal(link(a, b), 0);
  int fd = open_scan(a);
  assert_int_equal(quarantine_file(f->qdir, fd, a, NULL, &e), YM_EBUSY);
  close(fd);
  assert_untouched(f, a, "linked");
  assert_untouched(f, b, "linked");
}

static void refuse_bad_arguments(void **state) {
  fixture_t *f = *state;
  char a[PATH_MAX], p[PATH_MAX], big[PATH_MAX], inq[PATH_MAX];
  quarantine_entry_t e;
  join(a, f->base, "a");
  write_file(a, "args", 4, 0644);
  int fd = open_scan(a);

  assert_int_equal(quarantine_file(f->qdir, fd, "a", NULL, &e), YM_EINVAL);
  assert_int_equal(quarantine_file(f->qdir, fd, "", NULL, &e), YM_EINVAL);
  join(p, f->base, "./a");
  assert_int_equal(quarantine_file(f->qdir, fd, p, NULL, &e), YM_EINVAL);
  char up[PATH_MAX], back[PATH_MAX];
  join(up, f->base, "..");
  join(back, up, strrchr(f->base, '/') + 1);
  join(p, back, "a");
  assert_int_equal(quarantine_file(f->qdir, fd, p, NULL, &e), YM_EINVAL);
  join(p, f->base, "a/");
  assert_int_equal(quarantine_file(f->qdir, fd, p, NULL, &e), YM_EINVAL);
  join(p, f->base, "a/.");
  assert_int_equal(quarantine_file(f->qdir, fd, p, NULL, &e), YM_EINVAL);
  /* Repeated slashes are the same path. */
  join(p, f->base, "/a");
  char *longrule = malloc(QUARANTINE_RULE_MAX + 2);
  assert_non_null(longrule);
  memset(longrule, 'r', QUARANTINE_RULE_MAX + 1);
  longrule[QUARANTINE_RULE_MAX + 1] = '\0';
  assert_int_equal(quarantine_file(f->qdir, fd, p, longrule, &e), YM_ETOOBIG);
  free(longrule);
  assert_untouched(f, a, "args");

  /* A directory is not a regular file. */
  int dfd = open(f->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(dfd >= 0);
  assert_int_equal(quarantine_file(f->qdir, dfd, f->base, NULL, &e), YM_EINVAL);
  close(dfd);

  /* Larger than 1 GiB (sparse, so cheap). */
  join(big, f->base, "big");
  int bfd = open(big, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  assert_true(bfd >= 0);
  assert_int_equal(ftruncate(bfd, (off_t)QUARANTINE_MAX_SIZE + 1), 0);
  close(bfd);
  bfd = open_scan(big);
  assert_int_equal(quarantine_file(f->qdir, bfd, big, NULL, &e), YM_ETOOBIG);
  close(bfd);
  assert_true(exists(big));

  /* A file inside the quarantine directory itself. */
  assert_int_equal(mkdir(f->qdir, 0700), 0);
  join(inq, f->qdir, "inside");
  write_file(inq, "in q", 4, 0600);
  int ifd = open_scan(inq);
  assert_int_equal(quarantine_file(f->qdir, ifd, inq, NULL, &e), YM_EINVAL);
  close(ifd);
  assert_true(exists(inq));
  assert_int_equal(unlink(inq), 0);

  /* An untrustworthy quarantine directory: writable by others, or a
   * symbolic link to a good one. */
  char q2[PATH_MAX], q3[PATH_MAX];
  join(q2, f->base, "q-open");
  assert_int_equal(mkdir(q2, 0700), 0);
  assert_int_equal(chmod(q2, 0777), 0);
  assert_int_equal(quarantine_file(q2, fd, a, NULL, &e), YM_EPERM);
  join(q3, f->base, "q-link");
  assert_int_equal(symlink(f->qdir, q3), 0);
  assert_int_equal(quarantine_file(q3, fd, a, NULL, &e), YM_EPERM);
  assert_int_equal(quarantine_restore(q3, "0123456789abcdef0123456789abcdef", NULL), YM_EPERM);
  size_t n;
  quarantine_entry_t *list;
  assert_int_equal(quarantine_list(q3, &list, &n, NULL), YM_EPERM);
  assert_int_equal(count_entries(q2, NULL), 0);
  close(fd);
  assert_untouched(f, a, "args");

  /* A quarantine directory that does not exist is empty. */
  char q4[PATH_MAX];
  join(q4, f->base, "q-none");
  assert_int_equal(quarantine_list(q4, &list, &n, NULL), 0);
  assert_int_equal(n, 0);
  assert_int_equal(quarantine_delete(q4, "0123456789abcdef0123456789abcdef"), YM_ENOENT);
}

static void refuse_bad_ids(void **state) {
  fixture_t *f = *state;
  static const char *const bad[] = {
      "../x",
      "0123456789abcdef0123456789abcde",   /* 31 */
      "0123456789abcdef0123456789abcdef0", /* 33 */
      "0123456789ABCDEF0123456789ABCDEF",  /* upper case */
      "0123456789abcdef0123456789abcde/",
      "../../../../../../../../etc/passw",
      "",
  };
  char a[PATH_MAX];
  quarantine_entry_t e;
  join(a, f->base, "a");
  write_file(a, "ids", 3, 0644);
  quarantine_ok(f, a, &e);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(quarantine_restore(f->qdir, bad[i], NULL), YM_EINVAL);
    assert_int_equal(quarantine_delete(f->qdir, bad[i]), YM_EINVAL);
  }
  assert_int_equal(quarantine_restore(f->qdir, NULL, NULL), YM_EINVAL);
  assert_int_equal(quarantine_restore(f->qdir, "00000000000000000000000000000000", NULL),
                   YM_ENOENT);
  assert_int_equal(quarantine_delete(f->qdir, "00000000000000000000000000000000"), YM_ENOENT);
  assert_int_equal(count_entries(f->qdir, NULL), 2);
  quarantine_entry_free(&e);
}

/* ------------------------------------------------------------------ */
/* Restore refusals                                                     */

static void restore_dir_replaced(void **state) {
  fixture_t *f = *state;
  char dir[PATH_MAX], path[PATH_MAX];
  quarantine_entry_t e;
  join(dir, f->base, "d");
  join(path, dir, "f");
  make_dir(dir);
  write_file(path, "moved", 5, 0644);
  quarantine_ok(f, path, &e);

  /* Removed and created again: another inode. The old directory is kept
   * under another name so that its inode number cannot be reused. */
  struct stat old, st;
  char keep[PATH_MAX];
  join(keep, f->base, "keep");
  assert_int_equal(stat(dir, &old), 0);
  assert_int_equal(rename(dir, keep), 0);
  make_dir(dir);
  assert_int_equal(stat(dir, &st), 0);
  assert_int_not_equal(st.st_ino, old.st_ino);
  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), YM_ESTALE);
  assert_int_equal(count_entries(dir, NULL), 0);
  assert_int_equal(count_entries(f->qdir, NULL), 2);

  /* Gone altogether. */
  assert_int_equal(rmdir(dir), 0);
  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), YM_ESTALE);
  assert_false(exists(dir));

  /* Replaced by a symbolic link to the very directory it came from. */
  assert_int_equal(symlink(keep, dir), 0);
  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), YM_ESTALE);
  assert_int_equal(count_entries(keep, NULL), 0);
  assert_int_equal(count_entries(f->qdir, NULL), 2);
  quarantine_entry_free(&e);
}

static void restore_name_taken(void **state) {
  fixture_t *f = *state;
  char dir[PATH_MAX], path[PATH_MAX];
  quarantine_entry_t e;
  struct stat st, after;
  join(dir, f->base, "d");
  join(path, dir, "f");
  make_dir(dir);
  write_file(path, "quarantined", 11, 0644);
  quarantine_ok(f, path, &e);

  write_file(path, "newcomer", 8, 0600);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), YM_EEXIST);
  assert_int_equal(stat(path, &after), 0);
  assert_int_equal(after.st_ino, st.st_ino);
  assert_int_equal(after.st_mode, st.st_mode);
  assert_int_equal(after.st_mtim.tv_nsec, st.st_mtim.tv_nsec);
  size_t len;
  unsigned char *back = read_file(path, &len);
  assert_int_equal(len, 8);
  assert_memory_equal(back, "newcomer", 8);
  free(back);
  assert_int_equal(count_entries(dir, NULL), 1);
  assert_int_equal(count_entries(f->qdir, NULL), 2);

  /* A dangling symbolic link takes the name as well. */
  assert_int_equal(unlink(path), 0);
  assert_int_equal(symlink("/nonexistent/target", path), 0);
  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), YM_EEXIST);
  assert_false(exists("/nonexistent/target"));

  /* Once the name is free the entry restores. */
  assert_int_equal(unlink(path), 0);
  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), 0);
  back = read_file(path, &len);
  assert_int_equal(len, 11);
  assert_memory_equal(back, "quarantined", 11);
  free(back);
  quarantine_entry_free(&e);
}

/* Rewrites a quarantine file with one byte changed, appended or cut. */
static void damage(const char *path, long pos, int how) {
  size_t len;
  unsigned char *buf = read_file(path, &len);
  assert_true(pos >= 0 && (size_t)pos < len);
  assert_int_equal(unlink(path), 0);
  if (how == 0) {
    buf[pos] ^= 0x01;
    write_file(path, buf, len, 0600);
  } else if (how == 1) {
    unsigned char *more = realloc(buf, len + 1);
    assert_non_null(more);
    buf = more;
    buf[len] = 0;
    write_file(path, buf, len + 1, 0600);
  } else {
    write_file(path, buf, (size_t)pos, 0600);
  }
  free(buf);
}

static void restore_corrupt(void **state) {
  fixture_t *f = *state;
  char dir[PATH_MAX], path[PATH_MAX], gz[PATH_MAX], js[PATH_MAX], save[PATH_MAX];
  quarantine_entry_t e;
  size_t len = 300 * 1024;
  unsigned char *content = malloc(len);
  assert_non_null(content);
  fill_random(content, len, 7);
  for (size_t i = 0; i < len; i += 2)
    content[i] = 'A'; /* half compressible */
  join(dir, f->base, "d");
  join(path, dir, "f");
  make_dir(dir);
  write_file(path, content, len, 0644);
  quarantine_ok(f, path, &e);
  qfile(gz, f, e.id, ".gz");
  qfile(js, f, e.id, ".json");
  join(save, f->base, "saved.gz");
  struct stat st;
  assert_int_equal(stat(gz, &st), 0);

  /* A flipped byte in the middle, a trailing byte, a truncated stream:
   * each is refused and leaves nothing in the target directory. */
  for (int how = 0; how < 3; how++) {
    size_t glen;
    unsigned char *orig = read_file(gz, &glen);
    damage(gz, (long)glen / 2, how);
    assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), YM_ECORRUPT);
    assert_int_equal(count_entries(dir, NULL), 0);
    assert_int_equal(count_entries(f->qdir, NULL), 2);
    assert_int_equal(unlink(gz), 0);
    write_file(gz, orig, glen, 0600);
    free(orig);
  }

  /* A sidecar whose hash does not match the content. */
  size_t jlen;
  unsigned char *orig = read_file(js, &jlen);
  char *h = strstr((char *)orig, e.sha256);
  assert_non_null(h);
  h[0] = h[0] == '0' ? '1' : '0';
  assert_int_equal(unlink(js), 0);
  write_file(js, orig, jlen, 0600);
  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), YM_ECORRUPT);
  assert_int_equal(count_entries(dir, NULL), 0);
  h[0] = e.sha256[0];

  /* A sidecar that is not JSON: restore refuses, list skips and counts. */
  assert_int_equal(unlink(js), 0);
  write_file(js, "{\"format\":1,", 12, 0600);
  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), YM_ECORRUPT);
  quarantine_entry_t *list;
  size_t n, bad;
  assert_int_equal(quarantine_list(f->qdir, &list, &n, &bad), 0);
  assert_int_equal(n, 0);
  assert_int_equal(bad, 1);

  /* Put back intact, it restores. */
  assert_int_equal(unlink(js), 0);
  write_file(js, orig, jlen, 0600);
  free(orig);
  assert_int_equal(quarantine_restore(f->qdir, e.id, NULL), 0);
  size_t rlen;
  unsigned char *back = read_file(path, &rlen);
  assert_int_equal(rlen, len);
  assert_memory_equal(back, content, len);
  free(back);
  free(content);
  quarantine_entry_free(&e);
}

/* ------------------------------------------------------------------ */
/* List and delete                                                      */

static void list_and_delete(void **state) {
  fixture_t *f = *state;
  char path[PATH_MAX], other[PATH_MAX];
  quarantine_entry_t e[3];
  for (int i = 0; i < 3; i++) {
    char name[16];
    snprintf(name, sizeof(name), "f%d", i);
    join(path, f->base, name);
    write_file(path, name, strlen(name), 0644);
    quarantine_ok(f, path, &e[i]);
  }
  /* Files that are not sidecars are ignored; a damaged one is counted. */
  qfile(other, f, "notes", ".txt");
  write_file(other, "x", 1, 0600);
  qfile(other, f, e[0].id, ".json.tmp");
  write_file(other, "x", 1, 0600);
  qfile(other, f, "ffffffffffffffffffffffffffffffff", ".json");
  write_file(other, "[]", 2, 0600);

  quarantine_entry_t *list;
  size_t n, bad;
  assert_int_equal(quarantine_list(f->qdir, &list, &n, &bad), 0);
  assert_int_equal(n, 3);
  assert_int_equal(bad, 1);
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(list[i].id, e[i].id); /* oldest first */
    assert_string_equal(list[i].original_path, e[i].original_path);
  }
  quarantine_list_free(list, n);

  char gz[PATH_MAX], js[PATH_MAX];
  qfile(gz, f, e[1].id, ".gz");
  qfile(js, f, e[1].id, ".json");
  assert_int_equal(quarantine_delete(f->qdir, e[1].id), 0);
  assert_false(exists(gz));
  assert_false(exists(js));
  assert_int_equal(quarantine_delete(f->qdir, e[1].id), YM_ENOENT);
  assert_int_equal(quarantine_list(f->qdir, &list, &n, NULL), 0);
  assert_int_equal(n, 2);
  assert_string_equal(list[0].id, e[0].id);
  assert_string_equal(list[1].id, e[2].id);
  quarantine_list_free(list, n);
  for (int i = 0; i < 3; i++)
    quarantine_entry_free(&e[i]);
}

/* ------------------------------------------------------------------ */
/* Races                                                                */

/* A thread that swaps two entries of a directory with RENAME_EXCHANGE as
 * fast as it can until told to stop. */
typedef struct {
  int dirfd;
  const char *a, *b;
  atomic_bool stop;
  atomic_bool started;
  unsigned long swaps;
} swapper_t;

static void *swapper_run(void *arg) {
  swapper_t *s = arg;
  atomic_store(&s->started, true);
  while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
    if (renameat2(s->dirfd, s->a, s->dirfd, s->b, RENAME_EXCHANGE) == 0)
      s->swaps++;
  }
  return NULL;
}

/* What must not change: a file and its identity. */
typedef struct {
  char path[PATH_MAX];
  struct stat st;
  char hex[YM_SHA256_HEX_LEN + 1];
} protected_t;

static void protect(protected_t *p, const char *path) {
  static const char content[] = "protected: must never be quarantined, moved or removed\n";
  int n = snprintf(p->path, sizeof(p->path), "%s", path);
  assert_true(n > 0 && (size_t)n < sizeof(p->path));
  write_file(path, content, sizeof(content) - 1, 0644);
  struct timespec times[2] = {{.tv_sec = 1400000000, .tv_nsec = 0},
                              {.tv_sec = 1400000000, .tv_nsec = 5}};
  assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
  assert_int_equal(lstat(path, &p->st), 0);
  hash_file(path, p->hex);
}

static void assert_protected(const protected_t *p) {
  struct stat st;
  char hex[YM_SHA256_HEX_LEN + 1];
  assert_int_equal(lstat(p->path, &st), 0);
  assert_int_equal(st.st_ino, p->st.st_ino);
  assert_int_equal(st.st_dev, p->st.st_dev);
  assert_int_equal(st.st_mode, p->st.st_mode);
  assert_int_equal(st.st_nlink, 1);
  assert_int_equal(st.st_size, p->st.st_size);
  assert_int_equal(st.st_mtim.tv_sec, p->st.st_mtim.tv_sec);
  assert_int_equal(st.st_mtim.tv_nsec, p->st.st_mtim.tv_nsec);
  hash_file(p->path, hex);
  assert_string_equal(hex, p->hex);
}

/* Returns true when path is a symbolic link to target. */
static bool is_link_to(const char *path, const char *target) {
  char buf[PATH_MAX];
  ssize_t n = readlink(path, buf, sizeof(buf) - 1);
  if (n < 0)
    return false;
  buf[n] = '\0';
  return strcmp(buf, target) == 0;
}

/* Checks a quarantine that succeeded during a race: the stored content is
 * the detected file's, then removes the entry. */
static void check_quarantined(const fixture_t *f, const quarantine_entry_t *e, const char *hex,
                              size_t len) {
  char gz[PATH_MAX], gzhex[YM_SHA256_HEX_LEN + 1];
  size_t gzlen;
  assert_string_equal(e->sha256, hex);
  qfile(gz, f, e->id, ".gz");
  hash_gz(gz, gzhex, &gzlen);
  assert_int_equal(gzlen, len);
  assert_string_equal(gzhex, hex);
  assert_int_equal(quarantine_delete(f->qdir, e->id), 0);
}

/* The detected name keeps being swapped with a symbolic link to the
 * protected file while quarantine_file() runs on it. */
static void race_file_swap(void **state) {
  fixture_t *f = *state;
  char pdir[PATH_MAX], ppath[PATH_MAX], work[PATH_MAX], det[PATH_MAX], lnk[PATH_MAX];
  protected_t prot;
  join(pdir, f->base, "protected");
  join(ppath, pdir, "precious");
  join(work, f->base, "work");
  join(det, work, "detected");
  join(lnk, work, "decoy");
  make_dir(pdir);
  make_dir(work);
  protect(&prot, ppath);
  assert_int_equal(symlink(ppath, lnk), 0);
  int wfd = open(work, O_PATH | O_DIRECTORY | O_CLOEXEC);
  assert_true(wfd >= 0);
  unsigned ok = 0, refused = 0;
  unsigned long swaps = 0;

  for (unsigned i = 0; i < RACE_FILE_ITERATIONS; i++) {
    char content[256], hex[YM_SHA256_HEX_LEN + 1];
    int clen = snprintf(content, sizeof(content), "detected sample, iteration %u\n", i);
    assert_true(clen > 0);
    /* Start state: the symbolic link at "decoy", a new file at "detected". */
    if (!is_link_to(lnk, ppath)) {
      assert_true(is_link_to(det, ppath));
      if (exists(lnk))
        assert_int_equal(renameat2(AT_FDCWD, det, AT_FDCWD, lnk, RENAME_EXCHANGE), 0);
      else
        assert_int_equal(rename(det, lnk), 0);
    }
    struct stat st;
    if (lstat(det, &st) == 0) {
      assert_true(S_ISREG(st.st_mode));
      assert_int_equal(unlink(det), 0);
    }
    write_file(det, content, (size_t)clen, 0644);
    hash_mem(content, (size_t)clen, hex);
    int fd = open_scan(det);
    struct stat dst;
    assert_int_equal(fstat(fd, &dst), 0);

    swapper_t sw = {.dirfd = wfd, .a = "detected", .b = "decoy"};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, swapper_run, &sw), 0);
    while (!atomic_load(&sw.started))
      ;
    quarantine_entry_t e;
    int rc = quarantine_file(f->qdir, fd, det, "race", &e);
    atomic_store(&sw.stop, true);
    assert_int_equal(pthread_join(t, NULL), 0);
    swaps += sw.swaps;

    /* The protected file is as it was, the link still points at it. */
    assert_protected(&prot);
    assert_true(is_link_to(det, ppath) || is_link_to(lnk, ppath));
    /* Nothing else appeared in the work directory (no private names). */
    assert_true(count_entries(work, NULL) <= 2);
    assert_int_equal(count_entries(work, ".yamori"), 0);
    struct stat now;
    assert_int_equal(fstat(fd, &now), 0);
    if (rc == 0) {
      ok++;
      assert_int_equal(now.st_nlink, 0);
      assert_int_equal(e.ino, dst.st_ino);
      check_quarantined(f, &e, hex, (size_t)clen);
      quarantine_entry_free(&e);
    } else {
      assert_int_equal(rc, YM_ESTALE);
      refused++;
      /* The detected file is still there under one of the two names. */
      assert_int_equal(now.st_nlink, 1);
      struct stat a, b;
      bool at_det = lstat(det, &a) == 0 && a.st_ino == dst.st_ino;
      bool at_lnk = lstat(lnk, &b) == 0 && b.st_ino == dst.st_ino;
      assert_true(at_det || at_lnk);
    }
    assert_int_equal(count_entries(f->qdir, NULL), 0);
    close(fd);
  }
  close(wfd);
  printf("race (file entry swapped with a symlink): %u iterations, %u quarantined, %u refused "
         "with YM_ESTALE, %lu swaps\n",
         RACE_FILE_ITERATIONS, ok, refused, swaps);
  assert_int_equal(ok + refused, RACE_FILE_ITERATIONS);
}

/* The detected file's directory keeps being swapped with a symbolic link
 * to a directory that holds a protected file of the same name. */
static void race_dir_swap(void **state) {
  fixture_t *f = *state;
  char pdir[PATH_MAX], ppath[PATH_MAX], work[PATH_MAX], sub[PATH_MAX], lnk[PATH_MAX];
  char det[PATH_MAX];
  protected_t prot;
  join(pdir, f->base, "protected");
  join(ppath, pdir, "detected");
  join(work, f->base, "work");
  join(sub, work, "sub");
  join(lnk, work, "sublink");
  join(det, sub, "detected");
  make_dir(pdir);
  make_dir(work);
  make_dir(sub);
  protect(&prot, ppath);
  assert_int_equal(symlink(pdir, lnk), 0);
  int wfd = open(work, O_PATH | O_DIRECTORY | O_CLOEXEC);
  assert_true(wfd >= 0);
  unsigned ok = 0, refused = 0;
  unsigned long swaps = 0;

  for (unsigned i = 0; i < RACE_DIR_ITERATIONS; i++) {
    char content[256], hex[YM_SHA256_HEX_LEN + 1];
    int clen = snprintf(content, sizeof(content), "detected in a directory, iteration %u\n", i);
    assert_true(clen > 0);
    if (!is_link_to(lnk, pdir)) {
      assert_true(is_link_to(sub, pdir));
      assert_int_equal(renameat2(AT_FDCWD, sub, AT_FDCWD, lnk, RENAME_EXCHANGE), 0);
    }
    struct stat st;
    if (lstat(det, &st) == 0) {
      assert_true(S_ISREG(st.st_mode));
      assert_int_equal(unlink(det), 0);
    }
    write_file(det, content, (size_t)clen, 0644);
    hash_mem(content, (size_t)clen, hex);
    int fd = open_scan(det);
    struct stat dst;
    assert_int_equal(fstat(fd, &dst), 0);

    swapper_t sw = {.dirfd = wfd, .a = "sub", .b = "sublink"};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, swapper_run, &sw), 0);
    while (!atomic_load(&sw.started))
      ;
    quarantine_entry_t e;
    int rc = quarantine_file(f->qdir, fd, det, "race", &e);
    atomic_store(&sw.stop, true);
    assert_int_equal(pthread_join(t, NULL), 0);
    swaps += sw.swaps;

    assert_protected(&prot);
    assert_int_equal(count_entries(pdir, NULL), 1);
    assert_true(is_link_to(sub, pdir) || is_link_to(lnk, pdir));
    /* The real directory, under whichever name it has now. */
    char real[PATH_MAX];
    if (is_link_to(sub, pdir))
      join(real, work, "sublink");
    else
      join(real, work, "sub");
    assert_int_equal(count_entries(real, ".yamori"), 0);
    struct stat now;
    assert_int_equal(fstat(fd, &now), 0);
    if (rc == 0) {
      ok++;
      assert_int_equal(now.st_nlink, 0);
      assert_int_equal(count_entries(real, NULL), 0);
      check_quarantined(f, &e, hex, (size_t)clen);
      quarantine_entry_free(&e);
    } else {
      assert_int_equal(rc, YM_ESTALE);
      refused++;
      assert_int_equal(now.st_nlink, 1);
      char in_real[PATH_MAX];
      join(in_real, real, "detected");
      struct stat a;
      assert_int_equal(lstat(in_real, &a), 0);
      assert_int_equal(a.st_ino, dst.st_ino);
    }
    assert_int_equal(count_entries(f->qdir, NULL), 0);
    close(fd);
  }
  close(wfd);
  printf("race (directory swapped with a symlink): %u iterations, %u quarantined, %u refused "
         "with YM_ESTALE, %lu swaps\n",
         RACE_DIR_ITERATIONS, ok, refused, swaps);
  assert_int_equal(ok + refused, RACE_DIR_ITERATIONS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(hostile_names, setup, teardown),
      cmocka_unit_test_setup_teardown(refuse_fd_path_mismatch, setup, teardown),
      cmocka_unit_test_setup_teardown(refuse_symlinks, setup, teardown),
      cmocka_unit_test_setup_teardown(refuse_hard_link, setup, teardown),
      cmocka_unit_test_setup_teardown(refuse_bad_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(refuse_bad_ids, setup, teardown),
      cmocka_unit_test_setup_teardown(restore_dir_replaced, setup, teardown),
      cmocka_unit_test_setup_teardown(restore_name_taken, setup, teardown),
      cmocka_unit_test_setup_teardown(restore_corrupt, setup, teardown),
      cmocka_unit_test_setup_teardown(list_and_delete, setup, teardown),
      cmocka_unit_test_setup_teardown(race_file_swap, setup, teardown),
      cmocka_unit_test_setup_teardown(race_dir_swap, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
