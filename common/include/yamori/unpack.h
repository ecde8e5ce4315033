/*
 * Safe unpacking of release packages and rules bundles.
 *
 * The format is a gzip-compressed POSIX ustar archive (what
 * `tar --format=ustar -czf` writes), of which only a subset is accepted:
 * regular files and directories. Everything else is refused with a reason
 * (a static string the agent reports to the console):
 *   "absolute_path"      a name starting with '/'
 *   "dotdot_path"        a name with a ".." component
 *   "bad_name"           empty, too long, too deep, or control characters
 *   "link_entry"         symbolic or hard links
 *   "device_entry"       character or block devices, FIFOs
 *   "unsupported_entry"  any other type (pax headers, GNU long names...)
 *   "duplicate_entry"    a name given twice (or a file over a directory)
 *   "too_many_entries"   more entries than the limit
 *   "too_large"          one file or the whole content over its limit
 *   "decompression_bomb" the content grows more than max_ratio times the
 *                        compressed bytes read so far (after the first MiB),
 *                        over the whole stream or within one file
 *   "bad_archive"        not gzip, corrupt, bad header checksum
 *   "truncated_archive"  the archive ends early
 * Files are created with O_EXCL and O_NOFOLLOW below a directory opened by
 * the caller, directories with mkdirat() and reached with O_NOFOLLOW, so
 * nothing can be written outside it. Every file and directory written is
 * fsync'd before success is returned (the caller then renames the whole
 * tree into place and fsyncs the parent). Modes are 0755 (any execute bit in
 * the archive) or 0644; directories 0755; owners are the caller.
 */
#ifndef YAMORI_UNPACK_H
#define YAMORI_UNPACK_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t max_total; /* bytes of all files together */
  uint64_t max_file;  /* bytes of one file */
  uint32_t max_entries;
  uint32_t max_ratio; /* content bytes per compressed byte at most */
} ym_unpack_limits_t;

typedef struct {
  const char *reason; /* NULL on success */
  uint32_t entries;
  uint32_t files;
  uint64_t bytes; /* bytes of file content */
} ym_unpack_result_t;

/* Fills l with the defaults: 256 MiB total and per file, 10,000 entries,
 * ratio 100. */
void ym_unpack_default_limits(ym_unpack_limits_t *l);

/* Unpacks the archive read from in_fd (from its current offset to its end)
 * into the directory dir_fd; dir_fd < 0 checks the archive without writing
 * anything (the console checks imports this way). Returns 0 or a negative
 * code with res->reason set; on error the directory may hold a part of the
 * content, which the caller removes. */
int ym_unpack_fd(int in_fd, int dir_fd, const ym_unpack_limits_t *lim, ym_unpack_result_t *res);

/* The same for an archive in memory. */
int ym_unpack_mem(const void *p, size_t n, int dir_fd, const ym_unpack_limits_t *lim,
                  ym_unpack_result_t *res);

/* Removes dir_fd's entry name and everything below it, following no
 * symlink (a tree left by a failed unpack). Returns 0 (also when name does
 * not exist) or a negative code. */
int ym_unpack_remove_tree(int dir_fd, const char *name);

#endif
