#include "yamori/manifest.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/sha256.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define MANIFEST_MAX (16 * 1024)

bool ym_manifest_version_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= 64 || s[0] == '.' || s[0] == '-')
    return false;
  return strspn(s, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._+-") == n;
}

int64_t ym_manifest_time(const char *s) {
  struct tm tm = {0};
  if (s == NULL || strlen(s) != 20)
    return -1;
  const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (end == NULL || *end != '\0')
    return -1;
  return (int64_t)timegm(&tm);
}

/* A company scope: "*" (every company) or a tenant name as the console
 * makes them (1 to 63 of [a-z0-9._-], starting with a letter or digit). */
static bool tenant_ok(const char *s) {
  size_t n = strlen(s);
  if (strcmp(s, YM_MANIFEST_TENANT_ALL) == 0)
    return true;
  if (n == 0 || n > 63)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
      return false;
  }
  return true;
}

static bool get_word(const cJSON *j, const char *key, char *out, size_t cap, bool required) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  if (v == NULL)
    return !required;
  if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
    return false;
  snprintf(out, cap, "%s", v->valuestring);
  return true;
}

static bool get_u64(const cJSON *j, const char *key, uint64_t *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  /* Exact integers only (doubles hold 2^53 exactly). */
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
      (double)(uint64_t)v->valuedouble != v->valuedouble)
    return false;
  *out = (uint64_t)v->valuedouble;
  return true;
}

static int unhex(const char *s, uint8_t *out, size_t n) {
  if (strlen(s) != 2 * n)
    return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned v = 0;
    for (int k = 0; k < 2; k++) {
      char c = s[2 * i + (size_t)k];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= (unsigned)(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= (unsigned)(c - 'a' + 10);
      else
        return -1;
    }
    out[i] = (uint8_t)v;
  }
  return 0;
}

int ym_manifest_parse(const char *text, size_t len, ym_manifest_t *m, const char **reason) {
  cJSON *j = NULL;
  memset(m, 0, sizeof(*m));
  *reason = "bad_manifest";
  if (ym_json_parse(text, len, MANIFEST_MAX, &j, NULL) != 0)
    return YM_EPARSE;
  int rc = YM_EPARSE;
  char sha[80] = "", expires[32] = "";
  if (!cJSON_IsObject(j) || !get_word(j, "product", m->product, sizeof(m->product), true) ||
      !get_word(j, "platform", m->platform, sizeof(m->platform), true) ||
      !get_word(j, "architecture", m->arch, sizeof(m->arch), true) ||
      !get_word(j, "version", m->version, sizeof(m->version), true) ||
      !get_word(j, "channel", m->channel, sizeof(m->channel), false) ||
      !get_word(j, "scope", m->scope, sizeof(m->scope), false) ||
      !get_word(j, "tenant", m->tenant, sizeof(m->tenant), false) ||
      !get_word(j, "sha256", sha, sizeof(sha), true) ||
      !get_word(j, "url", m->url, sizeof(m->url), true) ||
      !get_word(j, "expires", expires, sizeof(expires), true) ||
      !get_u64(j, "serial", &m->serial) || !get_u64(j, "size", &m->size))
    goto out;
  if (!ym_manifest_version_ok(m->version) || m->serial == 0 || m->size == 0 ||
      (cJSON_GetObjectItemCaseSensitive(j, "tenant") != NULL && !tenant_ok(m->tenant)) ||
      unhex(sha, m->sha256, sizeof(m->sha256)) != 0 || (m->expires = ym_manifest_time(expires)) < 0)
    goto out;
  /* The package comes from the console the agent already talks to: a path
   * only, under the API, with no dot segments or query. */
  if (strncmp(m->url, "/api/v1/", 8) != 0 || strstr(m->url, "..") != NULL ||
      strspn(m->url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+-") !=
          strlen(m->url))
    goto out;
  if (m->channel[0] == '\0')
    snprintf(m->channel, sizeof(m->channel), "stable");
  rc = 0;
  *reason = NULL;
out:
  cJSON_Delete(j);
  return rc;
}

int ym_manifest_write(const ym_manifest_t *m, ym_buf_t *out) {
  char sha[YM_SHA256_HEX_LEN + 1], exp[32];
  struct tm tm;
  time_t t = (time_t)m->expires;
  ym_hex(m->sha256, sizeof(m->sha256), sha);
  gmtime_r(&t, &tm);
  strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "product", m->product);
  cJSON_AddStringToObject(j, "platform", m->platform);
  cJSON_AddStringToObject(j, "architecture", m->arch);
  cJSON_AddStringToObject(j, "version", m->version);
  cJSON_AddNumberToObject(j, "serial", (double)m->serial);
  cJSON_AddStringToObject(j, "channel", m->channel);
  if (m->scope[0])
    cJSON_AddStringToObject(j, "scope", m->scope);
  if (m->tenant[0])
    cJSON_AddStringToObject(j, "tenant", m->tenant);
  cJSON_AddNumberToObject(j, "size", (double)m->size);
  cJSON_AddStringToObject(j, "sha256", sha);
  cJSON_AddStringToObject(j, "url", m->url);
  cJSON_AddStringToObject(j, "expires", exp);
  char *text = cJSON_Print(j);
  cJSON_Delete(j);
  if (text == NULL)
    return YM_ENOMEM;
  int rc = ym_buf_append_str(out, text);
  if (rc == 0)
    rc = ym_buf_append_byte(out, '\n');
  cJSON_free(text);
  return rc;
}

int ym_manifest_open(const char *envelope, size_t len, const ym_sign_pub_t *keys, size_t nkeys,
                     ym_manifest_t *m, const char **reason) {
  ym_buf_t b;
  ym_buf_init(&b, YM_SIGN_ENVELOPE_MAX);
  int rc = ym_sign_open(envelope, len, keys, nkeys, &b, reason);
  if (rc == 0)
    rc = ym_manifest_parse(b.data, b.len, m, reason);
  if (rc == 0) {
    cJSON *j = NULL;
    if (ym_json_parse(envelope, len, YM_SIGN_ENVELOPE_MAX, &j, NULL) == 0)
      snprintf(m->key_id, sizeof(m->key_id), "%s", ym_json_get_str(j, "key"));
    cJSON_Delete(j);
  }
  ym_buf_free(&b);
  return rc;
}

int ym_manifest_check(const ym_manifest_t *m, const ym_manifest_expect_t *e, const char **reason) {
  *reason = NULL;
  if (strcmp(m->product, e->product) != 0)
    *reason = "wrong_product";
  else if (strcmp(m->platform, "any") != 0 && strcmp(m->platform, e->platform) != 0)
    *reason = "wrong_platform";
  else if (e->arch != NULL && strcmp(m->arch, "any") != 0 && strcmp(m->arch, e->arch) != 0)
    *reason = "wrong_architecture";
  else if (e->tenant != NULL && m->tenant[0] == '\0')
    *reason = "no_tenant";
  else if (e->tenant != NULL && strcmp(m->tenant, YM_MANIFEST_TENANT_ALL) != 0 &&
           strcmp(m->tenant, e->tenant) != 0)
    *reason = "wrong_tenant";
  else if (m->expires <= e->now)
    *reason = "expired";
  else if (m->size > e->max_size)
    *reason = "too_large";
  else if (m->serial == e->accepted)
    *reason = "serial_replayed";
  else if (m->serial < e->accepted)
    *reason = "serial_lower";
  return *reason ? YM_EPERM : 0;
}
