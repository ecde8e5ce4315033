/*
 * Quarantine: moving a detected file out of reach, and back.
 *
 * A quarantined file is stored in the quarantine directory as two files
 * named by a random id: <id>.gz, the content compressed in gzip format, and
 * <id>.json, a sidecar describing where the file was and what it was (path,
 * owner, mode, mtime, size, SHA-256, rule). The sidecar is written last and
 * removed last: a sidecar present means its .gz is complete. Both are mode
 * 0600. Files whose names do not have that form (such as the "<id>.gz.tmp"
 * and "<id>.json.tmp" files left by a crash) are ignored by every function.
 *
 * Every action works on the exact inode that was scanned. quarantine_file()
 * is given the descriptor the scanner opened; it copies the content from
 * that descriptor, reaches the directory entry through a walk from "/" that
 * never follows a symbolic link, checks that the entry still names the same
 * inode, and removes it in a way that cannot remove a different file (see
 * quarantine.c). quarantine_restore() writes a new file in the original
 * directory only if that directory is still the one the file was taken from
 * and never replaces an existing entry.
 *
 * The quarantine directory must be a real directory (not a symbolic link),
 * owned by the effective user (root, for the agent) and not writable by group
 * or others; otherwise every function refuses it with YM_EPERM. Only its last
 * component is checked: its parents are the agent's own state directories.
 *
 * The functions are synchronous, do blocking I/O (a quarantine copies up to
 * QUARANTINE_MAX_SIZE bytes and calls fsync()), and are meant to run on a
 * worker thread. They do not log. They are safe to call from several threads
 * at once; two concurrent calls for the same id give one success and one
 * error.
 */
#ifndef YAMORI_AGENT_QUARANTINE_H
#define YAMORI_AGENT_QUARANTINE_H

#include "protect.h"

#include <stddef.h>
#include <stdint.h>

/* Largest file that is quarantined (1 GiB); larger ones give YM_ETOOBIG. */
#define QUARANTINE_MAX_SIZE (1024ull * 1024 * 1024)
/* Largest sidecar that is read back (64 KiB); the caps on the path and rule
 * below keep a written sidecar under half of it. */
#define QUARANTINE_SIDECAR_MAX (64 * 1024)
/* Longest rule name recorded, in bytes; longer ones give YM_ETOOBIG. */
#define QUARANTINE_RULE_MAX 1024
/* Most entries quarantine_list() returns. */
#define QUARANTINE_LIST_MAX 10000
/* Length of an id: 32 lower-case hex characters (128 random bits). */
#define QUARANTINE_ID_LEN 32

/* What is known about one quarantined file; it is also the content of the
 * sidecar. The strings are owned by the entry and released by
 * quarantine_entry_free(). */
typedef struct {
  char id[QUARANTINE_ID_LEN + 1]; /* 32 lower-case hex chars, random */
  char *original_path;            /* owned; bytes, may be non-UTF-8 */
  uint64_t dev, ino;              /* of the quarantined file */
  uint64_t dir_dev, dir_ino;      /* of its directory at quarantine time */
  uint32_t uid, gid, mode;        /* st_mode incl. type bits */
  int64_t mtime_ns, size;
  char sha256[65];        /* lower-case hex of the content */
  char *rule;             /* owned, may be NULL */
  int64_t quarantined_ns; /* wall clock */
} quarantine_entry_t;

/* Frees the strings e owns and sets them to NULL; e itself is not freed (it
 * is usually caller storage or an element of a list). Does nothing for NULL
 * and is safe on an entry that was zeroed or already freed. */
void quarantine_entry_free(quarantine_entry_t *e);

/* Quarantines the regular file open as fd, which the caller opened with
 * O_RDONLY|O_NOFOLLOW at path. In order:
 *   1. checks fd: a regular file of at most QUARANTINE_MAX_SIZE bytes with
 *      a single link;
 *   2. opens the parent directory of path by a walk from "/" that follows
 *      no symbolic link, and checks that its entry for the last component
 *      is the inode of fd;
 *   3. copies the content read from fd (never through path) compressed into
 *      qdir, computing its SHA-256 on the way, then writes the sidecar; both
 *      are fsync'd and renamed into place;
 *   4. removes the directory entry, only if it is still the inode of fd.
 * qdir is created (mode 0700) when it does not exist. rule may be NULL. fd
 * stays the caller's and its offset is not moved.
 *
 * Returns 0 and fills *out (owned by the caller: quarantine_entry_free())
 * when the file was copied and its entry removed. On error *out is zeroed,
 * the original directory is unchanged and no quarantine file is left:
 *   YM_EINVAL   fd is not a regular file; path is not absolute, has an empty
 *               last component or a "." or ".." component; the file is in
 *               qdir itself;
 *   YM_ETOOBIG  the file is larger than QUARANTINE_MAX_SIZE, path is longer
 *               than PATH_MAX or rule longer than QUARANTINE_RULE_MAX;
 *   YM_EBUSY    the file has more than one hard link: removing one name
 *               would leave the content reachable through another, so the
 *               file would not really be quarantined;
 *   YM_ESTALE   path no longer leads to the inode of fd (a component is
 *               missing or is a symbolic link, or the entry was replaced,
 *               also while it was being removed), or the file was modified
 *               while it was being copied;
 *   YM_EPERM    qdir is not acceptable (see above) or access was denied;
 *   other codes for system errors (YM_EIO; a full disk gives YM_ESYS).
 */
int quarantine_file(const char *qdir, int fd, const char *path, const char *rule,
                    quarantine_entry_t *out);

/* quarantine_file() that also refuses, with YM_EPERM, a file recorded in
 * prot or one whose directory (the one reached by the walk of step 2), or
 * a directory above it, is recorded in prot (protect.h); an error of that
 * walk up is returned too. Nothing is changed then. */
int quarantine_file_protected(const char *qdir, int fd, const char *path, const char *rule,
                              const protect_t *prot, quarantine_entry_t *out);

/* Puts the quarantined file id back at its original path with its content,
 * owner, group, permission bits and mtime, then removes it from qdir. The
 * original directory is opened by the same walk as for quarantine_file() and
 * must still be the directory the file was taken from (same device and
 * inode). The content is decompressed into a temporary file in that
 * directory, checked against the recorded size and SHA-256, and renamed to
 * the original name only if that name is free.
 *
 * When out is not NULL it receives the entry on success (owned by the
 * caller); on error it is zeroed. Returns 0 or:
 *   YM_EINVAL   id is not 32 lower-case hex characters;
 *   YM_ENOENT   there is no such entry;
 *   YM_ECORRUPT the sidecar or the compressed copy is damaged (nothing is
 *               left in the original directory, the entry is kept);
 *   YM_ESTALE   the original directory is gone or was replaced;
 *   YM_EEXIST   something exists at the original name (left untouched);
 *   other codes for I/O errors. On error the entry stays in qdir.
 */
int quarantine_restore(const char *qdir, const char *id, quarantine_entry_t *out);

/* quarantine_restore() that refuses with YM_EPERM (the entry stays) when
 * the original directory, or one above it, is recorded in prot. */
int quarantine_restore_protected(const char *qdir, const char *id, const protect_t *prot,
                                 quarantine_entry_t *out);

/* Reads every sidecar in qdir into a new array sorted by quarantine time
 * (oldest first, ties by id). Sidecars that cannot be read or are not valid
 * are skipped; their number is stored in *ncorrupt when it is not NULL.
 * On success *entries (NULL when *n is 0) is owned by the caller, who frees
 * it with quarantine_list_free(). A qdir that does not exist is empty.
 * Returns 0, YM_ETOOBIG when qdir holds more than QUARANTINE_LIST_MAX
 * sidecars (nothing is returned: the caller should delete entries), YM_EPERM
 * for an unacceptable qdir, or YM_ENOMEM. */
int quarantine_list(const char *qdir, quarantine_entry_t **entries, size_t *n, size_t *ncorrupt);

/* Frees the n entries of a list and the array itself. */
void quarantine_list_free(quarantine_entry_t *entries, size_t n);

/* Deletes the quarantined file id (its .gz, then its sidecar) for good.
 * Returns 0, YM_EINVAL for a malformed id, YM_ENOENT when neither file
 * exists, or an I/O error code. */
int quarantine_delete(const char *qdir, const char *id);

#endif
