/*
 * The file sensor: OS file records to ECS file events.
 *
 * Per record: the agent's own activity is dropped (no feedback loops),
 * exec notifications go to the process sensor (they name the program of a
 * process that may be gone before /proc can be read), excluded paths and
 * executables are dropped, and the rest becomes one event with the acting
 * process from the process table.
 */
#include "sensors.h"

#include "detect.h"
#include "os.h"

#include "yamori/err.h"
#include "yamori/log.h"

#include <stdlib.h>
#include <string.h>

struct fsensor {
  agent_t *a;
  os_fswatch_t *watch;
};

static void set_file(ym_event_t *ev, ym_field_t path_f, ym_field_t dir_f, ym_field_t name_f,
                     const char *path, size_t len, bool unresolved) {
  if (unresolved) {
    ym_event_set_str(ev, name_f, path, len);
    return;
  }
  ym_event_set_str(ev, path_f, path, len);
  const char *slash = memrchr(path, '/', len);
  if (slash == NULL)
    return;
  const char *name = slash + 1;
  size_t nlen = len - (size_t)(name - path);
  ym_event_set_str(ev, name_f, name, nlen);
  ym_event_set_str(ev, dir_f, path, slash == path ? 1 : (size_t)(slash - path));
}

static bool excluded_path(const agent_t *a, const char *path) {
  return a->conf->exclude_paths.n > 0 && ym_strlist_has_path_prefix(&a->conf->exclude_paths, path);
}

static void on_fsev(const os_fsev_t *fe, void *data) {
  fsensor_t *f = data;
  agent_t *a = f->a;
  if (fe->kind == OS_FSEV_LOST) {
    a->counters.lost_file++;
    agent_emit_gap(a, "fanotify", "queue_overflow", 0, false);
    return;
  }
  if (fe->pid == a->self_pid)
    return;
  if (fe->kind == OS_FSEV_EXEC) {
    if (!fe->path_unresolved)
      psensor_note_exec(a, fe->pid, fe->path, fe->path_len);
    return;
  }
  if (!fe->path_unresolved && excluded_path(a, fe->path) &&
      (fe->kind != OS_FSEV_RENAME || excluded_path(a, fe->old_path)))
    return;
  proc_entry_t *actor = fe->pid > 0 ? psensor_lookup(a, fe->pid) : NULL;
  if (actor != NULL && actor->exe != NULL) {
    const ym_strlist_t *l = &a->conf->exclude_executables;
    for (size_t i = 0; i < l->n; i++)
      if (strcmp(l->v[i], actor->exe) == 0)
        return;
  }

  static const struct {
    const char *type, *action;
  } kinds[] = {[OS_FSEV_CREATE] = {"creation", "creation"},
               [OS_FSEV_CHANGE] = {"change", "modification"},
               [OS_FSEV_DELETE] = {"deletion", "deletion"},
               [OS_FSEV_RENAME] = {"change", "rename"}};
  ym_event_t *ev = agent_event(a);
  ym_event_set_time(ev, YM_F_TIMESTAMP, agent_now_ns());
  ym_event_set_cstr(ev, YM_F_EVENT_KIND, "event");
  ym_event_set_one(ev, YM_F_EVENT_CATEGORY, "file");
  ym_event_set_one(ev, YM_F_EVENT_TYPE, kinds[fe->kind].type);
  ym_event_set_cstr(ev, YM_F_EVENT_ACTION, kinds[fe->kind].action);
  ym_event_set_cstr(ev, YM_F_EVENT_DATASET, "yamori.file");
  ym_event_set_cstr(ev, YM_F_FILE_TYPE, fe->is_dir ? "dir" : "file");
  set_file(ev, YM_F_FILE_PATH, YM_F_FILE_DIRECTORY, YM_F_FILE_NAME, fe->path, fe->path_len,
           fe->path_unresolved);
  if (!fe->is_dir && !fe->path_unresolved) {
    size_t nlen;
    const char *name = ym_event_get_str(ev, YM_F_FILE_NAME, &nlen);
    const char *dot = name ? memrchr(name, '.', nlen) : NULL;
    if (dot != NULL && dot != name && dot + 1 < name + nlen)
      ym_event_set_str(ev, YM_F_FILE_EXTENSION, dot + 1, (size_t)(name + nlen - dot - 1));
  }
  if (fe->kind == OS_FSEV_RENAME)
    set_file(ev, YM_F_YAMORI_FILE_ORIGINAL_PATH, YM_F_YAMORI_FILE_ORIGINAL_DIRECTORY,
             YM_F_YAMORI_FILE_ORIGINAL_NAME, fe->old_path, fe->old_path_len, fe->path_unresolved);
  if (fe->path_unresolved) {
    static const char *const missing[] = {"file.path", "file.directory"};
    static const size_t lens[] = {9, 14};
    ym_event_set_strv(ev, YM_F_YAMORI_MISSING, missing, lens, 2);
  }
  if (fe->pid > 0) {
    ym_event_set_int(ev, YM_F_PROCESS_PID, fe->pid);
    if (actor != NULL) {
      if (actor->entity_id[0])
        ym_event_set_cstr(ev, YM_F_PROCESS_ENTITY_ID, actor->entity_id);
      if (actor->exe != NULL) {
        ym_event_set_str(ev, YM_F_PROCESS_EXECUTABLE, actor->exe, actor->exe_len);
        ym_event_set_cstr(ev, YM_F_PROCESS_NAME, proctab_name(actor));
      }
    }
  }
  a->counters.file_events++;
  agent_emit(a, ev);
  if (fe->kind == OS_FSEV_CHANGE && !fe->is_dir && !fe->path_unresolved && a->det != NULL)
    detect_file_changed(a->det, fe->pid, fe->path, fe->path_len);
}

static void on_mount(const char *mp, const char *fstype, int err, void *data) {
  (void)data;
  if (err == 0)
    ym_log(YM_LOG_INFO, 0, "watching files on %s (%s)", mp, fstype);
  else
    ym_log(YM_LOG_NOTICE, err, "cannot watch files on %s (%s)", mp, fstype);
}

int fsensor_new(agent_t *a, fsensor_t **out) {
  fsensor_t *f = calloc(1, sizeof(*f));
  if (f == NULL)
    return YM_ENOMEM;
  f->a = a;
  int rc = os_fswatch_new(a->loop, on_fsev, on_mount, f, &f->watch);
  if (rc != 0) {
    free(f);
    return rc;
  }
  *out = f;
  return 0;
}

int fsensor_start(fsensor_t *f) {
  return os_fswatch_start(f->watch);
}

void fsensor_stop(fsensor_t *f) {
  if (f != NULL && f->watch != NULL) {
    os_fswatch_free(f->watch);
    f->watch = NULL;
  }
}

void fsensor_drain(fsensor_t *f) {
  if (f != NULL && f->watch != NULL)
    os_fswatch_drain(f->watch);
}

void fsensor_free(fsensor_t *f) {
  if (f == NULL)
    return;
  fsensor_stop(f);
  free(f);
}
