/*
 * Behaviour detection: compiled Sigma rules evaluated on the agent's events
 * (behave.h).
 */
#include "behave.h"

#include "os.h"
#include "sigma.h"

#include "yamori/err.h"
#include "yamori/log.h"
#include "yamori/sha256.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  sigma_ruleset_t *rs;
  sigma_eval_t *ev;
} set_t;

typedef struct {
  uint64_t key;    /* hash of rule id and process entity id; 0 empty */
  int64_t last_ns; /* CLOCK_MONOTONIC */
  uint64_t suppressed;
} slot_t;

/* An alert waiting for the result of its kill. */
typedef struct {
  behave_t *b;
  ym_event_t ev;
  char exe[64];
} pending_t;

struct behave {
  behave_ops_t ops;
  behave_conf_t conf;
  set_t *sets;
  size_t nsets;
  behave_status_t st;
  slot_t rate[BEHAVE_RATE_SLOTS];
  ym_event_t alert;
  sigma_event_src_t src;
};

static int64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The event's @timestamp ("YYYY-MM-DDTHH:MM:SS.uuuuuuZ", as
 * ym_time_format() writes it) in nanoseconds; 0 when absent or malformed. */
static int64_t event_time_ns(const ym_event_t *ev) {
  size_t n;
  const char *t = ym_event_get_str(ev, YM_F_TIMESTAMP, &n);
  if (t == NULL || n != 27 || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' ||
      t[16] != ':' || t[19] != '.' || t[26] != 'Z')
    return 0;
  static const int pos[] = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25};
  int d[20];
  for (int i = 0; i < 20; i++) {
    if (t[pos[i]] < '0' || t[pos[i]] > '9')
      return 0;
    d[i] = t[pos[i]] - '0';
  }
  int64_t y = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3];
  int64_t mo = d[4] * 10 + d[5], dd = d[6] * 10 + d[7];
  int64_t hh = d[8] * 10 + d[9], mi = d[10] * 10 + d[11], ss = d[12] * 10 + d[13];
  int64_t us = 0;
  for (int i = 14; i < 20; i++)
    us = us * 10 + d[i];
  if (mo < 1 || mo > 12 || dd < 1 || dd > 31)
    return 0;
  /* Days from the civil date (proleptic Gregorian calendar). */
  y -= mo <= 2;
  int64_t era = y / 400, yoe = y - era * 400;
  int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + dd - 1;
  int64_t days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
  return ((days * 86400 + hh * 3600 + mi * 60 + ss) * 1000000 + us) * 1000;
}

static void sets_free(set_t *sets, size_t n) {
  for (size_t i = 0; i < n; i++) {
    sigma_eval_free(sets[i].ev);
    sigma_ruleset_free(sets[i].rs);
  }
  free(sets);
}

int behave_new(const behave_ops_t *ops, const behave_conf_t *conf, behave_t **out) {
  behave_t *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return YM_ENOMEM;
  b->ops = *ops;
  b->conf = *conf;
  b->st.enabled = conf->enabled;
  ym_event_init(&b->alert, ops->base);
  *out = b;
  return 0;
}

void behave_free(behave_t *b) {
  if (b == NULL)
    return;
  sets_free(b->sets, b->nsets);
  ym_event_free(&b->alert);
  free(b);
}

void behave_configure(behave_t *b, const behave_conf_t *conf) {
  b->conf = *conf;
  b->st.enabled = conf->enabled;
}

/* ---------------------------------------------------------------- */
/* Loading                                                            */

static int cmp_names(const void *x, const void *y) {
  return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Reads the regular file name in dirfd (no symbolic link) into *data. */
static int read_file(int dirfd, const char *name, char **data, size_t *len) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return ym_err_from_errno(errno);
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_close;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = YM_EINVAL;
    goto out_close;
  }
  if ((uint64_t)st.st_size > BEHAVE_MAX_FILE_BYTES) {
    rc = YM_ETOOBIG;
    goto out_close;
  }
  size_t n = (size_t)st.st_size, got = 0;
  char *p = malloc(n + 1);
  if (p == NULL) {
    rc = YM_ENOMEM;
    goto out_close;
  }
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      free(p);
      rc = r < 0 ? ym_err_from_errno(errno) : YM_EIO; /* shrank while read */
      goto out_close;
    }
    got += (size_t)r;
  }
  p[n] = '\0';
  *data = p;
  *len = n;
out_close:
  close(fd);
  return rc;
}

/* The *.json names of dirfd, sorted; at most room of them. */
static int list_json(int dirfd, char **names, size_t room, size_t *n) {
  int fd = dup(dirfd);
  if (fd < 0)
    return ym_err_from_errno(errno);
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return ym_err_from_errno(errno);
  }
  int rc = 0;
  struct dirent *de;
  *n = 0;
  while ((de = readdir(d)) != NULL) {
    size_t l = strlen(de->d_name);
    if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
      continue;
    if (*n == room) {
      rc = YM_ETOOBIG;
      break;
    }
    if ((names[*n] = strdup(de->d_name)) == NULL) {
      rc = YM_ENOMEM;
      break;
    }
    (*n)++;
  }
  closedir(d);
  qsort(names, *n, sizeof(char *), cmp_names);
  return rc;
}

/* Does any of dirs have a sigma/ directory? */
static bool any_sigma(const ym_strlist_t *dirs) {
  for (size_t i = 0; i < dirs->n; i++) {
    char path[1200];
    struct stat st;
    snprintf(path, sizeof(path), "%s/sigma", dirs->v[i]);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
      return true;
  }
  return false;
}

int behave_load(behave_t *b, const ym_strlist_t *dirs, const ym_strlist_t *fallback, char *msg,
                size_t msglen) {
  if (fallback != NULL && !any_sigma(dirs))
    dirs = fallback;
  set_t *sets = calloc(BEHAVE_MAX_FILES, sizeof(*sets));
  if (sets == NULL)
    return YM_ENOMEM;
  size_t nsets = 0;
  uint8_t digests[BEHAVE_MAX_FILES][YM_SHA256_LEN];
  unsigned rules = 0, corrs = 0;
  int rc = 0;
  msg[0] = '\0';
  for (size_t i = 0; i < dirs->n && rc == 0; i++) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/sigma", dirs->v[i]);
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
      if (errno == ENOENT)
        continue; /* a directory without behaviour rules */
      rc = ym_err_from_errno(errno);
      snprintf(msg, msglen, "%s: %s", path, ym_strerror(rc));
      break;
    }
    char *names[BEHAVE_MAX_FILES];
    size_t nn = 0;
    rc = list_json(dfd, names, BEHAVE_MAX_FILES - nsets, &nn);
    if (rc != 0)
      snprintf(msg, msglen, "%s: %s", path,
               rc == YM_ETOOBIG ? "more than 64 compiled rule files" : ym_strerror(rc));
    for (size_t k = 0; k < nn; k++) {
      if (rc == 0) {
        char *data = NULL;
        size_t len = 0;
        char err[256] = "";
        rc = read_file(dfd, names[k], &data, &len);
        if (rc == 0) {
          rc = sigma_ruleset_load(data, len, &sets[nsets].rs, err, sizeof(err));
          ym_sha256_mem(data, len, digests[nsets]);
          free(data);
        }
        if (rc == 0 && (sets[nsets].ev = sigma_eval_new(sets[nsets].rs)) == NULL) {
          sigma_ruleset_free(sets[nsets].rs);
          rc = YM_ENOMEM;
        }
        if (rc != 0) {
          snprintf(msg, msglen, "%s/%s: %s", path, names[k], err[0] ? err : ym_strerror(rc));
        } else {
          rules += (unsigned)sigma_ruleset_rule_count(sets[nsets].rs);
          corrs += (unsigned)sigma_ruleset_correlation_count(sets[nsets].rs);
          nsets++;
        }
      }
      free(names[k]);
    }
    close(dfd);
  }
  if (rc != 0) {
    sets_free(sets, nsets);
    b->st.load_errors++;
    snprintf(b->st.load_error, sizeof(b->st.load_error), "%s", msg);
    return rc;
  }
  sets_free(b->sets, b->nsets);
  b->sets = sets;
  b->nsets = nsets;
  b->st.rules = rules;
  b->st.correlations = corrs;
  b->st.files = (unsigned)nsets;
  b->st.load_error[0] = '\0';
  b->st.version[0] = '\0';
  if (nsets > 0) {
    uint8_t all[YM_SHA256_LEN];
    ym_sha256_mem(digests, nsets * YM_SHA256_LEN, all);
    ym_hex(all, 8, b->st.version); /* 16 hex digits and the NUL */
  }
  memset(b->rate, 0, sizeof(b->rate)); /* rule indexes changed */
  return 0;
}

int behave_reload(behave_t *b, const ym_strlist_t *dirs, const ym_strlist_t *fallback) {
  if (b == NULL)
    return 0;
  char msg[320];
  int rc = behave_load(b, dirs, fallback, msg, sizeof(msg));
  if (rc != 0)
    ym_log(YM_LOG_ERROR, 0, "behaviour rules refused, keeping the %u loaded: %s", b->st.rules, msg);
  else
    ym_log(YM_LOG_NOTICE, 0, "behaviour rules: %u rules, %u correlations from %u files (%s)",
           b->st.rules, b->st.correlations, b->st.files, b->st.version[0] ? b->st.version : "none");
  return rc;
}

/* ---------------------------------------------------------------- */
/* System-critical programs                                           */

/* Programs a behaviour response never kills, even when a critical rule
 * matches them: killing them would take the machine or remote access
 * down. A path alone proves nothing (a process reports the path of its own
 * mount namespace), so the response also checks that the process runs the
 * very file the agent sees there (os_proc_runs_file()). */
static const char *const critical_exact[] = {
    "/sbin/init",
    "/usr/sbin/init",
    "/lib/systemd/systemd",
    "/usr/lib/systemd/systemd",
    "/usr/bin/dbus-daemon",
    "/usr/bin/dbus-broker",
    "/usr/bin/dbus-broker-launch",
    "/sbin/agetty",
    "/usr/sbin/agetty",
    "/usr/sbin/cron",
    "/usr/sbin/rsyslogd",
};
/* The service manager's own daemons (journald, logind, udevd, ...). */
static const char *const critical_prefix[] = {"/lib/systemd/systemd-", "/usr/lib/systemd/systemd-"};

bool behave_system_critical(const char *exe, size_t len, int64_t ppid) {
  if (exe == NULL)
    return false;
  for (size_t i = 0; i < sizeof(critical_exact) / sizeof(critical_exact[0]); i++)
    if (strlen(critical_exact[i]) == len && memcmp(critical_exact[i], exe, len) == 0)
      return true;
  for (size_t i = 0; i < sizeof(critical_prefix) / sizeof(critical_prefix[0]); i++) {
    size_t n = strlen(critical_prefix[i]);
    if (len > n && memcmp(critical_prefix[i], exe, n) == 0 && memchr(exe + n, '/', len - n) == NULL)
      return true;
  }
  /* The ssh listener (started by the service manager); the per-connection
   * sshd processes below it may be killed. */
  if (ppid == 1 && ((len == 14 && memcmp(exe, "/usr/sbin/sshd", 14) == 0) ||
                    (len == 10 && memcmp(exe, "/sbin/sshd", 10) == 0)))
    return true;
  return false;
}

/* ---------------------------------------------------------------- */
/* Alerts                                                             */

static uint64_t hash_key(const char *rule, const char *entity, size_t elen) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (const char *p = rule; *p; p++)
    h = (h ^ (uint8_t)*p) * 1099511628211ULL;
  h = (h ^ 0xff) * 1099511628211ULL;
  for (size_t i = 0; i < elen; i++)
    h = (h ^ (uint8_t)entity[i]) * 1099511628211ULL;
  return h == 0 ? 1 : h;
}

/* Returns true when the match may alert; *suppressed gets the matches
 * held back since the last alert of the pair. */
static bool rate_ok(behave_t *b, const char *rule, const ym_event_t *ev, int64_t now,
                    uint64_t *suppressed) {
  *suppressed = 0;
  if (b->conf.rate_limit_ns <= 0)
    return true;
  size_t elen = 0;
  const char *ent = ym_event_get_str(ev, YM_F_PROCESS_ENTITY_ID, &elen);
  uint64_t key = hash_key(rule, ent ? ent : "", ent ? elen : 0);
  slot_t *s = &b->rate[key % BEHAVE_RATE_SLOTS];
  if (s->key == key && now - s->last_ns < b->conf.rate_limit_ns) {
    s->suppressed++;
    return false;
  }
  if (s->key == key)
    *suppressed = s->suppressed;
  s->key = key;
  s->last_ns = now;
  s->suppressed = 0;
  return true;
}

static const struct {
  const char *tag, *name;
} tactics[] = {
    {"reconnaissance", "Reconnaissance"},
    {"resource_development", "Resource Development"},
    {"initial_access", "Initial Access"},
    {"execution", "Execution"},
    {"persistence", "Persistence"},
    {"privilege_escalation", "Privilege Escalation"},
    {"defense_evasion", "Defense Evasion"},
    {"credential_access", "Credential Access"},
    {"discovery", "Discovery"},
    {"lateral_movement", "Lateral Movement"},
    {"collection", "Collection"},
    {"command_and_control", "Command and Control"},
    {"exfiltration", "Exfiltration"},
    {"impact", "Impact"},
};

/* The ATT&CK tactic of tag ("attack.privilege-escalation"), or NULL. */
static const char *tactic_of(const char *tag) {
  if (strncmp(tag, "attack.", 7) != 0)
    return NULL;
  char t[40];
  size_t n = 0;
  for (const char *p = tag + 7; *p && n + 1 < sizeof(t); p++)
    t[n++] = *p == '-' ? '_' : *p;
  t[n] = '\0';
  for (size_t i = 0; i < sizeof(tactics) / sizeof(tactics[0]); i++)
    if (strcmp(tactics[i].tag, t) == 0)
      return tactics[i].name;
  return NULL;
}

/* Fields of the triggering event the alert carries. */
static const ym_field_t copied[] = {
    YM_F_PROCESS_ARGS,
    YM_F_PROCESS_ARGS_COUNT,
    YM_F_PROCESS_COMMAND_LINE,
    YM_F_PROCESS_ENTITY_ID,
    YM_F_PROCESS_EXECUTABLE,
    YM_F_PROCESS_HASH_SHA256,
    YM_F_PROCESS_NAME,
    YM_F_PROCESS_PARENT_ENTITY_ID,
    YM_F_PROCESS_PARENT_EXECUTABLE,
    YM_F_PROCESS_PARENT_NAME,
    YM_F_PROCESS_PARENT_PID,
    YM_F_PROCESS_PID,
    YM_F_PROCESS_START,
    YM_F_PROCESS_USER_ID,
    YM_F_PROCESS_USER_NAME,
    YM_F_PROCESS_WORKING_DIRECTORY,
    YM_F_FILE_DIRECTORY,
    YM_F_FILE_EXTENSION,
    YM_F_FILE_GID,
    YM_F_FILE_HASH_SHA256,
    YM_F_FILE_INODE,
    YM_F_FILE_MODE,
    YM_F_FILE_MTIME,
    YM_F_FILE_NAME,
    YM_F_FILE_PATH,
    YM_F_FILE_SIZE,
    YM_F_FILE_TYPE,
    YM_F_FILE_UID,
    YM_F_YAMORI_FILE_ORIGINAL_DIRECTORY,
    YM_F_YAMORI_FILE_ORIGINAL_NAME,
    YM_F_YAMORI_FILE_ORIGINAL_PATH,
    YM_F_SOURCE_IP,
    YM_F_SOURCE_PORT,
    YM_F_DESTINATION_IP,
    YM_F_DESTINATION_PORT,
    YM_F_NETWORK_DIRECTION,
    YM_F_NETWORK_TRANSPORT,
    YM_F_NETWORK_TYPE,
    YM_F_YAMORI_NETWORK_COUNT,
};

/* The parent of a file event's actor, from the process table. */
static void add_parent(behave_t *b, ym_event_t *al, const ym_event_t *ev) {
  int64_t pid, ppid;
  if (b->ops.procs == NULL || ym_event_has(ev, YM_F_PROCESS_PARENT_PID) ||
      !ym_event_get_int(ev, YM_F_PROCESS_PID, &pid))
    return;
  proc_entry_t *e = proctab_get(b->ops.procs, (int)pid);
  if (e == NULL || e->ppid <= 0)
    return;
  ppid = e->ppid;
  ym_event_set_int(al, YM_F_PROCESS_PARENT_PID, ppid);
  if (e->parent_entity_id[0])
    ym_event_set_cstr(al, YM_F_PROCESS_PARENT_ENTITY_ID, e->parent_entity_id);
  proc_entry_t *p = proctab_get(b->ops.procs, (int)ppid);
  if (p != NULL && p->exe != NULL) {
    ym_event_set_str(al, YM_F_PROCESS_PARENT_EXECUTABLE, p->exe, p->exe_len);
    ym_event_set_cstr(al, YM_F_PROCESS_PARENT_NAME, proctab_name(p));
  }
}

static void build_alert(behave_t *b, ym_event_t *al, const ym_event_t *ev, const sigma_match_t *m,
                        uint64_t suppressed) {
  ym_event_set_cstr(al, YM_F_EVENT_KIND, "alert");
  ym_event_set_one(al, YM_F_EVENT_CATEGORY, "intrusion_detection");
  ym_event_set_one(al, YM_F_EVENT_TYPE, "info");
  ym_event_set_cstr(al, YM_F_EVENT_ACTION, "behaviour-detected");
  ym_event_set_cstr(al, YM_F_EVENT_DATASET, "yamori.behaviour");
  ym_event_set_int(al, YM_F_EVENT_SEVERITY, m->severity);
  ym_event_set_cstr(al, YM_F_RULE_RULESET, "sigma");
  ym_event_set_cstr(al, YM_F_RULE_ID, m->id);
  ym_event_set_cstr(al, YM_F_RULE_NAME, m->title);
  if (m->description != NULL && m->description[0])
    ym_event_set_cstr(al, YM_F_RULE_DESCRIPTION, m->description);
  if (m->nreferences > 0)
    ym_event_set_cstr(al, YM_F_RULE_REFERENCE, m->references[0]);
  if (b->st.version[0])
    ym_event_set_cstr(al, YM_F_RULE_VERSION, b->st.version);
  ym_event_set_cstr(al, YM_F_YAMORI_SIGMA_LEVEL, m->level);
  const char *items[SIGMA_MATCH_MAX_FIELDS > 16 ? SIGMA_MATCH_MAX_FIELDS : 16];
  size_t lens[sizeof(items) / sizeof(items[0])], n = 0;
  for (size_t i = 0; i < m->nfields && n < SIGMA_MATCH_MAX_FIELDS; i++, n++) {
    items[n] = m->fields[i];
    lens[n] = strlen(m->fields[i]);
  }
  if (n > 0)
    ym_event_set_strv(al, YM_F_YAMORI_SIGMA_MATCHED, items, lens, n);
  if (m->ntechniques > 0 || m->ntags > 0) {
    n = 0;
    for (size_t i = 0; i < m->ntechniques && n < 16; i++, n++) {
      items[n] = m->techniques[i];
      lens[n] = strlen(items[n]);
    }
    if (n > 0)
      ym_event_set_strv(al, YM_F_THREAT_TECHNIQUE_ID, items, lens, n);
    size_t nt = 0;
    for (size_t i = 0; i < m->ntags && nt < 16; i++) {
      const char *t = tactic_of(m->tags[i]);
      if (t != NULL) {
        items[nt] = t;
        lens[nt++] = strlen(t);
      }
    }
    if (nt > 0)
      ym_event_set_strv(al, YM_F_THREAT_TACTIC_NAME, items, lens, nt);
    if (n > 0 || nt > 0)
      ym_event_set_cstr(al, YM_F_THREAT_FRAMEWORK, "MITRE ATT&CK");
  }
  if (suppressed > 0)
    ym_event_set_int(al, YM_F_YAMORI_SIGMA_SUPPRESSED, (int64_t)suppressed);
  for (size_t i = 0; i < sizeof(copied) / sizeof(copied[0]); i++)
    ym_event_copy(al, ev, copied[i]);
  add_parent(b, al, ev);
}

static void on_killed(int rc, const char *why, bool exited, void *data) {
  pending_t *p = data;
  behave_t *b = p->b;
  (void)exited;
  if (rc == 0) {
    ym_event_set_cstr(&p->ev, YM_F_YAMORI_RESPONSE_RESULT, "success");
    b->st.killed++;
    ym_log(YM_LOG_WARN, 0, "behaviour response: killed %s", p->exe);
  } else {
    bool refused = rc == YM_EPERM || rc == YM_ESTALE;
    ym_event_set_cstr(&p->ev, YM_F_YAMORI_RESPONSE_RESULT, refused ? "refused" : "failure");
    ym_event_set_cstr(&p->ev, YM_F_EVENT_REASON, why ? why : ym_strerror(rc));
    if (refused)
      b->st.kill_refused++;
    else
      b->st.kill_failed++;
  }
  b->ops.emit(b->ops.ctx, &p->ev);
  ym_event_free(&p->ev);
  free(p);
}

static int level_index(int severity) {
  return severity >= 99 ? 3 : severity >= 73 ? 2 : severity >= 47 ? 1 : 0;
}

/* The level's response; returns true when the alert was handed to a kill
 * (it is written when the kill has finished). */
static bool respond(behave_t *b, ym_event_t *al, const ym_event_t *ev, const sigma_match_t *m) {
  if (b->conf.response[level_index(m->severity)] != BEHAVE_RESPONSE_KILL) {
    ym_event_set_cstr(al, YM_F_YAMORI_RESPONSE_ACTION, "alert");
    return false;
  }
  ym_event_set_cstr(al, YM_F_YAMORI_RESPONSE_ACTION, "kill");
  int64_t pid = 0, ppid = 0;
  size_t elen = 0, xlen = 0;
  const char *ent = ym_event_get_str(ev, YM_F_PROCESS_ENTITY_ID, &elen);
  const char *exe = ym_event_get_str(ev, YM_F_PROCESS_EXECUTABLE, &xlen);
  const char *why = NULL;
  if (!ym_event_get_int(ev, YM_F_PROCESS_PID, &pid) || ent == NULL || elen != PROCTAB_ENTITY_LEN)
    why = "the process is not known by its entity id";
  else if (!ym_event_get_int(ev, YM_F_PROCESS_PARENT_PID, &ppid) && b->ops.procs != NULL) {
    proc_entry_t *e = proctab_get(b->ops.procs, (int)pid);
    ppid = e != NULL ? e->ppid : 0;
  }
  /* The path in the event is the process's own view; it is a system
   * program only when it runs that very file as the agent sees it (a user
   * namespace can bind anything over /usr/sbin/cron). */
  char xpath[PATH_MAX];
  if (why == NULL && behave_system_critical(exe, xlen, ppid) && xlen < sizeof(xpath)) {
    memcpy(xpath, exe, xlen);
    xpath[xlen] = '\0';
    if (os_proc_runs_file((int)pid, xpath))
      why = "refused: system-critical processes are not killed";
  }
  if (why == NULL && b->ops.kill == NULL)
    why = "no kill function";
  if (why == NULL) {
    pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
      why = ym_strerror(YM_ENOMEM);
    } else {
      p->b = b;
      snprintf(p->exe, sizeof(p->exe), "%.*s", (int)(xlen < 63 ? xlen : 63), exe ? exe : "");
      ym_event_init(&p->ev, b->ops.base);
      char ent0[PROCTAB_ENTITY_LEN + 1];
      memcpy(ent0, ent, PROCTAB_ENTITY_LEN);
      ent0[PROCTAB_ENTITY_LEN] = '\0';
      /* The alert as built so far moves into the pending one. */
      for (int f = 0; f < YM_F_COUNT; f++)
        ym_event_copy(&p->ev, al, (ym_field_t)f);
      int rc = b->ops.kill(b->ops.ctx, (int)pid, ent0, on_killed, p);
      if (rc == 0)
        return true;
      ym_event_free(&p->ev);
      free(p);
      why = ym_strerror(rc);
    }
  }
  ym_event_set_cstr(al, YM_F_YAMORI_RESPONSE_RESULT, "refused");
  ym_event_set_cstr(al, YM_F_EVENT_REASON, why);
  b->st.kill_refused++;
  return false;
}

static void on_match(behave_t *b, const ym_event_t *ev, const sigma_match_t *m, int64_t now) {
  b->st.matches++;
  if (m->severity <= 0) {
    b->st.informational++;
    return;
  }
  uint64_t suppressed;
  if (!rate_ok(b, m->id, ev, now, &suppressed)) {
    b->st.rate_limited++;
    return;
  }
  ym_event_t *al = &b->alert;
  ym_event_reset(al);
  build_alert(b, al, ev, m, suppressed);
  b->st.alerts++;
  ym_log(YM_LOG_WARN, 0, "behaviour detected: rule %s (%s)", m->id, m->title);
  if (!respond(b, al, ev, m))
    b->ops.emit(b->ops.ctx, al);
}

void behave_event(behave_t *b, const ym_event_t *ev) {
  if (b == NULL || !b->conf.enabled || b->nsets == 0)
    return;
  /* Stored strings are not NUL-terminated: the two names are copied. */
  char ds[32], act[32];
  size_t dn, an, kn;
  const char *d = ym_event_get_str(ev, YM_F_EVENT_DATASET, &dn);
  const char *a = ym_event_get_str(ev, YM_F_EVENT_ACTION, &an);
  const char *kind = ym_event_get_str(ev, YM_F_EVENT_KIND, &kn);
  if (d == NULL || a == NULL || dn >= sizeof(ds) || an >= sizeof(act) ||
      (kind != NULL && kn == 5 && memcmp(kind, "alert", 5) == 0))
    return;
  memcpy(ds, d, dn);
  ds[dn] = '\0';
  memcpy(act, a, an);
  act[an] = '\0';
  const char *cats[SIGMA_EVENT_MAX_CATEGORIES];
  size_t ncats = sigma_event_categories(ds, act, cats, SIGMA_EVENT_MAX_CATEGORIES);
  if (ncats == 0)
    return;
  b->st.evaluated++;
  /* The rate limit counts in monotonic time (a clock set back must not
   * silence alerts); correlations count in the events' own time. */
  int64_t now = clock_ns(CLOCK_MONOTONIC);
  int64_t when = event_time_ns(ev);
  if (when == 0)
    when = clock_ns(CLOCK_REALTIME);
  for (size_t s = 0; s < b->nsets; s++) {
    set_t *set = &b->sets[s];
    sigma_source_t src;
    sigma_source_event(&src, &b->src, set->rs, ev);
    for (size_t c = 0; c < ncats; c++) {
      int nm = sigma_eval_event(set->ev, cats[c], "linux", when, &src);
      for (int i = 0; i < nm; i++)
        on_match(b, ev, sigma_eval_match(set->ev, (size_t)i), now);
    }
  }
}

void behave_status(const behave_t *b, behave_status_t *out) {
  *out = b->st;
}
