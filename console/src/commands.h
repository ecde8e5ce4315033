/*
 * Remote response commands: scan, quarantine, restore, kill, triage.
 *
 * A person (through the dashboard) or an operator (through the CLI) queues
 * a command for one agent; it travels to the agent in the answer of its
 * next check-in, the agent runs it and posts the result (and, for a
 * triage, a gzip bundle first). Life of a command:
 *
 *   queued --(check-in hands it out)--> sent --(agent posts)--> done | failed
 *   queued or sent for longer than COMMANDS_EXPIRE_MS ---------> expired
 *
 * A command sent without a result for COMMANDS_RESEND_MS is handed out
 * again; the agent de-duplicates by id, so it runs once. A result that
 * arrives for an expired command is still recorded (the PC did act).
 *
 * Tables (module "commands"): commands, and command_bundles, which keeps
 * each triage bundle as a BLOB (gzip, at most COMMANDS_BUNDLE_MAX bytes)
 * beside its command: one file to back up, tenant scoping by the same SQL
 * join, no files to clean up.
 *
 * Every *_db function runs with a database connection (store_call,
 * store_read, store_sync_call) and is scoped by tenant in its SQL:
 * tenant_id 0 means provider staff (every tenant); any other value makes
 * other tenants' rows invisible: they are "not found" (YM_ENOENT), never
 * "forbidden".
 *
 * Command item JSON (docs/ui-api "Response commands"):
 *   {"id": 5, "agent_id": "uuid", "incident_id": 7 | null, "kind": "quarantine",
 *    "args": {...}, "state": "queued", "result": {...} | null, "error": "",
 *    "user": "admin", "created_ms": 0, "done_ms": null, "has_bundle": false}
 */
#ifndef YAMORI_CONSOLE_COMMANDS_H
#define YAMORI_CONSOLE_COMMANDS_H

#include "api.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Commands handed to one agent per check-in at most. */
#define COMMANDS_PER_CHECKIN 16
/* Bytes of command arguments per check-in answer at most (the agent
 * reads answers of up to 64 KiB); at least one command always goes. */
#define COMMANDS_CHECKIN_ARGS_MAX (40 * 1024)
/* A command sent but without a result is sent again after this. */
#define COMMANDS_RESEND_MS (10 * 60 * 1000LL)
/* A command not done this long after it was queued expires. */
#define COMMANDS_EXPIRE_MS (24 * 3600 * 1000LL)
/* Longest path argument, in bytes. */
#define COMMANDS_PATH_MAX 4095
/* Largest result body an agent may post, and largest stored result. */
#define COMMANDS_RESULT_MAX (64 * 1024)
/* Largest triage bundle (gzip bytes); the console's request limit is 4 MiB. */
#define COMMANDS_BUNDLE_MAX (4 * 1024 * 1024)
/* Items commands_list_db returns at most (newest first). */
#define COMMANDS_LIST_MAX 200

/* Applies the module's schema (call from apply_schemas in main.c). */
int commands_schema(store_t *s);

/* Registers the check-in contributor and the agent routes
 * POST /api/v1/commands/{id}/result and POST /api/v1/commands/{id}/bundle
 * (docs/protocol.md). Before the loop runs. Returns 0 or YM_E*. */
int commands_attach(api_t *api, store_t *store);

/* Checks a command's kind and arguments strictly (see docs/console.md):
 *   scan, quarantine: {"path": absolute, at most COMMANDS_PATH_MAX bytes, no
 *                      control characters, no "." or ".." component}
 *   restore:          {"id": 32 lower-case hex characters}
 *   kill:             {"pid": integer 2..4194304, "entity_id": optional 32
 *                      lower-case hex characters}
 *   triage:           {} (no members)
 * Unknown members are refused. Returns 0 or YM_EINVAL; when msg is not
 * NULL a reason is written there. */
int commands_validate(const char *kind, const cJSON *args, char *msg, size_t msglen);

/* Queues a command for agent_id, which must be an agent of tenant_id (any
 * agent for 0; else YM_ENOENT). incident_id 0 means none; otherwise the
 * incident must exist, belong to the same agent (YM_ENOENT otherwise), and
 * gets a "command" line in incident_log in the same transaction. args NULL
 * means {}. user (at most 128 bytes) is who asked. On success *item_out
 * (may be NULL) receives the new command item (caller frees). Returns 0,
 * YM_ENOENT, YM_EINVAL (bad kind or arguments) or YM_EIO. */
int commands_create_db(sqlite3 *db, int64_t tenant_id, const char *agent_id, int64_t incident_id,
                       const char *kind, const cJSON *args, const char *user, cJSON **item_out);

/* Appends the command items of tenant_id (every tenant for 0), of
 * agent_id (NULL: any) and incident_id (0: any), newest first, at most
 * COMMANDS_LIST_MAX, to items_array. Returns 0 or YM_EIO. */
int commands_list_db(sqlite3 *db, int64_t tenant_id, const char *agent_id, int64_t incident_id,
                     cJSON *items_array);

/* One command item, scoped the same way: 0 and *item_out (caller frees),
 * or YM_ENOENT. */
int commands_get_db(sqlite3 *db, int64_t tenant_id, int64_t id, cJSON **item_out);

/* The triage bundle of command id (gzip bytes, malloc'd, caller frees),
 * scoped the same way. Returns 0, YM_ENOENT (no such command in the
 * tenant, or it has no bundle), YM_ENOMEM or YM_EIO. */
int commands_bundle_get_db(sqlite3 *db, int64_t tenant_id, int64_t id, void **data, size_t *len);

/* ---- Command line (yamori-console command ...) ---- */

typedef struct {
  const char *agent;  /* --agent */
  const char *kind;   /* --kind */
  const char *args;   /* --args JSON */
  const char *out;    /* --out FILE */
  const char *user;   /* --user NAME (default "cli") */
  long long incident; /* --incident N (0 none) */
} commands_cli_t;

/* Runs "command add|list|show|bundle" (argv[0] is the subcommand) on an
 * open store, as provider staff (every tenant). Prints JSON to standard
 * output. Returns the process exit code: 0, 1 (failed) or 64 (usage). */
int commands_cli(store_t *s, const commands_cli_t *o, int argc, char **argv);

/* ---- Agent side of the protocol (database thread; exposed for tests) ---- */

/* The check-in contributor: expires old commands of the agent, hands out
 * queued ones and re-sends overdue sent ones, into answer["commands"]. */
int commands_checkin_db(sqlite3 *db, int64_t tenant_id, const char *agent_id, const cJSON *req,
                        cJSON *answer, void *data);

/* Records an agent's result for command id: the command must be the
 * agent's (YM_ENOENT otherwise). state is "done" or "failed"; result
 * (object or NULL) and error (may be NULL) are stored. A command already
 * done or failed is left as it is (0: the call is idempotent). */
int commands_result_db(sqlite3 *db, int64_t tenant_id, const char *agent_id, int64_t id,
                       const char *state, const cJSON *result, const char *error);

/* Stores the bundle of a triage command of the agent (YM_ENOENT when id is
 * not a triage command of that agent), replacing an earlier upload. */
int commands_bundle_put_db(sqlite3 *db, int64_t tenant_id, const char *agent_id, int64_t id,
                           const void *data, size_t len);

#endif
