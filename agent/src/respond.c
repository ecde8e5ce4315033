/*
 * Remote response (see respond.h): the record of commands, their
 * execution, their results, and the rings of recent events for triage.
 */
#include "respond.h"

#include "detect.h"
#include "os.h"
#include "protect.h"
#include "quarantine.h"
#include "triage.h"
#include "uplink.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/log.h"
#include "yamori/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define STATE_MAX (16 * 1024 * 1024) /* 256 records of at most 48 KiB each, and more */
#define RESULT_MAX (48 * 1024)
#define RING_EVENT_MAX (16 * 1024)
#define PATH_ARG_MAX 4095
#define KILL_WAIT_MS 5000
#define COMMANDS_PER_ANSWER 32

typedef enum { REC_RUNNING = 0, REC_DONE, REC_FAILED } rec_state_t;

static const char *const state_names[] = {"running", "done", "failed"};

typedef struct rec {
  struct respond *r;
  int64_t id;
  char kind[16];
  char fp[17]; /* fingerprint of kind and arguments ("" unknown) */
  rec_state_t state;
  cJSON *args;   /* while running */
  cJSON *result; /* once finished (may be NULL) */
  char *error;   /* once failed */
  bool posted;   /* the console acknowledged the result */
  bool posting;  /* a result request is queued */
  bool started;  /* execution began */
  uint64_t snap; /* the save that first recorded it as running; 0 none yet */
  /* scan */
  cJSON *matches;
  uint64_t found;
  bool matches_truncated;
  /* triage: the bundle waiting for its upload */
  void *bundle;
  size_t bundle_len;
  bool uploading;
  cJSON *bundle_result;
} rec_t;

struct respond {
  agent_t *a;
  rec_t *recs[RESPOND_MAX_RECORDS];
  size_t nrecs;
  char path[1200];
  bool saving, save_again, stopping;
  uint64_t gen; /* saves launched */
  char *starts[RESPOND_RING];
  uint64_t nstarts;
  char *files[RESPOND_RING];
  uint64_t nfiles;
  protect_t prot; /* what commands never touch; copied into each job */
};

static void start_saved(respond_t *r, uint64_t gen);
static void protect_build(respond_t *r);
static void run(rec_t *rec);

/* ---------------------------------------------------------------- */
/* Records                                                            */

static void rec_free(rec_t *rec) {
  if (rec == NULL)
    return;
  cJSON_Delete(rec->args);
  cJSON_Delete(rec->result);
  cJSON_Delete(rec->matches);
  cJSON_Delete(rec->bundle_result);
  free(rec->error);
  free(rec->bundle);
  free(rec);
}

static rec_t *rec_find(respond_t *r, int64_t id) {
  for (size_t i = 0; i < r->nrecs; i++)
    if (r->recs[i]->id == id)
      return r->recs[i];
  return NULL;
}

/* A new record; the oldest finished and acknowledged one makes room when
 * the table is full. NULL when nothing can go. */
static rec_t *rec_add(respond_t *r, int64_t id, const char *kind) {
  if (r->nrecs >= RESPOND_MAX_RECORDS) {
    size_t i = 0;
    while (i < r->nrecs &&
           !(r->recs[i]->state != REC_RUNNING && r->recs[i]->posted && !r->recs[i]->posting))
      i++;
    if (i == r->nrecs)
      return NULL;
    rec_free(r->recs[i]);
    memmove(&r->recs[i], &r->recs[i + 1], (r->nrecs - i - 1) * sizeof(rec_t *));
    r->nrecs--;
  }
  rec_t *rec = calloc(1, sizeof(*rec));
  if (rec == NULL)
    return NULL;
  rec->r = r;
  rec->id = id;
  snprintf(rec->kind, sizeof(rec->kind), "%s", kind);
  r->recs[r->nrecs++] = rec;
  return rec;
}

/* ---------------------------------------------------------------- */
/* The state file                                                     */

typedef struct {
  uv_work_t w;
  respond_t *r;
  char *text;
  uint64_t gen;
  int rc;
} save_t;

static void save_work(uv_work_t *w) {
  save_t *s = w->data;
  char tmp[1300];
  snprintf(tmp, sizeof(tmp), "%s.tmp", s->r->path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    s->rc = ym_err_from_errno(errno);
    return;
  }
  size_t len = strlen(s->text), off = 0;
  s->rc = 0;
  while (off < len && s->rc == 0) {
    ssize_t n = write(fd, s->text + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      s->rc = YM_EIO;
    else
      off += (size_t)n;
  }
  if (s->rc == 0 && fsync(fd) != 0)
    s->rc = YM_EIO;
  close(fd);
  if (s->rc == 0 && rename(tmp, s->r->path) != 0)
    s->rc = ym_err_from_errno(errno);
  if (s->rc != 0)
    unlink(tmp);
}

static void save(respond_t *r);

static void save_done(uv_work_t *w, int status) {
  save_t *s = w->data;
  respond_t *r = s->r;
  (void)status;
  if (s->rc != 0)
    ym_log(YM_LOG_ERROR, s->rc, "cannot record remote commands in %s", r->path);
  r->saving = false;
  start_saved(r, s->gen);
  free(s->text);
  free(s);
  if (r->save_again) {
    r->save_again = false;
    save(r);
  }
}

static char *serialize(respond_t *r) {
  cJSON *j = cJSON_CreateObject();
  cJSON *arr = cJSON_AddArrayToObject(j, "commands");
  for (size_t i = 0; i < r->nrecs; i++) {
    const rec_t *rec = r->recs[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)rec->id);
    cJSON_AddStringToObject(o, "kind", rec->kind);
    cJSON_AddStringToObject(o, "fp", rec->fp);
    cJSON_AddStringToObject(o, "state", state_names[rec->state]);
    if (rec->result != NULL)
      cJSON_AddItemToObject(o, "result", cJSON_Duplicate(rec->result, true));
    if (rec->error != NULL)
      ym_json_add_bytes(o, "error", rec->error, strlen(rec->error));
    cJSON_AddBoolToObject(o, "posted", rec->posted);
    cJSON_AddItemToArray(arr, o);
  }
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return text;
}

/* Writes the records off the loop; one write at a time, the latest state
 * last. */
static void save(respond_t *r) {
  if (r->saving) {
    r->save_again = true;
    return;
  }
  save_t *s = calloc(1, sizeof(*s));
  char *text = serialize(r);
  if (s == NULL || text == NULL) {
    free(s);
    free(text);
    ym_log(YM_LOG_ERROR, YM_ENOMEM, "cannot record remote commands");
    uint64_t gen = ++r->gen;
    for (size_t i = 0; i < r->nrecs; i++)
      if (r->recs[i]->state == REC_RUNNING && r->recs[i]->snap == 0)
        r->recs[i]->snap = gen;
    start_saved(r, gen); /* run anyway */
    return;
  }
  s->gen = ++r->gen;
  for (size_t i = 0; i < r->nrecs; i++)
    if (r->recs[i]->state == REC_RUNNING && r->recs[i]->snap == 0)
      r->recs[i]->snap = s->gen;
  s->r = r;
  s->text = text;
  s->w.data = s;
  r->saving = true;
  uv_queue_work(r->a->loop, &s->w, save_work, save_done);
}

/* Reads the records at start. A command still running was interrupted by
 * a stop or a crash: it is failed now and its result posted. */
static void load(respond_t *r) {
  int fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return;
  ym_buf_t b;
  ym_buf_init(&b, STATE_MAX);
  char chunk[16384];
  ssize_t n;
  while ((n = read(fd, chunk, sizeof(chunk))) > 0)
    if (ym_buf_append(&b, chunk, (size_t)n) != 0)
      break;
  close(fd);
  cJSON *j = NULL;
  if (b.data == NULL || ym_json_parse_lenient(b.data, b.len, STATE_MAX, &j) != 0) {
    ym_log(YM_LOG_WARN, 0, "ignoring an unreadable %s", r->path);
    ym_buf_free(&b);
    return;
  }
  ym_buf_free(&b);
  bool changed = false;
  const cJSON *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "commands")) {
    long long id = 0;
    const char *kind = ym_json_get_str(it, "kind");
    const char *state = ym_json_get_str(it, "state");
    if (!ym_json_get_int(it, "id", &id) || id <= 0 || kind == NULL || state == NULL ||
        rec_find(r, id) != NULL)
      continue;
    rec_t *rec = rec_add(r, id, kind);
    if (rec == NULL)
      break;
    rec->started = true;
    const char *fp = ym_json_get_str(it, "fp");
    if (fp != NULL && strlen(fp) == 16)
      memcpy(rec->fp, fp, 17);
    rec->posted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "posted"));
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(it, "result");
    if (cJSON_IsObject(res))
      rec->result = cJSON_Duplicate(res, true);
    const char *err = ym_json_get_str(it, "error");
    if (strcmp(state, "done") == 0) {
      rec->state = REC_DONE;
    } else if (strcmp(state, "failed") == 0) {
      rec->state = REC_FAILED;
      rec->error = strdup(err ? err : "");
    } else {
      rec->state = REC_FAILED;
      rec->error = strdup("interrupted: the agent stopped while the command ran; it was not "
                          "run again");
      rec->posted = false;
      changed = true;
    }
  }
  cJSON_Delete(j);
  if (changed)
    save(r);
}

/* ---------------------------------------------------------------- */
/* Results                                                            */

static void post_result(rec_t *rec);

static void on_posted(int rc, long status, const void *body, size_t len, void *data) {
  rec_t *rec = data;
  (void)body;
  (void)len;
  rec->posting = false;
  if (rc == 0 && status >= 200 && status < 300) {
    rec->posted = true;
    save(rec->r);
  } else if (rc == 0 && status >= 400 && status < 500 && status != 408 && status != 429) {
    /* The console will not take it (404: it does not know the command):
     * sending again would not help. */
    ym_log(YM_LOG_WARN, 0, "the console refused the result of command %lld (HTTP %ld)",
           (long long)rec->id, status);
    rec->posted = true;
    save(rec->r);
  }
  /* Otherwise it goes again with the next check-in. */
}

static void post_result(rec_t *rec) {
  respond_t *r = rec->r;
  if (rec->posting || rec->state == REC_RUNNING || r->a->up == NULL)
    return;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "state", rec->state == REC_DONE ? "done" : "failed");
  if (rec->result != NULL)
    cJSON_AddItemToObject(j, "result", cJSON_Duplicate(rec->result, true));
  else
    cJSON_AddNullToObject(j, "result");
  const char *err = rec->error ? rec->error : "";
  ym_json_add_bytes(j, "error", err, strlen(err));
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (text == NULL)
    return;
  char path[64];
  snprintf(path, sizeof(path), "/api/v1/commands/%lld/result", (long long)rec->id);
  uplink_req_t q = {"POST", path, NULL, text, strlen(text), 4096, -1, 0};
  if (uplink_request(r->a->up, &q, on_posted, rec) == 0)
    rec->posting = true;
  free(text);
}

typedef struct {
  const char *path;
  size_t path_len;
  const char *qid;
  const char *sha256;
  int pid;
  const char *entity_id;
} ev_info_t;

static void emit_response(rec_t *rec, const ev_info_t *x) {
  agent_t *a = rec->r->a;
  ym_event_t *ev = agent_event(a);
  char action[40];
  snprintf(action, sizeof(action), "response-%s", rec->kind);
  bool proc = strcmp(rec->kind, "kill") == 0 || strcmp(rec->kind, "triage") == 0;
  ym_event_set_cstr(ev, YM_F_EVENT_KIND, "event");
  ym_event_set_one(ev, YM_F_EVENT_CATEGORY, proc ? "process" : "file");
  ym_event_set_one(ev, YM_F_EVENT_TYPE, "info");
  ym_event_set_cstr(ev, YM_F_EVENT_ACTION, action);
  ym_event_set_cstr(ev, YM_F_EVENT_DATASET, "yamori.response");
  ym_event_set_cstr(ev, YM_F_EVENT_OUTCOME, rec->state == REC_DONE ? "success" : "failure");
  if (rec->state != REC_DONE && rec->error != NULL)
    ym_event_set_cstr(ev, YM_F_EVENT_REASON, rec->error);
  ym_event_set_int(ev, YM_F_YAMORI_COMMAND_ID, rec->id);
  ym_event_set_cstr(ev, YM_F_YAMORI_COMMAND_KIND, rec->kind);
  ym_event_set_cstr(ev, YM_F_YAMORI_COMMAND_STATE, rec->state == REC_DONE ? "done" : "failed");
  if (x != NULL) {
    if (x->path != NULL)
      ym_event_set_str(ev, YM_F_FILE_PATH, x->path, x->path_len);
    if (x->qid != NULL && x->qid[0])
      ym_event_set_cstr(ev, YM_F_YAMORI_QUARANTINE_ID, x->qid);
    if (x->sha256 != NULL && x->sha256[0])
      ym_event_set_cstr(ev, YM_F_FILE_HASH_SHA256, x->sha256);
    if (x->pid > 0)
      ym_event_set_int(ev, YM_F_PROCESS_PID, x->pid);
    if (x->entity_id != NULL && x->entity_id[0])
      ym_event_set_cstr(ev, YM_F_PROCESS_ENTITY_ID, x->entity_id);
  }
  agent_emit(a, ev);
}

/* Ends a command: result (taken) or error, the event, the record, the
 * post. */
static void finish(rec_t *rec, cJSON *result, const char *error, const ev_info_t *x) {
  respond_t *r = rec->r;
  rec->state = error == NULL ? REC_DONE : REC_FAILED;
  cJSON_Delete(rec->result);
  rec->result = result;
  if (rec->result != NULL) {
    char *t = cJSON_PrintUnformatted(rec->result);
    if (t == NULL || strlen(t) > RESULT_MAX) {
      cJSON_Delete(rec->result);
      rec->result = cJSON_CreateObject();
      cJSON_AddTrueToObject(rec->result, "result_too_large");
    }
    free(t);
  }
  free(rec->error);
  rec->error = error != NULL ? strdup(error) : NULL;
  ym_log(error == NULL ? YM_LOG_NOTICE : YM_LOG_WARN, 0, "console command %lld (%s): %s%s%s",
         (long long)rec->id, rec->kind, error == NULL ? "done" : "failed",
         error == NULL ? "" : ": ", error == NULL ? "" : error);
  emit_response(rec, x); /* x may point into the arguments */
  cJSON_Delete(rec->args);
  rec->args = NULL;
  save(r);
  post_result(rec);
}

static void fail(rec_t *rec, const char *error) {
  finish(rec, NULL, error, NULL);
}

/* ---------------------------------------------------------------- */
/* scan                                                               */

static void on_scan_result(const scan_req_t *req, const char *qid, void *data) {
  rec_t *rec = data;
  if (req->verdict != SCAN_MALICIOUS)
    return;
  rec->found++;
  if (cJSON_GetArraySize(rec->matches) >= RESPOND_SCAN_MATCHES) {
    rec->matches_truncated = true;
    return;
  }
  cJSON *m = cJSON_CreateObject();
  if (req->path != NULL)
    ym_json_add_bytes(m, "path", req->path, strlen(req->path));
  cJSON_AddStringToObject(m, "rule", req->first.rule);
  if (req->sha256[0])
    cJSON_AddStringToObject(m, "sha256", req->sha256);
  if (qid != NULL)
    cJSON_AddStringToObject(m, "quarantine_id", qid);
  cJSON_AddItemToArray(rec->matches, m);
}

static void on_scan_finished(uint64_t files, uint64_t errors, void *data) {
  rec_t *rec = data;
  const char *path = ym_json_get_str(rec->args, "path");
  cJSON *res = cJSON_CreateObject();
  ym_json_add_bytes(res, "path", path, strlen(path));
  cJSON_AddNumberToObject(res, "files", (double)files);
  cJSON_AddNumberToObject(res, "errors", (double)errors);
  cJSON_AddNumberToObject(res, "found", (double)rec->found);
  cJSON_AddItemToObject(res, "matches", rec->matches);
  rec->matches = NULL;
  cJSON_AddBoolToObject(res, "matches_truncated", rec->matches_truncated);
  ev_info_t x = {path, strlen(path), NULL, NULL, 0, NULL};
  if (files == 0 && errors > 0) {
    finish(rec, res, "cannot open the path", &x);
    return;
  }
  finish(rec, res, NULL, &x);
}

static void run_scan(rec_t *rec) {
  agent_t *a = rec->r->a;
  const char *path = ym_json_get_str(rec->args, "path");
  rec->matches = cJSON_CreateArray();
  const char *paths[1] = {path};
  if (a->det == NULL || rec->matches == NULL ||
      detect_scan(a->det, paths, 1, on_scan_result, on_scan_finished, rec) != 0)
    fail(rec, "cannot start the scan");
}

/* ---------------------------------------------------------------- */
/* quarantine, restore, kill: on the thread pool                      */

typedef struct {
  uv_work_t w;
  rec_t *rec;
  int op; /* 0 quarantine, 1 restore, 2 kill */
  char path[PATH_ARG_MAX + 1];
  char qdir[1100];
  char qid[QUARANTINE_ID_LEN + 1];
  protect_t prot;
  quarantine_entry_t entry;
  /* kill */
  int pid, self_pid;
  char boot_id[40];
  char want_entity[PROCTAB_ENTITY_LEN + 1];
  char entity[PROCTAB_ENTITY_LEN + 1];
  char comm[32];
  bool exited;
  int rc;
  const char *why;
  respond_kill_cb kill_cb; /* a kill asked by the agent itself (rec is NULL) */
  void *kill_data;
} job_t;

#define WHY_OWN_FILES                                                                              \
  "refused: the agent's own files are not quarantined (its state, spool, update, versions, "       \
  "keys, configuration or quarantine directory)"

#define WHY_NOT_KILLED "refused: the agent, its launcher and PID 1 are not killed"

/* Would the quarantine of the file open as fd at path touch the agent's
 * own files? A first look, for a clear error: it follows symbolic links
 * above the file as open() did. quarantine_file_protected() decides, on
 * the directory its walk without links reaches. */
static bool own_file(const job_t *j, int fd) {
  struct stat st;
  if (fstat(fd, &st) == 0 && protect_has_file(&j->prot, (uint64_t)st.st_dev, (uint64_t)st.st_ino))
    return true;
  char dir[PATH_ARG_MAX + 1];
  snprintf(dir, sizeof(dir), "%s", j->path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL)
    return false;
  if (slash == dir)
    slash[1] = '\0';
  else
    *slash = '\0';
  int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return false;
  bool own = protect_check_dir(&j->prot, dfd) == YM_EPERM;
  close(dfd);
  return own;
}

static void do_quarantine(job_t *j) {
  int fd = open(j->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    j->rc = ym_err_from_errno(errno);
    j->why = errno == ELOOP ? "the path is a symbolic link" : NULL;
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    j->rc = YM_EINVAL;
    j->why = "not a regular file";
    return;
  }
  if (own_file(j, fd)) {
    close(fd);
    j->rc = YM_EPERM;
    j->why = WHY_OWN_FILES;
    return;
  }
  j->rc = quarantine_file_protected(j->qdir, fd, j->path, "console-command", &j->prot, &j->entry);
  close(fd);
  if (j->rc == YM_EPERM)
    j->why = WHY_OWN_FILES;
}

static void do_kill(job_t *j) {
  /* The agent's own pid cannot belong to another process while it runs;
   * the others are checked by identity below. */
  if (j->pid <= 1 || j->pid == j->self_pid) {
    j->rc = YM_EPERM;
    j->why = WHY_NOT_KILLED;
    return;
  }
  /* The pidfd pins the process: whatever is checked below is the process
   * the signal goes to, even if the pid is reused meanwhile. */
  int pfd = (int)syscall(SYS_pidfd_open, j->pid, 0);
  if (pfd < 0) {
    j->rc = ym_err_from_errno(errno);
    j->why = errno == ESRCH ? "no such process" : NULL;
    return;
  }
  int ppid;
  uint64_t ticks;
  if (os_proc_read_stat(j->pid, &ppid, &ticks) != 0) {
    close(pfd);
    j->rc = YM_ENOENT;
    j->why = "no such process";
    return;
  }
  proctab_entity_id(j->boot_id, j->pid, ticks, j->entity);
  if (protect_has_proc(&j->prot, j->pid, ticks)) {
    close(pfd);
    j->rc = YM_EPERM;
    j->why = WHY_NOT_KILLED;
    return;
  }
  /* The stat read above describes the pidfd's process only if that process
   * has not ended (a pid is reused only after its process ended). */
  struct pollfd alive = {pfd, POLLIN, 0};
  if (poll(&alive, 1, 0) != 0) {
    close(pfd);
    j->rc = YM_ESTALE;
    j->why = "the process ended while it was checked";
    return;
  }
  if (j->want_entity[0] && strcmp(j->want_entity, j->entity) != 0) {
    close(pfd);
    j->rc = YM_ESTALE;
    j->why = "entity id mismatch: the pid belongs to another process now; not killed";
    return;
  }
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/comm", j->pid);
  int cfd = open(path, O_RDONLY | O_CLOEXEC);
  if (cfd >= 0) {
    ssize_t n = read(cfd, j->comm, sizeof(j->comm) - 1);
    close(cfd);
    if (n > 0)
      j->comm[n - (j->comm[n - 1] == '\n')] = '\0';
  }
  if (syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0) != 0) {
    j->rc = ym_err_from_errno(errno);
    close(pfd);
    return;
  }
  /* The pidfd becomes readable when the process has ended. */
  struct pollfd p = {pfd, POLLIN, 0};
  j->exited = poll(&p, 1, KILL_WAIT_MS) == 1;
  close(pfd);
  j->rc = 0;
}

static void job_work(uv_work_t *w) {
  job_t *j = w->data;
  if (j->op == 0)
    do_quarantine(j);
  else if (j->op == 1) {
    j->rc = quarantine_restore_protected(j->qdir, j->qid, &j->prot, &j->entry);
    if (j->rc == YM_EPERM)
      j->why = "refused: the original directory is one of the agent's own";
  } else
    do_kill(j);
}

static void job_done(uv_work_t *w, int status) {
  job_t *j = w->data;
  rec_t *rec = j->rec;
  (void)status;
  char err[256];
  snprintf(err, sizeof(err), "%s", j->why ? j->why : ym_strerror(j->rc));
  if (j->kill_cb != NULL) {
    j->kill_cb(j->rc, j->rc != 0 ? err : NULL, j->exited, j->kill_data);
    free(j);
    return;
  }
  if (j->op == 2) {
    ev_info_t x = {NULL, 0, NULL, NULL, j->pid, j->entity};
    if (j->rc != 0) {
      finish(rec, NULL, err, &x);
    } else {
      cJSON *res = cJSON_CreateObject();
      cJSON_AddNumberToObject(res, "pid", j->pid);
      cJSON_AddStringToObject(res, "entity_id", j->entity);
      ym_json_add_bytes(res, "name", j->comm, strlen(j->comm));
      cJSON_AddStringToObject(res, "signal", "SIGKILL");
      cJSON_AddBoolToObject(res, "exited", j->exited);
      finish(rec, res, NULL, &x);
    }
  } else {
    const char *p = j->rc == 0 && j->entry.original_path ? j->entry.original_path : j->path;
    ev_info_t x = {
        p, strlen(p), j->rc == 0 ? j->entry.id : j->qid, j->rc == 0 ? j->entry.sha256 : NULL,
        0, NULL};
    if (j->rc != 0) {
      finish(rec, NULL, err, &x);
    } else {
      cJSON *res = cJSON_CreateObject();
      cJSON_AddStringToObject(res, "id", j->entry.id);
      ym_json_add_bytes(res, "path", p, strlen(p));
      cJSON_AddStringToObject(res, "sha256", j->entry.sha256);
      cJSON_AddNumberToObject(res, "size", (double)j->entry.size);
      finish(rec, res, NULL, &x);
    }
  }
  quarantine_entry_free(&j->entry);
  free(j);
}

static void quarantine_dir(agent_t *a, char *out, size_t size) {
  if (a->det != NULL)
    snprintf(out, size, "%s", detect_quarantine_dir(a->det));
  else
    snprintf(out, size, "%s/quarantine", a->conf->state_dir);
}

static void run_job(rec_t *rec, int op) {
  agent_t *a = rec->r->a;
  job_t *j = calloc(1, sizeof(*j));
  if (j == NULL) {
    fail(rec, "out of memory");
    return;
  }
  j->rec = rec;
  j->op = op;
  quarantine_dir(a, j->qdir, sizeof(j->qdir));
  /* Recorded again for each command (a few stat calls): a directory made
   * anew since (the spool re-creates a removed state directory) has a new
   * inode, and a command is rare. */
  protect_build(rec->r);
  j->prot = rec->r->prot;
  const char *s;
  if ((s = ym_json_get_str(rec->args, "path")) != NULL)
    snprintf(j->path, sizeof(j->path), "%s", s);
  if ((s = ym_json_get_str(rec->args, "id")) != NULL)
    snprintf(j->qid, sizeof(j->qid), "%s", s);
  if ((s = ym_json_get_str(rec->args, "entity_id")) != NULL)
    snprintf(j->want_entity, sizeof(j->want_entity), "%s", s);
  long long pid = 0;
  ym_json_get_int(rec->args, "pid", &pid);
  j->pid = (int)pid;
  j->self_pid = a->self_pid;
  snprintf(j->boot_id, sizeof(j->boot_id), "%s", a->boot_id);
  j->w.data = j;
  uv_queue_work(a->loop, &j->w, job_work, job_done);
}

int respond_kill(respond_t *r, int pid, const char *entity_id, respond_kill_cb cb, void *data) {
  if (r == NULL)
    return YM_ENOTSUP;
  if (r->stopping)
    return YM_ECANCELED;
  if (entity_id == NULL || strlen(entity_id) != PROCTAB_ENTITY_LEN)
    return YM_EINVAL; /* never a kill by pid alone */
  job_t *j = calloc(1, sizeof(*j));
  if (j == NULL)
    return YM_ENOMEM;
  j->op = 2;
  j->prot = r->prot;
  j->pid = pid;
  j->self_pid = r->a->self_pid;
  snprintf(j->boot_id, sizeof(j->boot_id), "%s", r->a->boot_id);
  snprintf(j->want_entity, sizeof(j->want_entity), "%s", entity_id);
  j->kill_cb = cb;
  j->kill_data = data;
  j->w.data = j;
  int rc = uv_queue_work(r->a->loop, &j->w, job_work, job_done);
  if (rc != 0) {
    free(j);
    return YM_EIO;
  }
  return 0;
}

/* ---------------------------------------------------------------- */
/* triage                                                             */

typedef struct {
  uv_work_t w;
  rec_t *rec;
  triage_opts_t o;
  char root[1100];
  char agent_id[40];
  char boot_id[40];
  char **starts, **files;
  ym_buf_t gz;
  triage_stats_t st;
  int rc;
} triage_job_t;

static void triage_work(uv_work_t *w) {
  triage_job_t *t = w->data;
  t->rc = triage_collect(&t->o, &t->gz, &t->st);
}

static void upload_bundle(rec_t *rec);

static void on_uploaded(int rc, long status, const void *body, size_t len, void *data) {
  rec_t *rec = data;
  (void)body;
  (void)len;
  rec->uploading = false;
  if (rc == 0 && status >= 200 && status < 300) {
    free(rec->bundle);
    rec->bundle = NULL;
    cJSON *res = rec->bundle_result;
    rec->bundle_result = NULL;
    finish(rec, res, NULL, NULL);
  } else if (rc == 0 && status >= 400 && status < 500 && status != 408 && status != 429) {
    char err[96];
    snprintf(err, sizeof(err), "the console refused the bundle (HTTP %ld)", status);
    free(rec->bundle);
    rec->bundle = NULL;
    finish(rec, NULL, err, NULL);
  }
  /* Otherwise the upload is tried again with the next check-in. */
}

static void upload_bundle(rec_t *rec) {
  respond_t *r = rec->r;
  if (rec->bundle == NULL || rec->uploading || r->a->up == NULL)
    return;
  char path[64];
  snprintf(path, sizeof(path), "/api/v1/commands/%lld/bundle", (long long)rec->id);
  uplink_req_t q = {"POST", path, "application/gzip", rec->bundle, rec->bundle_len, 4096, -1, 0};
  if (uplink_request(r->a->up, &q, on_uploaded, rec) == 0)
    rec->uploading = true;
}

static void triage_done(uv_work_t *w, int status) {
  triage_job_t *t = w->data;
  rec_t *rec = t->rec;
  (void)status;
  for (size_t i = 0; i < t->o.n_starts; i++)
    free(t->starts[i]);
  for (size_t i = 0; i < t->o.n_files; i++)
    free(t->files[i]);
  free(t->starts);
  free(t->files);
  if (t->rc != 0) {
    char err[128];
    snprintf(err, sizeof(err), "cannot build the bundle: %s", ym_strerror(t->rc));
    ym_buf_free(&t->gz);
    free(t);
    fail(rec, err);
    return;
  }
  uint8_t d[YM_SHA256_LEN];
  char hex[2 * YM_SHA256_LEN + 1];
  ym_sha256_mem(t->gz.data, t->gz.len, d);
  ym_hex(d, YM_SHA256_LEN, hex);
  cJSON *res = cJSON_CreateObject();
  cJSON_AddNumberToObject(res, "bundle_bytes", (double)t->gz.len);
  cJSON_AddStringToObject(res, "bundle_sha256", hex);
  cJSON_AddNumberToObject(res, "json_bytes", (double)t->st.json_bytes);
  cJSON_AddNumberToObject(res, "processes", (double)t->st.processes);
  cJSON_AddNumberToObject(res, "persistence", (double)t->st.persistence);
  cJSON_AddNumberToObject(res, "listening", (double)t->st.listening);
  cJSON_AddNumberToObject(res, "recent_process_starts", (double)t->st.recent_starts);
  cJSON_AddNumberToObject(res, "recent_file_activity", (double)t->st.recent_files);
  cJSON_AddBoolToObject(res, "truncated", t->st.truncated != 0);
  rec->bundle_result = res;
  rec->bundle = ym_buf_detach(&t->gz, &rec->bundle_len);
  free(t);
  if (rec->bundle == NULL) {
    cJSON_Delete(rec->bundle_result);
    rec->bundle_result = NULL;
    fail(rec, "empty bundle");
    return;
  }
  if (rec->r->a->up == NULL) {
    fail(rec, "no console link to upload the bundle");
    return;
  }
  upload_bundle(rec);
}

/* Copies a ring, oldest first. */
static char **ring_copy(char *const *ring, uint64_t total, size_t *n) {
  size_t count = total < RESPOND_RING ? (size_t)total : RESPOND_RING;
  char **v = calloc(count + 1, sizeof(char *));
  *n = 0;
  if (v == NULL)
    return NULL;
  for (size_t i = 0; i < count; i++) {
    const char *s = ring[(total - count + i) % RESPOND_RING];
    if (s != NULL && (v[*n] = strdup(s)) != NULL)
      (*n)++;
  }
  return v;
}

static void run_triage(rec_t *rec) {
  respond_t *r = rec->r;
  agent_t *a = r->a;
  triage_job_t *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    fail(rec, "out of memory");
    return;
  }
  t->rec = rec;
  snprintf(t->root, sizeof(t->root), "%s", a->conf->triage_root);
  snprintf(t->agent_id, sizeof(t->agent_id), "%s", a->agent_id);
  snprintf(t->boot_id, sizeof(t->boot_id), "%s", a->boot_id);
  t->starts = ring_copy(r->starts, r->nstarts, &t->o.n_starts);
  t->files = ring_copy(r->files, r->nfiles, &t->o.n_files);
  t->o.root = t->root;
  t->o.boot_id = t->boot_id;
  t->o.clock_ticks = a->clock_ticks;
  t->o.boot_ns = a->boot_ns;
  t->o.agent_id = t->agent_id;
  t->o.command_id = rec->id;
  t->o.recent_starts = t->starts;
  t->o.recent_files = t->files;
  ym_buf_init(&t->gz, UPLINK_BODY_MAX);
  t->w.data = t;
  uv_queue_work(a->loop, &t->w, triage_work, triage_done);
}

/* ---------------------------------------------------------------- */
/* Check-ins                                                          */

static bool hex32(const char *s) {
  return s != NULL && strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

/* The console checks arguments; the agent checks them again. */
static const char *check_args(const char *kind, const cJSON *args) {
  if (strcmp(kind, "scan") == 0 || strcmp(kind, "quarantine") == 0) {
    const char *p = ym_json_get_str(args, "path");
    if (p == NULL || p[0] != '/' || strlen(p) > PATH_ARG_MAX)
      return "args.path must be an absolute path";
    for (const char *c = p; *c; c++)
      if ((unsigned char)*c < 0x20 || *c == 0x7f)
        return "args.path contains a control character";
    return NULL;
  }
  if (strcmp(kind, "restore") == 0)
    return hex32(ym_json_get_str(args, "id")) ? NULL : "args.id must be a quarantine id";
  if (strcmp(kind, "kill") == 0) {
    long long pid;
    if (!ym_json_get_int(args, "pid", &pid) || pid < 2 || pid > 4194304)
      return "args.pid must be a process id";
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(args, "entity_id");
    if (e != NULL && !(cJSON_IsString(e) && hex32(e->valuestring)))
      return "args.entity_id must be 32 hex characters";
    return NULL;
  }
  if (strcmp(kind, "triage") == 0)
    return NULL;
  return "unknown command kind";
}

static void run(rec_t *rec) {
  rec->started = true;
  if (rec->r->stopping) {
    fail(rec, "the agent is stopping");
    return;
  }
  ym_log(YM_LOG_NOTICE, 0, "console command %lld: %s", (long long)rec->id, rec->kind);
  if (strcmp(rec->kind, "scan") == 0)
    run_scan(rec);
  else if (strcmp(rec->kind, "quarantine") == 0)
    run_job(rec, 0);
  else if (strcmp(rec->kind, "restore") == 0)
    run_job(rec, 1);
  else if (strcmp(rec->kind, "kill") == 0)
    run_job(rec, 2);
  else
    run_triage(rec);
}

/* Starts the commands recorded as running by save number gen. */
static void start_saved(respond_t *r, uint64_t gen) {
  rec_t *todo[RESPOND_MAX_RECORDS];
  size_t n = 0;
  for (size_t i = 0; i < r->nrecs; i++) {
    rec_t *rec = r->recs[i];
    if (rec->state == REC_RUNNING && !rec->started && rec->snap != 0 && rec->snap <= gen)
      todo[n++] = rec;
  }
  for (size_t i = 0; i < n; i++)
    run(todo[i]); /* may finish at once and change the table's order, not its members */
}

/* A command's fingerprint: the same id with another kind or other
 * arguments is another command (a console that started its numbering
 * again), not a repeat. */
static void fingerprint(const char *kind, const cJSON *args, char out[17]) {
  char *text = args != NULL ? cJSON_PrintUnformatted(args) : NULL;
  ym_buf_t b;
  ym_buf_init(&b, 1 << 20);
  ym_buf_append_str(&b, kind);
  ym_buf_append_byte(&b, '\n');
  if (text != NULL)
    ym_buf_append_str(&b, text);
  uint8_t d[YM_SHA256_LEN];
  ym_sha256_mem(b.data != NULL ? b.data : "", b.len, d);
  ym_hex(d, 8, out);
  ym_buf_free(&b);
  free(text);
}

/* Removes a finished record. */
static void rec_drop(respond_t *r, rec_t *rec) {
  for (size_t i = 0; i < r->nrecs; i++) {
    if (r->recs[i] == rec) {
      memmove(&r->recs[i], &r->recs[i + 1], (r->nrecs - i - 1) * sizeof(rec_t *));
      r->nrecs--;
      rec_free(rec);
      return;
    }
  }
}

static void on_checkin(const cJSON *answer, void *data) {
  respond_t *r = data;
  if (r->stopping)
    return;
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(answer, "commands");
  const cJSON *it;
  bool added = false;
  int count = 0;
  cJSON_ArrayForEach(it, arr) {
    if (count++ >= COMMANDS_PER_ANSWER)
      break;
    long long id = 0;
    const char *kind = ym_json_get_str(it, "kind");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(it, "args");
    if (!ym_json_get_int(it, "id", &id) || id <= 0 || kind == NULL || strlen(kind) > 15)
      continue;
    char fp[17];
    fingerprint(kind, cJSON_IsObject(args) ? args : NULL, fp);
    rec_t *rec = rec_find(r, id);
    if (rec != NULL && rec->fp[0] && strcmp(rec->fp, fp) != 0 && rec->state != REC_RUNNING &&
        !rec->posting && !rec->uploading) {
      ym_log(YM_LOG_NOTICE, 0, "console command %lld is new (the id was used before)", id);
      rec_drop(r, rec);
      rec = NULL;
    }
    if (rec != NULL) {
      if (rec->state != REC_RUNNING)
        post_result(rec); /* the console lacks it: again */
      continue;
    }
    if ((rec = rec_add(r, id, kind)) == NULL) {
      ym_log(YM_LOG_WARN, 0, "too many console commands in progress; command %lld waits", id);
      continue;
    }
    memcpy(rec->fp, fp, sizeof(fp));
    const char *bad = check_args(kind, cJSON_IsObject(args) ? args : NULL);
    if (bad != NULL) {
      rec->started = true;
      fail(rec, bad);
      continue;
    }
    rec->args = cJSON_Duplicate(args, true);
    if (rec->args == NULL) {
      rec->started = true;
      fail(rec, "out of memory");
      continue;
    }
    added = true;
  }
  if (added)
    save(r); /* the commands start once they are on record */
  for (size_t i = 0; i < r->nrecs; i++) {
    rec_t *rec = r->recs[i];
    if (rec->state != REC_RUNNING && !rec->posted)
      post_result(rec);
    else if (rec->bundle != NULL)
      upload_bundle(rec);
  }
}

/* ---------------------------------------------------------------- */
/* Recent events                                                      */

void respond_note_event(respond_t *r, const ym_event_t *ev, const char *json, size_t len) {
  if (r == NULL)
    return;
  size_t n;
  const char *ds = ym_event_get_str(ev, YM_F_EVENT_DATASET, &n);
  char **ring;
  uint64_t *total;
  if (ds != NULL && n == 11 && memcmp(ds, "yamori.file", 11) == 0) {
    ring = r->files;
    total = &r->nfiles;
  } else if (ds != NULL && n == 14 && memcmp(ds, "yamori.process", 14) == 0) {
    const char *act = ym_event_get_str(ev, YM_F_EVENT_ACTION, &n);
    if (act == NULL || n != 4 || memcmp(act, "exec", 4) != 0)
      return;
    ring = r->starts;
    total = &r->nstarts;
  } else {
    return;
  }
  ym_buf_t b;
  ym_buf_init(&b, RING_EVENT_MAX);
  if (json == NULL) {
    if (ym_event_write_own(ev, &b) != 0) {
      ym_buf_free(&b);
      return;
    }
    json = b.data;
    len = b.len;
  }
  while (len > 0 && (json[len - 1] == '\n'))
    len--;
  if (len > 0 && len <= RING_EVENT_MAX) {
    /* The oldest slot's storage is reused (realloc) for the newest. */
    size_t slot = (size_t)(*total % RESPOND_RING);
    char *copy = realloc(ring[slot], len + 1);
    if (copy != NULL) {
      memcpy(copy, json, len);
      copy[len] = '\0';
      ring[slot] = copy;
      (*total)++;
    }
  }
  ym_buf_free(&b);
}

/* ---------------------------------------------------------------- */
/* Life cycle                                                         */

static void protect_dir(protect_t *p, const char *path) {
  int rc = protect_add_dir(p, path);
  if (rc != 0 && rc != YM_ENOENT)
    ym_log(YM_LOG_WARN, rc, "cannot protect %s from remote commands", path);
}

/* Records what remote commands never touch (protect.h): the agent's
 * directories as configured now, its configuration, the agent, its parent
 * (the launcher, or the service manager), the launcher it was told of and
 * PID 1. A directory that does not exist yet cannot be recorded; it is
 * again at the next reload. */
static void protect_build(respond_t *r) {
  agent_t *a = r->a;
  const conf_t *c = a->conf;
  protect_t *p = &r->prot;
  char path[1200];
  const char *e;
  protect_init(p);
  protect_dir(p, c->state_dir);
  snprintf(path, sizeof(path), "%s/spool", c->state_dir);
  protect_dir(p, path);
  /* The update and versions directories as update.c and the launcher
   * choose them. */
  if ((e = getenv("YAMORI_UPDATE_DIR")) != NULL && e[0] == '/')
    snprintf(path, sizeof(path), "%s", e);
  else if (c->update_dir[0] != '\0')
    snprintf(path, sizeof(path), "%s", c->update_dir);
  else
    snprintf(path, sizeof(path), "%s/update", c->state_dir);
  protect_dir(p, path);
  if ((e = getenv("YAMORI_VERSIONS_DIR")) != NULL && e[0] == '/')
    snprintf(path, sizeof(path), "%s", e);
  else
    snprintf(path, sizeof(path), "%s", c->update_versions_dir);
  protect_dir(p, path);
  /* Its parent is the installation (/opt/yamori: current, bin, rules). */
  char *slash = strrchr(path, '/');
  if (slash != NULL && slash != path) {
    *slash = '\0';
    protect_dir(p, path);
  }
  protect_dir(p, c->update_keys_dir);
  quarantine_dir(a, path, sizeof(path));
  protect_dir(p, path);
  /* The configuration: the installed directory, and the file in use
   * wherever it is. */
  snprintf(path, sizeof(path), "%s", CONF_DEFAULT_PATH);
  *strrchr(path, '/') = '\0';
  protect_dir(p, path);
  if (a->config_path != NULL) {
    int rc = protect_add_file(p, a->config_path);
    if (rc != 0 && rc != YM_ENOENT)
      ym_log(YM_LOG_WARN, rc, "cannot protect %s from remote commands", a->config_path);
  }
  /* The service unit that starts the agent at boot (installer, .deb). */
  static const char *const units[] = {"/etc/systemd/system/yamori.service",
                                      "/lib/systemd/system/yamori.service"};
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    int rc = protect_add_file(p, units[i]);
    if (rc != 0 && rc != YM_ENOENT)
      ym_log(YM_LOG_WARN, rc, "cannot protect %s from remote commands", units[i]);
  }
  protect_add_proc(p, a->self_pid);
  protect_add_proc(p, (int)getppid());
  if ((e = getenv("YAMORI_LAUNCHER_PID")) != NULL) {
    long pid = strtol(e, NULL, 10);
    if (pid > 1 && pid < 4194304)
      protect_add_proc(p, (int)pid);
  }
  protect_add_proc(p, 1);
}

void respond_reload(respond_t *r) {
  if (r != NULL)
    protect_build(r);
}

int respond_new(agent_t *a, respond_t **out) {
  respond_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return YM_ENOMEM;
  r->a = a;
  snprintf(r->path, sizeof(r->path), "%s/commands.json", a->conf->state_dir);
  protect_build(r);
  load(r);
  if (a->up != NULL) {
    int rc = uplink_on_checkin(a->up, on_checkin, r);
    if (rc != 0) {
      respond_free(r);
      return rc;
    }
  }
  *out = r;
  return 0;
}

void respond_stop(respond_t *r) {
  if (r != NULL)
    r->stopping = true;
}

void respond_free(respond_t *r) {
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->nrecs; i++)
    rec_free(r->recs[i]);
  for (size_t i = 0; i < RESPOND_RING; i++) {
    free(r->starts[i]);
    free(r->files[i]);
  }
  free(r);
}
