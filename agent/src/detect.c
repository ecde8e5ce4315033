#include "detect.h"

#include "os.h"
#include "quarantine.h"
#include "scanwalk.h"
#include "sensors.h"

#include "yamori/err.h"
#include "yamori/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PENDING_MAX 8192
#define PENDING_BUCKETS 4096
#define RECENT_ALERTS 64

/* ---------------------------------------------------------------- */
/* State                                                              */

typedef struct wpending {
  struct wpending *next_fifo;
  struct wpending *next_hash;
  int64_t due_ns;
  int pid;
  uint32_t hash;
  char path[];
} wpending_t;

typedef struct {
  uint64_t seq;
  char path[512];
  char rule[128];
  char action[32];
} recent_t;

struct detect {
  agent_t *a;
  scanner_t *sc;
  guard_t *guard;
  uv_timer_t timer;
  bool timer_closed;
  wpending_t *fifo_head, *fifo_tail;
  wpending_t *buckets[PENDING_BUCKETS];
  size_t npending;
  uint64_t dropped_unreported;
  recent_t recent[RECENT_ALERTS];
  size_t nrecent;
  char qdir[1100];
  detect_status_t st;
  bool stopping;
  atomic_int policy_file; /* read by scanner threads */
};

/* A scan result with what the scanner thread already did about it. */
typedef struct {
  detect_t *d;
  scan_req_t *r;
  int pid;
  const char *trigger;
  bool quarantine_tried;
  int qrc;
  quarantine_entry_t q;
  /* on-demand */
  detect_result_cb result;
  detect_finished_cb finished;
  void *data;
  struct demand *demand;
} outcome_t;

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int severity_number(const char *s) {
  if (strcmp(s, "critical") == 0)
    return 99;
  if (strcmp(s, "high") == 0)
    return 73;
  if (strcmp(s, "medium") == 0)
    return 47;
  return 21;
}

/* ---------------------------------------------------------------- */
/* Events                                                             */

static void set_file_fields(ym_event_t *ev, const scan_req_t *r) {
  if (r->path != NULL) {
    size_t len = strlen(r->path);
    ym_event_set_str(ev, YM_F_FILE_PATH, r->path, len);
    const char *slash = strrchr(r->path, '/');
    if (slash != NULL) {
      ym_event_set_cstr(ev, YM_F_FILE_NAME, slash + 1);
      ym_event_set_str(ev, YM_F_FILE_DIRECTORY, r->path,
                       slash == r->path ? 1 : (size_t)(slash - r->path));
      const char *dot = strrchr(slash + 1, '.');
      if (dot != NULL && dot != slash + 1 && dot[1] != '\0')
        ym_event_set_cstr(ev, YM_F_FILE_EXTENSION, dot + 1);
    }
  }
  if (r->st.st_ino != 0) {
    char num[32];
    ym_event_set_int(ev, YM_F_FILE_SIZE, (int64_t)r->st.st_size);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)r->st.st_ino);
    ym_event_set_cstr(ev, YM_F_FILE_INODE, num);
    snprintf(num, sizeof(num), "%u", (unsigned)r->st.st_uid);
    ym_event_set_cstr(ev, YM_F_FILE_UID, num);
    snprintf(num, sizeof(num), "%u", (unsigned)r->st.st_gid);
    ym_event_set_cstr(ev, YM_F_FILE_GID, num);
    snprintf(num, sizeof(num), "%04o", (unsigned)(r->st.st_mode & 07777));
    ym_event_set_cstr(ev, YM_F_FILE_MODE, num);
    ym_event_set_time(ev, YM_F_FILE_MTIME,
                      (int64_t)r->st.st_mtim.tv_sec * 1000000000 + r->st.st_mtim.tv_nsec);
  }
  if (r->sha256[0])
    ym_event_set_cstr(ev, YM_F_FILE_HASH_SHA256, r->sha256);
  ym_event_set_cstr(ev, YM_F_FILE_TYPE, "file");
}

/* The process table's entry of pid, looked up before an event is built:
 * a lookup may read the process sensor's waiting records, which emits
 * their events through the agent's one scratch event. */
static proc_entry_t *actor_of(detect_t *d, int pid) {
  return pid > 0 ? psensor_lookup(d->a, pid) : NULL;
}

static void set_actor(ym_event_t *ev, int pid, const proc_entry_t *e) {
  if (pid <= 0)
    return;
  ym_event_set_int(ev, YM_F_PROCESS_PID, pid);
  if (e == NULL)
    return;
  if (e->entity_id[0])
    ym_event_set_cstr(ev, YM_F_PROCESS_ENTITY_ID, e->entity_id);
  if (e->exe != NULL) {
    ym_event_set_str(ev, YM_F_PROCESS_EXECUTABLE, e->exe, e->exe_len);
    ym_event_set_cstr(ev, YM_F_PROCESS_NAME, proctab_name(e));
  }
  if (e->ppid > 0)
    ym_event_set_int(ev, YM_F_PROCESS_PARENT_PID, e->ppid);
}

static void remember(detect_t *d, const char *path, const char *rule, const char *action) {
  recent_t *x = &d->recent[d->nrecent++ % RECENT_ALERTS];
  x->seq = d->a->seq;
  snprintf(x->path, sizeof(x->path), "%s", path ? path : "");
  snprintf(x->rule, sizeof(x->rule), "%s", rule);
  snprintf(x->action, sizeof(x->action), "%s", action);
}

/* An alert for a malicious verdict. type2 is "denied", "allowed" or NULL. */
static void emit_alert(detect_t *d, const scan_req_t *r, const char *trigger, const char *action,
                       const char *type2, int pid, int64_t waited_ns) {
  agent_t *a = d->a;
  proc_entry_t *actor = actor_of(d, pid);
  ym_event_t *ev = agent_event(a);
  const scan_rule_info_t *f = &r->first;
  ym_event_set_cstr(ev, YM_F_EVENT_KIND, "alert");
  ym_event_set_one(ev, YM_F_EVENT_CATEGORY, "malware");
  const char *types[2] = {"info", type2};
  size_t lens[2] = {4, type2 ? strlen(type2) : 0};
  ym_event_set_strv(ev, YM_F_EVENT_TYPE, types, lens, type2 ? 2 : 1);
  ym_event_set_cstr(ev, YM_F_EVENT_ACTION, action);
  ym_event_set_cstr(ev, YM_F_EVENT_DATASET, "yamori.malware");
  ym_event_set_int(ev, YM_F_EVENT_SEVERITY, severity_number(f->severity));
  if (waited_ns > 0)
    ym_event_set_int(ev, YM_F_EVENT_DURATION, waited_ns);
  ym_event_set_cstr(ev, YM_F_RULE_NAME, f->rule);
  ym_event_set_cstr(ev, YM_F_RULE_RULESET, f->ns);
  if (f->description[0])
    ym_event_set_cstr(ev, YM_F_RULE_DESCRIPTION, f->description);
  if (f->author[0])
    ym_event_set_cstr(ev, YM_F_RULE_AUTHOR, f->author);
  if (f->reference[0])
    ym_event_set_cstr(ev, YM_F_RULE_REFERENCE, f->reference);
  ym_event_set_cstr(ev, YM_F_RULE_VERSION, r->rules_version);
  if (f->mitre[0]) {
    ym_event_set_cstr(ev, YM_F_THREAT_FRAMEWORK, "MITRE ATT&CK");
    ym_event_set_one(ev, YM_F_THREAT_TECHNIQUE_ID, f->mitre);
  }
  if (f->severity[0])
    ym_event_set_cstr(ev, YM_F_YAMORI_YARA_SEVERITY, f->severity);
  if (f->tags[0]) {
    const char *tags[16];
    size_t tlens[16], nt = 0;
    for (const char *p = f->tags; *p && nt < 16;) {
      size_t n = strcspn(p, " ");
      tags[nt] = p;
      tlens[nt++] = n;
      p += n + (p[n] == ' ');
    }
    ym_event_set_strv(ev, YM_F_YAMORI_YARA_TAGS, tags, tlens, nt);
  }
  if (r->matches_json.len > 0)
    ym_event_set_raw(ev, YM_F_YAMORI_YARA_MATCHES, r->matches_json.data, r->matches_json.len);
  ym_event_set_cstr(ev, YM_F_YAMORI_SCAN_TRIGGER, trigger);
  ym_event_set_bool(ev, YM_F_YAMORI_SCAN_CACHED, r->cached);
  set_file_fields(ev, r);
  set_actor(ev, pid, actor);
  agent_emit(a, ev);
  d->st.alerts++;
  remember(d, r->path, f->rule, action);
  ym_log(YM_LOG_WARN, 0, "malware detected (%s): rule %s", trigger, f->rule);
}

static void emit_quarantine(detect_t *d, const outcome_t *o) {
  agent_t *a = d->a;
  ym_event_t *ev = agent_event(a);
  ym_event_set_cstr(ev, YM_F_EVENT_KIND, "event");
  ym_event_set_one(ev, YM_F_EVENT_CATEGORY, "file");
  ym_event_set_one(ev, YM_F_EVENT_TYPE, "deletion");
  ym_event_set_cstr(ev, YM_F_EVENT_ACTION, "quarantine");
  ym_event_set_cstr(ev, YM_F_EVENT_DATASET, "yamori.response");
  ym_event_set_cstr(ev, YM_F_EVENT_OUTCOME, o->qrc == 0 ? "success" : "failure");
  if (o->qrc != 0)
    ym_event_set_cstr(ev, YM_F_EVENT_REASON, ym_strerror(o->qrc));
  else
    ym_event_set_cstr(ev, YM_F_YAMORI_QUARANTINE_ID, o->q.id);
  ym_event_set_cstr(ev, YM_F_RULE_NAME, o->r->first.rule);
  set_file_fields(ev, o->r);
  agent_emit(a, ev);
  if (o->qrc == 0) {
    d->st.quarantined++;
    remember(d, o->r->path, o->r->first.rule, "quarantine");
  } else {
    d->st.quarantine_failed++;
  }
}

/* Kills pid if it is still the process the table knows (same start time),
 * through a pidfd so that a reused pid is never hit. */
static void kill_process(detect_t *d, int pid, const char *why) {
  agent_t *a = d->a;
  proc_entry_t *e = proctab_get(&a->procs, pid);
  int rc = YM_ENOENT;
  if (pid > 1 && pid != a->self_pid && e != NULL) {
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int ppid;
    uint64_t ticks;
    if (pfd < 0) {
      rc = ym_err_from_errno(errno);
    } else {
      if (os_proc_read_stat(pid, &ppid, &ticks) == 0 && ticks == e->start_ticks)
        rc = syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0) == 0 ? 0
                                                                        : ym_err_from_errno(errno);
      else
        rc = YM_ESTALE;
      close(pfd);
    }
  }
  proc_entry_t *actor = actor_of(d, pid);
  ym_event_t *ev = agent_event(a);
  ym_event_set_cstr(ev, YM_F_EVENT_KIND, "event");
  ym_event_set_one(ev, YM_F_EVENT_CATEGORY, "process");
  ym_event_set_one(ev, YM_F_EVENT_TYPE, "end");
  ym_event_set_cstr(ev, YM_F_EVENT_ACTION, "kill");
  ym_event_set_cstr(ev, YM_F_EVENT_DATASET, "yamori.response");
  ym_event_set_cstr(ev, YM_F_EVENT_OUTCOME, rc == 0 ? "success" : "failure");
  ym_event_set_cstr(ev, YM_F_EVENT_REASON, rc == 0 ? why : ym_strerror(rc));
  set_actor(ev, pid, actor);
  agent_emit(a, ev);
  if (rc == 0)
    d->st.killed++;
}

/* ---------------------------------------------------------------- */
/* Results coming back to the loop                                    */

static void outcome_free(outcome_t *o) {
  quarantine_entry_free(&o->q);
  scan_req_free(o->r);
  free(o);
}

/* Scanner thread: the file policy, then hand over to the loop. */
static void quarantine_if_needed(outcome_t *o) {
  if (o->r->verdict == SCAN_MALICIOUS &&
      atomic_load(&o->d->policy_file) == CONF_POLICY_FILE_QUARANTINE && o->r->fd >= 0 &&
      o->r->path != NULL) {
    o->quarantine_tried = true;
    o->qrc = quarantine_file(o->d->qdir, o->r->fd, o->r->path, o->r->first.rule, &o->q);
  }
}

static void on_write_result(agent_t *a, void *arg) {
  outcome_t *o = arg;
  detect_t *d = o->d;
  (void)a;
  if (o->r->verdict == SCAN_MALICIOUS) {
    emit_alert(d, o->r, "write", "malware-detected", NULL, o->pid, 0);
    if (o->quarantine_tried)
      emit_quarantine(d, o);
    if (d->a->conf->policy_kill)
      kill_process(d, o->pid, "wrote a malicious file");
  }
  outcome_free(o);
}

static void on_write_scanned(scan_req_t *r) {
  outcome_t *o = r->data;
  o->r = r;
  quarantine_if_needed(o);
  agent_post(o->d->a, on_write_result, o);
}

static void on_guard_result(agent_t *a, void *arg) {
  guard_report_t *g = arg;
  detect_t *d = a->det;
  static const char *const reasons[] = {[GUARD_ALLOWED_TIMEOUT] = "deadline",
                                        [GUARD_ALLOWED_OVERLOAD] = "overload",
                                        [GUARD_ALLOWED_ERROR] = "scan-error"};
  if (d == NULL) {
    guard_report_free(g);
    return;
  }
  switch (g->outcome) {
  case GUARD_DENIED:
    emit_alert(d, g->scan, "exec", "exec-denied", "denied", g->pid, g->waited_ns);
    break;
  case GUARD_ALLOWED_DETECT:
  case GUARD_LATE_VERDICT:
    emit_alert(d, g->scan, "exec", "exec-allowed", "allowed", g->pid, g->waited_ns);
    if (a->conf->policy_kill)
      kill_process(d, g->pid, "started a malicious program");
    break;
  default: {
    proc_entry_t *actor = actor_of(d, g->pid);
    ym_event_t *ev = agent_event(a);
    ym_event_set_cstr(ev, YM_F_EVENT_KIND, "event");
    ym_event_set_one(ev, YM_F_EVENT_CATEGORY, "process");
    ym_event_set_one(ev, YM_F_EVENT_TYPE, "allowed");
    ym_event_set_cstr(ev, YM_F_EVENT_ACTION, "exec-unscanned");
    ym_event_set_cstr(ev, YM_F_EVENT_DATASET, "yamori.guard");
    ym_event_set_cstr(ev, YM_F_EVENT_REASON, reasons[g->outcome]);
    ym_event_set_int(ev, YM_F_EVENT_DURATION, g->waited_ns);
    if (g->scan != NULL && g->scan->path != NULL)
      ym_event_set_cstr(ev, YM_F_FILE_PATH, g->scan->path);
    set_actor(ev, g->pid, actor);
    agent_emit(a, ev);
  }
  }
  guard_report_free(g);
}

static void on_guard_report(guard_report_t *g, void *data) {
  agent_post(data, on_guard_result, g);
}

/* ---------------------------------------------------------------- */
/* Write-triggered scans, debounced                                   */

static uint32_t path_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static void submit_write(detect_t *d, const char *path, int pid) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
    close(fd);
    return;
  }
  outcome_t *o = calloc(1, sizeof(*o));
  scan_req_t *r = o ? scan_req_new(fd, path, SCAN_PRIO_BACKGROUND, on_write_scanned, o) : NULL;
  if (r == NULL) {
    free(o);
    close(fd);
    return;
  }
  o->d = d;
  o->pid = pid;
  o->trigger = "write";
  if (scanner_submit(d->sc, r) != 0) {
    d->st.write_scans_dropped++;
    d->dropped_unreported++;
    scan_req_free(r);
    free(o);
  }
}

static void pending_remove_head(detect_t *d) {
  wpending_t *p = d->fifo_head;
  d->fifo_head = p->next_fifo;
  if (d->fifo_head == NULL)
    d->fifo_tail = NULL;
  wpending_t **pp = &d->buckets[p->hash % PENDING_BUCKETS];
  while (*pp != p)
    pp = &(*pp)->next_hash;
  *pp = p->next_hash;
  d->npending--;
}

static void on_timer(uv_timer_t *t) {
  detect_t *d = t->data;
  int64_t now = mono_ns();
  while (d->fifo_head != NULL && (d->fifo_head->due_ns <= now || d->stopping)) {
    wpending_t *p = d->fifo_head;
    pending_remove_head(d);
    if (!d->stopping)
      submit_write(d, p->path, p->pid);
    free(p);
  }
  if (d->dropped_unreported > 0) {
    agent_emit_gap(d->a, "scanner", "scan_queue_full", d->dropped_unreported, true);
    d->dropped_unreported = 0;
  }
  if (d->fifo_head == NULL)
    uv_timer_stop(t);
}

void detect_file_changed(detect_t *d, int pid, const char *path, size_t len) {
  const conf_t *c = d->a->conf;
  if (d->stopping || !c->scan_on_write || path[0] != '/')
    return;
  size_t ql = strlen(d->qdir);
  if (len >= ql && memcmp(path, d->qdir, ql) == 0)
    return; /* the quarantine's own files */
  uint32_t h = path_hash(path, len);
  for (wpending_t *p = d->buckets[h % PENDING_BUCKETS]; p != NULL; p = p->next_hash)
    if (p->hash == h && strlen(p->path) == len && memcmp(p->path, path, len) == 0) {
      p->pid = pid; /* coalesced: scanned once, after the last writer */
      return;
    }
  if (d->npending >= PENDING_MAX) {
    wpending_t *old = d->fifo_head;
    pending_remove_head(d);
    submit_write(d, old->path, old->pid);
    free(old);
  }
  wpending_t *p = malloc(sizeof(*p) + len + 1);
  if (p == NULL)
    return;
  memcpy(p->path, path, len);
  p->path[len] = '\0';
  p->pid = pid;
  p->hash = h;
  p->due_ns = mono_ns() + c->scan_debounce_ms * 1000000;
  p->next_fifo = NULL;
  p->next_hash = d->buckets[h % PENDING_BUCKETS];
  d->buckets[h % PENDING_BUCKETS] = p;
  if (d->fifo_tail != NULL)
    d->fifo_tail->next_fifo = p;
  else
    d->fifo_head = p;
  d->fifo_tail = p;
  d->npending++;
  if (!uv_is_active((uv_handle_t *)&d->timer)) {
    uint64_t tick = (uint64_t)(c->scan_debounce_ms / 2);
    uv_timer_start(&d->timer, on_timer, tick ? tick : 1, tick ? tick : 1);
  }
}

/* ---------------------------------------------------------------- */
/* On-demand scans                                                    */

struct demand {
  detect_t *d;
  scanwalk_t *walk;
  detect_result_cb result;
  detect_finished_cb finished;
  void *data;
  uint64_t files, errors;
};

static void on_demand_result_loop(agent_t *a, void *arg) {
  outcome_t *o = arg;
  (void)a;
  if (o->r->verdict == SCAN_MALICIOUS) {
    emit_alert(o->d, o->r, "demand", "malware-detected", NULL, 0, 0);
    if (o->quarantine_tried)
      emit_quarantine(o->d, o);
  }
  o->demand->result(o->r, o->quarantine_tried && o->qrc == 0 ? o->q.id : NULL, o->demand->data);
  outcome_free(o);
}

static void on_demand_result(scan_req_t *r, void *data) {
  struct demand *m = data;
  outcome_t *o = calloc(1, sizeof(*o));
  if (o == NULL) {
    scan_req_free(r);
    return;
  }
  o->d = m->d;
  o->r = r;
  o->demand = m;
  o->trigger = "demand";
  quarantine_if_needed(o);
  agent_post(m->d->a, on_demand_result_loop, o);
}

static void on_demand_finished_loop(agent_t *a, void *arg) {
  struct demand *m = arg;
  (void)a;
  scanwalk_free(m->walk);
  m->finished(m->files, m->errors, m->data);
  free(m);
}

static void on_demand_finished(void *data, uint64_t files, uint64_t errors) {
  struct demand *m = data;
  m->files = files;
  m->errors = errors;
  agent_post(m->d->a, on_demand_finished_loop, m);
}

int detect_scan(detect_t *d, const char *const *paths, size_t n, detect_result_cb result,
                detect_finished_cb finished, void *data) {
  struct demand *m = calloc(1, sizeof(*m));
  if (m == NULL)
    return YM_ENOMEM;
  m->d = d;
  m->result = result;
  m->finished = finished;
  m->data = data;
  int rc = scanwalk_start(d->sc, paths, n, SCAN_PRIO_DEMAND, on_demand_result, on_demand_finished,
                          m, &m->walk);
  if (rc != 0)
    free(m);
  return rc;
}

/* ---------------------------------------------------------------- */
/* Rules                                                              */

typedef struct {
  uv_work_t req;
  detect_t *d;
  ym_strlist_t dirs;
  rules_t *rules;
  int rc;
  char err[512];
  detect_reload_cb cb;
  void *data;
} reload_t;

static void reload_work(uv_work_t *w) {
  reload_t *r = w->data;
  r->rc = rules_compile(&r->dirs, &r->rules, r->err, sizeof(r->err));
}

static void reload_done(uv_work_t *w, int status) {
  reload_t *r = w->data;
  (void)status;
  if (r->rc == 0) {
    scanner_set_rules(r->d->sc, r->rules);
    ym_log(YM_LOG_NOTICE, 0, "rules reloaded: version %s, %u rules", r->rules->version,
           r->rules->count);
    rules_unref(r->rules);
  } else {
    ym_log(YM_LOG_ERROR, 0, "rules reload refused, the previous rules stay active: %s", r->err);
  }
  r->cb(r->rc, r->err, r->data);
  for (size_t i = 0; i < r->dirs.n; i++)
    free(r->dirs.v[i]);
  free(r->dirs.v);
  free(r);
}

void detect_reload_rules(detect_t *d, detect_reload_cb cb, void *data) {
  reload_t *r = calloc(1, sizeof(*r));
  const ym_strlist_t *src = d->a->rules_dirs ? d->a->rules_dirs : &d->a->conf->rules_dirs;
  if (r != NULL)
    r->dirs.v = calloc(src->n + 1, sizeof(char *));
  if (r == NULL || r->dirs.v == NULL) {
    free(r);
    cb(YM_ENOMEM, "out of memory", data);
    return;
  }
  for (size_t i = 0; i < src->n; i++)
    r->dirs.v[r->dirs.n++] = strdup(src->v[i]);
  r->d = d;
  r->cb = cb;
  r->data = data;
  r->req.data = r;
  uv_queue_work(d->a->loop, &r->req, reload_work, reload_done);
}

void detect_set_rules(detect_t *d, rules_t *rules) {
  scanner_set_rules(d->sc, rules);
  ym_log(YM_LOG_NOTICE, 0, "rules replaced: version %s, %u rules", rules->version, rules->count);
}

/* ---------------------------------------------------------------- */
/* Life cycle                                                         */

static int start_guard(detect_t *d) {
  const conf_t *c = d->a->conf;
  guard_opts_t go = {(guard_policy_t)c->policy_exec, c->exec_deadline_ms, c->exec_max_pending};
  int rc = guard_new(d->sc, &go, d->a->self_pid, on_guard_report, d->a, &d->guard);
  if (rc != 0)
    ym_log(YM_LOG_ERROR, rc, "cannot start the program-start guard (fanotify permission events)");
  return rc;
}

int detect_new(agent_t *a, detect_t **out) {
  const conf_t *c = a->conf;
  detect_t *d = calloc(1, sizeof(*d));
  if (d == NULL)
    return YM_ENOMEM;
  d->a = a;
  snprintf(d->qdir, sizeof(d->qdir), "%s/quarantine", c->state_dir);
  rules_t *rules = NULL;
  char err[512];
  int rc = rules_compile(a->rules_dirs ? a->rules_dirs : &c->rules_dirs, &rules, err, sizeof(err));
  if (rc != 0) {
    /* Keep watching without rules; a rules reload can fix this. */
    ym_log(YM_LOG_ERROR, 0, "cannot compile the rules, scanning with none until a reload: %s", err);
    if ((rc = rules_empty(&rules)) != 0) {
      free(d);
      return rc;
    }
  }
  scanner_opts_t so = {c->scan_threads,    c->scan_max_file_bytes, c->scan_timeout_s,
                       c->scan_cpu_budget, c->scan_max_queue,      8192};
  rc = scanner_new(&so, rules, &d->sc);
  ym_log(YM_LOG_NOTICE, 0, "rules loaded: version %s, %u rules from %u files", rules->version,
         rules->count, rules->files);
  rules_unref(rules);
  if (rc != 0) {
    free(d);
    return rc;
  }
  uv_timer_init(a->loop, &d->timer);
  d->timer.data = d;
  atomic_init(&d->policy_file, c->policy_file);
  /* Without the guard (a kernel without permission events) files are
   * still scanned; the status says the guard is off. */
  if (c->policy_exec != GUARD_OFF)
    start_guard(d);
  *out = d;
  return 0;
}

void detect_apply_conf(detect_t *d) {
  int policy = d->a->conf->policy_exec;
  atomic_store(&d->policy_file, d->a->conf->policy_file);
  if (d->guard != NULL)
    guard_set_policy(d->guard, (guard_policy_t)policy);
  else if (policy != GUARD_OFF)
    start_guard(d);
}

void detect_stop(detect_t *d) {
  if (d == NULL || d->stopping)
    return;
  d->stopping = true;
  guard_stop(d->guard);
  while (d->fifo_head != NULL) {
    wpending_t *p = d->fifo_head;
    pending_remove_head(d);
    free(p);
  }
  if (!d->timer_closed) {
    uv_close((uv_handle_t *)&d->timer, NULL);
    d->timer_closed = true;
  }
}

void detect_drain(detect_t *d) {
  if (d == NULL)
    return;
  detect_stop(d);
  scanner_free(d->sc); /* joins the threads; their results are posted */
  d->sc = NULL;
  guard_free(d->guard);
  d->guard = NULL;
}

void detect_free(detect_t *d) {
  if (d == NULL)
    return;
  detect_drain(d);
  free(d);
}

void detect_status(detect_t *d, detect_status_t *out) {
  *out = d->st;
  rules_t *r = scanner_rules(d->sc);
  memcpy(out->rules_version, r->version, sizeof(out->rules_version));
  out->rules_count = r->count;
  out->rules_files = r->files;
  rules_unref(r);
  scanner_stats(d->sc, &out->scan);
  out->guard_on = d->guard != NULL && d->a->conf->policy_exec != GUARD_OFF;
  if (d->guard != NULL)
    guard_stats(d->guard, &out->guard);
}

void detect_recent_alerts(detect_t *d, uint64_t since,
                          void (*fn)(uint64_t seq, const char *path, const char *rule,
                                     const char *action, void *data),
                          void *data) {
  size_t n = d->nrecent < RECENT_ALERTS ? d->nrecent : RECENT_ALERTS;
  for (size_t i = 0; i < n; i++) {
    const recent_t *x = &d->recent[(d->nrecent - n + i) % RECENT_ALERTS];
    if (x->seq >= since)
      fn(x->seq, x->path, x->rule, x->action, data);
  }
}

const char *detect_quarantine_dir(detect_t *d) {
  return d->qdir;
}
