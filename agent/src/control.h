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

#define CONTROL_LINE_MAX (64 * 1024)

typedef struct control control_t;

int control_new(agent_t *a, control_t **out);
/* Closes the server and every connection (loop thread). */
void control_free(control_t *c);

#endif
