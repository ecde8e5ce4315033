#include "conf.h"

#include "yamori/err.h"
#include "yamori/log.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const log_levels[] = {"error", "warn", "notice", "info", "debug", NULL};
static const char *const exec_policies[] = {"off", "detect", "block", NULL};
static const char *const file_policies[] = {"detect", "quarantine", NULL};
static const char *const process_sources[] = {"auto", "ebpf", "proc", NULL};
static const char *const behaviour_responses[] = {"alert", "kill", NULL};

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
      "Watch process start and end (from eBPF or the proc connector: `process.sensor`)."),
    F("process.sensor", YM_CFG_ENUM, 0, 0, "\"auto\"", process_source, process_sources, NULL,
      "Where process events come from: `ebpf` (BPF programs at the kernel's scheduler "
      "tracepoints: every program start with its arguments as the kernel had them), `proc` "
      "(netlink proc connector, details read from /proc afterwards, so a process that ends at "
      "once loses them), or `auto` (eBPF when the kernel lets it load, else the proc connector; "
      "`yamorictl status` says which runs and why). With `ebpf` the agent does not start "
      "without it."),
    F("network.enabled", YM_CFG_BOOL, 0, 0, "true", network_enabled, NULL, NULL,
      "Report TCP connections (connect, accept, listen, close with bytes) with the acting "
      "process. Needs the eBPF process sensor: with the proc connector there are no network "
      "events (`yamorictl status` says `network_sensor: off` and why)."),
    F("network.summary_window_s", YM_CFG_INT, 0, 3600, "10", network_window_s, NULL, NULL,
      "Repeated connections of one process to one peer (same direction, kind, peer address and "
      "service port) within this many seconds are reported as one event with "
      "`yamori.network.count`, after the first is reported at once; 0 reports every connection."),
    F("network.summary_max", YM_CFG_INT, 16, 65536, "4096", network_summary_max, NULL, NULL,
      "Most flows summarised at once; beyond it connections are reported one by one (and "
      "counted in `network_unsummarised`)."),
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
    F("rules.dirs", YM_CFG_STRLIST, 0, 16, "[\"/opt/yamori/rules\"]", rules_dirs, NULL,
      check_abs_list,
      "Directories whose `*.yar`/`*.yara` files are compiled into the rule set (YARA source only; "
      "compiled rules are never loaded)."),
    F("scan.on_write", YM_CFG_BOOL, 0, 0, "true", scan_on_write, NULL, NULL,
      "Scan files when they are closed after writing."),
    F("scan.threads", YM_CFG_INT, 0, 64, "0", scan_threads, NULL, NULL,
      "Scanner threads; 0 means one per CPU core."),
    F("scan.max_file_bytes", YM_CFG_INT, 1024, 1073741824, "33554432", scan_max_file_bytes, NULL,
      NULL, "Largest file scanned; larger files are reported as not scanned."),
    F("scan.timeout_s", YM_CFG_INT, 1, 300, "10", scan_timeout_s, NULL, NULL,
      "YARA time limit per file, in seconds."),
    F("scan.cpu_budget_percent", YM_CFG_INT, 1, 100, "25", scan_cpu_budget, NULL, NULL,
      "Share of each scanner thread that background (write-triggered) scanning may use."),
    F("scan.debounce_ms", YM_CFG_INT, 0, 10000, "200", scan_debounce_ms, NULL, NULL,
      "A file written again within this time is scanned once."),
    F("scan.max_queue", YM_CFG_INT, 16, 1000000, "10000", scan_max_queue, NULL, NULL,
      "Background scans waiting at most; beyond it writes are not scanned (counted)."),
    F("policy.exec", YM_CFG_ENUM, 0, 0, "\"block\"", policy_exec, exec_policies, NULL,
      "Program starts: `off` (not checked), `detect` (alert only), `block` (a malicious "
      "program is not allowed to start)."),
    F("policy.exec_deadline_ms", YM_CFG_INT, 10, 5000, "250", exec_deadline_ms, NULL, NULL,
      "Longest a program start waits for its verdict; then it is allowed and an event says so."),
    F("policy.exec_max_pending", YM_CFG_INT, 1, 4096, "64", exec_max_pending, NULL, NULL,
      "Program starts waiting for a verdict at most; beyond it starts are allowed unscanned."),
    F("policy.file", YM_CFG_ENUM, 0, 0, "\"quarantine\"", policy_file, file_policies, NULL,
      "Malicious files found on write or on demand: `detect` (alert only) or `quarantine` "
      "(moved into the agent's quarantine, restorable)."),
    F("policy.kill", YM_CFG_BOOL, 0, 0, "false", policy_kill, NULL, NULL,
      "Also kill the process that wrote a malicious file or started a malicious program "
      "that was allowed."),
    F("behaviour.enabled", YM_CFG_BOOL, 0, 0, "true", behaviour_enabled, NULL, NULL,
      "Evaluate the behaviour rules (compiled Sigma, `sigma/*.json` under each rules directory "
      "and in the active rules bundle) on every program start and file event."),
    F("behaviour.response.low", YM_CFG_ENUM, 0, 0, "\"alert\"", behaviour_response[0],
      behaviour_responses, NULL,
      "What a match of a `low` behaviour rule does: `alert`, or `kill` (the process that "
      "matched, start time checked; never the agent, its launcher, PID 1 or a system-critical "
      "process, docs/behaviour.md)."),
    F("behaviour.response.medium", YM_CFG_ENUM, 0, 0, "\"alert\"", behaviour_response[1],
      behaviour_responses, NULL, "The same for `medium` rules."),
    F("behaviour.response.high", YM_CFG_ENUM, 0, 0, "\"alert\"", behaviour_response[2],
      behaviour_responses, NULL, "The same for `high` rules."),
    F("behaviour.response.critical", YM_CFG_ENUM, 0, 0, "\"kill\"", behaviour_response[3],
      behaviour_responses, NULL, "The same for `critical` rules."),
    F("behaviour.rate_limit_s", YM_CFG_INT, 0, 86400, "60", behaviour_rate_limit_s, NULL, NULL,
      "A rule matching again for the same process within this time is counted, not alerted "
      "again (the next alert carries the count); 0 alerts every match."),
    F("control.socket", YM_CFG_STRING, 1, 100, "\"/run/yamori/yamorid.sock\"", control_socket, NULL,
      check_abs_path, "Unix socket of the local control interface (root only)."),
    F("spool.enabled", YM_CFG_BOOL, 0, 0, "true", spool_enabled, NULL, NULL,
      "Keep events on disk for the console (under `state_dir/spool`) until it has committed "
      "them."),
    F("spool.max_bytes", YM_CFG_INT, 1048576, 68719476736LL, "268435456", spool_max_bytes, NULL,
      NULL,
      "Disk the spool may use; when full, the oldest bulk telemetry is shed (a gap event "
      "says how much), alerts last."),
    F("spool.alert_reserve_bytes", YM_CFG_INT, 0, 68719476736LL, "16777216", spool_alert_reserve,
      NULL, NULL, "Part of `spool.max_bytes` that only alerts may use."),
    F("spool.bulk_flush_ms", YM_CFG_INT, 100, 60000, "2000", spool_bulk_flush_ms, NULL, NULL,
      "Bulk telemetry is written in batches at least this often (alerts are written at once)."),
    F("update.enabled", YM_CFG_BOOL, 0, 0, "true", update_enabled, NULL, NULL,
      "Apply signed agent releases and rules bundles that the console offers (docs/update.md)."),
    F("update.keys_dir", YM_CFG_STRING, 1, 1024, "\"/opt/yamori/keys\"", update_keys_dir, NULL,
      check_abs_path,
      "Directory of the trusted release public keys (`*.pub`, PEM, root-owned and not writable "
      "by others); only signatures by these keys are accepted."),
    F("update.dir", YM_CFG_STRING, 0, 1024, "\"\"", update_dir, NULL, NULL,
      "Update state directory (state.json, downloads); empty: `state_dir/update`. The launcher's "
      "`YAMORI_UPDATE_DIR` takes precedence."),
    F("update.versions_dir", YM_CFG_STRING, 1, 1024, "\"/opt/yamori/versions\"",
      update_versions_dir, NULL, check_abs_path,
      "Where agent versions are unpacked (one directory per version). The launcher's "
      "`YAMORI_VERSIONS_DIR` takes precedence."),
    F("update.max_package_bytes", YM_CFG_INT, 1048576, 1073741824, "268435456", update_max_package,
      NULL, NULL, "Largest release package accepted (bytes)."),
    F("triage.root", YM_CFG_STRING, 1, 1024, "\"/\"", triage_root, NULL, check_abs_path,
      "Directory under which a triage bundle looks for persistence locations (crontabs, "
      "systemd units, shell start-up files, authorized_keys); `/` but in tests."),
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
