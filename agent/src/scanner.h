/*
 * The scanner: YARA on scanner threads of its own (not libuv's pool), with a
 * priority queue, a bounded verdict cache and a CPU budget for background
 * work.
 *
 * A scan is a request (scan_req_t, caller-allocated with scan_req_new):
 * submitted with an open fd, run on a scanner thread, and finished by a
 * call of its done callback ON THE SCANNER THREAD (the caller marshals to
 * its own thread when it needs to). In order, a scan: checks the file
 * (regular, size limit), looks up the verdict cache by (device, inode, size,
 * mtime, ctime, rules version), otherwise reads the file once, hashes it
 * (SHA-256) and runs the rules over the same bytes with the external
 * variables set, and records the verdict. Exec-time scans go before
 * on-demand ones, which go before background (write-triggered) ones; a
 * background scan is followed by a pause that keeps each thread's busy
 * share at or below the CPU budget, cut short when urgent work arrives.
 *
 * Thread safety: every function may be called from any thread, except
 * scanner_init/scanner_close.
 */
#ifndef YAMORI_AGENT_SCANNER_H
#define YAMORI_AGENT_SCANNER_H

#include "rules.h"

#include "yamori/buf.h"
#include "yamori/sha256.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

typedef enum { SCAN_PRIO_EXEC = 0, SCAN_PRIO_DEMAND = 1, SCAN_PRIO_BACKGROUND = 2 } scan_prio_t;
#define SCAN_NPRIO 3

typedef enum { SCAN_CLEAN = 0, SCAN_MALICIOUS = 1, SCAN_ERROR = 2 } scan_verdict_t;

/* What one matching rule said (the first match is kept in full). */
typedef struct {
  char rule[128];
  char ns[128];
  char description[256];
  char author[128];
  char reference[256];
  char severity[16];
  char mitre[64];
  char tags[128]; /* space-separated */
} scan_rule_info_t;

typedef struct scan_req scan_req_t;
typedef void (*scan_done_cb)(scan_req_t *req);

struct scan_req {
  /* Set by the submitter. */
  int fd;     /* owned by the request; closed by scan_req_free */
  char *path; /* owned; for external variables and reports */
  scan_prio_t prio;
  scan_done_cb done;
  void *data;
  int64_t submitted_ns; /* monotonic */
  /* Filled by the scan. */
  struct stat st;
  scan_verdict_t verdict;
  int err; /* with SCAN_ERROR: why (YM_ETOOBIG: over the size limit) */
  bool cached;
  char sha256[YM_SHA256_HEX_LEN + 1];
  char rules_version[17];
  unsigned nmatches; /* rules that matched */
  scan_rule_info_t first;
  /* yamori.yara: a JSON array of {rule, namespace, tags, strings:[{id,
   * offset, excerpt}]} (bounded), "" when clean. */
  ym_buf_t matches_json;
  int64_t duration_ns;
  struct scan_req *next; /* queue link */
};

typedef struct {
  long long threads; /* 0: one per core */
  long long max_file_bytes;
  long long timeout_s;  /* per-file YARA timeout */
  long long cpu_budget; /* percent of a thread for background scans */
  long long max_queue;  /* background requests queued at most */
  long long cache_slots;
} scanner_opts_t;

typedef struct {
  uint64_t scanned, cached, matched, errors, too_big, timeouts, dropped, bytes;
} scanner_stats_t;

typedef struct scanner scanner_t;

/* Starts the threads with the given rules (a reference is taken). */
int scanner_new(const scanner_opts_t *opts, rules_t *rules, scanner_t **out);
/* Stops the threads after the requests queued now; requests still queued
 * are finished with SCAN_ERROR / YM_ECANCELED. */
void scanner_free(scanner_t *s);

/* Replaces the rules for scans that start from now on; the verdict cache
 * is keyed by rules version, so old verdicts stop matching. */
void scanner_set_rules(scanner_t *s, rules_t *rules);
/* The current rules with a reference the caller drops with rules_unref. */
rules_t *scanner_rules(scanner_t *s);

scan_req_t *scan_req_new(int fd, const char *path, scan_prio_t prio, scan_done_cb done, void *data);
void scan_req_free(scan_req_t *r);

/* Queues r. Returns 0, or YM_EBUSY when the background queue is full (r
 * is not taken; its callback is not called). */
int scanner_submit(scanner_t *s, scan_req_t *r);

/* Verdict cache lookup without scanning (for the exec guard's fast path).
 * Returns true and fills r's result fields on a hit. */
bool scanner_cached(scanner_t *s, const struct stat *st, scan_req_t *r);

/* Runs one scan on the calling thread (used by tools). */
void scanner_scan_now(scanner_t *s, scan_req_t *r);

void scanner_stats(scanner_t *s, scanner_stats_t *out);
size_t scanner_queued(scanner_t *s);

#endif
