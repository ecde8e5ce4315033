/*
 * File events on Linux through fanotify filesystem marks.
 *
 * One notification group (FAN_CLASS_NOTIF, FAN_REPORT_DFID_NAME_TARGET) gets
 * a FAN_MARK_FILESYSTEM mark on every real filesystem, so it sees activity
 * from every mount and every mount namespace. Events name the parent
 * directory by file handle plus the entry name, and directory-entry events
 * also carry the handle of the entry itself.
 *
 * Directory handles become paths through a bounded cache that the events
 * themselves keep current: a directory created or renamed is entered under
 * its own handle with the path the event gives, and a directory rename
 * rewrites the cached paths below it. So events queued before a directory
 * is renamed or removed still resolve to the path they happened at. Only a
 * directory the cache has not seen (older than the agent, or evicted) is
 * looked up in the kernel: open_by_handle_at() relative to a mount of the
 * same filesystem, then readlink() of the resulting fd.
 *
 * In order, per readable callback: read a batch of events, decode each
 * (lengths checked against the record sizes), resolve the directory,
 * deliver one os_fsev_t per event bit (create, change, delete in that order
 * when the kernel merged them), and stop after a bounded number of reads so
 * that other handles on the loop get their turn.
 *
 * No fd on a watched filesystem is held open between events (that would make
 * it impossible to unmount); the mount point is opened again when a
 * directory handle must be resolved and it is verified to be the same
 * filesystem (fsid) before the handle is used. Mount changes are followed
 * through POLLPRI on /proc/self/mountinfo.
 */
#include "os.h"

#include "mounts.h"

#include "yamori/err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define MAX_FS 256
#define DIRCACHE_SLOTS 4096
#define READ_BUF (256 * 1024)
#define READS_PER_CALLBACK 16
#define HANDLE_MAX 128

struct os_fswatch;
static void fswatch_read(struct os_fswatch *w);

#define EVENT_MASK                                                                                 \
  (FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_CLOSE_WRITE | FAN_OPEN_EXEC | FAN_ONDIR)

typedef struct {
  fsid_t fsid;
  dev_t dev;
  char *mountpoint;
  char *fstype;
  bool marked; /* false: tried and refused (not retried until it changes) */
} fs_t;

typedef struct {
  bool used;
  fsid_t fsid;
  int handle_type;
  unsigned handle_len;
  unsigned char handle[HANDLE_MAX];
  char *path;
  size_t path_len;
} dirslot_t;

struct os_fswatch {
  uv_loop_t *loop;
  int fan_fd;
  int mnt_fd;
  uv_poll_t poll;
  uv_poll_t mpoll;
  int open_handles;
  bool closing;
  bool draining;
  os_fsev_cb cb;
  os_fsmount_cb mount_cb;
  void *data;
  fs_t fs[MAX_FS];
  size_t nfs;
  dirslot_t *dircache;
  os_fswatch_stats_t stats;
  char *buf;
};

static bool fsid_eq(const fsid_t *a, const fsid_t *b) {
  return memcmp(a, b, sizeof(*a)) == 0;
}

static fs_t *fs_by_dev(os_fswatch_t *w, dev_t dev) {
  for (size_t i = 0; i < w->nfs; i++)
    if (w->fs[i].dev == dev)
      return &w->fs[i];
  return NULL;
}

static fs_t *fs_by_fsid(os_fswatch_t *w, const fsid_t *fsid) {
  for (size_t i = 0; i < w->nfs; i++)
    if (w->fs[i].marked && fsid_eq(&w->fs[i].fsid, fsid))
      return &w->fs[i];
  return NULL;
}

static void dircache_flush(os_fswatch_t *w) {
  for (size_t i = 0; i < DIRCACHE_SLOTS; i++) {
    free(w->dircache[i].path);
    w->dircache[i].path = NULL;
    w->dircache[i].used = false;
  }
}

/* Marks the filesystem mounted at mp (type fstype) unless it is already
 * marked or known to refuse. */
static void mark_one(os_fswatch_t *w, const char *mp, const char *fstype) {
  int fd = open(mp, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return;
  struct stat st;
  struct statfs sfs;
  if (fstat(fd, &st) != 0 || fstatfs(fd, &sfs) != 0 || fs_by_dev(w, st.st_dev) != NULL ||
      w->nfs >= MAX_FS) {
    close(fd);
    return;
  }
  fs_t *f = &w->fs[w->nfs];
  memset(f, 0, sizeof(*f));
  f->dev = st.st_dev;
  f->fsid = sfs.f_fsid;
  f->mountpoint = strdup(mp);
  f->fstype = strdup(fstype);
  if (f->mountpoint == NULL || f->fstype == NULL) {
    free(f->mountpoint);
    free(f->fstype);
    close(fd);
    return;
  }
  int err = 0;
  if (fanotify_mark(w->fan_fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, EVENT_MASK, fd, NULL) != 0)
    err = errno;
  close(fd);
  f->marked = err == 0;
  w->nfs++;
  if (f->marked)
    w->stats.filesystems++;
  if (w->mount_cb != NULL)
    w->mount_cb(mp, fstype, err ? ym_err_from_errno(err) : 0, w->data);
}

typedef struct {
  os_fswatch_t *w;
  bool seen[MAX_FS];
} scan_ctx_t;

static void on_mount_entry(const char *mp, const char *fstype, dev_t dev, void *data) {
  scan_ctx_t *c = data;
  os_fswatch_t *w = c->w;
  fs_t *known = fs_by_dev(w, dev);
  if (known != NULL) {
    c->seen[known - w->fs] = true;
    return;
  }
  size_t before = w->nfs;
  mark_one(w, mp, fstype);
  if (w->nfs > before)
    c->seen[before] = true;
}

/* Reads the mount table and marks what is new. Forgets filesystems that are
 * gone, so that a later mount with the same device is marked again. */
static void scan_mounts(os_fswatch_t *w) {
  scan_ctx_t c;
  memset(&c, 0, sizeof(c));
  c.w = w;
  mounts_read(w->mnt_fd, on_mount_entry, &c);
  for (size_t i = w->nfs; i-- > 0;) {
    if (c.seen[i])
      continue;
    if (w->fs[i].marked)
      w->stats.filesystems--;
    free(w->fs[i].mountpoint);
    free(w->fs[i].fstype);
    w->fs[i] = w->fs[w->nfs - 1];
    w->nfs--;
  }
}

static uint32_t handle_hash(const fsid_t *fsid, const unsigned char *h, unsigned n) {
  uint32_t x = 2166136261u;
  const unsigned char *f = (const unsigned char *)fsid;
  for (size_t i = 0; i < sizeof(*fsid); i++)
    x = (x ^ f[i]) * 16777619u;
  for (unsigned i = 0; i < n; i++)
    x = (x ^ h[i]) * 16777619u;
  return x;
}

static dirslot_t *slot_for(os_fswatch_t *w, const fsid_t *fsid, const struct file_handle *fh) {
  return &w->dircache[handle_hash(fsid, fh->f_handle, fh->handle_bytes) % DIRCACHE_SLOTS];
}

static bool slot_matches(const dirslot_t *s, const fsid_t *fsid, const struct file_handle *fh) {
  return s->used && s->handle_type == fh->handle_type && s->handle_len == fh->handle_bytes &&
         fsid_eq(&s->fsid, fsid) && memcmp(s->handle, fh->f_handle, fh->handle_bytes) == 0;
}

/* Enters (or replaces) the path of a directory handle. */
static dirslot_t *dircache_put(os_fswatch_t *w, const fsid_t *fsid, const struct file_handle *fh,
                               const char *path, size_t len) {
  dirslot_t *s = slot_for(w, fsid, fh);
  char *copy = malloc(len + 1);
  if (copy == NULL)
    return NULL;
  memcpy(copy, path, len);
  copy[len] = '\0';
  free(s->path);
  s->used = true;
  s->fsid = *fsid;
  s->handle_type = fh->handle_type;
  s->handle_len = fh->handle_bytes;
  memcpy(s->handle, fh->f_handle, fh->handle_bytes);
  s->path = copy;
  s->path_len = len;
  return s;
}

/* A directory moved from old to new: every cached path at or below old
 * now lies below new. */
static void dircache_rename(os_fswatch_t *w, const char *old, size_t old_len, const char *new,
                            size_t new_len) {
  for (size_t i = 0; i < DIRCACHE_SLOTS; i++) {
    dirslot_t *s = &w->dircache[i];
    if (!s->used || s->path_len < old_len || memcmp(s->path, old, old_len) != 0 ||
        (s->path_len > old_len && s->path[old_len] != '/'))
      continue;
    size_t rest = s->path_len - old_len;
    if (new_len + rest > OS_PATH_MAX) {
      free(s->path);
      s->path = NULL;
      s->used = false;
      continue;
    }
    char *p = malloc(new_len + rest + 1);
    if (p == NULL)
      continue;
    memcpy(p, new, new_len);
    memcpy(p + new_len, s->path + old_len, rest);
    p[new_len + rest] = '\0';
    free(s->path);
    s->path = p;
    s->path_len = new_len + rest;
  }
}

/* Resolves a directory handle to a path. Returns the cached slot (path
 * valid until the next flush) or NULL. */
static dirslot_t *resolve_dir(os_fswatch_t *w, const fsid_t *fsid, struct file_handle *fh) {
  dirslot_t *s = slot_for(w, fsid, fh);
  if (slot_matches(s, fsid, fh))
    return s;

  fs_t *f = fs_by_fsid(w, fsid);
  if (f == NULL)
    return NULL;
  int mfd = open(f->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (mfd < 0)
    return NULL;
  struct statfs sfs;
  int dfd = -1;
  if (fstatfs(mfd, &sfs) == 0 && fsid_eq(&sfs.f_fsid, fsid))
    dfd = open_by_handle_at(mfd, fh, O_PATH | O_CLOEXEC);
  close(mfd);
  if (dfd < 0)
    return NULL;
  char link[64], path[OS_PATH_MAX + 1];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", dfd);
  ssize_t n = readlink(link, path, sizeof(path) - 1);
  close(dfd);
  if (n <= 0 || (size_t)n >= sizeof(path) - 1 || path[0] != '/')
    return NULL;
  static const char deleted[] = " (deleted)";
  if ((size_t)n > sizeof(deleted) - 1 &&
      memcmp(path + n - (sizeof(deleted) - 1), deleted, sizeof(deleted) - 1) == 0)
    n -= (ssize_t)(sizeof(deleted) - 1);
  return dircache_put(w, fsid, fh, path, (size_t)n);
}

/* One decoded FID record. Records in the kernel's buffer are only 4-byte
 * aligned, so every field is copied out with memcpy, and the handle into
 * aligned storage that open_by_handle_at() can take. */
typedef struct {
  bool ok;
  fsid_t fsid;
  struct file_handle *fh; /* points at storage */
  union {
    struct file_handle h;
    unsigned char bytes[sizeof(struct file_handle) + HANDLE_MAX];
  } storage;
  const char *name; /* into the kernel's buffer (bytes, no alignment needed) */
  size_t name_len;
} dfid_name_t;

/* Decodes a FID record at rec (len bytes); with_name: a name follows the
 * handle (the *_DFID_NAME types). False when malformed. */
static bool decode_fid_record(const char *rec, size_t len, bool with_name, dfid_name_t *out) {
  size_t hdr_fsid = sizeof(struct fanotify_event_info_header) + sizeof(__kernel_fsid_t);
  size_t fixed = hdr_fsid + sizeof(struct file_handle);
  if (len < fixed)
    return false;
  struct file_handle fh;
  memcpy(&fh, rec + hdr_fsid, sizeof(fh));
  if (fh.handle_bytes > HANDLE_MAX || fixed + fh.handle_bytes > len ||
      (with_name && fixed + fh.handle_bytes >= len))
    return false;
  memcpy(&out->fsid, rec + sizeof(struct fanotify_event_info_header), sizeof(out->fsid));
  memcpy(out->storage.bytes, rec + hdr_fsid, sizeof(fh) + fh.handle_bytes);
  out->fh = &out->storage.h;
  out->name = NULL;
  out->name_len = 0;
  if (with_name) {
    const char *name = rec + fixed + fh.handle_bytes;
    size_t max = len - fixed - fh.handle_bytes;
    size_t nlen = strnlen(name, max);
    if (nlen == max)
      return false; /* no terminating NUL inside the record */
    out->name = name;
    out->name_len = nlen;
  }
  out->ok = true;
  return true;
}

/* Builds dir + "/" + name into buf. Returns the length, or 0 when the
 * directory is unknown (then buf holds just the name). */
static size_t join_path(os_fswatch_t *w, const dfid_name_t *d, char *buf, size_t cap,
                        bool *unresolved) {
  dirslot_t *s = resolve_dir(w, &d->fsid, d->fh);
  *unresolved = s == NULL;
  if (s == NULL) {
    size_t n = d->name_len < cap - 1 ? d->name_len : cap - 1;
    memcpy(buf, d->name, n);
    buf[n] = '\0';
    w->stats.unresolved++;
    return n;
  }
  size_t dl = s->path_len;
  bool root = dl == 1;
  size_t total = dl + (root ? 0 : 1) + d->name_len;
  if (total >= cap) {
    *unresolved = true;
    return 0;
  }
  memcpy(buf, s->path, dl);
  size_t off = dl;
  if (!root)
    buf[off++] = '/';
  memcpy(buf + off, d->name, d->name_len);
  buf[total] = '\0';
  return total;
}

static void deliver(os_fswatch_t *w, os_fsev_kind_t kind, const struct fanotify_event_metadata *md,
                    const char *path, size_t path_len, const char *old, size_t old_len,
                    bool unresolved) {
  os_fsev_t ev = {.kind = kind,
                  .is_dir = (md->mask & FAN_ONDIR) != 0,
                  .pid = md->pid,
                  .path = path,
                  .path_len = path_len,
                  .old_path = old,
                  .old_path_len = old_len,
                  .path_unresolved = unresolved};
  w->stats.events++;
  w->cb(&ev, w->data);
}

/* md is an aligned copy of the metadata at raw (md->event_len bytes). */
static void handle_event(os_fswatch_t *w, const struct fanotify_event_metadata *md,
                         const char *raw) {
  static _Thread_local char path[OS_PATH_MAX + 2], old[OS_PATH_MAX + 2];
  if (md->fd >= 0)
    close(md->fd); /* not expected for a FID group; never leak one */
  if (md->mask & FAN_Q_OVERFLOW) {
    w->stats.overflows++;
    os_fsev_t ev = {.kind = OS_FSEV_LOST};
    w->cb(&ev, w->data);
    return;
  }
  static _Thread_local dfid_name_t main, from, to, self;
  main.ok = from.ok = to.ok = self.ok = false;
  const char *p = raw + md->metadata_len;
  const char *end = raw + md->event_len;
  while (p + sizeof(struct fanotify_event_info_header) <= end) {
    struct fanotify_event_info_header hdr;
    memcpy(&hdr, p, sizeof(hdr));
    if (hdr.len < sizeof(hdr) || p + hdr.len > end)
      return; /* malformed record: drop the rest of this event */
    switch (hdr.info_type) {
    case FAN_EVENT_INFO_TYPE_DFID_NAME:
      decode_fid_record(p, hdr.len, true, &main);
      break;
    case FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
      decode_fid_record(p, hdr.len, true, &from);
      break;
    case FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
      decode_fid_record(p, hdr.len, true, &to);
      break;
    case FAN_EVENT_INFO_TYPE_FID:
      decode_fid_record(p, hdr.len, false, &self);
      break;
    default:
      break;
    }
    p += hdr.len;
  }

  bool unresolved = false, old_unresolved = false;
  if (md->mask & FAN_RENAME) {
    if (!from.ok || !to.ok)
      return;
    size_t ol = join_path(w, &from, old, sizeof(old), &old_unresolved);
    size_t nl = join_path(w, &to, path, sizeof(path), &unresolved);
    if ((md->mask & FAN_ONDIR) && !unresolved && !old_unresolved) {
      dircache_rename(w, old, ol, path, nl);
      if (self.ok)
        dircache_put(w, &self.fsid, self.fh, path, nl);
    } else if (md->mask & FAN_ONDIR) {
      dircache_flush(w); /* cannot tell which cached paths moved */
    }
    deliver(w, OS_FSEV_RENAME, md, path, nl ? nl : strlen(path), old, ol ? ol : strlen(old),
            unresolved || old_unresolved);
    return;
  }
  if (!main.ok)
    return;
  size_t n = join_path(w, &main, path, sizeof(path), &unresolved);
  if (n == 0)
    n = strlen(path);
  if (md->mask & FAN_OPEN_EXEC)
    deliver(w, OS_FSEV_EXEC, md, path, n, NULL, 0, unresolved);
  if ((md->mask & (FAN_CREATE | FAN_ONDIR)) == (FAN_CREATE | FAN_ONDIR) && self.ok && !unresolved)
    dircache_put(w, &self.fsid, self.fh, path, n); /* its own events need no lookup */
  if (md->mask & FAN_CREATE)
    deliver(w, OS_FSEV_CREATE, md, path, n, NULL, 0, unresolved);
  if (md->mask & FAN_CLOSE_WRITE)
    deliver(w, OS_FSEV_CHANGE, md, path, n, NULL, 0, unresolved);
  if (md->mask & FAN_DELETE)
    deliver(w, OS_FSEV_DELETE, md, path, n, NULL, 0, unresolved);
}

void os_fswatch_drain(os_fswatch_t *w) {
  /* Not reentrant: the read buffer is being walked by the outer call. */
  if (w->closing || w->draining)
    return;
  w->draining = true;
  fswatch_read(w);
  w->draining = false;
}

static void fswatch_read(os_fswatch_t *w) {
  for (int i = 0; i < READS_PER_CALLBACK && !w->closing; i++) {
    ssize_t n = read(w->fan_fd, w->buf, READ_BUF);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    size_t off = 0;
    while (off + sizeof(struct fanotify_event_metadata) <= (size_t)n) {
      struct fanotify_event_metadata md;
      memcpy(&md, w->buf + off, sizeof(md));
      if (md.vers != FANOTIFY_METADATA_VERSION || md.event_len < sizeof(md) ||
          md.metadata_len < sizeof(md) || md.metadata_len > md.event_len ||
          off + md.event_len > (size_t)n)
        return;
      handle_event(w, &md, w->buf + off);
      off += md.event_len;
    }
  }
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  if (status == 0)
    os_fswatch_drain(h->data);
}

static void on_mounts(uv_poll_t *h, int status, int events) {
  os_fswatch_t *w = h->data;
  (void)events;
  if (status < 0 || w->closing)
    return;
  dircache_flush(w);
  scan_mounts(w);
}

int os_fswatch_new(uv_loop_t *loop, os_fsev_cb cb, os_fsmount_cb mount_cb, void *data,
                   os_fswatch_t **out) {
  os_fswatch_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return YM_ENOMEM;
  w->loop = loop;
  w->cb = cb;
  w->mount_cb = mount_cb;
  w->data = data;
  w->mnt_fd = -1;
  w->buf = aligned_alloc(8, READ_BUF);
  w->dircache = calloc(DIRCACHE_SLOTS, sizeof(*w->dircache));
  if (w->buf == NULL || w->dircache == NULL)
    goto out_free;
  w->fan_fd =
      fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME_TARGET,
                    O_RDONLY | O_CLOEXEC | O_LARGEFILE);
  if (w->fan_fd < 0) {
    int rc = ym_err_from_errno(errno);
    free(w->buf);
    free(w->dircache);
    free(w);
    return rc;
  }
  w->mnt_fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (w->mnt_fd < 0) {
    close(w->fan_fd);
    goto out_free;
  }
  *out = w;
  return 0;
out_free:
  free(w->buf);
  free(w->dircache);
  free(w);
  return YM_ENOMEM;
}

int os_fswatch_start(os_fswatch_t *w) {
  scan_mounts(w);
  if (w->stats.filesystems == 0)
    return YM_ENOTSUP;
  uv_poll_init(w->loop, &w->poll, w->fan_fd);
  w->poll.data = w;
  uv_poll_init(w->loop, &w->mpoll, w->mnt_fd);
  w->mpoll.data = w;
  w->open_handles = 2;
  uv_poll_start(&w->poll, UV_READABLE, on_readable);
  uv_poll_start(&w->mpoll, UV_PRIORITIZED, on_mounts);
  return 0;
}

static void release(os_fswatch_t *w) {
  close(w->fan_fd);
  close(w->mnt_fd);
  dircache_flush(w);
  for (size_t i = 0; i < w->nfs; i++) {
    free(w->fs[i].mountpoint);
    free(w->fs[i].fstype);
  }
  free(w->dircache);
  free(w->buf);
  free(w);
}

static void on_closed(uv_handle_t *h) {
  os_fswatch_t *w = h->data;
  if (--w->open_handles == 0)
    release(w);
}

void os_fswatch_free(os_fswatch_t *w) {
  if (w == NULL)
    return;
  w->closing = true;
  if (w->open_handles == 0) {
    release(w);
    return;
  }
  uv_close((uv_handle_t *)&w->poll, on_closed);
  uv_close((uv_handle_t *)&w->mpoll, on_closed);
}

void os_fswatch_stats(const os_fswatch_t *w, os_fswatch_stats_t *out) {
  *out = w->stats;
}
