/*
 * The agent's configuration: one typed table (conf.c) drives parsing,
 * validation, --check-config and docs/config.md.
 *
 * A conf_t is an immutable snapshot once loaded: the loop thread swaps the
 * agent's pointer to a new snapshot on reload and frees the old one.
 */
#ifndef YAMORI_AGENT_CONF_H
#define YAMORI_AGENT_CONF_H

#include "yamori/config.h"

#include <stdbool.h>

#define CONF_DEFAULT_PATH "/etc/yamori/agent.json"
#define CONF_POLICY_FILE_QUARANTINE 1
/* process.sensor */
#define CONF_PROCESS_AUTO 0
#define CONF_PROCESS_EBPF 1
#define CONF_PROCESS_PROC 2

typedef struct {
  char *output;    /* "" none, "-" stdout, else a file path (NDJSON) */
  int log_level;   /* index into the level names */
  char *state_dir; /* identity, spool, quarantine */
  bool file_sensor;
  bool process_sensor;
  int process_source; /* CONF_PROCESS_* */
  /* network connection events (nsensor.h) */
  bool network_enabled;
  long long network_window_s;
  long long network_summary_max;
  ym_strlist_t exclude_paths;
  ym_strlist_t exclude_executables;
  long long max_args;
  long long max_args_bytes;
  long long max_in_flight;
  long long netlink_rcvbuf;
  long long hash_max_bytes;
  /* detection and response */
  ym_strlist_t rules_dirs;
  bool scan_on_write;
  long long scan_threads;
  long long scan_max_file_bytes;
  long long scan_timeout_s;
  long long scan_cpu_budget;
  long long scan_debounce_ms;
  long long scan_max_queue;
  int policy_exec; /* 0 off, 1 detect, 2 block */
  long long exec_deadline_ms;
  long long exec_max_pending;
  int policy_file; /* 0 detect, 1 quarantine */
  bool policy_kill;
  /* behaviour rules (behave.h) */
  bool behaviour_enabled;
  int behaviour_response[4]; /* low, medium, high, critical: 0 alert, 1 kill */
  long long behaviour_rate_limit_s;
  char *control_socket;
  /* console link */
  bool spool_enabled;
  long long spool_max_bytes;
  long long spool_alert_reserve;
  long long spool_bulk_flush_ms;
  /* updates */
  bool update_enabled;
  char *update_keys_dir;
  char *update_dir;
  char *update_versions_dir;
  long long update_max_package;
  /* remote response */
  char *triage_root; /* where persistence locations are looked up ("/") */
} conf_t;

/* Loads path (NULL: built-in defaults only) into a new snapshot. Returns
 * NULL and fills err on failure. */
conf_t *conf_load(const char *path, ym_cfg_error_t *err);

/* Frees a snapshot; conf_free(NULL) does nothing. */
void conf_free(conf_t *c);

/* The syslog-style level of the snapshot's log_level. */
int conf_log_level(const conf_t *c);

/* Appends the Markdown table of all keys (docs/config.md). */
int conf_doc(ym_buf_t *b);

#endif
