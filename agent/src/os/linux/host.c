/*
 * Host facts on Linux: uname, /etc/machine-id, /etc/os-release and the
 * interface addresses. Read once at start and on reload, never per event.
 */
#include "os.h"

#include "yamori/err.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

/* Reads up to cap-1 bytes of a small file into buf; returns the length or
 * -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0)
    return -1;
  buf[n] = '\0';
  return n;
}

static void copy_field(char *dst, size_t cap, const char *src, size_t n) {
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* Finds KEY=value in os-release text; strips one level of quotes. */
static void os_release_value(const char *text, const char *key, char *dst, size_t cap) {
  size_t kl = strlen(key);
  for (const char *line = text; line && *line;
       line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
    if (strncmp(line, key, kl) != 0 || line[kl] != '=')
      continue;
    const char *v = line + kl + 1;
    size_t n = strcspn(v, "\n");
    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
      v++;
      n -= 2;
    }
    copy_field(dst, cap, v, n);
    return;
  }
}

int os_host_facts(os_host_t *h) {
  memset(h, 0, sizeof(*h));
  struct utsname u;
  if (uname(&u) == 0) {
    copy_field(h->hostname, sizeof(h->hostname), u.nodename, strlen(u.nodename));
    copy_field(h->architecture, sizeof(h->architecture), u.machine, strlen(u.machine));
    copy_field(h->kernel, sizeof(h->kernel), u.release, strlen(u.release));
  }
  snprintf(h->os_type, sizeof(h->os_type), "linux");

  char buf[4096];
  if (read_small("/etc/machine-id", buf, sizeof(buf)) > 0)
    copy_field(h->machine_id, sizeof(h->machine_id), buf, strcspn(buf, "\n"));

  if (read_small("/etc/os-release", buf, sizeof(buf)) > 0 ||
      read_small("/usr/lib/os-release", buf, sizeof(buf)) > 0) {
    os_release_value(buf, "ID", h->os_platform, sizeof(h->os_platform));
    os_release_value(buf, "NAME", h->os_name, sizeof(h->os_name));
    os_release_value(buf, "VERSION_ID", h->os_version, sizeof(h->os_version));
    char like[128] = "";
    os_release_value(buf, "ID_LIKE", like, sizeof(like));
    const char *fam = like[0] ? like : h->os_platform;
    copy_field(h->os_family, sizeof(h->os_family), fam, strcspn(fam, " "));
  }

  struct ifaddrs *ifs;
  if (getifaddrs(&ifs) == 0) {
    for (struct ifaddrs *i = ifs; i != NULL && h->n_ips < 16; i = i->ifa_next) {
      if (i->ifa_addr == NULL || (i->ifa_flags & IFF_LOOPBACK))
        continue;
      const void *a = NULL;
      int fam = i->ifa_addr->sa_family;
      if (fam == AF_INET)
        a = &((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr;
      else if (fam == AF_INET6)
        a = &((const struct sockaddr_in6 *)(const void *)i->ifa_addr)->sin6_addr;
      if (a != NULL && inet_ntop(fam, a, h->ips[h->n_ips], sizeof(h->ips[0])) != NULL)
        h->n_ips++;
    }
    freeifaddrs(ifs);
  }
  return 0;
}
