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

typedef struct {
  char *output;    /* "" none, "-" stdout, else a file path (NDJSON) */
  int log_level;   /* index into the level names */
  char *state_dir; /* identity, spool, quarantine */
  bool file_sensor;
  bool process_sensor;
  ym_strlist_t exclude_paths;
  ym_strlist_t exclude_executables;
  long long max_args;
  long long max_args_bytes;
  long long max_in_flight;
  long long netlink_rcvbuf;
  long long hash_max_bytes;
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
