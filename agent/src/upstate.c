#include "upstate.h"

#include "yamori/err.h"
#include "yamori/json.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_MAX 8192

static void get_str(const cJSON *j, const char *key, char *out, size_t cap) {
  const char *s = ym_json_get_str(j, key);
  snprintf(out, cap, "%s", s && strlen(s) < cap ? s : "");
}

static uint64_t get_u64(const cJSON *j, const char *key) {
  long long v;
  return ym_json_get_int(j, key, &v) && v > 0 ? (uint64_t)v : 0;
}

int upstate_load(const char *dir, upstate_t *st) {
  char path[1100], buf[STATE_MAX];
  memset(st, 0, sizeof(*st));
  snprintf(path, sizeof(path), "%s/state.json", dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return errno == ENOENT ? YM_ENOENT : ym_err_from_errno(errno);
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n < 0)
    return YM_EIO;
  cJSON *j = NULL;
  if (ym_json_parse(buf, (size_t)n, STATE_MAX - 1, &j, NULL) != 0 || !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return YM_EPARSE;
  }
  get_str(j, "active", st->active, sizeof(st->active));
  get_str(j, "previous", st->previous, sizeof(st->previous));
  get_str(j, "pending", st->pending, sizeof(st->pending));
  get_str(j, "failed", st->failed, sizeof(st->failed));
  get_str(j, "reason", st->reason, sizeof(st->reason));
  st->pending_serial = get_u64(j, "pending_serial");
  st->failed_serial = get_u64(j, "failed_serial");
  st->attempts = (unsigned)get_u64(j, "attempts");
  st->trial_started = (int64_t)get_u64(j, "trial_started");
  cJSON_Delete(j);
  return 0;
}

int upstate_save(const char *dir, const upstate_t *st) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "active", st->active);
  cJSON_AddStringToObject(j, "previous", st->previous);
  cJSON_AddStringToObject(j, "pending", st->pending);
  cJSON_AddNumberToObject(j, "pending_serial", (double)st->pending_serial);
  cJSON_AddNumberToObject(j, "attempts", st->attempts);
  cJSON_AddNumberToObject(j, "trial_started", (double)st->trial_started);
  cJSON_AddStringToObject(j, "failed", st->failed);
  cJSON_AddNumberToObject(j, "failed_serial", (double)st->failed_serial);
  cJSON_AddStringToObject(j, "reason", st->reason);
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (text == NULL)
    return YM_ENOMEM;
  char path[1100], tmp[1100];
  snprintf(path, sizeof(path), "%s/state.json", dir);
  /* Per-process temporary name: the launcher and the agent never collide. */
  snprintf(tmp, sizeof(tmp), "%s/.state.json.%ld", dir, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    free(text);
    return ym_err_from_errno(errno);
  }
  size_t n = strlen(text);
  int rc = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0 ? 0 : YM_EIO;
  close(fd);
  free(text);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = ym_err_from_errno(errno);
  if (rc != 0) {
    unlink(tmp);
    return rc;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

int upstate_version_cmp(const char *a, const char *b) {
  while (*a && *b) {
    if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
      char *ea, *eb;
      unsigned long long x = strtoull(a, &ea, 10), y = strtoull(b, &eb, 10);
      if (x != y)
        return x < y ? -1 : 1;
      a = ea;
      b = eb;
      continue;
    }
    if (*a != *b)
      return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
    a++;
    b++;
  }
  return (unsigned char)*a - (unsigned char)*b;
}
