/*
 * Event schema tables and the single-pass nested JSON serializer.
 */
#include "yamori/event.h"

#include "yamori/err.h"
#include "yamori/json.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const ym_field_info_t schema[YM_F_COUNT] = {
#define YM_FIELD_INFO_(id, name, type, kind, doc) {name, type, kind, doc},
    YM_SCHEMA(YM_FIELD_INFO_)
#undef YM_FIELD_INFO_
};

const ym_field_info_t *ym_schema_field(ym_field_t f) {
  return &schema[f];
}

int ym_schema_doc_markdown(ym_buf_t *b) {
  int rc = ym_buf_append_str(b, "| field | ECS type | description |\n|---|---|---|\n");
  for (int f = 0; f < YM_F_COUNT && rc == 0; f++) {
    const ym_field_info_t *fi = &schema[f];
    rc = ym_buf_appendf(b, "| `%s` | %s%s | %s |\n", fi->name, fi->ecs_type,
                        fi->kind == YM_K_ARR ? " (array)" : "", fi->doc);
  }
  return rc;
}

#define IS_SET(ev, f) (((ev)->set[(f) / 64] >> ((f) % 64)) & 1u)
#define MARK_SET(ev, f) ((ev)->set[(f) / 64] |= (uint64_t)1 << ((f) % 64))

void ym_event_init(ym_event_t *ev, const ym_event_t *base) {
  memset(ev->set, 0, sizeof(ev->set));
  ym_buf_init(&ev->arena, YM_EVENT_MAX_BYTES);
  ev->base = base;
}

void ym_event_reset(ym_event_t *ev) {
  memset(ev->set, 0, sizeof(ev->set));
  ym_buf_reset(&ev->arena);
}

void ym_event_free(ym_event_t *ev) {
  ym_buf_free(&ev->arena);
  memset(ev->set, 0, sizeof(ev->set));
}

bool ym_event_has(const ym_event_t *ev, ym_field_t f) {
  return IS_SET(ev, f);
}

static int store(ym_event_t *ev, ym_field_t f, const void *p, size_t n) {
  size_t off = ev->arena.len;
  int rc = ym_buf_append(&ev->arena, p, n);
  if (rc != 0)
    return rc;
  ev->val[f].off = (uint32_t)off;
  ev->val[f].len = (uint32_t)n;
  MARK_SET(ev, f);
  return 0;
}

int ym_event_set_str(ym_event_t *ev, ym_field_t f, const char *s, size_t n) {
  if (schema[f].kind != YM_K_STR)
    return YM_ETYPE;
  return store(ev, f, s, n);
}

int ym_event_set_cstr(ym_event_t *ev, ym_field_t f, const char *s) {
  return ym_event_set_str(ev, f, s, strlen(s));
}

int ym_event_set_int(ym_event_t *ev, ym_field_t f, int64_t v) {
  if (schema[f].kind != YM_K_INT)
    return YM_ETYPE;
  ev->val[f].num = v;
  MARK_SET(ev, f);
  return 0;
}

int ym_event_set_bool(ym_event_t *ev, ym_field_t f, bool v) {
  if (schema[f].kind != YM_K_BOOL)
    return YM_ETYPE;
  ev->val[f].num = v;
  MARK_SET(ev, f);
  return 0;
}

void ym_time_format(int64_t ns, char out[32]) {
  time_t secs = (time_t)(ns / 1000000000);
  long frac = (long)(ns % 1000000000);
  if (frac < 0) {
    frac += 1000000000;
    secs--;
  }
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%06ldZ", frac / 1000);
}

int ym_event_set_time(ym_event_t *ev, ym_field_t f, int64_t ns) {
  if (schema[f].kind != YM_K_DATE)
    return YM_ETYPE;
  char s[32];
  ym_time_format(ns, s);
  return store(ev, f, s, strlen(s));
}

/* Arrays are stored already serialized ("[...]"), escaped like strings. */
int ym_event_set_strv(ym_event_t *ev, ym_field_t f, const char *const *items, const size_t *lens,
                      size_t n) {
  if (schema[f].kind != YM_K_ARR)
    return YM_ETYPE;
  size_t off = ev->arena.len;
  int rc = ym_buf_append_byte(&ev->arena, '[');
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (i > 0)
      rc = ym_buf_append_byte(&ev->arena, ',');
    if (rc == 0)
      rc = ym_json_append_string(&ev->arena, items[i], lens[i]);
  }
  if (rc == 0)
    rc = ym_buf_append_byte(&ev->arena, ']');
  if (rc != 0) {
    ym_buf_truncate(&ev->arena, off);
    return rc;
  }
  ev->val[f].off = (uint32_t)off;
  ev->val[f].len = (uint32_t)(ev->arena.len - off);
  MARK_SET(ev, f);
  return 0;
}

int ym_event_set_nul_list(ym_event_t *ev, ym_field_t f, const char *buf, size_t len) {
  if (schema[f].kind != YM_K_ARR)
    return YM_ETYPE;
  size_t off = ev->arena.len;
  int rc = ym_buf_append_byte(&ev->arena, '[');
  size_t i = 0;
  bool first = true;
  while (i < len && rc == 0) {
    const char *item = buf + i;
    const char *end = memchr(item, '\0', len - i);
    size_t n = end ? (size_t)(end - item) : len - i;
    if (!first)
      rc = ym_buf_append_byte(&ev->arena, ',');
    if (rc == 0)
      rc = ym_json_append_string(&ev->arena, item, n);
    first = false;
    i += n + 1;
  }
  if (rc == 0)
    rc = ym_buf_append_byte(&ev->arena, ']');
  if (rc != 0) {
    ym_buf_truncate(&ev->arena, off);
    return rc;
  }
  ev->val[f].off = (uint32_t)off;
  ev->val[f].len = (uint32_t)(ev->arena.len - off);
  MARK_SET(ev, f);
  return 0;
}

int ym_event_set_one(ym_event_t *ev, ym_field_t f, const char *s) {
  size_t n = strlen(s);
  return ym_event_set_strv(ev, f, &s, &n, 1);
}

int ym_event_set_raw(ym_event_t *ev, ym_field_t f, const char *json, size_t n) {
  if (schema[f].kind != YM_K_RAW)
    return YM_ETYPE;
  return store(ev, f, json, n);
}

int ym_event_copy(ym_event_t *dst, const ym_event_t *src, ym_field_t f) {
  if (!IS_SET(src, f))
    return 0;
  int k = schema[f].kind;
  if (k == YM_K_INT || k == YM_K_BOOL) {
    dst->val[f].num = src->val[f].num;
    MARK_SET(dst, f);
    return 0;
  }
  return store(dst, f, src->arena.data + src->val[f].off, src->val[f].len);
}

bool ym_event_get_int(const ym_event_t *ev, ym_field_t f, int64_t *out) {
  if (!IS_SET(ev, f) || schema[f].kind != YM_K_INT)
    return false;
  *out = ev->val[f].num;
  return true;
}

const char *ym_event_get_str(const ym_event_t *ev, ym_field_t f, size_t *len) {
  if (!IS_SET(ev, f) || (schema[f].kind != YM_K_STR && schema[f].kind != YM_K_DATE))
    return NULL;
  if (len != NULL)
    *len = ev->val[f].len;
  return ev->arena.data + ev->val[f].off;
}

/* Length of component k (0-based) of a dotted name, and its start. */
static const char *component(const char *name, int k, size_t *len) {
  const char *p = name;
  for (int i = 0; i < k; i++) {
    p = strchr(p, '.');
    if (p == NULL)
      return NULL;
    p++;
  }
  const char *dot = strchr(p, '.');
  *len = dot ? (size_t)(dot - p) : strlen(p);
  return p;
}

static int depth_of(const char *name) {
  int d = 1;
  for (const char *p = name; *p; p++)
    d += *p == '.';
  return d;
}

/* Number of leading object components (not the leaf) shared by a and b. */
static int shared_objects(const char *a, const char *b) {
  int da = depth_of(a) - 1, db = depth_of(b) - 1;
  int k = 0;
  while (k < da && k < db) {
    size_t la, lb;
    const char *ca = component(a, k, &la), *cb = component(b, k, &lb);
    if (la != lb || memcmp(ca, cb, la) != 0)
      break;
    k++;
  }
  return k;
}

static int write_value(const ym_event_t *src, ym_field_t f, ym_buf_t *out) {
  const char *p = src->arena.data + src->val[f].off;
  switch (schema[f].kind) {
  case YM_K_STR:
    return ym_json_append_string(out, p, src->val[f].len);
  case YM_K_DATE:
    if (ym_buf_append_byte(out, '"') != 0 || ym_buf_append(out, p, src->val[f].len) != 0)
      return YM_ETOOBIG;
    return ym_buf_append_byte(out, '"');
  case YM_K_ARR:
  case YM_K_RAW:
    return ym_buf_append(out, p, src->val[f].len);
  case YM_K_INT:
    return ym_buf_appendf(out, "%lld", (long long)src->val[f].num);
  default:
    return ym_buf_append_str(out, src->val[f].num ? "true" : "false");
  }
}

static int write_event(const ym_event_t *ev, const ym_event_t *base, ym_buf_t *out);

int ym_event_write(const ym_event_t *ev, ym_buf_t *out) {
  return write_event(ev, ev->base, out);
}

int ym_event_write_own(const ym_event_t *ev, ym_buf_t *out) {
  return write_event(ev, NULL, out);
}

static int write_event(const ym_event_t *ev, const ym_event_t *base, ym_buf_t *out) {
  size_t start = out->len;
  int rc = ym_buf_append_byte(out, '{');
  const char *prev = NULL; /* name of the previous field written */
  int open = 0;            /* objects open below the top level */
  for (int f = 0; f < YM_F_COUNT && rc == 0; f++) {
    const ym_event_t *src = IS_SET(ev, f) ? ev : (base && IS_SET(base, f) ? base : NULL);
    if (src == NULL)
      continue;
    const char *name = schema[f].name;
    int keep = prev ? shared_objects(prev, name) : 0;
    for (; open > keep && rc == 0; open--)
      rc = ym_buf_append_byte(out, '}');
    if (prev != NULL && rc == 0)
      rc = ym_buf_append_byte(out, ',');
    int objects = depth_of(name) - 1;
    for (int k = open; k < objects && rc == 0; k++, open++) {
      size_t len;
      const char *c = component(name, k, &len);
      rc = ym_buf_append_byte(out, '"');
      if (rc == 0)
        rc = ym_buf_append(out, c, len);
      if (rc == 0)
        rc = ym_buf_append(out, "\":{", 3);
    }
    size_t len;
    const char *leaf = component(name, objects, &len);
    if (rc == 0)
      rc = ym_buf_append_byte(out, '"');
    if (rc == 0)
      rc = ym_buf_append(out, leaf, len);
    if (rc == 0)
      rc = ym_buf_append(out, "\":", 2);
    if (rc == 0)
      rc = write_value(src, f, out);
    prev = name;
  }
  for (; open > 0 && rc == 0; open--)
    rc = ym_buf_append_byte(out, '}');
  if (rc == 0)
    rc = ym_buf_append(out, "}\n", 2);
  if (rc != 0)
    ym_buf_truncate(out, start);
  return rc;
}
