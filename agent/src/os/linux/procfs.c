/*
 * Process information from /proc.
 *
 * os_proc_read() opens /proc/PID once (O_PATH) and reads everything else
 * relative to that directory, so that every file read describes the same
 * process instance: if the pid is reused by a new process meanwhile, the
 * reads fail instead of mixing two processes. Files are read with bounded
 * buffers and plain read() loops; nothing here grows with what a process
 * puts in its command line beyond the limit the caller gives.
 *
 * /proc/PID/stat is parsed from the last ')' because the command name in
 * parentheses may itself contain ')' and spaces.
 */
#include "os.h"

#include "yamori/err.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* /proc/PID/stat is a single line of about 300 bytes; the command name in
 * it is at most 64 bytes (workqueue threads). */
#define STAT_BUF_MAX 1024
/* The "Uid:" line comes within the first kilobyte of /proc/PID/status. */
#define STATUS_BUF_MAX 4096
/* A hard cap on max_args_bytes, whatever the caller asks. */
#define ARGS_HARD_MAX ((size_t)16 * 1024 * 1024)

#define DELETED_SUFFIX " (deleted)"

/* Reads at most cap bytes of the file at dirfd/name into buf, looping over
 * short reads. Sets *len to the bytes read. Returns 0 or a YM_E* code
 * (YM_ENOENT when the process is gone: ENOENT or ESRCH). */
static int read_at(int dirfd, const char *name, char *buf, size_t cap, size_t *len) {
  *len = 0;
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return ym_err_from_errno(errno);
  int rc = 0;
  size_t off = 0;
  while (off < cap) {
    ssize_t n = read(fd, buf + off, cap - off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = ym_err_from_errno(errno);
      break;
    }
    if (n == 0)
      break;
    off += (size_t)n;
  }
  close(fd);
  *len = off;
  return rc;
}

/* Parses a decimal number that ends at a space, NUL or newline. Returns the
 * position after it, or NULL when there is no number. */
static const char *parse_u64(const char *p, uint64_t *out) {
  if (!isdigit((unsigned char)*p))
    return NULL;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(p, &end, 10);
  if (errno != 0 || (*end != ' ' && *end != '\0' && *end != '\n' && *end != '\t'))
    return NULL;
  *out = (uint64_t)v;
  return end;
}

/* Skips n space-separated fields starting at p (which points at the first
 * character of a field). Returns the start of the field n places later, or
 * NULL when the line ends first. */
static const char *skip_fields(const char *p, int n) {
  for (int i = 0; i < n; i++) {
    p = strchr(p, ' ');
    if (p == NULL)
      return NULL;
    p++;
  }
  return p;
}

/* Parses a NUL-terminated /proc/PID/stat line. comm (when not NULL) receives
 * the command name, cut to comm_size - 1 bytes. Returns 0 or YM_EPARSE. */
static int parse_stat(const char *line, int *ppid, uint64_t *start_ticks, char *comm,
                      size_t comm_size) {
  const char *open = strchr(line, '(');
  const char *close = strrchr(line, ')');
  if (open == NULL || close == NULL || close < open || close[1] != ' ')
    return YM_EPARSE;
  if (comm != NULL) {
    size_t n = (size_t)(close - open - 1);
    if (n >= comm_size)
      n = comm_size - 1;
    memcpy(comm, open + 1, n);
    comm[n] = '\0';
  }
  /* After ") " come field 3 (state), field 4 (ppid) ... field 22
   * (starttime). */
  const char *p = skip_fields(close + 2, 1);
  uint64_t v;
  if (p == NULL || parse_u64(p, &v) == NULL || v > INT_MAX)
    return YM_EPARSE;
  *ppid = (int)v;
  p = skip_fields(p, 22 - 4);
  if (p == NULL || parse_u64(p, &v) == NULL)
    return YM_EPARSE;
  *start_ticks = v;
  return 0;
}

/* Reads and parses dirfd/stat (dirfd is a /proc/PID directory, or AT_FDCWD
 * with a full path as name). Returns 0, YM_ENOENT when the process is gone,
 * YM_EPARSE or another YM_E* code. */
static int read_stat(int dirfd, const char *name, int *ppid, uint64_t *start_ticks, char *comm,
                     size_t comm_size) {
  char buf[STAT_BUF_MAX + 1];
  size_t len;
  int rc = read_at(dirfd, name, buf, STAT_BUF_MAX, &len);
  if (rc < 0)
    return rc;
  if (len == 0)
    return YM_ENOENT; /* The task went away between open and read. */
  buf[len] = '\0';
  return parse_stat(buf, ppid, start_ticks, comm, comm_size);
}

/* Finds the real and effective uid in the text of /proc/PID/status. */
static int parse_status_uids(const char *text, uint32_t *uid, uint32_t *euid) {
  const char *p = strstr(text, "\nUid:");
  if (p == NULL)
    return YM_EPARSE;
  p += strlen("\nUid:");
  uint64_t v[2];
  for (int i = 0; i < 2; i++) {
    while (*p == ' ' || *p == '\t')
      p++;
    p = parse_u64(p, &v[i]);
    if (p == NULL || v[i] > UINT32_MAX)
      return YM_EPARSE;
  }
  *uid = (uint32_t)v[0];
  *euid = (uint32_t)v[1];
  return 0;
}

/* Reads the link dirfd/name into out (OS_PATH_MAX + 1 bytes). Returns the
 * length, or -1 when the link is unreadable or longer than OS_PATH_MAX. */
static ssize_t read_link_at(int dirfd, const char *name, char *out) {
  ssize_t n = readlinkat(dirfd, name, out, OS_PATH_MAX + 1);
  if (n < 0 || n > OS_PATH_MAX) {
    out[0] = '\0';
    return -1;
  }
  out[n] = '\0';
  return n;
}

/* Fills the exe fields. The kernel appends " (deleted)" to the path of an
 * unlinked executable; it is removed and exe_deleted set. (A file whose
 * name really ends in " (deleted)" cannot be told apart from the text.) */
static void read_exe(int dirfd, os_proc_info_t *out) {
  ssize_t n = read_link_at(dirfd, "exe", out->exe);
  if (n < 0)
    return;
  size_t len = (size_t)n;
  size_t sl = sizeof(DELETED_SUFFIX) - 1;
  if (len > sl && memcmp(out->exe + len - sl, DELETED_SUFFIX, sl) == 0) {
    len -= sl;
    out->exe[len] = '\0';
    out->exe_deleted = true;
  }
  out->exe_len = len;
  out->exe_ok = true;
}

static void read_cwd(int dirfd, os_proc_info_t *out) {
  ssize_t n = read_link_at(dirfd, "cwd", out->cwd);
  if (n < 0)
    return;
  out->cwd_len = (size_t)n;
  out->cwd_ok = true;
}

void os_proc_args_keep(char *buf, size_t avail, bool more, size_t max_args, size_t max_bytes,
                       os_proc_info_t *out) {
  size_t pos = 0; /* End of the kept arguments. */
  int argc = 0;
  bool truncated = more;
  while (pos < avail) {
    if ((size_t)argc >= max_args || argc == INT_MAX) {
      truncated = true;
      break;
    }
    char *nul = memchr(buf + pos, '\0', avail - pos);
    if (nul != NULL) {
      pos = (size_t)(nul - buf) + 1;
      argc++;
      continue;
    }
    /* The last argument has no NUL within avail bytes. */
    if (!more && avail < max_bytes) {
      buf[avail] = '\0';
      pos = avail + 1;
      argc++;
    } else {
      truncated = true;
      if (avail - 1 > pos) {
        buf[avail - 1] = '\0';
        pos = avail;
        argc++;
      }
    }
    break;
  }
  buf[pos] = '\0';
  char *shrunk = realloc(buf, pos + 1);
  out->args = shrunk != NULL ? shrunk : buf;
  out->args_len = pos;
  out->argc = argc;
  out->args_truncated = truncated;
  out->args_ok = true;
}

/* Fills the args fields from dirfd/cmdline (os_proc_args_keep() says what
 * is kept). At most max_bytes + 1 bytes are read: the extra byte only tells
 * whether the command line is longer than the limit. */
static void read_args(int dirfd, size_t max_args, size_t max_bytes, os_proc_info_t *out) {
  if (max_bytes > ARGS_HARD_MAX)
    max_bytes = ARGS_HARD_MAX;
  char *buf = malloc(max_bytes + 1);
  if (buf == NULL)
    return;
  size_t n;
  /* An empty command line is not an empty argument list: the kernel shows
   * nothing once the process has released its memory (it is exiting or a
   * zombie) and for kernel threads, while every program it started has at
   * least one byte there (an execve() without arguments gets an empty
   * argv[0]). So nothing read means the arguments are unknown. */
  if (read_at(dirfd, "cmdline", buf, max_bytes + 1, &n) < 0 || n == 0) {
    free(buf);
    return;
  }
  bool more = n > max_bytes;
  os_proc_args_keep(buf, more ? max_bytes : n, more, max_args, max_bytes, out);
}

int os_proc_read(int pid, size_t max_args, size_t max_args_bytes, os_proc_info_t *out) {
  memset(out, 0, sizeof(*out));
  if (pid <= 0)
    return YM_EINVAL;
  out->pid = pid;

  char path[32];
  snprintf(path, sizeof(path), "/proc/%d", pid);
  int dirfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return ym_err_from_errno(errno);

  int rc = read_stat(dirfd, "stat", &out->ppid, &out->start_ticks, out->comm, sizeof(out->comm));
  if (rc < 0)
    goto out_close_dir;

  /* status is readable for every live process (zombies included), so a
   * failure here means the process is gone or something is badly wrong. */
  char status[STATUS_BUF_MAX + 1];
  size_t len;
  rc = read_at(dirfd, "status", status, STATUS_BUF_MAX, &len);
  if (rc < 0)
    goto out_close_dir;
  if (len == 0) {
    rc = YM_ENOENT;
    goto out_close_dir;
  }
  status[len] = '\0';
  rc = parse_status_uids(status, &out->uid, &out->euid);
  if (rc < 0)
    goto out_close_dir;

  /* These may fail for kernel threads, zombies (and processes exiting) or
   * lack of permission; the *_ok flags say so. */
  read_exe(dirfd, out);
  read_cwd(dirfd, out);
  read_args(dirfd, max_args, max_args_bytes, out);

out_close_dir:
  close(dirfd);
  if (rc < 0) {
    free(out->args);
    memset(out, 0, sizeof(*out));
  }
  return rc;
}

void os_proc_info_free(os_proc_info_t *info) {
  if (info == NULL)
    return;
  free(info->args);
  info->args = NULL;
  info->args_ok = false;
  info->args_len = 0;
  info->argc = 0;
}

int os_proc_read_stat(int pid, int *ppid, uint64_t *start_ticks) {
  if (pid <= 0)
    return YM_EINVAL;
  char path[40];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  return read_stat(AT_FDCWD, path, ppid, start_ticks, NULL, 0);
}

bool os_proc_runs_file(int pid, const char *path) {
  if (pid <= 0 || path == NULL || path[0] != '/')
    return false;
  char exe[40];
  snprintf(exe, sizeof(exe), "/proc/%d/exe", pid);
  struct stat a, b;
  /* stat() of the exe link reaches the file itself, whatever namespace
   * the process sees it through. */
  if (stat(exe, &a) != 0 || stat(path, &b) != 0)
    return false;
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Returns the pid named by a /proc entry, or 0 when it is not a process. */
static int entry_pid(const char *name) {
  long v = 0;
  if (*name == '\0')
    return 0;
  for (const char *p = name; *p != '\0'; p++) {
    if (*p < '0' || *p > '9')
      return 0;
    v = v * 10 + (*p - '0');
    if (v > INT_MAX)
      return 0;
  }
  return (int)v;
}

int os_proc_list(int (*cb)(int pid, void *data), void *data) {
  DIR *d = opendir("/proc");
  if (d == NULL)
    return ym_err_from_errno(errno);
  int rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    if (e == NULL) {
      if (errno != 0)
        rc = ym_err_from_errno(errno);
      break;
    }
    int pid = entry_pid(e->d_name);
    if (pid <= 0)
      continue;
    rc = cb(pid, data);
    if (rc != 0)
      break;
  }
  closedir(d);
  return rc;
}

long os_clock_ticks(void) {
  long t = sysconf(_SC_CLK_TCK);
  return t > 0 ? t : 100;
}

static int64_t clock_ns(clockid_t id) {
  struct timespec ts;
  if (clock_gettime(id, &ts) != 0)
    return 0;
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Boot time is the wall clock minus the time since boot (CLOCK_BOOTTIME,
 * which counts suspend like /proc's start times do). The boot clock is read
 * on both sides of the wall clock and averaged to halve the skew. */
int64_t os_boot_time_ns(void) {
  int64_t b1 = clock_ns(CLOCK_BOOTTIME);
  int64_t real = clock_ns(CLOCK_REALTIME);
  int64_t b2 = clock_ns(CLOCK_BOOTTIME);
  return real - (b1 + (b2 - b1) / 2);
}

int os_boot_id(char out[40]) {
  char buf[64];
  size_t len;
  out[0] = '\0';
  int rc = read_at(AT_FDCWD, "/proc/sys/kernel/random/boot_id", buf, sizeof(buf) - 1, &len);
  if (rc < 0)
    return rc;
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
    len--;
  if (len != 36)
    return YM_EPARSE;
  memcpy(out, buf, len);
  out[len] = '\0';
  return 0;
}

int os_proc_info_copy(os_proc_info_t *dst, const os_proc_info_t *src) {
  memcpy(dst, src, sizeof(*dst));
  dst->args = NULL;
  if (src->args_ok && src->args != NULL) {
    dst->args = malloc(src->args_len + 1);
    if (dst->args == NULL) {
      dst->args_ok = false;
      return YM_ENOMEM;
    }
    memcpy(dst->args, src->args, src->args_len + 1);
  }
  return 0;
}
