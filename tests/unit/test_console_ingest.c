/*
 * Tests of the batch decoder: a valid batch round trip, then each refusal
 * (not gzip, truncated, a gzip bomb, trailing data, a bad header, bad
 * sequence numbers, bad events), each on a body built and compressed here.
 */
#include "ingest.h"
#include "yamori/buf.h"
#include "yamori/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#define AGENT "8c3e6a0e-2b7f-4a4e-9d0a-7f4c1b2d9e11"
#define TS "2026-11-25T23:46:00.680720Z"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

/* Compresses p[0..n) as one gzip member (malloc'd; *out_len bytes). */
static unsigned char *gzip(const void *p, size_t n, size_t *out_len) {
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  size_t cap = deflateBound(&zs, (uLong)n) + 64;
  unsigned char *out = malloc(cap);
  assert_non_null(out);
  zs.next_in = (unsigned char *)(uintptr_t)p;
  zs.avail_in = (uInt)n;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
  *out_len = zs.total_out;
  deflateEnd(&zs);
  return out;
}

/* Appends one event line (no newline). extra is spliced into the object. */
static void add_event(ym_buf_t *b, int64_t seq, const char *action, const char *extra) {
  assert_int_equal(ym_buf_appendf(b,
                                  "{\"@timestamp\":\"" TS "\",\"event\":{\"kind\":\"event\","
                                  "\"dataset\":\"yamori.file\",\"action\":\"%s\"},"
                                  "\"file\":{\"path\":\"/tmp/f%lld\"}%s,"
                                  "\"yamori\":{\"stream_seq\":%lld}}",
                                  action, (long long)seq, extra, (long long)seq),
                   0);
}

/* Builds a body: the header, then one event per seq; the event at
 * position gap_at (from 1; 0: none) is a gap record. */
static void build(ym_buf_t *b, const char *stream, int64_t first, int64_t last, int64_t count,
                  const int64_t *seqs, size_t n, size_t gap_at) {
  ym_buf_init(b, 64 << 20);
  assert_int_equal(ym_buf_appendf(b,
                                  "{\"agent_id\":\"" AGENT "\",\"stream\":\"%s\","
                                  "\"first_seq\":%lld,\"last_seq\":%lld,\"count\":%lld}\n",
                                  stream, (long long)first, (long long)last, (long long)count),
                   0);
  for (size_t i = 0; i < n; i++) {
    add_event(b, seqs[i], i + 1 == gap_at ? "gap" : "creation", "");
    assert_int_equal(ym_buf_append_byte(b, '\n'), 0);
  }
}

/* Gzips text and decodes it. */
static int decode_text(const char *text, size_t len, ingest_batch_t *out) {
  size_t gz_len;
  unsigned char *gz = gzip(text, len, &gz_len);
  int rc = ingest_decode(gz, gz_len, out);
  free(gz);
  return rc;
}

/* Decodes text and expects failure rc with an error description. */
static void expect_refused(const char *text, size_t len, int want) {
  ingest_batch_t b;
  int rc = decode_text(text, len, &b);
  if (rc != want)
    fail_msg("want %s, got %s (%s)", ym_err_name(want), ym_err_name(rc), b.error);
  assert_true(b.error[0] != '\0');
  assert_null(b.events);
  assert_null(b.text);
  ingest_batch_free(&b);
}

static void expect_refused_str(const char *text, int want) {
  expect_refused(text, strlen(text), want);
}

static int64_t ts_ms_of(int y, int mo, int d, int h, int mi, int s, int ms) {
  struct tm tm = {
      .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};
  return (int64_t)timegm(&tm) * 1000 + ms;
}

/* ------------------------------------------------------------------ */
/* Tests                                                                */

static void valid_batch_round_trip(void **state) {
  (void)state;
  ym_buf_t b;
  const int64_t seqs[] = {1201, 1202, 1203};
  build(&b, "bulk", 1201, 1203, 3, seqs, 3, 0);
  ingest_batch_t out;
  assert_int_equal(decode_text(b.data, b.len, &out), 0);
  assert_string_equal(out.agent_id, AGENT);
  assert_string_equal(out.stream, "bulk");
  assert_int_equal(out.first_seq, 1201);
  assert_int_equal(out.last_seq, 1203);
  assert_int_equal(out.count, 3);
  assert_int_equal(out.n, 3);
  assert_int_equal(out.text_len, b.len);
  assert_memory_equal(out.text, b.data, b.len);

  /* Each event's json is its line, byte for byte. */
  const char *line = strchr(b.data, '\n') + 1;
  for (size_t i = 0; i < 3; i++) {
    const store_event_t *e = &out.events[i];
    const char *nl = strchr(line, '\n');
    assert_int_equal(e->json_len, (size_t)(nl - line));
    assert_memory_equal(e->json, line, e->json_len);
    assert_true(e->json >= out.text && e->json + e->json_len <= out.text + out.text_len);
    assert_int_equal(e->seq, seqs[i]);
    assert_int_equal(e->ts_ms, ts_ms_of(2026, 11, 25, 23, 46, 0, 680));
    assert_string_equal(e->kind, "event");
    assert_string_equal(e->dataset, "yamori.file");
    assert_string_equal(e->action, "creation");
    /* The strings live in the batch, not in the caller's text. */
    assert_false(e->kind >= b.data && e->kind < b.data + b.len);
    line = nl + 1;
  }
  ingest_batch_free(&out);
  ingest_batch_free(&out); /* a freed batch may be freed again */
  ym_buf_free(&b);
}

static void accepts_crlf_trailing_blank_and_members(void **state) {
  (void)state;
  /* CRLF line ends and a blank trailing line. */
  const char *text = "{\"agent_id\":\"a1\",\"stream\":\"alerts\",\"first_seq\":0,\"last_seq\":0,"
                     "\"count\":1}\r\n"
                     "{\"@timestamp\":\"1970-01-01T00:00:00Z\",\"yamori\":{\"stream_seq\":0}}\r\n"
                     "\r\n";
  ingest_batch_t out;
  assert_int_equal(decode_text(text, strlen(text), &out), 0);
  assert_int_equal(out.n, 1);
  assert_int_equal(out.events[0].ts_ms, 0);
  assert_null(out.events[0].kind); /* optional fields may be missing */
  assert_null(out.events[0].action);
  assert_int_equal(out.events[0].json_len, strlen(strchr(text, '\n') + 1) - 4);
  ingest_batch_free(&out);

  /* Two gzip members are one body (RFC 1952), split anywhere. */
  size_t cut = 50, l1, l2;
  unsigned char *g1 = gzip(text, cut, &l1), *g2 = gzip(text + cut, strlen(text) - cut, &l2);
  unsigned char *both = malloc(l1 + l2);
  assert_non_null(both);
  memcpy(both, g1, l1);
  memcpy(both + l1, g2, l2);
  assert_int_equal(ingest_decode(both, l1 + l2, &out), 0);
  assert_int_equal(out.n, 1);
  ingest_batch_free(&out);
  free(both);
  free(g1);
  free(g2);
}

static void refuses_not_gzip(void **state) {
  (void)state;
  ingest_batch_t out;
  const char *plain = "{\"agent_id\":\"a\"}\n";
  assert_int_equal(ingest_decode(plain, strlen(plain), &out), YM_EPARSE);
  assert_string_equal(out.error, "body is not gzip");
  assert_int_equal(ingest_decode("", 0, &out), YM_EPARSE);
  assert_int_equal(ingest_decode("\x1f", 1, &out), YM_EPARSE);

  /* A zlib stream is deflate too, but not the gzip the protocol asks for. */
  unsigned char z[256];
  uLongf zlen = sizeof(z);
  assert_int_equal(compress(z, &zlen, (const Bytef *)plain, (uLong)strlen(plain)), Z_OK);
  assert_int_equal(ingest_decode(z, zlen, &out), YM_EPARSE);

  /* The gzip magic followed by garbage. */
  assert_int_equal(ingest_decode("\x1f\x8b\x08\x00garbagegarbage", 18, &out), YM_EPARSE);
  assert_null(out.text);
}

static void refuses_truncated_gzip(void **state) {
  (void)state;
  ym_buf_t b;
  const int64_t seqs[] = {1, 2};
  build(&b, "bulk", 1, 2, 2, seqs, 2, 0);
  size_t gz_len;
  unsigned char *gz = gzip(b.data, b.len, &gz_len);
  ingest_batch_t out;
  assert_int_equal(ingest_decode(gz, gz_len, &out), 0);
  ingest_batch_free(&out);
  /* Cut anywhere: in the trailer (CRC-32, size), in the data, in the
   * header. */
  const size_t cuts[] = {1, 4, 8, gz_len / 2, gz_len - 9};
  for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
    assert_int_equal(ingest_decode(gz, gz_len - cuts[i], &out), YM_EPARSE);
    assert_true(out.error[0] != '\0');
  }
  /* A flipped bit in the data fails the CRC or the inflater. */
  gz[gz_len / 2] ^= 0x10;
  assert_int_equal(ingest_decode(gz, gz_len, &out), YM_EPARSE);
  free(gz);
  ym_buf_free(&b);
}

/* Compresses `total` zero bytes without holding them in memory. */
static unsigned char *gzip_zeros(size_t total, size_t *out_len) {
  static unsigned char zeros[1 << 16];
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
  size_t cap = total / 500 + 4096, done = 0;
  unsigned char *out = malloc(cap);
  assert_non_null(out);
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  int zr;
  do {
    size_t n = total - done < sizeof(zeros) ? total - done : sizeof(zeros);
    zs.next_in = zeros;
    zs.avail_in = (uInt)n;
    done += n;
    zr = deflate(&zs, done == total ? Z_FINISH : Z_NO_FLUSH);
    assert_true(zr == Z_OK || zr == Z_STREAM_END);
    assert_int_equal(zs.avail_in, 0);
  } while (done < total);
  assert_int_equal(zr, Z_STREAM_END);
  *out_len = zs.total_out;
  deflateEnd(&zs);
  return out;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#ifndef UNDER_ASAN
/* Reads VmData (kB) of this process. */
static long vm_data_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  assert_non_null(f);
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "VmData:", 7) == 0)
      kb = strtol(line + 7, NULL, 10);
  }
  fclose(f);
  return kb;
}
#endif

static void refuses_gzip_bomb(void **state) {
  (void)state;
  size_t gz_len;
  unsigned char *gz = gzip_zeros((size_t)100 << 20, &gz_len);
  assert_true(gz_len < 200 * 1024); /* ~100 KiB for 100 MiB */
  ingest_batch_t out;
  double t0 = now_s();
  assert_int_equal(ingest_decode(gz, gz_len, &out), YM_ETOOBIG);
  double dt = now_s() - t0;
  print_message("gzip bomb: %zu bytes refused in %.3f s\n", gz_len, dt);
  assert_true(dt < 5.0); /* stopped at the cap, not after 100 MiB */
  assert_null(out.text);
  assert_true(out.error[0] != '\0');

#ifndef UNDER_ASAN
  /* In a child whose data segment may grow by 80 MiB only: decoding the
   * whole bomb needs more than 100 MiB and would fail with YM_ENOMEM; the
   * capped decoder needs at most the cap. (ASan's shadow memory counts as
   * data, so this part runs in normal builds only.) */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = ((rlim_t)vm_data_kb() << 10) + ((rlim_t)80 << 20);
    if (setrlimit(RLIMIT_DATA, &rl) != 0)
      _exit(2);
    ingest_batch_t child;
    _exit(ingest_decode(gz, gz_len, &child) == YM_ETOOBIG ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
#endif
  free(gz);

  /* Exactly at the cap is fine as far as gunzip goes (then it is not a
   * batch); one byte more is too big. */
  gz = gzip_zeros(INGEST_MAX_DECOMPRESSED, &gz_len);
  assert_int_equal(ingest_decode(gz, gz_len, &out), YM_EPARSE);
  free(gz);
  gz = gzip_zeros(INGEST_MAX_DECOMPRESSED + 1, &gz_len);
  assert_int_equal(ingest_decode(gz, gz_len, &out), YM_ETOOBIG);
  free(gz);
}

static void refuses_trailing_garbage(void **state) {
  (void)state;
  ym_buf_t b;
  const int64_t seqs[] = {7};
  build(&b, "alerts", 7, 7, 1, seqs, 1, 0);
  size_t gz_len;
  unsigned char *gz = gzip(b.data, b.len, &gz_len);
  unsigned char *more = malloc(gz_len + 8);
  assert_non_null(more);
  memcpy(more, gz, gz_len);
  memcpy(more + gz_len, "garbage!", 8);
  ingest_batch_t out;
  assert_int_equal(ingest_decode(more, gz_len + 8, &out), YM_EPARSE);
  assert_string_equal(out.error, "data after the gzip stream");
  more[gz_len] = 0; /* zero padding is garbage too */
  assert_int_equal(ingest_decode(more, gz_len + 1, &out), YM_EPARSE);
  /* A second member that is itself cut short. */
  memcpy(more + gz_len, gz, 8);
  assert_int_equal(ingest_decode(more, gz_len + 8, &out), YM_EPARSE);
  free(more);
  free(gz);
  ym_buf_free(&b);
}

static void refuses_malformed_header(void **state) {
  (void)state;
  const char *ev = "\n{\"@timestamp\":\"" TS "\",\"yamori\":{\"stream_seq\":1}}\n";
  const char *headers[] = {
      "",
      "not json",
      "[1,2,3]",
      "{\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,\"count\":1}",
      "{\"agent_id\":7,\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,\"count\":1}",
      "{\"agent_id\":\"\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,\"count\":1}",
      "{\"agent_id\":\"a b\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,\"count\":1}",
      "{\"agent_id\":\"0123456789012345678901234567890123456789012345678901234567890123\","
      "\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,\"count\":1}",
      "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":-1,\"last_seq\":1,\"count\":1}",
      "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1.5,\"last_seq\":1,\"count\":1}",
      "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":\"1\",\"last_seq\":1,\"count\":1}",
      "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1}",
      "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,\"count\":0}",
      "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":2,\"last_seq\":1,\"count\":1}",
      "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":2,\"count\":3}",
      "{\"agent_id\":\"a\",\"agent_id\":\"b\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,"
      "\"count\":1}",
      "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,\"count\":1} x",
  };
  for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
    ym_buf_t b;
    ym_buf_init(&b, 1 << 16);
    assert_int_equal(ym_buf_append_str(&b, headers[i]), 0);
    assert_int_equal(ym_buf_append_str(&b, ev), 0);
    expect_refused(b.data, b.len, YM_EPARSE);
    ym_buf_free(&b);
  }
  /* Too many events is 413 (the agent splits the batch). */
  expect_refused_str("{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":10001,"
                     "\"count\":10001}\n",
                     YM_ETOOBIG);
}

static void refuses_wrong_stream(void **state) {
  (void)state;
  const char *streams[] = {"other", "", "Bulk", "alerts "};
  for (size_t i = 0; i < sizeof(streams) / sizeof(streams[0]); i++) {
    ym_buf_t b;
    const int64_t seqs[] = {1};
    build(&b, streams[i], 1, 1, 1, seqs, 1, 0);
    expect_refused(b.data, b.len, YM_EPARSE);
    ym_buf_free(&b);
  }
  expect_refused_str("{\"agent_id\":\"a\",\"stream\":1,\"first_seq\":1,\"last_seq\":1,"
                     "\"count\":1}\n{\"@timestamp\":\"" TS "\",\"yamori\":{\"stream_seq\":1}}\n",
                     YM_EPARSE);
}

static void refuses_count_mismatch(void **state) {
  (void)state;
  ym_buf_t b;
  const int64_t seqs[] = {1, 2, 3};
  build(&b, "bulk", 1, 3, 4, seqs, 3, 0); /* fewer lines than count */
  expect_refused(b.data, b.len, YM_EPARSE);
  ym_buf_free(&b);
  build(&b, "bulk", 1, 2, 2, seqs, 3, 0); /* more lines than count */
  expect_refused(b.data, b.len, YM_EPARSE);
  ym_buf_free(&b);
  build(&b, "bulk", 2, 3, 3, seqs, 3, 0); /* first_seq is not the first */
  expect_refused(b.data, b.len, YM_EPARSE);
  ym_buf_free(&b);
  build(&b, "bulk", 1, 4, 3, seqs, 3, 0); /* last_seq is not the last */
  expect_refused(b.data, b.len, YM_EPARSE);
  ym_buf_free(&b);
}

static void refuses_seq_not_increasing(void **state) {
  (void)state;
  const int64_t same[] = {5, 5, 6}, back[] = {5, 6, 4};
  ym_buf_t b;
  build(&b, "bulk", 5, 6, 3, same, 3, 0);
  expect_refused(b.data, b.len, YM_EPARSE);
  ym_buf_free(&b);
  build(&b, "bulk", 5, 4, 3, back, 3, 0);
  expect_refused(b.data, b.len, YM_EPARSE);
  ym_buf_free(&b);
  /* Even after a gap record, numbers only go up. */
  build(&b, "bulk", 5, 6, 3, back, 3, 2);
  expect_refused(b.data, b.len, YM_EPARSE);
  ym_buf_free(&b);
}

static void seq_gap_needs_a_gap_record(void **state) {
  (void)state;
  const int64_t seqs[] = {1, 2, 50, 51};
  ym_buf_t b;
  ingest_batch_t out;
  build(&b, "bulk", 1, 51, 4, seqs, 4, 0); /* no gap record */
  expect_refused(b.data, b.len, YM_EPARSE);
  ym_buf_free(&b);
  build(&b, "bulk", 1, 51, 4, seqs, 4, 1); /* the gap record is not right before */
  expect_refused(b.data, b.len, YM_EPARSE);
  ym_buf_free(&b);
  build(&b, "bulk", 1, 51, 4, seqs, 4, 2); /* event 2 is the gap record */
  assert_int_equal(decode_text(b.data, b.len, &out), 0);
  assert_int_equal(out.n, 4);
  assert_string_equal(out.events[1].action, "gap");
  assert_int_equal(out.events[2].seq, 50);
  ingest_batch_free(&out);
  ym_buf_free(&b);
}

/* A one-event batch whose event line is ev. */
static void expect_event_refused(const char *ev, int want) {
  ym_buf_t b;
  ym_buf_init(&b, 1 << 20);
  assert_int_equal(ym_buf_append_str(&b, "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1,"
                                         "\"last_seq\":1,\"count\":1}\n"),
                   0);
  assert_int_equal(ym_buf_append_str(&b, ev), 0);
  assert_int_equal(ym_buf_append_byte(&b, '\n'), 0);
  expect_refused(b.data, b.len, want);
  ym_buf_free(&b);
}

static void refuses_event_not_object(void **state) {
  (void)state;
  expect_event_refused("[1,2]", YM_EPARSE);
  expect_event_refused("\"text\"", YM_EPARSE);
  expect_event_refused("", YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"yamori\":{\"stream_seq\":1}", YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"yamori\":{\"stream_seq\":1}} {}", YM_EPARSE);
  /* A blank line between the header and the events. */
  expect_refused_str("{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,"
                     "\"count\":1}\n\n{\"@timestamp\":\"" TS "\",\"yamori\":{\"stream_seq\":1}}\n",
                     YM_EPARSE);
}

static void refuses_bad_event_fields(void **state) {
  (void)state;
  /* stream_seq missing, of another type, negative, fractional. */
  expect_event_refused("{\"@timestamp\":\"" TS "\"}", YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"yamori\":{\"stream_seq\":\"1\"}}", YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"yamori\":1}", YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"yamori\":{\"stream_seq\":1.5}}", YM_EPARSE);
  /* Duplicates of indexed members. */
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"yamori\":{\"stream_seq\":1,\"stream_seq\":2}}",
                       YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"@timestamp\":\"" TS
                       "\",\"yamori\":{\"stream_seq\":1}}",
                       YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"event\":{\"kind\":\"a\",\"kind\":\"alert\"},"
                       "\"yamori\":{\"stream_seq\":1}}",
                       YM_EPARSE);
  /* event and its strings of the wrong type or size. */
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"event\":[],\"yamori\":{\"stream_seq\":1}}",
                       YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"event\":{\"kind\":1},"
                       "\"yamori\":{\"stream_seq\":1}}",
                       YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"event\":{\"dataset\":\"01234567890123456789"
                       "012345678901234567890123456789012345678901234\"},"
                       "\"yamori\":{\"stream_seq\":1}}",
                       YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"event\":{\"action\":\"a\\u0001\"},"
                       "\"yamori\":{\"stream_seq\":1}}",
                       YM_EPARSE);
  /* Text that cJSON takes but a browser does not: a raw control character
   * in a string, invalid UTF-8, a NUL byte. */
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"x\":\"a\tb\",\"yamori\":{\"stream_seq\":1}}",
                       YM_EPARSE);
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"x\":\"a\xff\",\"yamori\":{\"stream_seq\":1}}",
                       YM_EPARSE);
  const char nul[] = "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,"
                     "\"count\":1}\n{\"@timestamp\":\"" TS "\",\"yamori\":{\"stream_seq\":1}}\0\n";
  expect_refused(nul, sizeof(nul) - 1, YM_EPARSE);
}

static void refuses_oversized_event(void **state) {
  (void)state;
  ym_buf_t ev;
  ym_buf_init(&ev, 1 << 20);
  assert_int_equal(ym_buf_append_str(&ev, "{\"@timestamp\":\"" TS "\",\"pad\":\""), 0);
  while (ev.len < INGEST_MAX_EVENT_BYTES)
    assert_int_equal(ym_buf_append_str(&ev, "xxxxxxxxxxxxxxxx"), 0);
  assert_int_equal(ym_buf_append_str(&ev, "\",\"yamori\":{\"stream_seq\":1}}"), 0);
  expect_event_refused(ev.data, YM_EPARSE);
  /* Just under the limit is fine. */
  ym_buf_t b;
  ym_buf_init(&b, 1 << 20);
  assert_int_equal(ym_buf_append_str(&b, "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1,"
                                         "\"last_seq\":1,\"count\":1}\n"),
                   0);
  size_t start = b.len;
  assert_int_equal(ym_buf_append_str(&b, "{\"@timestamp\":\"" TS "\",\"pad\":\""), 0);
  size_t tail = strlen("\",\"yamori\":{\"stream_seq\":1}}");
  while (b.len - start + tail < INGEST_MAX_EVENT_BYTES)
    assert_int_equal(ym_buf_append_byte(&b, 'y'), 0);
  assert_int_equal(ym_buf_append_str(&b, "\",\"yamori\":{\"stream_seq\":1}}\n"), 0);
  ingest_batch_t out;
  assert_int_equal(decode_text(b.data, b.len, &out), 0);
  assert_int_equal(out.events[0].json_len, INGEST_MAX_EVENT_BYTES);
  ingest_batch_free(&out);
  ym_buf_free(&b);
  ym_buf_free(&ev);
}

static void timestamps(void **state) {
  (void)state;
  struct {
    const char *ts;
    int64_t ms; /* -1: refused */
  } cases[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"2000-02-29T12:34:56.7Z", ts_ms_of(2000, 2, 29, 12, 34, 56, 700)},
      {"2026-11-25T23:46:00.680720Z", ts_ms_of(2026, 11, 25, 23, 46, 0, 680)},
      {"2026-11-25T23:46:00.999999999Z", ts_ms_of(2026, 11, 25, 23, 46, 0, 999)},
      {"2016-12-31T23:59:60Z", ts_ms_of(2017, 1, 1, 0, 0, 0, 0)},
      {"9999-12-31T23:59:59Z", ts_ms_of(9999, 12, 31, 23, 59, 59, 0)},
      {"1969-12-31T23:59:59Z", -1},
      {"2026-13-01T00:00:00Z", -1},
      {"2026-00-01T00:00:00Z", -1},
      {"2026-02-29T00:00:00Z", -1},
      {"1900-02-29T00:00:00Z", -1},
      {"2026-04-31T00:00:00Z", -1},
      {"2026-11-25T24:00:00Z", -1},
      {"2026-11-25T23:60:00Z", -1},
      {"2026-11-25T23:46:00", -1},
      {"2026-11-25T23:46:00+09:00", -1},
      {"2026-11-25 23:46:00Z", -1},
      {"2026-11-25T23:46:00.Z", -1},
      {"2026-11-25T23:46:00.1234567890Z", -1},
      {"2026-11-25T23:46:00ZZ", -1},
      {"+026-11-25T23:46:00Z", -1},
      {"", -1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char text[512];
    snprintf(text, sizeof(text),
             "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":1,\"last_seq\":1,"
             "\"count\":1}\n{\"@timestamp\":\"%s\",\"yamori\":{\"stream_seq\":1}}\n",
             cases[i].ts);
    ingest_batch_t out;
    int rc = decode_text(text, strlen(text), &out);
    if (cases[i].ms < 0) {
      if (rc != YM_EPARSE)
        fail_msg("%s: accepted", cases[i].ts);
      continue;
    }
    if (rc != 0)
      fail_msg("%s: %s", cases[i].ts, out.error);
    assert_int_equal(out.events[0].ts_ms, cases[i].ms);
    ingest_batch_free(&out);
  }
  /* Missing, or not a string. */
  expect_event_refused("{\"yamori\":{\"stream_seq\":1}}", YM_EPARSE);
  expect_event_refused("{\"@timestamp\":1764114360,\"yamori\":{\"stream_seq\":1}}", YM_EPARSE);
}

static void byte_escapes_accepted_and_kept(void **state) {
  (void)state;
  /* A path with bytes that are not UTF-8, escaped by the agent: accepted;
   * the stored line is the line as sent. */
  const char *line = "{\"@timestamp\":\"" TS "\",\"event\":{\"kind\":\"event\",\"action\":"
                     "\"creation\"},\"file\":{\"path\":\"/home/u/caf\\udce9\\udcff.txt\"},"
                     "\"process\":{\"command_line\":\"x \\\\udc80 \\ud83d\\ude00\"},"
                     "\"yamori\":{\"stream_seq\":9}}";
  ym_buf_t b;
  ym_buf_init(&b, 1 << 16);
  assert_int_equal(ym_buf_append_str(&b, "{\"agent_id\":\"a\",\"stream\":\"bulk\",\"first_seq\":9,"
                                         "\"last_seq\":9,\"count\":1}\n"),
                   0);
  assert_int_equal(ym_buf_append_str(&b, line), 0);
  ingest_batch_t out;
  assert_int_equal(decode_text(b.data, b.len, &out), 0); /* no final newline */
  assert_int_equal(out.events[0].json_len, strlen(line));
  assert_memory_equal(out.events[0].json, line, strlen(line));
  assert_string_equal(out.events[0].kind, "event");
  ingest_batch_free(&out);
  ym_buf_free(&b);
  /* The indexed strings are ECS keywords: bytes that are not UTF-8 there
   * are a bad field. */
  expect_event_refused("{\"@timestamp\":\"" TS "\",\"event\":{\"action\":\"x\\udce9\"},"
                       "\"yamori\":{\"stream_seq\":1}}",
                       YM_EPARSE);
}

/* Informative: how fast one core decodes realistic batches (gunzip, parse,
 * checks). Asserts only that every batch decodes. */
static void decode_throughput(void **state) {
  (void)state;
  enum { BATCHES = 50, EVENTS = 1000 };
  ym_buf_t b;
  ym_buf_init(&b, 64 << 20);
  assert_int_equal(ym_buf_appendf(&b,
                                  "{\"agent_id\":\"" AGENT "\",\"stream\":\"bulk\","
                                  "\"first_seq\":1,\"last_seq\":%d,\"count\":%d}\n",
                                  EVENTS, EVENTS),
                   0);
  for (int64_t seq = 1; seq <= EVENTS; seq++) {
    add_event(&b, seq, "creation",
              ",\"process\":{\"pid\":4242,\"executable\":\"/usr/bin/libreoffice\","
              "\"entity_id\":\"e3b0c44298fc1c14\"},\"user\":{\"name\":\"user\"}");
    assert_int_equal(ym_buf_append_byte(&b, '\n'), 0);
  }
  size_t gz_len;
  unsigned char *gz = gzip(b.data, b.len, &gz_len);
  double t0 = now_s();
  for (int i = 0; i < BATCHES; i++) {
    ingest_batch_t out;
    assert_int_equal(ingest_decode(gz, gz_len, &out), 0);
    assert_int_equal(out.n, EVENTS);
    ingest_batch_free(&out);
  }
  double dt = now_s() - t0;
  print_message("ingest: %d batches of %d events (%zu bytes, %zu gzip): %.0f events/s\n", BATCHES,
                EVENTS, b.len, gz_len, BATCHES * EVENTS / dt);
  free(gz);
  ym_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(valid_batch_round_trip),
      cmocka_unit_test(accepts_crlf_trailing_blank_and_members),
      cmocka_unit_test(refuses_not_gzip),
      cmocka_unit_test(refuses_truncated_gzip),
      cmocka_unit_test(refuses_gzip_bomb),
      cmocka_unit_test(refuses_trailing_garbage),
      cmocka_unit_test(refuses_malformed_header),
      cmocka_unit_test(refuses_wrong_stream),
      cmocka_unit_test(refuses_count_mismatch),
      cmocka_unit_test(refuses_seq_not_increasing),
      cmocka_unit_test(seq_gap_needs_a_gap_record),
      cmocka_unit_test(refuses_event_not_object),
      cmocka_unit_test(refuses_bad_event_fields),
      cmocka_unit_test(refuses_oversized_event),
      cmocka_unit_test(timestamps),
      cmocka_unit_test(byte_escapes_accepted_and_kept),
      cmocka_unit_test(decode_throughput),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
