#include "yamori/err.h"
#include "yamori/log.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static char *capture(void (*fn)(void)) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ym_log_set_stream(f);
  fn();
  ym_log_set_stream(NULL);
  fclose(f);
  return text;
}

static void write_some(void) {
  ym_log(YM_LOG_WARN, ENOENT, "open %s", "/x");
  ym_log(YM_LOG_ERROR, YM_ETOOBIG, "append");
  ym_log(YM_LOG_DEBUG, 0, "hidden at info level");
}

static void errno_and_codes_are_appended(void **state) {
  (void)state;
  ym_log_init("t", YM_LOG_INFO);
  char *t = capture(write_some);
  assert_non_null(strstr(t, "warn: open /x: No such file or directory\n"));
  assert_non_null(strstr(t, "error: append: value exceeds its size limit\n"));
  assert_null(strstr(t, "hidden"));
  free(t);
}

static void repeat(void) {
  for (int i = 0; i < 100; i++)
    ym_log(YM_LOG_WARN, 0, "storm %d", i);
}

static void repeats_are_rate_limited(void **state) {
  (void)state;
  ym_log_init("t", YM_LOG_INFO);
  char *t = capture(repeat);
  int lines = 0;
  for (char *p = t; (p = strstr(p, "storm")) != NULL; p++)
    lines++;
  assert_int_equal(lines, YM_LOG_BURST);
  free(t);
}

static void level_names(void **state) {
  (void)state;
  ym_log_level_t l;
  assert_int_equal(ym_log_level_parse("debug", &l), 0);
  assert_int_equal(l, YM_LOG_DEBUG);
  assert_int_equal(ym_log_level_parse("loud", &l), YM_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(errno_and_codes_are_appended),
      cmocka_unit_test(repeats_are_rate_limited),
      cmocka_unit_test(level_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
