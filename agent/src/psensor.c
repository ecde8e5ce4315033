/*
 * The process sensor.
 *
 * Start: the process table is seeded from the OS, then process events are
 * followed. Per event:
 *   fork  - the child gets a table entry: parent, start time (from /proc,
 *           else the event's timestamp), the parent's program and user;
 *   exec  - /proc is read (program, arguments, directory, user); when the
 *           process is already gone the program seen by the file sensor's
 *           exec notification is used and the missing fields are listed in
 *           yamori.missing. The program is hashed off the loop thread
 *           (cached by file version); the start event is written when the
 *           hash is known;
 *   exit  - the end event is written (after a start still waiting for its
 *           hash) and the entry removed;
 *   lost  - a gap record; after a receive overrun the table is resynced
 *           from /proc.
 */
#include "sensors.h"

#include "os.h"

#include "yamori/err.h"
#include "yamori/log.h"

#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define USER_SLOTS 64
#define MAX_MISSING 8

typedef struct {
  bool used;
  uint32_t uid;
  char name[64];
} user_slot_t;

#define RETIRED_MAX 65536
#define RETIRE_NS 5000000000LL

/* A process that ended, waiting to leave the table. */
typedef struct {
  int pid;
  uint64_t start_ticks;
  int64_t ended_mono;
} retired_t;

struct psensor {
  agent_t *a;
  os_procwatch_t *watch;
  os_bpfwatch_t *bpf; /* the eBPF source, when it runs instead of watch */
  char fallback[160]; /* why the eBPF source does not run ("" when it does) */
  retired_t *retired; /* ring */
  size_t rhead, rcount;
  uv_timer_t purge;
  bool purge_started;
  user_slot_t users[USER_SLOTS];
  size_t pending; /* start events waiting for a hash */
  uint32_t gen;
};

/* A start event waiting for the program's hash. */
typedef struct {
  psensor_t *ps;
  int pid;
  ym_event_t ev;
  const char *missing[MAX_MISSING];
  size_t nmissing;
} pstart_t;

static void join_args(ym_event_t *ev, const os_proc_info_t *info);

static const char *user_name(psensor_t *p, uint32_t uid) {
  user_slot_t *s = &p->users[uid % USER_SLOTS];
  if (s->used && s->uid == uid)
    return s->name;
  struct passwd pw, *res = NULL;
  char buf[1024];
  if (getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
    return NULL;
  s->used = true;
  s->uid = uid;
  snprintf(s->name, sizeof(s->name), "%s", pw.pw_name);
  return s->name;
}

static int64_t mono_now(void) {
  struct timespec m;
  clock_gettime(CLOCK_MONOTONIC, &m);
  return (int64_t)m.tv_sec * 1000000000 + m.tv_nsec;
}

/* Removes the oldest retired entry if it is still that ended process. */
static void purge_one(psensor_t *p) {
  retired_t *r = &p->retired[p->rhead];
  proc_entry_t *e = proctab_get(&p->a->procs, r->pid);
  if (e != NULL && e->exited && e->start_ticks == r->start_ticks)
    proctab_remove(&p->a->procs, r->pid);
  p->rhead = (p->rhead + 1) % RETIRED_MAX;
  p->rcount--;
}

static void on_purge(uv_timer_t *t) {
  psensor_t *p = t->data;
  int64_t now = mono_now();
  while (p->rcount > 0 && now - p->retired[p->rhead].ended_mono >= RETIRE_NS)
    purge_one(p);
}

/* An ended process leaves the table after RETIRE_NS: the file sensor's
 * queue may still hold its last file events. */
static void retire(psensor_t *p, proc_entry_t *e) {
  if (p->retired == NULL) {
    proctab_remove(&p->a->procs, e->pid);
    return;
  }
  if (p->rcount == RETIRED_MAX)
    purge_one(p);
  e->exited = true;
  retired_t *r = &p->retired[(p->rhead + p->rcount) % RETIRED_MAX];
  r->pid = e->pid;
  r->start_ticks = e->start_ticks;
  r->ended_mono = mono_now();
  p->rcount++;
}

static int64_t mono_to_real(uint64_t mono_ns) {
  struct timespec m, r;
  clock_gettime(CLOCK_MONOTONIC, &m);
  clock_gettime(CLOCK_REALTIME, &r);
  int64_t now_m = (int64_t)m.tv_sec * 1000000000 + m.tv_nsec;
  int64_t now_r = (int64_t)r.tv_sec * 1000000000 + r.tv_nsec;
  return now_r - (now_m - (int64_t)mono_ns);
}

static uint64_t ns_to_ticks(const agent_t *a, uint64_t ns) {
  return ns / (uint64_t)(1000000000 / a->clock_ticks);
}

static int64_t ticks_to_real(const agent_t *a, uint64_t ticks) {
  return a->boot_ns + (int64_t)(ticks * (uint64_t)(1000000000 / a->clock_ticks));
}

static void fill_entry_from_info(agent_t *a, proc_entry_t *e, const os_proc_info_t *info) {
  if (e->start_ticks == 0 || e->entity_id[0] == '\0')
    proctab_set_start(&a->procs, e, info->start_ticks);
  if (info->ppid > 0)
    e->ppid = info->ppid;
  e->uid = info->uid;
  if (info->exe_ok)
    proctab_set_exe(e, info->exe, info->exe_len);
  if (info->args_ok)
    proctab_set_args(e, info->args, info->args_len);
}

/* Handles the process events queued now, from whichever source runs. */
static void drain(psensor_t *p) {
  if (p->bpf != NULL)
    os_bpfwatch_drain(p->bpf);
  else if (p->watch != NULL)
    os_procwatch_drain(p->watch);
}

proc_entry_t *psensor_lookup(agent_t *a, int pid) {
  /* The eBPF reader wakes in batches (docs/agent.md), so a program's exec
   * record may still wait in the ring buffer when its first file event
   * arrives; the record is there already (written at exec, before the
   * program could act), and reading what waits costs little when nothing
   * does. Without this a write would be put on the image before exec. */
  if (a->ps != NULL && a->ps->bpf != NULL)
    drain(a->ps);
  proc_entry_t *e = proctab_get(&a->procs, pid);
  if (e != NULL && e->exe == NULL) {
    /* Known only from its exec notification so far: its exec event may
     * still wait in the process sensor's queue. */
    if (a->ps != NULL)
      drain(a->ps);
    e = proctab_get(&a->procs, pid);
    if (e != NULL && e->exe == NULL && e->exec_open != NULL)
      proctab_set_exe(e, e->exec_open, e->exec_open_len);
  }
  if (e != NULL)
    return e;
  os_proc_info_t info;
  if (os_proc_read(pid, 1, 256, &info) != 0) {
    /* Gone already: its fork and exec may still wait in the process
     * sensor's queue (the two kernel sources are read independently). */
    if (a->ps != NULL && (a->ps->watch != NULL || a->ps->bpf != NULL)) {
      drain(a->ps);
      return proctab_get(&a->procs, pid);
    }
    return NULL;
  }
  e = proctab_upsert(&a->procs, pid);
  if (e != NULL) {
    fill_entry_from_info(a, e, &info);
    proc_entry_t *parent = proctab_get(&a->procs, e->ppid);
    if (parent != NULL)
      memcpy(e->parent_entity_id, parent->entity_id, sizeof(e->parent_entity_id));
  }
  os_proc_info_free(&info);
  return e;
}

typedef struct {
  agent_t *a;
  uint32_t gen;
} seed_ctx_t;

static int seed_one(int pid, void *data) {
  seed_ctx_t *c = data;
  proc_entry_t *e = proctab_get(&c->a->procs, pid);
  if (e == NULL)
    e = psensor_lookup(c->a, pid);
  if (e != NULL)
    e->gen = c->gen;
  return 0;
}

static void link_parent(proc_entry_t *e, void *data) {
  agent_t *a = data;
  if (e->parent_entity_id[0] != '\0')
    return;
  proc_entry_t *parent = proctab_get(&a->procs, e->ppid);
  if (parent != NULL)
    memcpy(e->parent_entity_id, parent->entity_id, sizeof(e->parent_entity_id));
}

typedef struct {
  uint32_t gen;
  int *stale;
  size_t n, cap;
} sweep_ctx_t;

static void find_stale(proc_entry_t *e, void *data) {
  sweep_ctx_t *c = data;
  if (e->gen != c->gen && !e->start_pending && c->n < c->cap)
    c->stale[c->n++] = e->pid;
}

/* Brings the table in line with the OS: adds what runs, drops what is gone
 * (their end events were lost; the gap record already says so). */
static void resync(agent_t *a, uint32_t gen) {
  seed_ctx_t c = {a, gen};
  os_proc_list(seed_one, &c);
  proctab_foreach(&a->procs, link_parent, a);
  sweep_ctx_t s = {gen, calloc(a->procs.count + 1, sizeof(int)), 0, a->procs.count};
  if (s.stale == NULL)
    return;
  proctab_foreach(&a->procs, find_stale, &s);
  for (size_t i = 0; i < s.n; i++)
    proctab_remove(&a->procs, s.stale[i]);
  free(s.stale);
}

void psensor_seed(agent_t *a) {
  resync(a, 1);
}

void psensor_note_exec(agent_t *a, int pid, const char *path, size_t len) {
  /* The fork event of pid may not have been handled yet: create the entry. */
  proc_entry_t *e = proctab_get(&a->procs, pid);
  if (e != NULL && e->exited)
    proctab_remove(&a->procs, pid); /* the pid was reused */
  e = proctab_upsert(&a->procs, pid);
  if (e != NULL && e->exec_open == NULL)
    proctab_set_exec_open(e, path, len);
}

static void set_common(ym_event_t *ev, const char *action, const char *type) {
  ym_event_set_cstr(ev, YM_F_EVENT_KIND, "event");
  ym_event_set_one(ev, YM_F_EVENT_CATEGORY, "process");
  ym_event_set_one(ev, YM_F_EVENT_TYPE, type);
  ym_event_set_cstr(ev, YM_F_EVENT_ACTION, action);
  ym_event_set_cstr(ev, YM_F_EVENT_DATASET, "yamori.process");
}

/* Fields every process event carries from the table entry. */
static void set_process(psensor_t *p, ym_event_t *ev, const proc_entry_t *e) {
  agent_t *a = e != NULL && p != NULL ? p->a : NULL;
  if (a == NULL)
    return;
  ym_event_set_int(ev, YM_F_PROCESS_PID, e->pid);
  if (e->entity_id[0])
    ym_event_set_cstr(ev, YM_F_PROCESS_ENTITY_ID, e->entity_id);
  if (e->start_ticks)
    ym_event_set_time(ev, YM_F_PROCESS_START, ticks_to_real(a, e->start_ticks));
  if (e->exe != NULL) {
    ym_event_set_str(ev, YM_F_PROCESS_EXECUTABLE, e->exe, e->exe_len);
    ym_event_set_cstr(ev, YM_F_PROCESS_NAME, proctab_name(e));
  }
  char uid[16];
  snprintf(uid, sizeof(uid), "%u", e->uid);
  ym_event_set_cstr(ev, YM_F_PROCESS_USER_ID, uid);
  const char *name = p != NULL ? user_name(p, e->uid) : NULL;
  if (name != NULL)
    ym_event_set_cstr(ev, YM_F_PROCESS_USER_NAME, name);
  if (e->ppid > 0) {
    ym_event_set_int(ev, YM_F_PROCESS_PARENT_PID, e->ppid);
    if (e->parent_entity_id[0])
      ym_event_set_cstr(ev, YM_F_PROCESS_PARENT_ENTITY_ID, e->parent_entity_id);
    const proc_entry_t *parent = proctab_get(&a->procs, e->ppid);
    if (parent != NULL && parent->exe != NULL) {
      ym_event_set_str(ev, YM_F_PROCESS_PARENT_EXECUTABLE, parent->exe, parent->exe_len);
      ym_event_set_cstr(ev, YM_F_PROCESS_PARENT_NAME, proctab_name(parent));
    }
  }
}

void psensor_event_process(agent_t *a, ym_event_t *ev, const proc_entry_t *e) {
  set_process(a->ps, ev, e);
  if (e->args != NULL && e->args_len > 0) {
    ym_event_set_nul_list(ev, YM_F_PROCESS_ARGS, e->args, e->args_len);
    os_proc_info_t info = {.args = e->args, .args_len = e->args_len};
    join_args(ev, &info);
  }
}

static void set_missing(ym_event_t *ev, const char *const *missing, size_t n) {
  if (n == 0)
    return;
  size_t lens[MAX_MISSING];
  for (size_t i = 0; i < n; i++)
    lens[i] = strlen(missing[i]);
  ym_event_set_strv(ev, YM_F_YAMORI_MISSING, missing, lens, n);
}

static void emit_end(psensor_t *p, proc_entry_t *e, int pid, int status, int64_t when) {
  agent_t *a = p->a;
  ym_event_t *ev = agent_event(a);
  set_common(ev, "end", "end");
  ym_event_set_time(ev, YM_F_TIMESTAMP, when);
  ym_event_set_time(ev, YM_F_PROCESS_END, when);
  if (e != NULL) {
    set_process(p, ev, e);
  } else {
    ym_event_set_int(ev, YM_F_PROCESS_PID, pid);
    static const char *const unknown[] = {"process.executable", "process.entity_id"};
    set_missing(ev, unknown, 2);
  }
  if (WIFSIGNALED(status)) {
    ym_event_set_int(ev, YM_F_PROCESS_EXIT_CODE, 128 + WTERMSIG(status));
    ym_event_set_int(ev, YM_F_YAMORI_PROCESS_EXIT_SIGNAL, WTERMSIG(status));
  } else {
    ym_event_set_int(ev, YM_F_PROCESS_EXIT_CODE, WEXITSTATUS(status));
  }
  a->counters.process_events++;
  agent_emit(a, ev);
}

static void finish_start(pstart_t *s, const char *hex) {
  psensor_t *p = s->ps;
  agent_t *a = p->a;
  if (hex != NULL)
    ym_event_set_cstr(&s->ev, YM_F_PROCESS_HASH_SHA256, hex);
  else if (s->nmissing < MAX_MISSING)
    s->missing[s->nmissing++] = "process.hash.sha256";
  set_missing(&s->ev, s->missing, s->nmissing);
  a->counters.process_events++;
  agent_emit(a, &s->ev);
  proc_entry_t *e = proctab_get(&a->procs, s->pid);
  if (e != NULL && e->start_pending) {
    e->start_pending = false;
    if (e->exit_pending) {
      emit_end(p, e, e->pid, e->exit_code, e->exit_ns);
      retire(p, e);
    }
  }
  ym_event_free(&s->ev);
  free(s);
}

static void on_hash(int err, const char *hex, void *data) {
  pstart_t *s = data;
  s->ps->pending--;
  finish_start(s, err == 0 ? hex : NULL);
}

static bool excluded_exe(const agent_t *a, const proc_entry_t *e) {
  const ym_strlist_t *l = &a->conf->exclude_executables;
  if (e->exe == NULL)
    return false;
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i], e->exe) == 0)
      return true;
  return false;
}

static void join_args(ym_event_t *ev, const os_proc_info_t *info) {
  /* command_line: the arguments joined by spaces, as the kernel's
   * NUL separators would show them. */
  char *line = malloc(info->args_len + 1);
  if (line == NULL)
    return;
  memcpy(line, info->args, info->args_len);
  size_t n = info->args_len;
  while (n > 0 && line[n - 1] == '\0')
    n--;
  for (size_t i = 0; i < n; i++)
    if (line[i] == '\0')
      line[i] = ' ';
  ym_event_set_str(ev, YM_F_PROCESS_COMMAND_LINE, line, n);
  free(line);
}

/* Group, login uid and session: known from the eBPF source only. */
static void set_ids(ym_event_t *ev, const os_proc_info_t *info) {
  char id[16];
  snprintf(id, sizeof(id), "%u", info->gid);
  ym_event_set_cstr(ev, YM_F_PROCESS_GROUP_ID, id);
  if (info->loginuid_ok) {
    snprintf(id, sizeof(id), "%u", info->loginuid);
    ym_event_set_cstr(ev, YM_F_YAMORI_PROCESS_LOGIN_UID, id);
    ym_event_set_int(ev, YM_F_YAMORI_PROCESS_SESSION_ID, info->sessionid);
  }
}

/* The program of a process whose /proc entry could not tell it (gone, or
 * a zombie already): the one the file sensor saw it open for execution,
 * else none. What the entry knew before (the parent's program, copied at
 * the fork, or the program before this exec) is not this program, and
 * reporting it would hide that the field is missing. */
static void forget_exe(proc_entry_t *e) {
  if (e->exec_open != NULL) {
    proctab_set_exe(e, e->exec_open, e->exec_open_len);
  } else if (e->exe != NULL) {
    free(e->exe);
    e->exe = NULL;
    e->exe_len = 0;
  }
}

static void on_exec(psensor_t *p, const os_procev_t *pe) {
  agent_t *a = p->a;
  const conf_t *c = a->conf;
  /* The kernel queued this program's exec notification (and its
   * interpreter's) before it sent the exec event: handle those first, so
   * the entry knows the program even if the process is already gone. */
  fsensor_drain(a->fs);
  proc_entry_t *e = proctab_upsert(&a->procs, pe->pid);
  os_proc_info_t info;
  /* The eBPF source recorded the exec itself; the proc connector's only
   * names the process, which is read from /proc now. */
  int rc = pe->info != NULL
               ? os_proc_info_copy(&info, pe->info)
               : os_proc_read(pe->pid, (size_t)c->max_args, (size_t)c->max_args_bytes, &info);

  pstart_t *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    if (rc == 0)
      os_proc_info_free(&info);
    return;
  }
  s->ps = p;
  s->pid = pe->pid;
  ym_event_init(&s->ev, &a->base);
  ym_event_t *ev = &s->ev;
  set_common(ev, "exec", "start");
  ym_event_set_time(ev, YM_F_TIMESTAMP, mono_to_real(pe->ts_ns));

  proc_entry_t tmp;
  if (e == NULL) { /* table full: report what this event knows */
    memset(&tmp, 0, sizeof(tmp));
    tmp.pid = pe->pid;
    e = &tmp;
  }
  if (rc == 0) {
    fill_entry_from_info(a, e, &info);
    if (e->parent_entity_id[0] == '\0')
      link_parent(e, a);
    if (info.args_ok) {
      ym_event_set_nul_list(ev, YM_F_PROCESS_ARGS, info.args, info.args_len);
      ym_event_set_int(ev, YM_F_PROCESS_ARGS_COUNT, info.argc);
      join_args(ev, &info);
      if (info.args_truncated)
        ym_event_set_bool(ev, YM_F_YAMORI_PROCESS_ARGS_TRUNCATED, true);
    } else {
      s->missing[s->nmissing++] = "process.args";
    }
    if (info.ids_ok)
      set_ids(ev, &info);
    if (info.env_len > 0)
      ym_event_set_nul_list(ev, YM_F_PROCESS_ENV_VARS, info.env, info.env_len);
    /* A loader variable may hide behind what could not be looked at. */
    if (info.env_partial && s->nmissing < MAX_MISSING)
      s->missing[s->nmissing++] = "process.env_vars";
    if (info.cwd_ok)
      ym_event_set_str(ev, YM_F_PROCESS_WORKING_DIRECTORY, info.cwd, info.cwd_len);
    else
      s->missing[s->nmissing++] = "process.working_directory";
    if (!info.exe_ok)
      forget_exe(e);
  } else {
    /* Gone before /proc could be read: the program the file sensor saw
     * it open for execution, and what the fork told us. */
    forget_exe(e);
    if (e->start_ticks == 0)
      proctab_set_start(&a->procs, e, ns_to_ticks(a, pe->ts_ns));
    s->missing[s->nmissing++] = "process.args";
    s->missing[s->nmissing++] = "process.working_directory";
  }
  if (e->exe == NULL && s->nmissing < MAX_MISSING)
    s->missing[s->nmissing++] = "process.executable";
  set_process(p, ev, e);
  bool skip = excluded_exe(a, e);

  /* Hash the program: the exact file the process runs when it still
   * exists, else the path seen at exec. */
  char hex[YM_SHA256_HEX_LEN + 1];
  int hrc = YM_ENOENT;
  int fd = -1;
  if (!skip) {
    char link[64];
    snprintf(link, sizeof(link), "/proc/%d/exe", pe->pid);
    fd = open(link, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 && e->exe != NULL)
      fd = open(e->exe, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
  }
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    if (p->pending >= (size_t)c->max_in_flight) {
      hrc = YM_EBUSY;
      a->counters.hash_skipped++;
    } else {
      hrc = hashcache_get(&a->hashes, fd, &st, hex, on_hash, s);
      if (hrc == 0)
        fd = -1; /* taken by the cache */
    }
  }
  if (fd >= 0)
    close(fd);
  if (rc == 0)
    os_proc_info_free(&info);
  if (e != &tmp)
    proctab_clear_exec_open(e);

  if (skip) {
    ym_event_free(&s->ev);
    free(s);
    return;
  }
  if (hrc == 0) {
    p->pending++;
    if (e != &tmp)
      e->start_pending = true;
    return;
  }
  finish_start(s, hrc == 1 ? hex : NULL);
}

static void on_fork(psensor_t *p, const os_procev_t *pe) {
  agent_t *a = p->a;
  proc_entry_t *old = proctab_get(&a->procs, pe->pid);
  if (old != NULL && old->exited)
    proctab_remove(&a->procs, pe->pid); /* the pid was reused */
  proc_entry_t *e = proctab_upsert(&a->procs, pe->pid);
  if (e == NULL)
    return;
  e->ppid = pe->ppid;
  int ppid;
  uint64_t ticks;
  if (pe->start_ticks != 0)
    proctab_set_start(&a->procs, e, pe->start_ticks);
  else if (os_proc_read_stat(pe->pid, &ppid, &ticks) == 0)
    proctab_set_start(&a->procs, e, ticks);
  else
    proctab_set_start(&a->procs, e, ns_to_ticks(a, pe->ts_ns));
  proc_entry_t *parent = psensor_lookup(a, pe->ppid);
  if (parent != NULL) {
    memcpy(e->parent_entity_id, parent->entity_id, sizeof(e->parent_entity_id));
    e->uid = parent->uid;
    if (parent->exe != NULL)
      proctab_set_exe(e, parent->exe, parent->exe_len);
    if (parent->args != NULL)
      proctab_set_args(e, parent->args, parent->args_len);
  }
}

static void on_exit_ev(psensor_t *p, const os_procev_t *pe) {
  agent_t *a = p->a;
  proc_entry_t *e = proctab_get(&a->procs, pe->pid);
  int64_t when = mono_to_real(pe->ts_ns);
  if (e != NULL && e->start_pending) {
    e->exit_pending = true;
    e->exit_code = pe->exit_code;
    e->exit_ns = when;
    return;
  }
  if (e != NULL && e->exited)
    return; /* already ended (a duplicate) */
  if (e == NULL || !excluded_exe(a, e))
    emit_end(p, e, pe->pid, pe->exit_code, when);
  if (e != NULL)
    retire(p, e);
}

static void on_procev(const os_procev_t *pe, void *data) {
  psensor_t *p = data;
  agent_t *a = p->a;
  if (pe->pid == a->self_pid && pe->kind != OS_PROCEV_LOST)
    return;
  switch (pe->kind) {
  case OS_PROCEV_FORK:
    on_fork(p, pe);
    break;
  case OS_PROCEV_EXEC:
    on_exec(p, pe);
    break;
  case OS_PROCEV_EXIT:
    on_exit_ev(p, pe);
    break;
  case OS_PROCEV_UID: {
    proc_entry_t *e = proctab_get(&a->procs, pe->pid);
    if (e != NULL)
      e->uid = pe->uid;
    break;
  }
  case OS_PROCEV_LOST:
    if (pe->lost_known) {
      a->counters.lost_process += pe->lost;
      if (p->bpf != NULL)
        agent_emit_gap(a, "ebpf", "ring_buffer_full", pe->lost, true);
      else
        agent_emit_gap(a, "proc_connector", "sequence", pe->lost, true);
    } else {
      a->counters.lost_process_unknown++;
      agent_emit_gap(a, "proc_connector", "receive_overrun", 0, false);
      resync(a, ++p->gen);
    }
    break;
  }
}

int psensor_new(agent_t *a, psensor_t **out) {
  psensor_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return YM_ENOMEM;
  p->a = a;
  p->retired = calloc(RETIRED_MAX, sizeof(*p->retired));
  if (p->retired == NULL) {
    free(p);
    return YM_ENOMEM;
  }
  uv_timer_init(a->loop, &p->purge);
  p->purge.data = p;
  uv_timer_start(&p->purge, on_purge, 1000, 1000);
  uv_unref((uv_handle_t *)&p->purge);
  p->purge_started = true;
  p->gen = 1;
  *out = p;
  return 0;
}

static void on_netev(const os_netev_t *ne, void *data) {
  psensor_t *p = data;
  nsensor_event(p->a->ns, ne);
}

/* Starts the eBPF source unless the configuration says `proc`. On failure
 * p->fallback says why; the caller falls back to the proc connector unless
 * the configuration insists on eBPF. */
static int start_bpf(psensor_t *p) {
  agent_t *a = p->a;
  if (a->conf->process_source == CONF_PROCESS_PROC) {
    snprintf(p->fallback, sizeof(p->fallback), "process.sensor is proc");
    return YM_ENOTSUP;
  }
  os_bpfwatch_opts_t o = {
      .max_args = (size_t)a->conf->max_args,
      .max_args_bytes = (size_t)a->conf->max_args_bytes,
      .self_pid = (int)a->self_pid,
      .net_cb = a->ns != NULL ? on_netev : NULL,
  };
  int rc = os_bpfwatch_new(a->loop, &o, on_procev, p, &p->bpf, p->fallback, sizeof(p->fallback));
  if (rc == 0) {
    rc = os_bpfwatch_start(p->bpf);
    if (rc != 0) {
      os_bpfwatch_free(p->bpf);
      p->bpf = NULL;
      snprintf(p->fallback, sizeof(p->fallback), "cannot poll the ring buffer");
    }
  }
  if (rc != 0) {
    ym_log(a->conf->process_source == CONF_PROCESS_EBPF ? YM_LOG_ERROR : YM_LOG_WARN, 0,
           "eBPF process sensor not used: %s%s", p->fallback,
           a->conf->process_source == CONF_PROCESS_EBPF ? "" : "; using the proc connector");
    return rc;
  }
  p->fallback[0] = '\0';
  ym_log(YM_LOG_INFO, 0, "process sensor: eBPF");
  return 0;
}

int psensor_start(psensor_t *p) {
  agent_t *a = p->a;
  int rc = start_bpf(p);
  if (rc == 0 || a->conf->process_source == CONF_PROCESS_EBPF)
    return rc;
  rc = os_procwatch_new(a->loop, (size_t)a->conf->netlink_rcvbuf, on_procev, p, &p->watch);
  if (rc != 0)
    return rc;
  /* Subscribe first, then seed: a process started in between is seen by
   * both, which the table absorbs. */
  rc = os_procwatch_start(p->watch);
  if (rc != 0) {
    os_procwatch_free(p->watch);
    p->watch = NULL;
    return rc;
  }
  return 0;
}

void psensor_stop(psensor_t *p) {
  if (p != NULL && p->bpf != NULL) {
    os_bpfwatch_free(p->bpf);
    p->bpf = NULL;
  }
  if (p != NULL && p->watch != NULL) {
    os_procwatch_free(p->watch);
    p->watch = NULL;
  }
  if (p != NULL && p->purge_started) {
    uv_close((uv_handle_t *)&p->purge, NULL);
    p->purge_started = false;
  }
}

void psensor_free(psensor_t *p) {
  if (p == NULL)
    return;
  psensor_stop(p);
  free(p->retired);
  free(p);
}

bool psensor_net_state(const psensor_t *p, char *why, size_t whylen) {
  if (p == NULL || p->bpf == NULL) {
    snprintf(why, whylen, "the eBPF sensor does not run%s%s",
             p != NULL && p->fallback[0] ? ": " : "", p != NULL ? p->fallback : "");
    return false;
  }
  os_bpfwatch_stats_t st;
  os_bpfwatch_stats(p->bpf, &st);
  snprintf(why, whylen, "%s", st.net_why);
  return st.net;
}

void psensor_status_json(const psensor_t *p, cJSON *k) {
  if (p == NULL)
    return;
  cJSON_AddStringToObject(k, "process_sensor", p->bpf != NULL ? "ebpf" : "proc_connector");
  if (p->bpf == NULL && p->fallback[0] != '\0')
    cJSON_AddStringToObject(k, "process_sensor_fallback", p->fallback);
  if (p->bpf != NULL) {
    os_bpfwatch_stats_t st;
    os_bpfwatch_stats(p->bpf, &st);
    cJSON_AddNumberToObject(k, "ebpf_events", (double)st.events);
    cJSON_AddNumberToObject(k, "ebpf_lost", (double)st.lost);
    cJSON_AddNumberToObject(k, "ebpf_args_truncated", (double)st.truncated);
    cJSON_AddBoolToObject(k, "ebpf_uid_events", st.uid_events);
  }
}
