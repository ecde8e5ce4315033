/*
 * Behaviour detection: the agent's compiled Sigma rules (sigma.h) run on
 * its own events, with alerts and a response per level
 * (docs/behaviour.md).
 *
 * What happens, in order:
 *   1. behave_load() reads every `*.json` file of `<dir>/sigma/` for each
 *      rules directory it is given (the configured rules.dirs, or the
 *      active rules bundles' directories), in name order, and loads each
 *      with sigma_ruleset_load(). Only when every file loads does the new
 *      set replace the old one; otherwise the old set keeps working and
 *      the refusal (file and reason) is kept for the status.
 *   2. behave_event() is given every event the agent writes. Program
 *      starts and file events (sigma_event_categories()) are evaluated,
 *      correlations with the event's @timestamp; other events are ignored.
 *   3. A match of an informational rule is counted only. Any other match
 *      becomes an alert (event.kind alert, rule.ruleset "sigma"), unless
 *      the same rule matched for the same process within the rate-limit
 *      time: then it is counted, and the next alert of that rule and
 *      process carries the count.
 *   4. The level's response (conf behaviour.response.<level>) is `alert`
 *      or `kill`. A kill is refused for system-critical programs
 *      (behave_system_critical()); otherwise the kill function given at
 *      behave_new() runs it (start time checked, the agent, its launcher
 *      and PID 1 refused) and the alert is written once its result is
 *      known, with yamori.response.action and yamori.response.result.
 *
 * The module reports only through the functions it is given (behave_ops_t):
 * it never calls into the module that made it. Loop thread only.
 */
#ifndef YAMORI_AGENT_BEHAVE_H
#define YAMORI_AGENT_BEHAVE_H

#include "proctab.h"

#include "yamori/config.h"
#include "yamori/event.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Compiled rule files loaded at most (all directories together). */
#define BEHAVE_MAX_FILES 64
/* Largest compiled rule file read. */
#define BEHAVE_MAX_FILE_BYTES (16u * 1024 * 1024)
/* Rate-limit table: (rule, process) pairs remembered; a pair that does not
 * fit replaces the one in its slot (then it may alert once more). */
#define BEHAVE_RATE_SLOTS 4096

/* Responses, as conf's behaviour.response.<level>. */
#define BEHAVE_RESPONSE_ALERT 0
#define BEHAVE_RESPONSE_KILL 1

typedef struct behave behave_t;

/* A kill has finished: rc 0 or an error, why (NULL on success), whether
 * the process had ended. Runs once, on the loop thread. */
typedef void (*behave_kill_done_fn)(int rc, const char *why, bool exited, void *data);

typedef struct {
  /* Writes an event (the agent's pipeline); ev stays the caller's. */
  void (*emit)(void *ctx, ym_event_t *ev);
  /* Kills pid when it is still the process entity_id. Returns 0 when done
   * will run, or an error (done never runs). NULL: kills are refused. */
  int (*kill)(void *ctx, int pid, const char *entity_id, behave_kill_done_fn done, void *data);
  void *ctx;
  const ym_event_t *base; /* base event of the alerts (host.*, agent.*) */
  proctab_t *procs;       /* parents of file-event actors; may be NULL */
} behave_ops_t;

typedef struct {
  bool enabled;
  int response[4];       /* low, medium, high, critical */
  int64_t rate_limit_ns; /* 0: every match alerts */
} behave_conf_t;

int behave_new(const behave_ops_t *ops, const behave_conf_t *conf, behave_t **out);
/* Frees the module. Kills still running must have finished (their done
 * has run): free after the loop has run to its end. behave_free(NULL)
 * does nothing. */
void behave_free(behave_t *b);

/* Applies a new configuration (loop thread). */
void behave_configure(behave_t *b, const behave_conf_t *conf);

/* Loads the compiled rules of dirs (see above). When fallback is not NULL
 * and no directory of dirs has a sigma/ directory, fallback's are read
 * instead: active rules bundles that carry no behaviour rules leave the
 * configured ones (rules.dirs) in force. Returns 0 (the new set is live; no
 * files at all is an empty set), or an error with msg naming the file and
 * the reason (the old set stays). */
int behave_load(behave_t *b, const ym_strlist_t *dirs, const ym_strlist_t *fallback, char *msg,
                size_t msglen);

/* behave_load() that logs: the new set, or the refusal (the old set
 * stays). behave_reload(NULL, ...) does nothing. */
int behave_reload(behave_t *b, const ym_strlist_t *dirs, const ym_strlist_t *fallback);

/* Evaluates an event the agent has written. Alerts it raises are written
 * through ops.emit before it returns (or when their kill has finished). */
void behave_event(behave_t *b, const ym_event_t *ev);

/* Is the program at exe (its path) one that behaviour responses never
 * kill? ppid is its parent (a listening sshd is a child of PID 1). */
bool behave_system_critical(const char *exe, size_t len, int64_t ppid);

typedef struct {
  bool enabled;
  unsigned rules, correlations, files;
  char version[17];       /* first 16 hex digits of the SHA-256 of the files; "" none */
  uint64_t evaluated;     /* events evaluated */
  uint64_t matches;       /* rule matches (informational included) */
  uint64_t informational; /* matches of informational rules (no alert) */
  uint64_t alerts;
  uint64_t rate_limited;
  uint64_t killed, kill_failed, kill_refused;
  uint64_t load_errors;
  char load_error[320]; /* the last refusal; "" when the last load worked */
} behave_status_t;
void behave_status(const behave_t *b, behave_status_t *out);

#endif
