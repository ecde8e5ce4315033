#include "spool.h"

#include "yamori/err.h"
#include "yamori/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAGIC "YMB1"
#define VERSION 1
#define EVENT_MAX (256 * 1024)

static const char *const stream_names[SPOOL_NSTREAMS] = {"alerts", "bulk"};

/* ---------------------------------------------------------------- */
/* Record format                                                      */

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

void spool_encode_header(const spool_rec_hdr_t *h, uint8_t out[SPOOL_RECORD_HEADER]) {
  memcpy(out, MAGIC, 4);
  put16(out + 4, VERSION);
  put16(out + 6, (uint16_t)h->stream);
  put64(out + 8, h->first_seq);
  put64(out + 16, h->last_seq);
  put32(out + 24, h->count);
  put32(out + 28, h->raw_len);
  put32(out + 32, h->gz_len);
  put32(out + 36, h->crc);
  put32(out + 40, 0);
  put32(out + 44, (uint32_t)crc32(0, out, 44));
}

/* Decodes and checks a header: magic, version, CRC, and bounds that every
 * writer respects. */
static bool decode_header(const uint8_t *p, spool_rec_hdr_t *h) {
  if (memcmp(p, MAGIC, 4) != 0 || get16(p + 4) != VERSION ||
      get32(p + 44) != (uint32_t)crc32(0, p, 44))
    return false;
  uint16_t stream = get16(p + 6);
  h->first_seq = get64(p + 8);
  h->last_seq = get64(p + 16);
  h->count = get32(p + 24);
  h->raw_len = get32(p + 28);
  h->gz_len = get32(p + 32);
  h->crc = get32(p + 36);
  if (stream >= SPOOL_NSTREAMS || h->count == 0 || h->count > SPOOL_BATCH_MAX_EVENTS ||
      h->last_seq < h->first_seq || h->last_seq - h->first_seq + 1 != h->count ||
      h->raw_len > SPOOL_BATCH_MAX_RAW + EVENT_MAX || h->gz_len == 0 ||
      h->gz_len > SPOOL_SEGMENT_MAX)
    return false;
  h->stream = (spool_stream_t)stream;
  return true;
}

int spool_parse_segment(const uint8_t *buf, size_t len, spool_record_fn fn, void *data,
                        size_t *good_len) {
  size_t off = 0;
  int corrupt = 0;
  while (len - off >= SPOOL_RECORD_HEADER) {
    spool_rec_hdr_t h;
    if (!decode_header(buf + off, &h))
      break;
    if (h.gz_len > len - off - SPOOL_RECORD_HEADER)
      break; /* torn: the payload runs past the end */
    const uint8_t *payload = buf + off + SPOOL_RECORD_HEADER;
    bool ok = (uint32_t)crc32(0, payload, h.gz_len) == h.crc;
    if (!ok)
      corrupt++;
    if (fn != NULL)
      fn(&h, off, payload, ok, data);
    off += SPOOL_RECORD_HEADER + h.gz_len;
  }
  *good_len = off;
  return corrupt;
}

/* ---------------------------------------------------------------- */
/* In-memory index                                                    */

typedef struct {
  uint64_t off;
  uint32_t len; /* header + payload */
  uint64_t first_seq, last_seq;
  uint32_t count;
  bool corrupt; /* payload CRC did not match: never sent */
} rec_t;

typedef struct seg {
  struct seg *next;
  char path[1200];
  uint64_t size;
  rec_t *recs;
  size_t nrecs, cap;
  bool sealed; /* a write to it failed: new records go to a new segment */
} seg_t;

/* Events that could not be written: how many, and the wall-clock times
 * their batches were closed (the first and the last). */
typedef struct {
  uint64_t count;
  int64_t first_ns, last_ns;
} loss_t;

typedef struct pending_batch {
  struct pending_batch *next;
  ym_buf_t raw;
  uint64_t first_seq, last_seq;
  uint32_t count;
  int64_t closed_ns;
  /* The batch holds the report of this loss (carry_stream >= 0): if the
   * batch is lost too, the loss is reported again. */
  int carry_stream;
  loss_t carry;
} pending_batch_t;

typedef struct {
  char dir[1100];
  seg_t *head, *tail; /* oldest .. newest */
  uint64_t next_seq;
  uint64_t spooled; /* highest sequence written and fsync'd */
  uint64_t sending; /* first sequence of the record handed to the uplink, 0 none */
  uint64_t acked;   /* highest acknowledged sequence */
  uint64_t bytes;
  /* the open batch */
  ym_buf_t batch;
  uint64_t batch_first;
  uint32_t batch_count;
  /* closed batches waiting for the writer, oldest first */
  pending_batch_t *wq_head, *wq_tail;
  bool writing;
} stream_t;

struct spool {
  uv_loop_t *loop;
  spool_opts_t opts;
  char dir[1024];
  stream_t st[SPOOL_NSTREAMS];
  uv_timer_t timer;
  spool_ready_cb ready;
  spool_lost_cb lost;
  void *data;
  spool_stats_t stats;
  uint64_t seg_max; /* segment size: an eighth of the cap, so shedding is fine-grained */
  bool closing;
  /* Writing failed (see spool.h): batches wait in memory; one write is
   * tried when the retry timer has fired (retry_due). */
  bool failing, retry_due;
  unsigned backoff_ms;
  uv_timer_t retry;
  uint64_t waiting_bytes;
  loss_t loss[SPOOL_NSTREAMS];
  /* A loss being reported: the next alerts batch closed carries it. */
  int carry_stream;
  loss_t carry;
  /* damage found while opening, reported by spool_report_recovery */
  struct {
    spool_stream_t stream;
    uint64_t count;
    bool known;
  } recovered[64];
  size_t nrecovered;
  uint64_t recovered_more; /* beyond the table: folded into one report */
};

static void note_recovery(spool_t *s, spool_stream_t stream, uint64_t count, bool known) {
  if (s->nrecovered < 64) {
    s->recovered[s->nrecovered].stream = stream;
    s->recovered[s->nrecovered].count = count;
    s->recovered[s->nrecovered].known = known;
    s->nrecovered++;
  } else {
    s->recovered_more += count;
  }
}

static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void loss_add(loss_t *l, uint64_t count, int64_t first_ns, int64_t last_ns) {
  if (count == 0)
    return;
  if (l->count == 0 || first_ns < l->first_ns)
    l->first_ns = first_ns;
  if (l->count == 0 || last_ns > l->last_ns)
    l->last_ns = last_ns;
  l->count += count;
}

static int seg_add_rec(seg_t *g, const rec_t *r) {
  if (g->nrecs == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 16;
    rec_t *p = realloc(g->recs, cap * sizeof(*p));
    if (p == NULL)
      return YM_ENOMEM;
    g->recs = p;
    g->cap = cap;
  }
  g->recs[g->nrecs++] = *r;
  return 0;
}

static void seg_free(seg_t *g) {
  free(g->recs);
  free(g);
}

/* The persisted high-water mark: the last sequence ever spooled, kept in
 * <dir>/head so that numbering continues after every segment was deleted. */
static void write_head(const stream_t *st, uint64_t seq) {
  char path[1200], tmp[1200];
  snprintf(path, sizeof(path), "%s/head", st->dir);
  snprintf(tmp, sizeof(tmp), "%s/head.tmp", st->dir);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return;
  char text[32];
  int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", seq);
  if (write(fd, text, (size_t)n) == n && fsync(fd) == 0) {
    close(fd);
    rename(tmp, path);
    return;
  }
  close(fd);
}

static uint64_t read_head(const stream_t *st) {
  char path[1200], text[32] = {0};
  snprintf(path, sizeof(path), "%s/head", st->dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, text, sizeof(text) - 1);
  close(fd);
  if (n <= 0)
    return 0;
  char *end;
  unsigned long long v = strtoull(text, &end, 10);
  return end != text ? (uint64_t)v : 0;
}

/* ---------------------------------------------------------------- */
/* Recovery                                                           */

typedef struct {
  seg_t *g;
  spool_t *s;
  stream_t *st;
  spool_stream_t id;
} recover_ctx_t;

static void on_recovered(const spool_rec_hdr_t *h, size_t offset, const uint8_t *payload,
                         bool payload_ok, void *data) {
  recover_ctx_t *c = data;
  (void)payload;
  rec_t r = {offset,     SPOOL_RECORD_HEADER + h->gz_len, h->first_seq, h->last_seq, h->count,
             !payload_ok};
  seg_add_rec(c->g, &r);
  if (h->last_seq >= c->st->next_seq)
    c->st->next_seq = h->last_seq + 1;
  if (h->last_seq > c->st->spooled)
    c->st->spooled = h->last_seq;
  if (!payload_ok) {
    c->s->stats.records_corrupt++;
    note_recovery(c->s, c->id, h->count, true);
  }
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads one segment file into the index. Damage at the end (a torn write)
 * or in the middle (broken structure) is cut off and kept beside it as
 * <name>.corrupt for inspection. */
static void recover_segment(spool_t *s, spool_stream_t id, const char *name) {
  stream_t *st = &s->st[id];
  seg_t *g = calloc(1, sizeof(*g));
  if (g == NULL)
    return;
  snprintf(g->path, sizeof(g->path), "%s/%s", st->dir, name);
  int fd = open(g->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > SPOOL_SEGMENT_MAX * 2) {
    if (fd >= 0)
      close(fd);
    free(g);
    return;
  }
  size_t len = (size_t)sb.st_size;
  uint8_t *buf = malloc(len ? len : 1);
  size_t got = 0;
  while (buf != NULL && got < len) {
    ssize_t n = pread(fd, buf + got, len - got, (off_t)got);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  recover_ctx_t c = {g, s, st, id};
  size_t good = 0;
  if (buf != NULL)
    spool_parse_segment(buf, got, on_recovered, &c, &good);
  if (buf != NULL && good < got) {
    /* Keep the damaged tail for inspection, then cut it off. */
    char bad[1300];
    snprintf(bad, sizeof(bad), "%s.corrupt", g->path);
    int bfd = open(bad, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (bfd >= 0) {
      if (write(bfd, buf + good, got - good) < 0) {
        /* best effort */
      }
      close(bfd);
    }
    if (ftruncate(fd, (off_t)good) == 0)
      fsync(fd);
    s->stats.segments_corrupt++;
    note_recovery(s, id, 0, false);
  }
  free(buf);
  close(fd);
  g->size = good;
  g->sealed = true; /* new records go to new segments */
  if (g->nrecs == 0) {
    unlink(g->path);
    seg_free(g);
    return;
  }
  st->bytes += g->size;
  s->stats.bytes_on_disk += g->size;
  if (st->tail != NULL)
    st->tail->next = g;
  else
    st->head = g;
  st->tail = g;
}

static int recover_stream(spool_t *s, spool_stream_t id) {
  stream_t *st = &s->st[id];
  DIR *d = opendir(st->dir);
  if (d == NULL)
    return ym_err_from_errno(errno);
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    size_t l = strlen(de->d_name);
    if (l != 20 || strcmp(de->d_name + 16, ".seg") != 0)
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **p = realloc(names, cap * sizeof(char *));
      if (p == NULL)
        break;
      names = p;
    }
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  if (n > 0)
    qsort(names, n, sizeof(char *), cmp_names);
  st->spooled = read_head(st);
  st->next_seq = st->spooled + 1;
  for (size_t i = 0; i < n; i++) {
    recover_segment(s, id, names[i]);
    free(names[i]);
  }
  free(names);
  return 0;
}

/* ---------------------------------------------------------------- */
/* Writing                                                            */

typedef struct {
  uv_work_t req;
  spool_t *s;
  spool_stream_t id;
  pending_batch_t *b;
  seg_t *new_seg; /* a segment the writer started, or NULL */
  int fd;
  char path[1200];
  uint64_t off;
  uint32_t len;
  uint32_t gz_len;
  int rc;
} write_job_t;

/* Compresses raw into gzip (deflate, gzip wrapper). */
static int gzip_buf(const ym_buf_t *raw, ym_buf_t *out) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return YM_ENOMEM;
  uLong bound = deflateBound(&z, (uLong)raw->len);
  int rc = ym_buf_reserve(out, bound);
  if (rc == 0) {
    z.next_in = (Bytef *)raw->data;
    z.avail_in = (uInt)raw->len;
    z.next_out = (Bytef *)out->data;
    z.avail_out = (uInt)bound;
    rc = deflate(&z, Z_FINISH) == Z_STREAM_END ? 0 : YM_EIO;
    if (rc == 0)
      out->len = z.total_out;
  }
  deflateEnd(&z);
  return rc;
}

/* Creates again the directories above a segment path (state_dir, the
 * spool, the stream), mode 0700, as spool_new() made them: they may have
 * been removed while the agent ran. Returns 0 or an error code. */
static int make_dirs(const char *seg_path) {
  char dir[1200];
  snprintf(dir, sizeof(dir), "%s", seg_path);
  /* cut[0] ends the stream directory, cut[1] the spool, cut[2] state_dir. */
  char *cut[3];
  for (int i = 0; i < 3; i++) {
    cut[i] = strrchr(dir, '/');
    if (cut[i] == NULL || cut[i] == dir)
      return YM_EINVAL;
    *cut[i] = '\0';
  }
  for (int i = 2; i >= 0; i--) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
      return ym_err_from_errno(errno);
    if (i > 0)
      *cut[i] = '/'; /* one level down */
  }
  return 0;
}

static void write_work(uv_work_t *w) {
  write_job_t *j = w->data;
  ym_buf_t gz;
  ym_buf_init(&gz, SPOOL_SEGMENT_MAX);
  j->rc = gzip_buf(&j->b->raw, &gz);
  if (j->rc != 0)
    goto out;
  /* The segment is opened for each write and closed after it: no
   * descriptor stays open between writes, so the filesystem can be
   * remounted read-only or unmounted meanwhile. A new segment's name is
   * its first sequence, higher than every segment known, so a file of that
   * name is only the remains of a failed attempt at this very batch. */
  if (j->new_seg != NULL) {
    int flags = O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW;
    j->fd = open(j->path, flags, 0600);
    if (j->fd < 0 && errno == ENOENT && make_dirs(j->path) == 0)
      j->fd = open(j->path, flags, 0600);
  } else {
    j->fd = open(j->path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (j->fd < 0 && errno == ENOENT)
      errno = ESTALE; /* the segment was removed */
  }
  if (j->fd < 0) {
    j->rc = ym_err_from_errno(errno);
    goto out;
  }
  struct stat sb;
  if (fstat(j->fd, &sb) != 0) {
    j->rc = ym_err_from_errno(errno);
    goto out;
  }
  if (sb.st_nlink == 0) {
    /* The segment was removed (its directory deleted): what is written
     * there would be lost. The batch goes to a new segment instead. */
    j->rc = YM_ESTALE;
    goto out;
  }
  j->off = (uint64_t)sb.st_size;
  spool_rec_hdr_t h = {0,
                       j->b->first_seq,
                       j->b->last_seq,
                       j->b->count,
                       (uint32_t)j->b->raw.len,
                       (uint32_t)gz.len,
                       (uint32_t)crc32(0, (const Bytef *)gz.data, (uInt)gz.len)};
  h.stream = j->id;
  uint8_t hdr[SPOOL_RECORD_HEADER];
  spool_encode_header(&h, hdr);
  struct iovec iov[2] = {{hdr, sizeof(hdr)}, {gz.data, gz.len}};
  size_t want = sizeof(hdr) + gz.len;
  ssize_t n = writev(j->fd, iov, 2);
  if (n != (ssize_t)want) {
    /* A short write would leave a torn record: cut it off again. */
    if (ftruncate(j->fd, (off_t)j->off) != 0) {
      /* recovery at the next start cuts it off */
    }
    j->rc = n < 0 ? ym_err_from_errno(errno) : YM_EIO;
    goto out;
  }
  if (fsync(j->fd) != 0) {
    j->rc = ym_err_from_errno(errno);
    goto out;
  }
  if (j->new_seg != NULL) {
    /* A new file: make its directory entry durable too. */
    char dir[1200];
    snprintf(dir, sizeof(dir), "%s", j->path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
      *slash = '\0';
      int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
      }
    }
  }
  j->len = (uint32_t)want;
  j->gz_len = (uint32_t)gz.len;
out:
  if (j->fd >= 0)
    close(j->fd);
  j->fd = -1;
  ym_buf_free(&gz);
}

static void start_write(spool_t *s, spool_stream_t id);
static void enforce_cap(spool_t *s);

/* A batch that will never be written: its events (and a loss report it
 * carried) are counted for the next report. */
static void drop_batch(spool_t *s, spool_stream_t id, pending_batch_t *b) {
  loss_add(&s->loss[id], b->count, b->closed_ns, b->closed_ns);
  if (b->carry_stream >= 0)
    loss_add(&s->loss[b->carry_stream], b->carry.count, b->carry.first_ns, b->carry.last_ns);
  s->stats.events_unwritten += b->count;
  s->waiting_bytes -= b->raw.len;
  ym_buf_free(&b->raw);
  free(b);
}

static pending_batch_t *pop_waiting(stream_t *st) {
  pending_batch_t *b = st->wq_head;
  if (b != NULL) {
    st->wq_head = b->next;
    if (st->wq_head == NULL)
      st->wq_tail = NULL;
    b->next = NULL;
  }
  return b;
}

/* Keeps the batches waiting in memory under SPOOL_MEM_MAX: the oldest
 * bulk batches go first, alerts only when no bulk is left. */
static void trim_waiting(spool_t *s) {
  while (s->waiting_bytes > SPOOL_MEM_MAX) {
    spool_stream_t id = s->st[SPOOL_BULK].wq_head != NULL ? SPOOL_BULK : SPOOL_ALERTS;
    pending_batch_t *b = pop_waiting(&s->st[id]);
    if (b == NULL)
      break;
    drop_batch(s, id, b);
  }
}

/* Drops every batch waiting (stopping while the disk cannot be written). */
static void drop_waiting(spool_t *s) {
  uint64_t before = s->stats.events_unwritten;
  for (int i = 0; i < SPOOL_NSTREAMS; i++) {
    pending_batch_t *b;
    while ((b = pop_waiting(&s->st[i])) != NULL)
      drop_batch(s, (spool_stream_t)i, b);
  }
  if (s->stats.events_unwritten > before)
    ym_log(YM_LOG_ERROR, 0, "stopping: %" PRIu64 " events could not be written to the spool in %s",
           s->stats.events_unwritten - before, s->dir);
}

static void on_retry(uv_timer_t *t) {
  spool_t *s = t->data;
  s->retry_due = true;
  start_write(s, SPOOL_ALERTS);
  start_write(s, SPOOL_BULK);
}

/* Reports each stream's loss once (see spool.h). The report, an alert
 * appended from inside the lost callback, carries the loss with it. */
static void report_losses(spool_t *s) {
  for (int i = 0; i < SPOOL_NSTREAMS; i++) {
    loss_t l = s->loss[i];
    if (l.count == 0)
      continue;
    memset(&s->loss[i], 0, sizeof(s->loss[i]));
    if (s->lost == NULL)
      continue;
    s->carry = l;
    s->carry_stream = i;
    s->lost((spool_stream_t)i, "spool_write_failed", l.count, true, l.first_ns, l.last_ns, s->data);
    if (s->carry_stream >= 0) {
      /* The report was not queued: it waits for the next success. */
      loss_add(&s->loss[i], l.count, l.first_ns, l.last_ns);
      s->carry_stream = -1;
    }
  }
}

/* A write failed: the batch waits (or is lost when stopping) and the next
 * attempt is due after the backoff. Logs once per outage. */
static void write_failed(spool_t *s, spool_stream_t id, pending_batch_t *b, int rc) {
  stream_t *st = &s->st[id];
  s->stats.write_errors++;
  if (!s->failing)
    ym_log(YM_LOG_ERROR, rc,
           "cannot write the spool in %s; events wait in memory (up to %d MiB) and writing is "
           "tried again",
           s->dir, SPOOL_MEM_MAX / (1024 * 1024));
  s->failing = true;
  s->retry_due = false;
  if (s->closing) {
    drop_batch(s, id, b);
    drop_waiting(s);
    return;
  }
  /* Back at the head of its queue: the oldest is written first. */
  b->next = st->wq_head;
  st->wq_head = b;
  if (st->wq_tail == NULL)
    st->wq_tail = b;
  trim_waiting(s);
  s->backoff_ms = s->backoff_ms == 0 ? SPOOL_RETRY_MIN_MS : s->backoff_ms * 2;
  if (s->backoff_ms > SPOOL_RETRY_MAX_MS)
    s->backoff_ms = SPOOL_RETRY_MAX_MS;
  uv_timer_start(&s->retry, on_retry, s->backoff_ms, 0);
}

static void write_done(uv_work_t *w, int status) {
  write_job_t *j = w->data;
  spool_t *s = j->s;
  stream_t *st = &s->st[j->id];
  (void)status;
  st->writing = false;
  if (j->rc != 0) {
    /* A segment a write failed on (removed, read-only, full) takes no more
     * records: the next attempt starts a new one. */
    if (j->new_seg != NULL)
      seg_free(j->new_seg);
    else if (st->tail != NULL)
      st->tail->sealed = true;
    write_failed(s, j->id, j->b, j->rc);
    free(j);
    return;
  }
  seg_t *g = j->new_seg;
  if (g != NULL) {
    if (st->tail != NULL)
      st->tail->next = g;
    else
      st->head = g;
    st->tail = g;
  } else {
    g = st->tail;
  }
  rec_t r = {j->off, j->len, j->b->first_seq, j->b->last_seq, j->b->count, false};
  seg_add_rec(g, &r);
  g->size += j->len;
  st->bytes += j->len;
  s->stats.bytes_on_disk += j->len;
  s->stats.events_spooled += j->b->count;
  if (j->b->last_seq > st->spooled)
    st->spooled = j->b->last_seq;
  s->stats.batches_spooled++;
  s->waiting_bytes -= j->b->raw.len;
  ym_buf_free(&j->b->raw);
  free(j->b);
  free(j);
  if (s->failing) {
    s->failing = false;
    s->retry_due = false;
    s->backoff_ms = 0;
    uv_timer_stop(&s->retry);
    ym_log(YM_LOG_NOTICE, 0, "the spool in %s can be written again", s->dir);
    report_losses(s);
  }
  enforce_cap(s);
  if (s->ready != NULL)
    s->ready(s->data);
  start_write(s, SPOOL_ALERTS);
  start_write(s, SPOOL_BULK);
}

static void start_write(spool_t *s, spool_stream_t id) {
  stream_t *st = &s->st[id];
  if (st->writing || st->wq_head == NULL)
    return;
  /* While the disk cannot be written, one attempt per retry delay. */
  if (s->failing && (!s->retry_due || s->closing))
    return;
  s->retry_due = false;
  pending_batch_t *b = st->wq_head;
  write_job_t *j = calloc(1, sizeof(*j));
  if (j == NULL)
    return; /* retried at the next flush */
  st->wq_head = b->next;
  if (st->wq_head == NULL)
    st->wq_tail = NULL;
  j->s = s;
  j->id = id;
  j->b = b;
  j->fd = -1;
  /* Append to the tail segment while it has room, else start a new one. */
  if (st->tail != NULL && !st->tail->sealed &&
      st->tail->size + SPOOL_RECORD_HEADER + b->raw.len / 2 < s->seg_max) {
    snprintf(j->path, sizeof(j->path), "%s", st->tail->path);
  } else {
    j->new_seg = calloc(1, sizeof(seg_t));
    if (j->new_seg == NULL) {
      free(j);
      st->wq_head = b; /* put it back */
      if (st->wq_tail == NULL)
        st->wq_tail = b;
      return;
    }
    snprintf(j->new_seg->path, sizeof(j->new_seg->path), "%s/%016" PRIx64 ".seg", st->dir,
             b->first_seq);
    snprintf(j->path, sizeof(j->path), "%s", j->new_seg->path);
  }
  st->writing = true;
  j->req.data = j;
  uv_queue_work(s->loop, &j->req, write_work, write_done);
}

/* Closes the open batch of a stream and queues it for writing. */
static void close_batch(spool_t *s, spool_stream_t id) {
  stream_t *st = &s->st[id];
  if (st->batch_count == 0)
    return;
  pending_batch_t *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return; /* kept open; retried at the next flush */
  b->raw = st->batch;
  b->first_seq = st->batch_first;
  b->last_seq = st->batch_first + st->batch_count - 1;
  b->count = st->batch_count;
  b->closed_ns = wall_ns();
  b->carry_stream = -1;
  if (id == SPOOL_ALERTS && s->carry_stream >= 0) {
    b->carry = s->carry;
    b->carry_stream = s->carry_stream;
    s->carry_stream = -1;
  }
  s->waiting_bytes += b->raw.len;
  ym_buf_init(&st->batch, SPOOL_BATCH_MAX_RAW + EVENT_MAX);
  st->batch_count = 0;
  if (st->wq_tail != NULL)
    st->wq_tail->next = b;
  else
    st->wq_head = b;
  st->wq_tail = b;
  if (s->failing)
    trim_waiting(s);
  start_write(s, id);
}

/* ---------------------------------------------------------------- */
/* Cap                                                                */

static uint64_t unacked_events(const stream_t *st, const seg_t *g) {
  uint64_t n = 0;
  for (size_t i = 0; i < g->nrecs; i++)
    if (g->recs[i].last_seq > st->acked && !g->recs[i].corrupt)
      n += g->recs[i].count;
  return n;
}

static bool seg_holds(const seg_t *g, uint64_t seq) {
  return seq != 0 && g->nrecs > 0 && g->recs[0].first_seq <= seq &&
         seq <= g->recs[g->nrecs - 1].last_seq;
}

/* Deletes the oldest segment of a stream that may go: never the one being
 * appended to, and never the one holding the record the uplink is sending
 * (its events may be committed by the console already; shedding them
 * would count them twice). Sets *shed to the number of events in it that
 * had not been acknowledged. Returns false when no segment may go. */
static bool shed_oldest(spool_t *s, spool_stream_t id, uint64_t *shed) {
  stream_t *st = &s->st[id];
  seg_t **pp = &st->head;
  while (*pp != NULL && (*pp == st->tail || seg_holds(*pp, st->sending)))
    pp = &(*pp)->next;
  seg_t *g = *pp;
  if (g == NULL || g == st->tail)
    return false;
  *shed = unacked_events(st, g);
  write_head(st, st->spooled);
  unlink(g->path);
  *pp = g->next;
  st->bytes -= g->size;
  s->stats.bytes_on_disk -= g->size;
  seg_free(g);
  return true;
}

static void enforce_cap(spool_t *s) {
  uint64_t cap = s->opts.max_bytes;
  uint64_t bulk_cap = cap > s->opts.alert_reserve ? cap - s->opts.alert_reserve : 0;
  /* Bulk first: over its share, or the whole spool over the cap. */
  while (s->st[SPOOL_BULK].bytes > bulk_cap ||
         s->st[SPOOL_BULK].bytes + s->st[SPOOL_ALERTS].bytes > cap) {
    uint64_t n = 0;
    if (!shed_oldest(s, SPOOL_BULK, &n))
      break;
    s->stats.events_shed += n;
    if (n > 0 && s->lost != NULL)
      s->lost(SPOOL_BULK, "spool_full", n, true, 0, 0, s->data);
  }
  /* Alerts only when no bulk is left to shed. */
  while (s->st[SPOOL_BULK].bytes + s->st[SPOOL_ALERTS].bytes > cap) {
    uint64_t n = 0;
    if (!shed_oldest(s, SPOOL_ALERTS, &n))
      break;
    s->stats.events_shed += n;
    if (n > 0 && s->lost != NULL)
      s->lost(SPOOL_ALERTS, "spool_full", n, true, 0, 0, s->data);
  }
}

/* ---------------------------------------------------------------- */
/* Public API                                                         */

static void on_timer(uv_timer_t *t) {
  spool_t *s = t->data;
  close_batch(s, SPOOL_BULK);
}

int spool_new(uv_loop_t *loop, const spool_opts_t *opts, spool_ready_cb ready, spool_lost_cb lost,
              void *data, spool_t **out) {
  spool_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return YM_ENOMEM;
  s->loop = loop;
  s->opts = *opts;
  s->ready = ready;
  s->lost = lost;
  s->data = data;
  snprintf(s->dir, sizeof(s->dir), "%s", opts->dir);
  s->seg_max = opts->max_bytes / 8;
  if (s->seg_max > SPOOL_SEGMENT_MAX)
    s->seg_max = SPOOL_SEGMENT_MAX;
  if (s->seg_max < 64 * 1024)
    s->seg_max = 64 * 1024;
  if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) {
    int rc = ym_err_from_errno(errno);
    free(s);
    return rc;
  }
  for (int i = 0; i < SPOOL_NSTREAMS; i++) {
    stream_t *st = &s->st[i];
    ym_buf_init(&st->batch, SPOOL_BATCH_MAX_RAW + EVENT_MAX);
    snprintf(st->dir, sizeof(st->dir), "%s/%s", s->dir, stream_names[i]);
    if (mkdir(st->dir, 0700) != 0 && errno != EEXIST) {
      int rc = ym_err_from_errno(errno);
      free(s);
      return rc;
    }
    recover_stream(s, (spool_stream_t)i);
  }
  s->carry_stream = -1;
  uv_timer_init(loop, &s->retry);
  s->retry.data = s;
  uv_unref((uv_handle_t *)&s->retry);
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  unsigned ms = opts->bulk_flush_ms ? opts->bulk_flush_ms : 2000;
  uv_timer_start(&s->timer, on_timer, ms, ms);
  uv_unref((uv_handle_t *)&s->timer);
  *out = s;
  return 0;
}

uint64_t spool_next_seq(spool_t *s, spool_stream_t stream) {
  stream_t *st = &s->st[stream];
  return st->next_seq;
}

int spool_append(spool_t *s, spool_stream_t stream, const char *line, size_t len) {
  stream_t *st = &s->st[stream];
  if (len > EVENT_MAX)
    return YM_ETOOBIG;
  if (st->batch.len + len + 1 > SPOOL_BATCH_MAX_RAW)
    close_batch(s, stream);
  if (st->batch_count == 0)
    st->batch_first = st->next_seq;
  if (ym_buf_append(&st->batch, line, len) != 0 || ym_buf_append_byte(&st->batch, '\n') != 0)
    return YM_ENOMEM;
  st->batch_count++;
  st->next_seq++;
  s->stats.events_queued++;
  /* Alerts are written at once; bulk when the batch is full or on the timer. */
  if (stream == SPOOL_ALERTS || st->batch_count >= SPOOL_BATCH_MAX_EVENTS)
    close_batch(s, stream);
  return 0;
}

void spool_report_recovery(spool_t *s) {
  for (size_t i = 0; i < s->nrecovered && s->lost != NULL; i++)
    s->lost(s->recovered[i].stream, "spool_corrupt", s->recovered[i].count, s->recovered[i].known,
            0, 0, s->data);
  if (s->recovered_more > 0 && s->lost != NULL)
    s->lost(SPOOL_BULK, "spool_corrupt", s->recovered_more, true, 0, 0, s->data);
  s->nrecovered = 0;
  s->recovered_more = 0;
}

void spool_flush(spool_t *s) {
  for (int i = 0; i < SPOOL_NSTREAMS; i++)
    close_batch(s, (spool_stream_t)i);
}

/* ---- reading for the uplink ---- */

typedef struct {
  uv_work_t req;
  spool_t *s;
  spool_stream_t id;
  char path[1200];
  rec_t rec;
  spool_batch_t *b;
  int rc;
  spool_read_cb cb;
  void *data;
  bool mem;     /* a batch waiting in memory, not a record on disk */
  ym_buf_t raw; /* mem: a copy of its events */
} read_job_t;

static void read_work(uv_work_t *w) {
  read_job_t *j = w->data;
  if (j->mem) {
    /* Compressed here as the writer would: the same payload. */
    j->rc = gzip_buf(&j->raw, &j->b->payload);
    if (j->rc == 0) {
      j->b->first_seq = j->rec.first_seq;
      j->b->last_seq = j->rec.last_seq;
      j->b->count = j->rec.count;
    }
    return;
  }
  int fd = open(j->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    j->rc = ym_err_from_errno(errno);
    return;
  }
  uint8_t hdr[SPOOL_RECORD_HEADER];
  spool_rec_hdr_t h;
  j->rc = YM_ECORRUPT;
  if (pread(fd, hdr, sizeof(hdr), (off_t)j->rec.off) == (ssize_t)sizeof(hdr) &&
      decode_header(hdr, &h) && h.first_seq == j->rec.first_seq &&
      ym_buf_reserve(&j->b->payload, h.gz_len) == 0) {
    ssize_t n = pread(fd, j->b->payload.data, h.gz_len, (off_t)(j->rec.off + sizeof(hdr)));
    if (n == (ssize_t)h.gz_len &&
        (uint32_t)crc32(0, (const Bytef *)j->b->payload.data, h.gz_len) == h.crc) {
      j->b->payload.len = h.gz_len;
      j->b->first_seq = h.first_seq;
      j->b->last_seq = h.last_seq;
      j->b->count = h.count;
      j->rc = 0;
    }
  }
  close(fd);
}

static void read_done(uv_work_t *w, int status) {
  read_job_t *j = w->data;
  (void)status;
  ym_buf_free(&j->raw);
  if (j->mem) {
    j->cb(j->rc, j->rc == 0 ? j->b : NULL, j->data);
    if (j->rc != 0)
      spool_batch_free(j->b);
    free(j);
    return;
  }
  if (j->rc == YM_ENOENT) {
    /* The segment file is gone (its directory was removed): none of its
     * records can be sent. One gap says how many events went with it. */
    stream_t *st = &j->s->st[j->id];
    for (seg_t *g = st->head; g != NULL; g = g->next) {
      if (strcmp(g->path, j->path) != 0)
        continue;
      uint64_t n = unacked_events(st, g);
      for (size_t i = 0; i < g->nrecs; i++)
        g->recs[i].corrupt = true;
      if (n > 0 && j->s->lost != NULL)
        j->s->lost(j->id, "spool_removed", n, true, 0, 0, j->s->data);
      j->rc = YM_ECORRUPT; /* the uplink moves on to the next record */
      break;
    }
  } else if (j->rc == YM_ECORRUPT) {
    /* Damaged since it was written: never sent; a gap says so. */
    stream_t *st = &j->s->st[j->id];
    for (seg_t *g = st->head; g != NULL; g = g->next)
      for (size_t i = 0; i < g->nrecs; i++)
        if (g->recs[i].first_seq == j->rec.first_seq && !g->recs[i].corrupt) {
          g->recs[i].corrupt = true;
          j->s->stats.records_corrupt++;
          if (j->s->lost != NULL)
            j->s->lost(j->id, "spool_corrupt", g->recs[i].count, true, 0, 0, j->s->data);
        }
  }
  j->cb(j->rc, j->rc == 0 ? j->b : NULL, j->data);
  if (j->rc != 0)
    spool_batch_free(j->b);
  free(j);
}

/* The oldest record of a stream not acknowledged and not corrupt. */
static const rec_t *oldest(const stream_t *st, const seg_t **gout) {
  for (const seg_t *g = st->head; g != NULL; g = g->next)
    for (size_t i = 0; i < g->nrecs; i++)
      if (g->recs[i].last_seq > st->acked && !g->recs[i].corrupt) {
        *gout = g;
        return &g->recs[i];
      }
  return NULL;
}

/* While writing fails, the oldest batch waiting in memory that the console
 * has not acknowledged, when everything before it has been sent from disk
 * and no write of the stream is in flight (that batch would come first).
 * The uplink sends it from memory: alerts reach the console even while the
 * disk cannot be written. */
static const pending_batch_t *waiting_unsent(const spool_t *s, const stream_t *st) {
  const seg_t *g;
  if (!s->failing || st->writing || oldest(st, &g) != NULL)
    return NULL;
  for (const pending_batch_t *b = st->wq_head; b != NULL; b = b->next)
    if (b->last_seq > st->acked)
      return b;
  return NULL;
}

/* Reads a batch waiting in memory for the uplink (see waiting_unsent). */
static void read_waiting(spool_t *s, spool_stream_t stream, const pending_batch_t *pb,
                         spool_read_cb cb, void *data) {
  read_job_t *j = calloc(1, sizeof(*j));
  spool_batch_t *b = j ? calloc(1, sizeof(*b)) : NULL;
  if (b != NULL) {
    ym_buf_init(&j->raw, SPOOL_BATCH_MAX_RAW + EVENT_MAX);
    if (ym_buf_append(&j->raw, pb->raw.data, pb->raw.len) != 0) {
      ym_buf_free(&j->raw);
      free(b);
      b = NULL;
    }
  }
  if (b == NULL) {
    free(j);
    cb(YM_ENOMEM, NULL, data);
    return;
  }
  ym_buf_init(&b->payload, SPOOL_SEGMENT_MAX);
  b->stream = stream;
  j->b = b;
  j->s = s;
  j->id = stream;
  j->mem = true;
  j->rec.first_seq = pb->first_seq;
  j->rec.last_seq = pb->last_seq;
  j->rec.count = pb->count;
  s->st[stream].sending = pb->first_seq;
  j->cb = cb;
  j->data = data;
  j->req.data = j;
  uv_queue_work(s->loop, &j->req, read_work, read_done);
}

void spool_read_async(spool_t *s, spool_stream_t stream, spool_read_cb cb, void *data) {
  const seg_t *g = NULL;
  const rec_t *r = oldest(&s->st[stream], &g);
  const pending_batch_t *pb = r == NULL ? waiting_unsent(s, &s->st[stream]) : NULL;
  if (pb != NULL) {
    read_waiting(s, stream, pb, cb, data);
    return;
  }
  read_job_t *j = r ? calloc(1, sizeof(*j)) : NULL;
  spool_batch_t *b = j ? calloc(1, sizeof(*b)) : NULL;
  if (b == NULL) {
    free(j);
    cb(r ? YM_ENOMEM : YM_ENOENT, NULL, data);
    return;
  }
  ym_buf_init(&b->payload, SPOOL_SEGMENT_MAX);
  b->stream = stream;
  j->b = b;
  j->s = s;
  j->id = stream;
  j->rec = *r;
  s->st[stream].sending = r->first_seq;
  j->cb = cb;
  j->data = data;
  snprintf(j->path, sizeof(j->path), "%s", g->path);
  j->req.data = j;
  uv_queue_work(s->loop, &j->req, read_work, read_done);
}

void spool_batch_free(spool_batch_t *b) {
  if (b == NULL)
    return;
  ym_buf_free(&b->payload);
  free(b);
}

void spool_ack(spool_t *s, spool_stream_t stream, uint64_t seq) {
  stream_t *st = &s->st[stream];
  if (seq <= st->acked)
    return;
  /* Count newly acknowledged events, then delete fully acknowledged
   * segments (never the one being appended to while it is still open:
   * it is deleted once it is complete). */
  for (seg_t *g = st->head; g != NULL; g = g->next)
    for (size_t i = 0; i < g->nrecs; i++)
      if (g->recs[i].last_seq > st->acked && g->recs[i].last_seq <= seq && !g->recs[i].corrupt)
        s->stats.events_acked += g->recs[i].count;
  st->acked = seq;
  /* Batches sent from memory while the disk could not be written: the
   * console has them, they need not be written any more. */
  pending_batch_t **pp = &st->wq_head, *last = NULL;
  while (*pp != NULL) {
    pending_batch_t *b = *pp;
    if (b->last_seq <= seq) {
      *pp = b->next;
      s->stats.events_acked += b->count;
      s->waiting_bytes -= b->raw.len;
      ym_buf_free(&b->raw);
      free(b);
    } else {
      last = b;
      pp = &b->next;
    }
  }
  st->wq_tail = last;
  while (st->head != NULL) {
    seg_t *g = st->head;
    if (g->nrecs == 0 || g->recs[g->nrecs - 1].last_seq > st->acked)
      break;
    if (g == st->tail) {
      if (st->writing)
        break;
      st->tail = NULL;
    }
    write_head(st, st->spooled);
    unlink(g->path);
    st->head = g->next;
    st->bytes -= g->size;
    s->stats.bytes_on_disk -= g->size;
    seg_free(g);
  }
}

bool spool_pending(const spool_t *s, spool_stream_t stream) {
  const seg_t *g;
  return oldest(&s->st[stream], &g) != NULL || waiting_unsent(s, &s->st[stream]) != NULL;
}

uint64_t spool_last_seq(const spool_t *s, spool_stream_t stream) {
  return s->st[stream].next_seq - 1;
}

void spool_stats(const spool_t *s, spool_stats_t *out) {
  *out = s->stats;
  out->bytes_waiting = s->waiting_bytes;
  out->failing = s->failing;
}

static void on_timer_closed(uv_handle_t *h) {
  (void)h;
}

void spool_free(spool_t *s) {
  if (s == NULL)
    return;
  s->closing = true;
  spool_flush(s);
  /* Let the writes in flight (and those queued behind them) finish; once
   * a write fails nothing more is tried (write_failed drops the rest). */
  if (s->failing)
    drop_waiting(s);
  while (s->st[0].writing || s->st[1].writing || s->st[0].wq_head || s->st[1].wq_head)
    uv_run(s->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&s->retry, on_timer_closed);
  uv_close((uv_handle_t *)&s->timer, on_timer_closed);
  uv_run(s->loop, UV_RUN_NOWAIT);
  for (int i = 0; i < SPOOL_NSTREAMS; i++) {
    stream_t *st = &s->st[i];
    ym_buf_free(&st->batch);
    seg_t *g = st->head;
    while (g != NULL) {
      seg_t *next = g->next;
      seg_free(g);
      g = next;
    }
  }
  free(s);
}
