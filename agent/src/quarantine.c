/*
 * Quarantine of detected files (see quarantine.h for the contract).
 *
 * Safety rests on three rules:
 *   - Content is only ever read from the descriptor the scanner opened, so
 *     what is stored is what was scanned.
 *   - Directories are reached by a walk from "/" with O_NOFOLLOW on every
 *     component, so a symbolic link planted in the path cannot redirect an
 *     action into another directory.
 *   - A directory entry is never unlinked by a name that was checked
 *     earlier. It is first renamed, atomically and without replacing
 *     anything, to a private name; what was renamed is then checked, and
 *     it is unlinked only if it is the scanned inode, otherwise renamed
 *     back. A swap between the check and the rename thus moves the impostor
 *     aside for a moment but never removes it.
 * The remaining window, between the check of the private name and its
 * unlink, can only be used by someone who can rename entries in that
 * directory to put their own entry at the private name; removing it takes
 * nothing from anyone else (in a sticky directory such as /tmp nobody can
 * rename another user's file, and removing a hard link or a symbolic link
 * does not remove its target).
 *
 * The sidecar ("<id>.json", format 1) is one JSON object:
 *   format          1
 *   id              the 32 hex characters of the file name
 *   original_path   the path's bytes as an escaped string (json.h: invalid
 *                   UTF-8 bytes are written as \udcXX)
 *   dev, ino        decimal strings (64-bit values do not fit a JSON double)
 *   dir_dev, dir_ino  decimal strings, of the directory that held the file
 *   uid, gid, mode  numbers (mode is st_mode with the file type bits)
 *   mtime_ns        decimal string, nanoseconds since the epoch
 *   size            number of bytes of content
 *   sha256          lower-case hex of the content
 *   rule            escaped string like original_path, or null
 *   quarantined_ns  decimal string, wall clock
 * cJSON refuses the lone surrogates \udcXX, so the reader parses with
 * ym_json_parse_lenient(), which turns each of them back into its byte: the
 * parsed strings hold the original bytes.
 */
#include "quarantine.h"

#include "protect.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/sha256.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK (64 * 1024)
#define SIDECAR_FORMAT 1
#define PRIVATE_PREFIX ".yamori-q-"
#define RESTORE_PREFIX ".yamori-r-"
/* Room for a prefix or suffix around an id, with the NUL. */
#define NAME_BUF 64

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static int64_t ts_ns(const struct timespec *ts) {
  return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static bool is_lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Returns true when id is exactly QUARANTINE_ID_LEN lower-case hex
 * characters. Only such ids are ever put into a path. */
static bool id_valid(const char *id) {
  if (id == NULL)
    return false;
  for (size_t i = 0; i < QUARANTINE_ID_LEN; i++) {
    if (!is_lower_hex(id[i]))
      return false; /* also stops at an early NUL */
  }
  return id[QUARANTINE_ID_LEN] == '\0';
}

/* Fills id with 128 random bits in hex. */
static int new_id(char id[QUARANTINE_ID_LEN + 1]) {
  uint8_t r[QUARANTINE_ID_LEN / 2];
  size_t got = 0;
  while (got < sizeof(r)) {
    ssize_t n = getrandom(r + got, sizeof(r) - got, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return ym_err_from_errno(errno);
    }
    got += (size_t)n;
  }
  ym_hex(r, sizeof(r), id);
  return 0;
}

static void name_of(char buf[NAME_BUF], const char *prefix, const char *id, const char *suffix) {
  snprintf(buf, NAME_BUF, "%s%s%s", prefix, id, suffix);
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return ym_err_from_errno(errno);
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Flushes the directory dirfd (which may be an O_PATH descriptor) to disk,
 * so that entries created, renamed or removed in it survive a crash. */
static int fsync_dir(int dirfd) {
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return ym_err_from_errno(errno);
  int rc = fsync(fd) == 0 ? 0 : ym_err_from_errno(errno);
  close(fd);
  return rc;
}

/* Creates name in dirfd, failing if anything (even a dangling symbolic
 * link) is there, with mode exactly 0600 whatever the umask. */
static int create_excl(int dirfd, const char *name, int *out) {
  *out = -1;
  int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return ym_err_from_errno(errno);
  if (fchmod(fd, 0600) != 0) {
    int rc = ym_err_from_errno(errno);
    close(fd);
    (void)unlinkat(dirfd, name, 0);
    return rc;
  }
  *out = fd;
  return 0;
}

/* Unlinks name in dirfd when it is still the inode st describes. Used to
 * clean up a temporary file in a directory that others may write to. */
static void unlink_if_same(int dirfd, const char *name, const struct stat *st) {
  struct stat cur;
  if (fstatat(dirfd, name, &cur, AT_SYMLINK_NOFOLLOW) == 0 && cur.st_dev == st->st_dev &&
      cur.st_ino == st->st_ino)
    (void)unlinkat(dirfd, name, 0);
}

/* ------------------------------------------------------------------ */
/* Directories                                                          */

/* Opens the quarantine directory after checking that it can be trusted: a
 * directory, not a symbolic link, owned by the effective user and not
 * writable by group or others. With create, a missing directory is created
 * with mode 0700 (its parent must exist). Returns 0, YM_EPERM for an
 * unacceptable directory, YM_ENOENT or another errno translation. */
static int qdir_open(const char *qdir, bool create, int *out) {
  *out = -1;
  if (qdir == NULL || qdir[0] == '\0')
    return YM_EINVAL;
  if (create && mkdir(qdir, 0700) != 0 && errno != EEXIST)
    return ym_err_from_errno(errno);
  int fd = open(qdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    /* O_DIRECTORY with O_NOFOLLOW gives ENOTDIR for a symbolic link. */
    if (errno == ENOTDIR || errno == ELOOP)
      return YM_EPERM;
    return ym_err_from_errno(errno);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int rc = ym_err_from_errno(errno);
    close(fd);
    return rc;
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022) != 0) {
    close(fd);
    return YM_EPERM;
  }
  *out = fd;
  return 0;
}

/* Checks the form of a path given for a file: absolute, shorter than
 * PATH_MAX, no component longer than NAME_MAX, no "." or ".." component,
 * and a last component that is not empty. Repeated slashes are allowed.
 * Returns 0, YM_EINVAL or YM_ETOOBIG. */
static int path_check(const char *path) {
  if (path == NULL || path[0] != '/')
    return YM_EINVAL;
  size_t len = strnlen(path, PATH_MAX);
  if (len >= PATH_MAX)
    return YM_ETOOBIG;
  if (path[len - 1] == '/')
    return YM_EINVAL;
  const char *p = path;
  while (*p != '\0') {
    while (*p == '/')
      p++;
    const char *e = p;
    while (*e != '\0' && *e != '/')
      e++;
    size_t n = (size_t)(e - p);
    if (n > NAME_MAX)
      return YM_ETOOBIG;
    if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
      return YM_EINVAL;
    p = e;
  }
  return 0;
}

/* Opens the directory holding the last component of path (checked by
 * path_check()) as an O_PATH descriptor, walking from "/" one component at
 * a time with O_NOFOLLOW, and points *name at the last component inside
 * path. A component that is missing, not a directory or a symbolic link
 * gives YM_ESTALE; other failures are translated from errno. */
static int parent_open(const char *path, int *dirfd, const char **name) {
  *dirfd = -1;
  const char *last = strrchr(path, '/') + 1;
  int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return ym_err_from_errno(errno);
  const char *p = path;
  char comp[NAME_MAX + 1];
  for (;;) {
    while (*p == '/')
      p++;
    if (p >= last)
      break;
    const char *e = strchr(p, '/'); /* exists: last follows a slash */
    size_t n = (size_t)(e - p);
    memcpy(comp, p, n);
    comp[n] = '\0';
    int next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      int rc = (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) ? YM_ESTALE
                                                                       : ym_err_from_errno(errno);
      close(fd);
      return rc;
    }
    close(fd);
    fd = next;
    p = e;
  }
  *dirfd = fd;
  *name = last;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Content: compressing and decompressing                               */

/* Reads the file open as in from offset 0 to its end with pread() (its
 * offset is not moved), computes the SHA-256 of what was read and writes
 * it gzip-compressed to out, CHUNK bytes at a time. Stores the number of
 * bytes read in *size. Hashing the same bytes that are compressed means the
 * recorded hash always describes the stored copy. Returns 0, YM_ETOOBIG
 * past QUARANTINE_MAX_SIZE, YM_ENOMEM, YM_ECRYPTO or an I/O error. */
static int copy_compress(int in, int out, uint8_t sha[YM_SHA256_LEN], uint64_t *size) {
  unsigned char *ibuf = malloc(CHUNK);
  unsigned char *obuf = malloc(CHUNK);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  z_stream z;
  uint64_t off = 0;
  int rc = YM_ENOMEM;
  memset(&z, 0, sizeof(z));
  if (ibuf == NULL || obuf == NULL || md == NULL)
    goto out_free;
  if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    rc = YM_ECRYPTO;
    goto out_free;
  }
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    goto out_free;
  for (;;) {
    ssize_t n = pread(in, ibuf, CHUNK, (off_t)off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = ym_err_from_errno(errno);
      goto out_deflate;
    }
    if (off + (uint64_t)n > QUARANTINE_MAX_SIZE) {
      rc = YM_ETOOBIG;
      goto out_deflate;
    }
    if (n > 0 && EVP_DigestUpdate(md, ibuf, (size_t)n) != 1) {
      rc = YM_ECRYPTO;
      goto out_deflate;
    }
    off += (uint64_t)n;
    int flush = n == 0 ? Z_FINISH : Z_NO_FLUSH;
    int zr;
    z.next_in = ibuf;
    z.avail_in = (uInt)n;
    do {
      z.next_out = obuf;
      z.avail_out = CHUNK;
      zr = deflate(&z, flush);
      if (zr == Z_STREAM_ERROR) {
        rc = YM_ESYS;
        goto out_deflate;
      }
      rc = write_all(out, obuf, CHUNK - z.avail_out);
      if (rc != 0)
        goto out_deflate;
    } while (z.avail_out == 0);
    if (flush == Z_FINISH) {
      rc = zr == Z_STREAM_END ? 0 : YM_ESYS;
      break;
    }
  }
  if (rc == 0 && EVP_DigestFinal_ex(md, sha, NULL) != 1)
    rc = YM_ECRYPTO;
  *size = off;
out_deflate:
  deflateEnd(&z);
out_free:
  EVP_MD_CTX_free(md);
  free(obuf);
  free(ibuf);
  return rc;
}

/* Decompresses the gzip stream read from in into out, computing the
 * SHA-256 of the output. The input may not exceed max_in bytes and the
 * output may not exceed expect bytes (checked as it is produced, so a
 * crafted stream cannot fill the disk); the stream must end exactly at the
 * end of the input, be a single gzip member whose CRC-32 and length zlib
 * checks, and give exactly expect bytes. Returns 0, YM_ECORRUPT,
 * YM_ENOMEM, YM_ECRYPTO or an I/O error. */
static int inflate_copy(int in, int out, uint64_t max_in, uint64_t expect,
                        uint8_t sha[YM_SHA256_LEN]) {
  unsigned char *ibuf = malloc(CHUNK);
  unsigned char *obuf = malloc(CHUNK);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  z_stream z;
  uint64_t total_in = 0, total_out = 0;
  int zr = Z_OK;
  int rc = YM_ENOMEM;
  memset(&z, 0, sizeof(z));
  if (ibuf == NULL || obuf == NULL || md == NULL)
    goto out_free;
  if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    rc = YM_ECRYPTO;
    goto out_free;
  }
  if (inflateInit2(&z, 15 + 16) != Z_OK)
    goto out_free;
  rc = YM_ECORRUPT;
  for (;;) {
    ssize_t n = read(in, ibuf, CHUNK);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = ym_err_from_errno(errno);
      goto out_inflate;
    }
    if (n == 0)
      break;
    total_in += (uint64_t)n;
    if (total_in > max_in || zr == Z_STREAM_END)
      goto out_inflate; /* too long, or data after the end of the stream */
    z.next_in = ibuf;
    z.avail_in = (uInt)n;
    do {
      z.next_out = obuf;
      z.avail_out = CHUNK;
      zr = inflate(&z, Z_NO_FLUSH);
      if (zr == Z_MEM_ERROR) {
        rc = YM_ENOMEM;
        goto out_inflate;
      }
      if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
        goto out_inflate; /* Z_DATA_ERROR (including a bad CRC), Z_NEED_DICT */
      size_t have = CHUNK - z.avail_out;
      total_out += have;
      if (total_out > expect)
        goto out_inflate;
      if (have > 0 && EVP_DigestUpdate(md, obuf, have) != 1) {
        rc = YM_ECRYPTO;
        goto out_inflate;
      }
      int wr = write_all(out, obuf, have);
      if (wr != 0) {
        rc = wr;
        goto out_inflate;
      }
    } while (z.avail_out == 0 && zr != Z_STREAM_END);
    if (zr == Z_STREAM_END && z.avail_in != 0)
      goto out_inflate; /* a second member or trailing garbage */
  }
  if (zr != Z_STREAM_END || total_out != expect)
    goto out_inflate; /* truncated, or shorter than recorded */
  rc = EVP_DigestFinal_ex(md, sha, NULL) == 1 ? 0 : YM_ECRYPTO;
out_inflate:
  inflateEnd(&z);
out_free:
  EVP_MD_CTX_free(md);
  free(obuf);
  free(ibuf);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Sidecar                                                              */

void quarantine_entry_free(quarantine_entry_t *e) {
  if (e == NULL)
    return;
  free(e->original_path);
  free(e->rule);
  e->original_path = NULL;
  e->rule = NULL;
}

static bool add_u64(cJSON *o, const char *key, uint64_t v) {
  char num[24];
  snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
  return cJSON_AddStringToObject(o, key, num) != NULL;
}

static bool add_i64(cJSON *o, const char *key, int64_t v) {
  char num[24];
  snprintf(num, sizeof(num), "%lld", (long long)v);
  return cJSON_AddStringToObject(o, key, num) != NULL;
}

/* Serializes e as a sidecar (the format is described at the top of this
 * file). On success *text is a NUL-terminated, newline-ended string owned
 * by the caller. Returns 0, YM_ENOMEM or YM_ETOOBIG. */
static int sidecar_format(const quarantine_entry_t *e, char **text, size_t *len) {
  int rc = YM_ENOMEM;
  *text = NULL;
  cJSON *o = cJSON_CreateObject();
  if (o == NULL)
    return YM_ENOMEM;
  if (cJSON_AddNumberToObject(o, "format", SIDECAR_FORMAT) == NULL ||
      cJSON_AddStringToObject(o, "id", e->id) == NULL)
    goto out_delete;
  rc = ym_json_add_bytes(o, "original_path", e->original_path, strlen(e->original_path));
  if (rc != 0)
    goto out_delete;
  rc = YM_ENOMEM;
  if (!add_u64(o, "dev", e->dev) || !add_u64(o, "ino", e->ino) ||
      !add_u64(o, "dir_dev", e->dir_dev) || !add_u64(o, "dir_ino", e->dir_ino) ||
      cJSON_AddNumberToObject(o, "uid", e->uid) == NULL ||
      cJSON_AddNumberToObject(o, "gid", e->gid) == NULL ||
      cJSON_AddNumberToObject(o, "mode", e->mode) == NULL || !add_i64(o, "mtime_ns", e->mtime_ns) ||
      cJSON_AddNumberToObject(o, "size", (double)e->size) == NULL ||
      cJSON_AddStringToObject(o, "sha256", e->sha256) == NULL)
    goto out_delete;
  if (e->rule != NULL) {
    rc = ym_json_add_bytes(o, "rule", e->rule, strlen(e->rule));
    if (rc != 0)
      goto out_delete;
    rc = YM_ENOMEM;
  } else if (cJSON_AddNullToObject(o, "rule") == NULL) {
    goto out_delete;
  }
  if (!add_i64(o, "quarantined_ns", e->quarantined_ns))
    goto out_delete;
  char *s = cJSON_PrintUnformatted(o);
  if (s == NULL)
    goto out_delete;
  size_t n = strlen(s);
  if (n + 1 > QUARANTINE_SIDECAR_MAX) {
    free(s);
    rc = YM_ETOOBIG;
    goto out_delete;
  }
  char *t = realloc(s, n + 2);
  if (t == NULL) {
    free(s);
    goto out_delete;
  }
  t[n] = '\n';
  t[n + 1] = '\0';
  *text = t;
  *len = n + 1;
  rc = 0;
out_delete:
  cJSON_Delete(o);
  return rc;
}

/* Reads a decimal string member into a 64-bit value. */
static bool get_dec(const cJSON *o, const char *key, bool is_signed, uint64_t *u, int64_t *s) {
  const char *v = ym_json_get_str(o, key);
  if (v == NULL || v[0] == '\0' || strlen(v) > 20)
    return false;
  const char *d = is_signed && v[0] == '-' ? v + 1 : v;
  if (*d == '\0')
    return false;
  for (const char *p = d; *p != '\0'; p++) {
    if (*p < '0' || *p > '9')
      return false;
  }
  char *end;
  errno = 0;
  if (is_signed)
    *s = strtoll(v, &end, 10);
  else
    *u = strtoull(v, &end, 10);
  return errno == 0 && *end == '\0';
}

static bool get_u64(const cJSON *o, const char *key, uint64_t *out) {
  int64_t unused;
  return get_dec(o, key, false, out, &unused);
}

static bool get_i64(const cJSON *o, const char *key, int64_t *out) {
  uint64_t unused;
  return get_dec(o, key, true, &unused, out);
}

static bool get_u32(const cJSON *o, const char *key, uint32_t *out) {
  long long v;
  if (!ym_json_get_int(o, key, &v) || v < 0 || v > (long long)UINT32_MAX)
    return false;
  *out = (uint32_t)v;
  return true;
}

/* Fills e from a parsed sidecar and checks that the values make sense for
 * the sidecar of id. Returns 0, YM_ECORRUPT or YM_ENOMEM. */
static int sidecar_decode(const cJSON *o, const char *id, quarantine_entry_t *e) {
  long long format, size;
  const char *s;
  if (!cJSON_IsObject(o) || !ym_json_get_int(o, "format", &format) || format != SIDECAR_FORMAT)
    return YM_ECORRUPT;
  s = ym_json_get_str(o, "id");
  if (s == NULL || strcmp(s, id) != 0)
    return YM_ECORRUPT;
  memcpy(e->id, id, QUARANTINE_ID_LEN + 1);
  s = ym_json_get_str(o, "sha256");
  if (s == NULL || strlen(s) != YM_SHA256_HEX_LEN)
    return YM_ECORRUPT;
  for (size_t i = 0; i < YM_SHA256_HEX_LEN; i++) {
    if (!is_lower_hex(s[i]))
      return YM_ECORRUPT;
  }
  memcpy(e->sha256, s, YM_SHA256_HEX_LEN + 1);
  if (!get_u64(o, "dev", &e->dev) || !get_u64(o, "ino", &e->ino) ||
      !get_u64(o, "dir_dev", &e->dir_dev) || !get_u64(o, "dir_ino", &e->dir_ino) ||
      !get_u32(o, "uid", &e->uid) || !get_u32(o, "gid", &e->gid) || !get_u32(o, "mode", &e->mode) ||
      !get_i64(o, "mtime_ns", &e->mtime_ns) || !get_i64(o, "quarantined_ns", &e->quarantined_ns) ||
      !ym_json_get_int(o, "size", &size))
    return YM_ECORRUPT;
  if (!S_ISREG(e->mode) || size < 0 || (unsigned long long)size > QUARANTINE_MAX_SIZE)
    return YM_ECORRUPT;
  e->size = size;
  /* A \u0000 escape would cut the string short; path_check() then still
   * sees a well-formed path, which is the one that will be used. */
  s = ym_json_get_str(o, "original_path");
  if (s == NULL || path_check(s) != 0)
    return YM_ECORRUPT;
  e->original_path = strdup(s);
  if (e->original_path == NULL)
    return YM_ENOMEM;
  const cJSON *rule = cJSON_GetObjectItemCaseSensitive(o, "rule");
  if (cJSON_IsString(rule)) {
    e->rule = strdup(rule->valuestring);
    if (e->rule == NULL)
      return YM_ENOMEM;
  } else if (rule != NULL && !cJSON_IsNull(rule)) {
    return YM_ECORRUPT;
  }
  return 0;
}

/* Reads and checks the sidecar of id in qfd into *e (zeroed on error).
 * Returns 0, YM_ENOENT when there is none, YM_ECORRUPT when it is not a
 * regular file of at most QUARANTINE_SIDECAR_MAX bytes holding a valid
 * sidecar for id, YM_ENOMEM or an I/O error. */
static int sidecar_read(int qfd, const char *id, quarantine_entry_t *e) {
  char name[NAME_BUF];
  char *text = NULL;
  size_t len = 0;
  cJSON *o = NULL;
  struct stat st;
  int rc;
  memset(e, 0, sizeof(*e));
  name_of(name, "", id, ".json");
  int fd = openat(qfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return errno == ELOOP ? YM_ECORRUPT : ym_err_from_errno(errno);
  if (fstat(fd, &st) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_close;
  }
  rc = YM_ECORRUPT;
  if (!S_ISREG(st.st_mode) || st.st_size > QUARANTINE_SIDECAR_MAX)
    goto out_close;
  text = malloc(QUARANTINE_SIDECAR_MAX + 1);
  if (text == NULL) {
    rc = YM_ENOMEM;
    goto out_close;
  }
  /* Read one byte more than allowed to notice a file that grew. */
  for (;;) {
    ssize_t n = read(fd, text + len, QUARANTINE_SIDECAR_MAX + 1 - len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = ym_err_from_errno(errno);
      goto out_free;
    }
    if (n == 0)
      break;
    len += (size_t)n;
    if (len > QUARANTINE_SIDECAR_MAX)
      goto out_free;
  }
  rc = ym_json_parse_lenient(text, len, QUARANTINE_SIDECAR_MAX, &o);
  if (rc != 0) {
    if (rc != YM_ENOMEM)
      rc = YM_ECORRUPT;
    goto out_free;
  }
  rc = sidecar_decode(o, id, e);
  if (rc != 0)
    quarantine_entry_free(e);
out_free:
  cJSON_Delete(o);
  free(text);
out_close:
  close(fd);
  return rc;
}

/* Writes the sidecar of e as name in qfd (created exclusively, 0600) and
 * flushes it. Removes the file again on error. */
static int sidecar_write(int qfd, const char *name, const quarantine_entry_t *e) {
  char *text;
  size_t len;
  int fd;
  int rc = sidecar_format(e, &text, &len);
  if (rc != 0)
    return rc;
  rc = create_excl(qfd, name, &fd);
  if (rc != 0)
    goto out_free;
  rc = write_all(fd, text, len);
  if (rc == 0 && fsync(fd) != 0)
    rc = ym_err_from_errno(errno);
  close(fd);
  if (rc != 0)
    (void)unlinkat(qfd, name, 0);
out_free:
  free(text);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Quarantine                                                           */

/* Removes the entry name of dirfd only if it is the inode st describes,
 * with a single link (step 4 of quarantine_file()). The entry is renamed to
 * a private name without replacing anything, checked there and unlinked;
 * anything else found there is renamed back, or, if the name was taken in
 * the meantime, left at the private name, which loses nothing. Returns 0,
 * YM_ESTALE (entry missing or replaced), YM_EBUSY (a second link appeared)
 * or an errno translation. */
static int remove_entry(int dirfd, const char *name, const struct stat *st, const char *id) {
  char priv[NAME_BUF];
  struct stat ps;
  int rc;
  name_of(priv, PRIVATE_PREFIX, id, "");
  if (renameat2(dirfd, name, dirfd, priv, RENAME_NOREPLACE) != 0)
    return errno == ENOENT ? YM_ESTALE : ym_err_from_errno(errno);
  if (fstatat(dirfd, priv, &ps, AT_SYMLINK_NOFOLLOW) != 0) {
    rc = YM_ESTALE; /* someone else moved it on at once */
  } else if (ps.st_dev != st->st_dev || ps.st_ino != st->st_ino) {
    rc = YM_ESTALE;
  } else if (ps.st_nlink > 1) {
    rc = YM_EBUSY;
  } else if (unlinkat(dirfd, priv, 0) == 0) {
    return 0;
  } else {
    rc = ym_err_from_errno(errno);
  }
  (void)renameat2(dirfd, priv, dirfd, name, RENAME_NOREPLACE);
  return rc;
}

/* Removes every file quarantine_file() may have created for id in qfd. */
static void discard(int qfd, const char *id) {
  static const char *const suffixes[] = {".json", ".json.tmp", ".gz", ".gz.tmp"};
  char name[NAME_BUF];
  for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
    name_of(name, "", id, suffixes[i]);
    (void)unlinkat(qfd, name, 0);
  }
  (void)fsync_dir(qfd);
}

/* Step 3 of quarantine_file(): stores the content of fd and the sidecar of
 * e under e->id in qfd, filling in e's size and sha256. The files are
 * renamed into place only when both are complete and on disk. On error
 * nothing is left in qfd. */
static int store(int qfd, int fd, const struct stat *st, quarantine_entry_t *e) {
  char gz_tmp[NAME_BUF], gz[NAME_BUF], js_tmp[NAME_BUF], js[NAME_BUF];
  uint8_t sha[YM_SHA256_LEN];
  uint64_t size = 0;
  struct stat after;
  int gzfd;
  name_of(gz_tmp, "", e->id, ".gz.tmp");
  name_of(gz, "", e->id, ".gz");
  name_of(js_tmp, "", e->id, ".json.tmp");
  name_of(js, "", e->id, ".json");
  int rc = create_excl(qfd, gz_tmp, &gzfd);
  if (rc != 0)
    return rc;
  rc = copy_compress(fd, gzfd, sha, &size);
  if (rc == 0 && fsync(gzfd) != 0)
    rc = ym_err_from_errno(errno);
  close(gzfd);
  if (rc != 0)
    goto out_discard;
  /* A file written to while it was copied may be torn: refuse it (the
   * scanner sees the write and scans again). */
  if (fstat(fd, &after) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_discard;
  }
  if (after.st_size != st->st_size || (uint64_t)after.st_size != size ||
      ts_ns(&after.st_mtim) != ts_ns(&st->st_mtim)) {
    rc = YM_ESTALE;
    goto out_discard;
  }
  e->size = (int64_t)size;
  ym_hex(sha, sizeof(sha), e->sha256);
  rc = sidecar_write(qfd, js_tmp, e);
  if (rc != 0)
    goto out_discard;
  /* The .gz goes into place first: a sidecar always has its content. */
  if (renameat2(qfd, gz_tmp, qfd, gz, RENAME_NOREPLACE) != 0 ||
      renameat2(qfd, js_tmp, qfd, js, RENAME_NOREPLACE) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_discard;
  }
  rc = fsync_dir(qfd);
  if (rc != 0)
    goto out_discard;
  return 0;
out_discard:
  discard(qfd, e->id);
  return rc;
}

/* The order of the steps is described in quarantine.h. */
int quarantine_file(const char *qdir, int fd, const char *path, const char *rule,
                    quarantine_entry_t *out) {
  return quarantine_file_protected(qdir, fd, path, rule, NULL, out);
}

int quarantine_file_protected(const char *qdir, int fd, const char *path, const char *rule,
                              const protect_t *prot, quarantine_entry_t *out) {
  quarantine_entry_t e;
  struct stat st, dst, qst, est;
  struct timespec now;
  const char *name;
  int qfd = -1, dirfd = -1;
  int rc;
  memset(out, 0, sizeof(*out));
  memset(&e, 0, sizeof(e));

  rc = path_check(path);
  if (rc != 0)
    return rc;
  if (rule != NULL && strnlen(rule, QUARANTINE_RULE_MAX + 1) > QUARANTINE_RULE_MAX)
    return YM_ETOOBIG;
  if (fstat(fd, &st) != 0)
    return ym_err_from_errno(errno);
  if (!S_ISREG(st.st_mode))
    return YM_EINVAL;
  if ((uint64_t)st.st_size > QUARANTINE_MAX_SIZE)
    return YM_ETOOBIG;
  if (st.st_nlink == 0)
    return YM_ESTALE; /* already deleted */
  if (st.st_nlink > 1)
    return YM_EBUSY;

  rc = qdir_open(qdir, true, &qfd);
  if (rc != 0)
    return rc;
  /* Step 1: the parent directory, reached without following links. */
  rc = parent_open(path, &dirfd, &name);
  if (rc != 0)
    goto out_close;
  if (fstat(dirfd, &dst) != 0 || fstat(qfd, &qst) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_close;
  }
  if (dst.st_dev == qst.st_dev && dst.st_ino == qst.st_ino) {
    rc = YM_EINVAL; /* never quarantine the quarantine */
    goto out_close;
  }
  /* The agent's own files: the directory actually reached, and those
   * above it, by identity (whatever the path's spelling). */
  if (prot != NULL) {
    if (protect_has_file(prot, (uint64_t)st.st_dev, (uint64_t)st.st_ino)) {
      rc = YM_EPERM;
      goto out_close;
    }
    rc = protect_check_dir(prot, dirfd);
    if (rc != 0)
      goto out_close;
  }
  /* Step 2: the entry must be the inode that was scanned. */
  if (fstatat(dirfd, name, &est, AT_SYMLINK_NOFOLLOW) != 0) {
    rc = errno == ENOENT ? YM_ESTALE : ym_err_from_errno(errno);
    goto out_close;
  }
  if (est.st_dev != st.st_dev || est.st_ino != st.st_ino) {
    rc = YM_ESTALE;
    goto out_close;
  }

  /* Step 3: the copy and the sidecar. */
  rc = new_id(e.id);
  if (rc != 0)
    goto out_close;
  clock_gettime(CLOCK_REALTIME, &now);
  e.original_path = strdup(path);
  e.rule = rule != NULL ? strdup(rule) : NULL;
  if (e.original_path == NULL || (rule != NULL && e.rule == NULL)) {
    rc = YM_ENOMEM;
    goto out_free;
  }
  e.dev = (uint64_t)st.st_dev;
  e.ino = (uint64_t)st.st_ino;
  e.dir_dev = (uint64_t)dst.st_dev;
  e.dir_ino = (uint64_t)dst.st_ino;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.mode = st.st_mode;
  e.mtime_ns = ts_ns(&st.st_mtim);
  e.quarantined_ns = ts_ns(&now);
  rc = store(qfd, fd, &st, &e);
  if (rc != 0)
    goto out_free;

  /* Step 4: remove the entry, only if it is still ours. */
  rc = remove_entry(dirfd, name, &st, e.id);
  if (rc != 0) {
    discard(qfd, e.id);
    goto out_free;
  }
  /* The file is gone; a failed flush of its directory cannot undo that,
   * so it is not an error. */
  (void)fsync_dir(dirfd);
  *out = e;
  goto out_close;
out_free:
  quarantine_entry_free(&e);
out_close:
  if (dirfd >= 0)
    close(dirfd);
  close(qfd);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Restore, list, delete                                                */

/* The largest .gz accepted for a file of size bytes. deflate never expands
 * data by more than a few bytes per 16 KiB block (zlib's deflateBound() is
 * about size + size/4096 + size/16384 + 25 bytes for this format), so size/10 +
 * 64 KiB is a generous margin that still bounds the work a damaged or
 * planted file can cause. */
static uint64_t gz_cap(uint64_t size) {
  return size + size / 10 + 64 * 1024;
}

/* Steps of quarantine_restore() from the decompression on: writes the
 * content into a new temporary file in dirfd, gives it the recorded owner,
 * mode and mtime, and renames it to name. */
static int restore_into(int dirfd, const char *name, int gzfd, uint64_t gz_size,
                        const quarantine_entry_t *e) {
  char tmp_id[QUARANTINE_ID_LEN + 1], tmp[NAME_BUF], hex[YM_SHA256_HEX_LEN + 1];
  uint8_t sha[YM_SHA256_LEN];
  struct stat tst, now;
  int tfd;
  /* A fresh random name, so that a temporary file left by a crash cannot
   * block later attempts. */
  int rc = new_id(tmp_id);
  if (rc != 0)
    return rc;
  name_of(tmp, RESTORE_PREFIX, tmp_id, "");
  rc = create_excl(dirfd, tmp, &tfd);
  if (rc != 0)
    return rc;
  if (fstat(tfd, &tst) != 0) {
    rc = ym_err_from_errno(errno);
    close(tfd);
    (void)unlinkat(dirfd, tmp, 0);
    return rc;
  }
  rc = inflate_copy(gzfd, tfd, gz_size, (uint64_t)e->size, sha);
  if (rc != 0)
    goto out_unlink;
  ym_hex(sha, sizeof(sha), hex);
  if (strcmp(hex, e->sha256) != 0) {
    rc = YM_ECORRUPT;
    goto out_unlink;
  }
  /* The owner first: chown clears set-user-ID and set-group-ID bits. */
  struct timespec times[2] = {
      {.tv_sec = 0, .tv_nsec = UTIME_OMIT},
      {.tv_sec = e->mtime_ns / 1000000000, .tv_nsec = e->mtime_ns % 1000000000}};
  if (times[1].tv_nsec < 0) {
    times[1].tv_sec -= 1;
    times[1].tv_nsec += 1000000000;
  }
  if (fchown(tfd, e->uid, e->gid) != 0 || fchmod(tfd, e->mode & 07777) != 0 ||
      futimens(tfd, times) != 0 || fsync(tfd) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_unlink;
  }
  if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) != 0) {
    rc = errno == EEXIST ? YM_EEXIST : errno == ENOENT ? YM_ESTALE : ym_err_from_errno(errno);
    goto out_unlink;
  }
  /* Someone able to write to the directory could have swapped the
   * temporary name before the rename; then what now has the name is theirs,
   * and the entry is kept so that the content is not lost. */
  if (fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_dev != tst.st_dev ||
      now.st_ino != tst.st_ino) {
    close(tfd);
    return YM_ESTALE;
  }
  close(tfd);
  (void)fsync_dir(dirfd);
  return 0;
out_unlink:
  close(tfd);
  unlink_if_same(dirfd, tmp, &tst);
  return rc;
}

/* In order: checks id, reads the sidecar, opens the .gz, opens the original
 * directory by the safe walk and checks that it is the recorded one and
 * that the name is free, then restores (restore_into()) and finally removes
 * the .gz and the sidecar. */
int quarantine_restore(const char *qdir, const char *id, quarantine_entry_t *out) {
  return quarantine_restore_protected(qdir, id, NULL, out);
}

int quarantine_restore_protected(const char *qdir, const char *id, const protect_t *prot,
                                 quarantine_entry_t *out) {
  quarantine_entry_t e;
  char gz[NAME_BUF], js[NAME_BUF];
  struct stat gst, dst, cur;
  const char *name;
  int qfd, gzfd = -1, dirfd = -1;
  int rc;
  if (out != NULL)
    memset(out, 0, sizeof(*out));
  if (!id_valid(id))
    return YM_EINVAL;
  rc = qdir_open(qdir, false, &qfd);
  if (rc != 0)
    return rc;
  rc = sidecar_read(qfd, id, &e);
  if (rc != 0)
    goto out_close;
  name_of(gz, "", id, ".gz");
  name_of(js, "", id, ".json");
  gzfd = openat(qfd, gz, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (gzfd < 0) {
    /* A sidecar without its .gz is damaged (the .gz is written first). */
    rc = errno == ENOENT || errno == ELOOP ? YM_ECORRUPT : ym_err_from_errno(errno);
    goto out_free;
  }
  if (fstat(gzfd, &gst) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_free;
  }
  if (!S_ISREG(gst.st_mode) || (uint64_t)gst.st_size > gz_cap((uint64_t)e.size)) {
    rc = YM_ECORRUPT;
    goto out_free;
  }
  rc = parent_open(e.original_path, &dirfd, &name);
  if (rc != 0)
    goto out_free;
  if (fstat(dirfd, &dst) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_free;
  }
  if ((uint64_t)dst.st_dev != e.dir_dev || (uint64_t)dst.st_ino != e.dir_ino) {
    rc = YM_ESTALE; /* the original location changed */
    goto out_free;
  }
  if (prot != NULL && (rc = protect_check_dir(prot, dirfd)) != 0)
    goto out_free;
  /* Checked early to avoid needless work; the rename checks again. */
  if (fstatat(dirfd, name, &cur, AT_SYMLINK_NOFOLLOW) == 0) {
    rc = YM_EEXIST;
    goto out_free;
  }
  if (errno != ENOENT) {
    rc = ym_err_from_errno(errno);
    goto out_free;
  }
  rc = restore_into(dirfd, name, gzfd, (uint64_t)gst.st_size, &e);
  if (rc != 0)
    goto out_free;
  /* Restored: the quarantined copy goes, sidecar last. */
  (void)unlinkat(qfd, gz, 0);
  (void)unlinkat(qfd, js, 0);
  (void)fsync_dir(qfd);
  if (out != NULL) {
    *out = e;
    goto out_close;
  }
out_free:
  quarantine_entry_free(&e);
out_close:
  if (dirfd >= 0)
    close(dirfd);
  if (gzfd >= 0)
    close(gzfd);
  close(qfd);
  return rc;
}

/* If name is "<id>.json" for a valid id, copies the id and returns true. */
static bool sidecar_name(const char *name, char id[QUARANTINE_ID_LEN + 1]) {
  if (strnlen(name, QUARANTINE_ID_LEN + 6) != QUARANTINE_ID_LEN + 5 ||
      strcmp(name + QUARANTINE_ID_LEN, ".json") != 0)
    return false;
  memcpy(id, name, QUARANTINE_ID_LEN);
  id[QUARANTINE_ID_LEN] = '\0';
  return id_valid(id);
}

static int entry_cmp(const void *a, const void *b) {
  const quarantine_entry_t *x = a, *y = b;
  if (x->quarantined_ns != y->quarantined_ns)
    return x->quarantined_ns < y->quarantined_ns ? -1 : 1;
  return strcmp(x->id, y->id);
}

void quarantine_list_free(quarantine_entry_t *entries, size_t n) {
  if (entries == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    quarantine_entry_free(&entries[i]);
  free(entries);
}

int quarantine_list(const char *qdir, quarantine_entry_t **entries, size_t *n, size_t *ncorrupt) {
  quarantine_entry_t *arr = NULL;
  size_t count = 0, cap = 0, seen = 0, bad = 0;
  char id[QUARANTINE_ID_LEN + 1];
  struct dirent *de;
  int qfd, rc;
  *entries = NULL;
  *n = 0;
  if (ncorrupt != NULL)
    *ncorrupt = 0;
  rc = qdir_open(qdir, false, &qfd);
  if (rc != 0)
    return rc == YM_ENOENT ? 0 : rc;
  int dfd = openat(qfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
  if (d == NULL) {
    rc = ym_err_from_errno(errno);
    if (dfd >= 0)
      close(dfd);
    goto out_close;
  }
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (de == NULL) {
      if (errno != 0)
        rc = ym_err_from_errno(errno);
      break;
    }
    if (!sidecar_name(de->d_name, id))
      continue;
    if (++seen > QUARANTINE_LIST_MAX) {
      rc = YM_ETOOBIG;
      break;
    }
    if (count == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      quarantine_entry_t *t = realloc(arr, ncap * sizeof(*arr));
      if (t == NULL) {
        rc = YM_ENOMEM;
        break;
      }
      arr = t;
      cap = ncap;
    }
    int r = sidecar_read(qfd, id, &arr[count]);
    if (r == 0) {
      count++;
    } else if (r == YM_ENOMEM) {
      rc = r;
      break;
    } else if (r != YM_ENOENT) {
      bad++; /* a sidecar deleted meanwhile is simply gone */
    }
  }
  closedir(d);
  if (rc != 0) {
    quarantine_list_free(arr, count);
    goto out_close;
  }
  if (count > 1)
    qsort(arr, count, sizeof(*arr), entry_cmp);
  if (count == 0) {
    free(arr);
    arr = NULL;
  }
  *entries = arr;
  *n = count;
  if (ncorrupt != NULL)
    *ncorrupt = bad;
out_close:
  close(qfd);
  return rc;
}

int quarantine_delete(const char *qdir, const char *id) {
  char gz[NAME_BUF], js[NAME_BUF];
  bool found = false;
  int qfd, rc;
  if (!id_valid(id))
    return YM_EINVAL;
  rc = qdir_open(qdir, false, &qfd);
  if (rc != 0)
    return rc;
  name_of(gz, "", id, ".gz");
  name_of(js, "", id, ".json");
  /* The .gz first: a sidecar left by a crash still lists the entry, so the
   * deletion can be repeated. */
  if (unlinkat(qfd, gz, 0) == 0)
    found = true;
  else if (errno != ENOENT)
    rc = ym_err_from_errno(errno);
  if (rc == 0) {
    if (unlinkat(qfd, js, 0) == 0)
      found = true;
    else if (errno != ENOENT)
      rc = ym_err_from_errno(errno);
  }
  if (rc == 0 && found)
    rc = fsync_dir(qfd);
  else if (rc == 0)
    rc = YM_ENOENT;
  close(qfd);
  return rc;
}
