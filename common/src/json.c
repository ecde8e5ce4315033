#include "yamori/json.h"

#include "yamori/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence starting at s (at most n bytes
 * available), or 0 when the bytes there do not form one. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80)
    return 1;
  size_t len;
  unsigned cp;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0Fu;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3Fu);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0; /* overlong or out of range */
  if (cp >= 0xD800 && cp <= 0xDFFF)
    return 0; /* encoded surrogate */
  return len;
}

bool ym_json_utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    size_t l = utf8_seq(p + i, n - i);
    if (l == 0)
      return false;
    i += l;
  }
  return true;
}

int ym_json_append_string(ym_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s;
  size_t start = b->len;
  int rc = ym_buf_append_byte(b, '"');
  size_t i = 0;
  while (rc == 0 && i < n) {
    /* Copy the longest run that needs no escaping in one append. */
    size_t run = i;
    while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
      run++;
    if (run > i) {
      rc = ym_buf_append(b, p + i, run - i);
      i = run;
      continue;
    }
    unsigned char c = p[i];
    if (c >= 0x80) {
      size_t l = utf8_seq(p + i, n - i);
      if (l > 0) {
        rc = ym_buf_append(b, p + i, l);
        i += l;
      } else {
        char esc[7] = {'\\', 'u', 'd', 'c', hex[c >> 4], hex[c & 15], 0};
        rc = ym_buf_append(b, esc, 6);
        i++;
      }
      continue;
    }
    switch (c) {
    case '"':
      rc = ym_buf_append(b, "\\\"", 2);
      break;
    case '\\':
      rc = ym_buf_append(b, "\\\\", 2);
      break;
    case '\n':
      rc = ym_buf_append(b, "\\n", 2);
      break;
    case '\r':
      rc = ym_buf_append(b, "\\r", 2);
      break;
    case '\t':
      rc = ym_buf_append(b, "\\t", 2);
      break;
    case '\b':
      rc = ym_buf_append(b, "\\b", 2);
      break;
    case '\f':
      rc = ym_buf_append(b, "\\f", 2);
      break;
    default: {
      char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
      rc = ym_buf_append(b, esc, 6);
    }
    }
    i++;
  }
  if (rc == 0)
    rc = ym_buf_append_byte(b, '"');
  if (rc != 0)
    ym_buf_truncate(b, start);
  return rc;
}

int ym_json_add_bytes(cJSON *obj, const char *key, const char *s, size_t n) {
  ym_buf_t b;
  ym_buf_init(&b, n * 6 + 2);
  int rc = ym_json_append_string(&b, s, n);
  if (rc != 0) {
    ym_buf_free(&b);
    return rc;
  }
  cJSON *raw = cJSON_CreateRaw(b.data);
  ym_buf_free(&b);
  if (raw == NULL || !cJSON_AddItemToObject(obj, key, raw)) {
    cJSON_Delete(raw);
    return YM_ENOMEM;
  }
  return 0;
}

int ym_json_parse(const char *text, size_t len, size_t max, cJSON **out, size_t *err_offset) {
  *out = NULL;
  if (len > max)
    return YM_ETOOBIG;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
  if (j == NULL) {
    if (err_offset != NULL)
      *err_offset = end != NULL && end >= text ? (size_t)(end - text) : 0;
    return YM_EPARSE;
  }
  /* Only white space may follow the value. */
  for (const char *p = end; p < text + len; p++) {
    if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t' && *p != '\0') {
      if (err_offset != NULL)
        *err_offset = (size_t)(p - text);
      cJSON_Delete(j);
      return YM_EPARSE;
    }
  }
  *out = j;
  return 0;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Returns the value of the 4 hex digits at p, or -1. */
static long hex4(const char *p) {
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int d = hex_digit(p[i]);
    if (d < 0)
      return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Returns true when the \u escape at in[i] (in[i] == '\\') is a lone
 * surrogate that stands for a byte: \udc80 to \udcff. */
static bool is_byte_escape(const char *in, size_t len, size_t i) {
  if (i + 6 > len || in[i + 1] != 'u')
    return false;
  long v = hex4(in + i + 2);
  return v >= 0xDC80 && v <= 0xDCFF;
}

/* Copies in[0..len) to a new buffer, turning each \udcXX escape (XX from 80
 * to ff) into the byte XX. Escapes are consumed two characters at a time, so
 * an escaped backslash followed by "udc80" stays text. A high surrogate
 * escape followed by another \u escape is copied as a pair for cJSON to
 * decode (so \ud800\udc80 is U+10080, not bytes). Replacing a 6-byte
 * escape by one byte of 0x80 or above never changes where a string ends,
 * and the output is never longer than the input. Returns NULL when out of
 * memory. */
static char *unescape_bytes(const char *in, size_t len, size_t *outlen) {
  char *out = malloc(len + 1);
  size_t o = 0, i = 0;
  if (out == NULL)
    return NULL;
  while (i < len) {
    if (in[i] != '\\') {
      out[o++] = in[i++];
      continue;
    }
    if (is_byte_escape(in, len, i)) {
      out[o++] = (char)(unsigned char)(hex4(in + i + 2) & 0xFF);
      i += 6;
      continue;
    }
    if (i + 12 <= len && in[i + 1] == 'u' && in[i + 6] == '\\' && in[i + 7] == 'u') {
      long hi = hex4(in + i + 2);
      if (hi >= 0xD800 && hi <= 0xDBFF && hex4(in + i + 8) >= 0) {
        memcpy(out + o, in + i, 12);
        o += 12;
        i += 12;
        continue;
      }
    }
    size_t n = i + 2 <= len ? 2 : 1;
    memcpy(out + o, in + i, n);
    o += n;
    i += n;
  }
  out[o] = '\0';
  *outlen = o;
  return out;
}

/* Returns true when text holds at least one \udcXX byte escape (or
 * something that looks like one after an escaped backslash, which only costs
 * a needless copy). */
static bool has_byte_escape(const char *text, size_t len) {
  const char *p = text, *end = text + len;
  while (p < end && (p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
    if (is_byte_escape(text, len, (size_t)(p - text)))
      return true;
    p++;
  }
  return false;
}

int ym_json_parse_lenient(const char *text, size_t len, size_t max, cJSON **out) {
  *out = NULL;
  if (len > max)
    return YM_ETOOBIG;
  if (!has_byte_escape(text, len))
    return ym_json_parse(text, len, max, out, NULL);
  size_t plain_len;
  char *plain = unescape_bytes(text, len, &plain_len);
  if (plain == NULL)
    return YM_ENOMEM;
  int rc = ym_json_parse(plain, plain_len, max, out, NULL);
  free(plain);
  return rc;
}

const char *ym_json_get_str(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool ym_json_get_int(const cJSON *obj, const char *key, long long *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!cJSON_IsNumber(v))
    return false;
  double d = v->valuedouble;
  if (d != floor(d) || d < -9007199254740992.0 || d > 9007199254740992.0)
    return false;
  *out = (long long)d;
  return true;
}
