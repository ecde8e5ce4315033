#include "yamori/config.h"
#include "yamori/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
  bool flag;
  long long deadline;
  char *name;
  ym_strlist_t paths;
  int mode;
} t_conf_t;

static const char *const modes[] = {"off", "detect", "block", NULL};

static int no_spaces(const void *v, char *msg, size_t len) {
  if (strchr(*(char *const *)v, ' ') != NULL) {
    snprintf(msg, len, "must not contain spaces");
    return YM_EINVAL;
  }
  return 0;
}

static const ym_cfg_field_t table[] = {
    {"flag", YM_CFG_BOOL, 0, 0, "true", offsetof(t_conf_t, flag), NULL, NULL, "a flag"},
    {"scan.deadline_ms", YM_CFG_INT, 10, 5000, "250", offsetof(t_conf_t, deadline), NULL, NULL,
     "deadline"},
    {"name", YM_CFG_STRING, 1, 16, "\"pc\"", offsetof(t_conf_t, name), NULL, no_spaces, "name"},
    {"exclude.paths", YM_CFG_STRLIST, 0, 3, "[\"/proc\"]", offsetof(t_conf_t, paths), NULL, NULL,
     "paths"},
    {"scan.mode", YM_CFG_ENUM, 0, 0, "\"detect\"", offsetof(t_conf_t, mode), modes, NULL, "mode"},
};
#define N (sizeof(table) / sizeof(table[0]))

static int parse(const char *text, t_conf_t *c, ym_cfg_error_t *err) {
  memset(c, 0, sizeof(*c));
  memset(err, 0, sizeof(*err));
  return ym_config_parse(table, N, c, text, strlen(text), err);
}

static void defaults_apply(void **state) {
  (void)state;
  t_conf_t c;
  ym_cfg_error_t err;
  assert_int_equal(parse("{}", &c, &err), 0);
  assert_true(c.flag);
  assert_int_equal(c.deadline, 250);
  assert_string_equal(c.name, "pc");
  assert_int_equal(c.paths.n, 1);
  assert_string_equal(c.paths.v[0], "/proc");
  assert_int_equal(c.mode, 1);
  ym_config_free(table, N, &c);
  assert_null(c.name);
}

static void nested_values_parse(void **state) {
  (void)state;
  t_conf_t c;
  ym_cfg_error_t err;
  assert_int_equal(parse("{\"flag\":false,\"scan\":{\"deadline_ms\":100,\"mode\":\"block\"},"
                         "\"name\":\"host1\",\"exclude\":{\"paths\":[\"/a\",\"/b\"]}}",
                         &c, &err),
                   0);
  assert_false(c.flag);
  assert_int_equal(c.deadline, 100);
  assert_int_equal(c.mode, 2);
  assert_string_equal(c.name, "host1");
  assert_int_equal(c.paths.n, 2);
  assert_string_equal(c.paths.v[1], "/b");
  ym_config_free(table, N, &c);
}

static void expect_error(const char *text, int code, const char *key, const char *fragment) {
  t_conf_t c;
  ym_cfg_error_t err;
  assert_int_equal(parse(text, &c, &err), code);
  assert_string_equal(err.key, key);
  assert_non_null(strstr(err.msg, fragment));
  /* Nothing is left allocated or half-set. */
  assert_null(c.name);
  assert_null(c.paths.v);
}

static void errors_name_the_key(void **state) {
  (void)state;
  expect_error("{\"scan\":{\"deadline_ms\":5}}", YM_ERANGE, "scan.deadline_ms", "out of range");
  expect_error("{\"scan\":{\"deadline_ms\":1.5}}", YM_ETYPE, "scan.deadline_ms", "integer");
  expect_error("{\"scan\":{\"speed\":1}}", YM_EUNKNOWNKEY, "scan.speed", "unknown key");
  expect_error("{\"bogus\":1}", YM_EUNKNOWNKEY, "bogus", "unknown key");
  expect_error("{\"flag\":\"yes\"}", YM_ETYPE, "flag", "true or false");
  expect_error("{\"name\":\"\"}", YM_ERANGE, "name", "length");
  expect_error("{\"name\":\"a b\"}", YM_EINVAL, "name", "spaces");
  expect_error("{\"exclude\":{\"paths\":[\"/a\",2]}}", YM_ETYPE, "exclude.paths", "item 1");
  expect_error("{\"exclude\":{\"paths\":[\"/a\",\"/b\",\"/c\",\"/d\"]}}", YM_ERANGE,
               "exclude.paths", "at most 3");
  expect_error("{\"scan\":{\"mode\":\"loud\"}}", YM_ERANGE, "scan.mode", "off, detect, block");
  expect_error("{\"flag\":true,\"flag\":false}", YM_EINVAL, "flag", "more than once");
  expect_error("{\"scan\":3}", YM_EUNKNOWNKEY, "scan", "unknown key");
}

static void malformed_documents(void **state) {
  (void)state;
  expect_error("{\n\"flag\":true,\n\"name\": }", YM_EPARSE, "", "line 3");
  expect_error("[1,2]", YM_ETYPE, "", "JSON object");
  expect_error("", YM_EPARSE, "", "malformed");
}

static void load_file_errors(void **state) {
  (void)state;
  t_conf_t c;
  ym_cfg_error_t err;
  memset(&c, 0, sizeof(c));
  assert_int_equal(ym_config_load_file(table, N, &c, "/nonexistent/x.json", &err), YM_ENOENT);
  assert_non_null(strstr(err.msg, "/nonexistent/x.json"));
  assert_int_equal(ym_config_load_file(table, N, &c, "/", &err), YM_EINVAL);
}

static void markdown_lists_every_key(void **state) {
  (void)state;
  ym_buf_t b;
  ym_buf_init(&b, 1 << 16);
  assert_int_equal(ym_config_doc_markdown(table, N, &b), 0);
  for (size_t i = 0; i < N; i++)
    assert_non_null(strstr(b.data, table[i].name));
  assert_non_null(strstr(b.data, "10 to 5000"));
  ym_buf_free(&b);
}

static void path_prefix_matching(void **state) {
  (void)state;
  char *v[] = {"/var/log/", "/tmp/x"};
  ym_strlist_t l = {v, 2};
  assert_true(ym_strlist_has_path_prefix(&l, "/var/log/syslog"));
  assert_true(ym_strlist_has_path_prefix(&l, "/var/log"));
  assert_true(ym_strlist_has_path_prefix(&l, "/tmp/x/y"));
  assert_false(ym_strlist_has_path_prefix(&l, "/tmp/xy"));
  assert_false(ym_strlist_has_path_prefix(&l, "/var/logs"));
  char *root[] = {"/"};
  ym_strlist_t r = {root, 1};
  assert_true(ym_strlist_has_path_prefix(&r, "/anything"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(defaults_apply),       cmocka_unit_test(nested_values_parse),
      cmocka_unit_test(errors_name_the_key),  cmocka_unit_test(malformed_documents),
      cmocka_unit_test(load_file_errors),     cmocka_unit_test(markdown_lists_every_key),
      cmocka_unit_test(path_prefix_matching),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
