/*
 * Tests of the uplink's pure parts and of its life cycle on a real loop:
 * the backoff (bounds, growth, full jitter, the Retry-After floor), the
 * events request body (gunzipped with zlib it is the header line and the
 * batch's event lines, as two gzip members), and an uplink that starts
 * without an identity, notices one written while it runs, and backs off
 * when the console's address refuses connections. Exchanges with a real
 * console are tested by the integration tests.
 */
#include "identity.h"
#include "spool.h"
#include "uplink.h"

#include "yamori/err.h"
#include "yamori/json.h"

#include <dirent.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#define AGENT_ID "8c3e6a0e-2b7f-4a4e-9d0a-7f4c1b2d9e11"

/* ------------------------------------------------------------------ */
/* Backoff                                                              */

static uint64_t window_of(unsigned failures) {
  uint64_t w = 1000;
  for (unsigned i = 1; i < failures && w < 300000; i++)
    w *= 2;
  return w < 300000 ? w : 300000;
}

static void backoff_bounds_and_growth(void **state) {
  (void)state;
  /* The window: 1 s, 2 s, 4 s ... capped at 300 s (from the 10th failure
   * on: 2^9 s > 300 s), also for absurd failure counts. */
  assert_int_equal(window_of(1), 1000);
  assert_int_equal(window_of(9), 256000);
  assert_int_equal(window_of(10), 300000);
  for (unsigned f = 1; f < 200; f++) {
    uint64_t w = window_of(f);
    /* rnd = w reaches the top of the window, rnd = 0 the bottom. */
    assert_int_equal(uplink_backoff_ms(f, 0, w), w);
    assert_int_equal(uplink_backoff_ms(f, 0, 0), 0);
    assert_int_equal(uplink_backoff_ms(f, 0, w + 1), 0);
    assert_true(uplink_backoff_ms(f, 0, UINT64_MAX) <= w);
  }
  assert_int_equal(uplink_backoff_ms(UINT32_MAX, 0, 300000), 300000);
  /* 0 failures is treated as the first. */
  assert_int_equal(uplink_backoff_ms(0, 0, 1000), 1000);
  assert_true(uplink_backoff_ms(0, 0, UINT64_MAX) <= 1000);
}

static void backoff_full_jitter(void **state) {
  (void)state;
  /* Drawn from a real random source, waits cover [0, window] evenly: the
   * mean is near half the window and both ends are reached. */
  for (unsigned f = 1; f <= 12; f++) {
    uint64_t w = window_of(f), lo = UINT64_MAX, hi = 0;
    double sum = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
      uint64_t r;
      assert_int_equal(getrandom(&r, sizeof(r), 0), (ssize_t)sizeof(r));
      uint64_t d = uplink_backoff_ms(f, 0, r);
      assert_true(d <= w);
      lo = d < lo ? d : lo;
      hi = d > hi ? d : hi;
      sum += (double)d;
    }
    double mean = sum / n;
    assert_true(mean > 0.45 * (double)w && mean < 0.55 * (double)w);
    assert_true(lo < w / 50 + 1);
    assert_true(hi > w - w / 50 - 1);
  }
}

static void backoff_retry_after(void **state) {
  (void)state;
  for (unsigned f = 1; f < 20; f++) {
    uint64_t w = window_of(f);
    const uint64_t ras[] = {1000, 5000, 30000, 120000, 600000};
    for (size_t k = 0; k < sizeof(ras) / sizeof(ras[0]); k++) {
      uint64_t ra = ras[k], spread = w < ra ? w : ra;
      /* Never earlier than Retry-After, at most Retry-After plus the
       * smaller of the window and Retry-After itself. */
      assert_int_equal(uplink_backoff_ms(f, ra, 0), ra);
      assert_int_equal(uplink_backoff_ms(f, ra, spread), ra + spread);
      for (int i = 0; i < 1000; i++) {
        uint64_t r;
        assert_int_equal(getrandom(&r, sizeof(r), 0), (ssize_t)sizeof(r));
        uint64_t d = uplink_backoff_ms(f, ra, r);
        assert_true(d >= ra && d <= ra + spread);
      }
    }
  }
  /* An absurd Retry-After is capped at one hour. */
  uint64_t d = uplink_backoff_ms(1, 1000000000000ULL, 0);
  assert_int_equal(d, UPLINK_RETRY_AFTER_MAX_MS);
  assert_true(uplink_backoff_ms(30, 1000000000000ULL, UINT64_MAX) <=
              UPLINK_RETRY_AFTER_MAX_MS + UPLINK_BACKOFF_MAX_MS);
}

/* ------------------------------------------------------------------ */
/* Request body                                                         */

/* gzip of len bytes, one member (as the spool stores a batch). */
static void gzip_into(const char *in, size_t len, ym_buf_t *out) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  uLong bound = deflateBound(&z, (uLong)len);
  assert_int_equal(ym_buf_reserve(out, bound), 0);
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)len;
  z.next_out = (Bytef *)out->data + out->len;
  z.avail_out = (uInt)bound;
  assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
  out->len += z.total_out;
  deflateEnd(&z);
}

/* Decompresses a gzip body as a server using zlib must: continuing after
 * each member's end while input remains. all false: stop after the first
 * member. Returns the number of members read. */
static int gunzip(const ym_buf_t *in, bool all, ym_buf_t *out) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
  z.next_in = (Bytef *)in->data;
  z.avail_in = (uInt)in->len;
  int members = 0;
  for (;;) {
    assert_int_equal(ym_buf_reserve(out, 65536), 0);
    z.next_out = (Bytef *)out->data + out->len;
    z.avail_out = 65536;
    int zr = inflate(&z, Z_NO_FLUSH);
    out->len += 65536 - z.avail_out;
    if (zr == Z_STREAM_END) {
      members++;
      if (!all || z.avail_in == 0)
        break;
      assert_int_equal(inflateReset(&z), Z_OK);
      continue;
    }
    assert_int_equal(zr, Z_OK);
  }
  out->data[out->len] = '\0';
  inflateEnd(&z);
  return members;
}

static void body_is_header_and_lines(void **state) {
  (void)state;
  /* The batch as the spool has it: event lines, each ending in '\n'. */
  ym_buf_t lines;
  ym_buf_init(&lines, 1 << 22);
  for (int i = 0; i < 250; i++)
    assert_int_equal(
        ym_buf_appendf(&lines,
                       "{\"@timestamp\":\"2026-11-25T23:46:00.%06dZ\",\"event\":"
                       "{\"kind\":\"event\"},\"file\":{\"path\":\"/home/u/\\udcff%d\"},"
                       "\"yamori\":{\"stream_seq\":%d}}\n",
                       i, i, 1201 + i),
        0);
  ym_buf_t gz;
  ym_buf_init(&gz, 1 << 22);
  gzip_into(lines.data, lines.len, &gz);

  ym_buf_t body;
  ym_buf_init(&body, UPLINK_BODY_MAX);
  assert_int_equal(uplink_build_body(AGENT_ID, SPOOL_BULK, 1201, 1450, 250, gz.data, gz.len, &body),
                   0);
  /* The payload is carried as it is, after the header member. */
  assert_true(body.len > gz.len);
  assert_memory_equal(body.data + body.len - gz.len, gz.data, gz.len);

  ym_buf_t out;
  ym_buf_init(&out, 1 << 23);
  assert_int_equal(gunzip(&body, true, &out), 2);
  const char *hdr = "{\"agent_id\":\"" AGENT_ID "\",\"stream\":\"bulk\",\"first_seq\":1201,"
                    "\"last_seq\":1450,\"count\":250}\n";
  assert_int_equal(out.len, strlen(hdr) + lines.len);
  assert_memory_equal(out.data, hdr, strlen(hdr));
  assert_memory_equal(out.data + strlen(hdr), lines.data, lines.len);

  /* The header line is a JSON object with the protocol's fields. */
  cJSON *j = NULL;
  assert_int_equal(ym_json_parse(out.data, strlen(hdr) - 1, 4096, &j, NULL), 0);
  long long v;
  assert_string_equal(ym_json_get_str(j, "agent_id"), AGENT_ID);
  assert_string_equal(ym_json_get_str(j, "stream"), "bulk");
  assert_true(ym_json_get_int(j, "first_seq", &v) && v == 1201);
  assert_true(ym_json_get_int(j, "last_seq", &v) && v == 1450);
  assert_true(ym_json_get_int(j, "count", &v) && v == 250);
  cJSON_Delete(j);

  /* A reader that stops at the first member's end sees only the header:
   * the console must go on after Z_STREAM_END. */
  ym_buf_t first;
  ym_buf_init(&first, 1 << 23);
  assert_int_equal(gunzip(&body, false, &first), 1);
  assert_string_equal(first.data, hdr);

  /* The alerts stream, and large sequence numbers. */
  ym_buf_reset(&body);
  ym_buf_reset(&out);
  assert_int_equal(uplink_build_body(AGENT_ID, SPOOL_ALERTS, 9007199254740000ULL,
                                     9007199254740000ULL, 1, gz.data, gz.len, &body),
                   0);
  assert_int_equal(gunzip(&body, true, &out), 2);
  assert_non_null(strstr(out.data, "\"stream\":\"alerts\",\"first_seq\":9007199254740000,"
                                   "\"last_seq\":9007199254740000,\"count\":1}\n"));

  ym_buf_free(&first);
  ym_buf_free(&out);
  ym_buf_free(&body);
  ym_buf_free(&gz);
  ym_buf_free(&lines);
}

static void body_refusals(void **state) {
  (void)state;
  ym_buf_t body;
  ym_buf_init(&body, UPLINK_BODY_MAX);
  const char gz[] = "x";
  /* An agent id that would break the header line, or none. */
  assert_int_equal(uplink_build_body("a\"b", SPOOL_BULK, 1, 1, 1, gz, 1, &body), YM_EINVAL);
  assert_int_equal(uplink_build_body("a\nb", SPOOL_BULK, 1, 1, 1, gz, 1, &body), YM_EINVAL);
  assert_int_equal(uplink_build_body("", SPOOL_BULK, 1, 1, 1, gz, 1, &body), YM_EINVAL);
  char longid[80];
  memset(longid, 'a', sizeof(longid) - 1);
  longid[sizeof(longid) - 1] = '\0';
  assert_int_equal(uplink_build_body(longid, SPOOL_BULK, 1, 1, 1, gz, 1, &body), YM_EINVAL);
  assert_int_equal(uplink_build_body(AGENT_ID, (spool_stream_t)7, 1, 1, 1, gz, 1, &body),
                   YM_EINVAL);
  ym_buf_free(&body);
  /* A body over the buffer's cap. */
  ym_buf_init(&body, 1024);
  char *big = calloc(1, 2048);
  assert_non_null(big);
  assert_int_equal(uplink_build_body(AGENT_ID, SPOOL_BULK, 1, 1, 1, big, 2048, &body), YM_ETOOBIG);
  free(big);
  ym_buf_free(&body);
}

/* ------------------------------------------------------------------ */
/* Life cycle on a real loop                                            */

typedef struct {
  char dir[PATH_MAX];
  char spool_dir[PATH_MAX + 16];
  uv_loop_t loop;
  uv_timer_t tick;
  spool_t *spool;
  uplink_t *up;
  int status_calls;
} fixture_t;

static void on_tick(uv_timer_t *t) {
  (void)t;
}

static void on_ready(void *data) {
  fixture_t *f = data;
  if (f->up != NULL)
    uplink_kick(f->up);
}

static char *status_json(void *data) {
  fixture_t *f = data;
  f->status_calls++;
  return strdup("{\"rules_version\":\"02615eba569f6fdb\",\"status\":{\"sensors\":{}},"
                "\"counters\":{\"events\":1}}");
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  char tmpl[] = "/tmp/ym-uplink-XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  snprintf(f->dir, sizeof(f->dir), "%s", tmpl);
  snprintf(f->spool_dir, sizeof(f->spool_dir), "%s/spool", tmpl);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  uv_timer_init(&f->loop, &f->tick);
  uv_timer_start(&f->tick, on_tick, 20, 20);
  spool_opts_t o = {f->spool_dir, 64 << 20, 1 << 20, 100};
  assert_int_equal(spool_new(&f->loop, &o, on_ready, NULL, f, &f->spool), 0);
  *state = f;
  return 0;
}

static void rm_tree(const char *path) {
  DIR *d = opendir(path);
  if (d == NULL) {
    unlink(path);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
    rm_tree(p);
  }
  closedir(d);
  rmdir(path);
}

static void on_closed(uv_handle_t *h) {
  (void)h;
}

/* Runs the loop until done(f) or ms have passed. */
static bool run_until(fixture_t *f, bool (*done)(fixture_t *f), uint64_t ms) {
  uint64_t end = uv_hrtime() + ms * 1000000ULL;
  while (!done(f) && uv_hrtime() < end)
    uv_run(&f->loop, UV_RUN_ONCE);
  return done(f);
}

static bool never(fixture_t *f) {
  (void)f;
  return false;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  uplink_free(f->up);
  f->up = NULL;
  run_until(f, never, 300); /* the uplink closes its handles and finishes its jobs */
  uv_close((uv_handle_t *)&f->tick, on_closed);
  spool_free(f->spool);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  rm_tree(f->dir);
  free(f);
  return 0;
}

static bool is_enrolled(fixture_t *f) {
  uplink_stats_t st;
  uplink_stats(f->up, &st);
  return st.enrolled;
}

static bool has_failed(fixture_t *f) {
  uplink_stats_t st;
  uplink_stats(f->up, &st);
  return st.failures >= 2;
}

static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  socklen_t sl = sizeof(sa);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

static void lifecycle_enroll_while_running(void **state) {
  fixture_t *f = *state;
  assert_int_equal(uplink_new(&f->loop, f->spool, f->dir, status_json, NULL, f, &f->up), 0);
  /* Not enrolled: nothing happens, and it says so. */
  run_until(f, never, 300);
  uplink_stats_t st;
  uplink_stats(f->up, &st);
  assert_false(st.enrolled);
  assert_int_equal(st.sent + st.failures + st.retries, 0);
  assert_string_equal(st.last_error, "");

  /* Events wait in the spool meanwhile. */
  for (int i = 0; i < 3; i++) {
    char line[64];
    snprintf(line, sizeof(line), "{\"yamori\":{\"stream_seq\":%llu}}",
             (unsigned long long)spool_next_seq(f->spool, SPOOL_ALERTS));
    assert_int_equal(spool_append(f->spool, SPOOL_ALERTS, line, strlen(line)), 0);
  }

  /* `yamorictl enroll` writes the identity while the agent runs; the
   * console's address refuses connections. */
  identity_t id;
  memset(&id, 0, sizeof(id));
  snprintf(id.url, sizeof(id.url), "https://127.0.0.1:%d", closed_port());
  snprintf(id.pin, sizeof(id.pin), "sha256//NH4mZALxHHBGIyvcBumbJm02hzLNg6+XgymtmXgObtw=");
  snprintf(id.agent_id, sizeof(id.agent_id), AGENT_ID);
  snprintf(id.secret, sizeof(id.secret), "mQ2aGeNtSeCrEt_aGeNtSeCrEt-aGeNtSeCrEt01234");
  snprintf(id.tenant, sizeof(id.tenant), "acme");
  assert_int_equal(identity_save(f->dir, &id), 0);
  uint64_t t0 = uv_hrtime();
  assert_true(run_until(f, is_enrolled, 7000));
  assert_true(uv_hrtime() - t0 < 6000000000ULL); /* within the 5 s poll */

  /* It checks in first (the status callback runs), fails to connect,
   * and backs off; the failure is explained without the secret. */
  assert_true(run_until(f, has_failed, 10000));
  uplink_stats(f->up, &st);
  assert_true(f->status_calls >= 1);
  assert_true(st.retries >= 2);
  assert_int_equal(st.acked, 0);
  assert_int_equal(st.last_status, 0);
  assert_false(st.stopped);
  assert_int_equal(st.checkin_s, IDENTITY_CHECKIN_DEFAULT);
  assert_true(st.backoff_ms <= 2000);
  assert_non_null(strstr(st.last_error, "cannot connect"));
  assert_null(strstr(st.last_error, "aGeNtSeCrEt"));
  /* Nothing was acknowledged: the alerts are still in the spool. */
  assert_true(spool_pending(f->spool, SPOOL_ALERTS));
}

static void lifecycle_free_at_once(void **state) {
  fixture_t *f = *state;
  /* Freed while its first look for the identity may be in flight. */
  assert_int_equal(uplink_new(&f->loop, f->spool, f->dir, NULL, NULL, NULL, &f->up), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  uplink_free(f->up);
  f->up = NULL;
  assert_int_equal(uplink_new(&f->loop, f->spool, f->dir, NULL, NULL, NULL, &f->up), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(backoff_bounds_and_growth),
      cmocka_unit_test(backoff_full_jitter),
      cmocka_unit_test(backoff_retry_after),
      cmocka_unit_test(body_is_header_and_lines),
      cmocka_unit_test(body_refusals),
      cmocka_unit_test_setup_teardown(lifecycle_enroll_while_running, setup, teardown),
      cmocka_unit_test_setup_teardown(lifecycle_free_at_once, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
