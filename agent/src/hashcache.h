/*
 * SHA-256 of files, computed off the loop thread and cached by file
 * version.
 *
 * The key is (device, inode, size, mtime, ctime): a file that is changed in
 * place gets a new mtime/ctime and so a new entry. The cache is a fixed
 * array of slots (direct-mapped; a collision replaces the older entry), so
 * its memory is bounded. Hashing runs on libuv's thread pool; concurrent
 * requests for the same key share one job.
 */
#ifndef YAMORI_AGENT_HASHCACHE_H
#define YAMORI_AGENT_HASHCACHE_H

#include "yamori/sha256.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <uv.h>

typedef void (*hashcache_cb)(int err, const char *hex, void *data);

typedef struct {
  dev_t dev;
  ino_t ino;
  off_t size;
  int64_t mtime_ns;
  int64_t ctime_ns;
} hashcache_key_t;

struct hashcache_slot;
struct hashcache_job;

typedef struct {
  uv_loop_t *loop;
  struct hashcache_slot *slots;
  size_t nslots;
  uint64_t max_bytes;
  struct hashcache_job *jobs; /* in flight */
  uint64_t hits, misses, failures;
} hashcache_t;

int hashcache_init(hashcache_t *h, uv_loop_t *loop, size_t nslots, uint64_t max_bytes);
/* Frees the cache. Jobs still in flight finish and call their callbacks
 * with YM_ECANCELED; the loop must run until they have. */
void hashcache_close(hashcache_t *h);

/* Looks up the file open as fd, described by st (from fstat of that fd).
 * On a hit copies the hex digest to hex and returns 1: the fd stays the
 * caller's and cb is not called. On a miss takes ownership of fd (closed
 * when done), queues the hashing and returns 0: cb runs once, on the loop
 * thread, with 0 and the digest or an error (YM_ETOOBIG past max_bytes).
 * A negative return is an error: fd stays the caller's, cb is not called. */
int hashcache_get(hashcache_t *h, int fd, const struct stat *st, char hex[YM_SHA256_HEX_LEN + 1],
                  hashcache_cb cb, void *data);

#endif
