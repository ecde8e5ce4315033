/* The spool on real files: write, recover after a restart, acknowledge,
 * continue numbering, survive damage, and shed at the cap exactly. */
#include "spool.h"

#include "yamori/err.h"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

#include <cmocka.h>

typedef struct {
  uint64_t lost[2];
  bool lost_unknown;
  int reads;
  spool_batch_t *got;
  int rc;
} ctx_t;

static void on_lost(spool_stream_t stream, const char *reason, uint64_t count, bool known,
                    int64_t first_ns, int64_t last_ns, void *data) {
  ctx_t *c = data;
  (void)reason;
  (void)first_ns;
  (void)last_ns;
  if (known)
    c->lost[stream] += count;
  else
    c->lost_unknown = true;
}

static char *make_dir(void) {
  char tmpl[] = "/tmp/yamori-spool-XXXXXX";
  char *d = mkdtemp(tmpl);
  assert_non_null(d);
  return strdup(d);
}

static spool_t *open_spool(uv_loop_t *loop, const char *dir, uint64_t max, uint64_t reserve,
                           ctx_t *c) {
  spool_opts_t o = {dir, max, reserve, 60000};
  spool_t *s = NULL;
  assert_int_equal(spool_new(loop, &o, NULL, on_lost, c, &s), 0);
  return s;
}

static void append_n(spool_t *s, spool_stream_t st, int n, size_t pad) {
  char line[8192];
  memset(line, 'p', sizeof(line));
  for (int i = 0; i < n; i++) {
    uint64_t seq = spool_next_seq(s, st);
    int w = snprintf(line, sizeof(line), "{\"yamori\":{\"stream_seq\":%llu},\"pad\":\"",
                     (unsigned long long)seq);
    size_t len = (size_t)w + pad;
    memset(line + w, 'a' + (char)(i % 26), pad);
    line[len++] = '"';
    line[len++] = '}';
    assert_int_equal(spool_append(s, st, line, len), 0);
  }
}

static void on_read(int rc, spool_batch_t *b, void *data) {
  ctx_t *c = data;
  c->rc = rc;
  c->got = b;
  c->reads++;
}

static spool_batch_t *read_oldest(uv_loop_t *loop, spool_t *s, spool_stream_t st, ctx_t *c) {
  c->reads = 0;
  c->got = NULL;
  spool_read_async(s, st, on_read, c);
  while (c->reads == 0)
    uv_run(loop, UV_RUN_ONCE);
  return c->got;
}

static void settle(uv_loop_t *loop, spool_t *s) {
  spool_flush(s);
  for (int i = 0; i < 200; i++)
    uv_run(loop, UV_RUN_NOWAIT), usleep(1000);
}

/* Decompresses a payload and counts its lines. */
static int count_lines(const spool_batch_t *b, uint64_t *first_seq) {
  static char out[8 * 1024 * 1024];
  z_stream z;
  memset(&z, 0, sizeof(z));
  assert_int_equal(inflateInit2(&z, 15 + 32), Z_OK);
  z.next_in = (Bytef *)b->payload.data;
  z.avail_in = (uInt)b->payload.len;
  z.next_out = (Bytef *)out;
  z.avail_out = sizeof(out);
  assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
  int lines = 0;
  for (size_t i = 0; i < z.total_out; i++)
    lines += out[i] == '\n';
  unsigned long long seq = 0;
  sscanf(out, "{\"yamori\":{\"stream_seq\":%llu", &seq);
  *first_seq = seq;
  inflateEnd(&z);
  return lines;
}

static void write_recover_ack(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char *dir = make_dir();
  ctx_t c = {0};
  spool_t *s = open_spool(&loop, dir, 64 << 20, 1 << 20, &c);
  assert_int_equal(spool_next_seq(s, SPOOL_BULK), 1);
  assert_int_equal(spool_last_seq(s, SPOOL_BULK), 0);
  append_n(s, SPOOL_BULK, 5000, 50);
  append_n(s, SPOOL_ALERTS, 3, 10);
  assert_int_equal(spool_last_seq(s, SPOOL_BULK), 5000);
  assert_int_equal(spool_last_seq(s, SPOOL_ALERTS), 3);
  settle(&loop, s);
  spool_stats_t st;
  spool_stats(s, &st);
  assert_int_equal(st.events_spooled, 5003);
  spool_free(s);

  /* Restart: everything is found again, numbering continues. */
  s = open_spool(&loop, dir, 64 << 20, 1 << 20, &c);
  assert_int_equal(spool_next_seq(s, SPOOL_BULK), 5001);
  assert_int_equal(spool_next_seq(s, SPOOL_ALERTS), 4);
  assert_true(spool_pending(s, SPOOL_BULK));
  uint64_t total = 0, expect_first = 1;
  while (spool_pending(s, SPOOL_BULK)) {
    spool_batch_t *b = read_oldest(&loop, s, SPOOL_BULK, &c);
    assert_non_null(b);
    uint64_t first;
    int lines = count_lines(b, &first);
    assert_int_equal(b->first_seq, expect_first);
    assert_int_equal(first, expect_first);
    assert_int_equal((uint64_t)lines, b->count);
    total += b->count;
    expect_first = b->last_seq + 1;
    spool_ack(s, SPOOL_BULK, b->last_seq);
    spool_batch_free(b);
  }
  assert_int_equal(total, 5000);
  spool_free(s);

  /* All acknowledged: segments are gone, but numbering still continues. */
  s = open_spool(&loop, dir, 64 << 20, 1 << 20, &c);
  assert_false(spool_pending(s, SPOOL_BULK));
  assert_int_equal(spool_next_seq(s, SPOOL_BULK), 5001);
  assert_int_equal(spool_last_seq(s, SPOOL_BULK), 5000);
  assert_int_equal(spool_last_seq(s, SPOOL_ALERTS), 3);
  assert_true(spool_pending(s, SPOOL_ALERTS));
  spool_free(s);
  uv_loop_close(&loop);
  free(dir);
}

static int only_file(const char *dir, char *path, size_t len) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "%s/bulk", dir);
  DIR *d = opendir(cmd);
  struct dirent *de;
  int n = 0;
  while ((de = readdir(d)) != NULL)
    if (strstr(de->d_name, ".seg") != NULL && strstr(de->d_name, ".corrupt") == NULL) {
      snprintf(path, len, "%s/%s", cmd, de->d_name);
      n++;
    }
  closedir(d);
  return n;
}

static void flipped_byte_and_torn_tail(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char *dir = make_dir();
  ctx_t c = {0};
  spool_t *s = open_spool(&loop, dir, 64 << 20, 1 << 20, &c);
  /* Three batches in one segment. */
  for (int i = 0; i < 3; i++) {
    append_n(s, SPOOL_BULK, 100, 40);
    settle(&loop, s);
  }
  spool_free(s);
  char seg[1024];
  assert_int_equal(only_file(dir, seg, sizeof(seg)), 1);
  struct stat sb;
  assert_int_equal(stat(seg, &sb), 0);
  /* Flip a byte inside the first record's payload, and tear the end. */
  int fd = open(seg, O_RDWR);
  unsigned char byte;
  assert_int_equal(pread(fd, &byte, 1, SPOOL_RECORD_HEADER + 20), 1);
  byte ^= 0xff;
  assert_int_equal(pwrite(fd, &byte, 1, SPOOL_RECORD_HEADER + 20), 1);
  assert_int_equal(ftruncate(fd, sb.st_size - 7), 0);
  close(fd);

  memset(&c, 0, sizeof(c));
  s = open_spool(&loop, dir, 64 << 20, 1 << 20, &c);
  assert_int_equal(c.lost[SPOOL_BULK], 0); /* reported only when asked */
  spool_report_recovery(s);
  spool_stats_t st;
  spool_stats(s, &st);
  assert_int_equal(st.records_corrupt, 1);  /* the flipped byte */
  assert_int_equal(st.segments_corrupt, 1); /* the torn tail */
  assert_int_equal(c.lost[SPOOL_BULK], 100);
  assert_true(c.lost_unknown);
  /* The middle batch is still delivered. */
  spool_batch_t *b = read_oldest(&loop, s, SPOOL_BULK, &c);
  assert_non_null(b);
  assert_int_equal(b->first_seq, 101);
  assert_int_equal(b->count, 100);
  spool_ack(s, SPOOL_BULK, b->last_seq);
  spool_batch_free(b);
  assert_false(spool_pending(s, SPOOL_BULK));
  /* Numbering continues past everything seen, even the damaged tail's
   * records are never reused. */
  assert_true(spool_next_seq(s, SPOOL_BULK) >= 201);
  spool_free(s);
  uv_loop_close(&loop);
  free(dir);
}

static void cap_sheds_bulk_first_exactly(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char *dir = make_dir();
  ctx_t c = {0};
  /* 3 MiB cap, 1 MiB for alerts only; incompressible-ish bulk fills it. */
  spool_t *s = open_spool(&loop, dir, 3 << 20, 1 << 20, &c);
  uint64_t produced_bulk = 0, produced_alerts = 0;
  char line[2100];
  for (int round = 0; round < 40; round++) {
    for (int i = 0; i < 400; i++) {
      uint64_t seq = spool_next_seq(s, SPOOL_BULK);
      int w = snprintf(line, sizeof(line), "{\"yamori\":{\"stream_seq\":%llu},\"r\":\"",
                       (unsigned long long)seq);
      for (int k = 0; k < 1000; k++)
        line[w + k] = "0123456789abcdef"[rand() % 16];
      memcpy(line + w + 1000, "\"}", 2);
      assert_int_equal(spool_append(s, SPOOL_BULK, line, (size_t)w + 1002), 0);
      produced_bulk++;
    }
    append_n(s, SPOOL_ALERTS, 2, 20);
    produced_alerts += 2;
    settle(&loop, s);
  }
  spool_stats_t st;
  spool_stats(s, &st);
  assert_true(st.bytes_on_disk <= (3u << 20) + SPOOL_SEGMENT_MAX);
  assert_true(c.lost[SPOOL_BULK] > 0);
  assert_int_equal(c.lost[SPOOL_ALERTS], 0);
  /* Deliver everything left; delivered + shed == produced, exactly. */
  uint64_t delivered_bulk = 0, delivered_alerts = 0;
  spool_stream_t streams[2] = {SPOOL_ALERTS, SPOOL_BULK};
  for (int k = 0; k < 2; k++) {
    while (spool_pending(s, streams[k])) {
      spool_batch_t *b = read_oldest(&loop, s, streams[k], &c);
      assert_non_null(b);
      if (streams[k] == SPOOL_BULK)
        delivered_bulk += b->count;
      else
        delivered_alerts += b->count;
      spool_ack(s, streams[k], b->last_seq);
      spool_batch_free(b);
    }
  }
  assert_int_equal(delivered_alerts, produced_alerts);
  assert_int_equal(delivered_bulk + c.lost[SPOOL_BULK], produced_bulk);
  spool_free(s);
  uv_loop_close(&loop);
  free(dir);
}

/* A lost callback that does what the agent does: it writes a gap record,
 * an alert, into the same spool. */
typedef struct {
  spool_t *s;
  int reports;
  uint64_t count;
  spool_stream_t stream;
  int64_t first_ns, last_ns;
  char reason[32];
} feed_t;

static void on_lost_feed(spool_stream_t stream, const char *reason, uint64_t count, bool known,
                         int64_t first_ns, int64_t last_ns, void *data) {
  feed_t *f = data;
  assert_true(known);
  f->reports++;
  f->count += count;
  f->stream = stream;
  f->first_ns = first_ns;
  f->last_ns = last_ns;
  snprintf(f->reason, sizeof(f->reason), "%s", reason);
  append_n(f->s, SPOOL_ALERTS, 1, 10);
}

static void tick(uv_timer_t *t) {
  (void)t;
}

/* Runs the loop for about ms milliseconds. The spool's own timers do not
 * keep a loop alive (the agent's handles do): a ticking timer stands in. */
static void run_for(uv_loop_t *loop, int ms) {
  uv_timer_t keep;
  uv_timer_init(loop, &keep);
  uv_timer_start(&keep, tick, 5, 5);
  for (int i = 0; i < ms / 5; i++)
    uv_run(loop, UV_RUN_NOWAIT), usleep(5000);
  uv_close((uv_handle_t *)&keep, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

/* Makes a stream directory unusable: a regular file takes its place. */
static void block_stream(const char *dir, const char *stream) {
  char p[1200];
  static int n;
  char away[1300];
  snprintf(p, sizeof(p), "%s/spool/%s", dir, stream);
  snprintf(away, sizeof(away), "%s.away-%d", p, n++);
  assert_int_equal(rename(p, away), 0);
  int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
  assert_true(fd >= 0);
  close(fd);
}

static void unblock_stream(const char *dir, const char *stream) {
  char p[1200];
  snprintf(p, sizeof(p), "%s/spool/%s", dir, stream);
  assert_int_equal(unlink(p), 0);
}

/* While the spool cannot be written: no gap record per failed write (the
 * record would itself fail, and so on), one attempt per retry delay,
 * batches kept in memory up to the bound and the rest counted; once
 * writing works again, one report with the count and its time range, and
 * what waited in memory is written. Stopping never waits for the disk. */
static void unwritable_reports_once(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char *dir = make_dir();
  char sdir[1100];
  snprintf(sdir, sizeof(sdir), "%s/spool", dir);
  feed_t f;
  memset(&f, 0, sizeof(f));
  spool_opts_t o = {sdir, 256ull << 20, 16ull << 20, 60000};
  assert_int_equal(spool_new(&loop, &o, NULL, on_lost_feed, &f, &f.s), 0);
  block_stream(dir, "alerts");
  block_stream(dir, "bulk");

  append_n(f.s, SPOOL_ALERTS, 5, 10);
  run_for(&loop, 300);
  spool_stats_t st;
  spool_stats(f.s, &st);
  assert_int_equal(f.reports, 0);
  assert_true(st.failing);
  assert_int_equal(st.write_errors, 1); /* the others wait for the retry */
  assert_int_equal(st.events_unwritten, 0);

  /* The alerts waiting in memory are sent from there, oldest first; what
   * the console acknowledged is not written any more. */
  assert_true(spool_pending(f.s, SPOOL_ALERTS));
  ctx_t c;
  memset(&c, 0, sizeof(c));
  spool_batch_t *b = read_oldest(&loop, f.s, SPOOL_ALERTS, &c);
  assert_int_equal(c.rc, 0);
  assert_non_null(b);
  uint64_t first = 0;
  assert_int_equal(b->first_seq, 1);
  assert_int_equal(count_lines(b, &first), 1);
  assert_int_equal(first, 1);
  spool_batch_free(b);
  uint64_t waiting = st.bytes_waiting;
  spool_ack(f.s, SPOOL_ALERTS, 1);
  spool_stats(f.s, &st);
  assert_true(st.bytes_waiting < waiting);
  assert_int_equal(st.events_acked, 1);
  assert_true(spool_pending(f.s, SPOOL_ALERTS)); /* four more */

  /* More than SPOOL_MEM_MAX of bulk: the oldest bulk batches go. */
  append_n(f.s, SPOOL_BULK, 1500, 8000);
  spool_flush(f.s);
  run_for(&loop, 1300); /* one retry (after 1 s), failing again */
  spool_stats(f.s, &st);
  assert_int_equal(f.reports, 0);
  assert_int_equal(st.write_errors, 2);
  assert_true(st.events_unwritten > 0);
  assert_true(st.bytes_waiting <= SPOOL_MEM_MAX);
  uint64_t unwritten = st.events_unwritten;

  unblock_stream(dir, "alerts");
  unblock_stream(dir, "bulk");
  for (int i = 0; i < 1000 && f.reports == 0; i++)
    run_for(&loop, 10);
  run_for(&loop, 1000);
  spool_stats(f.s, &st);
  assert_int_equal(f.reports, 1);
  assert_string_equal(f.reason, "spool_write_failed");
  assert_int_equal(f.stream, SPOOL_BULK);
  assert_int_equal(f.count, unwritten);
  assert_int_equal(st.events_unwritten, unwritten);
  assert_true(f.first_ns > 0 && f.first_ns <= f.last_ns);
  assert_false(st.failing);
  /* Everything else was written: 4 alerts, the report, the bulk kept. */
  assert_int_equal(st.events_spooled, st.events_queued - unwritten - 1);
  assert_int_equal(st.bytes_waiting, 0);

  /* Unwritable again, with batches waiting: stopping is immediate. */
  block_stream(dir, "alerts");
  append_n(f.s, SPOOL_ALERTS, 3, 10);
  run_for(&loop, 100);
  spool_stats(f.s, &st);
  assert_true(st.failing);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  spool_free(f.s);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 500);
  assert_int_equal(f.reports, 1);
  uv_loop_close(&loop);
  free(dir);
}

static void parse_rejects_garbage(void **state) {
  (void)state;
  uint8_t buf[256];
  memset(buf, 0x41, sizeof(buf));
  size_t good = 99;
  assert_int_equal(spool_parse_segment(buf, sizeof(buf), NULL, NULL, &good), 0);
  assert_int_equal(good, 0);
  spool_rec_hdr_t h = {SPOOL_BULK, 1, 1, 1, 10, 5, 0};
  spool_encode_header(&h, buf);
  /* A header claiming a payload beyond the end is a torn record. */
  assert_int_equal(spool_parse_segment(buf, SPOOL_RECORD_HEADER + 2, NULL, NULL, &good), 0);
  assert_int_equal(good, 0);
  /* count must match the sequence range. */
  h.last_seq = 3;
  spool_encode_header(&h, buf);
  assert_int_equal(spool_parse_segment(buf, sizeof(buf), NULL, NULL, &good), 0);
  assert_int_equal(good, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(write_recover_ack),
      cmocka_unit_test(flipped_byte_and_torn_tail),
      cmocka_unit_test(cap_sheds_bulk_first_exactly),
      cmocka_unit_test(parse_rejects_garbage),
      cmocka_unit_test(unwritable_reports_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
