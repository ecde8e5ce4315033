/*
 * The uplink: the agent's link to the console.
 *
 * A loop-thread handle that sends the spool's batches to the console and
 * checks in, over one pinned HTTPS connection kept alive (libcurl multi,
 * driven by the libuv loop: nothing blocks the loop). docs/protocol.md is
 * the contract.
 *
 * In order:
 *  - Without an identity (state_dir/identity.json) it does nothing but
 *    look for the file every 5 s: `yamorictl enroll` writes it while the
 *    agent runs.
 *  - With one, it checks in at once, then every checkin_s seconds (the
 *    console says how often, bounded to 10..3600 s).
 *  - Between check-ins it sends the oldest unacknowledged batch, alerts
 *    before bulk, one request at a time, and tells the spool what the
 *    console acknowledged; the next batch goes at once.
 *  - 413 (too large): the batch is split in halves, each sent on its own,
 *    recursively; a single event that is still too large cannot be
 *    delivered: it is acknowledged locally, counted in `lost`, and reported
 *    through the lost callback (the agent writes a gap event).
 *  - 401: the console no longer accepts the identity. The identity file is
 *    read again (it may have been renewed by `yamorictl enroll`); else, if
 *    the enrollment token is kept in the identity, the uplink enrolls again
 *    once; else it stops sending (the spool keeps everything), says so in
 *    last_error, and watches the identity file again.
 *  - 409 seq_too_far: the console finds the batch's numbers too far ahead
 *    of what this identity has stored. The batch stays in the spool, the
 *    reason goes to last_error and `refused` is counted, and the uplink
 *    waits at least UPLINK_REFUSED_WAIT_MS before trying again (the
 *    console's allowance grows with time; a batch it keeps refusing stays
 *    visible, never dropped).
 *  - Enrolling again (after a 401) carries the identity in use as proof
 *    of possession: when the console still knows it, the agent keeps its
 *    id; otherwise the token makes a new record.
 *  - 429/503: waits at least Retry-After. Network errors, 5xx and other
 *    failures: exponential backoff with full jitter (1 s doubling to
 *    300 s), reset by a success. Redirects are never followed.
 * Answers are bounded (64 KiB), requests time out (10 s to connect, 60 s
 * in all), and secrets never reach a log line or last_error.
 */
#ifndef YAMORI_AGENT_UPLINK_H
#define YAMORI_AGENT_UPLINK_H

#include "spool.h"

#include "yamori/buf.h"
#include "yamori/json.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define UPLINK_BACKOFF_BASE_MS 1000ULL
#define UPLINK_BACKOFF_MAX_MS 300000ULL
#define UPLINK_RETRY_AFTER_MAX_MS 3600000ULL
#define UPLINK_IDENTITY_POLL_MS 5000
#define UPLINK_REFUSED_WAIT_MS 60000ULL
#define UPLINK_TIMEOUT_S 60L
/* A request body (the spool's batch and the header) at most; larger
 * batches are split before sending. */
#define UPLINK_BODY_MAX (4 * 1024 * 1024)
/* A module request's answer kept in memory at most. */
#define UPLINK_ANSWER_MAX (4 * 1024 * 1024)
#define UPLINK_MAX_HOOKS 4

typedef struct uplink uplink_t;

typedef struct {
  uint64_t sent;        /* event requests sent (a batch or a part of one) */
  uint64_t acked;       /* events the console acknowledged */
  uint64_t retries;     /* waits before trying again (backoff) */
  uint64_t failures;    /* requests that failed (network or HTTP error) */
  uint64_t lost;        /* events too large to deliver, acknowledged locally */
  uint64_t refused;     /* batches refused as too far ahead (409), kept in the spool */
  uint64_t splits;      /* times a batch or part was split after a 413 */
  uint64_t checkins;    /* successful check-ins */
  uint64_t enrollments; /* successful enrollments again after a 401 */
  long last_status;     /* HTTP status of the last answer; 0 none or no answer */
  char last_error[256]; /* what went wrong last; "" after a success */
  uint64_t backoff_ms;  /* the current wait before trying again; 0 none */
  unsigned checkin_s;   /* the check-in interval in use */
  bool enrolled;        /* an identity is loaded */
  bool stopped;         /* the console refused the identity: not sending */
} uplink_stats_t;

/* Returns the agent's part of a check-in as a malloc'd JSON object text
 * (the uplink frees it), with the members "rules_version" (string),
 * "status" (object) and "counters" (object); other members are ignored
 * and NULL means none. The uplink adds agent_id, version and its own
 * counters (uplink_*). Called on the loop thread. */
typedef char *(*uplink_status_fn)(void *data);

/* Called on the loop thread when count events of stream could not be
 * delivered (a single event larger than the console accepts, or a batch
 * whose events could not be told apart) and were acknowledged locally:
 * the agent records a gap. */
typedef void (*uplink_lost_fn)(spool_stream_t stream, uint64_t count, void *data);

/* Called on the loop thread with every successful check-in answer (a
 * JSON object, valid during the call). */
typedef void (*uplink_checkin_fn)(const cJSON *answer, void *data);
/* Adds a check-in hook (at most UPLINK_MAX_HOOKS; they run in the order
 * added). Returns 0 or YM_ETOOBIG. */
int uplink_on_checkin(uplink_t *u, uplink_checkin_fn fn, void *data);

/* The answer to a module request: rc 0 when an HTTP answer arrived (any
 * status; body and len hold it, or body is NULL and len the bytes written
 * to the sink fd), else YM_ETOOBIG (longer than max_answer), YM_EIO
 * (network, TLS or write failure) or YM_ETIMEDOUT, with status 0. */
typedef void (*uplink_reply_fn)(int rc, long status, const void *body, size_t len, void *data);

/* A request of another module to the console. */
typedef struct {
  const char *method;       /* "GET", "POST" */
  const char *path;         /* "/api/v1/...", no spaces or control characters */
  const char *content_type; /* NULL: application/json (POST only) */
  const void *body;         /* copied; NULL with body_len 0 */
  size_t body_len;          /* at most UPLINK_BODY_MAX */
  size_t max_answer;        /* bytes; in memory at most UPLINK_ANSWER_MAX */
  int sink_fd;              /* >= 0: the answer body is written there, -1: memory */
  uint64_t range_from;      /* > 0: asks for the body from that offset (Range) */
} uplink_req_t;

/* Queues an authenticated request on the uplink's pinned connection: sent
 * between batches, one at a time, after a due check-in, once the agent is
 * enrolled. cb runs exactly once on the loop thread, unless uplink_free()
 * comes first. A failure is not retried by the uplink. Returns 0,
 * YM_EINVAL or YM_ENOMEM (then cb never runs). */
int uplink_request(uplink_t *u, const uplink_req_t *req, uplink_reply_fn cb, void *data);

/* Creates the uplink and starts it: it looks for the identity at once and
 * sends when it has one. spool must outlive the uplink; state_dir is
 * copied. status and lost may be NULL. Returns 0 or YM_ENOMEM / YM_EIO
 * (libcurl could not be set up); on error nothing was started. */
int uplink_new(uv_loop_t *loop, spool_t *spool, const char *state_dir, uplink_status_fn status,
               uplink_lost_fn lost, void *data, uplink_t **out);

/* The spool has something new: send it now unless a request is in flight
 * or the uplink waits (backoff, not enrolled). */
void uplink_kick(uplink_t *u);

/* Aborts the request in flight and closes the uplink. The memory is
 * released once the loop has closed its handles and finished its
 * worker-thread jobs and spool reads: run the loop after this call, and
 * free the spool only after that. No callback runs after this call.
 * uplink_free(NULL) does nothing. */
void uplink_free(uplink_t *u);

void uplink_stats(const uplink_t *u, uplink_stats_t *out);

/* The company (tenant name) this PC is enrolled in, from its identity; ""
 * before enrollment. Valid until the loop runs again (a new enrollment may
 * change it). */
const char *uplink_tenant(const uplink_t *u);

/* ---- Pure parts (exposed for tests) ---- */

/* The wait before attempt number failures + 1, after failures consecutive
 * failures (>= 1): uniform in [0, window] where window is 1 s doubled per
 * failure up to 300 s ("full jitter"), drawn from rnd (a uniform random
 * 64-bit value). With a Retry-After of retry_after_ms (> 0, capped at one
 * hour) the wait is retry_after_ms plus a uniform part of at most
 * min(window, retry_after_ms), so that agents told the same time do not
 * all come back at once. */
uint64_t uplink_backoff_ms(unsigned failures, uint64_t retry_after_ms, uint64_t rnd);

/* Appends an events request body to out: one gzip member holding the
 * header line {"agent_id","stream","first_seq","last_seq","count"} and
 * '\n', followed by gz[0..gz_len), the batch's events as the spool stores
 * them (itself a gzip member; concatenated members are one gzip body,
 * RFC 1952). agent_id must be letters, digits and '-'. Returns 0 or
 * YM_EINVAL / YM_ETOOBIG / YM_ENOMEM (out may then hold a part). */
int uplink_build_body(const char *agent_id, spool_stream_t stream, uint64_t first_seq,
                      uint64_t last_seq, uint32_t count, const void *gz, size_t gz_len,
                      ym_buf_t *out);

#endif
