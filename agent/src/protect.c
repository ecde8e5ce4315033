/*
 * The agent's own directories, files and processes (see protect.h).
 */
#include "protect.h"

#include "os.h"

#include "yamori/err.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Deeper than any path can be (PATH_MAX bytes, two per component). */
#define WALK_MAX 2048

void protect_init(protect_t *p) {
  memset(p, 0, sizeof(*p));
}

static bool has(const protect_id_t *v, size_t n, uint64_t dev, uint64_t ino) {
  for (size_t i = 0; i < n; i++)
    if (v[i].dev == dev && v[i].ino == ino)
      return true;
  return false;
}

static int add(protect_id_t *v, size_t *n, const struct stat *st) {
  if (has(v, *n, (uint64_t)st->st_dev, (uint64_t)st->st_ino))
    return 0;
  if (*n >= PROTECT_MAX)
    return YM_ETOOBIG;
  v[*n].dev = (uint64_t)st->st_dev;
  v[*n].ino = (uint64_t)st->st_ino;
  (*n)++;
  return 0;
}

int protect_add_dir(protect_t *p, const char *path) {
  struct stat st, root;
  if (path == NULL || path[0] == '\0')
    return YM_EINVAL;
  if (stat(path, &st) != 0)
    return ym_err_from_errno(errno);
  if (!S_ISDIR(st.st_mode))
    return YM_EINVAL;
  /* The root would cover everything: a configuration naming it is not
   * taken as a wish to protect the whole machine. */
  if (stat("/", &root) == 0 && root.st_dev == st.st_dev && root.st_ino == st.st_ino)
    return YM_EINVAL;
  return add(p->dirs, &p->ndirs, &st);
}

int protect_add_file(protect_t *p, const char *path) {
  struct stat st;
  if (path == NULL || path[0] == '\0')
    return YM_EINVAL;
  if (stat(path, &st) != 0)
    return ym_err_from_errno(errno);
  if (S_ISDIR(st.st_mode))
    return YM_EINVAL;
  return add(p->files, &p->nfiles, &st);
}

int protect_add_proc(protect_t *p, int pid) {
  int ppid;
  uint64_t ticks;
  if (pid <= 0 || os_proc_read_stat(pid, &ppid, &ticks) != 0)
    return YM_ENOENT;
  if (protect_has_proc(p, pid, ticks))
    return 0;
  if (p->nprocs >= PROTECT_MAX_PROCS)
    return YM_ETOOBIG;
  p->procs[p->nprocs].pid = pid;
  p->procs[p->nprocs].start_ticks = ticks;
  p->nprocs++;
  return 0;
}

/* From dirfd up: each directory is compared, then its ".." is opened,
 * until ".." is the directory itself (the root). Only descriptors are
 * used, never a path, so renames meanwhile cannot make the walk skip a
 * level. */
int protect_check_dir(const protect_t *p, int dirfd) {
  struct stat cur, up;
  int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0)
    return ym_err_from_errno(errno);
  int rc = 0;
  if (fstat(fd, &cur) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_close;
  }
  if (!S_ISDIR(cur.st_mode)) {
    rc = YM_EINVAL;
    goto out_close;
  }
  for (int depth = 0;; depth++) {
    if (has(p->dirs, p->ndirs, (uint64_t)cur.st_dev, (uint64_t)cur.st_ino)) {
      rc = YM_EPERM;
      break;
    }
    if (depth >= WALK_MAX) {
      rc = YM_ETOOBIG;
      break;
    }
    int next = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (next < 0) {
      rc = ym_err_from_errno(errno);
      break;
    }
    if (fstat(next, &up) != 0) {
      rc = ym_err_from_errno(errno);
      close(next);
      break;
    }
    close(fd);
    fd = next;
    if (up.st_dev == cur.st_dev && up.st_ino == cur.st_ino)
      break; /* the root: its ".." is itself */
    cur = up;
  }
out_close:
  close(fd);
  return rc;
}

bool protect_has_file(const protect_t *p, uint64_t dev, uint64_t ino) {
  return has(p->files, p->nfiles, dev, ino);
}

bool protect_has_proc(const protect_t *p, int pid, uint64_t start_ticks) {
  for (size_t i = 0; i < p->nprocs; i++)
    if (p->procs[i].pid == pid && p->procs[i].start_ticks == start_ticks)
      return true;
  return false;
}
