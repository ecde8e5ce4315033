#include "yamori/config.h"

#include "yamori/err.h"
#include "yamori/json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIELD_PTR(out, f) ((char *)(out) + (f)->offset)

static int fail(ym_cfg_error_t *err, int code, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(ym_cfg_error_t *err, int code, const char *key, const char *fmt, ...) {
  char detail[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  err->code = code;
  snprintf(err->key, sizeof(err->key), "%s", key);
  if (key[0] != '\0')
    snprintf(err->msg, sizeof(err->msg), "%s: %s", key, detail);
  else
    snprintf(err->msg, sizeof(err->msg), "%s", detail);
  return code;
}

static const char *type_name(ym_cfg_type_t t) {
  switch (t) {
  case YM_CFG_BOOL:
    return "boolean";
  case YM_CFG_INT:
    return "integer";
  case YM_CFG_STRING:
    return "string";
  case YM_CFG_STRLIST:
    return "array of strings";
  default:
    return "choice";
  }
}

static void free_field(const ym_cfg_field_t *f, void *out) {
  char *p = FIELD_PTR(out, f);
  if (f->type == YM_CFG_STRING) {
    free(*(char **)p);
    *(char **)p = NULL;
  } else if (f->type == YM_CFG_STRLIST) {
    ym_strlist_t *l = (ym_strlist_t *)p;
    for (size_t i = 0; i < l->n; i++)
      free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
  }
}

void ym_config_free(const ym_cfg_field_t *t, size_t n, void *out) {
  for (size_t i = 0; i < n; i++)
    free_field(&t[i], out);
}

static char *dup_checked(const char *s, size_t *len) {
  *len = strlen(s);
  char *d = malloc(*len + 1);
  if (d != NULL)
    memcpy(d, s, *len + 1);
  return d;
}

/* Parses v into f's storage (freeing what was there). */
static int set_field(const ym_cfg_field_t *f, void *out, const cJSON *v, ym_cfg_error_t *err) {
  char *p = FIELD_PTR(out, f);
  switch (f->type) {
  case YM_CFG_BOOL:
    if (!cJSON_IsBool(v))
      return fail(err, YM_ETYPE, f->name, "expected true or false");
    *(bool *)p = cJSON_IsTrue(v);
    break;
  case YM_CFG_INT: {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
      return fail(err, YM_ETYPE, f->name, "expected an integer");
    double d = v->valuedouble;
    if (d < (double)f->min || d > (double)f->max)
      return fail(err, YM_ERANGE, f->name, "%.0f is out of range [%lld, %lld]", d, f->min, f->max);
    *(long long *)p = (long long)d;
    break;
  }
  case YM_CFG_STRING: {
    size_t len;
    if (!cJSON_IsString(v))
      return fail(err, YM_ETYPE, f->name, "expected a string");
    if (strlen(v->valuestring) < (size_t)f->min || strlen(v->valuestring) > (size_t)f->max)
      return fail(err, YM_ERANGE, f->name, "length must be between %lld and %lld bytes", f->min,
                  f->max);
    char *d = dup_checked(v->valuestring, &len);
    if (d == NULL)
      return fail(err, YM_ENOMEM, f->name, "out of memory");
    free_field(f, out);
    *(char **)p = d;
    break;
  }
  case YM_CFG_STRLIST: {
    if (!cJSON_IsArray(v))
      return fail(err, YM_ETYPE, f->name, "expected an array of strings");
    int count = cJSON_GetArraySize(v);
    if (count < 0 || count > f->max)
      return fail(err, YM_ERANGE, f->name, "at most %lld items allowed", f->max);
    ym_strlist_t l = {calloc((size_t)count + 1, sizeof(char *)), 0};
    if (l.v == NULL)
      return fail(err, YM_ENOMEM, f->name, "out of memory");
    const cJSON *it;
    int rc = 0;
    cJSON_ArrayForEach(it, v) {
      size_t len;
      if (!cJSON_IsString(it)) {
        rc = fail(err, YM_ETYPE, f->name, "item %zu is not a string", l.n);
        break;
      }
      if (it->valuestring[0] == '\0' || strlen(it->valuestring) > YM_CFG_MAX_ITEM) {
        rc = fail(err, YM_ERANGE, f->name, "item %zu must be 1 to %d bytes", l.n, YM_CFG_MAX_ITEM);
        break;
      }
      if ((l.v[l.n] = dup_checked(it->valuestring, &len)) == NULL) {
        rc = fail(err, YM_ENOMEM, f->name, "out of memory");
        break;
      }
      l.n++;
    }
    if (rc != 0) {
      for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
      free(l.v);
      return rc;
    }
    free_field(f, out);
    *(ym_strlist_t *)p = l;
    break;
  }
  case YM_CFG_ENUM: {
    if (!cJSON_IsString(v))
      return fail(err, YM_ETYPE, f->name, "expected a string");
    int idx = -1;
    for (int i = 0; f->choices[i] != NULL; i++)
      if (strcmp(f->choices[i], v->valuestring) == 0)
        idx = i;
    if (idx < 0) {
      char list[160] = "";
      size_t used = 0;
      for (int i = 0; f->choices[i] != NULL && used < sizeof(list); i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", f->choices[i]);
        if (w < 0)
          break;
        used += (size_t)w;
      }
      return fail(err, YM_ERANGE, f->name, "must be one of: %s", list);
    }
    *(int *)p = idx;
    break;
  }
  }
  if (f->check != NULL) {
    char msg[160] = "invalid value";
    if (f->check(p, msg, sizeof(msg)) != 0)
      return fail(err, YM_EINVAL, f->name, "%s", msg);
  }
  return 0;
}

int ym_config_defaults(const ym_cfg_field_t *t, size_t n, void *out, ym_cfg_error_t *err) {
  for (size_t i = 0; i < n; i++) {
    cJSON *v = cJSON_Parse(t[i].def);
    if (v == NULL) {
      ym_config_free(t, n, out);
      return fail(err, YM_EINVAL, t[i].name, "built-in default is not valid JSON");
    }
    int rc = set_field(&t[i], out, v, err);
    cJSON_Delete(v);
    if (rc != 0) {
      ym_config_free(t, n, out);
      return rc;
    }
  }
  return 0;
}

static bool has_prefix_field(const ym_cfg_field_t *t, size_t n, const char *prefix) {
  size_t pl = strlen(prefix);
  for (size_t i = 0; i < n; i++)
    if (strncmp(t[i].name, prefix, pl) == 0 && t[i].name[pl] == '.')
      return true;
  return false;
}

static int apply_object(const ym_cfg_field_t *t, size_t n, void *out, const cJSON *obj,
                        const char *prefix, unsigned char *seen, ym_cfg_error_t *err) {
  const cJSON *m;
  cJSON_ArrayForEach(m, obj) {
    char key[128];
    int w = snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "", m->string);
    if (w < 0 || (size_t)w >= sizeof(key))
      return fail(err, YM_EUNKNOWNKEY, "", "key too long: '%.60s...'", key);
    size_t i;
    for (i = 0; i < n; i++)
      if (strcmp(t[i].name, key) == 0)
        break;
    if (i < n) {
      if (seen[i])
        return fail(err, YM_EINVAL, key, "given more than once");
      seen[i] = 1;
      int rc = set_field(&t[i], out, m, err);
      if (rc != 0)
        return rc;
    } else if (cJSON_IsObject(m) && has_prefix_field(t, n, key)) {
      int rc = apply_object(t, n, out, m, key, seen, err);
      if (rc != 0)
        return rc;
    } else {
      return fail(err, YM_EUNKNOWNKEY, key, "unknown key");
    }
  }
  return 0;
}

int ym_config_parse(const ym_cfg_field_t *t, size_t n, void *out, const char *text, size_t len,
                    ym_cfg_error_t *err) {
  cJSON *doc = NULL;
  size_t at = 0;
  int rc = ym_json_parse(text, len, YM_CFG_MAX_FILE, &doc, &at);
  if (rc == YM_ETOOBIG)
    return fail(err, rc, "", "configuration is larger than %d bytes", YM_CFG_MAX_FILE);
  if (rc != 0) {
    size_t line = 1;
    for (size_t i = 0; i < at && i < len; i++)
      line += text[i] == '\n';
    return fail(err, rc, "", "malformed JSON at line %zu", line);
  }
  if (!cJSON_IsObject(doc)) {
    cJSON_Delete(doc);
    return fail(err, YM_ETYPE, "", "configuration must be a JSON object");
  }
  unsigned char *seen = calloc(n ? n : 1, 1);
  if (seen == NULL) {
    cJSON_Delete(doc);
    return fail(err, YM_ENOMEM, "", "out of memory");
  }
  rc = ym_config_defaults(t, n, out, err);
  if (rc == 0)
    rc = apply_object(t, n, out, doc, "", seen, err);
  if (rc != 0)
    ym_config_free(t, n, out);
  free(seen);
  cJSON_Delete(doc);
  return rc;
}

int ym_config_load_file(const ym_cfg_field_t *t, size_t n, void *out, const char *path,
                        ym_cfg_error_t *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return fail(err, ym_err_from_errno(errno), "", "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  int rc;
  char *text = NULL;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = fail(err, YM_EINVAL, "", "%s is not a regular file", path);
    goto out_close;
  }
  if (st.st_size > YM_CFG_MAX_FILE) {
    rc = fail(err, YM_ETOOBIG, "", "%s is larger than %d bytes", path, YM_CFG_MAX_FILE);
    goto out_close;
  }
  text = malloc((size_t)st.st_size + 1);
  if (text == NULL) {
    rc = fail(err, YM_ENOMEM, "", "out of memory");
    goto out_close;
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  rc = ym_config_parse(t, n, out, text, got, err);
  free(text);
out_close:
  close(fd);
  return rc;
}

int ym_config_doc_markdown(const ym_cfg_field_t *t, size_t n, ym_buf_t *b) {
  int rc = ym_buf_append_str(b, "| key | type | default | allowed | description |\n"
                                "|---|---|---|---|---|\n");
  for (size_t i = 0; i < n && rc == 0; i++) {
    const ym_cfg_field_t *f = &t[i];
    char allowed[200] = "";
    if (f->type == YM_CFG_INT)
      snprintf(allowed, sizeof(allowed), "%lld to %lld", f->min, f->max);
    else if (f->type == YM_CFG_STRING)
      snprintf(allowed, sizeof(allowed), "%lld to %lld bytes", f->min, f->max);
    else if (f->type == YM_CFG_STRLIST)
      snprintf(allowed, sizeof(allowed), "at most %lld items", f->max);
    else if (f->type == YM_CFG_ENUM) {
      size_t used = 0;
      for (int c = 0; f->choices[c] != NULL && used < sizeof(allowed); c++) {
        int w = snprintf(allowed + used, sizeof(allowed) - used, "%s`%s`", c ? ", " : "",
                         f->choices[c]);
        if (w < 0)
          break;
        used += (size_t)w;
      }
    }
    rc = ym_buf_appendf(b, "| `%s` | %s | `%s` | %s | %s |\n", f->name, type_name(f->type), f->def,
                        allowed, f->doc);
  }
  return rc;
}

bool ym_strlist_has_path_prefix(const ym_strlist_t *list, const char *s) {
  for (size_t i = 0; i < list->n; i++) {
    const char *pre = list->v[i];
    size_t pl = strlen(pre);
    while (pl > 1 && pre[pl - 1] == '/')
      pl--;
    if (strncmp(s, pre, pl) == 0 && (s[pl] == '\0' || s[pl] == '/' || (pl == 1 && pre[0] == '/')))
      return true;
  }
  return false;
}
