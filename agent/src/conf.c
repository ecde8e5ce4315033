#include "conf.h"

#include "yamori/err.h"
#include "yamori/log.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const log_levels[] = {"error", "warn", "notice", "info", "debug", NULL};

static int check_abs_path(const void *value, char *msg, size_t msglen) {
  const char *s = *(char *const *)value;
  if (s[0] != '/') {
    snprintf(msg, msglen, "must be an absolute path");
    return YM_EINVAL;
  }
  return 0;
}

static int check_abs_list(const void *value, char *msg, size_t msglen) {
  const ym_strlist_t *l = value;
  for (size_t i = 0; i < l->n; i++) {
    if (l->v[i][0] != '/') {
      snprintf(msg, msglen, "item %zu ('%.100s') must be an absolute path", i, l->v[i]);
      return YM_EINVAL;
    }
  }
  return 0;
}

#define F(name, type, min, max, def, member, choices, check, doc)                                  \
  { name, type, min, max, def, offsetof(conf_t, member), choices, check, doc }

static const ym_cfg_field_t table[] = {
    F("output", YM_CFG_STRING, 0, 4096, "\"\"", output, NULL, NULL,
      "Where to write events as NDJSON: empty for nowhere, `-` for standard output, or a file "
      "path (appended to). A debugging and SIEM feed, independent of the console link."),
    F("log_level", YM_CFG_ENUM, 0, 0, "\"info\"", log_level, log_levels, NULL,
      "Highest level of log lines written to standard error (the journal under systemd)."),
    F("state_dir", YM_CFG_STRING, 1, 1024, "\"/var/lib/yamori\"", state_dir, NULL, check_abs_path,
      "Directory for the agent's identity and state; created with mode 0700."),
    F("sensors.file", YM_CFG_BOOL, 0, 0, "true", file_sensor, NULL, NULL,
      "Watch file creation, change, deletion and rename on every real filesystem (fanotify)."),
    F("sensors.process", YM_CFG_BOOL, 0, 0, "true", process_sensor, NULL, NULL,
      "Watch process start and end (netlink proc connector, enriched from /proc)."),
    F("exclude.paths", YM_CFG_STRLIST, 0, 256, "[]", exclude_paths, NULL, check_abs_list,
      "Path prefixes whose file events are not reported (a prefix matches whole components)."),
    F("exclude.executables", YM_CFG_STRLIST, 0, 256, "[]", exclude_executables, NULL,
      check_abs_list,
      "Executables whose file activity and process starts are not reported (exact paths)."),
    F("limits.max_args", YM_CFG_INT, 1, 4096, "256", max_args, NULL, NULL,
      "Most command-line arguments kept per process; more are cut and flagged."),
    F("limits.max_args_bytes", YM_CFG_INT, 256, 131072, "16384", max_args_bytes, NULL, NULL,
      "Most bytes of command line kept per process; more are cut and flagged."),
    F("limits.max_in_flight", YM_CFG_INT, 64, 1048576, "8192", max_in_flight, NULL, NULL,
      "Most events waiting for enrichment (hashing) at once; beyond it events are sent "
      "without the hash and counted."),
    F("limits.netlink_rcvbuf", YM_CFG_INT, 65536, 67108864, "4194304", netlink_rcvbuf, NULL, NULL,
      "Receive buffer of the proc connector socket in bytes; sized for bursts of thousands "
      "of process events between two loop iterations."),
    F("limits.hash_max_bytes", YM_CFG_INT, 0, 4294967296LL, "268435456", hash_max_bytes, NULL, NULL,
      "Largest executable hashed with SHA-256 (bytes); larger ones are reported without "
      "a hash and flagged."),
};

#define NFIELDS (sizeof(table) / sizeof(table[0]))

conf_t *conf_load(const char *path, ym_cfg_error_t *err) {
  conf_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    err->code = YM_ENOMEM;
    snprintf(err->msg, sizeof(err->msg), "out of memory");
    return NULL;
  }
  int rc = path ? ym_config_load_file(table, NFIELDS, c, path, err)
                : ym_config_defaults(table, NFIELDS, c, err);
  if (rc != 0) {
    free(c);
    return NULL;
  }
  return c;
}

void conf_free(conf_t *c) {
  if (c == NULL)
    return;
  ym_config_free(table, NFIELDS, c);
  free(c);
}

int conf_log_level(const conf_t *c) {
  static const int levels[] = {YM_LOG_ERROR, YM_LOG_WARN, YM_LOG_NOTICE, YM_LOG_INFO, YM_LOG_DEBUG};
  return levels[c->log_level];
}

int conf_doc(ym_buf_t *b) {
  return ym_config_doc_markdown(table, NFIELDS, b);
}
