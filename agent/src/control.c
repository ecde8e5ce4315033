#include "control.h"

#include "behave.h"
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

static void cmd_scan(client_t *cl, const control_req_t *req) {
  cl->found = cl->scanned = 0;
  cl->refs++;
  if (detect_scan(cl->c->a->det, req->paths, req->n_paths, on_scan_result, on_scan_finished, cl) !=
      0) {
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

static void cmd_quarantine(client_t *cl, const char *op, const control_req_t *req) {
  qop_t *q = calloc(1, sizeof(*q));
  if (q == NULL) {
    send_error(cl, "out of memory");
    return;
  }
  if (req->id != NULL)
    snprintf(q->id, sizeof(q->id), "%s", req->id);
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

static void cmd_alerts(client_t *cl, const control_req_t *req) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddTrueToObject(j, "ok");
  cJSON_AddNumberToObject(j, "seq", (double)cl->c->a->seq);
  alerts_ctx_t x = {cJSON_AddArrayToObject(j, "alerts")};
  detect_recent_alerts(cl->c->a->det, req->since, add_alert, &x);
  send_json(cl, j);
  cl->busy = false;
}

/* ---------------------------------------------------------------- */
/* Requests                                                           */

static const struct {
  const char *name;
  control_cmd_t cmd;
} commands[] = {
    {"status", CONTROL_STATUS},
    {"scan", CONTROL_SCAN},
    {"quarantine_list", CONTROL_QUARANTINE_LIST},
    {"quarantine_restore", CONTROL_QUARANTINE_RESTORE},
    {"quarantine_delete", CONTROL_QUARANTINE_DELETE},
    {"rules_reload", CONTROL_RULES_RELOAD},
    {"alerts", CONTROL_ALERTS},
};

static int refuse(control_req_t *r, const char **why, const char *msg) {
  control_req_free(r);
  *why = msg;
  return YM_EINVAL;
}

int control_parse(const char *line, size_t len, control_req_t *out, const char **why) {
  memset(out, 0, sizeof(*out));
  if (len > CONTROL_LINE_MAX || ym_json_parse(line, len, CONTROL_LINE_MAX, &out->json, NULL) != 0 ||
      !cJSON_IsObject(out->json))
    return refuse(out, why, "malformed request: one JSON object per line");
  const char *cmd = ym_json_get_str(out->json, "cmd");
  if (cmd == NULL)
    return refuse(out, why, "missing \"cmd\"");
  size_t i = 0;
  while (i < sizeof(commands) / sizeof(commands[0]) && strcmp(commands[i].name, cmd) != 0)
    i++;
  if (i == sizeof(commands) / sizeof(commands[0]))
    return refuse(out, why, "unknown command");
  out->cmd = commands[i].cmd;
  if (out->cmd == CONTROL_SCAN) {
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(out->json, "paths");
    int n = cJSON_GetArraySize(paths);
    if (!cJSON_IsArray(paths) || n < 1 || n > CONTROL_SCAN_PATHS_MAX)
      return refuse(out, why, "scan needs \"paths\": 1 to 64 absolute paths");
    const cJSON *it;
    cJSON_ArrayForEach(it, paths) {
      if (!cJSON_IsString(it) || it->valuestring[0] != '/' ||
          strlen(it->valuestring) > CONTROL_PATH_MAX)
        return refuse(out, why, "scan paths must be absolute");
      out->paths[out->n_paths++] = it->valuestring;
    }
  } else if (out->cmd == CONTROL_QUARANTINE_RESTORE || out->cmd == CONTROL_QUARANTINE_DELETE) {
    out->id = ym_json_get_str(out->json, "id");
    if (out->id == NULL || strlen(out->id) != CONTROL_ID_LEN)
      return refuse(out, why, "a quarantine id (32 hex characters) is needed");
  } else if (out->cmd == CONTROL_ALERTS) {
    long long since = 0;
    ym_json_get_int(out->json, "since", &since);
    out->since = since < 0 ? 0 : (uint64_t)since;
  }
  return 0;
}

void control_req_free(control_req_t *r) {
  cJSON_Delete(r->json);
  memset(r, 0, sizeof(*r));
}

static void handle_line(client_t *cl, const char *line, size_t len) {
  if (cl->busy) {
    send_error(cl, "one request at a time");
    return;
  }
  control_req_t req;
  const char *why;
  if (control_parse(line, len, &req, &why) != 0) {
    send_error(cl, why);
    return;
  }
  cl->busy = true;
  switch (req.cmd) {
  case CONTROL_STATUS:
    cmd_status(cl);
    break;
  case CONTROL_SCAN:
    cmd_scan(cl, &req);
    break;
  case CONTROL_QUARANTINE_LIST:
    cmd_quarantine(cl, "list", &req);
    break;
  case CONTROL_QUARANTINE_RESTORE:
    cmd_quarantine(cl, "restore", &req);
    break;
  case CONTROL_QUARANTINE_DELETE:
    cmd_quarantine(cl, "delete", &req);
    break;
  case CONTROL_RULES_RELOAD:
    cl->refs++;
    behave_reload(cl->c->a->beh,
                  cl->c->a->rules_dirs ? cl->c->a->rules_dirs : &cl->c->a->conf->rules_dirs,
                  cl->c->a->rules_dirs ? &cl->c->a->conf->rules_dirs : NULL);
    detect_reload_rules(cl->c->a->det, on_rules_reloaded, cl);
    break;
  case CONTROL_ALERTS:
    cmd_alerts(cl, &req);
    break;
  }
  control_req_free(&req);
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
