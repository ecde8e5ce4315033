/*
 * yamorictl: the local administration command for the Yamori agent.
 *
 * Talks to the running agent over its control socket (root only). `scan`
 * also works without a running agent: it then compiles the rules itself
 * and scans with its own scanner threads.
 */
#include "conf.h"
#include "identity.h"
#include "rules.h"
#include "scanner.h"
#include "scanwalk.h"

#include "yamori/buf.h"
#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/version.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/fanotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 64
/* scan: 0 clean, 1 found, 2 error. status: LSB codes (0 running, 3 not running). */
#define EXIT_FOUND 1
#define EXIT_ERROR 2
#define EXIT_NOT_RUNNING 3

static const char eicar[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

typedef struct {
  const char *config;
  const char *socket;
  bool json;
  ym_strlist_t rules;
  char *rules_v[16];
} opts_t;

static void usage(FILE *f) {
  fputs("Usage: yamorictl [OPTIONS] COMMAND [ARGS]\n"
        "\n"
        "Talks to the running Yamori agent (yamorid) on this PC.\n"
        "\n"
        "Commands:\n"
        "  status                     agent state, rules, sensors and counters\n"
        "  scan PATH...               scan files and directories (exit 0 clean, 1 found,\n"
        "                             2 error); works without a running agent too\n"
        "  quarantine list            list quarantined files\n"
        "  quarantine restore ID      put a quarantined file back\n"
        "  quarantine delete ID       delete a quarantined file for good\n"
        "  rules reload               recompile the rules (the old ones stay on error)\n"
        "  selftest                   check that protection works (EICAR test file)\n"
        "  enroll [--token TOKEN]     connect this PC to the console (the token may also\n"
        "                             come from YAMORI_TOKEN, which ps does not show)\n"
        "  preflight [--server URL --pin PIN] [--no-kernel]\n"
        "                             check kernel features and the way to the console\n"
        "                             (DNS, TCP, TLS with the pin, clock); the console may\n"
        "                             also come from YAMORI_TOKEN; exit 1 when one fails\n"
        "\n"
        "Options:\n"
        "  -c, --config PATH    agent configuration (default " CONF_DEFAULT_PATH ")\n"
        "  -s, --socket PATH    control socket (default: from the configuration)\n"
        "  -r, --rules DIR      scan without the agent, with the rules in DIR (repeatable)\n"
        "  -j, --json           machine-readable output (JSON lines)\n"
        "  -h, --help           show this help and exit\n"
        "  -V, --version        show versions and exit\n",
        f);
}

/* ---------------------------------------------------------------- */
/* Talking to the agent                                               */

static int connect_agent(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path))
    return -1;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

typedef struct {
  int fd;
  ym_buf_t in;
} conn_t;

static int send_req(conn_t *c, cJSON *req) {
  char *text = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  if (text == NULL)
    return YM_ENOMEM;
  size_t n = strlen(text);
  text[n] = '\n';
  size_t off = 0;
  int rc = 0;
  while (off < n + 1) {
    ssize_t w = write(c->fd, text + off, n + 1 - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      rc = YM_EIO;
      break;
    }
    off += (size_t)w;
  }
  free(text);
  return rc;
}

/* Reads one reply line; NULL on error or end. */
static cJSON *read_reply(conn_t *c) {
  for (;;) {
    char *nl = c->in.len ? memchr(c->in.data, '\n', c->in.len) : NULL;
    if (nl != NULL) {
      size_t len = (size_t)(nl - c->in.data);
      cJSON *j = NULL;
      ym_json_parse(c->in.data, len, 1 << 20, &j, NULL);
      memmove(c->in.data, nl + 1, c->in.len - len - 1);
      c->in.len -= len + 1;
      return j;
    }
    if (ym_buf_reserve(&c->in, 65536) != 0)
      return NULL;
    ssize_t n = read(c->fd, c->in.data + c->in.len, 65536);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return NULL;
    c->in.len += (size_t)n;
  }
}

static cJSON *request(conn_t *c, cJSON *req) {
  if (send_req(c, req) != 0)
    return NULL;
  return read_reply(c);
}

static bool reply_ok(const cJSON *j) {
  return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok"));
}

static void print_json(const cJSON *j) {
  char *t = cJSON_PrintUnformatted(j);
  if (t != NULL)
    puts(t);
  free(t);
}

static const char *str_or(const cJSON *j, const char *key, const char *def) {
  const char *s = ym_json_get_str(j, key);
  return s ? s : def;
}

/* ---------------------------------------------------------------- */
/* Commands through the agent                                         */

static int cmd_status(conn_t *c, const opts_t *o) {
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "cmd", "status");
  cJSON *r = request(c, req);
  if (r == NULL || !reply_ok(r)) {
    fprintf(stderr, "yamorictl: no answer from the agent\n");
    cJSON_Delete(r);
    return EXIT_NOT_RUNNING;
  }
  if (o->json) {
    print_json(r);
  } else {
    const cJSON *rules = cJSON_GetObjectItem(r, "rules");
    const cJSON *pol = cJSON_GetObjectItem(r, "policy");
    const cJSON *sen = cJSON_GetObjectItem(r, "sensors");
    const cJSON *k = cJSON_GetObjectItem(r, "counters");
    printf("state:     %s (version %s)\n", str_or(r, "state", "?"), str_or(r, "version", "?"));
    printf("rules:     %d rules, version %s\n",
           cJSON_GetObjectItem(rules, "count") ? cJSON_GetObjectItem(rules, "count")->valueint : 0,
           str_or(rules, "version", "?"));
    printf("policy:    exec %s, files %s, kill %s\n", str_or(pol, "exec", "?"),
           str_or(pol, "file", "?"), cJSON_IsTrue(cJSON_GetObjectItem(pol, "kill")) ? "on" : "off");
    printf("sensors:   process %s%s%s%s, file %s, exec guard %s\n",
           cJSON_IsTrue(cJSON_GetObjectItem(sen, "process")) ? "on" : "off",
           ym_json_get_str(k, "process_sensor") ? " (" : "",
           ym_json_get_str(k, "process_sensor") ? ym_json_get_str(k, "process_sensor") : "",
           ym_json_get_str(k, "process_sensor") ? ")" : "",
           cJSON_IsTrue(cJSON_GetObjectItem(sen, "file")) ? "on" : "off",
           cJSON_IsTrue(cJSON_GetObjectItem(sen, "exec_guard")) ? "on" : "off");
    const cJSON *bn = cJSON_GetObjectItem(k, "behaviour_rules");
    if (bn != NULL)
      printf("behaviour: %s, %.0f rules, version %s%s%s\n",
             cJSON_IsTrue(cJSON_GetObjectItem(k, "behaviour_enabled")) ? "on" : "off",
             bn->valuedouble, str_or(k, "behaviour_version", "?"),
             cJSON_GetObjectItem(k, "behaviour_load_error") ? "; last load refused: " : "",
             str_or(k, "behaviour_load_error", ""));
    const cJSON *it;
    cJSON_ArrayForEach(it, k) {
      if (cJSON_IsString(it))
        printf("  %-22s %s\n", it->string, it->valuestring);
      else if (cJSON_IsBool(it))
        printf("  %-22s %s\n", it->string, cJSON_IsTrue(it) ? "yes" : "no");
      else
        printf("  %-22s %.0f\n", it->string, it->valuedouble);
    }
  }
  cJSON_Delete(r);
  return 0;
}

static int scan_via_agent(conn_t *c, const opts_t *o, char **paths, int n) {
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "cmd", "scan");
  cJSON *arr = cJSON_AddArrayToObject(req, "paths");
  for (int i = 0; i < n; i++) {
    char abs[4096];
    if (realpath(paths[i], abs) == NULL) {
      fprintf(stderr, "yamorictl: %s: %s\n", paths[i], strerror(errno));
      cJSON_Delete(req);
      return EXIT_ERROR;
    }
    cJSON_AddItemToArray(arr, cJSON_CreateString(abs));
  }
  if (send_req(c, req) != 0)
    return EXIT_ERROR;
  int found = 0, errors = 0;
  for (;;) {
    cJSON *r = read_reply(c);
    if (r == NULL) {
      fprintf(stderr, "yamorictl: the agent closed the connection\n");
      return EXIT_ERROR;
    }
    /* Result lines carry a verdict; the last line carries ok and done. */
    if (ym_json_get_str(r, "verdict") == NULL) {
      bool ok = reply_ok(r);
      if (!ok)
        fprintf(stderr, "yamorictl: %s\n", str_or(r, "error", "scan failed"));
      else if (o->json)
        print_json(r);
      else
        printf("scanned %.0f files: %d malicious, %d errors\n",
               cJSON_GetObjectItem(r, "files")->valuedouble, found, errors);
      cJSON_Delete(r);
      if (!ok)
        return EXIT_ERROR;
      break;
    }
    const char *v = str_or(r, "verdict", "");
    if (strcmp(v, "malicious") == 0)
      found++;
    if (strcmp(v, "error") == 0)
      errors++;
    if (o->json)
      print_json(r);
    else if (strcmp(v, "malicious") == 0)
      printf("MALICIOUS %s (%s)%s\n", str_or(r, "path", "?"), str_or(r, "rule", "?"),
             ym_json_get_str(r, "quarantine_id") ? " quarantined" : "");
    cJSON_Delete(r);
  }
  return found ? EXIT_FOUND : (errors ? EXIT_ERROR : 0);
}

/* ---------------------------------------------------------------- */
/* Scanning without the agent                                         */

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done;
  bool json;
  uint64_t found, errors, files;
} local_t;

static void local_result(scan_req_t *r, void *data) {
  local_t *l = data;
  static const char *const verdicts[] = {"clean", "malicious", "error"};
  pthread_mutex_lock(&l->lock);
  if (r->verdict == SCAN_MALICIOUS)
    l->found++;
  if (r->verdict == SCAN_ERROR && r->err != YM_ETOOBIG)
    l->errors++;
  if (l->json) {
    cJSON *j = cJSON_CreateObject();
    ym_json_add_bytes(j, "path", r->path, strlen(r->path));
    cJSON_AddStringToObject(j, "verdict", verdicts[r->verdict]);
    if (r->sha256[0])
      cJSON_AddStringToObject(j, "sha256", r->sha256);
    if (r->verdict == SCAN_MALICIOUS) {
      cJSON_AddStringToObject(j, "rule", r->first.rule);
      if (r->matches_json.len > 0)
        cJSON_AddItemToObject(j, "matches", cJSON_CreateRaw(r->matches_json.data));
    }
    if (r->verdict == SCAN_ERROR)
      cJSON_AddStringToObject(j, "error", ym_strerror(r->err));
    print_json(j);
    cJSON_Delete(j);
  } else if (r->verdict == SCAN_MALICIOUS) {
    printf("MALICIOUS %s (%s)\n", r->path, r->first.rule);
  }
  pthread_mutex_unlock(&l->lock);
  scan_req_free(r);
}

static void local_finished(void *data, uint64_t files, uint64_t errors) {
  local_t *l = data;
  pthread_mutex_lock(&l->lock);
  l->files = files;
  l->errors += errors;
  l->done = true;
  pthread_cond_signal(&l->cond);
  pthread_mutex_unlock(&l->lock);
}

static int scan_local(const opts_t *o, const ym_strlist_t *dirs, char **paths, int n) {
  rules_t *rules = NULL;
  char err[512];
  rules_global_init();
  int rc = rules_compile(dirs, &rules, err, sizeof(err));
  if (rc != 0) {
    fprintf(stderr, "yamorictl: rules refused: %s\n", err);
    return EXIT_ERROR;
  }
  scanner_opts_t so = {0, 64 * 1024 * 1024, 30, 100, 1000000, 65536};
  scanner_t *sc = NULL;
  if (scanner_new(&so, rules, &sc) != 0) {
    rules_unref(rules);
    return EXIT_ERROR;
  }
  local_t l = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, o->json, 0, 0, 0};
  scanwalk_t *w = NULL;
  rc = scanwalk_start(sc, (const char *const *)paths, (size_t)n, SCAN_PRIO_DEMAND, local_result,
                      local_finished, &l, &w);
  if (rc == 0) {
    pthread_mutex_lock(&l.lock);
    while (!l.done)
      pthread_cond_wait(&l.cond, &l.lock);
    pthread_mutex_unlock(&l.lock);
    scanwalk_free(w);
  }
  scanner_free(sc);
  if (!o->json)
    printf("scanned %llu files with %u rules (version %s): %llu malicious, %llu errors\n",
           (unsigned long long)l.files, rules->count, rules->version, (unsigned long long)l.found,
           (unsigned long long)l.errors);
  rules_unref(rules);
  rules_global_free();
  if (rc != 0)
    return EXIT_ERROR;
  return l.found ? EXIT_FOUND : (l.errors ? EXIT_ERROR : 0);
}

/* ---------------------------------------------------------------- */
/* Quarantine, rules, selftest                                        */

static int simple(conn_t *c, const opts_t *o, const char *cmd, const char *id) {
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "cmd", cmd);
  if (id != NULL)
    cJSON_AddStringToObject(req, "id", id);
  cJSON *r = request(c, req);
  if (r == NULL) {
    fprintf(stderr, "yamorictl: no answer from the agent\n");
    return EXIT_ERROR;
  }
  int rc = reply_ok(r) ? 0 : 1;
  if (o->json) {
    print_json(r);
  } else if (rc != 0) {
    fprintf(stderr, "yamorictl: %s\n", str_or(r, "error", "failed"));
  } else if (strcmp(cmd, "quarantine_list") == 0) {
    const cJSON *e;
    int count = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(r, "entries")) {
      printf("%s  %s  (%s)\n", str_or(e, "id", "?"), str_or(e, "path", "?"),
             str_or(e, "rule", "-"));
      count++;
    }
    printf("%d quarantined files\n", count);
  } else if (strcmp(cmd, "rules_reload") == 0) {
    printf("rules reloaded: version %s, %d rules\n", str_or(r, "version", "?"),
           cJSON_GetObjectItem(r, "count") ? cJSON_GetObjectItem(r, "count")->valueint : 0);
  } else if (strcmp(cmd, "quarantine_restore") == 0) {
    printf("restored %s\n", str_or(r, "path", "?"));
  } else {
    printf("done\n");
  }
  cJSON_Delete(r);
  return rc;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes the EICAR test file, waits for the agent's alert and, under the
 * quarantine policy, for the quarantine; cleans up; one line of verdict. */
static int cmd_selftest(conn_t *c) {
  cJSON *req = cJSON_CreateObject();
  cJSON_AddStringToObject(req, "cmd", "status");
  cJSON *st = request(c, req);
  if (st == NULL || !reply_ok(st)) {
    printf("Protection is NOT working: the agent does not answer.\n");
    cJSON_Delete(st);
    return 1;
  }
  double seq = cJSON_GetObjectItem(st, "seq")->valuedouble;
  const cJSON *pol = cJSON_GetObjectItem(st, "policy");
  bool quarantine = strcmp(str_or(pol, "file", ""), "quarantine") == 0;
  bool file_sensor = cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(st, "sensors"), "file"));
  cJSON_Delete(st);
  if (!file_sensor) {
    printf("Protection is NOT working: the file sensor is off.\n");
    return 1;
  }
  char dir[] = "/var/tmp/yamori-selftest-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    printf("Self-test could not run: cannot create a directory in /var/tmp (%s).\n",
           strerror(errno));
    return 2;
  }
  char path[128];
  snprintf(path, sizeof(path), "%s/eicar.com", dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  double t0 = now_s();
  if (fd < 0 || write(fd, eicar, sizeof(eicar) - 1) != (ssize_t)(sizeof(eicar) - 1)) {
    printf("Self-test could not run: cannot write the test file.\n");
    if (fd >= 0)
      close(fd);
    unlink(path);
    rmdir(dir);
    return 2;
  }
  close(fd);

  bool detected = false, quarantined = false;
  double t_detect = 0;
  while (now_s() - t0 < 10.0 && !(detected && (!quarantine || quarantined))) {
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "cmd", "alerts");
    cJSON_AddNumberToObject(req, "since", seq);
    cJSON *r = request(c, req);
    const cJSON *al;
    cJSON_ArrayForEach(al, cJSON_GetObjectItem(r, "alerts")) {
      if (strcmp(str_or(al, "path", ""), path) != 0)
        continue;
      const char *action = str_or(al, "action", "");
      if (strcmp(action, "quarantine") == 0)
        quarantined = true;
      else if (!detected) {
        detected = true;
        t_detect = now_s() - t0;
      }
    }
    cJSON_Delete(r);
    if (!(detected && (!quarantine || quarantined)))
      usleep(50000);
  }
  /* Clean up: the quarantined copy too. */
  if (quarantined) {
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "cmd", "quarantine_list");
    cJSON *r = request(c, req);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(r, "entries")) {
      if (strcmp(str_or(e, "path", ""), path) == 0) {
        cJSON *del = cJSON_CreateObject();
        cJSON_AddStringToObject(del, "cmd", "quarantine_delete");
        cJSON_AddStringToObject(del, "id", str_or(e, "id", ""));
        cJSON_Delete(request(c, del));
      }
    }
    cJSON_Delete(r);
  }
  bool still_there = access(path, F_OK) == 0;
  unlink(path);
  rmdir(dir);
  if (!detected) {
    printf("Protection is NOT working: the EICAR test file was not detected within 10 s.\n");
    return 1;
  }
  if (quarantine && (!quarantined || still_there)) {
    printf("Protection is NOT fully working: the EICAR test file was detected in %.2f s but "
           "not quarantined.\n",
           t_detect);
    return 1;
  }
  printf("Protection works: the EICAR test file was detected in %.2f s%s.\n", t_detect,
         quarantine ? " and quarantined" : " (policy: alert only)");
  return 0;
}

/* ---------------------------------------------------------------- */
/* Enrollment                                                         */

/* Enrolls this PC with the console named in the token and writes the
 * identity file; works whether or not the agent runs (a running agent
 * notices the file within 5 s). The token comes from --token or, so that
 * it does not show in ps, from YAMORI_TOKEN; a token given on the command
 * line is wiped from it at once. Prints the result or a plain error; never
 * the token. Returns 0 or 1. */
static int cmd_enroll(const conf_t *conf, char **args, int nargs) {
  char *arg = NULL;
  if (nargs == 2 && strcmp(args[0], "--token") == 0)
    arg = args[1];
  else if (nargs == 1 && strncmp(args[0], "--token=", 8) == 0)
    arg = args[0] + 8;
  else if (nargs != 0) {
    fprintf(stderr, "yamorictl: usage: yamorictl enroll [--token TOKEN]\n");
    return 1;
  }
  const char *src = arg != NULL ? arg : getenv("YAMORI_TOKEN");
  if (src == NULL || src[0] == '\0') {
    fprintf(stderr, "yamorictl: no enrollment token: give --token TOKEN or set YAMORI_TOKEN\n");
    return 1;
  }
  char *token = strndup(src, IDENTITY_TOKEN_MAX + 1);
  if (arg != NULL)
    explicit_bzero(arg, strlen(arg));
  if (token == NULL) {
    fprintf(stderr, "yamorictl: out of memory\n");
    return 1;
  }
  identity_t id;
  char err[512];
  int rc = identity_enroll(token, conf->state_dir, &id, err, sizeof(err));
  explicit_bzero(token, strlen(token));
  free(token);
  if (rc != 0) {
    fprintf(stderr, "yamorictl: enrollment failed: %s\n", err);
    return 1;
  }
  printf("enrolled as %s in tenant %s\n", id.agent_id, id.tenant);
  identity_wipe(&id);
  return 0;
}

/* ---------------------------------------------------------------- */
/* Preflight (for the installer)                                      */

/* One line per check, "name<TAB>ok|fail|warn<TAB>plain message", so that
 * the installer's shell can show and translate them. */
static void pf_line(const char *name, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void pf_line(const char *name, const char *status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s\t%s\t", name, status);
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
  fflush(stdout);
}

/* Subscribes fd (bound to the proc connector group) and waits up to 1 s
 * for the kernel's answer, then unsubscribes. Returns 0 when the kernel
 * answered, 1 when it did not and this system is a container (which has
 * a PID namespace of its own), -ETIMEDOUT otherwise. */
static int pf_cn_listen(int fd) {
  struct sockaddr_nl me;
  socklen_t sl = sizeof(me);
  if (getsockname(fd, (struct sockaddr *)&me, &sl) != 0)
    return -errno;
  for (int round = 0; round < 2; round++) {
    uint32_t op = round == 0 ? PROC_CN_MCAST_LISTEN : PROC_CN_MCAST_IGNORE;
    union {
      struct nlmsghdr align;
      char bytes[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(uint32_t))];
    } msg;
    memset(&msg, 0, sizeof(msg));
    struct nlmsghdr nh = {.nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(uint32_t)),
                          .nlmsg_type = NLMSG_DONE};
    struct cn_msg c = {.id = {.idx = CN_IDX_PROC, .val = CN_VAL_PROC},
                       .seq = me.nl_pid,
                       .ack = me.nl_pid,
                       .len = (uint16_t)sizeof(uint32_t)};
    memcpy(msg.bytes, &nh, sizeof(nh));
    memcpy(msg.bytes + NLMSG_HDRLEN, &c, sizeof(c));
    memcpy(msg.bytes + NLMSG_HDRLEN + sizeof(c), &op, sizeof(op));
    struct sockaddr_nl to = {.nl_family = AF_NETLINK};
    if (sendto(fd, msg.bytes, nh.nlmsg_len, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
      return -errno;
    if (round == 1)
      break;
    /* Other listeners' events reach this socket too: only the kernel's
     * answer to this request (ack + 1) counts. */
    bool acked = false;
    for (int tries = 0; tries < 64 && !acked; tries++) {
      struct pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, 1000) != 1)
        break;
      union {
        struct nlmsghdr align;
        char bytes[4096];
      } in;
      ssize_t n = recv(fd, in.bytes, sizeof(in.bytes), 0);
      if (n >= (ssize_t)(NLMSG_HDRLEN + sizeof(struct cn_msg))) {
        struct cn_msg r;
        memcpy(&r, in.bytes + NLMSG_HDRLEN, sizeof(r));
        acked = r.id.idx == CN_IDX_PROC && r.ack == me.nl_pid + 1;
      }
    }
    if (!acked) {
      /* systemd and container managers leave this file in a container. */
      if (access("/run/systemd/container", F_OK) == 0 || access("/.dockerenv", F_OK) == 0)
        return 1;
      return -ETIMEDOUT;
    }
  }
  return 0;
}

/* The kernel interfaces the sensors need, tried for real (root only). */
static int pf_kernel(void) {
  int bad = 0;
  int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_REPORT_DFID_NAME, O_RDONLY);
  if (fd >= 0) {
    pf_line("fanotify", "ok", "file events (fanotify with names) available");
    close(fd);
  } else {
    pf_line("fanotify", "fail",
            "the kernel offers no fanotify file events with names (%s); "
            "Linux 5.9 or newer with CONFIG_FANOTIFY is needed",
            strerror(errno));
    bad++;
  }
  fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY);
  if (fd >= 0) {
    pf_line("exec_guard", "ok", "program-start checks (fanotify permission events) available");
    close(fd);
  } else {
    pf_line("exec_guard", "warn",
            "no fanotify permission events (%s): programs cannot be "
            "blocked before they start, only reported",
            strerror(errno));
  }
  fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC};
  int cn = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? pf_cn_listen(fd) : -errno;
  if (cn == 0) {
    pf_line("proc_connector", "ok", "process events (netlink proc connector) available");
  } else if (cn == 1) {
    /* The kernel serves the proc connector to the initial PID namespace
     * only. */
    pf_line("proc_connector", "warn",
            "this system runs in a container (its own PID namespace), where the kernel gives "
            "no process events: file protection works, process monitoring will be off");
  } else {
    pf_line("proc_connector", "fail",
            "the kernel offers no process events (%s); CONFIG_PROC_EVENTS is needed",
            strerror(-cn));
    bad++;
  }
  if (fd >= 0)
    close(fd);
  return bad;
}

typedef struct {
  char date[64];
} pf_hdr_t;

static size_t pf_on_header(char *p, size_t size, size_t nmemb, void *data) {
  pf_hdr_t *h = data;
  size_t n = size * nmemb;
  if (n > 5 && strncasecmp(p, "date:", 5) == 0) {
    size_t off = 5;
    while (off < n && p[off] == ' ')
      off++;
    size_t len = n - off;
    while (len > 0 && (p[off + len - 1] == '\r' || p[off + len - 1] == '\n'))
      len--;
    snprintf(h->date, sizeof(h->date), "%.*s", (int)(len < 63 ? len : 63), p + off);
  }
  return n;
}

static size_t pf_on_body(char *p, size_t size, size_t nmemb, void *data) {
  (void)p;
  (void)data;
  return size * nmemb; /* the page itself does not matter */
}

/* DNS, TCP, TLS with the pin, and the clock against the console's Date
 * header. Returns the number of failed checks. */
static int pf_network(const identity_t *id) {
  /* Host and port out of the validated URL. */
  char host[IDENTITY_URL_MAX], port[8] = "443";
  const char *h = id->url + 8;
  size_t hl = h[0] == '[' ? strcspn(h + 1, "]") : strcspn(h, ":/");
  snprintf(host, sizeof(host), "%.*s", (int)hl, h[0] == '[' ? h + 1 : h);
  const char *after = h + hl + (h[0] == '[' ? 2 : 0);
  if (after[0] == ':')
    snprintf(port, sizeof(port), "%.*s", (int)strcspn(after + 1, "/"), after + 1);

  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
  int gai = getaddrinfo(host, port, &hints, &ai);
  if (gai != 0) {
    pf_line("dns", "fail",
            "the console's name %s does not resolve (%s): check the network "
            "and DNS settings of this PC",
            host, gai_strerror(gai));
    return 1;
  }
  char addr[INET6_ADDRSTRLEN + 8] = "?";
  getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST);
  pf_line("dns", "ok", "%s is %s", host, addr);

  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int cerr = ETIMEDOUT;
  if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EINPROGRESS) {
    struct pollfd pfd = {fd, POLLOUT, 0};
    if (poll(&pfd, 1, 5000) == 1) {
      socklen_t sl = sizeof(cerr);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &cerr, &sl);
    }
  } else if (fd >= 0) {
    cerr = 0;
  }
  if (fd >= 0)
    close(fd);
  freeaddrinfo(ai);
  if (cerr != 0) {
    pf_line("tcp", "fail",
            "cannot connect to %s port %s (%s): a firewall may block it, or the "
            "console is not running",
            addr, port, strerror(cerr));
    return 1;
  }
  pf_line("tcp", "ok", "connected to %s port %s", addr, port);

  int bad = 0;
  CURL *e = curl_easy_init();
  pf_hdr_t hdr = {""};
  char err[512];
  if (e == NULL || identity_curl_setup(e, id, 15) != 0) {
    pf_line("tls", "fail", "cannot prepare the TLS check (libcurl)");
    curl_easy_cleanup(e);
    return 1;
  }
  char url[IDENTITY_URL_MAX + 8];
  snprintf(url, sizeof(url), "%s/", id->url);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 5L);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, pf_on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &hdr);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, pf_on_body);
  CURLcode c = curl_easy_perform(e);
  if (c == CURLE_SSL_PINNEDPUBKEYNOTMATCH) {
    pf_line("tls", "fail",
            "the certificate presented is not the console's (the pin does not "
            "match): a TLS-intercepting proxy or security appliance sits between this PC and "
            "the console, or the address leads to another server. Exempt %s from TLS "
            "inspection",
            host);
    bad++;
  } else if (c != CURLE_OK) {
    identity_curl_error(c, id->url, err, sizeof(err));
    pf_line("tls", "fail", "%s", err);
    bad++;
  } else {
    pf_line("tls", "ok", "TLS to the console, certificate matches the pin");
    struct tm tm = {0};
    const char *end = hdr.date[0] ? strptime(hdr.date, "%a, %d %b %Y %H:%M:%S GMT", &tm) : NULL;
    if (end == NULL) {
      pf_line("clock", "warn", "the console sent no Date header: clock not compared");
    } else {
      long long skew = (long long)time(NULL) - (long long)timegm(&tm);
      if (skew > 300 || skew < -300) {
        pf_line("clock", "fail",
                "this PC's clock is %lld seconds %s the console's: set the "
                "date and time (or enable time synchronisation) and try again",
                skew < 0 ? -skew : skew, skew < 0 ? "behind" : "ahead of");
        bad++;
      } else {
        pf_line("clock", "ok", "clock within %lld s of the console's", skew < 0 ? -skew : skew);
      }
    }
  }
  curl_easy_cleanup(e);
  return bad;
}

/* yamorictl preflight [--server URL --pin PIN] [--no-kernel]: the
 * installer's checks that need C. The console comes from --server/--pin
 * or from the token in YAMORI_TOKEN. Exit 0 when nothing failed, 1 when a
 * check failed, 64 on bad arguments. */
static int cmd_preflight(char **args, int nargs) {
  const char *server = NULL, *pin = NULL;
  bool kernel = true;
  for (int i = 0; i < nargs; i++) {
    if (strcmp(args[i], "--server") == 0 && i + 1 < nargs)
      server = args[++i];
    else if (strcmp(args[i], "--pin") == 0 && i + 1 < nargs)
      pin = args[++i];
    else if (strcmp(args[i], "--no-kernel") == 0)
      kernel = false;
    else {
      fprintf(stderr, "yamorictl: usage: yamorictl preflight [--server URL --pin PIN] "
                      "[--no-kernel]\n");
      return EXIT_USAGE;
    }
  }
  identity_t id;
  memset(&id, 0, sizeof(id));
  char err[512];
  const char *token = getenv("YAMORI_TOKEN");
  if (server == NULL && token != NULL && token[0] != '\0') {
    if (identity_parse_token(token, &id, err, sizeof(err)) != 0) {
      pf_line("token", "fail", "%s", err);
      return 1;
    }
    identity_wipe(&id);
  } else if (server != NULL && pin != NULL) {
    /* The same checks as a token's, through a token made here. */
    static const char tok[] = "0000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    ym_buf_t t;
    ym_buf_init(&t, IDENTITY_TOKEN_MAX);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "url", server);
    cJSON_AddStringToObject(o, "pin", pin);
    cJSON_AddStringToObject(o, "tok", tok);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int rc = text ? ym_buf_append_str(&t, "ymt1.") : YM_ENOMEM;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = text ? strlen(text) : 0;
    for (size_t i = 0; rc == 0 && i < n; i += 3) {
      uint32_t v = (uint32_t)(unsigned char)text[i] << 16;
      if (i + 1 < n)
        v |= (uint32_t)(unsigned char)text[i + 1] << 8;
      if (i + 2 < n)
        v |= (uint32_t)(unsigned char)text[i + 2];
      for (size_t k = 0; k < 4 && (k == 0 || i + k - 1 < n) && rc == 0; k++)
        rc = ym_buf_append_byte(&t, b64[(v >> (18 - 6 * k)) & 63]);
    }
    free(text);
    if (rc == 0)
      rc = identity_parse_token(t.data, &id, err, sizeof(err));
    ym_buf_free(&t);
    if (rc != 0) {
      pf_line("server", "fail", "%s", rc == YM_ENOMEM ? "out of memory" : err);
      return 1;
    }
  } else if (!kernel) {
    fprintf(stderr, "yamorictl: preflight needs --server and --pin, or YAMORI_TOKEN\n");
    return EXIT_USAGE;
  }
  int bad = kernel ? pf_kernel() : 0;
  if (id.url[0] != '\0') {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    bad += pf_network(&id);
    curl_global_cleanup();
  }
  return bad ? 1 : 0;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                           {"socket", required_argument, NULL, 's'},
                                           {"rules", required_argument, NULL, 'r'},
                                           {"json", no_argument, NULL, 'j'},
                                           {"help", no_argument, NULL, 'h'},
                                           {"version", no_argument, NULL, 'V'},
                                           {NULL, 0, NULL, 0}};
  opts_t o = {0};
  o.config = CONF_DEFAULT_PATH;
  o.rules.v = o.rules_v;
  bool config_given = false;
  int ch;
  while ((ch = getopt_long(argc, argv, "+c:s:r:jhV", longopts, NULL)) != -1) {
    switch (ch) {
    case 'c':
      o.config = optarg;
      config_given = true;
      break;
    case 's':
      o.socket = optarg;
      break;
    case 'r':
      if (o.rules.n >= 16) {
        fprintf(stderr, "yamorictl: at most 16 rule directories\n");
        return EXIT_USAGE;
      }
      o.rules.v[o.rules.n++] = optarg;
      break;
    case 'j':
      o.json = true;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case 'V': {
      ym_buf_t b;
      ym_buf_init(&b, 4096);
      ym_version_report(&b, "yamorictl");
      fputs(b.data, stdout);
      ym_buf_free(&b);
      return 0;
    }
    default:
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[optind];
  char **args = argv + optind + 1;
  int nargs = argc - optind - 1;

  ym_cfg_error_t err = {0};
  conf_t *conf = conf_load(config_given || access(o.config, F_OK) == 0 ? o.config : NULL, &err);
  if (conf == NULL) {
    fprintf(stderr, "yamorictl: configuration refused: %s\n", err.msg);
    return 78;
  }
  const char *sock = o.socket ? o.socket : conf->control_socket;
  int rc = EXIT_USAGE;
  conn_t c = {-1, {0}};
  ym_buf_init(&c.in, 1 << 20);

  if (strcmp(cmd, "scan") == 0) {
    if (nargs < 1) {
      fprintf(stderr, "yamorictl: scan needs at least one path\n");
      goto out;
    }
    if (o.rules.n == 0)
      c.fd = connect_agent(sock);
    if (c.fd >= 0)
      rc = scan_via_agent(&c, &o, args, nargs);
    else
      rc = scan_local(&o, o.rules.n ? &o.rules : &conf->rules_dirs, args, nargs);
    goto out;
  }
  if (strcmp(cmd, "enroll") == 0) {
    rc = cmd_enroll(conf, args, nargs);
    goto out;
  }
  if (strcmp(cmd, "preflight") == 0) {
    rc = cmd_preflight(args, nargs);
    goto out;
  }
  c.fd = connect_agent(sock);
  if (c.fd < 0) {
    fprintf(stderr, "yamorictl: the agent is not running (no answer on %s)\n", sock);
    rc = strcmp(cmd, "status") == 0 ? EXIT_NOT_RUNNING : EXIT_ERROR;
    if (strcmp(cmd, "selftest") == 0)
      printf("Protection is NOT working: the agent is not running.\n");
    goto out;
  }
  if (strcmp(cmd, "status") == 0 && nargs == 0)
    rc = cmd_status(&c, &o);
  else if (strcmp(cmd, "selftest") == 0 && nargs == 0)
    rc = cmd_selftest(&c);
  else if (strcmp(cmd, "rules") == 0 && nargs == 1 && strcmp(args[0], "reload") == 0)
    rc = simple(&c, &o, "rules_reload", NULL);
  else if (strcmp(cmd, "quarantine") == 0 && nargs == 1 && strcmp(args[0], "list") == 0)
    rc = simple(&c, &o, "quarantine_list", NULL);
  else if (strcmp(cmd, "quarantine") == 0 && nargs == 2 && strcmp(args[0], "restore") == 0)
    rc = simple(&c, &o, "quarantine_restore", args[1]);
  else if (strcmp(cmd, "quarantine") == 0 && nargs == 2 && strcmp(args[0], "delete") == 0)
    rc = simple(&c, &o, "quarantine_delete", args[1]);
  else {
    fprintf(stderr, "yamorictl: unknown command or arguments: %s\n", cmd);
    usage(stderr);
  }
out:
  if (c.fd >= 0)
    close(c.fd);
  ym_buf_free(&c.in);
  conf_free(conf);
  return rc;
}
