#include "yamori/buf.h"

#include "yamori/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_ALLOC 64

void ym_buf_init(ym_buf_t *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->size = 0;
  b->max = max;
}

void ym_buf_free(ym_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->size = 0;
}

void ym_buf_reset(ym_buf_t *b) {
  b->len = 0;
  if (b->data != NULL)
    b->data[0] = '\0';
}

int ym_buf_reserve(ym_buf_t *b, size_t n) {
  if (n > b->max || b->len > b->max - n)
    return YM_ETOOBIG;
  size_t need = b->len + n + 1; /* room for the trailing NUL */
  if (need <= b->size)
    return 0;
  size_t size = b->size ? b->size : MIN_ALLOC;
  while (size < need)
    size = size > SIZE_MAX / 2 ? need : size * 2;
  if (size > b->max + 1)
    size = b->max + 1;
  char *p = realloc(b->data, size);
  if (p == NULL)
    return YM_ENOMEM;
  b->data = p;
  b->size = size;
  return 0;
}

int ym_buf_append(ym_buf_t *b, const void *p, size_t n) {
  int rc = ym_buf_reserve(b, n);
  if (rc != 0)
    return rc;
  if (n > 0)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int ym_buf_append_str(ym_buf_t *b, const char *s) {
  return ym_buf_append(b, s, strlen(s));
}

int ym_buf_append_byte(ym_buf_t *b, char c) {
  return ym_buf_append(b, &c, 1);
}

int ym_buf_vappendf(ym_buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return YM_EINVAL;
  int rc = ym_buf_reserve(b, (size_t)n);
  if (rc != 0)
    return rc;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int ym_buf_appendf(ym_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = ym_buf_vappendf(b, fmt, ap);
  va_end(ap);
  return rc;
}

void ym_buf_truncate(ym_buf_t *b, size_t len) {
  if (len < b->len) {
    b->len = len;
    b->data[len] = '\0';
  }
}

char *ym_buf_detach(ym_buf_t *b, size_t *len) {
  char *p = b->data;
  if (len != NULL)
    *len = b->len;
  b->data = NULL;
  b->len = 0;
  b->size = 0;
  return p;
}
