/*
 * Behaviour rules: the evaluator of compiled Sigma rules (docs/behaviour.md).
 *
 * The console compiles Sigma YAML into a compact JSON form
 * (console/src/sigma_compile.h); this module loads that form and evaluates
 * events against it. Nothing here parses YAML, and nothing here trusts the
 * JSON: every field is checked and sized on load, and a set that fails a
 * check is refused as a whole with a message naming the rule.
 *
 * Loading does the work once: literals are lowercased (matching is
 * case-insensitive unless a rule says `cased`), regexes are compiled with
 * PCRE2 and its JIT, field names are numbered, rules are grouped by log
 * source category, and each group gets a literal prefilter: for every rule,
 * a set of (field, literal) pairs one of which must occur in the event for
 * the rule to match. An event is then looked at once per field through a
 * hashed table of 4-byte prefixes of those literals, and only the rules hit
 * (plus the rules without such a set: pure regexes, negations, numbers) are
 * evaluated in full.
 *
 * Events come through a small field-getter interface (sigma_source_t), so
 * that the caller can hand over its own event representation;
 * sigma_source_event() adapts the agent's event (yamori/event.h) and
 * sigma_source_cjson() an ECS event as a cJSON object.
 *
 * Threads: a loaded ruleset is immutable and may be shared; an evaluator
 * (sigma_eval_t, per-event scratch) belongs to one thread at a time.
 */
#ifndef YAMORI_SIGMA_H
#define YAMORI_SIGMA_H

#include "yamori/event.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps on the compact form. */
#define SIGMA_LOAD_MAX_BYTES (64u * 1024 * 1024)
#define SIGMA_LOAD_MAX_RULES 100000
#define SIGMA_LOAD_MAX_NODES 10000 /* expression nodes per rule */
#define SIGMA_LOAD_MAX_DEPTH 64
#define SIGMA_LOAD_MAX_VALUES 4096 /* values of one matcher */
#define SIGMA_LOAD_MAX_STRING 32768
#define SIGMA_LOAD_MAX_FIELDS 1024 /* distinct field names */

/* Values of one field an evaluation looks at (arrays longer are cut). */
#define SIGMA_FIELD_MAX_VALUES 16
/* Matched field names reported per match. */
#define SIGMA_MATCH_MAX_FIELDS 8
/* PCRE2 match limit per regex and value: a catastrophic pattern stops
 * there and counts as no match (sigma_eval_regex_limited()). */
#define SIGMA_REGEX_MATCH_LIMIT 100000u

typedef struct sigma_ruleset sigma_ruleset_t;
typedef struct sigma_eval sigma_eval_t;

typedef struct {
  const char *p;
  size_t n;
} sigma_str_t;

/* How the evaluator reads an event. get() stores up to max values of
 * field number f (see sigma_ruleset_field_name()) into vals and returns
 * how many it stored (0 when the event lacks the field). Numbers and
 * booleans are given as their decimal or true/false text. The values need
 * to stay valid only until get() is called again: the evaluator copies
 * them. */
typedef struct {
  size_t (*get)(void *ctx, size_t f, sigma_str_t *vals, size_t max);
  void *ctx;
} sigma_source_t;

/* Groups (sets of group-by values) one correlation keeps; beyond, the
 * group idle longest is forgotten. */
#define SIGMA_CORR_MAX_GROUPS 256

/* One rule that matched. Pointers stay valid while the ruleset lives. */
typedef struct {
  size_t rule;      /* index in the ruleset; correlations follow the rules */
  bool correlation; /* a correlation rule fired (fields: its group-by fields) */
  const char *id;
  const char *title;
  const char *level;       /* informational, low, medium, high, critical */
  int severity;            /* event.severity: 0, 21, 47, 73, 99 */
  const char *description; /* may be NULL */
  const char *const *tags;
  size_t ntags;
  const char *const *techniques; /* "T1059.004", from attack.t#### tags */
  size_t ntechniques;
  const char *const *references;
  size_t nreferences;
  const char *fields[SIGMA_MATCH_MAX_FIELDS]; /* ECS fields that matched */
  size_t nfields;
} sigma_match_t;

/* Loads the compact JSON (len bytes). On success *out owns the ruleset.
 * On failure returns YM_EPARSE (malformed or over a cap: err says where),
 * YM_ETOOBIG or YM_ENOMEM, and *out is NULL. */
int sigma_ruleset_load(const char *json, size_t len, sigma_ruleset_t **out, char *err,
                       size_t errlen);
void sigma_ruleset_free(sigma_ruleset_t *rs);

size_t sigma_ruleset_rule_count(const sigma_ruleset_t *rs);
/* Correlation rules loaded. */
size_t sigma_ruleset_correlation_count(const sigma_ruleset_t *rs);
/* Rules that have no literal prefilter (evaluated for every event of
 * their log source). */
size_t sigma_ruleset_unfiltered_count(const sigma_ruleset_t *rs);
size_t sigma_ruleset_field_count(const sigma_ruleset_t *rs);
const char *sigma_ruleset_field_name(const sigma_ruleset_t *rs, size_t f);

sigma_eval_t *sigma_eval_new(const sigma_ruleset_t *rs);
void sigma_eval_free(sigma_eval_t *e);

/* Evaluates one event of log source category (e.g. "process_creation")
 * and product (e.g. "linux"; rules without a product match any) that
 * happened at time_ns (nanoseconds, any fixed origin: correlations compare
 * times). Returns the number of matches (0 or more), readable with
 * sigma_eval_match() until the next call, or YM_ENOMEM.
 *
 * Correlations: each match of a rule that a correlation names updates that
 * correlation's state for the event's group (its group-by values):
 * event_count fires when `need` matches fall within the time span,
 * value_count when `need` distinct values of its field do, temporal when
 * every named rule matched within the span (in order for
 * temporal_ordered). A correlation that fires is reported after the rule
 * match that completed it, and its group starts counting again. The state
 * lives in the evaluator, so correlations see the events of one evaluator
 * only. */
int sigma_eval_event(sigma_eval_t *e, const char *category, const char *product, int64_t time_ns,
                     const sigma_source_t *src);
const sigma_match_t *sigma_eval_match(const sigma_eval_t *e, size_t i);
/* Regex matches stopped by SIGMA_REGEX_MATCH_LIMIT since sigma_eval_new(). */
uint64_t sigma_eval_regex_limited(const sigma_eval_t *e);
/* Rules evaluated in full by the last call (for the benchmark). */
size_t sigma_eval_last_candidates(const sigma_eval_t *e);

/* A source over an ECS event as JSON: fields are looked up as nested
 * objects ("process": {"parent": {"name": ...}}) or dotted keys. */
typedef struct {
  const sigma_ruleset_t *rs;
  const cJSON *event;
  char num[SIGMA_FIELD_MAX_VALUES][32];
} sigma_cjson_t;
void sigma_source_cjson(sigma_source_t *src, sigma_cjson_t *ctx, const sigma_ruleset_t *rs,
                        const cJSON *event);

/* A source over the agent's own event: fields are found by their schema
 * name (field numbers are mapped once, at load); unset fields are taken
 * from the event's base event. Strings are given as stored, integers in
 * decimal, booleans as true/false, arrays item by item (their JSON
 * escapes decoded, \udcXX back to the byte); raw JSON fields are not
 * given. */
typedef struct {
  const sigma_ruleset_t *rs;
  const ym_event_t *ev;
  char buf[8192]; /* decoded items and numbers of the last get() */
} sigma_event_src_t;
void sigma_source_event(sigma_source_t *src, sigma_event_src_t *ctx, const sigma_ruleset_t *rs,
                        const ym_event_t *ev);

/* The log source categories under which an agent event is evaluated
 * (docs/behaviour.md, "Log sources"), from its event.dataset and
 * event.action: a program start is process_creation, its end
 * process_termination; a file created, written or renamed into place is
 * file_event (the new content at file.path), and also file_change
 * (written) or file_rename (renamed); a deletion is file_delete. Stores at
 * most max category names (static strings) in out and returns how many
 * (0 for events that no rule looks at, such as alerts and gaps). */
#define SIGMA_EVENT_MAX_CATEGORIES 2
size_t sigma_event_categories(const char *dataset, const char *action, const char **out,
                              size_t max);

#endif
