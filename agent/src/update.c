/*
 * Remote updates of the agent and its rules (update.h, docs/update.md).
 */
#include "update.h"

#include "behave.h"
#include "detect.h"
#include "rules.h"
#include "uplink.h"
#include "upstate.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/log.h"
#include "yamori/manifest.h"
#include "yamori/sha256.h"
#include "yamori/sign.h"
#include "yamori/unpack.h"
#include "yamori/version.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_KEYS 16
#define RULES_BUNDLE_MAX (32u * 1024 * 1024)
#define ACCEPTED_MAX 8192

enum { SCOPE_DEFAULT, SCOPE_TENANT, SCOPES };
static const char *const scope_names[SCOPES] = {"default", "tenant"};

typedef struct {
  char version[64];
  uint64_t serial;
} bundle_t;

struct update {
  agent_t *a;
  bool enabled;  /* trusted keys are installed */
  bool launched; /* run by the launcher: releases can be applied */
  bool trial;    /* this version runs on trial */
  bool committed;
  bool closing;
  pid_t launcher;
  char running[64];
  char arch[72];
  char update_dir[1024];
  char versions_dir[1024];
  char bundles_dir[1100];
  ym_sign_pub_t keys[MAX_KEYS];
  size_t nkeys;
  uint64_t max_package;
  /* agent-owned persistent state (update_dir/accepted.json) */
  uint64_t accepted; /* highest release serial accepted */
  bundle_t rules[SCOPES];
  uint64_t rules_failed_serial[SCOPES];
  char rules_failed[64];
  char rules_reason[256];
  ym_strlist_t dirs; /* effective rule directories when bundles are active */
  /* the release job */
  bool busy;
  ym_manifest_t job;
  int part_fd;
  uint64_t part_before;
  char part_path[1200];
  /* the rules job */
  bool rules_busy;
  ym_manifest_t rjob;
  int rscope;
  int works; /* thread-pool jobs running */
};

/* ---------------------------------------------------------------- */
/* Agent-owned state                                                  */

static int save_accepted(update_t *u) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddNumberToObject(j, "release", (double)u->accepted);
  cJSON *r = cJSON_AddObjectToObject(j, "rules");
  for (int s = 0; s < SCOPES; s++) {
    cJSON *b = cJSON_AddObjectToObject(r, scope_names[s]);
    cJSON_AddStringToObject(b, "version", u->rules[s].version);
    cJSON_AddNumberToObject(b, "serial", (double)u->rules[s].serial);
    cJSON_AddNumberToObject(b, "failed_serial", (double)u->rules_failed_serial[s]);
  }
  cJSON_AddStringToObject(j, "rules_failed", u->rules_failed);
  cJSON_AddStringToObject(j, "rules_reason", u->rules_reason);
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (text == NULL)
    return YM_ENOMEM;
  char path[1100], tmp[1100];
  snprintf(path, sizeof(path), "%s/accepted.json", u->update_dir);
  snprintf(tmp, sizeof(tmp), "%s/.accepted.json.tmp", u->update_dir);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  size_t n = strlen(text);
  int rc = fd >= 0 && write(fd, text, n) == (ssize_t)n && fsync(fd) == 0 ? 0 : YM_EIO;
  if (fd >= 0)
    close(fd);
  free(text);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = ym_err_from_errno(errno);
  return rc;
}

static uint64_t json_u64(const cJSON *j, const char *key) {
  long long v;
  return ym_json_get_int(j, key, &v) && v > 0 ? (uint64_t)v : 0;
}

static void load_accepted(update_t *u) {
  char path[1100], buf[ACCEPTED_MAX];
  snprintf(path, sizeof(path), "%s/accepted.json", u->update_dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return;
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  cJSON *j = NULL;
  if (n <= 0 || ym_json_parse(buf, (size_t)n, ACCEPTED_MAX - 1, &j, NULL) != 0) {
    cJSON_Delete(j);
    return;
  }
  u->accepted = json_u64(j, "release");
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "rules");
  for (int s = 0; s < SCOPES; s++) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(r, scope_names[s]);
    const char *v = ym_json_get_str(b, "version");
    if (v != NULL && (v[0] == '\0' || ym_manifest_version_ok(v)))
      snprintf(u->rules[s].version, sizeof(u->rules[s].version), "%s", v);
    u->rules[s].serial = json_u64(b, "serial");
    u->rules_failed_serial[s] = json_u64(b, "failed_serial");
  }
  const char *f = ym_json_get_str(j, "rules_failed");
  const char *why = ym_json_get_str(j, "rules_reason");
  snprintf(u->rules_failed, sizeof(u->rules_failed), "%s", f && strlen(f) < 64 ? f : "");
  snprintf(u->rules_reason, sizeof(u->rules_reason), "%s", why && strlen(why) < 256 ? why : "");
  cJSON_Delete(j);
}

/* ---------------------------------------------------------------- */
/* Reports                                                            */

static cJSON *report(update_t *u) {
  upstate_t st;
  memset(&st, 0, sizeof(st));
  if (u->launched)
    upstate_load(u->update_dir, &st);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "running", u->running);
  cJSON_AddStringToObject(o, "pending", st.pending);
  cJSON_AddStringToObject(o, "failed", st.failed);
  cJSON_AddStringToObject(o, "reason", st.reason);
  cJSON_AddNumberToObject(o, "serial", (double)u->accepted);
  cJSON_AddStringToObject(o, "platform", "linux");
  cJSON_AddStringToObject(o, "architecture", u->arch);
  cJSON_AddBoolToObject(o, "trial", u->trial && !u->committed);
  cJSON *r = cJSON_AddObjectToObject(o, "rules");
  for (int s = 0; s < SCOPES; s++)
    cJSON_AddStringToObject(r, scope_names[s], u->rules[s].version);
  cJSON_AddStringToObject(r, "failed", u->rules_failed);
  cJSON_AddStringToObject(r, "reason", u->rules_reason);
  return o;
}

void update_status_json(update_t *u, cJSON *j) {
  if (u != NULL)
    cJSON_AddItemToObject(j, "update", report(u));
}

static void on_reported(int rc, long status, const void *body, size_t len, void *data) {
  (void)rc, (void)status, (void)body, (void)len, (void)data;
}

/* Tells the console at once (the next check-in says it again). */
static void report_now(update_t *u) {
  if (u->a->up == NULL || u->closing)
    return;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddItemToObject(j, "update", report(u));
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (text == NULL)
    return;
  uplink_req_t req = {"POST", "/api/v1/update/report", NULL, text, strlen(text), 4096, -1, 0};
  uplink_request(u->a->up, &req, on_reported, NULL);
  free(text);
}

static void refuse(update_t *u, const char *version, uint64_t serial, const char *why) {
  ym_log(YM_LOG_WARN, 0, "release %s (serial %llu) refused: %s", version,
         (unsigned long long)serial, why);
  upstate_t st;
  if (upstate_load(u->update_dir, &st) != 0)
    memset(&st, 0, sizeof(st));
  snprintf(st.failed, sizeof(st.failed), "%s", version);
  st.failed_serial = serial;
  snprintf(st.reason, sizeof(st.reason), "%s", why);
  if (st.active[0] == '\0')
    snprintf(st.active, sizeof(st.active), "%s", u->running);
  upstate_save(u->update_dir, &st);
  report_now(u);
}

static void refuse_rules(update_t *u, int scope, const char *version, uint64_t serial,
                         const char *why) {
  ym_log(YM_LOG_WARN, 0, "rules bundle %s (%s, serial %llu) refused, the previous rules stay: %s",
         version, scope_names[scope], (unsigned long long)serial, why);
  u->rules_failed_serial[scope] = serial;
  snprintf(u->rules_failed, sizeof(u->rules_failed), "%s", version);
  snprintf(u->rules_reason, sizeof(u->rules_reason), "%s", why);
  save_accepted(u);
  report_now(u);
}

/* Fault injection for the kill -9 tests (tests/integration/
 * test_update_kill.py): when YAMORI_UPDATE_STALL names step, the agent
 * stops there once, after creating update_dir/stall-<step>, and waits to be
 * killed. Never set outside tests. */
static void stall(const update_t *u, const char *step) {
  const char *e = getenv("YAMORI_UPDATE_STALL");
  if (e == NULL || strstr(e, step) == NULL)
    return;
  char p[1200];
  snprintf(p, sizeof(p), "%s/stall-%s", u->update_dir, step);
  int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return; /* once */
  close(fd);
  ym_log(YM_LOG_WARN, 0, "stalled at update step %s (YAMORI_UPDATE_STALL)", step);
  for (;;)
    pause();
}

static void strlist_free(ym_strlist_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

static void maybe_free(update_t *u) {
  if (!u->closing || u->works > 0)
    return;
  if (u->part_fd >= 0)
    close(u->part_fd);
  strlist_free(&u->dirs);
  free(u);
}

/* ---------------------------------------------------------------- */
/* Versions                                                           */

/* Removes version directories other than keep[] and staging leftovers. */
static void prune_versions(update_t *u, const char *const *keep, size_t nkeep) {
  int vfd = open(u->versions_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (vfd < 0)
    return;
  DIR *d = fdopendir(dup(vfd));
  struct dirent *de;
  char names[64][256];
  size_t n = 0;
  while (d != NULL && (de = readdir(d)) != NULL && n < 64) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    bool kept = false;
    for (size_t i = 0; i < nkeep && !kept; i++)
      kept = keep[i][0] != '\0' && strcmp(keep[i], de->d_name) == 0;
    if (!kept && (nkeep > 0 || strncmp(de->d_name, ".staging-", 9) == 0))
      snprintf(names[n++], sizeof(names[0]), "%s", de->d_name);
  }
  if (d != NULL)
    closedir(d);
  for (size_t i = 0; i < n; i++)
    ym_unpack_remove_tree(vfd, names[i]);
  close(vfd);
}

/* The commit: this version checked in healthy while on trial. */
static void commit(update_t *u) {
  upstate_t st;
  if (upstate_load(u->update_dir, &st) != 0)
    return;
  u->committed = true;
  if (strcmp(st.active, u->running) == 0)
    return;
  if (strcmp(st.pending, u->running) != 0)
    return; /* rolled back meanwhile: the launcher will stop us */
  snprintf(st.previous, sizeof(st.previous), "%s", st.active);
  snprintf(st.active, sizeof(st.active), "%s", u->running);
  if (st.pending_serial > u->accepted)
    u->accepted = st.pending_serial;
  st.pending[0] = '\0';
  st.pending_serial = 0;
  st.attempts = 0;
  st.trial_started = 0;
  st.failed[0] = '\0';
  st.failed_serial = 0;
  st.reason[0] = '\0';
  int rc = save_accepted(u);
  if (rc == 0)
    rc = upstate_save(u->update_dir, &st);
  if (rc != 0) {
    ym_log(YM_LOG_ERROR, rc, "cannot commit version %s", u->running);
    u->committed = false;
    return;
  }
  ym_log(YM_LOG_NOTICE, 0, "version %s committed (previous %s)", st.active, st.previous);
  const char *keep[] = {st.active, st.previous};
  prune_versions(u, keep, 2);
  report_now(u);
}

typedef struct {
  uv_work_t w;
  update_t *u;
  int fd;
  ym_manifest_t m;
  const char *why;
  int rc;
} verify_t;

/* Thread pool: hash, unpack into a staging directory, check, rename. */
static void verify_work(uv_work_t *w) {
  verify_t *v = w->data;
  update_t *u = v->u;
  uint8_t d[YM_SHA256_LEN];
  uint64_t n = 0;
  v->why = NULL;
  if (ym_sha256_fd(v->fd, v->m.size + 1, d, &n) != 0 || n != v->m.size) {
    v->why = "download_truncated";
    return;
  }
  if (memcmp(d, v->m.sha256, sizeof(d)) != 0) {
    v->why = "hash_mismatch";
    return;
  }
  stall(u, "verify");
  mkdir(u->versions_dir, 0755);
  int vfd = open(u->versions_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (vfd < 0) {
    v->why = "versions_dir_unusable";
    return;
  }
  char staging[128];
  snprintf(staging, sizeof(staging), ".staging-%s", v->m.version);
  ym_unpack_remove_tree(vfd, staging);
  int sfd = -1;
  if (mkdirat(vfd, staging, 0755) != 0 ||
      (sfd = openat(vfd, staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
    v->why = "versions_dir_unusable";
    close(vfd);
    return;
  }
  ym_unpack_limits_t lim;
  ym_unpack_result_t res;
  ym_unpack_default_limits(&lim);
  lim.max_total = lim.max_file = u->max_package * 4;
  lseek(v->fd, 0, SEEK_SET);
  struct stat st;
  if (ym_unpack_fd(v->fd, sfd, &lim, &res) != 0)
    v->why = res.reason;
  else if (fstatat(sfd, "bin/yamorid", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
           (st.st_mode & 0100) == 0)
    v->why = "missing_program";
  close(sfd);
  if (v->why == NULL)
    stall(u, "unpack"); /* unpacked, not yet renamed */
  if (v->why == NULL) {
    ym_unpack_remove_tree(vfd, v->m.version);
    if (renameat(vfd, staging, vfd, v->m.version) != 0)
      v->why = "write_failed";
    else
      fsync(vfd);
  }
  if (v->why != NULL)
    ym_unpack_remove_tree(vfd, staging);
  close(vfd);
}

static void end_job(update_t *u) {
  if (u->part_fd >= 0)
    close(u->part_fd);
  u->part_fd = -1;
  u->busy = false;
}

static void verify_done(uv_work_t *w, int status) {
  verify_t *v = w->data;
  update_t *u = v->u;
  (void)status;
  u->works--;
  if (u->closing) {
    free(v);
    maybe_free(u);
    return;
  }
  unlink(u->part_path);
  end_job(u);
  if (v->why != NULL) {
    refuse(u, v->m.version, v->m.serial, v->why);
    free(v);
    return;
  }
  /* The switch: pending first (the launcher acts on it even if we die
   * right after), then the accepted serial. */
  upstate_t st;
  if (upstate_load(u->update_dir, &st) != 0) {
    memset(&st, 0, sizeof(st));
    snprintf(st.active, sizeof(st.active), "%s", u->running);
  }
  snprintf(st.pending, sizeof(st.pending), "%s", v->m.version);
  st.pending_serial = v->m.serial;
  st.attempts = 0;
  st.trial_started = 0;
  st.failed[0] = '\0';
  st.failed_serial = 0;
  st.reason[0] = '\0';
  int rc = upstate_save(u->update_dir, &st);
  if (rc == 0) {
    stall(u, "switch"); /* pending written, the launcher not yet told */
    u->accepted = v->m.serial;
    save_accepted(u);
    ym_log(YM_LOG_NOTICE, 0, "version %s (serial %llu) is pending; asking the launcher to switch",
           v->m.version, (unsigned long long)v->m.serial);
    report_now(u);
    kill(u->launcher, SIGUSR1);
  } else {
    ym_log(YM_LOG_ERROR, rc, "cannot write the update state in %s", u->update_dir);
  }
  free(v);
}

static void start_verify(update_t *u) {
  verify_t *v = calloc(1, sizeof(*v));
  if (v == NULL) {
    end_job(u);
    return;
  }
  v->u = u;
  v->fd = u->part_fd;
  v->m = u->job;
  v->w.data = v;
  u->works++;
  uv_queue_work(u->a->loop, &v->w, verify_work, verify_done);
}

static void on_download(int rc, long status, const void *body, size_t len, void *data) {
  update_t *u = data;
  (void)body, (void)len;
  if (u->closing) {
    end_job(u);
    maybe_free(u);
    return;
  }
  struct stat st;
  if (rc == YM_ETOOBIG) {
    unlink(u->part_path);
    end_job(u);
    refuse(u, u->job.version, u->job.serial, "download_too_long");
    return;
  }
  if (rc != 0 || (status != 200 && status != 206) || (status == 200 && u->part_before > 0)) {
    /* Try again at a later check-in, from what was kept. An error body
     * or an answer that ignored the range is cut away. */
    ym_log(YM_LOG_WARN, rc, "download of release %s interrupted (HTTP %ld)", u->job.version,
           status);
    if (status == 200 && u->part_before > 0)
      u->part_before = 0;
    if (ftruncate(u->part_fd, (off_t)u->part_before) != 0)
      unlink(u->part_path);
    end_job(u);
    return;
  }
  if (fstat(u->part_fd, &st) != 0 || (uint64_t)st.st_size < u->job.size) {
    unlink(u->part_path);
    end_job(u);
    refuse(u, u->job.version, u->job.serial, "download_truncated");
    return;
  }
  start_verify(u);
}

static void start_download(update_t *u) {
  char dir[1100];
  snprintf(dir, sizeof(dir), "%s/download", u->update_dir);
  mkdir(dir, 0700);
  snprintf(u->part_path, sizeof(u->part_path), "%s/%llu.part", dir,
           (unsigned long long)u->job.serial);
  /* Parts of other releases are of no use any more. */
  DIR *d = opendir(dir);
  struct dirent *de;
  char base[32];
  snprintf(base, sizeof(base), "%llu.part", (unsigned long long)u->job.serial);
  while (d != NULL && (de = readdir(d)) != NULL)
    if (de->d_name[0] != '.' && strcmp(de->d_name, base) != 0)
      unlinkat(dirfd(d), de->d_name, 0);
  if (d != NULL)
    closedir(d);
  u->part_fd = open(u->part_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  struct stat st;
  if (u->part_fd < 0 || fstat(u->part_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ym_log(YM_LOG_ERROR, errno, "cannot open %s", u->part_path);
    end_job(u);
    return;
  }
  uint64_t have = (uint64_t)st.st_size;
  if (have > u->job.size) {
    have = 0;
    if (ftruncate(u->part_fd, 0) != 0) {
      end_job(u);
      return;
    }
  }
  lseek(u->part_fd, 0, SEEK_END);
  u->part_before = have;
  if (have == u->job.size) {
    start_verify(u);
    return;
  }
  ym_log(YM_LOG_NOTICE, 0, "downloading release %s (serial %llu, %llu bytes%s)", u->job.version,
         (unsigned long long)u->job.serial, (unsigned long long)u->job.size,
         have ? ", resumed" : "");
  uplink_req_t req = {"GET",      u->job.url, NULL, NULL, 0, (size_t)(u->job.size - have),
                      u->part_fd, have};
  if (uplink_request(u->a->up, &req, on_download, u) != 0)
    end_job(u);
}

static void handle_release(update_t *u, const cJSON *offer) {
  if (!cJSON_IsObject(offer) || !u->launched || !u->enabled || u->busy || u->a->up == NULL)
    return;
  const char *version = ym_json_get_str(offer, "version");
  long long serial = 0;
  ym_json_get_int(offer, "serial", &serial);
  if (version == NULL || strcmp(version, u->running) == 0)
    return;
  upstate_t st;
  if (upstate_load(u->update_dir, &st) != 0)
    memset(&st, 0, sizeof(st));
  if (strcmp(st.pending, version) == 0)
    return; /* the switch is under way */
  if (serial > 0 && (uint64_t)serial == st.failed_serial && strcmp(st.failed, version) == 0)
    return; /* refused or rolled back before: the console must offer another */
  char safe[64];
  snprintf(safe, sizeof(safe), "%s", ym_manifest_version_ok(version) ? version : "invalid");
  const cJSON *sig = cJSON_GetObjectItemCaseSensitive(offer, "signed");
  char *text = cJSON_IsObject(sig) ? cJSON_PrintUnformatted(sig) : NULL;
  const char *why = "bad_envelope";
  ym_manifest_t m;
  int rc = text ? ym_manifest_open(text, strlen(text), u->keys, u->nkeys, &m, &why) : YM_EPARSE;
  free(text);
  if (rc != 0) {
    refuse(u, safe, (uint64_t)serial, why);
    return;
  }
  if (strcmp(m.version, u->running) == 0)
    return;
  uint64_t accepted = u->accepted > st.pending_serial ? u->accepted : st.pending_serial;
  ym_manifest_expect_t e = {YM_MANIFEST_PRODUCT_AGENT,
                            "linux",
                            u->arch,
                            (int64_t)time(NULL),
                            u->max_package,
                            accepted,
                            NULL /* releases are for every company */};
  if (ym_manifest_check(&m, &e, &why) != 0) {
    refuse(u, m.version, m.serial, why);
    return;
  }
  u->job = m;
  u->busy = true;
  start_download(u);
}

/* ---------------------------------------------------------------- */
/* Rules bundles                                                      */

static void bundle_dir(update_t *u, int scope, const char *version, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s-%s", u->bundles_dir, scope_names[scope], version);
}

/* The rule directories with bundle versions v[] (NULL: none). */
static int build_dirs(update_t *u, const char *const v[SCOPES], ym_strlist_t *out) {
  out->v = calloc(u->a->conf->rules_dirs.n + 2, sizeof(char *));
  out->n = 0;
  if (out->v == NULL)
    return YM_ENOMEM;
  char p[1300];
  if (v[SCOPE_DEFAULT] != NULL && v[SCOPE_DEFAULT][0] != '\0') {
    bundle_dir(u, SCOPE_DEFAULT, v[SCOPE_DEFAULT], p, sizeof(p));
    out->v[out->n++] = strdup(p);
  } else {
    for (size_t i = 0; i < u->a->conf->rules_dirs.n; i++)
      out->v[out->n++] = strdup(u->a->conf->rules_dirs.v[i]);
  }
  if (v[SCOPE_TENANT] != NULL && v[SCOPE_TENANT][0] != '\0') {
    bundle_dir(u, SCOPE_TENANT, v[SCOPE_TENANT], p, sizeof(p));
    out->v[out->n++] = strdup(p);
  }
  return 0;
}

typedef struct {
  uv_work_t w;
  update_t *u;
  int scope;
  ym_manifest_t m;
  void *body;
  size_t len;
  ym_strlist_t dirs;
  rules_t *rules;
  char why[600];
  bool failed;
} rwork_t;

static void rules_work(uv_work_t *w) {
  rwork_t *r = w->data;
  update_t *u = r->u;
  mkdir(u->bundles_dir, 0700);
  int bfd = open(u->bundles_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  char staging[128], name[128];
  snprintf(staging, sizeof(staging), ".staging-%s-%s", scope_names[r->scope], r->m.version);
  snprintf(name, sizeof(name), "%s-%s", scope_names[r->scope], r->m.version);
  int sfd = -1;
  r->failed = true;
  if (bfd < 0)
    goto out;
  ym_unpack_remove_tree(bfd, staging);
  if (mkdirat(bfd, staging, 0700) != 0 ||
      (sfd = openat(bfd, staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
    snprintf(r->why, sizeof(r->why), "write_failed");
    goto out;
  }
  ym_unpack_limits_t lim = {RULES_MAX_TOTAL_BYTES, RULES_MAX_FILE_BYTES, RULES_MAX_FILES, 100};
  ym_unpack_result_t res;
  if (ym_unpack_mem(r->body, r->len, sfd, &lim, &res) != 0) {
    snprintf(r->why, sizeof(r->why), "%s", res.reason);
    goto out;
  }
  ym_unpack_remove_tree(bfd, name);
  if (renameat(bfd, staging, bfd, name) != 0) {
    snprintf(r->why, sizeof(r->why), "write_failed");
    goto out;
  }
  /* Compiled with the other active bundle, exactly as it will scan. */
  char err[512];
  int rc = rules_compile(&r->dirs, &r->rules, err, sizeof(err));
  if (rc != 0) {
    snprintf(r->why, sizeof(r->why), "rules_compile: %s", err);
    ym_unpack_remove_tree(bfd, name);
    goto out;
  }
  r->failed = false;
out:
  if (sfd >= 0)
    close(sfd);
  if (bfd >= 0) {
    if (r->failed)
      ym_unpack_remove_tree(bfd, staging);
    close(bfd);
  }
}

static void rules_done(uv_work_t *w, int status) {
  rwork_t *r = w->data;
  update_t *u = r->u;
  (void)status;
  u->works--;
  u->rules_busy = false;
  if (u->closing || r->failed) {
    if (!u->closing)
      refuse_rules(u, r->scope, r->m.version, r->m.serial, r->why);
    rules_unref(r->rules);
  } else {
    char old[1300];
    bool had = u->rules[r->scope].version[0] != '\0';
    bundle_dir(u, r->scope, u->rules[r->scope].version, old, sizeof(old));
    if (u->a->det != NULL)
      detect_set_rules(u->a->det, r->rules);
    rules_unref(r->rules);
    snprintf(u->rules[r->scope].version, sizeof(u->rules[r->scope].version), "%s", r->m.version);
    u->rules[r->scope].serial = r->m.serial;
    if (strcmp(u->rules_failed, r->m.version) == 0)
      u->rules_failed[0] = u->rules_reason[0] = '\0';
    save_accepted(u);
    strlist_free(&u->dirs);
    u->dirs = r->dirs;
    r->dirs.v = NULL;
    r->dirs.n = 0;
    u->a->rules_dirs = &u->dirs;
    /* The bundle's compiled Sigma, or the configured one when it has none. */
    behave_reload(u->a->beh, u->a->rules_dirs, &u->a->conf->rules_dirs);
    if (had && strcmp(u->rules[r->scope].version, "") != 0) {
      int bfd = open(u->bundles_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      const char *base = strrchr(old, '/');
      if (bfd >= 0 && base != NULL && strcmp(base + 1, "") != 0) {
        char cur[1300];
        bundle_dir(u, r->scope, r->m.version, cur, sizeof(cur));
        if (strcmp(cur, old) != 0)
          ym_unpack_remove_tree(bfd, base + 1);
      }
      if (bfd >= 0)
        close(bfd);
    }
    ym_log(YM_LOG_NOTICE, 0, "rules bundle %s (%s, serial %llu) is live", r->m.version,
           scope_names[r->scope], (unsigned long long)r->m.serial);
    report_now(u);
  }
  strlist_free(&r->dirs);
  free(r->body);
  free(r);
  maybe_free(u);
}

static void on_rules_download(int rc, long status, const void *body, size_t len, void *data) {
  update_t *u = data;
  if (u->closing) {
    u->rules_busy = false;
    maybe_free(u);
    return;
  }
  const ym_manifest_t *m = &u->rjob;
  int scope = u->rscope;
  if (rc == YM_ETOOBIG) {
    u->rules_busy = false;
    refuse_rules(u, scope, m->version, m->serial, "download_too_long");
    return;
  }
  if (rc != 0 || status != 200) {
    u->rules_busy = false; /* again at the next check-in */
    return;
  }
  uint8_t d[YM_SHA256_LEN];
  const char *why = NULL;
  if (len < m->size)
    why = "download_truncated";
  else if (ym_sha256_mem(body, len, d) != 0 || memcmp(d, m->sha256, sizeof(d)) != 0)
    why = "hash_mismatch";
  rwork_t *r = why ? NULL : calloc(1, sizeof(*r));
  if (r != NULL && (r->body = malloc(len)) == NULL) {
    free(r);
    r = NULL;
  }
  if (r == NULL) {
    u->rules_busy = false;
    if (why != NULL)
      refuse_rules(u, scope, m->version, m->serial, why);
    return;
  }
  memcpy(r->body, body, len);
  r->len = len;
  r->u = u;
  r->scope = scope;
  r->m = *m;
  const char *v[SCOPES] = {u->rules[0].version, u->rules[1].version};
  v[scope] = m->version;
  build_dirs(u, v, &r->dirs);
  r->w.data = r;
  u->works++;
  uv_queue_work(u->a->loop, &r->w, rules_work, rules_done);
}

static void handle_rules(update_t *u, const cJSON *rules) {
  if (!cJSON_IsObject(rules) || !u->enabled || u->a->up == NULL)
    return;
  for (int s = 0; s < SCOPES && !u->rules_busy; s++) {
    const cJSON *offer = cJSON_GetObjectItemCaseSensitive(rules, scope_names[s]);
    if (!cJSON_IsObject(offer))
      continue;
    const char *version = ym_json_get_str(offer, "version");
    long long serial = 0;
    ym_json_get_int(offer, "serial", &serial);
    if (version == NULL || strcmp(version, u->rules[s].version) == 0 ||
        (serial > 0 && (uint64_t)serial == u->rules_failed_serial[s]))
      continue;
    char safe[64];
    snprintf(safe, sizeof(safe), "%s", ym_manifest_version_ok(version) ? version : "invalid");
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(offer, "signed");
    char *text = cJSON_IsObject(sig) ? cJSON_PrintUnformatted(sig) : NULL;
    const char *why = "bad_envelope";
    ym_manifest_t m;
    int rc = text ? ym_manifest_open(text, strlen(text), u->keys, u->nkeys, &m, &why) : YM_EPARSE;
    free(text);
    if (rc != 0) {
      refuse_rules(u, s, safe, (uint64_t)serial, why);
      continue;
    }
    /* The bundle must be signed for this PC's company or for all of them:
     * a bundle made for another company is refused even when a console
     * offers it. */
    ym_manifest_expect_t e = {YM_MANIFEST_PRODUCT_RULES, "linux",          NULL,
                              (int64_t)time(NULL),       RULES_BUNDLE_MAX, u->rules[s].serial,
                              uplink_tenant(u->a->up)};
    if (ym_manifest_check(&m, &e, &why) != 0) {
      if (strcmp(why, "wrong_tenant") == 0 || strcmp(why, "no_tenant") == 0)
        ym_log(YM_LOG_WARN, 0, "rules bundle %s is signed for company \"%s\", this PC is in \"%s\"",
               m.version, m.tenant[0] ? m.tenant : "(none)", e.tenant);
      refuse_rules(u, s, m.version, m.serial, why);
      continue;
    }
    /* The default scope is for every company, a tenant scope for one. */
    if (strcmp(m.scope, scope_names[s]) != 0 ||
        (strcmp(m.tenant, YM_MANIFEST_TENANT_ALL) == 0) != (s == SCOPE_DEFAULT)) {
      refuse_rules(u, s, m.version, m.serial, "wrong_scope");
      continue;
    }
    ym_log(YM_LOG_NOTICE, 0, "fetching rules bundle %s (%s, serial %llu)", m.version,
           scope_names[s], (unsigned long long)m.serial);
    u->rjob = m;
    u->rscope = s;
    u->rules_busy = true;
    uplink_req_t req = {"GET", m.url, NULL, NULL, 0, (size_t)m.size, -1, 0};
    if (uplink_request(u->a->up, &req, on_rules_download, u) != 0)
      u->rules_busy = false;
  }
}

static void on_checkin(const cJSON *answer, void *data) {
  update_t *u = data;
  if (u->closing)
    return;
  if (u->trial && !u->committed) {
    stall(u, "first-start");
    commit(u);
  }
  handle_release(u, cJSON_GetObjectItemCaseSensitive(answer, "release"));
  handle_rules(u, cJSON_GetObjectItemCaseSensitive(answer, "rules"));
}

/* ---------------------------------------------------------------- */
/* Life cycle                                                         */

int update_new(agent_t *a, update_t **out) {
  const conf_t *c = a->conf;
  update_t *u = calloc(1, sizeof(*u));
  if (u == NULL)
    return YM_ENOMEM;
  u->a = a;
  u->part_fd = -1;
  u->max_package = (uint64_t)c->update_max_package;
  const char *e;
  if ((e = getenv("YAMORI_UPDATE_DIR")) != NULL && e[0] == '/')
    snprintf(u->update_dir, sizeof(u->update_dir), "%s", e);
  else if (c->update_dir[0] != '\0')
    snprintf(u->update_dir, sizeof(u->update_dir), "%s", c->update_dir);
  else
    snprintf(u->update_dir, sizeof(u->update_dir), "%s/update", c->state_dir);
  if ((e = getenv("YAMORI_VERSIONS_DIR")) != NULL && e[0] == '/')
    snprintf(u->versions_dir, sizeof(u->versions_dir), "%s", e);
  else
    snprintf(u->versions_dir, sizeof(u->versions_dir), "%s", c->update_versions_dir);
  snprintf(u->bundles_dir, sizeof(u->bundles_dir), "%s/rules-bundles", c->state_dir);
  e = getenv("YAMORI_VERSION");
  snprintf(u->running, sizeof(u->running), "%s",
           e != NULL && ym_manifest_version_ok(e) ? e : ym_version());
  e = getenv("YAMORI_LAUNCHER_PID");
  long pid = e != NULL ? strtol(e, NULL, 10) : 0;
  u->launched = pid > 1 && pid == (long)getppid();
  u->launcher = (pid_t)pid;
  e = getenv("YAMORI_TRIAL");
  u->trial = u->launched && e != NULL && strcmp(e, "1") == 0;
  struct utsname un;
  snprintf(u->arch, sizeof(u->arch), "%s", uname(&un) == 0 ? un.machine : "unknown");
  mkdir(u->update_dir, 0700);
  if (c->update_enabled) {
    int n = ym_sign_load_keys(c->update_keys_dir, u->keys, MAX_KEYS);
    u->nkeys = n > 0 ? (size_t)n : 0;
    u->enabled = n > 0;
    if (n <= 0)
      ym_log(YM_LOG_NOTICE, n < 0 ? n : 0, "updates off: no release keys in %s",
             c->update_keys_dir);
  }
  load_accepted(u);
  if (u->launched)
    prune_versions(u, NULL, 0); /* staging leftovers of an interrupted unpack */
  /* Bundles whose directory is gone are forgotten. */
  for (int s = 0; s < SCOPES; s++) {
    char p[1300];
    struct stat st;
    bundle_dir(u, s, u->rules[s].version, p, sizeof(p));
    if (u->rules[s].version[0] != '\0' && stat(p, &st) != 0)
      u->rules[s].version[0] = '\0';
  }
  if (u->rules[0].version[0] != '\0' || u->rules[1].version[0] != '\0') {
    const char *v[SCOPES] = {u->rules[0].version, u->rules[1].version};
    if (build_dirs(u, v, &u->dirs) == 0)
      a->rules_dirs = &u->dirs;
  }
  if (a->up != NULL)
    uplink_on_checkin(a->up, on_checkin, u);
  ym_log(YM_LOG_INFO, 0, "updates: version %s%s%s, %zu release keys", u->running,
         u->launched ? " (launcher)" : "", u->trial ? " on trial" : "", u->nkeys);
  *out = u;
  return 0;
}

void update_free(update_t *u) {
  if (u == NULL)
    return;
  u->closing = true;
  if (u->a->rules_dirs == &u->dirs)
    u->a->rules_dirs = NULL;
  /* The uplink was freed first: its callbacks will not come. */
  if (u->busy && u->works == 0)
    end_job(u);
  maybe_free(u);
}
