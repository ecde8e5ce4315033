/*
 * Process events from eBPF programs (bpf/procev.bpf.c).
 *
 * The programs are compiled at build time and embedded as a libbpf
 * skeleton, so nothing but the kernel is needed at run time. new() opens,
 * loads and attaches them to the scheduler's BTF-typed tracepoints
 * (sched_process_fork, sched_process_exec, sched_process_exit); start()
 * polls the ring buffer's epoll descriptor from a uv_poll_t on the caller's
 * loop. Each record is checked against its stated sizes and decoded into an
 * os_procev_t; an exec record becomes an os_proc_info_t with the argument
 * vector, program and working directory the kernel had at the exec (the
 * two paths from /proc when the kernel's walk was incomplete).
 *
 * The programs wake the reader only when YM_BPF_WAKE_BYTES are waiting
 * (waking costs more than recording), so a timer also drains the ring every
 * YM_BPF_DRAIN_MS: events arrive at most that late, and
 * os_bpfwatch_drain() takes what is queued at once.
 *
 * TCP connection records (YM_BPF_NET, from the sock:inet_sock_set_state
 * program, attached when the caller gives opts.net_cb) share the ring
 * buffer; the reader tells them apart by their first field and hands them
 * to net_cb as os_netev_t.
 *
 * Loss: a record that finds the ring buffer full is counted by the program
 * in a per-CPU array. After every read the counters are summed; growth is
 * delivered as OS_PROCEV_LOST with the exact count.
 */
#include "os.h"

#include "yamori/err.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/types.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bpf/procev.h"
#include "procev.skel.h"

/* Records handled per poll callback, so that an exec storm does not starve
 * the rest of the loop; the poll fires again while records are queued. */
#define READ_BATCH 256
/* Returned by the record callback to stop a batch (libbpf then keeps the
 * position after the record just handled). */
#define STOP_BATCH (-1000)
#define MAX_CPUS 4096

struct os_bpfwatch {
  uv_poll_t poll;
  uv_timer_t timer; /* drains the ring when no wakeup came (see procev.bpf.c) */
  int open_handles; /* freed when both handles are closed */
  struct procev_bpf *skel;
  struct ring_buffer *rb;
  os_procev_cb cb;
  void *data;
  os_bpfwatch_opts_t opts;
  long ns_per_tick;
  int ncpu;
  __u64 *percpu; /* ncpu slots for reading the drop counters */
  uint64_t drops_seen;
  int batch_left;
  bool polling;
  bool closing;
  bool in_read;
  os_bpfwatch_stats_t stats;
  os_proc_info_t info; /* the exec being delivered */
};

__attribute__((format(printf, 3, 4))) static void say(char *why, size_t whylen, const char *fmt,
                                                      ...) {
  if (why == NULL || whylen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, whylen, fmt, ap);
  va_end(ap);
}

/* libbpf prints its diagnostics to stderr by default; the agent reports
 * the failure itself, once, through its own log. */
static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap) {
  (void)level;
  (void)fmt;
  (void)ap;
  return 0;
}

static void deliver(os_bpfwatch_t *w, const os_procev_t *ev) {
  if (!w->closing)
    w->cb(ev, w->data);
}

static void check_drops(os_bpfwatch_t *w) {
  __u32 key = YM_BPF_DROPS_SLOT;
  if (bpf_map__lookup_elem(w->skel->maps.drops, &key, sizeof(key), w->percpu,
                           sizeof(__u64) * (size_t)w->ncpu, 0) != 0)
    return;
  uint64_t sum = 0;
  for (int i = 0; i < w->ncpu; i++)
    sum += w->percpu[i];
  if (sum <= w->drops_seen)
    return;
  os_procev_t l = {.kind = OS_PROCEV_LOST, .lost = sum - w->drops_seen, .lost_known = true};
  w->stats.lost += sum - w->drops_seen;
  w->drops_seen = sum;
  deliver(w, &l);
}

/* Reads a /proc/PID link into out (OS_PATH_MAX + 1 bytes); -1 when gone. */
static ssize_t read_proc_link(int pid, const char *name, char *out) {
  char path[48];
  snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
  ssize_t n = readlink(path, out, OS_PATH_MAX + 1);
  if (n < 0 || n > OS_PATH_MAX) {
    out[0] = '\0';
    return -1;
  }
  out[n] = '\0';
  return n;
}

#define DELETED_SUFFIX " (deleted)"

/* Turns a path recorded as its components from the last to the first
 * (each followed by a NUL) into out (OS_PATH_MAX + 1 bytes). Returns the
 * length, or -1 when the record is malformed or the path too long. */
static ssize_t unreverse_path(const char *rev, size_t len, char *out) {
  if (len == 0) {
    out[0] = '/';
    out[1] = '\0';
    return 1;
  }
  if (rev[len - 1] != '\0' || len > OS_PATH_MAX)
    return -1;
  /* Each component "name\0" becomes "/name": the same length. */
  size_t end = len;
  size_t pos = 0;
  while (end > 0) {
    size_t start = end - 1; /* the component's NUL */
    while (start > 0 && rev[start - 1] != '\0')
      start--;
    size_t clen = end - 1 - start;
    if (clen == 0)
      return -1;
    out[pos++] = '/';
    memcpy(out + pos, rev + start, clen);
    pos += clen;
    end = start;
  }
  out[pos] = '\0';
  return (ssize_t)pos;
}

/* The executable: the file the kernel opened for the exec, as its dentries
 * name it; else, when that walk was incomplete, /proc while the process
 * lives; else the name given to execve when it is absolute (not resolved
 * through symbolic links); else unknown. */
static void fill_exe(os_proc_info_t *info, const ym_bpf_procev_t *h, const char *exe_rev,
                     const char *fname) {
  ssize_t n = -1;
  /* An empty walk is no path: a program is never "/". The walk stops at
   * once for a file outside every mounted tree (a memfd run by fexecve,
   * fileless malware's favourite); /proc names it ("/memfd:x"). */
  if (!(h->flags & YM_BPF_EXE_PARTIAL) && h->exe_len > 0)
    n = unreverse_path(exe_rev, h->exe_len, info->exe);
  if (n >= 0) {
    info->exe_len = (size_t)n;
    info->exe_ok = true;
    return;
  }
  n = read_proc_link(info->pid, "exe", info->exe);
  if (n >= 0) {
    size_t len = (size_t)n;
    size_t sl = sizeof(DELETED_SUFFIX) - 1;
    if (len > sl && memcmp(info->exe + len - sl, DELETED_SUFFIX, sl) == 0) {
      len -= sl;
      info->exe[len] = '\0';
      info->exe_deleted = true;
    }
    info->exe_len = len;
    info->exe_ok = true;
    return;
  }
  size_t flen = h->fname_len;
  if (flen > 0 && flen <= OS_PATH_MAX && fname[0] == '/' && memchr(fname, '\0', flen) == NULL) {
    memcpy(info->exe, fname, flen);
    info->exe[flen] = '\0';
    info->exe_len = flen;
    info->exe_ok = true;
  }
}

/* The working directory at the exec, from the kernel; else from /proc
 * while the process lives. */
static void fill_cwd(os_proc_info_t *info, const ym_bpf_procev_t *h, const char *cwd_rev) {
  ssize_t n = -1;
  if (!(h->flags & YM_BPF_CWD_PARTIAL))
    n = unreverse_path(cwd_rev, h->cwd_len, info->cwd);
  if (n < 0)
    n = read_proc_link(info->pid, "cwd", info->cwd);
  if (n >= 0) {
    info->cwd_len = (size_t)n;
    info->cwd_ok = true;
  }
}

static void on_exec_record(os_bpfwatch_t *w, const ym_bpf_procev_t *h, const char *payload,
                           os_procev_t *ev) {
  os_proc_info_t *info = &w->info;
  memset(info, 0, sizeof(*info));
  info->pid = (int)h->pid;
  info->ppid = (int)h->ppid;
  info->start_ticks = ev->start_ticks;
  info->uid = h->uid;
  info->euid = h->euid;
  info->ids_ok = true;
  info->gid = h->gid;
  info->loginuid = h->loginuid;
  info->sessionid = h->sessionid;
  /* (uid_t)-1: never logged in (a daemon), or no audit support. */
  info->loginuid_ok = !(h->flags & YM_BPF_NO_LOGINUID) && h->loginuid != UINT32_MAX;
  const char *exe_rev = payload + h->args_len;
  const char *cwd_rev = exe_rev + h->exe_len;
  fill_exe(info, h, exe_rev, cwd_rev + h->cwd_len + h->env_len);
  fill_cwd(info, h, cwd_rev);
  info->env_partial = (h->flags & YM_BPF_ENV_PARTIAL) != 0;
  const char *env = cwd_rev + h->cwd_len;
  if (h->env_len > 0 && h->env_len <= OS_ENV_MAX && env[h->env_len - 1] == '\0') {
    memcpy(info->env, env, h->env_len);
    info->env_len = h->env_len;
  }
  if (!(h->flags & YM_BPF_ARGS_FAULT)) {
    size_t max_bytes = w->opts.max_args_bytes;
    size_t avail = h->args_len < max_bytes ? h->args_len : max_bytes;
    bool more = h->args_len > max_bytes || (h->flags & YM_BPF_ARGS_TRUNCATED);
    char *buf = malloc(avail + 1);
    if (buf != NULL) {
      memcpy(buf, payload, avail);
      os_proc_args_keep(buf, avail, more, w->opts.max_args, max_bytes, info);
    }
  }
  if (h->flags & YM_BPF_ARGS_TRUNCATED)
    w->stats.truncated++;
  ev->info = info;
  deliver(w, ev);
  os_proc_info_free(info);
}

static void on_net_record(os_bpfwatch_t *w, const ym_bpf_netev_t *n) {
  w->stats.net_events++;
  if (w->opts.net_cb == NULL || w->closing || n->action < YM_BPF_NET_CONNECT ||
      n->action > YM_BPF_NET_CLOSE || (n->family != AF_INET && n->family != AF_INET6))
    return;
  os_netev_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.kind = (os_netev_kind_t)n->action; /* the same numbers */
  ev.pid = (n->flags & YM_BPF_NET_NO_PID) ? 0 : (int)n->pid;
  if (ev.pid == w->opts.self_pid && ev.pid != 0)
    return;
  ev.ingress = (n->flags & YM_BPF_NET_INGRESS) != 0;
  ev.family = n->family;
  memcpy(ev.laddr, n->laddr, sizeof(ev.laddr));
  memcpy(ev.raddr, n->raddr, sizeof(ev.raddr));
  ev.lport = n->lport;
  ev.rport = n->rport;
  ev.bytes_ok = n->action == YM_BPF_NET_CLOSE && !(n->flags & YM_BPF_NET_NO_BYTES);
  ev.bytes_sent = n->bytes_sent;
  ev.bytes_received = n->bytes_received;
  ev.ts_ns = n->ts_ns;
  w->opts.net_cb(&ev, w->data);
}

static int on_record(void *ctx, void *data, size_t len) {
  os_bpfwatch_t *w = ctx;
  if (w->closing)
    return STOP_BATCH;
  __u32 kind;
  if (len < sizeof(kind))
    return 0;
  memcpy(&kind, data, sizeof(kind));
  if (kind == YM_BPF_NET) {
    w->stats.events++;
    if (len >= sizeof(ym_bpf_netev_t)) {
      ym_bpf_netev_t n;
      memcpy(&n, data, sizeof(n));
      on_net_record(w, &n);
    }
    if (--w->batch_left <= 0 || w->closing)
      return STOP_BATCH;
    return 0;
  }
  ym_bpf_procev_t h;
  if (len < sizeof(h))
    return 0;
  memcpy(&h, data, sizeof(h));
  w->stats.events++;
  os_procev_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.pid = (int)h.pid;
  ev.ts_ns = h.ts_ns;
  ev.start_ticks = (uint64_t)h.start_boottime / (uint64_t)w->ns_per_tick;
  if ((int)h.pid != w->opts.self_pid) {
    switch (h.kind) {
    case YM_BPF_FORK:
      ev.kind = OS_PROCEV_FORK;
      ev.ppid = (int)h.ppid;
      deliver(w, &ev);
      break;
    case YM_BPF_EXEC:
      if (h.args_len > YM_BPF_ARGS_MAX || h.exe_len > YM_BPF_PATH_MAX ||
          h.cwd_len > YM_BPF_PATH_MAX || h.env_len > YM_BPF_ENV_MAX ||
          h.fname_len > YM_BPF_FNAME_MAX ||
          len - sizeof(h) < (size_t)h.args_len + h.exe_len + h.cwd_len + h.env_len + h.fname_len)
        break;
      ev.kind = OS_PROCEV_EXEC;
      on_exec_record(w, &h, (const char *)data + sizeof(h), &ev);
      break;
    case YM_BPF_EXIT:
      ev.kind = OS_PROCEV_EXIT;
      ev.exit_code = h.exit_code;
      deliver(w, &ev);
      break;
    case YM_BPF_UID:
      ev.kind = OS_PROCEV_UID;
      ev.uid = h.uid;
      ev.euid = h.euid;
      deliver(w, &ev);
      break;
    default:
      break;
    }
  }
  if (--w->batch_left <= 0 || w->closing)
    return STOP_BATCH;
  return 0;
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)status;
  (void)events;
  os_bpfwatch_t *w = handle->data;
  if (w->in_read || w->closing)
    return;
  w->in_read = true;
  w->batch_left = READ_BATCH;
  (void)ring_buffer__consume(w->rb);
  if (!w->closing)
    check_drops(w);
  w->in_read = false;
}

static void on_timer(uv_timer_t *t) {
  os_bpfwatch_t *w = t->data;
  on_readable(&w->poll, 0, UV_READABLE);
}

void os_bpfwatch_drain(os_bpfwatch_t *w) {
  if (w == NULL || w->closing || w->in_read || !w->polling)
    return;
  /* Everything queued now, in batches. */
  for (int i = 0; i < 1024 && !w->closing; i++) {
    w->in_read = true;
    w->batch_left = READ_BATCH;
    int n = ring_buffer__consume(w->rb);
    w->in_read = false;
    if (n != STOP_BATCH)
      break;
  }
  if (!w->closing)
    check_drops(w);
}

/* Attaches the fork, exec and exit programs (required), the user id
 * programs (optional: they need syscall tracepoints and tracefs) and the
 * TCP connection program (optional, when the caller wants its events). The
 * links are the skeleton's, destroyed with it. */
static int attach(os_bpfwatch_t *w, char *why, size_t whylen) {
  struct procev_bpf *s = w->skel;
  struct {
    struct bpf_program *prog;
    struct bpf_link **link;
    bool required;
  } progs[] = {
      {s->progs.ym_fork, &s->links.ym_fork, true},
      {s->progs.ym_exec, &s->links.ym_exec, true},
      {s->progs.ym_exit, &s->links.ym_exit, true},
      {s->progs.ym_setuid, &s->links.ym_setuid, false},
      {s->progs.ym_setreuid, &s->links.ym_setreuid, false},
      {s->progs.ym_setresuid, &s->links.ym_setresuid, false},
  };
  size_t uid_links = 0;
  for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
    *progs[i].link = bpf_program__attach(progs[i].prog);
    if (*progs[i].link != NULL) {
      uid_links += progs[i].required ? 0 : 1;
      continue;
    }
    int e = errno;
    if (progs[i].required) {
      say(why, whylen, "cannot attach to the scheduler tracepoint of %s: %s",
          bpf_program__name(progs[i].prog), strerror(e));
      return ym_err_from_errno(e);
    }
  }
  w->stats.uid_events = uid_links == 3;
  if (w->opts.net_cb == NULL) {
    snprintf(w->stats.net_why, sizeof(w->stats.net_why), "network.enabled is false");
  } else {
    s->links.ym_sock = bpf_program__attach(s->progs.ym_sock);
    if (s->links.ym_sock != NULL)
      w->stats.net = true;
    else
      snprintf(w->stats.net_why, sizeof(w->stats.net_why),
               "cannot attach to sock:inet_sock_set_state: %s", strerror(errno));
  }
  return 0;
}

int os_bpfwatch_new(uv_loop_t *loop, const os_bpfwatch_opts_t *opts, os_procev_cb cb, void *data,
                    os_bpfwatch_t **out, char *why, size_t whylen) {
  if (loop == NULL || opts == NULL || cb == NULL || out == NULL)
    return YM_EINVAL;
  *out = NULL;
  const char *deny = getenv("YAMORI_TEST_DENY_BPF");
  if (deny != NULL && strcmp(deny, "1") == 0) {
    say(why, whylen, "BPF refused (YAMORI_TEST_DENY_BPF=1)");
    return YM_EPERM;
  }
  os_bpfwatch_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return YM_ENOMEM;
  int rc;
  w->cb = cb;
  w->data = data;
  w->opts = *opts;
  long tck = sysconf(_SC_CLK_TCK);
  w->ns_per_tick = tck > 0 && tck <= 1000000000 ? 1000000000 / tck : 10000000;
  w->ncpu = libbpf_num_possible_cpus();
  if (w->ncpu < 1 || w->ncpu > MAX_CPUS) {
    say(why, whylen, "cannot count the CPUs");
    rc = YM_ESYS;
    goto out_free;
  }
  w->percpu = calloc((size_t)w->ncpu, sizeof(*w->percpu));
  if (w->percpu == NULL) {
    rc = YM_ENOMEM;
    goto out_free;
  }

  libbpf_set_print(quiet_print);
  w->skel = procev_bpf__open();
  if (w->skel == NULL) {
    rc = ym_err_from_errno(errno);
    say(why, whylen, "cannot open the BPF object: %s", strerror(errno));
    goto out_free;
  }
  w->skel->rodata->self_tgid = (__u32)opts->self_pid;
  int err = procev_bpf__load(w->skel);
  if (err != 0) {
    rc = ym_err_from_errno(-err);
    say(why, whylen, "the kernel refused the BPF programs: %s", strerror(-err));
    goto out_destroy;
  }
  rc = attach(w, why, whylen);
  if (rc != 0)
    goto out_destroy;
  w->rb = ring_buffer__new(bpf_map__fd(w->skel->maps.events), on_record, w, NULL);
  if (w->rb == NULL) {
    rc = ym_err_from_errno(errno);
    say(why, whylen, "cannot map the ring buffer: %s", strerror(errno));
    goto out_destroy;
  }
  rc = uv_poll_init(loop, &w->poll, ring_buffer__epoll_fd(w->rb));
  if (rc < 0) {
    rc = ym_err_from_errno(-rc);
    say(why, whylen, "cannot poll the ring buffer");
    goto out_rb;
  }
  w->poll.data = w;
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  w->open_handles = 2;
  *out = w;
  return 0;

out_rb:
  ring_buffer__free(w->rb);
out_destroy:
  procev_bpf__destroy(w->skel);
out_free:
  free(w->percpu);
  free(w);
  return rc;
}

int os_bpfwatch_start(os_bpfwatch_t *w) {
  if (w == NULL || w->closing)
    return YM_EINVAL;
  if (w->polling)
    return YM_EBUSY;
  int rc = uv_poll_start(&w->poll, UV_READABLE, on_readable);
  if (rc < 0)
    return ym_err_from_errno(-rc);
  uv_timer_start(&w->timer, on_timer, YM_BPF_DRAIN_MS, YM_BPF_DRAIN_MS);
  w->polling = true;
  return 0;
}

void os_bpfwatch_stats(const os_bpfwatch_t *w, os_bpfwatch_stats_t *out) {
  if (w == NULL) {
    memset(out, 0, sizeof(*out));
    return;
  }
  *out = w->stats;
}

static void on_close(uv_handle_t *handle) {
  os_bpfwatch_t *w = handle->data;
  if (--w->open_handles > 0)
    return;
  ring_buffer__free(w->rb);
  procev_bpf__destroy(w->skel);
  free(w->percpu);
  free(w);
}

void os_bpfwatch_free(os_bpfwatch_t *w) {
  if (w == NULL || w->closing)
    return;
  w->closing = true;
  procev_bpf__detach(w->skel);
  uv_close((uv_handle_t *)&w->poll, on_close);
  uv_close((uv_handle_t *)&w->timer, on_close);
}
