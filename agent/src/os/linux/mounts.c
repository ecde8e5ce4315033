#include "mounts.h"

#include "yamori/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define MOUNTINFO_MAX (16u << 20)

bool mounts_pseudo_fs(const char *type) {
  static const char *const skip[] = {
      "proc",       "sysfs",      "cgroup",    "cgroup2",     "devtmpfs", "devpts",
      "securityfs", "debugfs",    "tracefs",   "pstore",      "bpf",      "mqueue",
      "hugetlbfs",  "configfs",   "fusectl",   "binfmt_misc", "autofs",   "efivarfs",
      "nsfs",       "rpc_pipefs", "selinuxfs", "ramfs",       "rootfs",   NULL};
  for (int i = 0; skip[i] != NULL; i++)
    if (strcmp(type, skip[i]) == 0)
      return true;
  return false;
}

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape_octal(char *s) {
  char *w = s;
  for (char *r = s; *r;) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
        r[3] <= '7') {
      *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
      r += 4;
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
}

int mounts_read(int mnt_fd, mounts_cb cb, void *data) {
  size_t cap = 1 << 16, len = 0;
  char *text = malloc(cap);
  if (text == NULL)
    return YM_ENOMEM;
  for (;;) {
    ssize_t n = pread(mnt_fd, text + len, cap - len - 1, (off_t)len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
    if (len + 1 >= cap) {
      if (cap >= MOUNTINFO_MAX)
        break;
      char *bigger = realloc(text, cap * 2);
      if (bigger == NULL)
        break;
      text = bigger;
      cap *= 2;
    }
  }
  text[len] = '\0';
  /* id parent major:minor root mountpoint opts [optional...] - type source superopts */
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    char *fields[5] = {NULL};
    char *rest = line;
    int nf = 0;
    for (; nf < 5; nf++) {
      char *sp = strchr(rest, ' ');
      if (sp == NULL)
        break;
      *sp = '\0';
      fields[nf] = rest;
      rest = sp + 1;
    }
    if (nf < 5)
      continue;
    char *sep = strstr(rest, " - ");
    if (sep == NULL)
      continue;
    char *fstype = sep + 3;
    char *sp = strchr(fstype, ' ');
    if (sp)
      *sp = '\0';
    unsigned maj, min;
    if (sscanf(fields[2], "%u:%u", &maj, &min) != 2 || mounts_pseudo_fs(fstype))
      continue;
    unescape_octal(fields[4]);
    cb(fields[4], fstype, makedev(maj, min), data);
  }
  free(text);
  return 0;
}
