/*
 * JSON helpers over cJSON, for text that comes from outside.
 *
 * Strings from an endpoint (paths, command lines, host names) are bytes, not
 * necessarily UTF-8. They are written as JSON strings that are always valid
 * JSON and from which the original bytes can be recovered exactly:
 *   - valid UTF-8 sequences are written as they are;
 *   - '"', '\\' and control characters are escaped (\n, \t, \u001b, ...);
 *   - each byte that is not part of a valid UTF-8 sequence (stray
 *     continuation bytes, overlong forms, encoded surrogates, code points
 *     above U+10FFFF, truncated sequences) is written as \udcXX, where XX is
 *     the byte: the "surrogateescape" convention. A decoder that maps lone
 *     U+DC80..U+DCFF back to bytes 0x80..0xFF recovers the input; one that
 *     does not shows a replacement character. Nothing is dropped.
 * The same rules are used everywhere an untrusted string is written, so
 * docs/events.md describes them once.
 */
#ifndef YAMORI_JSON_H
#define YAMORI_JSON_H

#include "yamori/buf.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Appends s[0..n) as a quoted JSON string. Returns 0, YM_ETOOBIG or
 * YM_ENOMEM; on error the buffer is unchanged. */
int ym_json_append_string(ym_buf_t *b, const char *s, size_t n);

/* Returns true when s[0..n) is valid UTF-8 (no surrogates, no overlongs). */
bool ym_json_utf8_valid(const char *s, size_t n);

/* Adds key: s[0..n) to obj as an escaped string (cJSON would pass invalid
 * UTF-8 through unchanged). Returns 0 or YM_ENOMEM/YM_ETOOBIG. */
int ym_json_add_bytes(cJSON *obj, const char *key, const char *s, size_t n);

/* Parses at most max bytes of JSON text. Text longer than max is refused
 * with YM_ETOOBIG before parsing; malformed text gives YM_EPARSE and, when
 * err_offset is not NULL, the byte offset where parsing stopped. */
int ym_json_parse(const char *text, size_t len, size_t max, cJSON **out, size_t *err_offset);

/* Parses at most max bytes of JSON text written with the convention above:
 * each lone \udcXX escape (XX from 80 to ff) inside a string becomes the
 * byte XX in the parsed string, so the original bytes come back exactly
 * (cJSON alone refuses lone surrogates). Surrogate pairs and every other
 * escape are decoded as usual; otherwise the same as ym_json_parse: returns
 * 0, YM_ETOOBIG (len > max, before parsing), YM_EPARSE or YM_ENOMEM. The
 * text is not modified; escapes are rewritten on a copy, which is made only
 * when the text contains one. */
int ym_json_parse_lenient(const char *text, size_t len, size_t max, cJSON **out);

/* Accessors that return NULL (or false / -1) when the member is missing or
 * has another type. */
const char *ym_json_get_str(const cJSON *obj, const char *key);
bool ym_json_get_int(const cJSON *obj, const char *key, long long *out);

#endif
