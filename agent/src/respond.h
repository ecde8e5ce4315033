/*
 * Remote response: the console's commands, run by the agent.
 *
 * Commands arrive in the check-in answer ("commands": [{"id", "kind",
 * "args"}], docs/protocol.md). For each one, in order:
 *   1. A command whose id is known is not run again: when it has finished
 *      its result is posted again (the console re-sends only commands
 *      whose result it has not got), when it runs it is ignored.
 *   2. A new command is recorded as running in state_dir/commands.json
 *      (written atomically, off the loop) and only started once that record
 *      is on disk: a crash never makes it run twice. A command found running
 *      at start was interrupted: it is reported failed.
 *   3. It runs: scan (detect_scan, as `yamorictl scan`), quarantine
 *      (quarantine_file_protected on the descriptor opened with
 *      O_NOFOLLOW), restore (quarantine_restore_protected), kill (pidfd;
 *      refused when the pid's entity id is not the one given). The
 *      agent's own directories and files, the agent, its launcher and PID 1
 *      are refused by identity (protect.h), recorded at start and at each
 *      reload; triage (triage_collect, gzip, uploaded to
 *      /api/v1/commands/{id}/bundle first). Slow work runs off the loop.
 *   4. The outcome becomes a response event (dataset yamori.response, in
 *      the alerts stream) and is recorded, then posted to
 *      /api/v1/commands/{id}/result; results not acknowledged are posted
 *      again at the next check-ins.
 *
 * The module also keeps the last RESPOND_RING process starts and file
 * events (fed by agent_emit) for triage bundles.
 * Loop thread only.
 */
#ifndef YAMORI_AGENT_RESPOND_H
#define YAMORI_AGENT_RESPOND_H

#include "agent.h"

/* Commands remembered (running, or finished and their results). */
#define RESPOND_MAX_RECORDS 256
/* Recent events of each kind kept for triage. */
#define RESPOND_RING 256
/* Matches listed in a scan result at most. */
#define RESPOND_SCAN_MATCHES 64

typedef struct respond respond_t;

/* Loads state_dir/commands.json and hooks into the uplink's check-ins
 * (a->up may be NULL: no console, commands never arrive). */
int respond_new(agent_t *a, respond_t **out);
/* The configuration was reloaded: what commands never touch (protect.h)
 * is recorded again. respond_reload(NULL) does nothing. */
void respond_reload(respond_t *r);
/* No new commands start after this; running ones finish. */
void respond_stop(respond_t *r);
/* Frees the module after the loop has finished (agent_close).
 * respond_free(NULL) does nothing. */
void respond_free(respond_t *r);

/* Kills the process pid on the thread pool, as the kill command does: only
 * when its entity id (pid and start time) is still entity_id (32 hex
 * characters; required), never the agent, its launcher or PID 1
 * (protect.h). cb runs once on the loop thread with 0 or an error, a
 * reason (NULL on success) and whether the process had ended within a few
 * seconds. Returns 0 (cb will run), or an error (cb never runs):
 * YM_ENOTSUP for r NULL, YM_ECANCELED when stopping, YM_EINVAL. */
typedef void (*respond_kill_cb)(int rc, const char *why, bool exited, void *data);
int respond_kill(respond_t *r, int pid, const char *entity_id, respond_kill_cb cb, void *data);

/* Notes an emitted event for the triage rings. json is the event as
 * uploaded (without host.* and agent.*), len bytes, or NULL when it was
 * not serialized that way. */
void respond_note_event(respond_t *r, const ym_event_t *ev, const char *json, size_t len);

#endif
