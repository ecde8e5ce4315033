/*
 * Program-start permission events on Linux: a fanotify group of the
 * content class with FAN_OPEN_EXEC_PERM filesystem marks on every real
 * filesystem. The kernel holds each exec until the group answers; closing
 * the group allows everything still pending, so a crashed agent never
 * leaves programs waiting.
 */
#include "os.h"

#include "mounts.h"

#include "yamori/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_MARKED 256

struct os_execperm {
  int fan_fd;
  int mnt_fd;
  dev_t marked[MAX_MARKED];
  size_t nmarked;
};

static void mark_entry(const char *mp, const char *fstype, dev_t dev, void *data) {
  os_execperm_t *p = data;
  (void)fstype;
  for (size_t i = 0; i < p->nmarked; i++)
    if (p->marked[i] == dev)
      return;
  if (p->nmarked >= MAX_MARKED)
    return;
  int fd = open(mp, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return;
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_dev == dev &&
      fanotify_mark(p->fan_fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, fd, NULL) ==
          0)
    p->marked[p->nmarked++] = dev;
  close(fd);
}

int os_execperm_open(os_execperm_t **out) {
  os_execperm_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return YM_ENOMEM;
  p->fan_fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK,
                            O_RDONLY | O_CLOEXEC | O_LARGEFILE);
  if (p->fan_fd < 0) {
    int rc = ym_err_from_errno(errno);
    free(p);
    return rc;
  }
  p->mnt_fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (p->mnt_fd < 0) {
    int rc = ym_err_from_errno(errno);
    close(p->fan_fd);
    free(p);
    return rc;
  }
  mounts_read(p->mnt_fd, mark_entry, p);
  if (p->nmarked == 0) {
    os_execperm_close(p);
    return YM_ENOTSUP;
  }
  *out = p;
  return 0;
}

int os_execperm_fd(const os_execperm_t *p) {
  return p->fan_fd;
}

int os_execperm_mounts_fd(const os_execperm_t *p) {
  return p->mnt_fd;
}

void os_execperm_remark(os_execperm_t *p) {
  /* Devices that went away keep their slot; marks on them vanished with
   * the filesystem. A new mount of the same device is already covered only
   * while its superblock lives, so forget devices no longer mounted. */
  p->nmarked = 0;
  mounts_read(p->mnt_fd, mark_entry, p);
}

int os_execperm_read(os_execperm_t *p, os_execreq_t *reqs, size_t max, size_t *n) {
  /* Read at most as many events as the caller can take, so none is left
   * half-handled: the buffer holds max metadata records. */
  struct fanotify_event_metadata buf[64];
  size_t want = max < 64 ? max : 64;
  *n = 0;
  ssize_t len = read(p->fan_fd, buf, want * sizeof(buf[0]));
  if (len < 0)
    return errno == EAGAIN || errno == EINTR ? 0 : ym_err_from_errno(errno);
  const struct fanotify_event_metadata *md = buf;
  size_t left = (size_t)len;
  while (FAN_EVENT_OK(md, left)) {
    if (md->vers != FANOTIFY_METADATA_VERSION)
      return YM_ENOTSUP;
    if (md->fd >= 0) {
      if ((md->mask & FAN_OPEN_EXEC_PERM) && *n < max) {
        reqs[*n].fd = md->fd;
        reqs[*n].pid = md->pid;
        (*n)++;
      } else {
        /* Not a request we asked for: answer it so nothing waits. */
        os_execperm_answer(p, md->fd, true);
        close(md->fd);
      }
    }
    md = FAN_EVENT_NEXT(md, left);
  }
  return 0;
}

int os_execperm_answer(os_execperm_t *p, int fd, bool allow) {
  struct fanotify_response r = {.fd = fd, .response = allow ? FAN_ALLOW : FAN_DENY};
  for (;;) {
    ssize_t w = write(p->fan_fd, &r, sizeof(r));
    if (w == (ssize_t)sizeof(r))
      return 0;
    if (w < 0 && errno == EINTR)
      continue;
    return w < 0 ? ym_err_from_errno(errno) : YM_EIO;
  }
}

void os_execperm_close(os_execperm_t *p) {
  if (p == NULL)
    return;
  close(p->fan_fd);
  close(p->mnt_fd);
  free(p);
}
