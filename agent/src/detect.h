/*
 * Detection and response: the rules, the scanner, the exec guard, and what
 * the agent does with a verdict (alert events, quarantine, kill).
 *
 * Loop-thread module. Triggers, in priority order: program start (the
 * guard), on-demand scans (detect_scan), files closed after writing
 * (detect_file_changed, debounced). Slow work (scanning, quarantine) runs
 * on scanner threads; results come back through agent_post.
 */
#ifndef YAMORI_AGENT_DETECT_H
#define YAMORI_AGENT_DETECT_H

#include "agent.h"
#include "guard.h"
#include "scanner.h"

typedef struct detect detect_t;

/* Compiles the rules of a->conf and starts the scanner and, unless the
 * exec policy is off, the guard. */
int detect_new(agent_t *a, detect_t **out);
/* Stops the guard and the debounce timer; scans in flight still finish. */
void detect_stop(detect_t *d);
/* Joins the scanner threads: every result still running is posted to the
 * loop. Run the agent's posts afterwards, then detect_free. */
void detect_drain(detect_t *d);
void detect_free(detect_t *d);

/* The file sensor saw path closed after writing by pid. */
void detect_file_changed(detect_t *d, int pid, const char *path, size_t len);

/* Applies a new configuration's policies (loop thread). */
void detect_apply_conf(detect_t *d);

/* Recompiles the rules from the configured directories off the loop
 * thread; the new set replaces the old only when it compiled. cb runs on
 * the loop thread with 0 or an error and a message naming file and line. */
typedef void (*detect_reload_cb)(int err, const char *msg, void *data);
void detect_reload_rules(detect_t *d, detect_reload_cb cb, void *data);

/* Replaces the rules the scanner uses with rules (compiled elsewhere; the
 * scanner takes its own reference). Loop thread. */
void detect_set_rules(detect_t *d, rules_t *rules);

/* On-demand scan of paths (files or trees). result runs on the loop thread
 * per file (the request is freed after it returns), finished once at the
 * end. Malicious files get alerts and the file policy (quarantine). */
typedef void (*detect_result_cb)(const scan_req_t *r, const char *quarantine_id, void *data);
typedef void (*detect_finished_cb)(uint64_t files, uint64_t errors, void *data);
int detect_scan(detect_t *d, const char *const *paths, size_t n, detect_result_cb result,
                detect_finished_cb finished, void *data);

/* Status for yamorictl and the check-in. */
typedef struct {
  char rules_version[17];
  unsigned rules_count;
  unsigned rules_files;
  scanner_stats_t scan;
  guard_stats_t guard;
  bool guard_on;
  uint64_t alerts, quarantined, quarantine_failed, killed, write_scans_dropped;
} detect_status_t;
void detect_status(detect_t *d, detect_status_t *out);

/* The recent alerts (for yamorictl selftest): calls fn for each alert
 * event sequence >= since with its file path. */
void detect_recent_alerts(detect_t *d, uint64_t since,
                          void (*fn)(uint64_t seq, const char *path, const char *rule,
                                     const char *action, void *data),
                          void *data);

/* The quarantine directory (state_dir/quarantine). */
const char *detect_quarantine_dir(detect_t *d);

#endif
