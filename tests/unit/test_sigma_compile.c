/*
 * The Sigma compiler (console/src/sigma_compile.c): what it accepts comes
 * out in the compact form; what it cannot run or what is hostile is
 * refused with the file and line. Rules are written here for the purpose.
 */
#include "sigma_compile.h"

#include "yamori/err.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define HEADER                                                                                     \
  "title: Test\n"                                                                                  \
  "id: t-1\n"                                                                                      \
  "level: medium\n"                                                                                \
  "logsource:\n"                                                                                   \
  "  category: process_creation\n"                                                                 \
  "  product: linux\n"

/* Compiles text; returns the compiler (caller frees). */
static sigma_compiler_t *compile(const char *text, size_t len, unsigned flags) {
  sigma_compiler_t *c = sigma_compiler_new(flags);
  assert_non_null(c);
  (void)sigma_compile_text(c, "rule.yml", text, len);
  return c;
}

/* The rule must be refused at line with a reason containing needle. */
static void refused_at(const char *text, unsigned line, const char *needle) {
  sigma_compiler_t *c = compile(text, strlen(text), 0);
  assert_int_equal(sigma_compiler_report_count(c), 1);
  const sigma_report_t *r = sigma_compiler_report(c, 0);
  if (r->accepted || r->line != line || strstr(r->reason, needle) == NULL)
    fail_msg("expected refusal at line %u with '%s'; got %s at %u: %s", line, needle,
             r->accepted ? "accepted" : "refused", r->line, r->reason);
  assert_string_equal(r->file, "rule.yml");
  assert_int_equal(sigma_compiler_accepted(c), 0);
  sigma_compiler_free(c);
}

/* The first rule of the compiled output. */
static cJSON *accepted_rule(const char *text, unsigned flags, cJSON **root) {
  sigma_compiler_t *c = compile(text, strlen(text), flags);
  const sigma_report_t *r = sigma_compiler_report(c, 0);
  if (!r->accepted)
    fail_msg("refused at %u: %s", r->line, r->reason);
  char *json = sigma_compiler_output(c);
  sigma_compiler_free(c);
  *root = cJSON_Parse(json);
  free(json);
  assert_non_null(*root);
  return cJSON_GetArrayItem(cJSON_GetObjectItem(*root, "rules"), 0);
}

static void test_accepted_form(void **state) {
  (void)state;
  cJSON *root;
  cJSON *r = accepted_rule(HEADER "tags:\n  - attack.T1059\nreferences: [https://example.org/]\n"
                                  "detection:\n  sel:\n    CommandLine|contains: '/dev/tcp/'\n"
                                  "    Image|endswith: /bash\n  condition: sel\n",
                           0, &root);
  assert_string_equal(cJSON_GetObjectItem(r, "id")->valuestring, "t-1");
  assert_string_equal(cJSON_GetObjectItem(r, "level")->valuestring, "medium");
  assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "tags"), 0)->valuestring,
                      "attack.t1059");
  assert_string_equal(cJSON_GetObjectItem(r, "source")->valuestring, "rule.yml:1");
  cJSON *ls = cJSON_GetObjectItem(r, "logsource");
  assert_string_equal(cJSON_GetObjectItem(ls, "category")->valuestring, "process_creation");
  cJSON *m = cJSON_GetObjectItem(r, "match");
  cJSON *and = cJSON_GetObjectItem(m, "and");
  assert_int_equal(cJSON_GetArraySize(and), 2);
  cJSON *a = cJSON_GetArrayItem(and, 0);
  assert_string_equal(cJSON_GetObjectItem(a, "field")->valuestring, "process.command_line");
  assert_string_equal(cJSON_GetObjectItem(a, "match")->valuestring, "contains");
  assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "values"), 0)->valuestring,
                      "/dev/tcp/");
  cJSON *b = cJSON_GetArrayItem(and, 1);
  assert_string_equal(cJSON_GetObjectItem(b, "field")->valuestring, "process.executable");
  assert_string_equal(cJSON_GetObjectItem(b, "match")->valuestring, "suffix");
  cJSON_Delete(root);
}

static void test_value_shapes(void **state) {
  (void)state;
  cJSON *root;
  /* A wildcard inside the value makes a glob with escapes kept. */
  cJSON *r = accepted_rule(HEADER "detection:\n  sel:\n    CommandLine: 'a*b\\*c?'\n"
                                  "  condition: sel\n",
                           0, &root);
  cJSON *m = cJSON_GetObjectItem(r, "match");
  assert_string_equal(cJSON_GetObjectItem(m, "match")->valuestring, "glob");
  assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "values"), 0)->valuestring,
                      "a*b\\*c?");
  cJSON_Delete(root);
  /* windash: 5 dashes; base64: the encoding without padding. */
  r = accepted_rule(HEADER "detection:\n  sel:\n    CommandLine|windash|contains: ' -x'\n"
                           "  condition: sel\n",
                    0, &root);
  assert_int_equal(
      cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "match"), "values")), 5);
  cJSON_Delete(root);
  r = accepted_rule(HEADER "detection:\n  sel:\n    CommandLine|base64: 'hello'\n"
                           "  condition: sel\n",
                    0, &root);
  m = cJSON_GetObjectItem(r, "match");
  assert_string_equal(cJSON_GetObjectItem(m, "match")->valuestring, "exact");
  assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "values"), 0)->valuestring,
                      "aGVsbG8");
  cJSON_Delete(root);
}

static void test_refusals_with_line(void **state) {
  (void)state;
  refused_at(HEADER "detection:\n  sel:\n    CommandLine|sounds_like: x\n  condition: sel\n", 9,
             "unknown modifier sounds_like");
  refused_at(HEADER "detection:\n  sel:\n    Company: Evil\n  condition: sel\n", 9,
             "field Company has no ECS field");
  refused_at(HEADER "detection:\n  sel:\n    Image|expand: '%x%'\n  condition: sel\n", 9, "expand");
  refused_at(HEADER "detection:\n  sel:\n    Image|wide: x\n  condition: sel\n", 9, "wide/utf16");
  refused_at(HEADER "detection:\n  sel:\n    Image|base64: 'a*'\n  condition: sel\n", 9,
             "wildcards cannot be combined");
  refused_at(HEADER "detection:\n  sel:\n    Image|re: '(unclosed'\n  condition: sel\n", 9,
             "regex refused");
  refused_at(HEADER "detection:\n  sel:\n    DestinationIp|cidr: 10.0.0.0/40\n  condition: sel\n",
             9, "not an IP network");
  refused_at(HEADER "detection:\n  sel:\n    ProcessId|gt: many\n  condition: sel\n", 9,
             "takes one number");
  refused_at(HEADER "detection:\n  sel:\n    Image|contains|startswith: x\n  condition: sel\n", 9,
             "cannot be combined");
  refused_at(HEADER "detection:\n  sel:\n    CommandLine|windash: ' -a -b -c -d'\n"
                    "  condition: sel\n",
             9, "windash on more than 3");
  refused_at(HEADER "detection:\n  sel:\n    Image: x\n  condition: sel | count() > 5\n", 10,
             "aggregations");
  refused_at(HEADER "detection:\n  sel:\n    Image: x\n  other:\n    Image: y\n"
                    "  condition: sel near other\n",
             12, "near");
  refused_at(HEADER "detection:\n  sel:\n    Image: x\n  timeframe: 5m\n  condition: sel\n", 10,
             "timeframe");
  refused_at(HEADER "detection:\n  sel:\n    Image: x\n  condition: sel and missing\n", 10,
             "unknown search identifier missing");
  refused_at(HEADER "detection:\n  sel:\n    Image: x\n  condition: sel*\n", 10, "needs '1 of'");
  refused_at(HEADER "detection:\n  sel:\n    Image: x\n  condition: 1 of nothing*\n", 10,
             "names no search identifier");
  refused_at(HEADER "detection:\n  sel:\n    Image: x\n  condition: (sel\n", 10, "missing ')'");
  refused_at(HEADER "detection:\n  sel:\n    Image: x\n  condition: sel or\n", 10,
             "expected a search identifier");
  refused_at(HEADER "detection:\n  sel:\n    Image: x\n", 8, "no condition");
  refused_at("title: T\nid: t-1\nlogsource:\n  category: dns_query\ndetection:\n  sel:\n"
             "    Image: x\n  condition: sel\n",
             4, "category dns_query is not produced");
  refused_at("title: T\nid: t-1\nlogsource:\n  product: linux\n  service: auditd\ndetection:\n"
             "  sel:\n    type: EXECVE\n  condition: sel\n",
             5, "service auditd");
  refused_at("title: T\nid: t-1\nlogsource:\n  category: process_creation\n  product: a b\n", 4,
             "plain names");
  refused_at("title: T\nlogsource:\n  category: process_creation\n", 1, "id missing");
  refused_at("title: T\nid: t-1\nstatus: deprecated\nlogsource:\n  category: process_creation\n", 3,
             "status deprecated");
  refused_at("action: global\ntitle: T\nid: t-1\n", 1, "rule collections");
  refused_at(HEADER "detection:\n  sel:\n    - Image: x\n    - y\n  condition: sel\n", 10,
             "mixes maps and keywords");
}

static void test_hostile_yaml(void **state) {
  (void)state;
  /* Aliases (the "billion laughs" shape) are refused at the first anchor. */
  refused_at("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
             "c: [*b, *b, *b, *b, *b, *b, *b, *b]\n",
             1, "anchors");
  /* Deep nesting. */
  char buf[4096];
  size_t off = 0;
  for (int i = 0; i < 40; i++)
    off += (size_t)snprintf(buf + off, sizeof buf - off, "[");
  for (int i = 0; i < 40; i++)
    off += (size_t)snprintf(buf + off, sizeof buf - off, "]");
  refused_at(buf, 1, "nesting deeper than");
  /* A huge list. */
  size_t cap = 256 * 1024;
  char *big = malloc(cap);
  off = (size_t)snprintf(big, cap, HEADER "detection:\n  sel:\n    Image:\n");
  for (int i = 0; i < 5000; i++)
    off += (size_t)snprintf(big + off, cap - off, "      - v%d\n", i);
  snprintf(big + off, cap - off, "  condition: sel\n");
  refused_at(big, 4106, "more than 4096 entries");
  /* A huge string. */
  off = (size_t)snprintf(big, cap, HEADER "detection:\n  sel:\n    Image: '");
  memset(big + off, 'a', 9000);
  off += 9000;
  snprintf(big + off, cap - off, "'\n  condition: sel\n");
  refused_at(big, 9, "longer than 8192");
  free(big);
  /* Bad UTF-8 on line 3: an overlong encoding, then a lone continuation
   * byte, then a surrogate. */
  refused_at("title: T\nid: t-1\nx: \xc0\xaf\n", 3, "invalid UTF-8");
  refused_at("title: T\nid: t-1\n\nx: \x80\n", 4, "invalid UTF-8");
  refused_at("title: T\nx: \xed\xa0\x80\n", 2, "invalid UTF-8");
  /* A NUL byte. */
  sigma_compiler_t *c = compile("title: T\n\0x", 11, 0);
  assert_false(sigma_compiler_report(c, 0)->accepted);
  assert_non_null(strstr(sigma_compiler_report(c, 0)->reason, "invalid UTF-8"));
  sigma_compiler_free(c);
  /* Broken YAML. */
  refused_at("title: [unclosed\n", 2, "YAML");
}

static void test_strict_and_warnings(void **state) {
  (void)state;
  const char *text = HEADER "detection:\n  sel:\n    ParentCommandLine|contains: x\n"
                            "  condition: sel\n";
  sigma_compiler_t *c = compile(text, strlen(text), 0);
  const sigma_report_t *r = sigma_compiler_report(c, 0);
  assert_true(r->accepted);
  assert_non_null(strstr(r->reason, "process.parent.command_line"));
  sigma_compiler_free(c);
  c = compile(text, strlen(text), SIGMA_STRICT);
  r = sigma_compiler_report(c, 0);
  assert_false(r->accepted);
  assert_int_equal(r->line, 9);
  assert_non_null(strstr(r->reason, "does not emit yet"));
  sigma_compiler_free(c);
}

static void test_several_documents(void **state) {
  (void)state;
  const char *text = HEADER "detection:\n  sel:\n    Image: x\n  condition: sel\n"
                            "---\ntitle: Two\nid: t-2\nlogsource:\n  category: file_event\n"
                            "detection:\n  sel:\n    Nope: x\n  condition: sel\n"
                            "---\n" HEADER "detection:\n  sel:\n    Image: y\n  condition: sel\n";
  sigma_compiler_t *c = compile(text, strlen(text), 0);
  assert_int_equal(sigma_compiler_report_count(c), 3);
  assert_true(sigma_compiler_report(c, 0)->accepted);
  assert_false(sigma_compiler_report(c, 1)->accepted);
  assert_int_equal(sigma_compiler_report(c, 1)->line, 18);
  assert_string_equal(sigma_compiler_report(c, 1)->id, "t-2");
  /* The same id twice is refused. */
  assert_false(sigma_compiler_report(c, 2)->accepted);
  assert_non_null(strstr(sigma_compiler_report(c, 2)->reason, "used by another rule"));
  assert_int_equal(sigma_compiler_accepted(c), 1);
  sigma_compiler_free(c);
}

static void test_correlation(void **state) {
  (void)state;
  const char *ok = "title: Burst\nid: c-1\ncorrelation:\n  type: value_count\n"
                   "  rules: [a-1]\n  group-by: [User]\n  timespan: 5m\n"
                   "  condition:\n    field: TargetFilename\n    gte: 100\n"
                   "---\ntitle: A\nid: a-1\nlogsource:\n  category: file_event\n"
                   "detection:\n  sel:\n    TargetFilename|endswith: .x\n  condition: sel\n";
  sigma_compiler_t *c = compile(ok, strlen(ok), 0);
  assert_true(sigma_compiler_report(c, 0)->accepted);
  assert_true(sigma_compiler_report(c, 0)->correlation);
  char *json = sigma_compiler_output(c);
  assert_true(sigma_compiler_report(c, 0)->accepted);
  cJSON *root = cJSON_Parse(json);
  free(json);
  cJSON *co = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "correlations"), 0),
                                  "correlation");
  assert_int_equal(cJSON_GetObjectItem(co, "timespan_s")->valueint, 300);
  assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(co, "group_by"), 0)->valuestring,
                      "process.user.name");
  assert_string_equal(
      cJSON_GetObjectItem(cJSON_GetObjectItem(co, "condition"), "field")->valuestring, "file.path");
  cJSON_Delete(root);
  sigma_compiler_free(c);
  /* A correlation naming a rule that is not in the compiled set is refused
   * when the output is made. */
  const char *dangling = "title: B\nid: c-9\ncorrelation:\n  type: temporal\n  rules: [gone]\n"
                         "  timespan: 5s\n";
  c = compile(dangling, strlen(dangling), 0);
  assert_true(sigma_compiler_report(c, 0)->accepted);
  json = sigma_compiler_output(c);
  root = cJSON_Parse(json);
  free(json);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "correlations")), 0);
  assert_false(sigma_compiler_report(c, 0)->accepted);
  assert_non_null(strstr(sigma_compiler_report(c, 0)->reason, "rule gone, which is not in"));
  assert_int_equal(sigma_compiler_accepted(c), 0);
  cJSON_Delete(root);
  sigma_compiler_free(c);
  refused_at("title: B\nid: c-1\ncorrelation:\n  type: event_count\n  rules: [a]\n"
             "  timespan: 5s\n  condition:\n    lt: 3\n",
             8, "only gt and gte");
  refused_at("title: B\nid: c-1\ncorrelation:\n  type: event_count\n  rules: [a]\n"
             "  timespan: 5s\n  condition:\n    gte: 5000\n",
             8, "from 1 to 1000");
  refused_at("title: B\nid: c-1\ncorrelation:\n  type: sequence\n  rules: [a]\n", 4,
             "correlation type");
  refused_at("title: B\nid: c-1\ncorrelation:\n  type: event_count\n  rules: [a]\n"
             "  timespan: forever\n  condition:\n    gte: 3\n",
             6, "timespan");
  /* A number without its unit (read past the end before). */
  refused_at("title: B\nid: c-1\ncorrelation:\n  type: event_count\n  rules: [a]\n"
             "  timespan: 303\n  condition:\n    gte: 3\n",
             6, "timespan");
}

static void test_mapping_table(void **state) {
  (void)state;
  size_t n;
  const sigma_mapping_t *m = sigma_compile_mappings(&n);
  assert_true(n >= 20);
  static const char *const needed[] = {"Image",
                                       "CommandLine",
                                       "ParentImage",
                                       "ParentCommandLine",
                                       "CurrentDirectory",
                                       "User",
                                       "LogonId",
                                       "TargetFilename",
                                       "DestinationIp",
                                       "DestinationPort",
                                       "DestinationHostname",
                                       "SourceIp",
                                       "SourcePort",
                                       "Initiated"};
  for (size_t k = 0; k < sizeof needed / sizeof needed[0]; k++) {
    bool found = false;
    for (size_t i = 0; i < n; i++)
      found = found || strcmp(m[i].sigma, needed[k]) == 0;
    if (!found)
      fail_msg("no mapping for %s", needed[k]);
  }
  assert_true(sigma_compile_field_emitted("process.command_line"));
  /* The network sensor's fields (Initiated is yamori.network.initiated);
   * host names are not resolved. */
  assert_true(sigma_compile_field_emitted("destination.ip"));
  assert_true(sigma_compile_field_emitted("destination.port"));
  assert_true(sigma_compile_field_emitted("source.ip"));
  assert_true(sigma_compile_field_emitted("source.port"));
  assert_true(sigma_compile_field_emitted("yamori.network.initiated"));
  assert_false(sigma_compile_field_emitted("destination.domain"));
  /* docs/behaviour.md shows the same table. */
  const char *src = getenv("YAMORI_SOURCE_DIR");
  assert_non_null(src);
  char path[512];
  snprintf(path, sizeof path, "%s/docs/behaviour.md", src);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  static char doc[65536];
  size_t len = fread(doc, 1, sizeof doc - 1, f);
  fclose(f);
  doc[len] = '\0';
  for (size_t i = 0; i < n; i++) {
    char row[512];
    snprintf(row, sizeof row, "| `%s` | %s | `%s` | %s | %s |\n", m[i].sigma,
             m[i].category ? m[i].category : "all", m[i].ecs,
             sigma_compile_field_emitted(m[i].ecs) ? "yes" : "not yet", m[i].note ? m[i].note : "");
    if (strstr(doc, row) == NULL)
      fail_msg("docs/behaviour.md lacks the row %s", row);
  }
}

static void test_cli(void **state) {
  (void)state;
  char dir[] = "/tmp/yamori-sigma-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char in[300], out[300], bad[300];
  snprintf(in, sizeof in, "%s/good.yml", dir);
  snprintf(bad, sizeof bad, "%s/bad.yaml", dir);
  snprintf(out, sizeof out, "%s/out.json", dir);
  FILE *f = fopen(in, "w");
  fputs(HEADER "detection:\n  sel:\n    Image: x\n  condition: sel\n", f);
  fclose(f);
  f = fopen(bad, "w");
  fputs("title: Bad\nid: b-1\nlogsource:\n  category: nope\n", f);
  fclose(f);
  char *argv1[] = {"compile-sigma", dir, "-o", out, NULL};
  assert_int_equal(sigma_compile_main(4, argv1), 0);
  struct stat st;
  assert_int_equal(stat(out, &st), 0);
  unlink(out);
  char *argv2[] = {"compile-sigma", "--strict", dir, "-o", out, NULL};
  assert_int_equal(sigma_compile_main(5, argv2), 1);
  assert_int_not_equal(stat(out, &st), 0);
  char *argv3[] = {"compile-sigma", in, NULL};
  assert_int_equal(sigma_compile_main(2, argv3), 64);
  unlink(in);
  unlink(bad);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accepted_form),
      cmocka_unit_test(test_value_shapes),
      cmocka_unit_test(test_refusals_with_line),
      cmocka_unit_test(test_hostile_yaml),
      cmocka_unit_test(test_strict_and_warnings),
      cmocka_unit_test(test_several_documents),
      cmocka_unit_test(test_correlation),
      cmocka_unit_test(test_mapping_table),
      cmocka_unit_test(test_cli),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
