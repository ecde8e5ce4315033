/*
 * The event schema and the event builder.
 *
 * YM_SCHEMA is the one declaration of every field an event may carry: its
 * dotted name, its ECS type, how it is stored, and what it means. The
 * serializer, docs/events.md (yamorid --events-doc) and the schema check
 * against the ECS field list are all generated from it. Fields are either
 * ECS 9.4 fields of the same type or live under yamori.*.
 *
 * The list is kept sorted component by component ("process.args" before
 * "process.args_count" before "process.hash.sha256" before "process.name")
 * so that fields sharing a prefix are adjacent: the serializer opens and
 * closes nested JSON objects in one pass without sorting.
 *
 * An event is a set of field values. Values are copied into the event's
 * own arena; strings are bytes (not necessarily UTF-8) and are escaped as
 * yamori/json.h describes when written. An event may have a base event
 * (host.*, agent.*, ecs.version) whose values are written for every field
 * the event itself does not set.
 */
#ifndef YAMORI_EVENT_H
#define YAMORI_EVENT_H

#include "yamori/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define YM_ECS_VERSION "9.4.0"

/* Storage kinds. */
#define YM_K_STR 1  /* string */
#define YM_K_INT 2  /* 64-bit integer */
#define YM_K_BOOL 3 /* true/false */
#define YM_K_DATE 4 /* nanoseconds since the epoch, written as ISO 8601 UTC */
#define YM_K_ARR 5  /* array of strings */
#define YM_K_RAW 6  /* JSON value built by the agent itself (objects, arrays of objects) */

/* XX(id, name, ecs type, kind, description) */
#define YM_SCHEMA(XX)                                                                              \
  XX(TIMESTAMP, "@timestamp", "date", YM_K_DATE, "When the event happened (UTC).")                 \
  XX(AGENT_ID, "agent.id", "keyword", YM_K_STR, "Unique id of this agent installation.")           \
  XX(AGENT_TYPE, "agent.type", "keyword", YM_K_STR, "Always `yamori`.")                            \
  XX(AGENT_VERSION, "agent.version", "keyword", YM_K_STR, "Version of the agent.")                 \
  XX(DESTINATION_BYTES, "destination.bytes", "long", YM_K_INT,                                     \
     "Network connection end: bytes sent from the destination to the source.")                     \
  XX(DESTINATION_IP, "destination.ip", "ip", YM_K_STR,                                             \
     "Network: the address of the side that received the connection.")                             \
  XX(DESTINATION_PORT, "destination.port", "long", YM_K_INT,                                       \
     "Network: the port of the side that received the connection.")                                \
  XX(ECS_VERSION, "ecs.version", "keyword", YM_K_STR, "ECS version the event follows.")            \
  XX(EVENT_ACTION, "event.action", "keyword", YM_K_STR,                                            \
     "What happened: `creation`, `modification`, `deletion`, `rename`, `exec`, `end`, `gap`; "     \
     "`connection-attempted`, `connection-failed`, `connection-accepted`, `listening`, "           \
     "`disconnect-received`; "                                                                     \
     "`response-scan`, `response-quarantine`, ... for console commands; `behaviour-detected`.")    \
  XX(EVENT_CATEGORY, "event.category", "keyword", YM_K_ARR,                                        \
     "`file`, `process`, `network`, `host`; `malware` or `intrusion_detection` for alerts.")       \
  XX(EVENT_CREATED, "event.created", "date", YM_K_DATE, "When the agent built the event.")         \
  XX(EVENT_DATASET, "event.dataset", "keyword", YM_K_STR,                                          \
     "`yamori.file`, `yamori.process`, `yamori.network`, `yamori.agent`; `yamori.behaviour` for "  \
     "behaviour alerts.")                                                                          \
  XX(EVENT_DURATION, "event.duration", "long", YM_K_INT,                                           \
     "Nanoseconds: how long a program start waited for its verdict, or a scan took.")              \
  XX(EVENT_END, "event.end", "date", YM_K_DATE,                                                    \
     "Gap of unwritten events: when the last of them was batched.")                                \
  XX(EVENT_KIND, "event.kind", "keyword", YM_K_STR, "`event` for activity and gap records.")       \
  XX(EVENT_MODULE, "event.module", "keyword", YM_K_STR, "Always `yamori`.")                        \
  XX(EVENT_OUTCOME, "event.outcome", "keyword", YM_K_STR, "Responses: `success` or `failure`.")    \
  XX(EVENT_REASON, "event.reason", "keyword", YM_K_STR,                                            \
     "Why: the failure of a response, or why a program start was allowed unscanned.")              \
  XX(EVENT_SEQUENCE, "event.sequence", "long", YM_K_INT,                                           \
     "Per-agent sequence number, increasing by one per event written.")                            \
  XX(EVENT_SEVERITY, "event.severity", "long", YM_K_INT,                                           \
     "Alerts: 21 low, 47 medium, 73 high, 99 critical (from the rule's severity).")                \
  XX(EVENT_START, "event.start", "date", YM_K_DATE,                                                \
     "Gap of unwritten events: when the first of them was batched.")                               \
  XX(EVENT_TYPE, "event.type", "keyword", YM_K_ARR,                                                \
     "`creation`, `change`, `deletion`, `start`, `end` or `info`.")                                \
  XX(FILE_DIRECTORY, "file.directory", "keyword", YM_K_STR, "Directory of the file.")              \
  XX(FILE_EXTENSION, "file.extension", "keyword", YM_K_STR, "Extension without the dot.")          \
  XX(FILE_GID, "file.gid", "keyword", YM_K_STR, "Group id of the file.")                           \
  XX(FILE_HASH_SHA256, "file.hash.sha256", "keyword", YM_K_STR, "SHA-256 of the file's content.")  \
  XX(FILE_INODE, "file.inode", "keyword", YM_K_STR, "Inode number.")                               \
  XX(FILE_MODE, "file.mode", "keyword", YM_K_STR, "Permission bits in octal.")                     \
  XX(FILE_MTIME, "file.mtime", "date", YM_K_DATE, "Last modification time.")                       \
  XX(FILE_NAME, "file.name", "keyword", YM_K_STR, "Last path component.")                          \
  XX(FILE_PATH, "file.path", "keyword", YM_K_STR, "Full path (the new path for a rename).")        \
  XX(FILE_SIZE, "file.size", "long", YM_K_INT, "Size in bytes.")                                   \
  XX(FILE_TYPE, "file.type", "keyword", YM_K_STR, "`file` or `dir`.")                              \
  XX(FILE_UID, "file.uid", "keyword", YM_K_STR, "Owner user id of the file.")                      \
  XX(HOST_ARCHITECTURE, "host.architecture", "keyword", YM_K_STR, "CPU architecture.")             \
  XX(HOST_HOSTNAME, "host.hostname", "keyword", YM_K_STR, "Host name as the kernel reports it.")   \
  XX(HOST_ID, "host.id", "keyword", YM_K_STR, "The machine id (/etc/machine-id).")                 \
  XX(HOST_IP, "host.ip", "ip", YM_K_ARR, "Addresses of the host's interfaces (not loopback).")     \
  XX(HOST_NAME, "host.name", "keyword", YM_K_STR, "Name of the host.")                             \
  XX(HOST_OS_FAMILY, "host.os.family", "keyword", YM_K_STR, "OS family (`debian`, `rhel`, ...).")  \
  XX(HOST_OS_KERNEL, "host.os.kernel", "keyword", YM_K_STR, "Kernel release.")                     \
  XX(HOST_OS_NAME, "host.os.name", "keyword", YM_K_STR, "OS name.")                                \
  XX(HOST_OS_PLATFORM, "host.os.platform", "keyword", YM_K_STR, "OS id (`debian`, ...).")          \
  XX(HOST_OS_TYPE, "host.os.type", "keyword", YM_K_STR, "`linux`.")                                \
  XX(HOST_OS_VERSION, "host.os.version", "keyword", YM_K_STR, "OS version.")                       \
  XX(NETWORK_DIRECTION, "network.direction", "keyword", YM_K_STR,                                  \
     "Network: `egress` (this host opened the connection) or `ingress` (a peer did).")             \
  XX(NETWORK_TRANSPORT, "network.transport", "keyword", YM_K_STR, "Network: `tcp`.")               \
  XX(NETWORK_TYPE, "network.type", "keyword", YM_K_STR, "Network: `ipv4` or `ipv6`.")              \
  XX(PROCESS_ARGS, "process.args", "keyword", YM_K_ARR, "Arguments, starting with argv[0].")       \
  XX(PROCESS_ARGS_COUNT, "process.args_count", "long", YM_K_INT, "Number of arguments kept.")      \
  XX(PROCESS_COMMAND_LINE, "process.command_line", "wildcard", YM_K_STR,                           \
     "Arguments joined by spaces.")                                                                \
  XX(PROCESS_END, "process.end", "date", YM_K_DATE, "When the process ended.")                     \
  XX(PROCESS_ENTITY_ID, "process.entity_id", "keyword", YM_K_STR,                                  \
     "Stable id of the process: a hash of boot id, pid and start time.")                           \
  XX(PROCESS_ENV_VARS, "process.env_vars", "keyword", YM_K_ARR,                                    \
     "Bindings of `LD_PRELOAD` and `LD_LIBRARY_PATH` when set at the program start (eBPF "         \
     "process sensor).")                                                                           \
  XX(PROCESS_EXECUTABLE, "process.executable", "keyword", YM_K_STR, "Path of the program.")        \
  XX(PROCESS_EXIT_CODE, "process.exit_code", "long", YM_K_INT,                                     \
     "Exit code; 128 + signal number when a signal ended the process.")                            \
  XX(PROCESS_GROUP_ID, "process.group.id", "keyword", YM_K_STR,                                    \
     "Real group id (eBPF process sensor).")                                                       \
  XX(PROCESS_HASH_SHA256, "process.hash.sha256", "keyword", YM_K_STR, "SHA-256 of the program.")   \
  XX(PROCESS_NAME, "process.name", "keyword", YM_K_STR, "File name of the program.")               \
  XX(PROCESS_PARENT_ENTITY_ID, "process.parent.entity_id", "keyword", YM_K_STR,                    \
     "Entity id of the parent process.")                                                           \
  XX(PROCESS_PARENT_EXECUTABLE, "process.parent.executable", "keyword", YM_K_STR,                  \
     "Program of the parent process.")                                                             \
  XX(PROCESS_PARENT_NAME, "process.parent.name", "keyword", YM_K_STR, "Name of the parent.")       \
  XX(PROCESS_PARENT_PID, "process.parent.pid", "long", YM_K_INT, "Parent process id.")             \
  XX(PROCESS_PID, "process.pid", "long", YM_K_INT, "Process id.")                                  \
  XX(PROCESS_START, "process.start", "date", YM_K_DATE, "When the process started.")               \
  XX(PROCESS_USER_ID, "process.user.id", "keyword", YM_K_STR, "Real user id.")                     \
  XX(PROCESS_USER_NAME, "process.user.name", "keyword", YM_K_STR, "Real user name.")               \
  XX(PROCESS_WORKING_DIRECTORY, "process.working_directory", "keyword", YM_K_STR,                  \
     "Working directory.")                                                                         \
  XX(RULE_AUTHOR, "rule.author", "keyword", YM_K_STR, "Author of the rule.")                       \
  XX(RULE_DESCRIPTION, "rule.description", "keyword", YM_K_STR, "What the rule detects.")          \
  XX(RULE_ID, "rule.id", "keyword", YM_K_STR, "Behaviour alerts: the Sigma rule's id.")            \
  XX(RULE_NAME, "rule.name", "keyword", YM_K_STR,                                                  \
     "Rule identifier (the first rule that matched).")                                             \
  XX(RULE_REFERENCE, "rule.reference", "keyword", YM_K_STR, "Where to read more.")                 \
  XX(RULE_RULESET, "rule.ruleset", "keyword", YM_K_STR,                                            \
     "Rule namespace (the rule file's name); `sigma` for behaviour.")                              \
  XX(RULE_VERSION, "rule.version", "keyword", YM_K_STR, "Version of the rule set that matched.")   \
  XX(SOURCE_BYTES, "source.bytes", "long", YM_K_INT,                                               \
     "Network connection end: bytes sent from the source to the destination.")                     \
  XX(SOURCE_IP, "source.ip", "ip", YM_K_STR,                                                       \
     "Network: the address of the side that opened the connection.")                               \
  XX(SOURCE_PORT, "source.port", "long", YM_K_INT,                                                 \
     "Network: the port of the side that opened the connection.")                                  \
  XX(THREAT_FRAMEWORK, "threat.framework", "keyword", YM_K_STR, "`MITRE ATT&CK` when mapped.")     \
  XX(THREAT_TACTIC_NAME, "threat.tactic.name", "keyword", YM_K_ARR,                                \
     "ATT&CK tactics named by the rule's tags (`persistence`, ...).")                              \
  XX(THREAT_TECHNIQUE_ID, "threat.technique.id", "keyword", YM_K_ARR, "ATT&CK technique ids.")     \
  XX(YAMORI_COMMAND_ID, "yamori.command.id", "long", YM_K_INT,                                     \
     "Response to a console command: the command's id.")                                           \
  XX(YAMORI_COMMAND_KIND, "yamori.command.kind", "keyword", YM_K_STR,                              \
     "Response to a console command: `scan`, `quarantine`, `restore`, `kill` or `triage`.")        \
  XX(YAMORI_COMMAND_STATE, "yamori.command.state", "keyword", YM_K_STR,                            \
     "Response to a console command: `done` or `failed`.")                                         \
  XX(YAMORI_FILE_ORIGINAL_DIRECTORY, "yamori.file.original.directory", "keyword", YM_K_STR,        \
     "Rename: the directory the file was in before.")                                              \
  XX(YAMORI_FILE_ORIGINAL_NAME, "yamori.file.original.name", "keyword", YM_K_STR,                  \
     "Rename: the name before.")                                                                   \
  XX(YAMORI_FILE_ORIGINAL_PATH, "yamori.file.original.path", "keyword", YM_K_STR,                  \
     "Rename: the full path before.")                                                              \
  XX(YAMORI_GAP_COUNT, "yamori.gap.count", "long", YM_K_INT,                                       \
     "Gap: how many events were lost (absent when the source cannot say).")                        \
  XX(YAMORI_GAP_REASON, "yamori.gap.reason", "keyword", YM_K_STR,                                  \
     "Gap: `queue_overflow`, `receive_overrun`, `sequence`, `ring_buffer_full`, "                  \
     "`in_flight_limit`; from the spool `spool_full`, `spool_corrupt`, `spool_removed`, "          \
     "`spool_write_failed`.")                                                                      \
  XX(YAMORI_GAP_SOURCE, "yamori.gap.source", "keyword", YM_K_STR,                                  \
     "Gap: `fanotify`, `proc_connector`, `ebpf`, `scanner`, `spool` or `uplink`.")                 \
  XX(YAMORI_GAP_STREAM, "yamori.gap.stream", "keyword", YM_K_STR,                                  \
     "Gap from the spool or uplink: the upload stream the lost events belonged to.")               \
  XX(YAMORI_MISSING, "yamori.missing", "keyword", YM_K_ARR,                                        \
     "Names of fields that could not be read (the process was gone, the path vanished).")          \
  XX(YAMORI_NETWORK_COUNT, "yamori.network.count", "long", YM_K_INT,                               \
     "Network: how many connections the event stands for (1, or the repeats summarised).")         \
  XX(YAMORI_NETWORK_INITIATED, "yamori.network.initiated", "boolean", YM_K_BOOL,                   \
     "Network: true when this host opened the connection (Sigma's `Initiated`).")                  \
  XX(YAMORI_PROCESS_ARGS_TRUNCATED, "yamori.process.args_truncated", "boolean", YM_K_BOOL,         \
     "The arguments were cut to the configured limits.")                                           \
  XX(YAMORI_PROCESS_EXIT_SIGNAL, "yamori.process.exit_signal", "long", YM_K_INT,                   \
     "Signal number that ended the process.")                                                      \
  XX(YAMORI_PROCESS_LOGIN_UID, "yamori.process.login_uid", "keyword", YM_K_STR,                    \
     "User id of the login the process descends from (audit login uid; eBPF process sensor, "      \
     "absent when unset).")                                                                        \
  XX(YAMORI_PROCESS_SESSION_ID, "yamori.process.session_id", "long", YM_K_INT,                     \
     "Audit session id of that login (eBPF process sensor).")                                      \
  XX(YAMORI_QUARANTINE_ID, "yamori.quarantine.id", "keyword", YM_K_STR,                            \
     "Quarantine entry of a quarantined or restored file.")                                        \
  XX(YAMORI_RESPONSE_ACTION, "yamori.response.action", "keyword", YM_K_STR,                        \
     "Behaviour alerts: what the level's response was, `alert` or `kill`.")                        \
  XX(YAMORI_RESPONSE_RESULT, "yamori.response.result", "keyword", YM_K_STR,                        \
     "Behaviour alerts with a kill: `success`, `failure` or `refused` (`event.reason` says why).") \
  XX(YAMORI_SCAN_CACHED, "yamori.scan.cached", "boolean", YM_K_BOOL,                               \
     "The verdict came from the cache (the file version was scanned before).")                     \
  XX(YAMORI_SCAN_TRIGGER, "yamori.scan.trigger", "keyword", YM_K_STR,                              \
     "What started the scan: `write`, `exec` or `demand`.")                                        \
  XX(YAMORI_SIGMA_LEVEL, "yamori.sigma.level", "keyword", YM_K_STR,                                \
     "Behaviour alerts: the Sigma level (`low`, `medium`, `high`, `critical`).")                   \
  XX(YAMORI_SIGMA_MATCHED, "yamori.sigma.matched", "keyword", YM_K_ARR,                            \
     "Behaviour alerts: the event fields the rule matched on (or the correlation's group-by).")    \
  XX(YAMORI_SIGMA_SUPPRESSED, "yamori.sigma.suppressed", "long", YM_K_INT,                         \
     "Behaviour alerts: matches of the same rule by the same process not alerted since the last "  \
     "alert (rate limit).")                                                                        \
  XX(YAMORI_STREAM_SEQ, "yamori.stream_seq", "long", YM_K_INT,                                     \
     "Number of the event in its upload stream (`alerts` or `bulk`), for exactly-once delivery.")  \
  XX(YAMORI_YARA_MATCHES, "yamori.yara.matches", "object", YM_K_RAW,                               \
     "Matching rules with matched strings (identifier, offset, excerpt of at most 32 bytes).")     \
  XX(YAMORI_YARA_SEVERITY, "yamori.yara.severity", "keyword", YM_K_STR,                            \
     "The rule's severity: `low`, `medium`, `high` or `critical`.")                                \
  XX(YAMORI_YARA_TAGS, "yamori.yara.tags", "keyword", YM_K_ARR, "The rule's tags.")

typedef enum {
#define YM_FIELD_ENUM_(id, name, type, kind, doc) YM_F_##id,
  YM_SCHEMA(YM_FIELD_ENUM_)
#undef YM_FIELD_ENUM_
      YM_F_COUNT
} ym_field_t;

typedef struct {
  const char *name;
  const char *ecs_type;
  int kind;
  const char *doc;
} ym_field_info_t;

/* The schema entry of f. */
const ym_field_info_t *ym_schema_field(ym_field_t f);

/* Appends the Markdown reference of every field (docs/events.md body). */
int ym_schema_doc_markdown(ym_buf_t *b);

#define YM_EVENT_MAX_BYTES (1024 * 1024)

typedef struct ym_event {
  uint64_t set[(YM_F_COUNT + 63) / 64];
  struct {
    uint32_t off;
    uint32_t len;
    int64_t num;
  } val[YM_F_COUNT];
  ym_buf_t arena;
  const struct ym_event *base;
} ym_event_t;

/* Prepares an empty event whose unset fields come from base (may be NULL;
 * base must outlive the event's writes). */
void ym_event_init(ym_event_t *ev, const ym_event_t *base);
/* Clears every field, keeping the arena's storage. */
void ym_event_reset(ym_event_t *ev);
void ym_event_free(ym_event_t *ev);

/* Setters return 0, YM_ETYPE when f is not of that kind, or YM_ETOOBIG when
 * the event would exceed YM_EVENT_MAX_BYTES (the field stays unset). A field
 * set twice keeps the later value. */
int ym_event_set_str(ym_event_t *ev, ym_field_t f, const char *s, size_t n);
int ym_event_set_cstr(ym_event_t *ev, ym_field_t f, const char *s);
int ym_event_set_int(ym_event_t *ev, ym_field_t f, int64_t v);
int ym_event_set_bool(ym_event_t *ev, ym_field_t f, bool v);
int ym_event_set_time(ym_event_t *ev, ym_field_t f, int64_t ns_since_epoch);
/* Arrays: n items given as pointers and lengths. */
int ym_event_set_strv(ym_event_t *ev, ym_field_t f, const char *const *items, const size_t *lens,
                      size_t n);
/* Arrays from NUL-separated items (a command line as /proc gives it). */
int ym_event_set_nul_list(ym_event_t *ev, ym_field_t f, const char *buf, size_t len);
/* Array of one item. */
int ym_event_set_one(ym_event_t *ev, ym_field_t f, const char *s);
/* A JSON value the caller built with this project's writers (trusted to be
 * well formed; untrusted strings inside it must already be escaped). */
int ym_event_set_raw(ym_event_t *ev, ym_field_t f, const char *json, size_t n);

bool ym_event_has(const ym_event_t *ev, ym_field_t f);
/* Copies field f of src (its own value, not its base's) into dst as it is
 * stored; does nothing when src does not set it. Returns 0 or YM_ETOOBIG. */
int ym_event_copy(ym_event_t *dst, const ym_event_t *src, ym_field_t f);
/* The string value of f (STR or DATE as written), or NULL when unset. */
const char *ym_event_get_str(const ym_event_t *ev, ym_field_t f, size_t *len);

/* The integer value of f (INT only, the event's own value) into *out;
 * false when unset. */
bool ym_event_get_int(const ym_event_t *ev, ym_field_t f, int64_t *out);

/* Appends the event as one line of JSON (nested objects, terminated by
 * '\n'). Returns 0, YM_ETOOBIG or YM_ENOMEM; the buffer is unchanged on
 * error. */
int ym_event_write(const ym_event_t *ev, ym_buf_t *out);
/* The same, without the base event's fields (for upload, where the console
 * knows host.* and agent.* from the agent's identity). */
int ym_event_write_own(const ym_event_t *ev, ym_buf_t *out);

/* Formats ns since the epoch as "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" (28 bytes). */
void ym_time_format(int64_t ns, char out[32]);

#endif
