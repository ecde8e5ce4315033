#include "guard.h"

#include "os.h"

#include "yamori/err.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct pending {
  struct pending *next, *prev;
  guard_t *g;
  int fd; /* the kernel's fd for the request (answer key) */
  int pid;
  int64_t start_ns, deadline_ns;
  bool answered;
  bool scan_done;
} pending_t;

struct guard {
  scanner_t *sc;
  guard_opts_t opts;
  int self_pid;
  guard_report_cb cb;
  void *data;
  os_execperm_t *perm;
  int wake_fd;
  pthread_t thread;
  bool thread_started;
  pthread_mutex_t lock;
  pending_t head; /* circular list of requests waiting or scanning */
  size_t npending;
  bool stopping;
  guard_stats_t stats;
};

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void guard_report_free(guard_report_t *r) {
  if (r == NULL)
    return;
  scan_req_free(r->scan);
  free(r);
}

static void report(guard_t *g, guard_outcome_t o, int pid, int64_t waited, scan_req_t *scan) {
  guard_report_t *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    scan_req_free(scan);
    return;
  }
  r->outcome = o;
  r->pid = pid;
  r->waited_ns = waited;
  r->scan = scan;
  g->cb(r, g->data);
}

/* Answers and closes a request fd; never fails the caller. */
static void answer(guard_t *g, int fd, bool allow) {
  os_execperm_answer(g->perm, fd, allow);
  close(fd);
}

static void unlink_pending(guard_t *g, pending_t *p) {
  p->prev->next = p->next;
  p->next->prev = p->prev;
  g->npending--;
}

/* Scanner thread: the verdict for a waiting request. */
static void on_scanned(scan_req_t *r) {
  pending_t *p = r->data;
  guard_t *g = p->g;
  bool malicious = r->verdict == SCAN_MALICIOUS;
  pthread_mutex_lock(&g->lock);
  bool late = p->answered;
  int64_t waited = mono_ns() - p->start_ns;
  guard_policy_t policy = g->opts.policy;
  if (!late) {
    p->answered = true;
    answer(g, p->fd, !(malicious && policy == GUARD_BLOCK));
    if (malicious && policy == GUARD_BLOCK)
      g->stats.denied++;
    if (r->verdict == SCAN_ERROR)
      g->stats.errors++;
  }
  unlink_pending(g, p);
  pthread_mutex_unlock(&g->lock);
  int pid = p->pid;
  free(p);
  if (malicious)
    report(g,
           late ? GUARD_LATE_VERDICT
                : (policy == GUARD_BLOCK ? GUARD_DENIED : GUARD_ALLOWED_DETECT),
           pid, waited, r);
  else if (!late && r->verdict == SCAN_ERROR)
    report(g, GUARD_ALLOWED_ERROR, pid, waited, r);
  else
    scan_req_free(r);
}

static void handle_request(guard_t *g, os_execreq_t *q) {
  int64_t now = mono_ns();
  pthread_mutex_lock(&g->lock);
  g->stats.requests++;
  guard_policy_t policy = g->opts.policy;
  pthread_mutex_unlock(&g->lock);
  if (q->pid == g->self_pid || policy == GUARD_OFF) {
    answer(g, q->fd, true);
    return;
  }
  scan_req_t *r = scan_req_new(-1, NULL, SCAN_PRIO_EXEC, on_scanned, NULL);
  if (r == NULL) {
    answer(g, q->fd, true);
    return;
  }
  struct stat st;
  if (fstat(q->fd, &st) == 0 && scanner_cached(g->sc, &st, r)) {
    bool malicious = r->verdict == SCAN_MALICIOUS;
    answer(g, q->fd, !(malicious && policy == GUARD_BLOCK));
    pthread_mutex_lock(&g->lock);
    g->stats.cached++;
    if (malicious && policy == GUARD_BLOCK)
      g->stats.denied++;
    pthread_mutex_unlock(&g->lock);
    if (malicious) {
      char link[64], path[4097];
      snprintf(link, sizeof(link), "/proc/self/fd/%d", q->fd);
      ssize_t n = readlink(link, path, sizeof(path) - 1);
      if (n > 0) {
        path[n] = '\0';
        r->path = strdup(path);
      }
      report(g, policy == GUARD_BLOCK ? GUARD_DENIED : GUARD_ALLOWED_DETECT, q->pid,
             mono_ns() - now, r);
    } else {
      scan_req_free(r);
    }
    return;
  }

  pthread_mutex_lock(&g->lock);
  bool overload = g->npending >= (size_t)g->opts.max_pending;
  if (overload)
    g->stats.overloads++;
  pthread_mutex_unlock(&g->lock);
  int dupfd = overload ? -1 : fcntl(q->fd, F_DUPFD_CLOEXEC, 0);
  pending_t *p = dupfd >= 0 ? calloc(1, sizeof(*p)) : NULL;
  if (p == NULL) {
    if (dupfd >= 0)
      close(dupfd);
    answer(g, q->fd, true);
    report(g, overload ? GUARD_ALLOWED_OVERLOAD : GUARD_ALLOWED_ERROR, q->pid, mono_ns() - now, r);
    return;
  }
  char link[64], path[4097];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", q->fd);
  ssize_t n = readlink(link, path, sizeof(path) - 1);
  if (n > 0) {
    path[n] = '\0';
    r->path = strdup(path);
  }
  r->fd = dupfd;
  r->data = p;
  p->g = g;
  p->fd = q->fd;
  p->pid = q->pid;
  p->start_ns = now;
  p->deadline_ns = now + g->opts.deadline_ms * 1000000;
  pthread_mutex_lock(&g->lock);
  p->next = &g->head;
  p->prev = g->head.prev;
  g->head.prev->next = p;
  g->head.prev = p;
  g->npending++;
  g->stats.scanned++;
  pthread_mutex_unlock(&g->lock);
  if (scanner_submit(g->sc, r) != 0) {
    /* Cannot scan: allow now; the request leaves the list here. */
    pthread_mutex_lock(&g->lock);
    p->answered = true;
    answer(g, p->fd, true);
    unlink_pending(g, p);
    g->stats.errors++;
    pthread_mutex_unlock(&g->lock);
    free(p);
    report(g, GUARD_ALLOWED_ERROR, q->pid, mono_ns() - now, r);
  }
}

/* Answers every waiting request whose deadline has passed; returns the
 * time until the next deadline in ms (-1: none). */
static int expire(guard_t *g) {
  int64_t now = mono_ns();
  int64_t next = -1;
  struct {
    int pid;
    int64_t waited;
  } late[64];
  size_t nlate = 0;
  pthread_mutex_lock(&g->lock);
  for (pending_t *p = g->head.next; p != &g->head; p = p->next) {
    if (p->answered)
      continue;
    if (p->deadline_ns <= now) {
      p->answered = true;
      answer(g, p->fd, true);
      g->stats.timeouts++;
      if (nlate < 64) {
        late[nlate].pid = p->pid;
        late[nlate].waited = now - p->start_ns;
        nlate++;
      }
    } else if (next < 0 || p->deadline_ns < next) {
      next = p->deadline_ns;
    }
  }
  pthread_mutex_unlock(&g->lock);
  for (size_t i = 0; i < nlate; i++)
    report(g, GUARD_ALLOWED_TIMEOUT, late[i].pid, late[i].waited, NULL);
  if (next < 0)
    return -1;
  int64_t ms = (next - now + 999999) / 1000000;
  return ms > 1000 ? 1000 : (int)ms;
}

static void *guard_main(void *arg) {
  guard_t *g = arg;
  for (;;) {
    int timeout = expire(g);
    struct pollfd fds[3] = {{os_execperm_fd(g->perm), POLLIN, 0},
                            {os_execperm_mounts_fd(g->perm), POLLPRI, 0},
                            {g->wake_fd, POLLIN, 0}};
    int n = poll(fds, 3, timeout);
    if (n < 0 && errno != EINTR)
      break;
    if (fds[2].revents & POLLIN) {
      uint64_t v;
      if (read(g->wake_fd, &v, sizeof(v)) < 0) {
        /* nothing: the eventfd is only a wake-up */
      }
    }
    pthread_mutex_lock(&g->lock);
    bool stop = g->stopping;
    pthread_mutex_unlock(&g->lock);
    if (stop)
      break;
    if (fds[1].revents & (POLLPRI | POLLERR))
      os_execperm_remark(g->perm);
    if (fds[0].revents & POLLIN) {
      os_execreq_t reqs[32];
      size_t nreq = 0;
      do {
        if (os_execperm_read(g->perm, reqs, 32, &nreq) != 0)
          break;
        for (size_t i = 0; i < nreq; i++)
          handle_request(g, &reqs[i]);
      } while (nreq == 32);
    }
  }
  return NULL;
}

int guard_new(scanner_t *sc, const guard_opts_t *opts, int self_pid, guard_report_cb cb, void *data,
              guard_t **out) {
  guard_t *g = calloc(1, sizeof(*g));
  if (g == NULL)
    return YM_ENOMEM;
  g->sc = sc;
  g->opts = *opts;
  g->self_pid = self_pid;
  g->cb = cb;
  g->data = data;
  g->head.next = g->head.prev = &g->head;
  pthread_mutex_init(&g->lock, NULL);
  g->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int rc = g->wake_fd < 0 ? ym_err_from_errno(errno) : os_execperm_open(&g->perm);
  if (rc == 0 && pthread_create(&g->thread, NULL, guard_main, g) != 0)
    rc = YM_ESYS;
  if (rc != 0) {
    os_execperm_close(g->perm);
    if (g->wake_fd >= 0)
      close(g->wake_fd);
    pthread_mutex_destroy(&g->lock);
    free(g);
    return rc;
  }
  g->thread_started = true;
  *out = g;
  return 0;
}

void guard_set_policy(guard_t *g, guard_policy_t policy) {
  pthread_mutex_lock(&g->lock);
  g->opts.policy = policy;
  pthread_mutex_unlock(&g->lock);
}

void guard_stats(guard_t *g, guard_stats_t *out) {
  pthread_mutex_lock(&g->lock);
  *out = g->stats;
  pthread_mutex_unlock(&g->lock);
}

/* Stopping: the thread ends, every waiting request is answered allow,
 * and the group is closed (the kernel allows anything still queued).
 * Scans still running finish later and find their request answered; they
 * are detached here and free themselves. */
void guard_stop(guard_t *g) {
  if (g == NULL || g->perm == NULL)
    return;
  pthread_mutex_lock(&g->lock);
  g->stopping = true;
  pthread_mutex_unlock(&g->lock);
  uint64_t one = 1;
  if (write(g->wake_fd, &one, sizeof(one)) < 0) {
    /* the thread also wakes within a second on its own */
  }
  pthread_join(g->thread, NULL);
  pthread_mutex_lock(&g->lock);
  for (pending_t *p = g->head.next; p != &g->head; p = p->next) {
    if (!p->answered) {
      p->answered = true;
      answer(g, p->fd, true);
    }
  }
  pthread_mutex_unlock(&g->lock);
  os_execperm_close(g->perm);
  g->perm = NULL;
}

void guard_free(guard_t *g) {
  if (g == NULL)
    return;
  guard_stop(g);
  close(g->wake_fd);
  pthread_mutex_destroy(&g->lock);
  free(g);
}
