#include "hashcache.h"

#include "yamori/err.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct hashcache_slot {
  bool used;
  hashcache_key_t key;
  char hex[YM_SHA256_HEX_LEN + 1];
} slot_t;

typedef struct waiter {
  struct waiter *next;
  hashcache_cb cb;
  void *data;
} waiter_t;

typedef struct hashcache_job {
  uv_work_t req;
  struct hashcache_job *next;
  hashcache_t *cache; /* NULL once the cache is closed */
  hashcache_key_t key;
  int fd;
  uint64_t max_bytes;
  int err;
  char hex[YM_SHA256_HEX_LEN + 1];
  waiter_t *waiters;
} job_t;

static hashcache_key_t key_of(const struct stat *st) {
  hashcache_key_t k;
  memset(&k, 0, sizeof(k));
  k.dev = st->st_dev;
  k.ino = st->st_ino;
  k.size = st->st_size;
  k.mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  k.ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
  return k;
}

static bool key_eq(const hashcache_key_t *a, const hashcache_key_t *b) {
  return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns &&
         a->ctime_ns == b->ctime_ns;
}

static size_t slot_of(const hashcache_t *h, const hashcache_key_t *k) {
  uint64_t x =
      (uint64_t)k->ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)k->dev ^ (uint64_t)k->mtime_ns * 31u;
  return (size_t)(x % h->nslots);
}

int hashcache_init(hashcache_t *h, uv_loop_t *loop, size_t nslots, uint64_t max_bytes) {
  memset(h, 0, sizeof(*h));
  h->loop = loop;
  h->nslots = nslots ? nslots : 1;
  h->max_bytes = max_bytes;
  h->slots = calloc(h->nslots, sizeof(*h->slots));
  return h->slots ? 0 : YM_ENOMEM;
}

void hashcache_close(hashcache_t *h) {
  for (job_t *j = h->jobs; j != NULL; j = j->next)
    j->cache = NULL;
  h->jobs = NULL;
  free(h->slots);
  h->slots = NULL;
}

static void work(uv_work_t *req) {
  job_t *j = req->data;
  uint8_t d[YM_SHA256_LEN];
  j->err = ym_sha256_fd(j->fd, j->max_bytes, d, NULL);
  if (j->err == 0)
    ym_hex(d, sizeof(d), j->hex);
  close(j->fd);
}

static void after_work(uv_work_t *req, int status) {
  job_t *j = req->data;
  hashcache_t *h = j->cache;
  if (status == UV_ECANCELED) {
    close(j->fd);
    j->err = YM_ECANCELED;
  }
  if (h != NULL) {
    for (job_t **pp = &h->jobs; *pp != NULL; pp = &(*pp)->next) {
      if (*pp == j) {
        *pp = j->next;
        break;
      }
    }
    if (j->err == 0) {
      slot_t *s = &h->slots[slot_of(h, &j->key)];
      s->used = true;
      s->key = j->key;
      memcpy(s->hex, j->hex, sizeof(s->hex));
    } else {
      h->failures++;
    }
  } else if (j->err == 0) {
    j->err = YM_ECANCELED;
  }
  waiter_t *w = j->waiters;
  while (w != NULL) {
    waiter_t *next = w->next;
    w->cb(j->err, j->err == 0 ? j->hex : NULL, w->data);
    free(w);
    w = next;
  }
  free(j);
}

int hashcache_get(hashcache_t *h, int fd, const struct stat *st, char hex[YM_SHA256_HEX_LEN + 1],
                  hashcache_cb cb, void *data) {
  hashcache_key_t k = key_of(st);
  slot_t *s = &h->slots[slot_of(h, &k)];
  if (s->used && key_eq(&s->key, &k)) {
    memcpy(hex, s->hex, sizeof(s->hex));
    h->hits++;
    return 1;
  }
  waiter_t *w = malloc(sizeof(*w));
  if (w == NULL)
    return YM_ENOMEM;
  w->cb = cb;
  w->data = data;
  for (job_t *j = h->jobs; j != NULL; j = j->next) {
    if (key_eq(&j->key, &k)) {
      /* Join the job already hashing this version; our fd is not needed. */
      waiter_t **tail = &j->waiters;
      while (*tail != NULL)
        tail = &(*tail)->next;
      w->next = NULL;
      *tail = w; /* first come, first called */
      close(fd);
      h->hits++;
      return 0;
    }
  }
  if (st->st_size < 0 || (h->max_bytes != 0 && (uint64_t)st->st_size > h->max_bytes)) {
    free(w);
    return YM_ETOOBIG;
  }
  job_t *j = calloc(1, sizeof(*j));
  if (j == NULL) {
    free(w);
    return YM_ENOMEM;
  }
  w->next = NULL;
  j->waiters = w;
  j->cache = h;
  j->key = k;
  j->fd = fd;
  j->max_bytes = h->max_bytes;
  j->req.data = j;
  int rc = uv_queue_work(h->loop, &j->req, work, after_work);
  if (rc != 0) {
    free(w);
    free(j);
    return YM_ESYS;
  }
  j->next = h->jobs;
  h->jobs = j;
  h->misses++;
  return 0;
}
