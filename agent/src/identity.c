/*
 * The agent's identity with the console: the enrollment token, the
 * identity file and enrollment (see identity.h).
 */
#include "identity.h"
#include "os.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/version.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN_PREFIX "ymt1."
#define PIN_PREFIX "sha256//"
#define FILE_NAME "identity.json"
#define FILE_MAX (16 * 1024)
#define TOKEN_JSON_MAX 3072

/* ---------------------------------------------------------------- */
/* Small helpers                                                      */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Copies a string that is known to fit. */
static void copy_str(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src);
}

static int b64_value(char c, bool url) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == (url ? '-' : '+'))
    return 62;
  if (c == (url ? '_' : '/'))
    return 63;
  return -1;
}

/* Decodes n characters of unpadded base64 (url: the base64url alphabet)
 * into out (room for n * 3 / 4 bytes). Returns the decoded length, or -1
 * for a character outside the alphabet or an impossible length. */
static long b64_decode(const char *s, size_t n, bool url, uint8_t *out) {
  if (n % 4 == 1)
    return -1;
  uint32_t acc = 0;
  int bits = 0;
  long o = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_value(s[i], url);
    if (v < 0)
      return -1;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  return o;
}

static bool all_b64(const char *s, size_t n, bool url) {
  for (size_t i = 0; i < n; i++)
    if (b64_value(s[i], url) < 0)
      return false;
  return true;
}

static bool is_lower_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return true;
}

/* ---------------------------------------------------------------- */
/* Field validation                                                   */

/* The console's base URL: "https://" host [":" port] [path], where host is
 * a DNS name, an IPv4 address or a bracketed IPv6 address, port 1..65535
 * and path made of URL path characters; no user info, query or fragment.
 * Writes the URL without a trailing '/' to out. */
static bool valid_url(const char *url, char out[IDENTITY_URL_MAX]) {
  static const char https[] = "https://";
  size_t n = strlen(url);
  if (n >= IDENTITY_URL_MAX || strncmp(url, https, sizeof(https) - 1) != 0)
    return false;
  const char *p = url + sizeof(https) - 1;
  const char *host = p;
  if (*p == '[') {
    p++;
    while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F') ||
           *p == ':' || *p == '.')
      p++;
    if (*p != ']' || p == host + 1)
      return false;
    p++;
  } else {
    while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
           *p == '-' || *p == '.')
      p++;
    if (p == host || *host == '.' || *host == '-')
      return false;
  }
  if (*p == ':') {
    p++;
    long port = 0;
    const char *digits = p;
    while (*p >= '0' && *p <= '9' && p - digits < 5)
      port = port * 10 + (*p++ - '0');
    if (p == digits || port < 1 || port > 65535)
      return false;
  }
  if (*p != '\0' && *p != '/')
    return false;
  for (const char *q = p; *q != '\0'; q++) {
    char c = *q;
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              strchr("/-._~%!$&'()*+,;=:@", c) != NULL;
    if (!ok)
      return false;
  }
  while (n > 0 && url[n - 1] == '/')
    n--;
  memcpy(out, url, n);
  out[n] = '\0';
  return true;
}

/* "sha256//" + the base64 (with its one '=' of padding) of 32 bytes. */
static bool valid_pin(const char *pin) {
  size_t pl = sizeof(PIN_PREFIX) - 1;
  if (strlen(pin) != IDENTITY_PIN_LEN || strncmp(pin, PIN_PREFIX, pl) != 0)
    return false;
  const char *b = pin + pl;
  uint8_t raw[33];
  return b[43] == '=' && b64_decode(b, 43, false, raw) == 32;
}

/* 16 lower-case hex characters, '.', 43 base64url characters. */
static bool valid_tok(const char *tok) {
  return strlen(tok) == IDENTITY_TOK_LEN && is_lower_hex(tok, 16) && tok[16] == '.' &&
         all_b64(tok + 17, 43, true);
}

static bool valid_secret(const char *s) {
  return strlen(s) == IDENTITY_SECRET_LEN && all_b64(s, IDENTITY_SECRET_LEN, true);
}

/* An agent id is a UUID; any id made of letters, digits and '-' (it goes
 * into an HTTP header and a JSON string unescaped) is accepted. */
static bool valid_agent_id(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= IDENTITY_AGENT_ID_MAX)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'))
      return false;
  }
  return true;
}

/* A tenant name is shown to people: valid UTF-8 without control
 * characters, bounded. */
static bool valid_tenant(const char *s) {
  size_t n = strlen(s);
  if (n >= IDENTITY_TENANT_MAX || !ym_json_utf8_valid(s, n))
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
      return false;
  return true;
}

static unsigned clamp_checkin(long long v) {
  if (v < IDENTITY_CHECKIN_MIN)
    return IDENTITY_CHECKIN_MIN;
  if (v > IDENTITY_CHECKIN_MAX)
    return IDENTITY_CHECKIN_MAX;
  return (unsigned)v;
}

/* ---------------------------------------------------------------- */
/* Enrollment token                                                   */

int identity_parse_token(const char *token, identity_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  size_t pl = sizeof(TOKEN_PREFIX) - 1;
  if (token == NULL || token[0] == '\0') {
    set_err(err, errlen, "the enrollment token is empty");
    return YM_EINVAL;
  }
  size_t n = strnlen(token, IDENTITY_TOKEN_MAX + 1);
  if (n > IDENTITY_TOKEN_MAX) {
    set_err(err, errlen, "the enrollment token is too long (at most %d characters)",
            IDENTITY_TOKEN_MAX);
    return YM_ETOOBIG;
  }
  if (n < pl || strncmp(token, TOKEN_PREFIX, pl) != 0) {
    set_err(err, errlen, "the enrollment token does not start with \"ymt1.\" (is it complete?)");
    return YM_EPARSE;
  }
  uint8_t raw[IDENTITY_TOKEN_MAX];
  long rl = b64_decode(token + pl, n - pl, true, raw);
  if (rl <= 0) {
    set_err(err, errlen,
            "the enrollment token is not valid base64url (was it cut or changed when copied?)");
    return YM_EPARSE;
  }
  cJSON *j = NULL;
  int rc = ym_json_parse((const char *)raw, (size_t)rl, TOKEN_JSON_MAX, &j, NULL);
  if (rc != 0 || !cJSON_IsObject(j)) {
    set_err(err, errlen, "the enrollment token does not contain a JSON object");
    rc = YM_EPARSE;
    goto out;
  }
  rc = YM_EPARSE;
  const char *url = ym_json_get_str(j, "url");
  const char *pin = ym_json_get_str(j, "pin");
  const char *tok = ym_json_get_str(j, "tok");
  if (url == NULL || pin == NULL || tok == NULL) {
    set_err(err, errlen, "the enrollment token lacks the %s",
            url == NULL   ? "console URL (url)"
            : pin == NULL ? "certificate pin (pin)"
                          : "token itself (tok)");
    goto out;
  }
  if (cJSON_GetArraySize(j) != 3) {
    set_err(err, errlen, "the enrollment token has fields other than url, pin and tok");
    goto out;
  }
  if (strncmp(url, "https://", 8) != 0) {
    set_err(err, errlen, "the console URL in the enrollment token does not start with https://");
    goto out;
  }
  if (!valid_url(url, out->url)) {
    set_err(err, errlen, "the console URL in the enrollment token is malformed");
    goto out;
  }
  if (!valid_pin(pin)) {
    set_err(err, errlen,
            "the certificate pin in the enrollment token is malformed (expected \"sha256//\" "
            "and 44 base64 characters)");
    goto out;
  }
  if (!valid_tok(tok)) {
    set_err(err, errlen,
            "the token part (tok) of the enrollment token is malformed (expected 16 hex "
            "characters, '.', 43 base64url characters)");
    goto out;
  }
  copy_str(out->pin, sizeof(out->pin), pin);
  copy_str(out->tok, sizeof(out->tok), tok);
  rc = 0;
out:
  if (j != NULL) {
    /* The decoded text and the parsed tree hold the token's secret. */
    const char *t = ym_json_get_str(j, "tok");
    if (t != NULL)
      explicit_bzero((char *)t, strlen(t));
    cJSON_Delete(j);
  }
  explicit_bzero(raw, sizeof(raw));
  if (rc != 0)
    identity_wipe(out);
  return rc;
}

/* ---------------------------------------------------------------- */
/* Identity file                                                      */

static int file_path(char *out, size_t cap, const char *state_dir, const char *name) {
  int n = snprintf(out, cap, "%s/%s", state_dir, name);
  return n > 0 && (size_t)n < cap ? 0 : YM_ETOOBIG;
}

/* Fills id from the parsed identity file; returns false when a field is
 * missing or malformed, with its name in *bad. */
static bool from_json(const cJSON *j, identity_t *id, const char **bad) {
  const char *url = ym_json_get_str(j, "url");
  const char *pin = ym_json_get_str(j, "pin");
  const char *agent_id = ym_json_get_str(j, "agent_id");
  const char *secret = ym_json_get_str(j, "secret");
  const char *tenant = ym_json_get_str(j, "tenant");
  const char *tok = ym_json_get_str(j, "tok");
  long long checkin = 0;
  if (url == NULL || !valid_url(url, id->url))
    *bad = "url";
  else if (pin == NULL || !valid_pin(pin))
    *bad = "pin";
  else if (agent_id == NULL || !valid_agent_id(agent_id))
    *bad = "agent_id";
  else if (secret == NULL || !valid_secret(secret))
    *bad = "secret";
  else if (tenant == NULL || !valid_tenant(tenant))
    *bad = "tenant";
  else if (tok != NULL && tok[0] != '\0' && !valid_tok(tok))
    *bad = "tok";
  else if (cJSON_GetObjectItemCaseSensitive(j, "checkin_s") != NULL &&
           !ym_json_get_int(j, "checkin_s", &checkin))
    *bad = "checkin_s";
  else
    *bad = NULL;
  if (*bad != NULL)
    return false;
  copy_str(id->pin, sizeof(id->pin), pin);
  copy_str(id->agent_id, sizeof(id->agent_id), agent_id);
  copy_str(id->secret, sizeof(id->secret), secret);
  copy_str(id->tenant, sizeof(id->tenant), tenant);
  copy_str(id->tok, sizeof(id->tok), tok != NULL ? tok : "");
  id->checkin_s = checkin != 0 ? clamp_checkin(checkin) : 0;
  return true;
}

int identity_load(const char *state_dir, identity_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  char path[PATH_MAX];
  int rc = file_path(path, sizeof(path), state_dir, FILE_NAME);
  if (rc != 0) {
    set_err(err, errlen, "the state directory's path is too long");
    return rc;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT)
      return YM_ENOENT;
    if (e == ELOOP) {
      set_err(err, errlen, "%s is a symbolic link; refused", path);
      return YM_EPERM;
    }
    set_err(err, errlen, "cannot open %s: %s", path, strerror(e));
    return ym_err_from_errno(e);
  }
  struct stat st;
  char *buf = NULL;
  cJSON *j = NULL;
  if (fstat(fd, &st) != 0) {
    rc = ym_err_from_errno(errno);
    set_err(err, errlen, "cannot stat %s: %s", path, strerror(errno));
    goto out_close_fd;
  }
  rc = YM_EPERM;
  if (!S_ISREG(st.st_mode)) {
    set_err(err, errlen, "%s is not a regular file; refused", path);
    goto out_close_fd;
  }
  if (st.st_uid != geteuid()) {
    set_err(err, errlen, "%s is owned by uid %u, not by uid %u; refused", path, (unsigned)st.st_uid,
            (unsigned)geteuid());
    goto out_close_fd;
  }
  if ((st.st_mode & 07777) != 0600) {
    set_err(err, errlen, "%s has mode %04o, not 0600; refused (others may have read the secret)",
            path, (unsigned)(st.st_mode & 07777));
    goto out_close_fd;
  }
  if (st.st_size > FILE_MAX) {
    rc = YM_ETOOBIG;
    set_err(err, errlen, "%s is larger than %d bytes", path, FILE_MAX);
    goto out_close_fd;
  }
  buf = malloc(FILE_MAX + 1);
  if (buf == NULL) {
    rc = YM_ENOMEM;
    set_err(err, errlen, "out of memory");
    goto out_close_fd;
  }
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, buf + len, FILE_MAX + 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = ym_err_from_errno(errno);
      set_err(err, errlen, "cannot read %s: %s", path, strerror(errno));
      goto out_free_buf;
    }
    if (r == 0 || (len += (size_t)r) > FILE_MAX)
      break;
  }
  if (len > FILE_MAX) {
    rc = YM_ETOOBIG;
    set_err(err, errlen, "%s is larger than %d bytes", path, FILE_MAX);
    goto out_free_buf;
  }
  rc = ym_json_parse(buf, len, FILE_MAX, &j, NULL);
  if (rc != 0 || !cJSON_IsObject(j)) {
    rc = YM_EPARSE;
    set_err(err, errlen, "%s is not a JSON object", path);
    goto out_free_json;
  }
  const char *bad = NULL;
  if (!from_json(j, out, &bad)) {
    rc = YM_EPARSE;
    set_err(err, errlen, "%s: the field \"%s\" is missing or malformed", path, bad);
    identity_wipe(out);
    goto out_free_json;
  }
  rc = 0;
out_free_json:
  if (j != NULL) {
    const char *s = ym_json_get_str(j, "secret");
    if (s != NULL)
      explicit_bzero((char *)s, strlen(s));
    s = ym_json_get_str(j, "tok");
    if (s != NULL)
      explicit_bzero((char *)s, strlen(s));
    cJSON_Delete(j);
  }
out_free_buf:
  explicit_bzero(buf, FILE_MAX + 1);
  free(buf);
out_close_fd:
  close(fd);
  return rc;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return ym_err_from_errno(errno);
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int identity_save(const char *state_dir, const identity_t *id) {
  if (!valid_agent_id(id->agent_id) || !valid_secret(id->secret))
    return YM_EINVAL;
  if (mkdir(state_dir, 0700) != 0 && errno != EEXIST)
    return ym_err_from_errno(errno);
  char path[PATH_MAX], tmp[PATH_MAX];
  int rc = file_path(path, sizeof(path), state_dir, FILE_NAME);
  if (rc == 0)
    rc = file_path(tmp, sizeof(tmp), state_dir, ".identity.json.XXXXXX");
  if (rc != 0)
    return rc;

  cJSON *j = cJSON_CreateObject();
  if (j == NULL)
    return YM_ENOMEM;
  cJSON_AddStringToObject(j, "url", id->url);
  cJSON_AddStringToObject(j, "pin", id->pin);
  cJSON_AddStringToObject(j, "agent_id", id->agent_id);
  cJSON_AddStringToObject(j, "secret", id->secret);
  cJSON_AddStringToObject(j, "tenant", id->tenant);
  if (id->tok[0] != '\0')
    cJSON_AddStringToObject(j, "tok", id->tok);
  if (id->checkin_s != 0)
    cJSON_AddNumberToObject(j, "checkin_s", id->checkin_s);
  char *text = cJSON_Print(j);
  cJSON_Delete(j);
  if (text == NULL)
    return YM_ENOMEM;
  size_t tlen = strlen(text);

  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    rc = ym_err_from_errno(errno);
    goto out_free_text;
  }
  if (fchmod(fd, 0600) != 0 || (rc = write_all(fd, text, tlen)) != 0 ||
      (rc = write_all(fd, "\n", 1)) != 0 || fsync(fd) != 0) {
    rc = rc != 0 ? rc : ym_err_from_errno(errno);
    close(fd);
    unlink(tmp);
    goto out_free_text;
  }
  if (close(fd) != 0 || rename(tmp, path) != 0) {
    rc = ym_err_from_errno(errno);
    unlink(tmp);
    goto out_free_text;
  }
  /* Make the rename itself durable. */
  int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
out_free_text:
  explicit_bzero(text, tlen);
  free(text);
  return rc;
}

/* ---------------------------------------------------------------- */
/* Enrollment                                                         */

int identity_enroll_body(const identity_t *id, ym_buf_t *out) {
  if (!valid_tok(id->tok))
    return YM_EINVAL;
  os_host_t *h = malloc(sizeof(*h));
  if (h == NULL)
    return YM_ENOMEM;
  os_host_facts(h);
  /* Host facts are bytes from this machine: written escaped. */
  int rc = YM_ENOMEM;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "token", id->tok);
  cJSON *host = cJSON_AddObjectToObject(j, "host");
  cJSON *os = NULL, *ips = NULL, *agent = NULL;
  if (host != NULL) {
    ym_json_add_bytes(host, "name", h->hostname, strlen(h->hostname));
    ym_json_add_bytes(host, "id", h->machine_id, strlen(h->machine_id));
    os = cJSON_AddObjectToObject(host, "os");
  }
  if (os != NULL) {
    ym_json_add_bytes(os, "name", h->os_name, strlen(h->os_name));
    ym_json_add_bytes(os, "version", h->os_version, strlen(h->os_version));
    ym_json_add_bytes(os, "kernel", h->kernel, strlen(h->kernel));
    ym_json_add_bytes(os, "platform", h->os_platform, strlen(h->os_platform));
    ym_json_add_bytes(host, "architecture", h->architecture, strlen(h->architecture));
    ips = cJSON_AddArrayToObject(host, "ip");
  }
  if (ips != NULL)
    agent = cJSON_AddObjectToObject(j, "agent");
  /* Every member must be there; a missing one means an allocation
   * failed. */
  if (agent == NULL || cJSON_AddStringToObject(agent, "version", ym_version()) == NULL ||
      cJSON_GetArraySize(j) != 3 || cJSON_GetArraySize(host) != 5 || cJSON_GetArraySize(os) != 4)
    goto out;
  for (size_t i = 0; i < h->n_ips && i < 16; i++) {
    cJSON *ip = cJSON_CreateString(h->ips[i]);
    if (ip == NULL || !cJSON_AddItemToArray(ips, ip)) {
      cJSON_Delete(ip);
      goto out;
    }
  }
  char *text = cJSON_PrintUnformatted(j);
  if (text == NULL)
    goto out;
  size_t tlen = strlen(text);
  rc = ym_buf_append(out, text, tlen);
  explicit_bzero(text, tlen);
  free(text);
out:
  if (j != NULL) {
    const char *t = ym_json_get_str(j, "token");
    if (t != NULL)
      explicit_bzero((char *)t, strlen(t));
  }
  cJSON_Delete(j);
  free(h);
  return rc;
}

/* Copies the console's "message" for a person to read: printable ASCII
 * only (it is shown on a terminal), bounded. */
static void console_message(const cJSON *j, char *out, size_t cap) {
  out[0] = '\0';
  const char *m = ym_json_get_str(j, "message");
  if (m == NULL || cap < 4)
    return;
  size_t o = 0;
  memcpy(out, ": ", 2);
  o = 2;
  for (; *m != '\0' && o + 1 < cap && o < 200; m++)
    out[o++] = (*m >= 0x20 && *m < 0x7f) ? *m : '?';
  out[o] = '\0';
}

int identity_enroll_reply(identity_t *id, long status, const char *body, size_t len, char *err,
                          size_t errlen) {
  cJSON *j = NULL;
  if (len > 0)
    ym_json_parse(body, len, IDENTITY_REPLY_MAX, &j, NULL);
  const char *code = cJSON_IsObject(j) ? ym_json_get_str(j, "error") : NULL;
  char msg[208];
  console_message(j, msg, sizeof(msg));
  int rc;
  if (status == 200) {
    const char *agent_id = ym_json_get_str(j, "agent_id");
    const char *secret = ym_json_get_str(j, "secret");
    const char *tenant = ym_json_get_str(j, "tenant");
    long long checkin = IDENTITY_CHECKIN_DEFAULT;
    if (cJSON_GetObjectItemCaseSensitive(j, "checkin_s") != NULL &&
        !ym_json_get_int(j, "checkin_s", &checkin))
      checkin = -1;
    if (agent_id == NULL || !valid_agent_id(agent_id) || secret == NULL || !valid_secret(secret) ||
        tenant == NULL || !valid_tenant(tenant) || checkin < 0) {
      set_err(err, errlen,
              "the console's answer to the enrollment is malformed (agent_id, secret, tenant "
              "or checkin_s missing or invalid)");
      rc = YM_EPARSE;
    } else {
      copy_str(id->agent_id, sizeof(id->agent_id), agent_id);
      copy_str(id->secret, sizeof(id->secret), secret);
      copy_str(id->tenant, sizeof(id->tenant), tenant);
      id->checkin_s = clamp_checkin(checkin);
      rc = 0;
    }
    if (secret != NULL)
      explicit_bzero((char *)secret, strlen(secret));
  } else if (status == 401 || status == 403) {
    rc = YM_EPERM;
    if (code != NULL && strcmp(code, "token_invalid") == 0)
      set_err(err, errlen,
              "the console does not accept this enrollment token (token_invalid): check that "
              "it was copied completely, or create a new one");
    else if (code != NULL && strcmp(code, "token_expired") == 0)
      set_err(err, errlen,
              "the enrollment token has expired (token_expired): create a new one on the "
              "console");
    else if (code != NULL && strcmp(code, "token_revoked") == 0)
      set_err(err, errlen,
              "the enrollment token was revoked on the console (token_revoked): ask for a new "
              "one");
    else if (code != NULL && strcmp(code, "token_exhausted") == 0)
      set_err(err, errlen,
              "the enrollment token has been used as many times as it allows "
              "(token_exhausted): create a new one on the console");
    else
      set_err(err, errlen, "the console refused the enrollment (HTTP %ld)%s", status, msg);
  } else if (status == 429 || status == 503) {
    rc = YM_EAGAIN;
    set_err(err, errlen, "the console is busy (HTTP %ld); try again in a minute", status);
  } else if (status >= 300 && status < 400) {
    rc = YM_EIO;
    set_err(err, errlen,
            "the console answered with a redirect (HTTP %ld), which is refused: check the "
            "console URL",
            status);
  } else if (status == 400) {
    rc = YM_EIO;
    set_err(err, errlen, "the console refused the enrollment request as malformed (HTTP 400)%s",
            msg);
  } else {
    rc = YM_EIO;
    set_err(err, errlen, "the console answered the enrollment with HTTP %ld%s", status, msg);
  }
  cJSON_Delete(j);
  return rc;
}

int identity_curl_setup(CURL *e, const identity_t *id, long total_s) {
  char ua[64];
  snprintf(ua, sizeof(ua), "yamori-agent/%s", ym_version());
  CURLcode c = CURLE_OK;
#define SET(opt, val)                                                                              \
  do {                                                                                             \
    if (c == CURLE_OK)                                                                             \
      c = curl_easy_setopt(e, opt, val);                                                           \
  } while (0)
  SET(CURLOPT_PROTOCOLS_STR, "https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  /* Trust is the pin alone: the console's certificate comes from its own
   * private CA, so CA and host name checks would only refuse it. */
  SET(CURLOPT_PINNEDPUBLICKEY, id->pin);
  SET(CURLOPT_SSL_VERIFYPEER, 0L);
  SET(CURLOPT_SSL_VERIFYHOST, 0L);
  SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
  SET(CURLOPT_CONNECTTIMEOUT, 10L);
  SET(CURLOPT_TIMEOUT, total_s);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_TCP_KEEPIDLE, 60L);
  SET(CURLOPT_TCP_KEEPINTVL, 30L);
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)IDENTITY_REPLY_MAX);
  SET(CURLOPT_USERAGENT, ua);
#undef SET
  if (c == CURLE_UNKNOWN_OPTION || c == CURLE_NOT_BUILT_IN)
    return YM_ENOTSUP;
  return c == CURLE_OK ? 0 : YM_EINVAL;
}

int identity_curl_error(CURLcode rc, const char *url, char *err, size_t errlen) {
  switch (rc) {
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    set_err(err, errlen,
            "the console's certificate does not match the pin in the token (TLS interception?)");
    return YM_ECRYPTO;
  case CURLE_COULDNT_RESOLVE_HOST:
    set_err(err, errlen,
            "cannot find the console's address: the host name in %s does not "
            "resolve (DNS)",
            url);
    return YM_ENOENT;
  case CURLE_COULDNT_RESOLVE_PROXY:
    set_err(err, errlen, "cannot resolve the proxy's host name (check https_proxy)");
    return YM_ENOENT;
  case CURLE_COULDNT_CONNECT:
    set_err(err, errlen,
            "cannot connect to the console at %s (connection refused or no route: is the "
            "console running and its port open?)",
            url);
    return YM_EIO;
  case CURLE_OPERATION_TIMEDOUT:
    set_err(err, errlen, "the console at %s did not answer in time (timeout)", url);
    return YM_ETIMEDOUT;
  case CURLE_WRITE_ERROR:
  case CURLE_FILESIZE_EXCEEDED:
    set_err(err, errlen, "the console's answer is larger than %d KiB; refused",
            IDENTITY_REPLY_MAX / 1024);
    return YM_ETOOBIG;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_INVALIDCERTSTATUS:
    set_err(err, errlen,
            "the TLS handshake with the console at %s failed (%s): is it the console's "
            "address and port?",
            url, curl_easy_strerror(rc));
    return YM_ECRYPTO;
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_PARTIAL_FILE:
    set_err(err, errlen, "the connection to the console at %s broke (%s)", url,
            curl_easy_strerror(rc));
    return YM_EIO;
  default:
    set_err(err, errlen, "cannot reach the console at %s: %s", url, curl_easy_strerror(rc));
    return YM_EIO;
  }
}

int identity_auth_header(const identity_t *id, ym_buf_t *out) {
  if (!valid_agent_id(id->agent_id) || !valid_secret(id->secret))
    return YM_EINVAL;
  return ym_buf_appendf(out, "Authorization: Bearer %s.%s", id->agent_id, id->secret);
}

bool identity_same(const identity_t *a, const identity_t *b) {
  return strcmp(a->agent_id, b->agent_id) == 0 && strcmp(a->secret, b->secret) == 0 &&
         strcmp(a->url, b->url) == 0 && strcmp(a->pin, b->pin) == 0;
}

void identity_wipe(identity_t *id) {
  explicit_bzero(id->secret, sizeof(id->secret));
  explicit_bzero(id->tok, sizeof(id->tok));
}

/* Collects the answer of a synchronous enrollment, bounded. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *data) {
  ym_buf_t *b = data;
  size_t n = size * nmemb;
  return ym_buf_append(b, p, n) == 0 ? n : 0;
}

/* An identity already in state_dir for the same console (URL and pin)
 * goes along with an enrollment as the proof that keeps it
 * (docs/protocol.md): a repair or a new token does not make a second
 * record of this PC. Appends the Authorization line to *hdrs when there
 * is one. Returns 0 or YM_ENOMEM. */
static int proof_header(const char *state_dir, const identity_t *id, struct curl_slist **hdrs) {
  identity_t old;
  ym_buf_t line;
  int rc = 0;
  memset(&old, 0, sizeof(old));
  ym_buf_init(&line, 256);
  if (identity_load(state_dir, &old, NULL, 0) == 0 && strcmp(old.url, id->url) == 0 &&
      strcmp(old.pin, id->pin) == 0 && identity_auth_header(&old, &line) == 0) {
    struct curl_slist *n = curl_slist_append(*hdrs, line.data);
    if (n != NULL)
      *hdrs = n;
    else
      rc = YM_ENOMEM;
  }
  if (line.data != NULL)
    explicit_bzero(line.data, line.len);
  ym_buf_free(&line);
  identity_wipe(&old);
  return rc;
}

int identity_enroll(const char *token, const char *state_dir, identity_t *out, char *err,
                    size_t errlen) {
  identity_t id;
  int rc = identity_parse_token(token, &id, err, errlen);
  if (rc != 0)
    return rc;
  ym_buf_t body, reply, url;
  ym_buf_init(&body, 64 * 1024);
  ym_buf_init(&reply, IDENTITY_REPLY_MAX);
  ym_buf_init(&url, IDENTITY_URL_MAX + 64);
  struct curl_slist *hdrs = NULL;
  CURL *e = NULL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    set_err(err, errlen, "cannot initialize libcurl");
    rc = YM_ENOMEM;
    goto out_free;
  }
  rc = identity_enroll_body(&id, &body);
  if (rc == 0)
    rc = ym_buf_appendf(&url, "%s/api/v1/enroll", id.url);
  if (rc != 0) {
    set_err(err, errlen, "cannot build the enrollment request: %s", ym_strerror(rc));
    goto out_global;
  }
  e = curl_easy_init();
  struct curl_slist *h1 = curl_slist_append(NULL, "Content-Type: application/json");
  struct curl_slist *h2 = h1 ? curl_slist_append(h1, "Expect:") : NULL;
  hdrs = h2 ? h2 : h1;
  if (e == NULL || h2 == NULL) {
    set_err(err, errlen, "out of memory");
    rc = YM_ENOMEM;
    goto out_easy;
  }
  rc = proof_header(state_dir, &id, &hdrs);
  if (rc != 0) {
    set_err(err, errlen, "out of memory");
    goto out_easy;
  }
  rc = identity_curl_setup(e, &id, 30);
  if (rc != 0) {
    set_err(err, errlen, "this libcurl lacks an option the agent needs: %s", ym_strerror(rc));
    goto out_easy;
  }
  curl_easy_setopt(e, CURLOPT_URL, url.data);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &reply);
  CURLcode c = curl_easy_perform(e);
  if (c != CURLE_OK) {
    rc = identity_curl_error(c, id.url, err, errlen);
    goto out_easy;
  }
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  rc = identity_enroll_reply(&id, status, reply.data, reply.len, err, errlen);
  if (rc != 0)
    goto out_easy;
  rc = identity_save(state_dir, &id);
  if (rc != 0) {
    set_err(err, errlen,
            "enrolled, but cannot write %s/" FILE_NAME " (%s): enroll again once this is fixed",
            state_dir, ym_strerror(rc));
    goto out_easy;
  }
  *out = id;
out_easy:
  /* A header line may hold the old secret. */
  for (struct curl_slist *p = hdrs; p != NULL; p = p->next)
    explicit_bzero(p->data, strlen(p->data));
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(e);
out_global:
  curl_global_cleanup();
out_free:
  /* The request holds the token, the answer the new secret. */
  if (body.data != NULL)
    explicit_bzero(body.data, body.len);
  if (reply.data != NULL)
    explicit_bzero(reply.data, reply.len);
  ym_buf_free(&body);
  ym_buf_free(&reply);
  ym_buf_free(&url);
  identity_wipe(&id);
  return rc;
}
