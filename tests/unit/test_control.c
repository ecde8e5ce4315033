/*
 * Tests of the control socket's request parser: each command with good
 * arguments, then each refusal with the message sent to the client.
 */
#include "control.h"

#include "yamori/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static int parse(const char *line, control_req_t *r, const char **why) {
  return control_parse(line, strlen(line), r, why);
}

static void commands(void **state) {
  (void)state;
  control_req_t r;
  const char *why = NULL;
  assert_int_equal(parse("{\"cmd\":\"status\"}", &r, &why), 0);
  assert_int_equal(r.cmd, CONTROL_STATUS);
  control_req_free(&r);
  assert_int_equal(parse("{\"cmd\":\"scan\",\"paths\":[\"/home/u\",\"/tmp\"]}", &r, &why), 0);
  assert_int_equal(r.cmd, CONTROL_SCAN);
  assert_int_equal(r.n_paths, 2);
  assert_string_equal(r.paths[1], "/tmp");
  control_req_free(&r);
  assert_int_equal(
      parse("{\"cmd\":\"quarantine_delete\",\"id\":\"9f0c6a1e2b7d4c3a8e5f1b2c3d4e5f60\"}", &r,
            &why),
      0);
  assert_int_equal(r.cmd, CONTROL_QUARANTINE_DELETE);
  assert_string_equal(r.id, "9f0c6a1e2b7d4c3a8e5f1b2c3d4e5f60");
  control_req_free(&r);
  assert_int_equal(parse("{\"cmd\":\"alerts\",\"since\":-5}", &r, &why), 0);
  assert_int_equal(r.since, 0);
  control_req_free(&r);
  assert_int_equal(parse("{\"cmd\":\"alerts\",\"since\":12}", &r, &why), 0);
  assert_int_equal(r.since, 12);
  control_req_free(&r);
}

static void refusals(void **state) {
  (void)state;
  static const struct {
    const char *line, *why;
  } cases[] = {
      {"", "malformed request: one JSON object per line"},
      {"[1]", "malformed request: one JSON object per line"},
      {"{\"cmd\":\"status\"} x", "malformed request: one JSON object per line"},
      {"{}", "missing \"cmd\""},
      {"{\"cmd\":5}", "missing \"cmd\""},
      {"{\"cmd\":\"reboot\"}", "unknown command"},
      {"{\"cmd\":\"scan\"}", "scan needs \"paths\": 1 to 64 absolute paths"},
      {"{\"cmd\":\"scan\",\"paths\":[]}", "scan needs \"paths\": 1 to 64 absolute paths"},
      {"{\"cmd\":\"scan\",\"paths\":[\"relative\"]}", "scan paths must be absolute"},
      {"{\"cmd\":\"scan\",\"paths\":[\"/a\",3]}", "scan paths must be absolute"},
      {"{\"cmd\":\"quarantine_restore\"}", "a quarantine id (32 hex characters) is needed"},
      {"{\"cmd\":\"quarantine_restore\",\"id\":\"abc\"}",
       "a quarantine id (32 hex characters) is needed"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    control_req_t r;
    const char *why = NULL;
    assert_int_equal(parse(cases[i].line, &r, &why), YM_EINVAL);
    assert_string_equal(why, cases[i].why);
    assert_null(r.json);
  }
  /* 65 paths: one too many. */
  char line[2048] = "{\"cmd\":\"scan\",\"paths\":[\"/a\"";
  for (int i = 1; i < 65; i++)
    strncat(line, ",\"/a\"", sizeof(line) - strlen(line) - 1);
  strncat(line, "]}", sizeof(line) - strlen(line) - 1);
  control_req_t r;
  const char *why = NULL;
  assert_int_equal(parse(line, &r, &why), YM_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(commands),
      cmocka_unit_test(refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
