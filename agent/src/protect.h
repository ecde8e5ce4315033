/*
 * The agent's own directories, files and processes, known by identity.
 *
 * A console command may quarantine or restore a file, or kill a process.
 * It must never reach the agent itself: its state (identity, spool,
 * recorded commands), update state and versions, release keys,
 * configuration and quarantine, the agent process, its launcher and PID 1.
 * A path cannot tell whether it leads there: one directory has many names
 * (repeated slashes, symbolic links above it, bind mounts). So the agent
 * records each such directory by (device, inode) when it starts and when
 * its configuration is reloaded, and refuses a target whose directory, or
 * any directory above it up to "/", is one of them. Files and processes
 * are recorded the same way: a file by (device, inode), a process by pid
 * and start time (a pid alone may be reused).
 *
 * A protect_t is plain caller-owned data: filled on the loop thread, then
 * copied into the work that uses it, so a reload never changes a set that
 * is being read. The functions do blocking system calls; they do not log.
 */
#ifndef YAMORI_AGENT_PROTECT_H
#define YAMORI_AGENT_PROTECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTECT_MAX 32
#define PROTECT_MAX_PROCS 8

typedef struct {
  uint64_t dev, ino;
} protect_id_t;

typedef struct {
  size_t ndirs;
  protect_id_t dirs[PROTECT_MAX];
  size_t nfiles;
  protect_id_t files[PROTECT_MAX];
  size_t nprocs;
  struct {
    int pid;
    uint64_t start_ticks;
  } procs[PROTECT_MAX_PROCS];
} protect_t;

/* Empties the set. */
void protect_init(protect_t *p);

/* Records the directory path names (symbolic links followed: what is
 * recorded is the directory itself) and so everything below it. Returns 0
 * (also when it was recorded already), YM_ENOENT when there is nothing
 * there (nothing is recorded), YM_EINVAL for something that is not a
 * directory or for the root (it would cover everything), YM_ETOOBIG when
 * the set is full, or another error. */
int protect_add_dir(protect_t *p, const char *path);

/* Records the file path names (symbolic links followed). Same returns;
 * YM_EINVAL for a directory. */
int protect_add_file(protect_t *p, const char *path);

/* Records the process pid as it is now (its start time). Returns 0,
 * YM_ENOENT when there is no such process, YM_ETOOBIG when full. */
int protect_add_proc(protect_t *p, int pid);

/* Is the directory open as dirfd (any descriptor of a directory, O_PATH
 * is enough), or one of the directories above it, recorded? The walk goes
 * up through ".." to the root. Returns 0 when none is, YM_EPERM when one
 * is, or an error when the walk could not be done (then the target must be
 * refused too). */
int protect_check_dir(const protect_t *p, int dirfd);

/* Is the file (device, inode) recorded? */
bool protect_has_file(const protect_t *p, uint64_t dev, uint64_t ino);

/* Is the process with this pid and start time recorded? */
bool protect_has_proc(const protect_t *p, int pid, uint64_t start_ticks);

#endif
