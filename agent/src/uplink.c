/*
 * The uplink: batches and check-ins to the console over libcurl multi on
 * the libuv loop (see uplink.h for the behaviour).
 *
 * One request is in flight at a time; pump() decides what comes next:
 * enroll again (after a 401), check in (when due), the batch held (a retry,
 * or the next part of a split batch), or the oldest batch of the spool,
 * alerts first. Every answer goes through check_done() into one of the
 * *_done() functions, which acknowledge, split, wait (backoff) or stop,
 * and then call pump() again.
 *
 * Slow work runs on worker threads: reading the identity file, writing it
 * (fsync), collecting host facts for an enrollment, and decompressing,
 * splitting and compressing a batch after a 413. While such a job or a
 * spool read is pending, pump() starts nothing else, and the job may use
 * the uplink's split state (cur_t) alone.
 */
#include "uplink.h"
#include "identity.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/log.h"
#include "yamori/version.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <zlib.h>

#define RAW_MAX (4 * SPOOL_BATCH_MAX_RAW) /* a batch's event lines, decompressed */
#define EVENT_LINE_MAX (256 * 1024 + 1)
#define STATUS_MAX (64 * 1024) /* the agent's check-in part */
#define PARTS_MAX 64           /* split depth: log2 of a batch's events, and more */

static const char *const stream_names[SPOOL_NSTREAMS] = {"alerts", "bulk"};

typedef enum { XFER_NONE, XFER_EVENTS, XFER_CHECKIN, XFER_ENROLL, XFER_REQUEST } xfer_t;

/* A request of another module (uplink_request), queued. */
typedef struct ureq {
  struct ureq *next;
  char *method, *path, *content_type;
  void *body;
  size_t body_len, max_answer;
  int sink_fd;
  uint64_t range_from, written;
  bool too_big, write_failed;
  uplink_reply_fn cb;
  void *data;
} ureq_t;

/* A socket libcurl asked us to watch. */
typedef struct sock {
  uv_poll_t poll;
  curl_socket_t fd;
  struct uplink *u;
  struct sock *prev, *next;
} sock_t;

/* Event lines [lo, hi) of the batch held. */
typedef struct {
  uint32_t lo, hi;
} range_t;

/* The batch being delivered and, after a 413, its split state. */
typedef struct {
  spool_batch_t *b;         /* NULL when none is held */
  bool split;               /* parts[] is in use */
  unsigned nparts;          /* parts still to send; parts[nparts - 1] next */
  range_t parts[PARTS_MAX]; /* lower halves on top: sent in order */
  bool exploded;            /* raw and lines are filled */
  ym_buf_t raw;             /* the decompressed event lines */
  size_t *lines;            /* nlines + 1 offsets: line i is [lines[i], lines[i + 1]) */
  uint32_t nlines;          /* lines found */
  uint64_t first, last;     /* the request in flight: its sequence range */
  uint32_t count;           /* and its number of events */
} cur_t;

typedef enum { JOB_LOAD, JOB_SAVE, JOB_ENROLL_BODY, JOB_PART } job_kind_t;

/* Work for a worker thread. */
typedef struct {
  uv_work_t req;
  struct uplink *u;
  job_kind_t kind;
  int rc;
  bool after_401;        /* JOB_LOAD: the console refused the identity in use */
  identity_t id;         /* JOB_LOAD: read; JOB_SAVE, JOB_ENROLL_BODY: input */
  const char *state_dir; /* the uplink's, which outlives its jobs */
  char err[256];
  ym_buf_t body; /* JOB_ENROLL_BODY, JOB_PART: the request body */
  char agent_id[IDENTITY_AGENT_ID_MAX];
  range_t range; /* JOB_PART: the lines to send */
  uint64_t first, last;
  uint32_t count;
} job_t;

struct uplink {
  uv_loop_t *loop;
  spool_t *spool;
  char *state_dir;
  uplink_status_fn status_fn;
  uplink_lost_fn lost_fn;
  void *data;

  CURLM *multi;
  CURL *easy;
  uv_timer_t curl_timer, retry_timer, checkin_timer, idpoll_timer;
  sock_t *socks;

  identity_t id;
  bool need_enroll; /* enroll again with id.tok before anything else */
  bool reenrolled;  /* enrolled again and no success since: a 401 now stops */
  bool loading, saving, save_again, reading, preparing, waiting, checkin_due;
  bool closing;
  unsigned pending; /* open handles, jobs and spool reads */
  unsigned nfail;   /* consecutive failures */

  xfer_t xfer;
  struct curl_slist *hdrs;
  ym_buf_t body, resp, url;
  cur_t cur;
  char load_err[256]; /* the last identity file problem logged */
  uplink_stats_t st;

  struct {
    uplink_checkin_fn fn;
    void *data;
  } hooks[UPLINK_MAX_HOOKS];
  unsigned n_hooks;
  ureq_t *reqs, *reqs_tail; /* queued module requests; reqs is in flight with XFER_REQUEST */
  ym_buf_t req_resp;        /* the answer to a module request */
};

static void pump(uplink_t *u);
static void on_idpoll(uv_timer_t *t);

/* ---------------------------------------------------------------- */
/* Pure parts: backoff and request bodies                             */

uint64_t uplink_backoff_ms(unsigned failures, uint64_t retry_after_ms, uint64_t rnd) {
  uint64_t window = UPLINK_BACKOFF_MAX_MS;
  if (failures == 0)
    failures = 1;
  if (failures - 1 < 20) {
    window = UPLINK_BACKOFF_BASE_MS << (failures - 1);
    if (window > UPLINK_BACKOFF_MAX_MS)
      window = UPLINK_BACKOFF_MAX_MS;
  }
  if (retry_after_ms == 0)
    return rnd % (window + 1);
  if (retry_after_ms > UPLINK_RETRY_AFTER_MAX_MS)
    retry_after_ms = UPLINK_RETRY_AFTER_MAX_MS;
  uint64_t spread = window < retry_after_ms ? window : retry_after_ms;
  return retry_after_ms + rnd % (spread + 1);
}

/* Appends in[0..len) to out as one gzip member. */
static int gzip_append(ym_buf_t *out, const void *in, size_t len) {
  if (len > UINT32_MAX)
    return YM_ETOOBIG;
  z_stream z;
  memset(&z, 0, sizeof(z));
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return YM_ENOMEM;
  uLong bound = deflateBound(&z, (uLong)len);
  int rc = ym_buf_reserve(out, bound);
  if (rc == 0) {
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out->data + out->len;
    z.avail_out = (uInt)bound;
    rc = deflate(&z, Z_FINISH) == Z_STREAM_END ? 0 : YM_EIO;
    if (rc == 0) {
      out->len += z.total_out;
      out->data[out->len] = '\0';
    }
  }
  deflateEnd(&z);
  return rc;
}

/* Decompresses a gzip body (one or more members) into out, bounded by
 * out's cap. Returns 0, YM_ETOOBIG or YM_ECORRUPT. */
static int gunzip_all(const void *in, size_t len, ym_buf_t *out) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  if (len > UINT32_MAX || inflateInit2(&z, 15 + 16) != Z_OK)
    return YM_ENOMEM;
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)len;
  int rc = 0;
  for (;;) {
    size_t room = out->max - out->len < 65536 ? out->max - out->len : 65536;
    if (room == 0) {
      rc = YM_ETOOBIG;
      break;
    }
    if ((rc = ym_buf_reserve(out, room)) != 0)
      break;
    z.next_out = (Bytef *)out->data + out->len;
    z.avail_out = (uInt)room;
    int zr = inflate(&z, Z_NO_FLUSH);
    out->len += room - z.avail_out;
    if (zr == Z_STREAM_END) {
      if (z.avail_in == 0)
        break;
      if (inflateReset(&z) != Z_OK) {
        rc = YM_ECORRUPT;
        break;
      }
    } else if (zr != Z_OK && !(zr == Z_BUF_ERROR && z.avail_out == 0)) {
      rc = YM_ECORRUPT;
      break;
    } else if (zr == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
      rc = YM_ECORRUPT; /* truncated */
      break;
    }
  }
  if (out->data != NULL)
    out->data[out->len] = '\0';
  inflateEnd(&z);
  return rc;
}

static bool id_chars_ok(const char *s) {
  if (*s == '\0')
    return false;
  for (; *s != '\0'; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          *s == '-'))
      return false;
  return true;
}

int uplink_build_body(const char *agent_id, spool_stream_t stream, uint64_t first_seq,
                      uint64_t last_seq, uint32_t count, const void *gz, size_t gz_len,
                      ym_buf_t *out) {
  if ((unsigned)stream >= SPOOL_NSTREAMS || strlen(agent_id) >= IDENTITY_AGENT_ID_MAX ||
      !id_chars_ok(agent_id))
    return YM_EINVAL;
  char hdr[256];
  int n = snprintf(hdr, sizeof(hdr),
                   "{\"agent_id\":\"%s\",\"stream\":\"%s\",\"first_seq\":%" PRIu64
                   ",\"last_seq\":%" PRIu64 ",\"count\":%" PRIu32 "}\n",
                   agent_id, stream_names[stream], first_seq, last_seq, count);
  if (n <= 0 || (size_t)n >= sizeof(hdr))
    return YM_EINVAL;
  int rc = gzip_append(out, hdr, (size_t)n);
  return rc != 0 ? rc : ym_buf_append(out, gz, gz_len);
}

/* ---------------------------------------------------------------- */
/* Small helpers                                                      */

/* A uniform random 64-bit value from the kernel; the clock when the
 * kernel has none yet (early boot), which still differs between PCs. */
static uint64_t rnd64(void) {
  uint64_t r;
  if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
    return r;
  return (uv_hrtime() * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)getpid() << 32);
}

static void set_error(uplink_t *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(uplink_t *u, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(u->st.last_error, sizeof(u->st.last_error), fmt, ap);
  va_end(ap);
}

/* Writes "the console answered WHAT with HTTP N (error)" as last_error;
 * the error code from the answer is kept only when it looks like one. */
static void http_error(uplink_t *u, const char *what, long status) {
  char code[48] = "";
  cJSON *j = NULL;
  if (ym_json_parse(u->resp.data ? u->resp.data : "", u->resp.len, IDENTITY_REPLY_MAX, &j, NULL) ==
      0) {
    const char *e = ym_json_get_str(j, "error");
    if (e != NULL && strlen(e) > 0 && strlen(e) < 40 &&
        strspn(e, "abcdefghijklmnopqrstuvwxyz_") == strlen(e))
      snprintf(code, sizeof(code), " (%s)", e);
    cJSON_Delete(j);
  }
  if (status >= 300 && status < 400)
    set_error(u, "the console answered %s with a redirect (HTTP %ld), which is refused", what,
              status);
  else
    set_error(u, "the console answered %s with HTTP %ld%s", what, status, code);
}

/* Drops a reference that keeps the uplink alive after uplink_free. */
static void release(uplink_t *u) {
  if (--u->pending > 0 || !u->closing)
    return;
  ym_buf_free(&u->body);
  ym_buf_free(&u->resp);
  ym_buf_free(&u->url);
  spool_batch_free(u->cur.b);
  ym_buf_free(&u->cur.raw);
  free(u->cur.lines);
  identity_wipe(&u->id);
  free(u->state_dir);
  free(u);
  curl_global_cleanup();
}

static void on_handle_closed(uv_handle_t *h) {
  release(h->data);
}

static void job_free(job_t *j) {
  if (j->kind == JOB_ENROLL_BODY && j->body.data != NULL)
    explicit_bzero(j->body.data, j->body.len); /* it holds the token */
  ym_buf_free(&j->body);
  identity_wipe(&j->id);
  free(j);
}

/* Queues a job; its done function runs on the loop. Returns 0 or an
 * error (the job is then freed). */
static int queue_job(uplink_t *u, job_t *j, uv_work_cb work, uv_after_work_cb done) {
  j->u = u;
  j->req.data = j;
  int rc = uv_queue_work(u->loop, &j->req, work, done);
  if (rc != 0) {
    job_free(j);
    return YM_ENOMEM;
  }
  u->pending++;
  return 0;
}

static job_t *job_new(job_kind_t kind) {
  job_t *j = calloc(1, sizeof(*j));
  if (j != NULL) {
    j->kind = kind;
    ym_buf_init(&j->body, UPLINK_BODY_MAX);
  }
  return j;
}

/* ---------------------------------------------------------------- */
/* Outcomes: success, failure with backoff, stop                      */

static void on_retry(uv_timer_t *t) {
  uplink_t *u = t->data;
  u->waiting = false;
  pump(u);
}

/* A request failed (last_error says why): wait, then try again. */
static void fail(uplink_t *u, uint64_t retry_after_ms) {
  u->nfail++;
  u->st.failures++;
  u->st.retries++;
  uint64_t ms = uplink_backoff_ms(u->nfail, retry_after_ms, rnd64());
  u->st.backoff_ms = ms;
  u->waiting = true;
  uv_timer_start(&u->retry_timer, on_retry, ms, 0);
  if (u->nfail == 1)
    ym_log(YM_LOG_WARN, 0, "uplink: %s; trying again with backoff", u->st.last_error);
}

static void succeed(uplink_t *u) {
  if (u->nfail > 0)
    ym_log(YM_LOG_NOTICE, 0, "uplink: the console answers again after %u failures", u->nfail);
  u->nfail = 0;
  u->reenrolled = false;
  u->st.backoff_ms = 0;
  u->st.last_error[0] = '\0';
}

/* The console does not accept the identity and it cannot be renewed:
 * stop sending (the spool keeps everything) and watch the identity file
 * for a new enrollment. */
static void stop_sending(uplink_t *u) {
  u->st.stopped = true;
  u->need_enroll = false;
  ym_log(YM_LOG_WARN, 0, "uplink: %s; events stay in the spool", u->st.last_error);
  uv_timer_start(&u->idpoll_timer, on_idpoll, UPLINK_IDENTITY_POLL_MS, UPLINK_IDENTITY_POLL_MS);
}

static void on_checkin_timer(uv_timer_t *t) {
  uplink_t *u = t->data;
  u->checkin_due = true;
  pump(u);
}

static void arm_checkin(uplink_t *u) {
  u->checkin_due = false;
  uv_timer_start(&u->checkin_timer, on_checkin_timer, (uint64_t)u->st.checkin_s * 1000, 0);
}

/* ---------------------------------------------------------------- */
/* Identity: adopt, load, save                                        */

static void save_work(uv_work_t *w) {
  job_t *j = w->data;
  j->rc = identity_save(j->state_dir, &j->id);
}

static void start_save(uplink_t *u);

static void save_done(uv_work_t *w, int status) {
  job_t *j = w->data;
  uplink_t *u = j->u;
  (void)status;
  u->saving = false;
  if (!u->closing) {
    if (j->rc != 0)
      ym_log(YM_LOG_WARN, j->rc, "uplink: cannot write the new identity to %s/identity.json",
             u->state_dir);
    if (u->save_again) {
      u->save_again = false;
      start_save(u);
    }
  }
  job_free(j);
  release(u);
}

static void start_save(uplink_t *u) {
  if (u->saving) {
    u->save_again = true;
    return;
  }
  job_t *j = job_new(JOB_SAVE);
  if (j == NULL)
    return;
  j->id = u->id;
  j->state_dir = u->state_dir;
  if (queue_job(u, j, save_work, save_done) == 0)
    u->saving = true;
}

/* Starts using id: check in at once, then send. */
static void adopt(uplink_t *u, const identity_t *id, bool reenrolled) {
  identity_wipe(&u->id);
  u->id = *id;
  u->need_enroll = false;
  u->reenrolled = reenrolled;
  u->st.enrolled = true;
  u->st.stopped = false;
  u->st.checkin_s = id->checkin_s != 0 ? id->checkin_s : IDENTITY_CHECKIN_DEFAULT;
  u->st.last_error[0] = '\0';
  u->load_err[0] = '\0';
  u->checkin_due = true;
  uv_timer_stop(&u->idpoll_timer);
  uv_timer_stop(&u->checkin_timer);
  if (u->waiting) {
    uv_timer_stop(&u->retry_timer);
    u->waiting = false;
  }
  u->nfail = 0;
  u->st.backoff_ms = 0;
  ym_log(YM_LOG_NOTICE, 0, "uplink: %s agent %s of tenant %s, console %s",
         reenrolled ? "enrolled again as" : "sending as", u->id.agent_id, u->id.tenant, u->id.url);
  pump(u);
}

static void load_work(uv_work_t *w) {
  job_t *j = w->data;
  j->rc = identity_load(j->state_dir, &j->id, j->err, sizeof(j->err));
}

static void load_done(uv_work_t *w, int status) {
  job_t *j = w->data;
  uplink_t *u = j->u;
  (void)status;
  u->loading = false;
  if (u->closing)
    goto out;
  if (j->after_401) {
    /* The console refused the identity in use. A different one on disk
     * (`yamorictl enroll` ran meanwhile) is tried first; else the token,
     * once; else the uplink stops. */
    if (j->rc == 0 && !identity_same(&j->id, &u->id)) {
      adopt(u, &j->id, false);
    } else if (u->id.tok[0] != '\0') {
      ym_log(YM_LOG_NOTICE, 0,
             "uplink: the console refused the agent's identity (HTTP 401); "
             "enrolling again with the stored token");
      u->need_enroll = true;
      pump(u);
    } else {
      set_error(u, "the console no longer accepts this agent's identity (HTTP 401) and no "
                   "enrollment token is kept: run `yamorictl enroll` with a new token");
      stop_sending(u);
    }
    goto out;
  }
  /* The periodic look for an identity (not enrolled, or stopped). */
  if (j->rc == 0) {
    if (!u->st.enrolled || !identity_same(&j->id, &u->id))
      adopt(u, &j->id, false);
  } else if (j->rc != YM_ENOENT) {
    if (strcmp(j->err, u->load_err) != 0) {
      ym_log(YM_LOG_WARN, 0, "uplink: %s", j->err);
      snprintf(u->load_err, sizeof(u->load_err), "%s", j->err);
    }
    if (!u->st.enrolled)
      set_error(u, "%s", j->err);
  }
out:
  job_free(j);
  release(u);
}

static void start_load(uplink_t *u, bool after_401) {
  if (u->loading)
    return;
  job_t *j = job_new(JOB_LOAD);
  if (j == NULL)
    return;
  j->after_401 = after_401;
  j->state_dir = u->state_dir;
  if (queue_job(u, j, load_work, load_done) == 0)
    u->loading = true;
}

static void on_idpoll(uv_timer_t *t) {
  start_load(t->data, false);
}

/* A 401: the identity in use no longer works. */
static void auth_refused(uplink_t *u, const char *what) {
  set_error(u, "the console refused the agent's identity (HTTP 401) for %s", what);
  if (u->reenrolled) {
    set_error(u, "the console refused the identity it has just issued (HTTP 401) for %s", what);
    stop_sending(u);
    return;
  }
  start_load(u, true);
}

/* ---------------------------------------------------------------- */
/* libcurl on the libuv loop                                          */

static void check_done(uplink_t *u);

static void on_sock_closed(uv_handle_t *h) {
  sock_t *k = h->data;
  uplink_t *u = k->u;
  free(k);
  release(u);
}

static void sock_close(uplink_t *u, sock_t *k) {
  if (k->prev != NULL)
    k->prev->next = k->next;
  else
    u->socks = k->next;
  if (k->next != NULL)
    k->next->prev = k->prev;
  /* Closed now, while the descriptor is still libcurl's: libuv stops
   * watching it before libcurl closes it and the number is reused. */
  uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  sock_t *k = p->data;
  uplink_t *u = k->u;
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(u->multi, k->fd, flags, &running);
  check_done(u);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  uplink_t *u = userp;
  sock_t *k = socketp;
  (void)e;
  if (what == CURL_POLL_REMOVE) {
    if (k != NULL) {
      sock_close(u, k);
      if (!u->closing)
        curl_multi_assign(u->multi, s, NULL);
    }
    return 0;
  }
  if (u->closing)
    return 0;
  if (k == NULL) {
    k = calloc(1, sizeof(*k));
    if (k == NULL)
      return -1;
    if (uv_poll_init_socket(u->loop, &k->poll, s) != 0) {
      free(k);
      return -1;
    }
    k->fd = s;
    k->u = u;
    k->poll.data = k;
    k->next = u->socks;
    if (u->socks != NULL)
      u->socks->prev = k;
    u->socks = k;
    u->pending++;
    curl_multi_assign(u->multi, s, k);
  }
  int ev = 0;
  if (what & CURL_POLL_IN)
    ev |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    ev |= UV_WRITABLE;
  uv_poll_start(&k->poll, ev, on_poll);
  return 0;
}

static void on_curl_timeout(uv_timer_t *t) {
  uplink_t *u = t->data;
  int running;
  curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(u);
}

static int on_curl_timer(CURLM *m, long ms, void *userp) {
  uplink_t *u = userp;
  (void)m;
  if (u->closing)
    return 0;
  if (ms < 0)
    uv_timer_stop(&u->curl_timer);
  else
    uv_timer_start(&u->curl_timer, on_curl_timeout, (uint64_t)ms, 0);
  return 0;
}

/* Collects an answer, bounded: beyond the cap the transfer is aborted. */
static size_t on_write(char *p, size_t size, size_t nmemb, void *data) {
  uplink_t *u = data;
  size_t n = size * nmemb;
  return ym_buf_append(&u->resp, p, n) == 0 ? n : 0;
}

/* Collects the answer to a module request: in memory or into its fd,
 * bounded by its max_answer. */
static size_t on_write_req(char *p, size_t size, size_t nmemb, void *data) {
  uplink_t *u = data;
  ureq_t *q = u->reqs;
  size_t n = size * nmemb;
  if (q == NULL)
    return 0;
  if (q->written + n > q->max_answer) {
    q->too_big = true;
    return 0;
  }
  if (q->sink_fd >= 0) {
    for (size_t off = 0; off < n;) {
      ssize_t w = write(q->sink_fd, p + off, n - off);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0) {
        q->write_failed = true;
        return 0;
      }
      off += (size_t)w;
    }
  } else if (ym_buf_append(&u->req_resp, p, n) != 0) {
    q->too_big = true;
    return 0;
  }
  q->written += n;
  return n;
}

/* Starts a POST of u->body to path. Returns 0 or an error with
 * last_error set. */
static int start_request(uplink_t *u, xfer_t kind, const char *path) {
  ym_buf_reset(&u->url);
  ym_buf_reset(&u->resp);
  if (ym_buf_appendf(&u->url, "%s%s", u->id.url, path) != 0) {
    set_error(u, "the console URL is too long");
    return YM_ETOOBIG;
  }
  curl_easy_reset(u->easy);
  int rc = identity_curl_setup(u->easy, &u->id, UPLINK_TIMEOUT_S);
  if (rc != 0) {
    set_error(u, "this libcurl lacks an option the agent needs: %s", ym_strerror(rc));
    return rc;
  }
  static const char *const plain[] = {"Content-Type: application/json", "Expect:", NULL};
  static const char *const events[] = {"Content-Type: application/x-ndjson",
                                       "Content-Encoding: gzip", "Expect:", NULL};
  struct curl_slist *h = NULL;
  bool ok = true;
  const ureq_t *q = kind == XFER_REQUEST ? u->reqs : NULL;
  for (const char *const *p = kind == XFER_EVENTS ? events : plain; q == NULL && *p != NULL && ok;
       p++) {
    struct curl_slist *n = curl_slist_append(h, *p);
    ok = n != NULL;
    h = n != NULL ? n : h;
  }
  if (q != NULL) {
    char line[160];
    const char *lines[3] = {line, "Expect:", NULL};
    char range[64];
    snprintf(line, sizeof(line), "Content-Type: %s",
             q->content_type != NULL ? q->content_type : "application/json");
    if (q->range_from > 0) {
      snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)q->range_from);
      lines[1] = range;
    }
    for (const char *const *p = lines; *p != NULL && ok; p++) {
      struct curl_slist *n = curl_slist_append(h, *p);
      ok = n != NULL;
      h = n != NULL ? n : h;
    }
  }
  if (ok) {
    /* An enrollment carries the identity in use, if any, as the proof
     * that keeps it (docs/protocol.md); every other request needs it. */
    ym_buf_t auth;
    ym_buf_init(&auth, 256);
    int arc = identity_auth_header(&u->id, &auth);
    struct curl_slist *n = arc == 0 ? curl_slist_append(h, auth.data) : NULL;
    ok = n != NULL || (kind == XFER_ENROLL && arc == YM_EINVAL);
    h = n != NULL ? n : h;
    if (auth.data != NULL)
      explicit_bzero(auth.data, auth.len);
    ym_buf_free(&auth);
  }
  if (!ok) {
    curl_slist_free_all(h);
    set_error(u, "cannot build the request headers");
    return YM_ENOMEM;
  }
  u->hdrs = h;
  curl_easy_setopt(u->easy, CURLOPT_URL, u->url.data);
  curl_easy_setopt(u->easy, CURLOPT_HTTPHEADER, u->hdrs);
  if (q != NULL && strcmp(q->method, "GET") == 0) {
    curl_easy_setopt(u->easy, CURLOPT_HTTPGET, 1L);
  } else if (q != NULL) {
    curl_easy_setopt(u->easy, CURLOPT_POSTFIELDS, q->body != NULL ? (const char *)q->body : "");
    curl_easy_setopt(u->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    if (strcmp(q->method, "POST") != 0)
      curl_easy_setopt(u->easy, CURLOPT_CUSTOMREQUEST, q->method);
  } else {
    curl_easy_setopt(u->easy, CURLOPT_POSTFIELDS, u->body.data ? u->body.data : "");
    curl_easy_setopt(u->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u->body.len);
  }
  /* A module's answer is bounded by its own max_answer (on_write_req), not
   * by the cap on the uplink's own answers. */
  if (q != NULL)
    curl_easy_setopt(u->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)0);
  curl_easy_setopt(u->easy, CURLOPT_WRITEFUNCTION, q != NULL ? on_write_req : on_write);
  curl_easy_setopt(u->easy, CURLOPT_WRITEDATA, u);
  if (curl_multi_add_handle(u->multi, u->easy) != CURLM_OK) {
    curl_slist_free_all(u->hdrs);
    u->hdrs = NULL;
    set_error(u, "cannot start a transfer");
    return YM_ENOMEM;
  }
  u->xfer = kind;
  return 0;
}

/* ---------------------------------------------------------------- */
/* Events                                                             */

static void release_batch(uplink_t *u) {
  cur_t *c = &u->cur;
  spool_batch_free(c->b);
  c->b = NULL;
  c->split = false;
  c->nparts = 0;
  c->exploded = false;
  ym_buf_free(&c->raw);
  free(c->lines);
  c->lines = NULL;
  c->nlines = 0;
}

/* count events up to and including seq cannot be delivered: they are
 * acknowledged here and reported. */
static void lose(uplink_t *u, uint64_t count, uint64_t seq) {
  spool_stream_t s = u->cur.b->stream;
  spool_ack(u->spool, s, seq);
  u->st.lost += count;
  ym_log(YM_LOG_WARN, 0,
         "uplink: %" PRIu64 " event(s) of stream %s up to number %" PRIu64
         " cannot be delivered (too large for the console, or unreadable); recorded as a gap",
         count, stream_names[s], seq);
  if (u->lost_fn != NULL)
    u->lost_fn(s, count, u->data);
}

/* Events left in the parts still to send. */
static uint64_t parts_left(const cur_t *c) {
  uint64_t n = 0;
  for (unsigned i = 0; i < c->nparts; i++)
    n += c->parts[i].hi - c->parts[i].lo;
  return n;
}

/* The part (or batch) in flight was too large: split it in halves, or
 * give up on a single event. */
static void split_current(uplink_t *u) {
  cur_t *c = &u->cur;
  if (!c->split) {
    if (c->b->count <= 1) {
      lose(u, c->b->count, c->b->last_seq);
      release_batch(u);
      pump(u);
      return;
    }
    c->split = true;
    c->nparts = 1;
    c->parts[0] = (range_t){0, c->b->count};
  }
  range_t top = c->parts[c->nparts - 1];
  if (top.hi - top.lo <= 1 || c->nparts >= PARTS_MAX) {
    lose(u, top.hi - top.lo, c->last);
    if (--c->nparts == 0)
      release_batch(u);
    pump(u);
    return;
  }
  uint32_t mid = top.lo + (top.hi - top.lo) / 2;
  c->parts[c->nparts - 1] = (range_t){mid, top.hi};
  c->parts[c->nparts++] = (range_t){top.lo, mid};
  u->st.splits++;
  pump(u);
}

/* Decompresses the held batch and finds its lines (worker thread). */
static int explode(cur_t *c) {
  const spool_batch_t *b = c->b;
  ym_buf_free(&c->raw);
  free(c->lines);
  c->lines = NULL;
  c->nlines = 0;
  ym_buf_init(&c->raw, RAW_MAX);
  int rc = gunzip_all(b->payload.data, b->payload.len, &c->raw);
  if (rc != 0)
    return YM_ECORRUPT;
  c->lines = calloc((size_t)b->count + 1, sizeof(*c->lines));
  if (c->lines == NULL)
    return YM_ENOMEM;
  uint32_t n = 0;
  size_t off = 0;
  while (off < c->raw.len) {
    const char *nl = memchr(c->raw.data + off, '\n', c->raw.len - off);
    size_t end = nl != NULL ? (size_t)(nl - c->raw.data) + 1 : c->raw.len;
    if (n >= b->count)
      return YM_ECORRUPT;
    c->lines[n++] = off;
    off = end;
  }
  c->lines[n] = c->raw.len;
  c->nlines = n;
  return n == b->count ? 0 : YM_ECORRUPT;
}

/* The stream number of line i: by position when the batch's numbers are
 * consecutive (the usual case), else from the event's yamori.stream_seq. */
static int line_seq(const cur_t *c, uint32_t i, uint64_t *out) {
  const spool_batch_t *b = c->b;
  if (b->last_seq >= b->first_seq && b->last_seq - b->first_seq + 1 == b->count) {
    *out = b->first_seq + i;
    return 0;
  }
  const char *line = c->raw.data + c->lines[i];
  size_t len = c->lines[i + 1] - c->lines[i];
  if (len > 0 && line[len - 1] == '\n')
    len--;
  cJSON *j = NULL;
  int rc = ym_json_parse_lenient(line, len, EVENT_LINE_MAX, &j);
  long long seq = -1;
  if (rc == 0 &&
      (!ym_json_get_int(cJSON_GetObjectItemCaseSensitive(j, "yamori"), "stream_seq", &seq) ||
       seq < 0))
    rc = YM_EPARSE;
  cJSON_Delete(j);
  *out = (uint64_t)seq;
  return rc;
}

static void part_work(uv_work_t *w) {
  job_t *j = w->data;
  cur_t *c = &j->u->cur;
  if (!c->exploded) {
    j->rc = explode(c);
    if (j->rc != 0)
      return;
    c->exploded = true;
  }
  range_t r = j->range;
  if ((j->rc = line_seq(c, r.lo, &j->first)) != 0 || (j->rc = line_seq(c, r.hi - 1, &j->last)))
    return;
  j->count = r.hi - r.lo;
  ym_buf_t gz;
  ym_buf_init(&gz, UPLINK_BODY_MAX);
  j->rc = gzip_append(&gz, c->raw.data + c->lines[r.lo], c->lines[r.hi] - c->lines[r.lo]);
  if (j->rc == 0)
    j->rc = uplink_build_body(j->agent_id, c->b->stream, j->first, j->last, j->count, gz.data,
                              gz.len, &j->body);
  ym_buf_free(&gz);
}

static void part_done(uv_work_t *w, int status) {
  job_t *j = w->data;
  uplink_t *u = j->u;
  cur_t *c = &u->cur;
  (void)status;
  u->preparing = false;
  if (u->closing)
    goto out;
  if (j->rc == 0) {
    ym_buf_t t = u->body;
    u->body = j->body;
    j->body = t;
    c->first = j->first;
    c->last = j->last;
    c->count = j->count;
    u->st.sent++;
    if (start_request(u, XFER_EVENTS, "/api/v1/events") != 0)
      fail(u, 0);
  } else if (j->rc == YM_ETOOBIG && c->exploded) {
    /* Larger than any console takes: split before sending. */
    c->first = j->first;
    c->last = j->last;
    c->count = j->count;
    split_current(u);
  } else if (j->rc == YM_ENOMEM) {
    set_error(u, "out of memory while splitting a batch");
    fail(u, 0);
  } else {
    /* The batch's lines cannot be told apart: it cannot be sent in parts. */
    lose(u, parts_left(c), c->b->last_seq);
    release_batch(u);
    pump(u);
  }
out:
  job_free(j);
  release(u);
}

/* Sends the held batch, or its next part. */
static void send_current(uplink_t *u) {
  cur_t *c = &u->cur;
  if (c->split) {
    job_t *j = job_new(JOB_PART);
    if (j == NULL) {
      set_error(u, "out of memory");
      fail(u, 0);
      return;
    }
    j->range = c->parts[c->nparts - 1];
    snprintf(j->agent_id, sizeof(j->agent_id), "%s", u->id.agent_id);
    if (queue_job(u, j, part_work, part_done) != 0) {
      set_error(u, "cannot queue work");
      fail(u, 0);
      return;
    }
    u->preparing = true;
    return;
  }
  const spool_batch_t *b = c->b;
  ym_buf_reset(&u->body);
  int rc = uplink_build_body(u->id.agent_id, b->stream, b->first_seq, b->last_seq, b->count,
                             b->payload.data, b->payload.len, &u->body);
  if (rc == YM_ETOOBIG) {
    split_current(u); /* larger than any console takes: split before sending */
    return;
  }
  c->first = b->first_seq;
  c->last = b->last_seq;
  c->count = b->count;
  if (rc == 0) {
    u->st.sent++;
    rc = start_request(u, XFER_EVENTS, "/api/v1/events");
  } else {
    set_error(u, "cannot build a request: %s", ym_strerror(rc));
  }
  if (rc != 0)
    fail(u, 0);
}

static void on_read(int rc, spool_batch_t *b, void *data) {
  uplink_t *u = data;
  u->reading = false;
  if (u->closing) {
    spool_batch_free(b);
    release(u);
    return;
  }
  release(u);
  if (rc == 0) {
    release_batch(u);
    u->cur.b = b;
    send_current(u);
  } else if (rc == YM_ECORRUPT) {
    pump(u); /* the spool set the record aside and reported it */
  } else if (rc != YM_ENOENT) {
    set_error(u, "cannot read the spool: %s", ym_strerror(rc));
    fail(u, 0);
  }
}

static void events_done(uplink_t *u, long status, uint64_t retry_after_ms) {
  cur_t *c = &u->cur;
  if (status == 200) {
    cJSON *j = NULL;
    long long acked = -1;
    if (ym_json_parse(u->resp.data ? u->resp.data : "", u->resp.len, IDENTITY_REPLY_MAX, &j,
                      NULL) == 0)
      ym_json_get_int(j, "acked", &acked);
    cJSON_Delete(j);
    if (acked < 0 || (uint64_t)acked != c->last) {
      if (acked < 0)
        set_error(u, "the console's answer to a batch has no valid \"acked\"");
      else
        set_error(u, "the console acknowledged %lld instead of %" PRIu64 " for stream %s", acked,
                  c->last, stream_names[c->b->stream]);
      fail(u, 0);
      return;
    }
    spool_ack(u->spool, c->b->stream, c->last);
    u->st.acked += c->count;
    succeed(u);
    if (!c->split || --c->nparts == 0)
      release_batch(u);
    pump(u);
  } else if (status == 413) {
    split_current(u);
  } else if (status == 401) {
    auth_refused(u, "a batch");
  } else if (status == 409) {
    /* Numbers too far ahead of what this identity has stored: kept in the
     * spool and tried again slowly; the console's allowance grows. */
    http_error(u, "a batch", status);
    u->st.refused++;
    fail(u, retry_after_ms > UPLINK_REFUSED_WAIT_MS ? retry_after_ms : UPLINK_REFUSED_WAIT_MS);
  } else {
    http_error(u, "a batch", status);
    fail(u, status == 429 || status == 503 ? retry_after_ms : 0);
  }
}

/* ---------------------------------------------------------------- */
/* Check-in and enrollment                                            */

/* Adds name: v to obj unless obj has it. */
static void add_counter(cJSON *obj, const char *name, uint64_t v) {
  if (cJSON_GetObjectItemCaseSensitive(obj, name) == NULL)
    cJSON_AddNumberToObject(obj, name, (double)v);
}

static int build_checkin(uplink_t *u) {
  cJSON *agent = NULL;
  char *text = u->status_fn != NULL ? u->status_fn(u->data) : NULL;
  if (text != NULL) {
    ym_json_parse(text, strlen(text), STATUS_MAX, &agent, NULL);
    free(text);
  }
  const char *rv = cJSON_IsObject(agent) ? ym_json_get_str(agent, "rules_version") : NULL;
  cJSON *status =
      cJSON_IsObject(agent) ? cJSON_DetachItemFromObjectCaseSensitive(agent, "status") : NULL;
  cJSON *counters =
      cJSON_IsObject(agent) ? cJSON_DetachItemFromObjectCaseSensitive(agent, "counters") : NULL;
  if (!cJSON_IsObject(status)) {
    cJSON_Delete(status);
    status = cJSON_CreateObject();
  }
  if (!cJSON_IsObject(counters)) {
    cJSON_Delete(counters);
    counters = cJSON_CreateObject();
  }
  add_counter(counters, "uplink_sent", u->st.sent);
  add_counter(counters, "uplink_acked", u->st.acked);
  add_counter(counters, "uplink_retries", u->st.retries);
  add_counter(counters, "uplink_failures", u->st.failures);
  add_counter(counters, "uplink_lost", u->st.lost);
  add_counter(counters, "uplink_refused", u->st.refused);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "agent_id", u->id.agent_id);
  cJSON_AddStringToObject(j, "version", ym_version());
  cJSON_AddStringToObject(j, "rules_version", rv != NULL ? rv : "");
  if (status == NULL || !cJSON_AddItemToObject(j, "status", status))
    cJSON_Delete(status);
  if (counters == NULL || !cJSON_AddItemToObject(j, "counters", counters))
    cJSON_Delete(counters);
  bool complete = cJSON_GetArraySize(j) == 5;
  /* Members of other modules ride along, except the ones the uplink
   * owns. */
  cJSON *item = cJSON_IsObject(agent) ? agent->child : NULL;
  while (complete && item != NULL) {
    cJSON *next = item->next;
    if (item->string != NULL && cJSON_GetObjectItemCaseSensitive(j, item->string) == NULL) {
      cJSON_DetachItemViaPointer(agent, item);
      cJSON_AddItemToObject(j, item->string, item);
    }
    item = next;
  }
  cJSON_Delete(agent);
  char *out = complete ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  if (out == NULL)
    return YM_ENOMEM;
  ym_buf_reset(&u->body);
  int rc = ym_buf_append_str(&u->body, out);
  free(out);
  return rc;
}

static void start_checkin(uplink_t *u) {
  int rc = build_checkin(u);
  if (rc != 0)
    set_error(u, "cannot build the check-in: %s", ym_strerror(rc));
  if (rc != 0 || start_request(u, XFER_CHECKIN, "/api/v1/checkin") != 0) {
    u->st.failures++;
    arm_checkin(u);
    pump(u);
  }
}

static void checkin_done(uplink_t *u, long status, uint64_t retry_after_ms) {
  if (status == 200) {
    cJSON *j = NULL;
    long long next = 0;
    if (ym_json_parse(u->resp.data ? u->resp.data : "", u->resp.len, IDENTITY_REPLY_MAX, &j,
                      NULL) == 0 &&
        ym_json_get_int(j, "next_checkin_s", &next))
      u->st.checkin_s = next < IDENTITY_CHECKIN_MIN   ? IDENTITY_CHECKIN_MIN
                        : next > IDENTITY_CHECKIN_MAX ? IDENTITY_CHECKIN_MAX
                                                      : (unsigned)next;
    u->st.checkins++;
    succeed(u);
    arm_checkin(u);
    for (unsigned i = 0; cJSON_IsObject(j) && i < u->n_hooks; i++)
      u->hooks[i].fn(j, u->hooks[i].data); /* may queue requests */
    cJSON_Delete(j);
    pump(u);
  } else if (status == 401) {
    auth_refused(u, "the check-in");
  } else if (status == 429 || status >= 500) {
    http_error(u, "the check-in", status);
    fail(u, status == 429 || status == 503 ? retry_after_ms : 0);
  } else {
    /* The console does not take this check-in: it waits for the next
     * one, and batches go on meanwhile. */
    http_error(u, "the check-in", status);
    u->st.failures++;
    arm_checkin(u);
    pump(u);
  }
}

static void enroll_body_work(uv_work_t *w) {
  job_t *j = w->data;
  j->rc = identity_enroll_body(&j->id, &j->body);
}

static void enroll_body_done(uv_work_t *w, int status) {
  job_t *j = w->data;
  uplink_t *u = j->u;
  (void)status;
  u->preparing = false;
  if (u->closing)
    goto out;
  if (j->rc == 0) {
    ym_buf_t t = u->body;
    u->body = j->body;
    j->body = t;
    if (start_request(u, XFER_ENROLL, "/api/v1/enroll") != 0)
      fail(u, 0);
  } else {
    set_error(u, "cannot build the enrollment request: %s", ym_strerror(j->rc));
    fail(u, 0);
  }
out:
  job_free(j);
  release(u);
}

static void start_enroll(uplink_t *u) {
  job_t *j = job_new(JOB_ENROLL_BODY);
  if (j != NULL) {
    j->id = u->id;
    if (queue_job(u, j, enroll_body_work, enroll_body_done) == 0) {
      u->preparing = true;
      return;
    }
  }
  set_error(u, "cannot queue work");
  fail(u, 0);
}

static void enroll_done(uplink_t *u, long status, uint64_t retry_after_ms) {
  identity_t nid = u->id;
  char err[256];
  int rc = identity_enroll_reply(&nid, status, u->resp.data, u->resp.len, err, sizeof(err));
  if (u->resp.data != NULL)
    explicit_bzero(u->resp.data, u->resp.len); /* it held the new secret */
  if (rc == 0) {
    u->st.enrollments++;
    adopt(u, &nid, true);
    start_save(u);
  } else {
    set_error(u, "enrolling again failed: %s", err);
    if (rc == YM_EPERM)
      stop_sending(u);
    else
      fail(u, rc == YM_EAGAIN ? retry_after_ms : 0);
  }
  identity_wipe(&nid);
}

/* ---------------------------------------------------------------- */
/* Module requests                                                    */

static void ureq_free(ureq_t *q) {
  free(q->method);
  free(q->path);
  free(q->content_type);
  free(q->body);
  free(q);
}

/* The request in flight has ended: its callback gets the answer. A
 * failed transfer does not count against the uplink's own backoff: the
 * module decides whether to try again. */
static void request_done(uplink_t *u, CURLcode res, long status) {
  ureq_t *q = u->reqs;
  u->reqs = q->next;
  if (u->reqs == NULL)
    u->reqs_tail = NULL;
  int rc = 0;
  if (q->too_big || res == CURLE_FILESIZE_EXCEEDED)
    rc = YM_ETOOBIG;
  else if (q->write_failed)
    rc = YM_EIO;
  else if (res != CURLE_OK)
    rc = res == CURLE_OPERATION_TIMEDOUT ? YM_ETIMEDOUT : YM_EIO;
  if (rc == 0)
    u->st.last_status = status;
  const void *body = q->sink_fd >= 0 ? NULL : u->req_resp.data;
  size_t len = q->sink_fd >= 0 ? (size_t)q->written : u->req_resp.len;
  q->cb(rc, rc == 0 ? status : 0, rc == 0 ? body : NULL, rc == 0 ? len : 0, q->data);
  ym_buf_reset(&u->req_resp);
  ureq_free(q);
}

static void start_module_request(uplink_t *u) {
  ureq_t *q = u->reqs;
  q->written = 0;
  q->too_big = q->write_failed = false;
  ym_buf_reset(&u->req_resp);
  if (start_request(u, XFER_REQUEST, q->path) != 0) {
    u->xfer = XFER_REQUEST; /* so that request_done sees the state it expects */
    request_done(u, CURLE_FAILED_INIT, 0);
    u->xfer = XFER_NONE;
  }
}

static char *dup_or_null(const char *s, bool *ok) {
  if (s == NULL)
    return NULL;
  char *d = strdup(s);
  if (d == NULL)
    *ok = false;
  return d;
}

int uplink_request(uplink_t *u, const uplink_req_t *req, uplink_reply_fn cb, void *data) {
  if (req->method == NULL || req->path == NULL || req->path[0] != '/' || strlen(req->path) > 1024 ||
      (req->body == NULL && req->body_len > 0) || req->body_len > UPLINK_BODY_MAX ||
      req->max_answer == 0 || (req->content_type != NULL && strlen(req->content_type) > 100))
    return YM_EINVAL;
  for (const char *p = req->path; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f)
      return YM_EINVAL;
  ureq_t *q = calloc(1, sizeof(*q));
  if (q == NULL)
    return YM_ENOMEM;
  bool ok = true;
  q->method = dup_or_null(req->method, &ok);
  q->path = dup_or_null(req->path, &ok);
  q->content_type = dup_or_null(req->content_type, &ok);
  if (req->body_len > 0) {
    q->body = malloc(req->body_len);
    if (q->body != NULL)
      memcpy(q->body, req->body, req->body_len);
    else
      ok = false;
  }
  if (!ok) {
    ureq_free(q);
    return YM_ENOMEM;
  }
  q->body_len = req->body_len;
  q->max_answer = req->max_answer;
  q->sink_fd = req->sink_fd;
  q->range_from = req->range_from;
  q->cb = cb;
  q->data = data;
  if (u->reqs_tail != NULL)
    u->reqs_tail->next = q;
  else
    u->reqs = q;
  u->reqs_tail = q;
  pump(u);
  return 0;
}

int uplink_on_checkin(uplink_t *u, uplink_checkin_fn fn, void *data) {
  if (u->n_hooks >= UPLINK_MAX_HOOKS)
    return YM_ETOOBIG;
  u->hooks[u->n_hooks].fn = fn;
  u->hooks[u->n_hooks].data = data;
  u->n_hooks++;
  return 0;
}

/* ---------------------------------------------------------------- */
/* Driving                                                            */

static void check_done(uplink_t *u) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(u->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE)
      continue;
    CURL *e = m->easy_handle;
    CURLcode res = m->data.result;
    long status = 0;
    curl_off_t ra = -1;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &ra);
    curl_multi_remove_handle(u->multi, e);
    curl_slist_free_all(u->hdrs);
    u->hdrs = NULL;
    xfer_t kind = u->xfer;
    u->xfer = XFER_NONE;
    if (kind == XFER_ENROLL && u->body.data != NULL)
      explicit_bzero(u->body.data, u->body.len); /* it held the token */
    uint64_t ra_ms = ra > 0 ? (uint64_t)ra * 1000 : 0;
    if (kind == XFER_REQUEST) {
      request_done(u, res, status);
      continue;
    }
    if (res != CURLE_OK) {
      char msg[256];
      identity_curl_error(res, u->id.url, msg, sizeof(msg));
      u->st.last_status = 0;
      set_error(u, "%s", msg);
      fail(u, 0);
      continue;
    }
    u->st.last_status = status;
    if (kind == XFER_EVENTS)
      events_done(u, status, ra_ms);
    else if (kind == XFER_CHECKIN)
      checkin_done(u, status, ra_ms);
    else if (kind == XFER_ENROLL)
      enroll_done(u, status, ra_ms);
  }
}

/* Starts the next request, when nothing is in flight or pending. */
static void pump(uplink_t *u) {
  if (u->closing || !u->st.enrolled || u->st.stopped || u->xfer != XFER_NONE || u->reading ||
      u->preparing || u->loading || u->waiting)
    return;
  if (u->need_enroll) {
    start_enroll(u);
    return;
  }
  if (u->checkin_due) {
    start_checkin(u);
    return;
  }
  if (u->reqs != NULL) {
    start_module_request(u);
    return;
  }
  if (u->cur.b != NULL) {
    /* A bulk batch held for a retry gives way to alerts. */
    if (!(u->cur.b->stream == SPOOL_BULK && spool_pending(u->spool, SPOOL_ALERTS))) {
      send_current(u);
      return;
    }
    release_batch(u);
  }
  for (int s = 0; s < SPOOL_NSTREAMS; s++) {
    if (spool_pending(u->spool, (spool_stream_t)s)) {
      u->reading = true;
      u->pending++;
      spool_read_async(u->spool, (spool_stream_t)s, on_read, u);
      return;
    }
  }
}

/* ---------------------------------------------------------------- */
/* Handle                                                             */

int uplink_new(uv_loop_t *loop, spool_t *spool, const char *state_dir, uplink_status_fn status,
               uplink_lost_fn lost, void *data, uplink_t **out) {
  *out = NULL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return YM_EIO;
  uplink_t *u = calloc(1, sizeof(*u));
  char *dir = strdup(state_dir);
  CURLM *multi = curl_multi_init();
  CURL *easy = curl_easy_init();
  if (u == NULL || dir == NULL || multi == NULL || easy == NULL) {
    curl_easy_cleanup(easy);
    curl_multi_cleanup(multi);
    free(dir);
    free(u);
    curl_global_cleanup();
    return YM_ENOMEM;
  }
  u->loop = loop;
  u->spool = spool;
  u->state_dir = dir;
  u->status_fn = status;
  u->lost_fn = lost;
  u->data = data;
  u->multi = multi;
  u->easy = easy;
  u->st.checkin_s = IDENTITY_CHECKIN_DEFAULT;
  ym_buf_init(&u->body, UPLINK_BODY_MAX);
  ym_buf_init(&u->resp, IDENTITY_REPLY_MAX);
  ym_buf_init(&u->req_resp, UPLINK_ANSWER_MAX);
  ym_buf_init(&u->url, IDENTITY_URL_MAX + 64);
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, u);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(multi, CURLMOPT_TIMERDATA, u);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 2L);
  curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
  uv_timer_t *timers[] = {&u->curl_timer, &u->retry_timer, &u->checkin_timer, &u->idpoll_timer};
  for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
    uv_timer_init(loop, timers[i]);
    timers[i]->data = u;
    u->pending++;
  }
  /* Look for the identity now, then every 5 s until there is one. */
  uv_timer_start(&u->idpoll_timer, on_idpoll, 0, UPLINK_IDENTITY_POLL_MS);
  *out = u;
  return 0;
}

void uplink_kick(uplink_t *u) {
  pump(u);
}

void uplink_free(uplink_t *u) {
  if (u == NULL)
    return;
  u->closing = true;
  if (u->xfer != XFER_NONE)
    curl_multi_remove_handle(u->multi, u->easy);
  u->xfer = XFER_NONE;
  curl_slist_free_all(u->hdrs);
  u->hdrs = NULL;
  curl_easy_cleanup(u->easy);
  u->easy = NULL;
  /* Stop watching the sockets while they are still open, then let
   * libcurl close them. */
  while (u->socks != NULL) {
    sock_t *k = u->socks;
    curl_multi_assign(u->multi, k->fd, NULL);
    sock_close(u, k);
  }
  curl_multi_cleanup(u->multi);
  u->multi = NULL;
  while (u->reqs != NULL) { /* no callback runs after uplink_free */
    ureq_t *q = u->reqs;
    u->reqs = q->next;
    ureq_free(q);
  }
  u->reqs_tail = NULL;
  ym_buf_free(&u->req_resp);
  uv_timer_t *timers[] = {&u->curl_timer, &u->retry_timer, &u->checkin_timer, &u->idpoll_timer};
  for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
    uv_close((uv_handle_t *)timers[i], on_handle_closed);
}

void uplink_stats(const uplink_t *u, uplink_stats_t *out) {
  *out = u->st;
}

const char *uplink_tenant(const uplink_t *u) {
  return u->st.enrolled ? u->id.tenant : "";
}
