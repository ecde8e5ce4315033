/*
 * Service manager notifications (see notify_sd.h).
 */
#include "notify_sd.h"

#include "yamori/err.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Parses a whole decimal number of at most 19 digits. */
static bool parse_u64(const char *s, uint64_t *out) {
  if (s == NULL || *s == '\0' || strlen(s) > 19)
    return false;
  uint64_t v = 0;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9')
      return false;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return true;
}

int notify_sd_send(const char *state) {
  const char *name = getenv("NOTIFY_SOCKET");
  if (name == NULL || name[0] == '\0')
    return 0;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t n = strlen(name);
  /* A path ('/') or an abstract name ('@', sent with a leading NUL). */
  if ((name[0] != '/' && name[0] != '@') || n < 2 || n > sizeof(sa.sun_path))
    return YM_EINVAL;
  memcpy(sa.sun_path, name, n);
  if (name[0] == '@')
    sa.sun_path[0] = '\0';
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return ym_err_from_errno(errno);
  int rc = 0;
  ssize_t w = sendto(fd, state, strlen(state), MSG_DONTWAIT | MSG_NOSIGNAL,
                     (const struct sockaddr *)&sa, len);
  if (w < 0)
    rc = ym_err_from_errno(errno);
  close(fd);
  return rc;
}

uint64_t notify_sd_watchdog_usec(void) {
  uint64_t usec = 0, pid = 0;
  if (!parse_u64(getenv("WATCHDOG_USEC"), &usec))
    return 0;
  const char *p = getenv("WATCHDOG_PID");
  /* The launcher starts the agent as its child: systemd names the
   * launcher, which is the agent's parent. */
  if (p != NULL &&
      (!parse_u64(p, &pid) || (pid != (uint64_t)getpid() && pid != (uint64_t)getppid())))
    return 0;
  return usec;
}
