/*
 * Unpacking a gzip'd ustar subset (see unpack.h). The archive is inflated
 * in chunks and fed through a small state machine: a 512-byte header, the
 * file's data, the padding to the next 512-byte block, and so on until two
 * zero blocks; after them only zero bytes may follow, and the gzip stream
 * must end exactly there.
 */
#include "yamori/unpack.h"

#include "yamori/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK (64 * 1024)
#define NAME_MAX_LEN 255
#define DEPTH_MAX 16
#define RATIO_GRACE (1024 * 1024)

enum { ST_HEADER, ST_DATA, ST_PAD, ST_END };

typedef struct {
  const ym_unpack_limits_t *lim;
  ym_unpack_result_t *res;
  int dir_fd;
  int state;
  uint8_t hdr[512];
  size_t hdr_len;
  int zero_blocks;
  uint64_t remaining; /* data bytes of the current file still to come */
  uint64_t entry_size;
  uint64_t entry_in0; /* compressed bytes consumed when its data began */
  const z_stream *z;
  uint64_t pad;
  int out_fd; /* the file being written, or -1 */
} tar_t;

void ym_unpack_default_limits(ym_unpack_limits_t *l) {
  l->max_total = 256ull * 1024 * 1024;
  l->max_file = 256ull * 1024 * 1024;
  l->max_entries = 10000;
  l->max_ratio = 100;
}

static int fail(tar_t *t, int rc, const char *reason) {
  if (t->res->reason == NULL)
    t->res->reason = reason;
  return rc;
}

/* Parses an octal field (digits, then spaces or NULs). */
static int octal(const uint8_t *p, size_t n, uint64_t *out) {
  uint64_t v = 0;
  size_t i = 0;
  while (i < n && p[i] == ' ')
    i++;
  size_t digits = 0;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
    if (v > (UINT64_MAX >> 3))
      return -1;
    v = v << 3 | (uint64_t)(p[i] - '0');
  }
  for (; i < n; i++)
    if (p[i] != ' ' && p[i] != '\0')
      return -1;
  if (digits == 0)
    return -1;
  *out = v;
  return 0;
}

/* Splits path into components in place, dropping "" and "."; returns the
 * count or a negative code with the reason set. */
static int split_path(tar_t *t, char *path, char **comp) {
  if (path[0] == '/')
    return fail(t, YM_EPERM, "absolute_path");
  for (const char *p = path; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\')
      return fail(t, YM_EPERM, "bad_name");
  int n = 0;
  char *save = path;
  for (;;) {
    char *slash = strchr(save, '/');
    if (slash != NULL)
      *slash = '\0';
    if (strcmp(save, "..") == 0)
      return fail(t, YM_EPERM, "dotdot_path");
    if (save[0] != '\0' && strcmp(save, ".") != 0) {
      if (n >= DEPTH_MAX)
        return fail(t, YM_EPERM, "bad_name");
      comp[n++] = save;
    }
    if (slash == NULL)
      break;
    save = slash + 1;
  }
  return n;
}

/* Opens (creating) the directories comp[0..n) below the unpack
 * directory; returns an fd or a negative code with the reason set. */
static int open_parent(tar_t *t, char **comp, int n) {
  int cur = dup(t->dir_fd);
  if (cur < 0)
    return fail(t, YM_EIO, "write_failed");
  for (int i = 0; i < n; i++) {
    int next = openat(cur, comp[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT) {
      if (mkdirat(cur, comp[i], 0755) != 0 && errno != EEXIST) {
        close(cur);
        return fail(t, YM_EIO, "write_failed");
      }
      next = openat(cur, comp[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    close(cur);
    if (next < 0)
      return fail(t, YM_EPERM, "duplicate_entry");
    cur = next;
  }
  return cur;
}

static int header(tar_t *t) {
  const uint8_t *h = t->hdr;
  bool zero = true;
  for (size_t i = 0; i < 512 && zero; i++)
    zero = h[i] == 0;
  if (zero) {
    if (++t->zero_blocks == 2)
      t->state = ST_END;
    return 0;
  }
  if (t->zero_blocks != 0)
    return fail(t, YM_ECORRUPT, "bad_archive");
  uint64_t sum = 0, want, size, mode;
  for (size_t i = 0; i < 512; i++)
    sum += (i >= 148 && i < 156) ? ' ' : h[i];
  if (octal(h + 148, 8, &want) != 0 || want != sum ||
      memcmp(h + 257,
             "ustar\0"
             "00",
             8) != 0)
    return fail(t, YM_ECORRUPT, "bad_archive");
  if (++t->res->entries > t->lim->max_entries)
    return fail(t, YM_ETOOBIG, "too_many_entries");
  char path[NAME_MAX_LEN + 2 + 256];
  size_t nl = strnlen((const char *)h, 100), pl = strnlen((const char *)h + 345, 155);
  if (pl > 0)
    snprintf(path, sizeof(path), "%.*s/%.*s", (int)pl, (const char *)h + 345, (int)nl,
             (const char *)h);
  else
    snprintf(path, sizeof(path), "%.*s", (int)nl, (const char *)h);
  if (strlen(path) > NAME_MAX_LEN || path[0] == '\0')
    return fail(t, YM_EPERM, "bad_name");
  char *comp[DEPTH_MAX];
  int n = split_path(t, path, comp);
  if (n < 0)
    return n;
  char type = (char)h[156];
  if (type == '1' || type == '2')
    return fail(t, YM_EPERM, "link_entry");
  if (type == '3' || type == '4' || type == '6')
    return fail(t, YM_EPERM, "device_entry");
  if (type != '0' && type != '\0' && type != '5')
    return fail(t, YM_EPERM, "unsupported_entry");
  if ((h[124] & 0x80) != 0 || octal(h + 124, 12, &size) != 0 || octal(h + 100, 8, &mode) != 0)
    return fail(t, YM_ECORRUPT, "bad_archive");
  if (type == '5') {
    if (size != 0)
      return fail(t, YM_ECORRUPT, "bad_archive");
    if (n == 0 || t->dir_fd < 0)
      return 0;
    int fd = open_parent(t, comp, n);
    if (fd < 0)
      return fd;
    close(fd);
    return 0;
  }
  if (n == 0)
    return fail(t, YM_EPERM, "bad_name");
  if (size > t->lim->max_file || t->res->bytes + size > t->lim->max_total)
    return fail(t, YM_ETOOBIG, "too_large");
  t->res->files++;
  t->res->bytes += size;
  t->remaining = size;
  t->entry_size = size;
  t->entry_in0 = t->z->total_in;
  t->pad = (512 - size % 512) % 512;
  t->state = ST_DATA;
  if (t->dir_fd >= 0) {
    int parent = open_parent(t, comp, n - 1);
    if (parent < 0)
      return parent;
    t->out_fd = openat(parent, comp[n - 1], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       (mode & 0111) ? 0755 : 0644);
    int e = errno;
    close(parent);
    if (t->out_fd < 0)
      return fail(t, e == EEXIST ? YM_EPERM : YM_EIO,
                  e == EEXIST ? "duplicate_entry" : "write_failed");
    /* The umask may have taken bits away; the archive's choice stands. */
    fchmod(t->out_fd, (mode & 0111) ? 0755 : 0644);
  }
  if (size == 0) {
    t->state = ST_HEADER;
    if (t->out_fd >= 0)
      close(t->out_fd);
    t->out_fd = -1;
  }
  return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int consume(tar_t *t, const uint8_t *p, size_t n) {
  while (n > 0) {
    switch (t->state) {
    case ST_HEADER: {
      size_t k = 512 - t->hdr_len < n ? 512 - t->hdr_len : n;
      memcpy(t->hdr + t->hdr_len, p, k);
      t->hdr_len += k;
      p += k;
      n -= k;
      if (t->hdr_len == 512) {
        t->hdr_len = 0;
        int rc = header(t);
        if (rc != 0)
          return rc;
      }
      break;
    }
    case ST_DATA: {
      size_t k = t->remaining < n ? (size_t)t->remaining : n;
      if (t->out_fd >= 0 && write_all(t->out_fd, p, k) != 0)
        return fail(t, YM_EIO, "write_failed");
      t->remaining -= k;
      p += k;
      n -= k;
      /* Per file too: a bomb hidden behind incompressible content would
       * pass a ratio over the whole stream. */
      uint64_t out = t->entry_size - t->remaining, in = t->z->total_in - t->entry_in0;
      if (out > RATIO_GRACE && out / t->lim->max_ratio > in)
        return fail(t, YM_ETOOBIG, "decompression_bomb");
      if (t->remaining == 0) {
        if (t->out_fd >= 0 && fsync(t->out_fd) != 0) {
          close(t->out_fd);
          t->out_fd = -1;
          return fail(t, YM_EIO, "write_failed");
        }
        if (t->out_fd >= 0)
          close(t->out_fd);
        t->out_fd = -1;
        t->state = t->pad ? ST_PAD : ST_HEADER;
      }
      break;
    }
    case ST_PAD: {
      size_t k = t->pad < n ? (size_t)t->pad : n;
      t->pad -= k;
      p += k;
      n -= k;
      if (t->pad == 0)
        t->state = ST_HEADER;
      break;
    }
    default: /* ST_END: only zero padding may follow */
      for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
          return fail(t, YM_ECORRUPT, "bad_archive");
      n = 0;
      break;
    }
  }
  return 0;
}

/* Input source: a memory block or an fd. */
typedef struct {
  const uint8_t *mem;
  size_t mem_len, mem_off;
  int fd;
} src_t;

static ssize_t src_read(src_t *s, uint8_t *buf, size_t cap) {
  if (s->mem != NULL || s->fd < 0) {
    size_t k = s->mem_len - s->mem_off < cap ? s->mem_len - s->mem_off : cap;
    memcpy(buf, s->mem + s->mem_off, k);
    s->mem_off += k;
    return (ssize_t)k;
  }
  for (;;) {
    ssize_t r = read(s->fd, buf, cap);
    if (r < 0 && errno == EINTR)
      continue;
    return r;
  }
}

/* fsyncs every directory below fd (files were fsync'd when written), so
 * that the names survive a power loss before the caller's rename. */
static int sync_dirs(int fd, int depth) {
  int dup_fd = dup(fd);
  DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
  if (d == NULL) {
    if (dup_fd >= 0)
      close(dup_fd);
    return -1;
  }
  int rc = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL && rc == 0) {
    if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    int sub = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0 || depth > DEPTH_MAX) {
      rc = -1;
    } else {
      rc = sync_dirs(sub, depth + 1);
    }
    if (sub >= 0)
      close(sub);
  }
  closedir(d);
  return rc == 0 ? fsync(fd) : rc;
}

static int run(src_t *s, int dir_fd, const ym_unpack_limits_t *lim, ym_unpack_result_t *res) {
  memset(res, 0, sizeof(*res));
  z_stream z;
  memset(&z, 0, sizeof(z));
  tar_t t = {.lim = lim, .res = res, .dir_fd = dir_fd, .state = ST_HEADER, .out_fd = -1, .z = &z};
  if (inflateInit2(&z, 15 + 16) != Z_OK)
    return fail(&t, YM_ENOMEM, "bad_archive");
  uint8_t *in = malloc(CHUNK), *out = malloc(CHUNK);
  int rc = 0;
  bool ended = false;
  uint64_t total_in = 0, total_out = 0;
  if (in == NULL || out == NULL) {
    rc = fail(&t, YM_ENOMEM, "bad_archive");
    goto out;
  }
  while (rc == 0) {
    ssize_t r = src_read(s, in, CHUNK);
    if (r < 0) {
      rc = fail(&t, YM_EIO, "bad_archive");
      break;
    }
    if (r == 0)
      break;
    if (ended) { /* bytes after the end of the gzip stream */
      rc = fail(&t, YM_ECORRUPT, "bad_archive");
      break;
    }
    total_in += (uint64_t)r;
    z.next_in = in;
    z.avail_in = (uInt)r;
    while (rc == 0 && z.avail_in > 0 && !ended) {
      z.next_out = out;
      z.avail_out = CHUNK;
      int zr = inflate(&z, Z_NO_FLUSH);
      if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
        rc = fail(&t, YM_ECORRUPT, "bad_archive");
        break;
      }
      size_t got = CHUNK - z.avail_out;
      total_out += got;
      if (total_out > RATIO_GRACE && total_out / lim->max_ratio > total_in) {
        rc = fail(&t, YM_ETOOBIG, "decompression_bomb");
        break;
      }
      rc = consume(&t, out, got);
      if (zr == Z_STREAM_END) {
        ended = true;
        if (z.avail_in > 0)
          rc = rc ? rc : fail(&t, YM_ECORRUPT, "bad_archive");
      } else if (zr == Z_BUF_ERROR && got == 0) {
        break;
      }
    }
  }
  if (rc == 0 && (!ended || t.state != ST_END))
    rc = fail(&t, YM_ECORRUPT, "truncated_archive");
  if (rc == 0 && dir_fd >= 0 && sync_dirs(dir_fd, 0) != 0)
    rc = fail(&t, YM_EIO, "write_failed");
out:
  if (t.out_fd >= 0)
    close(t.out_fd);
  inflateEnd(&z);
  free(in);
  free(out);
  if (rc != 0 && res->reason == NULL)
    res->reason = "bad_archive";
  return rc;
}

int ym_unpack_fd(int in_fd, int dir_fd, const ym_unpack_limits_t *lim, ym_unpack_result_t *res) {
  src_t s = {NULL, 0, 0, in_fd};
  return run(&s, dir_fd, lim, res);
}

int ym_unpack_mem(const void *p, size_t n, int dir_fd, const ym_unpack_limits_t *lim,
                  ym_unpack_result_t *res) {
  src_t s = {p, n, 0, -1};
  if (p == NULL)
    s.mem = (const uint8_t *)"";
  return run(&s, dir_fd, lim, res);
}

static int remove_below(int fd, int depth) {
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return ym_err_from_errno(errno);
  }
  int rc = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (unlinkat(dirfd(d), de->d_name, 0) == 0)
      continue;
    if (errno != EISDIR && errno != EPERM) {
      rc = ym_err_from_errno(errno);
      continue;
    }
    if (depth >= 64) {
      rc = YM_ETOOBIG;
      continue;
    }
    int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      rc = ym_err_from_errno(errno);
      continue;
    }
    int r = remove_below(sub, depth + 1);
    if (r == 0 && unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) != 0)
      r = ym_err_from_errno(errno);
    if (r != 0)
      rc = r;
  }
  closedir(d);
  return rc;
}

int ym_unpack_remove_tree(int dir_fd, const char *name) {
  if (unlinkat(dir_fd, name, 0) == 0 || errno == ENOENT)
    return 0;
  int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? 0 : ym_err_from_errno(errno);
  int rc = remove_below(fd, 0);
  if (rc == 0 && unlinkat(dir_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
    rc = ym_err_from_errno(errno);
  return rc;
}
