/*
 * Triage bundles: a snapshot of the machine for a first responder.
 *
 * triage_collect() builds one JSON document (docs/agent.md, "Triage
 * bundle") with these sections, each bounded:
 *   processes               every process from /proc: pid, ppid (for the
 *                           tree), entity ids, name, executable, arguments,
 *                           user, start time;
 *   recent_process_starts   the agent's last process start events,
 *   recent_file_activity    and last file events (given by the caller);
 *   persistence             crontabs, systemd units, rc and profile
 *                           scripts, users' shell start-up files and
 *                           authorized_keys: path, type, size, owner, mode,
 *                           mtime, SHA-256, and the content of small text
 *                           files;
 *   listening               listening TCP sockets and bound UDP sockets
 *                           from /proc/net with the owning process;
 * and returns it compressed (gzip).
 *
 * Persistence files are opened with openat2(RESOLVE_NO_SYMLINKS): no
 * symbolic link anywhere in the path is followed, so a user cannot point
 * a start-up file or directory at a secret and get it into the bundle
 * (symbolic links are listed with their target instead). Synchronous,
 * blocking I/O: run it on a worker thread. Pure apart from reading the
 * system; does not log.
 */
#ifndef YAMORI_AGENT_TRIAGE_H
#define YAMORI_AGENT_TRIAGE_H

#include "yamori/buf.h"

#include <stddef.h>
#include <stdint.h>

/* Limits of a bundle. */
#define TRIAGE_MAX_PROCESSES 8192
#define TRIAGE_MAX_PERSISTENCE 4000
#define TRIAGE_MAX_DIR_ENTRIES 512
#define TRIAGE_CONTENT_MAX (16 * 1024)     /* file content included up to */
#define TRIAGE_HASH_MAX (16 * 1024 * 1024) /* files hashed up to */
#define TRIAGE_MAX_USERS 2000
#define TRIAGE_MAX_SOCKETS 4096
#define TRIAGE_JSON_MAX (48 * 1024 * 1024) /* uncompressed document at most */

typedef struct {
  const char *root;    /* persistence locations are looked up below it ("/") */
  const char *boot_id; /* for entity ids */
  long clock_ticks;    /* sysconf(_SC_CLK_TCK) */
  int64_t boot_ns;     /* wall clock at boot */
  const char *agent_id;
  int64_t command_id;
  /* The agent's recent events, each one ECS JSON object text. */
  char *const *recent_starts;
  size_t n_starts;
  char *const *recent_files;
  size_t n_files;
} triage_opts_t;

/* What a bundle holds, for the command's result. */
typedef struct {
  size_t processes, persistence, listening, recent_starts, recent_files;
  size_t json_bytes;
  int truncated; /* a limit cut some section */
} triage_stats_t;

/* Collects the bundle and appends it, gzip-compressed, to gz (whose limit
 * bounds the compressed size: YM_ETOOBIG beyond it). Returns 0, YM_ENOMEM,
 * YM_ETOOBIG or YM_EIO. */
int triage_collect(const triage_opts_t *o, ym_buf_t *gz, triage_stats_t *st);

/* Parses one line of /proc/net/{tcp,tcp6,udp,udp6} (exposed for tests):
 * the local address as text, port, state and socket inode. Returns 0 or
 * YM_EPARSE (the header line, or a malformed line). */
int triage_parse_net_line(const char *line, int v6, char addr[64], unsigned *port, unsigned *state,
                          uint64_t *inode, int *remote_zero);

#endif
