/*
 * Checks compiled Sigma behaviour rules against events, with the agent's
 * own evaluator (agent/src/sigma.c) and the agent's mapping from events to
 * log source categories (sigma_event_categories()).
 *
 *   sigma_check cases RULES.json CASES.json
 *     Runs the data-driven cases of tests/rules/sigma_cases.json: each case
 *     names a rule id, an expected verdict ("match" or "nomatch") and one
 *     or more ECS events, evaluated in order by a fresh evaluator (so that
 *     correlations see only the case's events, at their @timestamp). The
 *     case passes when the rule matched on one of its events ("match") or
 *     on none ("nomatch"). Fails when a case fails, is malformed or names a
 *     rule that is not in the set, and when a rule of the set has no
 *     positive or no negative case, or names no ATT&CK technique.
 *
 *   sigma_check replay [--fail-above LEVEL] [--expect IDS.txt] RULES.json
 *                      EVENTS.ndjson[.gz]
 *     Evaluates a recorded event stream (one ECS event per line, in order,
 *     through one evaluator) and prints, as one JSON object, the number of
 *     events and the matches per level and per rule. With --fail-above,
 *     exits 1 when a rule of a higher level matched, and names the events.
 *     With --expect, exits 1 when a rule listed in IDS.txt (one id per
 *     line, then optionally "# title"; blank lines and lines starting with
 *     # are skipped) never matched, or is not in the set.
 *
 * Exit codes: 0 success, 1 a check failed, 2 unusable input, 64 usage.
 */
#include "sigma.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

/* Inputs are the project's own files; the caps only keep a mistake from
 * eating the machine. */
#define CHECK_MAX_FILE (64u * 1024 * 1024)
#define CHECK_MAX_LINE (1u * 1024 * 1024)

static const char *const levels[] = {"informational", "low", "medium", "high", "critical"};
#define NLEVELS (sizeof levels / sizeof levels[0])

static int level_index(const char *level) {
  for (size_t i = 0; i < NLEVELS; i++)
    if (strcmp(levels[i], level) == 0)
      return (int)i;
  return -1;
}

/* Reads a whole file, gzip-compressed or not, NUL-terminated. */
static char *slurp(const char *path, size_t *len) {
  gzFile f = gzopen(path, "rb");
  if (f == NULL)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  while (b != NULL) {
    if (cap - n < 2) {
      if (cap >= CHECK_MAX_FILE) {
        free(b);
        b = NULL;
        break;
      }
      char *nb = realloc(b, cap * 2);
      if (nb == NULL) {
        free(b);
        b = NULL;
        break;
      }
      b = nb;
      cap *= 2;
    }
    int r = gzread(f, b + n, (unsigned)(cap - n - 1));
    if (r < 0) {
      free(b);
      b = NULL;
      break;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  gzclose(f);
  if (b != NULL) {
    b[n] = '\0';
    *len = n;
  }
  return b;
}

static sigma_ruleset_t *load_rules(const char *path, cJSON **doc) {
  size_t len;
  char *json = slurp(path, &len);
  if (json == NULL) {
    fprintf(stderr, "sigma_check: cannot read %s\n", path);
    return NULL;
  }
  char err[512];
  sigma_ruleset_t *rs = NULL;
  if (sigma_ruleset_load(json, len, &rs, err, sizeof err) != 0) {
    fprintf(stderr, "sigma_check: %s: %s\n", path, err);
    free(json);
    return NULL;
  }
  *doc = cJSON_Parse(json);
  free(json);
  return rs;
}

static const cJSON *get_path(const cJSON *ev, const char *a, const char *b) {
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(ev, a);
  return o ? cJSON_GetObjectItemCaseSensitive(o, b) : NULL;
}

/* @timestamp ("2026-12-06T21:34:07.741556Z") in nanoseconds since the
 * epoch, or -1. */
static int64_t event_time(const cJSON *ev) {
  const cJSON *ts = cJSON_GetObjectItemCaseSensitive(ev, "@timestamp");
  if (!cJSON_IsString(ts))
    return -1;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *rest = strptime(ts->valuestring, "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == NULL)
    return -1;
  int64_t frac = 0;
  int digits = 0;
  if (*rest == '.')
    for (rest++; *rest >= '0' && *rest <= '9'; rest++)
      if (digits < 9) {
        frac = frac * 10 + (*rest - '0');
        digits++;
      }
  for (; digits < 9; digits++)
    frac *= 10;
  if (strcmp(rest, "Z") != 0)
    return -1;
  return (int64_t)timegm(&tm) * 1000000000 + frac;
}

typedef void (*on_match_fn)(const sigma_match_t *m, const cJSON *ev, void *data);

/* Evaluates one event under each of its log source categories. Returns
 * the number of categories (0: not an event rules look at) or -1. */
static int eval_one(sigma_eval_t *e, const sigma_ruleset_t *rs, const cJSON *ev, on_match_fn fn,
                    void *data) {
  const cJSON *ds = get_path(ev, "event", "dataset"), *ac = get_path(ev, "event", "action");
  const char *cats[SIGMA_EVENT_MAX_CATEGORIES];
  size_t ncats = sigma_event_categories(cJSON_IsString(ds) ? ds->valuestring : NULL,
                                        cJSON_IsString(ac) ? ac->valuestring : NULL, cats,
                                        SIGMA_EVENT_MAX_CATEGORIES);
  int64_t t = event_time(ev);
  if (t < 0)
    return -1;
  for (size_t c = 0; c < ncats; c++) {
    sigma_source_t src;
    sigma_cjson_t ctx;
    sigma_source_cjson(&src, &ctx, rs, ev);
    int n = sigma_eval_event(e, cats[c], "linux", t, &src);
    if (n < 0)
      return -1;
    for (int i = 0; i < n; i++)
      fn(sigma_eval_match(e, (size_t)i), ev, data);
  }
  return (int)ncats;
}

/* ---- cases ------------------------------------------------------------ */

typedef struct {
  const char *id, *title;
  bool technique; /* names an ATT&CK technique (an attack.tNNNN tag) */
  int pos, neg;
} rule_cov_t;

static bool has_technique(const cJSON *rule) {
  const cJSON *t;
  cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(rule, "tags")) {
    const char *s = cJSON_GetStringValue(t);
    if (s != NULL && strncmp(s, "attack.t", 8) == 0 && s[8] >= '0' && s[8] <= '9')
      return true;
  }
  return false;
}

typedef struct {
  const char *want;
  bool hit;
  char got[1024]; /* ids that matched, for the failure message */
} case_state_t;

static void on_case_match(const sigma_match_t *m, const cJSON *ev, void *data) {
  (void)ev;
  case_state_t *s = data;
  if (strcmp(m->id, s->want) == 0)
    s->hit = true;
  size_t n = strlen(s->got);
  if (n + strlen(m->id) + 2 < sizeof s->got)
    snprintf(s->got + n, sizeof s->got - n, "%s%s", n ? " " : "", m->id);
}

static size_t collect_rules(const cJSON *doc, rule_cov_t **out) {
  size_t n = 0;
  const char *lists[] = {"rules", "correlations"};
  for (size_t l = 0; l < 2; l++)
    n += (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, lists[l]));
  rule_cov_t *r = calloc(n ? n : 1, sizeof *r);
  if (r == NULL)
    return 0;
  size_t k = 0;
  for (size_t l = 0; l < 2; l++) {
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(doc, lists[l])) {
      r[k].id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
      r[k].title = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "title"));
      r[k].technique = has_technique(it);
      k++;
    }
  }
  *out = r;
  return k;
}

static int run_cases(const char *rules_path, const char *cases_path, bool verbose) {
  cJSON *rdoc = NULL;
  sigma_ruleset_t *rs = load_rules(rules_path, &rdoc);
  if (rs == NULL || rdoc == NULL)
    return 2;
  rule_cov_t *cov = NULL;
  size_t ncov = collect_rules(rdoc, &cov);
  size_t len;
  char *text = slurp(cases_path, &len);
  cJSON *cdoc = text ? cJSON_Parse(text) : NULL;
  free(text);
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(cdoc, "cases");
  if (!cJSON_IsArray(cases) || ncov == 0) {
    fprintf(stderr, "sigma_check: %s: no \"cases\" array (or no rules)\n", cases_path);
    return 2;
  }
  int passed = 0, failed = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, cases) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));
    const char *rule = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "rule"));
    const char *expect = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "expect"));
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(c, "events");
    if (name == NULL || rule == NULL || expect == NULL ||
        (strcmp(expect, "match") != 0 && strcmp(expect, "nomatch") != 0) ||
        !cJSON_IsArray(events) || cJSON_GetArraySize(events) == 0) {
      printf("FAIL malformed case %s\n", name ? name : "(no name)");
      failed++;
      continue;
    }
    rule_cov_t *rc = NULL;
    for (size_t i = 0; i < ncov; i++)
      if (cov[i].id && strcmp(cov[i].id, rule) == 0)
        rc = &cov[i];
    if (rc == NULL) {
      printf("FAIL %s: rule %s is not in %s\n", name, rule, rules_path);
      failed++;
      continue;
    }
    bool want = strcmp(expect, "match") == 0;
    if (want)
      rc->pos++;
    else
      rc->neg++;
    sigma_eval_t *e = sigma_eval_new(rs);
    if (e == NULL)
      return 2;
    case_state_t st = {.want = rule};
    const cJSON *ev;
    int bad = 0, evaluated = 0;
    cJSON_ArrayForEach(ev, events) {
      int r = eval_one(e, rs, ev, on_case_match, &st);
      if (r < 0)
        bad = 1;
      else
        evaluated += r;
    }
    sigma_eval_free(e);
    if (bad || evaluated == 0) {
      printf("FAIL %s: an event has no valid @timestamp or no log source category\n", name);
      failed++;
    } else if (st.hit != want) {
      printf("FAIL %s: rule %s (%s) expected %s; matched: %s\n", name, rule, rc->title, expect,
             st.got[0] ? st.got : "nothing");
      failed++;
    } else {
      if (verbose)
        printf("ok   %s\n", name);
      passed++;
    }
  }
  int uncovered = 0;
  for (size_t i = 0; i < ncov; i++) {
    if (cov[i].pos == 0 || cov[i].neg == 0) {
      printf("FAIL rule %s (%s) has %d positive and %d negative cases; it needs both\n", cov[i].id,
             cov[i].title, cov[i].pos, cov[i].neg);
      uncovered++;
    }
    if (!cov[i].technique) {
      printf("FAIL rule %s (%s) names no ATT&CK technique (an attack.tNNNN tag)\n", cov[i].id,
             cov[i].title);
      uncovered++;
    }
  }
  printf("%d cases passed, %d failed; %zu rules, %d without both kinds of case or a technique\n",
         passed, failed, ncov, uncovered);
  free(cov);
  cJSON_Delete(cdoc);
  cJSON_Delete(rdoc);
  sigma_ruleset_free(rs);
  return failed || uncovered ? 1 : 0;
}

/* ---- replay ----------------------------------------------------------- */

typedef struct {
  const char *id, *title, *level;
  long count;
} rule_count_t;

typedef struct {
  rule_count_t *r;
  size_t n, cap;
  long per_level[NLEVELS];
  int fail_above; /* level index, or NLEVELS for none */
  long over;
} replay_t;

static void on_replay_match(const sigma_match_t *m, const cJSON *ev, void *data) {
  replay_t *rp = data;
  int li = level_index(m->level);
  if (li >= 0)
    rp->per_level[li]++;
  size_t i;
  for (i = 0; i < rp->n; i++)
    if (strcmp(rp->r[i].id, m->id) == 0)
      break;
  if (i == rp->n) {
    if (rp->n == rp->cap) {
      size_t nc = rp->cap ? rp->cap * 2 : 64;
      rule_count_t *nr = realloc(rp->r, nc * sizeof *nr);
      if (nr == NULL)
        abort();
      rp->r = nr;
      rp->cap = nc;
    }
    rp->r[rp->n++] = (rule_count_t){m->id, m->title, m->level, 0};
  }
  rp->r[i].count++;
  if (li > rp->fail_above) {
    rp->over++;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(ev, "process");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(ev, "file");
    const char *what = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "command_line"));
    if (what == NULL)
      what = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "path"));
    fprintf(stderr, "%s match: %s (%s) on %s\n", m->level, m->title, m->id,
            what ? what : "(event without command line or path)");
  }
}

/* Checks that every rule id listed in the expect file matched at least
 * once in the replay. Returns the number of listed rules that did not (or
 * -1 when the file cannot be read). */
static int check_expected(const char *path, const replay_t *rp) {
  size_t len;
  char *text = slurp(path, &len);
  if (text == NULL) {
    fprintf(stderr, "sigma_check: cannot read %s\n", path);
    return -1;
  }
  int missing = 0, listed = 0;
  for (char *line = text; line < text + len;) {
    char *nl = memchr(line, '\n', (size_t)(text + len - line));
    size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
    line[n] = '\0';
    size_t idn = strcspn(line, " \t#");
    if (idn > 0) {
      listed++;
      bool seen = false;
      for (size_t i = 0; i < rp->n && !seen; i++)
        seen = strlen(rp->r[i].id) == idn && memcmp(rp->r[i].id, line, idn) == 0;
      if (!seen) {
        fprintf(stderr, "expected rule did not match: %s\n", line);
        missing++;
      }
    }
    line += n + 1;
  }
  free(text);
  if (listed == 0) {
    fprintf(stderr, "sigma_check: %s lists no rule\n", path);
    return -1;
  }
  return missing;
}

static int run_replay(const char *rules_path, const char *events_path, int fail_above,
                      const char *expect_path) {
  cJSON *rdoc = NULL;
  sigma_ruleset_t *rs = load_rules(rules_path, &rdoc);
  if (rs == NULL)
    return 2;
  size_t len;
  char *text = slurp(events_path, &len);
  if (text == NULL) {
    fprintf(stderr, "sigma_check: cannot read %s\n", events_path);
    return 2;
  }
  sigma_eval_t *e = sigma_eval_new(rs);
  if (e == NULL)
    return 2;
  replay_t rp = {.fail_above = fail_above};
  long events = 0, evaluated = 0, lineno = 0;
  int rc = 0;
  for (char *line = text; line < text + len;) {
    char *nl = memchr(line, '\n', (size_t)(text + len - line));
    size_t n = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
    lineno++;
    if (n > 0 && n <= CHECK_MAX_LINE) {
      cJSON *ev = cJSON_ParseWithLength(line, n);
      if (ev == NULL) {
        fprintf(stderr, "sigma_check: %s:%ld: not JSON\n", events_path, lineno);
        rc = 2;
        break;
      }
      events++;
      int r = eval_one(e, rs, ev, on_replay_match, &rp);
      if (r < 0) {
        fprintf(stderr, "sigma_check: %s:%ld: no valid @timestamp\n", events_path, lineno);
        rc = 2;
      } else if (r > 0) {
        evaluated++;
      }
      cJSON_Delete(ev);
      if (rc)
        break;
    }
    line += n + 1;
  }
  cJSON *out = cJSON_CreateObject();
  cJSON_AddNumberToObject(out, "events", (double)events);
  cJSON_AddNumberToObject(out, "evaluated", (double)evaluated);
  cJSON *pl = cJSON_AddObjectToObject(out, "matches_per_level");
  for (size_t i = 0; i < NLEVELS; i++)
    cJSON_AddNumberToObject(pl, levels[i], (double)rp.per_level[i]);
  cJSON *pr = cJSON_AddArrayToObject(out, "rules");
  for (size_t i = 0; i < rp.n; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", rp.r[i].id);
    cJSON_AddStringToObject(o, "title", rp.r[i].title);
    cJSON_AddStringToObject(o, "level", rp.r[i].level);
    cJSON_AddNumberToObject(o, "count", (double)rp.r[i].count);
    cJSON_AddItemToArray(pr, o);
  }
  char *s = cJSON_Print(out);
  if (s != NULL)
    printf("%s\n", s);
  free(s);
  cJSON_Delete(out);
  sigma_eval_free(e);
  free(text);
  cJSON_Delete(rdoc);
  if (rc == 0 && events == 0) {
    fprintf(stderr, "sigma_check: %s holds no events\n", events_path);
    rc = 2;
  }
  if (rc == 0 && rp.over > 0) {
    fprintf(stderr, "sigma_check: %ld matches above %s\n", rp.over, levels[fail_above]);
    rc = 1;
  }
  if (rc == 0 && expect_path != NULL) {
    int missing = check_expected(expect_path, &rp);
    if (missing < 0)
      rc = 2;
    else if (missing > 0)
      rc = 1;
  }
  free(rp.r); /* its ids and titles belong to the ruleset */
  sigma_ruleset_free(rs);
  return rc;
}

static int usage(void) {
  fprintf(stderr, "usage: sigma_check cases [-v] RULES.json CASES.json\n"
                  "       sigma_check replay [--fail-above LEVEL] [--expect IDS.txt] RULES.json "
                  "EVENTS.ndjson[.gz]\n");
  return 64;
}

int main(int argc, char **argv) {
  if (argc >= 4 && strcmp(argv[1], "cases") == 0) {
    bool verbose = argc == 5 && strcmp(argv[2], "-v") == 0;
    if (argc != (verbose ? 5 : 4))
      return usage();
    return run_cases(argv[argc - 2], argv[argc - 1], verbose);
  }
  if (argc >= 4 && strcmp(argv[1], "replay") == 0) {
    int fail_above = (int)NLEVELS;
    const char *expect = NULL;
    int i = 2;
    while (i + 1 < argc && argv[i][0] == '-') {
      if (strcmp(argv[i], "--fail-above") == 0 && (fail_above = level_index(argv[i + 1])) >= 0)
        i += 2;
      else if (strcmp(argv[i], "--expect") == 0)
        expect = argv[(i += 2) - 1];
      else
        return usage();
    }
    if (argc - i != 2)
      return usage();
    return run_replay(argv[i], argv[i + 1], fail_above, expect);
  }
  return usage();
}
