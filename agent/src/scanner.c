#include "scanner.h"

#include "yamori/err.h"
#include "yamori/json.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES_REPORTED 16
#define MAX_STRINGS_REPORTED 8
#define EXCERPT_BYTES 32
#define MATCHES_JSON_MAX (64 * 1024)
#define MAX_PAUSE_NS 1000000000LL
#define KEEP_BUF_BYTES (1024 * 1024)

typedef struct {
  bool used;
  dev_t dev;
  ino_t ino;
  off_t size;
  int64_t mtime_ns, ctime_ns;
  char version[17];
  scan_verdict_t verdict;
  char sha256[YM_SHA256_HEX_LEN + 1];
  unsigned nmatches;
  scan_rule_info_t *first; /* malicious verdicts only */
  char *matches_json;
} cache_slot_t;

struct scanner {
  scanner_opts_t opts;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  scan_req_t *head[SCAN_NPRIO], *tail[SCAN_NPRIO];
  size_t qlen[SCAN_NPRIO];
  bool stopping;
  rules_t *rules;
  pthread_t *threads;
  size_t nthreads;
  pthread_mutex_t cache_lock;
  cache_slot_t *cache;
  size_t nslots;
  scanner_stats_t stats;
};

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t ts_ns(const struct timespec *t) {
  return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

/* ---------------------------------------------------------------- */
/* Verdict cache                                                      */

static cache_slot_t *slot_of(scanner_t *s, const struct stat *st) {
  uint64_t x = (uint64_t)st->st_ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)st->st_dev;
  x ^= (uint64_t)ts_ns(&st->st_mtim) * 31u;
  return &s->cache[x % s->nslots];
}

static bool slot_matches(const cache_slot_t *c, const struct stat *st, const char *version) {
  return c->used && c->dev == st->st_dev && c->ino == st->st_ino && c->size == st->st_size &&
         c->mtime_ns == ts_ns(&st->st_mtim) && c->ctime_ns == ts_ns(&st->st_ctim) &&
         strcmp(c->version, version) == 0;
}

static void slot_clear(cache_slot_t *c) {
  free(c->first);
  free(c->matches_json);
  memset(c, 0, sizeof(*c));
}

static bool cache_get(scanner_t *s, const struct stat *st, const char *version, scan_req_t *r) {
  bool hit = false;
  pthread_mutex_lock(&s->cache_lock);
  cache_slot_t *c = slot_of(s, st);
  if (slot_matches(c, st, version)) {
    hit = true;
    r->verdict = c->verdict;
    r->nmatches = c->nmatches;
    memcpy(r->sha256, c->sha256, sizeof(r->sha256));
    if (c->first != NULL)
      r->first = *c->first;
    ym_buf_reset(&r->matches_json);
    if (c->matches_json != NULL)
      ym_buf_append_str(&r->matches_json, c->matches_json);
  }
  pthread_mutex_unlock(&s->cache_lock);
  return hit;
}

static void cache_put(scanner_t *s, const scan_req_t *r) {
  pthread_mutex_lock(&s->cache_lock);
  cache_slot_t *c = slot_of(s, &r->st);
  slot_clear(c);
  c->used = true;
  c->dev = r->st.st_dev;
  c->ino = r->st.st_ino;
  c->size = r->st.st_size;
  c->mtime_ns = ts_ns(&r->st.st_mtim);
  c->ctime_ns = ts_ns(&r->st.st_ctim);
  memcpy(c->version, r->rules_version, sizeof(c->version));
  c->verdict = r->verdict;
  c->nmatches = r->nmatches;
  memcpy(c->sha256, r->sha256, sizeof(c->sha256));
  if (r->verdict == SCAN_MALICIOUS) {
    c->first = malloc(sizeof(*c->first));
    if (c->first != NULL)
      *c->first = r->first;
    if (r->matches_json.len > 0)
      c->matches_json = strdup(r->matches_json.data);
  }
  pthread_mutex_unlock(&s->cache_lock);
}

/* ---------------------------------------------------------------- */
/* One scan                                                           */

typedef struct {
  YR_SCANNER *yr;
  rules_t *rules; /* the rules yr was made for (referenced) */
  unsigned char *buf;
  size_t cap;
} worker_t;

typedef struct {
  scan_req_t *req;
  const unsigned char *data;
  size_t len;
} match_ctx_t;

static void copy_meta(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src ? src : "");
}

/* libyara keeps its rule, string and match records in an arena that packs
 * them without alignment padding; reading them through its iteration
 * macros is fine on the CPUs it supports but is flagged by the alignment
 * sanitizer, which is therefore off for this function only. */
__attribute__((no_sanitize("alignment"))) static void
collect_rule(match_ctx_t *m, YR_SCAN_CONTEXT *ctx, YR_RULE *rule) {
  scan_req_t *r = m->req;
  ym_buf_t *j = &r->matches_json;
  r->nmatches++;
  if (r->nmatches == 1) {
    scan_rule_info_t *f = &r->first;
    memset(f, 0, sizeof(*f));
    copy_meta(f->rule, sizeof(f->rule), rule->identifier);
    copy_meta(f->ns, sizeof(f->ns), rule->ns->name);
    YR_META *meta;
    yr_rule_metas_foreach(rule, meta) {
      if (meta->type != META_TYPE_STRING)
        continue;
      const char *id = meta->identifier;
      if (strcmp(id, "description") == 0)
        copy_meta(f->description, sizeof(f->description), meta->string);
      else if (strcmp(id, "author") == 0)
        copy_meta(f->author, sizeof(f->author), meta->string);
      else if (strcmp(id, "reference") == 0)
        copy_meta(f->reference, sizeof(f->reference), meta->string);
      else if (strcmp(id, "severity") == 0)
        copy_meta(f->severity, sizeof(f->severity), meta->string);
      else if (strcmp(id, "mitre_attack") == 0)
        copy_meta(f->mitre, sizeof(f->mitre), meta->string);
    }
    const char *tag;
    size_t used = 0;
    yr_rule_tags_foreach(rule, tag) {
      int w = snprintf(f->tags + used, sizeof(f->tags) - used, "%s%s", used ? " " : "", tag);
      if (w < 0 || (size_t)w >= sizeof(f->tags) - used)
        break;
      used += (size_t)w;
    }
  }
  if (r->nmatches > MAX_RULES_REPORTED)
    return;
  /* Appends are bounded by the buffer's cap; a full buffer just stops the
   * report growing (the verdict is unaffected). */
  size_t start = j->len;
  int rc = ym_buf_append_str(j, j->len == 0 ? "[" : ",");
  rc = rc ? rc : ym_buf_append_str(j, "{\"rule\":");
  rc = rc ? rc : ym_json_append_string(j, rule->identifier, strlen(rule->identifier));
  rc = rc ? rc : ym_buf_append_str(j, ",\"namespace\":");
  rc = rc ? rc : ym_json_append_string(j, rule->ns->name, strlen(rule->ns->name));
  rc = rc ? rc : ym_buf_append_str(j, ",\"strings\":[");
  YR_STRING *str;
  unsigned nstr = 0;
  yr_rule_strings_foreach(rule, str) {
    YR_MATCH *match;
    yr_string_matches_foreach(ctx, str, match) {
      if (nstr >= MAX_STRINGS_REPORTED || rc != 0)
        break;
      size_t n =
          (size_t)match->match_length < EXCERPT_BYTES ? (size_t)match->match_length : EXCERPT_BYTES;
      rc = ym_buf_appendf(j, "%s{\"id\":", nstr ? "," : "");
      rc = rc ? rc : ym_json_append_string(j, str->identifier, strlen(str->identifier));
      rc = rc ? rc : ym_buf_appendf(j, ",\"offset\":%lld,\"excerpt\":", (long long)match->offset);
      rc = rc ? rc : ym_json_append_string(j, (const char *)match->data, n);
      rc = rc ? rc : ym_buf_append_byte(j, '}');
      nstr++;
      break; /* one match per string is enough to explain the verdict */
    }
  }
  rc = rc ? rc : ym_buf_append_str(j, "]}");
  if (rc != 0)
    ym_buf_truncate(j, start);
}

static int on_yara(YR_SCAN_CONTEXT *ctx, int message, void *message_data, void *user_data) {
  if (message == CALLBACK_MSG_RULE_MATCHING)
    collect_rule(user_data, ctx, message_data);
  return CALLBACK_CONTINUE;
}

static const char *filetype_of(const unsigned char *p, size_t n) {
  if (n >= 4 && memcmp(p,
                       "\x7f"
                       "ELF",
                       4) == 0)
    return "elf";
  if (n >= 2 && p[0] == 'M' && p[1] == 'Z')
    return "pe";
  if (n >= 4 && (memcmp(p, "\xfe\xed\xfa\xce", 4) == 0 || memcmp(p, "\xfe\xed\xfa\xcf", 4) == 0 ||
                 memcmp(p, "\xce\xfa\xed\xfe", 4) == 0 || memcmp(p, "\xcf\xfa\xed\xfe", 4) == 0 ||
                 memcmp(p, "\xca\xfe\xba\xbe", 4) == 0))
    return "macho";
  if (n >= 2 && p[0] == '#' && p[1] == '!')
    return "script";
  size_t look = n < 512 ? n : 512;
  for (size_t i = 0; i < look; i++)
    if (p[i] < 0x20 && p[i] != '\n' && p[i] != '\r' && p[i] != '\t' && p[i] != '\f')
      return "data";
  return "text";
}

static void set_externals(YR_SCANNER *yr, const scan_req_t *r, const unsigned char *data,
                          size_t n) {
  const char *path = r->path ? r->path : "";
  const char *slash = strrchr(path, '/');
  const char *name = slash ? slash + 1 : path;
  const char *dot = strrchr(name, '.');
  char ext[32] = "";
  if (dot != NULL && dot != name && strlen(dot + 1) < sizeof(ext)) {
    size_t i = 0;
    for (const char *c = dot + 1; *c; c++)
      ext[i++] = (char)((*c >= 'A' && *c <= 'Z') ? *c + 32 : *c);
    ext[i] = '\0';
  }
  char owner[64] = "";
  struct passwd pw, *res = NULL;
  char pwbuf[1024];
  if (getpwuid_r(r->st.st_uid, &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res != NULL)
    snprintf(owner, sizeof(owner), "%s", pw.pw_name);
  else
    snprintf(owner, sizeof(owner), "%u", (unsigned)r->st.st_uid);
  yr_scanner_define_string_variable(yr, "filename", name);
  yr_scanner_define_string_variable(yr, "filepath", path);
  yr_scanner_define_string_variable(yr, "extension", ext);
  yr_scanner_define_string_variable(yr, "filetype", filetype_of(data, n));
  yr_scanner_define_string_variable(yr, "owner", owner);
  /* Any execute bit: the file can be started as a program (a program-start
   * scan always has one). Script rules require it, or another sign that
   * the file runs, so that documents quoting commands do not match. */
  yr_scanner_define_boolean_variable(yr, "is_executable",
                                     (r->st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) != 0);
}

/* Reads the whole file (at most cap bytes) into the worker's buffer. */
static int read_all(worker_t *w, int fd, size_t size, size_t *got) {
  if (size + 1 > w->cap) {
    size_t cap = w->cap ? w->cap : 65536;
    while (cap < size + 1)
      cap *= 2;
    unsigned char *p = realloc(w->buf, cap);
    if (p == NULL)
      return YM_ENOMEM;
    w->buf = p;
    w->cap = cap;
  }
  size_t off = 0;
  while (off < size) {
    ssize_t n = pread(fd, w->buf + off, size - off, (off_t)off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return YM_EIO;
    if (n == 0)
      break; /* shrank meanwhile: scan what is there */
    off += (size_t)n;
  }
  *got = off;
  return 0;
}

static void scan_one(scanner_t *s, worker_t *w, scan_req_t *r) {
  int64_t t0 = mono_ns();
  r->verdict = SCAN_ERROR;
  r->err = 0;
  ym_buf_reset(&r->matches_json);
  rules_t *rules = scanner_rules(s);
  memcpy(r->rules_version, rules->version, sizeof(r->rules_version));

  if (fstat(r->fd, &r->st) != 0) {
    r->err = ym_err_from_errno(errno);
    goto out;
  }
  if (!S_ISREG(r->st.st_mode)) {
    r->err = YM_EINVAL;
    goto out;
  }
  if (r->st.st_size > s->opts.max_file_bytes) {
    r->err = YM_ETOOBIG;
    goto out;
  }
  if (cache_get(s, &r->st, rules->version, r)) {
    r->cached = true;
    goto out;
  }
  if (w->rules != rules) {
    if (w->yr != NULL)
      yr_scanner_destroy(w->yr);
    rules_unref(w->rules);
    w->yr = NULL;
    w->rules = NULL;
    if (yr_scanner_create(rules->yr, &w->yr) != ERROR_SUCCESS) {
      r->err = YM_ENOMEM;
      goto out;
    }
    rules_ref(rules);
    w->rules = rules;
    yr_scanner_set_flags(w->yr, SCAN_FLAGS_FAST_MODE);
    yr_scanner_set_timeout(w->yr, (int)s->opts.timeout_s);
  }
  size_t n = 0;
  if ((r->err = read_all(w, r->fd, (size_t)r->st.st_size, &n)) != 0)
    goto out;
  uint8_t d[YM_SHA256_LEN];
  ym_sha256_mem(w->buf, n, d);
  ym_hex(d, sizeof(d), r->sha256);
  match_ctx_t m = {r, w->buf, n};
  r->nmatches = 0;
  set_externals(w->yr, r, w->buf, n);
  yr_scanner_set_callback(w->yr, on_yara, &m);
  int yrc = yr_scanner_scan_mem(w->yr, w->buf, n);
  if (yrc == ERROR_SCAN_TIMEOUT) {
    r->err = YM_ETIMEDOUT;
    goto out;
  }
  if (yrc != ERROR_SUCCESS) {
    r->err = YM_ESYS;
    goto out;
  }
  if (r->matches_json.len > 0)
    ym_buf_append_byte(&r->matches_json, ']');
  r->verdict = r->nmatches > 0 ? SCAN_MALICIOUS : SCAN_CLEAN;
  cache_put(s, r);
  pthread_mutex_lock(&s->lock);
  s->stats.bytes += n;
  pthread_mutex_unlock(&s->lock);
out:
  r->duration_ns = mono_ns() - t0;
  pthread_mutex_lock(&s->lock);
  s->stats.scanned++;
  if (r->cached)
    s->stats.cached++;
  if (r->verdict == SCAN_MALICIOUS)
    s->stats.matched++;
  if (r->verdict == SCAN_ERROR) {
    s->stats.errors++;
    if (r->err == YM_ETOOBIG)
      s->stats.too_big++;
    if (r->err == YM_ETIMEDOUT)
      s->stats.timeouts++;
  }
  pthread_mutex_unlock(&s->lock);
  rules_unref(rules);
}

/* ---------------------------------------------------------------- */
/* Queue and threads                                                  */

static scan_req_t *pop(scanner_t *s) {
  for (int p = 0; p < SCAN_NPRIO; p++) {
    scan_req_t *r = s->head[p];
    if (r != NULL) {
      s->head[p] = r->next;
      if (s->head[p] == NULL)
        s->tail[p] = NULL;
      s->qlen[p]--;
      r->next = NULL;
      return r;
    }
  }
  return NULL;
}

static void *worker_main(void *arg) {
  scanner_t *s = arg;
  worker_t w = {0};
  pthread_mutex_lock(&s->lock);
  for (;;) {
    scan_req_t *r = pop(s);
    if (r == NULL) {
      if (s->stopping)
        break;
      pthread_cond_wait(&s->cond, &s->lock);
      continue;
    }
    pthread_mutex_unlock(&s->lock);
    scan_one(s, &w, r);
    if (w.cap > KEEP_BUF_BYTES) {
      /* A large file was read: give the memory back rather than keeping
       * the agent's footprint at the largest file ever scanned. */
      free(w.buf);
      w.buf = NULL;
      w.cap = 0;
    }
    bool background = r->prio == SCAN_PRIO_BACKGROUND;
    int64_t spent = r->duration_ns;
    r->done(r); /* r belongs to the callback from here on */
    pthread_mutex_lock(&s->lock);
    if (background && s->opts.cpu_budget < 100 && spent > 0) {
      /* Keep this thread's background share within the budget. */
      int64_t pause = spent * (100 - s->opts.cpu_budget) / s->opts.cpu_budget;
      if (pause > MAX_PAUSE_NS)
        pause = MAX_PAUSE_NS;
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      int64_t end = ts_ns(&until) + pause;
      until.tv_sec = (time_t)(end / 1000000000);
      until.tv_nsec = (long)(end % 1000000000);
      while (!s->stopping && s->head[SCAN_PRIO_EXEC] == NULL && s->head[SCAN_PRIO_DEMAND] == NULL)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &until) != 0)
          break;
    }
  }
  pthread_mutex_unlock(&s->lock);
  if (w.yr != NULL)
    yr_scanner_destroy(w.yr);
  rules_unref(w.rules);
  free(w.buf);
  return NULL;
}

int scanner_new(const scanner_opts_t *opts, rules_t *rules, scanner_t **out) {
  scanner_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return YM_ENOMEM;
  s->opts = *opts;
  if (s->opts.cpu_budget < 1)
    s->opts.cpu_budget = 1;
  s->nslots = opts->cache_slots > 0 ? (size_t)opts->cache_slots : 8192;
  s->cache = calloc(s->nslots, sizeof(*s->cache));
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  s->nthreads = opts->threads > 0 ? (size_t)opts->threads : (size_t)(ncpu > 0 ? ncpu : 1);
  s->threads = calloc(s->nthreads, sizeof(pthread_t));
  if (s->cache == NULL || s->threads == NULL) {
    free(s->cache);
    free(s->threads);
    free(s);
    return YM_ENOMEM;
  }
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->cache_lock, NULL);
  pthread_cond_init(&s->cond, NULL);
  rules_ref(rules);
  s->rules = rules;
  for (size_t i = 0; i < s->nthreads; i++) {
    if (pthread_create(&s->threads[i], NULL, worker_main, s) != 0) {
      s->nthreads = i;
      scanner_free(s);
      return YM_ESYS;
    }
  }
  *out = s;
  return 0;
}

void scanner_free(scanner_t *s) {
  if (s == NULL)
    return;
  /* Requests not started yet are finished as canceled. */
  pthread_mutex_lock(&s->lock);
  s->stopping = true;
  scan_req_t *r;
  scan_req_t *canceled = NULL;
  while ((r = pop(s)) != NULL) {
    r->next = canceled;
    canceled = r;
  }
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
  while (canceled != NULL) {
    r = canceled;
    canceled = r->next;
    r->next = NULL;
    r->verdict = SCAN_ERROR;
    r->err = YM_ECANCELED;
    r->done(r);
  }
  for (size_t i = 0; i < s->nthreads; i++)
    pthread_join(s->threads[i], NULL);
  for (size_t i = 0; i < s->nslots; i++)
    slot_clear(&s->cache[i]);
  free(s->cache);
  free(s->threads);
  rules_unref(s->rules);
  pthread_mutex_destroy(&s->lock);
  pthread_mutex_destroy(&s->cache_lock);
  pthread_cond_destroy(&s->cond);
  free(s);
}

void scanner_set_rules(scanner_t *s, rules_t *rules) {
  rules_ref(rules);
  pthread_mutex_lock(&s->lock);
  rules_t *old = s->rules;
  s->rules = rules;
  pthread_mutex_unlock(&s->lock);
  rules_unref(old);
}

rules_t *scanner_rules(scanner_t *s) {
  pthread_mutex_lock(&s->lock);
  rules_t *r = s->rules;
  rules_ref(r);
  pthread_mutex_unlock(&s->lock);
  return r;
}

scan_req_t *scan_req_new(int fd, const char *path, scan_prio_t prio, scan_done_cb done,
                         void *data) {
  scan_req_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->fd = fd;
  r->path = path ? strdup(path) : NULL;
  r->prio = prio;
  r->done = done;
  r->data = data;
  r->submitted_ns = mono_ns();
  ym_buf_init(&r->matches_json, MATCHES_JSON_MAX);
  return r;
}

void scan_req_free(scan_req_t *r) {
  if (r == NULL)
    return;
  if (r->fd >= 0)
    close(r->fd);
  free(r->path);
  ym_buf_free(&r->matches_json);
  free(r);
}

int scanner_submit(scanner_t *s, scan_req_t *r) {
  pthread_mutex_lock(&s->lock);
  if (s->stopping ||
      (r->prio == SCAN_PRIO_BACKGROUND && s->qlen[r->prio] >= (size_t)s->opts.max_queue)) {
    s->stats.dropped++;
    pthread_mutex_unlock(&s->lock);
    return YM_EBUSY;
  }
  r->next = NULL;
  if (s->tail[r->prio] != NULL)
    s->tail[r->prio]->next = r;
  else
    s->head[r->prio] = r;
  s->tail[r->prio] = r;
  s->qlen[r->prio]++;
  /* Wake every thread for urgent work (a pausing thread must notice too). */
  if (r->prio == SCAN_PRIO_BACKGROUND)
    pthread_cond_signal(&s->cond);
  else
    pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
  return 0;
}

bool scanner_cached(scanner_t *s, const struct stat *st, scan_req_t *r) {
  rules_t *rules = scanner_rules(s);
  bool hit = S_ISREG(st->st_mode) && cache_get(s, st, rules->version, r);
  if (hit) {
    r->st = *st;
    r->cached = true;
    memcpy(r->rules_version, rules->version, sizeof(r->rules_version));
  }
  rules_unref(rules);
  return hit;
}

void scanner_scan_now(scanner_t *s, scan_req_t *r) {
  worker_t w = {0};
  scan_one(s, &w, r);
  if (w.yr != NULL)
    yr_scanner_destroy(w.yr);
  rules_unref(w.rules);
  free(w.buf);
}

void scanner_stats(scanner_t *s, scanner_stats_t *out) {
  pthread_mutex_lock(&s->lock);
  *out = s->stats;
  pthread_mutex_unlock(&s->lock);
}

size_t scanner_queued(scanner_t *s) {
  pthread_mutex_lock(&s->lock);
  size_t n = s->qlen[0] + s->qlen[1] + s->qlen[2];
  pthread_mutex_unlock(&s->lock);
  return n;
}
