#include "scanwalk.h"

#include "yamori/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_IN_FLIGHT 64
#define MAX_DEPTH 64

struct scanwalk {
  scanner_t *sc;
  char **paths;
  size_t npaths;
  scan_prio_t prio;
  scanwalk_result_cb result_cb;
  scanwalk_finished_cb finished_cb;
  void *data;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  size_t in_flight;
  bool walking;
  bool canceled;
  uint64_t files, open_errors;
};

/* Directories never worth walking: kernel views, devices, runtime state. */
static bool skip_dir(const char *path) {
  static const char *const skip[] = {"/proc", "/sys", "/dev", "/run", NULL};
  for (int i = 0; skip[i] != NULL; i++)
    if (strcmp(path, skip[i]) == 0)
      return true;
  return false;
}

static void maybe_finish(scanwalk_t *w) {
  /* Called with the lock held; unlocks. */
  bool done = !w->walking && w->in_flight == 0;
  uint64_t files = w->files, errs = w->open_errors;
  scanwalk_finished_cb cb = w->finished_cb;
  void *data = w->data;
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->lock); /* w may be freed from here on */
  if (done)
    cb(data, files, errs);
}

static void on_result(scan_req_t *r) {
  scanwalk_t *w = r->data;
  r->data = w->data;
  w->result_cb(r, w->data);
  pthread_mutex_lock(&w->lock);
  w->in_flight--;
  maybe_finish(w);
}

static void submit_file(scanwalk_t *w, int fd, const char *path) {
  pthread_mutex_lock(&w->lock);
  while (w->in_flight >= MAX_IN_FLIGHT && !w->canceled)
    pthread_cond_wait(&w->cond, &w->lock);
  bool canceled = w->canceled;
  if (!canceled) {
    w->in_flight++;
    w->files++;
  }
  pthread_mutex_unlock(&w->lock);
  if (canceled) {
    close(fd);
    return;
  }
  scan_req_t *r = scan_req_new(fd, path, w->prio, on_result, w);
  if (r == NULL || scanner_submit(w->sc, r) != 0) {
    if (r != NULL) {
      r->verdict = SCAN_ERROR;
      r->err = YM_EBUSY;
      on_result(r);
    } else {
      close(fd);
      pthread_mutex_lock(&w->lock);
      w->in_flight--;
      w->open_errors++;
      pthread_mutex_unlock(&w->lock);
    }
  }
}

static void count_error(scanwalk_t *w) {
  pthread_mutex_lock(&w->lock);
  w->open_errors++;
  pthread_mutex_unlock(&w->lock);
}

/* Walks the entry name in parent (path is its full path, for reports). */
static void walk(scanwalk_t *w, int parent, const char *name, const char *path, int depth) {
  if (w->canceled)
    return;
  int fd = openat(parent, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno != ELOOP) /* symlinks are skipped, not errors */
      count_error(w);
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    count_error(w);
    return;
  }
  if (S_ISREG(st.st_mode)) {
    submit_file(w, fd, path);
    return;
  }
  if (!S_ISDIR(st.st_mode) || depth >= MAX_DEPTH || skip_dir(path)) {
    close(fd);
    return;
  }
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    count_error(w);
    return;
  }
  struct dirent *de;
  size_t plen = strlen(path);
  while ((de = readdir(d)) != NULL && !w->canceled) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (de->d_type == DT_LNK)
      continue;
    size_t nlen = strlen(de->d_name);
    if (plen + 1 + nlen > 4095)
      continue;
    char child[4097];
    memcpy(child, path, plen);
    size_t off = plen;
    if (plen == 0 || path[plen - 1] != '/')
      child[off++] = '/';
    memcpy(child + off, de->d_name, nlen + 1);
    walk(w, dirfd(d), de->d_name, child, depth + 1);
  }
  closedir(d);
}

static void *walk_main(void *arg) {
  scanwalk_t *w = arg;
  for (size_t i = 0; i < w->npaths; i++)
    walk(w, AT_FDCWD, w->paths[i], w->paths[i], 0);
  pthread_mutex_lock(&w->lock);
  w->walking = false;
  maybe_finish(w);
  return NULL;
}

int scanwalk_start(scanner_t *sc, const char *const *paths, size_t n, scan_prio_t prio,
                   scanwalk_result_cb result_cb, scanwalk_finished_cb finished_cb, void *data,
                   scanwalk_t **out) {
  scanwalk_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return YM_ENOMEM;
  w->paths = calloc(n + 1, sizeof(char *));
  if (w->paths == NULL) {
    free(w);
    return YM_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    w->paths[i] = strdup(paths[i]);
  w->npaths = n;
  w->sc = sc;
  w->prio = prio;
  w->result_cb = result_cb;
  w->finished_cb = finished_cb;
  w->data = data;
  w->walking = true;
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->cond, NULL);
  if (pthread_create(&w->thread, NULL, walk_main, w) != 0) {
    for (size_t i = 0; i < n; i++)
      free(w->paths[i]);
    free(w->paths);
    free(w);
    return YM_ESYS;
  }
  *out = w;
  return 0;
}

void scanwalk_cancel(scanwalk_t *w) {
  pthread_mutex_lock(&w->lock);
  w->canceled = true;
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

void scanwalk_free(scanwalk_t *w) {
  if (w == NULL)
    return;
  pthread_join(w->thread, NULL);
  /* Results still in flight refer to w: wait for them. */
  pthread_mutex_lock(&w->lock);
  while (w->in_flight > 0)
    pthread_cond_wait(&w->cond, &w->lock);
  pthread_mutex_unlock(&w->lock);
  for (size_t i = 0; i < w->npaths; i++)
    free(w->paths[i]);
  free(w->paths);
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->cond);
  free(w);
}
