/*
 * Decoding an event batch (docs/protocol.md, POST /api/v1/events).
 *
 * In order: the body must be gzip (the magic bytes, then zlib in gzip-only
 * mode: a zlib or raw deflate stream is refused as the protocol asks for
 * gzip); it is inflated chunk by chunk into a buffer capped at
 * INGEST_MAX_DECOMPRESSED, so a gzip bomb stops at the cap instead of
 * being allocated in full. Concatenated gzip members are one body (RFC
 * 1952); anything else after the last member, or a stream that ends early,
 * is refused. The text is then split into lines: the header line, then
 * exactly `count` event lines and nothing more but line ends. Each event is
 * checked as a whole (a JSON object of valid UTF-8 that standard parsers
 * accept too) and its indexed fields are read: yamori.stream_seq,
 * @timestamp, event.kind, event.dataset, event.action. An event whose
 * indexed members appear twice is refused: a consumer that keeps the last
 * duplicate would otherwise see other values than the index.
 *
 * Error descriptions are fixed text plus numbers that are not input (the
 * event's position), so no input is echoed back to the client.
 */
#include "ingest.h"

#include "yamori/err.h"
#include "yamori/json.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define HEADER_MAX 4096
#define FIELD_MAX 64 /* bytes of event.kind, event.dataset, event.action */
#define INFLATE_CHUNK (16 * 1024)

static void set_error(ingest_batch_t *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(ingest_batch_t *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->error, sizeof(out->error), fmt, ap);
  va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Gunzip                                                               */

/* Inflates the gzip body gz[0..len) into text (capped). Returns 0,
 * YM_ETOOBIG (over the cap), YM_EPARSE or YM_ENOMEM. */
static int gunzip(const unsigned char *gz, size_t len, ym_buf_t *text, ingest_batch_t *out) {
  unsigned char chunk[INFLATE_CHUNK];
  z_stream zs;
  if (len < 2 || gz[0] != 0x1f || gz[1] != 0x8b) {
    set_error(out, "body is not gzip");
    return YM_EPARSE;
  }
  if (len > UINT_MAX) {
    set_error(out, "body too large");
    return YM_ETOOBIG;
  }
  memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, 15 + 16) != Z_OK) /* 16: gzip only */
    return YM_ENOMEM;
  zs.next_in = (unsigned char *)(uintptr_t)gz;
  zs.avail_in = (uInt)len;
  int rc = 0;
  for (;;) {
    zs.next_out = chunk;
    zs.avail_out = sizeof(chunk);
    int zr = inflate(&zs, Z_NO_FLUSH);
    size_t got = sizeof(chunk) - zs.avail_out;
    if (got > 0 && (rc = ym_buf_append(text, chunk, got)) != 0) {
      if (rc == YM_ETOOBIG)
        set_error(out, "decompressed body over %d bytes", INGEST_MAX_DECOMPRESSED);
      break;
    }
    if (zr == Z_STREAM_END) {
      if (zs.avail_in == 0)
        break; /* the whole body, ending cleanly */
      if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b &&
          inflateReset(&zs) == Z_OK)
        continue; /* another gzip member */
      set_error(out, "data after the gzip stream");
      rc = YM_EPARSE;
      break;
    }
    if (zr == Z_OK)
      continue;
    if (zr == Z_MEM_ERROR) {
      rc = YM_ENOMEM;
    } else {
      /* Z_BUF_ERROR: all input given and no progress, so the stream was
       * cut short; Z_DATA_ERROR: corrupt data or checksum. */
      set_error(out, zr == Z_BUF_ERROR ? "truncated gzip stream" : "corrupt gzip stream");
      rc = YM_EPARSE;
    }
    break;
  }
  inflateEnd(&zs);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Fields                                                               */

/* Finds the members named names[0..n) of obj into found[] (NULL when
 * missing) in one pass. Returns false when one of them appears twice. */
static bool members(const cJSON *obj, const char *const *names, const cJSON **found, size_t n) {
  for (size_t i = 0; i < n; i++)
    found[i] = NULL;
  for (const cJSON *c = obj->child; c != NULL; c = c->next) {
    if (c->string == NULL)
      continue;
    for (size_t i = 0; i < n; i++) {
      if (strcmp(c->string, names[i]) == 0) {
        if (found[i] != NULL)
          return false;
        found[i] = c;
        break;
      }
    }
  }
  return true;
}

/* Reads a JSON number that is an integer from 0 to 2^53. */
static bool get_seq(const cJSON *v, int64_t *out) {
  if (!cJSON_IsNumber(v))
    return false;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
    return false;
  *out = (int64_t)d;
  return true;
}

static bool is_digits(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
  }
  return true;
}

static int num(const char *s, size_t n) {
  int v = 0;
  for (size_t i = 0; i < n; i++)
    v = v * 10 + (s[i] - '0');
  return v;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* Parses an ISO 8601 UTC time "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (the
 * fraction: 1 to 9 digits) into unix milliseconds. Years from 1970 to
 * 9999; a leap second (:60) is accepted. */
static bool parse_time(const char *s, int64_t *ms) {
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  size_t n = strlen(s);
  if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
      !is_digits(s, 4) || !is_digits(s + 5, 2) || !is_digits(s + 8, 2) || !is_digits(s + 11, 2) ||
      !is_digits(s + 14, 2) || !is_digits(s + 17, 2))
    return false;
  int year = num(s, 4), mon = num(s + 5, 2), day = num(s + 8, 2);
  int hour = num(s + 11, 2), min = num(s + 14, 2), sec = num(s + 17, 2);
  if (year < 1970 || mon < 1 || mon > 12 || day < 1 || hour > 23 || min > 59 || sec > 60)
    return false;
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (day > mdays[mon - 1] + (mon == 2 && leap))
    return false;
  size_t i = 19;
  int frac_ms = 0;
  if (s[i] == '.') {
    size_t digits = 0;
    for (i++; s[i] >= '0' && s[i] <= '9'; i++, digits++) {
      if (digits < 3)
        frac_ms = frac_ms * 10 + (s[i] - '0');
    }
    if (digits == 0 || digits > 9)
      return false;
    for (; digits < 3; digits++)
      frac_ms *= 10;
  }
  if (s[i] != 'Z' || i + 1 != n)
    return false;
  int64_t secs = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
  *ms = secs * 1000 + frac_ms;
  return true;
}

/* Returns true when the line is JSON text that standard parsers take as
 * it is: no NUL byte, and no raw control character inside a string. (cJSON
 * is laxer on both; the stored line is what the dashboard parses.) */
static bool line_chars_ok(const char *p, size_t n) {
  bool in_str = false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == 0 || (in_str && c < 0x20))
      return false;
    if (in_str && c == '\\')
      i++; /* the escaped character cannot end the string */
    else if (c == '"')
      in_str = !in_str;
  }
  return true;
}

/* Copies an optional string member (at most FIELD_MAX bytes of valid UTF-8
 * without control characters) into the arena; *off is its offset + 1, or
 * 0 when the member is missing. Returns false when it has another type or
 * form. */
static bool take_field(const cJSON *v, ym_buf_t *arena, uint32_t *off, int *rc) {
  *off = 0;
  if (v == NULL)
    return true;
  if (!cJSON_IsString(v))
    return false;
  size_t n = strlen(v->valuestring);
  if (n > FIELD_MAX || !ym_json_utf8_valid(v->valuestring, n))
    return false;
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)v->valuestring[i] < 0x20)
      return false;
  }
  *off = (uint32_t)arena->len + 1;
  *rc = ym_buf_append(arena, v->valuestring, n + 1); /* with its NUL */
  return true;
}

/* ------------------------------------------------------------------ */
/* Header and events                                                    */

static int parse_header(const char *line, size_t len, ingest_batch_t *out) {
  static const char *const names[] = {"agent_id", "stream", "first_seq", "last_seq", "count"};
  const cJSON *f[5];
  cJSON *h = NULL;
  int rc = YM_EPARSE;
  if (len > HEADER_MAX) {
    set_error(out, "header line too long");
    return YM_EPARSE;
  }
  if (!line_chars_ok(line, len) || !ym_json_utf8_valid(line, len) ||
      ym_json_parse(line, len, HEADER_MAX, &h, NULL) != 0 || !cJSON_IsObject(h)) {
    set_error(out, "header is not a JSON object");
    goto out_delete;
  }
  if (!members(h, names, f, 5)) {
    set_error(out, "header has a duplicate member");
    goto out_delete;
  }
  const char *id = cJSON_IsString(f[0]) ? f[0]->valuestring : NULL;
  size_t id_len = id != NULL ? strlen(id) : 0;
  if (id_len == 0 || id_len >= sizeof(out->agent_id)) {
    set_error(out, "header: bad agent_id");
    goto out_delete;
  }
  for (size_t i = 0; i < id_len; i++) {
    char c = id[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
          c == '_' || c == '.' || c == ':')) {
      set_error(out, "header: bad agent_id");
      goto out_delete;
    }
  }
  memcpy(out->agent_id, id, id_len + 1);
  const char *stream = cJSON_IsString(f[1]) ? f[1]->valuestring : NULL;
  if (stream == NULL || (strcmp(stream, "alerts") != 0 && strcmp(stream, "bulk") != 0)) {
    set_error(out, "header: stream must be \"alerts\" or \"bulk\"");
    goto out_delete;
  }
  snprintf(out->stream, sizeof(out->stream), "%s", stream);
  if (!get_seq(f[2], &out->first_seq) || !get_seq(f[3], &out->last_seq) ||
      !get_seq(f[4], &out->count)) {
    set_error(out, "header: first_seq, last_seq and count must be integers >= 0");
    goto out_delete;
  }
  if (out->count > INGEST_MAX_EVENTS) {
    set_error(out, "more than %d events in one batch", INGEST_MAX_EVENTS);
    rc = YM_ETOOBIG;
    goto out_delete;
  }
  if (out->count == 0 || out->last_seq < out->first_seq ||
      out->last_seq - out->first_seq < out->count - 1) {
    set_error(out, "header: count does not fit first_seq and last_seq");
    goto out_delete;
  }
  rc = 0;
out_delete:
  cJSON_Delete(h);
  return rc;
}

/* What one event line gives before its strings move to their final place. */
typedef struct {
  int64_t seq, ts_ms;
  uint32_t off[3]; /* kind, dataset, action: arena offset + 1, or 0 */
  bool gap;
} event_fields_t;

/* Checks one event line and reads its indexed fields. i is the event's
 * position (from 1) for the error text. */
static int parse_event(const char *line, size_t len, size_t i, ym_buf_t *arena, event_fields_t *ev,
                       ingest_batch_t *out) {
  static const char *const top_names[] = {"@timestamp", "event", "yamori"};
  static const char *const ev_names[] = {"kind", "dataset", "action"};
  static const char *const y_names[] = {"stream_seq"};
  const cJSON *top[3], *evf[3] = {NULL, NULL, NULL}, *yf[1] = {NULL};
  cJSON *o = NULL;
  int rc = YM_EPARSE;
  if (len > INGEST_MAX_EVENT_BYTES) {
    set_error(out, "event %zu: longer than %d bytes", i, INGEST_MAX_EVENT_BYTES);
    return YM_EPARSE;
  }
  if (!line_chars_ok(line, len) || !ym_json_utf8_valid(line, len)) {
    set_error(out, "event %zu: not valid JSON text", i);
    return YM_EPARSE;
  }
  rc = ym_json_parse_lenient(line, len, INGEST_MAX_EVENT_BYTES, &o);
  if (rc == YM_ENOMEM)
    return rc;
  rc = YM_EPARSE;
  if (o == NULL || !cJSON_IsObject(o)) {
    set_error(out, "event %zu: not a JSON object", i);
    goto out_delete;
  }
  if (!members(o, top_names, top, 3) ||
      (cJSON_IsObject(top[1]) && !members(top[1], ev_names, evf, 3)) ||
      (cJSON_IsObject(top[2]) && !members(top[2], y_names, yf, 1))) {
    set_error(out, "event %zu: duplicate member", i);
    goto out_delete;
  }
  if (!cJSON_IsObject(top[2]) || !get_seq(yf[0], &ev->seq)) {
    set_error(out, "event %zu: yamori.stream_seq must be an integer >= 0", i);
    goto out_delete;
  }
  if (!cJSON_IsString(top[0]) || !parse_time(top[0]->valuestring, &ev->ts_ms)) {
    set_error(out, "event %zu: @timestamp missing or not ISO 8601 UTC", i);
    goto out_delete;
  }
  if (top[1] != NULL && !cJSON_IsObject(top[1])) {
    set_error(out, "event %zu: event must be an object", i);
    goto out_delete;
  }
  int arc = 0;
  for (int k = 0; k < 3; k++) {
    if (!take_field(evf[k], arena, &ev->off[k], &arc)) {
      set_error(out, "event %zu: event.%s must be a short string", i, ev_names[k]);
      goto out_delete;
    }
    if (arc != 0) {
      rc = arc;
      goto out_delete;
    }
  }
  ev->gap = cJSON_IsString(evf[2]) && strcmp(evf[2]->valuestring, "gap") == 0;
  rc = 0;
out_delete:
  cJSON_Delete(o);
  return rc;
}

/* Returns the next line of text[*pos..len) (without its "\n" or "\r\n") and
 * moves *pos past it. */
static const char *next_line(const char *text, size_t len, size_t *pos, size_t *line_len) {
  const char *p = text + *pos;
  const char *nl = memchr(p, '\n', len - *pos);
  size_t n = nl != NULL ? (size_t)(nl - p) : len - *pos;
  *pos += n + (nl != NULL);
  if (n > 0 && p[n - 1] == '\r')
    n--;
  *line_len = n;
  return p;
}

/* Checks the lines of out->text and fills out->events. */
static int parse_lines(ingest_batch_t *out) {
  const char *text = out->text;
  size_t len = out->text_len, pos = 0, line_len;
  const char *line = next_line(text, len, &pos, &line_len);
  int rc = parse_header(line, line_len, out);
  if (rc != 0)
    return rc;

  size_t count = (size_t)out->count;
  event_fields_t *fields = calloc(count, sizeof(*fields));
  size_t *starts = calloc(count, sizeof(*starts) * 2);
  ym_buf_t arena;
  ym_buf_init(&arena, count * 3 * (FIELD_MAX + 1));
  if (fields == NULL || starts == NULL) {
    rc = YM_ENOMEM;
    goto out_free;
  }
  for (size_t i = 0; i < count; i++) {
    if (pos >= len) {
      set_error(out, "fewer event lines than count");
      rc = YM_EPARSE;
      goto out_free;
    }
    line = next_line(text, len, &pos, &line_len);
    starts[2 * i] = (size_t)(line - text);
    starts[2 * i + 1] = line_len;
    event_fields_t *ev = &fields[i];
    rc = parse_event(line, line_len, i + 1, &arena, ev, out);
    if (rc != 0)
      goto out_free;
    rc = YM_EPARSE;
    if (i == 0 && ev->seq != out->first_seq) {
      set_error(out, "first event's stream_seq is not first_seq");
      goto out_free;
    }
    if (i > 0 && ev->seq <= fields[i - 1].seq) {
      set_error(out, "event %zu: stream_seq does not increase", i + 1);
      goto out_free;
    }
    if (i > 0 && !fields[i - 1].gap && ev->seq != fields[i - 1].seq + 1) {
      set_error(out, "event %zu: stream_seq skips numbers without a gap record", i + 1);
      goto out_free;
    }
    rc = 0;
  }
  if (fields[count - 1].seq != out->last_seq) {
    set_error(out, "last event's stream_seq is not last_seq");
    rc = YM_EPARSE;
    goto out_free;
  }
  for (; pos < len; pos++) {
    if (text[pos] != '\n' && text[pos] != '\r') {
      set_error(out, "more event lines than count");
      rc = YM_EPARSE;
      goto out_free;
    }
  }

  /* One block: the events, then their strings. */
  size_t arena_len = arena.len;
  char *block = malloc(count * sizeof(store_event_t) + arena_len + 1);
  if (block == NULL) {
    rc = YM_ENOMEM;
    goto out_free;
  }
  store_event_t *events = (store_event_t *)(void *)block;
  char *strs = block + count * sizeof(store_event_t);
  if (arena_len > 0)
    memcpy(strs, arena.data, arena_len);
  strs[arena_len] = '\0';
  for (size_t i = 0; i < count; i++) {
    const event_fields_t *ev = &fields[i];
    events[i] = (store_event_t){
        .seq = ev->seq,
        .ts_ms = ev->ts_ms,
        .kind = ev->off[0] ? strs + ev->off[0] - 1 : NULL,
        .dataset = ev->off[1] ? strs + ev->off[1] - 1 : NULL,
        .action = ev->off[2] ? strs + ev->off[2] - 1 : NULL,
        .json = text + starts[2 * i],
        .json_len = starts[2 * i + 1],
    };
  }
  out->events = events;
  out->n = count;
  rc = 0;
out_free:
  ym_buf_free(&arena);
  free(starts);
  free(fields);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Entry points                                                         */

int ingest_decode(const void *gz, size_t len, ingest_batch_t *out) {
  ym_buf_t text;
  memset(out, 0, sizeof(*out));
  ym_buf_init(&text, INGEST_MAX_DECOMPRESSED);
  int rc = gunzip(gz, len, &text, out);
  if (rc == 0 && text.len == 0) {
    set_error(out, "empty batch");
    rc = YM_EPARSE;
  }
  if (rc != 0) {
    ym_buf_free(&text);
    if (out->error[0] == '\0')
      set_error(out, "%s", ym_strerror(rc));
    return rc;
  }
  out->text = ym_buf_detach(&text, &out->text_len);
  rc = parse_lines(out);
  if (rc != 0) {
    char error[sizeof(out->error)];
    memcpy(error, out->error, sizeof(error));
    ingest_batch_free(out);
    memcpy(out->error, error, sizeof(error));
    if (out->error[0] == '\0')
      set_error(out, "%s", ym_strerror(rc));
  }
  return rc;
}

void ingest_batch_free(ingest_batch_t *b) {
  if (b == NULL)
    return;
  free(b->events);
  free(b->text);
  memset(b, 0, sizeof(*b));
}
