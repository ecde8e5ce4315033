/*
 * Workload of bench/sigma_eval.py: loads compiled Sigma rules and evaluates
 * a file of events (one JSON object per line: {"category": ..., "event":
 * {...}}) in a loop on one thread for a given time.
 *
 *   sigma_bench RULES.json EVENTS.ndjson SECONDS
 *
 * Two ways of handing the event over are timed one after the other:
 *   fields  the values of every field the rules name are taken out of the
 *           JSON once, before the clock starts, and handed over by index (as
 *           the agent will hand over its own event structure);
 *   cjson   through sigma_source_cjson(), looking the fields up in the
 *           parsed JSON on every evaluation.
 * Prints one JSON object: events per second for each, matches per pass,
 * rules evaluated in full per event, load time and memory the rules take.
 */
#include "sigma.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  char *category;
  cJSON *event;
  /* fields: per ruleset field, up to 4 values */
  sigma_str_t *vals;
  size_t *nvals;
} ev_t;

typedef struct {
  const ev_t *ev;
} fields_ctx_t;

#define PER_FIELD 4

static size_t fields_get(void *ctx, size_t f, sigma_str_t *vals, size_t max) {
  const ev_t *e = ((fields_ctx_t *)ctx)->ev;
  size_t n = e->nvals[f] < max ? e->nvals[f] : max;
  memcpy(vals, &e->vals[f * PER_FIELD], n * sizeof *vals);
  return n;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      kb = strtol(line + 6, NULL, 10);
  if (f)
    fclose(f);
  return kb;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  if (b == NULL || fread(b, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(b);
    return NULL;
  }
  fclose(f);
  b[n] = '\0';
  *len = (size_t)n;
  return b;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: sigma_bench RULES.json EVENTS.ndjson SECONDS\n");
    return 2;
  }
  double secs = strtod(argv[3], NULL);
  size_t len;
  char *rules = slurp(argv[1], &len);
  if (rules == NULL) {
    fprintf(stderr, "cannot read %s\n", argv[1]);
    return 1;
  }
  long rss0 = rss_kb();
  double t0 = now();
  sigma_ruleset_t *rs;
  char err[256];
  if (sigma_ruleset_load(rules, len, &rs, err, sizeof err) != 0) {
    fprintf(stderr, "load: %s\n", err);
    return 1;
  }
  double load_s = now() - t0;
  free(rules);
  long rss1 = rss_kb();

  char *text = slurp(argv[2], &len);
  if (text == NULL) {
    fprintf(stderr, "cannot read %s\n", argv[2]);
    return 1;
  }
  size_t nev = 0, cap = 1024;
  ev_t *evs = calloc(cap, sizeof *evs);
  size_t nf = sigma_ruleset_field_count(rs);
  sigma_cjson_t cctx;
  sigma_source_t csrc;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    cJSON *o = cJSON_Parse(line);
    if (o == NULL)
      continue;
    if (nev == cap) {
      cap *= 2;
      evs = realloc(evs, cap * sizeof *evs);
    }
    ev_t *e = &evs[nev++];
    e->category = strdup(cJSON_GetObjectItem(o, "category")->valuestring);
    e->event = cJSON_DetachItemFromObject(o, "event");
    cJSON_Delete(o);
    e->vals = calloc(nf * PER_FIELD + 1, sizeof *e->vals);
    e->nvals = calloc(nf + 1, sizeof *e->nvals);
    sigma_source_cjson(&csrc, &cctx, rs, e->event);
    for (size_t f = 0; f < nf; f++) {
      sigma_str_t v[PER_FIELD];
      size_t n = csrc.get(csrc.ctx, f, v, PER_FIELD);
      for (size_t k = 0; k < n; k++) {
        char *copy = malloc(v[k].n + 1);
        memcpy(copy, v[k].p, v[k].n);
        copy[v[k].n] = '\0';
        e->vals[f * PER_FIELD + k].p = copy;
        e->vals[f * PER_FIELD + k].n = v[k].n;
      }
      e->nvals[f] = n;
    }
  }
  if (nev == 0) {
    fprintf(stderr, "no events\n");
    return 1;
  }
  sigma_eval_t *ev = sigma_eval_new(rs);
  printf("{\"rules\": %zu, \"unfiltered_rules\": %zu, \"events\": %zu, \"load_s\": %.4f, "
         "\"rules_rss_kb\": %ld",
         sigma_ruleset_rule_count(rs), sigma_ruleset_unfiltered_count(rs), nev, load_s,
         rss1 - rss0);
  for (int mode = 0; mode < 2; mode++) {
    fields_ctx_t fctx;
    sigma_source_t fsrc = {fields_get, &fctx};
    /* Warm up one pass, then count passes until the time is up. */
    size_t matches = 0, cands = 0, done = 0, passes = 0;
    double start = 0, end = 0, cpu0 = 0;
    for (int warm = 1; warm >= 0; warm--) {
      start = now();
      cpu0 = cpu_now();
      do {
        for (size_t i = 0; i < nev; i++) {
          const sigma_source_t *src;
          if (mode == 0) {
            fctx.ev = &evs[i];
            src = &fsrc;
          } else {
            sigma_source_cjson(&csrc, &cctx, rs, evs[i].event);
            src = &csrc;
          }
          int n = sigma_eval_event(ev, evs[i].category, "linux", (int64_t)i * 1000000, src);
          if (!warm) {
            matches += n > 0 ? (size_t)n : 0;
            cands += sigma_eval_last_candidates(ev);
            done++;
          }
        }
        if (!warm)
          passes++;
        end = now();
      } while (!warm && end - start < secs);
    }
    double el = cpu_now() - cpu0, wall = end - start;
    printf(", \"%s\": {\"events_per_s\": %.0f, \"ns_per_event\": %.1f, \"events_per_wall_s\": "
           "%.0f, \"matches_per_pass\": %zu, \"candidates_per_event\": %.2f, \"passes\": %zu}",
           mode == 0 ? "fields" : "cjson", (double)done / el, el * 1e9 / (double)done,
           (double)done / wall, matches / (passes ? passes : 1), (double)cands / (double)done,
           passes);
  }
  printf("}\n");
  sigma_eval_free(ev);
  sigma_ruleset_free(rs);
  return 0;
}
