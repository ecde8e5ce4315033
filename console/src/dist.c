/*
 * Per-company installers (see dist.h).
 */
#include "dist.h"

#include "yamori/err.h"
#include "yamori/json.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "#!/bin/sh\n# Yamori installer (yamori-installer v1)."
#define CONFIG_BEGIN "\n#yamori-config-v1\n"
#define CONFIG_END "#yamori-config-end\n"
#define HEAD_SCAN 4096 /* the size fields are near the top */

static bool valid_token(const char *t) {
  size_t n = strnlen(t, DIST_TOKEN_MAX + 1);
  if (n > DIST_TOKEN_MAX || n <= 5 || strncmp(t, "ymt1.", 5) != 0)
    return false;
  for (size_t i = 5; i < n; i++) {
    char c = t[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_'))
      return false;
  }
  return true;
}

static bool valid_helpdesk(const char *h) {
  size_t n = strnlen(h, DIST_HELPDESK_MAX + 1);
  if (n > DIST_HELPDESK_MAX || !ym_json_utf8_valid(h, n))
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)h[i] < 0x20 || h[i] == 0x7f)
      return false;
  return true;
}

/* Reads the value of "\nNAME=" followed by exactly ten digits in the first
 * HEAD_SCAN bytes of p. */
static bool size_field(const char *p, size_t len, const char *name, size_t *out) {
  size_t scan = len < HEAD_SCAN ? len : HEAD_SCAN;
  size_t nl = strlen(name);
  for (size_t i = 0; i + 1 + nl + 11 <= scan; i++) {
    if (p[i] != '\n' || memcmp(p + i + 1, name, nl) != 0)
      continue;
    const char *d = p + i + 1 + nl;
    size_t v = 0;
    for (int k = 0; k < 10; k++) {
      if (d[k] < '0' || d[k] > '9')
        return false;
      v = v * 10 + (size_t)(d[k] - '0');
    }
    if (d[10] != '\n')
      return false;
    *out = v;
    return true;
  }
  return false;
}

/* Reads the whole file at path (at most DIST_TEMPLATE_MAX bytes). */
static int read_file(const char *path, char **data, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return errno == ELOOP ? YM_EPERM : ym_err_from_errno(errno);
  struct stat st;
  int rc = 0;
  char *buf = NULL;
  if (fstat(fd, &st) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_close_fd;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = YM_EPARSE;
    goto out_close_fd;
  }
  if ((uint64_t)st.st_size > DIST_TEMPLATE_MAX) {
    rc = YM_ETOOBIG;
    goto out_close_fd;
  }
  size_t cap = (size_t)st.st_size;
  buf = malloc(cap + 1);
  if (buf == NULL) {
    rc = YM_ENOMEM;
    goto out_close_fd;
  }
  size_t got = 0;
  /* Read one byte more than stat said, to notice a file that grew. */
  while (got <= cap) {
    ssize_t r = read(fd, buf + got, cap + 1 - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = ym_err_from_errno(errno);
      goto out_free;
    }
    if (r == 0)
      break;
    got += (size_t)r;
  }
  if (got != cap) {
    rc = YM_ESTALE; /* changed while read */
    goto out_free;
  }
  *data = buf;
  *len = got;
  close(fd);
  return 0;
out_free:
  free(buf);
out_close_fd:
  close(fd);
  return rc;
}

int dist_installer_ex(const char *template_path, const char *token, const char *helpdesk,
                      ym_buf_t *out) {
  if (token == NULL || !valid_token(token))
    return YM_EINVAL;
  if (helpdesk != NULL && helpdesk[0] != '\0' && !valid_helpdesk(helpdesk))
    return YM_EINVAL;
  char *data = NULL;
  size_t len = 0;
  int rc = read_file(template_path, &data, &len);
  if (rc != 0)
    return rc;
  size_t hsize = 0, psize = 0;
  rc = YM_EPARSE;
  if (len < sizeof(MAGIC) - 1 || memcmp(data, MAGIC, sizeof(MAGIC) - 1) != 0 ||
      !size_field(data, len, "YM_HEADER_SIZE=", &hsize) ||
      !size_field(data, len, "YM_PAYLOAD_SIZE=", &psize) || hsize < sizeof(MAGIC) || psize == 0 ||
      hsize > len || psize > len - hsize)
    goto out_free;
  /* What follows the payload may only be an earlier configuration block. */
  size_t rest = len - hsize - psize;
  if (rest > 0 && (rest > DIST_CONFIG_MAX || rest < sizeof(CONFIG_BEGIN) - 1 ||
                   memcmp(data + hsize + psize, CONFIG_BEGIN, sizeof(CONFIG_BEGIN) - 1) != 0))
    goto out_free;
  size_t before = out->len;
  rc = ym_buf_append(out, data, hsize + psize);
  if (rc == 0)
    rc = ym_buf_appendf(out, CONFIG_BEGIN "YAMORI_TOKEN=%s\n", token);
  if (rc == 0 && helpdesk != NULL && helpdesk[0] != '\0')
    rc = ym_buf_appendf(out, "YAMORI_HELPDESK=%s\n", helpdesk);
  if (rc == 0)
    rc = ym_buf_append_str(out, CONFIG_END);
  if (rc != 0) {
    if (out->data != NULL)
      explicit_bzero(out->data + before, out->len - before);
    ym_buf_truncate(out, before);
  }
out_free:
  free(data);
  return rc;
}

int dist_installer(const char *template_path, const char *token, ym_buf_t *out) {
  return dist_installer_ex(template_path, token, NULL, out);
}

void dist_helpdesk_line(const char *in, char *out, size_t cap) {
  if (cap > DIST_HELPDESK_MAX + 1)
    cap = DIST_HELPDESK_MAX + 1;
  size_t o = 0;
  bool sep = false;
  for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p != '\0' && cap > 0;) {
    if (*p == '\n' || *p == '\r') {
      sep = o > 0;
      p++;
      continue;
    }
    /* The length of the UTF-8 sequence at p (1 for a byte to replace). */
    size_t n = 1;
    if (*p >= 0x80) {
      n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc0 ? 2 : 1;
      size_t k = 1;
      while (k < n && p[k] != '\0')
        k++;
      if (k < n || !ym_json_utf8_valid((const char *)p, n))
        n = 0; /* invalid: one '?' for this byte */
    } else if (*p < 0x20 || *p == 0x7f) {
      p++;
      continue;
    }
    size_t need = (sep ? 3 : 0) + (n ? n : 1);
    if (o + need + 1 > cap)
      break;
    if (sep) {
      memcpy(out + o, " / ", 3);
      o += 3;
      sep = false;
    }
    if (n == 0) {
      out[o++] = '?';
      p++;
    } else {
      memcpy(out + o, p, n);
      o += n;
      p += n;
    }
  }
  if (cap > 0)
    out[o] = '\0';
}

int dist_find_template(char *out, size_t cap) {
  const char *env = getenv("YAMORI_INSTALLER");
  if (env != NULL && env[0] != '\0') {
    int n = snprintf(out, cap, "%s", env);
    if (n < 0 || (size_t)n >= cap)
      return YM_ETOOBIG;
    return access(out, R_OK) == 0 ? 0 : YM_ENOENT;
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  const char *cands[3] = {NULL, NULL, "/usr/share/yamori/yamori-installer.run"};
  char a[PATH_MAX + 64], b[PATH_MAX + 64];
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL) {
      *slash = '\0';
      snprintf(a, sizeof(a), "%s/yamori-installer.run", exe);
      snprintf(b, sizeof(b), "%s/../installer/yamori-installer.run", exe);
      cands[0] = a;
      cands[1] = b;
    }
  }
  int rc = YM_ENOENT;
  for (size_t i = 0; i < 3; i++) {
    if (cands[i] == NULL)
      continue;
    int w = snprintf(out, cap, "%s", cands[i]);
    if (w < 0 || (size_t)w >= cap)
      return YM_ETOOBIG;
    if (access(out, R_OK) == 0)
      return 0;
  }
  return rc;
}
