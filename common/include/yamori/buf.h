/*
 * A bounded, growable byte buffer.
 *
 * The buffer grows on demand up to the cap given to ym_buf_init() and
 * refuses to grow past it: an append that would exceed the cap returns
 * YM_ETOOBIG and leaves the buffer unchanged. The contents are always
 * followed by a NUL byte (not counted in len), so text can be used as a C
 * string. Storage is owned by the buffer; ym_buf_free() releases it.
 */
#ifndef YAMORI_BUF_H
#define YAMORI_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
  char *data;  /* NULL until the first append */
  size_t len;  /* bytes in use, not counting the trailing NUL */
  size_t size; /* bytes allocated */
  size_t max;  /* cap on len */
} ym_buf_t;

/* Prepares an empty buffer that may hold at most max bytes. */
void ym_buf_init(ym_buf_t *b, size_t max);

/* Releases the storage; the buffer is empty and can be reused. */
void ym_buf_free(ym_buf_t *b);

/* Empties the buffer, keeping its storage. */
void ym_buf_reset(ym_buf_t *b);

/* Ensures room for n more bytes. Returns 0, YM_ETOOBIG or YM_ENOMEM. */
int ym_buf_reserve(ym_buf_t *b, size_t n);

/* Appends n bytes. Returns 0, YM_ETOOBIG or YM_ENOMEM (buffer unchanged). */
int ym_buf_append(ym_buf_t *b, const void *p, size_t n);

/* Appends a C string (without its NUL). */
int ym_buf_append_str(ym_buf_t *b, const char *s);

/* Appends one byte. */
int ym_buf_append_byte(ym_buf_t *b, char c);

/* Appends printf-style text. On YM_ETOOBIG the buffer is unchanged. */
int ym_buf_appendf(ym_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ym_buf_vappendf(ym_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Shortens the buffer to len bytes (len <= b->len). */
void ym_buf_truncate(ym_buf_t *b, size_t len);

/* Hands the storage to the caller (who frees it with free()) and empties the
 * buffer. Returns NULL for a buffer that never allocated. */
char *ym_buf_detach(ym_buf_t *b, size_t *len);

#endif
