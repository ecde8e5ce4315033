/*
 * The exec guard: decides, before a program runs, whether it may.
 *
 * A dedicated thread takes the kernel's program-start permission requests.
 * Per request, in order: the agent's own executions are allowed; a cached
 * verdict answers at once; otherwise the file is queued for an urgent scan
 * and the request waits, at most deadline_ms. The scan's verdict answers it
 * (deny when malicious and the policy is block). When the deadline passes
 * first, when too many requests wait, or on any error, the answer is allow
 * and a report says why: the PC never waits longer than the deadline
 * because of the agent. The thread answers deadlines itself, so a stalled
 * event loop cannot hold up a program start.
 *
 * Reports go to the report callback, on the guard thread or a scanner
 * thread; the callback takes ownership of the report (guard_report_free).
 */
#ifndef YAMORI_AGENT_GUARD_H
#define YAMORI_AGENT_GUARD_H

#include "scanner.h"

#include <stdint.h>

typedef enum { GUARD_OFF = 0, GUARD_DETECT = 1, GUARD_BLOCK = 2 } guard_policy_t;

typedef enum {
  GUARD_DENIED,           /* malicious, policy block: the program did not start */
  GUARD_ALLOWED_DETECT,   /* malicious, policy detect: started, alert only */
  GUARD_ALLOWED_TIMEOUT,  /* the verdict did not come within the deadline */
  GUARD_ALLOWED_OVERLOAD, /* too many requests waiting */
  GUARD_ALLOWED_ERROR,    /* the file could not be scanned */
  GUARD_LATE_VERDICT      /* a scan finished after its deadline answer */
} guard_outcome_t;

typedef struct {
  guard_outcome_t outcome;
  int pid;
  int64_t waited_ns; /* from the request to the answer */
  scan_req_t *scan;  /* the scan (verdict, file, path), may be NULL */
} guard_report_t;

typedef void (*guard_report_cb)(guard_report_t *r, void *data);

typedef struct {
  guard_policy_t policy;
  long long deadline_ms;
  long long max_pending;
} guard_opts_t;

typedef struct guard guard_t;

int guard_new(scanner_t *sc, const guard_opts_t *opts, int self_pid, guard_report_cb cb, void *data,
              guard_t **out);
/* Changes the policy (a reload); off is honoured as allow-everything. */
void guard_set_policy(guard_t *g, guard_policy_t policy);
/* Stops the thread; every request still waiting is allowed and the kernel
 * group is closed. Scans still running keep referring to g: free the
 * scanner (which finishes them) before guard_free. */
void guard_stop(guard_t *g);
void guard_free(guard_t *g);
void guard_report_free(guard_report_t *r);

typedef struct {
  uint64_t requests, cached, scanned, denied, timeouts, overloads, errors;
} guard_stats_t;
void guard_stats(guard_t *g, guard_stats_t *out);

#endif
