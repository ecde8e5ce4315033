/*
 * Behaviour detection (behave.h): compiled rules loaded from <dir>/sigma/,
 * a bad file refused while the old set keeps alerting, the alert's fields,
 * informational rules counted only, the rate limit per rule and process
 * with its count, the kill response through the function given (its
 * result in the alert) and the system-critical programs never killed.
 * Each test works in its own temporary directory.
 */
#include "behave.h"
#include "sigma_compile.h"

#include "yamori/err.h"

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define ENTITY_A "0123456789abcdef0123456789abcdef"
#define ENTITY_B "fedcba9876543210fedcba9876543210"

typedef struct {
  char dir[64];         /* the rules directory */
  char sigma[PATH_MAX]; /* dir/sigma */
  ym_strlist_t dirs;
  char *dirv[1];
  ym_event_t base;
  /* what the module wrote */
  int alerts;
  char last[8192];
  /* kills asked */
  int kills;
  int kill_pid;
  behave_kill_done_fn done;
  void *done_data;
  behave_t *b;
} fixture_t;

static void on_emit(void *ctx, ym_event_t *ev) {
  fixture_t *f = ctx;
  ym_buf_t b;
  ym_buf_init(&b, 1 << 20);
  assert_int_equal(ym_event_write_own(ev, &b), 0);
  snprintf(f->last, sizeof(f->last), "%.*s", (int)b.len, b.data);
  ym_buf_free(&b);
  f->alerts++;
}

static int on_kill(void *ctx, int pid, const char *entity_id, behave_kill_done_fn done,
                   void *data) {
  fixture_t *f = ctx;
  assert_string_equal(entity_id, ENTITY_A);
  f->kills++;
  f->kill_pid = pid;
  f->done = done;
  f->done_data = data;
  return 0;
}

/* Compiles YAML into dir/sigma/name. */
static void write_rules(fixture_t *f, const char *name, const char *yaml) {
  sigma_compiler_t *c = sigma_compiler_new(0);
  assert_non_null(c);
  if (sigma_compile_text(c, "t.yml", yaml, strlen(yaml)) != 0)
    fail_msg("refused: %s", sigma_compiler_report(c, 0)->reason);
  char *json = sigma_compiler_output(c);
  sigma_compiler_free(c);
  assert_non_null(json);
  char path[PATH_MAX + 64];
  snprintf(path, sizeof(path), "%s/%s", f->sigma, name);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(json, fp);
  fclose(fp);
  free(json);
}

static void write_raw(fixture_t *f, const char *name, const char *text) {
  char path[PATH_MAX + 64];
  snprintf(path, sizeof(path), "%s/%s", f->sigma, name);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
}

#define RULE(id, level, needle)                                                                    \
  "title: Test " id "\n"                                                                           \
  "id: " id "\n"                                                                                   \
  "level: " level "\n"                                                                             \
  "description: A test rule.\n"                                                                    \
  "references: [https://example.org/" id "]\n"                                                     \
  "tags: [attack.persistence, attack.t1053.003, attack.privilege-escalation]\n"                    \
  "logsource: {product: linux, category: process_creation}\n"                                      \
  "detection:\n"                                                                                   \
  "  sel:\n"                                                                                       \
  "    CommandLine|contains: '" needle "'\n"                                                       \
  "  condition: sel\n"

static behave_conf_t conf_default(void) {
  behave_conf_t c = {true, {0, 0, 0, 1}, 60 * 1000000000LL};
  return c;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  snprintf(f->dir, sizeof(f->dir), "/tmp/ym-behave-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->sigma, sizeof(f->sigma), "%s/sigma", f->dir);
  assert_int_equal(mkdir(f->sigma, 0700), 0);
  f->dirv[0] = f->dir;
  f->dirs.v = f->dirv;
  f->dirs.n = 1;
  ym_event_init(&f->base, NULL);
  behave_ops_t ops = {on_emit, on_kill, f, &f->base, NULL};
  behave_conf_t c = conf_default();
  assert_int_equal(behave_new(&ops, &c, &f->b), 0);
  *state = f;
  return 0;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static int teardown(void **state) {
  fixture_t *f = *state;
  behave_free(f->b);
  ym_event_free(&f->base);
  nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(f);
  return 0;
}

/* A program start with this command line by the process entity. */
static void exec_event(fixture_t *f, const char *cmdline, const char *entity, const char *exe) {
  ym_event_t ev;
  ym_event_init(&ev, NULL);
  ym_event_set_cstr(&ev, YM_F_EVENT_KIND, "event");
  ym_event_set_cstr(&ev, YM_F_EVENT_DATASET, "yamori.process");
  ym_event_set_cstr(&ev, YM_F_EVENT_ACTION, "exec");
  ym_event_set_cstr(&ev, YM_F_PROCESS_COMMAND_LINE, cmdline);
  ym_event_set_cstr(&ev, YM_F_PROCESS_EXECUTABLE, exe);
  ym_event_set_cstr(&ev, YM_F_PROCESS_ENTITY_ID, entity);
  ym_event_set_int(&ev, YM_F_PROCESS_PID, 4242);
  ym_event_set_int(&ev, YM_F_PROCESS_PARENT_PID, 4000);
  behave_event(f->b, &ev);
  ym_event_free(&ev);
}

/* A file renamed by the process entity at time ns. */
static void rename_event(fixture_t *f, const char *path, const char *entity, int64_t ns) {
  ym_event_t ev;
  ym_event_init(&ev, NULL);
  ym_event_set_time(&ev, YM_F_TIMESTAMP, ns);
  ym_event_set_cstr(&ev, YM_F_EVENT_KIND, "event");
  ym_event_set_cstr(&ev, YM_F_EVENT_DATASET, "yamori.file");
  ym_event_set_cstr(&ev, YM_F_EVENT_ACTION, "rename");
  ym_event_set_cstr(&ev, YM_F_FILE_PATH, path);
  ym_event_set_cstr(&ev, YM_F_PROCESS_ENTITY_ID, entity);
  ym_event_set_int(&ev, YM_F_PROCESS_PID, 4242);
  behave_event(f->b, &ev);
  ym_event_free(&ev);
}

static void test_load_and_alert(void **state) {
  fixture_t *f = *state;
  write_rules(f, "a.json", RULE("rule-a", "high", "evil-a"));
  char msg[320];
  assert_int_equal(behave_load(f->b, &f->dirs, NULL, msg, sizeof(msg)), 0);
  behave_status_t st;
  behave_status(f->b, &st);
  assert_int_equal(st.rules, 1);
  assert_int_equal(st.files, 1);
  assert_int_equal(strlen(st.version), 16);

  exec_event(f, "/bin/true nothing", ENTITY_A, "/bin/true");
  assert_int_equal(f->alerts, 0);
  exec_event(f, "/bin/sh -c evil-a", ENTITY_A, "/bin/sh");
  assert_int_equal(f->alerts, 1);
  const char *want[] = {"\"kind\":\"alert\"",
                        "\"action\":\"behaviour-detected\"",
                        "\"category\":[\"intrusion_detection\"]",
                        "\"severity\":73",
                        "\"id\":\"rule-a\"",
                        "\"name\":\"Test rule-a\"",
                        "\"ruleset\":\"sigma\"",
                        "\"description\":\"A test rule.\"",
                        "\"reference\":\"https://example.org/rule-a\"",
                        "\"framework\":\"MITRE ATT&CK\"",
                        "\"technique\":{\"id\":[\"T1053.003\"]}",
                        "\"tactic\":{\"name\":[\"Persistence\",\"Privilege Escalation\"]}",
                        "\"matched\":[\"process.command_line\"]",
                        "\"level\":\"high\"",
                        "\"response\":{\"action\":\"alert\"}",
                        "\"command_line\":\"/bin/sh -c evil-a\"",
                        "\"entity_id\":\"" ENTITY_A "\""};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
    if (strstr(f->last, want[i]) == NULL)
      fail_msg("alert lacks %s: %s", want[i], f->last);
  behave_status(f->b, &st);
  assert_int_equal(st.evaluated, 2);
  assert_int_equal(st.matches, 1);
  assert_int_equal(st.alerts, 1);

  /* Events that are not program starts or file events are not evaluated. */
  ym_event_t ev;
  ym_event_init(&ev, NULL);
  ym_event_set_cstr(&ev, YM_F_EVENT_DATASET, "yamori.agent");
  ym_event_set_cstr(&ev, YM_F_EVENT_ACTION, "gap");
  behave_event(f->b, &ev);
  ym_event_free(&ev);
  behave_status(f->b, &st);
  assert_int_equal(st.evaluated, 2);
}

static void test_bad_file_keeps_old_set(void **state) {
  fixture_t *f = *state;
  write_rules(f, "a.json", RULE("rule-a", "medium", "evil-a"));
  char msg[320];
  assert_int_equal(behave_load(f->b, &f->dirs, NULL, msg, sizeof(msg)), 0);
  behave_status_t st;
  behave_status(f->b, &st);
  char version[17];
  memcpy(version, st.version, sizeof(version));

  /* A second, good file and a broken one: nothing of the new set is taken. */
  write_rules(f, "b.json", RULE("rule-b", "medium", "evil-b"));
  write_raw(f, "c.json", "{\"format\": \"yamori-sigma\", \"rules\": [ {\"id\": ");
  assert_int_not_equal(behave_load(f->b, &f->dirs, NULL, msg, sizeof(msg)), 0);
  assert_non_null(strstr(msg, "c.json"));
  behave_status(f->b, &st);
  assert_int_equal(st.rules, 1);
  assert_string_equal(st.version, version);
  assert_int_equal(st.load_errors, 1);
  assert_non_null(strstr(st.load_error, "c.json"));

  exec_event(f, "sh -c evil-a", ENTITY_A, "/bin/sh");
  assert_int_equal(f->alerts, 1); /* the old rule still alerts */
  exec_event(f, "sh -c evil-b", ENTITY_A, "/bin/sh");
  assert_int_equal(f->alerts, 1); /* the refused set's rule does not */

  /* Fixed: both files load, the error is cleared. */
  char bad[PATH_MAX + 16];
  snprintf(bad, sizeof(bad), "%s/c.json", f->sigma);
  assert_int_equal(unlink(bad), 0);
  assert_int_equal(behave_load(f->b, &f->dirs, NULL, msg, sizeof(msg)), 0);
  behave_status(f->b, &st);
  assert_int_equal(st.rules, 2);
  assert_string_not_equal(st.version, version);
  assert_string_equal(st.load_error, "");
  exec_event(f, "sh -c evil-b", ENTITY_A, "/bin/sh");
  assert_int_equal(f->alerts, 2);

  /* A symbolic link in sigma/ is refused. */
  char link[PATH_MAX + 16];
  snprintf(link, sizeof(link), "%s/d.json", f->sigma);
  assert_int_equal(symlink("/etc/hostname", link), 0);
  assert_int_not_equal(behave_load(f->b, &f->dirs, NULL, msg, sizeof(msg)), 0);
  assert_non_null(strstr(msg, "d.json"));
}

static void test_informational_and_rate_limit(void **state) {
  fixture_t *f = *state;
  write_rules(f, "a.json",
              RULE("rule-a", "medium", "evil-a") "---\n" RULE("rule-i", "informational", "info-i"));
  char msg[320];
  assert_int_equal(behave_load(f->b, &f->dirs, NULL, msg, sizeof(msg)), 0);
  exec_event(f, "x info-i", ENTITY_A, "/bin/x");
  assert_int_equal(f->alerts, 0);
  behave_status_t st;
  behave_status(f->b, &st);
  assert_int_equal(st.informational, 1);

  /* The same rule and process: one alert, then counted. */
  for (int i = 0; i < 5; i++)
    exec_event(f, "x evil-a", ENTITY_A, "/bin/x");
  assert_int_equal(f->alerts, 1);
  behave_status(f->b, &st);
  assert_int_equal(st.rate_limited, 4);
  /* Another process alerts. */
  exec_event(f, "x evil-a", ENTITY_B, "/bin/x");
  assert_int_equal(f->alerts, 2);

  /* Once the time has passed, the next alert carries the count. */
  behave_conf_t c = conf_default();
  c.rate_limit_ns = 20 * 1000000LL;
  behave_configure(f->b, &c);
  struct timespec ts = {0, 30 * 1000000L};
  nanosleep(&ts, NULL);
  exec_event(f, "x evil-a", ENTITY_A, "/bin/x");
  assert_int_equal(f->alerts, 3);
  assert_non_null(strstr(f->last, "\"suppressed\":4"));

  /* 0: every match alerts. */
  c.rate_limit_ns = 0;
  behave_configure(f->b, &c);
  exec_event(f, "x evil-a", ENTITY_A, "/bin/x");
  exec_event(f, "x evil-a", ENTITY_A, "/bin/x");
  assert_int_equal(f->alerts, 5);

  /* Disabled: nothing is evaluated. */
  c.enabled = false;
  behave_configure(f->b, &c);
  exec_event(f, "x evil-a", ENTITY_A, "/bin/x");
  assert_int_equal(f->alerts, 5);
}

static void test_kill_response(void **state) {
  fixture_t *f = *state;
  write_rules(f, "a.json", RULE("rule-c", "critical", "evil-c"));
  char msg[320];
  assert_int_equal(behave_load(f->b, &f->dirs, NULL, msg, sizeof(msg)), 0);
  exec_event(f, "x evil-c", ENTITY_A, "/tmp/x");
  /* The alert waits for the kill's result. */
  assert_int_equal(f->kills, 1);
  assert_int_equal(f->kill_pid, 4242);
  assert_int_equal(f->alerts, 0);
  f->done(0, NULL, true, f->done_data);
  assert_int_equal(f->alerts, 1);
  assert_non_null(strstr(f->last, "\"response\":{\"action\":\"kill\",\"result\":\"success\"}"));
  assert_non_null(strstr(f->last, "\"severity\":99"));

  /* The kill path's refusal is in the alert with its reason (the same
   * process again: no rate limit here). */
  behave_conf_t c = conf_default();
  c.rate_limit_ns = 0;
  behave_configure(f->b, &c);
  exec_event(f, "x evil-c", ENTITY_A, "/tmp/y");
  assert_int_equal(f->kills, 2);
  f->done(YM_EPERM, "refused: the agent, its launcher and PID 1 are not killed", false,
          f->done_data);
  assert_int_equal(f->alerts, 2);
  assert_non_null(strstr(f->last, "\"result\":\"refused\""));
  assert_non_null(strstr(f->last, "PID 1 are not killed"));
  behave_status_t st;
  behave_status(f->b, &st);
  assert_int_equal(st.killed, 1);
  assert_int_equal(st.kill_refused, 1);
}

static void test_kill_refused_for_system_critical(void **state) {
  fixture_t *f = *state;
  write_rules(f, "a.json", RULE("rule-c", "critical", "evil-c"));
  char msg[320];
  assert_int_equal(behave_load(f->b, &f->dirs, NULL, msg, sizeof(msg)), 0);
  /* A path alone is not enough: pid 4242 does not run the journal daemon's
   * file, so the kill goes ahead (a real system program is refused in
   * it.behaviour_kill, and a program posing as one is killed there). */
  exec_event(f, "journald evil-c", ENTITY_A, "/usr/lib/systemd/systemd-journald");
  assert_int_equal(f->kills, 1);
  f->done(0, NULL, true, f->done_data);
  assert_int_equal(f->alerts, 1);
  behave_status_t st;
  behave_status(f->b, &st);
  assert_int_equal(st.kill_refused, 0);

  assert_true(behave_system_critical("/sbin/init", 10, 0));
  assert_true(behave_system_critical("/usr/lib/systemd/systemd-logind", 31, 1));
  assert_true(behave_system_critical("/usr/bin/dbus-daemon", 20, 1));
  assert_true(behave_system_critical("/usr/sbin/sshd", 14, 1));
  assert_false(behave_system_critical("/usr/sbin/sshd", 14, 900)); /* a session's sshd */
  assert_false(behave_system_critical("/tmp/systemd-journald", 21, 1));
  assert_false(behave_system_critical("/usr/lib/systemd/systemd-x/y", 28, 1));
  assert_false(behave_system_critical("/bin/sleep", 10, 1));
}

/* Correlations count in the events' own time (@timestamp), not in the
 * time they are evaluated. */
static void test_correlation_event_time(void **state) {
  fixture_t *f = *state;
  write_rules(f, "a.json",
              "title: Renamed to .locked\n"
              "id: ren-1\n"
              "name: ren_1\n"
              "level: informational\n"
              "logsource: {product: linux, category: file_rename}\n"
              "detection:\n"
              "  sel:\n"
              "    TargetFilename|endswith: '.locked'\n"
              "  condition: sel\n"
              "---\n"
              "title: Many renames\n"
              "id: ren-burst\n"
              "level: high\n"
              "tags: [attack.impact, attack.t1486]\n"
              "correlation:\n"
              "  type: event_count\n"
              "  rules: [ren_1]\n"
              "  group-by: [process.entity_id]\n"
              "  timespan: 10s\n"
              "  condition: {gte: 3}\n");
  char msg[320];
  assert_int_equal(behave_load(f->b, &f->dirs, NULL, msg, sizeof(msg)), 0);
  int64_t t0 = 1700000000LL * 1000000000LL;
  /* Three renames 20 s apart (by their timestamps): no burst. */
  for (int i = 0; i < 3; i++)
    rename_event(f, "/home/u/a.locked", ENTITY_A, t0 + i * 20000000000LL);
  assert_int_equal(f->alerts, 0);
  /* Three within one second: the correlation alerts. */
  for (int i = 0; i < 3; i++)
    rename_event(f, "/home/u/b.locked", ENTITY_B, t0 + 100000000000LL + i * 100000000LL);
  assert_int_equal(f->alerts, 1);
  assert_non_null(strstr(f->last, "\"id\":\"ren-burst\""));
  assert_non_null(strstr(f->last, "\"technique\":{\"id\":[\"T1486\"]}"));
  behave_status_t st;
  behave_status(f->b, &st);
  assert_int_equal(st.correlations, 1);
  assert_int_equal(st.informational, 6);
}

/* A rules bundle without a sigma/ directory leaves the configured rules. */
static void test_fallback_dirs(void **state) {
  fixture_t *f = *state;
  write_rules(f, "a.json", RULE("rule-a", "medium", "evil-a"));
  char bundle[80];
  snprintf(bundle, sizeof(bundle), "%s/bundle", f->dir);
  assert_int_equal(mkdir(bundle, 0700), 0);
  char *bv[1] = {bundle};
  ym_strlist_t active = {bv, 1};
  char msg[320];
  assert_int_equal(behave_load(f->b, &active, &f->dirs, msg, sizeof(msg)), 0);
  behave_status_t st;
  behave_status(f->b, &st);
  assert_int_equal(st.rules, 1); /* the configured directory's */
  /* The bundle carries behaviour rules: they replace the configured ones. */
  char sig[96];
  snprintf(sig, sizeof(sig), "%s/sigma", bundle);
  assert_int_equal(mkdir(sig, 0700), 0);
  assert_int_equal(behave_load(f->b, &active, &f->dirs, msg, sizeof(msg)), 0);
  behave_status(f->b, &st);
  assert_int_equal(st.rules, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_load_and_alert, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_file_keeps_old_set, setup, teardown),
      cmocka_unit_test_setup_teardown(test_informational_and_rate_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kill_response, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kill_refused_for_system_critical, setup, teardown),
      cmocka_unit_test_setup_teardown(test_correlation_event_time, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fallback_dirs, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
