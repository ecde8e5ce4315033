/*
 * The local control interface: a Unix socket (control.socket in the
 * configuration, default /run/yamori/yamorid.sock) that only root may use,
 * checked with SO_PEERCRED on every connection.
 *
 * Protocol: one JSON object per line each way. A request names a command
 * in "cmd"; every reply carries "ok" (true/false) and, on failure,
 * "error". The scan command streams one line per file, then a final line
 * with "done": true. See docs/operations.md.
 */
#ifndef YAMORI_AGENT_CONTROL_H
#define YAMORI_AGENT_CONTROL_H

#include "agent.h"

#include <cjson/cJSON.h>

#define CONTROL_LINE_MAX (64 * 1024)
#define CONTROL_SCAN_PATHS_MAX 64
#define CONTROL_PATH_MAX 4095
#define CONTROL_ID_LEN 32

typedef enum {
  CONTROL_STATUS,
  CONTROL_SCAN,
  CONTROL_QUARANTINE_LIST,
  CONTROL_QUARANTINE_RESTORE,
  CONTROL_QUARANTINE_DELETE,
  CONTROL_RULES_RELOAD,
  CONTROL_ALERTS,
} control_cmd_t;

/* One request, parsed and checked. The strings point into json, which
 * control_req_free() releases. */
typedef struct {
  cJSON *json;
  control_cmd_t cmd;
  const char *paths[CONTROL_SCAN_PATHS_MAX]; /* scan: 1 to 64 absolute paths */
  size_t n_paths;
  const char *id; /* quarantine restore and delete: 32 characters */
  uint64_t since; /* alerts */
} control_req_t;

/* Parses one request line (without its newline), a pure function and the
 * fuzzed parser of the socket's input. Returns 0 and fills *out (the caller
 * calls control_req_free), or YM_EINVAL with *why set to the reply's error
 * message (a static string); *out then holds nothing to free. */
int control_parse(const char *line, size_t len, control_req_t *out, const char **why);
void control_req_free(control_req_t *r);

typedef struct control control_t;

int control_new(agent_t *a, control_t **out);
/* Closes the server and every connection (loop thread). */
void control_free(control_t *c);

#endif
