/*
 * The process table: what the agent knows about each running process,
 * keyed by pid, so that events can name a process's program and parents
 * even after the process is gone from /proc.
 *
 * Seeded from the OS at start, kept current from process events. Bounded:
 * at most max entries; an insert beyond it fails with YM_ETOOBIG (the caller
 * reports the event without table data). Loop thread only.
 */
#ifndef YAMORI_AGENT_PROCTAB_H
#define YAMORI_AGENT_PROCTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROCTAB_ENTITY_LEN 32
#define PROCTAB_ARGS_MAX 1024

typedef struct proc_entry {
  struct proc_entry *next; /* hash chain */
  int pid;
  int ppid;
  uint64_t start_ticks;
  uint32_t uid;
  char entity_id[PROCTAB_ENTITY_LEN + 1];
  char parent_entity_id[PROCTAB_ENTITY_LEN + 1]; /* "" when unknown */
  uint32_t gen; /* resync generation that last saw this pid in the OS */
  char *exe;    /* owned, NUL-terminated, NULL when unknown */
  size_t exe_len;
  /* The first PROCTAB_ARGS_MAX bytes of the argument vector (NUL-separated,
   * as the kernel lays it out), for events that name the process after its
   * start (network connections). Owned, NULL when unknown. */
  char *args;
  size_t args_len;
  /* The first program opened for execution by this pid since its last
   * exec event (from the file sensor): the executable of a process that is
   * gone before /proc can be read. Owned, may be NULL. */
  char *exec_open;
  size_t exec_open_len;
  /* A start event of this process waits for its hash: its end is held
   * back until the start is written. */
  bool start_pending;
  /* Ended, kept a few seconds so that file events still queued name it. */
  bool exited;
  bool exit_pending;
  int exit_code;
  int64_t exit_ns;
} proc_entry_t;

typedef struct {
  proc_entry_t **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
  size_t max;
  char boot_id[40];
} proctab_t;

int proctab_init(proctab_t *t, size_t max, const char *boot_id);
void proctab_close(proctab_t *t);

proc_entry_t *proctab_get(proctab_t *t, int pid);
/* Returns the entry for pid, creating it (zeroed but for pid) when missing.
 * NULL when the table is full. */
proc_entry_t *proctab_upsert(proctab_t *t, int pid);
void proctab_remove(proctab_t *t, int pid);

/* Writes the entity id of the process pid started at start_ticks since the
 * boot boot_id (PROCTAB_ENTITY_LEN hex characters and a NUL). Pure: any
 * thread. */
void proctab_entity_id(const char *boot_id, int pid, uint64_t start_ticks,
                       char out[PROCTAB_ENTITY_LEN + 1]);
/* Sets the start time and derives the entity id from boot id, pid and it. */
void proctab_set_start(proctab_t *t, proc_entry_t *e, uint64_t start_ticks);
/* Replaces the entry's executable path (copied). */
int proctab_set_exe(proc_entry_t *e, const char *exe, size_t len);
/* Replaces the entry's arguments with the first PROCTAB_ARGS_MAX bytes of
 * the NUL-separated vector args (copied; cut at an argument boundary when
 * one is inside the limit). */
int proctab_set_args(proc_entry_t *e, const char *args, size_t len);
int proctab_set_exec_open(proc_entry_t *e, const char *path, size_t len);
void proctab_clear_exec_open(proc_entry_t *e);

/* The file-name part of the entry's executable ("" when unknown). */
const char *proctab_name(const proc_entry_t *e);

/* Calls fn for every entry (fn may not change the table). */
void proctab_foreach(proctab_t *t, void (*fn)(proc_entry_t *e, void *data), void *data);

#endif
