#include "control.h"

#include "detect.h"
#include "quarantine.h"

#include "yamori/err.h"
#include "yamori/event.h"
#include "yamori/json.h"
#include "yamori/log.h"
#include "yamori/version.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SCAN_PATHS 64

struct control {
  agent_t *a;
  uv_pipe_t server;
  struct client *clients;
  bool closing;
};

typedef struct client {
  struct client *next;
  control_t *c;
  uv_pipe_t pipe;
  ym_buf_t in;
  int refs;    /* the pipe, plus one per operation in flight */
  bool closed; /* the pipe is closing: replies are dropped */
  bool busy;   /* a request is being answered */
  uint64_t found, scanned;
} client_t;

/* ---------------------------------------------------------------- */
/* Replies                                                            */

static void client_unref(client_t *cl) {
  if (--cl->refs > 0)
    return;
  ym_buf_free(&cl->in);
  free(cl);
}

static void on_written(uv_write_t *w, int status) {
  (void)status;
  free(w->data);
  free(w);
}

/* Sends one line (takes the text, adds '\n'). */
static void send_line(client_t *cl, char *text) {
  if (cl->closed || text == NULL) {
    free(text);
    return;
  }
  size_t n = strlen(text);
  char *line = realloc(text, n + 2);
  if (line == NULL) {
    free(text);
    return;
  }
  line[n] = '\n';
  line[n + 1] = '\0';
  uv_write_t *w = malloc(sizeof(*w));
  if (w == NULL) {
    free(line);
    return;
  }
  w->data = line;
  uv_buf_t b = uv_buf_init(line, (unsigned)(n + 1));
  if (uv_write(w, (uv_stream_t *)&cl->pipe, &b, 1, on_written) != 0) {
    free(line);
    free(w);
  }
}

static void send_json(client_t *cl, cJSON *j) {
  send_line(cl, cJSON_PrintUnformatted(j));
  cJSON_Delete(j);
}

static void send_error(client_t *cl, const char *msg) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddFalseToObject(j, "ok");
  ym_json_add_bytes(j, "error", msg, strlen(msg));
  send_json(cl, j);
  cl->busy = false;
}

/* ---------------------------------------------------------------- */
/* Commands                                                           */

static void cmd_status(client_t *cl) {
  agent_t *a = cl->c->a;
  detect_status_t ds;
  detect_status(a->det, &ds);
  static const char *const exec_p[] = {"off", "detect", "block"};
  static const char *const file_p[] = {"detect", "quarantine"};
  cJSON *j = cJSON_CreateObject();
  cJSON_AddTrueToObject(j, "ok");
  cJSON_AddStringToObject(j, "state", "running");
  cJSON_AddStringToObject(j, "version", ym_version());
  cJSON_AddStringToObject(j, "agent_id", a->agent_id);
  cJSON_AddNumberToObject(j, "seq", (double)a->seq);
  cJSON *r = cJSON_AddObjectToObject(j, "rules");
  cJSON_AddStringToObject(r, "version", ds.rules_version);
  cJSON_AddNumberToObject(r, "count", ds.rules_count);
  cJSON_AddNumberToObject(r, "files", ds.rules_files);
  cJSON *p = cJSON_AddObjectToObject(j, "policy");
  cJSON_AddStringToObject(p, "exec", exec_p[a->conf->policy_exec]);
  cJSON_AddStringToObject(p, "file", file_p[a->conf->policy_file]);
  cJSON_AddBoolToObject(p, "kill", a->conf->policy_kill);
  cJSON *s = cJSON_AddObjectToObject(j, "sensors");
  cJSON_AddBoolToObject(s, "process", a->ps != NULL);
  cJSON_AddBoolToObject(s, "file", a->fs != NULL);
  cJSON_AddBoolToObject(s, "exec_guard", ds.guard_on);
  cJSON *k = cJSON_AddObjectToObject(j, "counters");
  agent_counters_json(a, k);
  send_json(cl, j);
  cl->busy = false;
}

static void on_scan_result(const scan_req_t *r, const char *qid, void *data) {
  client_t *cl = data;
  static const char *const verdicts[] = {"clean", "malicious", "error"};
  cl->scanned++;
  if (r->verdict == SCAN_MALICIOUS)
    cl->found++;
  cJSON *j = cJSON_CreateObject();
  if (r->path != NULL)
    ym_json_add_bytes(j, "path", r->path, strlen(r->path));
  cJSON_AddStringToObject(j, "verdict", verdicts[r->verdict]);
  if (r->sha256[0])
    cJSON_AddStringToObject(j, "sha256", r->sha256);
  if (r->verdict == SCAN_MALICIOUS) {
    cJSON_AddStringToObject(j, "rule", r->first.rule);
    cJSON_AddNumberToObject(j, "rules_matched", r->nmatches);
  }
  if (r->verdict == SCAN_ERROR)
    cJSON_AddStringToObject(j, "error", ym_strerror(r->err));
  if (qid != NULL)
    cJSON_AddStringToObject(j, "quarantine_id", qid);
  send_json(cl, j);
}

static void on_scan_finished(uint64_t files, uint64_t errors, void *data) {
  client_t *cl = data;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddTrueToObject(j, "ok");
  cJSON_AddTrueToObject(j, "done");
  cJSON_AddNumberToObject(j, "files", (double)files);
  cJSON_AddNumberToObject(j, "found", (double)cl->found);
  cJSON_AddNumberToObject(j, "errors", (double)errors);
  send_json(cl, j);
  cl->busy = false;
  client_unref(cl);
}

static void cmd_scan(client_t *cl, const cJSON *req) {
  const cJSON *paths = cJSON_GetObjectItemCaseSensitive(req, "paths");
  int n = cJSON_GetArraySize(paths);
  if (!cJSON_IsArray(paths) || n < 1 || n > MAX_SCAN_PATHS) {
    send_error(cl, "scan needs \"paths\": 1 to 64 absolute paths");
    return;
  }
  const char *v[MAX_SCAN_PATHS];
  int i = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, paths) {
    if (!cJSON_IsString(it) || it->valuestring[0] != '/' || strlen(it->valuestring) > 4095) {
      send_error(cl, "scan paths must be absolute");
      return;
    }
    v[i++] = it->valuestring;
  }
  cl->found = cl->scanned = 0;
  cl->refs++;
  if (detect_scan(cl->c->a->det, v, (size_t)n, on_scan_result, on_scan_finished, cl) != 0) {
    cl->refs--;
    send_error(cl, "cannot start the scan");
  }
}

/* Quarantine operations do disk I/O: they run on the thread pool. */
typedef struct {
  uv_work_t req;
  client_t *cl;
  char qdir[1100];
  char op[16];
  char id[64];
  int rc;
  quarantine_entry_t *list;
  size_t n, corrupt;
  quarantine_entry_t entry;
} qop_t;

static void qop_work(uv_work_t *w) {
  qop_t *q = w->data;
  if (strcmp(q->op, "list") == 0)
    q->rc = quarantine_list(q->qdir, &q->list, &q->n, &q->corrupt);
  else if (strcmp(q->op, "restore") == 0)
    q->rc = quarantine_restore(q->qdir, q->id, &q->entry);
  else
    q->rc = quarantine_delete(q->qdir, q->id);
}

static void emit_restore(agent_t *a, const qop_t *q) {
  ym_event_t *ev = agent_event(a);
  ym_event_set_cstr(ev, YM_F_EVENT_KIND, "event");
  ym_event_set_one(ev, YM_F_EVENT_CATEGORY, "file");
  ym_event_set_one(ev, YM_F_EVENT_TYPE, "creation");
  ym_event_set_cstr(ev, YM_F_EVENT_ACTION,
                    strcmp(q->op, "restore") == 0 ? "restore" : "quarantine-delete");
  ym_event_set_cstr(ev, YM_F_EVENT_DATASET, "yamori.response");
  ym_event_set_cstr(ev, YM_F_EVENT_OUTCOME, q->rc == 0 ? "success" : "failure");
  if (q->rc != 0)
    ym_event_set_cstr(ev, YM_F_EVENT_REASON, ym_strerror(q->rc));
  ym_event_set_cstr(ev, YM_F_YAMORI_QUARANTINE_ID, q->id);
  if (q->rc == 0 && q->entry.original_path != NULL)
    ym_event_set_cstr(ev, YM_F_FILE_PATH, q->entry.original_path);
  agent_emit(a, ev);
}

static void qop_done(uv_work_t *w, int status) {
  qop_t *q = w->data;
  client_t *cl = q->cl;
  (void)status;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddBoolToObject(j, "ok", q->rc == 0);
  if (q->rc != 0)
    cJSON_AddStringToObject(j, "error", ym_strerror(q->rc));
  if (strcmp(q->op, "list") == 0 && q->rc == 0) {
    cJSON *arr = cJSON_AddArrayToObject(j, "entries");
    for (size_t i = 0; i < q->n; i++) {
      const quarantine_entry_t *e = &q->list[i];
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "id", e->id);
      ym_json_add_bytes(o, "path", e->original_path, strlen(e->original_path));
      if (e->rule != NULL)
        ym_json_add_bytes(o, "rule", e->rule, strlen(e->rule));
      cJSON_AddStringToObject(o, "sha256", e->sha256);
      cJSON_AddNumberToObject(o, "size", (double)e->size);
      char when[32];
      ym_time_format(e->quarantined_ns, when);
      cJSON_AddStringToObject(o, "quarantined_at", when);
      cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddNumberToObject(j, "corrupt", (double)q->corrupt);
    quarantine_list_free(q->list, q->n);
  } else if (strcmp(q->op, "list") != 0) {
    emit_restore(cl->c->a, q);
    if (q->rc == 0 && q->entry.original_path != NULL)
      ym_json_add_bytes(j, "path", q->entry.original_path, strlen(q->entry.original_path));
  }
  quarantine_entry_free(&q->entry);
  send_json(cl, j);
  cl->busy = false;
  client_unref(cl);
  free(q);
}

static void cmd_quarantine(client_t *cl, const char *op, const cJSON *req) {
  qop_t *q = calloc(1, sizeof(*q));
  if (q == NULL) {
    send_error(cl, "out of memory");
    return;
  }
  const char *id = ym_json_get_str(req, "id");
  if (strcmp(op, "list") != 0) {
    if (id == NULL || strlen(id) != QUARANTINE_ID_LEN) {
      free(q);
      send_error(cl, "a quarantine id (32 hex characters) is needed");
      return;
    }
    snprintf(q->id, sizeof(q->id), "%s", id);
  }
  snprintf(q->op, sizeof(q->op), "%s", op);
  snprintf(q->qdir, sizeof(q->qdir), "%s", detect_quarantine_dir(cl->c->a->det));
  q->cl = cl;
  q->req.data = q;
  cl->refs++;
  uv_queue_work(cl->c->a->loop, &q->req, qop_work, qop_done);
}

static void on_rules_reloaded(int err, const char *msg, void *data) {
  client_t *cl = data;
  if (cl->closed) {
    client_unref(cl);
    return;
  }
  if (err != 0) {
    send_error(cl, msg);
  } else {
    detect_status_t ds;
    detect_status(cl->c->a->det, &ds);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddTrueToObject(j, "ok");
    cJSON_AddStringToObject(j, "version", ds.rules_version);
    cJSON_AddNumberToObject(j, "count", ds.rules_count);
    send_json(cl, j);
    cl->busy = false;
  }
  client_unref(cl);
}

typedef struct {
  cJSON *arr;
} alerts_ctx_t;

static void add_alert(uint64_t seq, const char *path, const char *rule, const char *action,
                      void *data) {
  alerts_ctx_t *x = data;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "seq", (double)seq);
  ym_json_add_bytes(o, "path", path, strlen(path));
  cJSON_AddStringToObject(o, "rule", rule);
  cJSON_AddStringToObject(o, "action", action);
  cJSON_AddItemToArray(x->arr, o);
}

static void cmd_alerts(client_t *cl, const cJSON *req) {
  long long since = 0;
  ym_json_get_int(req, "since", &since);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddTrueToObject(j, "ok");
  cJSON_AddNumberToObject(j, "seq", (double)cl->c->a->seq);
  alerts_ctx_t x = {cJSON_AddArrayToObject(j, "alerts")};
  detect_recent_alerts(cl->c->a->det, since < 0 ? 0 : (uint64_t)since, add_alert, &x);
  send_json(cl, j);
  cl->busy = false;
}

static void handle_line(client_t *cl, const char *line, size_t len) {
  cJSON *req = NULL;
  if (cl->busy) {
    send_error(cl, "one request at a time");
    return;
  }
  if (ym_json_parse(line, len, CONTROL_LINE_MAX, &req, NULL) != 0 || !cJSON_IsObject(req)) {
    cJSON_Delete(req);
    send_error(cl, "malformed request: one JSON object per line");
    return;
  }
  const char *cmd = ym_json_get_str(req, "cmd");
  cl->busy = true;
  if (cmd == NULL)
    send_error(cl, "missing \"cmd\"");
  else if (strcmp(cmd, "status") == 0)
    cmd_status(cl);
  else if (strcmp(cmd, "scan") == 0)
    cmd_scan(cl, req);
  else if (strcmp(cmd, "quarantine_list") == 0)
    cmd_quarantine(cl, "list", req);
  else if (strcmp(cmd, "quarantine_restore") == 0)
    cmd_quarantine(cl, "restore", req);
  else if (strcmp(cmd, "quarantine_delete") == 0)
    cmd_quarantine(cl, "delete", req);
  else if (strcmp(cmd, "rules_reload") == 0) {
    cl->refs++;
    detect_reload_rules(cl->c->a->det, on_rules_reloaded, cl);
  } else if (strcmp(cmd, "alerts") == 0)
    cmd_alerts(cl, req);
  else
    send_error(cl, "unknown command");
  cJSON_Delete(req);
}

/* ---------------------------------------------------------------- */
/* Connections                                                        */

static void on_client_closed(uv_handle_t *h) {
  client_t *cl = h->data;
  control_t *c = cl->c;
  for (client_t **pp = &c->clients; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == cl) {
      *pp = cl->next;
      break;
    }
  }
  client_unref(cl);
}

static void client_close(client_t *cl) {
  if (cl->closed)
    return;
  cl->closed = true;
  uv_close((uv_handle_t *)&cl->pipe, on_client_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  client_t *cl = h->data;
  (void)suggested;
  if (ym_buf_reserve(&cl->in, 4096) != 0) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(cl->in.data + cl->in.len, (unsigned)(cl->in.size - cl->in.len - 1));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  client_t *cl = s->data;
  (void)buf;
  if (n < 0 || (n == 0 && buf->base == NULL)) {
    if (n == 0 || n == UV_ENOBUFS)
      send_error(cl, "request line too long");
    client_close(cl);
    return;
  }
  cl->in.len += (size_t)n;
  cl->in.data[cl->in.len] = '\0';
  char *nl;
  while (!cl->closed && (nl = memchr(cl->in.data, '\n', cl->in.len)) != NULL) {
    size_t len = (size_t)(nl - cl->in.data);
    handle_line(cl, cl->in.data, len);
    memmove(cl->in.data, nl + 1, cl->in.len - len - 1);
    cl->in.len -= len + 1;
    cl->in.data[cl->in.len] = '\0';
  }
}

static void on_connection(uv_stream_t *server, int status) {
  control_t *c = server->data;
  if (status < 0)
    return;
  client_t *cl = calloc(1, sizeof(*cl));
  if (cl == NULL)
    return;
  cl->c = c;
  cl->refs = 1;
  ym_buf_init(&cl->in, CONTROL_LINE_MAX);
  uv_pipe_init(c->a->loop, &cl->pipe, 0);
  cl->pipe.data = cl;
  cl->next = c->clients;
  c->clients = cl;
  if (uv_accept(server, (uv_stream_t *)&cl->pipe) != 0) {
    client_close(cl);
    return;
  }
  /* Root only: the peer's credentials, as the kernel reports them. */
  uv_os_fd_t fd;
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (uv_fileno((uv_handle_t *)&cl->pipe, &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0) {
    send_error(cl, "permission denied: root only");
    client_close(cl);
    return;
  }
  uv_read_start((uv_stream_t *)&cl->pipe, on_alloc, on_read);
}

static void on_server_closed(uv_handle_t *h) {
  free(h->data);
}

int control_new(agent_t *a, control_t **out) {
  const char *path = a->conf->control_socket;
  control_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return YM_ENOMEM;
  c->a = a;
  /* The socket's directory: created 0700 (root only). */
  char dir[128];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash != NULL && slash != dir) {
    *slash = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
      int rc = ym_err_from_errno(errno);
      free(c);
      return rc;
    }
  }
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
    unlink(path); /* left by a previous run */
  uv_pipe_init(a->loop, &c->server, 0);
  c->server.data = c;
  mode_t old = umask(0177);
  int rc = uv_pipe_bind(&c->server, path);
  umask(old);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&c->server, 16, on_connection);
  if (rc != 0) {
    uv_close((uv_handle_t *)&c->server, on_server_closed);
    return YM_EIO;
  }
  *out = c;
  return 0;
}

void control_free(control_t *c) {
  if (c == NULL)
    return;
  for (client_t *cl = c->clients; cl != NULL; cl = cl->next)
    client_close(cl);
  uv_close((uv_handle_t *)&c->server, on_server_closed);
}
